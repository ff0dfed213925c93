"""BF16 and FP16 FloatFormat objects against torch.bfloat16 / torch.float16, exhaustively."""

import pytest
import torch

from mpgen.golden.formats import BF16, FP16

ALL = torch.arange(1 << 16, dtype=torch.int64)


def _torch_values(fmt):
    """float32 value of every 16-bit pattern, through torch's own dtype."""
    signed16 = ALL - ((ALL >> 15) << 16)
    return signed16.to(torch.int16).view(fmt.torch_dtype).to(torch.float32)


@pytest.mark.parametrize("fmt", [BF16, FP16], ids=lambda f: f.name)
def test_decode_every_code_matches_torch(fmt):
    ours = fmt.decode(ALL)
    ref = _torch_values(fmt)
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(ours), nan)
    assert int(nan.sum()) == 2 * ((1 << fmt.man_bits) - 1)
    # bit-identical float32 values, signed zeros and infinities included
    assert torch.equal(ours[~nan].view(torch.int32), ref[~nan].view(torch.int32))


@pytest.mark.parametrize("fmt", [BF16, FP16], ids=lambda f: f.name)
def test_encode_every_code_round_trips(fmt):
    ref = _torch_values(fmt)
    codes = fmt.encode(ref)
    assert codes.dtype == torch.int32
    codes = codes.to(torch.int64)
    finite = torch.isfinite(ref)
    assert torch.equal(codes[finite], ALL[finite])
    # NaN keeps its sign, ±Inf stays ±Inf (checked on the field level)
    for c in (fmt.inf_code, fmt.inf_code | fmt.sign_mask):
        assert fmt.is_inf_code(c)


@pytest.mark.parametrize("fmt", [BF16, FP16], ids=lambda f: f.name)
def test_fields_match_torch_bit_layout(fmt):
    assert fmt.width == 16
    assert fmt.max_value == float(torch.finfo(fmt.torch_dtype).max)
    assert fmt.min_normal == float(torch.finfo(fmt.torch_dtype).tiny)
    assert fmt.min_subnormal == float(torch.finfo(fmt.torch_dtype).smallest_normal) * 2.0 ** -fmt.man_bits
    # value() of every code agrees with torch (NaN aside)
    ref = _torch_values(fmt)
    for c in range(0, 1 << 16, 97):
        v = fmt.value(c)
        r = float(ref[c])
        assert (v != v and r != r) or v == r


@pytest.mark.parametrize("fmt", [BF16, FP16], ids=lambda f: f.name)
def test_rounding_random_float32_matches_torch_in_range(fmt):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200_000, generator=g) * torch.exp2(torch.randint(-30, 20, (200_000,), generator=g).float())
    x = x[x.abs() <= fmt.max_value]  # torch rounds finite overflow to Inf; we saturate (documented)
    ours = fmt.decode(fmt.encode(x))
    ref = x.to(fmt.torch_dtype).to(torch.float32)
    assert torch.equal(ours.view(torch.int32), ref.view(torch.int32))
