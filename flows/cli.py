"""The ``mpgen`` command line (the one CLI; every job goes through :mod:`mpgen.flows.engine`).

    mpgen list [UNIT]                                               units, configs, parameters
    mpgen verilog UNIT [--config NAME] [--param k=v ...] [--prefix P] -o DIR   generate Verilog
    mpgen sim UNIT [--simulator verilator|icarus|all] [--full] [--seed N]   regression
    mpgen area UNIT [--liberty FILE] [--clock-ns T]                 Yosys area (one pass)
    mpgen timing UNIT --liberty FILE [--clock-ns T] [-v]            static timing, fmax, slack
    mpgen energy UNIT [--liberty FILE] [--ops N]                    energy per op per mode
    mpgen run [-o DIR] [--liberty FILE] [--energy key|all|none]     all of it, all units + report
    mpgen report [-o DIR] [--liberty FILE] [--from DIR]             run + sweep + model studies
    mpgen sweep UNIT --grid k=v1,v2 ... [--jobs N | --scheduler ADDR] design-space sweep
    mpgen study NAME [ARGS ...]                                     model/design studies

Without ``--config``/``--param`` a command covers every default configuration of the unit;
``--config NAME`` picks one, ``--param k=v`` overrides (or, alone, defines a single custom
configuration).  Measuring commands take ``--json`` (their records as a JSON list on stdout;
progress stays on stderr), ``--jobs`` and ``--scheduler``.  Failures end with one
``mpgen: error: ...`` line (a tool's own failing lines indented below it) and exit status 1
(``MPGEN_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import random
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Sequence

from mpgen.sim.runner import available_simulators, find_simulator

from . import engine
from .area import area_table, clock_gating_for, liberty_cells, liberty_nand2
from .engine import Point, PointResult, Settings
from .liberty import power_library
from .timing import TimingError, timing_library
from .records import (AreaRecord, EnergyRecord, ErrorRecord, RegressionRecord, TimingRecord,
                      to_dict)
from .report import load_report_data, md_table, save_report_data, write_report
from .report_data import records_of, tool_meta
from .sweep import add_sweep_arguments, cmd_sweep
from .units import UnitSpec, get_unit, parse_params, resolve, unit_names, units
from .verilog_out import verilog_file

__all__ = ["main", "CLIError", "STUDIES"]

EXIT_FAILURE = 1


class CLIError(Exception):
    """A failure to report as one line (plus a tool's own lines), without traceback."""


class _Progress:
    """Timestamped progress lines on stderr (``[  12.3s] message``)."""

    def __init__(self, quiet: bool = False):
        self.t0 = time.monotonic()
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


class _ProgressHandler(logging.Handler):
    def __init__(self, progress: _Progress):
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self.progress(record.getMessage())


class _Parser(argparse.ArgumentParser):
    """Usage errors as ``mpgen: error: ...`` with exit status 1, like every other error."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.print_usage(sys.stderr)
        print(f"mpgen: error: {message}", file=sys.stderr)
        sys.exit(EXIT_FAILURE)


# --------------------------------------------------------------------------- helpers


def _version() -> str:
    try:
        return version("mpgen")
    except PackageNotFoundError:  # not installed as a distribution
        return "unknown"


def _spec(unit: str) -> UnitSpec:
    try:
        return get_unit(unit)
    except ValueError as e:
        raise CLIError(str(e)) from None


def _slug(config: str, overrides: dict[str, Any]) -> str:
    """A configuration name that reflects parameter overrides (``fp8-only+formats=fp4``)."""
    extra = "+".join(f"{k}={v}" for k, v in overrides.items())
    if config == "custom":
        return extra or "default"
    return f"{config}+{extra}" if extra else config


def _points(spec: UnitSpec, args) -> list[Point]:
    """Points selected by ``--config``/``--param`` (module docstring), schema-checked."""
    try:
        overrides = parse_params(getattr(args, "param", None), spec)
    except ValueError as e:
        raise CLIError(str(e)) from None
    name = getattr(args, "config", None)
    if name is not None:
        if name not in spec.configs:
            raise CLIError(f"unknown configuration {name!r} for {spec.name}; choose from: "
                           f"{', '.join(spec.configs)}")
        selected = {name: {**spec.configs[name], **overrides}}
    elif overrides:
        selected = {"custom": overrides}
    else:
        selected = {k: dict(v) for k, v in spec.configs.items()} or {"default": {}}
    points = []
    for cfg, params in selected.items():
        label = _slug(cfg, overrides) if (overrides and name is not None) or cfg == "custom" else cfg
        auto = spec.is_auto("pipeline", params.get("pipeline"))
        # pipeline=auto: the shallowest choice shows whether the other parameters build
        _check_builds(spec, label, resolve(spec.pipeline_ladder)(params)[0] if auto else params)
        points.append(Point(spec.name, label, params))
    return points


def _check_builds(spec: UnitSpec, config: str, params: dict) -> None:
    """Parameter errors as one line before any tool runs."""
    try:
        engine.verilog_of(spec, params)
    except (TypeError, ValueError) as e:
        raise CLIError(f"bad parameters for {spec.name}/{config} {params}: {e}") from None


def _simulators(choice: str) -> tuple[str, ...]:
    if choice == "all":
        found = available_simulators()
        if not found:
            find_simulator("verilator")  # raises SimulatorNotFound with install advice
        return tuple(found)
    find_simulator(choice)
    return (choice,)


def _liberty(path: str | None) -> str | None:
    """The Liberty file, parsed now (before any build) so a bad file fails at once."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise CLIError(f"Liberty file not found: {path}")
    try:
        if not liberty_cells(p):
            raise ValueError("it defines no cells with an area")
        liberty_nand2(p)
        power_library(p)
    except (ValueError, KeyError, IndexError) as e:
        raise CLIError(f"cannot use Liberty file {path}: {e}") from None
    return str(p.resolve())


def _gating(liberty: str | None, args) -> bool:
    """The ``--clock-gating`` choice as the settings' default (``both`` is handled by
    :func:`_gated_points`); ``on`` needs a Liberty file with a clock-gating cell."""
    choice = getattr(args, "clock_gating", "auto")
    wanted = {"auto": None, "off": False}.get(choice, True)
    if liberty is None and wanted:
        raise CLIError("--clock-gating on/both needs --liberty (its integrated clock-gating cell)")
    try:
        return clock_gating_for(liberty, wanted)
    except TimingError as e:
        raise CLIError(str(e)) from None


def _gated_points(points: list[Point], args) -> list[Point]:
    """With ``--clock-gating both``, each point ungated and gated (``+ungated``/``+gated``)."""
    if getattr(args, "clock_gating", "auto") != "both":
        return points
    return [dataclasses.replace(p, config=f"{p.config}+{tag}", clock_gating=gated,
                                base_config=p.base_config or p.config)
            for p in points for tag, gated in (("ungated", False), ("gated", True))]


def _has_timing(liberty: str | None, args, progress, needed: bool = False) -> bool:
    """Whether *liberty* has delay tables (checked before any build).  Without them, a
    command that needs timing (``needed``, or ``--clock-ns``) fails; others say so and go on
    with area and energy only."""
    clock = getattr(args, "clock_ns", None)
    if clock is not None and clock <= 0:
        raise CLIError(f"--clock-ns must be a positive clock period in ns, not {clock:g}")
    if liberty is None:
        if clock is not None:
            raise CLIError("--clock-ns needs --liberty: timing comes from the Liberty file's "
                           "delay tables")
        if needed:
            progress("no Liberty file: no timing exists for generic gates; logic depth only "
                     "(pass --liberty FILE for static timing)")
        return False
    try:
        timing_library(liberty)
    except TimingError as e:
        if needed or clock is not None:
            raise CLIError(f"cannot time with Liberty file {liberty}: {e}") from None
        progress(f"{e}: no timing stage")
        return False
    return True


def _seed(args, progress) -> int:
    if getattr(args, "seed", None) is not None:
        return int(args.seed)
    seed = random.SystemRandom().randrange(1, 2 ** 31)
    progress(f"seed {seed} (pass --seed {seed} to repeat this run)")
    return seed


def _executor(args):
    """``(executor, client)`` for ``--scheduler`` (Dask), else ``(None, None)``."""
    address = getattr(args, "scheduler", None)
    if not address:
        return None, None
    try:
        from distributed import Client  # optional extra 'cluster'
    except ImportError:
        raise CLIError("--scheduler needs Dask distributed: pip install 'mpgen[cluster]'") from None
    client = Client(address)
    return client.get_executor(pure=False), client


def _run(points: list[Point], settings: Settings, args, progress) -> list[PointResult]:
    if getattr(args, "jobs", None) is not None and args.jobs < 1:
        raise CLIError(f"--jobs must be at least 1, not {args.jobs}")
    executor, client = _executor(args)
    try:
        try:
            points = engine.resolve_auto_pipelines(
                points, settings, progress=progress, jobs=getattr(args, "jobs", None),
                executor=executor, force=getattr(args, "force", False))
        except ValueError as e:
            raise CLIError(str(e)) from None
        return engine.run_points(points, settings, jobs=getattr(args, "jobs", None),
                                 executor=executor, force=getattr(args, "force", False),
                                 progress=progress)
    finally:
        if client is not None:
            client.close()


def _records(results: Sequence[PointResult]) -> list:
    return [r for res in results for r in res.records]


def _emit_json(results: Sequence[PointResult]) -> None:
    json.dump([to_dict(r) for r in _records(results)], sys.stdout, indent=1, default=str)
    sys.stdout.write("\n")


def _failures(results: Sequence[PointResult]) -> list[str]:
    out = []
    for r in _records(results):
        if isinstance(r, ErrorRecord):
            out.append(f"{r.unit}/{r.config} ({r.stage}): {r.error}")
        elif isinstance(r, RegressionRecord) and not r.passed:
            out.append(f"{r.unit}/{r.config} on {r.simulator}: {r.mismatches} mismatches of "
                       f"{r.vectors} vectors" + (f"\n{r.details}" if r.details else ""))
        elif isinstance(r, EnergyRecord) and r.mismatches:
            out.append(f"{r.unit}/{r.config} {r.mode}: {r.mismatches} gate-level mismatches")
    return out


def _raise_failures(results: Sequence[PointResult], what: str = "failed") -> None:
    bad = _failures(results)
    if bad:
        first = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CLIError(f"{what}: {first}{more}")


def energy_table(records: Sequence[EnergyRecord]) -> str:
    """Markdown table: configuration × mode → energy per operation (dynamic + leakage at the
    clock), its breakdown, power and GOPS/W; then where the figures come from."""
    leak = any(e.leakage_pj_per_op is not None for e in records)
    head = ["config", "mode", "energy / op", "internal", "switching", "clock"]
    if leak:
        head += ["dynamic", "leakage", "clock period", "mW", "GOPS/W"]
    head += ["± 2σ (batches)", "ops", "cycles / op", "outputs checked"]
    rows = []
    for e in records:
        b = e.breakdown_per_op
        row = [e.config, e.mode, f"{e.energy_per_op:.3f} {e.energy_unit}/{e.op_name}",
               f"{b.get('internal', 0):.3f}", f"{b.get('switching', 0):.3f}", f"{b.get('clock', 0):.3f}"]
        if leak:
            row += ([f"{e.dynamic_pj_per_op:.3f}", f"{e.leakage_pj_per_op:.3f}", f"{e.clock_ns:.2f} ns",
                     f"{e.power_mw:.3f}", f"{e.gops_per_w:.1f}"] if e.leakage_pj_per_op is not None
                    else ["–"] * 5)
        spread = (f"± {e.spread_2sigma_per_op:.3f} ({len(e.batch_energies_per_op)})"
                  if e.batch_energies_per_op else "–")
        rows.append(row + [spread, f"{e.ops:,}", f"{e.cycles / e.ops:.2f}", e.vectors])
    lines = [md_table(head, rows, "ll" + "r" * (len(head) - 2)).rstrip("\n"), ""]
    for e in records:
        where = (f"{e.config} {e.mode}: activity from {e.simulator or 'gate-level simulation'}, "
                 f"{e.ops} {e.op_name}s of {e.source or 'the workload'}; "
                 f"{e.nets_observed:.1%} of the nets observed; ")
        if e.liberty:
            where += f"Liberty {Path(e.liberty).name}" + (f" ({e.corner})" if e.corner else "")
        else:
            where += "generic weights (no Liberty file)"
        where += (f"; leakage at {e.clock_ns:.2f} ns" if e.clock_ns is not None else "; no leakage "
                  "(needs a Liberty file with timing data)")
        where += f"; clock gating {'on' if e.clock_gating else 'off'}"
        lines.append(f"- {where}")
    return "\n".join(lines) + "\n"


def _area_table(spec: UnitSpec, records: Sequence[AreaRecord]) -> str:
    reports = {r.config: engine.area_report(r) for r in records}
    try:
        return area_table(reports, spec.area_groups)
    except ValueError:
        return area_table(reports)


def timing_table(records: Sequence[TimingRecord]) -> str:
    """Markdown table: configuration → clock period needed, fmax, worst path (and, with a
    target clock, slack and the area at that clock)."""
    target = any(r.clock_ns is not None for r in records)
    head = ["config", "critical path", "fmax", "worst group", "start → end"]
    if target:
        head += ["clock", "slack", "closes", "µm² at clock"]
    rows = []
    for r in records:
        crit = r.worst_path
        row = [r.config, f"{r.critical_path_ns:.3f} ns", f"{r.fmax_mhz:.1f} MHz", r.critical_group,
               f"{crit['start']} → {crit['end']}" if crit else "–"]
        if target:
            row += ([f"{r.clock_ns:g} ns", f"{r.slack_ns:+.3f} ns", "yes" if r.closes else "no",
                     f"{r.area_um2:,.1f}"] if r.clock_ns is not None else ["–"] * 4)
        rows.append(row)
    corner = records[0].corner if records else ""
    return (md_table(head, rows, "lrrll" + ("rrlr" if target else ""))
            + f"\nLiberty corner {corner}; ideal clock, no wires (docs/timing.md).\n")


def timing_paths(r: TimingRecord) -> str:
    """The worst path of each group of *r*, cell by cell (``mpgen timing -v``)."""
    out = []
    for p in r.paths:
        out.append(f"{r.config} {p['group']}: {p['start']} → {p['end']}: arrival "
                   f"{p['arrival_ns']:.3f} ns + setup {p['setup_ns']:.3f} ns = "
                   f"{p['required_period_ns']:.3f} ns\n")
        out.append("| instance | cell | arc | edge | net | incr ns | arrival ns | transition ns | load pF |")
        out.append("|---|---|---|---|---|---:|---:|---:|---:|")
        for s in p["steps"]:
            out.append(f"| {s['instance']} | {s['cell']} | {s['arc']} | {s['edge']} | {s['net']} | "
                       f"{s['incr_ns']:.4f} | {s['arrival_ns']:.4f} | {s['transition_ns']:.4f} | "
                       f"{s['load_pf']:.5f} |")
        out.append("")
    return "\n".join(out)


def _print_tables(results: Sequence[PointResult], verbose: bool = False) -> None:
    by_unit: dict[str, list] = {}
    for r in _records(results):
        by_unit.setdefault(r.unit, []).append(r)
    for unit, recs in by_unit.items():
        spec = get_unit(unit)
        reg = [r for r in recs if isinstance(r, RegressionRecord)]
        area = [r for r in recs if isinstance(r, AreaRecord)]
        energy = [r for r in recs if isinstance(r, EnergyRecord)]
        timing = [r for r in recs if isinstance(r, TimingRecord)]
        print(f"## {unit}\n")
        for r in reg:
            print(f"{'PASS' if r.passed else 'FAIL'} {unit}/{r.config} [{r.simulator}] "
                  f"{r.vectors} vectors, {r.mismatches} mismatches")
        if reg:
            print()
        if area:
            print(_area_table(spec, area))
        if timing:
            print(timing_table(timing))
            if verbose:
                for r in timing:
                    print(timing_paths(r))
        if energy:
            print(energy_table(energy))


# --------------------------------------------------------------------------- commands


def cmd_list(args, progress) -> int:
    names = [args.unit] if args.unit else unit_names()
    for name in names:
        spec = _spec(name)
        print(f"{spec.name}: {spec.description}")
        for cfg, params in spec.configs.items():
            key = (" (key" + (", energy" if cfg in spec.energy_default and spec.has_energy else "")
                   + ": in mpgen run)") if cfg in spec.run_configs else ""
            print(f"  config {cfg}: {params or '(defaults)'}{key}")
        for p in spec.params:
            print(f"  param  {p.describe()}" + (f" — {p.help}" if p.help else ""))
        if spec.regression_sizes:
            for size, what in spec.regression_sizes.items():
                print(f"  {size:6s} regression: {what}")
        if spec.has_energy:
            print("  energy: yes (gate-level, per mode)")
        if spec.doc:
            print(f"  docs: docs/{spec.doc}")
    return 0


def cmd_verilog(args, progress) -> int:
    spec = _spec(args.unit)
    out = Path(args.output)
    fingerprint = engine.stage_fingerprints(spec)["verilog"]
    for p in _points(spec, args):
        path, text = verilog_file(spec, p.config, p.params, out, prefix=args.prefix,
                                  version=_version(), fingerprint=fingerprint)
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(path)
    return 0


def _measure(points: list[Point], settings: Settings, args, progress,
             what: str = "failed") -> int:
    """Run *points*, print their records (``--json``) or tables, and fail on any failure."""
    results = _run(points, settings, args, progress)
    if args.json:
        _emit_json(results)
    else:
        _print_tables(results, getattr(args, "verbose", False))
    _raise_failures(results, what)
    return 0


def cmd_sim(args, progress) -> int:
    spec = _spec(args.unit)
    if spec.regression is None:
        raise CLIError(f"unit {spec.name} has no regression testbench")
    points = _points(spec, args)
    settings = Settings(regression=True, simulators=_simulators(args.simulator),
                        quick=not args.full, seed=_seed(args, progress), area=False)
    return _measure(points, settings, args, progress, "regression failed")


def cmd_area(args, progress) -> int:
    spec = _spec(args.unit)
    liberty = _liberty(args.liberty)
    timed = _has_timing(liberty, args, progress)
    points = _gated_points(_points(spec, args), args)
    settings = Settings(regression=False, area=True, depth=args.depth, liberty=liberty,
                        timing=timed, clock_ns=args.clock_ns, clock_gating=_gating(liberty, args))
    return _measure(points, settings, args, progress)


def cmd_timing(args, progress) -> int:
    spec = _spec(args.unit)
    liberty = _liberty(args.liberty)
    timed = _has_timing(liberty, args, progress, needed=True)
    points = _gated_points(_points(spec, args), args)
    settings = Settings(regression=False, area=True, depth=not timed, liberty=liberty,
                        timing=timed, clock_ns=args.clock_ns, clock_gating=_gating(liberty, args))
    return _measure(points, settings, args, progress)


def cmd_energy(args, progress) -> int:
    spec = _spec(args.unit)
    if not spec.has_energy:
        raise CLIError(f"unit {spec.name} has no energy workloads")
    liberty = _liberty(args.liberty)
    timed = _has_timing(liberty, args, progress)
    points = _gated_points(_points(spec, args), args)
    if args.ops is not None and args.ops < 1:
        raise CLIError(f"--ops must be a positive number of operations, not {args.ops}")
    if args.batches < 1:
        raise CLIError(f"--batches must be at least 1, not {args.batches}")
    settings = Settings(regression=False, area=False, liberty=liberty, energy="all",
                        energy_ops=args.ops, energy_batches=args.batches, data=args.data, seed=0,
                        timing=timed, clock_gating=_gating(liberty, args),
                        clock_ns=args.clock_ns)
    return _measure(points, settings, args, progress)


def _job_points(args) -> list[Point]:
    names = args.unit or unit_names()
    points = []
    for name in names:
        spec = _spec(name)
        configs = spec.run_configs if args.configs == "key" else tuple(spec.configs)
        points += [Point(spec.name, cfg, dict(spec.configs[cfg])) for cfg in configs]
    return points


def _job(args, progress, energy: str) -> tuple[list[PointResult], str | None]:
    liberty = _liberty(args.liberty)
    timed = _has_timing(liberty, args, progress)
    settings = Settings(regression=True, simulators=_simulators(args.simulator), quick=True,
                        seed=args.seed, area=True, liberty=liberty, energy=energy,
                        timing=timed, clock_ns=args.clock_ns, clock_gating=_gating(liberty, args))
    return _run(_gated_points(_job_points(args), args), settings, args, progress), liberty


def _write_report(data: dict, out: Path, progress) -> Path:
    save_report_data(data, out / "report-data.json")
    path = write_report(data, out)
    progress(f"wrote {path} (figures in {out / 'figures'}) and {out / 'report-data.json'}")
    return path


def _command_line() -> str:
    return "mpgen " + " ".join(sys.argv[1:])


def cmd_run(args, progress) -> int:
    out = Path(args.output)
    results, liberty = _job(args, progress, args.energy)
    if args.json:
        _emit_json(results)
    else:
        _print_tables(results)
    out.mkdir(parents=True, exist_ok=True)
    data = {"meta": tool_meta(_command_line(), liberty), "records": records_of(results)}
    _write_report(data, out, progress)
    _raise_failures(results)
    return 0


def cmd_report(args, progress) -> int:
    out = Path(args.output)
    if args.from_dir:
        src = Path(args.from_dir) / "report-data.json"
        if not src.is_file():
            raise CLIError(f"no report data at {src} (mpgen run/report writes it)")
        _write_report(load_report_data(src), out, progress)
        return 0
    results, liberty = _job(args, progress, args.energy)
    if not args.json:
        _print_tables(results)
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"meta": tool_meta(_command_line(), liberty),
                            "records": records_of(results), "notes": []}
    failures = _failures(results)
    for name, section in _report_extras(args):
        got = section(data=data, jobs=args.jobs, liberty=liberty, out=out, progress=progress)
        for key, value in got.items():
            if key == "notes":
                data["notes"] += value
            elif key == "failures":
                failures += value
            else:
                data[key] = value
    _write_report(data, out, progress)
    if args.json:
        _emit_json(results)
    if failures:
        raise CLIError("failures: " + "; ".join(failures[:5]))
    return 0


#: Parts of ``mpgen report`` beyond the default configurations: (name, "module:function",
#: the flag that leaves it out).  Each takes the report data so far and returns keys to add.
REPORT_EXTRAS = (
    ("sweep", "mpgen.flows.report_data:default_sweep", "no_sweep"),
    ("model studies", "mpgen.studies.model_report:report_section", "no_models"),
)


def _report_extras(args):
    for name, ref, flag in REPORT_EXTRAS:
        if not getattr(args, flag, False):
            module, _, attr = ref.partition(":")
            yield name, getattr(importlib.import_module(module), attr)


#: Studies that regenerate tables in docs/: name → (module with ``main(argv) -> int``, help).
STUDIES: dict[str, tuple[str, str]] = {
    "fgmp-policy": ("mpgen.studies.fgmp_study",
                    "FGMP policy vs baselines on the real models (docs/fgmp_policy.md)"),
    "classifier-area": ("mpgen.studies.classifier_area",
                        "activation classifier vs the dot-product unit: area (docs/classifier.md)"),
    "format-accuracy": ("mpgen.studies.format_accuracy",
                        "BlockDialect vs MXFP4 vs NVFP4 on the real models (docs/blockdialect.md)"),
    "resq-accuracy": ("mpgen.studies.resq_accuracy",
                      "ResQ vs RTN W4A4 / W8A8 and FGMP on the real models (docs/resq.md)"),
    "classifier-widths": ("mpgen.studies.classifier_widths",
                          "narrower classifier score widths: decision agreement (docs/classifier.md)"),
    "fineq-accuracy": ("mpgen.studies.fineq_study",
                       "FineQ vs RTN INT2/3/4 on real weights (docs/fineq.md)"),
    "fineq-area": ("mpgen.studies.fineq_area",
                   "FineQ temporal array vs multiplier baselines: area and cycles (docs/fineq_hw.md)"),
    "model-energy": ("mpgen.studies.model_energy",
                     "FGMP block-precision mix x measured per-mode energy on the real models"),
}


def cmd_study(args, progress) -> int:
    if args.name not in STUDIES:
        raise CLIError(f"unknown study {args.name!r}; choose from: {', '.join(STUDIES)}")
    module = importlib.import_module(STUDIES[args.name][0])
    return int(module.main(list(args.args)) or 0)


# --------------------------------------------------------------------------- parser


def _parser() -> argparse.ArgumentParser:
    unit_help = "\n".join(f"  {n:14s} {s.description}" for n, s in units().items())
    p = _Parser(
        prog="mpgen",
        description="Generate, verify and measure mixed-precision LLM arithmetic RTL.",
        epilog=f"units (mpgen list shows configurations and parameters):\n{unit_help}\n\n"
               "Run `mpgen COMMAND --help` for the options of each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"mpgen {_version()}")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True,
                           parser_class=_Parser)
    names = ", ".join(unit_names())

    def unit_args(sp):
        sp.add_argument("unit", metavar="UNIT", help=f"unit name ({names})")
        sp.add_argument("--config", metavar="NAME",
                        help="one default configuration (default: all of them; mpgen list)")
        sp.add_argument("--param", metavar="K=V", action="append", default=[],
                        help="override a parameter (repeatable), e.g. block_size=32")

    def engine_args(sp, json_help="print the result records as a JSON list on stdout"):
        sp.add_argument("--json", action="store_true", help=json_help)
        how = sp.add_mutually_exclusive_group()
        how.add_argument("--jobs", type=int, metavar="N",
                         help="worker processes (default: the number of CPUs)")
        how.add_argument("--scheduler", metavar="ADDRESS",
                         help="run on a Dask distributed cluster (needs mpgen[cluster])")
        sp.add_argument("--force", action="store_true", help="recompute even what is cached")

    def clock_arg(sp):
        sp.add_argument("--clock-ns", type=float, metavar="T",
                        help="target clock period in ns (needs --liberty): delay-driven "
                             "synthesis toward it; timing reports slack and whether it closes")
        sp.add_argument("--clock-gating", choices=["auto", "on", "off", "both"], default="auto",
                        help="clock-gate registers that share an enable with the Liberty's "
                             "integrated clock-gating cell (auto: when the Liberty has one; "
                             "both: every configuration with and without)")

    def job_args(sp):
        sp.add_argument("-o", "--output", metavar="DIR", default="mpgen-out",
                        help="output folder (default ./mpgen-out)")
        sp.add_argument("--liberty", metavar="FILE", help="Liberty (.lib) file for µm², ns and pJ")
        clock_arg(sp)
        sp.add_argument("--simulator", choices=["verilator", "icarus", "all"], default="verilator",
                        help="simulator for the regressions (default verilator)")
        sp.add_argument("--seed", type=int, default=1,
                        help="regression seed (default 1: a re-run reads the cache)")
        sp.add_argument("--unit", action="append", metavar="UNIT",
                        help="only this unit (repeatable; default: all units)")
        engine_args(sp)

    sp = sub.add_parser("list", help="units, their configurations and parameters")
    sp.add_argument("unit", metavar="UNIT", nargs="?", help="only this unit")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("verilog", help="write Verilog for a unit",
                        description="Write <DIR>/<unit>-<config>.v for each selected "
                                    "configuration, with a header comment (mpgen version, source "
                                    "fingerprint, parameters, port layout).")
    unit_args(sp)
    sp.add_argument("-o", "--output", metavar="DIR", required=True, help="output folder")
    sp.add_argument("--prefix", metavar="NAME",
                    help="module name prefix: top module NAME, submodules NAME.sub (default: "
                         "unit and configuration, e.g. dotprod_mixed_split)")
    sp.set_defaults(func=cmd_verilog)

    sp = sub.add_parser("sim", help="run a unit's regression against the golden model",
                        description="Build the unit, simulate it with cocotb and compare it with "
                                    "the PyTorch golden model. Exit status 1 on any mismatch.")
    unit_args(sp)
    sp.add_argument("--simulator", choices=["verilator", "icarus", "all"], default="verilator",
                    help="simulator (default verilator; 'all' = every installed one)")
    sp.add_argument("--full", action="store_true", help="full regression instead of the quick one")
    sp.add_argument("--seed", type=int, help="random seed (default: a fresh one, printed)")
    engine_args(sp)
    sp.set_defaults(func=cmd_sim)

    sp = sub.add_parser("area", help="a unit's area with Yosys",
                        description="Synthesise with Yosys (one hierarchical pass) and print "
                                    "cells, NAND2-eq (and µm² with --liberty) per configuration "
                                    "and breakdown group.")
    unit_args(sp)
    sp.add_argument("--liberty", metavar="FILE",
                    help="Liberty (.lib) file: µm², library NAND2-eq, and static timing")
    clock_arg(sp)
    sp.add_argument("--depth", action="store_true", help="also the logic depth (ltp)")
    engine_args(sp)
    sp.set_defaults(func=cmd_area)

    sp = sub.add_parser("timing", help="static timing of a unit: worst paths, fmax, slack",
                        description="Synthesise with the Liberty file and time the mapped netlist "
                                    "from the library's NLDM delay tables: worst reg-to-reg, "
                                    "in-to-reg, reg-to-out and in-to-out paths, the clock "
                                    "period needed and fmax; with --clock-ns, delay-driven "
                                    "synthesis, slack and whether it closes. Without --liberty "
                                    "only the logic depth exists. See docs/timing.md.")
    unit_args(sp)
    sp.add_argument("--liberty", metavar="FILE", help="Liberty (.lib) file with delay tables")
    clock_arg(sp)
    sp.add_argument("-v", "--verbose", action="store_true",
                    help="list every worst path cell by cell")
    engine_args(sp)
    sp.set_defaults(func=cmd_timing)

    sp = sub.add_parser("energy", help="energy per operation of each mode of a unit, from the "
                                       "switching activity of its gate-level netlist",
                        description="Synthesise, simulate the netlist with real-model stimulus "
                                    "(Verilator toggle coverage) and weight the toggles with the "
                                    "Liberty file's power data (generic weights without one). "
                                    "See docs/energy.md.")
    unit_args(sp)
    sp.add_argument("--liberty", metavar="FILE", help="Liberty (.lib) file (pJ; else generic GEU)")
    clock_arg(sp)
    sp.add_argument("--ops", type=int, metavar="N",
                    help="operations per mode, in all batches (default 10,000)")
    sp.add_argument("--batches", type=int, metavar="B", default=5,
                    help="independent batches the operations are split into; their spread "
                         "(2σ) is printed (default 5)")
    sp.add_argument("--data", choices=["auto", "minilm", "synthetic"], default="auto",
                    help="stimulus data (default auto: all-MiniLM-L6-v2 if installed)")
    engine_args(sp)
    sp.set_defaults(func=cmd_energy)

    sp = sub.add_parser("run", help="the main job: Verilog, quick regression, area (and energy "
                                    "for the key configurations) of every unit, and the report",
                        description="For each default configuration of each unit: generate "
                                    "Verilog, run the quick regression, synthesise; gate-level "
                                    "energy for the key configurations; write DIR/report.md.")
    job_args(sp)
    sp.add_argument("--configs", choices=["key", "all"], default="key",
                    help="each unit's key configurations (default; mpgen list marks them) or "
                         "every default configuration")
    sp.add_argument("--energy", choices=["key", "all", "none"], default="key",
                    help="gate-level energy for the configurations each unit marks for it "
                         "(default; mpgen list), for all that run, or none")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("report", help="the full report: run + dot-product sweep + model-level "
                                       "energy and quality, with plots",
                        description="Everything `mpgen run` does, plus the dot-product sweep, "
                                    "the FGMP model-level energy and quality vs FP4 fraction on "
                                    "the real models; writes DIR/report.md with PNG+SVG "
                                    "figures. --from re-renders saved data.")
    job_args(sp)
    sp.add_argument("--configs", choices=["key", "all"], default="all",
                    help="every default configuration of each unit (default) or the key ones")
    sp.add_argument("--energy", choices=["key", "all", "none"], default="all",
                    help="which configurations get the gate-level energy (default all)")
    sp.add_argument("--no-sweep", action="store_true", help="leave the sweep out")
    sp.add_argument("--no-models", action="store_true",
                    help="leave the model-level energy and quality studies out")
    sp.add_argument("--from", dest="from_dir", metavar="DIR",
                    help="re-render DIR/report-data.json into -o DIR without recomputing")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("sweep", help="sweep a unit's parameters: regression, area, logic depth "
                                      "and energy per point",
                        description="Cartesian grid of parameters; each point runs the quick "
                                    "regression, Yosys area and logic depth and the gate-level "
                                    "energy; cached per stage (resumable); CSV + JSON out. See "
                                    "docs/sweeps.md.")
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


def _error_text(e: BaseException) -> str:
    """First line after ``mpgen: error:``; further lines (a tool's own output) indented."""
    text = str(e).strip() or type(e).__name__
    first, *rest = text.splitlines()
    rest = [ln for ln in rest if ln.strip()][-20:]
    return first + "".join(f"\n    {ln}" for ln in rest)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mpgen`` console script; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help, --version (0) or a usage error (1)
        return int(e.code or 0)
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
    except BrokenPipeError:  # `mpgen list | head`: the reader left; nothing more to say
        sys.stdout = open(os.devnull, "w")
        return 0
    except Exception as e:  # noqa: BLE001 - the CLI reports every failure as one line
        if os.environ.get("MPGEN_DEBUG"):
            raise
        known = (CLIError, ValueError, TypeError, RuntimeError, OSError)
        prefix = "error" if isinstance(e, known) else f"internal error ({type(e).__name__})"
        print(f"mpgen: {prefix}: {_error_text(e)}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
