"""BlockDialect dot products: the numerics contract of the ``dialect`` unit (docs/blockdialect.md).

1. A block product is exact: ``P = Σ h_a·h_w`` over the block's elements in signed half-units
   (5-bit sign-magnitude integers, |h| ≤ 15), an integer with |P| ≤ 64·225 < 2**14.
2. Its value is ``T = P · 2**(E_a + E_w − 2)`` (each half-unit is 2**(E−1)): a 14-bit integer
   times a power of two, so T is exact in FP32 wherever it lies in FP32's normal range (always for
   ``exp_bits`` ≤ 6; a term outside it is a ``ValueError``, never a silent rounding).
3. ``accumulation="fp32"``: ``acc = fl(acc + T)`` in block order from +0, IEEE RNE (the same
   rule as the NVFP4 unit, ``mpgen.golden.dotprod`` rule 5). ``accumulation="exact"``: the
   terms are summed exactly and rounded once to FP32, RNE (rule 5'); exact cancellation gives +0.

There are no NaN codes: every BlockDialect value is finite.
"""

from __future__ import annotations

import torch

from .blockdialect import BlockDialectTensor
from .constants import ACCUMULATIONS
from .dotprod import round_fixed_to_fp32
from .formats import FP32

__all__ = ["block_products", "dialect_matmul"]

_FP32_MIN_EXP = 1 - FP32.bias                 # smallest normal exponent (−126)
_FP32_MAX_EXP = FP32.max_exp_field - 1 - FP32.bias


def _check_pair(a, w):
    for name, t in (("a", a), ("w", w)):
        if not isinstance(t, BlockDialectTensor):
            raise TypeError(f"{name} must be a BlockDialectTensor, got {type(t).__name__}")
        if len(t.shape) != 2:
            raise ValueError(f"{name} must be a quantized matrix [rows, K], got shape {tuple(t.shape)}")
    if a.block_size != w.block_size:
        raise ValueError(f"block sizes differ: a {a.block_size}, w {w.block_size}")
    if a.shape[1] != w.shape[1]:
        raise ValueError(f"K differs: a has {a.shape[1]}, w {w.shape[1]}")


def block_products(a: BlockDialectTensor, w: BlockDialectTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, s): int64 [M, N, nb] exact block products and the exponents with ``T = P·2**s``, for
    activations ``a`` [M, K] and weights ``w`` [N, K] (rows dot rows, as a linear layer)."""
    _check_pair(a, w)
    ha, hw = a.half_units(), w.half_units()                     # [M, nb, B], [N, nb, B]
    p = torch.einsum("mkb,nkb->mnk", ha, hw)                    # int64: exact
    s = a.exponent.unsqueeze(1) + w.exponent.unsqueeze(0) - 2   # [M, N, nb]
    return p, s


def _check_normal(p: torch.Tensor, s: torch.Tensor) -> None:
    nz = p != 0
    if not bool(nz.any()):
        return
    top = torch.floor(torch.log2(p.abs().clamp(min=1).to(torch.float64))).to(torch.int64) + s
    if bool(((top < _FP32_MIN_EXP) & nz).any()) or bool(((top > _FP32_MAX_EXP) & nz).any()):
        raise ValueError("a block product leaves FP32's normal range (shared exponents too far "
                         "apart: use exp_bits <= 6)")


def dialect_matmul(a: BlockDialectTensor, w: BlockDialectTensor, accumulation: str = "fp32") -> torch.Tensor:
    """float32 [M, N]: every dot product of an activation row with a weight row (module rules)."""
    if accumulation not in ACCUMULATIONS:
        raise ValueError(f"accumulation must be one of {ACCUMULATIONS}, not {accumulation!r}")
    p, s = block_products(a, w)
    _check_normal(p, s)
    if accumulation == "fp32":
        t = torch.ldexp(p.to(torch.float64), s.to(torch.float64)).to(torch.float32)  # exact
        acc = torch.zeros(p.shape[:2], dtype=torch.float32)
        for k in range(p.shape[2]):
            acc = acc + t[..., k]                               # one float32 RNE add per block
        return acc
    lsb = int(s.min()) if s.numel() else 0
    rows = []
    for pm, sm in zip(p.tolist(), (s - lsb).tolist()):
        rows.append([round_fixed_to_fp32(sum(q << k for q, k in zip(pq, sq)), lsb)
                     for pq, sq in zip(pm, sm)])
    bits = torch.tensor(rows, dtype=torch.int64).reshape(p.shape[:2]).to(torch.int32)
    return bits.view(torch.float32)
