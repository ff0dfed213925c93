"""Activity-based energy flow (flows/energy.py, flows/liberty.py): Liberty reading, toggle
capture on the gate-level netlist, golden checking of the measured netlist, energy figures, and
the content-addressed cache of the gate-level Verilator build.

``measure_energy(netlist, workloads)`` takes a :class:`~mpgen.flows.energy.GateNetlist` (here from
:func:`~mpgen.flows.energy.gate_netlist`) and ``{mode: Workload}`` (here from
:func:`mpgen.sim.workloads.dotprod_workload` on the component), as the engine's energy stage does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mpgen.flows import energy as E
from mpgen.flows.area import synthesize
from mpgen.flows.liberty import parse_liberty, power_library
from mpgen.sim.workload import StreamPhase, Workload
from mpgen.sim.workloads import dotprod_modes, dotprod_workload

LIB = Path(__file__).resolve().parents[1].parent / "shared" / "lib" / "sg13g2_stdcell_typ_1p20V_25C.lib"
needs_lib = pytest.mark.skipif(not LIB.is_file(), reason="IHP SG13G2 Liberty file not present")

TINY_LIB = r"""
library (tiny) {
  capacitive_load_unit (1,pf);
  time_unit : "1ns";
  voltage_unit : "1V";
  nom_voltage : 1.5;
  power_lut_template (p2) {
    variable_1 : input_transition_time;
    variable_2 : total_output_net_capacitance;
    index_1 ("0.1, 0.3");
    index_2 ("0.01, 0.03");
  }
  /* a comment */
  cell (nand2) {
    area : 4.0;
    pin (A) { direction : input; capacitance : 0.002; }
    pin (B) { direction : input; capacitance : 0.004; }
    pin (Y) {
      direction : output;
      function : "!(A*B)";
      internal_power () {
        related_pin : "A";
        rise_power (p2) { values ("1.0, 3.0", \
                                  "5.0, 7.0"); }
        fall_power (p2) { values ("2.0, 2.0", "2.0, 2.0"); }
      }
    }
  }
}
"""


def test_liberty_reader_on_a_small_library(tmp_path):
    lib_path = tmp_path / "tiny.lib"
    lib_path.write_text(TINY_LIB)
    lib = power_library(lib_path)
    assert lib.voltage == 1.5 and lib.energy_unit == "pJ"
    cell = lib.cells["nand2"]
    assert cell.input_cap == {"A": 0.002, "B": 0.004} and cell.outputs == ("Y",)
    y = cell.pin_power["Y"]
    # grid points exactly, bilinear in between, linear extrapolation outside
    assert y.energy(True, 0.1, 0.01) == pytest.approx(1.0)
    assert y.energy(True, 0.3, 0.03) == pytest.approx(7.0)
    assert y.energy(True, 0.2, 0.02) == pytest.approx(4.0)
    assert y.energy(True, 0.5, 0.01) == pytest.approx(9.0)
    assert y.energy(False, 0.2, 0.02) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="Liberty"):
        parse_liberty("library (x) { cell (a) { area : 1; }")  # unbalanced
    with pytest.raises(FileNotFoundError):
        power_library(tmp_path / "missing.lib")


@needs_lib
def test_liberty_reader_on_ihp_sg13g2():
    lib = power_library(LIB)
    assert lib.voltage == 1.2 and len(lib.cells) == 84
    nand = lib.cells["sg13g2_nand2_1"]
    assert nand.area == 7.2576
    assert nand.input_cap == {"A": 0.00288593, "B": 0.00297812}  # as written in the file
    ff = lib.cells["sg13g2_dfrbp_1"]
    assert ff.clock_pins == ("CLK",) and set(ff.outputs) == {"Q", "Q_N"}
    # the first rise_power entry of nand2_1's Y related to A, read back at its grid point
    text = LIB.read_text()
    body = text[text.index("cell (sg13g2_nand2_1)"):]
    ip = body[body.index("internal_power"):]
    rp = ip[ip.index("rise_power"):]
    first = float(rp[rp.index("values"):].split('"')[1].split(",")[0])
    assert nand.pin_power["Y"].rise["A"](0.0186, 0.001) == pytest.approx(first)


def _popcount_flips(values):
    return sum(bin(a ^ b).count("1") for a, b in zip(values, values[1:]))


def _dotprod(params, work_dir, *, ops, liberty=None):
    """(component, generic or Liberty gate-level netlist in work_dir/netlist, {mode: synthetic
    workload of ops block pairs} for every mode of the component)."""
    from mpgen.rtl.dotprod import BlockDotProduct
    from mpgen.rtl.emit import to_verilog

    comp = BlockDotProduct(**params)
    net = E.gate_netlist(to_verilog(comp, "dotprod"), "dotprod", liberty=liberty,
                         work_dir=work_dir / "netlist")
    loads = {m: dotprod_workload(comp, m, ops=ops, data="synthetic") for m in dotprod_modes(comp)}
    return comp, net, loads


def _stamps(build_root):
    """Build stamps of the gate-level Verilator builds under *build_root*."""
    return sorted(build_root.glob("energy-*/.mpgen-build.json"))


@pytest.mark.sim
@pytest.mark.synth
def test_generic_energy_of_the_mixed_dot_product(tmp_path, record_property):
    """All four modes of a small mixed unit: outputs checked against the golden model on the
    gate-level netlist, input-port toggles equal to the payload bit flips, FP4 cheaper than FP8."""
    params = {"block_size": 8, "formats": "mixed", "organisation": "split"}
    comp, net, loads = _dotprod(params, tmp_path, ops=24)
    assert net.liberty is None and net.top == "dotprod"
    rep = E.measure_energy(net, loads, label="dotprod/mixed-b8", work_dir=tmp_path)
    assert rep.unit == "dotprod/mixed-b8"
    assert rep.energy_unit == "GEU" and rep.liberty is None
    assert set(rep.modes) == {"fp4xfp4", "fp4xfp8", "fp8xfp4", "fp8xfp8"}
    assert rep.nets_observed >= 0.95 and rep.netlist_cells == net.cells > 1000
    checked = 0
    for mode, e in rep.modes.items():
        assert e.mismatches == 0 and e.ops == 24 and e.op_name == "block pair"
        assert e.checked >= 2  # the warm-up dot product and the measured one
        checked += e.checked
        assert e.energy_per_op == pytest.approx(sum(e.breakdown.values()))
        assert e.breakdown["clock"] > 0 and e.breakdown["internal"] > 0
        assert e.cycles >= e.ops  # one block pair per cycle at best
    per = rep.per_op()
    assert per["fp4xfp4"] < per["fp4xfp8"] < per["fp8xfp8"]
    assert per["fp4xfp4"] < per["fp8xfp4"] < per["fp8xfp8"]
    record_property("vectors_checked", f"{checked} dot products on the gate-level netlist (verilator)")

    # The input port's toggles in the coverage data are exactly the bit flips of the payloads
    # the testbench drove (known without Verilator): measured phases of the fp8xfp8 run.
    wl = loads["fp8xfp8"]
    driven = [p for ph in wl.setup + wl.measure for p in ph.inputs["i"]]
    assert E.GateNetlist.load(tmp_path / "netlist", "dotprod").cells == net.cells
    model = E.energy_model(net)
    counts, unmatched = E._parse_coverage(tmp_path / "runs" / "fp8xfp8" / "b0" / "coverage.dat",
                                          "dotprod", model)
    assert not unmatched
    ports = {n: (p["direction"], len(p["bits"])) for n, p in net.module()["ports"].items()}
    bits = E._split_port(ports, "i__payload")  # one port per bit (splitnets)
    assert len(bits) == comp.i.payload.shape().size > 64
    for port, k in bits:
        b = model.lookup(port, None)
        flips = _popcount_flips([(v >> k) & 1 for v in [0] + driven])  # from 0 at time 0
        assert sum(counts.get(b, (0, 0))) == flips, port


@pytest.mark.sim
@pytest.mark.synth
def test_a_wrong_golden_output_stops_the_energy_flow(tmp_path):
    """The flow refuses to report energy for a netlist whose outputs disagree with the golden
    model: here the expected value of one output is corrupted."""
    _, net, loads = _dotprod({"block_size": 8, "formats": "fp4"}, tmp_path, ops=16)
    ph = loads["fp4xfp4"].measure[0]
    exp = list(ph.expected["o"])
    exp[-1] ^= 1
    ph.expected = {"o": exp}
    with pytest.raises(E.EnergyError, match="differ from the golden"):
        E.measure_energy(net, loads, work_dir=tmp_path)


@pytest.mark.sim
@pytest.mark.synth
def test_gate_level_build_is_cached_by_content(tmp_path):
    """The Verilator build of netlist + testbench lives in the build cache under a content hash:
    a second measurement of the same netlist (another work folder, fewer modes with the same
    stream depths) reuses it, with the same figures; another netlist gets its own build."""
    root = tmp_path / "sim"
    params = {"block_size": 8, "formats": "mixed", "organisation": "split"}
    _, net, loads = _dotprod(params, tmp_path, ops=16)
    first = E.measure_energy(net, loads, work_dir=tmp_path / "e1", build_root=root)
    (stamp,) = _stamps(root)
    assert stamp.parent.name.startswith("energy-dotprod-")
    binary = stamp.parent / "obj" / "sim"
    before = (stamp.read_text(), binary.stat().st_mtime_ns, binary.stat().st_ino)
    again = E.measure_energy(net, {"fp8xfp4": loads["fp8xfp4"]}, work_dir=tmp_path / "e2",
                             build_root=root)
    assert _stamps(root) == [stamp]
    assert (stamp.read_text(), binary.stat().st_mtime_ns, binary.stat().st_ino) == before
    assert again.modes["fp8xfp4"].energy_per_op == first.modes["fp8xfp4"].energy_per_op
    assert again.modes["fp8xfp4"].cycles == first.modes["fp8xfp4"].cycles
    # a different netlist (fp4-only) with the same workload shape: a second cache entry
    _, other, other_loads = _dotprod({"block_size": 8, "formats": "fp4"}, tmp_path / "fp4", ops=16)
    E.measure_energy(other, other_loads, work_dir=tmp_path / "e3", build_root=root)
    assert len(_stamps(root)) == 2 and stamp in _stamps(root)


@needs_lib
@pytest.mark.sim
@pytest.mark.synth
def test_liberty_energy_in_picojoules(tmp_path):
    _, net, loads = _dotprod({"block_size": 8, "formats": "fp4"}, tmp_path, ops=16, liberty=LIB)
    assert net.liberty == LIB.resolve()
    rep = E.measure_energy(net, loads, work_dir=tmp_path)
    e = rep.modes["fp4xfp4"]
    assert rep.energy_unit == "pJ" and rep.liberty == str(LIB.resolve())
    # a few pJ per block pair in 130 nm: well above 0.1 pJ, well below 1 nJ
    assert 0.1 < e.energy_per_op < 1000
    assert e.breakdown["switching"] > 0 and e.breakdown["clock"] > 0
    saved = json.loads((tmp_path / "energy.json").read_text())
    assert saved["modes"]["fp4xfp4"]["energy_per_op"] == e.energy_per_op
    # The clock part, recomputed from the Liberty tables: each clock edge costs the clock pins'
    # internal energy plus ½CV² of their capacitance; there are 2 edges per cycle.
    lib = power_library(LIB)
    m = net.module()
    clk_bit = m["ports"]["clk"]["bits"][0]
    rise = fall = cap = 0.0
    for c in m["cells"].values():
        for pin, bits in c["connections"].items():
            if clk_bit in bits:
                cell = lib.cells[c["type"]]
                cap += cell.input_cap[pin]
                rise += cell.pin_power[pin].energy(True, E.NOMINAL_TRANSITION_NS)
                fall += cell.pin_power[pin].energy(False, E.NOMINAL_TRANSITION_NS)
    per_cycle = rise + fall + cap * lib.voltage ** 2
    assert e.breakdown["clock"] * e.ops == pytest.approx(per_cycle * e.cycles, rel=1e-9)


def _port_only_netlist(directory):
    """A hand-written netlist with streams i (in) and o (out) and no cells (no tools needed)."""
    bits = iter(range(2, 100))
    ports = {name: {"direction": d, "bits": [next(bits)]} for name, d in (
        ("clk", "input"), ("rst", "input"), ("i__valid", "input"), ("i__ready", "output"),
        ("i__payload", "input"), ("o__valid", "output"), ("o__ready", "input"),
        ("o__payload", "output"))}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "netlist.json").write_text(json.dumps(
        {"modules": {"t": {"ports": ports, "cells": {}, "netnames": {}}}}))
    (directory / "netlist.v").write_text("module t(); endmodule\n")
    return directory


def test_measure_energy_rejects_bad_requests(tmp_path):
    net = E.GateNetlist.load(_port_only_netlist(tmp_path / "net"), "t")
    assert net.cells == 0 and net.liberty is None
    with pytest.raises(E.EnergyError, match="no workloads"):
        E.measure_energy(net, {}, work_dir=tmp_path / "w")
    # a workload driving a stream the netlist does not have
    bad = Workload("m", [], [StreamPhase({"x": [1]}, {"o": 1}, None, "x")], 1, "op", "test")
    with pytest.raises(E.EnergyError, match=r"\['x'\] are not ports"):
        E.measure_energy(net, {"m": bad}, work_dir=tmp_path / "w")
    with pytest.raises(E.EnergyError, match="top module 'nope' missing"):
        E.GateNetlist.load(tmp_path / "net", "nope")
    with pytest.raises(FileNotFoundError, match="netlist.json"):
        E.GateNetlist.load(tmp_path / "empty", "t")
    with pytest.raises(FileNotFoundError):
        E.gate_netlist("module t(); endmodule", "t", liberty=tmp_path / "none.lib",
                       work_dir=tmp_path)


class _LoadOnValid(wiring.Component):
    """An 8-bit register that loads only when its input is valid (a clock-gating candidate:
    8 flip-flops sharing the enable ``i.valid``, without reset: Yosys gates no register whose
    synchronous reset must act regardless of its enable), and a valid flag one cycle later."""

    def __init__(self):
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        data = Signal(8, reset_less=True)
        m.d.comb += [self.i.ready.eq(1), self.o.payload.eq(data)]
        m.d.sync += self.o.valid.eq(self.i.valid)
        with m.If(self.i.valid):
            m.d.sync += data.eq(self.i.payload)
        return m


@needs_lib
@pytest.mark.sim
@pytest.mark.synth
def test_a_gated_registers_clock_toggles_only_when_it_loads(tmp_path):
    from mpgen.rtl.emit import to_verilog

    values = [0x5A, 0xC3, 0x0F, 0xF0, 0x99, 0x66]
    # one transfer per phase: the register loads in 6 of the cycles, the clock runs on between
    w = Workload("load", [StreamPhase({"i": [1]}, {"o": 1}, {"o": [1]})],
                 [StreamPhase({"i": [v]}, {"o": 1}, {"o": [v]}) for v in values], len(values),
                 "load", "test values")
    figures = {}
    for gated in (False, True):
        wd = tmp_path / ("gated" if gated else "ungated")
        rep = synthesize(to_verilog(_LoadOnValid(), "lov"), "lov", liberty=LIB, work_dir=wd,
                           netlist=True, clock_gating=gated)
        assert rep.clock_gates == (1 if gated else 0)
        net = E.GateNetlist.load(wd, "lov", LIB)
        got = E.measure_energy(net, {"load": w}, work_dir=wd / "energy")
        assert got.modes["load"].checked == 7 and got.modes["load"].mismatches == 0
        figures[gated] = got.modes["load"]
        if gated:
            m = net.module()
            (icg,) = [c for c in m["cells"].values() if c["type"] == "sg13g2_lgcp_1"]
            gclk, clk = icg["connections"]["GCLK"][0], m["ports"]["clk"]["bits"][0]
            counts, _ = E._parse_coverage(wd / "energy" / "runs" / "load" / "b0" / "coverage.dat",
                                          "lov", E.energy_model(net))
            loads = len(values) + 1  # the measured transfers and the setup one
            assert loads <= counts[gclk][0] <= loads + 2  # (+ the reset cycles, which load 0)
            assert counts[clk][0] > 2 * loads  # the clock itself ran every cycle
    # the gated register's clock pins cost less; the results were checked against the same values
    assert figures[True].breakdown["clock"] < figures[False].breakdown["clock"]
