"""FGMP activation block classifier (``ActivationClassifier``).

Streams blocks of 16 activations (BF16, FP16 or FP32) and emits each block quantized either as
NVFP4 (E2M1 codes, UE4M3 block scale) or as FP8 (E4M3 codes, implicit scale 6), chosen by a
Fisher-weighted score of the NVFP4-versus-FP8 difference against a programmable threshold. The
output stream is the activation half of :class:`mpgen.rtl.dotprod.BlockDotProduct`'s input.
Numerics: :mod:`mpgen.golden.classifier` (the specification) and ``docs/classifier.md``.

Hardware recipe (no divider, no FP multiplier; every step exact):

* ``x' = x·2**-p`` is an exponent offset: each element is ``mant · 2**ex`` with an integer
  ``ex = shift + lsb − p``.
* FP8 code ``E4M3(x'/6)``: the normalised mantissa's top bits and the element's exponent give
  the binade and the rounding position; the rounded significand ``RNE(A/3)`` comes from a table
  of ``floor(2·A)`` (7 bits) and a sticky bit (RNE, saturating).
* Block scale ``UE4M3(amax'/6)`` = the largest E4M3 magnitude code of the block (RNE is monotone).
* E2M1 code ``E2M1(x'/s_b)``: ``|x'|`` in units of ``s_b``'s step/4, saturated to 9 bits with a
  sticky bit, compared with ``S·{1, 3, 5, 7, 10, 14, 20}`` (the E2M1 midpoints × 4; ``≥`` where
  the tie goes up to an even code, ``>`` or sticky where it goes down).
* Score ``acc = Σ D_i²·Fm_i·2**Fsh_i`` and FP8 iff ``acc > threshold >> 2·shift(s_b)``.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from mpgen.golden.classifier_config import INPUT_FORMATS, ClassifierConfig
from mpgen.golden.constants import BLOCK, FP8_IMPLICIT_SCALE_CODE
from mpgen.golden.formats import E2M1, E4M3, UE4M3

from .arith import leading_zeros, unpack
from .dotprod import block_layout

__all__ = ["ActivationClassifier", "FP8Encode", "BlockScaleMax", "InputMax", "FP4Encode",
           "ScoreDiff", "ScoreAccumulate", "FisherTableMemory", "above_threshold", "rne_third",
           "square", "CFG_FISHER", "CFG_THRESHOLD", "CFG_SCALE_EXP", "output_layout", "LATENCY",
           "CYCLES_PER_BLOCK"]

#: Configuration write kinds (``cfg.payload.kind``).
CFG_FISHER, CFG_THRESHOLD, CFG_SCALE_EXP = 0, 1, 2
#: Cycles from an input handshake to the block on ``o`` (with ``o.ready`` high), one block per cycle.
LATENCY = 3
#: The ``cycles_per_block`` choices: the lane count 16 / C is a whole number.
CYCLES_PER_BLOCK = (1, 2, 4, 8, 16)

_MAG_BITS = E4M3.magnitude_width           # 7: E4M3 magnitude = UE4M3 code
_E2M1_MIDPOINTS_X4 = [int(2 * (E2M1.value(k) + E2M1.value(k + 1))) for k in range(E2M1.max_code)]
#: Tie at midpoint k goes up iff code k+1 is even (RNE).
_E2M1_TIE_UP = [(k + 1) % 2 == 0 for k in range(E2M1.max_code)]
_E2M1_TWICE = [E2M1.fixed_point(k)[0] for k in range(E2M1.max_code + 1)]  # 2·value of magnitude k
_V_BITS = (15 * max(_E2M1_MIDPOINTS_X4)).bit_length()  # |x'| in s_b-step/4 units, saturated


def output_layout():
    """Output payload: the activation block (``block_layout(8, 16, flag, scale)``) and ``last``."""
    return data.StructLayout({"block": block_layout(E4M3.width, BLOCK, flag=True, scale=True),
                              "last": unsigned(1)})


def _arr(shape, n=BLOCK):
    return data.ArrayLayout(shape, n)


def rne_third(b: int, sticky: int) -> int:
    """``RNE(A / 3)`` for ``A = b/2`` plus a non-zero remainder below ``1/2`` when ``sticky``:
    the rounding of :class:`FP8Encode`'s lookup table (``b < 96``, so the result is ≤ 16)."""
    q, r = divmod(b, 6)                     # A/3 = q + r/6 (+ a sticky fraction below 1/6)
    if r > 3 or (r == 3 and sticky):
        return q + 1
    return q + (q & 1) if r == 3 else q     # exactly a half: to even


class FP8Encode(wiring.Component):
    """Per lane: unpack an input code, form ``ex = shift + lsb − p`` and round ``x'/6`` to E4M3.

    Combinational. Outputs per lane: ``c8`` (E4M3 code, sign included; a NaN/±Inf input gives the
    E4M3 NaN code with its sign), ``mant`` and ``ex`` (``|x'| = mant·2**ex``), ``sign`` and ``bad``
    (NaN or ±Inf input).

    No divider: with the mantissa normalised (``M``, ``mw`` bits, top bit 1), ``x'/6`` lies in the
    binade given by ``M``'s top two bits, and its E4M3 ulp is ``3·2**s`` in ``M``'s units, with
    ``s`` fixed by those bits and by how far below E4M3's smallest normal the value lies (``d``).
    The rounded significand is then ``RNE(A/3)`` with ``A = M / 2**s``: ``A`` is below 48, so
    ``floor(2·A)`` (7 bits) and a sticky bit for the rest decide it exactly (a rounding threshold
    ``3·(2j+1)/2`` is a multiple of 1/2), a 192-entry table (:func:`rne_third`).
    """

    def __init__(self, cfg: ClassifierConfig, lanes: int = BLOCK):
        self.cfg, self.lanes = cfg, lanes
        fmt = cfg.input_format
        self.mant_bits = fmt.man_bits + 1
        lo = fmt.lsb_exponent - cfg.p_range[1]
        hi = fmt.max_exp_field - 1 + fmt.lsb_exponent - cfg.p_range[0]
        self.ex_shape = signed(max(abs(lo), abs(hi)).bit_length() + 2)
        super().__init__({
            "x": In(_arr(unsigned(fmt.width), lanes)),
            "p": In(signed(cfg.p_bits)),
            "c8": Out(_arr(unsigned(E4M3.width), lanes)),
            "mant": Out(_arr(unsigned(self.mant_bits), lanes)),
            "ex": Out(_arr(self.ex_shape, lanes)),
            "sign": Out(_arr(unsigned(1), lanes)),
            "bad": Out(_arr(unsigned(1), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        fmt = self.cfg.input_format
        mw = self.mant_bits
        base = mw - 7                   # A·2 = M >> (base + k), k = top + d in 0..6
        mb8 = E4M3.man_bits
        top_exp = (1 << E4M3.exp_bits) - 1
        for i in range(self.lanes):
            u = unpack(fmt, self.x[i])
            view = self.x[i]
            bad = view[fmt.man_bits:fmt.man_bits + fmt.exp_bits] == fmt.max_exp_field
            ex = Signal(self.ex_shape, name=f"ex{i}")
            m.d.comb += ex.eq(u.shift + fmt.lsb_exponent - self.p)
            lz = leading_zeros(m, u.mant, mw, f"lz{i}")
            norm = Signal(mw, name=f"norm{i}")
            m.d.comb += norm.eq(u.mant << lz)
            top = Signal(name=f"top{i}")            # M >= 1.5·2**(mw-1): x'/6 in the upper binade
            m.d.comb += top.eq(norm[mw - 1] & norm[mw - 2])
            # x'/6 lies in [2**L, 2**(L+1)), L = ex − lz + mw − 4 + top; ef = L + bias − 1 is its
            # E4M3 exponent field minus one, so that a normal code is ef·8 + RNE(A/3) (8..16)
            ef = Signal(signed(len(ex) + 3), name=f"ef{i}")
            m.d.comb += ef.eq(ex - lz + top + (mw - 4) + (E4M3.bias - 1))
            d = Signal(range(6), name=f"d{i}")      # subnormal depth, 5 = rounds to 0
            m.d.comb += d.eq(Mux(ef >= 0, 0, Mux(ef < -5, 5, (-ef)[:3])))
            k = Signal(range(7), name=f"k{i}")
            m.d.comb += k.eq(top + d)
            upper = norm[base:]                     # 7 bits
            b = Signal(7, name=f"b{i}")
            m.d.comb += b.eq(upper >> k)
            lost = Signal(7, name=f"lost{i}")
            m.d.comb += lost.eq((Const(1, 7) << k) - 1)
            sticky = Signal(name=f"sticky{i}")
            m.d.comb += sticky.eq(((upper & lost) != 0) | (norm[:base] != 0 if base else 0))
            rounded = Signal(5, name=f"r{i}")
            with m.Switch(Cat(sticky, b)):
                for key in range(2 * 96):
                    with m.Case(key):
                        m.d.comb += rounded.eq(rne_third(key >> 1, key & 1))
            mag = Signal(_MAG_BITS, name=f"mag{i}")
            code = Signal(range(top_exp * 8 + 17), name=f"code{i}")
            m.d.comb += code.eq(Mux(ef > 0, ef[:E4M3.exp_bits] << mb8, 0) + rounded)
            with m.If(u.mant == 0):
                m.d.comb += mag.eq(0)
            with m.Elif((ef > top_exp) | (code > E4M3.max_code)):
                m.d.comb += mag.eq(E4M3.max_code)
            with m.Else():
                m.d.comb += mag.eq(code[:_MAG_BITS])
            m.d.comb += [
                self.c8[i].eq(Cat(Mux(bad, E4M3.nan_code, mag), u.sign)),
                self.mant[i].eq(u.mant), self.ex[i].eq(ex),
                self.sign[i].eq(u.sign), self.bad[i].eq(bad),
            ]
        return m


def _max_tree(m, values, width):
    """The largest of ``values`` (unsigned, ``width`` bits) through a balanced tree of
    compare-and-select nodes ``max{depth}_{j}``; combinational."""
    level, depth = list(values), 0
    while len(level) > 1:
        nxt = []
        for j in range(0, len(level) - 1, 2):
            s = Signal(width, name=f"max{depth}_{j // 2}")
            m.d.comb += s.eq(Mux(level[j] > level[j + 1], level[j], level[j + 1]))
            nxt.append(s)
        if len(level) % 2:
            nxt.append(level[-1])
        level, depth = nxt, depth + 1
    return level[0]


class BlockScaleMax(wiring.Component):
    """``s_b = UE4M3(amax'/6)`` as the largest E4M3 magnitude code of the block; combinational."""

    def __init__(self):
        super().__init__({"c8": In(_arr(unsigned(E4M3.width))), "scale": Out(UE4M3.width)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.scale.eq(_max_tree(m, [self.c8[i][:_MAG_BITS] for i in range(BLOCK)],
                                            _MAG_BITS))
        return m


class InputMax(wiring.Component):
    """The largest magnitude code of a block of input codes (sign cleared), combinational.

    IEEE-style codes order by magnitude as unsigned integers, and the E4M3 encoding of
    ``x'/6`` is monotone, so its code of this element is the largest E4M3 magnitude code of
    the block: the UE4M3 block scale (a NaN/±Inf element gives the NaN code, as in
    :class:`BlockScaleMax`; such a block is FP8 whatever its score).
    """

    def __init__(self, fmt):
        self.fmt = fmt
        super().__init__({"x": In(_arr(unsigned(fmt.width))),
                          "amax": Out(_arr(unsigned(fmt.width), 1))})

    def elaborate(self, platform):
        m = Module()
        mw = self.fmt.magnitude_width
        m.d.comb += self.amax[0].eq(_max_tree(m, [self.x[i][:mw] for i in range(BLOCK)], mw))
        return m


class FP4Encode(wiring.Component):
    """Per lane ``E2M1(x'/s_b)`` (magnitude code 0..7), combinational.

    ``|x'| = mant·2**ex`` is re-expressed in units of ``s_b``'s step/4 (``2**(shift + lsb − 2)``),
    saturated to 9 bits with a sticky bit for the bits shifted out, and compared with the seven
    thresholds ``S·midpoint·4``; ``s_b == 0`` gives 0.
    """

    def __init__(self, mant_bits: int, ex_shape, lanes: int = BLOCK):
        self.mant_bits, self.ex_shape, self.lanes = mant_bits, ex_shape, lanes
        super().__init__({
            "mant": In(_arr(unsigned(mant_bits), lanes)),
            "ex": In(_arr(ex_shape, lanes)),
            "scale": In(UE4M3.width),
            "c4": Out(_arr(unsigned(E2M1.magnitude_width), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        su = unpack(UE4M3, self.scale)
        thresholds = []
        for k, b in enumerate(_E2M1_MIDPOINTS_X4):
            t = Signal(_V_BITS, name=f"thr{k}")
            m.d.comb += t.eq(su.mant * b)
            thresholds.append(t)
        sat = (1 << _V_BITS) - 1
        mw = self.mant_bits
        for i in range(self.lanes):
            t = Signal(signed(len(self.ex[i]) + 2), name=f"t{i}")  # left shift of mant
            m.d.comb += t.eq(self.ex[i] - su.shift - (UE4M3.lsb_exponent - 2))
            left = Signal(range(_V_BITS + 1), name=f"lsh{i}")
            right = Signal(range(mw + 2), name=f"rsh{i}")
            m.d.comb += [
                left.eq(Mux(t < 0, 0, Mux(t > _V_BITS, _V_BITS, t[:len(left)]))),
                right.eq(Mux(t >= 0, 0, Mux(-t > mw + 1, mw + 1, (-t)[:len(right)]))),
            ]
            wide = Signal(mw + _V_BITS, name=f"wide{i}")
            m.d.comb += wide.eq((self.mant[i] << left) >> right)
            lostmask = Signal(mw + 2, name=f"lost{i}")
            m.d.comb += lostmask.eq((Const(1, mw + 2) << right) - 1)
            sticky = (self.mant[i] & lostmask) != 0
            v = Signal(_V_BITS, name=f"v{i}")
            m.d.comb += v.eq(Mux(wide > sat, sat, wide[:_V_BITS]))
            passed = []
            for thr, up in zip(thresholds, _E2M1_TIE_UP):
                passed.append((v >= thr) if up else ((v > thr) | ((v == thr) & sticky)))
            count = Signal(E2M1.magnitude_width, name=f"cnt{i}")
            m.d.comb += count.eq(sum(passed))
            m.d.comb += self.c4[i].eq(Mux(su.mant == 0, 0, count))
        return m


class ScoreDiff(wiring.Component):
    """Per lane ``|D| = min(floor(|Q4 − Q8| / 2**(e_ref−1−f)), 2**diff_bits − 1)``, combinational.

    In those units ``|Q4| = 2·E2M1(c4)·S·2**f`` and ``|Q8| = 3·m8·2**(sh8 − shift + 2 + f)``
    (truncated, with a flag for the fraction, where that exponent is negative).
    """

    def __init__(self, cfg: ClassifierConfig, lanes: int = BLOCK):
        self.cfg, self.lanes = cfg, lanes
        super().__init__({
            "c4": In(_arr(unsigned(E2M1.magnitude_width), lanes)),
            "c8": In(_arr(unsigned(E4M3.width), lanes)),
            "scale": In(UE4M3.width),
            "d": Out(_arr(unsigned(cfg.diff_bits), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        f = self.cfg.diff_frac_bits
        su = unpack(UE4M3, self.scale)
        top = 2 + f                                  # largest left shift of 3·m8
        width = (45 << top).bit_length() + 1
        twice = Const(sum(v << (4 * k) for k, v in enumerate(_E2M1_TWICE)), 4 * len(_E2M1_TWICE))
        n8_bits = (3 * 15).bit_length()
        for i in range(self.lanes):
            a = Signal(width, name=f"a{i}")
            m.d.comb += a.eq((twice.word_select(self.c4[i], 4) * su.mant) << f)
            u8 = unpack(UE4M3, self.c8[i][:_MAG_BITS])
            n8 = Signal(n8_bits, name=f"n8_{i}")
            m.d.comb += n8.eq(u8.mant * 3)
            # 3·m8 placed at its largest shift (top), then moved right by shift(s_b) − sh8 >= 0
            # (s_b is the block's largest code, so no element has a larger exponent)
            n8w = Cat(Const(0, top), n8)
            r = Signal(range(len(n8w) + 1), name=f"r{i}")
            dsh = Signal(signed(6), name=f"dsh{i}")
            m.d.comb += [dsh.eq(su.shift - u8.shift),
                         r.eq(Mux(dsh > len(n8w), len(n8w), dsh[:len(r)]))]
            b = Signal(width, name=f"b{i}")
            m.d.comb += b.eq(n8w >> r)
            fmask = Signal(len(n8w), name=f"fmask{i}")
            m.d.comb += fmask.eq((Const(1, len(n8w) + 1) << r) - 1)
            frac = Signal(name=f"frac{i}")
            m.d.comb += frac.eq((n8w & fmask) != 0)
            # one subtraction: u = a − ⌊b⌋ − frac is floor(a − b); if it is negative,
            # floor(b − a) = ⌊b⌋ − a = −u − frac = ~u + 1 − frac
            u = Signal(signed(width + 1), name=f"u{i}")
            m.d.comb += u.eq(a - b - frac)
            neg = u[-1]
            diff = Signal(width, name=f"diff{i}")
            m.d.comb += diff.eq((u ^ neg.replicate(width + 1))[:width] + (neg & ~frac))
            m.d.comb += self.d[i].eq(Mux(diff > self.cfg.diff_max, self.cfg.diff_max, diff))
        return m


class ScoreAccumulate(wiring.Component):
    """``acc = Σ D_i²·Fm_i·2**Fsh_i`` over ``lanes`` elements and the decision
    ``acc > threshold >> 2·shift``; combinational."""

    def __init__(self, cfg: ClassifierConfig, lanes: int = BLOCK):
        self.cfg, self.lanes = cfg, lanes
        super().__init__({
            "d": In(_arr(unsigned(cfg.diff_bits), lanes)),
            "fisher": In(_arr(unsigned(UE4M3.width), lanes)),
            "scale": In(UE4M3.width),
            "threshold": In(cfg.threshold_bits),
            "acc": Out(cfg.acc_bits),
            "fp8": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        term_bits = (cfg.diff_max ** 2 * cfg.fisher_term_max).bit_length()
        level = []
        for i in range(self.lanes):
            fu = unpack(UE4M3, self.fisher[i])
            sq = Signal(2 * cfg.diff_bits, name=f"sq{i}")
            m.d.comb += sq.eq(square(self.d[i]))
            term = Signal(term_bits, name=f"term{i}")
            m.d.comb += term.eq((sq * fu.mant) << fu.shift)
            level.append(term)
        depth = 0
        while len(level) > 1:
            nxt = []
            for j in range(0, len(level) - 1, 2):
                s = Signal(term_bits + depth + 1, name=f"sum{depth}_{j // 2}")
                m.d.comb += s.eq(level[j] + level[j + 1])
                nxt.append(s)
            level, depth = nxt, depth + 1
        su = unpack(UE4M3, self.scale)
        m.d.comb += [self.acc.eq(level[0]), self.fp8.eq(above_threshold(level[0], self.threshold, su))]
        return m


def square(value):
    """``value**2`` as the sum of a squarer's rows: bit i contributes ``2**(2i)`` and, with
    every higher bit j, ``2**(i+j+1)`` (each cross product once, where a multiplier would form
    ``x_i·x_j`` and ``x_j·x_i``), so about half a multiplier's partial products."""
    n = len(value)
    rows = [Mux(value[i], Cat(Const(1, 2), value[i + 1:]) << (2 * i), 0) for i in range(n)]
    return sum(rows[1:], rows[0])


def above_threshold(score, threshold, scale):
    """The FP8 decision: ``score > threshold >> 2·shift(s_b)`` (``scale``: the unpacked UE4M3 scale)."""
    return score > (threshold >> Cat(Const(0, 1), scale.shift))


class FisherTableMemory(wiring.Component):
    """The layer's Fisher table: ``depth`` words of 16 UE4M3 codes; one synchronous write port and
    one asynchronous read port (Yosys maps it to flip-flops and a read multiplexer)."""

    def __init__(self, depth: int):
        self.depth = depth
        self.addr_bits = max(1, (depth - 1).bit_length())
        word = BLOCK * UE4M3.width
        super().__init__({
            "we": In(1), "waddr": In(self.addr_bits), "wdata": In(word),
            "raddr": In(self.addr_bits), "rdata": Out(word),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=unsigned(len(self.wdata)), depth=self.depth, init=[])
        wp = mem.write_port()
        rp = mem.read_port(domain="comb")
        m.d.comb += [wp.en.eq(self.we), wp.addr.eq(self.waddr), wp.data.eq(self.wdata),
                     rp.addr.eq(self.raddr), self.rdata.eq(rp.data)]
        return m


class ActivationClassifier(wiring.Component):
    """FGMP activation block classifier: one block of 16 activations per ``cycles_per_block``.

    Parameters
    ----------
    input_format : "bf16" (default), "fp16" or "fp32"
    channels : int, multiple of 16 (default 64)
        K, the number of input channels (Fisher table entries); ``channels // 16`` table words.
    diff_frac_bits, diff_bits, p_bits : score path widths (:class:`ClassifierConfig`).
    cycles_per_block : 1 (default), 2, 4, 8 or 16
        1: every element has its own encoders and score lanes (three stages). C > 1: the
        block is time-multiplexed over ``16 / C`` lanes: it is buffered at the input (with its
        largest magnitude, whose E4M3 code is the block scale), then ``16 / C`` elements per
        cycle go through E4M3 encode, E2M1 encode and difference, and score, and the partial
        scores are summed exactly over the block's C cycles. The decisions and codes are the
        same bit for bit (the score is an exact integer sum; only its order changes). An
        activation block feeds every column of a dot-product array, so a classifier for a
        C-column array can take C cycles per block.

    Ports
    -----
    i : stream of ``values`` (16 input codes), ``index`` (which 16 channels, ``< channels/16``)
        and ``last`` (passed through).
    o : stream of :func:`output_layout`: ``block`` (``codes``: E4M3 codes, or E2M1 codes in the
        low 4 bits; ``fp8`` flag; ``scale`` UE4M3 code, ``FP8_IMPLICIT_SCALE_CODE`` for FP8 blocks)
        and ``last`` — the activation half of ``BlockDotProduct``'s input.
    cfg : stream of configuration writes: ``kind`` (CFG_FISHER: table word ``addr`` ← ``data``
        (16 codes, channel 16·addr + j at bits 7·j..); CFG_THRESHOLD; CFG_SCALE_EXP: ``p`` as a
        ``p_bits`` two's-complement number); kind 3 is accepted and ignored. A write is accepted
        only when no block is in the pipeline (``cfg.ready``); while ``cfg.valid`` is high no
        input is accepted, so writes take effect exactly between blocks in stream order.
        Threshold, p and the table survive ``rst`` (reset clears only the pipeline).

    Throughput one block per cycle (per C cycles with ``cycles_per_block`` C > 1); latency 3
    cycles (C + 3 with C > 1) from the input handshake to ``o.valid``; a block not taken on
    ``o`` stalls the whole pipeline (no drops).
    """

    def __init__(self, input_format: str = "bf16", channels: int = 64, diff_frac_bits: int = 3,
                 diff_bits: int = 9, p_bits: int = 8, cycles_per_block: int = 1):
        if not isinstance(input_format, str) or input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {sorted(INPUT_FORMATS)}, not {input_format!r}")
        if isinstance(channels, bool) or not isinstance(channels, int):
            raise TypeError(f"channels must be an int, got {type(channels).__name__}")
        if channels <= 0 or channels % BLOCK:
            raise ValueError(f"channels must be a positive multiple of {BLOCK}, not {channels}")
        if isinstance(cycles_per_block, bool) or cycles_per_block not in CYCLES_PER_BLOCK:
            raise ValueError(f"cycles_per_block must be one of {list(CYCLES_PER_BLOCK)}, "
                             f"not {cycles_per_block!r}")
        self.cycles_per_block = cycles_per_block
        self.config = ClassifierConfig(input_format=input_format, diff_frac_bits=diff_frac_bits,
                                    diff_bits=diff_bits, p_bits=p_bits)
        self.input_format, self.channels = input_format, channels
        self.words = channels // BLOCK
        self.latency = LATENCY if cycles_per_block == 1 else cycles_per_block + 3
        self.index_bits = max(1, (self.words - 1).bit_length())
        fmt = self.config.input_format
        self.input_layout = data.StructLayout({
            "values": _arr(unsigned(fmt.width)), "index": unsigned(self.index_bits), "last": unsigned(1)})
        self.output_layout = output_layout()
        self.cfg_layout = data.StructLayout({
            "kind": unsigned(2), "addr": unsigned(self.index_bits),
            "data": unsigned(max(BLOCK * UE4M3.width, self.config.threshold_bits, self.config.p_bits))})
        super().__init__({
            "i": In(stream.Signature(self.input_layout)),
            "o": Out(stream.Signature(self.output_layout)),
            "cfg": In(stream.Signature(self.cfg_layout)),
        })

    @property
    def params(self) -> dict:
        return {"input_format": self.input_format, "channels": self.channels,
                "diff_frac_bits": self.config.diff_frac_bits, "diff_bits": self.config.diff_bits,
                "p_bits": self.config.p_bits, "cycles_per_block": self.cycles_per_block}

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)  # global stall

        # ---- configuration registers (not reset: they hold the tensor's programming)
        threshold = Signal(cfg.threshold_bits, reset_less=True)
        p = Signal(signed(cfg.p_bits), reset_less=True)
        m.submodules.fisher_table = table = FisherTableMemory(self.words)
        busy = Signal()  # a block anywhere in the pipeline
        m.d.comb += [
            self.cfg.ready.eq(~busy & ~self.o.valid),
            table.waddr.eq(self.cfg.payload.addr),
            table.wdata.eq(self.cfg.payload.data),
        ]
        write = self.cfg.valid & self.cfg.ready
        m.d.comb += table.we.eq(write & (self.cfg.payload.kind == CFG_FISHER))
        with m.If(write & (self.cfg.payload.kind == CFG_THRESHOLD)):
            m.d.sync += threshold.eq(self.cfg.payload.data)
        with m.If(write & (self.cfg.payload.kind == CFG_SCALE_EXP)):
            m.d.sync += p.eq(self.cfg.payload.data[:cfg.p_bits])
        if self.cycles_per_block == 1:
            self._parallel(m, advance, busy, table, threshold, p)
        else:
            self._multiplexed(m, advance, busy, table, threshold, p)
        return m

    def _parallel(self, m, advance, busy, table, threshold, p):
        cfg = self.config
        v1, v2 = Signal(), Signal()
        m.d.comb += [busy.eq(v1 | v2), self.i.ready.eq(advance & ~self.cfg.valid)]

        # ---- stage 1: unpack, x' exponent, E4M3 codes
        m.submodules.fp8_encode = enc8 = FP8Encode(cfg)
        m.d.comb += [enc8.x.eq(self.i.payload.values), enc8.p.eq(p)]
        s1 = {name: Signal(getattr(enc8, name).shape(), name=f"{name}_s1")
              for name in ("c8", "mant", "ex", "sign", "bad")}
        index1, last1 = Signal(self.index_bits), Signal()
        with m.If(advance):
            m.d.sync += [v1.eq(self.i.valid & self.i.ready), index1.eq(self.i.payload.index),
                         last1.eq(self.i.payload.last)]
            m.d.sync += [s1[k].eq(getattr(enc8, k)) for k in s1]

        # ---- stage 2: block scale, E2M1 codes, differences
        m.submodules.scale_max = smax = BlockScaleMax()
        m.submodules.fp4_encode = enc4 = FP4Encode(enc8.mant_bits, enc8.ex_shape)
        m.submodules.score_diff = diff = ScoreDiff(cfg)
        m.d.comb += [
            smax.c8.eq(s1["c8"]),
            enc4.mant.eq(s1["mant"]), enc4.ex.eq(s1["ex"]), enc4.scale.eq(smax.scale),
            diff.c4.eq(enc4.c4), diff.c8.eq(s1["c8"]), diff.scale.eq(smax.scale),
        ]
        c8_2 = Signal(s1["c8"].shape())
        c4_2 = Signal(_arr(unsigned(E2M1.width)))
        d2 = Signal(diff.d.shape())
        index2 = Signal(self.index_bits)
        scale2, bad2, last2 = Signal(UE4M3.width), Signal(), Signal()
        with m.If(advance):
            m.d.sync += [v2.eq(v1), c8_2.eq(s1["c8"]), d2.eq(diff.d), index2.eq(index1),
                         scale2.eq(smax.scale), bad2.eq(s1["bad"].as_value().any()), last2.eq(last1)]
            m.d.sync += [c4_2[k].eq(Cat(enc4.c4[k], s1["sign"][k])) for k in range(BLOCK)]

        # ---- stage 3: Fisher-table read (here, not a stage earlier: no 112-bit register), score,
        # threshold compare, output register
        m.submodules.score_acc = acc = ScoreAccumulate(cfg)
        m.d.comb += table.raddr.eq(index2)
        m.d.comb += [acc.d.eq(d2), acc.fisher.eq(table.rdata), acc.scale.eq(scale2),
                     acc.threshold.eq(threshold)]
        fp8 = acc.fp8 | bad2
        with m.If(advance):
            m.d.sync += [
                self.o.valid.eq(v2),
                self.o.payload.last.eq(last2),
                self.o.payload.block.fp8.eq(fp8),
                self.o.payload.block.scale.eq(Mux(fp8, FP8_IMPLICIT_SCALE_CODE, scale2)),
            ]
            m.d.sync += [self.o.payload.block.codes[k].eq(Mux(fp8, c8_2[k], c4_2[k]))
                         for k in range(BLOCK)]

    def _multiplexed(self, m, advance, busy, table, threshold, p):
        cfg, fmt, C = self.config, self.config.input_format, self.cycles_per_block
        L = BLOCK // C

        def groups(shape):  # a block as C groups of L lanes
            return data.ArrayLayout(_arr(shape, L), C)

        # ---- input buffer: the block and its largest magnitude; group `group` is issued next
        full, group = Signal(), Signal(range(C))
        buf = Signal(groups(unsigned(fmt.width)), reset_less=True)
        buf_index, buf_last = Signal(self.index_bits, reset_less=True), Signal(reset_less=True)
        m.submodules.input_max = imax = InputMax(fmt)
        buf_max = Signal(imax.amax.shape(), reset_less=True)
        issue = full & advance
        final = group == C - 1
        m.d.comb += [imax.x.eq(self.i.payload.values),
                     self.i.ready.eq(advance & ~self.cfg.valid & (~full | final))]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [full.eq(1), buf.eq(self.i.payload.values.as_value()),
                         buf_index.eq(self.i.payload.index), buf_last.eq(self.i.payload.last),
                         buf_max.eq(imax.amax)]
        with m.Elif(issue & final):
            m.d.sync += full.eq(0)
        with m.If(issue):
            m.d.sync += group.eq(Mux(final, 0, group + 1))

        def stage(values, valid, n):
            """Lane stage ``n``: ``values`` registered on a valid group (data not reset: used
            only with its valid bit)."""
            regs = {k: Signal(v.shape(), name=f"{k}_r", reset_less=True) for k, v in values.items()}
            v = Signal(name=f"valid_{n}")
            with m.If(advance):
                m.d.sync += v.eq(valid)
            with m.If(advance & valid):
                m.d.sync += [regs[k].eq(values[k]) for k in values]
            return regs, v

        # ---- P1: E4M3 codes of one group, the block scale, the group's Fisher codes
        m.submodules.fp8_encode = enc8 = FP8Encode(cfg, L)
        m.submodules.scale_encode = enc_s = FP8Encode(cfg, 1)
        m.d.comb += [enc8.x.eq(buf[group]), enc8.p.eq(p), enc_s.x.eq(buf_max), enc_s.p.eq(p),
                     table.raddr.eq(buf_index)]
        fisher = data.View(groups(unsigned(UE4M3.width)), table.rdata)
        s1, v1 = stage({"c8": enc8.c8, "mant": enc8.mant, "ex": enc8.ex, "sign": enc8.sign,
                        "bad": enc8.bad.as_value().any(), "fisher": fisher[group],
                        "scale": enc_s.c8[0][:_MAG_BITS], "group": group, "final": final,
                        "last": buf_last}, issue, 0)

        # ---- P2: E2M1 codes and differences of the group
        m.submodules.fp4_encode = enc4 = FP4Encode(enc8.mant_bits, enc8.ex_shape, L)
        m.submodules.score_diff = diff = ScoreDiff(cfg, L)
        m.d.comb += [enc4.mant.eq(s1["mant"]), enc4.ex.eq(s1["ex"]), enc4.scale.eq(s1["scale"]),
                     diff.c4.eq(enc4.c4), diff.c8.eq(s1["c8"]), diff.scale.eq(s1["scale"])]
        c4 = Signal(_arr(unsigned(E2M1.width), L))
        m.d.comb += [c4[k].eq(Cat(enc4.c4[k], s1["sign"][k])) for k in range(L)]
        s2, v2 = stage({"d": diff.d, "c8": s1["c8"], "c4": c4, "fisher": s1["fisher"],
                        "scale": s1["scale"], "bad": s1["bad"], "group": s1["group"],
                        "final": s1["final"], "last": s1["last"]}, v1, 1)
        m.d.comb += busy.eq(full | v1 | v2)

        # ---- P3: the group's score added to the block's; each group's E4M3 codes go straight
        # into the output register (the block before was taken in the same cycle, or the whole
        # pipeline stalls), its E2M1 codes into an assembly register; at the final group the
        # decision, and the E2M1 codes replace the E4M3 ones where the block is NVFP4
        m.submodules.score_acc = acc = ScoreAccumulate(cfg, L)
        m.d.comb += [acc.d.eq(s2["d"]), acc.fisher.eq(s2["fisher"]), acc.scale.eq(s2["scale"]),
                     acc.threshold.eq(threshold)]
        first = s2["group"] == 0
        score, bad = Signal(cfg.acc_bits, reset_less=True), Signal(reset_less=True)
        total, any_bad = Signal(cfg.acc_bits), Signal()
        m.d.comb += [total.eq(Mux(first, 0, score) + acc.acc), any_bad.eq((bad & ~first) | s2["bad"])]
        asm4 = Signal(data.ArrayLayout(_arr(unsigned(E2M1.width), L), C - 1), reset_less=True)
        step = advance & v2
        final2 = s2["final"]
        with m.If(step):
            m.d.sync += [score.eq(total), bad.eq(any_bad)]
        fp8 = above_threshold(total, threshold, unpack(UE4M3, s2["scale"])) | any_bad
        with m.If(advance):
            m.d.sync += self.o.valid.eq(v2 & final2)
        # not reset (a reset flop with an enable cannot be clock-gated): used only with o.valid
        out = Signal(self.output_layout, reset_less=True)
        m.d.comb += self.o.payload.eq(out)
        with m.If(step & final2):
            m.d.sync += [
                out.last.eq(s2["last"]),
                out.block.fp8.eq(fp8),
                out.block.scale.eq(Mux(fp8, FP8_IMPLICIT_SCALE_CODE, s2["scale"])),
            ]
        codes = out.block.codes
        for g in range(C):
            lanes = [codes[g * L + k] for k in range(L)]
            if g < C - 1:
                # one enable per group (a decoded write, clock-gated per group)
                with m.If(step & ~final2 & (s2["group"] == g)):
                    m.d.sync += [lane.eq(s2["c8"][k]) for k, lane in enumerate(lanes)]
                    m.d.sync += asm4[g].eq(s2["c4"])
                with m.If(step & final2 & ~fp8):
                    m.d.sync += [lane.eq(asm4[g][k]) for k, lane in enumerate(lanes)]
            else:
                with m.If(step & final2):
                    m.d.sync += [lane.eq(Mux(fp8, s2["c8"][k], s2["c4"][k]))
                                 for k, lane in enumerate(lanes)]
