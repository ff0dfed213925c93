"""Gate-level energy of the double-rate dot-product unit (flows/energy.py on
mpgen.rtl.dotprod.BlockDotProduct with ``fp4_rate=2``): the clock-gated netlist computes what the
ungated one does.

The double-rate unit's second FP4 pair has registers that load only with a dual beat, and each
side's registers load only with a pair of that side; Yosys's ``clockgate`` turns those enables
into integrated clock-gating cells. Both netlists of one small unit run the same workloads (every
mode, synthetic data) through the energy flow's testbench, which compares every result with the
golden ``dot_products``: equal to the golden results on both, their outputs are equal to each
other, in the same cycles.
"""

from __future__ import annotations

import pytest

from mpgen.rtl.dotprod import BlockDotProduct
from mpgen.rtl.emit import to_verilog
from mpgen.sim.workloads import dotprod_modes, dotprod_workload

#: The double-rate organisation at block size 8 (a quarter of the default's lanes).
PARAMS = {"block_size": 8, "formats": "mixed", "organisation": "split", "accumulation": "exact",
          "pipeline": 3, "tree_group": 1, "fp4_rate": 2}


@pytest.mark.sim
@pytest.mark.synth
def test_clock_gated_double_rate_unit_outputs_equal_the_ungated_ones(gated_and_ungated):
    comp = BlockDotProduct(**PARAMS)
    loads = {m: dotprod_workload(comp, m, ops=48, data="synthetic") for m in dotprod_modes(comp)}
    got = gated_and_ungated(to_verilog(comp, "dotprod"), "dotprod", loads)
    for mode in loads:
        off, on = got[False][mode], got[True][mode]
        # every result of both netlists was compared with the golden model: none differed
        assert off.mismatches == on.mismatches == 0
        assert off.checked == on.checked >= 2
        assert off.cycles == on.cycles  # gating changes no schedule
        assert on.breakdown["clock"] < off.breakdown["clock"]
    # two FP4xFP4 pairs per beat: the 48 FP4 pairs take 24 beats, the 48 FP8 pairs 48 (the
    # same pipeline fill and drain around both)
    assert got[True]["fp8xfp8"].cycles - got[True]["fp4xfp4"].cycles == 48 // 2
