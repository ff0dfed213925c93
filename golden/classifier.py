"""FGMP activation block classifier: the bit-exact specification of ``ActivationClassifier``.

Per block of 16 activations (``docs/classifier.md`` has the derivations and bounds):

1. **Per-tensor scale** ``2**p`` (``p`` a signed register): ``x' = x · 2**-p``, exact.
2. **FP8 alternative** (FGMP's FP8 block, :func:`mpgen.golden.fgmp.fp8_block_quantize` with
   ``s_t = 2**p``): ``c8_i = E4M3.encode(x'_i / 6)`` (RNE, saturating).
3. **NVFP4 alternative** (FGMP's NVFP4 block, :func:`mpgen.golden.nvfp4.exact_block_quantize` with
   ``s_t = 2**p``): ``s_b = UE4M3.encode(amax'/6)``, ``c4_i = E2M1.encode(x'_i / s_b)``; ``s_b == 0``
   gives ±0 codes. Because RNE rounding is monotone, ``s_b`` equals the largest E4M3 magnitude code
   among the ``c8_i`` (the hardware takes that maximum instead of an amax); :func:`classify`
   asserts the identity.
4. **Score.** With ``s_b = S·2**e_ref`` (``S, shift = UE4M3.mant_shift(s_b)``,
   ``e_ref = shift + UE4M3.lsb_exponent``), ``Q4_i = E2M1(c4_i)·s_b`` and ``Q8_i = E4M3(c8_i)·6``:
   ``|D_i| = min(floor(|Q4_i − Q8_i| / 2**(e_ref − 1 − f)), 2**diff_bits − 1)`` with
   ``f = diff_frac_bits`` (an exact truncation toward zero, then saturation).
   ``acc = Σ_i D_i² · Fm_i · 2**Fsh_i`` with ``Fm_i, Fsh_i = UE4M3.mant_shift(fisher code of channel
   i)`` (exact integer).
5. **Decision.** FP8 iff ``acc · 2**(2·shift) > threshold_reg`` (strictly; a tie stays NVFP4). The
   hardware compares ``acc > floor(threshold_reg / 2**(2·shift))``, which is the same.
6. **Non-finite input.** A block with a NaN or ±Inf element is emitted as an FP8 block whatever its
   score; its NaN/±Inf elements become the E4M3 NaN code with the element's sign bit (so a
   dot product with it is NaN in :mod:`mpgen.golden.dotprod`); its finite elements are encoded as
   in rule 2. Its ``score`` and ``shift`` are reported as 0.

Output per block: ``is_fp8``; ``codes`` (E4M3 codes for FP8 blocks, E2M1 codes 0..15 for NVFP4
blocks); ``block_scale`` (the UE4M3 code ``s_b``, or ``FP8_IMPLICIT_SCALE_CODE`` for FP8 blocks,
FGMP's convention). :meth:`ClassifiedBlocks.to_fgmp` gives the :class:`~mpgen.golden.fgmp.FGMPTensor`
with ``tensor_scale = 2**p``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .classifier_config import INPUT_FORMATS, UNSATURATED_MAX, ClassifierConfig, check_int_param
from .fgmp import BLOCK, FP8_IMPLICIT_SCALE_CODE, FGMPTensor, fp8_block_quantize
from .formats import E2M1, E4M3, UE4M3
from .nvfp4 import exact_block_quantize

__all__ = ["ClassifierConfig", "FisherTable", "ClassifiedBlocks", "INPUT_FORMATS", "fisher_to_table",
           "activation_scale_exp", "classify", "classify_stream", "score_values", "threshold_register",
           "block_score_terms"]

@dataclass(frozen=True)
class FisherTable:
    """One layer's per-input-channel Fisher weights: ``F_k = fisher_format.decode(codes[k]) ·
    2**unit_exp``. ``codes``: uint8 [K], K a positive multiple of 16, finite UE4M3 codes."""

    codes: torch.Tensor
    unit_exp: int = 0

    def __post_init__(self):
        c = self.codes
        if not isinstance(c, torch.Tensor) or c.dtype != torch.uint8 or c.dim() != 1:
            raise TypeError("FisherTable.codes must be a 1-D torch.uint8 tensor")
        if c.numel() == 0 or c.numel() % BLOCK:
            raise ValueError(f"FisherTable has {c.numel()} entries; need a positive multiple of {BLOCK}")
        if bool((c > UE4M3.max_code).any()):
            raise ValueError(f"FisherTable codes must be finite UE4M3 codes (<= {UE4M3.max_code:#x})")
        if isinstance(self.unit_exp, bool) or not isinstance(self.unit_exp, int):
            raise TypeError("FisherTable.unit_exp must be an int")

    @property
    def channels(self) -> int:
        return self.codes.numel()

    def words(self) -> list[int]:
        """The table as K/16 integers of 16 codes each (code of channel 16·w + j at bits
        ``7·j ..``): the words written through the hardware's configuration port."""
        bits = self.codes.tolist()
        w = UE4M3.width
        return [sum(c << (w * j) for j, c in enumerate(bits[i:i + BLOCK]))
                for i in range(0, len(bits), BLOCK)]

    def values(self) -> torch.Tensor:
        """float64 [K] Fisher values the codes represent."""
        return torch.ldexp(UE4M3.decode(self.codes).to(torch.float64),
                           torch.tensor(float(self.unit_exp), dtype=torch.float64))


def _pow2_exp_at_most(value: float, limit: float) -> int:
    """Smallest integer e with ``value · 2**-e <= limit`` (value > 0, finite)."""
    m, e = math.frexp(value / limit)  # only the exponent matters; check exactly below
    k = e - 1
    while math.ldexp(value, -k) > limit:
        k += 1
    while math.ldexp(value, -(k - 1)) <= limit:
        k -= 1
    return k


def fisher_to_table(fisher_k: torch.Tensor, cfg: ClassifierConfig | None = None) -> FisherTable:
    """Quantize per-channel Fisher values (float tensor [K] >= 0, finite) to a :class:`FisherTable`.

    ``unit_exp`` is the smallest exponent with ``max(F) · 2**-unit_exp <= fisher_format.max_value``
    (0 for an all-zero table); ``codes = fisher_format.encode(F · 2**-unit_exp)`` (RNE).
    """
    cfg = cfg or ClassifierConfig()
    if not isinstance(fisher_k, torch.Tensor) or not fisher_k.dtype.is_floating_point:
        raise TypeError("fisher_k must be a floating-point torch.Tensor")
    if fisher_k.dim() != 1:
        raise ValueError(f"fisher_k must be 1-D [K], got shape {tuple(fisher_k.shape)}")
    f = fisher_k.detach().to(torch.float64)
    if not bool(torch.isfinite(f).all()) or bool((f < 0).any()):
        raise ValueError("fisher_k must be finite and non-negative")
    top = float(f.max()) if f.numel() else 0.0
    unit_exp = _pow2_exp_at_most(top, cfg.fisher_format.max_value) if top > 0 else 0
    codes = cfg.fisher_format.encode(torch.ldexp(f, torch.tensor(float(-unit_exp), dtype=torch.float64)))
    return FisherTable(codes, unit_exp)


def activation_scale_exp(amax, cfg: ClassifierConfig | None = None) -> int:
    """Power-of-two per-tensor scale exponent: the smallest ``p`` with ``amax · 2**-p <= 6 · 448``
    (so neither alternative saturates), 0 for ``amax == 0``. Raises ValueError if amax is negative
    or not finite, or (with ``cfg``) if p does not fit the register."""
    a = float(torch.as_tensor(amax, dtype=torch.float64))
    if not math.isfinite(a) or a < 0:
        raise ValueError(f"amax must be finite and >= 0, got {a}")
    p = _pow2_exp_at_most(a, UNSATURATED_MAX) if a > 0 else 0
    if cfg is not None:
        lo, hi = cfg.p_range
        if not lo <= p <= hi:
            raise ValueError(f"scale exponent {p} does not fit the {cfg.p_bits}-bit register")
    return p


@dataclass
class ClassifiedBlocks:
    """Result of :func:`classify`; block tensors have shape ``x.shape[:-1] + (K // 16,)``.

    ``codes`` uint8 [..., nb, 16]; ``is_fp8`` bool; ``block_scale`` uint8 (UE4M3 codes,
    ``FP8_IMPLICIT_SCALE_CODE`` for FP8 blocks); ``score`` int64 (``acc``, before the exponent shift);
    ``shift`` int64 (``2·shift`` of the block scale, the left shift applied to ``acc`` before the
    compare); ``nonfinite`` bool (rule 6); ``p`` the scale exponent; ``shape`` the input's shape.
    """

    codes: torch.Tensor
    is_fp8: torch.Tensor
    block_scale: torch.Tensor
    score: torch.Tensor
    shift: torch.Tensor
    nonfinite: torch.Tensor
    p: int
    shape: torch.Size

    def to_fgmp(self) -> FGMPTensor:
        """The blocks as an FGMP tensor with ``tensor_scale = 2**p`` (float32, exact for the
        register's range)."""
        ts = torch.tensor(math.ldexp(1.0, self.p), dtype=torch.float32)
        if float(ts) != math.ldexp(1.0, self.p):
            raise ValueError(f"2**{self.p} is not representable in float32")
        return FGMPTensor(self.codes.clone(), self.is_fp8.clone(), self.block_scale.clone(), ts,
                          torch.Size(self.shape))


# --------------------------------------------------------------------------- integer tables
_E2M1_TWICE = torch.tensor([E2M1.fixed_point(c)[0] for c in range(1 << E2M1.width)], dtype=torch.int64)
assert E2M1.fixed_point(E2M1.max_code)[1] == -1  # E2M1 values in units of 1/2


def _mant_shift_tables(fmt):
    ms = [fmt.mant_shift(c) for c in range(1 << fmt.width)]
    return (torch.tensor([m for _, m, _ in ms], dtype=torch.int64),
            torch.tensor([s for _, _, s in ms], dtype=torch.int64))


_UE_MANT, _UE_SHIFT = _mant_shift_tables(UE4M3)
_E4M3_MANT, _E4M3_SHIFT = _mant_shift_tables(E4M3)
_MAG_MASK = (1 << E4M3.magnitude_width) - 1
#: E4M3 magnitude codes and UE4M3 codes are the same 7-bit encoding (rule 3 uses it).
assert UE4M3.width == E4M3.magnitude_width and UE4M3.bias == E4M3.bias


def _check_args(x, table, p, cfg):
    if not isinstance(cfg, ClassifierConfig):
        raise TypeError("cfg must be a ClassifierConfig")
    if not isinstance(table, FisherTable):
        raise TypeError("table must be a FisherTable")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != cfg.input_format.torch_dtype:
        raise TypeError(f"x must be {cfg.input_format.torch_dtype} (cfg.input_format="
                        f"{cfg.input_format.name}), got {x.dtype}")
    if x.dim() == 0 or x.shape[-1] != table.channels:
        raise ValueError(f"x's last dimension must equal the Fisher table's K={table.channels}, "
                         f"got shape {tuple(x.shape)}")
    check_int_param("p", p, *cfg.p_range)


def block_score_terms(c4: torch.Tensor, c8: torch.Tensor, scale: torch.Tensor,
                      cfg: ClassifierConfig) -> torch.Tensor:
    """``|D_i|`` (rule 4) as int64 [..., 16] from E2M1 codes, E4M3 codes and UE4M3 scale codes
    [...] of finite blocks (exact integers, saturated at ``2**diff_bits − 1``)."""
    f = cfg.diff_frac_bits
    s = scale.to(torch.int64)
    sm, ssh = _UE_MANT[s].unsqueeze(-1), _UE_SHIFT[s].unsqueeze(-1)
    # Q4 in units of 2**(e_ref - 1 - f): E2M1 value·2 (an integer) times S·2**f.
    a = _E2M1_TWICE[c4.to(torch.int64) & 0x7] * sm * (1 << f)
    # Q8 = 6·E4M3 = 3·m8·2**(sh8 + lsb8 + 1); in the same units: 3·m8·2**(sh8 - ssh + 2 + f)
    # (E4M3.lsb_exponent + 1 - (UE4M3.lsb_exponent - 1 - f) = 2 + f).
    m8, sh8 = _E4M3_MANT, _E4M3_SHIFT
    mag8 = c8.to(torch.int64) & _MAG_MASK
    n = 3 * m8[mag8]
    k = sh8[mag8] - ssh + (E4M3.lsb_exponent + 1 - (UE4M3.lsb_exponent - 1 - f))
    assert bool((k <= 2 + f).all())
    right = (-k).clamp(min=0, max=62)
    b_int = torch.where(k >= 0, n << k.clamp(min=0), n >> right)
    b_frac = (k < 0) & ((n & ((1 << right) - 1)) != 0)
    a_ge_b = (a > b_int) | ((a == b_int) & ~b_frac)
    d = torch.where(a_ge_b, a - b_int - b_frac.to(torch.int64), b_int - a)
    return d.clamp(max=cfg.diff_max)


def classify(x: torch.Tensor, table: FisherTable, threshold_reg: int, p: int,
             cfg: ClassifierConfig | None = None) -> ClassifiedBlocks:
    """Classify every 16-element block of ``x`` [..., K] as the hardware does (module docstring)."""
    cfg = cfg or ClassifierConfig()
    _check_args(x, table, p, cfg)
    nb = x.shape[-1] // BLOCK
    xb = x.reshape(*x.shape[:-1], nb, BLOCK)
    fc = table.codes.reshape(nb, BLOCK).expand(*xb.shape)
    return _classify_blocks(xb, fc, threshold_reg, p, cfg, x.shape)


def classify_stream(values: torch.Tensor, index: torch.Tensor, table: FisherTable, threshold_reg: int,
                    p: int, cfg: ClassifierConfig | None = None) -> ClassifiedBlocks:
    """The hardware's stream view: ``values`` [n, 16] blocks (input dtype), ``index`` int [n] the
    block's position (channels ``16·index ..``) in the Fisher table. Same rules as :func:`classify`."""
    cfg = cfg or ClassifierConfig()
    if not isinstance(values, torch.Tensor) or values.dim() != 2 or values.shape[1] != BLOCK:
        raise ValueError(f"values must be a tensor [n, {BLOCK}]")
    if not isinstance(index, torch.Tensor) or index.dtype.is_floating_point or index.shape != values.shape[:1]:
        raise ValueError("index must be an integer tensor [n]")
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= table.channels // BLOCK):
        raise ValueError(f"index must lie in [0, {table.channels // BLOCK})")
    if values.dtype != cfg.input_format.torch_dtype:
        raise TypeError(f"values must be {cfg.input_format.torch_dtype}, got {values.dtype}")
    check_int_param("p", p, *cfg.p_range)
    fc = table.codes.reshape(-1, BLOCK)[index.to(torch.int64)]
    return _classify_blocks(values, fc, threshold_reg, p, cfg, values.shape)


def _classify_blocks(x_blocks, fcodes, threshold_reg, p, cfg, shape) -> ClassifiedBlocks:
    check_int_param("threshold_reg", threshold_reg, 0, (1 << cfg.threshold_bits) - 1)
    xb = x_blocks.to(torch.float32)
    bad_elem = ~torch.isfinite(xb)
    nonfinite = bad_elem.any(dim=-1)
    xf = torch.where(bad_elem, torch.zeros_like(xb), xb)

    s_t = math.ldexp(1.0, p)
    c4, s_b = exact_block_quantize(xf, s_t)                        # rule 3
    c8 = fp8_block_quantize(xf, s_t)[0]                            # rule 2: FGMP's FP8 block, s_t = 2**p
    max8 = (c8.to(torch.int64) & _MAG_MASK).amax(dim=-1)
    assert bool((max8 == s_b.to(torch.int64)).all()), "s_b != max E4M3 magnitude code"

    d = block_score_terms(c4, c8, s_b, cfg)                        # rule 4
    fc = fcodes.to(torch.int64)
    fterm = _UE_MANT[fc] << _UE_SHIFT[fc]
    acc = (d * d * fterm).sum(dim=-1)
    shift = 2 * _UE_SHIFT[s_b.to(torch.int64)]
    acc = torch.where(nonfinite, torch.zeros_like(acc), acc)
    shift = torch.where(nonfinite, torch.zeros_like(shift), shift)

    # rule 5: acc << shift > T  <=>  acc > floor(T / 2**shift); shifts are even, <= 2·14.
    lut = torch.tensor([min(threshold_reg >> s, cfg.acc_max + 1) for s in range(2 * cfg.max_scale_shift + 1)],
                       dtype=torch.int64)
    is_fp8 = (acc > lut[shift]) | nonfinite

    # rule 6: NaN/Inf elements become the E4M3 NaN code with their sign.
    sign = torch.signbit(xb).to(torch.uint8) << E4M3.magnitude_width
    c8 = torch.where(bad_elem, sign | E4M3.nan_code, c8)
    codes = torch.where(is_fp8.unsqueeze(-1), c8, c4)
    block_scale = torch.where(is_fp8, torch.full_like(s_b, FP8_IMPLICIT_SCALE_CODE), s_b)
    return ClassifiedBlocks(codes, is_fp8, block_scale, acc, shift, nonfinite, p, torch.Size(shape))


def score_values(res: ClassifiedBlocks, table: FisherTable, p: int,
                 cfg: ClassifierConfig | None = None) -> torch.Tensor:
    """float64 [..., nb]: the hardware score ``(acc << shift) · 2**c`` in x's units (≈ Σ F_i·(Q4_i −
    Q8_i)²·4**p, with the truncated, saturated differences). Exact (acc < 2**53)."""
    cfg = cfg or ClassifierConfig()
    if not isinstance(res, ClassifiedBlocks):
        raise TypeError("res must be a ClassifiedBlocks")
    c = cfg.score_exponent(table, p)
    assert bool((res.score < 2**53).all())
    return torch.ldexp(res.score.to(torch.float64), (res.shift + c).to(torch.float64))


def threshold_register(T: float, table: FisherTable, p: int, cfg: ClassifierConfig | None = None) -> int:
    """Register value with ``(acc << shift) > reg  <=>  score_value > T`` for every block:
    ``floor(T · 2**-c)`` clamped to ``cfg.threshold_max`` (then no block is FP8). ``T`` must be
    a non-negative float (``inf`` allowed)."""
    cfg = cfg or ClassifierConfig()
    T = float(T)
    if math.isnan(T) or T < 0:
        raise ValueError(f"threshold must be >= 0 (or inf), got {T}")
    check_int_param("p", p, *cfg.p_range)
    if math.isinf(T):
        return cfg.threshold_max
    c = cfg.score_exponent(table, p)
    try:
        reg = math.floor(math.ldexp(T, -c))
    except OverflowError:
        return cfg.threshold_max
    return min(reg, cfg.threshold_max)
