"""Parameter sweeps: a grid of points through the engine (regression, area, logic depth, energy).

    mpgen sweep UNIT --grid NAME=V1,V2 [--grid ...] [--jobs N | --scheduler ADDRESS]

A *grid* maps parameter names of a registered unit (:mod:`mpgen.flows.units`; names and
values are checked against its schema) to lists of values; its points are their cartesian
product.  Every point goes through :func:`mpgen.flows.engine.run_points`, the same pipeline
and content-addressed cache as ``mpgen run`` (quick regression, one-pass Yosys area with
logic depth, and gate-level energy per mode unless ``energy=False``), so a repeated or
interrupted sweep only runs what is not cached yet, and a change of RTL, testbench, golden
model, Liberty file or tools invalidates exactly the stages it affects.  Stages that failed
(status ``error``) are never cached, so the next run retries them; a regression that ran and
found mismatches (status ``fail``) is a result and is cached.

**Executors.**  A local process pool (``jobs``) or any :class:`concurrent.futures.Executor`
(``--scheduler ADDRESS``: Dask ``Client(ADDRESS).get_executor()``).  Dask workers need mpgen,
the simulator and Yosys installed, the same mpgen code (checked: a worker whose code
fingerprint differs returns an error row) and the Liberty path readable; units must be
registered when :mod:`mpgen.flows.units` is imported (a unit registered at run time only
reaches forked local workers).

The result is a :class:`SweepResult`: one row per point (flat columns, :data:`COLUMNS`) written
as ``sweep.csv`` and ``sweep.json``.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import datetime
import io
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import engine
from .area import check_clock_ns, clock_gating_for
from .records import AreaRecord, EnergyRecord, ErrorRecord, RegressionRecord, TimingRecord
from .timing import TimingError, timing_library
from .units import get_unit, parse_params

__all__ = [
    "FLOW_VERSION",
    "SweepResult",
    "parse_grid",
    "grid_points",
    "point_label",
    "run_sweep",
    "add_sweep_arguments",
    "cmd_sweep",
]

#: The engine's flow version (what a point computes), recorded in sweep.json.
FLOW_VERSION = engine.FLOW_VERSION

#: Why the energy columns are empty (when they are).
ENERGY_NOTE = ("energy not modelled: the unit's spec has no energy_modes/workload hooks; "
               "the columns stay empty rather than guessed")
NO_ENERGY_NOTE = "energy not requested (--no-energy)"

#: Result columns of a row, in CSV order (after the parameter columns).
COLUMNS = (
    "status", "cells", "nand2_eq", "transistors", "area_um2", "lib_nand2_eq", "logic_depth",
    "critical_path_ns", "fmax_mhz", "slack_ns", "closes", "energy_per_op", "energy_unit", "simulator", "vectors", "mismatches", "regression_passed",
    "seconds_regression", "seconds_area", "seconds_depth", "seconds_timing", "seconds_energy", "seconds_total", "cached", "point",
    "worker", "finished_at", "error_stage", "error",
)

Progress = Callable[[str], None]


# --------------------------------------------------------------------------- grid


def parse_grid(items: Sequence[str] | None, spec=None) -> dict[str, list]:
    """``["block_size=8,16", "organisation=split,shared"]`` → ``{name: [values]}``.

    Values are converted by the unit's parameter schema (*spec*, a
    :class:`~mpgen.flows.units.UnitSpec`) or, without one, integers become ``int``;
    :data:`CLOCK_AXIS` (``clock_ns``) is the target clock period, not a unit parameter.  Raises
    ``ValueError`` for a malformed item, an unknown name, an empty value list, a repeated
    name or a repeated value.
    """
    grid: dict[str, list] = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        if not sep:
            raise ValueError(f"bad grid item {item!r}: expected NAME=V1,V2,..., "
                             "e.g. block_size=8,16,32")
        raw = [v.strip() for v in values.split(",")]
        if not raw or any(v == "" for v in raw):
            raise ValueError(f"bad grid item {item!r}: empty value in the list")
        if key.strip() == CLOCK_AXIS:
            parsed = [{CLOCK_AXIS: _clock_value(v, item)} for v in raw]
        else:
            parsed = [parse_params([f"{key}={v}"], spec) for v in raw]  # validates the name too
        name = next(iter(parsed[0]))
        if name in grid:
            raise ValueError(f"parameter {name!r} appears twice in the grid")
        vals = [p[name] for p in parsed]
        if len(set(map(repr, vals))) != len(vals):
            raise ValueError(f"repeated value in grid item {item!r}")
        grid[name] = vals
    return grid


#: The grid axis that is the target clock period (ns) of delay-driven synthesis.
CLOCK_AXIS = "clock_ns"


def _clock_value(text: str, item: str) -> float:
    try:
        return check_clock_ns(float(text))
    except ValueError:
        raise ValueError(f"bad grid item {item!r}: {CLOCK_AXIS} values are positive clock "
                         f"periods in ns, not {text!r}") from None


def grid_points(grid: Mapping[str, Sequence]) -> list[dict]:
    """Cartesian product of *grid*, the first name varying slowest."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def point_label(params: Mapping) -> str:
    """``block_size=8,pipeline=2``: a point's configuration name in records and reports."""
    return ",".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _row(res: engine.PointResult, params: Mapping, energy: bool) -> dict:
    """The flat sweep row of one point's records."""
    row: dict[str, Any] = {"unit": res.point.unit, "params": dict(params)}
    row.update({c: None for c in COLUMNS})
    row.update(cached=res.cached, seconds_total=res.seconds, finished_at=_now(), worker=res.worker,
               flow_version=FLOW_VERSION, energy_note=None if energy else NO_ENERGY_NOTE,
               point=point_label(params))
    if energy and not get_unit(res.point.unit).has_energy:
        row["energy_note"] = ENERGY_NOTE
    for r in res.records:
        if isinstance(r, RegressionRecord):
            row.update(simulator=r.simulator, vectors=r.vectors, mismatches=r.mismatches,
                       regression_passed=r.passed, seconds_regression=r.seconds)
            if not r.passed:
                row["regression_details"] = r.details
        elif isinstance(r, AreaRecord):
            row.update(cells=r.cells, nand2_eq=r.nand2_eq, transistors=r.transistors,
                       area_um2=r.area_um2, lib_nand2_eq=r.nand2_eq if r.liberty else None,
                       logic_depth=r.logic_depth, seconds_area=r.seconds)
        elif isinstance(r, TimingRecord):
            row.update(critical_path_ns=r.critical_path_ns, fmax_mhz=r.fmax_mhz,
                       slack_ns=r.slack_ns, closes=r.closes, seconds_timing=r.seconds)
        elif isinstance(r, EnergyRecord):
            row.setdefault("energy_per_op", None)
            row["energy_per_op"] = {**(row["energy_per_op"] or {}), r.mode: r.energy_per_op}
            row.update(energy_unit=r.energy_unit, seconds_energy=r.seconds)
        elif isinstance(r, ErrorRecord):
            row.update(status="error", error_stage=r.stage, error=r.error.splitlines()[0])
            row["traceback"] = r.error
    if row["status"] is None:
        row["status"] = "ok" if row["regression_passed"] in (True, None) else "fail"
    return row


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class SweepResult:
    """Rows of a sweep, in grid order (one per point), and where they were written."""

    unit: str
    grid: dict
    rows: list[dict]
    cache_dir: Path
    liberty: str | None = None
    seconds: float = 0.0
    csv_path: Path | None = None
    json_path: Path | None = None

    @property
    def computed(self) -> int:
        """Points run by this sweep (not read from the cache; errors included)."""
        return sum(not r["cached"] for r in self.rows)

    @property
    def errors(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "error"]

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "fail"]

    def energy_modes(self) -> list[str]:
        modes: list[str] = []
        for r in self.rows:
            for m in r.get("energy_per_op") or {}:
                if m not in modes:
                    modes.append(m)
        return modes

    def flat_rows(self) -> list[dict]:
        """Rows for CSV: parameter columns first, energy per mode flattened."""
        names = list(self.grid)
        modes = self.energy_modes()
        out = []
        for r in self.rows:
            flat = {n: r["params"].get(n) for n in names}
            for c in COLUMNS:
                if c == "energy_per_op":
                    e = r.get(c) or {}
                    if modes:
                        flat.update({f"energy_per_op[{m}]": e.get(m) for m in modes})
                    else:
                        flat[c] = None
                else:
                    flat[c] = r.get(c)
            out.append(flat)
        return out

    def to_csv(self) -> str:
        rows = self.flat_rows()
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else list(self.grid) + list(COLUMNS),
                           lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if v is None else v for k, v in r.items()})
        return buf.getvalue()

    def to_dict(self) -> dict:
        return {"unit": self.unit, "grid": self.grid, "liberty": self.liberty,
                "flow_version": FLOW_VERSION, "points": len(self.rows),
                "computed": self.computed, "errors": len(self.errors),
                "seconds": round(self.seconds, 2),
                "energy_note": next((r.get("energy_note") for r in self.rows
                                     if r.get("energy_note")), None),
                "rows": self.rows}

    def write(self, out_dir: Path | str) -> tuple[Path, Path]:
        """Write ``sweep.csv`` and ``sweep.json`` into *out_dir*; return their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.csv_path, self.json_path = out / "sweep.csv", out / "sweep.json"
        _atomic_write(self.csv_path, self.to_csv())
        _atomic_write(self.json_path, json.dumps(self.to_dict(), indent=1, default=str))
        return self.csv_path, self.json_path

    def table(self) -> str:
        """Compact Markdown table, one row per point."""
        names = list(self.grid)
        lib = any(r.get("area_um2") is not None for r in self.rows)
        modes = self.energy_modes()
        units = sorted({r["energy_unit"] for r in self.rows if r.get("energy_unit")})
        eunit = f" ({'/'.join(units)})" if units else ""
        timed = any(r.get("fmax_mhz") is not None for r in self.rows)
        slack = any(r.get("slack_ns") is not None for r in self.rows)
        head = names + ["status", "cells", "NAND2-eq"] + (["µm²"] if lib else []) + [
            "depth"] + (["ns", "fmax MHz"] if timed else []) + (["slack ns"] if slack else []) + [
            f"E {m}{eunit}" for m in modes] + [
            "vectors", "mismatches", "seconds", "cached"]
        lines = ["| " + " | ".join(head) + " |",
                 "|" + "|".join(["---"] * (len(names) + 1) + ["---:"] * (len(head) - len(names) - 2)
                                + ["---"]) + "|"]

        def fmt(v, digits=1):
            if v is None:
                return "–"
            if isinstance(v, bool):
                return "yes" if v else "no"
            if isinstance(v, float):
                return f"{v:,.{digits}f}"
            if isinstance(v, int):
                return f"{v:,}"
            return str(v)

        for r in self.rows:
            status = r["status"] if r["status"] != "error" else f"error ({r['error_stage']})"
            cells = [fmt(r["params"].get(n)) for n in names] + [status, fmt(r["cells"]),
                                                                fmt(r["nand2_eq"])]
            if lib:
                cells.append(fmt(r["area_um2"]))
            e = r.get("energy_per_op") or {}
            cells.append(fmt(r["logic_depth"]))
            if timed:
                cells += [fmt(r["critical_path_ns"], 3), fmt(r["fmax_mhz"])]
            if slack:
                cells.append(fmt(r["slack_ns"], 3))
            cells += [fmt(e.get(m), 2) for m in modes] + [
                      fmt(r["vectors"]), fmt(r["mismatches"]),
                      fmt(r["seconds_total"]), fmt(r["cached"])]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- sweep


def run_sweep(unit: str, grid: Mapping[str, Sequence], *, executor: cf.Executor | None = None,
              jobs: int | None = None, liberty: Path | str | None = None, quick: bool = True,
              seed: int = 1, simulator: str = "verilator", out_dir: Path | str | None = None,
              force: bool = False, energy: bool = True, energy_ops: int | None = None,
              clock_gating: bool | None = None,
              progress: Progress | None = engine.stderr_progress,
              on_result: Callable[[dict], None] | None = None) -> SweepResult:
    """Run every point of *grid* for *unit* through the engine; return the rows (grid order).

    Args:
        unit: a registered unit name.
        grid: parameter name → values (:func:`parse_grid`); names and values are checked
            against the unit's schema (``ValueError`` listing the valid names).
        executor, jobs: see :func:`mpgen.flows.engine.run_points`.
        liberty: Liberty file for µm² (must be readable by the workers at this path).
        quick, seed, simulator: regression options (part of the cache keys).
        out_dir: if given, ``sweep.csv`` and ``sweep.json`` are written there.
        force: recompute what is cached.
        energy: measure energy per operation per mode; *energy_ops*: operations per mode.
        clock_gating: clock-gate registers sharing an enable (default: when the Liberty file
            has an integrated clock-gating cell).
        progress: progress lines (``None``: silent).
        on_result: called with each row as it is recorded.

    A point whose parameters the unit rejects becomes an error row (stage ``verilog``); so
    does any failure of a stage or of its worker.
    """
    t_start = time.monotonic()
    say = progress or (lambda msg: None)
    spec = get_unit(unit)
    grid = {k: list(v) for k, v in grid.items()}
    if not grid:
        raise ValueError("empty grid: give at least one --grid NAME=V1,V2,...")
    for k, v in grid.items():
        if not v:
            raise ValueError(f"grid parameter {k!r} has no values")
        if k != CLOCK_AXIS:
            spec.param(k)  # unknown names: ValueError listing the valid ones
    lib = None
    if liberty is not None:
        lib_path = Path(liberty).expanduser().resolve()
        if not lib_path.is_file():
            raise FileNotFoundError(f"Liberty file not found: {liberty}")
        lib = str(lib_path)
    points = grid_points(grid)
    say(f"sweep {unit}: {len(points)} points; cache {engine.results_dir()}")
    if CLOCK_AXIS in grid and lib is None:
        raise ValueError(f"a {CLOCK_AXIS} grid needs a Liberty file: timing comes from its "
                         "delay tables")
    timed = lib is not None
    if lib is not None:
        try:
            timing_library(lib)
        except TimingError as e:
            if CLOCK_AXIS in grid or clock_gating:
                raise
            say(f"{e}: no timing stage")
            timed = False
    gated = clock_gating_for(lib, clock_gating) if timed or lib is None else False
    settings = engine.Settings(regression=spec.regression is not None, simulators=(simulator,),
                               quick=quick, seed=seed, area=True, depth=True, liberty=lib,
                               energy="all" if energy else "none", energy_ops=energy_ops,
                               timing=timed, clock_gating=gated)
    engine_points = [engine.Point(unit, point_label(p),
                                  {k: v for k, v in p.items() if k != CLOCK_AXIS},
                                  p.get(CLOCK_AXIS)) for p in points]
    by_label = {point_label(p): p for p in points}
    rows_by_label: dict[str, dict] = {}

    def collect(res: engine.PointResult) -> None:
        row = _row(res, by_label[res.point.config], energy)
        rows_by_label[res.point.config] = row
        if on_result is not None:
            on_result(row)

    engine.run_points(engine_points, settings, jobs=jobs, executor=executor, force=force,
                      progress=say, on_result=collect)
    rows = [rows_by_label[point_label(p)] for p in points if point_label(p) in rows_by_label]
    result = SweepResult(unit=unit, grid=grid, rows=rows, cache_dir=engine.results_dir(),
                         liberty=lib, seconds=time.monotonic() - t_start)
    if out_dir is not None:
        result.write(out_dir)
    say(f"sweep {unit}: {len(points)} points, {result.computed} run, "
        f"{len(points) - result.computed} cached, {len(result.failures)} failing, "
        f"{len(result.errors)} error(s) in {result.seconds:.0f}s")
    return result


# --------------------------------------------------------------------------- CLI


def add_sweep_arguments(parser) -> None:
    """Options of ``mpgen sweep`` (the lead's cli.py adds the subparser and calls this)."""
    parser.add_argument("unit", metavar="UNIT", help="unit name (mpgen list)")
    parser.add_argument("--grid", metavar="NAME=V1,V2", action="append", default=[],
                        required=True,
                        help="parameter values to sweep (repeatable; points are the cartesian "
                             "product), e.g. --grid block_size=8,16,32 --grid pipeline=1,2")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--jobs", type=int, metavar="N",
                     help="local worker processes (default: the number of CPUs)")
    how.add_argument("--scheduler", metavar="ADDRESS",
                     help="run the points on a Dask distributed cluster, e.g. "
                          "tcp://10.0.0.5:8786 (needs the 'distributed' package)")
    parser.add_argument("--liberty", metavar="FILE", help="Liberty (.lib) file for µm² figures")
    parser.add_argument("--simulator", choices=["verilator", "icarus"], default="verilator",
                        help="simulator for the quick regressions (default verilator)")
    parser.add_argument("--seed", type=int, default=1,
                        help="regression seed (default 1; part of the cache key)")
    parser.add_argument("-o", "--output", metavar="DIR",
                        help="folder for sweep.csv and sweep.json (default mpgen-out/sweep-UNIT)")
    parser.add_argument("--json", action="store_true",
                        help="print the sweep's rows as a JSON list on stdout")
    parser.add_argument("--force", action="store_true",
                        help="recompute every point even if it is cached")
    parser.add_argument("--clock-gating", choices=["auto", "on", "off"], default="auto",
                        help="clock-gate registers that share an enable (auto: when the Liberty "
                             "file has an integrated clock-gating cell)")
    parser.add_argument("--no-energy", dest="energy", action="store_false",
                        help="skip the gate-level energy simulation of each point")
    parser.add_argument("--energy-ops", type=int, metavar="N",
                        help="operations per mode in the energy workloads, in 5 independent "
                             "batches (default 10,000)")


def cmd_sweep(args, progress: Progress) -> int:
    """``mpgen sweep``: exit 0 when every point ran and passed, 1 otherwise."""
    spec = get_unit(args.unit)
    grid = parse_grid(args.grid, spec)
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, not {args.jobs}")
    client = executor = None
    if args.scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise RuntimeError("--scheduler needs Dask distributed: pip install "
                               "'dask[distributed]'") from None
        client = Client(args.scheduler)
        executor = client.get_executor(pure=False)
    out = Path(args.output) if args.output else Path("mpgen-out") / f"sweep-{args.unit}"
    try:
        result = run_sweep(args.unit, grid, executor=executor, jobs=args.jobs,
                           liberty=args.liberty, seed=args.seed, simulator=args.simulator,
                           out_dir=out, force=args.force,
                           energy=args.energy, energy_ops=args.energy_ops, progress=progress,
                           clock_gating={"auto": None, "on": True, "off": False}[args.clock_gating])
    finally:
        if client is not None:
            client.close()
    if args.json:
        print(json.dumps(result.rows, indent=1, default=str))
    else:
        print(result.table(), end="")
    progress(f"wrote {result.csv_path} and {result.json_path}")
    bad = [f"{point_label(r['params'])}: {r['error'] or 'regression failed'}"
           for r in result.rows if r["status"] != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(result.rows)} point(s) did not pass: "
                           + "; ".join(bad[:3]) + (" ..." if len(bad) > 3 else ""))
    return 0
