"""Reference model of the FGMP mixed-precision block dot-product unit (``BlockDotProduct``).

This is the numerics contract the RTL must match bit for bit (``docs/numerics.md``):

1. Each operand block holds ``block_size`` element codes and one flag: NVFP4 (E2M1 codes in the
   low 4 bits of each byte, the high bits are ignored, with a UE4M3 block scale) or FP8 (E4M3
   codes, with the implicit block scale :data:`FP8_IMPLICIT_SCALE_CODE` = 6; the scale input is
   ignored).
2. The block dot product ``P = Σ w_i·a_i`` is exact: every element is an integer multiple of
   2**-9 (E4M3's smallest step; E2M1 values are multiples of 2**-1), so P is an integer multiple of
   2**-18 and is computed with integers.
3. The scale product ``S = s_w·s_a`` is exact: each UE4M3 scale is ``mant·2**shift·2**-9`` with a
   4-bit mant, so S = smant·2**sshift·2**-18 with smant < 2**8.
4. The block term ``T = P·S`` is rounded once to FP32, round-to-nearest-even. (|P·smant| < 2**53,
   so the integer is exact in float64 and one float64→float32 conversion is that single rounding.)
5. ``accumulation="fp32"``: terms are accumulated in FP32 in stream order, starting from +0, with
   IEEE 754 RNE addition (``acc = fl(acc + T)``); the sum is emitted when a block pair with
   ``last`` set has been added. Exact cancellation gives +0. FP32 overflow gives ±Inf (needs
   > 2**80 blocks: unreachable).
5'. ``accumulation="exact"`` replaces rules 4 and 5: the block terms ``P·S`` are summed exactly
   (integers in units of 2**TERM_LSB = 2**-36; no per-block rounding) and the dot product is
   rounded once to FP32, RNE; exact cancellation gives +0. The sum is order-independent. A dot
   product may have at most :data:`EXACT_MAX_BLOCKS` block pairs (the hardware's headroom).
6. NaN: an E4M3 NaN code in an FP8 block, or a UE4M3 NaN scale on an NVFP4 block, makes that block
   term NaN; a NaN term makes the whole dot product's result NaN (canonical 0x7FC00000) however
   the other terms look.

7. MX blocks (``BlockPairs.scales == "e8m0"``, OCP MX v1.0: MXFP4 = E2M1 elements, MXFP8 = E4M3
   elements, one E8M0 scale code per block): the scale product is the power of two
   ``2**(e_w + e_a - 254)`` (an exponent add); the block term ``P · 2**(e_w + e_a - 254)`` is
   rounded once to FP32 with IEEE 754 RNE over FP32's whole range: overflow gives ±Inf, terms
   below 2**-126 round to FP32 subnormals or ±0 (ours: ±0 becomes +0, rule 5). Accumulation is
   "fp32" only (rule 5, IEEE addition with subnormals; Inf + −Inf is NaN). E8M0 code 255 (NaN)
   on either block, or an E4M3 NaN element, makes the term NaN (rule 6). A NaN result is
   always the canonical 0x7FC00000.

FP32 subnormals cannot occur with UE4M3/FP8 blocks: every non-zero term is a multiple of 2**-36 and at least that
large, so every partial sum is too (``_check_no_subnormal`` asserts it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .constants import ACCUMULATIONS, BLOCK_SIZES, EXACT_MAX_BLOCKS, FP8_IMPLICIT_SCALE_CODE
from .fgmp import FGMPTensor
from .formats import E2M1, E4M3, E8M0, FP32, UE4M3

__all__ = [
    "BLOCK_SIZES", "FP8_IMPLICIT_SCALE_CODE", "ACCUMULATIONS", "EXACT_MAX_BLOCKS", "TERM_LSB",
    "SCALE_KINDS", "BlockPairs", "block_terms", "fixed_block_terms", "dot_products", "round_fixed_to_fp32",
    "fp32_bits", "element_fixed_table", "scale_mant_shift_table", "pairs_from_fgmp", "fgmp_matmul",
]

#: Exponent of the common fixed-point step of elements (E4M3's lsb; E2M1's is coarser).
ELEMENT_LSB = E4M3.lsb_exponent
#: Exponent of the step of block scales.
SCALE_LSB = UE4M3.lsb_exponent
#: Exponent of the step of exact block terms P·S (``accumulation="exact"``).
TERM_LSB = 2 * (ELEMENT_LSB + SCALE_LSB)


def element_fixed_table(fmt) -> torch.Tensor:
    """Signed integer value of every code of ``fmt`` in units of 2**ELEMENT_LSB (NaN → 0)."""
    out = []
    for c in range(1 << fmt.width):
        if fmt.is_nan_code(c):
            out.append(0)
            continue
        i, e = fmt.fixed_point(c)
        assert e >= ELEMENT_LSB
        out.append(i << (e - ELEMENT_LSB))
    return torch.tensor(out, dtype=torch.int64)


def scale_mant_shift_table() -> tuple[torch.Tensor, torch.Tensor]:
    """(mant, shift) of every UE4M3 code: value = mant · 2**shift · 2**SCALE_LSB."""
    _, mants, shifts = zip(*(UE4M3.mant_shift(c) for c in range(1 << UE4M3.width)))
    return torch.tensor(mants, dtype=torch.int64), torch.tensor(shifts, dtype=torch.int64)


_E4M3_INT = element_fixed_table(E4M3)
_E2M1_INT = element_fixed_table(E2M1)
_E4M3_NAN = torch.tensor([E4M3.is_nan_code(c) for c in range(1 << E4M3.width)])
_SCALE_MANT, _SCALE_SHIFT = scale_mant_shift_table()
_SCALE_NAN = torch.tensor([UE4M3.is_nan_code(c) for c in range(1 << UE4M3.width)])
#: Block-scale formats of a stream: UE4M3 (NVFP4 blocks, FP8's implicit scale) or E8M0 (OCP MX).
SCALE_KINDS = ("ue4m3", "e8m0")
#: E8M0's bias: code c stands for 2**(c - E8M0_BIAS); code 255 is NaN.
E8M0_BIAS = E8M0.bias


@dataclass
class BlockPairs:
    """A stream of (weight block, activation block) pairs, in arrival order.

    ``w_codes``/``a_codes``: uint8 [n, block_size] element codes; ``w_fp8``/``a_fp8``: bool [n]
    (True = FP8 block); ``w_scale``/``a_scale``: uint8 [n] UE4M3 codes (ignored for FP8 blocks);
    ``last``: bool [n], True on the final block pair of each dot product. ``scales``: "ue4m3"
    (default) or "e8m0": OCP MX blocks, ``w_scale``/``a_scale`` 8-bit E8M0 codes that apply to
    FP8 (MXFP8, E4M3) blocks too; the element rules (E2M1 in the low nibble) are unchanged.
    """

    w_codes: torch.Tensor
    a_codes: torch.Tensor
    w_fp8: torch.Tensor
    a_fp8: torch.Tensor
    w_scale: torch.Tensor
    a_scale: torch.Tensor
    last: torch.Tensor
    scales: str = "ue4m3"

    def __post_init__(self):
        if self.scales not in SCALE_KINDS:
            raise ValueError(f"BlockPairs.scales must be one of {SCALE_KINDS}, not {self.scales!r}")
        for name in ("w_codes", "a_codes"):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dtype != torch.uint8 or t.dim() != 2:
                raise TypeError(f"BlockPairs.{name} must be a 2-D torch.uint8 tensor [n, block_size]")
        n, bs = self.w_codes.shape
        if self.a_codes.shape != (n, bs):
            raise ValueError(f"a_codes shape {tuple(self.a_codes.shape)} != w_codes shape {(n, bs)}")
        if bs not in BLOCK_SIZES:
            raise ValueError(f"block size {bs} not supported (one of {BLOCK_SIZES})")
        for name, dtype in (("w_fp8", torch.bool), ("a_fp8", torch.bool), ("last", torch.bool),
                            ("w_scale", torch.uint8), ("a_scale", torch.uint8)):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or t.dtype != dtype or t.shape != (n,):
                raise TypeError(f"BlockPairs.{name} must be a {dtype} tensor of shape ({n},)")
        for name in ("w_scale", "a_scale"):
            if self.scales == "ue4m3" and bool((getattr(self, name) >= (1 << UE4M3.width)).any()):
                raise ValueError(f"BlockPairs.{name}: UE4M3 codes are {UE4M3.width}-bit")
        if n and not bool(self.last[-1]):
            raise ValueError("the stream must end with a block pair whose last flag is set")

    @property
    def n(self) -> int:
        return self.w_codes.shape[0]

    @property
    def block_size(self) -> int:
        return self.w_codes.shape[1]


def _operand(codes, fp8, scale):
    """Element integers (units 2**ELEMENT_LSB), scale mant/shift and NaN flag of one operand."""
    c = codes.to(torch.int64)
    fp8c = fp8[:, None]
    ints = torch.where(fp8c, _E4M3_INT[c], _E2M1_INT[c & ((1 << E2M1.width) - 1)])
    elem_nan = (fp8c & _E4M3_NAN[c]).any(dim=1)
    s = torch.where(fp8, torch.full_like(scale, FP8_IMPLICIT_SCALE_CODE), scale).to(torch.int64)
    nan = elem_nan | (~fp8 & _SCALE_NAN[s])
    return ints, _SCALE_MANT[s], _SCALE_SHIFT[s], nan


def _mx_terms(pairs: BlockPairs) -> tuple[torch.Tensor, torch.Tensor]:
    """Rule 7: FP32 terms of MX block pairs (float32 [n], 0 where NaN) and their NaN flags."""
    wi, _, _, wn = _operand(pairs.w_codes, pairs.w_fp8, torch.zeros_like(pairs.w_scale))
    ai, _, _, an = _operand(pairs.a_codes, pairs.a_fp8, torch.zeros_like(pairs.a_scale))
    p = (wi * ai).sum(dim=1)                       # exact, |p| < 2**42, units 2**(2·ELEMENT_LSB)
    exp = pairs.w_scale.to(torch.int64) + pairs.a_scale.to(torch.int64) - 2 * E8M0_BIAS
    # p·2**exp is exact in float64 (|p| < 2**53, exponents within -290..+296): the conversion to
    # float32 is the one RNE rounding, with IEEE overflow to ±Inf and subnormal results
    t = torch.ldexp(p.to(torch.float64), (exp + 2 * ELEMENT_LSB).to(torch.float64)).to(torch.float32)
    nan = wn | an | (pairs.w_scale == E8M0.nan_code) | (pairs.a_scale == E8M0.nan_code)
    return torch.where(nan, torch.zeros_like(t), t + 0.0), nan


def block_terms(pairs: BlockPairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact block products and their FP32 terms.

    Returns ``(P, T, nan)``: P int64 [n] exact block dot products in units of 2**(2·ELEMENT_LSB),
    T float32 [n] the rounded terms P·S (rule 4), nan bool [n] (rule 6; T is 0 there).
    """
    wi, wm, ws, wn = _operand(pairs.w_codes, pairs.w_fp8, pairs.w_scale)
    ai, am, as_, an = _operand(pairs.a_codes, pairs.a_fp8, pairs.a_scale)
    p = (wi * ai).sum(dim=1)                      # |p| < 2**42: exact in int64
    mp = p * (wm * am)                            # |mp| < 2**50
    assert bool((mp.abs() < 2**53).all())
    t = mp.to(torch.float64).to(torch.float32)    # exact int → one RNE rounding to FP32
    t = torch.ldexp(t, (ws + as_ + 2 * (ELEMENT_LSB + SCALE_LSB)).to(torch.float32))
    nan = wn | an
    return p, torch.where(nan, torch.zeros_like(t), t), nan


def fixed_block_terms(pairs: BlockPairs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact block terms as ``(q, shift, nan)``: term = q · 2**shift · 2**TERM_LSB.

    ``q = P · smant`` (int64, |q| < 2**51) and ``shift = shift_w + shift_a`` (0..28) of the scales'
    mant/shift forms; NaN terms (rule 6) have q = 0.
    """
    wi, wm, ws, wn = _operand(pairs.w_codes, pairs.w_fp8, pairs.w_scale)
    ai, am, as_, an = _operand(pairs.a_codes, pairs.a_fp8, pairs.a_scale)
    nan = wn | an
    q = (wi * ai).sum(dim=1) * (wm * am)
    return torch.where(nan, torch.zeros_like(q), q), ws + as_, nan


def round_fixed_to_fp32(value: int, lsb_exponent: int) -> int:
    """FP32 bit pattern of ``value · 2**lsb_exponent`` (a Python int), rounded once, RNE.

    Zero gives +0. Only the normal range is supported (the exact accumulator's range is, see
    ``docs/numerics.md``); anything else is a ``ValueError``.
    """
    if value == 0:
        return 0
    sign, mag = (1, -value) if value < 0 else (0, value)
    bits = FP32.man_bits + 1
    top = mag.bit_length()
    if top <= bits:
        mant, exp = mag << (bits - top), top - 1
    else:
        cut = top - bits
        mant, rest = mag >> cut, mag & ((1 << cut) - 1)
        half = 1 << (cut - 1)
        if rest > half or (rest == half and mant & 1):
            mant += 1
        exp = top - 1
        if mant >> bits:  # rounding carried into a new binade
            mant, exp = mant >> 1, exp + 1
    biased = exp + lsb_exponent + FP32.bias
    if not 0 < biased < FP32.max_exp_field:
        raise ValueError(f"{value}·2**{lsb_exponent} is outside FP32's normal range")
    return (sign << 31) | (biased << FP32.man_bits) | (mant & ((1 << FP32.man_bits) - 1))


def _exact_dot_products(pairs: BlockPairs) -> tuple[list[int], torch.Tensor]:
    """Rule 5': exact sums of the block terms of each dot product, rounded once (bit patterns)."""
    q, shift, nan = fixed_block_terms(pairs)
    out, total, blocks = [], 0, 0
    for qk, sk, last in zip(q.tolist(), shift.tolist(), pairs.last.tolist()):
        total += qk << sk
        blocks += 1
        if last:
            if blocks > EXACT_MAX_BLOCKS:
                raise ValueError(f"a dot product of {blocks} block pairs exceeds the exact "
                                 f"accumulator's {EXACT_MAX_BLOCKS}")
            out.append(round_fixed_to_fp32(total, TERM_LSB))
            total = blocks = 0
    return out, nan


def _check_no_subnormal(x: torch.Tensor):
    sub = (x != 0) & (x.abs() < torch.finfo(torch.float32).tiny)
    assert not bool(sub.any()), "FP32 subnormal reached: contradicts the documented range"


def dot_products(pairs: BlockPairs, accumulation: str = "fp32") -> torch.Tensor:
    """FP32 results of every dot product in the stream, as int64 bit patterns.

    ``accumulation``: "fp32" (rules 4–6: per-block rounding, FP32 accumulation in stream order)
    or "exact" (rules 5' and 6: exact sum, one rounding). MX streams (rule 7) take "fp32" only.
    """
    if accumulation not in ACCUMULATIONS:
        raise ValueError(f"accumulation must be one of {ACCUMULATIONS}, not {accumulation!r}")
    if not isinstance(pairs, BlockPairs):
        raise TypeError(f"pairs must be a BlockPairs, not {type(pairs).__name__}")
    mx = pairs.scales == "e8m0"
    if mx and accumulation != "fp32":
        raise ValueError(f"MX (E8M0-scaled) block pairs take accumulation='fp32' only, not "
                         f"{accumulation!r}: their terms span 2**-290..2**296, beyond an exact "
                         f"fixed-point accumulator")
    last = pairs.last
    ends = torch.nonzero(last).flatten()
    if accumulation == "exact":
        exact, nan = _exact_dot_products(pairs)
        bits = torch.tensor(exact, dtype=torch.int64)
    else:
        t, nan = _mx_terms(pairs) if mx else block_terms(pairs)[1:]
        starts = torch.cat([torch.zeros(1, dtype=torch.int64), ends[:-1] + 1])
        lengths = ends - starts + 1
        acc = torch.zeros(len(ends), dtype=torch.float32)
        for k in range(int(lengths.max()) if len(ends) else 0):
            live = lengths > k
            # One float32 addition per step: IEEE RNE, in stream order within each dot product.
            acc[live] = acc[live] + t[starts[live] + k]
            if not mx:
                _check_no_subnormal(acc)
        invalid = torch.isnan(acc)  # MX only: Inf + -Inf (IEEE invalid operation)
        bits = fp32_bits(acc)
    seg = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.int64), last[:-1].to(torch.int64)]), 0)
    seg_nan = torch.zeros(len(ends), dtype=torch.int64).index_add_(0, seg, nan.to(torch.int64)) > 0
    if accumulation == "fp32":
        seg_nan = seg_nan | invalid
    return torch.where(seg_nan, torch.full_like(bits, FP32.nan_code), bits)


def fp32_bits(x: torch.Tensor) -> torch.Tensor:
    """float32 tensor → int64 tensor of its IEEE bit patterns (unsigned)."""
    return x.to(torch.float32).contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF


def pairs_from_fgmp(a: FGMPTensor, w: FGMPTensor) -> BlockPairs:
    """The block-pair stream that computes every dot product of ``a`` [M, K] with ``w`` [N, K].

    Dot products come out in row-major (m, n) order; each is the K/16 block pairs of row m of
    ``a`` and row n of ``w``, the last one flagged ``last``.
    """
    for name, t in (("a", a), ("w", w)):
        if not isinstance(t, FGMPTensor):
            raise TypeError(f"{name} must be an FGMPTensor, got {type(t).__name__}")
        if t.codes.dim() != 3:
            raise ValueError(f"{name} must be a quantized 2-D tensor [rows, K], got shape {tuple(t.shape)}")
    if a.codes.shape[1:] != w.codes.shape[1:]:
        raise ValueError(f"reduction dims differ: a has shape {tuple(a.shape)}, w has {tuple(w.shape)}")
    m, nb, bs = a.codes.shape
    n = w.codes.shape[0]

    def rep(t_a, t_w):  # pair every row of a with every row of w, blocks in order
        return (t_a[:, None].expand(m, n, *t_a.shape[1:]).reshape(m * n * nb, *t_a.shape[2:]),
                t_w[None, :].expand(m, n, *t_w.shape[1:]).reshape(m * n * nb, *t_w.shape[2:]))

    a_codes, w_codes = rep(a.codes, w.codes)
    a_fp8, w_fp8 = rep(a.is_fp8, w.is_fp8)
    a_scale, w_scale = rep(a.block_scale, w.block_scale)
    last = torch.zeros(m * n, nb, dtype=torch.bool)
    last[:, -1] = True
    return BlockPairs(w_codes.contiguous(), a_codes.contiguous(), w_fp8.contiguous(),
                      a_fp8.contiguous(), w_scale.contiguous(), a_scale.contiguous(),
                      last.flatten())


def fgmp_matmul(a: FGMPTensor, w: FGMPTensor, accumulation: str = "fp32") -> torch.Tensor:
    """``a @ w.T`` exactly as the hardware computes it: float32 [M, N].

    Each unit result is scaled by the per-tensor scales outside the unit, in FP32:
    ``fl(fl(result · s_w) · s_a)``. ``accumulation`` as in :func:`dot_products`.
    """
    bits = dot_products(pairs_from_fgmp(a, w), accumulation)
    out = bits.to(torch.int32).view(torch.float32).reshape(a.codes.shape[0], w.codes.shape[0])
    return out * w.tensor_scale.to(torch.float32) * a.tensor_scale.to(torch.float32)
