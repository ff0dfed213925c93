"""FGMP: fine-grained mixed-precision tensors, each 16-element block either NVFP4 or FP8 (E4M3).

Format (``docs/formats.md`` §FGMP has the reasons):

* Blocks of ``BLOCK = 16`` along the last (reduction) dimension; a bool flag ``is_fp8`` per block.
* One float32 per-tensor scale ``s_t = fl32(amax / (E2M1.max_value · E4M3.max_value))``
  (= amax / 2688); ``s_t = 1.0`` if that is 0 (all-zero tensor).
* NVFP4 block: ``s_b = UE4M3.encode(amax_b / (6·s_t))`` (≤ 448 by construction) and
  ``code = E2M1.encode(x / (s_b·s_t))``; ``s_b == 0`` gives ±0 codes. This is the hardware-exact
  recipe of :mod:`.nvfp4` (same code).
* FP8 block: implicit block scale ``FP8_IMPLICIT_SCALE = E2M1.max_value`` (= 6), so
  ``code = E4M3.encode(x / (6·s_t))`` and the tensor's amax maps onto E4M3's max (448): FP8
  blocks use the full E4M3 range under the same ``s_t`` that makes NVFP4 blocks span
  6 × 448. The stored ``block_scale`` of an FP8 block is ``FP8_IMPLICIT_SCALE_CODE``, so
  ``value = element(code) × UE4M3(block_scale) × s_t`` holds for every block.

All quotients are single correct roundings (RNE, saturating) of the exact real quotient, computed
in float64 from float32 operands (exact argument in :func:`.nvfp4.exact_block_quantize`).
Non-finite inputs are rejected with ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .constants import BLOCK, FP8_IMPLICIT_SCALE, FP8_IMPLICIT_SCALE_CODE
from .formats import E2M1, E4M3, UE4M3
from .nvfp4 import check_float_input, exact_block_quantize, tensor_scale_from_amax

__all__ = ["BLOCK", "FP8_IMPLICIT_SCALE", "FP8_IMPLICIT_SCALE_CODE", "FGMPTensor", "fgmp_quantize",
           "fgmp_tensor_scale", "fp8_block_quantize"]

# FP8_IMPLICIT_SCALE (E2M1's max, 6) and its UE4M3 code FP8_IMPLICIT_SCALE_CODE (stored in
# ``block_scale`` for FP8 blocks) live in the torch-free .constants; the tensor codec agrees:
assert int(UE4M3.encode(torch.tensor(FP8_IMPLICIT_SCALE))) == FP8_IMPLICIT_SCALE_CODE
assert float(UE4M3.decode(torch.tensor(FP8_IMPLICIT_SCALE_CODE))) == FP8_IMPLICIT_SCALE


def fp8_block_quantize(xb: torch.Tensor, s_t: float) -> tuple[torch.Tensor, torch.Tensor]:
    """FGMP's FP8 block of float blocks ``xb [..., nb, bs]`` (float32/float16/bfloat16, any block
    size) with per-tensor scale ``s_t``: the one definition of the recipe.

    Returns ``(codes uint8 [..., nb, bs], block_scale uint8 [..., nb])``:
    ``code = E4M3.encode(x / (FP8_IMPLICIT_SCALE·s_t))``, the correctly rounded (RNE, saturating)
    exact quotient, and ``block_scale = FP8_IMPLICIT_SCALE_CODE`` everywhere. ``6·s_t`` is exact in
    float64 (a float32 ``s_t``, or a power of two such as the classifier's ``2**p``), so the float64
    quotient rounds like the exact one (the argument of :func:`.nvfp4.exact_block_quantize`).
    """
    codes = E4M3.encode(xb.to(torch.float64) / (FP8_IMPLICIT_SCALE * float(s_t)))
    return codes, torch.full(xb.shape[:-1], FP8_IMPLICIT_SCALE_CODE, dtype=torch.uint8)


def fgmp_tensor_scale(x: torch.Tensor) -> torch.Tensor:
    """float32 0-dim ``s_t = fl32(amax(|x|) / (E2M1.max_value · E4M3.max_value))``, 1.0 if 0."""
    amax = x.abs().amax().to(torch.float32) if x.numel() else torch.zeros((), dtype=torch.float32)
    return tensor_scale_from_amax(amax)


@dataclass
class FGMPTensor:
    """A quantized FGMP tensor.

    ``codes``: uint8 ``[..., nblocks, BLOCK]`` (E2M1 codes 0..15 in NVFP4 blocks, E4M3 codes in FP8
    blocks). ``is_fp8``: bool ``[..., nblocks]``. ``block_scale``: uint8 ``[..., nblocks]`` UE4M3
    codes (``FP8_IMPLICIT_SCALE_CODE`` in FP8 blocks). ``tensor_scale``: float32 0-dim.
    ``shape``: the original tensor shape ``[..., nblocks · BLOCK]``.
    """

    codes: torch.Tensor
    is_fp8: torch.Tensor
    block_scale: torch.Tensor
    tensor_scale: torch.Tensor
    shape: torch.Size

    @classmethod
    def from_nvfp4(cls, t) -> "FGMPTensor":
        """An all-NVFP4 FGMP tensor holding exactly the codes and scales of ``t``
        (:class:`mpgen.golden.nvfp4.NVFP4Tensor`, e.g. from ``NVFP4Tensor.from_torchao``); its
        per-tensor scale is ``t.tensor_scale`` (1.0 for single-level scaling)."""
        from .nvfp4 import NVFP4Tensor

        if not isinstance(t, NVFP4Tensor):
            raise TypeError(f"expected an NVFP4Tensor, got {type(t).__name__}")
        codes = t.codes.reshape(*t.codes.shape[:-1], -1, BLOCK)
        ts = torch.tensor(1.0) if t.tensor_scale is None else t.tensor_scale
        return cls(codes=codes, is_fp8=torch.zeros(codes.shape[:-1], dtype=torch.bool),
                   block_scale=t.block_scale, tensor_scale=ts.to(torch.float32).reshape(()),
                   shape=t.codes.shape)

    def element_values(self) -> torch.Tensor:
        """float32 ``[..., nblocks, BLOCK]`` decoded elements without scales (E2M1 values in NVFP4
        blocks, E4M3 values in FP8 blocks)."""
        flag = self.is_fp8.unsqueeze(-1)
        fp4 = E2M1.decode(torch.where(flag, torch.zeros_like(self.codes), self.codes))
        fp8 = E4M3.decode(self.codes)
        return torch.where(flag, fp8, fp4)

    def dequantize(self) -> torch.Tensor:
        """float32 tensor of the original shape: ``element × s_b × s_t``, the exact product
        (≤ 4+4+24 significant bits, formed in float64) rounded once to float32."""
        scale = UE4M3.decode(self.block_scale).to(torch.float64) * float(self.tensor_scale)
        vals = self.element_values().to(torch.float64) * scale.unsqueeze(-1)
        return vals.reshape(self.shape).to(torch.float32)


def fgmp_quantize(x: torch.Tensor, is_fp8_mask: torch.Tensor) -> FGMPTensor:
    """Quantize ``x`` (float32/float16/bfloat16, last dim K a multiple of 16, finite) to FGMP.

    ``is_fp8_mask``: bool tensor of shape ``x.shape[:-1] + (K // 16,)``; True marks FP8 blocks.
    Raises TypeError (wrong types/dtypes) or ValueError (shapes, non-finite values).
    """
    check_float_input(x, BLOCK)
    if not isinstance(is_fp8_mask, torch.Tensor):
        raise TypeError(f"is_fp8_mask must be a torch.Tensor, got {type(is_fp8_mask).__name__}")
    if is_fp8_mask.dtype != torch.bool:
        raise TypeError(f"is_fp8_mask must have dtype torch.bool, got {is_fp8_mask.dtype}")
    nb_shape = (*x.shape[:-1], x.shape[-1] // BLOCK)
    if tuple(is_fp8_mask.shape) != nb_shape:
        raise ValueError(f"is_fp8_mask has shape {tuple(is_fp8_mask.shape)}, expected {nb_shape} "
                         f"(x.shape[:-1] + (K // {BLOCK},))")

    s_t = fgmp_tensor_scale(x)
    xb = x.to(torch.float32).reshape(*nb_shape, BLOCK)
    mask = is_fp8_mask.to(x.device)
    codes = torch.empty(xb.shape, dtype=torch.uint8)
    block_scale = torch.full(nb_shape, FP8_IMPLICIT_SCALE_CODE, dtype=torch.uint8)

    # Quantize each block only in its own format (gather the flagged blocks, then scatter back).
    fp4_blocks = xb[~mask]
    if fp4_blocks.numel():
        c4, s4 = exact_block_quantize(fp4_blocks, float(s_t))
        codes[~mask] = c4
        block_scale[~mask] = s4
    fp8_blocks = xb[mask]
    if fp8_blocks.numel():
        codes[mask] = fp8_block_quantize(fp8_blocks, float(s_t))[0]
    return FGMPTensor(codes, mask.clone(), block_scale, s_t, torch.Size(x.shape))
