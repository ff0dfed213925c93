"""cocotb regression of BlockDotProduct, driven from pytest.

Verilator runs the full regression (every E4M3×E4M3 pair and the other exhaustive sweeps, corners,
random mode sequences, back-pressure, reset mid-stream) on every configuration below; Icarus, when
``iverilog`` is on PATH, runs the quick regression (sampled sweeps) because it is ~10× slower.
"""

import shutil

import pytest

from mpgen.flows.units import get_unit
from mpgen.rtl.dotprod import BlockDotProduct
from mpgen.golden.dotprod import dot_products
from mpgen.sim.dotprod import make_phases, run_dotprod_regression, simulate_dotprod

FULL_CONFIGS = {
    # the unit spec's default configurations (exact accumulation, pipelined for 200 MHz)
    **{name: dict(cfg) for name, cfg in get_unit("dotprod").configs.items()},
    # FP32 accumulation, and the pipeline and block-size corners
    "mixed-split-fp32": {"formats": "mixed", "organisation": "split"},
    "fp8-only-fp32": {"formats": "fp8"},
    "mixed-split-b8-p1": {"formats": "mixed", "organisation": "split", "block_size": 8, "pipeline": 1},
    "mixed-shared-g1": {"formats": "mixed", "organisation": "shared", "accumulation": "exact",
                        "pipeline": 3, "tree_group": 1},  # the cut before the shifters, one side
    "mixed-shared-b32-p3": {"formats": "mixed", "organisation": "shared", "block_size": 32, "pipeline": 3},
    "mixed-split-b32-p5-exact": {"formats": "mixed", "organisation": "split", "block_size": 32,
                                 "pipeline": 5, "accumulation": "exact", "tree_group": 8},
}

EXHAUSTIVE_PAIRS = {  # phase name → element pairs it must have covered
    "exhaustive_e4m3xe4m3": 256 * 256,
    "exhaustive_e2m1xe2m1": 16 * 16,
    "exhaustive_e2m1xe4m3": 16 * 256,
    "exhaustive_e4m3xe2m1": 256 * 16,
}


def _check(result, record_property):
    print(result.summary())
    for name, ph in result.phases.items():
        print(f"  {name}: {ph['vectors']} vectors, {ph['results']} results, "
              f"{ph['mismatches']} mismatches (input gaps {ph['gap']}, output stalls {ph['stall']})")
    record_property("vectors_checked", f"{result.vectors} block pairs / {result.results} results "
                                       f"on {result.simulator}")
    assert result.mismatches == 0, result.details
    assert result.passed
    assert result.vectors > 0 and result.results > 0


@pytest.mark.sim
@pytest.mark.parametrize("name", list(FULL_CONFIGS))
def test_dotprod_verilator_full(name, record_property):
    result = run_dotprod_regression(FULL_CONFIGS[name], simulator="verilator", quick=False, seed=11)
    _check(result, record_property)
    for phase, pairs in EXHAUSTIVE_PAIRS.items():
        if phase in result.phases:
            assert result.phases[phase]["vectors"] == pairs
            assert result.phases[phase]["results"] == pairs
    fmt = FULL_CONFIGS[name]["formats"]
    if fmt != "fp4":
        assert "exhaustive_e4m3xe4m3" in result.phases
    if fmt == "mixed":
        assert set(EXHAUSTIVE_PAIRS) <= set(result.phases)
    assert result.phases["reset_mid_stream"]["vectors"] > 0
    timing = result.phases["timing"]
    assert timing["latency"] == BlockDotProduct(**FULL_CONFIGS[name]).latency
    assert timing["cycles"] == timing["pairs"]  # one block pair per cycle, sustained


@pytest.mark.sim
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (iverilog) not on PATH")
@pytest.mark.parametrize("name", ["mixed-split", "fp4-only", "mixed-split-fp32"])
def test_dotprod_icarus_quick(name, record_property):
    result = run_dotprod_regression(FULL_CONFIGS[name], simulator="icarus", quick=True, seed=5)
    _check(result, record_property)


@pytest.mark.sim
def test_exact_rtl_is_told_apart_from_the_fp32_contract():
    """The regression can fail: on multi-block dot products the exact unit's results match the
    exact golden and differ from the FP32-accumulation golden in some of them."""
    config = FULL_CONFIGS["mixed-split"]
    pairs = next(p.pairs for p in make_phases(config, quick=True, seed=3) if p.name == "random")
    got = simulate_dotprod(config, pairs)
    assert got == dot_products(pairs, "exact").tolist()
    differ = sum(g != f for g, f in zip(got, dot_products(pairs, "fp32").tolist()))
    print(f"{len(got)} results; {differ} differ from the FP32-accumulation contract")
    assert differ > 0
