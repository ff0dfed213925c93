"""Byte layouts of narrow-format codes and their torch dtype views.

FP4 packing: two E2M1 codes per byte along the last dimension; element ``2j`` goes in the low
nibble (bits 3..0) and element ``2j+1`` in the high nibble (bits 7..4). This is the layout of
``torch.float4_e2m1fn_x2`` (and of torchao's ``pack_uint4``), so a packed uint8 tensor can be
``.view``-ed as that dtype without copying.
"""

from __future__ import annotations

import torch

from .formats import E2M1, E4M3, FloatFormat

__all__ = ["pack_fp4", "unpack_fp4", "as_torch_float4", "as_torch_float8", "codes_from_torch"]

_NIBBLE = E2M1.width  # 4 bits per E2M1 code
_NIBBLE_MASK = (1 << _NIBBLE) - 1


def _check_uint8(t, what: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.uint8:
        raise TypeError(f"{what} must have dtype uint8, got {t.dtype}")
    if t.dim() == 0:
        raise ValueError(f"{what} must have at least one dimension")


def pack_fp4(codes: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., 2n]`` E2M1 codes (each 0..15) → uint8 ``[..., n]``, element 2j in the low
    nibble and 2j+1 in the high nibble."""
    _check_uint8(codes, "codes")
    if codes.shape[-1] % 2:
        raise ValueError(f"codes: last dimension ({codes.shape[-1]}) must be even to pack two per byte")
    if codes.numel() and int(codes.max()) > _NIBBLE_MASK:
        raise ValueError(f"codes must be 4-bit E2M1 codes (0..{_NIBBLE_MASK}), got {int(codes.max())}")
    return (codes[..., 0::2] | (codes[..., 1::2] << _NIBBLE)).contiguous()


def unpack_fp4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_fp4`: uint8 ``[..., n]`` → uint8 ``[..., 2n]`` codes 0..15."""
    _check_uint8(packed, "packed")
    lo = packed & _NIBBLE_MASK
    hi = packed >> _NIBBLE
    return torch.stack([lo, hi], dim=-1).reshape(*packed.shape[:-1], 2 * packed.shape[-1])


def as_torch_float4(packed: torch.Tensor) -> torch.Tensor:
    """View packed uint8 FP4 bytes (from :func:`pack_fp4`) as ``torch.float4_e2m1fn_x2``
    (same shape: each element of that dtype is a byte holding two codes)."""
    _check_uint8(packed, "packed")
    return packed.contiguous().view(torch.float4_e2m1fn_x2)


def as_torch_float8(codes: torch.Tensor, fmt: FloatFormat = E4M3) -> torch.Tensor:
    """View uint8 codes of an 8-bit format (default E4M3 → ``torch.float8_e4m3fn``; also E5M2,
    UE4M3, E8M0) as the torch dtype with the identical bit layout."""
    _check_uint8(codes, "codes")
    if fmt.torch_dtype is None or fmt.width > 8 or fmt is E2M1:
        raise ValueError(f"{fmt!r} has no 8-bit torch dtype")
    if fmt.width < 8 and codes.numel() and int(codes.max()) >= (1 << fmt.width):
        raise ValueError(f"codes exceed the {fmt.width}-bit range of {fmt.name}")
    return codes.contiguous().view(fmt.torch_dtype)


def codes_from_torch(t: torch.Tensor) -> torch.Tensor:
    """uint8 codes, one per byte, from a torch narrow-float tensor.

    ``float4_e2m1fn_x2 [..., n]`` → unpacked E2M1 codes ``[..., 2n]``; a float8 tensor
    (``float8_e4m3fn``, ``float8_e5m2``, ``float8_e8m0fnu``) → its bytes, same shape.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype == torch.float4_e2m1fn_x2:
        return unpack_fp4(t.contiguous().view(torch.uint8))
    if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2, torch.float8_e8m0fnu):
        return t.contiguous().view(torch.uint8)
    raise TypeError(f"expected a float4_e2m1fn_x2 or float8 tensor, got {t.dtype}")
