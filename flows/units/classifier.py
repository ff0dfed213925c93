"""Unit spec of the FGMP activation block classifier (:class:`mpgen.rtl.classifier.ActivationClassifier`)."""

from __future__ import annotations

from mpgen.golden.classifier_config import INPUT_FORMATS
from mpgen.rtl.classifier import CYCLES_PER_BLOCK

from . import Param, UnitSpec

__all__ = ["SPEC"]

SPEC = UnitSpec(
    name="classifier",
    description="FGMP activation block classifier (ActivationClassifier): NVFP4 or FP8 per block",
    factory="mpgen.rtl.classifier:ActivationClassifier",
    params=(
        Param("input_format", str, "bf16", tuple(INPUT_FORMATS), "activation input format"),
        Param("channels", int, 64, None, "input channels K (Fisher table entries), a multiple of 16"),
        Param("diff_frac_bits", int, 3, None, "fraction bits of the score's |difference| (0..8)"),
        Param("diff_bits", int, 9, None, "saturating width of the |difference| (2..16)"),
        Param("p_bits", int, 8, None, "width of the signed scale-exponent register (2..10)"),
        Param("cycles_per_block", int, 1, CYCLES_PER_BLOCK,
              "cycles per block: 1 = 16 lanes; C > 1 = 16/C lanes, one block per C cycles "
              "(same decisions)"),
    ),
    # bf16-c16: one block per 16 cycles on one lane, enough for a 16-column dot-product array
    configs={"bf16": {}, "fp16": {"input_format": "fp16"}, "bf16-c16": {"cycles_per_block": 16}},
    key_configs=("bf16",),
    energy_configs=(),  # a 60k-cell gate-level build: --energy all (mpgen report measures it)
    golden="mpgen.golden.classifier:classify_stream",
    regression="mpgen.sim.classifier:run_classifier_regression",
    regression_sizes={
        "quick": "sampled 16-bit input codes under five scales, realistic tensors with "
                 "reprogramming, threshold ties, NaN/Inf, back-pressure, reset",
        "full": "every 16-bit input code under five scales and the same directed phases",
    },
    energy_modes="mpgen.sim.workloads:classifier_modes",
    workload="mpgen.sim.workloads:classifier_workload",
    area_groups={
        "E4M3 encode": ["fp8_encode"],
        "amax & scale": ["scale_max", "input_max", "scale_encode"],
        "E2M1 encode": ["fp4_encode"],
        "score path": ["score_diff", "score_acc"],
        "Fisher table": ["fisher_table", "fisher_table.*"],
        "control & pipeline": ["(top)"],
    },
    claims="mpgen.flows.units.classifier_report:claims",
    doc="classifier.md",
)
