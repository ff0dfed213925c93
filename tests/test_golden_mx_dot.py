"""The golden model's OCP MX block dot products (rule 7) against independent references.

Reference 1 decodes E4M3 with torch's float8_e4m3fn dtype and E2M1 with the OCP table, forms each
block term exactly as a ``fractions.Fraction`` times the power of two of the two E8M0 codes,
rounds it to FP32 with a round-to-nearest-even written here on Fractions (subnormals and overflow
to Inf included), and accumulates with numpy float32 additions. Reference 2 quantizes tensors with
:mod:`mpgen.golden.mx` (checked against torchao) and multiplies the dequantized blocks in float64.
"""

from fractions import Fraction
import random
import struct

import numpy as np
import pytest
import torch

from mpgen.golden.dotprod import BlockPairs, dot_products
from mpgen.golden.mx import quantize_mxfp4, quantize_mxfp8

E2M1_TABLE = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
NAN = 0x7FC00000


def e4m3(code):
    return float(torch.tensor([code], dtype=torch.uint8).view(torch.float8_e4m3fn).float())


def e2m1(code):
    v = E2M1_TABLE[code & 7]
    return -v if code & 8 else v


def rne_fp32(x: Fraction) -> np.float32:
    """IEEE binary32 round-to-nearest-even of x on exact Fractions: subnormals, overflow to Inf."""
    if x == 0:
        return np.float32(0.0)
    mag = abs(x)
    e = mag.numerator.bit_length() - mag.denominator.bit_length()
    while Fraction(2) ** e > mag:
        e -= 1
    while Fraction(2) ** (e + 1) <= mag:
        e += 1
    ulp = Fraction(2) ** (max(e, -126) - 23)
    q, r = divmod(mag, ulp)
    if r > ulp / 2 or (r == ulp / 2 and q % 2):
        q += 1
    v = q * ulp
    if v >= Fraction(2) ** 128:
        out = np.float32(np.inf)
    else:
        out = np.float32(struct.unpack("<f", struct.pack("<f", float(v)))[0])
        assert Fraction(float(out)) == v
    return -out if x < 0 else out


def reference(pairs: BlockPairs) -> list[int]:
    out, acc, nan = [], np.float32(0.0), False
    for i in range(pairs.n):
        ws, as_ = int(pairs.w_scale[i]), int(pairs.a_scale[i])
        prod, block_nan = Fraction(0), ws == 255 or as_ == 255
        for j in range(pairs.block_size):
            wc, ac = int(pairs.w_codes[i, j]), int(pairs.a_codes[i, j])
            wv = e4m3(wc) if pairs.w_fp8[i] else e2m1(wc & 0xF)
            av = e4m3(ac) if pairs.a_fp8[i] else e2m1(ac & 0xF)
            if np.isnan(wv) or np.isnan(av):
                block_nan = True
                continue
            prod += Fraction(wv) * Fraction(av)
        nan |= block_nan
        if not block_nan:
            with np.errstate(over="ignore", invalid="ignore"):
                acc = np.float32(acc + rne_fp32(prod * Fraction(2) ** (ws + as_ - 254)))
        if pairs.last[i]:
            nan |= bool(np.isnan(acc))
            out.append(NAN if nan else int(np.array(acc, dtype=np.float32).view(np.uint32)))
            acc, nan = np.float32(0.0), False
    return out


def mx_pairs(rng, n_dots, fp8, *, max_len=6, nan_rate=0.0, scales=range(256)):
    rows = []
    for _ in range(n_dots):
        n = rng.randint(1, max_len)
        rows += [k == n - 1 for k in range(n)]
    n, bs = len(rows), 32
    top = 256 if fp8 else 16
    codes = lambda: torch.tensor([[rng.randrange(top) for _ in range(bs)] for _ in range(n)],
                                 dtype=torch.uint8)
    scale = lambda: torch.tensor([255 if rng.random() < nan_rate else rng.choice(scales)
                                  for _ in range(n)], dtype=torch.uint8)
    flag = torch.full((n,), fp8, dtype=torch.bool)
    return BlockPairs(codes(), codes(), flag, flag.clone(), scale(), scale(),
                      torch.tensor(rows), scales="e8m0")


@pytest.mark.parametrize("fp8", [False, True])
def test_mx_matches_fraction_reference_over_whole_range(fp8):
    rng = random.Random(7 + fp8)
    # whole E8M0 range, NaN codes, and scales around FP32's overflow and subnormal edges
    pairs = mx_pairs(rng, 120, fp8, nan_rate=0.01)
    assert dot_products(pairs).tolist() == reference(pairs)
    for edge in (range(0, 30), range(120, 135), range(240, 255)):
        pairs = mx_pairs(rng, 80, fp8, scales=edge)
        assert dot_products(pairs).tolist() == reference(pairs)


def test_mx_term_rounding_corners():
    """One-lane blocks: subnormal terms (exact and rounded, ties to even), the smallest
    subnormal's halfway point, overflow to Inf and the largest finite, Inf - Inf = NaN."""
    cases = []  # (w code, a code, w scale, a scale) on E4M3 lanes, one lane
    for sw in range(0, 40):
        cases += [(0x01, 0x7E, sw, 100), (0x7E, 0x7E, sw, 90), (0x09, 0x0B, sw, 100)]
    for sw in range(230, 255):
        cases += [(0x7E, 0x7E, sw, 254), (0x38, 0x38, sw, 254), (0x7E, 0xFE, sw, 254)]
    rows, n = [], len(cases)
    w = torch.zeros(n + 2, 32, dtype=torch.uint8)
    a = torch.zeros(n + 2, 32, dtype=torch.uint8)
    ws, as_ = torch.zeros(n + 2, dtype=torch.uint8), torch.zeros(n + 2, dtype=torch.uint8)
    for i, (wc, ac, s1, s2) in enumerate(cases):
        w[i, i % 32], a[i, i % 32], ws[i], as_[i] = wc, ac, s1, s2
        rows.append(True)
    # +Inf then -Inf in one dot product: NaN
    w[n, 0], a[n, 0], ws[n], as_[n] = 0x7E, 0x7E, 254, 254
    w[n + 1, 0], a[n + 1, 0], ws[n + 1], as_[n + 1] = 0xFE, 0x7E, 254, 254
    rows += [False, True]
    flag = torch.ones(n + 2, dtype=torch.bool)
    pairs = BlockPairs(w, a, flag, flag.clone(), ws, as_, torch.tensor(rows), scales="e8m0")
    got = dot_products(pairs).tolist()
    assert got == reference(pairs)
    assert got[-1] == NAN
    assert 0x7F800000 in got and 0xFF800000 in got  # overflow to ±Inf
    assert any(0 < g < 0x00800000 for g in got)      # subnormal results
    assert 0 in got                                  # underflow to (+)0


def test_mx_dot_matches_dequantized_float64_matmul():
    """Reference 2: golden.mx-quantized rows; per block, the float64 product of the dequantized
    values is exact and its float32 conversion is the term; terms added in float32."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 128, generator=g) * torch.logspace(-30, 30, 128).float()
    y = torch.randn(5, 128, generator=g)
    for quant, fp8 in ((quantize_mxfp4, False), (quantize_mxfp8, True)):
        qa, qw = quant(x), quant(y)
        da, dw = qa.dequantize().double(), qw.dequantize().double()
        expect = []
        for r in range(6):
            for c in range(5):
                acc = torch.zeros((), dtype=torch.float32)
                for b in range(4):
                    s = slice(32 * b, 32 * b + 32)
                    acc = acc + (da[r, s] * dw[c, s]).sum().float()
                expect.append(int(np.array(acc.item(), dtype=np.float32).view(np.uint32)))
        nb = 4
        a_codes = qa.codes.reshape(6, 1, nb, 32).expand(6, 5, nb, 32).reshape(-1, 32)
        w_codes = qw.codes.reshape(1, 5, nb, 32).expand(6, 5, nb, 32).reshape(-1, 32)
        a_sc = qa.scale.reshape(6, 1, nb).expand(6, 5, nb).reshape(-1)
        w_sc = qw.scale.reshape(1, 5, nb).expand(6, 5, nb).reshape(-1)
        last = torch.zeros(30, nb, dtype=torch.bool)
        last[:, -1] = True
        flag = torch.full((30 * nb,), fp8)
        pairs = BlockPairs(w_codes.contiguous(), a_codes.contiguous(), flag, flag.clone(),
                           w_sc.contiguous(), a_sc.contiguous(), last.flatten(), scales="e8m0")
        assert dot_products(pairs).tolist() == expect


def test_mx_rejects_exact_accumulation_and_bad_scales_kind():
    pairs = mx_pairs(random.Random(1), 2, True)
    with pytest.raises(ValueError, match="accumulation='fp32' only"):
        dot_products(pairs, "exact")
    with pytest.raises(ValueError, match="scales must be one of"):
        BlockPairs(pairs.w_codes, pairs.a_codes, pairs.w_fp8, pairs.a_fp8, pairs.w_scale,
                   pairs.a_scale, pairs.last, scales="e5m2")
