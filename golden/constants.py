"""Block constants of the FGMP formats, shared by the golden model, the RTL and the testbenches.

Torch-free on purpose (like :mod:`.formats`' geometry): the RTL generators import these, and
``import mpgen.rtl`` must not import torch. The modules where the names are documented re-export
them: :data:`BLOCK` from :mod:`.nvfp4` and :mod:`.fgmp`, :data:`FP8_IMPLICIT_SCALE` and
:data:`FP8_IMPLICIT_SCALE_CODE` from :mod:`.fgmp` (``docs/formats.md`` §FGMP has the reasons),
:data:`BLOCK_SIZES` from :mod:`.dotprod`.
"""

from __future__ import annotations

from .formats import E2M1, UE4M3

__all__ = ["ACCUMULATIONS", "BLOCK", "BLOCK_SIZES", "EXACT_MAX_BLOCKS", "FP8_IMPLICIT_SCALE",
           "FP8_IMPLICIT_SCALE_CODE"]

#: Elements per NVFP4 (and FGMP) block, along the last dimension.
BLOCK = 16
#: Block sizes of the block dot-product unit (``mpgen.golden.dotprod.BlockPairs``).
BLOCK_SIZES = (8, 16, 32)
#: How the block dot-product unit accumulates block terms (``docs/numerics.md`` rules 5 and 5').
ACCUMULATIONS = ("fp32", "exact")
#: Most block pairs one dot product may have with ``accumulation="exact"``: the accumulator's
#: headroom above the largest block term (16 bits; K up to 2**20 elements in blocks of 16).
EXACT_MAX_BLOCKS = 1 << 16

#: Implicit block scale of FP8 blocks: E2M1's max, so FP8 blocks reach E4M3.max_value · s_t · 6.
FP8_IMPLICIT_SCALE = float(E2M1.max_value)
#: Its UE4M3 code (stored in ``block_scale`` for FP8 blocks): the code whose value it is
#: (:mod:`.fgmp` checks that ``UE4M3.encode`` gives the same code).
FP8_IMPLICIT_SCALE_CODE = next(c for c in range(1 << UE4M3.width) if UE4M3.value(c) == FP8_IMPLICIT_SCALE)
