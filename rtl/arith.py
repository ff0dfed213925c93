"""Arithmetic building blocks shared by the mpgen datapaths.

Everything here is derived from the :class:`mpgen.golden.formats.FloatFormat` objects, so a format's
widths, bias and NaN rule are written down once.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from mpgen.golden.formats import FP32, FloatFormat

__all__ = [
    "float_layout", "UnpackedElement", "unpack", "widen", "leading_zeros", "round_significand", "ToFP32", "FP32Adder",
]


def float_layout(fmt: FloatFormat) -> data.StructLayout:
    """Bit layout of a code of ``fmt``: mantissa in the LSBs, then exponent, then sign."""
    fields = {"mantissa": unsigned(fmt.man_bits), "exponent": unsigned(fmt.exp_bits)}
    if fmt.signed:
        fields["sign"] = unsigned(1)
    return data.StructLayout(fields)


class UnpackedElement:
    """A finite code as ``(-1)**sign · mant · 2**shift · 2**fmt.lsb_exponent``.

    ``mant`` carries the hidden bit (``man_bits + 1`` wide); ``shift = max(exponent, 1) - 1``, so
    normals and subnormals share one rule. ``nan`` is 1 for the format's NaN codes.
    """

    def __init__(self, fmt, sign, mant, shift, nan):
        self.fmt, self.sign, self.mant, self.shift, self.nan = fmt, sign, mant, shift, nan


def unpack(fmt: FloatFormat, code) -> UnpackedElement:
    """Combinational decode of a code (a Value of ``fmt.width`` bits) into mant/shift form."""
    view = data.View(float_layout(fmt), code[:fmt.width])
    exp, man = view.exponent, view.mantissa
    normal = exp != 0
    mant = Cat(man, normal)
    shift = Mux(normal, exp - 1, 0)[:fmt.exp_bits]
    sign = view.sign if fmt.signed else Const(0, 1)
    if fmt.nan == "all_ones":
        nan = code[:fmt.magnitude_width] == fmt.nan_code
    elif fmt.nan == "ieee":
        nan = (exp == fmt.max_exp_field) & (man != 0)
    else:
        nan = Const(0, 1)
    return UnpackedElement(fmt, sign, mant, shift, nan)


def widen(elem: UnpackedElement, to: FloatFormat) -> UnpackedElement:
    """Re-express an unpacked element of a narrower format in the mant/shift form of ``to``.

    The mantissa is left-aligned to ``to``'s width and the shift absorbs the difference of the two
    formats' lsb exponents, so the value is unchanged (E2M1 → E4M3: mant << 2, shift + 6).
    """
    frm = elem.fmt
    dm = to.man_bits - frm.man_bits
    dshift = frm.lsb_exponent - to.lsb_exponent - dm
    if dm < 0 or dshift < 0:
        raise ValueError(f"cannot widen {frm.name} to {to.name}")
    mant = Cat(Const(0, dm), elem.mant)
    shift = (elem.shift + dshift)[:to.exp_bits]
    return UnpackedElement(to, elem.sign, mant, shift, elem.nan)


def leading_zeros(m: Module, value, width: int, name: str):
    """Signal holding the count of leading zeros of ``value[:width]`` (``width`` when zero)."""
    lz = Signal(range(width + 1), name=name)
    m.d.comb += lz.eq(width)
    for i in range(width):  # later (higher) bits take priority
        with m.If(value[i]):
            m.d.comb += lz.eq(width - 1 - i)
    return lz


def round_significand(m: Module, keep, guard, sticky, name: str = "rounded"):
    """Round-to-nearest-even of a normalised significand: ``(fraction, carry)``.

    ``keep`` is the hidden bit and the fraction bits kept, ``guard`` the next bit, ``sticky``
    the OR of the bits below. The increment is guard and (sticky or keep's LSB odd); ``carry``
    is set when it carries into a new binade (the caller adds it to the exponent), and
    ``fraction`` is then the kept fraction bits of the rounded value.
    """
    n = len(keep) - 1
    rounded = Signal(n + 2, name=name)
    m.d.comb += rounded.eq(keep + (guard & (sticky | keep[0])))
    carry = rounded[n + 1]
    return Mux(carry, rounded[1:n + 1], rounded[:n]), carry


_FP32_LAYOUT = float_layout(FP32)
_FP32_MAN = FP32.man_bits
_FP32_EMAX = FP32.max_exp_field


class ToFP32(wiring.Component):
    """Rounds ``(-1)**sign · magnitude · 2**exponent`` to FP32, round-to-nearest-even.

    Combinational. ``magnitude`` is an unsigned integer of ``width`` bits, ``exponent`` a signed
    integer of ``exp_width`` bits. Zero gives +0; results beyond FP32's range round to ±Inf. Below
    FP32's normal range results flush to ±0, or with ``subnormals`` are rounded (RNE) to FP32's
    subnormals or ±0 as IEEE 754 specifies: the significand is shifted right to the exponent
    field 0 before the rounding, and a subnormal that rounds up to 2**-126 becomes that normal.
    """

    def __init__(self, width: int, exp_width: int = 10, subnormals: bool = False):
        if width < _FP32_MAN + 3:
            raise ValueError(f"ToFP32 width must be at least {_FP32_MAN + 3}")
        if not isinstance(subnormals, bool):
            raise TypeError(f"subnormals must be a bool, not {subnormals!r}")
        self.width, self.exp_width, self.subnormals = width, exp_width, subnormals
        super().__init__({
            "sign": In(1),
            "magnitude": In(width),
            "exponent": In(signed(exp_width)),
            "result": Out(_FP32_LAYOUT),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.width
        lz = leading_zeros(m, self.magnitude, w, "lz")
        norm = Signal(w)
        m.d.comb += norm.eq(self.magnitude << lz)  # MSB now at bit w-1
        if self.subnormals:
            return self._elaborate_subnormals(m, lz, norm)
        keep = norm[w - _FP32_MAN - 1:]            # 24 bits incl. the hidden one
        guard = norm[w - _FP32_MAN - 2]
        sticky = norm[:w - _FP32_MAN - 2].any()
        frac, carry = round_significand(m, keep, guard, sticky)
        # value = norm · 2**(exponent - lz); its leading one weighs 2**(exponent + w - 1 - lz).
        biased = Signal(signed(self.exp_width + 3))
        m.d.comb += biased.eq(self.exponent + (w - 1 + FP32.bias) - lz + carry)
        r = self.result
        m.d.comb += r.sign.eq(self.sign)
        with m.If(self.magnitude == 0):
            m.d.comb += r.sign.eq(0)
        with m.Elif(biased >= _FP32_EMAX):
            m.d.comb += r.exponent.eq(_FP32_EMAX)
        with m.Elif(biased > 0):
            m.d.comb += [r.exponent.eq(biased), r.mantissa.eq(frac)]
        return m

    def _elaborate_subnormals(self, m, lz, norm):
        w, M = self.width, _FP32_MAN
        # the exponent field of the leading one before rounding; below 1 the significand is
        # shifted right onto field 0's grid (at most w places: beyond, all of it is sticky)
        lead = Signal(signed(self.exp_width + 3))
        m.d.comb += lead.eq(self.exponent + (w - 1 + FP32.bias) - lz)
        sub = lead < 1
        under = Signal(signed(self.exp_width + 4))
        m.d.comb += under.eq(1 - lead)
        dist = Signal(range(w + 1))
        m.d.comb += dist.eq(Mux(sub, Mux(under > w, w, under), 0))
        den = Signal(w)
        m.d.comb += den.eq(norm >> dist)
        lost = (den << dist)[:w] != norm
        keep = den[w - M - 1:]  # 24 bits; the hidden one is 0 when sub
        guard = den[w - M - 2]
        sticky = den[:w - M - 2].any() | lost
        rounded = Signal(M + 2, name="rounded")
        m.d.comb += rounded.eq(keep + (guard & (sticky | keep[0])))
        carry = rounded[M + 1]
        field = Signal(signed(self.exp_width + 4))
        # a subnormal's field is 0, or 1 where it rounded up to the smallest normal
        m.d.comb += field.eq(Mux(sub, rounded[M], lead + carry))
        r = self.result
        m.d.comb += r.sign.eq(self.sign)
        with m.If(self.magnitude == 0):
            m.d.comb += r.sign.eq(0)
        with m.Elif(field >= _FP32_EMAX):
            m.d.comb += r.exponent.eq(_FP32_EMAX)
        with m.Else():
            m.d.comb += [r.exponent.eq(field),
                         r.mantissa.eq(Mux(carry, rounded[1:M + 1], rounded[:M]))]
        return m


class FP32Adder(wiring.Component):
    """IEEE 754 binary32 addition, round-to-nearest-even, combinational.

    Normal numbers, zeros and infinities are handled exactly as IEEE specifies; exact cancellation
    gives +0 and overflow gives ±Inf. Subnormal inputs are read as zero and subnormal results
    flush to zero: the accumulators that use this adder never reach that range (documented in
    ``docs/numerics.md`` and asserted by the golden model). NaN inputs are not handled here:
    callers carry NaN as a separate flag.

    The classic three-extra-bit (guard, round, sticky) datapath: swap so that ``|a| >= |b|``,
    shift the smaller right with a sticky bit folded into its LSB, add or subtract, normalise,
    round.

    With ``ieee`` (the MX units' accumulator) subnormals are IEEE 754's: a subnormal input is its
    fraction at exponent field 1 without the hidden bit, and a result below 2**-126 is left
    with field 0 (the normalising shift stops at field 1). Such a result is always exact (a sum
    of two floats below the normal range is representable), so it needs no rounding. ``invalid``
    is then an output: ±Inf + ∓Inf, which IEEE makes NaN (the caller's NaN flag).
    """

    def __init__(self, ieee: bool = False):
        if not isinstance(ieee, bool):
            raise TypeError(f"ieee must be a bool, not {ieee!r}")
        self.ieee = ieee
        members = {"a": In(_FP32_LAYOUT), "b": In(_FP32_LAYOUT), "sum": Out(_FP32_LAYOUT)}
        if ieee:
            members["invalid"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        M = _FP32_MAN
        W = M + 4  # hidden bit + fraction + guard/round/sticky

        a_mag = Cat(self.a.mantissa, self.a.exponent)
        b_mag = Cat(self.b.mantissa, self.b.exponent)
        swap = b_mag > a_mag
        big = Signal(_FP32_LAYOUT)
        small = Signal(_FP32_LAYOUT)
        m.d.comb += [big.eq(Mux(swap, self.b, self.a)), small.eq(Mux(swap, self.a, self.b))]

        def significand(x):  # hidden bit, fraction, three zero bits; subnormals read as 0
            if self.ieee:  # ... or as their fraction without the hidden bit
                return Cat(Const(0, 3), x.mantissa, x.exponent != 0)
            return Mux(x.exponent != 0, Cat(Const(0, 3), x.mantissa, Const(1, 1)), 0)

        def field(x):  # the exponent the significand is at: subnormals at 1 with ieee
            return Mux(x.exponent == 0, 1, x.exponent) if self.ieee else x.exponent

        big_m = Signal(W)
        small_m = Signal(W)
        m.d.comb += [big_m.eq(significand(big)), small_m.eq(significand(small))]
        big_e = field(big)
        if self.ieee:
            big_e = Signal(8, name="big_e")
            m.d.comb += big_e.eq(field(big))
        d = Signal(range(W + 1))  # alignment distance, clamped: beyond W everything is lost
        diff = Signal(8)
        m.d.comb += [diff.eq(big_e - field(small)), d.eq(Mux(diff > W, W, diff))]
        shifted = Signal(W)
        lost = Signal()
        m.d.comb += [
            shifted.eq(small_m >> d),
            lost.eq((shifted << d)[:W] != small_m),  # any bit shifted out → sticky
        ]
        aligned = Cat(lost | shifted[0], shifted[1:])

        subtract = big.sign ^ small.sign
        total = Signal(W + 1)
        m.d.comb += total.eq(Mux(subtract, big_m - aligned, big_m + aligned))

        # Normalise: a carry moves right by one (sticky kept); otherwise move left by the count
        # of leading zeros (only ever > 1 when the exponents differ by <= 1: then no bit was lost).
        lz = leading_zeros(m, total, W + 1, "lz")
        if self.ieee:  # stop at field 1: below it the result is subnormal (and exact)
            lz_used = Signal.like(lz, name="lz_used")
            m.d.comb += lz_used.eq(Mux(lz > big_e, big_e, lz))
            lz = lz_used
        norm = Signal(W + 1)
        m.d.comb += norm.eq(Mux(total[W], Cat(total[0] | total[1], total[2:]), (total << lz)[1:W + 2]))
        exp = Signal(signed(11))
        m.d.comb += exp.eq(big_e + 1 - lz)

        keep = norm[3:W]       # hidden bit + 23 fraction bits
        guard = norm[2]
        sticky = norm[0] | norm[1]
        frac, carry = round_significand(m, keep, guard, sticky)
        final_exp = Signal(signed(11))
        m.d.comb += final_exp.eq(exp + carry)

        s = self.sum
        with m.If(big.exponent == _FP32_EMAX):           # ±Inf (+ finite) stays ±Inf
            m.d.comb += [s.sign.eq(big.sign), s.exponent.eq(_FP32_EMAX)]
        with m.Elif(total == 0):                          # exact cancellation or 0 + 0: +0
            m.d.comb += s.eq(0)
        with m.Elif(final_exp >= _FP32_EMAX):
            m.d.comb += [s.sign.eq(big.sign), s.exponent.eq(_FP32_EMAX)]
        with m.Elif(final_exp > 0):
            # with ieee, no hidden bit after normalising: a subnormal result, field 0
            e = Mux(norm[W - 1], final_exp, 0) if self.ieee else final_exp
            m.d.comb += [s.sign.eq(big.sign), s.exponent.eq(e), s.mantissa.eq(frac)]
        with m.Else():                                    # below the normal range: flush to +0
            m.d.comb += s.eq(0)
        if self.ieee:
            m.d.comb += self.invalid.eq((self.a.exponent == _FP32_EMAX)
                                        & (self.b.exponent == _FP32_EMAX)
                                        & (self.a.sign != self.b.sign))
        return m
