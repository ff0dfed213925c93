"""The dot-product golden model against an independent reference.

The reference decodes E4M3 and UE4M3 codes with torch's own float8_e4m3fn dtype and E2M1 codes with
the OCP MX table, forms every block term exactly with ``fractions.Fraction``, rounds it to FP32 with
numpy, and accumulates with numpy float32 additions — none of the golden's code is reused.
"""

from fractions import Fraction
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from mpgen.golden.dotprod import FP8_IMPLICIT_SCALE_CODE, BlockPairs, block_terms, dot_products

# OCP MX v1.0, table "FP4 (E2M1)": magnitudes of codes 0..7.
E2M1_TABLE = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def e4m3(code):
    return float(torch.tensor([code], dtype=torch.uint8).view(torch.float8_e4m3fn).float())


def e2m1(code):
    v = E2M1_TABLE[code & 7]
    return -v if code & 8 else v


def reference(pairs: BlockPairs) -> list[int]:
    out, acc, nan = [], np.float32(0.0), False
    for i in range(pairs.n):
        term = Fraction(0)
        block_nan = False
        for side in ("w", "a"):
            fp8 = bool(getattr(pairs, f"{side}_fp8")[i])
            sc = FP8_IMPLICIT_SCALE_CODE if fp8 else int(getattr(pairs, f"{side}_scale")[i])
            if np.isnan(e4m3(sc)):
                block_nan = True
        prod = Fraction(0)
        for j in range(pairs.block_size):
            wc, ac = int(pairs.w_codes[i, j]), int(pairs.a_codes[i, j])
            wv = e4m3(wc) if pairs.w_fp8[i] else e2m1(wc & 0xF)
            av = e4m3(ac) if pairs.a_fp8[i] else e2m1(ac & 0xF)
            if np.isnan(wv) or np.isnan(av):
                block_nan = True
                continue
            prod += Fraction(wv) * Fraction(av)
        ws = 6.0 if pairs.w_fp8[i] else e4m3(int(pairs.w_scale[i]))
        as_ = 6.0 if pairs.a_fp8[i] else e4m3(int(pairs.a_scale[i]))
        if not block_nan:
            term = prod * Fraction(ws) * Fraction(as_)
            # exact dyadic with < 53 significant bits: float() is exact, np.float32 rounds once
            assert Fraction(float(term)) == term
            acc = np.float32(acc + np.float32(float(term)))
        nan |= block_nan
        if pairs.last[i]:
            bits = 0x7FC00000 if nan else int(np.array(acc, dtype=np.float32).view(np.uint32))
            out.append(bits)
            acc, nan = np.float32(0.0), False
    return out


def random_pairs(rng: random.Random, n_dots: int, bs: int = 16, nan_rate=0.0) -> BlockPairs:
    rows = []
    for _ in range(n_dots):
        length = rng.randint(1, 6)
        for k in range(length):
            rows.append(dict(
                w=[rng.randrange(256) for _ in range(bs)], a=[rng.randrange(256) for _ in range(bs)],
                w_fp8=rng.random() < 0.5, a_fp8=rng.random() < 0.5,
                w_scale=rng.randrange(127 if rng.random() > nan_rate else 128),
                a_scale=rng.randrange(127), last=k == length - 1))
    if nan_rate == 0.0:
        for r in rows:  # keep E4M3 NaN codes out
            r["w"] = [c if c & 0x7F != 0x7F else 0 for c in r["w"]]
            r["a"] = [c if c & 0x7F != 0x7F else 0 for c in r["a"]]
    t = lambda k, d: torch.tensor([r[k] for r in rows], dtype=d)
    return BlockPairs(t("w", torch.uint8), t("a", torch.uint8), t("w_fp8", torch.bool),
                      t("a_fp8", torch.bool), t("w_scale", torch.uint8), t("a_scale", torch.uint8),
                      t("last", torch.bool))


@pytest.mark.parametrize("bs", [8, 16, 32])
def test_golden_matches_independent_reference(bs):
    rng = random.Random(bs)
    pairs = random_pairs(rng, 60, bs)
    got = dot_products(pairs).tolist()
    want = reference(pairs)
    assert got == want
    print(f"golden vs reference: {len(want)} dot products, {pairs.n} block pairs checked")


def test_golden_nan_rules_match_reference():
    rng = random.Random(7)
    pairs = random_pairs(rng, 80, 16, nan_rate=0.05)
    got = dot_products(pairs).tolist()
    assert got == reference(pairs)
    assert 0x7FC00000 in got  # the NaN path was exercised


def test_block_product_is_exact_integer():
    rng = random.Random(3)
    pairs = random_pairs(rng, 20)
    p, _, _ = block_terms(pairs)
    for i in range(pairs.n):
        exact = sum(Fraction(e4m3(int(w)) if pairs.w_fp8[i] else e2m1(int(w)))
                    * Fraction(e4m3(int(a)) if pairs.a_fp8[i] else e2m1(int(a)))
                    for w, a in zip(pairs.w_codes[i], pairs.a_codes[i]))
        assert Fraction(int(p[i]), 2**18) == exact


def test_exact_cancellation_gives_positive_zero():
    w = torch.tensor([[0x40] * 16, [0xC0] * 16], dtype=torch.uint8)
    a = torch.full((2, 16), 0x38, dtype=torch.uint8)
    one = torch.ones(2, dtype=torch.bool)
    pairs = BlockPairs(w, a, one, one, torch.zeros(2, dtype=torch.uint8),
                       torch.zeros(2, dtype=torch.uint8), torch.tensor([False, True]))
    assert dot_products(pairs).tolist() == [0]


def test_nvfp4_high_nibble_is_ignored():
    rng = random.Random(5)
    pairs = random_pairs(rng, 20)
    pairs.w_fp8[:] = False
    pairs.a_fp8[:] = False
    clean = BlockPairs(pairs.w_codes & 0xF, pairs.a_codes & 0xF, pairs.w_fp8, pairs.a_fp8,
                       pairs.w_scale, pairs.a_scale, pairs.last)
    assert dot_products(pairs).tolist() == dot_products(clean).tolist()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 4), bs=st.sampled_from([4, 8, 12, 16, 64]),
       dtype=st.sampled_from([torch.uint8, torch.int32, torch.float32]))
def test_bad_block_pairs_are_rejected(n, bs, dtype):
    codes = torch.zeros(n, bs, dtype=dtype)
    flags = torch.zeros(n, dtype=torch.bool)
    scales = torch.zeros(n, dtype=torch.uint8)
    last = torch.ones(n, dtype=torch.bool)
    if dtype == torch.uint8 and bs in (8, 16):
        BlockPairs(codes, codes, flags, flags, scales, scales, last)  # valid
        with pytest.raises(ValueError, match="last"):
            BlockPairs(codes, codes, flags, flags, scales, scales, torch.zeros(n, dtype=torch.bool))
        with pytest.raises(ValueError, match="7-bit"):
            BlockPairs(codes, codes, flags, flags, scales | 0x80, scales, last)
        with pytest.raises(TypeError, match="w_fp8"):
            BlockPairs(codes, codes, flags.to(torch.uint8), flags, scales, scales, last)
    elif dtype != torch.uint8:
        with pytest.raises(TypeError, match="uint8"):
            BlockPairs(codes, codes, flags, flags, scales, scales, last)
    else:
        with pytest.raises(ValueError, match="block size"):
            BlockPairs(codes, codes, flags, flags, scales, scales, last)


def test_fgmp_matmul_validates_operands():
    from mpgen.golden.dotprod import fgmp_matmul, pairs_from_fgmp
    from mpgen.golden.fgmp import fgmp_quantize

    a = fgmp_quantize(torch.randn(2, 32), torch.zeros(2, 2, dtype=torch.bool))
    w = fgmp_quantize(torch.randn(3, 48), torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="reduction dims differ"):
        pairs_from_fgmp(a, w)
    with pytest.raises(TypeError, match="FGMPTensor"):
        fgmp_matmul(a, torch.randn(3, 32))
    a3 = fgmp_quantize(torch.randn(2, 2, 32), torch.zeros(2, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="2-D"):
        pairs_from_fgmp(a3, a3)
    # a valid pair: results in (m, n) order, matching the dequantized matmul closely
    w2 = fgmp_quantize(torch.randn(3, 32), torch.tensor([[True, False]] * 3))
    out = fgmp_matmul(a, w2)
    ref = a.dequantize().double() @ w2.dequantize().double().T
    assert out.shape == (2, 3)
    assert torch.allclose(out.double(), ref, rtol=1e-5, atol=1e-6)
