"""FGMP mixed-precision block dot-product unit.

``BlockDotProduct`` streams pairs of (weight, activation) blocks. Each block is NVFP4 (E2M1
elements with a UE4M3 block scale) or FP8 (E4M3 elements, implicit block scale 6), chosen per block
by a flag. The unit computes each block's dot product exactly in fixed point, multiplies it by the
exact block-scale product, rounds that term once to FP32 and accumulates terms in FP32 until a block
pair marked ``last`` closes the dot product. Numerics: :mod:`mpgen.golden.dotprod` (the
specification) and ``docs/numerics.md``.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mpgen.golden.constants import BLOCK_SIZES, FP8_IMPLICIT_SCALE_CODE
from mpgen.golden.formats import E2M1, E4M3, FP32, UE4M3

from .arith import FP32Adder, ToFP32, float_layout, unpack, widen

__all__ = ["BlockDotProduct", "MultiplierLanes", "AdderTree", "BlockScale", "FP32Accumulator",
           "FORMAT_SETS", "ORGANISATIONS", "PIPELINE_DEPTHS"]

FORMAT_SETS = ("mixed", "fp8", "fp4")
ORGANISATIONS = ("split", "shared")
PIPELINE_DEPTHS = (1, 2, 3)

_FP32_LAYOUT = float_layout(FP32)


def _max_shift(fmt):
    return fmt.max_exp_field - 1


def _product_bits(fmt):
    """Magnitude bits of one lane product (hardware worst case, NaN codes included)."""
    return 2 * (fmt.man_bits + 1) + 2 * _max_shift(fmt)


def block_layout(element_width: int, block_size: int, *, flag: bool, scale: bool):
    """One operand block: element codes, optional FP8 flag, optional UE4M3 scale."""
    fields = {"codes": data.ArrayLayout(unsigned(element_width), block_size)}
    if flag:
        fields["fp8"] = unsigned(1)
    if scale:
        fields["scale"] = unsigned(UE4M3.width)
    return data.StructLayout(fields)


class MultiplierLanes(wiring.Component):
    """``block_size`` sign-magnitude multipliers of one element format, combinational.

    Lane ``i`` computes ``w[i]·a[i]`` exactly, as a signed integer in units of
    ``2**(2·fmt.lsb_exponent)``: the hidden-bit mantissas are multiplied and the product shifted
    by the sum of the two ``max(exponent, 1) - 1`` shifts. With ``narrow`` set, lanes of format
    E4M3 read an operand's low 4 bits as E2M1 and widen it (exact), so FP4 blocks can share FP8
    lanes. ``nan`` is set when any lane sees a NaN code of an operand that is not narrow.
    """

    def __init__(self, fmt, block_size: int, *, narrow=None):
        if fmt not in (E2M1, E4M3):
            raise ValueError(f"MultiplierLanes supports E2M1 and E4M3 lanes, not {fmt.name}")
        if narrow is not None and narrow is not E2M1:
            raise ValueError("only E2M1 operands can be widened onto lanes")
        self.fmt, self.block_size, self.narrow = fmt, block_size, narrow
        self.product_width = _product_bits(fmt) + 1
        codes = data.ArrayLayout(unsigned(fmt.width), block_size)
        members = {
            "w": In(codes), "a": In(codes),
            "products": Out(data.ArrayLayout(signed(self.product_width), block_size)),
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
            mag = Signal(_product_bits(self.fmt), name=f"mag{i}")
            m.d.comb += mag.eq((wm * am) << (wsh + ash))
            m.d.comb += self.products[i].eq(Mux(ws ^ as_, -mag, mag))
            nans += [wn, an]
        m.d.comb += self.nan.eq(Cat(*nans).any())
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


class BlockScale(wiring.Component):
    """Multiplies an exact block dot product by the exact block-scale product and rounds to FP32.

    Combinational. ``product`` is the block dot product in units of ``2**product_lsb``. Each
    operand's scale is its UE4M3 ``scale`` code, or the implicit FP8 scale when its ``fp8`` flag
    is set (``scales="flagged"``); ``scales="fp8"`` hard-wires the implicit scale (FP8-only unit)
    and ``scales="nvfp4"`` always uses the codes. ``nan`` reports a NaN scale on an NVFP4 block.
    """

    def __init__(self, product_width: int, product_lsb: int, scales: str):
        if scales not in ("flagged", "fp8", "nvfp4"):
            raise ValueError(f"scales must be 'flagged', 'fp8' or 'nvfp4', not {scales!r}")
        self.product_width, self.product_lsb, self.scales = product_width, product_lsb, scales
        members = {"product": In(signed(product_width)), "term": Out(_FP32_LAYOUT), "nan": Out(1)}
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
        return u.mant, u.shift, u.nan & ~fp8

    def elaborate(self, platform):
        m = Module()
        wm, wsh, wn = self._scale("w")
        am, ash, an = self._scale("a")
        mant_bits = 2 * (UE4M3.man_bits + 1)
        smant = Signal(mant_bits)
        sshift = Signal(UE4M3.exp_bits + 1)
        m.d.comb += [smant.eq(wm * am), sshift.eq(wsh + ash)]

        width = max(self.product_width - 1 + mant_bits, FP32.man_bits + 3)
        m.submodules.to_fp32 = conv = ToFP32(width)
        p = self.product
        m.d.comb += [
            conv.sign.eq(p[-1]),
            conv.magnitude.eq(Mux(p[-1], -p, p) * smant),
            conv.exponent.eq(sshift + (self.product_lsb + 2 * UE4M3.lsb_exponent)),
            self.term.eq(conv.result),
            self.nan.eq(wn | an),
        ]
        return m


_TERM_LAYOUT = data.StructLayout({"value": _FP32_LAYOUT, "nan": unsigned(1), "last": unsigned(1)})


class FP32Accumulator(wiring.Component):
    """Accumulates FP32 block terms and emits one FP32 result per dot product.

    Each accepted term is added to the running sum with :class:`FP32Adder` (RNE); a term with
    ``last`` set produces ``sum + term`` on ``o`` (or NaN 0x7FC00000 if any term of the dot
    product was NaN) and clears the sum to +0. One cycle from an accepted term to a registered
    result; ``i.ready`` is low only while a result waits on ``o``.
    """

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(_TERM_LAYOUT)),
            "o": Out(stream.Signature(_FP32_LAYOUT)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.adder = adder = FP32Adder()
        acc = Signal(_FP32_LAYOUT)
        acc_nan = Signal()
        m.d.comb += [
            adder.a.eq(acc),
            adder.b.eq(self.i.payload.value),
            self.i.ready.eq(~self.o.valid | self.o.ready),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            nan = acc_nan | self.i.payload.nan
            with m.If(self.i.payload.last):
                m.d.sync += [
                    self.o.valid.eq(1),
                    self.o.payload.eq(Mux(nan, FP32.nan_code, adder.sum.as_value())),
                    acc.eq(0),
                    acc_nan.eq(0),
                ]
            with m.Else():
                m.d.sync += [acc.eq(adder.sum), acc_nan.eq(nan)]
        return m


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
    pipeline : 1, 2 or 3
        Register stages before the accumulator: 1 = after the FP32 rounding of the block term;
        2 = also after the adder tree; 3 = also after the multipliers.

    Ports
    -----
    i : stream of block pairs: ``w`` and ``a`` blocks (``codes``: 8-bit E4M3 codes, or E2M1
        codes in the low 4 bits for NVFP4 blocks; 4-bit codes in the "fp4" unit; ``fp8`` flag
        ("mixed" only); ``scale`` UE4M3 code (not in "fp8"), ignored for FP8 blocks) and ``last``.
    o : stream of FP32 results, one per dot product (the block pairs up to one with ``last``).

    Throughput one block pair per cycle; latency ``pipeline + 1`` cycles from the handshake of a
    ``last`` pair to ``o.valid``. A result not taken on ``o`` stalls the whole pipeline.
    """

    def __init__(self, block_size: int = 16, formats: str = "mixed", organisation: str | None = None,
                 pipeline: int = 2):
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
        self.block_size, self.formats = block_size, formats
        self.organisation, self.pipeline = organisation, pipeline
        self.latency = pipeline + 1

        element_width = E2M1.width if formats == "fp4" else E4M3.width
        block = block_layout(element_width, block_size, flag=formats == "mixed",
                             scale=formats != "fp8")
        self.input_layout = data.StructLayout({"w": block, "a": block, "last": unsigned(1)})
        super().__init__({
            "i": In(stream.Signature(self.input_layout)),
            "o": Out(stream.Signature(_FP32_LAYOUT)),
        })

    @property
    def params(self) -> dict:
        p = {"block_size": self.block_size, "formats": self.formats, "pipeline": self.pipeline}
        if self.organisation:
            p["organisation"] = self.organisation
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
        m.submodules.accumulator = acc = FP32Accumulator()
        advance = acc.i.ready  # global stall: everything moves only when the output can
        m.d.comb += self.i.ready.eq(advance)
        x = self.i.payload

        def stage(values: dict, enabled: bool, valid):
            """Registers ``values`` and the valid bit when ``enabled``; passes them otherwise."""
            if not enabled:
                return dict(values), valid
            regs = {}
            for name, v in values.items():
                # no reset: a stage's data is only used with its valid bit (which has one), and
                # reset-less registers that share an enable can be clock-gated
                regs[name] = r = Signal.like(v, name=f"{name}_s", reset_less=True) \
                    if isinstance(v, Signal) else Signal(v.shape(), name=f"{name}_s", reset_less=True)
                with m.If(advance):
                    m.d.sync += r.eq(v)
            v_reg = Signal(name="valid_s")
            with m.If(advance):
                m.d.sync += v_reg.eq(valid)
            return regs, v_reg

        # ---- multipliers
        mixed = self.formats == "mixed"
        sides = []  # (lanes, element format whose lsb the products are in)
        if not mixed:
            fmt = E2M1 if self.formats == "fp4" else E4M3
            sides.append((self._lanes(m, fmt.name.lower(), fmt, None, x.w.codes, x.a.codes), fmt))
        elif self.organisation == "split":
            both_fp4 = ~x.w.fp8 & ~x.a.fp8
            w4 = Cat(*(x.w.codes[i][:E2M1.width] for i in range(bs)))
            a4 = Cat(*(x.a.codes[i][:E2M1.width] for i in range(bs)))
            sides.append((self._lanes(m, "e2m1", E2M1, None, _isolate(w4, both_fp4),
                                      _isolate(a4, both_fp4)), E2M1))
            sides.append((self._lanes(m, "e4m3", E4M3, E2M1,
                                      _isolate(x.w.codes.as_value(), ~both_fp4),
                                      _isolate(x.a.codes.as_value(), ~both_fp4),
                                      ~x.w.fp8, ~x.a.fp8), E4M3))
        else:
            sides.append((self._lanes(m, "e4m3", E4M3, E2M1, x.w.codes, x.a.codes,
                                      ~x.w.fp8, ~x.a.fp8), E4M3))

        vals = {f"products_{fmt.name.lower()}": lanes.products.as_value() for lanes, fmt in sides}
        vals["nan"] = Cat(*(lanes.nan for lanes, _ in sides)).any()
        vals["last"] = x.last
        if mixed:
            vals.update(w_fp8=x.w.fp8, a_fp8=x.a.fp8)
        if self.formats != "fp8":
            vals.update(w_scale=x.w.scale, a_scale=x.a.scale)
        vals, valid = stage(vals, self.pipeline >= 3, self.i.valid)

        # ---- adder trees; in "split" the FP4 sum is aligned onto the E4M3 grid and selected
        sums = {}
        for lanes, fmt in sides:
            name = fmt.name.lower()
            m.submodules[f"tree_{name}"] = tree = AdderTree(lanes.product_width, bs)
            m.d.comb += tree.inputs.eq(vals.pop(f"products_{name}"))
            sums[fmt] = tree.sum
        p_fmt = E4M3 if E4M3 in sums else E2M1
        if len(sums) == 2:
            align = 2 * (E2M1.lsb_exponent - E4M3.lsb_exponent)
            both_fp4 = ~vals["w_fp8"] & ~vals["a_fp8"]
            product = Mux(both_fp4, sums[E2M1] << align, sums[E4M3])
            p_width = max(len(sums[E4M3]), len(sums[E2M1]) + align)
        else:
            product = sums[p_fmt]
            p_width = len(product)
        vals["product"] = Signal(signed(p_width), name="product")
        m.d.comb += vals["product"].eq(product)
        vals, valid = stage(vals, self.pipeline >= 2, valid)

        # ---- block-scale product and rounding of the block term to FP32
        kind = {"mixed": "flagged", "fp8": "fp8", "fp4": "nvfp4"}[self.formats]
        m.submodules.scale = sc = BlockScale(p_width, 2 * p_fmt.lsb_exponent, kind)
        m.d.comb += sc.product.eq(vals["product"])
        if kind != "fp8":
            m.d.comb += [sc.w_scale.eq(vals["w_scale"]), sc.a_scale.eq(vals["a_scale"])]
        if kind == "flagged":
            m.d.comb += [sc.w_fp8.eq(vals["w_fp8"]), sc.a_fp8.eq(vals["a_fp8"])]
        term = Signal(_TERM_LAYOUT)
        m.d.comb += [term.value.eq(sc.term), term.nan.eq(vals["nan"] | sc.nan),
                     term.last.eq(vals["last"])]
        vals, valid = stage({"term": term}, True, valid)

        # ---- FP32 accumulation
        m.d.comb += [acc.i.valid.eq(valid), acc.i.payload.eq(vals["term"])]
        wiring.connect(m, wiring.flipped(self.o), acc.o)
        return m


def _isolate(value, enable):
    """Operand isolation: ``value`` when enabled, zero otherwise, so idle lanes do not toggle."""
    return Mux(enable, value, 0)
