"""golden/nvfp4.py: torchao-compatible recipe vs torchao, exact recipe vs Fraction brute force."""

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpgen.golden.formats import E2M1, E4M3, UE4M3
from mpgen.golden.nvfp4 import (BLOCK, NVFP4Tensor, quantize_nvfp4, recipe_difference,
                                tensor_scale_from_amax)

HSET = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------------- test data
def _data(kind: str, shape, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    if kind == "outliers":
        flat = x.view(-1)
        idx = torch.randint(0, flat.numel(), (max(1, flat.numel() // 200),), generator=g)
        flat[idx] *= 1e4
    elif kind == "zero_blocks":
        x.view(-1, BLOCK)[::3] = 0.0
        x.view(-1, BLOCK)[1::7, ::2] = -0.0
    elif kind == "tiny":
        x = x * 1e-6
        x.view(-1, BLOCK)[::5] *= 1e-30  # float32 subnormals
    elif kind == "huge":
        x = x * 1e30
    elif kind == "wide":
        x = x * torch.exp2(torch.randint(-40, 40, shape, generator=g).float())
    elif kind == "ties":
        # Few-bit values: many exact E2M1 midpoints after scaling (where reciprocal-multiply
        # rounding matters).
        x = (torch.randint(-48, 49, shape, generator=g).float() / 8)
    elif kind == "bf16":
        x = x.bfloat16()
    elif kind == "fp16":
        x = (x * 100).half()
    return x


KINDS = ["normal", "outliers", "zero_blocks", "tiny", "huge", "wide", "ties", "bf16", "fp16"]
SHAPES = [(4, 64), (3, 5, 32), (16, 128), (1, 16)]


# ------------------------------------------------------------------- (a) vs torchao
@pytest.fixture(scope="module")
def torchao_nvfp4():
    mod = pytest.importorskip("torchao.prototype.mx_formats.nvfp4_tensor")
    kernels = pytest.importorskip("torchao.prototype.mx_formats.kernels")
    return mod, kernels


def _torchao(torchao_nvfp4, x, scale):
    mod, kernels = torchao_nvfp4
    xin = x if x.dtype in (torch.float32, torch.bfloat16) else x.float()  # torchao: f32/bf16 only
    scales, packed = mod.nvfp4_quantize(xin.contiguous(), BLOCK, scale)
    # torchao returns 2-D scales [shape[0], -1] for N-D input
    return kernels.unpack_uint4(packed), scales.view(torch.uint8).reshape(*x.shape[:-1], -1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_torchao_recipe_bit_identical(torchao_nvfp4, kind, shape):
    mod, _ = torchao_nvfp4
    x = _data(kind, shape, seed=10 * KINDS.index(kind) + SHAPES.index(shape))
    # single level
    q = quantize_nvfp4(x, recipe="torchao")
    codes, scales = _torchao(torchao_nvfp4, x, None)
    assert torch.equal(q.codes, codes) and torch.equal(q.block_scale, scales)
    assert q.tensor_scale is None
    # two level, scale from the tensor amax (torchao's per_tensor_amax_to_scale)
    amax = x.float().abs().amax()
    if amax > 0:
        s_t = mod.per_tensor_amax_to_scale(amax)
        q = quantize_nvfp4(x, per_tensor_scale=True, recipe="torchao")
        assert torch.equal(q.tensor_scale, s_t.reshape(()))
        codes, scales = _torchao(torchao_nvfp4, x, s_t)
        assert torch.equal(q.codes, codes) and torch.equal(q.block_scale, scales)


@pytest.mark.parametrize("scale", [0.37, 1e-3, 5.0, 3e-9])
def test_torchao_recipe_explicit_tensor_scale(torchao_nvfp4, scale):
    x = _data("wide", (8, 64), seed=11)
    s = torch.tensor(scale, dtype=torch.float32)
    q = quantize_nvfp4(x, per_tensor_scale=s, recipe="torchao")
    codes, scales = _torchao(torchao_nvfp4, x, s)
    assert torch.equal(q.codes, codes) and torch.equal(q.block_scale, scales)


def test_torchao_recipe_zero_block_scale_is_min_normal():
    q = quantize_nvfp4(torch.zeros(2, 32), recipe="torchao")
    assert torch.equal(q.block_scale, UE4M3.encode(torch.full((2, 2), UE4M3.min_normal)))
    assert int(q.codes.max()) == 0


# ------------------------------------------------------------ (b) vs Fraction brute force
def _spec_value(code: int, ebits: int, mbits: int, bias: int) -> Fraction:
    """Value of a magnitude code from the OCP formula (independent of formats.py)."""
    e, m = code >> mbits, code & ((1 << mbits) - 1)
    if e == 0:
        return Fraction(m, 1 << mbits) * Fraction(2) ** (1 - bias)
    return (1 + Fraction(m, 1 << mbits)) * Fraction(2) ** (e - bias)


E2M1_MAGS = [_spec_value(c, 2, 1, 1) for c in range(8)]
E4M3_MAGS = [_spec_value(c, 4, 3, 7) for c in range(127)]  # 0x7F is NaN


def _round_mag(q: Fraction, mags) -> int:
    """Index of the nearest magnitude to |q| (ties to the even code), saturating at the top."""
    a = abs(q)
    return min(range(len(mags)), key=lambda c: (abs(a - mags[c]), c & 1))


def _brute_exact(x: torch.Tensor, s_t: Fraction):
    """Exact-recipe codes and scales, one Fraction rounding each."""
    rows = x.float().reshape(-1, BLOCK).tolist()
    codes, scales = [], []
    sign_bit = 1 << (E2M1.width - 1)
    for blk in rows:
        amax = max(abs(Fraction(v)) for v in blk)
        sc = _round_mag(amax / (6 * s_t), E4M3_MAGS)
        s_b = E4M3_MAGS[sc]
        scales.append(sc)
        for v in blk:
            mag = 0 if s_b == 0 else _round_mag(Fraction(v) / (s_b * s_t), E2M1_MAGS)
            codes.append(mag | (sign_bit if math.copysign(1.0, v) < 0 else 0))
    return (torch.tensor(codes, dtype=torch.uint8).reshape(x.shape),
            torch.tensor(scales, dtype=torch.uint8).reshape(*x.shape[:-1], -1))


@pytest.mark.parametrize("kind", ["normal", "ties", "tiny", "zero_blocks", "wide", "bf16"])
@pytest.mark.parametrize("pts", [False, True])
def test_exact_recipe_vs_fraction(kind, pts):
    x = _data(kind, (3, 32), seed=5)
    q = quantize_nvfp4(x, per_tensor_scale=pts, recipe="exact")
    s_t = Fraction(float(q.tensor_scale)) if pts else Fraction(1)
    codes, scales = _brute_exact(x, s_t)
    assert torch.equal(q.codes, codes)
    assert torch.equal(q.block_scale, scales)
    # dequantize: exact product rounded once to float32
    vals = E2M1.decode(q.codes).tolist()
    sb = UE4M3.decode(q.block_scale).repeat_interleave(BLOCK, dim=-1).tolist()
    ref = [[float(Fraction(v) * Fraction(s) * s_t) for v, s in zip(r1, r2)] for r1, r2 in zip(vals, sb)]
    assert torch.equal(q.dequantize(), torch.tensor(ref, dtype=torch.float64).float())


def test_exact_recipe_near_midpoints():
    """Values a few float32 ulps around scaled E2M1 / UE4M3 midpoints."""
    s_b = 1.125  # UE4M3 value that is not a power of two: 1/s_b is inexact
    vals = []
    for m in [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]:
        c = torch.tensor(m * s_b, dtype=torch.float32)  # exact: few bits
        vals += [float(c), float(torch.nextafter(c, torch.tensor(0.0))),
                 float(torch.nextafter(c, torch.tensor(math.inf)))]
    vals = vals[: 2 * BLOCK]
    vals += [0.0] * (2 * BLOCK - len(vals))
    vals[0] = 6 * s_b  # pins the block scale to exactly 1.125
    vals[BLOCK] = 6 * s_b
    x = torch.tensor(vals, dtype=torch.float32).reshape(1, -1)
    q = quantize_nvfp4(x, recipe="exact")
    codes, scales = _brute_exact(x, Fraction(1))
    assert int(q.block_scale[0, 0]) == int(UE4M3.encode(torch.tensor(s_b)))
    assert torch.equal(q.codes, codes) and torch.equal(q.block_scale, scales)


def test_zero_scale_gives_zero_elements():
    x = torch.zeros(1, 32)
    x[0, :16] = torch.tensor([1e-30, -1e-30] * 8)
    q = quantize_nvfp4(x, recipe="exact")
    assert q.block_scale.tolist() == [[0, 0]]
    assert q.codes[0, :16].tolist() == [0, 8] * 8
    assert torch.equal(q.dequantize().abs(), torch.zeros(1, 32))


def test_tensor_scale_rules():
    assert float(tensor_scale_from_amax(torch.tensor(2688.0))) == 1.0
    assert float(tensor_scale_from_amax(torch.tensor(0.0))) == 1.0
    assert float(tensor_scale_from_amax(torch.tensor(1e-45))) == 1.0  # underflow → 1
    q = quantize_nvfp4(torch.zeros(2, 16), per_tensor_scale=True, recipe="exact")
    assert float(q.tensor_scale) == 1.0 and int(q.codes.max()) == 0
    x = _data("normal", (4, 64), seed=2)
    q = quantize_nvfp4(x, per_tensor_scale=True, recipe="exact")
    expected = (x.abs().amax() / (E4M3.max_value * E2M1.max_value)).to(torch.float32)
    assert q.tensor_scale.dtype == torch.float32 and q.tensor_scale.dim() == 0
    assert torch.equal(q.tensor_scale, expected)
    # the block holding the tensor amax gets the largest block scale
    assert int(q.block_scale.max()) == UE4M3.max_code


def test_dequantize_error_bound():
    x = _data("normal", (32, 256), seed=9)
    for recipe in ("torchao", "exact"):
        q = quantize_nvfp4(x, recipe=recipe)
        assert isinstance(q, NVFP4Tensor) and q.dequantize().shape == x.shape
        amax_b = x.abs().reshape(32, -1, BLOCK).amax(-1, keepdim=True)
        err = (q.dequantize() - x).abs().reshape(32, -1, BLOCK)
        assert bool((err <= amax_b * (17 / 96) * (1 + 1e-6)).all())


def test_recipe_difference_rate():
    torch.manual_seed(0)
    x = torch.randn(256, 1024)
    for name, t in [("randn f32", x), ("randn bf16", x.bfloat16())]:
        for pts in (False, True):
            d = recipe_difference(t, per_tensor_scale=pts)
            print(f"\n[nvfp4 torchao vs exact] {name} per_tensor_scale={pts}: "
                  f"codes {d['code_rate']:.3g}, scales {d['scale_rate']:.3g}, values {d['value_rate']:.3g}")
            assert d["code_rate"] < 1e-2 and d["scale_rate"] < 1e-2
    zeros = recipe_difference(torch.zeros(2, 32))
    assert zeros["scale_rate"] == 1.0 and zeros["code_rate"] == 0.0


def test_large_tensor_shapes():
    x = torch.randn(64, 4096)
    q = quantize_nvfp4(x, per_tensor_scale=True, recipe="exact")
    assert q.codes.shape == x.shape and q.codes.dtype == torch.uint8
    assert q.block_scale.shape == (64, 4096 // BLOCK) and q.block_scale.dtype == torch.uint8
    assert int(q.codes.max()) < 16


# ----------------------------------------------------------------- bad input (hypothesis)
@HSET
@given(dtype=st.sampled_from([torch.float64, torch.int32, torch.int64, torch.uint8, torch.bool, torch.int8]),
       recipe=st.sampled_from(["torchao", "exact"]))
def test_bad_dtype(dtype, recipe):
    x = torch.zeros(2, 32, dtype=dtype)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        quantize_nvfp4(x, recipe=recipe)


@HSET
@given(lead=st.lists(st.integers(1, 3), max_size=2), k=st.integers(1, 100).filter(lambda k: k % BLOCK))
def test_bad_last_dim(lead, k):
    with pytest.raises(ValueError, match="multiple of 16"):
        quantize_nvfp4(torch.zeros(*lead, k))


@HSET
@given(shape=st.sampled_from([(2, 32), (1, 16), (3, 2, 48)]), bad=st.sampled_from([math.nan, math.inf, -math.inf]),
       pos=st.integers(0, 10_000), dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
       recipe=st.sampled_from(["torchao", "exact"]), pts=st.booleans())
def test_non_finite_rejected(shape, bad, pos, dtype, recipe, pts):
    x = torch.ones(shape, dtype=dtype)
    x.view(-1)[pos % x.numel()] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize_nvfp4(x, recipe=recipe, per_tensor_scale=pts)


@HSET
@given(obj=st.one_of(st.floats(allow_nan=False), st.lists(st.floats(allow_nan=False), min_size=16, max_size=16)))
def test_non_tensor_rejected(obj):
    with pytest.raises(TypeError, match="torch.Tensor"):
        quantize_nvfp4(obj)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="at least one dimension"):
        quantize_nvfp4(torch.tensor(1.0))
    with pytest.raises(ValueError, match="multiple of 16"):
        quantize_nvfp4(torch.zeros(4, 0))
    with pytest.raises(ValueError, match="recipe"):
        quantize_nvfp4(torch.zeros(16), recipe="fast")
    for s in (torch.tensor(0.0), torch.tensor(-1.0), torch.tensor(math.nan), torch.tensor(math.inf)):
        with pytest.raises(ValueError, match="finite and > 0"):
            quantize_nvfp4(torch.zeros(16), per_tensor_scale=s)
    with pytest.raises(ValueError, match="one value"):
        quantize_nvfp4(torch.zeros(16), per_tensor_scale=torch.ones(2))
    with pytest.raises(TypeError):
        quantize_nvfp4(torch.zeros(16), per_tensor_scale=torch.tensor(1))
    with pytest.raises(TypeError):
        quantize_nvfp4(torch.zeros(16), per_tensor_scale=0.5)
