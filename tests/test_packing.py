"""golden/packing.py: FP4 nibble order against torch's and torchao's own code."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mpgen.golden.formats import E2M1, E4M3, E5M2, E8M0
from mpgen.golden.packing import as_torch_float4, as_torch_float8, codes_from_torch, pack_fp4, unpack_fp4


@settings(max_examples=50, deadline=None)
@given(lead=st.lists(st.integers(0, 3), max_size=2), n=st.integers(0, 20), seed=st.integers(0, 2 ** 16))
def test_round_trip(lead, n, seed):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (*lead, 2 * n), generator=g, dtype=torch.uint8)
    packed = pack_fp4(codes)
    assert packed.shape == (*lead, n) and packed.dtype == torch.uint8
    assert torch.equal(unpack_fp4(packed), codes)
    assert torch.equal(pack_fp4(unpack_fp4(packed)), packed)
    t = as_torch_float4(packed)
    assert t.dtype == torch.float4_e2m1fn_x2 and t.shape == packed.shape
    assert torch.equal(codes_from_torch(t), codes)


def test_nibble_order_explicit():
    assert pack_fp4(torch.tensor([0x1, 0x2, 0xF, 0x0], dtype=torch.uint8)).tolist() == [0x21, 0x0F]


def test_nibble_order_vs_torch_float4_unpacker():
    """torch's own reader of float4_e2m1fn_x2 (its ONNX exporter) sees our element order."""
    mod = pytest.importorskip("torch.onnx._internal.exporter._type_casting")
    codes = torch.randint(0, 16, (6, 32), dtype=torch.uint8)
    t = as_torch_float4(pack_fp4(codes))
    assert tuple(mod.get_float4_shape(t)) == (6, 32)
    ref = torch.from_numpy(mod.unpack_float4x2_as_uint8(t))
    assert torch.equal(ref.reshape(6, 32), codes)


def test_nibble_order_vs_torchao():
    """Quantize with torchao's E2M1 cast and packer, compare bytes with ours."""
    kernels = pytest.importorskip("torchao.prototype.mx_formats.kernels")
    x = torch.randn(8, 64) * 3
    ref = kernels.pack_uint4(kernels.f32_to_f4_unpacked(x))
    ours = pack_fp4(E2M1.encode(x))
    assert torch.equal(ours, ref)
    assert torch.equal(kernels.unpack_uint4(ours), unpack_fp4(ours))
    # torchao's decoder of the unpacked codes agrees with E2M1.decode
    assert torch.equal(kernels.f4_unpacked_to_f32(unpack_fp4(ours)), E2M1.decode(unpack_fp4(ours)))


@pytest.mark.parametrize("fmt", [E4M3, E5M2, E8M0], ids=lambda f: f.name)
def test_float8_views(fmt):
    codes = torch.arange(256, dtype=torch.uint8).reshape(16, 16)
    t = as_torch_float8(codes, fmt)
    assert t.dtype == fmt.torch_dtype and t.shape == codes.shape
    assert torch.equal(codes_from_torch(t), codes)
    ref, ours = t.to(torch.float32), fmt.decode(codes)
    assert torch.equal(torch.isnan(ref), torch.isnan(ours))
    assert torch.equal(ref[~torch.isnan(ref)], ours[~torch.isnan(ours)])


def test_float8_view_default_is_e4m3():
    codes = E4M3.encode(torch.tensor([1.0, -448.0, 0.015625]))
    t = as_torch_float8(codes)
    assert t.dtype == torch.float8_e4m3fn
    assert t.float().tolist() == [1.0, -448.0, 0.015625]


def test_errors():
    with pytest.raises(TypeError, match="uint8"):
        pack_fp4(torch.zeros(4, dtype=torch.int32))
    with pytest.raises(TypeError, match="torch.Tensor"):
        pack_fp4([1, 2])
    with pytest.raises(ValueError, match="even"):
        pack_fp4(torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="4-bit"):
        pack_fp4(torch.tensor([16, 0], dtype=torch.uint8))
    with pytest.raises(ValueError, match="at least one dimension"):
        pack_fp4(torch.tensor(1, dtype=torch.uint8))
    with pytest.raises(TypeError, match="uint8"):
        unpack_fp4(torch.zeros(2))
    with pytest.raises(TypeError, match="uint8"):
        as_torch_float4(torch.zeros(2, dtype=torch.int8))
    with pytest.raises(ValueError, match="no 8-bit torch dtype"):
        as_torch_float8(torch.zeros(2, dtype=torch.uint8), E2M1)
    with pytest.raises(TypeError, match="float4_e2m1fn_x2 or float8"):
        codes_from_torch(torch.zeros(2))
    with pytest.raises(TypeError):
        codes_from_torch("x")
