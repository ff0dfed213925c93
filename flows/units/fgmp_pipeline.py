"""Unit spec of the classifier + dot-product pipeline (:class:`mpgen.rtl.fgmp_pipeline.ClassifierDotProduct`)."""

from __future__ import annotations

from mpgen.golden.classifier_config import INPUT_FORMATS
from mpgen.rtl.dotprod import ORGANISATIONS, PIPELINE_DEPTHS

from . import Param, UnitSpec

__all__ = ["SPEC"]

SPEC = UnitSpec(
    name="fgmp_pipeline",
    description="activation classifier feeding the mixed dot-product unit (ClassifierDotProduct)",
    factory="mpgen.rtl.fgmp_pipeline:ClassifierDotProduct",
    params=(
        Param("input_format", str, "bf16", tuple(INPUT_FORMATS), "activation input format"),
        Param("channels", int, 64, None, "input channels K (Fisher table entries), a multiple of 16"),
        Param("diff_frac_bits", int, 3, None, "fraction bits of the score's |difference| (0..8)"),
        Param("diff_bits", int, 9, None, "saturating width of the |difference| (2..16)"),
        Param("p_bits", int, 8, None, "width of the signed scale-exponent register (2..10)"),
        Param("organisation", str, "split", ORGANISATIONS, "dot-product lanes: split or shared"),
        Param("pipeline", int, 2, PIPELINE_DEPTHS, "dot-product register stages"),
    ),
    configs={"bf16-split": {}},
    key_configs=("bf16-split",),
    energy_configs=(),  # classifier + dot product: --energy all
    golden="mpgen.golden.classifier:classify_stream",
    regression="mpgen.sim.fgmp_pipeline:run_pipeline_regression",
    regression_sizes={
        "quick": "a few hundred classified block pairs, with and without random gaps and "
                 "back-pressure",
        "full": "several thousand classified block pairs, with and without gaps and back-pressure",
    },
    energy_modes="mpgen.sim.fgmp_pipeline:energy_modes",
    workload="mpgen.sim.fgmp_pipeline:pipeline_workload",
    area_groups={
        "classifier": ["classifier", "classifier.*"],
        "dot product": ["dotprod", "dotprod.*"],
        "join": ["(top)"],
    },
    doc="classifier.md",
)
