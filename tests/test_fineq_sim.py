"""cocotb regressions of the FineQ decoder, PE and array (and the multiplier baselines from the
same generator), driven from pytest, bit-exact against mpgen.golden.fineq.

Verilator: the decoder on all 256 words; the PE on every weight it can hold × every INT8
activation added to random partial sums, with random stalls; the array on random tiles, corner
tiles, tiles of real stories260K weights and activations (when the ``stories260k_optional``
fixture finds the model),
tiles of every largest |w| the format allows (the temporal array's step ends at the tile's
max|w|), random valid/ready back-pressure on all three streams, a reset mid-stream, and a timing
phase that checks the latency, the accept interval and the cycles per tile of each tile's own
step against the formulas of ``FineQArray``, tiles of max|w| 0 and 1 included (a code with a
zero level). Configurations: 4×4 unary (the FineQ-like default, full), 8×8 unary (quick),
5×3 bitserial (non-square, R not a multiple of 3), the W4A8 and W8A8 baselines, the
decoder-fed multiplier array, and unary 4×3 / bitserial 2×4 with that zero-level code. Icarus runs one quick configuration when ``iverilog`` is on PATH.
"""

import shutil

import pytest
import torch

from mpgen.golden.fineq import decode_words
from mpgen.rtl.fineq import FineQArray
from mpgen.sim.fineq import Tile, make_timing_tiles, run_fineq_regression, tile_max_magnitude

ALL = ("decoder", "pe", "array")
#: A code with a zero level (normal code 1), so tiles of max|w| 0 exist; levels up to 6.
ZERO_CODE = {"normal_levels": [-1, 0, 1, 2], "outlier_levels": [-6, -4, -3, -2, 2, 3, 4, 6],
             "name": "zero"}
CONFIGS = {  # name: (parameters, quick, levels); the decoder is one build for every FineQ config
    "fineq-unary-4x4": ({"rows": 4, "cols": 4}, False, ALL),
    "fineq-unary-8x8": ({"rows": 8, "cols": 8}, True, ("array",)),
    "fineq-bitserial-5x3": ({"rows": 5, "cols": 3, "coding": "bitserial"}, False, ("pe", "array")),
    "w4a8-3x5": ({"rows": 3, "cols": 5, "pe": "multiplier", "weight_bits": 4}, False, ("pe", "array")),
    "w8a8-4x4": ({"rows": 4, "cols": 4, "pe": "multiplier", "weight_bits": 8}, False, ("array",)),
    "fineq-mul-4x2": ({"rows": 4, "cols": 2, "pe": "multiplier"}, True, ("array",)),
    # steps of every length 1..6 (max|w| 0..4 and 6); R = 4: a padded last word
    "fineq-unary-zero-4x3": ({"rows": 4, "cols": 3, "code": ZERO_CODE}, True, ("array",)),
    # R = 2: one word per column whose third position (padding) must not lengthen the step
    "fineq-bitserial-zero-2x4": ({"rows": 2, "cols": 4, "coding": "bitserial", "code": ZERO_CODE},
                                 True, ("array",)),
}
#: max|w| every configuration's timing phase must have covered (tile cycles checked exactly)
STEP_MAXIMA = {"fineq-unary-4x4": {1, 3, 5, 7}, "fineq-unary-8x8": {1, 3, 5, 7},
               "fineq-bitserial-5x3": {1, 3, 5, 7}, "fineq-unary-zero-4x3": {0, 1, 2, 3, 4, 6},
               "fineq-bitserial-zero-2x4": {0, 1, 2, 3, 4, 6}}


def _check(result, record_property, config, levels=ALL, model=None):
    print(result.summary())
    for name, ph in result.phases.items():
        print(f"  {name}: {ph}")
    record_property("vectors_checked", f"{result.vectors} vectors (decoder words, PE pairs, array "
                                       f"activation vectors) / {result.results} results on "
                                       f"{result.simulator}")
    assert result.mismatches == 0, result.details
    assert result.passed, result.details
    if "decoder" in levels and "weight_bits" not in config:
        assert result.phases["decoder_exhaustive"]["vectors"] == 256
    if "pe" in levels:
        pe = result.phases["pe_exhaustive"]
        assert pe["results"] == pe["vectors"] > 0
    for phase in ("random", "corners", "reset_mid_stream", "after_reset", "timing"):
        assert result.phases[phase]["vectors"] > 0, phase
    assert result.phases["reset_mid_stream"]["dropped_by_reset"] > 0  # the reset hit in-flight work
    if model is not None and "array" in levels:
        assert result.phases["model"]["results"] > 0
    for m in ("m1", "m5", "m16"):
        assert m in result.timing, m
    for name, t in result.timing.items():
        if isinstance(t, dict) and "measured" in t:
            assert t["measured"] == t["formula"], (name, t)


@pytest.mark.sim
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fineq_verilator(name, record_property, stories260k_optional):
    config, quick, levels = CONFIGS[name]
    result = run_fineq_regression(config, simulator="verilator", quick=quick, seed=3, levels=levels,
                                  model_path=stories260k_optional)
    _check(result, record_property, config, levels, stories260k_optional)
    covered = {t["max_magnitude"] for t in result.timing.values()
               if isinstance(t, dict) and "max_magnitude" in t}
    assert STEP_MAXIMA.get(name, set()) <= covered, covered
    if "pe" in levels and not quick:  # exhaustive: every weight × all 256 activations
        assert result.phases["pe_exhaustive"]["activations"] == 256


@pytest.mark.sim
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (iverilog) not on PATH")
def test_fineq_icarus_quick(record_property, stories260k_optional):
    config = {"rows": 3, "cols": 3, "coding": "bitserial"}
    result = run_fineq_regression(config, simulator="icarus", quick=True, seed=4,
                                  model_path=stories260k_optional)
    _check(result, record_property, config, model=stories260k_optional)


def _array(**kw):
    arr = FineQArray(**kw)
    arr._MustUse__silence = True  # only its parameters are used
    return arr


def test_tile_max_magnitude_ignores_the_padding_positions():
    arr = _array(rows=2, cols=1)  # one word; its position 2 is padding
    word = 0b11_01_01_00  # normal cluster, codes 1, 1, 3: levels -1, -1, 3 (DEFAULT_CODE)
    assert decode_words(torch.tensor([word], dtype=torch.uint8), arr.code)[0][0].tolist() == [-1, -1, 3]
    tile = Tile(torch.tensor([[word]]), torch.zeros(1, 2, dtype=torch.int64))
    assert tile_max_magnitude(arr, tile) == 1  # the 3 is in the padding position


def test_timing_tiles_cover_max_magnitude_zero_with_a_zero_level():
    arr = _array(rows=4, cols=3, code=ZERO_CODE)
    tiles = make_timing_tiles(arr, seed=1)
    for k in (0, 1, 2, 3, 4, 6):
        assert tile_max_magnitude(arr, tiles[f"max{k}"]) == k
    assert "max5" not in tiles  # no level of magnitude 5


def test_timing_tiles_without_a_zero_level_start_at_one():
    arr = _array(rows=8, cols=8)
    tiles = make_timing_tiles(arr, seed=1)
    assert {n for n in tiles if n.startswith("max")} == {"max1", "max3", "max5", "max7"}
