"""FGMP precision-assignment policy: which 16-element blocks stay FP8, which become NVFP4.

``docs/fgmp_policy.md`` is the write-up; this module is its definition.

**Block sensitivity score** (per block b of 16 values v_i with diagonal Fisher F_i ≥ 0)::

    score_b = Σ_i F_i · (Q_NVFP4(v_i) − Q_FP8(v_i))²

``Q_NVFP4`` and ``Q_FP8`` are the exact dequantized values of the FGMP format
(:mod:`mpgen.golden.fgmp`): per-tensor scale ``s_t``, NVFP4 ``E2M1(code)·s_b·s_t`` (``s_b`` the
block's amax scale, or the clipped scale when sensitivity-weighted clipping is on), FP8
``E4M3(code)·6·s_t``. Precision: both dequantized values and their difference are exact in float64
(the difference is ``s_t`` times a multiple of 2**-10 below 2**12, i.e. ≤ 22 + 24 significant
bits); the square, the product with F and the 16-term sum are float64 roundings (relative error
< 2**-48). The score is a ranking heuristic computed offline, never a hardware quantity, so
float64 is its stated precision. (Activation scores are the classifier hardware's own integer
score, :mod:`mpgen.golden.classifier`.)

**Global threshold and tie rule.** One threshold T over all blocks of the model (separately for
weights and for activations); a block is **FP8 iff score > T** (a score equal to T stays NVFP4).
:func:`choose_threshold` returns the T whose NVFP4 fraction ``#{score ≤ T} / n`` is closest to the
target; the achievable fractions are 0 (T = −inf) and ``#{score ≤ v}/n`` for each distinct score
v (T = v). When two are equally close, the smaller NVFP4 fraction (more FP8) wins.

**Sensitivity-weighted clipping** (NVFP4 weight blocks): :func:`clip_search` tries the block's
amax scale code ``c0 = UE4M3.encode(amax_b / (6·s_t))`` and the ``candidates`` UE4M3 codes below it
(``c0 − 1 … c0 − candidates``, not below code 0; default :data:`DEFAULT_CLIP_CANDIDATES` = 8:
UE4M3 has 8 normal codes per binade, so the search reaches half the amax scale) and keeps the
one minimising ``Σ F_i (v_i − dequant(quant(v_i)))²`` (float64); ties keep the larger scale.

**Baselines** (same threshold machinery, same FP4 fraction): ``random`` (uniform random scores
from a seeded ``torch.Generator``), ``magnitude`` (score = block amax |v|: the largest-magnitude
blocks stay FP8), ``unweighted`` (the FGMP score with all F_i = 1), ``fp8`` (all FP8) and
``nvfp4`` (all NVFP4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import torch

from .fgmp import (BLOCK, FP8_IMPLICIT_SCALE, FP8_IMPLICIT_SCALE_CODE, FGMPTensor, fgmp_tensor_scale,
                   fp8_block_quantize)
from .formats import E2M1, E4M3, UE4M3
from .nvfp4 import check_float_input, exact_block_quantize

__all__ = [
    "DEFAULT_CLIP_CANDIDATES", "DEFAULT_FP4_FRACTION", "POLICY_KINDS", "Policy",
    "WeightAssignment", "assign_weights", "amax_block_scale", "nvfp4_codes",
    "quantize_fgmp", "weight_block_scores", "weighted_block_error",
    "block_amax", "clip_search", "choose_threshold", "fp4_fraction_at", "random_scores",
    "ActivationSite", "calibrate_activation_site", "ActivationQuantizer",
]

#: Default target fraction of NVFP4 blocks.
DEFAULT_FP4_FRACTION = 0.7
#: Default number of UE4M3 scale codes below the amax code that clipping tries.
DEFAULT_CLIP_CANDIDATES = 8
#: Policy kinds: the FGMP policy, its baselines, and the two uniform formats.
POLICY_KINDS = ("fgmp", "random", "magnitude", "unweighted", "fp8", "nvfp4")
_CHUNK_BLOCKS = 1 << 14  # blocks per vectorised chunk (keeps temporaries ~ tens of MB)


# ---------------------------------------------------------------------------------- validation


def _check_tensor_scale(s_t) -> float:
    if isinstance(s_t, torch.Tensor):
        if s_t.numel() != 1 or not s_t.dtype.is_floating_point:
            raise ValueError(f"tensor scale must be one floating-point value, got {tuple(s_t.shape)} {s_t.dtype}")
        s_t = float(s_t)
    if isinstance(s_t, bool) or not isinstance(s_t, (int, float)):
        raise TypeError(f"tensor scale must be a float or a one-element tensor, got {type(s_t).__name__}")
    s = float(s_t)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"tensor scale must be finite and > 0, got {s}")
    if float(torch.tensor(s, dtype=torch.float32)) != s:
        raise ValueError(f"tensor scale {s!r} is not a float32 value")
    return s


def _check_blocks(xb, what: str) -> None:
    if not isinstance(xb, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(xb).__name__}")
    if xb.dim() < 1 or xb.shape[-1] != BLOCK:
        raise ValueError(f"{what} must have shape [..., {BLOCK}], got {tuple(xb.shape)}")
    if xb.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"{what} must be float32, float16 or bfloat16, got {xb.dtype}")
    if xb.numel() and not bool(torch.isfinite(xb).all()):
        raise ValueError(f"{what} contains NaN or Inf")


def _check_fisher(fisher, shape, what: str = "fisher") -> torch.Tensor:
    if not isinstance(fisher, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(fisher).__name__}")
    if not fisher.dtype.is_floating_point:
        raise TypeError(f"{what} must be floating point, got {fisher.dtype}")
    if tuple(fisher.shape) != tuple(shape):
        raise ValueError(f"{what} has shape {tuple(fisher.shape)}, expected {tuple(shape)}")
    f = fisher.detach().to(torch.float64)
    if f.numel() and not bool(torch.isfinite(f).all()):
        raise ValueError(f"{what} contains NaN or Inf")
    if f.numel() and bool((f < 0).any()):
        raise ValueError(f"{what} must be >= 0 (a diagonal Fisher is a mean of squares)")
    return f


def _check_scale_codes(codes, shape) -> torch.Tensor:
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"block_scale must be a torch.Tensor, got {type(codes).__name__}")
    if codes.dtype != torch.uint8:
        raise TypeError(f"block_scale must hold uint8 UE4M3 codes, got {codes.dtype}")
    if tuple(codes.shape) != tuple(shape):
        raise ValueError(f"block_scale has shape {tuple(codes.shape)}, expected {tuple(shape)}")
    if codes.numel() and int(codes.max()) > UE4M3.max_code:
        raise ValueError(f"block_scale codes must be finite UE4M3 codes (<= {UE4M3.max_code:#x}); "
                         "found a NaN or out-of-range code")
    return codes


def _blocks(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32).reshape(*x.shape[:-1], x.shape[-1] // BLOCK, BLOCK)


# ---------------------------------------------------------------------------------- quantizers


def amax_block_scale(xb: torch.Tensor, s_t: float) -> torch.Tensor:
    """uint8 ``[..., nb]``: the NVFP4 amax scale codes ``UE4M3.encode(amax_b / (6·s_t))`` of
    :func:`mpgen.golden.nvfp4.exact_block_quantize` (computed by it)."""
    _check_blocks(xb, "blocks")
    return exact_block_quantize(xb.to(torch.float32), _check_tensor_scale(s_t))[1]


def nvfp4_codes(xb: torch.Tensor, block_scale: torch.Tensor, s_t: float) -> torch.Tensor:
    """E2M1 codes uint8 ``[..., nb, 16]`` of float blocks ``xb`` under explicit UE4M3 block scales.

    ``code = E2M1.encode(x / (s_b·s_t))`` by :func:`mpgen.golden.nvfp4.exact_block_quantize` with
    the given scales (its exactness argument holds for any UE4M3 scale; ``s_b == 0`` gives ±0).
    """
    _check_blocks(xb, "blocks")
    s_t = _check_tensor_scale(s_t)
    _check_scale_codes(block_scale, xb.shape[:-1])
    return exact_block_quantize(xb, s_t, block_scale)[0]


def _fp8_codes(xb: torch.Tensor, s_t: float) -> torch.Tensor:
    return fp8_block_quantize(xb, s_t)[0]


def _nvfp4_values(xb: torch.Tensor, block_scale: torch.Tensor, s_t: float) -> torch.Tensor:
    codes = nvfp4_codes(xb, block_scale, s_t)
    return E2M1.decode(codes).to(torch.float64) * (
        UE4M3.decode(block_scale).to(torch.float64) * s_t).unsqueeze(-1)


def _fp8_values(xb: torch.Tensor, s_t: float) -> torch.Tensor:
    return E4M3.decode(_fp8_codes(xb, s_t)).to(torch.float64) * (FP8_IMPLICIT_SCALE * s_t)


def quantize_fgmp(x: torch.Tensor, is_fp8: torch.Tensor, *, tensor_scale=None,
                  block_scale: torch.Tensor | None = None) -> FGMPTensor:
    """FGMP-quantize ``x [..., K]`` with an explicit FP8 mask and optional explicit scales.

    ``tensor_scale``: the per-tensor scale ``s_t`` (float or one-element tensor, a finite
    positive float32 value); default :func:`mpgen.golden.fgmp.fgmp_tensor_scale` of ``x``.
    ``block_scale``: uint8 UE4M3 codes ``[..., K/16]`` for the NVFP4 blocks (e.g. from
    :func:`clip_search`); entries of FP8 blocks are ignored. Default: the amax scales.
    With both defaults the result equals :func:`mpgen.golden.fgmp.fgmp_quantize`. Values beyond
    the range the scales allow saturate (E4M3/UE4M3/E2M1 encode rules). The result is an
    :class:`~mpgen.golden.fgmp.FGMPTensor` that ``fgmp_matmul``/``dot_products`` consume.
    """
    check_float_input(x, BLOCK)
    nb_shape = (*x.shape[:-1], x.shape[-1] // BLOCK)
    if not isinstance(is_fp8, torch.Tensor) or is_fp8.dtype != torch.bool:
        raise TypeError("is_fp8 must be a torch.bool tensor")
    if tuple(is_fp8.shape) != nb_shape:
        raise ValueError(f"is_fp8 has shape {tuple(is_fp8.shape)}, expected {nb_shape}")
    s_t = float(fgmp_tensor_scale(x)) if tensor_scale is None else _check_tensor_scale(tensor_scale)
    xb = _blocks(x)
    mask = is_fp8.cpu()
    codes = torch.empty(xb.shape, dtype=torch.uint8)
    scales = torch.full(nb_shape, FP8_IMPLICIT_SCALE_CODE, dtype=torch.uint8)
    fp4 = xb[~mask]
    if fp4.numel():
        if block_scale is None:
            c4, s4 = exact_block_quantize(fp4, s_t)
        else:
            s4 = _check_scale_codes(block_scale, nb_shape)[~mask]
            c4 = nvfp4_codes(fp4, s4, s_t)
        codes[~mask] = c4
        scales[~mask] = s4
    fp8 = xb[mask]
    if fp8.numel():
        codes[mask] = _fp8_codes(fp8, s_t)
    return FGMPTensor(codes, mask.clone(), scales, torch.tensor(s_t, dtype=torch.float32),
                      torch.Size(x.shape))


# ---------------------------------------------------------------------------------- scores


def weight_block_scores(w: torch.Tensor, fisher: torch.Tensor | None, *, tensor_scale=None,
                        block_scale: torch.Tensor | None = None) -> torch.Tensor:
    """float64 ``[..., K/16]``: ``score_b = Σ_i F_i (Q_NVFP4(w_i) − Q_FP8(w_i))²``.

    ``fisher``: same shape as ``w`` (≥ 0), or None for all-ones (the ``unweighted`` baseline).
    ``tensor_scale`` defaults to ``fgmp_tensor_scale(w)``; ``block_scale`` (UE4M3 codes) to the
    amax scales (pass the clipped scales to score the clipped NVFP4 values).
    """
    check_float_input(w, BLOCK, "w")
    s_t = float(fgmp_tensor_scale(w)) if tensor_scale is None else _check_tensor_scale(tensor_scale)
    wb = _blocks(w)
    f = None if fisher is None else _check_fisher(fisher, w.shape).reshape(wb.shape)
    bs = amax_block_scale(wb, s_t) if block_scale is None else _check_scale_codes(block_scale, wb.shape[:-1])
    d2 = (_nvfp4_values(wb, bs, s_t) - _fp8_values(wb, s_t)) ** 2  # the difference is exact
    return (d2 if f is None else f * d2).sum(dim=-1)


def weighted_block_error(xb: torch.Tensor, fisher_blocks: torch.Tensor | None,
                         block_scale: torch.Tensor, s_t: float) -> torch.Tensor:
    """float64 ``[..., nb]``: ``Σ_i F_i (v_i − dequant(quant_NVFP4(v_i; s_b)))²`` (F = 1 if None)."""
    _check_blocks(xb, "blocks")
    s_t = _check_tensor_scale(s_t)
    f = None if fisher_blocks is None else _check_fisher(fisher_blocks, xb.shape, "fisher_blocks")
    e2 = (xb.to(torch.float64) - _nvfp4_values(xb, block_scale, s_t)) ** 2
    return (e2 if f is None else f * e2).sum(dim=-1)


def block_amax(x: torch.Tensor) -> torch.Tensor:
    """float64 ``[..., K/16]`` block amax |x| (the ``magnitude`` baseline's score)."""
    check_float_input(x, BLOCK)
    return _blocks(x).abs().amax(dim=-1).to(torch.float64)


def random_scores(shape, generator: torch.Generator) -> torch.Tensor:
    """float64 uniform [0, 1) scores (the ``random`` baseline), drawn from ``generator``."""
    return torch.rand(tuple(shape), generator=generator, dtype=torch.float64)


# ---------------------------------------------------------------------------------- clipping


def clip_search(w_blocks: torch.Tensor, fisher_blocks: torch.Tensor | None, s_t,
                candidates: int = DEFAULT_CLIP_CANDIDATES) -> torch.Tensor:
    """Sensitivity-weighted clipping: uint8 UE4M3 scale codes ``[..., nb]`` for NVFP4 blocks.

    For each block, tries the amax scale code ``c0`` and the ``candidates`` codes below it
    (``max(c0 − j, 0)``, j = 0..candidates; UE4M3 codes are ordered like their values) and returns
    the one with the smallest :func:`weighted_block_error` (``fisher_blocks`` None: unweighted).
    Ties keep the larger scale, so the result never has a larger weighted error than ``c0``.
    ``candidates = 0`` returns the amax scales. Vectorised over blocks.
    """
    _check_blocks(w_blocks, "w_blocks")
    s_t = _check_tensor_scale(s_t)
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 0:
        raise ValueError(f"candidates must be an int >= 0, got {candidates!r}")
    if candidates > UE4M3.max_code:
        raise ValueError(f"candidates must be <= {UE4M3.max_code} (the number of finite UE4M3 codes - 1)")
    f = None if fisher_blocks is None else _check_fisher(fisher_blocks, w_blocks.shape, "fisher_blocks")
    lead = w_blocks.shape[:-1]
    xb = w_blocks.to(torch.float32).reshape(-1, BLOCK)
    fb = None if f is None else f.reshape(-1, BLOCK)
    c0 = amax_block_scale(xb, s_t).to(torch.int64)
    if candidates == 0 or xb.shape[0] == 0:
        return c0.to(torch.uint8).reshape(lead)
    offs = torch.arange(candidates + 1, dtype=torch.int64)
    out = torch.empty_like(c0)
    for lo in range(0, xb.shape[0], _CHUNK_BLOCKS):
        hi = min(lo + _CHUNK_BLOCKS, xb.shape[0])
        cand = (c0[lo:hi, None] - offs).clamp(min=0).to(torch.uint8)  # [n, C]
        xc = xb[lo:hi, None, :].expand(-1, candidates + 1, -1)
        err = weighted_block_error(xc, None if fb is None else fb[lo:hi, None, :].expand_as(xc),
                                   cand, s_t)
        out[lo:hi] = cand.to(torch.int64).gather(1, err.argmin(dim=1, keepdim=True)).squeeze(1)
    return out.to(torch.uint8).reshape(lead)


# ---------------------------------------------------------------------------------- threshold


def _flat_scores(scores_list) -> torch.Tensor:
    if isinstance(scores_list, torch.Tensor):
        scores_list = [scores_list]
    parts = []
    for s in scores_list:
        if not isinstance(s, torch.Tensor):
            raise TypeError(f"scores must be torch.Tensors, got {type(s).__name__}")
        if not s.dtype.is_floating_point and s.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"scores must be float or integer tensors, got {s.dtype}")
        parts.append(s.detach().reshape(-1).to(torch.float64))
    flat = torch.cat(parts) if parts else torch.empty(0, dtype=torch.float64)
    if flat.numel() == 0:
        raise ValueError("no scores: need at least one block")
    if not bool(torch.isfinite(flat).all()):
        raise ValueError("scores contain NaN or Inf")
    return flat


def _check_fraction(f) -> float:
    if isinstance(f, bool) or not isinstance(f, (int, float)):
        raise TypeError(f"fp4_fraction must be a number, got {type(f).__name__}")
    f = float(f)
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"fp4_fraction must lie in [0, 1], got {f}")
    return f


def choose_threshold(scores_list, fp4_fraction: float = DEFAULT_FP4_FRACTION) -> float:
    """The global threshold T (float) over all blocks in ``scores_list`` (tensors of any shape).

    Tie rule: FP8 iff score > T. T is −inf (all FP8) or one of the scores; among the achievable
    NVFP4 fractions (0 and ``#{score ≤ v}/n`` per distinct score v) the one closest to
    ``fp4_fraction`` is chosen, the smaller one on a tie. :func:`fp4_fraction_at` gives the
    achieved fraction.
    """
    f = _check_fraction(fp4_fraction)
    flat = _flat_scores(scores_list)
    vals, counts = torch.unique(flat, sorted=True, return_counts=True)
    n = flat.numel()
    reach = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])  # NVFP4 counts
    # |reach/n - f| compared exactly as |reach - f·n| in float64 (n < 2**53)
    dist = (reach.to(torch.float64) - f * n).abs()
    j = int(torch.argmin(dist))  # first minimum = the smaller count on a tie
    return -math.inf if j == 0 else float(vals[j - 1])


def fp4_fraction_at(scores_list, threshold: float) -> float:
    """Fraction of blocks that are NVFP4 (score ≤ threshold) in ``scores_list``."""
    flat = _flat_scores(scores_list)
    if not isinstance(threshold, (int, float)) or math.isnan(threshold):
        raise ValueError(f"threshold must be a number (not NaN), got {threshold!r}")
    return float((flat <= threshold).sum()) / flat.numel()


# ---------------------------------------------------------------------------------- policy API


@dataclass(frozen=True)
class Policy:
    """A block precision policy.

    ``kind``: one of :data:`POLICY_KINDS`. ``fp4_fraction``: target NVFP4 fraction (ignored by
    ``fp8``/``nvfp4``). ``clip``: sensitivity-weighted clipping of NVFP4 weight blocks (uses the
    weight Fisher; the FGMP/unweighted scores then use the clipped NVFP4 values).
    ``clip_candidates``: codes below the amax scale tried by :func:`clip_search`. ``seed``: for
    ``random``.
    """

    kind: str = "fgmp"
    fp4_fraction: float = DEFAULT_FP4_FRACTION
    clip: bool = False
    clip_candidates: int = DEFAULT_CLIP_CANDIDATES
    seed: int = 0

    def __post_init__(self):
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"policy kind must be one of {POLICY_KINDS}, got {self.kind!r}")
        _check_fraction(self.fp4_fraction)
        if not isinstance(self.clip, bool):
            raise TypeError("clip must be a bool")
        if isinstance(self.clip_candidates, bool) or not isinstance(self.clip_candidates, int) \
                or not 0 <= self.clip_candidates <= UE4M3.max_code:
            raise ValueError(f"clip_candidates must be an int in [0, {UE4M3.max_code}], "
                             f"got {self.clip_candidates!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError("seed must be an int")

    @property
    def label(self) -> str:
        if self.kind in ("fp8", "nvfp4"):
            return {"fp8": "all-FP8", "nvfp4": "all-NVFP4"}[self.kind]
        return f"{self.kind} {round(100 * self.fp4_fraction)}% FP4"


@dataclass
class WeightAssignment:
    """Result of :func:`assign_weights`: per-layer quantized tensors and masks."""

    policy: Policy
    tensors: dict[str, FGMPTensor]
    is_fp8: dict[str, torch.Tensor]
    threshold: float
    fp4_fraction: float  # achieved, over all blocks of all layers
    scores: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def dequantized(self) -> dict[str, torch.Tensor]:
        return {n: t.dequantize() for n, t in self.tensors.items()}


def assign_weights(weights: Mapping[str, torch.Tensor], fisher: Mapping[str, torch.Tensor] | None,
                   policy: Policy, *, cache: dict | None = None) -> WeightAssignment:
    """Apply ``policy`` to every weight ``[out, in]`` (``in`` a multiple of 16) of a model.

    ``fisher``: the diagonal weight Fisher per layer (same shapes), required by ``fgmp`` and by
    ``clip=True``. One global threshold over all layers' block scores (:func:`choose_threshold`);
    FP8 iff score > T. Per-tensor scales: ``fgmp_tensor_scale`` of each weight. The tensors equal
    ``quantize_fgmp(w, mask, block_scale=scales)``.

    ``cache``: an optional dict reused across calls **with the same weights and Fisher** (e.g. a
    study evaluating many policies); it keeps per-layer scales, codes and scores.
    """
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a Policy, got {type(policy).__name__}")
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError("weights must be a non-empty mapping name -> tensor")
    needs_fisher = policy.kind == "fgmp" or (policy.clip and policy.kind != "fp8")
    if needs_fisher:
        if fisher is None:
            raise ValueError(f"policy {policy} needs the weight Fisher")
        missing = [n for n in weights if n not in fisher]
        if missing:
            raise ValueError(f"no Fisher for layers {missing}")
    c = {} if cache is None else cache
    clip = policy.clip and policy.kind != "fp8"
    ckey = policy.clip_candidates if clip else None

    def memo(key, fn):
        if key not in c:
            c[key] = fn()
        return c[key]

    gen = torch.Generator().manual_seed(policy.seed)
    s_t, block_scale, scores = {}, {}, {}
    for name, w in weights.items():
        def base(name=name, w=w):
            check_float_input(w, BLOCK, f"weight {name}")
            return float(fgmp_tensor_scale(w)), _blocks(w)
        st, wb = memo((name, "base"), base)
        s_t[name] = st

        def fisher_blocks(name=name, w=w, wb=wb):
            return _check_fisher(fisher[name], w.shape, f"fisher[{name}]").reshape(wb.shape)
        if clip:
            block_scale[name] = memo((name, "scale", ckey), lambda: clip_search(
                wb, memo((name, "fisher"), fisher_blocks), st, policy.clip_candidates))
        else:
            block_scale[name] = memo((name, "scale", None), lambda: amax_block_scale(wb, st))
        if policy.kind == "fgmp":
            f = memo((name, "fisher"), fisher_blocks).reshape(w.shape)
            scores[name] = memo((name, "score", "fgmp", ckey), lambda: weight_block_scores(
                w, f, tensor_scale=st, block_scale=block_scale[name]))
        elif policy.kind == "unweighted":
            scores[name] = memo((name, "score", "unweighted", ckey), lambda: weight_block_scores(
                w, None, tensor_scale=st, block_scale=block_scale[name]))
        elif policy.kind == "magnitude":
            scores[name] = memo((name, "score", "magnitude"), lambda: block_amax(w))
        elif policy.kind == "random":
            scores[name] = random_scores(wb.shape[:-1], gen)
    if policy.kind in ("fp8", "nvfp4"):
        threshold = -math.inf if policy.kind == "fp8" else math.inf
        masks = {n: torch.full(_blocks(w).shape[:-1], policy.kind == "fp8", dtype=torch.bool)
                 for n, w in weights.items()}
    else:
        threshold = choose_threshold(list(scores.values()), policy.fp4_fraction)
        masks = {n: s > threshold for n, s in scores.items()}
    tensors = {}
    for n, w in weights.items():
        wb = c[(n, "base")][1]
        m = masks[n]
        c4 = memo((n, "fp4codes", ckey), lambda: nvfp4_codes(wb, block_scale[n], s_t[n]))
        c8 = memo((n, "fp8codes"), lambda: _fp8_codes(wb, s_t[n]))
        codes = torch.where(m.unsqueeze(-1), c8, c4)
        bs = torch.where(m, torch.full_like(block_scale[n], FP8_IMPLICIT_SCALE_CODE), block_scale[n])
        tensors[n] = FGMPTensor(codes, m.clone(), bs, torch.tensor(s_t[n], dtype=torch.float32),
                                torch.Size(w.shape))
    total = sum(m.numel() for m in masks.values())
    fp4 = sum(int((~m).sum()) for m in masks.values())
    return WeightAssignment(policy, tensors, masks, threshold, fp4 / total, scores)


# ---------------------------------------------------------------------------------- activations
#
# Activations have no gradients at inference: their per-input-channel Fisher is collected offline
# and stored as the classifier's Fisher table (:mod:`mpgen.golden.classifier`); the per-tensor
# scale is the power of two 2**p from the calibration amax. The classifier hardware computes each
# block's score and compares it with a per-layer register; :func:`threshold_register` makes that
# decision equal to ``score_value > T_a`` for one global T_a chosen here over the calibration
# activations of all layers. The baselines use the same scale 2**p and explicit masks.


@dataclass
class ActivationSite:
    """Calibration of one activation tensor (the input of one or more linear layers).

    ``p``: scale exponent (tensor scale 2**p). ``tables``: ``{"fgmp": FisherTable of the
    activation Fisher, "unweighted": FisherTable of all-equal values}``. ``calib_scores``:
    float64 flat block scores over the calibration activations per baseline kind ("fgmp",
    "unweighted": the classifier's :func:`score_values`; "magnitude": block amax).
    """

    p: int
    tables: dict
    calib_scores: dict[str, torch.Tensor]

    @property
    def calib_blocks(self) -> int:
        return next(iter(self.calib_scores.values())).numel()


def _bf16_blocks(x: torch.Tensor, cfg) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise TypeError("activations must be a floating-point torch.Tensor")
    return x.to(cfg.input_format.torch_dtype)


def calibrate_activation_site(calib_x: torch.Tensor | list, fisher_k: torch.Tensor,
                              cfg=None, *, amax: float | None = None) -> ActivationSite:
    """Calibrate one site from its float-model activations ``calib_x`` (tensor [N, K] or a list
    of them; converted to the classifier's input format, BF16 by default) and its per-channel
    activation Fisher ``fisher_k`` [K] (≥ 0). ``amax``: the calibration amax for the scale
    ``2**p`` (:func:`~mpgen.golden.classifier.activation_scale_exp`) when ``calib_x`` is only a
    sample of the calibration activations; default the amax of ``calib_x``."""
    from .classifier import (ClassifierConfig, activation_scale_exp, classify, fisher_to_table,
                             score_values)

    cfg = cfg or ClassifierConfig()
    xs = [calib_x] if isinstance(calib_x, torch.Tensor) else list(calib_x)
    if not xs:
        raise ValueError("no calibration activations")
    xs = [_bf16_blocks(x, cfg) for x in xs]
    k = xs[0].shape[-1]
    if any(x.shape[-1] != k for x in xs):
        raise ValueError("calibration activations of one site must share their last dimension")
    for x in xs:
        check_float_input(x, BLOCK, "calibration activations")
    f = _check_fisher(fisher_k, (k,), "activation fisher")
    if amax is None:
        amax = max((float(x.abs().amax()) for x in xs if x.numel()), default=0.0)
    p = activation_scale_exp(amax, cfg)
    tables = {"fgmp": fisher_to_table(f.to(torch.float32), cfg),
              "unweighted": fisher_to_table(torch.ones(k), cfg)}
    scores = {kind: [] for kind in ("fgmp", "unweighted", "magnitude")}
    for x in xs:
        x2 = x.reshape(-1, k)
        for kind in ("fgmp", "unweighted"):
            res = classify(x2, tables[kind], 0, p, cfg)
            scores[kind].append(score_values(res, tables[kind], p, cfg).reshape(-1))
        scores["magnitude"].append(block_amax(x2).reshape(-1))
    return ActivationSite(p, tables, {kk: torch.cat(v) for kk, v in scores.items()})


class ActivationQuantizer:
    """Quantizes activations per site as the hardware would under ``policy``.

    ``fgmp``/``unweighted``: one global threshold T_a over the calibration scores of all sites
    (:func:`choose_threshold`, negative T clamped to 0: the classifier's register is unsigned),
    then per site ``reg = threshold_register(T_a, table, p)`` and :func:`classify` decides every
    block (FP8 iff hardware score > reg). ``magnitude``: block amax > T_a (global, calibrated).
    ``random``: uniform scores from a generator seeded with ``policy.seed`` (T_a calibrated on
    draws of the same size). ``fp8``/``nvfp4``: all blocks. Every kind quantizes BF16 inputs with
    tensor scale 2**p (:func:`quantize_fgmp`, which equals the classifier's encoding).
    Calling it returns the :class:`FGMPTensor` and counts NVFP4 blocks (``fp4_fraction``).
    """

    def __init__(self, sites: Mapping[str, ActivationSite], policy: Policy, cfg=None):
        from .classifier import ClassifierConfig, threshold_register

        if not isinstance(policy, Policy):
            raise TypeError(f"policy must be a Policy, got {type(policy).__name__}")
        if not sites:
            raise ValueError("no activation sites")
        self.cfg = cfg or ClassifierConfig()
        self.sites = dict(sites)
        self.policy = policy
        self._gen = torch.Generator().manual_seed(policy.seed + 1)
        kind = policy.kind
        self.threshold = None
        self.registers: dict[str, int] = {}
        if kind in ("fgmp", "unweighted", "magnitude"):
            t = choose_threshold([s.calib_scores[kind] for s in self.sites.values()], policy.fp4_fraction)
            self.threshold = max(t, 0.0)
            self.calib_fp4_fraction = fp4_fraction_at(
                [s.calib_scores[kind] for s in self.sites.values()], self.threshold)
            if kind != "magnitude":
                self.registers = {n: threshold_register(self.threshold, s.tables[kind], s.p, self.cfg)
                                  for n, s in self.sites.items()}
        elif kind == "random":
            g = torch.Generator().manual_seed(policy.seed)
            draws = [random_scores((s.calib_blocks,), g) for s in self.sites.values()]
            self.threshold = max(choose_threshold(draws, policy.fp4_fraction), 0.0)
            self.calib_fp4_fraction = fp4_fraction_at(draws, self.threshold)
        else:
            self.calib_fp4_fraction = 1.0 if kind == "nvfp4" else 0.0
        self.blocks = 0
        self.fp4_blocks = 0

    @property
    def fp4_fraction(self) -> float:
        """NVFP4 fraction of all blocks quantized so far (nan before the first call)."""
        return self.fp4_blocks / self.blocks if self.blocks else math.nan

    def __call__(self, site: str, x: torch.Tensor) -> FGMPTensor:
        from .classifier import classify

        if site not in self.sites:
            raise KeyError(f"unknown activation site {site!r}")
        s = self.sites[site]
        xb = _bf16_blocks(x, self.cfg)
        kind = self.policy.kind
        ts = math.ldexp(1.0, s.p)
        if kind in ("fgmp", "unweighted"):
            q = classify(xb, s.tables[kind], self.registers[site], s.p, self.cfg).to_fgmp()
        else:
            check_float_input(xb, BLOCK, "activations")
            nb = (*xb.shape[:-1], xb.shape[-1] // BLOCK)
            if kind == "magnitude":
                mask = block_amax(xb) > self.threshold
            elif kind == "random":
                mask = random_scores(nb, self._gen) > self.threshold
            else:
                mask = torch.full(nb, kind == "fp8", dtype=torch.bool)
            q = quantize_fgmp(xb, mask, tensor_scale=ts)
        self.blocks += q.is_fp8.numel()
        self.fp4_blocks += int((~q.is_fp8).sum())
        return q
