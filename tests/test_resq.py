"""golden/resq.py against independent re-derivations (plain Python, struct-rounded binary32,
fractions.Fraction), one scenario per test."""

import struct
from fractions import Fraction

import pytest
import torch

from mpgen.golden import resq as R


def f32(v: float) -> float:
    """Round a Python float (binary64) to binary32. A binary64 +, −, × or ÷ of two binary32
    values, rounded to binary32, is the correctly rounded binary32 result (53 ≥ 2·24 + 2)."""
    return struct.unpack("f", struct.pack("f", v))[0]


def ref_asymmetric(row: list[float], bits: int) -> tuple[list[int], float, int]:
    """The asymmetric per-row recipe re-derived in plain Python (round() is half-to-even)."""
    maxq = 2 ** bits - 1
    lo, hi = min(min(row), 0.0), max(max(row), 0.0)
    if lo == 0 and hi == 0:
        lo, hi = -1.0, 1.0
    s = f32(f32(hi - lo) / maxq)
    z = min(max(round(f32(-lo / s)), 0), maxq)
    return [min(max(round(f32(v / s)) + z, 0), maxq) for v in row], s, z


def test_rotation_is_orthogonal_and_never_mixes_the_subspaces():
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(40, 40, generator=gen, dtype=torch.float64)
    basis = R.resq_basis(a @ a.T, seed=5)
    p, n_hi, k = basis.projection, basis.n_high, 40
    assert n_hi == 5
    assert torch.allclose(p.T @ p, torch.eye(k, dtype=torch.float64), atol=1e-12)
    # in the eigenbasis U the projection is block-diagonal: U^T P = diag(R_lo, R_hi)
    _, u = torch.linalg.eigh(a @ a.T)
    blocks = u.T @ p
    assert blocks[:k - n_hi, k - n_hi:].abs().max() < 1e-10
    assert blocks[k - n_hi:, :k - n_hi].abs().max() < 1e-10
    # and the rotation inside each block is a genuine mixing (not a signed permutation)
    assert blocks[k - n_hi:, k - n_hi:].abs().max() < 0.99


def test_fused_weights_reproduce_the_float_matmul():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(30, 48, generator=gen)
    w = torch.randn(20, 48, generator=gen)
    basis = R.resq_basis(R.calibration_covariance(x), seed=2)
    p = basis.projection
    fused = (x.double() @ p) @ (w.double() @ p).T
    assert torch.allclose(fused, x.double() @ w.double().T, rtol=0, atol=1e-11)
    # the float32 helpers round once: the float32 product stays within float32 accuracy
    y = R.rotate_activations(x, p) @ R.fuse_weights(w, p).T
    assert torch.allclose(y, x @ w.T, rtol=0, atol=1e-4)


def test_eigen_selection_keeps_the_high_variance_directions():
    gen = torch.Generator().manual_seed(7)
    q, _ = torch.linalg.qr(torch.randn(32, 32, generator=gen, dtype=torch.float64))
    variances = torch.ones(32, dtype=torch.float64)
    big = [3, 11, 17, 30]
    variances[big] = torch.tensor([50.0, 80.0, 60.0, 70.0], dtype=torch.float64)
    cov = q @ torch.diag(variances) @ q.T
    basis = R.resq_basis(cov, Fraction(1, 8), seed=0)
    hi = basis.projection[:, -basis.n_high:]
    # the 8-bit columns span exactly the four planted directions
    planted = q[:, big]
    assert torch.allclose(hi @ hi.T, planted @ planted.T, atol=1e-10)
    assert torch.allclose(basis.eigenvalues[-4:], torch.tensor([50.0, 60, 70, 80],
                          dtype=torch.float64) + 0.01 * float(variances.mean()))


def test_high_precision_count_rounds_up_exactly():
    assert R.high_precision_count(172) == 22             # ceil(21.5)
    assert R.high_precision_count(64) == 8
    assert R.high_precision_count(10, 0.1) == 1          # 0.1 is 1/10, not 0.1000…0555
    assert R.high_precision_count(4096, multiple=512) == 512
    assert R.high_precision_count(100, Fraction(1, 8), multiple=16) == 16


def test_asymmetric_activations_match_a_plain_python_rederivation():
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(16, 24, generator=gen) * 3 + 0.5
    x[3] = torch.rand(24, generator=gen)                 # all positive: xmin clamps to 0
    x[4] = 0.0                                           # all zero: range (−1, 1)
    for bits in (4, 8):
        got = R.quantize_asymmetric(x, bits)
        for t in range(16):
            codes, s, z = ref_asymmetric([float(v) for v in x[t]], bits)
            assert got.codes[t].tolist() == codes and float(got.scale[t]) == s
            assert int(got.zero[t]) == z
            deq = [f32((q - z) * s) for q in codes]
            assert got.dequantize()[t].tolist() == deq


def test_symmetric_weights_match_a_plain_python_rederivation():
    gen = torch.Generator().manual_seed(12)
    w = torch.randn(10, 20, generator=gen)
    w[2] = 0.0
    for bits in (4, 8):
        maxq = 2 ** (bits - 1) - 1
        got = R.quantize_symmetric(w, bits)
        for n in range(10):
            row = [float(v) for v in w[n]]
            amax = max(abs(v) for v in row)
            s = 1.0 if amax == 0 else f32(amax / maxq)
            assert float(got.scale[n]) == s
            assert got.codes[n].tolist() == [min(max(round(f32(v / s)), -maxq - 1), maxq) for v in row]


def test_segments_get_separate_scales_and_zeros():
    x = torch.cat([torch.linspace(-1, 1, 28), torch.linspace(-100, 300, 4)]).reshape(1, 32)
    acts = R.quantize_resq_activations(x, 4)
    assert acts.low.codes.shape == (1, 28) and acts.high.codes.shape == (1, 4)
    assert acts.low.bits == 4 and acts.high.bits == 8
    assert float(acts.low.scale) == f32(2.0 / 15) and float(acts.high.scale) == f32(400.0 / 255)
    assert int(acts.high.zero) == round(f32(100.0 / f32(400.0 / 255)))


def test_integer_dot_contract_matches_exact_rationals():
    gen = torch.Generator().manual_seed(21)
    x = torch.randn(6, 40, generator=gen) * 2 + 0.3
    w = torch.randn(5, 40, generator=gen)
    acts, wts = R.quantize_resq_activations(x, 8), R.quantize_resq_weights(w, 8)
    dot = R.resq_dot(acts, wts)
    for t in range(6):
        for n in range(5):
            outs = []
            for a, b, raw, corr in ((acts.low, wts.low, dot.sum_low, dot.corrected_low),
                                    (acts.high, wts.high, dot.sum_high, dot.corrected_high)):
                qa, qw, z = a.codes[t].tolist(), b.codes[n].tolist(), int(a.zero[t])
                assert int(raw[t, n]) == sum(i * j for i, j in zip(qa, qw))
                c = sum((i - z) * j for i, j in zip(qa, qw))
                assert int(corr[t, n]) == c
                sa, sw = float(a.scale[t]), float(b.scale[n])
                # the exact real value c·sa·sw, then the contract's roundings by hand
                exact = Fraction(c) * Fraction(sa) * Fraction(sw)
                p = f32(float(c) * f32(sa * sw))
                assert abs(Fraction(p) - exact) <= abs(exact) * Fraction(1, 2 ** 22)
                outs.append(p)
            assert float(dot.output[t, n]) == f32(outs[0] + outs[1])
    # the contract agrees with the float model of the dequantized operands
    assert torch.allclose(dot.output, acts.dequantize() @ wts.dequantize().T, atol=1e-4)


def test_accumulator_widths_hold_the_extreme_cases():
    widths = R.accumulator_bits(7, 4, 4)
    # extreme corrected sum: (q_a − z) = −15 against q_w = −8 on all 7 lanes: +840
    assert 840 <= 2 ** (widths["corrected"] - 1) - 1 and 840 > 2 ** (widths["corrected"] - 2) - 1
    assert widths["sum"] == (7 * 15 * 8).bit_length() + 1
    assert R.accumulator_bits(512, 8, 8)["corrected"] == 25      # 255·128·512 = 16 711 680


@pytest.mark.parametrize("call, exc, match", [
    (lambda: R.high_precision_count(64, 1.0), ValueError, "strictly between 0 and 1"),
    (lambda: R.high_precision_count(64, 0), ValueError, "strictly between 0 and 1"),
    (lambda: R.high_precision_count(4, Fraction(1, 8), multiple=4), ValueError, "non-empty"),
    (lambda: R.high_precision_count(64, "1/8"), TypeError, "fraction"),
    (lambda: R.resq_basis(torch.eye(8)), TypeError, "float64"),
    (lambda: R.resq_basis(torch.ones(8, 4, dtype=torch.float64)), ValueError, "square"),
    (lambda: R.resq_basis(torch.triu(torch.ones(8, 8, dtype=torch.float64))), ValueError, "symmetric"),
    (lambda: R.quantize_asymmetric(torch.tensor([[1.0, float("nan")]]), 4), ValueError, "NaN"),
    (lambda: R.quantize_asymmetric(torch.ones(2, 3, dtype=torch.float64), 4), TypeError, "float64"),
    (lambda: R.quantize_asymmetric(torch.ones(2, 3), 1), ValueError, "bits"),
    (lambda: R.quantize_resq_activations(torch.ones(2, 8), 8), ValueError, "n_high"),
    (lambda: R.quantize_resq_weights(torch.ones(8), 2), ValueError, "dimensions"),
    (lambda: R.fuse_weights(torch.ones(3, 8), torch.eye(4, dtype=torch.float64)), ValueError, "shape"),
    (lambda: R.resq_dot(R.quantize_resq_activations(torch.ones(2, 8), 2),
                        R.quantize_resq_weights(torch.ones(3, 8), 3)), ValueError, "segments differ"),
])
def test_bad_arguments_are_refused(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
