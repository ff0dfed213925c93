"""Stimulus, packing and regression entry point for ``BlockDotProduct``.

The stimulus is a list of *phases*; each phase is a :class:`~mpgen.golden.dotprod.BlockPairs`
stream whose expected results come from the golden model. The cocotb test module
:mod:`mpgen.sim.tb_dotprod` drives them through the RTL; :func:`run_dotprod_regression` builds the
RTL and runs that test from plain Python (pytest, the CLI).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch

from mpgen.golden.dotprod import FP8_IMPLICIT_SCALE_CODE, BlockPairs
from mpgen.golden.formats import E2M1, E4M3, UE4M3
from mpgen.rtl.dotprod import FP4_PAIR_CODE, supported_modes

__all__ = ["Phase", "make_phases", "beat_sizes", "pack_payloads", "run_dotprod_regression",
           "RegressionResult", "simulate_dotprod"]

_E4M3_CODES = range(1 << E4M3.width)
_E4M3_NAN = [c for c in _E4M3_CODES if E4M3.is_nan_code(c)]
_E4M3_FINITE = [c for c in _E4M3_CODES if not E4M3.is_nan_code(c)]
_UE4M3_FINITE = [c for c in range(1 << UE4M3.width) if not UE4M3.is_nan_code(c)]
_E4M3_SUBNORMALS = [c for c in _E4M3_CODES if E4M3.fields(c)[1] == 0 and E4M3.fields(c)[2]]
_FP4_CODES = list(range(1 << E2M1.width))


@dataclass
class Phase:
    """One stimulus phase: a stream of block pairs, and optionally a reset after ``reset_after``
    accepted block pairs (the rest of the stream is then dropped and the DUT restarted)."""

    name: str
    pairs: BlockPairs
    reset_after: int | None = None


def _pairs(rows, bs) -> BlockPairs:
    """BlockPairs from a list of dicts with keys w, a (code lists), w_fp8, a_fp8, w_scale, a_scale, last."""
    def col(key, dtype):
        return torch.tensor([r[key] for r in rows], dtype=dtype)
    w = torch.tensor([r["w"] for r in rows], dtype=torch.uint8).reshape(len(rows), bs)
    a = torch.tensor([r["a"] for r in rows], dtype=torch.uint8).reshape(len(rows), bs)
    return BlockPairs(w, a, col("w_fp8", torch.bool), col("a_fp8", torch.bool),
                      col("w_scale", torch.uint8), col("a_scale", torch.uint8),
                      col("last", torch.bool))


class _Gen:
    def __init__(self, config: dict, rng: random.Random):
        self.bs = config.get("block_size", 16)
        self.formats = config.get("formats", "mixed")
        self.modes = supported_modes(self.formats)
        self.rng = rng

    def element(self, fp8: bool, nan_rate=0.0):
        r = self.rng
        if fp8:
            if nan_rate and r.random() < nan_rate:
                return r.choice(_E4M3_NAN)
            return r.choice(_E4M3_FINITE)
        code = r.choice(_FP4_CODES)
        if self.formats == "mixed":  # NVFP4 elements in 8-bit lanes: high bits must be ignored
            code |= r.randrange(16) << E2M1.width
        return code

    def scale(self, nan_rate=0.0):
        if nan_rate and self.rng.random() < nan_rate:
            return UE4M3.nan_code
        return self.rng.choice(_UE4M3_FINITE)

    def block(self, mode=None, last=True, nan_rate=0.0, density=1.0):
        w_fp8, a_fp8 = mode if mode is not None else self.rng.choice(self.modes)
        def codes(fp8):
            return [self.element(fp8, nan_rate) if self.rng.random() < density else 0
                    for _ in range(self.bs)]
        return {"w": codes(w_fp8), "a": codes(a_fp8), "w_fp8": w_fp8, "a_fp8": a_fp8,
                "w_scale": self.scale(nan_rate), "a_scale": self.scale(nan_rate), "last": last}

    def dot_products(self, count, max_len, nan_rate=0.0, mode=None):
        rows = []
        for _ in range(count):
            n = self.rng.randint(1, max_len)
            for k in range(n):
                rows.append(self.block(mode=mode, last=k == n - 1, nan_rate=nan_rate,
                                       density=self.rng.choice((1.0, 1.0, 0.5, 0.1))))
        return rows

    def exhaustive(self, w_fp8, a_fp8, sample=None):
        """Every (w, a) element pair once, one pair per block (other lanes zero), lane rotating,
        each block its own dot product, so no product can hide behind a rounding."""
        w_codes = _E4M3_FINITE + _E4M3_NAN if w_fp8 else _FP4_CODES
        a_codes = _E4M3_FINITE + _E4M3_NAN if a_fp8 else _FP4_CODES
        pairs = [(w, a) for w in w_codes for a in a_codes]
        if sample is not None and sample < len(pairs):
            pairs = self.rng.sample(pairs, sample)
        return [self.lone_pair(k % self.bs, w, a, w_fp8, a_fp8, last=True)
                for k, (w, a) in enumerate(pairs)]

    def lone_pair(self, lane, w, a, w_fp8, a_fp8, *, last):
        """A block pair whose only non-zero elements are ``w`` and ``a`` in ``lane``, with
        random scales."""
        ws, as_ = [0] * self.bs, [0] * self.bs
        ws[lane], as_[lane] = w, a
        return {"w": ws, "a": as_, "w_fp8": w_fp8, "a_fp8": a_fp8,
                "w_scale": self.scale(), "a_scale": self.scale(), "last": last}

    def dual_exhaustive(self):
        """Double rate: every E2M1xE2M1 element pair in each slot of a dual beat, once. Dot
        product k is two FP4xFP4 pairs (one beat): pair k of the enumeration in the first, pair
        255-k in the second, each alone in its block, lanes rotating, random scales."""
        codes = [(w, a) for w in _FP4_CODES for a in _FP4_CODES]
        rows = []
        for k, (w, a) in enumerate(codes):
            w2, a2 = codes[-1 - k]
            rows += [self.lone_pair(k % self.bs, w, a, False, False, last=False),
                     self.lone_pair((7 * k + 3) % self.bs, w2, a2, False, False, last=True)]
        return rows

    def dual_corners(self):
        """Double rate: FP4xFP4 corner pairs side by side in one beat: the largest terms in both
        slots under every corner scale pair (a beat sums two of the largest terms), a NaN scale
        in either slot alone, a term and its negation in one beat (exact cancellation), zeros."""
        bs, rows = self.bs, []
        top, nan = UE4M3.max_code, UE4M3.nan_code
        one = int(UE4M3.encode(torch.tensor([1.0]))[0])
        min_sub = int(UE4M3.encode(torch.tensor([UE4M3.min_subnormal]))[0])
        mx, neg = E2M1.max_code, E2M1.max_code | E2M1.sign_mask

        def pair(w, a, ws, as_, last):
            return {"w": w, "a": a, "w_fp8": False, "a_fp8": False, "w_scale": ws,
                    "a_scale": as_, "last": last}
        for ws in (min_sub, one, top):
            for as_ in (min_sub, one, top):
                for w2 in ([mx] * bs, [neg] * bs):
                    rows += [pair([mx] * bs, [mx] * bs, ws, as_, False),
                             pair(w2, [mx] * bs, as_, ws, True)]
        for first, second in ((nan, one), (one, nan)):
            rows += [pair([mx] * bs, [mx] * bs, first, one, False),
                     pair([mx] * bs, [mx] * bs, second, one, True)]
        blk = self.block(mode=(False, False), last=False)
        rows += [blk, {**blk, "w": [c ^ E2M1.sign_mask for c in blk["w"]], "last": True}]
        rows += [pair([0] * bs, [0] * bs, top, top, False), pair([0] * bs, [mx] * bs, top, top, True)]
        return rows

    def fp4_runs(self, count, max_len, nan_rate=0.0):
        """Dot products where most pairs are FP4xFP4 (runs of even and odd length, ``last`` on
        either slot of a would-be beat): the double-rate packing's every case."""
        rows = []
        for _ in range(count):
            n = self.rng.randint(1, max_len)
            for k in range(n):
                mode = (False, False) if self.rng.random() < 0.8 else self.rng.choice(self.modes)
                rows.append(self.block(mode=mode, last=k == n - 1, nan_rate=nan_rate,
                                       density=self.rng.choice((1.0, 1.0, 0.5, 0.1))))
        return rows

    def corners(self):
        bs, rows = self.bs, []
        max8 = E4M3.max_code
        max4 = E2M1.max_code
        sign8 = E4M3.sign_mask
        sign4 = E2M1.sign_mask
        min_normal_scale = int(UE4M3.encode(torch.tensor([UE4M3.min_normal]))[0])
        min_sub_scale = int(UE4M3.encode(torch.tensor([UE4M3.min_subnormal]))[0])
        one = int(UE4M3.encode(torch.tensor([1.0]))[0])
        top = UE4M3.max_code
        scales = [min_sub_scale, min_normal_scale, top, FP8_IMPLICIT_SCALE_CODE, one, 0]
        for w_fp8, a_fp8 in self.modes:
            def fill(fp8, v8, v4):
                return [v8 if fp8 else v4] * bs
            mx = lambda fp8: max8 if fp8 else max4
            sg = lambda fp8: sign8 if fp8 else sign4
            base = {"w_fp8": w_fp8, "a_fp8": a_fp8, "last": True}
            for ws in scales:
                for as_ in scales:
                    rows.append({**base, "w": fill(w_fp8, max8, max4), "a": fill(a_fp8, max8, max4),
                                 "w_scale": ws, "a_scale": as_})
            # zeros, −0, ±max mixes, alternating signs (exact cancellation inside a block)
            rows.append({**base, "w": [0] * bs, "a": fill(a_fp8, max8, max4), "w_scale": one, "a_scale": one})
            rows.append({**base, "w": [sg(w_fp8)] * bs, "a": [sg(a_fp8)] * bs, "w_scale": one, "a_scale": one})
            alt = [mx(w_fp8) | (sg(w_fp8) if i % 2 else 0) for i in range(bs)]
            rows.append({**base, "w": alt, "a": fill(a_fp8, max8, max4), "w_scale": top, "a_scale": top})
            neg = [mx(w_fp8) | sg(w_fp8)] * bs
            rows.append({**base, "w": neg, "a": fill(a_fp8, max8, max4), "w_scale": top, "a_scale": top})
            # subnormal elements (E4M3) and the E2M1 subnormal 0.5
            sub = lambda fp8: [self.rng.choice(_E4M3_SUBNORMALS) if fp8 else 1 for _ in range(bs)]
            for ws in (min_sub_scale, min_normal_scale):
                rows.append({**base, "w": sub(w_fp8), "a": sub(a_fp8), "w_scale": ws, "a_scale": ws})
            # a term and its negation in one dot product: exact cancellation gives +0
            blk = self.block(mode=(w_fp8, a_fp8), last=False)
            negw = [c ^ sg(w_fp8) for c in blk["w"]]
            rows.append(blk)
            rows.append({**blk, "w": negw, "last": True})
            # NaN: E4M3 NaN elements in FP8 blocks, NaN scale on NVFP4 blocks
            if w_fp8:
                rows.append({**base, "w": [E4M3.nan_code] + [0] * (bs - 1), "a": [0] * bs,
                             "w_scale": one, "a_scale": one})
            else:
                rows.append({**base, "w": [0] * bs, "a": [0] * bs, "w_scale": UE4M3.nan_code, "a_scale": one})
            if a_fp8:
                rows.append({**self.block(mode=(w_fp8, a_fp8), last=False)})
                rows.append({**base, "w": [0] * bs, "a": [E4M3.nan_code | sign8] * bs,
                             "w_scale": one, "a_scale": one})
        # one long dot product over every supported mode
        rows += [self.block(last=False) for _ in range(199)] + [self.block(last=True)]
        return rows


def make_phases(config: dict, *, quick: bool = False, seed: int = 1) -> list[Phase]:
    """The regression's stimulus for one configuration.

    Full: every E4M3×E4M3 element pair (65,536), every E2M1×E2M1 and E2M1×E4M3 pair in both
    orders, corner blocks, random dot products in random mode sequences (with NaN), and a reset
    in the middle of a dot product. Quick: the same phases with the exhaustive sweeps sampled.
    With ``fp4_rate=2`` also every E2M1×E2M1 pair in each slot of a dual beat, dual-beat corners
    and random dot products made mostly of FP4×FP4 pairs (both quick and full).
    """
    rng = random.Random(seed)
    g = _Gen(config, rng)
    bs = g.bs
    phases = []
    sample = 2048 if quick else None
    for w_fp8, a_fp8 in g.modes:
        tag = f"exhaustive_{'e4m3' if w_fp8 else 'e2m1'}x{'e4m3' if a_fp8 else 'e2m1'}"
        phases.append(Phase(tag, _pairs(g.exhaustive(w_fp8, a_fp8, sample), bs)))
    phases.append(Phase("corners", _pairs(g.corners(), bs)))
    n_random = 150 if quick else 1500
    phases.append(Phase("random", _pairs(g.dot_products(n_random, 8, nan_rate=0.002), bs)))
    if config.get("fp4_rate", 1) == 2:
        phases.append(Phase("dual_exhaustive_e2m1xe2m1", _pairs(g.dual_exhaustive(), bs)))
        phases.append(Phase("dual_corners", _pairs(g.dual_corners(), bs)))
        phases.append(Phase("dual_random", _pairs(g.fp4_runs(n_random, 12, nan_rate=0.002), bs)))
    rows = g.dot_products(20, 12)
    reset_at = rng.randrange(len(rows) // 3, 2 * len(rows) // 3)
    while rows[reset_at - 1]["last"]:  # land the reset inside a dot product
        reset_at += 1
    phases.append(Phase("reset_mid_stream", _pairs(rows, bs), reset_after=reset_at))
    phases.append(Phase("after_reset", _pairs(g.dot_products(50, 6), bs)))
    return phases


def beat_sizes(pairs: BlockPairs, fp4_rate: int = 1) -> list[int]:
    """Block pairs per input beat of a unit with ``fp4_rate``: all 1 at rate 1. At rate 2, from
    the start of the stream, an FP4×FP4 pair that does not end its dot product shares a beat
    with the next pair when that one is FP4×FP4 too (``docs/numerics.md``, double rate)."""
    if fp4_rate not in (1, 2):
        raise ValueError(f"fp4_rate must be 1 or 2, not {fp4_rate!r}")
    if fp4_rate == 1:
        return [1] * pairs.n
    fp4 = (~pairs.w_fp8 & ~pairs.a_fp8).tolist()
    last = pairs.last.tolist()
    sizes, i = [], 0
    while i < pairs.n:
        two = i + 1 < pairs.n and fp4[i] and fp4[i + 1] and not last[i]
        sizes.append(2 if two else 1)
        i += sizes[-1]
    return sizes


def pack_payloads(layout, pairs: BlockPairs, formats: str) -> list[int]:
    """Pack the block pairs into the integer values of the DUT's input beats, field offsets read
    from the Amaranth layout (the RTL's own definition). A layout with a ``dual`` field (double
    FP4 rate) packs pairs two to a beat as :func:`beat_sizes` says, the second pair's codes in
    the :data:`~mpgen.rtl.dotprod.FP4_PAIR_CODE` high nibbles and its scales in ``second_scale``."""
    offs = {name: f.offset for name, f in layout}
    sub = {name: {n: f.offset for n, f in layout[name].shape} for name in ("w", "a")}
    elem_w = E2M1.width if formats == "fp4" else E4M3.width
    fp4_mask = (1 << E2M1.width) - 1
    nibble = {n: f.offset for n, f in FP4_PAIR_CODE}
    out = []
    rows = {k: getattr(pairs, k).tolist() for k in
            ("w_codes", "a_codes", "w_fp8", "a_fp8", "w_scale", "a_scale", "last")}
    i = 0
    for size in beat_sizes(pairs, 2 if "dual" in offs else 1):
        v = int(rows["last"][i + size - 1]) << offs["last"]
        for side in ("w", "a"):
            codes = 0
            base = offs[side]
            if size == 1:
                for j, c in enumerate(rows[f"{side}_codes"][i]):
                    codes |= (c & ((1 << elem_w) - 1)) << (j * elem_w)
            else:
                for j, (c1, c2) in enumerate(zip(rows[f"{side}_codes"][i], rows[f"{side}_codes"][i + 1])):
                    byte = ((c1 & fp4_mask) << nibble["first"]) | ((c2 & fp4_mask) << nibble["second"])
                    codes |= byte << (j * elem_w)
                v |= rows[f"{side}_scale"][i + 1] << (base + sub[side]["second_scale"])
            v |= codes << (base + sub[side]["codes"])
            if "fp8" in sub[side]:
                v |= int(rows[f"{side}_fp8"][i]) << (base + sub[side]["fp8"])
            if "scale" in sub[side]:
                v |= rows[f"{side}_scale"][i] << (base + sub[side]["scale"])
        if size == 2:
            v |= 1 << offs["dual"]
        out.append(v)
        i += size
    return out


@dataclass
class RegressionResult:
    """Outcome of one regression run on one simulator."""

    config: dict
    simulator: str
    vectors: int
    results: int
    mismatches: int
    passed: bool
    phases: dict = field(default_factory=dict)
    seconds: float = 0.0
    details: str = ""

    @classmethod
    def from_run(cls, run, config: dict, simulator: str, t0: float):
        """The result of a cocotb ``run`` (``run.result``: the testbench's counts) that began at
        ``time.monotonic() == t0``; passed only with zero mismatches and some vectors."""
        import time

        res = run.result or {}
        mism = int(res.get("mismatches", -1))
        return cls(
            config=config, simulator=simulator, vectors=int(res.get("vectors", 0)),
            results=int(res.get("results", 0)), mismatches=mism,
            passed=bool(run.passed and mism == 0 and res.get("vectors", 0) > 0),
            phases=res.get("phases", {}), seconds=time.monotonic() - t0,
            details=res.get("first_mismatches", "") if mism else "")

    def summary(self) -> str:
        return (f"{self.simulator}: {self.vectors} block-pair vectors, {self.results} results, "
                f"{self.mismatches} mismatches ({'PASS' if self.passed else 'FAIL'}, "
                f"{self.seconds:.1f} s)")


def _run_tb(dut, testcase: str, params: dict, *, simulator, seed, build_root):
    """Run one test of :mod:`mpgen.sim.tb_dotprod` on ``dut``'s Verilog (build cached)."""
    from mpgen.rtl.emit import to_verilog

    from .runner import run_cocotb

    return run_cocotb(to_verilog(dut, "dotprod"), "dotprod", "mpgen.sim.tb_dotprod",
                      simulator=simulator, seed=seed, testcase=testcase, build_root=build_root,
                      params={"config": dut.params, "seed": seed, **params})


def run_dotprod_regression(config: dict, *, simulator: str = "verilator", quick: bool = True,
                           seed: int | None = None, build_root=None) -> RegressionResult:
    """Generate the RTL for ``config``, run the cocotb regression on ``simulator``, return counts."""
    import time

    from mpgen.rtl.dotprod import BlockDotProduct

    dut = BlockDotProduct(**config)  # validates the parameters before anything is built
    seed = 1 if seed is None else seed
    t0 = time.monotonic()
    run = _run_tb(dut, "regression", {"quick": quick}, simulator=simulator, seed=seed,
                  build_root=build_root)
    return RegressionResult.from_run(run, dut.params, simulator, t0)


def simulate_dotprod(config: dict, pairs: BlockPairs, *, simulator: str = "verilator",
                     seed: int = 1, gap: float = 0.0, stall: float = 0.0, build_root=None) -> list[int]:
    """Run ``pairs`` through the RTL of ``config`` and return its results (FP32 bit patterns).

    For feeding real data (e.g. FGMP-quantized model tensors through
    :func:`mpgen.golden.dotprod.pairs_from_fgmp`) into the simulated unit; compare with
    :func:`mpgen.golden.dotprod.dot_products`.
    """
    import tempfile
    from pathlib import Path

    from mpgen.rtl.dotprod import BlockDotProduct

    from .runner import SimulationError

    if not isinstance(pairs, BlockPairs):
        raise TypeError("pairs must be a mpgen.golden.dotprod.BlockPairs")
    dut = BlockDotProduct(**config)
    if pairs.block_size != dut.block_size:
        raise ValueError(f"stream has blocks of {pairs.block_size}, the unit takes {dut.block_size}")
    modes = set(zip(pairs.w_fp8.tolist(), pairs.a_fp8.tolist()))
    if not modes <= set(supported_modes(dut.formats)):
        raise ValueError(f"formats={dut.formats!r} unit cannot take block modes {sorted(modes)}")
    with tempfile.TemporaryDirectory() as tmp:
        stim = Path(tmp) / "stimulus.pt"
        torch.save({k: getattr(pairs, k) for k in ("w_codes", "a_codes", "w_fp8", "a_fp8",
                                                    "w_scale", "a_scale", "last")}, stim)
        run = _run_tb(dut, "stream", {"stimulus": str(stim), "gap": gap, "stall": stall},
                      simulator=simulator, seed=seed, build_root=build_root)
    if not run.passed or not run.result:
        raise SimulationError(f"simulation of the stream failed; see {run.test_dir}")
    return [int(x) for x in run.result["results"]]
