"""golden/mx.py against torchao's to_mx (ScaleCalculationMode.FLOOR) and the OCP rule."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mpgen.golden.formats import E2M1, E4M3, E5M2, E8M0
from mpgen.golden.mx import (MX_BLOCK, emax_elem, quantize_mx, quantize_mxfp4, quantize_mxfp8,
                             shared_exponent)

FORMATS = [E2M1, E4M3, E5M2]


def _data(kind: str, shape, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g)
    if kind == "outliers":
        x.view(-1)[:: 97] *= 1e5
    elif kind == "zero_blocks":
        x.view(-1, MX_BLOCK)[::3] = 0.0
    elif kind == "tiny":  # includes blocks whose shared exponent clamps at -127
        per_block = torch.randint(100, 150, (x.numel() // MX_BLOCK, 1), generator=g).float()
        x = (x.reshape(-1, MX_BLOCK) * torch.exp2(-per_block)).reshape(shape)
    elif kind == "huge":
        x = x * 1e36
    elif kind == "wide":
        x = x * torch.exp2(torch.randint(-60, 60, shape, generator=g).float())
    elif kind == "bf16":
        x = x.bfloat16()
    elif kind == "pow2":  # amax exactly a power of two, values at E2M1/E4M3 midpoints
        x = torch.randint(-64, 65, shape, generator=g).float() / 4
    return x


KINDS = ["normal", "outliers", "zero_blocks", "tiny", "huge", "wide", "bf16", "pow2"]


@pytest.fixture(scope="module")
def torchao_mx():
    mx_tensor = pytest.importorskip("torchao.prototype.mx_formats.mx_tensor")
    config = pytest.importorskip("torchao.prototype.mx_formats.config")
    kernels = pytest.importorskip("torchao.prototype.mx_formats.kernels")
    return mx_tensor.to_mx, config.ScaleCalculationMode.FLOOR, kernels.unpack_uint4


def _torchao(torchao_mx, x, fmt):
    to_mx, floor, unpack = torchao_mx
    dtype = torch.float4_e2m1fn_x2 if fmt is E2M1 else fmt.torch_dtype
    scale, data = to_mx(x.contiguous(), dtype, MX_BLOCK, scaling_mode=floor)
    codes = unpack(data) if fmt is E2M1 else data.view(torch.uint8)
    return codes.reshape(x.shape), scale.view(torch.uint8)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(8, 64), (2, 3, 96)], ids=str)
def test_matches_torchao_floor(torchao_mx, fmt, kind, shape):
    x = _data(kind, shape, seed=KINDS.index(kind))
    codes, scale = _torchao(torchao_mx, x, fmt)
    q = quantize_mx(x, fmt, recipe="torchao")
    assert torch.equal(q.codes, codes) and torch.equal(q.scale, scale)
    # The OCP recipe has the same scales, and the same codes outside scale-code-0 blocks.
    o = quantize_mx(x, fmt)
    assert torch.equal(o.scale, scale)
    normal = (o.scale != 0).repeat_interleave(MX_BLOCK, dim=-1)
    assert torch.equal(o.codes[normal], codes[normal])
    # ... and in those blocks it divides by 2**-127 (the value of code 0), torchao by 2**-126.
    tiny = ~normal
    if tiny.any():
        assert torch.equal(o.codes[tiny], fmt.encode(x.double()[tiny] * 2.0 ** 127))


def test_mxfp_wrappers_match_torchao(torchao_mx):
    x = _data("wide", (16, 128), seed=3)
    for q, fmt in ((quantize_mxfp4(x, recipe="torchao"), E2M1),
                   (quantize_mxfp8(x, recipe="torchao"), E4M3),
                   (quantize_mxfp8(x, E5M2, recipe="torchao"), E5M2)):
        codes, scale = _torchao(torchao_mx, x, fmt)
        assert q.elem_format is fmt
        assert torch.equal(q.codes, codes) and torch.equal(q.scale, scale)


def test_emax_and_shared_exponent():
    assert [emax_elem(f) for f in FORMATS] == [2, 8, 15]
    amax = torch.tensor([0.0, 1.0, 6.0, 7.99, 8.0, 2.0 ** -140, 3.4e38])
    assert shared_exponent(amax, E2M1).tolist() == [-127, -2, 0, 0, 1, -127, 125]
    assert shared_exponent(amax, E4M3).tolist() == [-127, -8, -6, -6, -5, -127, 119]


def test_zero_block_and_saturation():
    x = torch.zeros(1, 64)
    x[0, 32] = 7.99  # floor(log2) = 2 → scale 1; 7.99 saturates to 6 in E2M1
    x[0, 33] = -7.0
    q = quantize_mxfp4(x)
    assert q.scale.tolist() == [[0, int(E8M0.encode(torch.tensor(1.0)))]]
    assert q.codes[0, 32:34].tolist() == [7, 15]
    assert int(q.codes[0, :32].max()) == 0


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_dequantize_error_bound(fmt):
    x = _data("wide", (8, 256), seed=4)
    q = quantize_mx(x, fmt)
    d = q.dequantize()
    assert d.dtype == torch.float32 and d.shape == x.shape
    xb = x.reshape(8, -1, MX_BLOCK)
    scale = torch.exp2(shared_exponent(xb.abs().amax(-1), fmt).double()).unsqueeze(-1)
    q = xb.double() / scale
    err = (d.reshape(xb.shape).double() - xb.double()).abs() / scale
    # half an ulp (normal or subnormal), or the saturation gap 2**(emax+1) - max
    half_ulp = torch.maximum(q.abs() * 2.0 ** -(fmt.man_bits + 1), torch.tensor(fmt.min_subnormal / 2))
    bound = torch.maximum(half_ulp, torch.tensor(2.0 ** (emax_elem(fmt) + 1) - fmt.max_value))
    assert bool((err <= bound).all())


@settings(max_examples=30, deadline=None)
@given(k=st.integers(1, 200).filter(lambda k: k % MX_BLOCK), fmt=st.sampled_from(FORMATS))
def test_bad_last_dim(k, fmt):
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_mx(torch.zeros(2, k), fmt)


@settings(max_examples=30, deadline=None)
@given(dtype=st.sampled_from([torch.float64, torch.int32, torch.uint8]),
       bad=st.sampled_from([math.nan, math.inf, -math.inf]), pos=st.integers(0, 63))
def test_bad_input(dtype, bad, pos):
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        quantize_mxfp4(torch.zeros(2, 32, dtype=dtype))
    x = torch.ones(2, 32)
    x.view(-1)[pos] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize_mxfp8(x)


def test_bad_format_and_recipe():
    with pytest.raises(ValueError, match="elem_format"):
        quantize_mx(torch.zeros(32), E8M0)
    with pytest.raises(ValueError, match="E4M3 or E5M2"):
        quantize_mxfp8(torch.zeros(32), E2M1)
    with pytest.raises(ValueError, match="recipe"):
        quantize_mx(torch.zeros(32), E2M1, recipe="rceil")
    with pytest.raises(ValueError, match="at least one dimension"):
        quantize_mx(torch.tensor(0.0), E2M1)
