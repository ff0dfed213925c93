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

from mpgen.golden.dotprod import (EXACT_MAX_BLOCKS, FP8_IMPLICIT_SCALE_CODE, BlockPairs,
                                  block_terms, dot_products, round_fixed_to_fp32)

# OCP MX v1.0, table "FP4 (E2M1)": magnitudes of codes 0..7.
E2M1_TABLE = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def e4m3(code):
    return float(torch.tensor([code], dtype=torch.uint8).view(torch.float8_e4m3fn).float())


def e2m1(code):
    v = E2M1_TABLE[code & 7]
    return -v if code & 8 else v


def exact_terms(pairs: BlockPairs, i: int):
    """(block term as a Fraction, NaN?) of block pair i, from torch's float8 decode."""
    nan = False
    for side in ("w", "a"):
        fp8 = bool(getattr(pairs, f"{side}_fp8")[i])
        sc = FP8_IMPLICIT_SCALE_CODE if fp8 else int(getattr(pairs, f"{side}_scale")[i])
        nan |= bool(np.isnan(e4m3(sc)))
    prod = Fraction(0)
    for j in range(pairs.block_size):
        wc, ac = int(pairs.w_codes[i, j]), int(pairs.a_codes[i, j])
        wv = e4m3(wc) if pairs.w_fp8[i] else e2m1(wc & 0xF)
        av = e4m3(ac) if pairs.a_fp8[i] else e2m1(ac & 0xF)
        if np.isnan(wv) or np.isnan(av):
            nan = True
            continue
        prod += Fraction(wv) * Fraction(av)
    ws = 6.0 if pairs.w_fp8[i] else e4m3(int(pairs.w_scale[i]))
    as_ = 6.0 if pairs.a_fp8[i] else e4m3(int(pairs.a_scale[i]))
    return (Fraction(0) if nan else prod * Fraction(ws) * Fraction(as_)), nan


def nearest_fp32_bits(x: Fraction) -> int:
    """IEEE binary32 round-to-nearest-even of x, chosen among numpy's float32 neighbours of a
    first guess by exact distance (independent of the golden's integer rounding)."""
    if x == 0:
        return 0
    guess = np.float32(float(x))  # within one ulp of the answer (possible double rounding)
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess,
                  np.nextafter(guess, np.float32(np.inf))]

    def key(c):
        bits = int(np.array(c, dtype=np.float32).view(np.uint32))
        return abs(Fraction(float(c)) - x), bits & 1  # nearest, then even
    best = min(candidates, key=key)
    return int(np.array(best, dtype=np.float32).view(np.uint32))


def exact_reference(pairs: BlockPairs) -> list[int]:
    """Rule 5': every dot product's exact sum of block terms, rounded once."""
    out, total, nan = [], Fraction(0), False
    for i in range(pairs.n):
        term, block_nan = exact_terms(pairs, i)
        total += term
        nan |= block_nan
        if pairs.last[i]:
            out.append(0x7FC00000 if nan else nearest_fp32_bits(total))
            total, nan = Fraction(0), False
    return out


def reference(pairs: BlockPairs) -> list[int]:
    """Rules 4-6: each exact block term rounded once to FP32, FP32 additions in stream order."""
    out, acc, nan = [], np.float32(0.0), False
    for i in range(pairs.n):
        term, block_nan = exact_terms(pairs, i)
        if not block_nan:
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


@pytest.mark.parametrize("bs", [8, 16, 32])
def test_exact_accumulation_matches_independent_reference(bs):
    rng = random.Random(100 + bs)
    pairs = random_pairs(rng, 80, bs, nan_rate=0.02)
    got = dot_products(pairs, "exact").tolist()
    want = exact_reference(pairs)
    assert got == want
    fp32 = dot_products(pairs).tolist()
    assert sum(g != f for g, f in zip(got, fp32)) > 0  # the two contracts do differ here
    print(f"exact golden vs Fraction reference: {len(want)} dot products, {pairs.n} block pairs")


def test_exact_accumulation_is_order_independent():
    rng = random.Random(11)
    pairs = random_pairs(rng, 1, 16)
    while pairs.n < 4:
        pairs = random_pairs(rng, 1, 16)
    order = list(range(pairs.n))
    rng.shuffle(order)
    idx = torch.tensor(order)
    shuffled = BlockPairs(pairs.w_codes[idx], pairs.a_codes[idx], pairs.w_fp8[idx], pairs.a_fp8[idx],
                          pairs.w_scale[idx], pairs.a_scale[idx], pairs.last)
    assert dot_products(shuffled, "exact").tolist() == dot_products(pairs, "exact").tolist()


@settings(max_examples=300, deadline=None)
@given(value=st.integers(-(2**53) + 1, 2**53 - 1), lsb=st.integers(-60, 20))
def test_round_fixed_to_fp32_matches_torch(value, lsb):
    # below 2**53 float64 holds the integer exactly, so torch's float64 -> float32 is one RNE
    want = torch.tensor([value], dtype=torch.float64) * 2.0 ** lsb
    bits = int(want.to(torch.float32).view(torch.int32)) & 0xFFFFFFFF
    if value == 0:
        bits = 0
    assert round_fixed_to_fp32(value, lsb) == bits


def test_round_fixed_to_fp32_rejects_out_of_range():
    with pytest.raises(ValueError, match="normal range"):
        round_fixed_to_fp32(1, -200)
    with pytest.raises(ValueError, match="normal range"):
        round_fixed_to_fp32(1 << 200, 0)


def test_exact_accumulation_limit_is_enforced():
    n = EXACT_MAX_BLOCKS + 1
    codes = torch.full((n, 8), 0x38, dtype=torch.uint8)
    one = torch.ones(n, dtype=torch.bool)
    last = torch.zeros(n, dtype=torch.bool)
    last[-1] = True
    scales = torch.zeros(n, dtype=torch.uint8)
    pairs = BlockPairs(codes, codes, one, one, scales, scales, last)
    with pytest.raises(ValueError, match="exceeds the exact accumulator"):
        dot_products(pairs, "exact")
    last[-2] = True  # EXACT_MAX_BLOCKS pairs, then one more: both allowed
    assert len(dot_products(BlockPairs(codes, codes, one, one, scales, scales, last), "exact")) == 2


def test_accumulation_is_validated():
    rng = random.Random(1)
    with pytest.raises(ValueError, match="accumulation must be one of"):
        dot_products(random_pairs(rng, 1), "fp16")


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
