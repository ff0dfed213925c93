"""Activity-based energy flow (flows/energy.py, flows/liberty.py): Liberty reading, toggle
capture on the gate-level netlist, golden checking of the measured netlist, energy figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpgen.flows import energy as E
from mpgen.flows.liberty import parse_liberty, power_library
from mpgen.sim import workloads as W

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


@pytest.mark.sim
@pytest.mark.synth
def test_generic_energy_of_the_mixed_dot_product(tmp_path, record_property):
    """All four modes of a small mixed unit: outputs checked against the golden model on the
    gate-level netlist, input-port toggles equal to the payload bit flips, FP4 cheaper than FP8."""
    params = {"block_size": 8, "formats": "mixed", "organisation": "split"}
    rep = E.measure_energy("dotprod", params, ops=24, data="synthetic", work_dir=tmp_path)
    assert rep.energy_unit == "GEU" and rep.liberty is None
    assert set(rep.modes) == {"fp4xfp4", "fp4xfp8", "fp8xfp4", "fp8xfp8"}
    assert rep.nets_observed >= 0.95 and rep.netlist_cells > 1000
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
    wl = W.workload("dotprod", params, "fp8xfp8", ops=24, data="synthetic")
    driven = [p for ph in wl.setup + wl.measure for p in ph.inputs["i"]]
    net = E.GateNetlist.load(tmp_path / "netlist", "dotprod") if (tmp_path / "netlist" / "netlist.json").is_file() else None
    assert net is not None
    model = E.energy_model(net)
    counts, unmatched = E._parse_coverage(tmp_path / "runs" / "fp8xfp8" / "coverage-all.dat",
                                          "dotprod", model)
    assert not unmatched
    ports = {n: (p["direction"], len(p["bits"])) for n, p in net.module()["ports"].items()}
    bits = E._split_port(ports, "i__payload")  # one port per bit (splitnets)
    from mpgen.rtl.dotprod import BlockDotProduct
    assert len(bits) == BlockDotProduct(**params).i.payload.shape().size > 64
    for port, k in bits:
        b = model.lookup(port, None)
        flips = _popcount_flips([(v >> k) & 1 for v in [0] + driven])  # from 0 at time 0
        assert sum(counts.get(b, (0, 0))) == flips, port


@pytest.mark.sim
@pytest.mark.synth
def test_a_wrong_golden_output_stops_the_energy_flow(tmp_path, monkeypatch):
    """The flow refuses to report energy for a netlist whose outputs disagree with the golden
    model: here the expected value of one output is corrupted."""
    real = W.workload

    def corrupted(unit, params, mode, **kw):
        wl = real(unit, params, mode, **kw)
        ph = wl.measure[0]
        exp = list(ph.expected["o"])
        exp[-1] ^= 1
        ph.expected = {"o": exp}
        return wl

    monkeypatch.setattr(W, "workload", corrupted)
    with pytest.raises(E.EnergyError, match="differ from the golden"):
        E.measure_energy("dotprod", {"block_size": 8, "formats": "fp4"}, ops=16,
                         data="synthetic", work_dir=tmp_path)


@needs_lib
@pytest.mark.sim
@pytest.mark.synth
def test_liberty_energy_in_picojoules(tmp_path):
    params = {"block_size": 8, "formats": "fp4"}
    rep = E.measure_energy("dotprod", params, ops=16, data="synthetic", liberty=LIB,
                           work_dir=tmp_path)
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
    net = E.GateNetlist.load(tmp_path / "netlist", "dotprod", LIB)
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


def test_measure_energy_rejects_bad_requests(tmp_path):
    with pytest.raises(ValueError):
        E.measure_energy("nope", {}, work_dir=tmp_path)
    with pytest.raises(ValueError):
        E.measure_energy("dotprod", {"block_size": 8, "formats": "fp4"}, modes=["fp8xfp8"],
                         work_dir=tmp_path)
    with pytest.raises(FileNotFoundError):
        E.gate_netlist("module t(); endmodule", "t", liberty=tmp_path / "none.lib",
                       work_dir=tmp_path)
