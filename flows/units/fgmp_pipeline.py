"""Unit spec of the classifier + dot-product pipeline (:class:`mpgen.rtl.fgmp_pipeline.ClassifierDotProduct`)."""

from __future__ import annotations

from mpgen.rtl.dotprod import ORGANISATIONS, PIPELINE_DEPTHS

from . import Param, UnitSpec
from .classifier import SPEC as CLASSIFIER

__all__ = ["SPEC"]

SPEC = UnitSpec(
    name="fgmp_pipeline",
    description="activation classifier feeding the mixed dot-product unit (ClassifierDotProduct)",
    factory="mpgen.rtl.fgmp_pipeline:ClassifierDotProduct",
    # the classifier's parameters, then the dot-product unit's organisation and pipeline
    params=CLASSIFIER.params + (
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
