"""golden/blockdialect.py: the DialectFP4 formatbook, rounding, the two dialect selections, and a
cross-check against MXFP4 (OCP rules, itself checked against torchao in test_mx.py)."""

from fractions import Fraction

import pytest
import torch

from mpgen.golden.blockdialect import (DIALECT_FP4, Formatbook, bits_per_element, exponent_range,
                                       quantize_blockdialect, quantize_to_dialects, select_exact,
                                       select_two_stage, shared_exponent)
from mpgen.golden.mx import quantize_mxfp4

LEVELS = DIALECT_FP4.half_units


def _nearest(h: Fraction, levels) -> int:
    """Brute force: nearest level, a tie to the even index, saturating."""
    best = min(range(8), key=lambda i: (abs(h - levels[i]), i % 2))
    return best


def test_formatbook_structure_of_the_transcription():
    """What the notes say the table implies: pairs share a maximum 7.5 − 0.5k, differ only in
    index 6 (pair 7 also in index 5), and start with E2M1's {0, .5, 1, 1.5, 2, 3}."""
    for k in range(8):
        a, b = LEVELS[2 * k], LEVELS[2 * k + 1]
        assert a[7] == b[7] == 15 - k
        differ = [i for i in range(8) if a[i] != b[i]]
        assert differ == ([6] if k < 7 else [5, 6])
    assert all(d[:6] == (0, 1, 2, 3, 4, 6) for d in LEVELS[:15])


@pytest.mark.parametrize("bad", [LEVELS[:15], (LEVELS[0][:7],) + LEVELS[1:],
                                 ((0, 1, 2, 3, 4, 6, 11, 16),) + LEVELS[1:],
                                 ((1, 2, 3, 4, 5, 6, 7, 8),) + LEVELS[1:],
                                 ((0, 1, 2, 3, 4, 6, 6, 15),) + LEVELS[1:]])
def test_formatbook_rejects_malformed_tables(bad):
    with pytest.raises(ValueError):
        Formatbook(bad)


def test_rounding_is_nearest_with_ties_to_the_even_index():
    hs = [Fraction(n, 8) for n in range(0, 8 * 20)]
    idx = quantize_to_dialects(torch.tensor([float(h) for h in hs], dtype=torch.float64))
    for j, h in enumerate(hs):
        for d in range(16):
            assert int(idx[j, d]) == _nearest(h, LEVELS[d]), (h, d)


def test_shared_exponent_puts_the_block_maximum_in_4_to_8(heavy_tailed):
    amax = heavy_tailed((1000,), 1).abs() + 1e-3
    E = shared_exponent(amax)
    scaled = torch.ldexp(amax.double(), -E.double())
    assert bool(((scaled >= 4) & (scaled < 8)).all())
    lo, hi = exponent_range(5)
    assert (lo, hi) == (-15, 16)
    assert shared_exponent(torch.tensor([0.0, 1e-30, 1e30])).tolist() == [lo, lo, hi]


def test_exact_selection_is_the_brute_force_minimum(heavy_tailed):
    x = heavy_tailed((40, 32), 2)
    t = quantize_blockdialect(x, 32, selection="exact")
    for b in range(40):
        E = int(t.exponent[b])
        hs = [Fraction(abs(v)) * Fraction(2) ** (1 - E) for v in x[b].tolist()]
        sse = [sum((h - LEVELS[d][_nearest(h, LEVELS[d])]) ** 2 for h in hs) for d in range(16)]
        assert int(t.dialect[b]) == min(range(16), key=lambda d: (sse[d], d))


def test_exact_selection_breaks_ties_to_the_lowest_id():
    h = torch.tensor([[15.0, 4.0, 2.0, 0.0]], dtype=torch.float64)  # every dialect with max 15 is exact
    assert int(select_exact(h)) == 0


@pytest.mark.parametrize("second,want", [(11.0, 0), (9.0, 1), (10.0, 0), (10.6, 0), (9.9, 1)])
def test_two_stage_picks_the_pair_by_the_maximum_then_counts(second, want):
    h = torch.tensor([[15.0, second, 3.0, 0.5]], dtype=torch.float64)
    assert int(select_two_stage(h)) == want


def test_two_stage_stage_one_follows_the_rounded_maximum():
    for top in range(8, 17):
        h = torch.tensor([[float(top), 1.0]], dtype=torch.float64)
        assert int(select_two_stage(h)) // 2 == max(0, min(7, 15 - top))
    h = torch.tensor([[12.5, 1.0], [13.5, 1.0]], dtype=torch.float64)  # RNE: 12, 14
    assert [int(d) // 2 for d in select_two_stage(h)] == [3, 1]


def test_dequantized_values_are_fixed_points(heavy_tailed):
    x = heavy_tailed((8, 64), 3)
    for sel in ("exact", "two_stage"):
        y = quantize_blockdialect(x, 64, selection=sel).dequantize()
        assert torch.equal(quantize_blockdialect(y, 64, selection=sel).dequantize(), y)


def test_codes_signs_and_values():
    x = torch.tensor([[-7.5, 7.5, -0.0, 0.01] + [0.0] * 12])
    t = quantize_blockdialect(x, 16)
    assert t.half_units()[0, 0, :4].tolist() == [-15, 15, 0, 0]
    assert int(t.codes[0, 0, 2]) == 0  # −0 is stored as +0
    assert t.exponent_codes.tolist() == [[int(t.exponent[0, 0]) + 15]]


def test_an_e2m1_formatbook_reproduces_mxfp4(heavy_tailed):
    """Every dialect the E2M1 grid: BlockDialect's exponent rule (floor(log2 amax) − 2) and
    rounding (nearest, ties to the even code) are then OCP MXFP4's."""
    e2m1 = Formatbook(((0, 1, 2, 3, 4, 6, 8, 12),) * 16)
    x = heavy_tailed((16, 128), 4) * 3
    ours = quantize_blockdialect(x, 32, exp_bits=8, formatbook=e2m1).dequantize()
    assert torch.equal(ours, quantize_mxfp4(x).dequantize())


@pytest.mark.parametrize("kw,exc", [({"block_size": 8}, ValueError), ({"selection": "mse"}, ValueError),
                                    ({"exp_bits": 1}, ValueError), ({"exp_bits": 5.0}, TypeError),
                                    ({"formatbook": LEVELS}, TypeError)])
def test_bad_parameters_are_refused(kw, exc):
    with pytest.raises(exc):
        quantize_blockdialect(torch.zeros(2, 64), **kw)


@pytest.mark.parametrize("x,exc", [(torch.zeros(2, 64, dtype=torch.float64), TypeError),
                                   (torch.zeros(2, 48), ValueError),
                                   (torch.tensor([float("nan")] * 32), ValueError)])
def test_bad_inputs_are_refused(x, exc):
    with pytest.raises(exc):
        quantize_blockdialect(x, 32)


def test_far_out_of_range_blocks_are_refused_by_the_exact_search():
    with pytest.raises(ValueError, match="exp_bits"):
        quantize_blockdialect(torch.full((32,), 2.0 ** 40), 32, exp_bits=5)


def test_bits_per_element():
    assert [bits_per_element(b) for b in (16, 32, 64)] == [4 + 9 / 16, 4 + 9 / 32, 4 + 9 / 64]
    assert bits_per_element(32, exp_bits=8) == 4.375

