"""cocotb regression of ActivationClassifier, driven from pytest.

Verilator runs the full regression (every BF16/FP16 input code in blocks sorted by magnitude and
shuffled, under five scale exponents p, each with an all-NVFP4 and an all-FP8 threshold; realistic
heavy-tailed tensors with Fisher-table/threshold/p reprogramming between them; corner blocks:
zero, −0, max-magnitude, saturating, subnormal, NaN/±Inf; threshold ties; random back-pressure;
reset mid-stream) on the default BF16 unit and on an FP16 unit with other score widths. Verilator,
and Icarus when ``iverilog`` is on PATH, run the quick regression on an FP32-input unit (random bit patterns
instead of the exhaustive sweeps, which need a 16-bit format).
"""

import shutil

import pytest

from mpgen.sim.classifier import run_classifier_regression

FULL_CONFIGS = {
    "bf16": {},
    "fp16-f5-d11-k32": {"input_format": "fp16", "diff_frac_bits": 5, "diff_bits": 11, "channels": 32},
    # time-multiplexed: 4 lanes, one block per 4 cycles (the same decisions bit for bit)
    "bf16-c4": {"cycles_per_block": 4},
}


def _check(result, record_property):
    print(result.summary())
    for name, ph in result.phases.items():
        print(f"  {name}: {ph['vectors']} blocks, {ph['results']} checked, {ph['mismatches']} mismatches "
              f"(input gaps {ph['gap']}, output stalls {ph['stall']})")
    record_property("vectors_checked", f"{result.vectors} blocks / {result.results} output blocks "
                                       f"on {result.simulator}")
    assert result.mismatches == 0, result.details
    assert result.passed and result.vectors > 0 and result.results > 0


@pytest.mark.sim
@pytest.mark.parametrize("name", list(FULL_CONFIGS))
def test_classifier_verilator_full(name, record_property):
    result = run_classifier_regression(FULL_CONFIGS[name], simulator="verilator", quick=False, seed=11)
    _check(result, record_property)
    sweeps = [k for k in result.phases if k.startswith("exhaustive_")]
    assert len(sweeps) == 20  # 5 p values x 2 arrangements x 2 thresholds
    assert all(result.phases[k]["results"] == 4096 for k in sweeps)  # all 65,536 codes each
    assert result.phases["reset_mid_stream"]["vectors"] > 0
    assert result.phases["threshold_tie"]["results"] > 0 and result.phases["threshold_tie_minus1"]["results"] > 0
    timing = result.phases["timing"]
    period = FULL_CONFIGS[name].get("cycles_per_block", 1)
    assert timing["latency"] == (3 if period == 1 else period + 3)
    assert timing["cycles"] == (timing["blocks"] - 1) * period + 1  # one block per period


@pytest.mark.sim
@pytest.mark.parametrize("cycles", [2, 8, 16])
def test_classifier_multiplexed_quick(cycles, record_property):
    """The other lane counts, quick regression (every phase kind, sampled input codes)."""
    result = run_classifier_regression({"cycles_per_block": cycles, "channels": 32},
                                       simulator="verilator", quick=True, seed=cycles)
    _check(result, record_property)
    assert result.phases["timing"]["latency"] == cycles + 3


@pytest.mark.sim
def test_classifier_verilator_quick_fp32(record_property):
    # FP32 input on every machine (Icarus is optional): quick regression, random bit patterns.
    result = run_classifier_regression({"input_format": "fp32", "channels": 32}, simulator="verilator",
                                       quick=True, seed=7)
    _check(result, record_property)


@pytest.mark.sim
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (iverilog) not on PATH")
def test_classifier_icarus_quick_fp32(record_property):
    result = run_classifier_regression({"input_format": "fp32", "channels": 32}, simulator="icarus",
                                       quick=True, seed=5)
    _check(result, record_property)
