"""golden/formats.py against torch's own narrow dtypes and the OCP spec tables."""

import math
from fractions import Fraction

import pytest
import torch

from mpgen.golden.formats import E2M1, E4M3, E5M2, E8M0, FORMATS, UE4M3

ALL_BF16 = torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)
# torch.Tensor.to(float8) turns |x| at or above these into NaN (older torch) / Inf (e5m2); below
# them torch's cast is RNE and must agree with ours. (torch 2.13's e4m3fn cast saturates instead.)
TORCH_OVERFLOW = {"E4M3": 480.0, "UE4M3": 480.0, "E5M2": 61440.0}

# OCP MX v1.0, table of FP4 E2M1 values for codes 0b0000..0b0111 (sign bit 0b1000 negates).
OCP_E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).view(torch.int32)


def _assert_same_floats(a: torch.Tensor, b: torch.Tensor):
    """Equal bit for bit (so −0 ≠ +0), NaN only where the other is NaN."""
    a, b = a.to(torch.float32), b.to(torch.float32)
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    ok = ~torch.isnan(a)
    assert torch.equal(_bits(a[ok]), _bits(b[ok]))


def _random_f32(n: int, seed: int) -> torch.Tensor:
    """Half fully random float32 bit patterns, half with exponents near the narrow formats' range."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.randint(-(1 << 31), 1 << 31, (n,), generator=g, dtype=torch.int64).to(torch.int32)
    near = raw[: n // 2] & ~(0xFF << 23)
    exp = torch.randint(127 - 30, 127 + 18, (n // 2,), generator=g, dtype=torch.int32)
    near = near | (exp << 23)
    return torch.cat([raw[n // 2:], near]).view(torch.float32)


# ------------------------------------------------------------------------------------ decode
@pytest.mark.parametrize("fmt", [E4M3, E5M2, E8M0], ids=lambda f: f.name)
def test_decode_matches_torch_dtype(fmt):
    dtype = fmt.torch_dtype
    codes = torch.arange(256, dtype=torch.uint8)
    try:
        ref = codes.view(dtype).to(torch.float32)
    except (RuntimeError, NotImplementedError):  # pragma: no cover - old torch without the cast
        pytest.skip(f"torch cannot convert {dtype}")
    _assert_same_floats(fmt.decode(codes), ref)


def test_decode_ue4m3_is_positive_e4m3():
    codes = torch.arange(128, dtype=torch.uint8)
    _assert_same_floats(UE4M3.decode(codes), codes.view(torch.float8_e4m3fn).to(torch.float32))


def test_decode_e2m1():
    codes = torch.arange(16, dtype=torch.uint8)
    expected = torch.tensor(OCP_E2M1 + [-v for v in OCP_E2M1], dtype=torch.float32)
    _assert_same_floats(E2M1.decode(codes), expected)
    try:  # torch's fp4 dtype is a shell type on CPU; use its cast where it exists
        packed = (codes[0::2] | (codes[1::2] << 4)).view(torch.float4_e2m1fn_x2)
        packed.to(torch.float32)
    except (RuntimeError, NotImplementedError):
        return
    pytest.fail("torch can now cast float4_e2m1fn_x2: compare against it here")  # pragma: no cover


def test_format_properties():
    assert (E2M1.max_value, E4M3.max_value, E5M2.max_value, UE4M3.max_value) == (6.0, 448.0, 57344.0, 448.0)
    assert (E2M1.width, E4M3.width, E5M2.width, UE4M3.width, E8M0.width) == (4, 8, 8, 7, 8)
    assert E4M3.min_subnormal == 2.0 ** -9 and E5M2.min_subnormal == 2.0 ** -16
    assert E2M1.min_subnormal == 0.5 and E8M0.min_subnormal == 2.0 ** -127
    assert E8M0.max_value == 2.0 ** 127
    assert (E4M3.nan_code, E5M2.nan_code, E8M0.nan_code, E2M1.nan_code) == (0x7F, 0x7E, 0xFF, None)
    assert E5M2.inf_code == 0x7C and E4M3.inf_code is None
    for fmt in (E4M3, E5M2):
        assert fmt.max_value == float(torch.finfo(fmt.torch_dtype).max)


# ------------------------------------------------------------------------------------ encode
def _torch_codes(x: torch.Tensor, fmt) -> torch.Tensor:
    return x.to(fmt.torch_dtype).view(torch.uint8)


@pytest.mark.parametrize("fmt", [E4M3, E5M2, UE4M3], ids=lambda f: f.name)
def test_encode_matches_torch_all_bf16(fmt):
    x = ALL_BF16
    keep = torch.isfinite(x) & (x.float().abs() < TORCH_OVERFLOW[fmt.name])
    if not fmt.signed:
        keep &= ~torch.signbit(x)
    x = x[keep]
    assert torch.equal(fmt.encode(x), _torch_codes(x, fmt))
    assert torch.equal(fmt.encode(x.float()), _torch_codes(x.float(), fmt))


@pytest.mark.parametrize("fmt", [E4M3, E5M2, UE4M3], ids=lambda f: f.name)
def test_encode_matches_torch_random_f32(fmt):
    x = _random_f32(2_000_000, seed=7 + fmt.width)
    if not fmt.signed:
        x = x.abs()
    x = x[torch.isfinite(x) & (x.abs() < TORCH_OVERFLOW[fmt.name])]
    assert x.numel() > 1_000_000
    assert torch.equal(fmt.encode(x), _torch_codes(x, fmt))


def test_encode_e4m3_all_finite_when_torch_saturates():
    """torch >= 2.12 saturates finite e4m3fn overflow (older torch gave NaN); then every finite
    value agrees, and so does ±Inf (saturated to ±448 by both)."""
    if int(_torch_codes(torch.tensor([1e30]), E4M3)) != E4M3.max_code:
        pytest.skip("this torch's float8_e4m3fn cast does not saturate")
    x = torch.cat([ALL_BF16.float(), _random_f32(500_000, seed=5)])
    x = torch.cat([x[~torch.isnan(x)], torch.tensor([float("inf"), -float("inf")])])
    assert torch.equal(E4M3.encode(x), _torch_codes(x, E4M3))


def test_encode_e8m0_matches_torch_off_ties():
    """torch's e8m0fnu cast rounds ties (1.5·2^k) up and mishandles float32 subnormals; ours rounds
    ties to the even code. Elsewhere in the normal float32 range below the overflow point they agree."""
    x = torch.cat([ALL_BF16.float(), _random_f32(1_000_000, seed=3)])
    m, _ = torch.frexp(x)
    keep = (torch.isfinite(x) & (x >= torch.finfo(torch.float32).tiny) & (x < 1.5 * 2.0 ** 127)
            & (m != 0.75))
    x = x[keep]
    assert torch.equal(E8M0.encode(x), _torch_codes(x, E8M0))


def test_encode_e2m1_all_bf16_vs_torchao():
    """E2M1 encode against torchao's independent bit-manipulation cast (RNE, saturating)."""
    kernels = pytest.importorskip("torchao.prototype.mx_formats.kernels")
    x = ALL_BF16.float()
    x = x[torch.isfinite(x)]
    assert torch.equal(E2M1.encode(x), kernels.f32_to_f4_unpacked(x))


def _brute_round(fmt, x: float) -> int:
    """Nearest finite code to x by exhaustive search (ties to even code, saturating), sign kept."""
    q = Fraction(x)
    best = None
    for c in range(1 << fmt.magnitude_width):
        if fmt.is_nan_code(c) or fmt.is_inf_code(c):
            continue
        v = Fraction(fmt.value(c))
        key = (abs(abs(q) - v), c & 1)
        if best is None or key < best[0]:
            best = (key, c)
    code = best[1]
    if fmt.signed and math.copysign(1.0, x) < 0:
        code |= fmt.sign_mask
    return code


def test_encode_e2m1_brute_force():
    x = torch.tensor([i / 16 for i in range(-130, 131)] + [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0, 1e9],
                     dtype=torch.float32)
    assert E2M1.encode(x).tolist() == [_brute_round(E2M1, float(v)) for v in x]


def test_encode_float64_rounded_once():
    # 1.0625 is the E4M3 midpoint between 1.0 and 1.125; a float64 just above it must round up,
    # though its float32 rounding is the midpoint itself (which would tie down to 1.0).
    x = torch.tensor([1.0625 + 2.0 ** -40, 1.0625 - 2.0 ** -40, 1.0625], dtype=torch.float64)
    assert torch.equal(x.float(), torch.full((3,), 1.0625))
    assert E4M3.encode(x).tolist() == [0x39, 0x38, 0x38]


def test_saturation():
    big = torch.tensor([480.0, 1e38, -1e38, 448.5, 464.0, -3.4e38])
    assert E4M3.encode(big).tolist() == [0x7E, 0x7E, 0xFE, 0x7E, 0x7E, 0xFE]
    assert UE4M3.encode(big.abs()).tolist() == [0x7E] * 6
    assert E5M2.encode(torch.tensor([61440.0, 1e38, -65536.0])).tolist() == [0x7B, 0x7B, 0xFB]
    assert E2M1.encode(torch.tensor([6.5, 7.0, 100.0, -1e30])).tolist() == [7, 7, 7, 15]
    assert E8M0.encode(torch.tensor([3.4e38])).tolist() == [E8M0.max_code]


def test_nan_inf_negative_zero():
    nan, inf = float("nan"), float("inf")
    x = torch.tensor([nan, -nan, inf, -inf])
    # NaN: the format's NaN with the sign copied; Inf: Inf where it exists, else ±max (satfinite).
    assert E4M3.encode(x).tolist() == [0x7F, 0xFF, 0x7E, 0xFE]
    assert E5M2.encode(x).tolist() == [0x7E, 0xFE, 0x7C, 0xFC]
    assert UE4M3.encode(torch.tensor([nan, inf])).tolist() == [0x7F, 0x7E]
    assert E8M0.encode(torch.tensor([nan, inf])).tolist() == [0xFF, E8M0.max_code]
    assert E2M1.encode(torch.tensor([inf, -inf])).tolist() == [0x7, 0xF]
    with pytest.raises(ValueError, match="E2M1 has no NaN"):
        E2M1.encode(torch.tensor([1.0, nan]))
    # −0 and negative values rounding to zero keep the sign bit.
    z = torch.tensor([-0.0, -1e-30, 0.0])
    assert E4M3.encode(z).tolist() == [0x80, 0x80, 0x00]
    assert E5M2.encode(z).tolist() == [0x80, 0x80, 0x00]
    assert E2M1.encode(z).tolist() == [0x8, 0x8, 0x0]
    assert E2M1.encode(torch.tensor([-0.25, 0.25])).tolist() == [0x8, 0x0]  # tie to even (0)
    assert UE4M3.encode(torch.tensor([-0.0, 0.0])).tolist() == [0, 0]
    # torch's cast agrees on NaN for E4M3 and on −0 everywhere.
    assert _torch_codes(torch.tensor([nan, -nan, -0.0]), E4M3).tolist() == [0x7F, 0xFF, 0x80]


def test_unsigned_and_zero_errors():
    with pytest.raises(ValueError, match="unsigned"):
        UE4M3.encode(torch.tensor([1.0, -0.5]))
    with pytest.raises(ValueError, match="unsigned"):
        E8M0.encode(torch.tensor([-2.0]))
    with pytest.raises(ValueError, match="no zero"):
        E8M0.encode(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="unsigned"):
        UE4M3.encode(torch.tensor([-float("inf")]))


def test_type_errors():
    with pytest.raises(TypeError):
        E4M3.encode([1.0])
    with pytest.raises(TypeError):
        E4M3.encode(torch.tensor([1, 2]))
    with pytest.raises(TypeError):
        E4M3.decode(torch.tensor([1.0]))
    with pytest.raises(ValueError):
        E2M1.decode(torch.tensor([16]))
    with pytest.raises(ValueError):
        UE4M3.decode(torch.tensor([128]))


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_round_trip_every_code(name):
    fmt = FORMATS[name]
    codes = torch.tensor([c for c in range(1 << fmt.width) if not fmt.is_nan_code(c)], dtype=torch.int64)
    assert torch.equal(fmt.encode(fmt.decode(codes)).to(torch.int64), codes)
