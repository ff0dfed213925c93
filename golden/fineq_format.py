"""FineQ word format and level sets: the torch-free part of :mod:`.fineq`.

:mod:`.fineq` (the specification: codec, quantizer, integer GEMM; its docstring and
``docs/fineq.md`` give the rules) re-exports every name here. They live apart because the RTL
generator (``mpgen.rtl.fineq``) reads them and ``import mpgen.rtl`` must not import torch.

:data:`WORD_LAYOUT` is the one definition of the cluster word's bit layout: an
``amaranth.lib.data`` layout (a library, not our RTL), which the RTL decoder views its word
through and from which the golden codec (:func:`.fineq.encode_fields`/:func:`.fineq.decode_fields`)
takes every field's offset and width (:func:`field_slice`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth import unsigned
from amaranth.lib import data

__all__ = ["CLUSTER", "WORD_BITS", "INDEX_BITS", "NORMAL_BITS", "OUTLIER_BITS", "MAX_ABS_LEVEL",
           "WORD_LAYOUT", "field_slice", "INDEX_FIELD", "NORMAL_FIELDS", "OUTLIER_FIELDS",
           "FineQCode", "DEFAULT_CODE"]

#: Weights per cluster (consecutive along the reduction dimension K).
CLUSTER = 3
#: Bits per packed cluster word.
WORD_BITS = 8
INDEX_BITS = 2
NORMAL_BITS = 2
OUTLIER_BITS = 3
#: Largest |level|: levels must fit int8 (decoded weights are int8).
MAX_ABS_LEVEL = 127


# ----------------------------------------------------------------------------- word layout

#: The cluster word (LSB first): a 2-bit ``index`` (0 = normal cluster, k = outlier at position
#: k-1), then 6 data bits, either ``normal`` (the 2-bit codes of positions 0, 1, 2) or ``outlier``
#: (the 3-bit outlier ``code``, the 2-bit code of the ``kept`` neighbour, and ``which`` of the two
#: non-outlier positions is kept: 0 = the lower, 1 = the higher; the other is dropped).
WORD_LAYOUT = data.StructLayout({
    "index": unsigned(INDEX_BITS),
    "data": data.UnionLayout({
        "normal": data.ArrayLayout(unsigned(NORMAL_BITS), CLUSTER),
        "outlier": data.StructLayout({
            "code": unsigned(OUTLIER_BITS),
            "kept": unsigned(NORMAL_BITS),
            "which": unsigned(1),
        }),
    }),
})
assert WORD_LAYOUT.size == WORD_BITS


def field_slice(*path) -> tuple[int, int]:
    """``(offset, width)`` in the word of the field of :data:`WORD_LAYOUT` at ``path``, e.g.
    ``field_slice("data", "outlier", "kept")`` or ``field_slice("data", "normal", 2)``."""
    if not path:
        raise ValueError("field_slice needs a path into WORD_LAYOUT")
    layout, offset = WORD_LAYOUT, 0
    for key in path:
        f = layout[key]
        offset += f.offset
        layout = f.shape
    return offset, f.width


#: ``(offset, width)`` of the index field.
INDEX_FIELD = field_slice("index")
#: ``(offset, width)`` of the fields ``f0, f1, f2`` of a normal word: the codes of w0, w1, w2.
NORMAL_FIELDS = tuple(field_slice("data", "normal", p) for p in range(CLUSTER))
#: ``(offset, width)`` of the fields ``f0, f1, f2`` of an outlier word: outlier code, kept code,
#: ``which``.
OUTLIER_FIELDS = tuple(field_slice("data", "outlier", k) for k in ("code", "kept", "which"))


# ----------------------------------------------------------------------------- code points


@dataclass(frozen=True)
class FineQCode:
    """The level sets: ``normal_levels`` (4 ints, 2-bit codes) and ``outlier_levels`` (8 ints,
    3-bit codes). Levels are strictly increasing, so code ``c`` means the ``c``-th smallest level,
    and lie in int8 range. ``name`` is a label for tables."""

    normal_levels: tuple[int, ...]
    outlier_levels: tuple[int, ...]
    name: str = ""

    def __post_init__(self):
        for what, lv, n in (("normal_levels", self.normal_levels, 1 << NORMAL_BITS),
                            ("outlier_levels", self.outlier_levels, 1 << OUTLIER_BITS)):
            if not isinstance(lv, (tuple, list)):
                raise TypeError(f"{what} must be a tuple of {n} ints, got {type(lv).__name__}")
            if len(lv) != n:
                raise ValueError(f"{what} must have exactly {n} levels, got {len(lv)}")
            if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in lv):
                raise TypeError(f"{what} must be ints, got {lv!r}")
            if any(abs(int(v)) > MAX_ABS_LEVEL for v in lv):
                raise ValueError(f"{what} {tuple(lv)}: levels must lie in [-{MAX_ABS_LEVEL}, "
                                 f"{MAX_ABS_LEVEL}] (decoded weights are int8)")
            if any(int(a) >= int(b) for a, b in zip(lv, lv[1:])):
                raise ValueError(f"{what} {tuple(lv)} must be strictly increasing "
                                 "(code c means the c-th smallest level)")
            object.__setattr__(self, what, tuple(int(v) for v in lv))
        if not isinstance(self.name, str):
            raise TypeError("name must be a str")
        if not self.name:
            object.__setattr__(self, "name", f"N{list(self.normal_levels)} O{list(self.outlier_levels)}")

    @property
    def max_magnitude(self) -> int:
        """Largest |level| over both sets (the temporal PE's cycles grow with it)."""
        return max(abs(v) for v in self.normal_levels + self.outlier_levels)

    @property
    def weight_width(self) -> int:
        """Signed two's-complement bits that hold every decodable weight (levels and the 0 of a
        dropped position)."""
        lo = min(min(self.normal_levels + self.outlier_levels), 0)
        hi = max(max(self.normal_levels + self.outlier_levels), 0)
        b = 1
        while not (-(1 << (b - 1)) <= lo and hi <= (1 << (b - 1)) - 1):
            b += 1
        return b

    def levels(self, outlier: bool) -> tuple[int, ...]:
        return self.outlier_levels if outlier else self.normal_levels


#: The default code points (chosen by the study in ``docs/fineq.md``).
DEFAULT_CODE = FineQCode(normal_levels=(-3, -1, 1, 3), outlier_levels=(-7, -5, -3, -1, 1, 3, 5, 7),
                         name="I")
