"""FineQ golden model (mpgen.golden.fineq): bit layout, decoder, quantizer rules, integer GEMM.

The decoder is checked exhaustively (all 256 words, several level sets) against a slow decoder
written here from the bit-layout text in docs/fineq.md; the quantizer cluster by cluster against a
slow pure-Python reference (Fractions for the nearest-level ties) given the chosen scales; the
integer GEMM against Python-int sums.
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import numpy as np
import pytest
import torch

from mpgen.golden.fineq import (CLUSTER, DEFAULT_CODE, OUTLIER_RATIO, SCALE_GRID, WORD_BITS, WORD_LAYOUT,
                                FineQCode, Fields, decode_fields, decode_words, encode_fields, fineq_quantize,
                                int_gemm, nearest_level_index, outlier_mask, rtn_quantize, word_table)

CODES = [
    DEFAULT_CODE,
    FineQCode((-3, -1, 1, 3), (-7, -5, -3, -1, 1, 3, 5, 7)),
    FineQCode((-2, -1, 0, 1), (-4, -3, -2, -1, 0, 1, 2, 3)),
    FineQCode((-1, 0, 1, 2), (-6, -4, -3, -2, 2, 3, 4, 6)),
    FineQCode((-120, -1, 5, 127), (-128 + 1, -50, -3, 0, 2, 9, 60, 127)),
]


# ------------------------------------------------------------------ slow reference decoder


def slow_decode(word: int, normal, outlier):
    """From the layout text: bits[1:0] index; index 0: bits [3:2],[5:4],[7:6] = 2-bit codes of
    w0,w1,w2; else outlier at index-1, bits [4:2] outlier code, [6:5] kept neighbour's code,
    bit 7 which (0 = lower non-outlier position kept); the other is dropped (weight 0)."""
    bit = [(word >> i) & 1 for i in range(8)]
    index = bit[0] + 2 * bit[1]
    if index == 0:
        return ([normal[bit[2] + 2 * bit[3]], normal[bit[4] + 2 * bit[5]], normal[bit[6] + 2 * bit[7]]],
                [False, False, False])
    p = index - 1
    rest = [i for i in range(3) if i != p]
    kept, gone = rest[bit[7]], rest[1 - bit[7]]
    w, d = [0, 0, 0], [False, False, False]
    w[p] = outlier[bit[2] + 2 * bit[3] + 4 * bit[4]]
    w[kept] = normal[bit[5] + 2 * bit[6]]
    d[gone] = True
    return w, d


@pytest.mark.parametrize("code", CODES, ids=lambda c: c.name)
def test_decode_words_exhaustive(code):
    words = torch.arange(256, dtype=torch.uint8)
    w, d = decode_words(words, code)
    assert w.dtype == torch.int8 and d.dtype == torch.bool and w.shape == d.shape == (256, 3)
    for word in range(256):
        ref_w, ref_d = slow_decode(word, code.normal_levels, code.outlier_levels)
        assert w[word].tolist() == ref_w and d[word].tolist() == ref_d, word
    # numpy input, arbitrary leading shape
    wn, dn = decode_words(np.arange(256, dtype=np.uint8).reshape(4, 8, 8), code)
    assert torch.equal(wn.reshape(256, 3), w) and torch.equal(dn.reshape(256, 3), d)
    # every cluster has exactly 0 (normal) or 1 dropped position
    assert torch.equal(d.sum(-1), (words & 3 != 0).long())


def test_agreed_constants_table_and_outlier_mask():
    assert (CLUSTER, WORD_BITS) == (3, 8)  # docs/fineq.md §2, the RTL's word
    for code in CODES:
        wt, dr = word_table(code)
        w, d = decode_words(torch.arange(256, dtype=torch.uint8), code)
        assert torch.equal(wt, w) and torch.equal(dr, d)
    assert isinstance(decode_fields(7), Fields)
    c = torch.tensor([[1.0, 0.25, 0.3], [1.0, 0.25, -0.2], [0.0, 0.0, 0.0], [0.0, 0.0, 1e-30],
                      [-4.0, 1.0, 2.0], [-4.0, 1.0, 0.999], [3.0, 3.0, 3.0]])
    ref = [max(map(abs, r)) > 4 * min(map(abs, r)) for r in c.tolist()]
    assert outlier_mask(c).tolist() == ref == [False, True, False, True, False, True, False]


def test_fields_bijection_all_paths():
    seen = set()
    for word in range(256):
        f = decode_fields(word)
        assert encode_fields(*f) == word
        seen.add(tuple(f))
    valid = {(0, a, b, c) for a, b, c in itertools.product(range(4), repeat=3)} | \
        {(i, o, n, wh) for i in (1, 2, 3) for o in range(8) for n in range(4) for wh in (0, 1)}
    assert seen == valid and len(valid) == 256
    for mk in (np.arange, torch.arange):
        words = mk(256)
        f = decode_fields(words)
        back = encode_fields(*f)
        assert [int(v) for v in back] == list(range(256))
        assert [tuple(int(x) for x in t) for t in zip(*f)] == [tuple(decode_fields(i)) for i in range(256)]
    assert isinstance(encode_fields(np.array([1]), 2, 3, 1), np.ndarray)
    assert encode_fields(torch.tensor([1]), 2, 3, 1).dtype == torch.uint8
    # spot value from the layout text: index 2 (outlier at w1), outlier code 5, kept code 2, which 1
    assert encode_fields(2, 5, 2, 1) == 0b1_10_101_10


def test_word_layout_is_the_codec_layout():
    """The codec's words are WORD_LAYOUT's own packing (amaranth.lib.data builds each constant)."""
    for word in range(256):
        f = decode_fields(word)
        data = ({"normal": [f.f0, f.f1, f.f2]} if f.index == 0 else
                {"outlier": {"code": f.f0, "kept": f.f1, "which": f.f2}})
        assert WORD_LAYOUT.const({"index": f.index, "data": data}).as_bits() == word
    assert WORD_LAYOUT.size == WORD_BITS


@pytest.mark.parametrize("fields", [(4, 0, 0, 0), (-1, 0, 0, 0), (0, 4, 0, 0), (1, 8, 0, 0), (0, 0, 4, 0),
                                    (1, 0, 4, 0), (0, 0, 0, 4), (1, 0, 0, 2), (2, 0, -1, 0)])
def test_encode_fields_rejects_out_of_range(fields):
    with pytest.raises(ValueError):
        encode_fields(*fields)
    with pytest.raises(ValueError):
        encode_fields(*(np.array([v]) for v in fields))
    with pytest.raises(ValueError):
        encode_fields(*(torch.tensor([v]) for v in fields))


def test_field_and_word_input_errors():
    with pytest.raises(ValueError):
        decode_fields(256)
    with pytest.raises(ValueError):
        decode_fields(np.array([-1]))
    with pytest.raises(TypeError):
        encode_fields(np.array([0.5]), 0, 0, 0)
    with pytest.raises(TypeError):
        decode_words(torch.arange(4, dtype=torch.int16))
    with pytest.raises(TypeError):
        decode_words([1, 2, 3])
    with pytest.raises(TypeError):
        decode_words(torch.zeros(3, dtype=torch.uint8), code="default")


def test_code_validation_and_properties():
    assert DEFAULT_CODE.max_magnitude == max(abs(v) for v in DEFAULT_CODE.normal_levels + DEFAULT_CODE.outlier_levels)
    c = FineQCode((-3, -1, 1, 3), (-7, -5, -3, -1, 1, 3, 5, 7))
    assert c.max_magnitude == 7 and c.weight_width == 4
    assert FineQCode((-2, -1, 0, 1), (-4, -3, -2, -1, 0, 1, 2, 3)).weight_width == 3
    assert FineQCode((0, 1, 2, 3), (1, 2, 3, 4, 5, 6, 7, 8)).weight_width == 5  # 8 needs 5 signed bits
    assert c == FineQCode((-3, -1, 1, 3), (-7, -5, -3, -1, 1, 3, 5, 7)) and hash(c)
    bad = [((-2, -1, 1), (0, 1, 2, 3, 4, 5, 6, 7), ValueError),          # 3 normal levels
           ((-2, -1, 1, 2), (0, 1, 2, 3, 4, 5, 6), ValueError),          # 7 outlier levels
           ((-2, 1, -1, 2), (0, 1, 2, 3, 4, 5, 6, 7), ValueError),       # not increasing
           ((-2, -1, 1, 1), (0, 1, 2, 3, 4, 5, 6, 7), ValueError),       # repeated
           ((-2, -1, 1, 2), (0, 1, 2, 3, 4, 5, 6, 128), ValueError),     # beyond int8
           ((-2, -1, 1.0, 2), (0, 1, 2, 3, 4, 5, 6, 7), TypeError),      # float
           ((-2, -1, True, 2), (0, 1, 2, 3, 4, 5, 6, 7), TypeError),     # bool
           ("abcd", (0, 1, 2, 3, 4, 5, 6, 7), TypeError)]
    for n, o, exc in bad:
        with pytest.raises(exc):
            FineQCode(n, o)


# ------------------------------------------------------------------ nearest level


def _ref_nearest(x: float, levels) -> int:
    """Index of the nearest level; ties to smaller |level|, then to the positive one."""
    fx = Fraction(x)
    return min(range(len(levels)), key=lambda i: (abs(fx - levels[i]), abs(levels[i]), -levels[i]))


@pytest.mark.parametrize("levels", [(-2, -1, 1, 2), (-3, -1, 1, 3), (-2, -1, 0, 1), (-1, 0, 1, 2),
                                    (-4, -3, -2, -1, 1, 2, 3, 4), (-6, -4, -3, -2, 2, 3, 4, 6), (1, 2, 5, 9)])
def test_nearest_level_matches_fraction_reference(levels):
    g = torch.Generator().manual_seed(0)
    xs = torch.cat([torch.arange(-40, 41, dtype=torch.float32) / 4,               # all ties and levels
                    torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e30, -1e30]),
                    torch.randn(500, generator=g) * 4]).to(torch.float32)
    got = nearest_level_index(xs, levels)
    ref = [_ref_nearest(float(x), levels) for x in xs]
    assert got.tolist() == ref


def test_nearest_level_uniform_matches_torch_round_off_ties():
    x = torch.randn(10000, generator=torch.Generator().manual_seed(1)) * 3
    x = x[(x - x.floor() - 0.5).abs() > 1e-6]
    q = nearest_level_index(x, tuple(range(-4, 4))) - 4
    assert torch.equal(q, torch.round(x).clamp(-4, 3).long())


# ------------------------------------------------------------------ quantizer vs slow reference


def _ref_cluster(ws, s, code):
    """Word for one cluster given its group scale ``s`` (pure Python, exact tie rules)."""
    absw = [abs(v) for v in ws]
    outlier = max(absw) > OUTLIER_RATIO * min(absw)
    xs = [float(np.float32(v) / np.float32(s)) if s > 0 else 0.0 for v in ws]
    nl, ol = code.normal_levels, code.outlier_levels
    nc = [_ref_nearest(x, nl) for x in xs]
    if not outlier:
        return encode_fields(0, *nc)
    p = absw.index(max(absw))
    rest = [i for i in range(3) if i != p]
    xf = [Fraction(x) for x in xs]
    cost = [xf[rest[1 - wh]] ** 2 + (xf[rest[wh]] - nl[nc[rest[wh]]]) ** 2 for wh in (0, 1)]
    which = 1 if cost[1] < cost[0] else 0
    return encode_fields(p + 1, _ref_nearest(xs[p], ol), nc[rest[which]], which)


def _weights(n, k, seed, heavy=True):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.05
    if heavy:  # a few large outliers and exact zeros, as in real layers
        m = torch.rand(n, k, generator=g)
        w = torch.where(m < 0.02, w * 8, w)
        w = torch.where(m > 0.99, torch.zeros_like(w), w)
    return w


@pytest.mark.parametrize("code", CODES[:4], ids=lambda c: c.name)
@pytest.mark.parametrize("k,group_size", [(48, 12), (50, None), (64, 24), (7, 3)])
def test_quantizer_matches_reference_per_cluster(code, k, group_size):
    w = _weights(6, k, seed=k)
    fw = fineq_quantize(w, group_size, code)
    kp = -(-k // 3) * 3
    assert fw.words.shape == (6, kp // 3) and fw.words.dtype == torch.uint8 and fw.Kp == kp and fw.K == k
    gs = kp if group_size is None else group_size
    assert fw.group_size == gs and fw.scales.shape == (6, -(-kp // gs)) and fw.scales.dtype == torch.float32
    # scales are float16 values
    assert torch.equal(fw.scales, fw.scales.half().float())
    wp = torch.nn.functional.pad(w, (0, kp - k))
    for r in range(6):
        for c in range(kp // 3):
            s = float(fw.scales[r, (3 * c) // gs])
            ref = _ref_cluster(wp[r, 3 * c:3 * c + 3].tolist(), s, code)
            assert int(fw.words[r, c]) == ref, (r, c)


def test_quantize_encode_decode_consistency_and_outlier_rule():
    w = _weights(32, 96, seed=5)
    for code in CODES[:4]:
        fw = fineq_quantize(w, 24, code)
        dec, dropped = decode_words(fw.words, code)
        wc = w.view(32, 32, 3)
        outl = (wc.abs().amax(-1) > 4 * wc.abs().amin(-1))
        # every emitted cluster obeys the paper's rule, the outlier is the largest magnitude
        assert torch.equal(fw.outlier_clusters(), outl)
        idx = (fw.words & 3).long()
        pos = wc.abs().argmax(-1)
        assert torch.equal(idx[outl], pos[outl] + 1)
        # dropped positions decode to 0, one per outlier cluster, never the outlier
        assert torch.equal(dropped.sum(-1), outl.long())
        assert bool((dec[dropped] == 0).all())
        assert not bool(dropped.gather(-1, pos[..., None])[..., 0][outl].any())
        # decoded levels are in their sets
        nl = torch.tensor(code.normal_levels, dtype=torch.int8)
        ol = torch.tensor(code.outlier_levels, dtype=torch.int8)
        assert bool(torch.isin(dec[~outl], nl).all())
        kept = outl[..., None] & ~dropped
        kept.scatter_(-1, pos[..., None], False)
        assert bool(torch.isin(dec[kept], nl).all())
        assert bool(torch.isin(dec.gather(-1, pos[..., None])[..., 0][outl], ol).all())
        # dequantize = level * scale exactly
        s = fw.scales.repeat_interleave(24, dim=1)
        assert torch.equal(fw.dequantize(), dec.reshape(32, 96).float() * s)
        assert torch.equal(fw.decoded(), dec.reshape(32, 96)) and torch.equal(fw.dropped(), dropped.reshape(32, 96))


def test_scale_search_picks_least_error_candidate():
    w = _weights(8, 60, seed=9)
    for code in CODES[:3]:
        fw = fineq_quantize(w, 12, code)
        fa = fineq_quantize(w, 12, code, scale_search="amax")
        e = ((fw.dequantize() - w) ** 2).view(8, 5, 12).sum(-1)
        ea = ((fa.dequantize() - w) ** 2).view(8, 5, 12).sum(-1)
        assert bool((e <= ea * (1 + 1e-5)).all())
        # every chosen scale is fp16(f * amax-scale) for some grid factor
        for r in range(8):
            for g in range(5):
                # (fa's scale is itself fp16-rounded: allow the two roundings, < 2 fp16 ulps)
                sa, sw = float(fa.scales[r, g]), float(fw.scales[r, g])
                assert any(abs(sw - f * sa) <= 2 ** -10 * f * sa for f in SCALE_GRID), (sw, sa)


def test_amax_scale_error_bound():
    """With the covering scale every kept value is within half a level gap; the dropped one's
    cost is at most that of dropping the smallest (< max/4)."""
    w = _weights(16, 90, seed=3)
    for code in CODES[:4]:
        fw = fineq_quantize(w, 30, code, scale_search="amax")
        s = fw.scales.repeat_interleave(30, dim=1)
        x = (w / s).view(16, 30, 3).double()
        q = fw.decoded().view(16, 30, 3).double()
        gap_n = max(b - a for a, b in zip(code.normal_levels, code.normal_levels[1:])) / 2
        gap_o = max(b - a for a, b in zip(code.outlier_levels, code.outlier_levels[1:])) / 2
        sse = ((x - q) ** 2).sum(-1)
        xa = x.abs()
        bound = torch.where(fw.outlier_clusters(),
                            (xa.amin(-1)) ** 2 + gap_n ** 2 + gap_o ** 2,
                            torch.full_like(sse, 3 * gap_n ** 2))
        # levels cover [min, max]; values of the other sign beyond an asymmetric set's end are
        # covered because s_cover is taken per sign
        assert bool((sse <= bound + 1e-9).all()), (code, (sse - bound).max())


def test_min_error_ablation_never_worse_per_cluster():
    """outlier_rule="min_error" (study ablation) at the same (covering) scale: each cluster's error
    is at most the paper rule's, and it differs from the paper's choice somewhere."""
    w = _weights(16, 96, seed=8)
    for code in CODES[:3]:
        a = fineq_quantize(w, 24, code, scale_search="amax")
        b = fineq_quantize(w, 24, code, scale_search="amax", outlier_rule="min_error")
        assert torch.equal(a.scales, b.scales)
        ea = ((a.dequantize() - w) ** 2).view(16, 32, 3).sum(-1)
        eb = ((b.dequantize() - w) ** 2).view(16, 32, 3).sum(-1)
        assert bool((eb <= ea * (1 + 1e-6)).all())
        assert not torch.equal(a.outlier_clusters(), b.outlier_clusters())


def test_padding_zero_rows_and_dtypes():
    w = _weights(4, 10, seed=2)
    w[1] = 0
    fw = fineq_quantize(w, 6)
    assert fw.Kp == 12 and fw.dequantize().shape == (4, 10)
    assert float(fw.scales[1].abs().max()) == 0 and bool((fw.dequantize()[1] == 0).all())
    for dt in (torch.float16, torch.bfloat16):
        wd = w.to(dt)
        a, b = fineq_quantize(wd, 6), fineq_quantize(wd.float(), 6)
        assert torch.equal(a.words, b.words) and torch.equal(a.scales, b.scales)
    bpw = fineq_quantize(torch.ones(2, 96), 48).bits_per_weight()
    assert bpw == pytest.approx(8 / 3 + 16 / 48)


@pytest.mark.parametrize("bad,exc", [
    (dict(w=torch.zeros(4)), ValueError), (dict(w=torch.zeros(2, 3, 3)), ValueError),
    (dict(w=torch.zeros(0, 3)), ValueError), (dict(w=torch.zeros(2, 6, dtype=torch.float64)), TypeError),
    (dict(w=torch.zeros(2, 6, dtype=torch.int32)), TypeError), (dict(w=np.zeros((2, 6))), TypeError),
    (dict(w=torch.tensor([[1.0, float("nan"), 0]])), ValueError),
    (dict(w=torch.tensor([[1.0, float("inf"), 0]])), ValueError),
    (dict(group_size=4), ValueError), (dict(group_size=0), ValueError), (dict(group_size=-3), ValueError),
    (dict(group_size=3.0), TypeError), (dict(group_size=True), TypeError),
    (dict(code="default"), TypeError), (dict(scale_search="best"), ValueError),
    (dict(outlier_rule="none"), ValueError)])
def test_quantize_rejects_bad_input(bad, exc):
    args = dict(w=torch.ones(2, 6), group_size=3, code=DEFAULT_CODE, scale_search="mse", outlier_rule="paper")
    args.update(bad)
    with pytest.raises(exc):
        fineq_quantize(args.pop("w"), args.pop("group_size"), args.pop("code"), **args)


def test_scales_are_ieee_half_values_cross_check():
    """Scales are float16 values (16 bits each in the bit budget): check with numpy's float16
    (not torch's cast that the quantizer uses) and, where present, the repo's FP16 format."""
    w = _weights(16, 120, seed=12) * torch.logspace(-6, 3, 16)[:, None]
    fw = fineq_quantize(w, 24)
    s = fw.scales.numpy()
    assert (s.astype(np.float16).astype(np.float32) == s).all()
    try:
        from mpgen.golden.formats import FP16
    except ImportError:
        return
    assert torch.equal(FP16.quantize(fw.scales), fw.scales)


def test_quantize_rejects_fp16_scale_overflow():
    with pytest.raises(ValueError, match="float16"):
        fineq_quantize(torch.full((1, 3), 3e38), None)


# ------------------------------------------------------------------ integer GEMM


def test_int_gemm_exact_vs_python_ints():
    rng = random.Random(4)
    for m, n, kp in [(1, 1, 3), (3, 5, 9), (4, 7, 99)]:
        w = [[rng.choice([-128, 127, 0, rng.randint(-128, 127)]) for _ in range(kp)] for _ in range(n)]
        a = [[rng.choice([-128, 127, rng.randint(-128, 127)]) for _ in range(kp)] for _ in range(m)]
        got = int_gemm(torch.tensor(w, dtype=torch.int8), torch.tensor(a, dtype=torch.int8))
        assert got.dtype == torch.int64 and got.shape == (m, n)
        ref = [[sum(x * y for x, y in zip(a[i], w[j])) for j in range(n)] for i in range(m)]
        assert got.tolist() == ref
        gp = int_gemm(torch.tensor(w, dtype=torch.int8), torch.tensor(a, dtype=torch.int8), group_size=6)
        assert gp.shape == (m, n, -(-kp // 6)) and torch.equal(gp.sum(-1), got)
        assert gp[..., 0].tolist() == [[sum(x * y for x, y in zip(a[i][:6], w[j][:6])) for j in range(n)]
                                       for i in range(m)]
    # worst case magnitude: no overflow (128*128*K within int64)
    k = 3 * 4000
    big = int_gemm(torch.full((1, k), -128, dtype=torch.int8), torch.full((1, k), -128, dtype=torch.int8))
    assert int(big) == 128 * 128 * k


def test_int_gemm_on_quantized_weights_matches_dequantized_matmul():
    w = _weights(8, 48, seed=11)
    fw = fineq_quantize(w, 12)
    a = torch.randint(-128, 128, (5, 48), generator=torch.Generator().manual_seed(0), dtype=torch.int8)
    parts = int_gemm(fw.decoded(), a, group_size=12)
    y = (parts.double() * fw.scales.double()[None]).sum(-1)
    ref = a.double() @ fw.dequantize().double().T
    assert torch.allclose(y, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("w,a,exc", [
    (torch.zeros(2, 3, dtype=torch.int16), torch.zeros(2, 3, dtype=torch.int8), TypeError),
    (torch.zeros(2, 3, dtype=torch.int8), torch.zeros(2, 3, dtype=torch.int32), TypeError),
    (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int8), TypeError),
    (np.zeros((2, 3), dtype=np.int8), torch.zeros(2, 3, dtype=torch.int8), TypeError),
    (torch.zeros(2, 3, dtype=torch.int8), torch.zeros(2, 6, dtype=torch.int8), ValueError),
    (torch.zeros(2, 4, dtype=torch.int8), torch.zeros(2, 4, dtype=torch.int8), ValueError),
    (torch.zeros(3, dtype=torch.int8), torch.zeros(2, 3, dtype=torch.int8), ValueError)])
def test_int_gemm_rejects_bad_input(w, a, exc):
    with pytest.raises(exc):
        int_gemm(w, a)


def test_int_gemm_rejects_bad_group_size():
    z = torch.zeros(2, 6, dtype=torch.int8)
    for g, exc in ((4, ValueError), (0, ValueError), (2.5, TypeError)):
        with pytest.raises(exc):
            int_gemm(z, z, group_size=g)


# ------------------------------------------------------------------ RTN baseline


def test_rtn_matches_plain_rounding():
    w = _weights(8, 64, seed=6)
    for bits in (2, 3, 4, 8):
        r = rtn_quantize(w, bits)
        qmax = 2 ** (bits - 1) - 1
        s = (w.abs().amax(1, keepdim=True) / qmax).half().float()
        x = w / s
        ref = torch.round(x).clamp(-qmax - 1, qmax)
        off_tie = (x - x.floor() - 0.5).abs() > 1e-6
        assert torch.equal(r.q.float()[off_tie], ref[off_tie])
        assert r.bits_per_weight() == pytest.approx(bits + 16 / 64)
        rm = rtn_quantize(w, bits, scale_search="mse")
        assert (rm.dequantize() - w).norm() <= (r.dequantize() - w).norm()
    with pytest.raises(ValueError):
        rtn_quantize(w, 1)
    with pytest.raises(ValueError):
        rtn_quantize(w, 4, group_size=0)
