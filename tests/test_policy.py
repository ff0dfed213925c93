"""FGMP precision-assignment policy (mpgen.golden.policy) on synthetic data.

References written independently of the module: block scores and clipping errors in exact
``fractions.Fraction`` arithmetic with brute-force nearest-value rounding (ties to the even code,
saturation), the threshold against an enumeration of every achievable NVFP4 fraction.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from mpgen.golden.dotprod import dot_products, fgmp_matmul, pairs_from_fgmp
from mpgen.golden.fgmp import BLOCK, FP8_IMPLICIT_SCALE_CODE, fgmp_quantize, fgmp_tensor_scale
from mpgen.golden.formats import E2M1, E4M3, UE4M3
from mpgen.golden.nvfp4 import exact_block_quantize
from mpgen.golden.policy import (
    DEFAULT_CLIP_CANDIDATES, POLICY_KINDS, Policy, amax_block_scale, assign_weights, block_amax,
    choose_threshold, clip_search, fp4_fraction_at, nvfp4_codes, quantize_fgmp,
    weight_block_scores, weighted_block_error)


# ------------------------------------------------------------------------------- references


def _grid(fmt):
    """[(Fraction value, code)] of every finite non-negative code."""
    out = []
    for c in range(1 << fmt.magnitude_width):
        v = fmt.value(c)
        if math.isfinite(v):
            out.append((Fraction(v), c))
    return sorted(out)


GRIDS = {f.name: _grid(f) for f in (E2M1, E4M3, UE4M3)}


def _round(q: Fraction, fmt) -> Fraction:
    """Brute-force RNE with saturation: the nearest grid value, ties to the even code."""
    grid = GRIDS[fmt.name]
    a = abs(q)
    if a >= grid[-1][0]:
        v = grid[-1][0]
    else:
        best = min(grid, key=lambda vc: (abs(vc[0] - a), vc[1] & 1))
        v = best[0]
    return -v if q < 0 else v


def _ref_nvfp4(block, s_t: Fraction, s_b: Fraction | None = None):
    """Exact NVFP4 values of one block (amax scale unless s_b is given) and the scale."""
    if s_b is None:
        amax = max(abs(Fraction(float(v))) for v in block)
        s_b = _round(amax / (6 * s_t), UE4M3)
    if s_b == 0:
        return [Fraction(0)] * len(block), s_b
    return [_round(Fraction(float(v)) / (s_b * s_t), E2M1) * s_b * s_t for v in block], s_b


def _ref_fp8(block, s_t: Fraction):
    return [_round(Fraction(float(v)) / (6 * s_t), E4M3) * 6 * s_t for v in block]


def _ref_score(block, fisher, s_t, s_b=None) -> Fraction:
    q4, _ = _ref_nvfp4(block, s_t, s_b)
    q8 = _ref_fp8(block, s_t)
    return sum(Fraction(float(f)) * (a - b) ** 2 for f, a, b in zip(fisher, q4, q8))


def _ref_error(block, fisher, s_t, s_b) -> Fraction:
    q4, _ = _ref_nvfp4(block, s_t, s_b)
    return sum(Fraction(float(f)) * (Fraction(float(v)) - a) ** 2 for f, v, a in zip(fisher, block, q4))


def _weights(seed: int, rows=8, k=64, outliers=True):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, k, generator=g)
    if outliers:  # heavy tails and a dynamic range across blocks, as in real layers
        w = w * torch.exp(torch.randn(rows, k // BLOCK, 1, generator=g)).repeat_interleave(BLOCK, -1).reshape(rows, k)
        w[torch.rand(rows, k, generator=g) < 0.02] *= 8
    f = torch.rand(rows, k, generator=g) ** 4  # Fisher: mostly small, a few large
    return w, f


# ------------------------------------------------------------------------------- quantizers


def test_nvfp4_codes_match_exact_block_quantize():
    w, _ = _weights(1, rows=32, k=128)
    s_t = float(fgmp_tensor_scale(w))
    wb = w.reshape(32, 8, BLOCK)
    codes, scales = exact_block_quantize(wb, s_t)
    assert torch.equal(amax_block_scale(wb, s_t), scales)
    assert torch.equal(nvfp4_codes(wb, scales, s_t), codes)
    # zero scale gives signed zeros
    z = nvfp4_codes(wb[:1, :1], torch.zeros(1, 1, dtype=torch.uint8), s_t)
    assert torch.equal(E2M1.decode(z), torch.zeros(1, 1, BLOCK)) and \
        torch.equal(z >> 3, (wb[:1, :1] < 0).to(torch.uint8) | (wb[:1, :1].signbit()).to(torch.uint8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantize_fgmp_defaults_equal_fgmp_quantize(dtype):
    w, _ = _weights(2, rows=16, k=96)
    w = w.to(dtype)
    mask = torch.rand(16, 6, generator=torch.Generator().manual_seed(0)) < 0.4
    a, b = quantize_fgmp(w, mask), fgmp_quantize(w, mask)
    for f in ("codes", "is_fp8", "block_scale", "tensor_scale"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert a.shape == b.shape


def test_quantize_fgmp_explicit_scales_and_saturation():
    w, f = _weights(3, rows=4, k=32)
    mask = torch.tensor([[True, False]] * 4)
    bs = clip_search(w.reshape(4, 2, BLOCK), f.reshape(4, 2, BLOCK), float(fgmp_tensor_scale(w)))
    q = quantize_fgmp(w, mask, block_scale=bs)
    assert torch.equal(q.block_scale[~mask], bs[~mask])
    assert bool((q.block_scale[mask] == FP8_IMPLICIT_SCALE_CODE).all())
    # an explicit tensor scale far too small saturates FP8 blocks at ±448·6·s_t
    q2 = quantize_fgmp(w, torch.ones(4, 2, dtype=torch.bool), tensor_scale=2.0 ** -20)
    assert float(q2.dequantize().abs().max()) == 448 * 6 * 2.0 ** -20


# ------------------------------------------------------------------------------- scores


@pytest.mark.parametrize("seed", [0, 1])
def test_scores_match_fraction_reference(seed):
    w, f = _weights(seed, rows=3, k=64)
    got = weight_block_scores(w, f)
    s_t = Fraction(float(fgmp_tensor_scale(w)))
    wb, fb = w.reshape(3, 4, BLOCK), f.reshape(3, 4, BLOCK)
    for r in range(3):
        for b in range(4):
            ref = _ref_score(wb[r, b].tolist(), fb[r, b].tolist(), s_t)
            assert abs(Fraction(float(got[r, b])) - ref) <= ref * Fraction(1, 2 ** 45), (r, b)
    # unweighted == all-ones Fisher; zero Fisher scores 0
    assert torch.equal(weight_block_scores(w, None), weight_block_scores(w, torch.ones_like(w)))
    assert bool((weight_block_scores(w, torch.zeros_like(w)) == 0).all())
    assert bool((got >= 0).all()) and bool((got > 0).any())


def test_scores_with_clipped_scales_match_reference():
    w, f = _weights(5, rows=2, k=64)
    s_t = float(fgmp_tensor_scale(w))
    bs = clip_search(w.reshape(2, 4, BLOCK), f.reshape(2, 4, BLOCK), s_t)
    got = weight_block_scores(w, f, block_scale=bs)
    for r in range(2):
        for b in range(4):
            blk = w[r, b * BLOCK:(b + 1) * BLOCK].tolist()
            ref = _ref_score(blk, f[r, b * BLOCK:(b + 1) * BLOCK].tolist(), Fraction(s_t),
                             Fraction(UE4M3.value(int(bs[r, b]))))
            assert abs(Fraction(float(got[r, b])) - ref) <= ref * Fraction(1, 2 ** 45)


# ------------------------------------------------------------------------------- threshold


def test_threshold_tie_rule_constructed():
    s = torch.tensor([1, 1, 1, 1, 2, 2, 3, 3, 3, 3], dtype=torch.float64)
    # achievable NVFP4 fractions: 0, 0.4 (T=1), 0.6 (T=2), 1.0 (T=3)
    assert choose_threshold([s], 0.5) == 1.0          # 0.4 and 0.6 equally close: fewer FP4
    assert fp4_fraction_at([s], 1.0) == 0.4           # score == T stays NVFP4
    assert choose_threshold([s], 0.55) == 2.0
    assert choose_threshold([s], 0.7) == 2.0
    assert choose_threshold([s], 0.85) == 3.0
    assert choose_threshold([s], 0.19) == -math.inf   # 0 is closer than 0.4
    assert choose_threshold([s], 0.2) == -math.inf    # tie 0 vs 0.4: fewer FP4
    assert choose_threshold([s], 0.0) == -math.inf and fp4_fraction_at([s], -math.inf) == 0.0
    assert choose_threshold([s], 1.0) == 3.0
    # split over several tensors of different shapes: same result as one tensor
    assert choose_threshold([s[:3].reshape(3, 1), s[3:]], 0.55) == 2.0


@pytest.mark.parametrize("seed", range(6))
def test_threshold_is_closest_achievable(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 400, (1,), generator=g))
    s = torch.randint(0, 12, (n,), generator=g).to(torch.float64)  # many ties
    for f in (0.0, 0.13, 0.5, 0.7, 0.9, 1.0, float(torch.rand(1, generator=g))):
        t = choose_threshold([s], f)
        got = fp4_fraction_at([s], t)
        options = [0.0] + [float((s <= v).sum()) / n for v in sorted(set(s.tolist()))]
        best = min(options, key=lambda o: (abs(o * n - f * n), o))
        assert got == best, (f, got, best)
        assert t == -math.inf or float(t) in set(s.tolist())


def test_threshold_continuous_scores_hit_target():
    s = torch.rand(10_000, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    for f in (0.5, 0.7, 0.9):
        assert abs(fp4_fraction_at(s, choose_threshold(s, f)) - f) <= 1e-4


# ------------------------------------------------------------------------------- clipping


def test_clip_search_matches_brute_force_and_never_worse():
    w, f = _weights(7, rows=4, k=64)
    s_t = float(fgmp_tensor_scale(w))
    wb, fb = w.reshape(4, 4, BLOCK), f.reshape(4, 4, BLOCK)
    c0 = amax_block_scale(wb, s_t)
    n = 4
    got = clip_search(wb, fb, s_t, candidates=n)
    e_amax = weighted_block_error(wb, fb, c0, s_t)
    e_got = weighted_block_error(wb, fb, got, s_t)
    assert bool((e_got <= e_amax).all())
    moved = 0
    for r in range(4):
        for b in range(4):
            blk, fis = wb[r, b].tolist(), fb[r, b].tolist()
            cands = sorted({max(int(c0[r, b]) - j, 0) for j in range(n + 1)}, reverse=True)
            errs = [(_ref_error(blk, fis, Fraction(s_t), Fraction(UE4M3.value(c))), -c) for c in cands]
            best = -min(errs)[1]  # smallest error, then the larger code
            assert int(got[r, b]) == best, (r, b, cands, errs)
            moved += best != int(c0[r, b])
    assert moved > 0  # clipping does change scales on this data


def test_clip_search_large_and_edge_cases():
    w, f = _weights(8, rows=64, k=256)
    s_t = float(fgmp_tensor_scale(w))
    wb, fb = w.reshape(64, 16, BLOCK), f.reshape(64, 16, BLOCK)
    c0 = amax_block_scale(wb, s_t).to(torch.int64)
    got = clip_search(wb, fb, s_t).to(torch.int64)
    assert bool(((c0 - got) >= 0).all()) and bool(((c0 - got) <= DEFAULT_CLIP_CANDIDATES).all())
    e0 = weighted_block_error(wb, fb, c0.to(torch.uint8), s_t).sum()
    e1 = weighted_block_error(wb, fb, got.to(torch.uint8), s_t).sum()
    assert e1 < e0
    assert torch.equal(clip_search(wb, fb, s_t, candidates=0), c0.to(torch.uint8))
    # all-zero Fisher: every candidate ties, the amax scale is kept
    assert torch.equal(clip_search(wb, torch.zeros_like(fb), s_t), c0.to(torch.uint8))
    # all-zero block: code 0, nothing below
    zb = torch.zeros(2, BLOCK)
    assert clip_search(zb, torch.ones_like(zb), 1.0).tolist() == [0, 0]


def test_clipped_tensor_through_hardware_golden():
    """The FGMPTensor built from clipped scales is consumed by fgmp_matmul / dot_products and
    agrees with its own dequantize()."""
    w, f = _weights(11, rows=8, k=64)
    x, _ = _weights(12, rows=5, k=64, outliers=False)
    pol = Policy("fgmp", 0.7, clip=True)
    asg = assign_weights({"w": w}, {"w": f}, pol)
    qw = asg.tensors["w"]
    assert bool(qw.is_fp8.any()) and bool((~qw.is_fp8).any())
    c0 = amax_block_scale(w.reshape(8, 4, BLOCK), float(qw.tensor_scale))
    assert bool((qw.block_scale[~qw.is_fp8] != c0[~qw.is_fp8]).any())  # some clipped scales used
    qa = fgmp_quantize(x, torch.zeros(5, 4, dtype=torch.bool))
    hw = fgmp_matmul(qa, qw)
    ref = qa.dequantize().double() @ qw.dequantize().double().T
    mag = qa.dequantize().double().abs() @ qw.dequantize().double().abs().T
    assert bool(((hw.double() - ref).abs() <= 1e-5 * mag + 1e-30).all())
    bits = dot_products(pairs_from_fgmp(qa, qw))
    assert bits.numel() == 40
    # dequantize = element · s_b · s_t with the clipped scales (exact product rounded to float32)
    vals = qw.dequantize().reshape(8, 4, BLOCK)
    s4 = UE4M3.decode(qw.block_scale).double() * float(qw.tensor_scale)
    fp4 = ~qw.is_fp8
    assert torch.equal(vals[fp4], (E2M1.decode(qw.codes[fp4]).double() * s4[fp4].unsqueeze(-1)).float())


# ------------------------------------------------------------------------------- policies


def _layers(seed=20):
    out_w, out_f = {}, {}
    for i, (o, k) in enumerate([(16, 64), (32, 48), (8, 128)]):
        w, f = _weights(seed + i, rows=o, k=k)
        out_w[f"l{i}"], out_f[f"l{i}"] = w * (1 + i), f / (1 + 3 * i)
    return out_w, out_f


@pytest.mark.parametrize("clip", [False, True])
def test_policy_fractions_and_optimality(clip):
    ws, fs = _layers()
    nblocks = sum(w.numel() // BLOCK for w in ws.values())
    res = {}
    for kind in POLICY_KINDS:
        a = assign_weights(ws, fs, Policy(kind, 0.7, clip=clip, seed=3))
        res[kind] = a
        masks = torch.cat([m.flatten() for m in a.is_fp8.values()])
        assert a.fp4_fraction == float((~masks).sum()) / nblocks
        want = {"fp8": 0.0, "nvfp4": 1.0}.get(kind, 0.7)
        assert abs(a.fp4_fraction - want) <= 1 / nblocks + 1e-12, kind
        for n, t in a.tensors.items():
            assert torch.equal(t.is_fp8, a.is_fp8[n]) and t.shape == ws[n].shape
    # the FP8 blocks of FGMP are exactly those whose score exceeds the threshold
    g = res["fgmp"]
    for n in ws:
        assert torch.equal(g.is_fp8[n], g.scores[n] > g.threshold)
    # magnitude: every FP8 block's amax >= every NVFP4 block's amax
    m = res["magnitude"]
    am = torch.cat([block_amax(ws[n]).flatten() for n in ws])
    mk = torch.cat([m.is_fp8[n].flatten() for n in ws])
    assert float(am[mk].min()) >= float(am[~mk].max())
    # FGMP minimises the total score of its NVFP4 blocks at this count (the Fisher-weighted cost
    # of NVFP4 over FP8), so every baseline at the same fraction costs at least as much.
    scores = torch.cat([g.scores[n].flatten() for n in ws])
    cost = {k: float(scores[~torch.cat([res[k].is_fp8[n].flatten() for n in ws])].sum())
            for k in ("fgmp", "random", "magnitude", "unweighted")}
    assert all(cost["fgmp"] <= c for c in cost.values()), cost
    assert cost["fgmp"] < cost["random"]
    # dequantized weights: all-FP8 closer than FGMP closer than all-NVFP4 (Fisher-weighted)
    def werr(a):
        return sum(float((fs[n].double() * (a.tensors[n].dequantize().double() - ws[n].double()) ** 2).sum())
                   for n in ws)
    assert werr(res["fp8"]) < werr(res["fgmp"]) < werr(res["nvfp4"])


def test_policy_random_seed_and_clip_effect():
    ws, fs = _layers(30)
    a = assign_weights(ws, fs, Policy("random", 0.7, seed=1))
    b = assign_weights(ws, fs, Policy("random", 0.7, seed=1))
    c = assign_weights(ws, fs, Policy("random", 0.7, seed=2))
    assert all(torch.equal(a.is_fp8[n], b.is_fp8[n]) for n in ws)
    assert any(not torch.equal(a.is_fp8[n], c.is_fp8[n]) for n in ws)
    # clipping lowers the Fisher-weighted error of all-NVFP4 weights
    def werr(x):
        return sum(float((fs[n].double() * (x.tensors[n].dequantize().double() - ws[n].double()) ** 2).sum())
                   for n in ws)
    assert werr(assign_weights(ws, fs, Policy("nvfp4", clip=True))) < werr(assign_weights(ws, fs, Policy("nvfp4")))
    # and changes nothing for all-FP8
    x, y = assign_weights(ws, fs, Policy("fp8", clip=True)), assign_weights(ws, None, Policy("fp8"))
    assert all(torch.equal(x.tensors[n].codes, y.tensors[n].codes) for n in ws)


# ------------------------------------------------------------------------------- bad input


def test_bad_inputs():
    w, f = _weights(40, rows=4, k=32)
    with pytest.raises(ValueError, match="kind"):
        Policy("best")
    with pytest.raises(ValueError, match="fp4_fraction"):
        Policy("fgmp", 1.5)
    with pytest.raises(TypeError):
        Policy("fgmp", True)
    with pytest.raises(ValueError, match="clip_candidates"):
        Policy("fgmp", clip_candidates=-1)
    with pytest.raises(ValueError, match="Fisher"):
        assign_weights({"w": w}, None, Policy("fgmp"))
    with pytest.raises(ValueError, match="Fisher"):
        assign_weights({"w": w}, {}, Policy("random", clip=True))
    with pytest.raises(ValueError, match="shape"):
        assign_weights({"w": w}, {"w": f[:, :16]}, Policy("fgmp"))
    with pytest.raises(ValueError, match=">= 0"):
        weight_block_scores(w, -f)
    bad = w.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        assign_weights({"w": bad}, {"w": f}, Policy("fgmp"))
    with pytest.raises(ValueError, match="NaN"):
        weight_block_scores(w, f.masked_fill(f > 0.5, float("inf")))
    with pytest.raises(ValueError, match="multiple of 16"):
        weight_block_scores(w[:, :20], f[:, :20])
    with pytest.raises(TypeError):
        weight_block_scores(w.double(), f)
    with pytest.raises(ValueError, match="no scores"):
        choose_threshold([], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        choose_threshold([torch.tensor([1.0, float("nan")])], 0.5)
    with pytest.raises(ValueError, match="fp4_fraction"):
        choose_threshold([torch.tensor([1.0])], -0.1)
    wb = w.reshape(4, 2, BLOCK)
    with pytest.raises(ValueError, match="candidates"):
        clip_search(wb, f.reshape(4, 2, BLOCK), 1.0, candidates=-2)
    with pytest.raises(ValueError, match="tensor scale"):
        clip_search(wb, None, 0.0)
    with pytest.raises(ValueError, match="float32"):
        clip_search(wb, None, 0.1)  # 0.1 is not a float32 value
    with pytest.raises(ValueError, match="NaN"):
        quantize_fgmp(w, torch.zeros(4, 2, dtype=torch.bool),
                      block_scale=torch.full((4, 2), UE4M3.nan_code, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        quantize_fgmp(w, torch.zeros(4, 2, dtype=torch.bool), block_scale=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="shape"):
        quantize_fgmp(w, torch.zeros(4, 3, dtype=torch.bool))


def test_assign_weights_equals_quantize_fgmp_and_cache():
    ws, fs = _layers(50)
    cache = {}
    for pol in (Policy("fgmp", 0.7, clip=True), Policy("fgmp", 0.5), Policy("unweighted", 0.7, clip=True),
                Policy("magnitude", 0.9), Policy("nvfp4", clip=True)):
        a = assign_weights(ws, fs, pol, cache=cache)
        b = assign_weights(ws, fs, pol)  # no cache
        for n, w in ws.items():
            ref = quantize_fgmp(w, a.is_fp8[n], block_scale=a.tensors[n].block_scale)
            for t in (a.tensors[n], b.tensors[n]):
                for fld in ("codes", "is_fp8", "block_scale", "tensor_scale"):
                    assert torch.equal(getattr(t, fld), getattr(ref, fld)), (pol, n, fld)
    assert any(k[1] == "scale" and k[2] is not None for k in cache)


# ------------------------------------------------------------------------------- activations


def _acts(seed, n=24, k=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, generator=g) * torch.exp(torch.randn(k, generator=g))  # channel outliers
    return x


def test_activation_quantizer_uses_classifier_decisions():
    from mpgen.golden.classifier import ClassifierConfig, classify, score_values, threshold_register
    from mpgen.golden.policy import ActivationQuantizer, calibrate_activation_site

    cfg = ClassifierConfig()
    fis = {"a": torch.rand(64, generator=torch.Generator().manual_seed(1)) ** 3,
           "b": torch.rand(128, generator=torch.Generator().manual_seed(2)) * 1e-3}
    calib = {"a": [_acts(1), _acts(2)], "b": [_acts(3, k=128) * 5]}
    sites = {n: calibrate_activation_site(calib[n], fis[n], cfg) for n in fis}
    for kind in ("fgmp", "unweighted", "magnitude", "random", "fp8", "nvfp4"):
        aq = ActivationQuantizer(sites, Policy(kind, 0.7), cfg)
        want = {"fp8": 0.0, "nvfp4": 1.0}.get(kind, 0.7)
        nb = sum(s.calib_blocks for s in sites.values())
        assert abs(aq.calib_fp4_fraction - want) <= 1 / nb + 1e-12 or kind == "random" and \
            abs(aq.calib_fp4_fraction - want) < 0.15, (kind, aq.calib_fp4_fraction)
        for n, k in (("a", 64), ("b", 128)):
            x = _acts(10 + k, k=k) * (5 if n == "b" else 1)
            q = aq(n, x)
            xb = x.to(torch.bfloat16)
            s = sites[n]
            # every kind encodes exactly like the classifier does for the same decisions
            ref = quantize_fgmp(xb, q.is_fp8, tensor_scale=2.0 ** s.p)
            assert torch.equal(q.codes, ref.codes) and torch.equal(q.block_scale, ref.block_scale)
            if kind in ("fgmp", "unweighted"):
                reg = threshold_register(aq.threshold, s.tables[kind], s.p, cfg)
                res = classify(xb, s.tables[kind], reg, s.p, cfg)
                assert torch.equal(q.is_fp8, res.is_fp8) and torch.equal(q.codes, res.codes)
                assert torch.equal(res.is_fp8, score_values(res, s.tables[kind], s.p, cfg) > aq.threshold)
        assert 0.0 <= aq.fp4_fraction <= 1.0
    # FGMP activations: lower Fisher-weighted error than random at the same calibrated fraction
    def werr(kind):
        aq = ActivationQuantizer(sites, Policy(kind, 0.7), cfg)
        tot = 0.0
        for n in fis:
            for x in calib[n]:
                d = aq(n, x).dequantize().double() - x.to(torch.bfloat16).double()
                tot += float((fis[n].double() * d ** 2).sum())
        return tot
    assert werr("fgmp") < werr("random") and werr("fp8") < werr("fgmp") < werr("nvfp4")


def test_activation_bad_inputs():
    from mpgen.golden.policy import ActivationQuantizer, calibrate_activation_site

    with pytest.raises(ValueError, match="shape"):
        calibrate_activation_site(_acts(1), torch.rand(32))
    with pytest.raises(ValueError, match=">= 0"):
        calibrate_activation_site(_acts(1), -torch.rand(64))
    with pytest.raises(ValueError, match="no calibration"):
        calibrate_activation_site([], torch.rand(64))
    bad = _acts(1)
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        calibrate_activation_site(bad, torch.rand(64))
    site = calibrate_activation_site(_acts(1), torch.rand(64))
    aq = ActivationQuantizer({"a": site}, Policy("fgmp"))
    with pytest.raises(KeyError):
        aq("zz", _acts(2))
    with pytest.raises(ValueError):
        aq("a", _acts(2, k=32))
