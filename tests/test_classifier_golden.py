"""Golden model of the FGMP activation classifier (mpgen.golden.classifier).

Cross-checks against code written independently of it: fgmp_quantize (FGMP's own NVFP4/FP8
blocks), torch's float8_e4m3fn cast, and a Fraction re-derivation of the score.
"""

from fractions import Fraction

import pytest
import torch

from mpgen.golden.classifier import (ClassifierConfig, FisherTable, activation_scale_exp,
                                     block_score_terms, classify, classify_stream, fisher_to_table,
                                     score_values, threshold_register)
from mpgen.golden.dotprod import dot_products, pairs_from_fgmp
from mpgen.golden.fgmp import FP8_IMPLICIT_SCALE_CODE, fgmp_quantize
from mpgen.golden.formats import E2M1, E4M3, UE4M3

CFG = ClassifierConfig()


def _acts(n, k, seed=0, dtype=torch.bfloat16, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, generator=g) * torch.exp(torch.randn(k, generator=g))
    heavy = torch.randn(n, k, generator=g) / torch.rand(n, k, generator=g).clamp(min=1e-3) ** 0.7
    x = torch.where(torch.rand(n, k, generator=g) < 0.1, heavy, x)
    return (x * scale).to(dtype)


def _table(k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return fisher_to_table(torch.exp(3 * torch.randn(k, generator=g)))


@pytest.mark.parametrize("p", [0, -5, 3])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_blocks_are_fgmp_blocks_for_a_power_of_two_tensor_scale(p, dtype):
    """With amax = 6·448·2**p, fgmp_quantize's tensor scale is exactly 2**p: classify's codes and
    scales must be FGMP's for the same FP8 mask."""
    cfg = ClassifierConfig(input_format={torch.bfloat16: "bf16", torch.float16: "fp16",
                                         torch.float32: "fp32"}[dtype])
    k = 128
    x = _acts(12, k, seed=p + 50, scale=2.0 ** p).float()
    x = x / x.abs().max() * 2000 * 2.0 ** p
    x[3, 17] = -2688.0 * 2.0 ** p
    x = x.to(dtype)
    table = _table(k)
    res = classify(x, table, 0, p, cfg)
    sv = score_values(res, table, p, cfg)
    t = threshold_register(float(sv.median()), table, p, cfg)
    res = classify(x, table, t, p, cfg)
    assert 0 < int(res.is_fp8.sum()) < res.is_fp8.numel()
    ref = fgmp_quantize(x, res.is_fp8)
    assert float(ref.tensor_scale) == 2.0 ** p
    got = res.to_fgmp()
    assert torch.equal(got.codes, ref.codes)
    assert torch.equal(got.block_scale, ref.block_scale)
    assert torch.equal(got.dequantize(), ref.dequantize())


def test_fp8_codes_match_torch_float8_cast():
    x = _acts(64, 64, seed=1)
    p = activation_scale_exp(x.float().abs().max())
    res = classify(x, fisher_to_table(torch.ones(64)), 0, p)  # zero-score blocks stay NVFP4
    q = torch.ldexp(x.double(), torch.tensor(-p, dtype=torch.float64)) / 6
    exact32 = q.to(torch.float32).double() == q  # torch casts through float32: compare where exact
    ref = q.to(torch.float32).to(torch.float8_e4m3fn).view(torch.uint8).reshape(64, 4, 16)
    fp8 = res.is_fp8.unsqueeze(-1).expand(-1, -1, 16)
    sel = fp8 & exact32.reshape(64, 4, 16)
    assert int(sel.sum()) > 1000
    assert torch.equal(res.codes[sel], ref[sel])


def _fraction_score(res, x, table, p, cfg, b):
    """|D| and acc of block b (flat index) from decoded values with Fractions."""
    xb = x.reshape(-1, 16)[b]
    s_b = int(UE4M3.encode(torch.tensor([max(abs(float(v)) for v in xb.float()) * 2.0 ** -p / 6]))[0])
    sm, ssh = UE4M3.mant_shift(s_b)[1:]
    sb = Fraction(UE4M3.value(s_b))
    unit = Fraction(2) ** (ssh + UE4M3.lsb_exponent - 1 - cfg.diff_frac_bits)
    acc = 0
    ds = []
    fc = table.codes.reshape(-1, 16)[b % (table.channels // 16)]
    for i, v in enumerate(xb.float().tolist()):
        xs = Fraction(v) * Fraction(2) ** -p
        c4 = int(E2M1.encode(torch.tensor([float(xs / sb) if sb else 0.0], dtype=torch.float64))[0])
        c8 = int(E4M3.encode(torch.tensor([float(xs / 6)], dtype=torch.float64))[0])
        q4 = Fraction(E2M1.value(c4)) * sb
        q8 = Fraction(E4M3.value(c8)) * 6
        d = min(abs(q4 - q8) // unit, cfg.diff_max)
        ds.append(d)
        acc += d * d * int(UE4M3.mant_shift(int(fc[i]))[1] << UE4M3.mant_shift(int(fc[i]))[2])
    return ds, acc


@pytest.mark.parametrize("cfg", [ClassifierConfig(), ClassifierConfig(diff_frac_bits=0, diff_bits=4),
                                 ClassifierConfig(diff_frac_bits=6, diff_bits=12)],
                         ids=["default", "narrow", "wide"])
def test_score_matches_a_fraction_rederivation(cfg):
    x = _acts(6, 64, seed=7)
    table = _table(64, seed=3)
    p = activation_scale_exp(x.float().abs().max())
    res = classify(x, table, 0, p, cfg)
    for b in range(res.score.numel()):
        _, acc = _fraction_score(res, x, table, p, cfg, b)
        assert int(res.score.flatten()[b]) == acc
    if cfg.diff_bits == 4:  # narrow widths saturate on real data
        xb = x.float().reshape(-1, 16)
        assert any(max(_fraction_score(res, x, table, p, cfg, b)[0]) == 15 for b in range(xb.shape[0]))


def test_tie_stays_nvfp4_and_one_below_is_fp8():
    x = _acts(4, 64, seed=2)
    table = _table(64)
    p = activation_scale_exp(x.float().abs().max())
    res = classify(x, table, 0, p)
    checked = 0
    for b in range(res.score.numel()):
        s = int(res.score.flatten()[b]) << int(res.shift.flatten()[b])
        if s == 0:
            continue
        at = classify(x, table, s, p).is_fp8.flatten()[b]
        below = classify(x, table, s - 1, p).is_fp8.flatten()[b]
        assert not bool(at) and bool(below)
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("p", [-9, 0, 4])
def test_threshold_register_matches_score_values(p):
    x = _acts(32, 64, seed=5, scale=2.0 ** p)
    table = _table(64, seed=1)
    sv = score_values(classify(x, table, 0, p), table, p)
    for T in [0.0, float(sv.min()), float(sv.median()), float(sv.max()), float(sv.median()) * 1.0001,
              float(sv.quantile(0.9)), 1e-30, 1e30, float("inf")]:
        res = classify(x, table, threshold_register(T, table, p), p)
        assert torch.equal(res.is_fp8, sv > T), T
    # the score is Fisher-weighted squared error in x's units, up to the truncation of D
    res = classify(x, table, 0, p)
    f = table.values().reshape(-1, 16)
    q8v = res.to_fgmp().dequantize().double()  # threshold 0: every block with a score is FP8
    q4v = classify(x, table, CFG.threshold_max, p).to_fgmp().dequantize().double()  # all NVFP4
    ref = (((q4v - q8v).reshape(32, 4, 16)) ** 2 * f).sum(-1)
    fp8 = res.is_fp8
    assert torch.all(sv[fp8] <= ref[fp8] * (1 + 1e-9))
    assert torch.all(sv[fp8] >= ref[fp8] * 0.5)


def test_nonfinite_blocks_are_fp8_with_nan_codes():
    x = _acts(2, 32, seed=4)
    x[0, 3] = float("nan")
    x[1, 20] = float("-inf")
    x[1, 21] = float("inf")
    table = _table(32)
    res = classify(x, table, CFG.threshold_max, 0)  # everything else NVFP4
    assert res.is_fp8.tolist() == [[True, False], [False, True]]
    assert int(res.codes[0, 0, 3]) == E4M3.nan_code
    assert int(res.codes[1, 1, 4]) == E4M3.nan_code | E4M3.sign_mask
    assert int(res.codes[1, 1, 5]) == E4M3.nan_code
    assert int(res.block_scale[0, 0]) == FP8_IMPLICIT_SCALE_CODE
    clean = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    ref = classify(clean, table, CFG.threshold_max, 0)
    assert torch.equal(res.codes[0, 1], ref.codes[0, 1])
    with pytest.raises(ValueError):
        fgmp_quantize(x, res.is_fp8)
    w = fgmp_quantize(_acts(3, 32, seed=9), torch.zeros(3, 2, dtype=torch.bool))
    bits = dot_products(pairs_from_fgmp(res.to_fgmp(), w)).reshape(2, 3)
    assert bool((bits == 0x7FC00000).all())


def test_zero_and_max_blocks():
    x = torch.zeros(1, 32, dtype=torch.bfloat16)
    x[0, 16:] = float(torch.finfo(torch.bfloat16).max)
    table = _table(32)
    res = classify(x, table, 0, 0)
    assert not bool(res.is_fp8[0, 0]) and int(res.score[0, 0]) == 0 and int(res.block_scale[0, 0]) == 0
    assert int(res.codes[0, 1, 0]) in (E2M1.max_code, E4M3.max_code)  # saturated either way
    assert int(res.score[0, 1]) == 0  # both saturate to 6·448: no difference


def test_fisher_table_and_scale_exponent():
    f = torch.tensor([0.0, 1e-9, 3.0, 1e5] + [1.0] * 12)
    t = fisher_to_table(f)
    v = t.values()
    assert v.max() <= 1e5 and v.max() > 1e5 / 2 ** 0.1 / 1.1
    assert float(f.max()) * 2.0 ** -t.unit_exp <= UE4M3.max_value < float(f.max()) * 2.0 ** -(t.unit_exp - 1)
    assert fisher_to_table(torch.zeros(16)).codes.sum() == 0
    assert len(t.words()) == 1 and t.words()[0] & 0x7F == int(t.codes[0])
    for amax in (1e-30, 0.37, 2688.0, 2689.0, 1e30):
        p = activation_scale_exp(amax)
        assert amax * 2.0 ** -p <= 2688 < amax * 2.0 ** -(p - 1)
    assert activation_scale_exp(0.0) == 0
    assert activation_scale_exp(1e30, CFG) == 89  # fits the 8-bit register
    with pytest.raises(ValueError):
        activation_scale_exp(1e300, CFG)
    with pytest.raises(ValueError):
        activation_scale_exp(float("nan"))
    for bad in (torch.tensor([-1.0] * 16), torch.tensor([float("inf")] * 16)):
        with pytest.raises(ValueError):
            fisher_to_table(bad)
    with pytest.raises(ValueError):
        FisherTable(torch.zeros(17, dtype=torch.uint8))
    with pytest.raises(ValueError):
        FisherTable(torch.full((16,), 0x7F, dtype=torch.uint8))  # NaN code


def test_bad_arguments():
    x = _acts(2, 32)
    t = _table(32)
    with pytest.raises(TypeError):
        classify(x.float(), t, 0, 0)  # cfg says bf16
    with pytest.raises(ValueError):
        classify(_acts(2, 48), t, 0, 0)
    with pytest.raises(ValueError):
        classify(x, t, 0, 128)
    with pytest.raises(ValueError):
        classify(x, t, 1 << CFG.threshold_bits, 0)
    with pytest.raises(ValueError):
        classify(x, t, -1, 0)
    with pytest.raises(ValueError):
        threshold_register(-1.0, t, 0)
    with pytest.raises(ValueError):
        classify_stream(x.reshape(-1, 16), torch.tensor([0, 1, 2, 0]), t, 0, 0)
    for kw in ({"diff_bits": 1}, {"diff_frac_bits": -1}, {"input_format": "fp8"}, {"block_size": 32},
               {"fisher_format": E4M3}, {"p_bits": 11}):
        with pytest.raises((ValueError, TypeError)):
            ClassifierConfig(**kw)
    assert ClassifierConfig(input_format="fp16").input_format.name == "FP16"


def test_default_widths_never_saturate_and_bounds():
    """|D| stays below 2**9 - 1 on every BF16 code (sorted into blocks of similar magnitude, where
    the NVFP4 error is largest) for several p; the derived widths are as documented."""
    cfg = CFG
    assert (cfg.acc_bits, cfg.threshold_bits) == (40, 68)
    codes = torch.arange(1 << 16, dtype=torch.int64).to(torch.int32).to(torch.int16).view(torch.bfloat16)
    vals = codes[torch.isfinite(codes)]
    vals = vals[torch.argsort(vals.float().abs(), stable=True)]
    vals = vals[: vals.numel() // 16 * 16].reshape(-1, 16)
    wide = ClassifierConfig(diff_bits=16)
    worst = 0
    for p in (-20, 0, 20):
        xs = torch.ldexp(vals.double(), torch.tensor(-p, dtype=torch.float64))
        classify_stream(vals, torch.zeros(vals.shape[0], dtype=torch.int64), _table(16), 0, p, wide)
        from mpgen.golden.nvfp4 import exact_block_quantize
        c4, sb = exact_block_quantize(vals.float(), 2.0 ** p)
        c8 = E4M3.encode(xs / 6)
        d = block_score_terms(c4, c8, sb, wide)
        worst = max(worst, int(d.max()))
    assert worst < cfg.diff_max
    print(f"largest |D| over all BF16 codes at f=3: {worst} (limit {cfg.diff_max})")
