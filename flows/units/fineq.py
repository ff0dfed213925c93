"""Unit spec of the FineQ PE array and its multiplier baselines (:class:`mpgen.rtl.fineq.FineQArray`)."""

from __future__ import annotations

from mpgen.rtl.fineq import BASELINE_WEIGHT_BITS, CODINGS, PE_KINDS

from . import Param, UnitSpec

__all__ = ["SPEC"]

SPEC = UnitSpec(
    name="fineq",
    description="FineQ outlier-decoding temporal PE array and its W4A8/W8A8 multiplier baselines",
    factory="mpgen.rtl.fineq:FineQArray",
    params=(
        Param("rows", int, 8, None, "array rows R (reduction dimension), 1..64"),
        Param("cols", int, 8, None, "array columns C (output channels), 1..64"),
        Param("pe", str, "temporal", PE_KINDS, "processing element: temporal or multiplier"),
        Param("weight_bits", int, None, BASELINE_WEIGHT_BITS,
              "plain INTn weights (multiplier baselines); unset = FineQ cluster words"),
        Param("act_bits", int, 8, None, "activation bits, 2..16"),
        Param("acc_bits", int, None, None, "accumulator bits (default: the exact minimum)"),
        Param("coding", str, None, CODINGS, "temporal PEs: unary (FineQ) or bitserial"),
    ),
    configs={
        "fineq-8x8": {"rows": 8, "cols": 8, "pe": "temporal", "coding": "unary"},
        "fineq-bitserial-8x8": {"rows": 8, "cols": 8, "pe": "temporal", "coding": "bitserial"},
        "fineq-mul-8x8": {"rows": 8, "cols": 8, "pe": "multiplier"},
        "w4a8-8x8": {"rows": 8, "cols": 8, "pe": "multiplier", "weight_bits": 4},
        "w8a8-8x8": {"rows": 8, "cols": 8, "pe": "multiplier", "weight_bits": 8},
    },
    key_configs=("fineq-8x8", "w8a8-8x8"),  # FineQ against its W8A8 baseline
    # The W8A8 array's gate-level build takes about 3 minutes here: --energy all measures it.
    energy_configs=("fineq-8x8",),
    golden="mpgen.golden.fineq:int_gemm",
    regression="mpgen.sim.fineq:run_fineq_regression",
    regression_sizes={
        "quick": "8 random and 3 real-weight tiles through the array (its decoders and PEs), "
                 "reset mid-tile",
        "full": "decoder and PE exhaustive, 30 random and 8 real-weight tiles, reset mid-tile",
    },
    energy_modes="mpgen.sim.workloads:fineq_modes",
    workload="mpgen.sim.workloads:fineq_workload",
    op_quantum="mpgen.sim.workloads:fineq_op_quantum",
    area_groups={
        "decoders": ["decoder_*"],
        "PEs": ["pe_*"],
        "control & pipeline": ["(top)"],  # activation skew, output deskew, phase, load select, valid
    },
    report_sections=("mpgen.flows.units.fineq_report:section",),
    claims="mpgen.flows.units.fineq_report:claims",
    doc="fineq_hw.md",
)
