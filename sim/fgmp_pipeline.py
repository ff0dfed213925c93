"""Regression and energy workload of ``ClassifierDotProduct`` (the FGMP activation path).

:class:`mpgen.rtl.fgmp_pipeline.ClassifierDotProduct` classifies a stream of activation blocks
(``act``) into NVFP4 or FP8 blocks and pairs each with a pre-quantized FGMP weight block (``w``)
in a ``BlockDotProduct(formats="mixed")``; ``o`` carries one FP32 result per dot product. This
module gives the unit the two entry points a registered unit of the tool needs:

* :func:`run_pipeline_regression`: random, heavy-tailed stimulus through the cocotb stream
  testbench :mod:`mpgen.sim.tb_fgmp_pipeline` (via
  :func:`mpgen.sim.classifier.simulate_classifier_dotprod`), with random input gaps and output
  back-pressure, every result checked against the golden model.
* :func:`energy_modes` and :func:`pipeline_workload`: the stimulus of the gate-level energy flow
  (:mod:`mpgen.flows.energy`), real layer data through the golden quantizers.

Expected results come from the golden model only: :func:`mpgen.golden.classifier.classify_stream`
classifies the activation blocks, the classified blocks and the weight blocks form
:class:`mpgen.golden.dotprod.BlockPairs`, and :func:`mpgen.golden.dotprod.dot_products` gives the
FP32 bit patterns. Payloads are packed from the RTL's own layouts (field offsets read from
``unit.classifier.input_layout``, ``unit.weight_layout``, ``unit.classifier.cfg_layout``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping

import torch
from mpgen.golden.classifier import (
    ClassifierConfig,
    FisherTable,
    activation_scale_exp,
    classify_stream,
    fisher_to_table,
)
from mpgen.golden.dotprod import BlockPairs, dot_products
from mpgen.golden.fgmp import BLOCK, fgmp_quantize
from mpgen.golden.formats import E2M1, E4M3, UE4M3

from .classifier import make_phases, pack_inputs
from .dotprod import RegressionResult
from .workload import StreamPhase, Workload
from .workloads import DATA_SOURCES, DEFAULT_LAYER, gemm_walk, layer_data

__all__ = [
    "ACT_NVFP4_FRACTION",
    "DEFAULT_LAYER",
    "DEFAULT_OPS",
    "MODE",
    "RUN_SETTINGS",
    "WEIGHT_FP8_FRACTION",
    "PipelineStream",
    "cfg_writes",
    "energy_modes",
    "expected_results",
    "make_streams",
    "pack_weights",
    "pipeline_workload",
    "run_pipeline_regression",
]

#: The unit's one operating mode for the energy flow.
MODE = "classify+dot"
#: Default measured block pairs of :func:`pipeline_workload`.
DEFAULT_OPS = 96
#: (input gap probability, output stall probability) of successive regression runs, cycled.
RUN_SETTINGS = ((0.0, 0.0), (0.3, 0.3), (0.5, 0.0), (0.0, 0.5))
#: Fraction of weight blocks that are FP8 (regression: random; workload: FGMP policy).
WEIGHT_FP8_FRACTION = 0.3
#: Fraction of activation blocks the workload's threshold keeps NVFP4.
ACT_NVFP4_FRACTION = 0.7
#: Dot products per token in :func:`pipeline_workload` (one token meets this many weight rows).
_PER_TOKEN = 8
#: Regression weight blocks replaced by fully random codes (E4M3 NaN, NaN scales included).
_RANDOM_WEIGHT_RATE = 0.01
#: NVFP4 regression weight blocks whose unused high nibbles carry random bits.
_HIGH_NIBBLE_RATE = 0.25
#: Number of mismatches described in ``details``.
_MAX_DETAILS = 8


# ------------------------------------------------------------------------------ common


def _unit(config):
    """``ClassifierDotProduct(**config)`` (parameters validated); ValueError naming the bad one."""
    from mpgen.rtl.fgmp_pipeline import ClassifierDotProduct

    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of parameters, not {type(config).__name__}")
    try:
        unit = ClassifierDotProduct(**dict(config))
    except (TypeError, ValueError) as e:  # the message names the parameter
        raise ValueError(f"invalid ClassifierDotProduct parameters: {e}") from None
    for c in (unit, unit.classifier, unit.dotprod):  # built for its parameters and layouts only
        c._MustUse__silence = True
    return unit


def _check_unit(component):
    from mpgen.rtl.fgmp_pipeline import ClassifierDotProduct

    if not isinstance(component, ClassifierDotProduct):
        raise TypeError(f"component must be a ClassifierDotProduct, not {type(component).__name__}")
    return component


def _offsets(layout) -> dict:
    return {name: f.offset for name, f in layout}


def pack_weights(layout, codes: torch.Tensor, fp8: torch.Tensor, scale: torch.Tensor) -> list[int]:
    """Payload integers of the ``w`` stream.

    Parameters
    ----------
    layout : amaranth.lib.data.StructLayout
        ``ClassifierDotProduct.weight_layout`` (fields ``codes``, ``fp8``, ``scale``); offsets and
        the element width are read from it.
    codes : torch.Tensor
        uint8 [n, 16] element codes (E4M3, or E2M1 in the low 4 bits).
    fp8 : torch.Tensor
        bool [n], FP8 blocks.
    scale : torch.Tensor
        uint8 [n], UE4M3 block scale codes.

    Returns
    -------
    list of int
        One payload per block.
    """
    offs = _offsets(layout)
    width = layout["codes"].shape.elem_shape.width
    mask = (1 << width) - 1
    out = []
    for row, f8, sc in zip(codes.tolist(), fp8.tolist(), scale.tolist()):
        v = sum((int(c) & mask) << (offs["codes"] + width * j) for j, c in enumerate(row))
        out.append(v | int(f8) << offs["fp8"] | int(sc) << offs["scale"])
    return out


def cfg_writes(unit, table: FisherTable, threshold: int, p: int) -> list[int]:
    """Payload integers of the ``cfg`` stream that program ``table``, ``threshold`` and ``p``.

    Parameters
    ----------
    unit : ClassifierDotProduct
        The unit (its classifier's ``cfg_layout`` gives the field offsets).
    table : FisherTable
        Fisher table of ``unit.classifier.channels`` entries.
    threshold : int
        Threshold register value.
    p : int
        Scale exponent (written as a ``p_bits`` two's-complement number).

    Returns
    -------
    list of int
        The table words, then the threshold, then ``p``.
    """
    from mpgen.rtl.classifier import CFG_FISHER, CFG_SCALE_EXP, CFG_THRESHOLD

    cls = unit.classifier
    offs = _offsets(cls.cfg_layout)

    def word(kind, addr, value):
        return kind << offs["kind"] | addr << offs["addr"] | value << offs["data"]

    out = [word(CFG_FISHER, a, w) for a, w in enumerate(table.words())]
    out.append(word(CFG_THRESHOLD, 0, int(threshold)))
    out.append(word(CFG_SCALE_EXP, 0, int(p) & ((1 << cls.config.p_bits) - 1)))
    return out


def _classify(values, index, table, threshold, p, cfg: ClassifierConfig):
    return classify_stream(values, index, table, threshold, p, cfg)


def expected_results(values: torch.Tensor, index: torch.Tensor, last: torch.Tensor,
                     w_codes: torch.Tensor, w_fp8: torch.Tensor, w_scale: torch.Tensor,
                     table: FisherTable, threshold: int, p: int,
                     cfg: ClassifierConfig) -> list[int]:
    """Golden FP32 results (bit patterns) of a ``ClassifierDotProduct`` stream.

    :func:`mpgen.golden.classifier.classify_stream` classifies the activation blocks; with the
    weight blocks they form :class:`~mpgen.golden.dotprod.BlockPairs`, whose results
    :func:`mpgen.golden.dotprod.dot_products` gives.

    Parameters
    ----------
    values, index, last : torch.Tensor
        Activation blocks [n, 16] (input dtype), table word index [n], ``last`` bool [n].
    w_codes, w_fp8, w_scale : torch.Tensor
        Weight blocks: uint8 [n, 16], bool [n], uint8 [n].
    table, threshold, p :
        The classifier's programming.
    cfg : ClassifierConfig
        The classifier's numerics (``unit.classifier.config``).

    Returns
    -------
    list of int
        One FP32 bit pattern per dot product (per ``last``).
    """
    act = _classify(values, index, table, threshold, p, cfg)
    pairs = BlockPairs(w_codes.contiguous(), act.codes.contiguous(), w_fp8.contiguous(),
                       act.is_fp8.contiguous(), w_scale.contiguous(), act.block_scale.contiguous(),
                       last.to(torch.bool).contiguous())
    return [int(v) for v in dot_products(pairs).tolist()]


# ------------------------------------------------------------------------------ regression


@dataclasses.dataclass
class PipelineStream:
    """One regression run: the classifier's programming, the activation and weight block streams
    (``n`` blocks each, in pairing order) and the testbench's gap/stall probabilities."""

    name: str
    values: torch.Tensor      # [n, 16], input dtype
    index: torch.Tensor       # int64 [n]
    last: torch.Tensor        # bool [n], last[-1] set
    w_codes: torch.Tensor     # uint8 [n, 16]
    w_fp8: torch.Tensor       # bool [n]
    w_scale: torch.Tensor     # uint8 [n]
    table: FisherTable
    threshold: int
    p: int
    gap: float = 0.0
    stall: float = 0.0

    @property
    def n(self) -> int:
        return int(self.values.shape[0])


def _random_weights(n: int, gen: torch.Generator):
    """``n`` FGMP weight blocks: heavy-tailed values (per-block log-normal scale, Gaussian body,
    Student-t-like tail) quantized by :func:`mpgen.golden.fgmp.fgmp_quantize` with a random
    ``WEIGHT_FP8_FRACTION`` of FP8 blocks; then random high nibbles in some NVFP4 blocks (the
    unit must ignore them) and a few blocks of fully random codes (E4M3 NaN and UE4M3 NaN
    scales included)."""
    scale = torch.exp(torch.randn(n, 1, generator=gen) * 2.0)
    body = torch.randn(n, BLOCK, generator=gen)
    tail = body / torch.rand(n, BLOCK, generator=gen).clamp(min=1e-3) ** 0.7
    w = torch.where(torch.rand(n, BLOCK, generator=gen) < 0.1, tail, body) * scale
    zero = torch.rand(n, BLOCK, generator=gen) < 0.05
    w = torch.where(zero, torch.zeros_like(w), w)
    fp8 = torch.rand(n, generator=gen) < WEIGHT_FP8_FRACTION
    q = fgmp_quantize(w, fp8.reshape(n, 1))
    codes = q.codes.reshape(n, BLOCK).clone()
    w_fp8 = q.is_fp8.reshape(n).clone()
    w_scale = q.block_scale.reshape(n).clone()
    high = (~w_fp8 & (torch.rand(n, generator=gen) < _HIGH_NIBBLE_RATE)).unsqueeze(1)
    junk = torch.randint(0, 1 << (E4M3.width - E2M1.width), (n, BLOCK), generator=gen,
                         dtype=torch.int64).to(torch.uint8) << E2M1.width
    codes = torch.where(high, codes | junk, codes)
    rnd = torch.rand(n, generator=gen) < _RANDOM_WEIGHT_RATE
    k = int(rnd.sum())
    if k:
        codes[rnd] = torch.randint(0, 1 << E4M3.width, (k, BLOCK), generator=gen,
                                   dtype=torch.int64).to(torch.uint8)
        w_scale[rnd] = torch.randint(0, 1 << UE4M3.width, (k,), generator=gen,
                                     dtype=torch.int64).to(torch.uint8)
    return codes, w_fp8, w_scale


def make_streams(params: Mapping, *, quick: bool = True, seed: int = 1) -> list[PipelineStream]:
    """The regression's stimulus for ``ClassifierDotProduct(**params)``.

    The activation streams are the realistic tensors of the classifier's own regression
    (:func:`mpgen.sim.classifier.make_phases`, phases ``tensor0``, ``tensor1``, ...: heavy-tailed
    blocks with per-channel log-normal scales and rare outliers, random table indices, ``last``
    with probability 0.3 so dot products have random lengths, each tensor with its own Fisher
    table, its ``p`` from :func:`~mpgen.golden.classifier.activation_scale_exp` and a median
    score threshold, so about half the blocks are FP8; ``tensor2``'s table is all zeros, so
    all its finite blocks stay NVFP4). The first stream also carries the corner blocks of
    phase ``specials_p0`` (zeros, ±max, subnormals, NaN/±Inf) classified under its ``p``. Quick:
    3 tensors of 150 blocks; full: 8 of 1500. Each stream gets its own weight blocks
    (:func:`_random_weights`) and the next (gap, stall) of :data:`RUN_SETTINGS`.
    """
    phases = make_phases(dict(params), quick=quick, seed=seed)
    tensors = [ph for ph in phases if ph.name.startswith("tensor")]
    specials = [ph for ph in phases if ph.name == "specials_p0"]
    if not tensors:
        raise RuntimeError("mpgen.sim.classifier.make_phases returned no realistic 'tensor' phases")
    gen = torch.Generator().manual_seed(0xF6D0 + seed)
    out = []
    for k, ph in enumerate(tensors):
        values, index, last = ph.values, ph.index.to(torch.int64), ph.last.to(torch.bool)
        name = ph.name
        if k == 0 and specials:
            sp = specials[0]
            values = torch.cat([values, sp.values])
            index = torch.cat([index, sp.index.to(torch.int64)])
            last = torch.cat([last, sp.last.to(torch.bool)])
            name += "+specials"
        last = last.clone()
        last[-1] = True
        w_codes, w_fp8, w_scale = _random_weights(values.shape[0], gen)
        gap, stall = RUN_SETTINGS[k % len(RUN_SETTINGS)]
        out.append(PipelineStream(name, values.contiguous(), index, last, w_codes, w_fp8, w_scale,
                                  ph.table, int(ph.threshold), int(ph.p), gap, stall))
    return out


def _golden(stream: PipelineStream, cfg: ClassifierConfig) -> list[int]:
    """Expected results of ``stream`` (the one place the regression asks the golden model)."""
    return expected_results(stream.values, stream.index, stream.last, stream.w_codes,
                            stream.w_fp8, stream.w_scale, stream.table, stream.threshold,
                            stream.p, cfg)


def _compare(name: str, got: list[int], expected: list[int]) -> tuple[int, list[str]]:
    """Mismatch count of ``got`` against ``expected`` (a missing or extra result counts as one)
    and descriptions of the first few."""
    notes = []
    mism = 0
    for k, (g, e) in enumerate(zip(got, expected)):
        if int(g) != int(e):
            mism += 1
            if len(notes) < _MAX_DETAILS:
                notes.append(f"{name} result {k}: got {int(g):#010x}, expected {int(e):#010x}")
    if len(got) != len(expected):
        mism += abs(len(got) - len(expected))
        notes.append(f"{name}: {len(got)} results, expected {len(expected)}")
    return mism, notes


def run_pipeline_regression(config: dict, *, simulator: str = "verilator", quick: bool = True,
                            seed: int | None = None, build_root=None) -> RegressionResult:
    """Regression of ``ClassifierDotProduct(**config)`` on ``simulator``.

    The streams of :func:`make_streams` run one by one through the cocotb testbench
    :mod:`mpgen.sim.tb_fgmp_pipeline` (each run programs its own Fisher table, threshold and
    ``p``; activation and weight streams get random input gaps, the result stream random
    back-pressure, per :data:`RUN_SETTINGS`). Every result is compared with the golden model's
    (:func:`expected_results`). Quick: about 470 block pairs in 3 runs; full: about 12,000 in 8.

    Not covered: a reset in mid-stream. The testbench resets the unit only before programming
    it and has no reset phase, so this regression cannot exercise one (the classifier's and the
    dot product's own regressions do).

    Parameters
    ----------
    config : dict
        Parameters of ``ClassifierDotProduct`` (validated before anything is built).
    simulator : str
        ``"verilator"`` or ``"icarus"``.
    quick : bool
        Quick (a few hundred block pairs) or full (several thousand).
    seed : int or None
        Stimulus seed (None: 1); run k uses cocotb seed ``seed + k``.
    build_root : path-like or None
        Build cache folder (default :func:`mpgen.sim.runner.default_build_root`).

    Returns
    -------
    RegressionResult
        ``vectors`` block pairs driven, ``results`` dot products checked, ``mismatches``,
        ``phases`` per run (vectors, results, mismatches, gap, stall, FP8 fractions),
        ``details`` the first mismatches.

    Raises
    ------
    ValueError
        Bad parameters (the message names the parameter).
    TypeError
        ``config`` is not a mapping.
    mpgen.sim.runner.SimulatorNotFound
        The simulator is not installed.
    """
    from .classifier import simulate_classifier_dotprod
    from .runner import SimulationError

    unit = _unit(config)
    params = unit.params
    cfg = unit.classifier.config
    seed = 1 if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int or None, not {seed!r}")  # noqa: TRY004 (as workloads)
    t0 = time.monotonic()
    streams = make_streams(params, quick=quick, seed=seed)
    phases, notes = {}, []
    vectors = results = mismatches = 0
    ok = True
    for k, st in enumerate(streams):
        expected = _golden(st, cfg)
        a_fp8 = float(_classify(st.values, st.index, st.table, st.threshold, st.p, cfg)
                      .is_fp8.float().mean())
        try:
            got = simulate_classifier_dotprod(
                params, values=st.values, index=st.index, last=st.last, w_codes=st.w_codes,
                w_fp8=st.w_fp8, w_scale=st.w_scale, table=st.table, threshold=st.threshold,
                p=st.p, simulator=simulator, seed=seed + k, gap=st.gap, stall=st.stall,
                build_root=build_root)
        except SimulationError as e:  # e.g. too few results: the testbench's own check failed
            ok = False
            got = []
            notes.append(f"{st.name}: {e}")
        mism, first = _compare(st.name, got, expected)
        notes += first
        phases[st.name] = {"vectors": st.n, "results": min(len(got), len(expected)),
                           "mismatches": mism, "gap": st.gap, "stall": st.stall,
                           "a_fp8": round(a_fp8, 3),
                           "w_fp8": round(float(st.w_fp8.float().mean()), 3),
                           "p": st.p, "threshold": st.threshold}
        vectors += st.n
        results += phases[st.name]["results"]
        mismatches += mism
    return RegressionResult(
        config=params, simulator=simulator, vectors=vectors, results=results,
        mismatches=mismatches, passed=ok and mismatches == 0 and vectors > 0 and results > 0,
        phases=phases, seconds=time.monotonic() - t0,
        details="\n".join(notes[:_MAX_DETAILS]) if notes else "")


# ------------------------------------------------------------------------------ energy


def energy_modes(component) -> list[str]:
    """Operating modes of ``component`` for the energy flow: ``["classify+dot"]``.

    Parameters
    ----------
    component : ClassifierDotProduct

    Returns
    -------
    list of str
    """
    _check_unit(component)
    return [MODE]


def _weight_mask(weight: torch.Tensor) -> torch.Tensor:
    """FP8 blocks of ``weight`` [N, K]: FGMP's ``unweighted`` policy (score
    :func:`mpgen.golden.policy.weight_block_scores` with F = 1, one global threshold by
    :func:`mpgen.golden.policy.choose_threshold` for ``1 − WEIGHT_FP8_FRACTION`` NVFP4)."""
    from mpgen.golden.policy import choose_threshold, weight_block_scores

    scores = weight_block_scores(weight, None)
    t = choose_threshold(scores, 1.0 - WEIGHT_FP8_FRACTION)
    return scores > t


def pipeline_workload(component, mode: str, *, ops: int | None = None, seed: int = 0,
                      data: str = "auto", layer: str = DEFAULT_LAYER) -> Workload:
    """Stimulus and expected outputs of ``ClassifierDotProduct`` for the energy flow.

    Data: one linear layer from :func:`mpgen.sim.workloads.layer_data` (``fisher=True``: the real
    activation Fisher for MiniLM, the mean-squared-activation proxy for synthetic data); with
    ``channels`` > 384 the default layer becomes ``layers.2.ffn_out`` (K = 1536). The unit's
    Fisher table covers ``channels`` input channels, so each dot product is one (token, output
    channel) of the layer's GEMM restricted to input channels ``0..channels-1``
    (``channels/16`` block pairs; the last dot product shorter when ``ops`` is not a multiple).

    * Activations: the layer's real inputs, channels ``0..channels-1`` in the unit's input format
      (RNE from float32), classified by the unit itself: Fisher table
      :func:`~mpgen.golden.classifier.fisher_to_table` of the Fisher values, ``p`` from
      :func:`~mpgen.golden.classifier.activation_scale_exp` of their amax, threshold register the
      :data:`ACT_NVFP4_FRACTION` quantile of all captured blocks' scores (ties stay NVFP4).
    * Weights: the whole weight matrix quantized FGMP-style by
      :func:`~mpgen.golden.fgmp.fgmp_quantize` (per-tensor scale amax/2688), FP8 for the
      :data:`WEIGHT_FP8_FRACTION` of blocks with the largest unweighted NVFP4-vs-FP8 score (the
      golden policy's ``unweighted`` rule, one global threshold), NVFP4 elsewhere: a mixed
      stream, so all four (weight, activation) precision pairs occur. The measured fractions
      are written into ``source``.
    * Order: output-channel-major as in the dot-product workload: each token meets
      8 successive weight rows (its activation blocks are re-sent, re-classified, for each),
      then the next token; ``seed`` picks the first token and row.

    Setup: the ``cfg`` writes (table words, threshold, ``p``), then one warm-up dot product (the
    token and row before the measured ones). Measure: ``ops`` block pairs (default 96), ``act``
    and ``w`` driven together (same count; the unit pairs them in order). Output ``o``: one
    FP32 bit pattern per dot product from :func:`expected_results` (golden model only).

    Parameters
    ----------
    component : ClassifierDotProduct
        The unit (its layouts and parameters are read; it is not elaborated).
    mode : str
        ``"classify+dot"`` (:func:`energy_modes`).
    ops : int or None
        Measured block pairs (default :data:`DEFAULT_OPS`).
    seed : int
        Start of the stimulus in the GEMM (and the synthetic data's seed).
    data : str
        ``"auto"``, ``"minilm"`` or ``"synthetic"``.
    layer : str
        MiniLM linear layer name.

    Returns
    -------
    Workload
        Mode ``"classify+dot"``, op name ``"block pair"``.

    Raises
    ------
    ValueError
        Unknown mode, data or layer, a bad ``ops`` or ``seed``, or a layer too narrow for
        ``channels`` (or not finite in the input format).
    """

    unit = _check_unit(component)
    if mode not in energy_modes(unit):
        raise ValueError(f"mode {mode!r} is not a mode of ClassifierDotProduct; modes: {energy_modes(unit)}")
    if ops is not None and (isinstance(ops, bool) or not isinstance(ops, int) or ops <= 0):
        raise ValueError(f"ops must be a positive int, not {ops!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, not {seed!r}")  # noqa: TRY004 (as workloads)
    if data not in DATA_SOURCES:
        raise ValueError(f"data must be one of {DATA_SOURCES}, not {data!r}")
    ops = ops or DEFAULT_OPS
    cls = unit.classifier
    cfg, channels, words = cls.config, cls.channels, cls.words
    if layer == DEFAULT_LAYER and channels > 384:
        layer = DEFAULT_LAYER.replace("ffn_in", "ffn_out")  # K = 1536
    d = layer_data(data, layer, seed=seed, fisher=True)
    n_rows, k = d.weight.shape
    if channels > k:
        raise ValueError(f"channels={channels} exceeds the {k} input channels of {d.name}")
    x = d.acts[:, :channels].to(cfg.input_format.torch_dtype)
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{d.name} does not fit {cfg.input_format.name} (overflow)")
    tokens = x.shape[0]
    xb = x.reshape(tokens, words, BLOCK)
    p = activation_scale_exp(x.float().abs().max(), cfg)
    table = fisher_to_table(d.fisher[:channels].to(torch.float32), cfg)

    # threshold: the ACT_NVFP4_FRACTION quantile of every captured block's score
    res = _classify(xb.reshape(-1, BLOCK), torch.arange(words).repeat(tokens), table, 0, p, cfg)
    scores = sorted(int(a) << int(s) for a, s in zip(res.score.tolist(), res.shift.tolist()))
    threshold = min(scores[max(0, math.ceil(ACT_NVFP4_FRACTION * len(scores)) - 1)],
                    cfg.threshold_max)

    wq = fgmp_quantize(d.weight, _weight_mask(d.weight))

    dots, warm_dot = gemm_walk(ops, words, tokens, n_rows, seed, warm_blocks=words,
                               per_token=_PER_TOKEN)
    warm = [warm_dot]

    def stream(dot_list):
        parts = {key: [] for key in ("values", "index", "last", "w_codes", "w_fp8", "w_scale")}
        for m, n, blocks in dot_list:
            parts["values"].append(xb[m, :blocks])
            parts["index"].append(torch.arange(blocks, dtype=torch.int64))
            last = torch.zeros(blocks, dtype=torch.bool)
            last[-1] = True
            parts["last"].append(last)
            parts["w_codes"].append(wq.codes[n, :blocks])
            parts["w_fp8"].append(wq.is_fp8[n, :blocks])
            parts["w_scale"].append(wq.block_scale[n, :blocks])
        return {key: torch.cat(v).contiguous() for key, v in parts.items()}

    def phase(s, name):
        exp = expected_results(s["values"], s["index"], s["last"], s["w_codes"], s["w_fp8"],
                               s["w_scale"], table, threshold, p, cfg)
        return StreamPhase({"act": pack_inputs(cls.input_layout, s["values"], s["index"], s["last"]),
                            "w": pack_weights(unit.weight_layout, s["w_codes"], s["w_fp8"],
                                              s["w_scale"])},
                           {"o": len(exp)}, {"o": exp}, name)

    meas = stream(dots)
    a_fp8 = float(_classify(meas["values"], meas["index"], table, threshold, p, cfg)
                  .is_fp8.float().mean())
    w_fp8 = float(meas["w_fp8"].float().mean())
    source = (f"{d.name}: input activations channels 0..{channels - 1}, {cfg.input_format.name} "
              f"(RNE), classified by the unit (Fisher table from {d.fisher_kind}; p={p}; "
              f"threshold = {ACT_NVFP4_FRACTION:.0%} quantile of the block scores, "
              f"{a_fp8:.0%} of measured activation blocks FP8) × weight rows, FGMP "
              f"(amax/2688 tensor scale; FP8 for the {WEIGHT_FP8_FRACTION:.0%} of blocks with the "
              f"largest unweighted NVFP4-vs-FP8 score, {w_fp8:.0%} of measured weight blocks FP8); "
              f"{len(dots)} dot products of up to {words} block pairs, {_PER_TOKEN} weight rows "
              f"per token")
    setup = [StreamPhase({"cfg": cfg_writes(unit, table, threshold, p)}, {}, None, "program"),
             phase(stream(warm), "warmup")]
    return Workload(MODE, setup, [phase(meas, "block pairs")], ops, "block pair", source)
