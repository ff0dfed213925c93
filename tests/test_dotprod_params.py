"""Generator parameters of BlockDotProduct: valid sets elaborate, invalid ones fail clearly."""

import pytest
import torch
from amaranth.back import rtlil
from hypothesis import given, settings, strategies as st

from mpgen.golden.dotprod import TERM_LSB, BlockPairs, fixed_block_terms
from mpgen.golden.formats import E2M1, E4M3, UE4M3
from mpgen.rtl.dotprod import BlockDotProduct, FORMAT_SETS, ORGANISATIONS, PIPELINE_DEPTHS, max_term


@pytest.mark.parametrize("formats", FORMAT_SETS)
@pytest.mark.parametrize("block_size", [8, 16, 32])
def test_valid_configurations_elaborate(formats, block_size):
    orgs = ORGANISATIONS if formats == "mixed" else (None,)
    for org in orgs:
        dut = BlockDotProduct(block_size=block_size, formats=formats, organisation=org)
        assert dut.latency == dut.pipeline + 1
        text = rtlil.convert(dut, name="dotprod")
        assert "lanes_" in text and "accumulator" in text


def test_port_widths_follow_formats():
    mixed = BlockDotProduct()
    fp4 = BlockDotProduct(formats="fp4")
    fp8 = BlockDotProduct(formats="fp8")
    # 16 × 8-bit codes + flag + 7-bit scale per operand, plus last
    assert mixed.input_layout.size == 2 * (16 * 8 + 1 + 7) + 1
    assert fp4.input_layout.size == 2 * (16 * 4 + 7) + 1
    assert fp8.input_layout.size == 2 * (16 * 8) + 1
    assert mixed.signature.members["o"].signature.members["payload"].shape.size == 32


@settings(max_examples=60, deadline=None)
@given(block_size=st.one_of(st.integers(-4, 70), st.sampled_from([16.0, "16", True, None])))
def test_block_size_validated(block_size):
    if isinstance(block_size, int) and not isinstance(block_size, bool) and block_size in (8, 16, 32):
        BlockDotProduct(block_size=block_size)
    else:
        with pytest.raises(ValueError, match="block_size must be one of"):
            BlockDotProduct(block_size=block_size)


@settings(max_examples=40, deadline=None)
@given(formats=st.text(max_size=8), organisation=st.one_of(st.none(), st.text(max_size=8)),
       pipeline=st.one_of(st.integers(-2, 6), st.just(2.0)))
def test_other_parameters_validated(formats, organisation, pipeline):
    ok_formats = formats in FORMAT_SETS
    ok_org = organisation is None or (formats == "mixed" and organisation in ORGANISATIONS)
    ok_pipe = isinstance(pipeline, int) and pipeline in PIPELINE_DEPTHS
    if ok_formats and ok_org and ok_pipe:
        BlockDotProduct(formats=formats, organisation=organisation, pipeline=pipeline)
        return
    with pytest.raises(ValueError) as e:
        BlockDotProduct(formats=formats, organisation=organisation, pipeline=pipeline)
    msg = str(e.value)
    assert any(word in msg for word in ("formats", "organisation", "pipeline"))


def test_organisation_only_for_mixed():
    with pytest.raises(ValueError, match="organisation applies to formats='mixed' only"):
        BlockDotProduct(formats="fp8", organisation="split")


def test_accumulation_validated_and_sets_latency():
    assert BlockDotProduct(accumulation="exact", pipeline=2).latency == 2 + 4
    assert BlockDotProduct(accumulation="fp32", pipeline=2).latency == 2 + 1
    with pytest.raises(ValueError, match="accumulation must be one of"):
        BlockDotProduct(accumulation="bf16")


@pytest.mark.parametrize("block_size,good", [(8, (1, 2, 4)), (16, (1, 2, 4, 8)),
                                             (32, (1, 2, 4, 8, 16))])
def test_tree_group_validated(block_size, good):
    for g in good:
        assert BlockDotProduct(block_size=block_size, pipeline=3, tree_group=g).tree_group == g
    for bad in (0, 3, block_size, 2 * block_size, True, "4"):
        with pytest.raises(ValueError, match="tree_group must be one of"):
            BlockDotProduct(block_size=block_size, pipeline=3, tree_group=bad)
    with pytest.raises(ValueError, match="tree_group applies to pipeline >= 3"):
        BlockDotProduct(block_size=block_size, pipeline=2, tree_group=good[0])


def test_leaf_cut_only_with_pipeline_3():
    with pytest.raises(ValueError, match="tree_group=1 cuts where pipeline 4 registers"):
        BlockDotProduct(pipeline=4, tree_group=1)


@pytest.mark.parametrize("mode", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_exact_term_width_covers_the_largest_term(mode):
    """The RTL sizes its exact terms with max_term; the golden's largest term (all elements and
    scales at their finite maximum) must reach that bound exactly."""
    w_fp8, a_fp8 = map(bool, mode)
    def codes(fp8):
        return torch.full((1, 16), E4M3.max_code if fp8 else E2M1.max_code, dtype=torch.uint8)
    top = torch.tensor([UE4M3.max_code], dtype=torch.uint8)
    pairs = BlockPairs(codes(w_fp8), codes(a_fp8), torch.tensor([w_fp8]), torch.tensor([a_fp8]),
                       top, top, torch.tensor([True]))
    q, shift, _ = fixed_block_terms(pairs)
    assert int(q[0]) << int(shift[0]) == max_term(16, [mode], TERM_LSB)


@pytest.mark.parametrize("formats", FORMAT_SETS)
def test_exact_accumulator_is_64_bits_at_the_operand_grid(formats):
    """Every operand (E2M1 × UE4M3 scale, or E4M3 × the implicit 6 = 12·2**-1) is a multiple of
    2**-10, so every unit's terms sit on 2**-20 and 64 bits hold 2**16 of the largest."""
    dut = BlockDotProduct(formats=formats, accumulation="exact")
    assert (dut.term_lsb, dut.term_width, dut.accumulator_width) == (-20, 48, 64)


@pytest.mark.parametrize("mode", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_golden_terms_are_whole_steps_of_the_units_grid(mode):
    """Every golden block term of a mode (random codes and scales, subnormal scales and the
    largest term among them) is a whole number of the unit's steps, and the largest needs all
    of its term width."""
    dut = BlockDotProduct(accumulation="exact")
    gen = torch.Generator().manual_seed(7)
    n = 256

    def operand(fp8):
        fmt = E4M3 if fp8 else E2M1
        finite = torch.tensor([c for c in range(1 << fmt.width) if not fmt.is_nan_code(c)],
                              dtype=torch.uint8)
        codes = finite[torch.randint(len(finite), (n, 16), generator=gen)]
        codes[0] = fmt.max_code
        scales = torch.randint(UE4M3.max_code + 1, (n,), generator=gen).to(torch.uint8)
        scales[0], scales[1:8] = UE4M3.max_code, torch.arange(1, 8)  # the top, subnormals
        return codes, torch.full((n,), bool(fp8)), scales

    (wc, wf, ws), (ac, af, as_) = operand(mode[0]), operand(mode[1])
    q, shift, _ = fixed_block_terms(BlockPairs(wc, ac, wf, af, ws, as_, torch.ones(n, dtype=torch.bool)))
    step = 1 << (dut.term_lsb - TERM_LSB)
    terms = [int(qi) << int(si) for qi, si in zip(q, shift)]
    assert all(t % step == 0 for t in terms)
    assert max(abs(t) // step for t in terms).bit_length() == dut.term_width - 1


@pytest.mark.parametrize("bad", [0, 3, 4, True, "2"])
def test_fp4_rate_validated(bad):
    with pytest.raises(ValueError, match="fp4_rate must be one of"):
        BlockDotProduct(formats="mixed", accumulation="exact", fp4_rate=bad)


@pytest.mark.parametrize("kwargs", [
    {"formats": "mixed", "organisation": "shared", "accumulation": "exact"},
    {"formats": "mixed", "organisation": "split", "accumulation": "fp32"},
    {"formats": "fp4", "accumulation": "exact"},
    {"formats": "fp8", "accumulation": "exact"},
])
def test_double_rate_needs_the_split_exact_unit(kwargs):
    with pytest.raises(ValueError, match="fp4_rate=2 needs formats='mixed', organisation='split'"):
        BlockDotProduct(fp4_rate=2, **kwargs)


def test_double_rate_ports_and_contract():
    """A double-rate unit's beat carries a ``dual`` flag and each block a second scale; its
    latency, term grid and accumulator width are the single-rate unit's (two terms of at most
    the largest term per beat, within EXACT_MAX_BLOCKS pairs, fit the same 64 bits)."""
    one = BlockDotProduct(formats="mixed", accumulation="exact", pipeline=3, tree_group=1)
    two = BlockDotProduct(formats="mixed", accumulation="exact", pipeline=3, tree_group=1,
                          fp4_rate=2)
    fields = {name for name, _ in two.input_layout}
    assert fields == {"w", "a", "last", "dual"} and "dual" not in {n for n, _ in one.input_layout}
    assert {n for n, _ in two.input_layout["w"].shape} == {"codes", "fp8", "scale", "second_scale"}
    assert two.i.payload.shape().size == one.i.payload.shape().size + 2 * UE4M3.width + 1
    assert (two.latency, two.term_lsb, two.term_width, two.accumulator_width) == \
        (one.latency, one.term_lsb, one.term_width, one.accumulator_width)
    assert two.params["fp4_rate"] == 2 and "fp4_rate" not in one.params
