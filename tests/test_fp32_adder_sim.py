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


@pytest.mark.sim
def test_ieee_fp32_adder_verilator(record_property):
    """``FP32Adder(ieee=True)`` (the MX units'): IEEE subnormal operands and results."""
    run = run_cocotb(to_verilog(FP32Adder(ieee=True), "fp32_adder_ieee"), "fp32_adder_ieee",
                     "mpgen.sim.tb_fp32", params={"vectors": 30000, "seed": 8, "ieee": True},
                     seed=8, testcase="adder")
    res = run.result
    record_property("vectors_checked", f"{res['vectors']} IEEE FP32 additions on verilator")
    assert res["mismatches"] == 0, res.get("first_mismatches")
    assert run.passed and res["vectors"] > 25000


@pytest.mark.sim
def test_to_fp32_subnormals_verilator(record_property):
    """``ToFP32(subnormals=True)``: RNE into FP32's subnormals, overflow to ±∞."""
    run = run_cocotb(to_verilog(ToFP32(47, subnormals=True), "to_fp32_sub"), "to_fp32_sub",
                     "mpgen.sim.tb_fp32", params={"vectors": 20000, "seed": 9, "width": 47,
                                                  "exp_width": 10, "subnormals": True},
                     seed=9, testcase="to_fp32")
    res = run.result
    record_property("vectors_checked", f"{res['vectors']} subnormal-capable roundings on verilator")
    assert res["mismatches"] == 0, res.get("first_mismatches")
    assert run.passed
