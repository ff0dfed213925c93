"""ActivationClassifier / ClassifierDotProduct: parameter validation, port layouts, and the area
breakdown of a small configuration through the Yosys flow."""

import pytest

from mpgen.golden.classifier import ClassifierConfig
from mpgen.golden.formats import E4M3, UE4M3
from mpgen.rtl.classifier import ActivationClassifier, output_layout
from mpgen.rtl.dotprod import BlockDotProduct
from mpgen.rtl.emit import port_names
from mpgen.rtl.fgmp_pipeline import ClassifierDotProduct
from mpgen.flows.units import get_unit

SPEC = get_unit("classifier")


@pytest.mark.parametrize("kw, exc", [
    ({"input_format": "fp8"}, ValueError), ({"input_format": 16}, ValueError),
    ({"channels": 24}, ValueError), ({"channels": 0}, ValueError), ({"channels": "64"}, TypeError),
    ({"channels": True}, TypeError), ({"diff_bits": 1}, ValueError), ({"diff_bits": 17}, ValueError),
    ({"diff_frac_bits": 9}, ValueError), ({"diff_frac_bits": 2.0}, TypeError), ({"p_bits": 1}, ValueError),
    ({"cycles_per_block": 3}, ValueError), ({"cycles_per_block": 32}, ValueError),
    ({"cycles_per_block": 0}, ValueError), ({"cycles_per_block": True}, ValueError),
])
def test_invalid_parameters_raise(kw, exc):
    with pytest.raises(exc):
        ActivationClassifier(**kw)


def test_layouts_and_ports():
    unit = SPEC.build(SPEC.configs["fp16"])
    assert unit.params == {"input_format": "fp16", "channels": 64, "diff_frac_bits": 3, "diff_bits": 9,
                           "p_bits": 8, "cycles_per_block": 1}
    assert unit.latency == 3
    assert unit.input_layout.size == 16 * 16 + 2 + 1  # values, index (4 words), last
    # the output block is exactly the activation half of BlockDotProduct's input
    dot = BlockDotProduct(formats="mixed")
    assert unit.output_layout["block"].shape == dot.input_layout["a"].shape
    assert output_layout().size == 16 * E4M3.width + 1 + UE4M3.width + 1
    cfg = ClassifierConfig()
    assert unit.cfg_layout["data"].shape.width == max(16 * UE4M3.width, cfg.threshold_bits)
    assert set(port_names(unit)) == {"i__payload", "i__valid", "i__ready", "o__payload", "o__valid",
                                     "o__ready", "cfg__payload", "cfg__valid", "cfg__ready"}
    assert ActivationClassifier(cycles_per_block=16).latency == 16 + 3
    top = ClassifierDotProduct(channels=32)
    assert top.latency == 3 + 3
    assert "w__payload" in port_names(top) and "act__payload" in port_names(top)
    with pytest.raises(ValueError):
        ClassifierDotProduct(pipeline=6)


@pytest.mark.synth
def test_area_breakdown_small_config(tmp_path):
    from mpgen.flows.area import area_table, synthesize
    from mpgen.rtl.emit import to_verilog

    rep = synthesize(to_verilog(ActivationClassifier(input_format="fp16", channels=16), "classifier"),
                     "classifier", work_dir=tmp_path)
    table = area_table({"fp16-k16": rep}, SPEC.area_groups)  # raises if a submodule is in no group
    print(table)
    subs = rep.submodules
    assert {"fp8_encode", "scale_max", "fp4_encode", "score_diff", "score_acc", "fisher_table"} <= set(subs)
    # the Fisher table holds 16 x 7 bits: at least that many flip-flops' worth of area
    assert subs["fisher_table"].nand2_eq > 16 * 7 * 3
    assert subs["score_acc"].nand2_eq > subs["scale_max"].nand2_eq
