"""Generator parameters of BlockDotProduct: valid sets elaborate, invalid ones fail clearly."""

import pytest
from amaranth.back import rtlil
from hypothesis import given, settings, strategies as st

from mpgen.rtl.dotprod import BlockDotProduct, FORMAT_SETS, ORGANISATIONS, PIPELINE_DEPTHS


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
