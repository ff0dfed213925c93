"""Static timing (mpgen.flows.timing): known paths, path groups, the ABC cross-check, the
timing stage of the engine, and bad input."""

import json
import re

import pytest

from mpgen.flows.area import synthesize
from mpgen.flows.cli import main
from mpgen.flows.engine import verilog_of
from mpgen.flows.timing import (TimingError, analyze, analyze_netlist, leakage_power_w,
                                timing_library)
from mpgen.flows.units import get_unit
from mpgen.rtl.emit import to_verilog

from abc_stime import ABC, abc_stime_ns, combinational_cut
from toy_design import ToyStreamAdder


def _chain(cell: str, n: int, inp: str = "A", out: str = "X") -> dict:
    """A write_json module: input port ``a`` → *n* cells *cell* in series → output ``y``."""
    cells = {f"c{i}": {"type": cell, "connections": {inp: [10 + i], out: [11 + i]}}
             for i in range(n)}
    return {"cells": cells, "netnames": {},
            "ports": {"a": {"direction": "input", "bits": [10]},
                      "y": {"direction": "output", "bits": [10 + n]}}}


def _table(lib_text: str, cell: str, table: str) -> list[list[float]]:
    """The *table* values of the first timing arc of *cell*, read straight from the file."""
    body = lib_text[lib_text.index(f"cell ({cell})"):]
    body = body[body.index(f"{table} ("):]
    values = re.search(r"values\s*\((.*?)\);", body, re.S).group(1)
    return [[float(x) for x in row.split(",")] for row in re.findall(r'"([^"]*)"', values)]


def test_one_buffer_at_a_table_point_has_the_tables_delay(sg13g2_lib):
    lib = timing_library(sg13g2_lib)
    rise = _table(sg13g2_lib.read_text(), "sg13g2_buf_1", "cell_rise")
    fall = _table(sg13g2_lib.read_text(), "sg13g2_buf_1", "cell_fall")
    # input transition 0.0186 ns and load 0.001 pF are index_1[0] and index_2[0]
    r = analyze(_chain("sg13g2_buf_1", 1), lib, input_transition_ns=0.0186, output_load_pf=0.001)
    assert r.paths["in-to-out"].arrival_ns == pytest.approx(max(rise[0][0], fall[0][0]), abs=1e-4)


def test_a_chain_of_n_cells_takes_n_times_a_cells_delay(sg13g2_lib):
    lib = timing_library(sg13g2_lib)
    cap = lib.cells["sg13g2_inv_1"].input_cap["A"]

    def arrival(n):
        r = analyze(_chain("sg13g2_inv_1", n, "A", "Y"), lib, output_load_pf=cap)
        path = r.paths["in-to-out"]
        assert len(path.steps) == n + 1  # the port and n cells
        assert r.critical_path_ns == path.required_period_ns
        assert r.fmax_mhz == pytest.approx(1000 / r.critical_path_ns, rel=1e-3)
        return path.arrival_ns

    one = (arrival(64) - arrival(32)) / 32  # a cell's delay in the chain, one fanout load
    rise = _table(sg13g2_lib.read_text(), "sg13g2_inv_1", "cell_rise")
    fall = _table(sg13g2_lib.read_text(), "sg13g2_inv_1", "cell_fall")
    # between the tables' entries at the lightest load and at the next one (0.001/0.0234 pF)
    assert min(rise[0][0], fall[0][0]) < one < max(rise[1][1], fall[1][1])
    for n in (8, 16, 32):  # the first cell sees the port's transition: within one cell
        assert abs(arrival(n) - n * one) < 0.5 * one


def test_register_paths_include_clock_to_q_and_setup(sg13g2_lib, tmp_path):
    rep = synthesize(to_verilog(ToyStreamAdder(8), "toy"), "toy", liberty=sg13g2_lib,
                     work_dir=tmp_path, netlist=True)
    t = analyze_netlist(tmp_path / "netlist.json", "toy", rep.liberty)
    assert set(t.paths) == {"reg-to-reg", "in-to-reg", "reg-to-out", "in-to-out"}
    rr = t.paths["reg-to-reg"]
    first, last = rr.steps[0], rr.steps[-1]
    assert first.cell.startswith("sg13g2_df") and first.arc.startswith("CLK -> Q")
    assert first.incr_ns > 0.05 and rr.setup_ns > 0  # clock-to-Q and setup are counted
    assert rr.required_period_ns == pytest.approx(last.arrival_ns + rr.setup_ns, abs=1e-3)
    assert sum(s.incr_ns for s in rr.steps) == pytest.approx(rr.arrival_ns, abs=2e-3)
    assert t.critical_path_ns == max(p.required_period_ns for p in t.paths.values())


@pytest.mark.skipif(ABC is None, reason="no native yosys-abc on PATH (apt install yosys)")
@pytest.mark.parametrize("unit,config", [("toy", None), ("dotprod", "fp4-only")])
def test_timing_agrees_with_abc_stime_within_10_percent(sg13g2_lib, tmp_path, unit, config):
    if unit == "toy":
        verilog = to_verilog(ToyStreamAdder(16), "toy")
    else:
        spec = get_unit(unit)
        verilog = verilog_of(spec, spec.configs[config], unit)
    synthesize(verilog, unit, liberty=sg13g2_lib, work_dir=tmp_path, netlist=True)
    lib = timing_library(sg13g2_lib)
    module = json.loads((tmp_path / "netlist.json").read_text())["modules"][unit]
    cut = combinational_cut(module, lib)
    ours = analyze(cut, lib, input_transition_ns=0.0).critical_path_ns
    theirs = abc_stime_ns(cut, sg13g2_lib, tmp_path)
    print(f"{unit}: mpgen {ours:.4f} ns, ABC stime {theirs:.4f} ns ({ours / theirs - 1:+.1%})")
    assert ours == pytest.approx(theirs, rel=0.10)


def test_a_combinational_loop_is_an_error(sg13g2_lib):
    lib = timing_library(sg13g2_lib)
    m = _chain("sg13g2_nand2_1", 2, "A", "Y")
    m["cells"]["c0"]["connections"]["B"] = [12]  # c1's output back into c0
    m["cells"]["c1"]["connections"]["B"] = [10]
    with pytest.raises(TimingError, match="combinational loop"):
        analyze(m, lib)


def test_leakage_is_the_sum_of_the_cells_leakage(sg13g2_lib):
    lib = timing_library(sg13g2_lib)
    text = sg13g2_lib.read_text()

    def leak(cell):
        body = text[text.index(f"cell ({cell})"):]
        return float(re.search(r"cell_leakage_power\s*:\s*([0-9.]+)", body).group(1))

    got = leakage_power_w({"sg13g2_inv_1": 3, "sg13g2_dfrbpq_1": 2}, lib)
    assert got == pytest.approx((3 * leak("sg13g2_inv_1") + 2 * leak("sg13g2_dfrbpq_1")) * 1e-12)
    with pytest.raises(TimingError, match="not in"):
        leakage_power_w({"no_such_cell": 1}, lib)


def test_a_liberty_without_delay_tables_is_rejected(tmp_path):
    lib = tmp_path / "notiming.lib"
    lib.write_text('library (x) { time_unit : "1ns"; nom_voltage : 1.2;\n'
                   ' cell (nand) { area : 2; pin (A) { direction : input; capacitance : 0.002; }\n'
                   ' pin (B) { direction : input; capacitance : 0.002; }\n'
                   ' pin (Y) { direction : output; function : "!(A&B)"; } } }\n')
    with pytest.raises(TimingError, match="no timing data"):
        timing_library(lib)


# --------------------------------------------------------------------------- CLI and engine


def test_mpgen_timing_reports_fmax_and_paths(sg13g2_lib, results_cache, capsys):
    assert main(["-q", "timing", "dotprod", "--config", "fp4-only", "--liberty",
                 str(sg13g2_lib), "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    (t,) = [r for r in recs if r["kind"] == "timing"]
    assert t["critical_path_ns"] > 1 and t["fmax_mhz"] == pytest.approx(1000 / t["critical_path_ns"], rel=1e-3)
    # a default configuration is synthesised toward its design clock (UnitSpec.design_clock_ns)
    assert t["clock_ns"] == 5.0 and t["closes"] is True
    assert t["slack_ns"] == pytest.approx(5.0 - t["critical_path_ns"], abs=1e-4)
    assert {p["group"] for p in t["paths"]} >= {"reg-to-reg", "in-to-reg"}
    assert main(["-q", "timing", "dotprod", "--config", "fp4-only", "--liberty",
                 str(sg13g2_lib), "-v"]) == 0
    out = capsys.readouterr().out
    assert "reg-to-reg:" in out and "| instance | cell | arc |" in out and "CLK -> Q" in out


def test_unreachable_clock_is_a_result_not_an_error(sg13g2_lib, results_cache, capsys):
    assert main(["-q", "timing", "dotprod", "--config", "fp4-only", "--liberty",
                 str(sg13g2_lib), "--clock-ns", "0.2", "--json"]) == 0
    (t,) = [r for r in json.loads(capsys.readouterr().out) if r["kind"] == "timing"]
    assert t["clock_ns"] == 0.2 and t["closes"] is False
    assert t["slack_ns"] == pytest.approx(0.2 - t["critical_path_ns"], abs=1e-4)
    assert t["area_um2"] > 0 and t["critical_path_ns"] > 0.2  # the best delay reached


@pytest.mark.parametrize("value", ["0", "-3"])
def test_bad_clock_is_a_clear_error(sg13g2_lib, value, capsys):
    assert main(["timing", "dotprod", "--liberty", str(sg13g2_lib), f"--clock-ns={value}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mpgen: error: --clock-ns must be a positive") and "Traceback" not in "\n".join(err)


def test_clock_without_liberty_is_a_clear_error(capsys):
    assert main(["area", "dotprod", "--clock-ns", "5"]) == 1
    assert "--clock-ns needs --liberty" in capsys.readouterr().err


def test_timing_without_liberty_says_no_timing_exists(results_cache, capsys):
    assert main(["timing", "dotprod", "--config", "fp4-only", "--json"]) == 0
    cap = capsys.readouterr()
    recs = json.loads(cap.out)
    assert not [r for r in recs if r["kind"] == "timing"]
    assert [r for r in recs if r["kind"] == "area"][0]["logic_depth"] > 0
    assert "no timing exists" in cap.err


def test_timing_needs_delay_tables(tmp_path, capsys):
    lib = tmp_path / "notiming.lib"
    lib.write_text('library (x) { time_unit : "1ns"; nom_voltage : 1.2;\n'
                   ' cell (nand) { area : 2; pin (A) { direction : input; capacitance : 0.002; }\n'
                   ' pin (B) { direction : input; capacitance : 0.002; }\n'
                   ' pin (Y) { direction : output; function : "!(A&B)"; } } }\n')
    assert main(["timing", "dotprod", "--liberty", str(lib)]) == 1
    assert "no timing data" in capsys.readouterr().err


def test_liberty_logic_depth_stops_at_the_library_flip_flops(sg13g2_lib, tmp_path):
    # Yosys ltp -noff only knows its own flip-flops; with the library's ones left out of the
    # selection its longest path is one register stage, like the timing's (84 vs 81 cells on
    # dotprod fp8-only, where counting through the flip-flops gave 678)
    rep = synthesize(to_verilog(ToyStreamAdder(16), "toy"), "toy", liberty=sg13g2_lib,
                     work_dir=tmp_path, netlist=True, depth=True)
    t = analyze_netlist(tmp_path / "netlist.json", "toy", sg13g2_lib)
    longest = max(len(p.steps) - 1 for p in t.paths.values())
    assert longest <= rep.logic_depth <= longest + 3


def test_pipeline_auto_picks_the_shallowest_pipeline_that_closes(sg13g2_lib, results_cache, capsys):
    # fp4-only, exact accumulation: pipeline 1 misses 5 ns, pipeline 2 closes it (docs/timing.md)
    assert main(["timing", "dotprod", "--config", "fp4-only", "--param", "pipeline=auto",
                 "--liberty", str(sg13g2_lib), "--clock-ns", "5", "--json"]) == 0
    cap = capsys.readouterr()
    (t,) = [r for r in json.loads(cap.out) if r["kind"] == "timing"]
    assert t["params"]["pipeline"] == 2 and t["closes"] is True
    assert "pipeline=auto at 5 ns → pipeline 2 (tried pipeline 1" in cap.err


def test_pipeline_auto_needs_a_clock(sg13g2_lib, capsys):
    assert main(["timing", "dotprod", "--config", "fp4-only", "--param", "pipeline=auto",
                 "--liberty", str(sg13g2_lib)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mpgen: error: dotprod/fp4-only+pipeline=auto: pipeline=auto needs")
