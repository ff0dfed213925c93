"""FineQ array generator: parameter validation, derived widths and cycle formulas, ports,
and the decoder's Amaranth model against the golden decoder (Amaranth's own simulator)."""

import pytest
import torch
from amaranth.sim import Simulator

from mpgen.golden.fineq import DEFAULT_CODE, FineQCode, decode_words
from mpgen.rtl.emit import port_names, to_verilog
from mpgen.rtl.fineq import (FineQArray, FineQDecoder, MultiplierPE, PECell, TemporalPE, WeightRow,
                             check_code, exact_acc_bits)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"rows": 0}, ValueError, "rows"),
    ({"cols": 65}, ValueError, "cols"),
    ({"rows": 4.0}, TypeError, "rows"),
    ({"rows": True}, TypeError, "rows"),
    ({"pe": "systolic"}, ValueError, "pe must be"),
    ({"pe": "multiplier", "weight_bits": 6}, ValueError, "weight_bits"),
    ({"pe": "multiplier", "weight_bits": True}, ValueError, "weight_bits"),
    ({"weight_bits": 4}, ValueError, "need pe='multiplier'"),
    ({"pe": "multiplier", "weight_bits": 8, "code": DEFAULT_CODE}, ValueError, "code applies"),
    ({"pe": "multiplier", "coding": "unary"}, ValueError, "coding applies"),
    ({"coding": "thermometer"}, ValueError, "coding must be"),
    ({"acc_bits": 12}, ValueError, "cannot hold"),
    ({"act_bits": 1}, ValueError, "act_bits"),
    ({"code": "default"}, TypeError, "FineQCode"),
    ({"code": {"normal_levels": [0, 1, 2, 3], "outlier_levels": list(range(8)), "x": 1}},
     ValueError, "unknown FineQ code"),
])
def test_bad_parameters_raise(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        FineQArray(**kwargs)


def test_bad_code_objects_raise():
    class Fake:
        normal_levels = (-2, -1, 1, 2)
        outlier_levels = (-4, -3, -2, -1, 1, 2, 3, 4)
        weight_width = 3  # -4..4 needs 4 signed bits
        max_magnitude = 4
    with pytest.raises(ValueError, match="do not fit"):
        check_code(Fake())
    Fake.weight_width, Fake.max_magnitude = 4, 3
    with pytest.raises(ValueError, match="max_magnitude"):
        check_code(Fake())
    with pytest.raises(ValueError, match="max_magnitude"):
        TemporalPE(max_magnitude=0, weight_width=4)


def test_pe_parameters():
    with pytest.raises(ValueError, match="does not fit"):
        TemporalPE(max_magnitude=9, weight_width=4)
    with pytest.raises(ValueError, match="coding"):
        TemporalPE(max_magnitude=4, weight_width=4, coding="pulse")
    with pytest.raises(TypeError):
        MultiplierPE(weight_width="8")


def test_derived_widths_and_cycles_follow_the_code():
    code = DEFAULT_CODE
    a = FineQArray(8, 8)
    assert a.step_cycles == code.max_magnitude  # unary: one add per unit of magnitude
    assert a.weight_width == code.weight_width
    assert a.acc_bits == exact_acc_bits(8, code.max_magnitude, 8)
    assert a.weight_transfers == 3  # ceil(8 / 3) words per column
    assert a.latency_cycles == (8 + 8 - 1) * a.step_cycles + 1
    assert a.tile_cycles(64) == 3 + (64 + 14) * a.step_cycles + 3
    b = FineQArray(8, 8, coding="bitserial")
    assert b.step_cycles == code.max_magnitude.bit_length()
    wide = FineQCode((-3, -1, 1, 3), (-13, -9, -5, -2, 2, 5, 9, 13), name="wide")
    c = FineQArray(6, 4, code=wide)
    assert c.step_cycles == 13 and c.weight_transfers == 2
    assert FineQArray(**c.params).code == wide  # params round-trip, levels included
    for bits in (4, 8):
        m = FineQArray(5, 3, pe="multiplier", weight_bits=bits)
        assert m.step_cycles == 1 and m.weight_transfers == 5
        assert m.acc_bits == exact_acc_bits(5, 1 << (bits - 1), 8)
    # the exact width is tight: the extreme sum needs every bit
    r, wmax = 8, 1 << 7
    extreme = r * wmax * 128
    assert extreme < (1 << (exact_acc_bits(r, wmax, 8) - 1)) and extreme >= (1 << (exact_acc_bits(r, wmax, 8) - 2))


def test_ports_and_layouts():
    a = FineQArray(4, 5)
    names = port_names(a)
    for s in ("w", "a", "o"):
        assert {f"{s}__payload", f"{s}__valid", f"{s}__ready"} <= set(names)
    assert a.weight_layout.size == 8 * 5 and a.act_layout.size == 8 * 4
    assert a.result_layout.size == a.acc_bits * 5
    text = to_verilog(a, "fineq")
    assert "decoder_0" in text and "pe_3_4" in text
    base = FineQArray(4, 5, pe="multiplier", weight_bits=4)
    assert base.weight_layout.size == 4 * 5
    assert "decoder_" not in to_verilog(base, "fineq")


def test_decoder_model_matches_golden_every_word():
    """The Amaranth description itself (before Verilog) on all 256 words, for two codes."""
    for code in (DEFAULT_CODE, FineQCode((-3, -1, 0, 2), (-7, -5, -3, -1, 1, 3, 5, 7), name="odd")):
        dut = FineQDecoder(code)
        want_w, want_d = decode_words(torch.arange(256, dtype=torch.uint8), code)
        bad = []

        async def bench(ctx):
            for word in range(256):
                ctx.set(dut.word, word)
                got = [ctx.get(dut.weights[p]) for p in range(3)]
                dropped = ctx.get(dut.dropped)
                exp_d = sum(int(b) << p for p, b in enumerate(want_d[word].tolist()))
                if got != want_w[word].tolist() or dropped != exp_d:
                    bad.append(word)

        sim = Simulator(dut)
        sim.add_testbench(bench)
        sim.run()
        assert not bad, f"{code.name}: words {bad[:8]} decode wrongly"


def test_unary_tile_step_ends_at_the_largest_magnitude():
    a = FineQArray(8, 8)
    assert [a.tile_step_cycles(k) for k in range(8)] == [1, 1, 2, 3, 4, 5, 6, 7]
    assert a.tile_step_cycles() == a.step_cycles == 7  # no tile: the longest step


def test_bitserial_tile_step_is_the_bit_length_of_the_largest_magnitude():
    b = FineQArray(8, 8, coding="bitserial")
    assert [b.tile_step_cycles(k) for k in range(8)] == [1, 1, 2, 2, 3, 3, 3, 3]


def test_tile_of_zero_weights_takes_one_cycle_steps():
    a = FineQArray(8, 8)
    assert a.tile_step_cycles(0) == 1
    assert a.tile_latency_cycles(0) == (8 + 8 - 1) + 1
    assert a.tile_cycles(16, 0) == 3 + (16 + 14) + 3


def test_tile_cycles_and_latency_follow_the_tile_step():
    a = FineQArray(8, 8)
    assert a.tile_cycles(16) == a.tile_cycles(16, 7) == 216
    assert a.tile_cycles(16, 5) == 3 + (16 + 14) * 5 + 3
    assert a.tile_latency_cycles(3) == 15 * 3 + 1
    assert a.latency_cycles == a.tile_latency_cycles()


def test_multiplier_steps_stay_one_cycle_for_any_tile():
    m = FineQArray(4, 4, pe="multiplier", weight_bits=8)
    assert {m.tile_step_cycles(k) for k in (0, 1, 77, 128)} == {1}


def test_tile_max_magnitude_out_of_range_raises():
    with pytest.raises(ValueError, match="max_magnitude must be in 0..7, not 8"):
        FineQArray(8, 8).tile_cycles(16, 8)
    with pytest.raises(ValueError, match="not -1"):
        FineQArray(8, 8).tile_step_cycles(-1)


def test_weight_registers_live_in_one_module_per_row():
    text = to_verilog(FineQArray(3, 2), "fineq")
    assert "pe_weights_0" in text and "pe_weights_2" in text and "pe_weights_3" not in text
    pe = TemporalPE(max_magnitude=7, weight_width=4)
    assert "load" not in pe.signature.members and "weight" in pe.signature.members


def test_weight_row_rejects_bad_parameters():
    with pytest.raises(TypeError, match="TemporalPE or MultiplierPE"):
        WeightRow("pe", 4)
    with pytest.raises(ValueError, match="cols must be in 1..64, not 0"):
        WeightRow(MultiplierPE(weight_width=8), 0)


def test_pe_cell_has_the_standalone_pe_ports():
    cell = PECell(TemporalPE(max_magnitude=7, weight_width=4))
    assert {"load", "w_in", "phase", "first", "psum_out"} <= set(cell.signature.members)
    assert "weight" not in cell.signature.members and cell.step_cycles == 7
