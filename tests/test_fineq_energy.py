"""Gate-level energy of the FineQ temporal array (flows/energy.py on mpgen.rtl.fineq.FineQArray):
the clock-gated netlist computes what the ungated one does.

The array freezes every anti-diagonal of PEs that holds no activation vector (its registers'
enables low), and Yosys's ``clockgate`` turns those enables into integrated clock-gating cells.
Both netlists of one small temporal array run the same real-weight-shaped workload (synthetic
data, two weight tiles with their loads) through the energy flow's testbench, which compares
every result with the golden ``int_gemm``: equal to the golden results on both, their outputs
are equal to each other, in the same cycles.
"""

from __future__ import annotations

import pytest

from mpgen.rtl.emit import to_verilog
from mpgen.rtl.fineq import FineQArray
from mpgen.sim.workloads import fineq_workload

#: A small unary temporal array: R = 4 is not a multiple of 3 (a padded last cluster word),
#: non-square, so every diagonal length occurs.
PARAMS = {"rows": 4, "cols": 3, "pe": "temporal", "coding": "unary"}


@pytest.mark.sim
@pytest.mark.synth
def test_clock_gated_temporal_array_outputs_equal_the_ungated_ones(gated_and_ungated):
    arr = FineQArray(**PARAMS)
    ops = 2 * 16 * arr.rows * arr.cols  # two tiles of 16 vectors (the workload's tile size)
    load = fineq_workload(arr, "mac", ops=ops, data="synthetic")
    got = gated_and_ungated(to_verilog(arr, "fineq"), "fineq", {"mac": load})
    off, on = got[False]["mac"], got[True]["mac"]
    # every result of both netlists was compared with the golden model: none differed
    assert off.mismatches == on.mismatches == 0
    assert off.checked == on.checked == len(load.setup[0].expected["o"]) + ops // arr.cols // arr.rows
    assert off.cycles == on.cycles  # gating changes no schedule
    # and it pays: the frozen diagonals' registers see no clock edges
    assert on.breakdown["clock"] < off.breakdown["clock"]
