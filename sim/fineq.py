"""Stimulus, packing and regression entry point for the FineQ array and its baselines.

Three levels, each against the golden model :mod:`mpgen.golden.fineq`:

* the decoder (:class:`~mpgen.rtl.fineq.FineQDecoder`): all 256 words vs
  :func:`~mpgen.golden.fineq.decode_words`;
* the PE (:class:`~mpgen.rtl.fineq.TemporalPE` or :class:`~mpgen.rtl.fineq.MultiplierPE`, with its
  weight register: :class:`~mpgen.rtl.fineq.PECell`) alone:
  every weight it can hold × every activation, each added to a random partial sum;
* the array (:class:`~mpgen.rtl.fineq.FineQArray`): GEMM tiles (random, corner, real
  stories260K weights and activations), random valid/ready traffic on all three streams, a reset
  mid-stream, and a timing phase that measures latency, throughput and cycles per tile against
  the documented formulas; results bit-exact vs :func:`~mpgen.golden.fineq.int_gemm`.

The cocotb module :mod:`mpgen.sim.tb_fineq` drives them; :func:`run_fineq_regression` builds
the RTL and runs all three from plain Python (pytest, the CLI).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mpgen.golden.fineq import CLUSTER, decode_words, int_gemm, word_table
from mpgen.models.paths import STORIES260K, find_model_file

__all__ = ["Tile", "ArrayPhase", "make_array_phases", "make_timing_tiles", "pack_weights",
           "pack_acts", "unpack_results", "expected_results", "tile_max_magnitude",
           "FineQRegressionResult", "run_fineq_regression", "pe_weight_values",
           "default_model_path", "model_tiles"]
INT8_CORNERS = (-128, 127, 0, -1, 1)


@dataclass
class Tile:
    """One GEMM tile for an R×C array: ``weights`` are FineQ words ``uint8 [C, G]`` (column c's
    G = ceil(R/3) cluster words) or plain signed integers ``int [C, R]``; ``acts`` int ``[M, R]``."""

    weights: torch.Tensor
    acts: torch.Tensor

    @property
    def m(self) -> int:
        return self.acts.shape[0]


@dataclass
class ArrayPhase:
    """A phase of the array regression: tiles in order; with ``reset_after`` set, the last
    tile's activation stream is cut after that many vectors and the array reset."""

    name: str
    tiles: list
    reset_after: int | None = None


def _layout_elem(layout):
    return layout.elem_shape.width, layout.length


def pack_weights(array, tile: Tile) -> list[int]:
    """The ``w`` stream payloads of ``tile`` for ``array`` (field widths from its layout)."""
    width, cols = _layout_elem(array.weight_layout)
    w = tile.weights.tolist()
    if len(w) != cols:
        raise ValueError(f"tile has {len(w)} columns, the array {cols}")
    mask = (1 << width) - 1
    out = []
    for g in range(array.weight_transfers):
        v = 0
        for c in range(cols):
            v |= (int(w[c][g]) & mask) << (c * width)
        out.append(v)
    return out


def pack_acts(array, tile: Tile) -> list[int]:
    """The ``a`` stream payloads (one per activation vector)."""
    width, rows = _layout_elem(array.act_layout)
    mask = (1 << width) - 1
    out = []
    for vec in tile.acts.tolist():
        if len(vec) != rows:
            raise ValueError(f"activation vector of {len(vec)}, the array has {rows} rows")
        v = 0
        for r, x in enumerate(vec):
            v |= (int(x) & mask) << (r * width)
        out.append(v)
    return out


def unpack_results(array, payload: int) -> list[int]:
    """The C signed sums of one ``o`` payload."""
    width, cols = _layout_elem(array.result_layout)
    out = []
    for c in range(cols):
        x = (payload >> (c * width)) & ((1 << width) - 1)
        out.append(x - (1 << width) if x >> (width - 1) else x)
    return out


def decoded_weights(array, tile: Tile) -> torch.Tensor:
    """int8 ``[C, Kp]`` weights the array holds for ``tile`` (Kp = R rounded up to 3): FineQ words
    through the golden decoder (positions >= R included, they meet zero activations); plain
    weights zero-padded."""
    rows = array.rows
    kp = -(-rows // CLUSTER) * CLUSTER
    if array.fineq:
        words = tile.weights.to(torch.uint8)
        return decode_words(words, array.code)[0].reshape(words.shape[0], -1)[:, :kp]
    w = torch.zeros(tile.weights.shape[0], kp, dtype=torch.int8)
    w[:, :rows] = tile.weights.to(torch.int8)
    return w


def tile_max_magnitude(array, tile: Tile) -> int:
    """Largest |w| of ``tile`` over the rows the array holds (rows < R; a FineQ load's padding
    positions are not in a PE): what sets the tile's step, :meth:`FineQArray.tile_step_cycles`."""
    return int(decoded_weights(array, tile)[:, :array.rows].to(torch.int64).abs().max())


def expected_results(array, tile: Tile) -> list[list[int]]:
    """Golden results of ``tile``: ``int_gemm`` of the decoded weights and the zero-padded
    activations, one C-list per activation vector."""
    w = decoded_weights(array, tile)
    a = torch.zeros(tile.m, w.shape[1], dtype=torch.int8)
    a[:, :array.rows] = tile.acts.to(torch.int8)
    return int_gemm(w, a).tolist()


# --------------------------------------------------------------------------- stimulus


class _Gen:
    def __init__(self, array, rng: random.Random):
        self.array, self.rng = array, rng
        self.R, self.C = array.rows, array.cols
        self.amin, self.amax = -(1 << (array.act_bits - 1)), (1 << (array.act_bits - 1)) - 1

    def act(self, corner_rate=0.2):
        r = self.rng
        if r.random() < corner_rate:
            return r.choice(INT8_CORNERS) if self.array.act_bits == 8 else \
                r.choice((self.amin, self.amax, 0))
        return r.randint(self.amin, self.amax)

    def acts(self, m):
        return torch.tensor([[self.act() for _ in range(self.R)] for _ in range(m)], dtype=torch.int64)

    def random_weights(self):
        a = self.array
        if a.fineq:
            return torch.tensor([[self.rng.randrange(256) for _ in range(a.weight_transfers)]
                                 for _ in range(self.C)], dtype=torch.int64)
        lo, hi = -(1 << (a.weight_bits - 1)), (1 << (a.weight_bits - 1)) - 1
        return torch.tensor([[self.rng.randint(lo, hi) for _ in range(self.R)]
                             for _ in range(self.C)], dtype=torch.int64)

    def random_tile(self, max_m=16):
        return Tile(self.random_weights(), self.acts(self.rng.randint(1, max_m)))

    def step_maxima(self) -> list[int]:
        """The largest |w| values whose tiles :meth:`weights_with_max` covers: every one the
        format can give a tile (FineQ), or 0, 1 and the extreme (plain weights)."""
        a = self.array
        if a.fineq:
            return [k for k in range(a.max_weight + 1) if self.weights_with_max(k) is not None]
        return [0, 1, a.max_weight]

    def weights_with_max(self, k: int):
        """Random weights of one tile whose largest |w| (rows < R) is exactly ``k``, or None
        where the format cannot give one (e.g. k = 0 with a code that has no zero level)."""
        a, rng = self.array, self.rng
        if not a.fineq:
            lo, hi = max(-k, -(1 << (a.weight_bits - 1))), min(k, (1 << (a.weight_bits - 1)) - 1)
            w = [[rng.randint(lo, hi) for _ in range(self.R)] for _ in range(self.C)]
            w[rng.randrange(self.C)][rng.randrange(self.R)] = lo if lo == -k else hi
            return torch.tensor(w, dtype=torch.int64)
        mags = word_table(a.code)[0].to(torch.int64).abs()
        groups = a.weight_transfers
        ok, hit = [], []  # per group: words whose rows < R have |w| <= k, and == k somewhere
        for g in range(groups):
            top = mags[:, :min(CLUSTER, self.R - CLUSTER * g)].amax(dim=1)
            ok.append((top <= k).nonzero().flatten().tolist())
            hit.append((top == k).nonzero().flatten().tolist())
        if not all(ok) or not any(hit):
            return None
        w = [[rng.choice(ok[g]) for g in range(groups)] for _ in range(self.C)]
        g = rng.choice([g for g in range(groups) if hit[g]])
        w[rng.randrange(self.C)][g] = rng.choice(hit[g])
        return torch.tensor(w, dtype=torch.int64)

    def step_tiles(self, max_m=16):
        """One tile for each of :meth:`step_maxima`, in random order (so the step length changes
        from tile to tile)."""
        ks = self.step_maxima()
        self.rng.shuffle(ks)
        return [Tile(self.weights_with_max(k), self.acts(self.rng.randint(1, max_m))) for k in ks]

    def extreme_weights(self, sign: int):
        """Every weight at the most negative (sign<0) or most positive level the format holds."""
        a = self.array
        if a.fineq:
            wt, _ = word_table(a.code)
            # the word whose decoded cluster has the largest signed sum (or smallest)
            sums = wt.to(torch.int64).sum(dim=1) * sign
            word = int(sums.argmax())
            return torch.full((self.C, a.weight_transfers), word, dtype=torch.int64)
        v = (1 << (a.weight_bits - 1)) - 1 if sign > 0 else -(1 << (a.weight_bits - 1))
        return torch.full((self.C, self.R), v, dtype=torch.int64)

    def corner_tiles(self):
        R = self.R
        rows = [[self.amin] * R, [self.amax] * R, [0] * R,
                [self.amin if r % 2 else self.amax for r in range(R)]]
        acts = torch.tensor(rows, dtype=torch.int64)
        tiles = [Tile(self.extreme_weights(s), acts) for s in (-1, 1)]
        if self.array.fineq:  # one word per column, every kind of cluster
            wt, _ = word_table(self.array.code)
            mags = wt.to(torch.int64).abs().sum(dim=1)
            kinds = [int(mags.argmax()), int(mags.argmin()), 0, 255, 0b11111101, 0b01111110]
            w = torch.tensor([[kinds[(c + g) % len(kinds)] for g in range(self.array.weight_transfers)]
                              for c in range(self.C)], dtype=torch.int64)
            tiles.append(Tile(w, acts))
        return tiles


def _quantize_acts(x: torch.Tensor) -> torch.Tensor:
    """Symmetric per-vector INT8 (absmax/127, round half to even, clamp): real activations."""
    s = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
    return torch.round(x / s).clamp(-128, 127).to(torch.int64)


def default_model_path() -> Path | None:
    """llama2.c stories260K in ``$MPGEN_MODELS`` (used for tiles of real weights), or None."""
    return find_model_file(STORIES260K)


def model_tiles(array, *, count: int, seed: int, model_path=None) -> list[Tile]:
    """Tiles cut from stories260K: weights of several layers (FineQ-quantized with
    :func:`~mpgen.golden.fineq.fineq_quantize` and the array's code, or RTN INT4/INT8 for the
    baselines) and the real inputs of those layers for a few tokens, quantized to INT8.
    ``model_path``: the model file (default :func:`default_model_path`). Returns [] when the
    model file is absent."""
    from mpgen.golden.fineq import fineq_quantize, rtn_quantize
    from mpgen.models.llama2c import load_llama2c

    path = Path(model_path) if model_path else default_model_path()
    if path is None or not path.is_file():
        return []
    model = load_llama2c(path)
    inputs = {}

    def hook(name, x, w):
        inputs.setdefault(name, x.detach().clone())
        return x @ w.T

    tokens = torch.tensor([1, 403, 261, 379, 296, 285, 379, 367, 266, 407, 302, 315, 45, 267, 271,
                           396], dtype=torch.long) % model.config.vocab_size
    model.forward(tokens, matmul=hook)
    rng = random.Random(seed)
    names = [n for n, _ in model.linear_weights(include_classifier=False)]
    weights = dict(model.linear_weights(include_classifier=False))
    R, C = array.rows, array.cols
    tiles = []
    for _ in range(count):
        name = rng.choice(names)
        w = weights[name]
        n_out, k = w.shape
        if array.fineq:
            q = fineq_quantize(w, group_size=None, code=array.code)
            words = q.words.to(torch.int64)  # [N, Kp/3]
            g0 = rng.randrange(0, max(1, words.shape[1] - array.weight_transfers + 1))
            n0 = rng.randrange(0, max(1, n_out - C + 1))
            wt = words[n0:n0 + C, g0:g0 + array.weight_transfers]
            k0 = 3 * g0
        else:
            q = rtn_quantize(w, array.weight_bits).q.to(torch.int64)
            k0 = rng.randrange(0, max(1, k - R + 1))
            n0 = rng.randrange(0, max(1, n_out - C + 1))
            wt = q[n0:n0 + C, k0:k0 + R]
        if wt.shape[0] < C or wt.shape[1] < (array.weight_transfers if array.fineq else R):
            continue  # the matrix is smaller than the array in this direction
        x = _quantize_acts(inputs[name])[:, k0:k0 + R]
        if x.shape[1] < R:
            x = torch.nn.functional.pad(x, (0, R - x.shape[1]))
        tiles.append(Tile(wt, x))
    return tiles


def make_array_phases(array, *, quick: bool = True, seed: int = 1, model_path=None) -> list[ArrayPhase]:
    """The array regression's stimulus (see the module docstring)."""
    rng = random.Random(seed)
    g = _Gen(array, rng)
    n_random = 8 if quick else 30
    phases = [ArrayPhase("random", [g.random_tile() for _ in range(n_random)]),
              ArrayPhase("corners", g.corner_tiles()),
              ArrayPhase("step_lengths", g.step_tiles())]
    real = model_tiles(array, count=3 if quick else 8, seed=seed, model_path=model_path)
    if real:
        phases.append(ArrayPhase("model", real))
    cut = Tile(g.random_weights(), g.acts(12))
    phases.append(ArrayPhase("reset_mid_stream", [g.random_tile(6), cut],
                             reset_after=rng.randint(3, 9)))
    phases.append(ArrayPhase("after_reset", [g.random_tile() for _ in range(3)]))
    return phases


def make_timing_tiles(array, *, seed: int = 1) -> dict[str, Tile]:
    """The timing phase's tiles, by name: ``m1``, ``m5``, ``m16`` (random weights, that many
    vectors) and ``max{k}`` (5 vectors, largest |w| exactly k) for every k of
    ``_Gen.step_maxima``: the step length of each is checked against the cycle formulas."""
    g = _Gen(array, random.Random(seed))
    weights = g.random_weights()
    tiles = {f"m{m}": Tile(weights, g.acts(m)) for m in (1, 5, 16)}
    for k in g.step_maxima():
        tiles[f"max{k}"] = Tile(g.weights_with_max(k), g.acts(5))
    return tiles


def pe_weight_values(pe_kind: str, code=None, weight_width: int | None = None) -> list[int]:
    """Every weight a PE of the array can be given: the code's levels and 0 (a dropped position)
    for FineQ weights, every ``weight_width``-bit integer for plain weights."""
    if code is not None:
        return sorted(set(code.normal_levels) | set(code.outlier_levels) | {0})
    return list(range(-(1 << (weight_width - 1)), 1 << (weight_width - 1)))


# --------------------------------------------------------------------------- running


@dataclass
class FineQRegressionResult:
    """Outcome of the decoder, PE and array regressions of one configuration on one simulator.

    ``vectors``: decoder words + PE (weight, activation) pairs + array activation vectors;
    ``results``: values compared (decoded words, PE sums, array result vectors)."""

    config: dict
    simulator: str
    vectors: int
    results: int
    mismatches: int
    passed: bool
    phases: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    seconds: float = 0.0
    details: str = ""

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v['vectors']}" for k, v in self.phases.items())
        return (f"{self.simulator}: {self.vectors} vectors ({parts}), {self.results} results, "
                f"{self.mismatches} mismatches ({'PASS' if self.passed else 'FAIL'}, "
                f"{self.seconds:.1f} s)")


def _run(component, top, testcase, params, *, simulator, seed, build_root):
    from mpgen.rtl.emit import to_verilog

    from .runner import run_cocotb

    return run_cocotb(to_verilog(component, top), top, "mpgen.sim.tb_fineq", simulator=simulator,
                      seed=seed, testcase=testcase, build_root=build_root,
                      params={"seed": seed, **params})


def pe_for(array):
    """A standalone PE exactly like the ones inside ``array``, with its weight register
    (:class:`~mpgen.rtl.fineq.PECell`; for the PE regression)."""
    from mpgen.rtl.fineq import MultiplierPE, PECell, TemporalPE
    return PECell((TemporalPE if array.pe == "temporal" else MultiplierPE)(**array._pe_args))


def run_fineq_regression(config: dict, *, simulator: str = "verilator", quick: bool = True,
                         seed: int | None = None, build_root=None, levels=None,
                         model_path=None) -> FineQRegressionResult:
    """Generate the RTL of ``config`` (:class:`~mpgen.rtl.fineq.FineQArray` parameters), run the
    decoder (FineQ weights only), PE and array regressions on ``simulator`` and return the counts.
    ``model_path``: stories260K for the tiles of real weights (default :func:`default_model_path`,
    i.e. ``$MPGEN_MODELS``; none: those tiles are left out).

    ``levels`` (default: ``("array",)`` quick, all three full): the decoder sweep (always
    exhaustive), the PE sweep (quick: every weight × 64 activations instead of 256) and the
    array tiles (quick: fewer).  The array level drives real and random FineQ words through the
    array's own decoders and PEs; the separate decoder and PE tops add exhaustive sweeps."""
    from mpgen.rtl.fineq import FineQArray, FineQDecoder

    array = FineQArray(**config)  # validates the parameters before anything is built
    array._MustUse__silence = True  # only its parameters are needed unless the array level runs
    seed = 1 if seed is None else seed
    if levels is None:
        levels = ("array",) if quick else ("decoder", "pe", "array")
    unknown = set(levels) - {"decoder", "pe", "array"}
    if unknown:
        raise ValueError(f"unknown regression levels {sorted(unknown)}")
    t0 = time.monotonic()
    phases, timing, first = {}, {}, []
    ok = True
    vectors = results = mismatches = 0
    model_path = model_path if model_path else default_model_path()
    common = {"config": array.params, "quick": quick, "model_path": str(model_path or "")}
    runs = []
    if "decoder" in levels and array.fineq:
        runs.append((FineQDecoder(array.code), "fineq_decoder", "decoder"))
    if "pe" in levels:
        runs.append((pe_for(array), "fineq_pe", "pe"))
    if "array" in levels:
        runs.append((array, "fineq_array", "array"))
    for component, top, test in runs:
        run = _run(component, top, test, common,
                   simulator=simulator, seed=seed, build_root=build_root)
        res = run.result or {}
        ok &= bool(run.passed)
        m = int(res.get("mismatches", -1))
        if m < 0 or not res.get("vectors"):
            ok = False
            first.append(f"{test}: no result written; log {run.log}")
        mismatches += max(m, 0) if m >= 0 else 1
        vectors += int(res.get("vectors", 0))
        results += int(res.get("results", 0))
        phases.update(res.get("phases", {}))
        timing.update(res.get("timing", {}))
        if res.get("first_mismatches"):
            first.append(res["first_mismatches"])
    return FineQRegressionResult(
        config=array.params, simulator=simulator, vectors=vectors, results=results,
        mismatches=mismatches, passed=ok and mismatches == 0 and vectors > 0, phases=phases,
        timing=timing, seconds=time.monotonic() - t0, details="\n".join(first))
