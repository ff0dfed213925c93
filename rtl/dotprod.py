"""FGMP mixed-precision block dot-product unit.

``BlockDotProduct`` streams pairs of (weight, activation) blocks. Each block is NVFP4 (E2M1
elements with a UE4M3 block scale) or FP8 (E4M3 elements, implicit block scale 6), chosen per block
by a flag. The unit computes each block's dot product exactly in fixed point, multiplies it by the
exact block-scale product, and either rounds that term once to FP32 and accumulates terms in FP32,
or sums the terms exactly and rounds once, until a block pair marked ``last`` closes the dot
product. Numerics: :mod:`mpgen.golden.dotprod` (the specification) and ``docs/numerics.md``.
"""

from __future__ import annotations

import math
from fractions import Fraction

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mpgen.golden.constants import (ACCUMULATIONS, BLOCK_SIZES, EXACT_MAX_BLOCKS,
                                    FP8_IMPLICIT_SCALE_CODE)
from mpgen.golden.formats import E2M1, E4M3, FP32, UE4M3

from .accumulators import ExactAccumulator, FP32Accumulator, fixed_term_layout, fp32_term_layout
from .arith import ToFP32, float_layout, unpack, widen

__all__ = ["BlockDotProduct", "MultiplierLanes", "ProductShift", "AdderTree", "ScaleDecode",
           "BlockScale", "TermToFP32", "TermAlign", "max_term", "OPERAND_LSB", "tree_groups",
           "default_tree_group", "supported_modes", "ACCUMULATIONS", "BLOCK_MODES", "FORMAT_SETS",
           "ORGANISATIONS", "PIPELINE_DEPTHS", "FP4_RATES", "FP4_PAIR_CODE"]

FORMAT_SETS = ("mixed", "fp8", "fp4")
ORGANISATIONS = ("split", "shared")
#: Register stages before the accumulator, cut in this order: the block term, the adder tree's
#: output, the middle of the adder tree, the multipliers' outputs, the block-scale product.
PIPELINE_DEPTHS = (1, 2, 3, 4, 5)
#: FP4×FP4 block pairs per cycle: 1, or 2 (double rate: a beat carries two FP4×FP4 pairs).
FP4_RATES = (1, 2)
#: One byte of a double-rate beat's ``codes``: element i of the first FP4×FP4 block pair in the
#: low nibble (where single NVFP4 blocks have it), of the second pair in the high nibble.
FP4_PAIR_CODE = data.StructLayout({"first": unsigned(E2M1.width), "second": unsigned(E2M1.width)})
#: Block-pair modes as (w_fp8, a_fp8), and those each format set takes.
BLOCK_MODES = ((False, False), (False, True), (True, False), (True, True))
#: Every operand (an element times its block scale) is a whole multiple of ``2**OPERAND_LSB``:
#: an E2M1 element (step 2**-1) times a UE4M3 scale (step 2**-9), and an E4M3 element (step
#: 2**-9) times FP8's implicit scale 6 = 12·2**-1. The block terms' step is ``2·OPERAND_LSB``.
OPERAND_LSB = E2M1.lsb_exponent + UE4M3.lsb_exponent
_FP8_SCALE_SHIFT = UE4M3.mant_shift(FP8_IMPLICIT_SCALE_CODE)[2]
if E4M3.lsb_exponent + UE4M3.lsb_exponent + _FP8_SCALE_SHIFT != OPERAND_LSB:
    raise RuntimeError("the FP8 operand grid differs from the NVFP4 one: revisit OPERAND_LSB")
#: An E2M1 operand widened onto E4M3 lanes carries this many extra low zero bits.
_WIDEN_BITS = E2M1.lsb_exponent - E4M3.lsb_exponent


def supported_modes(formats: str) -> tuple[tuple[bool, bool], ...]:
    """The (w_fp8, a_fp8) modes a unit of ``formats`` takes."""
    return {"mixed": BLOCK_MODES, "fp8": ((True, True),), "fp4": ((False, False),)}[formats]

_FP32_LAYOUT = float_layout(FP32)


def _max_shift(fmt):
    return fmt.max_exp_field - 1


def _product_bits(fmt):
    """Magnitude bits of one lane product (hardware worst case, NaN codes included)."""
    return 2 * (fmt.man_bits + 1) + 2 * _max_shift(fmt)


def block_layout(element_width: int, block_size: int, *, flag: bool, scale: bool,
                 second_scale: bool = False):
    """One operand block: element codes, optional FP8 flag, optional UE4M3 scale, and optional
    ``second_scale``: the UE4M3 scale of a double-rate beat's second FP4 block."""
    fields = {"codes": data.ArrayLayout(unsigned(element_width), block_size)}
    if flag:
        fields["fp8"] = unsigned(1)
    if scale:
        fields["scale"] = unsigned(UE4M3.width)
    if second_scale:
        fields["second_scale"] = unsigned(UE4M3.width)
    return data.StructLayout(fields)


class MultiplierLanes(wiring.Component):
    """``block_size`` sign-magnitude multipliers of one element format, combinational.

    Lane ``i`` computes ``w[i]·a[i]`` exactly as ``mantissas[i] << shifts[i]``, in units of
    ``2**(2·fmt.lsb_exponent)``: the signed product of the hidden-bit mantissas and the sum of
    the two ``max(exponent, 1) - 1`` shifts (:class:`ProductShift` applies it; the pair is
    9 + 5 bits per E4M3 lane, where the shifted product is 37). With ``narrow`` set, lanes of format
    E4M3 read an operand's low 4 bits as E2M1 and widen it (exact), so FP4 blocks can share FP8
    lanes. ``nan`` is set when any lane sees a NaN code of an operand that is not narrow.
    """

    def __init__(self, fmt, block_size: int, *, narrow=None):
        if fmt not in (E2M1, E4M3):
            raise ValueError(f"MultiplierLanes supports E2M1 and E4M3 lanes, not {fmt.name}")
        if narrow is not None and narrow is not E2M1:
            raise ValueError("only E2M1 operands can be widened onto lanes")
        self.fmt, self.block_size, self.narrow = fmt, block_size, narrow
        self.mantissa_width = 2 * (fmt.man_bits + 1) + 1  # with a sign bit
        self.shift_width = (2 * _max_shift(fmt)).bit_length()
        codes = data.ArrayLayout(unsigned(fmt.width), block_size)
        members = {
            "w": In(codes), "a": In(codes),
            "mantissas": Out(data.ArrayLayout(signed(self.mantissa_width), block_size)),
            "shifts": Out(data.ArrayLayout(unsigned(self.shift_width), block_size)),
            "nan": Out(1),
        }
        if narrow is not None:
            members.update({"w_narrow": In(1), "a_narrow": In(1)})
        super().__init__(members)

    def _operand(self, code, is_narrow):
        wide = unpack(self.fmt, code)
        if self.narrow is None:
            return wide.sign, wide.mant, wide.shift, wide.nan
        thin = widen(unpack(self.narrow, code[:self.narrow.width]), self.fmt)
        return (Mux(is_narrow, thin.sign, wide.sign), Mux(is_narrow, thin.mant, wide.mant),
                Mux(is_narrow, thin.shift, wide.shift), wide.nan & ~is_narrow)

    def elaborate(self, platform):
        m = Module()
        w_narrow = getattr(self, "w_narrow", Const(0, 1))
        a_narrow = getattr(self, "a_narrow", Const(0, 1))
        nans = []
        for i in range(self.block_size):
            ws, wm, wsh, wn = self._operand(self.w[i], w_narrow)
            as_, am, ash, an = self._operand(self.a[i], a_narrow)
            # the sign goes onto the short mantissa product before the shift: a narrow negation
            # instead of one as wide as the shifted product
            mant = Signal(2 * (self.fmt.man_bits + 1), name=f"mant{i}")
            m.d.comb += [mant.eq(wm * am), self.mantissas[i].eq(Mux(ws ^ as_, -mant, mant)),
                         self.shifts[i].eq(wsh + ash)]
            nans += [wn, an]
        m.d.comb += self.nan.eq(Cat(*nans).any())
        return m


class ProductShift(wiring.Component):
    """``products[i] = mantissas[i] << shifts[i]`` for the lanes of a :class:`MultiplierLanes`,
    combinational: the signed lane products in units of ``2**(2·fmt.lsb_exponent)``."""

    def __init__(self, lanes: MultiplierLanes):
        self.block_size = lanes.block_size
        self.product_width = _product_bits(lanes.fmt) + 1
        super().__init__({
            "mantissas": In(data.ArrayLayout(signed(lanes.mantissa_width), lanes.block_size)),
            "shifts": In(data.ArrayLayout(unsigned(lanes.shift_width), lanes.block_size)),
            "products": Out(data.ArrayLayout(signed(self.product_width), lanes.block_size)),
        })

    def elaborate(self, platform):
        m = Module()
        for i in range(self.block_size):
            m.d.comb += self.products[i].eq(self.mantissas[i] << self.shifts[i])
        return m


class AdderTree(wiring.Component):
    """Exact sum of ``count`` signed inputs as a balanced binary tree, combinational."""

    def __init__(self, input_width: int, count: int):
        self.input_width, self.count = input_width, count
        self.output_width = input_width + (count - 1).bit_length()
        super().__init__({
            "inputs": In(data.ArrayLayout(signed(input_width), count)),
            "sum": Out(signed(self.output_width)),
        })

    def elaborate(self, platform):
        m = Module()
        level = [self.inputs[i] for i in range(self.count)]
        depth = 0
        while len(level) > 1:
            nxt = []
            for j in range(0, len(level) - 1, 2):
                s = Signal(signed(self.input_width + depth + 1), name=f"s{depth}_{j // 2}")
                m.d.comb += s.eq(level[j] + level[j + 1])
                nxt.append(s)
            if len(level) % 2:
                nxt.append(level[-1])
            level, depth = nxt, depth + 1
        m.d.comb += self.sum.eq(level[0])
        return m


class ScaleDecode(wiring.Component):
    """Decodes the two block scales into their exact product ``smant · 2**sshift``, combinational.

    Each operand's scale is its UE4M3 ``scale`` code, or the implicit FP8 scale when its ``fp8``
    flag is set (``scales="flagged"``); ``scales="fp8"`` hard-wires the implicit scale (FP8-only
    unit) and ``scales="nvfp4"`` always uses the codes. ``smant`` is the product of the two
    4-bit mantissas (hidden bit included) and ``sshift`` the sum of the two operands' shifts:
    an NVFP4 operand's is its scale's shift, an FP8 operand's is 0, because the implicit scale's
    shift is what E4M3's finer element grid takes away (:data:`OPERAND_LSB`). With each
    element an integer on its own format's grid, the block term is ``Σ w·a · smant ·
    2**sshift`` in units of ``2**(2·OPERAND_LSB)``. ``nan`` reports a NaN scale on an NVFP4
    block. Decoding at the unit's input keeps it off the later pipeline stages, and 13 bits
    travel down the pipeline instead of two codes and two flags.
    """

    def __init__(self, scales: str):
        if scales not in ("flagged", "fp8", "nvfp4"):
            raise ValueError(f"scales must be 'flagged', 'fp8' or 'nvfp4', not {scales!r}")
        self.scales = scales
        members = {"smant": Out(2 * (UE4M3.man_bits + 1)), "sshift": Out(UE4M3.exp_bits + 1),
                   "nan": Out(1)}
        if scales != "fp8":
            members.update({"w_scale": In(UE4M3.width), "a_scale": In(UE4M3.width)})
        if scales == "flagged":
            members.update({"w_fp8": In(1), "a_fp8": In(1)})
        super().__init__(members)

    def _scale(self, which):
        if self.scales == "fp8":
            code, fp8 = Const(FP8_IMPLICIT_SCALE_CODE, UE4M3.width), Const(1, 1)
        elif self.scales == "nvfp4":
            code, fp8 = getattr(self, f"{which}_scale"), Const(0, 1)
        else:
            fp8 = getattr(self, f"{which}_fp8")
            code = Mux(fp8, FP8_IMPLICIT_SCALE_CODE, getattr(self, f"{which}_scale"))
        u = unpack(UE4M3, code)
        return u.mant, Mux(fp8, 0, u.shift), u.nan & ~fp8

    def elaborate(self, platform):
        m = Module()
        wm, wsh, wn = self._scale("w")
        am, ash, an = self._scale("a")
        m.d.comb += [self.smant.eq(wm * am), self.sshift.eq(wsh + ash), self.nan.eq(wn | an)]
        return m


class BlockScale(wiring.Component):
    """Multiplies an exact block dot product by the block-scale mantissa product, combinational.

    ``smant`` is the mantissa product of :class:`ScaleDecode`; ``scaled = product · smant``
    (signed, exact), so with the block dot product on its operands' own grids the block term is
    ``scaled · 2**sshift`` in units of ``2**(2·OPERAND_LSB)`` (a mixed unit's products are on the
    E4M3 grid, with extra low zero bits for E2M1 operands, which the term stage drops).
    """

    def __init__(self, product_width: int):
        self.product_width = product_width
        mant_bits = 2 * (UE4M3.man_bits + 1)
        self.scaled_width = product_width + mant_bits
        super().__init__({"product": In(signed(product_width)), "smant": In(mant_bits),
                          "scaled": Out(signed(self.scaled_width))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.scaled.eq(self.product * self.smant)
        return m


def _term_members(scaled_width: int, term, widen_bits: int) -> dict:
    """Ports of a term stage (:class:`TermToFP32`, :class:`TermAlign`): ``scaled`` and its
    ``shift`` in, ``term`` out, and with ``widen_bits`` the ``narrowed`` count in."""
    members = {"scaled": In(signed(scaled_width)), "shift": In(UE4M3.exp_bits + 1),
               "term": Out(term)}
    if widen_bits:
        members["narrowed"] = In(2)
    return members


class TermToFP32(wiring.Component):
    """Rounds a scaled block term ``scaled·2**shift·2**lsb`` once to FP32 (RNE), combinational.

    With ``widen_bits`` the ``narrowed`` input says how many E2M1 operands were widened onto
    E4M3 lanes: ``scaled`` then carries ``widen_bits`` extra low zero bits for each, and the
    term is ``scaled·2**(shift - widen_bits·narrowed)·2**lsb``.
    """

    def __init__(self, scaled_width: int, lsb: int, widen_bits: int = 0):
        self.scaled_width, self.lsb, self.widen_bits = scaled_width, lsb, widen_bits
        super().__init__(_term_members(scaled_width, _FP32_LAYOUT, widen_bits))

    def elaborate(self, platform):
        m = Module()
        m.submodules.to_fp32 = conv = ToFP32(max(self.scaled_width - 1, FP32.man_bits + 3))
        p = self.scaled
        exponent = self.shift + self.lsb
        if self.widen_bits:
            exponent = exponent - self.narrowed * self.widen_bits
        m.d.comb += [conv.sign.eq(p[-1]), conv.magnitude.eq(Mux(p[-1], -p, p)),
                     conv.exponent.eq(exponent), self.term.eq(conv.result)]
        return m


class TermAlign(wiring.Component):
    """Shifts a scaled block term onto the exact accumulator's grid, combinational.

    ``term = scaled << shift`` as a ``width``-bit two's complement integer; the caller sizes
    ``width`` so that every finite term fits (the shift only reaches its maximum on small
    products), so dropping the bits above is exact. With ``widen_bits``, ``narrowed`` E2M1
    operands were widened onto E4M3 lanes and ``scaled`` carries ``widen_bits`` extra low zero
    bits for each: the term is the window of ``scaled << shift`` above them. Dropping those
    zeros here, after the scale product, keeps the small FP4 products at the top of the
    multiplier's input, where their sign extension is short (it would toggle the whole
    multiplier and shifter if they were dropped before).
    """

    def __init__(self, scaled_width: int, width: int, widen_bits: int = 0):
        self.scaled_width, self.width, self.widen_bits = scaled_width, width, widen_bits
        super().__init__(_term_members(scaled_width, signed(width), widen_bits))

    def elaborate(self, platform):
        m = Module()
        wb, w = self.widen_bits, self.width
        full = Signal(signed(w + 2 * wb), name="shifted")
        m.d.comb += full.eq(self.scaled << self.shift)
        if not wb:
            m.d.comb += self.term.eq(full)
            return m
        n = self.narrowed
        m.d.comb += self.term.eq(Mux(n == 0, full[:w], Mux(n == 1, full[wb:wb + w], full[2 * wb:])))
        return m


def tree_groups(block_size: int) -> tuple[int, ...]:
    """The ``tree_group`` choices of a block size: powers of two below it (1: the cut before
    the lanes' shifters)."""
    return tuple(1 << k for k in range(max(block_size.bit_length() - 1, 1)))


def default_tree_group(block_size: int) -> int:
    """2**ceil(log2(block_size)/2): the adder tree cut in its middle level."""
    return 1 << -(-(block_size.bit_length() - 1) // 2)


def max_term(block_size: int, modes, lsb: int) -> int:
    """Largest |block term| of finite operands, in units of ``2**lsb``, over ``modes``
    ((w_fp8, a_fp8) pairs): block_size · max element² · max block scale²."""
    def element(fp8):
        return Fraction(E4M3.max_value if fp8 else E2M1.max_value)

    def scale(fp8):
        return Fraction(UE4M3.value(FP8_IMPLICIT_SCALE_CODE) if fp8 else UE4M3.max_value)
    top = max(block_size * element(wf) * element(af) * scale(wf) * scale(af) for wf, af in modes)
    return math.ceil(top / Fraction(2) ** lsb)


class BlockDotProduct(wiring.Component):
    """Streaming mixed-precision block dot-product unit.

    Parameters
    ----------
    block_size : 8, 16 or 32
        Elements per block.
    formats : "mixed", "fp8" or "fp4"
        "mixed": every block carries a flag (NVFP4 or FP8) — all four mode pairs; "fp8": FP8
        blocks only (no flag, no scale ports: the area baseline); "fp4": NVFP4 blocks only.
    organisation : "split" or "shared" (mixed only; default "split")
        "split": cheap E2M1×E2M1 lanes beside E4M3-capable lanes; FP4×FP4 block pairs use the
        cheap lanes, everything else the E4M3 lanes with FP4 operands widened, and the idle side's
        operands are forced to zero (operand isolation). "shared": every pair on E4M3 lanes.
    pipeline : 1 to 5
        Register stages before the accumulator: 1 = after the block term (its FP32 rounding, or
        its alignment); 2 = also after the adder tree; 3 = also inside the adder tree, after
        the sums of groups of ``tree_group`` products; 4 = also after the multipliers (each
        lane's signed mantissa product and shift, before its shifter); 5 = also after the
        block-scale product.
    tree_group : 1, 2, 4, 8 or 16 (below block_size; pipeline >= 3 only; 1 with pipeline 3)
        Products per group at the adder tree's cut; default 2**ceil(log2(block_size)/2) (4 in
        blocks of 16). Smaller groups cut earlier: a shorter path from the input, more
        registers. 1 registers each lane's signed mantissa product and shift before its
        shifter (14 bits per E4M3 lane). In "split" the cut applies to the E4M3 lanes; the
        E2M1 lanes' whole sum is registered there (their products are 4× narrower).
    accumulation : "fp32" or "exact" (default "fp32")
        "fp32": each block term is rounded to FP32 and added in FP32 (one FP32 adder in the
        loop: about 12 ns at SG13G2 typical). "exact": the terms are summed exactly in a wide
        fixed-point accumulator with carry-save segments and each dot product is rounded once
        (``docs/numerics.md`` rule 5'; at most ``EXACT_MAX_BLOCKS`` block pairs per dot
        product).
    fp4_rate : 1 or 2 (default 1; 2 needs formats "mixed", organisation "split" and
        accumulation "exact")
        FP4×FP4 block pairs per cycle. 2: a beat with ``dual`` set carries two FP4×FP4 block
        pairs of one dot product (element codes as :data:`FP4_PAIR_CODE`: first pair in the low
        nibbles, second in the high ones; scales ``scale`` and ``second_scale``). The second pair
        has its own E2M1 lanes, adder tree and scale product, and the exact accumulator adds
        both terms in one cycle: the sum is exact and order-independent, so the numerics are
        those of rule 5' unchanged, at twice the FP4 rate. Other beats carry one pair.

    Ports
    -----
    i : stream of block pairs: ``w`` and ``a`` blocks (``codes``: 8-bit E4M3 codes, or E2M1
        codes in the low 4 bits for NVFP4 blocks; 4-bit codes in the "fp4" unit; ``fp8`` flag
        ("mixed" only); ``scale`` UE4M3 code (not in "fp8"), ignored for FP8 blocks) and ``last``.
        With ``fp4_rate=2`` also ``dual`` and each block's ``second_scale``: a beat with ``dual``
        set and both ``fp8`` flags clear is two FP4×FP4 pairs (``last`` then follows the second);
        ``dual`` is ignored on a beat with an FP8 block.
    o : stream of FP32 results, one per dot product (the block pairs up to one with ``last``).

    Members
    -------
    latency : int
        Cycles from the handshake of a ``last`` pair to ``o.valid``: ``pipeline + 1`` with
        "fp32" accumulation, ``pipeline + 4`` with "exact".
    term_lsb : int
        The block terms' step is ``2**term_lsb``: ``2·OPERAND_LSB`` = -20 in every unit.
    accumulator_width : int or None
        Bits of the exact accumulator (None with "fp32"): every finite term, times
        ``EXACT_MAX_BLOCKS``, with a sign bit.

    Throughput one beat per cycle: one block pair, or two FP4×FP4 pairs with ``fp4_rate=2``. A
    result not taken on ``o`` stalls the whole pipeline.
    """

    def __init__(self, block_size: int = 16, formats: str = "mixed", organisation: str | None = None,
                 pipeline: int = 2, accumulation: str = "fp32", tree_group: int | None = None,
                 fp4_rate: int = 1):
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size not in BLOCK_SIZES:
            raise ValueError(f"block_size must be one of {BLOCK_SIZES}, not {block_size!r}")
        if formats not in FORMAT_SETS:
            raise ValueError(f"formats must be one of {FORMAT_SETS}, not {formats!r}")
        if organisation is None:
            organisation = "split" if formats == "mixed" else None
        elif formats != "mixed":
            raise ValueError(f"organisation applies to formats='mixed' only (got formats={formats!r})")
        elif organisation not in ORGANISATIONS:
            raise ValueError(f"organisation must be one of {ORGANISATIONS}, not {organisation!r}")
        if isinstance(pipeline, bool) or not isinstance(pipeline, int) or pipeline not in PIPELINE_DEPTHS:
            raise ValueError(f"pipeline must be one of {PIPELINE_DEPTHS}, not {pipeline!r}")
        if accumulation not in ACCUMULATIONS:
            raise ValueError(f"accumulation must be one of {ACCUMULATIONS}, not {accumulation!r}")
        groups = tree_groups(block_size)
        if tree_group is None:
            tree_group = default_tree_group(block_size)
        elif isinstance(tree_group, bool) or tree_group not in groups:
            raise ValueError(f"tree_group must be one of {groups} for block_size={block_size}, "
                             f"not {tree_group!r}")
        elif pipeline < 3:
            raise ValueError(f"tree_group applies to pipeline >= 3 (got pipeline={pipeline})")
        elif tree_group == 1 and pipeline > 3:
            raise ValueError(f"tree_group=1 cuts where pipeline 4 registers the multipliers' "
                             f"outputs: use it with pipeline=3 (got pipeline={pipeline})")
        if isinstance(fp4_rate, bool) or fp4_rate not in FP4_RATES:
            raise ValueError(f"fp4_rate must be one of {FP4_RATES}, not {fp4_rate!r}")
        if fp4_rate == 2 and (formats, organisation, accumulation) != ("mixed", "split", "exact"):
            raise ValueError(f"fp4_rate=2 needs formats='mixed', organisation='split' and "
                             f"accumulation='exact' (got formats={formats!r}, organisation="
                             f"{organisation!r}, accumulation={accumulation!r}): the two terms of "
                             f"a beat are summed exactly, which FP32 accumulation's order forbids")
        self.fp4_rate = fp4_rate
        self.tree_group = tree_group
        self.block_size, self.formats = block_size, formats
        self.organisation, self.pipeline = organisation, pipeline
        self.accumulation = accumulation
        accumulator = FP32Accumulator if accumulation == "fp32" else ExactAccumulator
        self.latency = pipeline + accumulator.latency
        self.scale_kind = {"mixed": "flagged", "fp8": "fp8", "fp4": "nvfp4"}[formats]
        self.term_lsb = 2 * OPERAND_LSB
        self.term_width = self.accumulator_width = None
        if accumulation == "exact":
            top = max_term(block_size, supported_modes(formats), self.term_lsb)
            self.term_width = top.bit_length() + 1  # with a sign bit
            self.accumulator_width = self.term_width + (EXACT_MAX_BLOCKS - 1).bit_length()

        element_width = E2M1.width if formats == "fp4" else E4M3.width
        block = block_layout(element_width, block_size, flag=formats == "mixed",
                             scale=formats != "fp8", second_scale=fp4_rate == 2)
        fields = {"w": block, "a": block, "last": unsigned(1)}
        if fp4_rate == 2:
            fields["dual"] = unsigned(1)
        self.input_layout = data.StructLayout(fields)
        super().__init__({
            "i": In(stream.Signature(self.input_layout)),
            "o": Out(stream.Signature(_FP32_LAYOUT)),
        })

    @property
    def params(self) -> dict:
        p = {"block_size": self.block_size, "formats": self.formats, "pipeline": self.pipeline,
             "accumulation": self.accumulation}
        if self.pipeline >= 3:
            p["tree_group"] = self.tree_group
        if self.organisation:
            p["organisation"] = self.organisation
        if self.fp4_rate != 1:
            p["fp4_rate"] = self.fp4_rate
        return p

    def _lanes(self, m, name, fmt, narrow, w, a, w_narrow=None, a_narrow=None):
        lanes = MultiplierLanes(fmt, self.block_size, narrow=narrow)
        m.submodules[f"lanes_{name}"] = lanes
        m.d.comb += [lanes.w.eq(w), lanes.a.eq(a)]
        if narrow is not None:
            m.d.comb += [lanes.w_narrow.eq(w_narrow), lanes.a_narrow.eq(a_narrow)]
        return lanes

    def elaborate(self, platform):
        m = Module()
        bs = self.block_size
        exact = self.accumulation == "exact"
        # the lanes of the one-format units, and the lanes that tree_group cuts
        p_fmt = E2M1 if self.formats == "fp4" else E4M3
        kind, term_lsb, term_width = self.scale_kind, self.term_lsb, self.term_width
        if exact:
            acc = ExactAccumulator(self.accumulator_width, term_lsb, terms=self.fp4_rate)
        else:
            acc = FP32Accumulator()
        m.submodules.accumulator = acc
        advance = acc.i.ready  # global stall: everything moves only when the output can
        m.d.comb += self.i.ready.eq(advance)
        x = self.i.payload

        def stage(values: dict, enabled: bool, valid):
            """Registers ``values`` and the valid bit when ``enabled``; passes them otherwise.

            Data registers load only with a valid pair, and in "split" a side's registers
            (``*_e2m1*`` / ``*_e4m3*``) only with a pair of that side, and a double-rate beat's
            second pair's (``*_second*``) only with a ``dual`` beat, so idle registers hold
            and are clock-gated (their outputs are not selected downstream)."""
            if not enabled:
                return dict(values), valid
            side_of = {}
            if split and "fp4_operands" in values:  # FP4xFP4 pairs are the pairs with two E2M1 operands
                both = values["fp4_operands"] == 2
                side_of = {"e2m1": both, "e4m3": ~both}
            if "dual" in values:
                side_of["second"] = values["dual"]
            regs = {}
            for name, v in values.items():
                # no reset: a stage's data is only used with its valid bit (which has one), and
                # reset-less registers that share an enable can be clock-gated
                regs[name] = r = Signal.like(v, name=f"{name}_s", reset_less=True)
                load = advance & valid
                for side, active in side_of.items():
                    if f"_{side}" in name:
                        load = load & active
                with m.If(load):
                    m.d.sync += r.eq(v)
            v_reg = Signal(name="valid_s")
            with m.If(advance):
                m.d.sync += v_reg.eq(valid)
            return regs, v_reg

        # ---- multipliers
        mixed = self.formats == "mixed"
        split = self.organisation == "split"
        sides = []  # (lanes, element format whose lsb the products are in, name)
        dual = None  # a double-rate beat: two FP4xFP4 pairs
        if not mixed:
            fmt = E2M1 if self.formats == "fp4" else E4M3
            name = fmt.name.lower()
            sides.append((self._lanes(m, name, fmt, None, x.w.codes, x.a.codes), fmt, name))
        elif split:
            both_fp4 = ~x.w.fp8 & ~x.a.fp8

            def nibbles(codes, which):
                return Cat(*(getattr(data.View(FP4_PAIR_CODE, codes[i]), which) for i in range(bs)))
            sides.append((self._lanes(m, "e2m1", E2M1, None,
                                      _isolate(nibbles(x.w.codes, "first"), both_fp4),
                                      _isolate(nibbles(x.a.codes, "first"), both_fp4)),
                          E2M1, "e2m1"))
            sides.append((self._lanes(m, "e4m3", E4M3, E2M1,
                                      _isolate(x.w.codes.as_value(), ~both_fp4),
                                      _isolate(x.a.codes.as_value(), ~both_fp4),
                                      ~x.w.fp8, ~x.a.fp8), E4M3, "e4m3"))
            if self.fp4_rate == 2:
                dual = x.dual & both_fp4
                sides.append((self._lanes(m, "second", E2M1, None,
                                          _isolate(nibbles(x.w.codes, "second"), dual),
                                          _isolate(nibbles(x.a.codes, "second"), dual)),
                              E2M1, "second"))
        else:
            sides.append((self._lanes(m, "e4m3", E4M3, E2M1, x.w.codes, x.a.codes,
                                      ~x.w.fp8, ~x.a.fp8), E4M3, "e4m3"))

        vals = {}
        for lanes, fmt, name in sides:
            vals[f"mantissas_{name}"] = lanes.mantissas.as_value()
            vals[f"shifts_{name}"] = lanes.shifts.as_value()
        m.submodules.scale_decode = dec = ScaleDecode(kind)
        if kind != "fp8":
            m.d.comb += [dec.w_scale.eq(x.w.scale), dec.a_scale.eq(x.a.scale)]
        if kind == "flagged":
            m.d.comb += [dec.w_fp8.eq(x.w.fp8), dec.a_fp8.eq(x.a.fp8)]
        nans = [dec.nan, *(lanes.nan for lanes, _, _ in sides)]
        if dual is not None:  # the second pair's scales: NVFP4 always
            m.submodules.scale_decode_second = dec2 = ScaleDecode("nvfp4")
            m.d.comb += [dec2.w_scale.eq(_isolate(x.w.second_scale, dual)),
                         dec2.a_scale.eq(_isolate(x.a.second_scale, dual))]
            nans.append(dec2.nan & dual)
        vals["nan"] = Cat(*nans).any()
        vals["last"] = x.last
        vals.update(smant=dec.smant, sshift=dec.sshift)
        if dual is not None:
            vals.update(smant_second=dec2.smant, sshift_second=dec2.sshift, dual=dual)
        if mixed:  # E2M1 operands on the E4M3 grid: the term stage drops their low zero bits
            vals["fp4_operands"] = (~x.w.fp8).as_unsigned() + (~x.a.fp8).as_unsigned()
        vals, valid = stage(vals, self.pipeline >= 4, self.i.valid)

        # ---- adder trees, cut at pipeline >= 3: groups of tree_group products summed,
        # registered, then the group sums summed; tree_group 1 registers the lanes' products
        # before their shifters (9 + 5 bits per E4M3 lane instead of 37). The split unit's E2M1
        # lanes register their whole sum at the cut: their products are 4x narrower, and their
        # 16-input tree is shorter than the E4M3 lanes' tree of a group.
        cut = self.pipeline >= 3
        leaf_cut = cut and self.tree_group == 1

        def shifted(lanes, name):
            m.submodules[f"lanes_{name}_shift"] = shift = ProductShift(lanes)
            m.d.comb += [shift.mantissas.eq(vals.pop(f"mantissas_{name}")),
                         shift.shifts.eq(vals.pop(f"shifts_{name}"))]
            return shift.products.as_value(), shift.product_width

        def summed(inputs, width, count, tree_name):
            m.submodules[tree_name] = tree = AdderTree(width, count)
            m.d.comb += tree.inputs.eq(inputs)
            return tree.sum

        groups = {}
        for lanes, fmt, name in sides:
            if leaf_cut and fmt is p_fmt:
                continue  # registered as they are, shifted after the cut
            groups[name] = group = self.tree_group if cut and fmt is p_fmt else bs
            products, width = shifted(lanes, name)
            for g in range(bs // group):
                tree_name = f"tree_{name}_{g}" if group < bs else f"tree_{name}"
                vals[f"part_{name}_{g}"] = summed(
                    products[g * group * width:(g + 1) * group * width], width, group, tree_name)
        vals, valid = stage(vals, cut, valid)

        # ---- the group sums summed
        sums = {}
        for lanes, fmt, name in sides:
            if name not in groups:  # the leaf cut: all block_size products summed here
                products, width = shifted(lanes, name)
                sums[name] = summed(products, width, bs, f"tree_{name}")
                continue
            parts = [vals.pop(f"part_{name}_{g}") for g in range(bs // groups[name])]
            if len(parts) == 1:
                sums[name] = parts[0]
                continue
            sums[name] = summed(Cat(*parts), len(parts[0]), len(parts), f"tree_{name}")
        # ---- in "split" each side's sum is registered as it is (an FP4 pair clocks its 13 bits,
        # not the 41 of the E4M3 grid)
        if split:  # each side's scale mantissa too, so that an idle side's multiplier holds
            smant = vals.pop("smant")
            vals.update(product_e2m1=sums["e2m1"], product_e4m3=sums["e4m3"],
                        smant_e2m1=smant, smant_e4m3=smant)
        else:
            vals["product"] = sums[p_fmt.name.lower()]
        if dual is not None:  # on the E2M1 grid: its term needs no widening undone
            vals["product_second"] = sums["second"]
        vals, valid = stage(vals, self.pipeline >= 2, valid)

        # ---- block-scale product. In "split" each side has its own: the FP4 sum's 13 bits are
        # not sign-extended through the E4M3 side's 41-bit multiplier; the FP4 product is then put
        # onto the E4M3 grid (as if both operands had been widened, which the term stage undoes)
        # and selected. Each multiplier's inputs are its side's registers, which hold while the
        # side is idle.
        if split:
            m.submodules.scale_e2m1 = sc4 = BlockScale(len(vals["product_e2m1"]))
            m.submodules.scale = sc = BlockScale(len(vals["product_e4m3"]))
            m.d.comb += [sc4.product.eq(vals["product_e2m1"]), sc4.smant.eq(vals["smant_e2m1"]),
                         sc.product.eq(vals["product_e4m3"]), sc.smant.eq(vals["smant_e4m3"])]
            if exact:  # the FP4 product goes on alone, aligned after the term register
                product_scaled = sc.scaled
            else:
                align = 2 * _WIDEN_BITS
                product_scaled = Signal(signed(max(sc.scaled_width, sc4.scaled_width + align)),
                                        name="product_scaled")
                m.d.comb += product_scaled.eq(Mux(vals["fp4_operands"] == 2, sc4.scaled << align,
                                                  sc.scaled))
        else:
            m.submodules.scale = sc = BlockScale(len(vals["product"]))
            m.d.comb += [sc.product.eq(vals["product"]), sc.smant.eq(vals["smant"])]
            product_scaled = sc.scaled
        scaled_width = len(product_scaled)
        # split + exact: an FP4 pair's 21-bit product travels on the E2M1 side and is aligned in
        # the accumulator's cycle (as the second pair's is), so it clocks 26 bits, not a 48-bit
        # term; the E4M3 side's registers hold meanwhile
        narrow_fp4 = split and exact
        scaled = {("scaled_e4m3" if narrow_fp4 else "scaled"): product_scaled,
                  "shift": vals["sshift"], "nan": vals["nan"], "last": vals["last"],
                  **({"fp4_operands": vals["fp4_operands"]} if mixed else {})}
        if narrow_fp4:
            scaled["scaled_e2m1"] = sc4.scaled
        if dual is not None:
            m.submodules.scale_second = sc2 = BlockScale(len(vals["product_second"]))
            m.d.comb += [sc2.product.eq(vals["product_second"]),
                         sc2.smant.eq(vals["smant_second"])]
            scaled.update(scaled_second=sc2.scaled, shift_second=vals["sshift_second"],
                          dual=vals["dual"])
        vals, valid = stage(scaled, self.pipeline >= 5, valid)

        # ---- the block term: rounded to FP32, or aligned onto the exact accumulator's grid
        widen_bits = _WIDEN_BITS if mixed else 0
        if exact:
            to_term = TermAlign(scaled_width, term_width, widen_bits)
            term = Signal(fixed_term_layout(term_width))
        else:
            to_term = TermToFP32(scaled_width, term_lsb, widen_bits)
            term = Signal(fp32_term_layout())
        m.submodules.to_term = to_term
        m.d.comb += [to_term.scaled.eq(vals["scaled_e4m3" if narrow_fp4 else "scaled"]),
                     to_term.shift.eq(vals["shift"]),
                     term.value.eq(to_term.term), term.nan.eq(vals["nan"]),
                     term.last.eq(vals["last"])]
        if mixed:
            m.d.comb += to_term.narrowed.eq(vals["fp4_operands"])
        if narrow_fp4:  # the E4M3 side's term and the FP4 product registered apart (by side)
            terms = {"term_e4m3": term.value, "nan": vals["nan"], "last": vals["last"],
                     "fp4_operands": vals["fp4_operands"], "scaled_e2m1": vals["scaled_e2m1"],
                     "shift_e2m1": vals["shift"]}
        else:
            terms = {"term": term}
        if dual is not None:  # registered before its alignment: 26 bits instead of the term's 60
            terms.update(scaled_second=vals["scaled_second"], shift_second=vals["shift_second"],
                         dual=vals["dual"])
        vals, valid = stage(terms, True, valid)

        # ---- accumulation
        if narrow_fp4:
            m.submodules.to_term_e2m1 = tt4 = TermAlign(sc4.scaled_width, term_width)
            m.d.comb += [tt4.scaled.eq(vals["scaled_e2m1"]), tt4.shift.eq(vals["shift_e2m1"]),
                         acc.i.payload.value.eq(Mux(vals["fp4_operands"] == 2, tt4.term,
                                                    vals["term_e4m3"])),
                         acc.i.payload.nan.eq(vals["nan"]), acc.i.payload.last.eq(vals["last"])]
        else:
            t = vals["term"]  # field by field: the exact accumulator's sum is wider than a term
            m.d.comb += [acc.i.payload.value.eq(t.value), acc.i.payload.nan.eq(t.nan),
                         acc.i.payload.last.eq(t.last)]
        m.d.comb += acc.i.valid.eq(valid)
        if dual is not None:  # the second pair's term onto the same grid; its registers hold
            # between dual beats, so the term is zeroed there
            m.submodules.to_term_second = tt2 = TermAlign(sc2.scaled_width, term_width)
            m.d.comb += [tt2.scaled.eq(vals["scaled_second"]), tt2.shift.eq(vals["shift_second"]),
                         acc.i.payload.second.eq(Mux(vals["dual"], tt2.term, 0))]
        wiring.connect(m, wiring.flipped(self.o), acc.o)
        return m


def _isolate(value, enable):
    """Operand isolation: ``value`` when enabled, zero otherwise, so idle lanes do not toggle."""
    return Mux(enable, value, 0)
