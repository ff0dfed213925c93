"""cocotb tests of the combinational FP32 blocks of ``rtl/arith.py``.

``adder``: ``FP32Adder`` against numpy's IEEE float32 addition, with the adder's documented
deviations from IEEE 754: subnormal inputs read as zero, results below the normal range flush to
+0, and every zero result is +0. NaN inputs and ∞ − ∞ are outside its contract and are not
generated.

``to_fp32``: ``ToFP32`` (integer · 2**exponent → FP32, RNE) against an exact float64 scaling
followed by one numpy float32 rounding; results below the normal range flush to a zero of their
sign, a zero magnitude gives +0, overflow gives ±∞ (its docstring).
"""

from __future__ import annotations

import numpy as np
import cocotb
from cocotb.triggers import Timer

from mpgen.sim.stream import tb_params, write_tb_result

TINY = np.float32(np.finfo(np.float32).tiny)


async def _check(dut, output: str, inputs: list[dict], want, labels: list[str]):
    """Apply each input assignment to the combinational DUT, compare ``output`` with ``want``,
    write the counts for the runner and fail on any mismatch."""
    mismatches, first = 0, []
    for i, assignment in enumerate(inputs):
        for port, value in assignment.items():
            getattr(dut, port).value = value
        await Timer(1, unit="ns")
        got = int(getattr(dut, output).value)
        if got != int(want[i]):
            mismatches += 1
            if len(first) < 10:
                first.append(f"{labels[i]}: got {got:#010x} expected {int(want[i]):#010x}")
    write_tb_result({"vectors": len(inputs), "mismatches": mismatches,
                     "first_mismatches": "\n".join(first)}, merge=False)
    assert mismatches == 0, "\n".join(first)


def _bits(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32).view(np.uint32)


def reference(a: np.ndarray, b: np.ndarray, ieee: bool = False) -> np.ndarray:
    """Expected sum bit patterns of float32 arrays a, b (no NaN, no ∞ − ∞). With ``ieee``
    (``FP32Adder(ieee=True)``) subnormals are IEEE's; every zero result is +0 in both."""
    if ieee:
        with np.errstate(over="ignore", invalid="ignore"):
            s = (a + b).astype(np.float32)
        return _bits(np.where(s == 0, np.float32(0), s).astype(np.float32))

    def ftz(x):
        return np.where(np.abs(x) < TINY, np.float32(0), x).astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        s = (ftz(a) + ftz(b)).astype(np.float32)
    s = np.where(np.abs(s) < TINY, np.float32(0), s).astype(np.float32)  # flush, and −0 → +0
    return _bits(s)


def stimulus(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs stressing every path: any exponents, near-equal exponents (alignment and
    cancellation), equal magnitudes of opposite sign, overflow to ∞, ∞ operands, zeros."""
    rng = np.random.default_rng(seed)
    def rand_bits(k):
        return rng.integers(0, 2**32, k, dtype=np.uint64).astype(np.uint32)
    a = rand_bits(n).view(np.float32).copy()
    b = rand_bits(n).view(np.float32).copy()
    k = n // 6
    # b with an exponent within ±3 of a's: alignment by a few bits, carries, cancellation
    e = (a[:2 * k].view(np.uint32) >> 23) & 0xFF
    de = rng.integers(-3, 4, 2 * k)
    eb = np.clip(e.astype(np.int64) + de, 1, 254).astype(np.uint32)
    bb = (b[:2 * k].view(np.uint32) & 0x807FFFFF) | (eb << 23)
    b[:2 * k] = bb.view(np.float32)
    # exact negation and one-ulp-apart opposite signs
    b[2 * k:3 * k] = -a[2 * k:3 * k]
    b[3 * k:4 * k] = -(a[3 * k:4 * k].view(np.uint32) + 1).view(np.float32)
    # near the top of the range: overflow to ±∞ (same signs)
    big = (rng.integers(0x7F000000, 0x7F800000, k, dtype=np.uint64)).astype(np.uint32).view(np.float32)
    a[4 * k:5 * k] = big
    b[4 * k:5 * k] = big[::-1]
    specials = np.array([0.0, -0.0, np.inf, -np.inf, 1.0, -1.0, TINY, -TINY, 3.4e38, -3.4e38,
                         1e-45, 2.0**-126 * 1.5], dtype=np.float32)
    sa, sb = np.meshgrid(specials, specials)
    a = np.concatenate([a, sa.ravel()])
    b = np.concatenate([b, sb.ravel()])
    keep = ~np.isnan(a) & ~np.isnan(b) & ~(np.isinf(a) & np.isinf(b) & (np.sign(a) != np.sign(b)))
    return a[keep], b[keep]


@cocotb.test()
async def adder(dut):
    params = tb_params()
    a, b = stimulus(int(params.get("vectors", 20000)), int(params.get("seed", 1)))
    ieee = bool(params.get("ieee", False))
    if ieee:  # subnormal operands and results: exponent fields 0 and 1 against any other
        rng = np.random.default_rng(int(params.get("seed", 1)) + 1)
        k = len(a) // 6
        sub = rng.integers(0, 1 << 24, 2 * k, dtype=np.uint64).astype(np.uint32)
        sub |= rng.integers(0, 2, 2 * k, dtype=np.uint64).astype(np.uint32) << 31
        a[:k] = sub[:k].view(np.float32)
        b[k:2 * k] = sub[k:].view(np.float32)
        b[2 * k:3 * k] = -(a[2 * k:3 * k].view(np.uint32) ^ 1).view(np.float32)  # near cancellation
    want = reference(a, b, ieee)
    ab, bb = _bits(a), _bits(b)
    await _check(dut, "sum", [{"a": int(x), "b": int(y)} for x, y in zip(ab, bb)], want,
                 [f"{x!r} + {y!r}" for x, y in zip(a, b)])


def to_fp32_reference(sign, mag, exp, subnormals: bool = False) -> np.ndarray:
    """Bit patterns of fl32((-1)**sign · mag · 2**exp): mag < 2**53, so the float64 is exact.
    With ``subnormals`` the float32 rounding is IEEE's below 2**-126 too."""
    import math
    out = []
    for s_, m, e in zip(sign, mag, exp):
        v = math.ldexp(float(int(m)), int(e))  # exact (float64 range covers every case here)
        with np.errstate(over="ignore"):
            f = np.float32(-v if s_ else v)
        if m == 0:
            f = np.float32(0.0)        # an exact zero is +0
        elif abs(f) < TINY and not subnormals:
            f = np.float32(-0.0 if s_ else 0.0)  # underflow flushes to a signed zero
        out.append(int(np.array(f, dtype=np.float32).view(np.uint32)))
    return np.array(out, dtype=np.uint64)


@cocotb.test()
async def to_fp32(dut):
    params = tb_params()
    width, exp_width = int(params["width"]), int(params["exp_width"])
    n, rng = int(params.get("vectors", 20000)), np.random.default_rng(int(params.get("seed", 1)))
    lo, hi = -(1 << (exp_width - 1)), (1 << (exp_width - 1))
    sign = rng.integers(0, 2, n)
    nbits = rng.integers(0, width + 1, n)  # magnitudes of every length, so every shift occurs
    mag = np.array([int(rng.integers(0, 2**62)) >> (62 - b) if b else 0 for b in nbits], dtype=object)
    mag[: n // 10] = [(1 << int(b)) - 1 for b in nbits[: n // 10]]  # all ones: rounding carries out
    exp = rng.integers(lo, hi, n)
    exp[n // 10: n // 5] = rng.integers(-200, 120, n // 10)  # mostly normal results
    subnormals = bool(params.get("subnormals", False))
    if subnormals:  # results around FP32's subnormal range
        exp[n // 5: n // 2] = rng.integers(-200, -100, n // 2 - n // 5) - nbits[n // 5: n // 2]
    want = to_fp32_reference(sign, mag, exp, subnormals)
    await _check(dut, "result",
                 [{"sign": int(sg), "magnitude": int(m), "exponent": int(e)}
                  for sg, m, e in zip(sign, mag, exp)], want,
                 [f"{'-' if sg else ''}{m}·2^{e}" for sg, m, e in zip(sign, mag, exp)])
