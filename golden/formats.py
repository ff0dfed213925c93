"""Bit-exact definitions of the narrow floating-point formats used by mpgen.

Each format is one :class:`FloatFormat` object. The golden model, the RTL generators and the
testbenches all read widths, bias, maximum and NaN encodings from these objects; no other module
re-types those constants.

Encoding rules (written down in ``docs/numerics.md``):

* Finite inputs are rounded to the nearest representable value, ties to even (RNE), as a single
  correct rounding of the float32 input.
* Finite values beyond the largest finite magnitude *saturate* to ±max (the OCP/PTX "satfinite"
  conversion). torch 2.13's float8_e4m3fn cast does the same; its float8_e5m2 cast instead
  overflows to ±Inf (see ``docs/formats.md`` for every difference to torch's casts).
* NaN encodes to the format's NaN (sign bit copied) where it has one, and raises ``ValueError``
  where it has none (E2M1).
* ±Inf encodes to ±Inf where the format has infinities (E5M2) and saturates to ±max where it has
  none (E4M3, E2M1), as PTX ``cvt.satfinite`` and torch 2.13's float8_e4m3fn cast do.
* −0 and negative values that round to zero keep their sign bit (−0 code), as IEEE and torch do.
* Unsigned formats (UE4M3, E8M0) reject negative inputs with ``ValueError``; E8M0 has no zero and
  rejects zero too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only
    import torch

# torch is imported inside the methods that build or use torch tensors (tables, encode, decode),
# not here: the geometry (widths, bias, max codes, fields, mant_shift, ...) is pure Python, and the
# RTL generators read only that, so ``import mpgen.rtl`` does not pay for importing torch. This is
# for import cost only; there is no import cycle to hide.

__all__ = ["FloatFormat", "E2M1", "E4M3", "E5M2", "UE4M3", "E8M0", "FP32", "BF16", "FP16", "FORMATS"]


_ENCODE_CHUNK = 1 << 18


@dataclass(frozen=True)
class FloatFormat:
    """A small binary floating-point format.

    ``nan`` is one of ``"none"`` (no NaN encoding), ``"all_ones"`` (only exponent and mantissa all
    ones is NaN, the OCP "fn" convention of E4M3) or ``"ieee"`` (all-ones exponent with a non-zero
    mantissa is NaN, all-ones exponent with zero mantissa is Inf).
    """

    name: str
    exp_bits: int
    man_bits: int
    bias: int
    signed: bool = True
    nan: str = "none"
    has_inf: bool = False
    subnormals: bool = True
    has_zero: bool = True
    #: The torch dtype whose bit pattern is identical, where one exists.
    torch_dtype_name: str | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.nan not in ("none", "all_ones", "ieee"):
            raise ValueError(f"{self.name}: nan must be 'none', 'all_ones' or 'ieee', not {self.nan!r}")
        if self.has_inf and self.nan != "ieee":
            raise ValueError(f"{self.name}: infinities need the IEEE NaN convention")

    # ----------------------------------------------------------------- geometry
    @property
    def width(self) -> int:
        """Code width in bits (sign included for signed formats)."""
        return int(self.signed) + self.exp_bits + self.man_bits

    @property
    def magnitude_width(self) -> int:
        return self.exp_bits + self.man_bits

    @property
    def sign_mask(self) -> int:
        return (1 << self.magnitude_width) if self.signed else 0

    @property
    def max_exp_field(self) -> int:
        return (1 << self.exp_bits) - 1

    @property
    def lsb_exponent(self) -> int:
        """Exponent of the smallest step of the format: every finite value is an integer times
        ``2**lsb_exponent`` (for E4M3, 2**-9; for E2M1, 2**-1)."""
        return 1 - self.bias - self.man_bits

    def fields(self, code: int) -> tuple[int, int, int]:
        """(sign, exponent field, mantissa field) of an integer code."""
        code = int(code)
        if not 0 <= code < (1 << self.width):
            raise ValueError(f"{self.name}: code {code:#x} out of range for {self.width} bits")
        m = code & ((1 << self.man_bits) - 1)
        e = (code >> self.man_bits) & self.max_exp_field
        s = (code >> self.magnitude_width) & 1 if self.signed else 0
        return s, e, m

    def is_nan_code(self, code: int) -> bool:
        _, e, m = self.fields(code)
        if self.nan == "all_ones":
            return e == self.max_exp_field and m == (1 << self.man_bits) - 1
        if self.nan == "ieee":
            return e == self.max_exp_field and m != 0
        return False

    def is_inf_code(self, code: int) -> bool:
        _, e, m = self.fields(code)
        return self.has_inf and e == self.max_exp_field and m == 0

    def mant_shift(self, code: int) -> tuple[int, int, int]:
        """``(sign, mant, shift)`` with magnitude ``mant << shift`` at :attr:`lsb_exponent`.

        ``mant`` carries the hidden bit (``man_bits + 1`` wide, 0 for subnormals) and
        ``shift = max(exponent, 1) - 1``, so normals and subnormals share one rule: the split the
        multipliers use (``mpgen.rtl.arith.unpack`` is its hardware twin). NaN/Inf codes give the
        fields' values without meaning.
        """
        s, e, m = self.fields(code)
        hidden = 1 if (e or not self.subnormals) else 0
        return s, (hidden << self.man_bits) | m, max(e, 1) - 1

    def fixed_point(self, code: int) -> tuple[int, int]:
        """Exact value of a finite code as ``(integer, exponent)`` with value = integer·2**exponent.

        The integer is signed and its magnitude is ``(2**man_bits + m) << (e - 1)`` for normals and
        ``m`` for subnormals, at the common exponent :attr:`lsb_exponent`. (E8M0 returns
        ``(1, e - bias)``.) Raises ``ValueError`` for NaN/Inf codes.
        """
        if self.is_nan_code(code) or self.is_inf_code(code):
            raise ValueError(f"{self.name}: code {code:#x} is not finite")
        if self.man_bits == 0:
            return (1, self.fields(code)[1] - self.bias)
        s, mant, shift = self.mant_shift(code)
        mag = mant << shift
        return (-mag if s else mag, self.lsb_exponent)

    def value(self, code: int) -> float:
        """Python float value of one code (NaN and ±Inf included)."""
        s, e, m = self.fields(code)
        if self.is_nan_code(code):
            return float("nan")
        if self.is_inf_code(code):
            return float("-inf") if s else float("inf")
        if self.man_bits == 0:
            return 2.0 ** (e - self.bias)
        if e == 0 and self.subnormals:
            mag = m * 2.0 ** self.lsb_exponent
        else:
            mag = (1 + m / (1 << self.man_bits)) * 2.0 ** (e - self.bias)
        return -mag if s else mag

    def _require_small(self):
        # Code tables are built by enumeration; FP32 is described here for its layout only.
        if self.width > 16:
            raise NotImplementedError(f"{self.name}: code tables exist only for formats of <= 16 bits")

    @cached_property
    def max_code(self) -> int:
        """Positive code of the largest finite magnitude."""
        self._require_small()
        return max((c for c in range(1 << self.magnitude_width) if self._finite(c)), key=self.value)

    @property
    def max_value(self) -> float:
        return self.value(self.max_code)

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** self.lsb_exponent if self.man_bits else 2.0 ** -self.bias

    @property
    def min_normal(self) -> float:
        return 2.0 ** (1 - self.bias) if self.man_bits else 2.0 ** -self.bias

    @property
    def nan_code(self) -> int | None:
        """Canonical (positive) NaN code, or None."""
        if self.nan == "all_ones":
            return (1 << self.magnitude_width) - 1
        if self.nan == "ieee":
            return (self.max_exp_field << self.man_bits) | (1 << (self.man_bits - 1))
        return None

    @property
    def inf_code(self) -> int | None:
        return self.max_exp_field << self.man_bits if self.has_inf else None

    def _finite(self, code: int) -> bool:
        return not (self.is_nan_code(code) or self.is_inf_code(code))

    @property
    def torch_dtype(self):
        import torch  # lazy: import cost only (module comment)

        return getattr(torch, self.torch_dtype_name) if self.torch_dtype_name else None

    # ------------------------------------------------------------------ tables
    @cached_property
    def decode_table(self) -> torch.Tensor:
        """float32 value of every code, indexed by code."""
        import torch  # lazy: import cost only (module comment)

        self._require_small()
        return torch.tensor([self.value(c) for c in range(1 << self.width)], dtype=torch.float32)

    @cached_property
    def _positive_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Finite non-negative magnitudes ascending (float64) and their codes."""
        import torch  # lazy: import cost only (module comment)

        self._require_small()
        codes = [c for c in range(1 << self.magnitude_width) if self._finite(c)]
        codes.sort(key=self.value)
        vals = torch.tensor([self.value(c) for c in codes], dtype=torch.float64)
        return vals, torch.tensor(codes, dtype=torch.int64)

    # --------------------------------------------------------------- tensor ops
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Integer codes (any integer dtype) to float32 values."""
        import torch  # lazy: import cost only (module comment)

        if not isinstance(codes, torch.Tensor):
            raise TypeError(f"{self.name}.decode expects a torch.Tensor of codes")
        if codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise TypeError(f"{self.name}.decode expects integer codes, got {codes.dtype}")
        c = codes.to(torch.int64)
        if c.numel() and (c.min() < 0 or c.max() >= (1 << self.width)):
            raise ValueError(f"{self.name}.decode: codes must lie in [0, {1 << self.width})")
        return self.decode_table[c]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Float values to codes (uint8; int32 for the 16-bit formats), one RNE rounding with saturation.

        float64 input is rounded directly (no detour through float32), so a float64 quotient of
        two float32 numbers is rounded as the exact quotient would be. See the module docstring
        for the NaN/Inf/−0 rules.
        """
        import torch  # lazy: import cost only (module comment)

        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}.encode expects a torch.Tensor")
        if not x.dtype.is_floating_point:
            raise TypeError(f"{self.name}.encode expects a floating-point tensor, got {x.dtype}")
        if x.dtype != torch.float64:
            x = x.to(torch.float32)
        if x.numel() > _ENCODE_CHUNK:  # same result; chunks keep the temporaries in cache (~3x)
            flat = x.reshape(-1)
            return torch.cat([self.encode(c) for c in flat.split(_ENCODE_CHUNK)]).reshape(x.shape)
        nan = torch.isnan(x)
        inf = torch.isinf(x)
        neg = torch.signbit(x)
        if not self.signed and bool((neg & ~nan & (x != 0)).any()):
            raise ValueError(f"{self.name} is unsigned: negative input")
        if nan.any() and self.nan == "none":
            raise ValueError(f"{self.name} has no NaN encoding: input contains NaN")
        if not self.has_zero and bool(((x == 0) & ~nan).any()):
            raise ValueError(f"{self.name} has no zero: input contains 0")

        vals, codes = self._positive_table
        a = x.abs().to(torch.float64)
        a = torch.where(nan | inf, torch.zeros_like(a), a)
        n = vals.numel()
        lo = (torch.searchsorted(vals, a, right=True) - 1).clamp(0, n - 1)
        hi = (lo + 1).clamp(max=n - 1)
        mid = (vals[lo] + vals[hi]) / 2  # exact: formats are far narrower than float64
        hi_even = (codes[hi] & 1) == 0
        pick_hi = (a > mid) | ((a == mid) & hi_even & (hi != lo))
        # Below the smallest magnitude (only E8M0 has no zero) rounds up to it.
        pick_hi = pick_hi & (a >= vals[0])
        mag = torch.where(pick_hi, codes[hi], codes[lo])
        if self.inf_code is not None:
            mag = torch.where(inf, torch.full_like(mag, self.inf_code), mag)
        else:
            mag = torch.where(inf, torch.full_like(mag, self.max_code), mag)
        if self.nan_code is not None:
            mag = torch.where(nan, torch.full_like(mag, self.nan_code), mag)
        if self.signed:
            mag = mag | torch.where(neg, self.sign_mask, 0)
        return mag.to(torch.uint8 if self.width <= 8 else torch.int32)  # 16-bit formats: int32

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Round float values onto the format's grid (encode then decode), float32 out."""
        return self.decode(self.encode(x))

    def __repr__(self):
        return f"FloatFormat({self.name})"


#: OCP MX FP4: 1 sign, 2 exponent, 1 mantissa bit; no NaN/Inf; max 6.
E2M1 = FloatFormat("E2M1", exp_bits=2, man_bits=1, bias=1, torch_dtype_name="float4_e2m1fn_x2")
#: OCP FP8 E4M3 ("fn"): no Inf, NaN = S.1111.111, max 448.
E4M3 = FloatFormat("E4M3", exp_bits=4, man_bits=3, bias=7, nan="all_ones",
                   torch_dtype_name="float8_e4m3fn")
#: OCP FP8 E5M2: IEEE-like, with Inf and NaN, max 57344.
E5M2 = FloatFormat("E5M2", exp_bits=5, man_bits=2, bias=15, nan="ieee", has_inf=True,
                   torch_dtype_name="float8_e5m2")
#: NVFP4 block scale: E4M3 without the sign bit (7-bit code; byte form = positive E4M3 code).
UE4M3 = FloatFormat("UE4M3", exp_bits=4, man_bits=3, bias=7, signed=False, nan="all_ones",
                    torch_dtype_name="float8_e4m3fn")
#: OCP MX shared scale: an 8-bit biased power of two; 0xFF = NaN; no zero.
E8M0 = FloatFormat("E8M0", exp_bits=8, man_bits=0, bias=127, signed=False, nan="all_ones",
                   subnormals=False, has_zero=False, torch_dtype_name="float8_e8m0fnu")

#: IEEE 754 binary32: the accumulator and result format of the datapaths.
FP32 = FloatFormat("FP32", exp_bits=8, man_bits=23, bias=127, nan="ieee", has_inf=True,
                   torch_dtype_name="float32")

#: bfloat16 and IEEE binary16: activation input formats (e.g. of the FGMP activation classifier).
#: Their code tables have 65,536 entries. Note ``encode`` saturates finite overflow to ±max (the
#: rule of this module), where torch's IEEE casts round it to ±Inf.
BF16 = FloatFormat("BF16", exp_bits=8, man_bits=7, bias=127, nan="ieee", has_inf=True,
                   torch_dtype_name="bfloat16")
FP16 = FloatFormat("FP16", exp_bits=5, man_bits=10, bias=15, nan="ieee", has_inf=True,
                   torch_dtype_name="float16")

FORMATS = {f.name: f for f in (E2M1, E4M3, E5M2, UE4M3, E8M0)}
