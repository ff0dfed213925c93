"""cocotb regression of BlockDotProduct, driven from pytest.

Verilator runs the full regression (every E4M3×E4M3 pair and the other exhaustive sweeps, corners,
random mode sequences, back-pressure, reset mid-stream) on every configuration below; Icarus, when
``iverilog`` is on PATH, runs the quick regression (sampled sweeps) because it is ~10× slower.
"""

import shutil

import pytest
import torch

from mpgen.flows.units import get_unit
from mpgen.rtl.dotprod import BlockDotProduct
from mpgen.golden.dotprod import BlockPairs, dot_products
from mpgen.sim.dotprod import (beat_sizes, make_phases, pack_payloads, run_dotprod_regression,
                               simulate_dotprod)

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
    dut = BlockDotProduct(**FULL_CONFIGS[name])
    if dut.fp4_rate == 2:  # every E2M1 pair in each slot of a dual beat
        assert result.phases["dual_exhaustive_e2m1xe2m1"]["vectors"] == 2 * 16 * 16
        assert result.phases["dual_exhaustive_e2m1xe2m1"]["results"] == 16 * 16
        assert {"dual_corners", "dual_random"} <= set(result.phases)
    timing = result.phases["timing"]
    assert timing["latency"] == dut.latency
    assert timing["cycles"] == timing["beats"]  # one beat per cycle, sustained
    if dut.fp4_rate == 2:  # and the FP4xFP4 runs of the stream went two pairs to a beat
        assert timing["beats"] < timing["pairs"]
    else:
        assert timing["beats"] == timing["pairs"]


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


def _stream(modes_and_last):
    """BlockPairs of blocks of 16 zeros with the given ((w_fp8, a_fp8), last) sequence."""
    n = len(modes_and_last)
    flags = torch.tensor([[w, a] for (w, a), _ in modes_and_last], dtype=torch.bool)
    zeros = torch.zeros((n, 16), dtype=torch.uint8)
    return BlockPairs(zeros, zeros.clone(), flags[:, 0].clone(), flags[:, 1].clone(),
                      torch.zeros(n, dtype=torch.uint8), torch.zeros(n, dtype=torch.uint8),
                      torch.tensor([last for _, last in modes_and_last]))


def test_double_rate_packs_fp4_pairs_of_one_dot_product_two_to_a_beat():
    fp4, mix = (False, False), (True, False)
    pairs = _stream([(fp4, False), (fp4, False), (fp4, False), (mix, False), (fp4, True),
                     (fp4, True), (fp4, False), (fp4, True)])
    assert beat_sizes(pairs, 1) == [1] * 8
    # a run of three: two share a beat, the third goes alone; never across an FP8 block or a
    # dot product's end
    assert beat_sizes(pairs, 2) == [2, 1, 1, 1, 1, 2]
    with pytest.raises(ValueError, match="fp4_rate must be 1 or 2"):
        beat_sizes(pairs, 4)


def test_double_rate_beat_layout_from_the_units_own_layout():
    """A dual beat: first pair's codes in the low nibbles, second's in the high ones (high bits
    of the single-rate encoding dropped), second scales in ``second_scale``, ``last`` of the
    second pair, ``dual`` set."""
    from amaranth.lib import data

    dut = BlockDotProduct(formats="mixed", accumulation="exact", fp4_rate=2)
    w = torch.tensor([[0x31] * 16, [0xF2] * 16], dtype=torch.uint8)  # high bits: noise
    pairs = BlockPairs(w, w.clone(), torch.tensor([False, False]), torch.tensor([False, False]),
                       torch.tensor([5, 9], dtype=torch.uint8), torch.tensor([6, 10], dtype=torch.uint8),
                       torch.tensor([False, True]))
    (payload,) = pack_payloads(dut.input_layout, pairs, dut.formats)
    beat = data.Const(dut.input_layout, payload)
    assert beat.dual == 1 and beat.last == 1
    assert (beat.w.scale, beat.w.second_scale, beat.a.scale, beat.a.second_scale) == (5, 9, 6, 10)
    assert all(beat.w.codes[i] == 0x21 for i in range(16))  # second 2, first 1


def test_double_rate_stimulus_would_catch_a_dropped_second_pair():
    """The regression can fail on the second slot: in every dual phase, dropping the second pair
    of each dual beat changes the golden results of most dot products."""
    config = FULL_CONFIGS["mixed-split-x2"]
    for phase in make_phases(config, quick=True, seed=3):
        if not phase.name.startswith("dual_"):
            continue
        p = phase.pairs
        keep, i = [], 0
        for size in beat_sizes(p, 2):
            keep.append(i)
            i += size
        sizes = beat_sizes(p, 2)
        last = torch.tensor([bool(p.last[k + s - 1]) for k, s in zip(keep, sizes)])
        idx = torch.tensor(keep)
        first_only = BlockPairs(p.w_codes[idx], p.a_codes[idx], p.w_fp8[idx], p.a_fp8[idx],
                                p.w_scale[idx], p.a_scale[idx], last)
        want, dropped = dot_products(p, "exact").tolist(), dot_products(first_only, "exact").tolist()
        differ = sum(a != b for a, b in zip(want, dropped))
        print(f"{phase.name}: {differ} of {len(want)} results change without the second pairs")
        assert differ > len(want) // 2
