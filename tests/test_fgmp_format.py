"""golden/fgmp.py: the FGMP mixed NVFP4/FP8 tensor format."""

import math
from fractions import Fraction

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpgen.golden.fgmp import (BLOCK, FP8_IMPLICIT_SCALE, FP8_IMPLICIT_SCALE_CODE, FGMPTensor,
                               fgmp_quantize)
from mpgen.golden.formats import E2M1, E4M3, UE4M3
from mpgen.golden.nvfp4 import quantize_nvfp4

HSET = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _mask(shape, p, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape[:-1], shape[-1] // BLOCK, generator=g) < p


def _randn(shape, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * scale


# -------------------------------------------------------------------------- constants
def test_implicit_scale_constants():
    assert FP8_IMPLICIT_SCALE == E2M1.max_value == 6.0
    assert float(UE4M3.decode(torch.tensor(FP8_IMPLICIT_SCALE_CODE))) == 6.0
    assert FP8_IMPLICIT_SCALE_CODE == 0x4C


def test_tensor_scale():
    x = _randn((4, 64), 1)
    q = fgmp_quantize(x, _mask(x.shape, 0.5, 1))
    assert q.tensor_scale.dtype == torch.float32 and q.tensor_scale.dim() == 0
    assert torch.equal(q.tensor_scale, x.abs().amax() / (E2M1.max_value * E4M3.max_value))
    z = fgmp_quantize(torch.zeros(2, 32), torch.tensor([[True, False], [False, True]]))
    assert float(z.tensor_scale) == 1.0
    assert torch.equal(z.dequantize(), torch.zeros(2, 32)) and int(z.codes.max()) == 0


# ---------------------------------------------------------------------- structure
def test_layout_and_fp8_block_scale():
    x = _randn((3, 4, 128), 2)
    m = _mask(x.shape, 0.3, 2)
    q = fgmp_quantize(x, m)
    assert isinstance(q, FGMPTensor)
    assert q.codes.shape == (3, 4, 8, BLOCK) and q.codes.dtype == torch.uint8
    assert q.is_fp8.shape == (3, 4, 8) and q.is_fp8.dtype == torch.bool and torch.equal(q.is_fp8, m)
    assert q.block_scale.shape == (3, 4, 8) and q.block_scale.dtype == torch.uint8
    assert q.shape == x.shape and q.dequantize().shape == x.shape
    assert bool((q.block_scale[m] == FP8_IMPLICIT_SCALE_CODE).all())
    assert int(q.codes[~m].max()) < 16
    # value = element × block_scale × s_t uniformly
    ev = q.element_values().double()
    val = ev * UE4M3.decode(q.block_scale).double().unsqueeze(-1) * float(q.tensor_scale)
    assert torch.equal(q.dequantize(), val.reshape(x.shape).float())


def test_amax_maps_to_format_max():
    x = _randn((2, 64), 3)
    x[1, 20] = 50.0  # tensor amax, in block (1, 1)
    m = torch.zeros(2, 4, dtype=torch.bool)
    m[1, 1] = True
    q = fgmp_quantize(x, m)
    assert int(q.codes[1, 1, 4]) == E4M3.max_code  # 448
    x[1, 20] = -50.0
    q = fgmp_quantize(x, m)
    assert int(q.codes[1, 1, 4]) == E4M3.max_code | E4M3.sign_mask
    # as an NVFP4 block it gets the largest block scale and the largest E2M1 code
    q = fgmp_quantize(x, torch.zeros(2, 4, dtype=torch.bool))
    assert int(q.block_scale[1, 1]) == UE4M3.max_code
    assert int(q.codes[1, 1, 4]) == E2M1.max_code | E2M1.sign_mask


def test_nvfp4_blocks_equal_exact_recipe():
    x = _randn((8, 256), 4)
    m = _mask(x.shape, 0.25, 4)
    q = fgmp_quantize(x, m)
    n = quantize_nvfp4(x, per_tensor_scale=q.tensor_scale, recipe="exact")
    assert torch.equal(q.codes[~m], n.codes.reshape(q.codes.shape)[~m])
    assert torch.equal(q.block_scale[~m], n.block_scale[~m])


# ------------------------------------------------------------------- error bounds
@pytest.mark.parametrize("scale", [1.0, 1e-3, 1e4])
def test_round_trip_error_bounds(scale):
    x = _randn((16, 512), 5, scale)
    x[3, 7] = 40 * scale  # outlier sets the tensor scale
    m = _mask(x.shape, 0.2, 5)
    q = fgmp_quantize(x, m)
    d = q.dequantize().double()
    xd = x.double()
    s_t = float(q.tensor_scale)
    err = (d - xd).abs().reshape(q.codes.shape)
    xb = xd.reshape(q.codes.shape)
    amax_b = xb.abs().amax(-1, keepdim=True)
    # FP8: half an E4M3 ulp (normal: 2**-4 relative; subnormal: 2**-10 · 6·s_t)
    fp8_bound = torch.maximum(xb.abs() * 2.0 ** -(E4M3.man_bits + 1),
                              torch.tensor(E4M3.min_subnormal / 2 * FP8_IMPLICIT_SCALE * s_t))
    assert bool((err[m] <= fp8_bound[m] * (1 + 1e-12)).all())
    # NVFP4: at most one element step s_b·s_t ≤ amax_b/6 · 17/16 (normal block scales), plus the
    # saturation/zero-scale slack 6 · 2**-9 · s_t of subnormal block scales
    fp4_bound = amax_b * (17 / 96) + E2M1.max_value * UE4M3.min_subnormal * s_t
    assert bool((err[~m] <= fp4_bound.expand_as(err)[~m] * (1 + 1e-12)).all())
    # FP8 blocks are much more precise on the same data
    assert err[m].mean() < err[~m].mean()


# ---------------------------------------------------------------- Fraction brute force
def _spec_mags(ebits, mbits, bias, n):
    out = []
    for c in range(n):
        e, mt = c >> mbits, c & ((1 << mbits) - 1)
        f = Fraction(mt, 1 << mbits)
        out.append(f * Fraction(2) ** (1 - bias) if e == 0 else (1 + f) * Fraction(2) ** (e - bias))
    return out


E2M1_MAGS = _spec_mags(2, 1, 1, 8)
E4M3_MAGS = _spec_mags(4, 3, 7, 127)


def _round(q: Fraction, mags) -> int:
    return min(range(len(mags)), key=lambda c: (abs(abs(q) - mags[c]), c & 1))


def _brute(x: torch.Tensor, mask: torch.Tensor):
    amax = max(abs(Fraction(v)) for v in x.reshape(-1).tolist())
    s_t = Fraction(float(torch.tensor(float(amax), dtype=torch.float32) / 2688)) if amax else Fraction(1)
    codes, scales, values = [], [], []
    for blk, fp8 in zip(x.reshape(-1, BLOCK).tolist(), mask.reshape(-1).tolist()):
        if fp8:
            sc, s_b, mags, sign = FP8_IMPLICIT_SCALE_CODE, Fraction(6), E4M3_MAGS, 0x80
        else:
            sc = _round(max(abs(Fraction(v)) for v in blk) / (6 * s_t), E4M3_MAGS)
            s_b, mags, sign = E4M3_MAGS[sc], E2M1_MAGS, 0x8
        scales.append(sc)
        for v in blk:
            mag = 0 if s_b == 0 else _round(Fraction(v) / (s_b * s_t), mags)
            codes.append(mag | (sign if math.copysign(1, v) < 0 else 0))
            values.append(float(mags[mag] * s_b * s_t) * (-1 if math.copysign(1, v) < 0 else 1))
    return (s_t, torch.tensor(codes, dtype=torch.uint8), torch.tensor(scales, dtype=torch.uint8),
            torch.tensor(values, dtype=torch.float64).float())


@pytest.mark.parametrize("case", ["normal", "wide", "ties", "tiny_blocks", "bf16"])
def test_exact_values_vs_fraction(case):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(4, 64, generator=g)
    if case == "wide":
        x = x * torch.exp2(torch.randint(-12, 12, x.shape, generator=g).float())
    elif case == "ties":
        x = torch.randint(-96, 97, x.shape, generator=g).float() / 16
    elif case == "tiny_blocks":
        x[0, :16] *= 1e-6  # subnormal or zero block scales
        x[1, 16:32] = 0.0
        x[2, :3] = 1e3
    elif case == "bf16":
        x = x.bfloat16()
    m = _mask(x.shape, 0.4, 6)
    q = fgmp_quantize(x, m)
    s_t, codes, scales, values = _brute(x.float(), m)
    assert Fraction(float(q.tensor_scale)) == s_t
    assert torch.equal(q.codes.reshape(-1), codes)
    assert torch.equal(q.block_scale.reshape(-1), scales)
    assert torch.equal(q.dequantize().reshape(-1).abs(), values.abs())


def test_large_tensor_runs():
    x = _randn((256, 4096), 7)
    q = fgmp_quantize(x, _mask(x.shape, 0.1, 7))
    assert q.codes.shape == (256, 256, BLOCK)


# ---------------------------------------------------------------- validation (hypothesis)
@HSET
@given(dtype=st.sampled_from([torch.uint8, torch.int32, torch.float32, torch.int64]))
def test_mask_dtype_rejected(dtype):
    with pytest.raises(TypeError, match="torch.bool"):
        fgmp_quantize(torch.zeros(2, 32), torch.zeros(2, 2, dtype=dtype))


@HSET
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2), nb=st.integers(1, 4),
       mshape=st.lists(st.integers(0, 5), min_size=0, max_size=3))
def test_mask_shape_rejected(lead, nb, mshape):
    x = torch.zeros(*lead, nb * BLOCK)
    expected = (*lead, nb)
    if tuple(mshape) == expected:
        return
    with pytest.raises(ValueError, match="is_fp8_mask has shape"):
        fgmp_quantize(x, torch.zeros(mshape, dtype=torch.bool))


@HSET
@given(obj=st.one_of(st.booleans(), st.lists(st.booleans(), min_size=2, max_size=2)))
def test_mask_type_rejected(obj):
    with pytest.raises(TypeError, match="is_fp8_mask must be a torch.Tensor"):
        fgmp_quantize(torch.zeros(1, 32), obj)


@HSET
@given(bad=st.sampled_from([math.nan, math.inf, -math.inf]), pos=st.integers(0, 63), fp8=st.booleans())
def test_non_finite_rejected(bad, pos, fp8):
    x = torch.ones(2, 32)
    x.view(-1)[pos] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        fgmp_quantize(x, torch.full((2, 2), fp8))


def test_x_validation():
    m = torch.zeros(2, 2, dtype=torch.bool)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        fgmp_quantize(torch.zeros(2, 32, dtype=torch.float64), m)
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        fgmp_quantize(torch.zeros(2, 32, dtype=torch.int32), m)
    with pytest.raises(ValueError, match="multiple of 16"):
        fgmp_quantize(torch.zeros(2, 24), m)
    with pytest.raises(ValueError, match="at least one dimension"):
        fgmp_quantize(torch.tensor(1.0), torch.tensor(True))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fgmp_quantize([1.0] * 16, torch.zeros(1, dtype=torch.bool))
