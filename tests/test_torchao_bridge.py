"""torchao-quantized NVFP4 tensors go straight into the golden model and the simulated unit."""

import pytest
import torch

torchao_nvfp4 = pytest.importorskip("torchao.prototype.mx_formats.nvfp4_tensor")

from mpgen.golden.dotprod import dot_products, fgmp_matmul, pairs_from_fgmp  # noqa: E402
from mpgen.golden.fgmp import FGMPTensor  # noqa: E402
from mpgen.golden.nvfp4 import NVFP4Tensor, quantize_nvfp4  # noqa: E402


def _torchao(x, two_level):
    pts = None
    if two_level:
        pts = torchao_nvfp4.per_tensor_amax_to_scale(x.abs().amax().float())
    return torchao_nvfp4.NVFP4Tensor.to_nvfp4(x, per_tensor_scale=pts)


@pytest.mark.parametrize("two_level", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_from_torchao_keeps_codes_scales_and_values(two_level, dtype):
    torch.manual_seed(1)
    x = (torch.randn(8, 128) * torch.logspace(-2, 2, 128)).to(dtype)
    t = _torchao(x, two_level)
    ours = NVFP4Tensor.from_torchao(t)
    mine = quantize_nvfp4(x, per_tensor_scale=two_level, recipe="torchao")
    assert torch.equal(ours.codes, mine.codes)
    assert torch.equal(ours.block_scale, mine.block_scale)
    # values agree with torchao's own dequantization: it multiplies code·s_b·s_t in float32 (two
    # roundings), we round the exact product once, so they may differ in the last bit
    torch.testing.assert_close(ours.dequantize(), t.dequantize(torch.float32), rtol=2**-22, atol=0)


def test_from_torchao_rejects_what_it_cannot_read():
    with pytest.raises(TypeError, match="torchao NVFP4Tensor"):
        NVFP4Tensor.from_torchao(torch.zeros(4))
    x = torch.randn(128, 64)
    t = torchao_nvfp4.NVFP4Tensor.to_nvfp4(x, is_swizzled_scales=True)
    with pytest.raises(ValueError, match="swizzled"):
        NVFP4Tensor.from_torchao(t)
    with pytest.raises(TypeError, match="NVFP4Tensor"):
        FGMPTensor.from_nvfp4(x)


@pytest.mark.sim
def test_torchao_tensors_through_the_rtl():
    """torchao quantizes activations and weights; the FP4-only and mixed units compute their
    dot products bit-identically to the golden model."""
    from mpgen.sim.dotprod import simulate_dotprod

    torch.manual_seed(2)
    a = FGMPTensor.from_nvfp4(NVFP4Tensor.from_torchao(_torchao(torch.randn(4, 64), True)))
    w = FGMPTensor.from_nvfp4(NVFP4Tensor.from_torchao(_torchao(torch.randn(6, 64), True)))
    pairs = pairs_from_fgmp(a, w)
    want = dot_products(pairs).tolist()
    for config in ({"formats": "fp4"}, {}):
        got = simulate_dotprod(config, pairs, gap=0.2, stall=0.2)
        assert got == want
    print(f"torchao NVFP4 tensors: {len(want)} dot products ({pairs.n} block pairs) bit-exact on "
          "the fp4-only and mixed units")
    # and the scaled result is the dequantized matmul up to FP32 accumulation error
    ref = a.dequantize().double() @ w.dequantize().double().T
    assert torch.allclose(fgmp_matmul(a, w).double(), ref, rtol=1e-5, atol=1e-6)
