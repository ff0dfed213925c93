"""FineQ outlier-decoding weight-stationary systolic array, and its multiplier baselines.

FineQ (Xie et al., DATE 2025) packs three consecutive weights of one output channel into one
8-bit *cluster word*: 2-bit codes for normal clusters, or one 3-bit outlier, one kept 2-bit
neighbour and one dropped (zero) position. The bit layout and the level sets are defined once in
:mod:`mpgen.golden.fineq` (the ``amaranth.lib.data`` layout
:data:`~mpgen.golden.fineq.WORD_LAYOUT`, which the decoder views its word through, and a
:class:`~mpgen.golden.fineq.FineQCode`); this module reads every field and level from those and
hard-codes none.

Components (one concern each):

* :class:`FineQDecoder` — one cluster word → three signed small weights and a dropped mask,
  combinational (latency 0).
* :class:`TemporalPE` — multiplier-free PE: the weight's magnitude becomes cycles in which the PE
  adds (or subtracts) its INT8 activation ("unary", FineQ's temporal coding) or adds the
  activation shifted by one magnitude bit per cycle ("bitserial"). Every PE of an array spends the
  same cycles per step, so the systolic wavefront stays aligned; the array ends the step of a
  weight tile after the last phase in which any of its PEs adds (set while the tile loads).
* :class:`MultiplierPE` — conventional signed multiply-accumulate, one cycle per step.
* :class:`FineQArray` — R×C weight-stationary systolic array of either PE, weights loaded through
  :class:`FineQDecoder` (FineQ words) or directly (plain ``weight_bits`` integers: the W4A8 and
  W8A8 baselines), activations and results on :mod:`amaranth.lib.stream` ports.

Schedule (all PEs in lock-step; a *step* is S clock cycles, S = the loaded tile's
:meth:`FineQArray.tile_step_cycles`, at most ``step_cycles``): an activation
vector accepted at the end of step e enters row r of column 0 after r skew registers, reaches
PE(r, c) for step e+r+c+1, and the partial sum of column c leaves the bottom row at the end of
step e+R+c; output deskew registers align the columns, so the C-vector of results is valid
``latency_cycles = (R+C-1)·S + 1`` cycles after the activation handshake. A new vector is accepted
every S cycles. PEs whose anti-diagonal holds no vector are frozen (clock-gated after synthesis),
so a tile's fill and drain cost little energy. See ``docs/fineq_hw.md``.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mpgen.golden.fineq_format import CLUSTER, DEFAULT_CODE, WORD_LAYOUT, FineQCode

__all__ = ["FineQDecoder", "TemporalPE", "MultiplierPE", "WeightRow", "PECell", "FineQArray", "CODINGS", "PE_KINDS",
           "BASELINE_WEIGHT_BITS", "check_code", "default_code", "exact_acc_bits",
           "temporal_step_cycles", "temporal_adds", "code_from_params"]

#: Temporal codings of a weight magnitude (see :class:`TemporalPE`).
CODINGS = ("unary", "bitserial")
#: PE kinds of :class:`FineQArray`.
PE_KINDS = ("temporal", "multiplier")
#: Plain signed weight widths of the multiplier baselines (W4A8, W8A8).
BASELINE_WEIGHT_BITS = (4, 8)


def default_code():
    """The project's default FineQ level sets (:data:`mpgen.golden.fineq.DEFAULT_CODE`)."""
    return DEFAULT_CODE


def check_code(code) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``code`` looks like a usable FineQCode: 4 normal
    and 8 outlier integer levels that fit ``code.weight_width`` signed bits, and a consistent
    ``max_magnitude``."""
    for attr in ("normal_levels", "outlier_levels", "weight_width", "max_magnitude"):
        if not hasattr(code, attr):
            raise TypeError(f"code must be a mpgen.golden.fineq.FineQCode (missing .{attr}), "
                            f"not {type(code).__name__}")
    normal, outlier = tuple(code.normal_levels), tuple(code.outlier_levels)
    if len(normal) != 4 or len(outlier) != 8:
        raise ValueError(f"a FineQ code has 4 normal and 8 outlier levels, not {len(normal)} and "
                         f"{len(outlier)}")
    levels = normal + outlier
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in levels):
        raise TypeError(f"FineQ levels must be integers, not {levels!r}")
    ww = code.weight_width
    if not isinstance(ww, int) or ww < 2:
        raise ValueError(f"code.weight_width must be an integer >= 2, not {ww!r}")
    lo, hi = -(1 << (ww - 1)), (1 << (ww - 1)) - 1
    if any(not lo <= v <= hi for v in levels):
        raise ValueError(f"levels {levels} do not fit {ww} signed bits")
    if code.max_magnitude != max(abs(v) for v in levels):
        raise ValueError(f"code.max_magnitude {code.max_magnitude} is not max |level| of {levels}")


def code_from_params(code):
    """``code`` itself, or a FineQCode built from a mapping with ``normal_levels``,
    ``outlier_levels`` (and optionally ``name``), as :attr:`FineQArray.params` writes it."""
    if isinstance(code, dict):
        unknown = set(code) - {"normal_levels", "outlier_levels", "name"}
        if unknown:
            raise ValueError(f"unknown FineQ code fields {sorted(unknown)}")
        return FineQCode(tuple(code["normal_levels"]), tuple(code["outlier_levels"]),
                         code.get("name", ""))
    return code


def exact_acc_bits(rows: int, max_weight: int, act_bits: int) -> int:
    """Signed accumulator width that holds every sum of ``rows`` products of a weight of magnitude
    at most ``max_weight`` and a signed ``act_bits`` activation (|a| <= 2**(act_bits-1)), exactly."""
    return (rows * max_weight * (1 << (act_bits - 1))).bit_length() + 1


def _check_int(name, value, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be {rng}, not {value}")


# --------------------------------------------------------------------------- decoder


class FineQDecoder(wiring.Component):
    """Decodes one FineQ cluster word into three signed weights, combinational (latency 0).

    ``word`` is read through :data:`~mpgen.golden.fineq.WORD_LAYOUT` (LSB first: ``[1:0]`` index,
    0 = normal cluster, k = outlier at position k-1). Normal: ``data.normal[p]`` (``[3:2]``,
    ``[5:4]``, ``[7:6]``) are the 2-bit codes of positions 0, 1, 2, read through
    ``code.normal_levels``. Outlier: ``data.outlier.code`` (``[4:2]``) the 3-bit outlier code
    (``code.outlier_levels``), ``.kept`` (``[6:5]``) the 2-bit code of the kept neighbour,
    ``.which`` (``[7]``) which non-outlier position is kept (0 = lower, 1 = higher); the other one
    is dropped: weight 0 and its ``dropped`` bit set.

    Ports: ``word`` in (a plain ``WORD_LAYOUT.size``-bit vector); ``weights`` (3 × signed
    ``code.weight_width``) and ``dropped`` (3 bits, bit p for position p) out.
    """

    def __init__(self, code=None):
        code = default_code() if code is None else code
        check_code(code)
        self.code = code
        self.weight_width = code.weight_width
        super().__init__({
            "word": In(unsigned(WORD_LAYOUT.size)),
            "weights": Out(data.ArrayLayout(signed(code.weight_width), CLUSTER)),
            "dropped": Out(unsigned(CLUSTER)),
        })

    def _lookup(self, m, levels, sel, name):
        """A signal holding ``levels[sel]`` (a small ROM written as a case statement)."""
        out = Signal(signed(self.weight_width), name=name)
        with m.Switch(sel):
            for k, level in enumerate(levels):
                with m.Case(k):
                    m.d.comb += out.eq(level)
        return out

    def elaborate(self, platform):
        m = Module()
        w = data.View(WORD_LAYOUT, self.word)
        normal = [self._lookup(m, self.code.normal_levels, w.data.normal[p], f"normal{p}")
                  for p in range(CLUSTER)]
        outlier = self._lookup(m, self.code.outlier_levels, w.data.outlier.code, "outlier")
        kept = self._lookup(m, self.code.normal_levels, w.data.outlier.kept, "kept")
        which = w.data.outlier.which
        with m.Switch(w.index):
            with m.Case(0):
                m.d.comb += [self.weights[p].eq(normal[p]) for p in range(CLUSTER)]
            for pos in range(CLUSTER):  # outlier at ``pos``
                lower, higher = [p for p in range(CLUSTER) if p != pos]
                with m.Case(pos + 1):
                    m.d.comb += [
                        self.weights[pos].eq(outlier),
                        self.weights[lower].eq(Mux(which, 0, kept)),
                        self.weights[higher].eq(Mux(which, kept, 0)),
                        self.dropped.eq(Mux(which, 1 << lower, 1 << higher)),
                    ]
        return m


# --------------------------------------------------------------------------- PEs


def temporal_step_cycles(max_magnitude: int, coding: str) -> int:
    """Cycles of one step of a :class:`TemporalPE`: ``max_magnitude`` (unary) or its bit length
    (bitserial)."""
    return max_magnitude if coding == "unary" else max_magnitude.bit_length()


def temporal_adds(coding: str, magnitude, phase):
    """Whether a temporal PE holding ``magnitude`` adds in cycle ``phase`` of a step: unary
    ``phase < magnitude``, bitserial bit ``phase`` of ``magnitude``. The PE and the array's
    step-length logic both use it, so the step the array runs covers every add a PE makes."""
    if coding == "unary":
        return phase < magnitude
    return magnitude.bit_select(phase, 1)


def _magnitude(w):
    """|w| of a signed value (one bit wider than ``w``: callers keep the bits their largest |w|
    needs)."""
    return Mux(w < 0, -w, w)


def _pe_members(weight_layout, act_bits, acc_bits, extra):
    return {
        "weight": In(weight_layout),
        "advance": In(1), "step_end": In(1),
        "a_in": In(signed(act_bits)), "a_out": Out(signed(act_bits)),
        "psum_in": In(signed(acc_bits)), "psum_out": Out(signed(acc_bits)),
        **extra,
    }


class TemporalPE(wiring.Component):
    """Multiplier-free weight-stationary PE: the weight's magnitude becomes add cycles.

    Parameters
    ----------
    max_magnitude : largest |weight| the PE must handle (``code.max_magnitude``).
    weight_width : signed width of the weights it is given (``store``'s argument).
    act_bits, acc_bits : signed activation and accumulator widths.
    coding : "unary" (FineQ-like temporal coding, the default) or "bitserial".
        "unary": a step lasts ``step_cycles = max_magnitude`` cycles; in cycle p of the step the
        PE adds ``±a`` if ``p < |w|`` (sign from the weight), else nothing — |w| additions.
        "bitserial": a step lasts ``step_cycles = bit_length(max_magnitude)`` cycles; in cycle p it
        adds ``±(a << p)`` if bit p of |w| is set (shift-add). Both use one adder, no multiplier.

    Ports: ``weight`` is the stored weight, ``weight_layout`` (sign and magnitude): the PE holds
    no weight register, its row's :class:`WeightRow` does (:meth:`store` gives what it stores;
    :class:`PECell` is a PE with its own). ``advance`` is the
    PE's enable (the array drives it low while the output stalls and while the PE's diagonal
    holds no activation vector): low, nothing changes and the adder's inputs hold still.
    ``first`` is high in the first cycle (``phase`` 0) of a step and ``step_end`` in its last.
    In the first cycle the accumulator starts from ``psum_in`` (the partial sum of the PE above,
    final since the previous step), in later cycles from itself, so ``psum_out`` (the
    accumulator register) holds ``psum_in + w·a`` after the step's last cycle and until the
    first cycle of the next step. ``a_out`` (the activation register) loads ``a_in`` at
    ``step_end`` and is the operand for the whole next step. The accumulator loads
    ``max(1, |w|)`` times per step (unary; ``max(1, popcount |w|)`` bitserial), the activation
    register once, each behind its own clock gate. Latency: one step (at most ``step_cycles``
    cycles); throughput: one MAC per step. A step may end early, after any phase from which on
    the PE would not add again (:func:`temporal_adds`): :class:`FineQArray` ends every step of a
    tile after the last phase in which any of its PEs adds.
    """

    def __init__(self, *, max_magnitude: int, weight_width: int, act_bits: int = 8,
                 acc_bits: int = 24, coding: str = "unary"):
        _check_int("max_magnitude", max_magnitude, 1)
        _check_int("weight_width", weight_width, 2)
        _check_int("act_bits", act_bits, 2, 32)
        _check_int("acc_bits", acc_bits, 2, 64)
        if coding not in CODINGS:
            raise ValueError(f"coding must be one of {CODINGS}, not {coding!r}")
        if max_magnitude > (1 << (weight_width - 1)):
            raise ValueError(f"max_magnitude {max_magnitude} does not fit {weight_width} signed bits")
        self.max_magnitude, self.weight_width = max_magnitude, weight_width
        self.act_bits, self.acc_bits, self.coding = act_bits, acc_bits, coding
        self.magnitude_bits = max_magnitude.bit_length()
        self.step_cycles = temporal_step_cycles(max_magnitude, coding)
        self.weight_layout = data.StructLayout({"negative": unsigned(1),
                                                "magnitude": unsigned(self.magnitude_bits)})
        extra = {"first": In(1)}
        if self.step_cycles > 1:
            extra["phase"] = In(range(self.step_cycles))
        super().__init__(_pe_members(self.weight_layout, act_bits, acc_bits, extra))

    def store(self, w):
        """The stored form (``weight_layout``) of the signed weight ``w``: sign and magnitude."""
        return Cat(w < 0, _magnitude(w)[:self.magnitude_bits])

    def elaborate(self, platform):
        m = Module()
        negative, magnitude = self.weight.negative, self.weight.magnitude
        # datapath registers need no reset: a result is only taken where a valid bit says so
        a = Signal(signed(self.act_bits), name="a", reset_less=True)
        acc = Signal(signed(self.acc_bits), name="acc", reset_less=True)
        with m.If(self.advance & self.step_end):
            m.d.sync += a.eq(self.a_in)

        phase = getattr(self, "phase", Const(0, 1))
        # ±operand without a negator: -x = (x ^ -1) + 1, the +1 entering as the carry into an
        # extra low bit ((2·base + 1) + (2·term + subtract)) >> 1 = base + term + subtract), so
        # one adder does it.
        if self.coding == "unary":
            # The term is ±a (0 for a zero weight) in every cycle: it changes only when ``a``
            # loads, so once the accumulator stops loading (p >= |w|) the adder's inputs hold
            # still and it does not toggle; whether a cycle adds is only the register's enable.
            enable = temporal_adds("unary", magnitude, phase)
            nonzero = Signal(name="nonzero")
            m.d.comb += nonzero.eq(magnitude != 0)
            operand = Mux(nonzero, a, 0)
            subtract = Signal(name="subtract")
            m.d.comb += subtract.eq(negative & nonzero)
        else:
            enable = temporal_adds("bitserial", magnitude, phase)
            shifted = Signal(signed(self.act_bits + self.magnitude_bits - 1), name="shifted")
            with m.Switch(phase):
                for k in range(self.step_cycles):
                    with m.Case(k):
                        m.d.comb += shifted.eq(a << k)
            # nothing is added while not enabled or while the PE is frozen
            operand = Mux(self.advance & enable, shifted, 0)
            subtract = Signal(name="subtract")
            m.d.comb += subtract.eq(self.advance & enable & negative)
        term = Signal(signed(len(operand)), name="term")
        m.d.comb += term.eq(operand ^ subtract.replicate(len(operand)).as_signed())
        # a frozen PE (advance low) keeps its adder's inputs still: base stays the accumulator
        start = Signal(name="start")
        m.d.comb += start.eq(self.advance & self.first)
        base = Mux(start, self.psum_in, acc)
        total = Signal(signed(self.acc_bits + 1), name="total")
        m.d.comb += total.eq(Cat(Const(1, 1), base).as_signed() + Cat(subtract, term).as_signed())
        # the accumulator loads only when it changes: in a step's first cycle (from psum_in) and
        # in the cycles it adds; otherwise it holds, and its clock is gated
        with m.If(self.advance & (self.first | enable)):
            m.d.sync += acc.eq(total[1:])
        m.d.comb += [self.a_out.eq(a), self.psum_out.eq(acc)]
        return m


class MultiplierPE(wiring.Component):
    """Conventional weight-stationary PE: ``psum_out <= psum_in + w·a`` every step of one cycle.

    A signed ``weight_width`` × ``act_bits`` multiplier and one adder. ``weight`` is the stored
    weight (``weight_layout``: the signed weight itself, held by the row's :class:`WeightRow`);
    with ``advance`` (and ``step_end``, always high in a one-cycle step) the activation
    register loads ``a_in`` and the accumulator register loads ``psum_in + w·a``. Latency: one
    cycle (= one step).
    """

    step_cycles = 1

    def __init__(self, *, weight_width: int, act_bits: int = 8, acc_bits: int = 24):
        _check_int("weight_width", weight_width, 2, 32)
        _check_int("act_bits", act_bits, 2, 32)
        _check_int("acc_bits", acc_bits, 2, 64)
        self.weight_width, self.act_bits, self.acc_bits = weight_width, act_bits, acc_bits
        self.weight_layout = signed(weight_width)
        super().__init__(_pe_members(self.weight_layout, act_bits, acc_bits, {}))

    def store(self, w):
        """The stored form of the signed weight ``w``: itself."""
        return w

    def elaborate(self, platform):
        m = Module()
        w = self.weight
        a = Signal(signed(self.act_bits), name="a", reset_less=True)
        acc = Signal(signed(self.acc_bits), name="acc", reset_less=True)
        with m.If(self.advance):
            m.d.sync += acc.eq(self.psum_in + w * a)
            with m.If(self.step_end):
                m.d.sync += a.eq(self.a_in)
        m.d.comb += [self.a_out.eq(a), self.psum_out.eq(acc)]
        return m


class WeightRow(wiring.Component):
    """The weight registers of ``cols`` PEs that load together (a PE row of the array).

    Yosys's ``clockgate`` gates the registers of one module that share an enable with one
    integrated clock gate, whose clock pin toggles every cycle; a weight register inside each PE
    would cost a clock gate per PE, here a row of PEs shares one. The stored form is the PE's
    (:meth:`TemporalPE.store`: sign and magnitude; :meth:`MultiplierPE.store`: the weight).

    Parameters
    ----------
    pe : the PE the weights are for (a :class:`TemporalPE` or :class:`MultiplierPE`; its
        ``weight_width``, ``weight_layout`` and ``store``).
    cols : PEs in the row, 1..64.

    Ports: ``load`` (In 1) and ``w_in`` (``cols`` × signed ``weight_width``): with ``load`` high
    the registers take ``store(w_in[c])``; ``weights`` (``cols`` × ``pe.weight_layout``, Out):
    the stored weights, from the cycle after the load (latency 1), reset-less.
    """

    def __init__(self, pe, cols: int):
        if not isinstance(pe, (TemporalPE, MultiplierPE)):
            raise TypeError(f"pe must be a TemporalPE or MultiplierPE, not {type(pe).__name__}")
        _check_int("cols", cols, 1, 64)
        self.pe, self.cols = pe, cols
        super().__init__({
            "load": In(1),
            "w_in": In(data.ArrayLayout(signed(pe.weight_width), cols)),
            "weights": Out(data.ArrayLayout(pe.weight_layout, cols)),
        })

    def elaborate(self, platform):
        m = Module()
        # reset-less (a weight counts only once loaded), so clockgate can gate it
        stored = Signal(data.ArrayLayout(self.pe.weight_layout, self.cols), name="stored",
                        reset_less=True)
        with m.If(self.load):
            m.d.sync += [stored[c].eq(self.pe.store(self.w_in[c])) for c in range(self.cols)]
        m.d.comb += self.weights.eq(stored)
        return m


class PECell(wiring.Component):
    """A PE with its own weight register (a one-column :class:`WeightRow`): the PE as the array
    uses it, with the ports of a standalone weight-stationary PE (the PE-level regression's top).

    Ports: the PE's, with ``load`` (In 1) and ``w_in`` (signed ``weight_width``) in place of
    ``weight``: with ``load`` high the weight register takes ``w_in``. Latency and throughput
    as the PE's; ``step_cycles``, ``weight_width``, ``act_bits``, ``acc_bits`` are the PE's.
    """

    def __init__(self, pe):
        if not isinstance(pe, (TemporalPE, MultiplierPE)):
            raise TypeError(f"pe must be a TemporalPE or MultiplierPE, not {type(pe).__name__}")
        self.pe = pe
        for attr in ("step_cycles", "weight_width", "act_bits", "acc_bits"):
            setattr(self, attr, getattr(pe, attr))
        members = {"load": In(1), "w_in": In(signed(pe.weight_width))}
        members.update((name, member) for name, member in pe.signature.members.items()
                       if name != "weight")
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.weights = row = WeightRow(self.pe, 1)
        m.submodules.pe = pe = self.pe
        m.d.comb += [row.load.eq(self.load), row.w_in[0].eq(self.w_in),
                     pe.weight.eq(row.weights[0])]
        for name, member in pe.signature.members.items():
            if name == "weight":
                continue
            if member.flow == wiring.In:
                m.d.comb += getattr(pe, name).eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(getattr(pe, name))
        return m


# --------------------------------------------------------------------------- array


class FineQArray(wiring.Component):
    """R×C weight-stationary systolic array of temporal or multiplier PEs.

    Parameters
    ----------
    rows, cols : R (the reduction length of one pass, K) and C (output channels, N), 1..64.
    pe : "temporal" (:class:`TemporalPE`, FineQ weights only) or "multiplier" (:class:`MultiplierPE`).
    weight_bits : ``None`` (default) — FineQ cluster words through one :class:`FineQDecoder` per
        column; 4 or 8 — plain signed integers loaded directly (the W4A8 / W8A8 baselines,
        ``pe="multiplier"`` only).
    act_bits : signed activation width (default 8).
    acc_bits : signed accumulator width; default and minimum :func:`exact_acc_bits` (every
        result exact; a narrower accumulator is refused rather than allowed to wrap).
    code : the FineQCode (default :func:`default_code`), or a mapping of its levels (as in
        :attr:`params`); FineQ weights only.
    coding : "unary" (default) or "bitserial", temporal PEs only.

    Ports
    -----
    w : weight stream. FineQ: one cluster word per column per transfer; transfer g of a load
        writes rows 3g, 3g+1, 3g+2 (decoded positions 0, 1, 2); ``weight_transfers`` = ceil(R/3)
        transfers load the array, and decoded positions of rows >= R are ignored (when R is not a
        multiple of 3 the last word's excess positions carry padding). Plain: transfer r writes row
        r (one signed weight per column), R transfers. A load counter picks the row (group); it
        wraps after ``weight_transfers`` transfers and is cleared by reset. Weights are accepted
        only while no activation vector is in flight (``w.ready`` low until the array drained),
        and activations only between complete loads, so every result uses one weight tile.
    a : activation stream, one R-vector per transfer (element r for row r, signed ``act_bits``).
    o : result stream, one C-vector of signed ``acc_bits`` sums per activation vector, in order:
        ``o[c] = Σ_r w[r][c] · a[r]`` exactly. A result not taken on ``o`` stalls the array.

    Timing: every step of a tile lasts S cycles, S = :meth:`tile_step_cycles` of the tile's
    largest |w| (over rows < R): 1 for multiplier PEs; temporal PEs end the step after the last
    phase in which any PE adds, ``max(1, max|w|)`` unary, ``max(1, bit_length(max|w|))``
    bitserial, at most ``step_cycles`` (the code's ``max_magnitude`` or its bit length). The
    step length is computed while the weights load (a running maximum over the decoded
    magnitudes of each transfer) and registered with the tile, so it is fixed before the first
    activation and the schedule below holds for any S. An idle array accepts an activation
    vector at once, a busy one in the last cycle of each step, so back-to-back vectors are S
    cycles apart; a result is valid :meth:`tile_latency_cycles` = ``(R+C-1)·S + 1`` cycles after
    its vector's handshake. One GEMM tile (load the weights, stream M vectors, drain; output
    always ready) takes :meth:`tile_cycles` = ``weight_transfers + (M+R+C-2)·S + 3`` cycles from
    the first weight handshake to the last result handshake, both inclusive. The testbench
    measures all three for tiles of every reachable max|w| and checks these formulas.
    ``latency_cycles`` is the longest latency (S = ``step_cycles``).

    Idle gating (no effect on results or cycles): PE(r, c) is enabled only in the steps where
    its anti-diagonal d = r+c holds a valid vector or receives one (``in_flight[d]`` or
    ``in_flight[d-1]``, the accepted vector for d = 0); the skew, deskew and result registers
    load only valid values. During a tile's fill and drain, and while idle, the frozen PEs'
    registers see no clock edge once Yosys's ``clockgate`` turns the enables into clock gates.
    """

    def __init__(self, rows: int = 8, cols: int = 8, *, pe: str = "temporal",
                 weight_bits: int | None = None, act_bits: int = 8, acc_bits: int | None = None,
                 code=None, coding: str | None = None):
        _check_int("rows", rows, 1, 64)
        _check_int("cols", cols, 1, 64)
        _check_int("act_bits", act_bits, 2, 16)
        if pe not in PE_KINDS:
            raise ValueError(f"pe must be one of {PE_KINDS}, not {pe!r}")
        if weight_bits is not None:
            if isinstance(weight_bits, bool) or weight_bits not in BASELINE_WEIGHT_BITS:
                raise ValueError(f"weight_bits must be None (FineQ words) or one of "
                                 f"{BASELINE_WEIGHT_BITS}, not {weight_bits!r}")
            if pe != "multiplier":
                raise ValueError("plain integer weights (weight_bits) need pe='multiplier'; the "
                                 "temporal PE takes FineQ weights")
            if code is not None:
                raise ValueError("code applies to FineQ weights (weight_bits=None) only")
        if coding is not None and pe != "temporal":
            raise ValueError("coding applies to pe='temporal' only")
        self.rows, self.cols, self.pe, self.act_bits = rows, cols, pe, act_bits
        self.weight_bits = weight_bits
        self.coding = (coding or "unary") if pe == "temporal" else None
        if self.coding is not None and self.coding not in CODINGS:
            raise ValueError(f"coding must be one of {CODINGS}, not {coding!r}")
        self.fineq = weight_bits is None
        if self.fineq:
            self.code = default_code() if code is None else code_from_params(code)
            check_code(self.code)
            self.weight_width = self.code.weight_width
            max_weight = self.code.max_magnitude
        else:
            self.code = None
            self.weight_width = weight_bits
            max_weight = 1 << (weight_bits - 1)
        self.min_acc_bits = exact_acc_bits(rows, max_weight, act_bits)
        if acc_bits is None:
            acc_bits = self.min_acc_bits
        _check_int("acc_bits", acc_bits, 2, 64)
        if acc_bits < self.min_acc_bits:
            raise ValueError(f"acc_bits={acc_bits} cannot hold every {rows}-term sum exactly; "
                             f"at least {self.min_acc_bits} bits are needed")
        self.acc_bits = acc_bits
        if pe == "temporal":
            if max_weight < 1:
                raise ValueError("a code whose levels are all zero cannot drive temporal PEs")
            self._pe_args = dict(max_magnitude=max_weight, weight_width=self.weight_width,
                                 act_bits=act_bits, acc_bits=acc_bits, coding=self.coding)
            self.step_cycles = temporal_step_cycles(max_weight, self.coding)
        else:
            self._pe_args = dict(weight_width=self.weight_width, act_bits=act_bits,
                                 acc_bits=acc_bits)
            self.step_cycles = 1
        self.weight_transfers = -(-rows // CLUSTER) if self.fineq else rows
        self.latency_cycles = (rows + cols - 1) * self.step_cycles + 1
        if self.fineq:
            self.weight_layout = data.ArrayLayout(unsigned(WORD_LAYOUT.size), cols)
        else:
            self.weight_layout = data.ArrayLayout(signed(weight_bits), cols)
        self.act_layout = data.ArrayLayout(signed(act_bits), rows)
        self.result_layout = data.ArrayLayout(signed(acc_bits), cols)
        super().__init__({
            "w": In(stream.Signature(self.weight_layout)),
            "a": In(stream.Signature(self.act_layout)),
            "o": Out(stream.Signature(self.result_layout)),
        })

    @property
    def params(self) -> dict:
        """Constructor arguments that rebuild this array (JSON-serialisable, code by levels)."""
        p = {"rows": self.rows, "cols": self.cols, "pe": self.pe, "act_bits": self.act_bits,
             "acc_bits": self.acc_bits}
        if not self.fineq:
            p["weight_bits"] = self.weight_bits
        elif self.code != default_code():
            p["code"] = {"normal_levels": list(self.code.normal_levels),
                         "outlier_levels": list(self.code.outlier_levels), "name": self.code.name}
        if self.coding is not None:
            p["coding"] = self.coding
        return p

    @property
    def max_weight(self) -> int:
        """Largest |weight| the array can hold (``code.max_magnitude`` or 2**(weight_bits-1))."""
        return self.code.max_magnitude if self.fineq else 1 << (self.weight_bits - 1)

    def tile_step_cycles(self, max_magnitude: int | None = None) -> int:
        """Cycles per step of a tile whose largest |w| is ``max_magnitude`` (default: the largest
        the array can hold, giving ``step_cycles``); always 1 for multiplier PEs."""
        if max_magnitude is None:
            return self.step_cycles
        _check_int("max_magnitude", max_magnitude, 0, self.max_weight)
        if self.pe != "temporal":
            return 1
        return max(1, temporal_step_cycles(max_magnitude, self.coding))

    def tile_latency_cycles(self, max_magnitude: int | None = None) -> int:
        """Cycles from an activation handshake to its result valid, for a tile whose largest |w|
        is ``max_magnitude`` (default: the longest, ``latency_cycles``)."""
        return (self.rows + self.cols - 1) * self.tile_step_cycles(max_magnitude) + 1

    def tile_cycles(self, m: int, max_magnitude: int | None = None) -> int:
        """Cycles of one GEMM tile of ``m`` activation vectors whose largest |w| is
        ``max_magnitude`` (default: the longest tile); see the class docstring."""
        _check_int("m", m, 1)
        step = self.tile_step_cycles(max_magnitude)
        return self.weight_transfers + (m + self.rows + self.cols - 2) * step + 3

    def elaborate(self, platform):
        m = Module()
        R, C, S = self.rows, self.cols, self.step_cycles
        depth = R + C  # steps from an activation handshake to the result register

        # ---- control: global stall, step phase, in-flight tracking
        advance = Signal(name="advance")
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        in_flight = Signal(depth, name="in_flight")  # valid bit of the vector in each step
        busy = Signal(name="busy")
        m.d.comb += busy.eq(in_flight.any() | self.o.valid)
        last = Signal(name="last")
        first = Signal(name="first")
        if S > 1:
            phase = Signal(range(S), name="phase", init=S - 1)
            # the loaded tile's step is last_phase + 1 cycles (set by its weight load, below)
            last_phase = Signal(range(S), name="last_phase", init=S - 1)
            m.d.comb += [last.eq(phase == last_phase), first.eq(phase == 0)]
        else:
            phase = None
            m.d.comb += [last.eq(1), first.eq(1)]
        step_end = Signal(name="step_end")
        m.d.comb += step_end.eq(advance & last)

        load_index = Signal(range(self.weight_transfers), name="load_index")
        loading = load_index != 0
        m.d.comb += [
            self.w.ready.eq(~busy),
            # activations wait for a complete weight load; a pending weight load goes first
            self.a.ready.eq(step_end & ~loading & ~self.w.valid),
        ]
        w_fire = self.w.valid & self.w.ready
        a_fire = self.a.valid & self.a.ready
        with m.If(w_fire):
            m.d.sync += load_index.eq(Mux(load_index == self.weight_transfers - 1, 0,
                                          load_index + 1))
        if phase is not None:
            # An idle array waits in the last phase, so a vector is accepted the cycle it arrives.
            # A vector in the last in-flight slot needs no further step (it is captured in the
            # first cycle of the current one), so it does not keep the phase running.
            with m.If(advance):
                with m.If(~last):
                    m.d.sync += phase.eq(phase + 1)
                with m.Elif(a_fire | in_flight[:-1].any()):
                    m.d.sync += phase.eq(0)
        with m.If(step_end):
            m.d.sync += in_flight.eq(Cat(a_fire, in_flight[:-1]))

        # ---- weights: decoders per column (FineQ) or plain integers, row (group) select
        group_of = (lambda r: r // CLUSTER) if self.fineq else (lambda r: r)
        weight_for = {}
        transfer = []  # (weight, valid) of every position of one w transfer
        for c in range(C):
            if self.fineq:
                dec = FineQDecoder(self.code)
                m.submodules[f"decoder_{c}"] = dec
                m.d.comb += dec.word.eq(self.w.payload[c])
                for r in range(R):
                    weight_for[r, c] = dec.weights[r % CLUSTER]
                # the last transfer's positions of rows >= R are padding: never in a PE
                tail = R - CLUSTER * (self.weight_transfers - 1)
                transfer += [(dec.weights[p], Const(1) if p < tail else
                              load_index != self.weight_transfers - 1) for p in range(CLUSTER)]
            else:
                for r in range(R):
                    weight_for[r, c] = self.w.payload[c]
        if phase is not None:
            # ---- step length of the tile: the last phase in which any PE adds (0 if none),
            # a running maximum over the load's transfers. The array is idle while weights load
            # (w.ready needs ~busy), so it waits in its last phase: setting phase with last_phase
            # keeps it waiting there, and the first activation sees the new step.
            mags = [(_magnitude(w)[:self.max_weight.bit_length()], valid) for w, valid in transfer]
            needed = Signal(S, name="phase_needed")  # bit p: some PE of this transfer adds in p
            for p in range(S):
                m.d.comb += needed[p].eq(Cat(*[valid & temporal_adds(self.coding, mag, p)
                                               for mag, valid in mags]).any())
            transfer_last = Signal(range(S), name="transfer_last_phase")
            for p in range(1, S):  # the highest needed phase (a later statement wins)
                with m.If(needed[p]):
                    m.d.comb += transfer_last.eq(p)
            tile_last = Mux(loading & (last_phase > transfer_last), last_phase, transfer_last)
            with m.If(w_fire):
                m.d.sync += [last_phase.eq(tile_last), phase.eq(tile_last)]
        selects = []
        for g in range(self.weight_transfers):
            sel = Signal(name=f"load_row{g}")
            m.d.comb += sel.eq(w_fire & (load_index == g))
            selects.append(sel)

        # ---- idle gating by anti-diagonal: PE(r, c) computes vector e in step e+r+c+1, while
        # in_flight[r+c] holds its valid bit, and loads its activation at the end of step e+r+c,
        # when the vector enters diagonal d = r+c (a_fire for d = 0, in_flight[d-1] after). A
        # diagonal that holds no vector and receives none is frozen like a stalled array (its
        # registers' clocks gated): the fill and drain of a tile cost no PE activity.
        entering = [a_fire] + [in_flight[d - 1] for d in range(1, R + C)]
        active, starts = [], []
        for d in range(R + C - 1):
            act = Signal(name=f"active_{d}")
            start = Signal(name=f"first_{d}")  # per diagonal: a fanout of R at most, not R·C
            m.d.comb += [act.eq(advance & (in_flight[d] | entering[d])), start.eq(act & first)]
            active.append(act)
            starts.append(start)

        # ---- activation skew: row r waits r steps; a register loads only the valid vector
        # entering it (skew_{r}_{k} holds vector e after step e+k)
        row_in = []
        for r in range(R):
            value = self.a.payload[r]
            for k in range(r):
                reg = Signal(signed(self.act_bits), name=f"skew_{r}_{k}", reset_less=True)
                with m.If(step_end & entering[k]):
                    m.d.sync += reg.eq(value)
                value = reg
            row_in.append(value)

        # ---- the PE grid; each row's weight registers in one WeightRow (one clock gate a row)
        pes = {}
        for r in range(R):
            row = None
            for c in range(C):
                pe = TemporalPE(**self._pe_args) if self.pe == "temporal" else \
                    MultiplierPE(**self._pe_args)
                m.submodules[f"pe_{r}_{c}"] = pes[r, c] = pe
                if row is None:
                    m.submodules[f"pe_weights_{r}"] = row = WeightRow(pe, C)
                    m.d.comb += row.load.eq(selects[group_of(r)])
                m.d.comb += [
                    row.w_in[c].eq(weight_for[r, c]), pe.weight.eq(row.weights[c]),
                    pe.advance.eq(active[r + c]), pe.step_end.eq(step_end),
                    pe.a_in.eq(row_in[r] if c == 0 else pes[r, c - 1].a_out),
                    pe.psum_in.eq(0 if r == 0 else pes[r - 1, c].psum_out),
                ]
                if self.pe == "temporal":
                    m.d.comb += pe.first.eq(starts[r + c])
                    if phase is not None:
                        m.d.comb += pe.phase.eq(phase)

        # ---- output: capture each column's sum in the first cycle of the step after it is
        # final, deskew columns (column c waits C-1-c steps), then the result register. Each
        # register loads only a valid sum: deskew_{c}_{k} takes vector e in the step where
        # in_flight[R+c+k] holds it, the result register where in_flight[depth-1] does. The
        # result register is a reset-less datapath register (o.valid says when it counts), so
        # its clock can be gated.
        capture = Signal(name="capture")
        m.d.comb += capture.eq(advance & first)
        aligned = []
        for c in range(C):
            value = pes[R - 1, c].psum_out
            for k in range(C - 1 - c):
                reg = Signal(signed(self.acc_bits), name=f"deskew_{c}_{k}", reset_less=True)
                with m.If(capture & in_flight[R + c + k]):
                    m.d.sync += reg.eq(value)
                value = reg
            aligned.append(value)
        result = Signal(self.result_layout, name="result", reset_less=True)
        with m.If(capture & in_flight[depth - 1]):
            m.d.sync += [result[c].eq(aligned[c]) for c in range(C)]
        m.d.comb += self.o.payload.eq(result)
        with m.If(capture):
            m.d.sync += self.o.valid.eq(in_flight[depth - 1])
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
