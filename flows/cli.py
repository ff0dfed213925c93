"""The ``mpgen`` command line.

    mpgen verilog UNIT [--config NAME] [--param k=v ...] -o DIR   generate Verilog
    mpgen sim UNIT [--simulator verilator|icarus|all] [--full] [--seed N]   regression
    mpgen area UNIT [--liberty FILE]                                Yosys area
    mpgen energy UNIT [--liberty FILE] [--ops N]                    energy per op per mode
    mpgen run [-o DIR] [--liberty FILE] [--energy key|all|none]     all of it, all units + report
    mpgen report [-o DIR] [--liberty FILE] [--from DIR]             run + sweep + model studies
    mpgen sweep UNIT --grid k=v1,v2 ... [--jobs N | --scheduler ADDR] design-space sweep (resumable)
    mpgen study NAME [ARGS ...]                                     model/design studies (docs tables)

Without ``--config``/``--param`` a command covers every default configuration of the
unit; ``--config NAME`` picks one, ``--param k=v`` overrides (or, alone, defines a
single ``custom`` configuration).  Progress goes to stderr with elapsed seconds;
failures end with one ``mpgen: error: ...`` line and a non-zero exit status
(``MPGEN_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from . import units as _units

__all__ = ["main", "CLIError"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CLIError(Exception):
    """A failure to report as one line, without traceback."""


class _Progress:
    """Timestamped progress lines on stderr (``[  12.3s] message``)."""

    def __init__(self, quiet: bool = False):
        self.t0 = time.monotonic()
        self.quiet = quiet

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{self.elapsed():7.1f}s] {msg}", file=sys.stderr, flush=True)


class _ProgressHandler(logging.Handler):
    def __init__(self, progress: _Progress):
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self.progress(record.getMessage())


# --------------------------------------------------------------------------- helpers


def _configs(unit: str, args) -> dict[str, dict[str, Any]]:
    """Configurations selected by ``--config``/``--param`` (see module docstring)."""
    spec = _units.get_unit(unit)
    params = _units.parse_params(getattr(args, "param", None))
    name = getattr(args, "config", None)
    if name is not None:
        if name not in spec.default_configs:
            raise CLIError(f"unknown configuration {name!r} for {unit}; choose from: "
                           f"{', '.join(spec.default_configs)}")
        return {name: {**spec.default_configs[name], **params}}
    if params:
        return {"custom": params}
    if not spec.default_configs:
        return {"default": {}}
    return {k: dict(v) for k, v in spec.default_configs.items()}


def _build(unit: str, config_name: str, params: dict):
    spec = _units.get_unit(unit)
    try:
        return spec.factory(**params)
    except (TypeError, ValueError) as e:
        raise CLIError(f"bad parameters for {unit}/{config_name} {params}: {e}") from None


def _verilog(unit: str, config_name: str, params: dict) -> str:
    from mpgen.rtl.emit import to_verilog
    return to_verilog(_build(unit, config_name, params), _units.top_name(unit))


def _regress(unit: str, config_name: str, params: dict, *, simulator: str, quick: bool,
             seed: int | None, progress: _Progress) -> dict:
    spec = _units.get_unit(unit)
    if spec.regression is None:
        raise CLIError(f"unit {unit} has no regression testbench")
    progress(f"{unit}/{config_name}: {'quick' if quick else 'full'} regression on {simulator}")
    t0 = time.monotonic()
    try:
        res = spec.regression(dict(params), simulator=simulator, quick=quick, seed=seed)
    except (TypeError, ValueError) as e:  # the component's own parameter validation
        raise CLIError(f"bad parameters for {unit}/{config_name} {params}: {e}") from None
    seconds = time.monotonic() - t0
    out = {
        "simulator": simulator,
        "quick": quick,
        "seed": seed,
        "vectors": int(res.vectors),
        "mismatches": int(res.mismatches),
        "passed": bool(res.passed),
        "seconds": round(seconds, 2),
        "details": _jsonable(getattr(res, "details", None)),
    }
    state = "PASS" if out["passed"] else "FAIL"
    progress(f"{unit}/{config_name}: {state} {out['vectors']} vectors, "
             f"{out['mismatches']} mismatches ({seconds:.1f}s)")
    return out


def _jsonable(x: Any) -> Any:
    try:
        return json.loads(json.dumps(x, default=str))
    except (TypeError, ValueError):
        return str(x)


def _simulators(choice: str) -> list[str]:
    from mpgen.sim.runner import available_simulators, find_simulator
    if choice == "all":
        found = available_simulators()
        if not found:
            find_simulator("verilator")  # raises SimulatorNotFound with install advice
        return found
    find_simulator(choice)
    return [choice]


def _liberty(path: str | None) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise CLIError(f"Liberty file not found: {path}")
    return p


# --------------------------------------------------------------------------- commands


def cmd_verilog(args, progress: _Progress) -> int:
    out = Path(args.output)
    for name, params in _configs(args.unit, args).items():
        text = _verilog(args.unit, name, params)
        fname = f"{args.unit}.v" if name == "custom" else f"{args.unit}-{name}.v"
        out.mkdir(parents=True, exist_ok=True)
        (out / fname).write_text(text)
        print(out / fname)
    return 0


def cmd_sim(args, progress: _Progress) -> int:
    sims = _simulators(args.simulator)
    failures = []
    for name, params in _configs(args.unit, args).items():
        for sim in sims:
            r = _regress(args.unit, name, params, simulator=sim, quick=not args.full,
                         seed=args.seed, progress=progress)
            print(f"{'PASS' if r['passed'] else 'FAIL'} {args.unit}/{name} [{sim}] "
                  f"{r['vectors']} vectors, {r['mismatches']} mismatches")
            if not r["passed"]:
                failures.append(f"{args.unit}/{name} on {sim} ({r['mismatches']} mismatches)")
    if failures:
        raise CLIError("regression failed: " + "; ".join(failures))
    return 0


def _area_one(unit: str, name: str, params: dict, liberty: Path | None, work: Path,
              progress: _Progress, netlist: bool = False):
    from mpgen.flows.area import synthesize
    text = _verilog(unit, name, params)
    progress(f"{unit}/{name}: synthesising with Yosys" + (f" + {liberty.name}" if liberty else ""))
    rep = synthesize(text, _units.top_name(unit), liberty=liberty, work_dir=work, netlist=netlist)
    progress(f"{unit}/{name}: {rep.nand2_eq:.1f} NAND2-eq"
             + (f", {rep.area_um2:.1f} µm²" if rep.area_um2 is not None else "")
             + f" ({rep.synth_seconds:.1f}s)")
    return rep


def cmd_area(args, progress: _Progress) -> int:
    from mpgen.flows.area import area_table, reports_to_json
    liberty = _liberty(args.liberty)
    out = Path(args.output)
    reports = {}
    for name, params in _configs(args.unit, args).items():
        reports[name] = _area_one(args.unit, name, params, liberty, out / args.unit / name, progress)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.unit}-area.json").write_text(reports_to_json(reports))
    print(area_table(reports, _units.get_unit(args.unit).area_groups), end="")
    return 0


def _energy_one(unit: str, name: str, params: dict, liberty: Path | None, work: Path,
                progress: _Progress, *, ops: int | None = None, data: str = "auto",
                netlist_dir: str | None = None):
    spec = _units.get_unit(unit)
    if spec.energy is None:
        raise CLIError(f"unit {unit} has no energy workloads")
    from mpgen.flows.energy import GateNetlist, measure_energy
    netlist = (GateNetlist.load(netlist_dir, _units.top_name(unit), liberty)
               if netlist_dir is not None else None)
    try:
        return measure_energy(unit, params, config=name, liberty=liberty, ops=ops, data=data,
                              work_dir=work, netlist=netlist, progress=progress)
    except (TypeError, ValueError) as e:
        raise CLIError(f"energy of {unit}/{name} {params}: {e}") from None


def energy_table(reports) -> str:
    """Markdown table: configuration × mode → energy per operation (and its breakdown)."""
    lines = ["| config | mode | energy / op | internal | switching | clock | cycles / op | "
             "outputs checked |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, rep in reports.items():
        for mode, e in rep.modes.items():
            b = e.breakdown
            lines.append(f"| {name} | {mode} | {e.energy_per_op:.3f} {rep.energy_unit}/{e.op_name} | "
                         f"{b.get('internal', 0):.3f} | {b.get('switching', 0):.3f} | "
                         f"{b.get('clock', 0):.3f} | {e.cycles / e.ops:.2f} | {e.checked} |")
    return "\n".join(lines) + "\n"


def cmd_energy(args, progress: _Progress) -> int:
    liberty = _liberty(args.liberty)
    out = Path(args.output)
    reports = {}
    for name, params in _configs(args.unit, args).items():
        _verilog(args.unit, name, params)  # parameter errors as one line, before any tool runs
        reports[name] = _energy_one(args.unit, name, params, liberty, out / args.unit / name,
                                    progress, ops=args.ops, data=args.data)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.unit}-energy.json"
    path.write_text(json.dumps({k: r.to_dict() for k, r in reports.items()}, indent=1))
    print(energy_table(reports), end="")
    progress(f"wrote {path}")
    return 0


def _collect_units(args, progress: _Progress, liberty: Path | None, out: Path,
                   energy: str) -> tuple[dict, dict, list[str]]:
    """Regression, area (and energy) of every default configuration of the chosen units."""
    sims = _simulators(args.simulator)
    unit_names = args.unit or list(_units.UNITS)
    for u in unit_names:
        _units.get_unit(u)
    units: dict[str, Any] = {}
    groups: dict[str, Any] = {}
    failures = []
    for unit in unit_names:
        spec = _units.get_unit(unit)
        configs = {k: dict(v) for k, v in spec.default_configs.items()} or {"default": {}}
        unit_rep: dict[str, Any] = {}
        areas = {}
        for name, params in configs.items():
            work = out / unit / name
            work.mkdir(parents=True, exist_ok=True)
            entry: dict[str, Any] = {"params": params}
            progress(f"{unit}/{name}: generating Verilog")
            text = _verilog(unit, name, params)
            vpath = work / f"{_units.top_name(unit)}.v"
            vpath.write_text(text)
            entry["verilog"] = str(vpath)
            entry["regression"] = {}
            if spec.regression is not None:
                for sim in sims:
                    r = _regress(unit, name, params, simulator=sim, quick=True, seed=args.seed,
                                 progress=progress)
                    entry["regression"][sim] = r
                    if not r["passed"]:
                        failures.append(f"{unit}/{name} on {sim} ({r['mismatches']} mismatches)")
            from mpgen.flows.report_data import ENERGY_KEY_CONFIGS
            do_energy = spec.energy is not None and (
                energy == "all" or (energy == "key" and name in ENERGY_KEY_CONFIGS.get(unit, ())))
            areas[name] = _area_one(unit, name, params, liberty, work / "area", progress,
                                    netlist=do_energy)
            entry["area"] = areas[name].to_dict()
            entry["energy"] = None
            if do_energy:
                rep = _energy_one(unit, name, params, liberty, work / "energy", progress,
                                  netlist_dir=areas[name].netlist_dir)
                entry["energy"] = rep.to_dict()
            unit_rep[name] = entry
        units[unit] = unit_rep
        groups[unit] = {k: list(v) for k, v in (spec.area_groups or {}).items()} or None
        from mpgen.flows.area import area_table
        print(f"## {unit}\n")
        print(area_table(areas, spec.area_groups))
        energies = {n: e["energy"] for n, e in unit_rep.items() if e["energy"]}
        if energies:
            from mpgen.flows.energy import EnergyReport
            print(energy_table({n: EnergyReport.from_dict(d) for n, d in energies.items()}))
    return units, groups, failures


def _write_report(data: dict, out: Path, progress: _Progress) -> Path:
    from mpgen.flows.report import save_report_data, write_report
    save_report_data(data, out / "report-data.json")
    path = write_report(data, out)
    progress(f"wrote {path} (figures in {out / 'figures'}) and {out / 'report-data.json'}")
    return path


def cmd_run(args, progress: _Progress) -> int:
    from mpgen.flows.report_data import command_line, tool_meta
    liberty = _liberty(args.liberty)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    units, groups, failures = _collect_units(args, progress, liberty, out, args.energy)
    data = {"meta": tool_meta(command_line(), liberty), "units": units, "area_groups": groups}
    _write_report(data, out, progress)
    if failures:
        raise CLIError("regression failed: " + "; ".join(failures))
    return 0


def cmd_report(args, progress: _Progress) -> int:
    from mpgen.flows import report_data as rd
    out = Path(args.output)
    if args.from_dir:
        from mpgen.flows.report import load_report_data
        src = Path(args.from_dir) / "report-data.json"
        if not src.is_file():
            raise CLIError(f"no report data at {src} (mpgen run/report writes it)")
        _write_report(load_report_data(src), out, progress)
        return 0
    liberty = _liberty(args.liberty)
    out.mkdir(parents=True, exist_ok=True)
    units, groups, failures = _collect_units(args, progress, liberty, out, args.energy)
    data: dict[str, Any] = {"meta": rd.tool_meta(rd.command_line(), liberty), "units": units,
                            "area_groups": groups, "notes": []}
    if not args.no_sweep:
        from mpgen.flows.sweep import run_sweep
        sw = rd.DEFAULT_SWEEP
        res = run_sweep(sw["unit"], sw["grid"], jobs=args.jobs, liberty=liberty,
                        out_dir=out / f"sweep-{sw['unit']}", progress=progress)
        print(res.table())
        data["sweeps"] = [res.to_dict()]
        failures += [f"sweep point {r['params']}: {r['error'] or 'regression failed'}"
                     for r in res.rows if r["status"] != "ok"]
    if not args.no_models:
        rows, notes = rd.model_energy_rows(units, progress=progress)
        data["model_energy"] = rows
        data["notes"] += notes
        rows, notes = rd.quality_rows(progress=progress)
        data["quality"] = rows
        data["notes"] += notes
    _write_report(data, out, progress)
    if failures:
        raise CLIError("failures: " + "; ".join(failures[:5]))
    return 0


#: Studies that regenerate tables in docs/: name → (module with ``main(argv) -> int``, help).
STUDIES: dict[str, tuple[str, str]] = {
    "fgmp-policy": ("mpgen.studies.fgmp_study",
                    "FGMP policy vs baselines on the real models (docs/fgmp_policy.md)"),
    "classifier-area": ("mpgen.studies.classifier_area",
                        "activation classifier vs the dot-product unit: area (docs/classifier.md)"),
    "fineq-accuracy": ("mpgen.studies.fineq_study",
                       "FineQ vs RTN INT2/3/4 on real weights (docs/fineq.md)"),
    "fineq-area": ("mpgen.studies.fineq_area",
                   "FineQ temporal array vs multiplier baselines: area and cycles (docs/fineq_hw.md)"),
    "model-energy": ("mpgen.studies.model_energy",
                     "FGMP block-precision mix x measured per-mode energy on the real models"),
}


def cmd_study(args, progress: _Progress) -> int:
    import importlib
    if args.name not in STUDIES:
        raise CLIError(f"unknown study {args.name!r}; choose from: {', '.join(STUDIES)}")
    module = importlib.import_module(STUDIES[args.name][0])
    return int(module.main(list(args.args)) or 0)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("mpgen")
    except Exception:  # not installed as a distribution
        return "unknown"


# --------------------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    unit_help = "\n".join(
        f"  {n:10s} {', '.join(s.default_configs)}" for n, s in _units.UNITS.items())
    p = argparse.ArgumentParser(
        prog="mpgen",
        description="Generate, verify and measure mixed-precision LLM arithmetic RTL.",
        epilog=f"units and their default configurations:\n{unit_help}\n\n"
               "Run `mpgen COMMAND --help` for the options of each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def unit_args(sp):
        sp.add_argument("unit", metavar="UNIT", help=f"unit name ({', '.join(_units.UNITS)})")
        sp.add_argument("--config", metavar="NAME",
                        help="one default configuration (default: all of them)")
        sp.add_argument("--param", metavar="K=V", action="append", default=[],
                        help="override a constructor parameter (repeatable), e.g. block_size=32")

    def job_args(sp):
        """Options shared by the all-units jobs (run, report)."""
        sp.add_argument("-o", "--output", metavar="DIR", default="mpgen-out",
                        help="output folder (default ./mpgen-out)")
        sp.add_argument("--liberty", metavar="FILE", help="Liberty (.lib) file for µm² and pJ")
        sp.add_argument("--simulator", choices=["verilator", "icarus", "all"], default="verilator",
                        help="simulator for the regressions (default verilator)")
        sp.add_argument("--seed", type=int, help="random seed for the regressions")
        sp.add_argument("--unit", action="append", metavar="UNIT",
                        help="only this unit (repeatable; default: all units)")

    sp = sub.add_parser("verilog", help="write Verilog for a unit",
                        description="Write <DIR>/<unit>-<config>.v for each selected configuration "
                                    "(<DIR>/<unit>.v for --param only).")
    unit_args(sp)
    sp.add_argument("-o", "--output", metavar="DIR", required=True, help="output folder")
    sp.set_defaults(func=cmd_verilog)

    sp = sub.add_parser("sim", help="run a unit's cocotb regression against the golden model",
                        description="Build the unit, simulate it with cocotb and compare it with "
                                    "the PyTorch golden model. Exit status 1 on any mismatch.")
    unit_args(sp)
    sp.add_argument("--simulator", choices=["verilator", "icarus", "all"], default="verilator",
                    help="simulator (default verilator; 'all' = every installed one)")
    sp.add_argument("--full", action="store_true", help="full regression instead of the quick one")
    sp.add_argument("--seed", type=int, help="random seed (default: a fresh one, printed in the log)")
    sp.set_defaults(func=cmd_sim)

    sp = sub.add_parser("area", help="estimate a unit's area with Yosys",
                        description="Synthesise with Yosys and print cells, NAND2-eq, transistors "
                                    "(and µm² with --liberty) per configuration and submodule.")
    unit_args(sp)
    sp.add_argument("--liberty", metavar="FILE", help="Liberty (.lib) file for µm² figures")
    sp.add_argument("-o", "--output", metavar="DIR", default="mpgen-out/area",
                    help="work folder for Yosys files (default mpgen-out/area)")
    sp.set_defaults(func=cmd_area)

    sp = sub.add_parser("run", help="the main job: Verilog, quick regression and area for "
                                    "every default configuration of every unit",
                        description="For each default configuration of each unit: generate "
                                    "Verilog, run the quick regression, estimate area; write "
                                    "report.md and report.json and print the area table.")
    job_args(sp)
    sp.add_argument("--energy", choices=["key", "all", "none"], default="key",
                    help="gate-level energy per mode (docs/energy.md) for the key configurations "
                         "(default: dotprod mixed-split and fp8-only, classifier bf16, FineQ 8x8 "
                         "and its W4A8/W8A8 baselines), all of them, or none")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("energy", help="energy per operation of each mode of a unit, from the "
                                       "switching activity of its gate-level netlist",
                        description="Synthesise, simulate the netlist with real-model stimulus "
                                    "(Verilator toggle coverage) and weight the toggles with the "
                                    "Liberty file's power data (generic weights without one). "
                                    "See docs/energy.md.")
    unit_args(sp)
    sp.add_argument("--liberty", metavar="FILE", help="Liberty (.lib) file (pJ; else generic GEU)")
    sp.add_argument("--ops", type=int, metavar="N", help="operations per mode (default: workload's)")
    sp.add_argument("--data", choices=["auto", "minilm", "synthetic"], default="auto",
                    help="stimulus data (default auto: all-MiniLM-L6-v2 if installed)")
    sp.add_argument("-o", "--output", metavar="DIR", default="mpgen-out/energy",
                    help="work and output folder (default mpgen-out/energy)")
    sp.set_defaults(func=cmd_energy)

    sp = sub.add_parser("report", help="the full report: run + dot-product sweep + model-level "
                                       "energy and quality, with plots",
                        description="Everything `mpgen run` does, plus the 12-point dot-product "
                                    "sweep (resumable), the FGMP model-level energy and quality "
                                    "vs FP4 fraction on the real models; writes DIR/report.md "
                                    "with PNG+SVG figures. --from re-renders saved data.")
    job_args(sp)
    sp.add_argument("--jobs", type=int, metavar="N", help="sweep worker processes")
    sp.add_argument("--energy", choices=["key", "all", "none"], default="all",
                    help="which configurations get the gate-level energy (default all)")
    sp.add_argument("--no-sweep", action="store_true", help="leave the sweep out")
    sp.add_argument("--no-models", action="store_true",
                    help="leave the model-level energy and quality studies out")
    sp.add_argument("--from", dest="from_dir", metavar="DIR",
                    help="re-render DIR/report-data.json into -o DIR without recomputing")
    sp.set_defaults(func=cmd_report)

    from .sweep import add_sweep_arguments, cmd_sweep
    sp = sub.add_parser("sweep", help="sweep a unit's parameters: regression, area and logic depth "
                                      "per point",
                        description="Cartesian grid of constructor parameters; each point runs the "
                                    "quick regression, Yosys area and logic depth; cached per point "
                                    "(resumable); CSV + JSON out. See docs/sweeps.md.")
    add_sweep_arguments(sp)
    sp.set_defaults(func=cmd_sweep)

    study_help = "\n".join(f"  {n:15s} {h}" for n, (_, h) in STUDIES.items())
    sp = sub.add_parser("study", help="run a model or design study (the tables in docs/)",
                        description="Run a study; arguments after NAME go to the study "
                                    "(`mpgen study NAME --help` lists them).",
                        epilog=f"studies:\n{study_help}",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("name", metavar="NAME", help=f"study name ({', '.join(STUDIES)})")
    sp.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the study")
    sp.set_defaults(func=cmd_study)
    return p


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mpgen`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    progress = _Progress(quiet=args.quiet)
    logger = logging.getLogger("mpgen")
    handler = _ProgressHandler(progress)
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        return args.func(args, progress)
    except KeyboardInterrupt:
        print("mpgen: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI reports every failure as one line
        if os.environ.get("MPGEN_DEBUG"):
            raise
        known = (CLIError, ValueError, TypeError, RuntimeError, OSError)
        prefix = "error" if isinstance(e, known) else f"internal error ({type(e).__name__})"
        print(f"mpgen: {prefix}: {_first_line(e)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
