"""Static timing analysis of a mapped netlist from the Liberty file's own NLDM delay tables.

:func:`timing_library` reads, per cell, the pin capacitances, the delay arcs (``cell_rise``,
``cell_fall``, ``rise_transition``, ``fall_transition`` over input transition × output load)
and the setup constraints (``rise_constraint``/``fall_constraint`` of ``setup_rising``).
:func:`analyze` propagates arrival times and transitions (rise and fall separately, with the
arcs' unateness) through the flat netlist that :func:`mpgen.flows.area.synthesize` writes, and
reports the worst path of each group:

* ``reg-to-reg``: flip-flop clock → Q, logic, setup of the capturing flip-flop's D;
* ``in-to-reg``: an input port (arriving at the clock edge) → logic → setup;
* ``reg-to-out``: clock → Q → logic → an output port (required at the next edge);
* ``in-to-out``: purely combinational port-to-port paths.

The clock period a design needs is the largest of these (input and output delays zero, as if
the neighbours were registered with no logic of their own); fmax = 1 / that period.  Limits
(docs/timing.md): ideal clock (no clock tree, no skew, no latency through clock gates), no
wire load or parasitics, the drive strengths the mapper chose, one corner, setup only; every
pin's transition is the worst of its arcs (graph-based, as OpenSTA does by default).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import time
from pathlib import Path
from typing import Mapping

from .liberty import (Group, liberty_unit, library_units, parse_floats, parse_liberty,
                      table_segment)

__all__ = ["LookupTable", "TimingArc", "TimingCell", "TimingLibrary", "timing_library",
           "PathStep", "TimingPath", "TimingReport", "analyze", "analyze_netlist",
           "TimingError", "PATH_GROUPS", "DEFAULT_INPUT_TRANSITION_NS", "leakage_power_w",
           "setup_overhead_ns", "clock_gate_cell"]

#: Path groups, in report order.
PATH_GROUPS = ("reg-to-reg", "in-to-reg", "reg-to-out", "in-to-out")

#: Transition of input ports and of the ideal clock (ns): that of an x1 cell driving a light
#: load in SG13G2-class libraries; recorded in every report.
DEFAULT_INPUT_TRANSITION_NS = 0.05


class TimingError(ValueError):
    """The library or netlist cannot be timed (the message names the problem)."""


# --------------------------------------------------------------------------- library


@dataclasses.dataclass(frozen=True)
class LookupTable:
    """A 1-D or 2-D NLDM table: ``values[i][j]`` at ``index_1[i]``, ``index_2[j]``, with the
    template's variable names; interpolated bilinearly and extrapolated linearly beyond the
    table, as timing tools do."""

    variables: tuple[str, ...]
    indices: tuple[tuple[float, ...], ...]
    values: tuple[tuple[float, ...], ...]

    def at(self, **point: float) -> float:
        """The value at the named variables (``input_net_transition=…``, …); a variable the
        table does not use is ignored."""
        coords = [point.get(v, 0.0) for v in self.variables]
        if len(self.indices) == 1:
            i0, i1, t = table_segment(self.indices[0], coords[0])
            row = [r[0] for r in self.values] if len(self.values) > 1 else list(self.values[0])
            if len(row) != len(self.indices[0]):
                row = list(self.values[0])
            return row[i0] + (row[i1] - row[i0]) * t
        i0, i1, ti = table_segment(self.indices[0], coords[0])
        j0, j1, tj = table_segment(self.indices[1], coords[1])
        v = self.values
        a = v[i0][j0] + (v[i0][j1] - v[i0][j0]) * tj
        b = v[i1][j0] + (v[i1][j1] - v[i1][j0]) * tj
        return a + (b - a) * ti


@dataclasses.dataclass(frozen=True)
class TimingArc:
    """One ``timing()`` group of an output pin (delay) or an input pin (constraint)."""

    related: str
    pin: str
    sense: str  # positive_unate | negative_unate | non_unate
    kind: str  # combinational | rising_edge | falling_edge | setup_rising | ...
    tables: Mapping[str, LookupTable]  # cell_rise, cell_fall, rise_transition, ...


@dataclasses.dataclass(frozen=True)
class TimingCell:
    name: str
    area: float
    leakage: float  # cell_leakage_power, in the library's leakage unit
    input_cap: Mapping[str, float]
    outputs: tuple[str, ...]
    clock_pins: tuple[str, ...]
    sequential: bool  # has an ff/latch/statetable: a timing start and end point
    clock_gate: bool  # clock_gating_integrated_cell: its output is a clock
    delay_arcs: tuple[TimingArc, ...]  # arcs into output pins
    setup_arcs: tuple[TimingArc, ...]  # setup_rising/setup_falling of input pins
    #: (style, enable pin, clock pin, gated clock pin, other inputs) of a clock-gating cell
    gate_pins: tuple | None = None


@dataclasses.dataclass(frozen=True)
class TimingLibrary:
    name: str
    path: str
    corner: str  # operating conditions: process/voltage/temperature
    time_unit_ns: float
    cap_unit_pf: float
    leakage_unit_w: float
    cells: Mapping[str, TimingCell]


def _lookup(g: Group, templates: Mapping[str, Group]) -> LookupTable:
    tmpl = templates.get(g.args[0]) if g.args else None
    variables, indices = [], []
    for k in ("1", "2", "3"):
        src = g.complex.get(f"index_{k}") or (tmpl.complex.get(f"index_{k}") if tmpl else None)
        if not src:
            break
        indices.append(tuple(parse_floats(src[0][0])))
        variables.append(tmpl.attrs.get(f"variable_{k}", "") if tmpl else "")
    rows = tuple(tuple(parse_floats(r)) for r in (g.complex.get("values") or [[]])[0])
    if not rows or not rows[0]:
        raise TimingError(f"Liberty: table {g.type} without values")
    if not indices:  # a scalar table
        return LookupTable(("",), ((0.0,),), ((rows[0][0],),))
    if len(indices) == 2 and (len(rows) != len(indices[0]) or any(len(r) != len(indices[1]) for r in rows)):
        raise TimingError(f"Liberty: table {g.type} does not match its indices")
    return LookupTable(tuple(variables), tuple(indices), rows)


_TABLES = ("cell_rise", "cell_fall", "rise_transition", "fall_transition", "rise_constraint",
           "fall_constraint")


@functools.lru_cache(maxsize=4)
def _timing_library_cached(path: str, mtime: float) -> TimingLibrary:
    try:
        lib = parse_liberty(Path(path).read_text(errors="replace"))
        cap_pf, time_ns = library_units(lib)
        leak_w = liberty_unit(lib.attrs.get("leakage_power_unit", "1nW"),
                              {"w": 1.0, "mw": 1e-3, "uw": 1e-6, "nw": 1e-9, "pw": 1e-12},
                              "leakage_power_unit")
    except ValueError as e:
        raise TimingError(f"{path}: {e}") from None
    templates = {g.args[0]: g for g in lib.groups if g.type.endswith("_template") and g.args}
    default_cap = float(lib.attrs.get("default_input_pin_cap", 0.0))
    cells: dict[str, TimingCell] = {}
    for c in lib.sub("cell"):
        name = c.args[0] if c.args else ""
        inputs, outputs, clocks = {}, [], set()
        delay, setup = [], []
        roles: dict[str, str] = {}
        for p in c.sub("pin"):
            pname = p.args[0]
            direction = p.attrs.get("direction", "")
            for role in ("clock_gate_enable_pin", "clock_gate_clock_pin", "clock_gate_out_pin"):
                if p.attrs.get(role) == "true":
                    roles[role] = pname
            if direction == "input":
                caps = [float(p.attrs[k]) for k in ("capacitance", "rise_capacitance", "fall_capacitance")
                        if k in p.attrs]
                inputs[pname] = max(caps) if caps else default_cap
                if p.attrs.get("clock") == "true":
                    clocks.add(pname)
            elif direction == "output":
                outputs.append(pname)
            for t in p.sub("timing"):
                tables = {g.type: _lookup(g, templates) for g in t.groups if g.type in _TABLES}
                arc = TimingArc(t.attrs.get("related_pin", ""), pname,
                                t.attrs.get("timing_sense", "non_unate"),
                                t.attrs.get("timing_type", "combinational"), tables)
                if direction == "output" and ("cell_rise" in tables or "cell_fall" in tables):
                    delay.append(arc)
                elif direction == "input" and arc.kind in ("setup_rising", "setup_falling"):
                    setup.append(arc)
        sequential = bool(c.sub("ff") or c.sub("latch") or c.sub("statetable"))
        leak = float(c.attrs.get("cell_leakage_power", lib.attrs.get("default_cell_leakage_power", 0)))
        gate = None
        style = c.attrs.get("clock_gating_integrated_cell")
        if style and len(roles) == 3:
            others = tuple(sorted(set(inputs) - {roles["clock_gate_enable_pin"],
                                                 roles["clock_gate_clock_pin"]}))
            gate = (style, roles["clock_gate_enable_pin"], roles["clock_gate_clock_pin"],
                    roles["clock_gate_out_pin"], others)
        cells[name] = TimingCell(name, float(c.attrs.get("area", 0.0)), leak, inputs, tuple(outputs),
                                 tuple(sorted(clocks)), sequential, style is not None, tuple(delay),
                                 tuple(setup), gate)
    if not cells:
        raise TimingError(f"{path}: no cells in the Liberty file")
    if not any(cell.delay_arcs for cell in cells.values()):
        raise TimingError(f"{path}: the Liberty file has no timing data (no cell_rise/cell_fall "
                          "tables); timing needs a library characterised for delay")
    oc = lib.sub("operating_conditions")
    corner = lib.args[0] if lib.args else Path(path).stem
    if oc:
        a = oc[0].attrs
        corner = (f"{oc[0].args[0] if oc[0].args else corner} (process {a.get('process', '?')}, "
                  f"{a.get('voltage', '?')} V, {a.get('temperature', '?')} °C)")
    return TimingLibrary(lib.args[0] if lib.args else Path(path).stem, path, corner, time_ns,
                         cap_pf, leak_w, cells)


def timing_library(liberty: Path | str) -> TimingLibrary:
    """Timing data of a Liberty file (cached per path and modification time); ``TimingError``
    for a file without delay tables, ``FileNotFoundError`` for a missing one."""
    p = Path(liberty).expanduser().resolve()
    if not p.is_file():
        raise FileNotFoundError(f"Liberty file not found: {liberty}")
    return _timing_library_cached(str(p), p.stat().st_mtime)


def clock_gate_cell(lib: TimingLibrary) -> TimingCell:
    """The library's smallest integrated clock-gating cell for rising-edge registers (a
    ``latch_posedge`` cell with enable, clock and gated-clock pins and no other input);
    ``TimingError`` if there is none."""
    cands = [c for c in lib.cells.values()
             if c.gate_pins and c.gate_pins[0] == "latch_posedge" and not c.gate_pins[4]]
    if not cands:
        raise TimingError(f"{lib.path} has no integrated clock-gating cell (latch_posedge) "
                          "for clock gating")
    return min(cands, key=lambda c: (c.area, c.name))


def leakage_power_w(cells_by_type: Mapping[str, int], lib: TimingLibrary) -> float:
    """Leakage of a netlist in watts: the sum of its cells' ``cell_leakage_power``."""
    total = 0.0
    for ctype, n in cells_by_type.items():
        cell = lib.cells.get(ctype)
        if cell is None:
            raise TimingError(f"cell type {ctype!r} is not in {lib.path}")
        total += n * cell.leakage
    return total * lib.leakage_unit_w


# --------------------------------------------------------------------------- analysis


@dataclasses.dataclass
class PathStep:
    """One cell (or the start point) of a path: ``incr_ns`` is its delay, ``arrival_ns`` the
    time at its output, ``load_pf`` the load it drives."""

    instance: str
    cell: str
    arc: str  # "A -> Y" (or "CLK -> Q" at a register, "input" at a port)
    edge: str  # "rise" | "fall" of the output
    net: str
    incr_ns: float
    arrival_ns: float
    transition_ns: float
    load_pf: float


@dataclasses.dataclass
class TimingPath:
    group: str
    start: str
    end: str
    arrival_ns: float  # at the end point
    setup_ns: float  # of the capturing register (0 at an output port)
    required_period_ns: float  # arrival + setup: the clock period this path needs
    steps: list[PathStep]


@dataclasses.dataclass
class TimingReport:
    """Worst path per group and what the design needs: ``critical_path_ns`` is the clock
    period (the largest ``required_period_ns``), ``fmax_mhz`` its inverse."""

    top: str
    liberty: str
    corner: str
    cells: int
    paths: dict[str, TimingPath]
    critical_path_ns: float | None
    fmax_mhz: float | None
    input_transition_ns: float
    output_load_pf: float
    seconds: float

    @property
    def critical(self) -> TimingPath | None:
        if not self.paths:
            return None
        return max(self.paths.values(), key=lambda p: p.required_period_ns)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_EDGES = ("rise", "fall")


def _net_names(module: dict) -> dict[int, str]:
    """A readable name per net bit: public names first, the shortest of them."""
    best: dict[int, tuple[int, int, str]] = {}
    for name, nn in module["netnames"].items():
        bits = nn["bits"]
        hidden = int(nn.get("hide_name", 0)) or name.startswith("$") or re.fullmatch(r"\\?n\d+", name)
        clean = name[1:] if name.startswith("\\") else name
        for i, b in enumerate(bits):
            if not isinstance(b, int):
                continue
            label = clean if len(bits) == 1 else f"{clean}[{i + int(nn.get('offset', 0))}]"
            cand = (1 if hidden else 0, len(label), label)
            if b not in best or cand < best[b]:
                best[b] = cand
    return {b: v[2] for b, v in best.items()}


def analyze(module: Mapping, lib: TimingLibrary, *, top: str = "", clock: str = "clk",
            input_transition_ns: float = DEFAULT_INPUT_TRANSITION_NS,
            output_load_pf: float = 0.0) -> TimingReport:
    """Time the flat mapped *module* (a ``write_json`` module dict) against *lib*.

    Input ports arrive at 0 with ``input_transition_ns``; output ports are required at the
    clock period and load their net with ``output_load_pf``; the clock is ideal (arrives at 0
    with ``input_transition_ns`` at every register, also behind clock gates).

    Raises:
        TimingError: a cell type is not in the library, or the logic has a combinational loop.
    """
    t0 = time.monotonic()
    cells = module["cells"]
    ports = module["ports"]
    names = _net_names(module)
    tunit = lib.time_unit_ns
    # connectivity
    load_cap: dict[int, float] = {}
    fanout: dict[int, list[str]] = {}
    insts: dict[str, TimingCell] = {}
    for iname, c in cells.items():
        cell = lib.cells.get(c["type"])
        if cell is None:
            if c["type"].startswith("$"):
                continue  # non-logic records ($scopeinfo)
            raise TimingError(f"cell {iname} of type {c['type']!r} is not in {lib.path}")
        insts[iname] = cell
        for pin, bits in c["connections"].items():
            if pin in cell.input_cap:
                for b in bits:
                    if isinstance(b, int):
                        load_cap[b] = load_cap.get(b, 0.0) + cell.input_cap[pin] * lib.cap_unit_pf
                        fanout.setdefault(b, []).append(iname)
    out_bits = {b for p in ports.values() if p["direction"] == "output" for b in p["bits"]
                if isinstance(b, int)}
    for b in out_bits:
        load_cap[b] = load_cap.get(b, 0.0) + output_load_pf
    clock_bits = set(b for b in ports.get(clock, {}).get("bits", []) if isinstance(b, int))
    # clock nets: the clock port and clock-gate outputs
    for iname, cell in insts.items():
        if cell.clock_gate:
            for pin in cell.outputs:
                clock_bits.update(b for b in cells[iname]["connections"].get(pin, []) if isinstance(b, int))

    def bit(iname: str, pin: str) -> int | None:
        bits = cells[iname]["connections"].get(pin) or []
        return bits[0] if bits and isinstance(bits[0], int) else None

    def delay_of(arc: TimingArc, edge: str, slew: float, load: float) -> tuple[float, float]:
        d = arc.tables.get(f"cell_{edge}")
        s = arc.tables.get(f"{edge}_transition")
        pt = {"input_net_transition": slew / tunit, "total_output_net_capacitance": load / lib.cap_unit_pf}
        return (d.at(**pt) * tunit if d else 0.0), (s.at(**pt) * tunit if s else slew)

    comb = {n: c for n, c in insts.items() if not c.sequential and c.delay_arcs}
    comb_out = {b for n, c in comb.items() for pin in c.outputs
                for b in cells[n]["connections"].get(pin, []) if isinstance(b, int)}
    results = {}
    for source in ("in", "reg"):
        # arrival[bit] = [rise, fall] of (arrival, transition, predecessor)
        arr: dict[int, list] = {}
        if source == "in":
            for pname, p in ports.items():
                if p["direction"] != "input" or pname == clock:
                    continue
                for b in p["bits"]:
                    if isinstance(b, int) and b not in clock_bits:
                        arr[b] = [(0.0, input_transition_ns, ("port", pname, None, None, 0.0)),
                                  (0.0, input_transition_ns, ("port", pname, None, None, 0.0))]
        else:
            for iname, cell in insts.items():
                if not cell.sequential or cell.clock_gate:
                    continue
                for arc in cell.delay_arcs:
                    if arc.kind not in ("rising_edge", "falling_edge"):
                        continue
                    ob = bit(iname, arc.pin)
                    if ob is None:
                        continue
                    load = load_cap.get(ob, 0.0)
                    slot = arr.setdefault(ob, [None, None])
                    for k, edge in enumerate(_EDGES):
                        if f"cell_{edge}" not in arc.tables:
                            continue
                        d, s = delay_of(arc, edge, input_transition_ns, load)
                        if slot[k] is None or d > slot[k][0]:
                            slot[k] = (d, s, ("reg", iname, f"{arc.related} -> {arc.pin}", None, d))
        # combinational propagation in topological order (Kahn over cells)
        pending = {}
        for iname, cell in comb.items():
            ins = {bit(iname, a.related) for a in cell.delay_arcs} - {None}
            pending[iname] = len(ins & comb_out)
        ready = [n for n, k in pending.items() if k == 0]
        done = 0
        while ready:
            iname = ready.pop()
            done += 1
            cell = comb[iname]
            for arc in cell.delay_arcs:
                ib, ob = bit(iname, arc.related), bit(iname, arc.pin)
                if ib is None or ob is None or ib not in arr or ib in clock_bits:
                    continue
                load = load_cap.get(ob, 0.0)
                src = arr[ib]
                slot = arr.setdefault(ob, [None, None])
                for k, edge in enumerate(_EDGES):
                    if f"cell_{edge}" not in arc.tables:
                        continue
                    if arc.sense == "positive_unate":
                        cands = [k]
                    elif arc.sense == "negative_unate":
                        cands = [1 - k]
                    else:
                        cands = [0, 1]
                    for j in cands:
                        if src[j] is None:
                            continue
                        a_in, s_in = src[j][0], src[j][1]
                        d, s = delay_of(arc, edge, s_in, load)
                        prev = slot[k]
                        if prev is None or a_in + d > prev[0]:
                            slot[k] = (a_in + d, max(s, prev[1]) if prev else s,
                                       ("cell", iname, f"{arc.related} -> {arc.pin}", (ib, j), d))
                        elif s > prev[1]:
                            slot[k] = (prev[0], s, prev[2])
            for pin in cell.outputs:
                ob = bit(iname, pin)
                if ob is None:
                    continue
                for nxt in set(fanout.get(ob, ())):
                    if nxt in pending:
                        pending[nxt] -= 1
                        if pending[nxt] == 0:
                            ready.append(nxt)
        if done != len(comb):
            stuck = sorted(n for n, k in pending.items() if k > 0)[:3]
            raise TimingError(f"combinational loop in {top or 'the netlist'} (through cells {stuck})")
        results[source] = arr
    # end points
    paths: dict[str, TimingPath] = {}

    def trace(arr, b: int, k: int) -> list[PathStep]:
        steps = []
        while True:
            a, s, pred = arr[b][k]
            kind, iname, arc, prev, incr = pred
            cell = cells[iname]["type"] if kind != "port" else "(port)"
            steps.append(PathStep(iname, cell, arc or "input", _EDGES[k], names.get(b, f"n{b}"),
                                  round(incr, 4), round(a, 4), round(s, 4), round(load_cap.get(b, 0.0), 5)))
            if prev is None:
                break
            b, k = prev
        return steps[::-1]

    def consider(group: str, arr, b: int, k: int, setup: float, end: str) -> None:
        a = arr[b][k][0]
        need = a + setup
        if group not in paths or need > paths[group].required_period_ns:
            steps = trace(arr, b, k)
            first = steps[0]
            start = first.net if first.cell == "(port)" else f"{first.net} ({first.cell} {first.instance})"
            paths[group] = TimingPath(group, start, end, round(a, 4), round(setup, 4),
                                      round(need, 4), steps)

    for source, arr in results.items():
        for iname, cell in insts.items():
            for arc in cell.setup_arcs:
                b = bit(iname, arc.pin)
                if b is None or b not in arr:
                    continue
                q = next((bit(iname, p) for p in cell.outputs if bit(iname, p) is not None), None)
                end = f"{names.get(q, iname) if q is not None else iname} ({cell.name} {iname}.{arc.pin})"
                for k, edge in enumerate(_EDGES):
                    if arr[b][k] is None:
                        continue
                    t = arc.tables.get(f"{edge}_constraint")
                    setup = t.at(constrained_pin_transition=arr[b][k][1] / tunit,
                                 related_pin_transition=input_transition_ns / tunit) * tunit if t else 0.0
                    consider(f"{source}-to-reg", arr, b, k, setup, end)
        for pname, p in ports.items():
            if p["direction"] != "output":
                continue
            for i, b in enumerate(p["bits"]):
                if not isinstance(b, int) or b not in arr:
                    continue
                for k in (0, 1):
                    if arr[b][k] is not None:
                        label = pname if len(p["bits"]) == 1 else f"{pname}[{i}]"
                        consider(f"{source}-to-out", arr, b, k, 0.0, label)
    paths = {g: paths[g] for g in PATH_GROUPS if g in paths}
    crit = max((p.required_period_ns for p in paths.values()), default=None)
    return TimingReport(top=top, liberty=lib.path, corner=lib.corner, cells=len(insts), paths=paths,
                        critical_path_ns=round(crit, 4) if crit else None,
                        fmax_mhz=round(1000.0 / crit, 2) if crit else None,
                        input_transition_ns=input_transition_ns, output_load_pf=output_load_pf,
                        seconds=round(time.monotonic() - t0, 3))


def analyze_netlist(netlist_json: Path | str, top: str, liberty: Path | str, **kw) -> TimingReport:
    """:func:`analyze` of module *top* of a Yosys ``write_json`` file."""
    data = json.loads(Path(netlist_json).read_text())
    if top not in data.get("modules", {}):
        raise TimingError(f"top module {top!r} missing from {netlist_json}")
    return analyze(data["modules"][top], timing_library(liberty), top=top, **kw)


def setup_overhead_ns(lib: TimingLibrary, input_transition_ns: float = DEFAULT_INPUT_TRANSITION_NS) -> float:
    """Clock → Q plus setup of the library's smallest D flip-flop at a light load: the part of
    a cycle the logic between two registers cannot use (for delay-driven mapping)."""
    best = None
    for cell in lib.cells.values():
        edge = [a for a in cell.delay_arcs if a.kind == "rising_edge"]
        if not cell.sequential or cell.clock_gate or not edge or not cell.setup_arcs:
            continue
        load = min(cell.input_cap.values(), default=0.0) * lib.cap_unit_pf * 4
        pt = {"input_net_transition": input_transition_ns / lib.time_unit_ns,
              "total_output_net_capacitance": load / lib.cap_unit_pf}
        cq = max(t.at(**pt) for a in edge for n, t in a.tables.items() if n.startswith("cell_"))
        su = max(t.at(constrained_pin_transition=input_transition_ns / lib.time_unit_ns,
                      related_pin_transition=input_transition_ns / lib.time_unit_ns)
                 for a in cell.setup_arcs for n, t in a.tables.items() if n.endswith("_constraint"))
        cand = (cell.area, (cq + su) * lib.time_unit_ns)
        if best is None or cand < best:
            best = cand
    return best[1] if best else 0.0
