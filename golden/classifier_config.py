"""Parameters of the FGMP activation classifier: :class:`ClassifierConfig` and its input formats.

The numerics are specified in :mod:`.classifier` (which re-exports every name here); this part is
torch-free on purpose, because the RTL generator (``mpgen.rtl.classifier``) reads its widths from a
:class:`ClassifierConfig` and ``import mpgen.rtl`` must not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .constants import BLOCK
from .formats import BF16, E2M1, FP16, FP32, UE4M3, FloatFormat

if TYPE_CHECKING:  # annotation only (FisherTable holds torch tensors)
    from .classifier import FisherTable

__all__ = ["ClassifierConfig", "INPUT_FORMATS", "UNSATURATED_MAX", "check_int_param"]

#: Input formats by parameter name.
INPUT_FORMATS = {"bf16": BF16, "fp16": FP16, "fp32": FP32}
#: Largest |x'| that neither alternative saturates: E2M1.max · UE4M3.max = 6 · 448.
UNSATURATED_MAX = E2M1.max_value * UE4M3.max_value


def check_int_param(name, value, lo, hi):
    """Raise TypeError unless ``value`` is an int (not a bool), ValueError unless lo <= value <= hi."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value}")


@dataclass(frozen=True)
class ClassifierConfig:
    """Parameters of the classifier's numerics (shared by the golden model and the RTL).

    ``input_format``: BF16 (default), FP16 or FP32 (a FloatFormat or "bf16"/"fp16"/"fp32").
    ``block_size``: 16 (the NVFP4 block). ``fisher_format``: UE4M3 (7-bit codes).
    ``diff_frac_bits`` f (0..8, default 3) and ``diff_bits`` (2..16, default 9): the score's
    difference ``|D|`` is kept in units of ``s_b / (S · 2**(1+f))`` and saturates at
    ``2**diff_bits − 1``. ``p_bits`` (2..10, default 8): width of the signed scale-exponent register.
    """

    input_format: FloatFormat = BF16
    block_size: int = BLOCK
    fisher_format: FloatFormat = UE4M3
    diff_frac_bits: int = 3
    diff_bits: int = 9
    p_bits: int = 8

    def __post_init__(self):
        fmt = self.input_format
        if isinstance(fmt, str):
            if fmt.lower() not in INPUT_FORMATS:
                raise ValueError(f"input_format must be one of {sorted(INPUT_FORMATS)}, not {fmt!r}")
            object.__setattr__(self, "input_format", INPUT_FORMATS[fmt.lower()])
        elif not any(fmt is f for f in INPUT_FORMATS.values()):
            raise ValueError(f"input_format must be BF16, FP16 or FP32, not {fmt!r}")
        if self.block_size != BLOCK or isinstance(self.block_size, bool):
            raise ValueError(f"block_size must be {BLOCK} (the NVFP4 block), not {self.block_size!r}")
        if self.fisher_format is not UE4M3:
            raise ValueError(f"fisher_format must be UE4M3 (the only compact format implemented), "
                             f"not {self.fisher_format!r}")
        check_int_param("diff_frac_bits", self.diff_frac_bits, 0, 8)
        check_int_param("diff_bits", self.diff_bits, 2, 16)
        check_int_param("p_bits", self.p_bits, 2, 10)

    # ---------------------------------------------------------------- derived widths
    @property
    def input_name(self) -> str:
        return next(k for k, v in INPUT_FORMATS.items() if v is self.input_format)

    @property
    def p_range(self) -> tuple[int, int]:
        """Inclusive range of the scale exponent register."""
        return -(1 << (self.p_bits - 1)), (1 << (self.p_bits - 1)) - 1

    @property
    def diff_max(self) -> int:
        return (1 << self.diff_bits) - 1

    @property
    def max_scale_shift(self) -> int:
        """Largest ``shift`` of a finite UE4M3 block scale (14 for 448)."""
        return UE4M3.mant_shift(UE4M3.max_code)[2]

    @property
    def fisher_term_max(self) -> int:
        """Largest ``Fm · 2**Fsh`` of a finite Fisher code."""
        _, m, s = self.fisher_format.mant_shift(self.fisher_format.max_code)
        return m << s

    @property
    def acc_max(self) -> int:
        return self.block_size * self.diff_max ** 2 * self.fisher_term_max

    @property
    def acc_bits(self) -> int:
        return self.acc_max.bit_length()

    @property
    def threshold_max(self) -> int:
        """Largest useful threshold register value: no block's shifted score exceeds it."""
        return self.acc_max << (2 * self.max_scale_shift)

    @property
    def threshold_bits(self) -> int:
        return self.threshold_max.bit_length()

    def score_exponent(self, table: FisherTable, p: int) -> int:
        """``c`` with ``score_value = (acc << shift) · 2**c`` in x's units (squared, Fisher-weighted)."""
        d_unit = UE4M3.lsb_exponent - 1 - self.diff_frac_bits + p  # D's unit without 2**shift/2
        return 2 * d_unit + self.fisher_format.lsb_exponent + table.unit_exp
