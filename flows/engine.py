"""The one pipeline engine: generate → regression → area (+ logic depth) → timing → energy for a list of
(unit, configuration) points, with one content-addressed result cache for every stage.

Every job goes through :func:`run_points`: ``mpgen sim|area|energy|run|report|sweep`` and the
studies that measure hardware.  A point's stages run in one worker of a process pool
(``jobs``, default: the number of cores) or of any :class:`concurrent.futures.Executor`
(``Client(address).get_executor()`` of Dask), with the same results either way.

**Cache.**  Each stage's records are stored under ``<cache root>/results/<stage>/<key>.json``
(:func:`results_dir`).  The key hashes what determines the result: the generated Verilog
(source locations removed), the stage's settings, the Liberty file's contents, the tool
versions and a fingerprint of the mpgen sources the stage runs (:func:`stage_fingerprints`:
the modules named by the unit's spec and, transitively, the mpgen modules they import).  The
Verilog itself is cached on (unit, parameters, fingerprint of the RTL sources).  A warm re-run
costs only the cache reads; a change of RTL, testbench, golden model, Liberty file or tools
invalidates exactly the stages it affects.  Failed stages (errors) are never cached.  The
area stage keeps its work folder (with the netlist for the energy stage) beside its record.

Points are independent: a point's failure is an :class:`~mpgen.flows.records.ErrorRecord`,
never an exception, and the other points go on.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import gc
import hashlib
import importlib.util
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from amaranth.hdl import UnusedElaboratable

from mpgen.models.cache import cache_root, source_fingerprint
from mpgen.rtl.emit import strip_source_locations, to_verilog

from .area import AreaReport, submodule_groups, synthesize
from .area import check_clock_ns, prepare_yosys
from .energy import EnergyReport, GateNetlist, measure_energy, tool_versions
from .records import (AreaRecord, EnergyRecord, ErrorRecord, Record, RegressionRecord,
                      TimingRecord, from_dict, to_dict)
from .timing import TimingReport, analyze_netlist, leakage_power_w, timing_library
from .units import UnitSpec, get_unit, resolve

__all__ = ["Point", "Settings", "PointResult", "run_points", "results_dir", "stage_fingerprints",
           "tool_versions", "file_sha256", "stderr_progress", "summary", "run_point", "area_report",
           "energy_report", "verilog_of", "energy_workloads", "resolve_auto_pipelines",
           "FLOW_VERSION", "DEFAULT_ENERGY_OPS"]

#: Bump when what a stage computes changes in a way the cache key cannot see.
FLOW_VERSION = 6

#: Operations per energy mode when a job does not say (split into ``Settings.energy_batches``).
DEFAULT_ENERGY_OPS = 10_000

#: mpgen packages a fingerprint follows imports into.
_PACKAGES = ("mpgen.golden", "mpgen.models", "mpgen.rtl", "mpgen.sim", "mpgen.flows")

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Point:
    """One (unit, configuration) to measure; ``config`` names it in records and reports.
    ``clock_ns`` (a sweep axis) and ``clock_gating`` override the settings for this point;
    ``base_config`` names the unit's default configuration a renamed point measures (e.g.
    ``mixed-split`` for ``mixed-split+gated``), for the spec's per-configuration choices."""

    unit: str
    config: str
    params: Mapping[str, Any]
    clock_ns: float | None = None
    clock_gating: bool | None = None
    base_config: str | None = None

    def gated(self, settings: "Settings") -> bool:
        """Whether this point's registers are clock-gated (its own choice, else the settings')."""
        return settings.clock_gating if self.clock_gating is None else self.clock_gating

    def clock(self, settings: "Settings") -> float | None:
        """The target clock period of this point: its own, else the settings', else (with a
        Liberty file) the design clock of its unit configuration (``UnitSpec.design_clock_ns``)."""
        if self.clock_ns is not None:
            return check_clock_ns(self.clock_ns)
        if settings.clock_ns is not None or settings.liberty is None:
            return settings.clock_ns
        return get_unit(self.unit).design_clock_ns.get(self.base_config or self.config)

    @property
    def label(self) -> str:
        return f"{self.unit}/{self.config}"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What to run for every point (the stages' settings are part of their cache keys).

    ``energy`` is ``"none"``, ``"key"`` (the spec's ``energy_default`` configurations) or ``"all"``;
    ``energy_ops`` operations per mode (default :data:`DEFAULT_ENERGY_OPS`) are measured in
    ``energy_batches`` independent batches (seeded walks through the data), whose spread the
    energy records carry;
    ``depth`` adds the logic depth to the area stage.  With a Liberty file, ``timing`` adds the
    static-timing stage; ``clock_ns`` makes synthesis delay-driven toward that clock period and
    the timing stage report slack against it.
    """

    regression: bool = True
    simulators: tuple[str, ...] = ("verilator",)
    quick: bool = True
    seed: int = 1
    area: bool = True
    depth: bool = False
    liberty: str | None = None
    energy: str = "none"
    energy_ops: int | None = None
    energy_batches: int = 5
    data: str = "auto"
    timing: bool = True
    clock_ns: float | None = None
    clock_gating: bool = False

    def __post_init__(self) -> None:
        for name in ("energy_ops", "energy_batches"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be a positive int, not {v!r}")
        if self.clock_ns is not None:
            object.__setattr__(self, "clock_ns", check_clock_ns(self.clock_ns))
            if self.liberty is None:
                raise ValueError("a target clock (clock_ns) needs a Liberty file: timing comes "
                                 "from its delay tables")

    @property
    def wants_timing(self) -> bool:
        return self.timing and self.liberty is not None and (self.area or self.energy != "none")

    def wants_energy(self, spec: UnitSpec, point: Point) -> bool:
        if not spec.has_energy or self.energy == "none":
            return False
        return self.energy == "all" or (point.base_config or point.config) in spec.energy_default


@dataclasses.dataclass
class PointResult:
    """The records of one point, in stage order, and its wall time (0 when all cached)."""

    point: Point
    records: list[Record]
    seconds: float = 0.0
    worker: str = ""  # host:pid of the process that ran it ("" when read from the cache)

    @property
    def errors(self) -> list[ErrorRecord]:
        return [r for r in self.records if isinstance(r, ErrorRecord)]

    @property
    def cached(self) -> bool:
        return bool(self.records) and all(r.cached for r in self.records)

    def of(self, cls: type) -> list:
        return [r for r in self.records if isinstance(r, cls)]


# --------------------------------------------------------------------------- keys


def results_dir() -> Path:
    """``<cache root>/results`` (:func:`mpgen.models.cache.cache_root`)."""
    return cache_root().resolve() / "results"


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _modules(refs: Iterable[Any]) -> list[str]:
    """mpgen module names of hook references (``"module:attr"`` strings or callables)."""
    out = []
    for ref in refs:
        if ref is None:
            continue
        name = ref.partition(":")[0] if isinstance(ref, str) else getattr(ref, "__module__", "")
        if name.startswith("mpgen."):
            out.append(name)
    return out


def stage_fingerprints(spec: UnitSpec) -> dict[str, str]:
    """Per stage, the SHA-256 of the mpgen sources it runs for *spec* (read from disk, so a
    worker notices code edited after the parent started).  Regressions also depend on every
    module of :mod:`mpgen.sim` (testbenches are named to cocotb as strings)."""
    def fp(*modules: str) -> str:
        return source_fingerprint(*modules, packages=_PACKAGES) if modules else ""

    rtl = _modules([spec.factory]) + ["mpgen.rtl.emit"]
    sim_dir = Path(importlib.util.find_spec("mpgen.sim").origin).parent
    sim_all = sorted(p.stem for p in sim_dir.glob("*.py"))
    return {
        "verilog": fp(*rtl),
        "regression": fp(*_modules([spec.regression, spec.golden]),
                         *(f"mpgen.sim.{m}" for m in sim_all if m != "__init__")),
        "area": fp("mpgen.flows.area"),
        "timing": fp("mpgen.flows.timing"),
        "energy": fp("mpgen.flows.energy", *_modules([spec.workload, spec.energy_modes])),
    }


def _key(stage: str, **parts: Any) -> str:
    blob = json.dumps({"stage": stage, "flow": FLOW_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- cache


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load(path: Path, point: Point) -> list[Record] | None:
    """The records cached at *path*, named after *point* (the key does not hold the name: two
    jobs may give the same configuration different names), or None."""
    try:
        data = json.loads(path.read_text())
        return [dataclasses.replace(from_dict(d), cached=True, config=point.config)
                for d in data]
    except (OSError, ValueError, TypeError):
        return None  # missing, half-written or of another schema: recompute


def _store(path: Path, records: Sequence[Record]) -> None:
    _atomic_write(path, json.dumps([to_dict(r) for r in records], indent=1, default=str))


@dataclasses.dataclass(frozen=True)
class _Task:
    """Everything a worker needs for one point, picklable, with absolute paths."""

    point: Point
    settings: Settings
    energy: bool
    fingerprints: Mapping[str, str]
    liberty_sha: str | None
    tools: Mapping[str, str]
    results: str
    force: bool = False
    parent_pid: int = 0


def _verilog_path(task: _Task) -> Path:
    p = task.point
    key = _key("verilog", unit=p.unit, params=dict(sorted(p.params.items())),
               code=task.fingerprints["verilog"], tools=task.tools)
    return Path(task.results) / "verilog" / f"{p.unit}-{key}.v"


def verilog_of(spec: UnitSpec, params: Mapping[str, Any], top: str | None = None) -> str:
    """The Verilog of *spec* with *params*, top module *top* (default: the unit name);
    ``ValueError``/``TypeError`` from the schema or the component for bad parameters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            comp = spec.build(params)
        finally:
            gc.collect()  # a half-built component of rejected parameters
    return to_verilog(comp, top or spec.name)


def _component(spec: UnitSpec, params: Mapping[str, Any]):
    """A component only read for its layouts and parameters (never elaborated)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        comp = spec.build(params)
    comp._MustUse__silence = True
    return comp


def _verilog_sha(verilog: str) -> str:
    return hashlib.sha256(strip_source_locations(verilog).encode()).hexdigest()


def _stage_paths(task: _Task, verilog: str) -> dict[str, Any]:
    """Cache files of the stages of *task* for *verilog*."""
    p, s = task.point, task.settings
    vsha = _verilog_sha(verilog)
    root = Path(task.results)
    out: dict[str, Any] = {"regression": {}}
    if s.regression:
        for sim in s.simulators:
            k = _key("regression", verilog=vsha, params=dict(p.params), simulator=sim,
                     quick=s.quick, seed=s.seed, code=task.fingerprints["regression"],
                     tools=task.tools)
            out["regression"][sim] = root / "regression" / f"{p.unit}-{k}.json"
    if s.area or task.energy:
        k = _key("area", verilog=vsha, liberty=task.liberty_sha, depth=s.depth,
                 netlist=task.energy or s.wants_timing, clock_ns=p.clock(s),
                 clock_gating=p.gated(s) if s.liberty else False,
                 code=task.fingerprints["area"], tools=task.tools)
        out["area"] = root / "area" / f"{p.unit}-{k}.json"
        if s.wants_timing:
            kt = _key("timing", area=k, code=task.fingerprints["timing"], tools=task.tools)
            out["timing"] = root / "timing" / f"{p.unit}-{kt}.json"
        if task.energy:
            ke = _key("energy", area=k, params=dict(p.params), ops=s.energy_ops,
                      batches=s.energy_batches, data=s.data,
                      seed=s.seed, code=task.fingerprints["energy"], tools=task.tools,
                      timing=task.fingerprints["timing"] if s.wants_timing else None)
            out["energy"] = root / "energy" / f"{p.unit}-{ke}.json"
    return out


def _cached_result(task: _Task) -> PointResult | None:
    """The point's records if every stage is in the cache (read in the parent), else None."""
    if task.force:
        return None
    vpath = _verilog_path(task)
    if not vpath.is_file():
        return None
    paths = _stage_paths(task, vpath.read_text())
    records: list[Record] = []
    for path in [*paths["regression"].values(), paths.get("area"), paths.get("timing"),
                 paths.get("energy")]:
        if path is None:
            continue
        got = _load(path, task.point)
        if got is None:
            return None
        records += got
    if task.energy and not Path(paths["area"]).with_suffix("").joinpath("netlist.v").is_file():
        return None
    return PointResult(task.point, records, 0.0)


# --------------------------------------------------------------------------- stages


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text


def _base(point: Point) -> dict[str, Any]:
    return {"unit": point.unit, "config": point.config, "params": dict(point.params)}


def _regression_record(point: Point, spec: UnitSpec, settings: Settings, sim: str) -> RegressionRecord:
    t0 = time.monotonic()
    res = resolve(spec.regression)(dict(point.params), simulator=sim, quick=settings.quick,
                                   seed=settings.seed)
    return RegressionRecord(**_base(point), simulator=sim, quick=settings.quick,
                            seed=settings.seed, vectors=int(res.vectors),
                            mismatches=int(res.mismatches), passed=bool(res.passed),
                            seconds=round(time.monotonic() - t0, 2),
                            details="" if res.passed else str(getattr(res, "details", "") or "")[:2000])


def _area_record(point: Point, spec: UnitSpec, rep: AreaReport) -> AreaRecord:
    groups: dict[str, float] = {}
    if spec.area_groups:
        owner = submodule_groups({point.config: rep}, spec.area_groups)
        groups = {g: 0.0 for g in spec.area_groups}
        for sub, area in rep.submodules.items():
            groups[owner[sub]] = round(groups[owner[sub]] + area.nand2_eq, 4)
    return AreaRecord(
        **_base(point), cells=rep.cells, nand2_eq=rep.nand2_eq, transistors=rep.transistors,
        area_um2=rep.area_um2, liberty=rep.liberty, nand2_cell=rep.nand2_cell,
        nand2_area_um2=rep.nand2_area_um2, logic_depth=rep.logic_depth, groups=groups,
        submodules={k: dataclasses.asdict(v) for k, v in rep.submodules.items()},
        cells_by_type=dict(rep.cells_by_type), yosys=rep.yosys, seconds=rep.synth_seconds,
        clock_ns=rep.clock_ns, clock_gating=rep.clock_gating, clock_gates=rep.clock_gates)


def _timing_record(point: Point, rep: TimingReport, area: AreaRecord,
                   clock_ns: float | None) -> TimingRecord:
    crit = rep.critical
    slack = None
    if clock_ns is not None and rep.critical_path_ns is not None:
        slack = round(clock_ns - rep.critical_path_ns, 4)
    paths = [dataclasses.asdict(p) for p in rep.paths.values()]
    return TimingRecord(
        **_base(point), critical_path_ns=rep.critical_path_ns, fmax_mhz=rep.fmax_mhz,
        clock_ns=clock_ns, slack_ns=slack, closes=None if slack is None else slack >= 0,
        area_um2=area.area_um2, nand2_eq=area.nand2_eq,
        critical_group=crit.group if crit else "", paths=paths, liberty=rep.liberty,
        corner=rep.corner, input_transition_ns=rep.input_transition_ns, cells=rep.cells,
        seconds=rep.seconds)


def area_report(rec: AreaRecord) -> AreaReport:
    """The :class:`~mpgen.flows.area.AreaReport` an area record was made from (for tables)."""
    return AreaReport.from_dict({
        "top": rec.unit, "cells": rec.cells, "nand2_eq": rec.nand2_eq,
        "transistors": rec.transistors, "cells_by_type": rec.cells_by_type,
        "hier_nand2_eq": rec.nand2_eq, "submodules": rec.submodules,
        "synth_seconds": rec.seconds, "yosys": rec.yosys, "liberty": rec.liberty,
        "area_um2": rec.area_um2, "lib_nand2_eq": rec.nand2_eq if rec.liberty else None,
        "nand2_cell": rec.nand2_cell, "nand2_area_um2": rec.nand2_area_um2,
        "lib_cells": rec.cells if rec.liberty else None,
        "lib_cells_by_type": rec.cells_by_type if rec.liberty else None,
        "logic_depth": rec.logic_depth, "clock_ns": rec.clock_ns,
        "clock_gating": rec.clock_gating, "clock_gates": rec.clock_gates})


def _energy_records(point: Point, rep: EnergyReport, area: AreaRecord | None,
                    timing: TimingRecord | None, clock_ns: float | None) -> list[EnergyRecord]:
    """Energy records of *rep*; with a Liberty file and a clock (the target, else the period
    at fmax from *timing*), leakage of the netlist's cells (*area*) over each operation."""
    out = []
    pj = rep.energy_unit == "pJ"
    clock = clock_ns if clock_ns is not None else (timing.critical_path_ns if timing else None)
    leak_w = None
    if pj and clock is not None and area is not None and rep.liberty:
        leak_w = leakage_power_w(area.cells_by_type, timing_library(rep.liberty))
    for mode, m in rep.modes.items():
        dyn = m.energy_per_op
        fig: dict[str, Any] = {}
        if leak_w is not None:
            ns_per_op = m.cycles / m.ops * clock
            leak = leak_w * ns_per_op * 1e3  # W × ns = nJ; × 1e3 = pJ
            total = dyn + leak
            fig = dict(leakage_pj_per_op=round(leak, 6), leakage_mw=round(leak_w * 1e3, 6),
                       clock_ns=round(clock, 4), power_mw=round(total / ns_per_op, 6),
                       gops_per_w=round(1e3 / total, 4))
        else:
            total = dyn
        out.append(EnergyRecord(
            **_base(point), mode=mode, op_name=m.op_name, ops=m.ops,
            energy_pj_per_op=total if pj else None,
            energy_geu_per_op=None if pj else dyn, dynamic_pj_per_op=dyn if pj else None,
            breakdown_per_op=dict(m.breakdown), cycles=m.cycles, vectors=m.checked,
            mismatches=m.mismatches, source=m.source, liberty=rep.liberty,
            netlist_cells=rep.netlist_cells, nets_observed=rep.nets_observed,
            seconds=rep.seconds, corner=timing.corner if timing else "",
            batch_energies_per_op=list(m.batches), spread_2sigma_per_op=m.spread_2sigma,
            simulator="verilator (gate-level, toggle coverage)",
            clock_gating=bool(area.clock_gating) if area is not None else False, **fig))
    return out


def energy_report(records: Sequence[EnergyRecord]) -> dict[str, Any]:
    """The energy records of one point as the report's EnergyReport dict (modes by name)."""
    first = records[0]
    return {"unit": first.unit, "config": first.config, "params": dict(first.params),
            "energy_unit": first.energy_unit, "liberty": first.liberty,
            "netlist_cells": first.netlist_cells, "nets_observed": first.nets_observed,
            "seconds": first.seconds, "tools": {}, "method": "toggle-coverage",
            "modes": {r.mode: {"energy_per_op": r.energy_per_op, "op_name": r.op_name,
                               "ops": r.ops, "cycles": r.cycles, "toggles": 0,
                               "breakdown": dict(r.breakdown_per_op), "mismatches": r.mismatches,
                               "checked": r.vectors, "source": r.source,
                               "batches": list(r.batch_energies_per_op),
                               "spread_2sigma": r.spread_2sigma_per_op or 0.0,
                               "dynamic": r.dynamic_pj_per_op, "leakage": r.leakage_pj_per_op,
                               "clock_ns": r.clock_ns, "gops_per_w": r.gops_per_w,
                               "power_mw": r.power_mw, "clock_gating": r.clock_gating}
                      for r in records}}


def energy_workloads(spec: UnitSpec, comp, settings: Settings) -> dict[str, list]:
    """Per energy mode of *comp*, up to ``settings.energy_batches`` independent workloads (seeds
    ``seed·1000 + i``: different stretches of the data) sharing ``energy_ops`` operations
    (rounded up to a multiple of the spec's ``op_quantum``) as evenly as whole quanta allow."""
    total = settings.energy_ops or DEFAULT_ENERGY_OPS
    quantum = int(resolve(spec.op_quantum)(comp)) if spec.op_quantum is not None else 1
    units = -(-total // quantum)
    n = min(settings.energy_batches, units)
    sizes = [(units // n + (i < units % n)) * quantum for i in range(n)]
    workload = resolve(spec.workload)
    return {m: [workload(comp, m, ops=ops, seed=settings.seed * 1000 + i, data=settings.data)
                for i, ops in enumerate(sizes)]
            for m in resolve(spec.energy_modes)(comp)}


def run_point(task: _Task, progress: Progress | None = None) -> PointResult:
    """Run the stages of one point (a worker's job): cached stages are read, the others run
    and are stored.  Never raises for a failure of the point itself."""
    say = progress or (lambda msg: None)
    t0 = time.monotonic()
    p, s = task.point, task.settings
    records: list[Record] = []
    stage = "code"
    area = timing = None
    try:
        spec = get_unit(p.unit)
        if os.getpid() != task.parent_pid and stage_fingerprints(spec) != dict(task.fingerprints):
            raise RuntimeError("this worker runs different mpgen code than the parent process "
                               "had at the start (mpgen edited meanwhile, or a remote worker "
                               "with another installation): run again")
        stage = "verilog"
        vpath = _verilog_path(task)
        if vpath.is_file() and not task.force:
            verilog = vpath.read_text()
        else:
            verilog = verilog_of(spec, p.params)
            _atomic_write(vpath, verilog)
        paths = _stage_paths(task, verilog)
        for sim, path in paths["regression"].items():
            stage = "regression"
            got = None if task.force else _load(path, p)
            if got is None:
                if spec.regression is None:
                    continue
                say(f"{p.label}: {'quick' if s.quick else 'full'} regression on {sim}")
                got = [_regression_record(p, spec, s, sim)]
                _store(path, got)
            records += got
        if "area" in paths:
            stage = "area"
            work = Path(paths["area"]).with_suffix("")
            got = None if task.force else _load(paths["area"], p)
            netlist = task.energy or s.wants_timing
            if got is None or (netlist and not (work / "netlist.v").is_file()):
                clock = p.clock(s)
                gated = p.gated(s) and s.liberty is not None
                say(f"{p.label}: synthesis" + (f" with {Path(s.liberty).name}" if s.liberty else "")
                    + (f" toward {clock:g} ns" if clock else "") + (", clock-gated" if gated else ""))
                rep = synthesize(verilog, p.unit, liberty=s.liberty, work_dir=work,
                                 netlist=netlist, depth=s.depth, clock_ns=clock,
                                 clock_gating=gated)
                got = [_area_record(p, spec, rep)]
                _store(paths["area"], got)
            area = got[0]
            if s.area:
                records += got
        if "timing" in paths:
            stage = "timing"
            got = None if task.force else _load(paths["timing"], p)
            if got is None:
                say(f"{p.label}: static timing")
                work = Path(paths["area"]).with_suffix("")
                rep = analyze_netlist(work / "netlist.json", p.unit, s.liberty)
                got = [_timing_record(p, rep, area, p.clock(s))]
                _store(paths["timing"], got)
            timing = got[0]
            records += got
        if "energy" in paths:
            stage = "energy"
            got = None if task.force else _load(paths["energy"], p)
            if got is None:
                say(f"{p.label}: gate-level energy")
                comp = _component(spec, p.params)
                work = Path(paths["area"]).with_suffix("")
                netlist = GateNetlist.load(work, p.unit, s.liberty)
                loads = energy_workloads(spec, comp, s)
                rep = measure_energy(netlist, loads, label=p.label,
                                     work_dir=Path(paths["energy"]).with_suffix(""))
                got = _energy_records(p, rep, area, timing, p.clock(s))
                _store(paths["energy"], got)
            records += got
    except Exception as e:  # noqa: BLE001 - one point's failure must not stop the others
        records.append(ErrorRecord(**_base(p), stage=stage, error=_first_line(e)))
        if os.environ.get("MPGEN_DEBUG"):
            traceback.print_exc()
    return PointResult(p, records, round(time.monotonic() - t0, 2),
                       f"{socket.gethostname()}:{os.getpid()}")


# --------------------------------------------------------------------------- executors


def _worker_init() -> None:
    """Pool worker start-up: default SIGTERM (the parent's handler is inherited by fork), and
    one torch thread: a forked child that enters the OpenMP pool its parent had started
    (GNU libgomp, torch's CPU wheels) waits forever, and energy workloads run torch code."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _sigterm_as_interrupt():
    """Make SIGTERM raise KeyboardInterrupt (so the pool's workers are stopped too); return the
    previous handler, or ``None`` off the main thread."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def _terminate_tree(pid: int) -> None:
    """SIGKILL worker *pid* and SIGTERM its descendants (Yosys, make, the simulator), found in
    /proc (a worker would take the next queued point after its task was interrupted)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    order, todo = [], [pid]
    while todo:
        q = todo.pop()
        order.append(q)
        todo += children.get(q, [])
    for q in reversed(order):
        try:
            os.kill(q, signal.SIGKILL if q == pid else signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


class _Bar:
    """Points done/total, elapsed time and ETA on stderr, one line per finished point."""

    def __init__(self, total: int, to_run: int, say: Progress):
        self.total, self.to_run, self.say = total, to_run, say
        self.done = self.ran = 0
        self.t0 = time.monotonic()

    def __call__(self, res: PointResult, summary: str) -> None:
        self.done += 1
        self.ran += not res.cached
        elapsed = time.monotonic() - self.t0
        left = self.to_run - self.ran
        eta = f"{elapsed / self.ran * left:4.0f}s" if self.ran and left else "   –"
        fill = round(20 * self.done / self.total) if self.total else 20
        self.say(f"[{'#' * fill}{'.' * (20 - fill)}] {self.done}/{self.total} ETA {eta}  "
                 f"{res.point.label}: {summary}"
                 + (" (cached)" if res.cached else f" ({res.seconds:.0f}s)"))


def summary(res: PointResult) -> str:
    """One line: what a point's records say."""
    parts = []
    for r in res.records:
        if isinstance(r, RegressionRecord):
            parts.append(f"{'PASS' if r.passed else 'FAIL'} {r.vectors} vectors/{r.mismatches} "
                         f"mismatches [{r.simulator}]")
        elif isinstance(r, AreaRecord):
            parts.append(f"{r.nand2_eq:,.0f} NAND2-eq" + (f", depth {r.logic_depth}"
                                                          if r.logic_depth is not None else ""))
        elif isinstance(r, TimingRecord):
            if r.fmax_mhz is not None:
                parts.append(f"{r.critical_path_ns:.2f} ns ({r.fmax_mhz:.0f} MHz)"
                             + ("" if r.clock_ns is None else
                                f", slack {r.slack_ns:+.2f} ns at {r.clock_ns:g} ns"
                                + ("" if r.closes else " (does not close)")))
        elif isinstance(r, EnergyRecord):
            parts.append(f"{r.mode} {r.energy_per_op:.3g} ± {r.spread_2sigma_per_op or 0:.2g} "
                         f"{r.energy_unit}/{r.op_name}")
        elif isinstance(r, ErrorRecord):
            parts.append(f"ERROR in {r.stage}: {r.error.splitlines()[0] if r.error else ''}")
    return "; ".join(parts) or "nothing to do"


def stderr_progress(msg: str) -> None:
    """The default progress sink: one line on stderr."""
    print(msg, file=sys.stderr, flush=True)


def run_points(points: Sequence[Point], settings: Settings, *, jobs: int | None = None,
               executor: cf.Executor | None = None, force: bool = False,
               progress: Progress | None = stderr_progress,
               on_result: Callable[[PointResult], None] | None = None) -> list[PointResult]:
    """Run the stages of *settings* for every point; return their results in point order.

    Args:
        points: the (unit, configuration) points; units must be registered.
        settings: the stages and their settings.
        jobs: local worker processes (default: the number of CPUs); 1 runs in this process.
        executor: any :class:`concurrent.futures.Executor` instead (e.g. Dask's); left running.
        force: recompute every stage even if it is cached.
        progress: progress lines (``None``: silent).
        on_result: called with each point's result as it finishes (cached ones first).

    An exception in the caller (``KeyboardInterrupt``, or SIGTERM while the default pool runs)
    cancels the points not started and terminates the pool's workers with their children;
    every stage finished before it is already in the cache.
    """
    say = progress or (lambda msg: None)
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be a positive int, not {jobs!r}")
    lib_sha = None
    if settings.liberty is not None:
        lib = Path(settings.liberty).expanduser().resolve()
        if not lib.is_file():
            raise FileNotFoundError(f"Liberty file not found: {settings.liberty}")
        settings = dataclasses.replace(settings, liberty=str(lib))
        lib_sha = file_sha256(lib)
    tools, results = tool_versions(), str(results_dir())
    prints: dict[str, dict[str, str]] = {}
    tasks: list[_Task] = []
    for p in points:
        spec = get_unit(p.unit)
        if p.unit not in prints:
            prints[p.unit] = stage_fingerprints(spec)
        tasks.append(_Task(p, settings, settings.wants_energy(spec, p), prints[p.unit],
                           lib_sha, tools, results, force, os.getpid()))
    out: list[PointResult | None] = [None] * len(tasks)
    todo: list[int] = []
    cached: list[int] = []
    for i, t in enumerate(tasks):
        hit = _cached_result(t)
        if hit is None:
            todo.append(i)
        else:
            out[i] = hit
            cached.append(i)
    bar = _Bar(len(tasks), len(todo), say)
    for i in cached:
        bar(out[i], summary(out[i]))
        if on_result is not None:
            on_result(out[i])
    # The longest points first (energy, then big units) keep the pool busy to the end.
    todo.sort(key=lambda i: (not tasks[i].energy, i))
    if todo:
        say(f"{len(todo)} point(s) to run, {len(cached)} from the cache; "
            + (f"executor {type(executor).__name__}" if executor is not None else
               f"{_workers(jobs, len(todo))} local worker process(es)"))

    def finish(i: int, res: PointResult) -> None:
        out[i] = res
        bar(res, summary(res))
        if on_result is not None:
            on_result(res)

    if todo and executor is None and _workers(jobs, len(todo)) == 1:
        for i in todo:
            finish(i, run_point(tasks[i], say))
        return [r for r in out if r is not None]
    own = executor is None and bool(todo)
    if own and (settings.area or any(tasks[i].energy for i in todo)):
        # compile the WebAssembly Yosys while the workers start with their regressions
        threading.Thread(target=prepare_yosys, daemon=True).start()
    if own:
        executor = cf.ProcessPoolExecutor(max_workers=_workers(jobs, len(todo)),
                                          initializer=_worker_init)
    futures: dict[cf.Future, int] = {}
    clean = False
    old_term = _sigterm_as_interrupt() if own else None
    try:
        for i in todo:
            futures[executor.submit(run_point, tasks[i])] = i
        for fut in cf.as_completed(futures):
            i = futures[fut]
            try:
                res = fut.result()
            except Exception as e:  # noqa: BLE001 - a dead worker, a lost Dask task, ...
                res = PointResult(tasks[i].point, [ErrorRecord(**_base(tasks[i].point),
                                                               stage="worker", error=_first_line(e))])
            finish(i, res)
        clean = True
    finally:
        if not clean:
            for fut in futures:
                fut.cancel()
        if own:
            if not clean:
                for proc in list(getattr(executor, "_processes", {}).values()):
                    _terminate_tree(proc.pid)
            executor.shutdown(wait=clean, cancel_futures=not clean)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return [r for r in out if r is not None]


def resolve_auto_pipelines(points: Sequence[Point], settings: Settings, *,
                           progress: Progress | None = stderr_progress,
                           **run_kw: Any) -> list[Point]:
    """*points* with every ``pipeline=auto`` replaced by the unit's shallowest pipeline choice
    (``UnitSpec.pipeline_ladder``) whose synthesis closes the point's target clock.

    The choices are synthesised and timed in ladder order (area and timing stages only, through
    the same cache; *run_kw* go to :func:`run_points`) until one closes; when none does, the
    deepest is taken (its timing record says it does not close). ``ValueError`` when a point
    asks for ``auto`` without a Liberty file and a target clock.
    """
    say = progress or (lambda msg: None)
    probe = dataclasses.replace(settings, regression=False, energy="none", area=True, timing=True)
    out = []
    for point in points:
        spec = get_unit(point.unit)
        if not spec.is_auto("pipeline", point.params.get("pipeline")):
            out.append(point)
            continue
        clock = point.clock(settings)
        if settings.liberty is None or clock is None:
            raise ValueError(f"{point.label}: pipeline=auto needs a Liberty file and a target "
                             "clock (--liberty, --clock-ns)")
        ladder = resolve(spec.pipeline_ladder)(point.params)
        chosen, tried = ladder[-1], []
        for params in ladder:
            trial = dataclasses.replace(point, config=f"{point.config}~pipeline", params=params)
            (res,) = run_points([trial], probe, progress=None, **run_kw)
            timing = res.of(TimingRecord)
            if res.errors or not timing:
                raise ValueError(f"{point.label}: pipeline=auto: {params} failed: "
                                 + "; ".join(e.error for e in res.errors))
            tried.append(f"{_ladder_step(point, params)} {timing[0].critical_path_ns:.2f} ns")
            if timing[0].closes:
                chosen = params
                break
        say(f"{point.label}: pipeline=auto at {clock:g} ns → {_ladder_step(point, chosen)} "
            f"(tried {', '.join(tried)})")
        out.append(dataclasses.replace(point, params=chosen))
    return out


def _ladder_step(point: Point, params: Mapping[str, Any]) -> str:
    """What a ladder choice sets beyond the point's own parameters (``pipeline 3, tree_group 2``)."""
    return ", ".join(f"{k} {v}" for k, v in params.items() if point.params.get(k) != v)


def _workers(jobs: int | None, n: int) -> int:
    return max(1, min(jobs or os.cpu_count() or 1, n))
