"""Stimulus, packing, regression entry point and registry pieces for ``ActivationClassifier``.

A regression is a list of :class:`Phase` objects. Each phase first writes whatever configuration
it changes (Fisher table words, threshold, scale exponent ``p``) through the ``cfg`` stream, then
streams its blocks; the expected output of every block comes from
:func:`mpgen.golden.classifier.classify_stream` under the configuration in force. The cocotb module
:mod:`mpgen.sim.tb_classifier` drives them; :func:`run_classifier_regression` builds the RTL and runs
it from Python (pytest, the CLI).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch

from mpgen.golden.classifier import (ClassifierConfig, FisherTable, activation_scale_exp,
                                     classify_stream, fisher_to_table)
from mpgen.golden.fgmp import BLOCK

from mpgen.rtl.classifier import ActivationClassifier

from .dotprod import RegressionResult

__all__ = ["simulate_classifier_dotprod", "Phase", "make_phases", "pack_inputs", "pack_outputs", "input_codes", "expected_outputs",
           "run_classifier_regression", "ClassifierRegressionResult", "RegressionResult"]

@dataclass
class Phase:
    """One stimulus phase: optional configuration writes, then ``values`` [n, 16] (input dtype),
    ``index`` int64 [n], ``last`` bool [n]; optionally a reset after ``reset_after`` accepted blocks
    (the rest of the phase is dropped)."""

    name: str
    values: torch.Tensor
    index: torch.Tensor
    last: torch.Tensor
    table: FisherTable | None = None
    threshold: int | None = None
    p: int | None = None
    reset_after: int | None = None


def input_codes(values: torch.Tensor) -> torch.Tensor:
    """int64 bit patterns of bf16/fp16/fp32 values (same shape)."""
    if values.dtype in (torch.bfloat16, torch.float16):
        return values.contiguous().view(torch.int16).to(torch.int64) & 0xFFFF
    if values.dtype == torch.float32:
        return values.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    raise TypeError(f"unsupported input dtype {values.dtype}")


def _offsets(layout):
    return {name: f.offset for name, f in layout}


def pack_inputs(layout, values, index, last) -> list[int]:
    """Input payload integers (field offsets read from the RTL's layout)."""
    offs = _offsets(layout)
    width = layout["values"].shape.elem_shape.width
    codes = input_codes(values).tolist()
    out = []
    for row, ix, ls in zip(codes, index.tolist(), last.tolist()):
        v = sum(c << (offs["values"] + width * j) for j, c in enumerate(row))
        out.append(v | (int(ix) << offs["index"]) | (int(ls) << offs["last"]))
    return out


def pack_outputs(layout, codes, is_fp8, block_scale, last) -> list[int]:
    """Expected output payload integers for golden blocks."""
    offs = _offsets(layout)
    blk = {n: f.offset for n, f in layout["block"].shape}
    base = offs["block"]
    out = []
    for row, f8, sc, ls in zip(codes.tolist(), is_fp8.tolist(), block_scale.tolist(), last.tolist()):
        v = sum(int(c) << (base + blk["codes"] + 8 * j) for j, c in enumerate(row))
        v |= int(f8) << (base + blk["fp8"]) | int(sc) << (base + blk["scale"])
        out.append(v | int(ls) << offs["last"])
    return out


def expected_outputs(layout, phase: Phase, table: FisherTable, threshold: int, p: int,
                     cfg: ClassifierConfig) -> list[int]:
    res = classify_stream(phase.values, phase.index, table, threshold, p, cfg)
    return pack_outputs(layout, res.codes, res.is_fp8, res.block_scale, phase.last)


# ------------------------------------------------------------------------------ stimulus
class _Gen:
    def __init__(self, unit_params: dict, rng: random.Random, gen: torch.Generator):
        self.cfg = ClassifierConfig(input_format=unit_params.get("input_format", "bf16"),
                                    diff_frac_bits=unit_params.get("diff_frac_bits", 3),
                                    diff_bits=unit_params.get("diff_bits", 9),
                                    p_bits=unit_params.get("p_bits", 8))
        self.channels = unit_params.get("channels", 64)
        self.words = self.channels // BLOCK
        self.dtype = self.cfg.input_format.torch_dtype
        self.rng, self.gen = rng, gen

    def index_last(self, n, ordered=False):
        if ordered:
            index = torch.arange(n) % self.words
        else:
            index = torch.randint(0, self.words, (n,), generator=self.gen)
        last = torch.rand(n, generator=self.gen) < 0.3
        return index, last

    def realistic(self, n):
        """Activation-like blocks: per-channel log-normal scale, Gaussian body, Student-t-like heavy
        tails and rare large outliers on a few channels."""
        g = self.gen
        chan_scale = torch.exp(torch.randn(BLOCK, generator=g) * 1.5)
        body = torch.randn(n, BLOCK, generator=g) * chan_scale
        heavy = torch.randn(n, BLOCK, generator=g) / torch.rand(n, BLOCK, generator=g).clamp(min=1e-3) ** 0.7
        mix = torch.rand(n, BLOCK, generator=g)
        x = torch.where(mix < 0.15, heavy, body)
        outlier = torch.rand(n, BLOCK, generator=g) < 0.01
        x = torch.where(outlier, x * 200, x)
        x = x * 2.0 ** self.rng.randint(-12, 12)
        top = float(torch.finfo(self.dtype).max) / 2  # stay finite (FP16 overflows at 65504)
        return x.clamp(-top, top).to(self.dtype)

    def table(self, kind="random"):
        g = self.gen
        if kind == "zero":
            return fisher_to_table(torch.zeros(self.channels))
        if kind == "all_codes":  # every finite UE4M3 code somewhere
            codes = torch.randint(0, 127, (self.channels,), generator=g, dtype=torch.int64).to(torch.uint8)
            codes[: min(127, self.channels)] = torch.arange(min(127, self.channels), dtype=torch.uint8)
            return FisherTable(codes, unit_exp=-5)
        f = torch.exp(torch.randn(self.channels, generator=g) * 3)
        f[torch.rand(self.channels, generator=g) < 0.05] = 0
        return fisher_to_table(f)

    def all_codes(self):
        """Every code of the input format (16-bit formats), in two arrangements: sorted by
        magnitude (block-mates of similar size, so every E2M1 boundary is crossed) and shuffled."""
        width = self.cfg.input_format.width
        if width > 16:
            raise ValueError("exhaustive sweep is for 16-bit formats")
        codes = torch.arange(1 << 16, dtype=torch.int64)
        vals = codes.to(torch.int32).to(torch.int16).view(self.dtype)
        order = torch.argsort(vals.float().abs().nan_to_num(nan=float("inf")), stable=True)
        by_mag = vals[order].reshape(-1, BLOCK)
        shuffled = vals[torch.randperm(1 << 16, generator=self.gen)].reshape(-1, BLOCK)
        return by_mag, shuffled

    def random_codes(self, n):
        """Uniformly random bit patterns (any format; NaN/Inf included)."""
        width = self.cfg.input_format.width
        c = torch.randint(0, 1 << width, (n, BLOCK), generator=self.gen, dtype=torch.int64)
        c = c - ((c >> (width - 1)) << width)  # two's complement value of the bit pattern
        return c.to(torch.int32 if width == 32 else torch.int16).view(self.dtype)

    def specials(self):
        """All-zero, −0, max-magnitude, saturating, subnormal, single-outlier and NaN/Inf blocks."""
        fmt, dt = self.cfg.input_format, self.dtype
        big = float(torch.finfo(dt).max)
        tiny = fmt.min_subnormal
        rows = [
            [0.0] * BLOCK, [-0.0] * BLOCK, [big] * BLOCK, [-big] * BLOCK,
            [big if j % 2 else -big for j in range(BLOCK)],
            [tiny * (j + 1) for j in range(BLOCK)], [-tiny] * BLOCK,
            [fmt.min_normal] * BLOCK,
            [1.0] + [0.0] * (BLOCK - 1), [0.0] * (BLOCK - 1) + [-3.0],
            [1e4 if j == 5 else 1e-2 * (j + 1) for j in range(BLOCK)],
            [float("nan")] + [1.0] * (BLOCK - 1),
            [-float("nan")] + [0.0] * (BLOCK - 1),
            [float("inf")] + [2.0] * (BLOCK - 1),
            [1.0] * (BLOCK - 1) + [-float("inf")],
            [float("inf"), -float("inf")] * (BLOCK // 2),
        ]
        # magnitudes straddling 6·448·2**p (the unsaturated limit) for typical p
        for m in (2688.0, 2688.0 * 1.01, 2688.0 * 2, 1344.0, 2688.0 * 0.999):
            rows.append([m * (1 - 0.03 * j) for j in range(BLOCK)])
        return torch.tensor(rows, dtype=torch.float32).to(dt)


def _phase(name, values, gen: _Gen, *, ordered=False, **kw):
    index, last = gen.index_last(values.shape[0], ordered)
    if values.shape[0]:
        last[-1] = True
    return Phase(name, values, index, last, **kw)


def make_phases(unit_params: dict, *, quick: bool = False, seed: int = 1) -> list[Phase]:
    """The regression's stimulus (see ``docs/classifier.md``): exhaustive input-code sweeps
    (16-bit formats; sampled when quick) under several ``p`` with all-NVFP4 and all-FP8
    thresholds, random realistic blocks, corner blocks, threshold ties, Fisher-table
    reprogramming between tensors, and a reset in mid-stream."""
    rng = random.Random(seed)
    g = _Gen(unit_params, rng, torch.Generator().manual_seed(seed))
    cfg = g.cfg
    tmax = cfg.threshold_max
    phases = []
    table = g.table("all_codes")
    # 1. exhaustive per-element sweeps
    if cfg.input_format.width <= 16:
        by_mag, shuffled = g.all_codes()
        ps = (0, -7, 9, cfg.p_range[0], cfg.p_range[1]) if not quick else (0, -7)
        for k, p in enumerate(ps):
            for arr_name, arr in (("sorted", by_mag), ("shuffled", shuffled)):
                blocks = arr if not quick else arr[torch.randperm(arr.shape[0], generator=g.gen)[:256]]
                for tname, thr in (("nvfp4", tmax), ("fp8", 0)):
                    phases.append(_phase(f"exhaustive_{arr_name}_{tname}_p{p}", blocks, g,
                                         table=table if not phases else None, threshold=thr, p=p))
    else:
        for p in (0, -7, 30):
            for tname, thr in (("nvfp4", tmax), ("fp8", 0)):
                phases.append(_phase(f"random_codes_{tname}_p{p}", g.random_codes(512 if quick else 8192),
                                     g, table=table if not phases else None, threshold=thr, p=p))
    # 2. realistic tensors with their own Fisher table, p and a median threshold; reprogrammed
    #    between tensors
    n_tensors = 3 if quick else 8
    for t in range(n_tensors):
        x = g.realistic(150 if quick else 1500)
        tab = g.table("zero" if t == 2 else "random")
        p = activation_scale_exp(x.float().abs().max(), cfg)
        ph = _phase(f"tensor{t}", x, g, table=tab, p=p, threshold=0)
        res = classify_stream(ph.values, ph.index, tab, 0, p, cfg)
        scores = sorted(int(a) << int(s) for a, s in zip(res.score.tolist(), res.shift.tolist()))
        ph.threshold = min(scores[len(scores) // 2], tmax)
        phases.append(ph)
    # 3. corner blocks, under two p values
    for p in (0, -3):
        phases.append(_phase(f"specials_p{p}", g.specials(), g, p=p, threshold=rng.choice((0, tmax, 1 << 40))))
    # 4. score exactly at the threshold (stays NVFP4) and one below (FP8): one block per phase
    x = g.realistic(16 if quick else 60)
    p = activation_scale_exp(x.float().abs().max(), cfg)
    tab = g.table("random")
    for j in range(x.shape[0]):
        ph = _phase("threshold_tie", x[j:j + 1], g, table=tab if j == 0 else None, p=p, threshold=0)
        res = classify_stream(ph.values, ph.index, tab, 0, p, cfg)
        s = int(res.score[0]) << int(res.shift[0])
        if s == 0:
            continue
        ph.threshold = s
        phases.append(ph)
        phases.append(Phase("threshold_tie_minus1", ph.values, ph.index, ph.last, threshold=s - 1))
    # 5. reset in mid-stream, then more traffic under the same programming
    x = g.realistic(60)
    phases.append(_phase("reset_mid_stream", x, g, threshold=1 << 30,
                         reset_after=rng.randrange(10, 50)))
    phases.append(_phase("after_reset", g.realistic(100), g))
    return phases


# ------------------------------------------------------------------------------ runner
class ClassifierRegressionResult(RegressionResult):
    """:class:`~mpgen.sim.dotprod.RegressionResult` whose vectors are classified blocks."""

    def summary(self) -> str:
        return (f"{self.simulator}: {self.vectors} blocks, {self.results} output blocks checked, "
                f"{self.mismatches} mismatches ({'PASS' if self.passed else 'FAIL'}, "
                f"{self.seconds:.1f} s)")


def _run_tb(dut, testcase, params, *, simulator, seed, build_root):
    from mpgen.rtl.emit import to_verilog

    from .runner import run_cocotb

    return run_cocotb(to_verilog(dut, "classifier"), "classifier", "mpgen.sim.tb_classifier",
                      simulator=simulator, seed=seed, testcase=testcase, build_root=build_root,
                      params={"config": dut.params, "seed": seed, **params})


def run_classifier_regression(config: dict, *, simulator: str = "verilator", quick: bool = True,
                              seed: int | None = None, build_root=None) -> RegressionResult:
    """Generate the RTL for ``config``, run the cocotb regression on ``simulator``, return counts
    (``vectors`` = blocks checked)."""
    dut = ActivationClassifier(**config)  # validates the parameters before anything is built
    seed = 1 if seed is None else seed
    t0 = time.monotonic()
    run = _run_tb(dut, "regression", {"quick": quick}, simulator=simulator, seed=seed,
                  build_root=build_root)
    return ClassifierRegressionResult.from_run(run, dut.params, simulator, t0)


# ------------------------------------------------------------------------------ integration
def simulate_classifier_dotprod(params: dict, *, values: torch.Tensor, index: torch.Tensor,
                                last: torch.Tensor, w_codes: torch.Tensor, w_fp8: torch.Tensor,
                                w_scale: torch.Tensor, table: FisherTable, threshold: int, p: int,
                                simulator: str = "verilator", seed: int = 1, gap: float = 0.0,
                                stall: float = 0.0, build_root=None) -> list[int]:
    """Run activation blocks (with their weight blocks) through ``ClassifierDotProduct(**params)``
    after programming ``table``, ``threshold`` and ``p``; returns the FP32 result bit patterns."""
    import tempfile
    from pathlib import Path

    from mpgen.rtl.emit import to_verilog
    from mpgen.rtl.fgmp_pipeline import ClassifierDotProduct

    from .runner import SimulationError, run_cocotb

    dut = ClassifierDotProduct(**params)
    n = values.shape[0]
    for name, t, shape in (("w_codes", w_codes, (n, BLOCK)), ("w_fp8", w_fp8, (n,)),
                           ("w_scale", w_scale, (n,)), ("index", index, (n,)), ("last", last, (n,))):
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
    if n == 0 or not bool(last[-1]):
        raise ValueError("the stream must be non-empty and end with last set")
    with tempfile.TemporaryDirectory() as tmp:
        stim = Path(tmp) / "stimulus.pt"
        torch.save({"values": values, "index": index, "last": last, "w_codes": w_codes,
                    "w_fp8": w_fp8, "w_scale": w_scale, "table_codes": table.codes,
                    "table_unit_exp": table.unit_exp, "threshold": threshold, "p": p}, stim)
        run = run_cocotb(to_verilog(dut, "fgmp_pipeline"), "fgmp_pipeline", "mpgen.sim.tb_fgmp_pipeline",
                         simulator=simulator, seed=seed, testcase="stream", build_root=build_root,
                         params={"config": dut.params, "seed": seed, "stimulus": str(stim),
                                 "gap": gap, "stall": stall})
    if not run.passed or not run.result:
        raise SimulationError(f"simulation of the stream failed; see {run.test_dir}")
    return [int(x) for x in run.result["results"]]
