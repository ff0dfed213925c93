"""golden/dialect_dot.py: BlockDialect dot products against float64 matmuls of the dequantized
values (exact where their sums fit float64) and sequential float32 accumulation."""

import pytest
import torch

from mpgen.golden.blockdialect import quantize_blockdialect
from mpgen.golden.dialect_dot import block_products, dialect_matmul

@pytest.fixture
def pair(heavy_tailed):
    """Activations (two-stage dialects) [6, 128] and weights (exact search) [5, 128], blocks of 32."""
    a = quantize_blockdialect(heavy_tailed((6, 128), 5), 32, selection="two_stage")
    w = quantize_blockdialect(heavy_tailed((5, 128), 6) * 0.05, 32)
    return a, w


def test_exact_dot_products_are_the_rounded_exact_sums(pair):
    """Moderate ranges: the float64 matmul of the dequantized values is exact, so the exact
    mode must equal its single rounding to float32."""
    a, w = pair
    ref = (a.dequantize().double() @ w.dequantize().double().T).float()
    assert torch.equal(dialect_matmul(a, w, "exact"), ref)


def test_fp32_dot_products_add_the_block_terms_in_order(pair):
    a, w = pair
    xa = a.dequantize().double().reshape(6, 4, 32)
    xw = w.dequantize().double().reshape(5, 4, 32)
    terms = torch.einsum("mkb,nkb->mnk", xa, xw).float()   # each term exact in float32
    acc = torch.zeros(6, 5)
    for k in range(4):
        acc = acc + terms[..., k]
    assert torch.equal(dialect_matmul(a, w, "fp32"), acc)
    p, _ = block_products(a, w)
    assert int(p.abs().max()) < 64 * 225


def test_exact_cancellation_gives_plus_zero():
    x = torch.tensor([[1.0] * 32 + [-1.0] * 32])
    a = quantize_blockdialect(x, 32)
    w = quantize_blockdialect(torch.ones(1, 64), 32)
    out = dialect_matmul(a, w, "exact")
    assert float(out) == 0.0 and not bool(torch.signbit(out))


@pytest.mark.parametrize("which", ["block", "k", "type", "accumulation", "range"])
def test_dot_product_arguments_are_checked(which, pair):
    a, w = pair
    if which == "block":
        w = quantize_blockdialect(torch.ones(5, 128), 64)
    elif which == "k":
        w = quantize_blockdialect(torch.ones(5, 64), 32)
    elif which == "type":
        w = w.dequantize()
    elif which == "range":
        a = quantize_blockdialect(torch.full((1, 32), 2.0 ** -100), 32, exp_bits=8)
        w = quantize_blockdialect(torch.full((1, 32), 2.0 ** -100), 32, exp_bits=8)
    exc = TypeError if which == "type" else ValueError
    with pytest.raises(exc):
        dialect_matmul(a, w, "bogus" if which == "accumulation" else "fp32")
