"""OCP Microscaling (MX v1.0) quantization: MXFP4 (E2M1) and MXFP8 (E4M3 or E5M2) elements in
blocks of 32 along the last dimension, sharing one E8M0 power-of-two scale per block.

Shared-scale rule (OCP MX v1.0 §6.3, torchao's ``ScaleCalculationMode.FLOOR``):

    shared_exp = floor(log2(amax_block)) − emax_elem,   clamped to E8M0's exponent range [−127, 127]

where ``emax_elem`` is the exponent of the element format's largest normal (2 for E2M1, 8 for E4M3,
15 for E5M2; derived from ``max_value``). An all-zero block has no log2 and gets the smallest
scale, 2**-127 (code 0). Elements are ``elem.encode(x / 2**shared_exp)`` (RNE, saturating to ±max,
which FLOOR needs: amax / 2**shared_exp can reach just under 2**(emax_elem+1) > max).

``recipe="ocp"`` (default) divides by the scale the code stands for. ``recipe="torchao"`` reproduces
torchao 0.18 ``to_mx(..., ScaleCalculationMode.FLOOR)`` bit for bit: identical except in blocks
whose scale code is 0 (2**-127, a float32 subnormal), where torchao divides the elements by
2**-126 instead (its ``clamp(scale_fp32, min=F32_MIN_NORMAL)``), i.e. its codes are half of what
the stored scale implies. Only blocks with amax < 2**(emax_elem − 126) are affected.

Non-finite inputs are rejected with ``ValueError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .formats import E2M1, E4M3, E5M2, E8M0, FloatFormat
from .nvfp4 import check_float_input

__all__ = ["MX_BLOCK", "MX_ELEMENT_FORMATS", "MXTensor", "emax_elem", "shared_exponent",
           "quantize_mx", "quantize_mxfp4", "quantize_mxfp8"]

#: Elements per MX block.
MX_BLOCK = 32
MX_ELEMENT_FORMATS = (E2M1, E4M3, E5M2)

# E8M0 exponent range, from the format: code 0 is 2**-127, the largest finite code 2**127.
_E8M0_EMIN = E8M0.fixed_point(0)[1]
_E8M0_EMAX = E8M0.fixed_point(E8M0.max_code)[1]


def emax_elem(fmt: FloatFormat) -> int:
    """Exponent of the element format's largest normal value: floor(log2(max_value))."""
    return math.frexp(fmt.max_value)[1] - 1


def shared_exponent(amax: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """Unbiased shared exponent (int64) per block from float32 block maxima ``amax`` (≥ 0).

    ``floor(log2(amax)) − emax_elem(fmt)`` clamped to [−127, 127]; amax == 0 gives −127. The floor
    of log2 is exact (``frexp``), also for subnormal amax.
    """
    _, e = torch.frexp(amax.to(torch.float32))
    floor_log2 = e.to(torch.int64) - 1
    # frexp(0) has exponent 0; push zero blocks to the bottom of the range instead.
    floor_log2 = torch.where(amax == 0, torch.full_like(floor_log2, _E8M0_EMIN - 1), floor_log2)
    return (floor_log2 - emax_elem(fmt)).clamp(_E8M0_EMIN, _E8M0_EMAX)


@dataclass
class MXTensor:
    """An MX-quantized tensor.

    ``codes``: uint8 ``[..., K]`` element codes (E2M1 codes 0..15 one per byte, or FP8 codes).
    ``scale``: uint8 ``[..., K/32]`` E8M0 codes. ``elem_format``: E2M1, E4M3 or E5M2.
    """

    codes: torch.Tensor
    scale: torch.Tensor
    elem_format: FloatFormat
    recipe: str = "ocp"

    @property
    def shape(self) -> torch.Size:
        return self.codes.shape

    def dequantize(self) -> torch.Tensor:
        """float32 ``element · 2**(scale − 127)`` (exact: elements have ≤ 4 significant bits and
        every product stays inside float32's range)."""
        vals = self.elem_format.decode(self.codes).to(torch.float64)
        scale = E8M0.decode(self.scale).to(torch.float64)
        vals = vals.reshape(*self.codes.shape[:-1], -1, MX_BLOCK) * scale.unsqueeze(-1)
        return vals.reshape(self.codes.shape).to(torch.float32)


def quantize_mx(x: torch.Tensor, elem_format: FloatFormat, *, recipe: str = "ocp") -> MXTensor:
    """MX-quantize ``x`` (float32/float16/bfloat16, last dim a multiple of 32, finite values).

    ``elem_format`` is E2M1 (MXFP4), E4M3 or E5M2 (MXFP8). ``recipe`` is "ocp" or "torchao" (see
    the module docstring; they differ only in blocks with scale code 0).
    """
    if not any(elem_format is f for f in MX_ELEMENT_FORMATS):
        raise ValueError(f"elem_format must be one of E2M1, E4M3, E5M2, got {elem_format!r}")
    if recipe not in ("ocp", "torchao"):
        raise ValueError(f"recipe must be 'ocp' or 'torchao', got {recipe!r}")
    check_float_input(x, MX_BLOCK)
    xb = x.to(torch.float32).reshape(*x.shape[:-1], x.shape[-1] // MX_BLOCK, MX_BLOCK)
    e = shared_exponent(xb.abs().amax(dim=-1), elem_format)
    pow2 = torch.ldexp(torch.ones_like(e, dtype=torch.float64), e)  # exact powers of two
    scale = E8M0.encode(pow2)
    if recipe == "ocp":
        # x / 2**e is exact in float64 (a power-of-two shift well inside its range).
        scaled = xb.to(torch.float64) / pow2.unsqueeze(-1)
    else:
        # torchao: float32 scale clamped to the smallest float32 normal, float32 division. (Any
        # float32 underflow here lands below every element format's smallest subnormal, so it
        # cannot change a code.)
        scale_f32 = torch.clamp(pow2.to(torch.float32), min=torch.finfo(torch.float32).tiny)
        scaled = xb / scale_f32.unsqueeze(-1)
    codes = elem_format.encode(scaled)  # RNE, saturating to ±max
    return MXTensor(codes.reshape(x.shape), scale, elem_format, recipe)


def quantize_mxfp4(x: torch.Tensor, *, recipe: str = "ocp") -> MXTensor:
    """MXFP4: E2M1 elements, block 32, E8M0 scale."""
    return quantize_mx(x, E2M1, recipe=recipe)


def quantize_mxfp8(x: torch.Tensor, elem_format: FloatFormat = E4M3, *, recipe: str = "ocp") -> MXTensor:
    """MXFP8: E4M3 (default) or E5M2 elements, block 32, E8M0 scale."""
    if not (elem_format is E4M3 or elem_format is E5M2):
        raise ValueError(f"MXFP8 elements are E4M3 or E5M2, got {elem_format!r}")
    return quantize_mx(x, elem_format, recipe=recipe)
