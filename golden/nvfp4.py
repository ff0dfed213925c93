"""NVFP4 quantization: 16-element blocks of E2M1 codes, a UE4M3 block scale, and an optional float32
per-tensor scale (the "two-level" scheme).

Two recipes produce the codes (``docs/formats.md`` has the full write-up):

``"torchao"``
    Bit-identical to ``torchao.prototype.mx_formats.nvfp4_tensor.nvfp4_quantize`` (torchao 0.18) on
    finite inputs. It mirrors torchao's float32 operation order: the block scale is the float32
    quotient ``amax_b / 6`` (divided again, in float32, by the per-tensor scale), clamped to
    ``[UE4M3.min_normal, UE4M3.max_value]`` and then rounded to UE4M3; elements are
    ``x * fl32(1 / scale)`` (or ``x * fl32(fl32(1 / s_t) / scale)``), clamped to ±6 and rounded to
    E2M1. So there are two or three float32 roundings before the final narrow rounding, and an
    all-zero block gets the block scale ``UE4M3.min_normal`` (2**-6), never 0.

``"exact"`` (hardware-exact)
    ``s_b = UE4M3.encode(amax_b / (6 · s_t))`` and ``q = E2M1.encode(x / (s_b · s_t))``, each a single
    correct rounding (RNE, saturating) of the exact real quotient. Block scales may be subnormal
    or zero; a zero block scale gives zero elements (sign bit kept, like any value rounding to 0).

``s_t`` is 1 without a per-tensor scale. With ``per_tensor_scale=True`` it is
``fl32(amax / (E4M3.max_value · E2M1.max_value))`` (torchao's ``per_tensor_amax_to_scale``), with
one choice of ours: when that quotient is 0 (all-zero tensor, or an amax so tiny the float32
division underflows) ``s_t = 1.0`` instead of torchao's 0 (which makes its codes NaN garbage).

Non-finite inputs (NaN, ±Inf) are rejected with ``ValueError``: neither E2M1 nor a block scale can
carry them, and torchao's results for them are not meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .constants import BLOCK
from .formats import E2M1, E4M3, UE4M3

__all__ = [
    "BLOCK",
    "RECIPES",
    "NVFP4Tensor",
    "quantize_nvfp4",
    "tensor_scale_from_amax",
    "recipe_difference",
    "exact_block_quantize",
    "check_float_input",
]

# BLOCK (elements per NVFP4 block, along the last dimension) lives in the torch-free .constants.
RECIPES = ("torchao", "exact")

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_float_input(x, block: int, what: str = "input") -> None:
    """Validate a tensor to be block-quantized; raises TypeError / ValueError with a clear message.

    Accepts float32, float16 and bfloat16 tensors of at least one dimension whose last dimension
    is a positive multiple of ``block`` and whose values are all finite.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"{what} must be float32, float16 or bfloat16, got {x.dtype}"
            + (" (convert float64 explicitly; it would be rounded twice)" if x.dtype == torch.float64 else "")
        )
    if x.dim() == 0:
        raise ValueError(f"{what} must have at least one dimension (got a 0-dim tensor)")
    k = x.shape[-1]
    if k == 0 or k % block:
        raise ValueError(f"{what}: last dimension ({k}) must be a positive multiple of {block}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{what} contains NaN or Inf; non-finite inputs are rejected")


def tensor_scale_from_amax(amax: torch.Tensor | float) -> torch.Tensor:
    """Per-tensor scale ``fl32(amax / (E4M3.max_value · E2M1.max_value))`` as a float32 0-dim tensor.

    Same float32 division as torchao's ``per_tensor_amax_to_scale`` (the divisor 2688 is exact in
    float32). If the quotient is 0 (amax == 0 or float32 underflow) the scale is 1.0, so that the
    quotients taken with it stay finite.
    """
    a = torch.as_tensor(amax).to(torch.float32).reshape(())
    s = a / (E4M3.max_value * E2M1.max_value)
    if not bool(torch.isfinite(s)) or bool(s < 0):
        raise ValueError(f"amax must be finite and non-negative, got {float(a)}")
    return torch.where(s == 0, torch.ones_like(s), s)


def _validate_tensor_scale(s) -> torch.Tensor:
    if not isinstance(s, torch.Tensor):
        raise TypeError("per_tensor_scale must be a bool or a torch.Tensor")
    if not s.dtype.is_floating_point:
        raise TypeError(f"per_tensor_scale tensor must be floating point, got {s.dtype}")
    if s.numel() != 1:
        raise ValueError(f"per_tensor_scale must hold one value, got shape {tuple(s.shape)}")
    s = s.detach().to(torch.float32).reshape(())
    if not bool(torch.isfinite(s)) or not bool(s > 0):
        raise ValueError(f"per_tensor_scale must be finite and > 0, got {float(s)}")
    return s


def _blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """float32 view ``[..., K/block, block]`` (float16/bf16 → float32 is exact)."""
    return x.to(torch.float32).reshape(*x.shape[:-1], x.shape[-1] // block, block)


def exact_block_quantize(xb: torch.Tensor, s_t: float,
                         block_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hardware-exact NVFP4 of float32 blocks ``xb [..., nb, 16]`` with per-tensor scale ``s_t``.

    Returns ``(codes uint8 [..., nb, 16], block_scale uint8 [..., nb])``:
    ``block_scale = UE4M3.encode(amax_b / (6·s_t))`` (unless given: UE4M3 codes ``[..., nb]``, e.g.
    a clipped scale) and ``code = E2M1.encode(x / (s_b·s_t))``, each the correctly rounded (RNE,
    saturating) exact quotient; ``s_b == 0`` gives ±0 codes.

    Why float64 is enough: ``6·s_t`` and ``s_b·s_t`` are exact in float64 (≤ 28 significant bits),
    so each quotient is a/b with a ≤ 24 and b ≤ 28 significant bits. A narrow-format rounding
    boundary m (a representable value or a midpoint between two, ≤ 5 significant bits) is either
    equal to a/b, or |a − m·b| is a non-zero multiple of 2**min(exp(a), exp(m·b)); then
    |a/b − m| ≥ 2**-34·m (the integers involved have < 34 bits), i.e. the exact quotient cannot lie
    within 2**-53 relative of a boundary unless it equals it. float64 division errs by < 2**-53
    relative and rounding is monotone, so the float64 quotient falls on the same side of every
    boundary as the exact one (and is exact when the exact one is a boundary): rounding it gives
    the same narrow code. Float32 operands keep every quotient inside float64's normal range.
    """
    s_t = float(s_t)
    x64 = xb.to(torch.float64)
    if block_scale is None:
        block_scale = UE4M3.encode(x64.abs().amax(dim=-1) / (E2M1.max_value * s_t))
    denom = UE4M3.decode(block_scale).to(torch.float64) * s_t  # exact: 4 × 24 significant bits
    zero = (denom == 0).unsqueeze(-1)
    q = x64 / torch.where(zero, torch.ones_like(denom).unsqueeze(-1), denom.unsqueeze(-1))
    q = torch.where(zero, x64 * 0.0, q)  # s_b == 0: ±0 (keeps the sign bit like any underflow)
    return E2M1.encode(q), block_scale


def _torchao_block_quantize(xb: torch.Tensor, s_t: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """torchao 0.18 ``nvfp4_quantize`` arithmetic, in its float32 operation order."""
    amax_b = torch.amax(torch.abs(xb), dim=-1)
    block_scale = amax_b / E2M1.max_value  # float32 division
    if s_t is None:
        scaled = block_scale
    else:
        scaled = block_scale / s_t  # second float32 rounding
    # torchao clamps to [finfo(e4m3fn).tiny, finfo(e4m3fn).max] before its (RNE) cast.
    scaled = torch.clamp(scaled, min=UE4M3.min_normal, max=UE4M3.max_value)
    scale_codes = UE4M3.encode(scaled)
    scale_f32 = UE4M3.decode(scale_codes)
    if s_t is None:
        reciprocal = 1.0 / scale_f32
    else:
        reciprocal = (1.0 / s_t) / scale_f32
    data = xb * reciprocal.unsqueeze(-1)
    # Only when 1/s_t overflows float32 (s_t < 2**-128) can 0·inf appear; torchao's bit-trick cast
    # turns that NaN into a meaningless code, we return the signed zero.
    data = torch.where(torch.isnan(data), xb * 0.0, data)
    data = torch.clamp(data, -E2M1.max_value, E2M1.max_value)
    return E2M1.encode(data), scale_codes


@dataclass
class NVFP4Tensor:
    """An NVFP4-quantized tensor.

    ``codes``: uint8 ``[..., K]``, one E2M1 code (0..15) per byte (see ``packing.pack_fp4``).
    ``block_scale``: uint8 ``[..., K/16]`` UE4M3 codes (byte = positive E4M3 code).
    ``tensor_scale``: float32 0-dim tensor, or None for single-level scaling (s_t = 1).
    ``recipe``: "torchao" or "exact".
    """

    codes: torch.Tensor
    block_scale: torch.Tensor
    tensor_scale: torch.Tensor | None
    recipe: str

    @property
    def shape(self) -> torch.Size:
        return self.codes.shape

    def element_values(self) -> torch.Tensor:
        """Decoded E2M1 element values (float32) without any scale."""
        return E2M1.decode(self.codes)

    @classmethod
    def from_torchao(cls, t) -> "NVFP4Tensor":
        """Our view of a torchao ``NVFP4Tensor`` (``torchao.prototype.mx_formats``): unpacked E2M1
        codes of its ``qdata``, the UE4M3 codes of its ``scale`` and its ``per_tensor_scale``.

        Nothing is re-quantized, so a torchao-quantized tensor can go straight into
        :func:`mpgen.golden.fgmp.FGMPTensor.from_nvfp4` and the simulated hardware. Swizzled scales
        and block sizes other than 16 are refused with ``ValueError``.
        """
        for attr in ("qdata", "scale"):
            if not hasattr(t, attr):
                raise TypeError(f"expected a torchao NVFP4Tensor (with .{attr}), got {type(t).__name__}")
        if getattr(t, "is_swizzled_scales", False):
            raise ValueError("swizzled scales are not supported: quantize with is_swizzled_scales=False")
        if getattr(t, "block_size", BLOCK) != BLOCK:
            raise ValueError(f"NVFP4 block size must be {BLOCK}, got {t.block_size}")
        return cls.from_torchao_parts(t.qdata, t.scale, getattr(t, "per_tensor_scale", None))

    @classmethod
    def from_torchao_parts(cls, qdata: torch.Tensor, scale: torch.Tensor,
                           per_tensor_scale: torch.Tensor | None = None) -> "NVFP4Tensor":
        """From torchao's raw outputs: packed ``qdata`` (uint8 or float4_e2m1fn_x2, two codes a
        byte, element 2j in the low nibble) and float8_e4m3fn (or uint8) block ``scale``
        (what ``nvfp4_quantize`` returns), plus the optional float32 per-tensor scale."""
        from .packing import codes_from_torch, unpack_fp4

        packed = qdata.view(torch.uint8) if qdata.dtype != torch.uint8 else qdata
        codes = unpack_fp4(packed.contiguous())
        sc = codes_from_torch(scale) if scale.dtype != torch.uint8 else scale
        sc = sc.reshape(*codes.shape[:-1], -1)
        if sc.shape[-1] * BLOCK != codes.shape[-1]:
            raise ValueError(f"{sc.shape[-1]} scales per row do not cover {codes.shape[-1]} elements "
                             f"in blocks of {BLOCK}")
        if bool((sc >> UE4M3.width).any()):
            raise ValueError("negative block scales: UE4M3 scales must have a zero sign bit")
        ts = None if per_tensor_scale is None else _validate_tensor_scale(per_tensor_scale)
        return cls(codes=codes, block_scale=sc, tensor_scale=ts, recipe="torchao")

    def dequantize(self) -> torch.Tensor:
        """float32 tensor ``code · s_b · s_t``: the exact product (≤ 30 significant bits, computed in
        float64) rounded once to float32."""
        s_t = 1.0 if self.tensor_scale is None else float(self.tensor_scale)
        scale = UE4M3.decode(self.block_scale).to(torch.float64) * s_t
        vals = E2M1.decode(self.codes).to(torch.float64)
        vals = vals.reshape(*self.codes.shape[:-1], -1, BLOCK) * scale.unsqueeze(-1)
        return vals.reshape(self.codes.shape).to(torch.float32)


def _resolve_tensor_scale(x: torch.Tensor, per_tensor_scale) -> torch.Tensor | None:
    if isinstance(per_tensor_scale, bool):
        if not per_tensor_scale:
            return None
        amax = x.abs().amax().to(torch.float32) if x.numel() else torch.zeros((), dtype=torch.float32)
        return tensor_scale_from_amax(amax)
    return _validate_tensor_scale(per_tensor_scale)


def quantize_nvfp4(x: torch.Tensor, *, per_tensor_scale: bool | torch.Tensor = False,
                   recipe: str = "torchao") -> NVFP4Tensor:
    """Quantize ``x`` (float32/float16/bfloat16, last dim a multiple of 16, finite) to NVFP4.

    ``per_tensor_scale``: False (single-level, s_t = 1), True (s_t from the tensor's amax via
    :func:`tensor_scale_from_amax`) or a positive finite one-element tensor used as s_t (converted
    to float32). ``recipe``: "torchao" (bit-identical to torchao's ``nvfp4_quantize``) or "exact"
    (single correct roundings of exact quotients). Raises TypeError/ValueError on bad input.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    check_float_input(x, BLOCK)
    s_t = _resolve_tensor_scale(x, per_tensor_scale)
    xb = _blocks(x, BLOCK)
    if recipe == "torchao":
        codes, scales = _torchao_block_quantize(xb, s_t)
    else:
        codes, scales = exact_block_quantize(xb, 1.0 if s_t is None else float(s_t))
    return NVFP4Tensor(codes.reshape(x.shape), scales, s_t, recipe)


def recipe_difference(x: torch.Tensor, *, per_tensor_scale: bool | torch.Tensor = False) -> dict:
    """How often the "torchao" and "exact" recipes disagree on ``x``.

    Returns a dict with the fractions ``code_rate`` (element codes that differ), ``scale_rate``
    (block scales that differ), ``value_rate`` (dequantized elements that differ) and the counts
    ``elements`` and ``blocks``.
    """
    a = quantize_nvfp4(x, per_tensor_scale=per_tensor_scale, recipe="torchao")
    b = quantize_nvfp4(x, per_tensor_scale=per_tensor_scale, recipe="exact")
    n, nb = a.codes.numel(), a.block_scale.numel()
    return {
        "elements": n,
        "blocks": nb,
        "code_rate": (a.codes != b.codes).sum().item() / max(n, 1),
        "scale_rate": (a.block_scale != b.block_scale).sum().item() / max(nb, 1),
        "value_rate": (a.dequantize() != b.dequantize()).sum().item() / max(n, 1),
    }
