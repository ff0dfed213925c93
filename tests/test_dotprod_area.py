"""Area of the real BlockDotProduct configurations through the Yosys flow."""

import pytest

from mpgen.flows.area import area_table, synthesize
from mpgen.flows.units import get_unit
from mpgen.rtl.dotprod import BlockDotProduct
from mpgen.rtl.emit import to_verilog

from conftest import SHARED

LIBERTY = SHARED / "lib" / "sg13g2_stdcell_typ_1p20V_25C.lib"


@pytest.mark.synth
def test_fp8_costs_more_than_fp4_and_breakdown_is_complete(tmp_path):
    reports = {}
    for name, params in (("fp4-only", {"formats": "fp4"}), ("fp8-only", {"formats": "fp8"})):
        reports[name] = synthesize(to_verilog(BlockDotProduct(**params), "dotprod"), "dotprod",
                                   work_dir=tmp_path / name)
    fp4, fp8 = reports["fp4-only"], reports["fp8-only"]
    assert fp8.nand2_eq > 1.5 * fp4.nand2_eq  # E4M3 lanes and a 41-bit tree vs E2M1 lanes
    assert {"lanes_e2m1", "tree_e2m1", "scale", "accumulator"} <= set(fp4.submodules)
    assert {"lanes_e4m3", "tree_e4m3", "scale", "accumulator"} <= set(fp8.submodules)
    # the multipliers dominate the FP8 unit but not the FP4 one
    assert fp8.submodules["lanes_e4m3"].nand2_eq > 3 * fp4.submodules["lanes_e2m1"].nand2_eq
    table = area_table(reports, get_unit("dotprod").area_groups)  # raises if a module is unassigned
    print(table)
    assert "multipliers NAND2-eq" in table and "| fp8-only |" in table


@pytest.mark.synth
@pytest.mark.skipif(not LIBERTY.is_file(), reason="../shared/lib (IHP SG13G2 Liberty) not present")
def test_fp4_unit_maps_to_a_real_library(tmp_path):
    verilog = to_verilog(BlockDotProduct(formats="fp4"), "dotprod")
    rep = synthesize(verilog, "dotprod", liberty=LIBERTY, work_dir=tmp_path / "lib")
    generic = synthesize(verilog, "dotprod", work_dir=tmp_path / "generic")
    assert rep.area_um2 > 0 and rep.nand2_eq == pytest.approx(rep.lib_nand2_eq, rel=1e-3)
    # library NAND2-eq and the generic estimate agree to within a factor that docs/area.md states
    assert 0.7 < rep.lib_nand2_eq / generic.nand2_eq < 1.3
    print(f"fp4-only: {rep.area_um2:.0f} µm², {rep.lib_nand2_eq:.0f} NAND2-eq (lib), "
          f"{generic.nand2_eq:.0f} NAND2-eq (generic)")
