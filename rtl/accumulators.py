"""Accumulators of the block dot-product unit: FP32 (one rounding per term) and exact (one rounding).

Both take a stream of block terms and emit one FP32 result per dot product (the terms up to one
with ``last``); NaN travels as a flag and gives the canonical NaN 0x7FC00000. Numerics:
``docs/numerics.md`` rules 5 and 5' and :func:`mpgen.golden.dotprod.dot_products`.
"""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mpgen.golden.formats import FP32

from .arith import FP32Adder, float_layout, leading_zeros, round_significand

__all__ = ["FP32Accumulator", "ExactAccumulator", "fp32_term_layout", "fixed_term_layout"]

_FP32_LAYOUT = float_layout(FP32)


def fp32_term_layout() -> data.StructLayout:
    """A block term rounded to FP32, its NaN flag and the ``last`` mark of its dot product."""
    return data.StructLayout({"value": _FP32_LAYOUT, "nan": unsigned(1), "last": unsigned(1)})


def fixed_term_layout(width: int, terms: int = 1) -> data.StructLayout:
    """An exact block term (two's complement, in units of 2**lsb), its NaN flag and ``last``;
    with ``terms=2`` a ``second`` term beside ``value`` (both are added in the same cycle)."""
    fields = {"value": signed(width), "nan": unsigned(1), "last": unsigned(1)}
    if terms == 2:
        fields["second"] = signed(width)
    elif terms != 1:
        raise ValueError(f"terms must be 1 or 2, not {terms!r}")
    return data.StructLayout(fields)


class FP32Accumulator(wiring.Component):
    """Accumulates FP32 block terms and emits one FP32 result per dot product.

    Each accepted term is added to the running sum with :class:`FP32Adder` (RNE); a term with
    ``last`` set produces ``sum + term`` on ``o`` (or NaN 0x7FC00000 if any term of the dot
    product was NaN) and clears the sum to +0. One cycle from an accepted term to a registered
    result; ``i.ready`` is low only while a result waits on ``o``. The adder is in the loop: the
    unit's clock cannot be shorter than one FP32 addition. With ``ieee`` (the MX units) the adder
    is :class:`FP32Adder` ``(ieee=True)``: IEEE subnormals, and ±Inf + ∓Inf makes the result NaN.

    Members
    -------
    latency : int
        Cycles from the handshake of a ``last`` term to ``o.valid``: 1.
    """

    latency = 1

    def __init__(self, ieee: bool = False):
        self.ieee = ieee  # FP32Adder(ieee): subnormals, and ±Inf + ∓Inf sets the NaN flag
        super().__init__({
            "i": In(stream.Signature(fp32_term_layout())),
            "o": Out(stream.Signature(_FP32_LAYOUT)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.adder = adder = FP32Adder(ieee=self.ieee)
        acc = Signal(_FP32_LAYOUT)
        acc_nan = Signal()
        # no reset on the result register (only o.valid has one): Yosys can then clock-gate it
        out = Signal(_FP32_LAYOUT, name="result", reset_less=True)
        m.d.comb += self.o.payload.eq(out)
        m.d.comb += [
            adder.a.eq(acc),
            adder.b.eq(self.i.payload.value),
            self.i.ready.eq(~self.o.valid | self.o.ready),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            nan = acc_nan | self.i.payload.nan
            if self.ieee:
                nan = nan | adder.invalid
            with m.If(self.i.payload.last):
                m.d.sync += [
                    self.o.valid.eq(1),
                    out.eq(Mux(nan, FP32.nan_code, adder.sum.as_value())),
                    acc.eq(0),
                    acc_nan.eq(0),
                ]
            with m.Else():
                m.d.sync += [acc.eq(adder.sum), acc_nan.eq(nan)]
        return m


class ExactAccumulator(wiring.Component):
    """Sums fixed-point block terms exactly and rounds each dot product once to FP32 (RNE).

    The running sum is a ``width``-bit two's complement integer kept in segments of at most
    ``segment`` bits whose carries are registered (carry-save between segments), so the loop is
    one ``segment``-bit addition however wide the sum is. The cycle after a term with ``last``,
    a three-stage rounding pipeline takes the sum: resolve the carries into sign and magnitude,
    normalise, round.
    ``width`` must cover the largest sum (the caller sizes it from the largest term and
    :data:`mpgen.golden.constants.EXACT_MAX_BLOCKS`); results are exact below that.

    Parameters
    ----------
    width : int
        Bits of the sum (two's complement), and of the terms on ``i``.
    lsb_exponent : int
        The terms' and the sum's step is ``2**lsb_exponent``.
    segment : int
        Bits per carry segment of the loop adder.
    terms : int
        Terms added per cycle: 1, or 2 (the payload's ``value`` and ``second``; each segment then
        adds three operands and carries up to 2 into the next).

    Members
    -------
    latency : int
        Cycles from the handshake of a ``last`` term to ``o.valid``: 4. Throughput one term per
        cycle; a result not taken on ``o`` stalls everything (``i.ready`` low).
    """

    latency = 4

    def __init__(self, width: int, lsb_exponent: int, segment: int = 24, terms: int = 1):
        for name, v, lo in (("width", width, FP32.man_bits + 3), ("segment", segment, 2)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, not {v!r}")
        if not isinstance(lsb_exponent, int) or isinstance(lsb_exponent, bool):
            raise TypeError(f"lsb_exponent must be an integer, not {lsb_exponent!r}")
        self.width, self.lsb_exponent, self.segment = width, lsb_exponent, segment
        self.terms = terms
        super().__init__({  # fixed_term_layout refuses a terms other than 1 or 2
            "i": In(stream.Signature(fixed_term_layout(width, terms))),
            "o": Out(stream.Signature(_FP32_LAYOUT)),
        })

    def elaborate(self, platform):
        m = Module()
        w, seg = self.width, self.segment
        M = FP32.man_bits
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        take = self.i.valid & advance
        bounds = [(lo, min(lo + seg, w)) for lo in range(0, w, seg)]
        terms = [self.i.payload.value.as_unsigned()]
        if self.terms == 2:
            terms.append(self.i.payload.second.as_unsigned())
        cw = self.terms  # bits of a segment's carry: at most 1 with one term, 2 with two

        # ---- loop: every segment adds its slice of the terms and the carry below it. A finished
        # sum stays in the loop registers for the cycle after its last term (``done``), where the
        # rounding pipeline reads it; the next term then starts from zero.
        sums = Signal(w, name="sum_segments")
        carries = Signal(max(len(bounds) - 1, 1) * cw, name="sum_carries")
        acc_nan, done = Signal(), Signal()
        new_sums, new_carries = [], []
        for j, (lo, hi) in enumerate(bounds):
            cin = Mux(done, 0, carries[(j - 1) * cw:j * cw]) if j else 0
            s = Signal(hi - lo + cw, name=f"seg{j}")
            total = Mux(done, 0, sums[lo:hi])
            for x in terms:
                total = total + x[lo:hi]
            m.d.comb += s.eq(total + cin)
            new_sums.append(s[:hi - lo])
            if j < len(bounds) - 1:
                new_carries.append(s[hi - lo:])
        with m.If(advance):
            m.d.sync += done.eq(take & self.i.payload.last)
            with m.If(take):
                m.d.sync += [sums.eq(Cat(*new_sums)),
                             acc_nan.eq(Mux(done, 0, acc_nan) | self.i.payload.nan)]
                if new_carries:
                    m.d.sync += carries.eq(Cat(*new_carries))
            with m.Elif(done):
                m.d.sync += [sums.eq(0), carries.eq(0), acc_nan.eq(0)]

        # ---- rounding pipeline. Data registers load only with a result (clock-gated between
        # results); the valid bits move with the pipeline.
        def stage(valid_in, values: dict):
            valid = Signal(name=f"{next(iter(values))}_valid")
            regs = {k: Signal.like(v, name=k, reset_less=True) for k, v in values.items()}
            with m.If(advance):
                m.d.sync += valid.eq(valid_in)
            with m.If(advance & valid_in):
                m.d.sync += [regs[k].eq(v) for k, v in values.items()]
            return valid, regs

        # stage 1: sign and magnitude of the sum with its pending segment carries C resolved.
        # Both |S + C| candidates at once, one adder each: S + C, and -(S + C) = ~S + (1 - C)
        # (two's complement, mod 2**w; 1 - C is a function of the few carry bits alone).
        carry_value = 0  # each segment's carry sits at the next segment's lsb: they never overlap
        for j in range(len(bounds) - 1):
            carry_value = carry_value | (carries[j * cw:(j + 1) * cw] << bounds[j + 1][0])
        pos, neg, one_minus_c = Signal(w, name="pos"), Signal(w, name="neg"), Signal(w)
        m.d.comb += [pos.eq(sums + carry_value), one_minus_c.eq(1 - carry_value),
                     neg.eq(~sums + one_minus_c)]
        negative = pos[-1]
        v1, r1 = stage(done, {"mag": Mux(negative, neg, pos), "mag_sign": negative,
                              "mag_nan": acc_nan})

        # stage 2: normalise; keep the 24 result bits, the guard bit and a sticky bit
        lz = leading_zeros(m, r1["mag"], w, "lz")
        norm = Signal(w, name="norm")
        m.d.comb += norm.eq(r1["mag"] << lz)
        v2, r2 = stage(v1, {"top": norm[w - M - 2:], "sticky": norm[:w - M - 2].any(),
                            "lz": lz, "zero": ~norm[-1], "sign": r1["mag_sign"],
                            "nan": r1["mag_nan"]})

        # stage 3 (the output register): round to nearest even, exponent, pack
        frac, carry = round_significand(m, r2["top"][1:], r2["top"][0], r2["sticky"])
        biased = Signal(signed(16))
        m.d.comb += biased.eq((w - 1 + self.lsb_exponent + FP32.bias) - r2["lz"] + carry)
        result = Signal(_FP32_LAYOUT)
        with m.If(~r2["zero"]):  # non-zero: the documented range is FP32-normal
            m.d.comb += [result.sign.eq(r2["sign"]), result.exponent.eq(biased),
                         result.mantissa.eq(frac)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        # the result register has no reset (only o.valid does), so that Yosys can clock-gate it:
        # it loads once per dot product instead of being clocked every cycle
        out = Signal(_FP32_LAYOUT, name="result", reset_less=True)
        m.d.comb += self.o.payload.eq(out)
        with m.If(advance & v2):
            m.d.sync += [self.o.valid.eq(1),
                         out.eq(Mux(r2["nan"], FP32.nan_code, result.as_value()))]
        return m
