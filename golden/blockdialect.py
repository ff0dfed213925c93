"""BlockDialect (Jang & Tambe, ICML 2025): blocks of FP4 "dialects" from the DialectFP4 formatbook.

The facts and their confidence are in ``docs/blockdialect.md``; every rule below that the
sources do not fix is **mpgen's choice** and marked so there.

* **Formatbook** (:class:`Formatbook`, data, not code): 16 dialects × 8 magnitudes, each a
  multiple of 0.5 in [0, 7.5], stored as *half-units* (the magnitude × 2, an integer 0…15, the
  operand a 5-bit sign-magnitude integer MAC sees). :data:`DIALECT_FP4` is the third-party
  transcription of the paper's Figure 4, **unconfirmed**.
* **Element**: 4 bits, sign (bit 3) and a 3-bit index into the block's dialect.
* **Block**: ``block_size`` (16, 32, 64) elements, a 4-bit dialect id and a shared power-of-two
  exponent ``E``, stored in ``exp_bits`` bits with bias ``2**(exp_bits−1) − 1`` and clamped to
  that range: ``E = floor(log2(amax)) − 2`` (the block maximum lands in [4, 8), where the eight
  dialect maxima 4.0…7.5 lie), the smallest ``E`` for an all-zero block.
* **Rounding** (ours): an element ``h = |x|·2**(1−E)`` (half-units) goes to the nearest level of
  its dialect; a tie goes to the even index (as RNE does for E2M1 codes); above the dialect's
  largest level it saturates to it.
* **Dialect choice**: ``selection="exact"`` (offline, weights): the dialect with the smallest sum
  of squared errors, ties to the lowest id. The sums are exact integers (only elements with
  ``h ≥ 4`` can differ between dialects, and their half-unit values are multiples of 2**-21).
  ``selection="two_stage"`` (online, activations; our reading of the paper): stage 1 rounds the
  block maximum to whole half-units (RNE, a 5-bit value 8…16) and takes the dialect pair
  (2k, 2k+1) whose shared maximum is ``15 − k`` half-units (k clamped to 0…7); stage 2 counts, per
  element, which of the two dialects quantizes it strictly closer, and takes 2k+1 only if it
  wins more elements (a tie keeps 2k).

Value: ``x̂ = (−1)**s · level/2 · 2**E``. Inputs: float32, float16 or bfloat16, finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .nvfp4 import check_float_input

__all__ = ["Formatbook", "DIALECT_FP4", "BLOCK_SIZES", "SELECTIONS", "BlockDialectTensor",
           "exponent_range", "shared_exponent", "quantize_to_dialects", "select_exact",
           "select_two_stage", "quantize_blockdialect", "bits_per_element"]

BLOCK_SIZES = (16, 32, 64)
SELECTIONS = ("exact", "two_stage")
#: Default shared-exponent width: the third-party codec's 5 bits (FP16's exponent field).
DEFAULT_EXP_BITS = 5
_SIGN = 1 << 3
#: Half-unit values of elements with h >= 4 (where dialects differ) are multiples of 2**-21
#: for float32 inputs (24-bit significands); errors are exact integers in these units.
_FRAC_BITS = 21
#: Half-unit magnitudes (only reached when the exponent is clamped at its top) up to which the
#: exact search's squared errors, 64 per block, fit int64.
_MAX_HALF_UNITS = 128
#: Blocks quantized at a time (bounds the per-dialect intermediate tensors).
_CHUNK_BLOCKS = 8192


@dataclass(frozen=True)
class Formatbook:
    """``half_units[d][i]``: magnitude of index i in dialect d, in half-units (integers 0…15,
    strictly ascending in i). 16 dialects of 8 levels; dialects 2k and 2k+1 form a pair."""

    half_units: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        hu = self.half_units
        if len(hu) != 16 or any(len(d) != 8 for d in hu):
            raise ValueError("a formatbook has 16 dialects of 8 magnitudes")
        for d, levels in enumerate(hu):
            if any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 15 for v in levels):
                raise ValueError(f"dialect {d}: magnitudes must be integers 0..15 half-units")
            if levels[0] != 0 or any(b <= a for a, b in zip(levels, levels[1:])):
                raise ValueError(f"dialect {d}: magnitudes must start at 0 and ascend strictly")

    @property
    def levels(self) -> torch.Tensor:
        """int64 [16, 8] half-units."""
        return torch.tensor(self.half_units, dtype=torch.int64)

    def values(self) -> torch.Tensor:
        """float64 [16, 8] real magnitudes (half-units / 2)."""
        return self.levels.to(torch.float64) / 2


#: DialectFP4 as transcribed from Figure 4 of arXiv 2501.01144v5 by a third party (UNCONFIRMED).
DIALECT_FP4 = Formatbook((
    (0, 1, 2, 3, 4, 6, 11, 15), (0, 1, 2, 3, 4, 6, 9, 15),
    (0, 1, 2, 3, 4, 6, 11, 14), (0, 1, 2, 3, 4, 6, 9, 14),
    (0, 1, 2, 3, 4, 6, 10, 13), (0, 1, 2, 3, 4, 6, 8, 13),
    (0, 1, 2, 3, 4, 6, 10, 12), (0, 1, 2, 3, 4, 6, 8, 12),
    (0, 1, 2, 3, 4, 6, 9, 11), (0, 1, 2, 3, 4, 6, 7, 11),
    (0, 1, 2, 3, 4, 6, 9, 10), (0, 1, 2, 3, 4, 6, 7, 10),
    (0, 1, 2, 3, 4, 6, 8, 9), (0, 1, 2, 3, 4, 6, 7, 9),
    (0, 1, 2, 3, 4, 6, 7, 8), (0, 1, 2, 3, 4, 5, 6, 8),
))


def _check_choice(name, value, choices):
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, not {value!r}")


def _check_exp_bits(exp_bits):
    if isinstance(exp_bits, bool) or not isinstance(exp_bits, int):
        raise TypeError(f"exp_bits must be an int, got {type(exp_bits).__name__}")
    if not 2 <= exp_bits <= 8:
        raise ValueError(f"exp_bits must be in 2..8, not {exp_bits}")


def exponent_range(exp_bits: int = DEFAULT_EXP_BITS) -> tuple[int, int]:
    """(smallest, largest) shared exponent of an ``exp_bits``-bit field, bias 2**(exp_bits−1) − 1."""
    _check_exp_bits(exp_bits)
    bias = (1 << (exp_bits - 1)) - 1
    return -bias, (1 << exp_bits) - 1 - bias


def shared_exponent(amax: torch.Tensor, exp_bits: int = DEFAULT_EXP_BITS) -> torch.Tensor:
    """int64 ``floor(log2(amax)) − 2`` per block (exact, ``frexp``), clamped to
    :func:`exponent_range`; amax == 0 gives the smallest exponent."""
    lo, hi = exponent_range(exp_bits)
    _, e = torch.frexp(amax.to(torch.float32))
    E = e.to(torch.int64) - 1 - 2
    return torch.where(amax == 0, torch.full_like(E, lo), E).clamp(lo, hi)


def quantize_to_dialects(h: torch.Tensor, formatbook: Formatbook = DIALECT_FP4) -> torch.Tensor:
    """int64 index [..., 16] of the nearest level of every dialect for half-unit magnitudes
    ``h`` (float64 [...], exact multiples of powers of two): ties to the even index, saturation
    at the top. Comparisons with the midpoints (multiples of 1/4) are exact in float64."""
    lv = formatbook.values() * 2                      # [16, 8] half-units as float64
    mid = (lv[:, :-1] + lv[:, 1:]) / 2                # [16, 7]
    hh = h.unsqueeze(-1).unsqueeze(-1)                # [..., 1, 1]
    above = hh > mid                                  # strictly past a midpoint: next index
    tie = hh == mid
    up_on_tie = (torch.arange(1, 8) % 2 == 0)         # the tie at midpoint i goes to i+1 iff even
    return (above | (tie & up_on_tie)).sum(-1)


def _half_units(xb: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """|x|·2**(1−E) in float64, exact (a power-of-two scaling of float32 values)."""
    return torch.ldexp(xb.abs().to(torch.float64), (1 - E).unsqueeze(-1).to(torch.float64))


def select_exact(h: torch.Tensor, formatbook: Formatbook = DIALECT_FP4) -> torch.Tensor:
    """int64 dialect [...] with the smallest sum of squared errors over the last dimension of
    half-unit magnitudes ``h`` [..., B]; ties to the lowest id. Exact integer sums."""
    if h.numel() and float(h.max()) >= _MAX_HALF_UNITS:
        raise ValueError(f"a block maximum is {float(h.max()) / 16:g}× beyond the largest shared "
                         f"exponent's range (raise exp_bits): the exact search's sums would overflow")
    idx = quantize_to_dialects(h, formatbook)                        # [..., B, 16]
    q = formatbook.levels[torch.arange(16), idx]                     # half-units
    # elements below 4 half-units quantize alike in every dialect (levels 0..4 shared, next >= 5)
    big = (h >= 4).unsqueeze(-1)
    hi = torch.where(big.squeeze(-1), h, torch.zeros_like(h))
    H = torch.ldexp(hi, torch.tensor(float(_FRAC_BITS))).to(torch.int64)
    if not bool((torch.ldexp(H.to(torch.float64), torch.tensor(-float(_FRAC_BITS))) == hi).all()):
        raise ValueError("half-unit magnitudes >= 4 must be multiples of 2**-21 (float32 inputs)")
    err = (H.unsqueeze(-1) - (q << _FRAC_BITS)) * big                 # |err| < 2**28: no overflow
    sse = (err * err).sum(-2)                                        # [..., 16]
    return sse.argmin(-1)                                            # first minimum: lowest id


def _pair_maxima(formatbook: Formatbook) -> torch.Tensor:
    lv = formatbook.levels[:, -1]
    if not bool((lv[0::2] == lv[1::2]).all()):
        raise ValueError("two-stage selection needs dialects 2k and 2k+1 to share their maximum")
    return lv[0::2]


def select_two_stage(h: torch.Tensor, formatbook: Formatbook = DIALECT_FP4) -> torch.Tensor:
    """int64 dialect [...] by the online two-stage rule (module docstring) over ``h`` [..., B].

    Stage 1: the pair whose shared maximum is nearest the block maximum rounded (RNE) to whole
    half-units (a tie to the lower pair index; for DialectFP4 the maxima are 15 − k, so pair
    ``clamp(15 − top, 0, 7)``). Stage 2: the pair's odd dialect if it quantizes strictly more
    elements strictly closer than the even one, else the even one."""
    pm = _pair_maxima(formatbook)                                     # [8]
    top = torch.round(h.amax(-1)).to(torch.int64)                     # RNE to whole half-units
    pair = (pm - top.unsqueeze(-1)).abs().argmin(-1)                  # first minimum
    even, odd = 2 * pair, 2 * pair + 1
    idx = quantize_to_dialects(h, formatbook)                         # [..., B, 16]
    lv = formatbook.values() * 2

    def err(d):
        pick = torch.gather(idx, -1, d.unsqueeze(-1).unsqueeze(-1).expand(*idx.shape[:-1], 1)).squeeze(-1)
        return (h - lv[d.unsqueeze(-1), pick]).abs()                  # exact in float64

    e_even, e_odd = err(even), err(odd)
    wins_odd = (e_odd < e_even).sum(-1)
    wins_even = (e_even < e_odd).sum(-1)
    return torch.where(wins_odd > wins_even, odd, even)


@dataclass
class BlockDialectTensor:
    """``codes`` uint8 [..., nb, B] (sign bit 3, index bits 0–2); ``dialect`` uint8 [..., nb];
    ``exponent`` int64 [..., nb] (unbiased ``E``); ``shape`` the input's shape."""

    codes: torch.Tensor
    dialect: torch.Tensor
    exponent: torch.Tensor
    block_size: int
    exp_bits: int
    formatbook: Formatbook
    shape: torch.Size

    @property
    def exponent_codes(self) -> torch.Tensor:
        """The stored ``exp_bits``-bit fields: ``E + bias``."""
        return self.exponent - exponent_range(self.exp_bits)[0]

    def half_units(self) -> torch.Tensor:
        """int64 [..., nb, B] signed half-units (the MAC's 5-bit sign-magnitude operands)."""
        mag = self.formatbook.levels[self.dialect.to(torch.int64).unsqueeze(-1),
                                     (self.codes & 7).to(torch.int64)]
        return torch.where((self.codes & _SIGN) != 0, -mag, mag)

    def dequantize(self) -> torch.Tensor:
        """float32 values of the input's shape (exact: at most 4 significant bits × 2**E)."""
        v = torch.ldexp(self.half_units().to(torch.float64), (self.exponent - 1).unsqueeze(-1).to(torch.float64))
        return v.to(torch.float32).reshape(self.shape)


def quantize_blockdialect(x: torch.Tensor, block_size: int = 32, *, selection: str = "exact",
                          exp_bits: int = DEFAULT_EXP_BITS,
                          formatbook: Formatbook = DIALECT_FP4) -> BlockDialectTensor:
    """Quantize ``x`` [..., K] (K a multiple of ``block_size``) in blocks along the last dimension."""
    _check_choice("block_size", block_size, BLOCK_SIZES)
    _check_choice("selection", selection, SELECTIONS)
    _check_exp_bits(exp_bits)
    if not isinstance(formatbook, Formatbook):
        raise TypeError(f"formatbook must be a Formatbook, got {type(formatbook).__name__}")
    check_float_input(x, block_size)
    nb = x.shape[-1] // block_size
    xb = x.to(torch.float32).reshape(-1, block_size)
    select = select_exact if selection == "exact" else select_two_stage
    codes, dialects, exps = [], [], []
    for part in xb.split(_CHUNK_BLOCKS):               # bounded memory: [blocks, B, 16, 7] masks
        E = shared_exponent(part.abs().amax(-1), exp_bits)
        h = _half_units(part, E)
        dialect = select(h, formatbook)
        idx = quantize_to_dialects(h, formatbook)
        index = torch.gather(idx, -1, dialect.view(-1, 1, 1).expand(*idx.shape[:-1], 1)).squeeze(-1)
        sign = torch.signbit(part) & (index != 0)     # −0 and values rounding to 0 are +0
        codes.append((index | (sign.to(torch.int64) << 3)).to(torch.uint8))
        dialects.append(dialect.to(torch.uint8))
        exps.append(E)
    if not codes:                                     # no rows
        codes, dialects = [torch.zeros(0, block_size, dtype=torch.uint8)], [torch.zeros(0, dtype=torch.uint8)]
        exps = [torch.zeros(0, dtype=torch.int64)]
    lead = (*x.shape[:-1], nb)
    return BlockDialectTensor(torch.cat(codes).reshape(*lead, block_size), torch.cat(dialects).reshape(lead),
                              torch.cat(exps).reshape(lead), block_size, exp_bits, formatbook,
                              torch.Size(x.shape))


def bits_per_element(block_size: int, exp_bits: int = DEFAULT_EXP_BITS) -> float:
    """4 bits per element plus (4-bit dialect id + ``exp_bits``) per block."""
    _check_choice("block_size", block_size, BLOCK_SIZES)
    _check_exp_bits(exp_bits)
    return 4 + (4 + exp_bits) / block_size

