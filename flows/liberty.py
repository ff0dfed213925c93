"""A small Liberty (.lib) reader for the power data the energy flow needs.

:func:`parse_liberty` turns a Liberty file into nested :class:`Group` objects (simple
attributes, complex attributes, sub-groups), enough for standard-cell libraries such as
IHP SG13G2.  :func:`power_library` extracts, per cell and pin, the input capacitance
and the ``internal_power`` look-up tables, and evaluates them by bilinear interpolation
(extrapolating linearly outside the table, as timing tools do).

Units follow the library header: capacitance in ``capacitive_load_unit``, transition
in ``time_unit``; internal-power table values are energies per transition in
``capacitive_load_unit × voltage_unit²`` (pF·V² = pJ for the usual pf/V header).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import re
from pathlib import Path
from typing import Mapping, Sequence

__all__ = ["Group", "parse_liberty", "parse_floats", "table_segment", "liberty_unit", "library_units", "PowerTable", "PinPower", "CellPower", "PowerLibrary",
           "power_library"]

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[A-Za-z0-9_.+\-!\[\]\'*&|^]+|[(){};:,]')


@dataclasses.dataclass
class Group:
    """One Liberty group ``type (args) { ... }``."""

    type: str
    args: list[str]
    attrs: dict[str, str] = dataclasses.field(default_factory=dict)
    complex: dict[str, list[list[str]]] = dataclasses.field(default_factory=dict)
    groups: list["Group"] = dataclasses.field(default_factory=list)

    def sub(self, type_: str) -> list["Group"]:
        return [g for g in self.groups if g.type == type_]


def _unquote(t: str) -> str:
    return t[1:-1] if len(t) >= 2 and t[0] == '"' and t[-1] == '"' else t


def parse_liberty(text: str) -> Group:
    """Parse Liberty *text*; returns the ``library`` group.  Raises ``ValueError`` with
    the token position on malformed input."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"\\\s*\n", " ", text)
    text = re.sub(r"//[^\n]*", " ", text)
    toks = _TOKEN.findall(text)
    root = Group("(root)", [])
    stack = [root]
    i, n = 0, len(toks)
    while i < n:
        t = toks[i]
        if t == "}":
            if len(stack) == 1:
                raise ValueError(f"Liberty: unbalanced '}}' at token {i}")
            stack.pop()
            i += 1
            continue
        if t == ";":
            i += 1
            continue
        name = t
        if i + 1 >= n:
            raise ValueError(f"Liberty: unexpected end after {name!r}")
        nxt = toks[i + 1]
        if nxt == ":":
            j = i + 2
            val = []
            while j < n and toks[j] not in (";", "}"):
                val.append(_unquote(toks[j]))
                j += 1
            if j < n and toks[j] == "}":  # a missing ';' before '}' is tolerated
                stack[-1].attrs[name] = " ".join(val)
                i = j
                continue
            stack[-1].attrs[name] = " ".join(val)
            i = j + 1
        elif nxt == "(":
            j = i + 2
            args = []
            while j < n and toks[j] != ")":
                if toks[j] != ",":
                    args.append(_unquote(toks[j]))
                j += 1
            j += 1
            if j < n and toks[j] == "{":
                g = Group(name, args)
                stack[-1].groups.append(g)
                stack.append(g)
                i = j + 1
            else:
                stack[-1].complex.setdefault(name, []).append(args)
                i = j
        else:
            raise ValueError(f"Liberty: cannot parse near token {i}: {' '.join(toks[i:i + 6])!r}")
    libs = root.sub("library")
    if len(stack) != 1 or not libs:
        raise ValueError("Liberty: no complete library group")
    return libs[0]


def parse_floats(s: str) -> list[float]:
    """The numbers of a Liberty list string (``"0.1, 0.2 0.3"``)."""
    return [float(x) for x in re.split(r"[,\s]+", s.strip()) if x]


def liberty_unit(s: str, units: Mapping[str, float], what: str) -> float:
    """A Liberty unit attribute (``"1ns"``, ``"10ps"``) in the unit *units* are scaled to;
    ``ValueError`` for a unit *units* does not list."""
    m = re.fullmatch(r"\s*([0-9.]+)?\s*([a-zA-Z]+)\s*", s)
    if not m or m.group(2).lower() not in units:
        raise ValueError(f"Liberty: unsupported {what} {s!r}")
    return float(m.group(1) or 1) * units[m.group(2).lower()]


def library_units(lib: Group) -> tuple[float, float]:
    """``(capacitance unit in pF, time unit in ns)`` of a parsed ``library`` group."""
    cap = lib.complex.get("capacitive_load_unit")
    cap_pf = float(cap[0][0]) * {"pf": 1.0, "ff": 1e-3}[cap[0][1].lower()] if cap else 1.0
    time_ns = liberty_unit(lib.attrs.get("time_unit", "1ns"), {"ns": 1.0, "ps": 1e-3}, "time_unit")
    return cap_pf, time_ns


def table_segment(xs: Sequence[float], x: float) -> tuple[int, int, float]:
    """``(i, i + 1, t)``: the index segment of a table axis *xs* around *x* and *x*'s position
    in it (``t`` outside [0, 1] beyond the axis: linear extrapolation, as timing tools do)."""
    if len(xs) == 1:
        return 0, 0, 0.0
    k = min(max(bisect.bisect_right(xs, x) - 1, 0), len(xs) - 2)
    return k, k + 1, (x - xs[k]) / (xs[k + 1] - xs[k])


@dataclasses.dataclass(frozen=True)
class PowerTable:
    """An energy table over (input transition, output load) or transition alone."""

    transitions: tuple[float, ...]
    loads: tuple[float, ...]  # empty for 1-D tables
    values: tuple[tuple[float, ...], ...]  # [transition][load]

    def __call__(self, transition: float, load: float = 0.0) -> float:
        i0, i1, ti = table_segment(self.transitions, transition)
        if not self.loads:
            row = [r[0] for r in self.values]
            return row[i0] + (row[i1] - row[i0]) * ti
        j0, j1, tj = table_segment(self.loads, load)
        v = self.values

        def at(i):
            return v[i][j0] + (v[i][j1] - v[i][j0]) * tj
        return at(i0) + (at(i1) - at(i0)) * ti


@dataclasses.dataclass(frozen=True)
class PinPower:
    """Internal power of one pin: tables per related pin (``""`` if none) for rising and
    falling transitions of this pin."""

    rise: Mapping[str, PowerTable]
    fall: Mapping[str, PowerTable]

    def energy(self, rising: bool, transition: float, load: float = 0.0,
               related: tuple[str, ...] | None = None) -> float:
        """Mean over the related pins (which input caused a toggle is not simulated);
        *related* restricts them (a flip-flop's output toggles are caused by its clock)."""
        tabs = self.rise if rising else self.fall
        if related is not None:
            tabs = {k: v for k, v in tabs.items() if k in related} or tabs
        if not tabs:
            return 0.0
        return sum(t(transition, load) for t in tabs.values()) / len(tabs)


@dataclasses.dataclass(frozen=True)
class CellPower:
    name: str
    area: float
    input_cap: Mapping[str, float]  # input pin -> capacitance
    outputs: tuple[str, ...]
    clock_pins: tuple[str, ...]
    pin_power: Mapping[str, PinPower]  # pin -> internal power (inputs and outputs)


@dataclasses.dataclass(frozen=True)
class PowerLibrary:
    name: str
    voltage: float
    cap_unit_pf: float
    time_unit_ns: float
    energy_unit: str
    cells: Mapping[str, CellPower]


def _table(g: Group, templates: Mapping[str, Group]) -> PowerTable:
    tmpl = templates.get(g.args[0]) if g.args else None
    idx = {}
    variables = {}
    for k in ("index_1", "index_2"):
        src = g.complex.get(k) or (tmpl.complex.get(k) if tmpl else None)
        if src:
            idx[k] = parse_floats(src[0][0])
        if tmpl is not None and f"variable_{k[-1]}" in tmpl.attrs:
            variables[k] = tmpl.attrs[f"variable_{k[-1]}"]
    rows = [parse_floats(r) for r in (g.complex.get("values") or [[]])[0]]
    if not rows:
        raise ValueError(f"Liberty: power table without values ({g.type})")
    # Which index is the transition and which the load (templates name them).
    trans_key, load_key = "index_1", "index_2"
    if "transition" not in variables.get("index_1", "transition") and "index_2" in idx:
        trans_key, load_key = "index_2", "index_1"
        rows = [list(col) for col in zip(*rows)]
    trans = tuple(idx.get(trans_key, [0.0]))
    if load_key in idx:
        loads = tuple(idx[load_key])
        values = tuple(tuple(r) for r in rows)
    else:  # 1-D: one row of values over transitions
        flat = rows[0] if len(rows) == 1 else [r[0] for r in rows]
        loads = ()
        values = tuple((x,) for x in flat)
    if len(values) != len(trans) or (loads and any(len(r) != len(loads) for r in values)):
        raise ValueError(f"Liberty: power table shape does not match its indices ({g.type})")
    return PowerTable(trans, loads, values)


@functools.lru_cache(maxsize=4)
def _power_library_cached(path: str, mtime: float) -> PowerLibrary:
    lib = parse_liberty(Path(path).read_text(errors="replace"))
    templates = {g.args[0]: g for g in lib.groups
                 if g.type in ("power_lut_template", "lu_table_template") and g.args}
    cap_pf, time_ns = library_units(lib)
    voltage = float(lib.attrs.get("nom_voltage", "nan"))
    if not voltage == voltage:
        raise ValueError("Liberty: no nom_voltage in the library header")
    cells = {}
    for c in lib.sub("cell"):
        name = c.args[0]
        input_cap, outputs, clocks, pin_power = {}, [], set(), {}
        for ff in c.sub("ff") + c.sub("latch"):
            for key in ("clocked_on", "enable"):
                if key in ff.attrs:
                    clocks.update(re.findall(r"[A-Za-z_]\w*", ff.attrs[key]))
        for p in c.sub("pin"):
            pname = p.args[0]
            direction = p.attrs.get("direction", "")
            if direction == "input":
                cap_s = p.attrs.get("capacitance")
                if cap_s is None and "rise_capacitance" in p.attrs:
                    cap_s = str((float(p.attrs["rise_capacitance"])
                                 + float(p.attrs.get("fall_capacitance", p.attrs["rise_capacitance"]))) / 2)
                input_cap[pname] = float(cap_s or lib.attrs.get("default_input_pin_cap", 0.0))
                if p.attrs.get("clock") == "true":
                    clocks.add(pname)
            elif direction == "output":
                outputs.append(pname)
            rise, fall = {}, {}
            for ip in p.sub("internal_power"):
                rel = ip.attrs.get("related_pin", "")
                for tg in ip.groups:
                    if tg.type in ("rise_power", "power"):
                        rise[rel] = _table(tg, templates)
                    if tg.type in ("fall_power", "power"):
                        fall[rel] = _table(tg, templates)
            if rise or fall:
                pin_power[pname] = PinPower(rise, fall)
        cells[name] = CellPower(name, float(c.attrs.get("area", 0.0)), input_cap, tuple(outputs),
                                tuple(sorted(clocks)), pin_power)
    if not cells:
        raise ValueError(f"{path}: no cells in the Liberty file")
    unit = "pJ" if abs(cap_pf - 1.0) < 1e-12 else f"{cap_pf:g} pF·V²"
    return PowerLibrary(lib.args[0] if lib.args else Path(path).stem, voltage, cap_pf, time_ns,
                        unit, cells)


def power_library(liberty: Path | str) -> PowerLibrary:
    """Power data of a Liberty file (cached per path and modification time)."""
    p = Path(liberty).expanduser().resolve()
    if not p.is_file():
        raise FileNotFoundError(f"Liberty file not found: {liberty}")
    return _power_library_cached(str(p), p.stat().st_mtime)
