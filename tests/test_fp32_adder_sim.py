"""The FP32 adder on its own, on Verilator: random and corner pairs against IEEE float32.

Inside BlockDotProduct the adder never sees subnormals, ∞ or −0; this test also covers the paths
the unit cannot reach (overflow to ±∞, ∞ operands, flush to zero)."""

import numpy as np
import pytest

from mpgen.rtl.arith import FP32Adder, ToFP32
from mpgen.rtl.emit import to_verilog
from mpgen.sim.runner import run_cocotb
from mpgen.sim.tb_fp32 import reference, stimulus


def test_reference_is_ieee_on_normal_numbers():
    """The reference's deviations only touch zeros and subnormals."""
    a, b = stimulus(5000, 3)
    ok = (np.abs(a) >= np.finfo(np.float32).tiny) & (np.abs(b) >= np.finfo(np.float32).tiny)
    with np.errstate(over="ignore"):
        ieee = (a + b).astype(np.float32)
    ok &= np.abs(ieee) >= np.finfo(np.float32).tiny
    assert ok.sum() > 3000
    assert np.array_equal(reference(a[ok], b[ok]), ieee[ok].view(np.uint32))


@pytest.mark.sim
def test_fp32_adder_verilator(record_property):
    run = run_cocotb(to_verilog(FP32Adder(), "fp32_adder"), "fp32_adder", "mpgen.sim.tb_fp32",
                     params={"vectors": 60000, "seed": 7}, seed=7, testcase="adder")
    res = run.result
    print(f"FP32Adder: {res['vectors']} vectors, {res['mismatches']} mismatches")
    record_property("vectors_checked", f"{res['vectors']} FP32 additions on verilator")
    assert res["mismatches"] == 0, res.get("first_mismatches")
    assert run.passed and res["vectors"] > 50000


@pytest.mark.sim
@pytest.mark.parametrize("width", [27, 47])  # the narrowest allowed, and the bs-16 unit's
def test_to_fp32_verilator(width, record_property):
    run = run_cocotb(to_verilog(ToFP32(width), "to_fp32"), "to_fp32", "mpgen.sim.tb_fp32",
                     params={"vectors": 20000, "seed": width, "width": width, "exp_width": 10},
                     seed=width, testcase="to_fp32")
    res = run.result
    print(f"ToFP32({width}): {res['vectors']} vectors, {res['mismatches']} mismatches")
    record_property("vectors_checked", f"{res['vectors']} integer→FP32 roundings on verilator")
    assert res["mismatches"] == 0, res.get("first_mismatches")
    assert run.passed
