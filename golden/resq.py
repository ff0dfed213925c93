"""ResQ: a PCA basis whose high-variance subspace stays at 8 bits, the rest at 4 (docs/resq.md).

ResQ (Saxena et al., arXiv 2412.14363) changes the basis of each linear layer's reduction
dimension K offline so that the precision of a channel is fixed by its position:

1. Calibration covariance ``H = Σ xᵀx`` over calibration rows, in float64
   (:func:`calibration_covariance`; uncentred, as the paper's code).
2. Eigendecomposition of ``H + λ·mean(diag H)·I`` in float64 with ``λ = DAMPING = 0.01`` (the
   paper code's 1 %). The damping shifts every eigenvalue by the same amount, so it changes
   neither the eigenvectors nor their order; it only makes a singular ``H`` (zero or padded
   channels) positive definite for the solver. Eigenvalues ascending, as ``torch.linalg.eigh``.
3. The ``n_high = ceil(fraction·K)`` directions of largest eigenvalue (rounded up to a multiple
   of ``multiple``, :func:`high_precision_count`) form the 8-bit subspace; they are the **last**
   ``n_high`` coordinates (the paper code's order), the other ``K − n_high`` the 4-bit subspace.
4. A random orthogonal matrix inside each subspace (:func:`random_orthogonal`, QR of a Gaussian
   with the sign fix, Haar-distributed), never mixing the two: ``P = [U_lo R_lo | U_hi R_hi]``.
5. ``x·Wᵀ = (x·P)·(W·P)ᵀ`` because ``P`` is orthogonal: ``W·P`` is fused offline
   (:func:`fuse_weights`), ``x·P`` is fused into the producer of ``x`` or applied online.

Quantizers (QuaRot/ResQ fake-quant recipe, in float32, each operation one IEEE rounding):

* activations per token (row), asymmetric, a separate scale and zero per segment
  (:func:`quantize_asymmetric`): ``xmin = min(min x, 0)·clip``, ``xmax = max(max x, 0)·clip``,
  both 0 → (−1, +1); ``s = fl(fl(xmax − xmin) / maxq)``, ``maxq = 2^b − 1``;
  ``z = clamp(rne(fl(−xmin / s)), 0, maxq)``; ``q = clamp(rne(fl(x / s)) + z, 0, maxq)``;
  ``x̂ = fl((q − z)·s)``. ``rne`` = round half to even (``torch.round``).
* weights per output channel (row), symmetric (:func:`quantize_symmetric`): ``maxq = 2^(b−1) − 1``,
  ``s = fl(amax / maxq)`` (1 for a zero row), ``q = clamp(rne(fl(w / s)), −maxq − 1, maxq)``,
  ``ŵ = fl(q·s)``. RTN (round to nearest); GPTQ is not modelled.

The integer dot-product contract of the ``resq`` unit is :func:`resq_dot` (bit widths:
:func:`accumulator_bits`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch

__all__ = ["DAMPING", "DEFAULT_FRACTION", "ResQBasis", "AsymmetricCodes", "SymmetricCodes",
           "ResQActivations", "ResQWeights", "ResQDot", "calibration_covariance",
           "high_precision_count", "random_orthogonal", "resq_basis", "fuse_weights",
           "rotate_activations", "quantize_asymmetric", "quantize_symmetric",
           "quantize_resq_activations", "quantize_resq_weights", "resq_dot", "accumulator_bits"]

#: Relative damping of the covariance before the eigendecomposition (ResQ's 1 % of mean diag).
DAMPING = 0.01
#: Default fraction of K kept at 8 bits.
DEFAULT_FRACTION = Fraction(1, 8)
_INPUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check_float_tensor(x, what: str, dtypes=_INPUT_DTYPES, dim: int | None = None) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in dtypes:
        raise TypeError(f"{what} must be one of {[str(d) for d in dtypes]}, got {x.dtype}")
    if dim is not None and x.dim() != dim:
        raise ValueError(f"{what} must have {dim} dimensions, got shape {tuple(x.shape)}")
    if x.dim() == 0 or x.shape[-1] == 0:
        raise ValueError(f"{what} must have a non-empty last dimension, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} contains NaN or Inf; non-finite inputs are rejected")


def _check_bits(bits, what: str) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"{what} must be an int in [2, 16], got {bits!r}")


def _as_fraction(fraction) -> Fraction:
    """An exact fraction: floats through their shortest repr (0.1 → 1/10, not 0.1000…0555)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, Fraction)):
        raise TypeError(f"fraction must be a float, int or Fraction, got {type(fraction).__name__}")
    if isinstance(fraction, float) and not math.isfinite(fraction):
        raise ValueError(f"fraction must be finite, got {fraction!r}")
    return Fraction(repr(fraction)) if isinstance(fraction, float) else Fraction(fraction)


def calibration_covariance(x: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
    """``previous + Σ_rows xᵀx`` in float64 (uncentred second moment), ``x`` of shape [..., K].

    Parameters
    ----------
    x : torch.Tensor
        Calibration activations (float32/float16/bfloat16, finite); leading dims are rows.
    previous : torch.Tensor, optional
        A float64 [K, K] sum to add to (accumulation over calibration batches).
    """
    _check_float_tensor(x, "calibration activations")
    rows = x.reshape(-1, x.shape[-1]).to(torch.float64)
    h = rows.T @ rows
    if previous is None:
        return h
    if not isinstance(previous, torch.Tensor) or previous.dtype != torch.float64:
        raise TypeError("previous covariance must be a float64 torch.Tensor")
    if previous.shape != h.shape:
        raise ValueError(f"previous covariance has shape {tuple(previous.shape)}, expected {tuple(h.shape)}")
    return previous + h


def high_precision_count(k: int, fraction=DEFAULT_FRACTION, multiple: int = 1) -> int:
    """``n_high = ceil(fraction·k)`` rounded up to a multiple of ``multiple`` (exact arithmetic).

    Raises ValueError unless ``0 < fraction < 1`` and ``1 ≤ n_high ≤ k − 1`` (both subspaces
    non-empty). With ``multiple = k // 8`` (k a multiple of 8) the split is one of the RTL unit's.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"k must be an int ≥ 2, got {k!r}")
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"multiple must be a positive int, got {multiple!r}")
    f = _as_fraction(fraction)
    if not 0 < f < 1:
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction!r}")
    n = math.ceil(f * k)
    n = -(-n // multiple) * multiple
    if not 1 <= n <= k - 1:
        raise ValueError(f"fraction {fraction!r} of k={k} (multiple {multiple}) gives n_high={n}; "
                         f"both subspaces must be non-empty (1 ≤ n_high ≤ {k - 1})")
    return n


def random_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-random orthogonal float64 [n, n]: ``Q·diag(sign(diag R))`` of ``QR(G)``, ``G`` a
    standard Gaussian drawn from ``generator`` (sign 0 counts as +1)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    g = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    sign = torch.where(torch.diagonal(r) < 0, -1.0, 1.0).to(torch.float64)
    return q * sign


@dataclass(frozen=True)
class ResQBasis:
    """``projection`` P (float64 [K, K], orthogonal): columns ``:K−n_high`` span the 4-bit
    subspace, the last ``n_high`` the 8-bit one. ``eigenvalues``: the damped covariance's,
    ascending (float64 [K])."""

    projection: torch.Tensor
    n_high: int
    eigenvalues: torch.Tensor

    @property
    def n_low(self) -> int:
        return self.projection.shape[0] - self.n_high


def resq_basis(covariance: torch.Tensor, fraction=DEFAULT_FRACTION, *, seed: int = 0,
               multiple: int = 1, damping: float = DAMPING) -> ResQBasis:
    """The ResQ basis of one activation site from its calibration ``covariance`` (float64 [K, K]).

    Parameters
    ----------
    covariance : torch.Tensor
        Symmetric, finite float64 [K, K] (:func:`calibration_covariance`).
    fraction, multiple
        Size of the 8-bit subspace (:func:`high_precision_count`).
    seed : int
        Seeds one ``torch.Generator``; R_lo is drawn first, then R_hi.
    damping : float
        ``λ`` of ``H + λ·mean(diag H)·I`` (≥ 0).
    """
    if not isinstance(covariance, torch.Tensor) or covariance.dtype != torch.float64:
        raise TypeError("covariance must be a float64 torch.Tensor")
    if covariance.dim() != 2 or covariance.shape[0] != covariance.shape[1]:
        raise ValueError(f"covariance must be square [K, K], got shape {tuple(covariance.shape)}")
    if not bool(torch.isfinite(covariance).all()):
        raise ValueError("covariance contains NaN or Inf")
    if not torch.allclose(covariance, covariance.T, rtol=1e-10, atol=0.0):
        raise ValueError("covariance must be symmetric")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not isinstance(damping, (int, float)) or not math.isfinite(damping) or damping < 0:
        raise ValueError(f"damping must be a finite number ≥ 0, got {damping!r}")
    k = covariance.shape[0]
    n_high = high_precision_count(k, fraction, multiple)
    mean_diag = float(torch.diagonal(covariance).mean())
    damped = covariance + damping * mean_diag * torch.eye(k, dtype=torch.float64)
    eigenvalues, vectors = torch.linalg.eigh(damped)
    gen = torch.Generator().manual_seed(seed)
    r_low = random_orthogonal(k - n_high, gen)
    r_high = random_orthogonal(n_high, gen)
    projection = torch.cat([vectors[:, :k - n_high] @ r_low, vectors[:, k - n_high:] @ r_high], 1)
    return ResQBasis(projection, n_high, eigenvalues)


def _check_projection(projection, k: int) -> None:
    if not isinstance(projection, torch.Tensor) or projection.dtype != torch.float64:
        raise TypeError("projection must be a float64 torch.Tensor")
    if projection.shape != (k, k):
        raise ValueError(f"projection has shape {tuple(projection.shape)}, expected ({k}, {k})")


def fuse_weights(w: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """``W·P`` ([N, K]) computed in float64, rounded once to float32."""
    _check_float_tensor(w, "weights", dim=2)
    _check_projection(projection, w.shape[1])
    return (w.to(torch.float64) @ projection).to(torch.float32)


def rotate_activations(x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """``x·P`` ([..., K]) computed in float64, rounded once to float32."""
    _check_float_tensor(x, "activations")
    _check_projection(projection, x.shape[-1])
    return (x.to(torch.float64) @ projection).to(torch.float32)


@dataclass(frozen=True)
class AsymmetricCodes:
    """Per-row asymmetric integer codes: ``codes`` int64 in [0, 2^bits − 1], ``scale`` float32
    and ``zero`` int64 of shape [..., 1]."""

    codes: torch.Tensor
    scale: torch.Tensor
    zero: torch.Tensor
    bits: int

    def dequantize(self) -> torch.Tensor:
        """``fl32((q − z)·s)`` (``q − z`` is exact)."""
        return (self.codes - self.zero).to(torch.float32) * self.scale


@dataclass(frozen=True)
class SymmetricCodes:
    """Per-row symmetric codes: ``codes`` int64 in [−2^(bits−1), 2^(bits−1) − 1], ``scale``
    float32 [..., 1]."""

    codes: torch.Tensor
    scale: torch.Tensor
    bits: int

    def dequantize(self) -> torch.Tensor:
        """``fl32(q·s)``."""
        return self.codes.to(torch.float32) * self.scale


def quantize_asymmetric(x: torch.Tensor, bits: int, clip_ratio: float = 1.0) -> AsymmetricCodes:
    """Per-row (last dim) asymmetric RTN quantization (module docstring for the exact steps).

    Raises ValueError if a row's scale underflows to 0 in float32.
    """
    _check_float_tensor(x, "activations")
    _check_bits(bits, "bits")
    if not isinstance(clip_ratio, (int, float)) or not 0 < clip_ratio <= 1:
        raise ValueError(f"clip_ratio must lie in (0, 1], got {clip_ratio!r}")
    x = x.to(torch.float32)
    maxq = float(2 ** bits - 1)
    clip = torch.tensor(clip_ratio, dtype=torch.float32)
    zero_f = torch.zeros((), dtype=torch.float32)
    xmin = torch.minimum(x.amin(-1, keepdim=True), zero_f) * clip
    xmax = torch.maximum(x.amax(-1, keepdim=True), zero_f) * clip
    both_zero = (xmin == 0) & (xmax == 0)
    xmin = torch.where(both_zero, -1.0, xmin)
    xmax = torch.where(both_zero, 1.0, xmax)
    scale = (xmax - xmin) / maxq
    if bool((scale == 0).any()):
        raise ValueError("a row's range is so small that its float32 scale underflows to 0")
    zero = torch.clamp(torch.round(-xmin / scale), 0, maxq)
    codes = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    return AsymmetricCodes(codes.to(torch.int64), scale, zero.to(torch.int64), bits)


def quantize_symmetric(w: torch.Tensor, bits: int) -> SymmetricCodes:
    """Per-row (output channel) symmetric RTN quantization (module docstring)."""
    _check_float_tensor(w, "weights")
    _check_bits(bits, "bits")
    w = w.to(torch.float32)
    maxq = float(2 ** (bits - 1) - 1)
    amax = w.abs().amax(-1, keepdim=True)
    scale = torch.where(amax == 0, 1.0, amax / maxq)
    if bool((scale == 0).any()):
        raise ValueError("a row's amax is so small that its float32 scale underflows to 0")
    codes = torch.clamp(torch.round(w / scale), -maxq - 1, maxq)
    return SymmetricCodes(codes.to(torch.int64), scale, bits)


@dataclass(frozen=True)
class ResQActivations:
    """Rotated activations [T, K]: ``low`` (first K − n_high channels) and ``high`` (last n_high)."""

    low: AsymmetricCodes
    high: AsymmetricCodes

    def dequantize(self) -> torch.Tensor:
        return torch.cat([self.low.dequantize(), self.high.dequantize()], -1)


@dataclass(frozen=True)
class ResQWeights:
    """Fused weights [N, K] split like :class:`ResQActivations`, with the offline column sums
    ``Σ_k q_w`` per output channel (int64 [N]) for the zero-point correction."""

    low: SymmetricCodes
    high: SymmetricCodes
    column_sum_low: torch.Tensor
    column_sum_high: torch.Tensor

    def dequantize(self) -> torch.Tensor:
        return torch.cat([self.low.dequantize(), self.high.dequantize()], -1)


def _check_split(x, n_high: int) -> None:
    k = x.shape[-1]
    if isinstance(n_high, bool) or not isinstance(n_high, int) or not 1 <= n_high <= k - 1:
        raise ValueError(f"n_high must be an int in [1, {k - 1}] for K={k}, got {n_high!r}")


def quantize_resq_activations(x: torch.Tensor, n_high: int, low_bits: int = 4, high_bits: int = 8,
                              clip_ratio: float = 1.0) -> ResQActivations:
    """Rotated activations ``x`` [..., K] → per-token asymmetric codes, one scale/zero per segment."""
    _check_float_tensor(x, "activations")
    _check_split(x, n_high)
    k = x.shape[-1]
    return ResQActivations(quantize_asymmetric(x[..., :k - n_high], low_bits, clip_ratio),
                           quantize_asymmetric(x[..., k - n_high:], high_bits, clip_ratio))


def quantize_resq_weights(w: torch.Tensor, n_high: int, low_bits: int = 4,
                          high_bits: int = 8) -> ResQWeights:
    """Fused weights ``w`` [N, K] → per-output-channel symmetric codes per segment, column sums."""
    _check_float_tensor(w, "weights", dim=2)
    _check_split(w, n_high)
    k = w.shape[-1]
    low = quantize_symmetric(w[:, :k - n_high], low_bits)
    high = quantize_symmetric(w[:, k - n_high:], high_bits)
    return ResQWeights(low, high, low.codes.sum(-1), high.codes.sum(-1))


@dataclass(frozen=True)
class ResQDot:
    """:func:`resq_dot` for T tokens × N output channels: raw integer partial sums ``sum_low``,
    ``sum_high`` (``Σ q_a·q_w``), zero-corrected ``corrected_low``, ``corrected_high``
    (``Σ (q_a − z)·q_w``), all int64 [T, N]; ``output`` float32 [T, N]."""

    sum_low: torch.Tensor
    sum_high: torch.Tensor
    corrected_low: torch.Tensor
    corrected_high: torch.Tensor
    output: torch.Tensor


def resq_dot(acts: ResQActivations, weights: ResQWeights) -> ResQDot:
    """The ``resq`` unit's contract: exact integer partial sums, then FP32 in a fixed order.

    For token t and output channel n, per segment g ∈ {low, high}:

    1. ``S_g = Σ_k qa_g[t,k]·qw_g[n,k]`` (exact integer);
    2. ``C_g = S_g − z_g[t]·Σ_k qw_g[n,k]`` (exact; the column sum is precomputed offline);
    3. ``c_g = fl32(C_g)`` (exact while ``|C_g| ≤ 2^24``, else RNE);
    4. ``s_g = fl32(sa_g[t]·sw_g[n])``; ``p_g = fl32(c_g·s_g)``;
    5. ``y = fl32(p_low + p_high)``.

    Every fl32 is one IEEE-754 binary32 round-to-nearest-even operation (no fused multiply-add;
    subnormals kept; overflow gives ±inf).
    """
    if not isinstance(acts, ResQActivations) or not isinstance(weights, ResQWeights):
        raise TypeError("resq_dot takes a ResQActivations and a ResQWeights")
    if acts.low.codes.dim() != 2:
        raise ValueError(f"activations must be [T, K], got {tuple(acts.low.codes.shape)} low part")
    if acts.low.codes.shape[1] != weights.low.codes.shape[1] or \
            acts.high.codes.shape[1] != weights.high.codes.shape[1]:
        raise ValueError("activation and weight segments differ in length: "
                         f"low {acts.low.codes.shape[1]} vs {weights.low.codes.shape[1]}, "
                         f"high {acts.high.codes.shape[1]} vs {weights.high.codes.shape[1]}")
    parts = []
    for a, w, colsum in ((acts.low, weights.low, weights.column_sum_low),
                         (acts.high, weights.high, weights.column_sum_high)):
        s = a.codes @ w.codes.T                                    # int64, exact
        c = s - a.zero * colsum.unsqueeze(0)                       # int64, exact
        scale = a.scale * w.scale.reshape(1, -1)                   # fl32(sa·sw)
        parts.append((s, c, c.to(torch.float32) * scale))          # fl32(fl32(C)·s)
    (s_lo, c_lo, p_lo), (s_hi, c_hi, p_hi) = parts
    return ResQDot(s_lo, s_hi, c_lo, c_hi, p_lo + p_hi)


def accumulator_bits(k: int, a_bits: int, w_bits: int) -> dict[str, int]:
    """Two's-complement widths for a segment of ``k`` lanes of unsigned ``a_bits`` activation
    codes × signed ``w_bits`` weight codes: ``sum`` (``S``), ``column_sum`` (``Σ q_w``),
    ``corrected`` (``C = S − z·Σ q_w``, with ``|q_a − z| ≤ 2^a − 1``) and ``zero_product``
    (``z·Σ q_w``). Each is the smallest width holding the segment's exact bound."""
    for v, what in ((k, "k"), (a_bits, "a_bits"), (w_bits, "w_bits")):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{what} must be a positive int, got {v!r}")
    amax, wmin, wmax = 2 ** a_bits - 1, -(2 ** (w_bits - 1)), 2 ** (w_bits - 1) - 1

    def width(lo: int, hi: int) -> int:
        n = 1
        while not -(2 ** (n - 1)) <= lo <= hi <= 2 ** (n - 1) - 1:
            n += 1
        return n

    return {"sum": width(k * amax * wmin, k * amax * wmax),
            "column_sum": width(k * wmin, k * wmax),
            "corrected": width(-k * amax * -wmin, k * amax * -wmin),
            "zero_product": width(k * amax * wmin, k * amax * wmax)}
