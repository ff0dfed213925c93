"""FineQ: clusters of 3 weights, each packed into one aligned 8-bit word (an index plus data).

From the FineQ paper (DATE 2025), as far as it was available to us: weights are split into
clusters of 3; a cluster holds an outlier when its largest magnitude is more than 4x its
smallest; outliers get 3 bits; an index-plus-data encoding keeps every cluster the same size
for aligned memory access. **Everything else here is our choice** (``docs/fineq.md`` marks each
one and gives its measured consequences).

Word layout (``WORD_BITS = 8`` per ``CLUSTER = 3`` weights, LSB first; defined once as the
``amaranth.lib.data`` layout :data:`WORD_LAYOUT`, which the codec and the RTL both read):

* bits [1:0] ``index``: 0 = no outlier; 1, 2, 3 = the outlier sits at position ``index - 1``.
* ``index == 0`` (normal cluster): bits [3:2] = 2-bit code of w0, [5:4] = w1, [7:6] = w2.
* ``index != 0`` (outlier cluster): bits [4:2] = 3-bit outlier code; bits [6:5] = 2-bit code of
  the kept neighbour; bit [7] ``which`` = which of the two non-outlier positions is kept (0 = the
  lower position, 1 = the higher); the other non-outlier position is *dropped*: it decodes to
  weight 0 and its ``dropped`` flag is set.

2-bit codes mean ``code.normal_levels[c]``, 3-bit outlier codes ``code.outlier_levels[c]``: small
signed integers (strictly increasing, so a code is the rank of its level) on the per-group scale
grid: ``weight = level * scales[n, group]``. A :class:`FineQCode` is the single definition of the
level sets used by the golden model, the RTL and the testbenches.

Quantizer (:func:`fineq_quantize`; our choices, see ``docs/fineq.md``):

* groups of ``group_size`` (a multiple of 3, default 48; ``None`` = the whole padded row) along
  K, one scale per (output channel, group), rounded to float16 (RNE, torch's IEEE binary16 cast;
  16 bits per group in the bit budget; a scale that overflows float16 raises ``ValueError``);
* K is zero-padded to ``Kp = 3 * ceil(K / 3)``; padded positions are quantized as weights 0 (with
  a level set lacking 0 they may decode non-zero; the activations there are always 0);
* outlier rule (the paper's): ``max|w| > 4 * min|w|`` over the cluster, tested on the float32
  weights (exact: ``4 * min`` is exact in float32 and scaling by a positive scale does not change
  the rule); the outlier is the position of the largest magnitude (ties: the lowest position);
* scaled value ``x = fl32(w / s)`` rounded to the nearest level of its set; ties go to the level
  of smaller magnitude, a tie between ``-a`` and ``+a`` (``x == 0``) to ``+a``;
* in an outlier cluster the neighbour dropped is the one whose dropping costs least squared
  error (``x_drop**2 + (x_keep - q(x_keep))**2``); ties keep the lower position (``which = 0``);
* scale: ``s_cover`` = the smallest scale that maps every weight inside the range of its level
  set, then ``scale_search="mse"`` tries ``fp16(f * s_cover)`` for ``f`` in :data:`SCALE_COARSE`
  (1.0, 0.9, .., 0.3), then ``f_best + d`` for ``d`` in :data:`SCALE_REFINE` (+-0.05, +-0.025,
  within [0.25, 1]), and keeps the one with the least squared error of the group (measured in
  scaled units times ``s**2``, padded positions counted as weights 0; ties keep the earlier);
  ``scale_search="amax"`` takes ``f = 1``. An all-zero group gets scale 0.

``DEFAULT_CODE`` (normal {-3,-1,1,3}, outlier {-7,-5,...,7}) was chosen by the code-point study of
``flows/fineq_study.py`` (mean per-layer relative Frobenius error over every linear layer of
stories260K and all-MiniLM-L6-v2); changing it changes no other rule here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from .fineq_format import (CLUSTER, DEFAULT_CODE, INDEX_BITS, INDEX_FIELD, NORMAL_BITS, NORMAL_FIELDS,
                           OUTLIER_BITS, OUTLIER_FIELDS, WORD_BITS, WORD_LAYOUT, FineQCode, field_slice)

__all__ = [
    "CLUSTER", "WORD_BITS", "INDEX_BITS", "NORMAL_BITS", "OUTLIER_BITS", "OUTLIER_RATIO",
    "WORD_LAYOUT", "field_slice", "INDEX_FIELD", "NORMAL_FIELDS", "OUTLIER_FIELDS",
    "DEFAULT_GROUP_SIZE", "SCALE_BITS", "SCALE_COARSE", "SCALE_REFINE", "SCALE_GRID", "SCALE_SEARCHES", "OUTLIER_RULES",
    "FineQCode", "DEFAULT_CODE", "Fields", "encode_fields", "decode_fields", "decode_words",
    "word_table", "FineQWeights", "fineq_quantize", "outlier_mask", "int_gemm",
    "nearest_level_index", "rtn_quantize", "RTNWeights",
]

#: The paper's outlier rule: a cluster holds an outlier when max|w| > OUTLIER_RATIO * min|w|.
OUTLIER_RATIO = 4
#: Default K-group length of fineq_quantize (3.0 bits per weight with the float16 scales).
DEFAULT_GROUP_SIZE = 48
#: Bits charged per stored scale (scales are float16 values).
SCALE_BITS = 16
#: ``scale_search="mse"``: factors of the covering scale tried first (largest first), then the
#: offsets tried around each group's best coarse factor (kept within [0.25, 1]). Every factor
#: tried is a multiple of 0.025 in [0.25, 1]: :data:`SCALE_GRID`.
SCALE_COARSE = tuple(round(1.0 - 0.1 * i, 3) for i in range(8))  # 1.0 .. 0.3
SCALE_REFINE = (0.05, 0.025, -0.025, -0.05)
SCALE_GRID = tuple(round(1.0 - 0.025 * i, 3) for i in range(31))  # 1.0 .. 0.25
SCALE_SEARCHES = ("mse", "amax")
OUTLIER_RULES = ("paper", "min_error")


# ----------------------------------------------------------------------------- bit fields


class Fields(NamedTuple):
    """The fields of one word. ``index == 0``: ``f0, f1, f2`` = 2-bit codes of w0, w1, w2.
    ``index != 0``: ``f0`` = 3-bit outlier code, ``f1`` = 2-bit code of the kept neighbour,
    ``f2`` = ``which`` (0 = the lower non-outlier position is kept, 1 = the higher)."""

    index: object
    f0: object
    f1: object
    f2: object


def _as_ints(values):
    """Common integer representation of the inputs: ('int', ...), ('np', ...) or ('torch', ...)."""
    if any(isinstance(v, torch.Tensor) for v in values):
        out = []
        for v in values:
            t = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
            if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
                raise TypeError(f"fields must be integers, got {t.dtype}")
            out.append(t.to(torch.int64))
        return "torch", out
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return "int", [int(v) for v in values]
    out = []
    for v in values:
        a = np.asarray(v)
        if a.dtype.kind not in "iu":
            raise TypeError(f"fields must be integers, got dtype {a.dtype}")
        out.append(a.astype(np.int64))
    return "np", out


def _any(x) -> bool:
    return bool(x.any()) if hasattr(x, "any") else bool(x)


# Offsets and widths come from WORD_LAYOUT (fineq_format), nowhere else.
_INDEX_MAX = (1 << INDEX_FIELD[1]) - 1
#: (largest value in a normal word, in an outlier word) of each of f0, f1, f2.
_FIELD_MAX = tuple(((1 << n) - 1, (1 << o) - 1) for (_, n), (_, o) in zip(NORMAL_FIELDS, OUTLIER_FIELDS))
_OUTLIER_FIELD_NAMES = ("outlier code", "kept code", "`which`")
_WORD_MAX = (1 << WORD_LAYOUT.size) - 1


def _pack(index, fields, slices):
    """``index`` and ``fields`` (ints, numpy or torch int64, broadcast) shifted to their offsets."""
    word = index << INDEX_FIELD[0]
    for f, (offset, _) in zip(fields, slices):
        word = word | (f << offset)
    return word


def _field(word, sl):
    """The field at ``sl = (offset, width)`` of ``word`` (ints, numpy or torch integers)."""
    offset, width = sl
    return (word >> offset) & ((1 << width) - 1)


def encode_fields(index, f0, f1, f2):
    """Pack fields into words (see :class:`Fields` and the module docstring for the layout).

    Accepts Python ints (returns an int), numpy integer arrays (returns ``np.uint8``) or torch
    integer tensors (returns ``torch.uint8``), broadcast together. Raises ``ValueError`` for a
    field out of its range (which depends on ``index``)."""
    kind, (index, f0, f1, f2) = _as_ints([index, f0, f1, f2])
    outl = index != 0
    if _any((index < 0) | (index > _INDEX_MAX)):
        raise ValueError(f"index must lie in 0..{_INDEX_MAX}")
    for i, f in enumerate((f0, f1, f2)):
        n_max, o_max = _FIELD_MAX[i]
        if kind == "int":
            bad = f < 0 or f > (o_max if outl else n_max)
        else:
            bad = _any((f < 0) | (outl & (f > o_max)) | (~outl & (f > n_max)))
        if bad:
            raise ValueError(f"f{i} must lie in 0..{n_max}" if n_max == o_max else
                             f"f{i} out of range (0..{n_max} for a normal cluster, {_OUTLIER_FIELD_NAMES[i]} "
                             f"0..{o_max} otherwise)")
    normal, outlier = _pack(index, (f0, f1, f2), NORMAL_FIELDS), _pack(index, (f0, f1, f2), OUTLIER_FIELDS)
    if kind == "int":
        return outlier if outl else normal
    if kind == "np":
        return np.where(outl, outlier, normal).astype(np.uint8)
    return torch.where(outl, outlier, normal).to(torch.uint8)


def decode_fields(word) -> Fields:
    """Split words (int, numpy or torch integers in 0..255) into :class:`Fields`; the inverse of
    :func:`encode_fields` (a bijection between 0..255 and the valid field tuples)."""
    kind, (w,) = _as_ints([word])
    if _any((w < 0) | (w > _WORD_MAX)):
        raise ValueError(f"words must lie in 0..{_WORD_MAX}")
    index = _field(w, INDEX_FIELD)
    outl = index != 0
    normal = [_field(w, sl) for sl in NORMAL_FIELDS]
    outlier = [_field(w, sl) for sl in OUTLIER_FIELDS]
    if kind == "int":
        return Fields(index, *(outlier if outl else normal))
    where = np.where if kind == "np" else torch.where
    return Fields(index, *(where(outl, o, n) for o, n in zip(outlier, normal)))


def _others(pos: int) -> tuple[int, int]:
    """The two non-outlier positions of a cluster whose outlier sits at ``pos`` (ascending)."""
    return tuple(p for p in range(CLUSTER) if p != pos)


_TABLES: dict = {}


def word_table(code: FineQCode = DEFAULT_CODE) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weights int8 [256, 3], dropped bool [256, 3])``: the decoded cluster of every word."""
    if not isinstance(code, FineQCode):
        raise TypeError(f"code must be a FineQCode, got {type(code).__name__}")
    if code not in _TABLES:
        wt = torch.zeros(1 << WORD_BITS, CLUSTER, dtype=torch.int8)
        dr = torch.zeros(1 << WORD_BITS, CLUSTER, dtype=torch.bool)
        for word in range(1 << WORD_BITS):
            f = decode_fields(word)
            if f.index == 0:
                wt[word] = torch.tensor([code.normal_levels[c] for c in (f.f0, f.f1, f.f2)])
            else:
                pos = f.index - 1
                kept, drop = _others(pos)[f.f2], _others(pos)[1 - f.f2]
                wt[word, pos] = code.outlier_levels[f.f0]
                wt[word, kept] = code.normal_levels[f.f1]
                dr[word, drop] = True
        _TABLES[code] = (wt, dr)
    return _TABLES[code]


def decode_words(words, code: FineQCode = DEFAULT_CODE) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode packed words ``uint8 [...]`` (torch or numpy) into ``(weights int8 [..., 3],
    dropped bool [..., 3])``: integer levels (``weight = level * scale``) and the dropped flags."""
    if isinstance(words, np.ndarray):
        words = torch.from_numpy(words)
    if not isinstance(words, torch.Tensor):
        raise TypeError(f"words must be a uint8 torch.Tensor or numpy array, got {type(words).__name__}")
    if words.dtype != torch.uint8:
        raise TypeError(f"words must be uint8, got {words.dtype}")
    wt, dr = word_table(code)
    idx = words.long()
    return wt[idx], dr[idx]


# ----------------------------------------------------------------------------- integer GEMM


def int_gemm(w_int: torch.Tensor, a_int: torch.Tensor, *, group_size: int | None = None) -> torch.Tensor:
    """The PE array's exact result: ``out[m, n] = sum_k a_int[m, k] * w_int[n, k]`` in int64.

    ``w_int``: int8 ``[N, Kp]`` decoded levels (:meth:`FineQWeights.decoded`); ``a_int``: int8
    ``[M, Kp]`` activations; ``Kp`` a multiple of :data:`CLUSTER`. With ``group_size`` (a multiple
    of 3) the result is ``int64 [M, N, ngroups]``: one partial sum per K-group (the last group may
    be shorter), to be multiplied by the group scales outside the array."""
    for what, t in (("w_int", w_int), ("a_int", a_int)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != torch.int8:
            raise TypeError(f"{what} must be int8, got {t.dtype}")
        if t.dim() != 2:
            raise ValueError(f"{what} must be 2-D, got shape {tuple(t.shape)}")
    if w_int.shape[1] != a_int.shape[1]:
        raise ValueError(f"reduction dims differ: w_int {tuple(w_int.shape)} vs a_int {tuple(a_int.shape)}")
    kp = w_int.shape[1]
    if kp % CLUSTER:
        raise ValueError(f"Kp = {kp} must be a multiple of {CLUSTER} (pad K with zero activations)")
    w64, a64 = w_int.to(torch.int64), a_int.to(torch.int64)
    if group_size is None:
        return a64 @ w64.T
    gs = _check_group_size(group_size)
    ng = -(-kp // gs)
    out = torch.zeros(a_int.shape[0], w_int.shape[0], ng, dtype=torch.int64)
    for g in range(ng):
        sl = slice(g * gs, (g + 1) * gs)
        out[:, :, g] = a64[:, sl] @ w64[:, sl].T
    return out


def _check_group_size(group_size) -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)):
        raise TypeError(f"group_size must be an int or None, got {type(group_size).__name__}")
    if group_size <= 0 or group_size % CLUSTER:
        raise ValueError(f"group_size must be a positive multiple of {CLUSTER}, got {group_size}")
    return int(group_size)


# ----------------------------------------------------------------------------- quantizer


def _nearest_by_midpoints(x: torch.Tensor, lv: list[int]) -> torch.Tensor:
    """The definition: compare ``x`` with the midpoints (half-integers, exact in float32)."""
    mids = torch.tensor([(a + b) / 2 for a, b in zip(lv, lv[1:])], dtype=torch.float32)
    below = torch.bucketize(x, mids, right=False)    # number of midpoints < x
    at_or_below = torch.bucketize(x, mids, right=True)  # number of midpoints <= x
    # a tie at midpoint m goes up (towards +) when m <= 0 (the upper level is nearer to 0 or +a)
    return torch.where(x <= 0, at_or_below, below)


_NEAREST_LUTS: dict = {}


def nearest_level_index(x: torch.Tensor, levels) -> torch.Tensor:
    """Index (int64) of the nearest level of the strictly increasing integer ``levels`` for float32
    ``x``; ties go to the level of smaller magnitude, and ``x == 0`` between ``-a`` and ``+a`` to
    ``+a``.

    Exact. Every midpoint is a multiple of 1/2, so the answer is constant on each open interval
    ``(j/2, (j+1)/2)`` and at each point ``j/2``: two tables indexed by ``j = floor(2x)`` (of ``x``
    clamped to ``[min - 1, max + 1]``, which changes no answer; ``2x`` is exact in float32), built
    from the midpoint comparison above."""
    lv = tuple(int(v) for v in levels)
    lo, hi = lv[0] - 1, lv[-1] + 1
    if lv not in _NEAREST_LUTS:
        j = torch.arange(2 * lo, 2 * hi + 1, dtype=torch.float32)
        # entry 2i: x == (2lo + i)/2 exactly; entry 2i+1: x inside the following open interval
        _NEAREST_LUTS[lv] = torch.stack((_nearest_by_midpoints(j / 2, list(lv)),
                                         _nearest_by_midpoints(j / 2 + 0.25, list(lv))), dim=1).flatten()
    lut = _NEAREST_LUTS[lv]
    t = 2 * x.to(torch.float32).clamp(lo, hi)  # exact (subtracting 2*lo first would round)
    f = t.floor()
    return lut[2 * (f.long() - 2 * lo) + (t != f)]


def outlier_mask(w_clusters: torch.Tensor) -> torch.Tensor:
    """The paper's rule on clusters ``[..., 3]``: ``max|w| > 4 * min|w|`` (bool ``[...]``)."""
    a = w_clusters.abs()
    return a.amax(dim=-1) > OUTLIER_RATIO * a.amin(dim=-1)


def _check_weights(w) -> torch.Tensor:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"w must be a torch.Tensor, got {type(w).__name__}")
    if w.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"w must be float32, float16 or bfloat16, got {w.dtype}")
    if w.dim() != 2:
        raise ValueError(f"w must be 2-D [N, K], got shape {tuple(w.shape)}")
    if w.shape[0] == 0 or w.shape[1] == 0:
        raise ValueError(f"w must be non-empty, got shape {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError("w contains NaN or Inf; non-finite weights are rejected")
    return w.to(torch.float32)


def _pad_to(w: torch.Tensor, kp: int) -> torch.Tensor:
    return torch.nn.functional.pad(w, (0, kp - w.shape[1])) if kp > w.shape[1] else w


def _group_sum(e: torch.Tensor, gs: int, ng: int) -> torch.Tensor:
    """Sum ``e [N, Kp]`` over K-groups of ``gs`` columns -> ``[N, ng]`` (last group may be short)."""
    n, kp = e.shape
    return torch.nn.functional.pad(e, (0, ng * gs - kp)).view(n, ng, gs).sum(dim=-1)


def _expand_groups(s: torch.Tensor, gs: int, kp: int) -> torch.Tensor:
    """Per-group values ``[N, ng]`` -> per-column ``[N, Kp]``."""
    return s.repeat_interleave(gs, dim=1)[:, :kp]


def _fp16_round(s: torch.Tensor) -> torch.Tensor:
    r = s.to(torch.float16)
    if not bool(torch.isfinite(r).all()):
        raise ValueError("a group scale overflows float16 (weights too large, |w| > ~5e5)")
    return r.to(torch.float32)


class _FineQCodes(NamedTuple):
    """Per-cluster quantization decisions for given scaled values."""

    levels: torch.Tensor   # float32 [N, C, 3] chosen levels (0 at the dropped position)
    index: torch.Tensor    # int64 [N, C]
    f0: torch.Tensor
    f1: torch.Tensor
    f2: torch.Tensor


def _quantize_clusters(x: torch.Tensor, outl: torch.Tensor | None, code: FineQCode) -> _FineQCodes:
    """Codes for scaled clusters ``x [N, C, 3]`` whose outlier flags ``outl [N, C]`` are given
    (``None``: each cluster takes the encoding with the smaller squared error)."""
    nl = torch.tensor(code.normal_levels, dtype=torch.float32)
    ol = torch.tensor(code.outlier_levels, dtype=torch.float32)
    ncode = nearest_level_index(x, code.normal_levels)          # [N, C, 3]
    nval = nl[ncode]
    pos = x.abs().argmax(dim=-1)                                 # first max (lowest position)
    xo = x.gather(-1, pos[..., None])[..., 0]
    ocode = nearest_level_index(xo, code.outlier_levels)
    # the two non-outlier positions (ascending) for each outlier position
    others = torch.tensor([_others(p) for p in range(CLUSTER)], dtype=torch.int64)[pos]  # [N, C, 2]
    xn = x.gather(-1, others)
    nerr = (xn - nval.gather(-1, others)) ** 2
    # cost of keeping the lower (which=0) = drop the higher: x_hi^2 + err(lo); ties keep the lower
    cost_keep_lo = xn[..., 1] ** 2 + nerr[..., 0]
    cost_keep_hi = xn[..., 0] ** 2 + nerr[..., 1]
    which = (cost_keep_hi < cost_keep_lo).long()
    kept = others.gather(-1, which[..., None])[..., 0]
    kcode = ncode.gather(-1, kept[..., None])[..., 0]
    olev = torch.zeros_like(x)
    olev.scatter_(-1, pos[..., None], ol[ocode][..., None])
    olev.scatter_(-1, kept[..., None], nl[kcode][..., None])
    if outl is None:  # outlier_rule="min_error": outlier encoding only where strictly cheaper
        outl = ((x - olev) ** 2).sum(dim=-1) < ((x - nval) ** 2).sum(dim=-1)
    levels = torch.where(outl[..., None], olev, nval)
    index = torch.where(outl, pos + 1, torch.zeros_like(pos))
    f0 = torch.where(outl, ocode, ncode[..., 0])
    f1 = torch.where(outl, kcode, ncode[..., 1])
    f2 = torch.where(outl, which, ncode[..., 2])
    return _FineQCodes(levels, index, f0, f1, f2)


def _cluster_sse_fn(wc: torch.Tensor, outl: torch.Tensor, code: FineQCode):
    """``sse(x [N, C, 3]) -> [N, C]``: the squared error (scaled units) of each cluster as
    :func:`_quantize_clusters` encodes it; the scale-independent parts are computed once."""
    nl = torch.tensor(code.normal_levels, dtype=torch.float32)
    ol = torch.tensor(code.outlier_levels, dtype=torch.float32)
    pos = wc.abs().argmax(dim=-1)
    perm = torch.tensor([(p, *_others(p)) for p in range(CLUSTER)], dtype=torch.int64)[pos]

    def sse(x):
        x = x.gather(-1, perm)  # (outlier candidate, lower other, higher other)
        en = (x - nl[nearest_level_index(x, code.normal_levels)]) ** 2
        xo = x[..., 0]
        eo = (xo - ol[nearest_level_index(xo, code.outlier_levels)]) ** 2
        x1, x2 = x[..., 1], x[..., 2]
        drop = torch.minimum(x2 * x2 + en[..., 1], x1 * x1 + en[..., 2])
        if outl is None:  # outlier_rule="min_error": the cheaper encoding of each cluster
            return torch.minimum(eo + drop, en.sum(dim=-1))
        return torch.where(outl, eo + drop, en.sum(dim=-1))

    return sse


def _search_scale(s_cover: torch.Tensor, err_of) -> torch.Tensor:
    """Per-group scale ``fp16(f * s_cover)`` with the least ``err_of(s) [N, ng]``: coarse factors,
    then refinement around each group's best (see the module docstring). Ties keep the earlier."""
    best_f = best_err = best_s = None
    steps = [torch.full_like(s_cover, f) for f in SCALE_COARSE]
    for stage in (0, 1):
        if stage == 1:
            steps = [(best_f + d).clamp(SCALE_GRID[-1], SCALE_GRID[0]) for d in SCALE_REFINE]
        for f in steps:
            s = _fp16_round(s_cover * f)
            err = err_of(s)
            if best_err is None:
                best_f, best_err, best_s = f, err, s
            else:
                better = err < best_err
                best_f = torch.where(better, f, best_f)
                best_err = torch.where(better, err, best_err)
                best_s = torch.where(better, s, best_s)
    return best_s


@dataclass(eq=False)
class FineQWeights:
    """A FineQ-quantized weight matrix ``[N, K]``.

    ``words``: uint8 ``[N, Kp/3]`` packed clusters; ``scales``: float32 ``[N, ngroups]`` (float16
    values); ``K``: the original reduction length (``Kp = 3 * ceil(K / 3)``); ``group_size``: the
    K-group length (a multiple of 3; the last group may be shorter); ``code``: the level sets."""

    words: torch.Tensor
    scales: torch.Tensor
    K: int
    group_size: int
    code: FineQCode = field(default=DEFAULT_CODE)

    @property
    def N(self) -> int:
        return self.words.shape[0]

    @property
    def Kp(self) -> int:
        return self.words.shape[1] * CLUSTER

    @property
    def ngroups(self) -> int:
        return self.scales.shape[1]

    def decoded(self) -> torch.Tensor:
        """int8 ``[N, Kp]`` integer levels (dropped positions 0)."""
        return decode_words(self.words, self.code)[0].reshape(self.N, self.Kp)

    def dropped(self) -> torch.Tensor:
        """bool ``[N, Kp]``: positions dropped by outlier clusters."""
        return decode_words(self.words, self.code)[1].reshape(self.N, self.Kp)

    def outlier_clusters(self) -> torch.Tensor:
        """bool ``[N, Kp/3]``: clusters encoded with an outlier."""
        return _field(self.words, INDEX_FIELD) != 0

    def dequantize(self) -> torch.Tensor:
        """float32 ``[N, K]``: ``level * scale`` (one float32 rounding; padded positions cut)."""
        s = _expand_groups(self.scales, self.group_size, self.Kp)
        return (self.decoded().to(torch.float32) * s)[:, : self.K]

    def bits_per_weight(self) -> float:
        """Storage per original weight: packed words plus float16 scales."""
        return (WORD_BITS * self.words.numel() + SCALE_BITS * self.scales.numel()) / (self.N * self.K)


@torch.no_grad()
def fineq_quantize(w: torch.Tensor, group_size: int | None = 48, code: FineQCode = DEFAULT_CODE,
                   *, scale_search: str = "mse", outlier_rule: str = "paper") -> FineQWeights:
    """Quantize ``w`` (float ``[N, K]``, finite) to FineQ clusters (rules in the module docstring).

    ``group_size``: a positive multiple of 3 (default :data:`DEFAULT_GROUP_SIZE` = 48: 8/3 + 16/48
    = 3.0 bits per weight), or ``None`` for one group per output channel.
    ``outlier_rule``: ``"paper"`` (the default and the specification: a cluster is encoded with an
    outlier iff ``max|w| > 4 * min|w|``) or ``"min_error"`` (an ablation for the study: each
    cluster takes whichever of the two encodings has the smaller error; the covering scale still
    follows the paper's rule)."""
    w = _check_weights(w)
    if not isinstance(code, FineQCode):
        raise TypeError(f"code must be a FineQCode, got {type(code).__name__}")
    if scale_search not in SCALE_SEARCHES:
        raise ValueError(f"scale_search must be one of {SCALE_SEARCHES}, got {scale_search!r}")
    if outlier_rule not in OUTLIER_RULES:
        raise ValueError(f"outlier_rule must be one of {OUTLIER_RULES}, got {outlier_rule!r}")
    n, k = w.shape
    kp = -(-k // CLUSTER) * CLUSTER
    gs = kp if group_size is None else _check_group_size(group_size)
    ng = -(-kp // gs)
    wp = _pad_to(w, kp)
    wc = wp.view(n, kp // CLUSTER, CLUSTER)
    outl = outlier_mask(wc)

    # covering scale: every weight inside the range of the level set that applies to it
    pos = wc.abs().argmax(dim=-1)
    is_out_elem = torch.zeros_like(wc, dtype=torch.bool).scatter_(-1, pos[..., None], True) & outl[..., None]
    is_out_elem = is_out_elem.reshape(n, kp)

    def need(levels):
        # scale that puts w on the extreme level of its sign; 0 where that sign has no level
        # (such weights are clipped to the nearest level, not covered)
        hi, lo = max(levels), min(levels)
        up = wp / hi if hi > 0 else torch.zeros_like(wp)
        down = wp / lo if lo < 0 else torch.zeros_like(wp)
        return torch.where(wp > 0, up, torch.where(wp < 0, down, torch.zeros_like(wp)))

    need_elem = torch.where(is_out_elem, need(code.outlier_levels), need(code.normal_levels))
    s_cover = torch.nn.functional.pad(need_elem, (0, ng * gs - kp)).view(n, ng, gs).amax(dim=-1)

    if scale_search == "amax":
        best_s = _fp16_round(s_cover)
    else:
        sse_of = _cluster_sse_fn(wc, outl if outlier_rule == "paper" else None, code)
        w2 = _group_sum(wp * wp, gs, ng)  # the error of a zero scale (everything decodes to 0)

        def err_of(s):
            sx = _expand_groups(s, gs, kp)
            safe = torch.where(sx > 0, sx, torch.ones_like(sx))
            x = torch.where(sx > 0, wp / safe, torch.zeros_like(wp)).view(n, kp // CLUSTER, CLUSTER)
            return torch.where(s > 0, _group_sum(sse_of(x), gs // CLUSTER, ng) * s * s, w2)

        best_s = _search_scale(s_cover, err_of)

    sx = _expand_groups(best_s, gs, kp)
    safe = torch.where(sx > 0, sx, torch.ones_like(sx))
    x = torch.where(sx > 0, wp / safe, torch.zeros_like(wp)).view(n, kp // CLUSTER, CLUSTER)
    q = _quantize_clusters(x, outl if outlier_rule == "paper" else None, code)
    words = encode_fields(q.index, q.f0, q.f1, q.f2)
    return FineQWeights(words=words.contiguous(), scales=best_s.contiguous(), K=k, group_size=gs, code=code)


# ----------------------------------------------------------------------------- RTN baseline


@dataclass(eq=False)
class RTNWeights:
    """Round-to-nearest symmetric INT``bits``: ``q int8 [N, K]`` in ``[-2^(b-1), 2^(b-1)-1]``,
    float16-valued ``scales [N, ngroups]`` over K-groups of ``group_size``."""

    q: torch.Tensor
    scales: torch.Tensor
    bits: int
    group_size: int

    def dequantize(self) -> torch.Tensor:
        k = self.q.shape[1]
        return self.q.to(torch.float32) * _expand_groups(self.scales, self.group_size, k)

    def bits_per_weight(self) -> float:
        return (self.bits * self.q.numel() + SCALE_BITS * self.scales.numel()) / self.q.numel()


@torch.no_grad()
def rtn_quantize(w: torch.Tensor, bits: int, group_size: int | None = None, *,
                 scale_search: str = "amax") -> RTNWeights:
    """Baseline: symmetric round-to-nearest INT``bits`` (2..8) per output channel (``group_size``
    ``None``) or per K-group. ``"amax"``: ``s = fp16(amax / (2^(b-1) - 1))`` (the usual RTN);
    ``"mse"``: the same grid search over ``f * s`` as FineQ. Levels ``-2^(b-1) .. 2^(b-1)-1``,
    nearest with the same tie rule as FineQ (:func:`nearest_level_index`)."""
    w = _check_weights(w)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an int in 2..8, got {bits!r}")
    if scale_search not in SCALE_SEARCHES:
        raise ValueError(f"scale_search must be one of {SCALE_SEARCHES}, got {scale_search!r}")
    n, k = w.shape
    if group_size is None:
        gs = k
    else:
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size <= 0:
            raise ValueError(f"group_size must be a positive int or None, got {group_size!r}")
        gs = group_size
    ng = -(-k // gs)
    qmax = (1 << (bits - 1)) - 1
    levels = tuple(range(-qmax - 1, qmax + 1))
    s_cover = torch.nn.functional.pad(w.abs(), (0, ng * gs - k)).view(n, ng, gs).amax(dim=-1) / qmax

    def q_of(s):
        sx = _expand_groups(s, gs, k)
        safe = torch.where(sx > 0, sx, torch.ones_like(sx))
        x = torch.where(sx > 0, w / safe, torch.zeros_like(w))
        return nearest_level_index(x, levels) - (qmax + 1), sx

    def err_of(s):
        q, sx = q_of(s)
        return _group_sum((q.to(torch.float32) * sx - w) ** 2, gs, ng)

    best_s = _fp16_round(s_cover) if scale_search == "amax" else _search_scale(s_cover, err_of)
    best_q = q_of(best_s)[0]
    return RTNWeights(q=best_q.to(torch.int8), scales=best_s, bits=bits, group_size=gs)
