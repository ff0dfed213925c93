"""Unit spec of the FGMP block dot-product unit (:class:`mpgen.rtl.dotprod.BlockDotProduct`)."""

from __future__ import annotations

from mpgen.golden.constants import BLOCK_SIZES
from mpgen.rtl.dotprod import (ACCUMULATIONS, FORMAT_SETS, FP4_RATES, ORGANISATIONS,
                                PIPELINE_DEPTHS, tree_groups)

from . import Param, UnitSpec

__all__ = ["SPEC", "pipeline_ladder"]


def pipeline_ladder(params) -> list[dict]:
    """Pipeline choices for ``pipeline=auto``, from the shortest latency and latest cut to the
    earliest: 1, 2, the adder-tree cut from the largest group to the smallest (1: before the
    lanes' shifters), then 4 and 5."""
    base = {k: v for k, v in params.items() if k not in ("pipeline", "tree_group")}
    groups = sorted(tree_groups(base.get("block_size", 16)), reverse=True)
    return ([{**base, "pipeline": 1}, {**base, "pipeline": 2}]
            + [{**base, "pipeline": 3, "tree_group": g} for g in groups]
            + [{**base, "pipeline": 4}, {**base, "pipeline": 5}])

SPEC = UnitSpec(
    name="dotprod",
    description="FGMP block dot product (BlockDotProduct): NVFP4/FP8 blocks, exact or FP32 accumulation",
    factory="mpgen.rtl.dotprod:BlockDotProduct",
    params=(
        Param("block_size", int, 16, BLOCK_SIZES, "elements per block"),
        Param("formats", str, "mixed", FORMAT_SETS,
              "block formats: mixed (flag per block), fp8 only, fp4 (NVFP4) only"),
        Param("organisation", str, None, ORGANISATIONS,
              "mixed only: split (cheap E2M1 lanes beside E4M3 lanes) or shared (default split)"),
        Param("pipeline", int, 2, PIPELINE_DEPTHS,
              "register stages before the accumulator (auto: the shallowest that closes --clock-ns)"),
        Param("accumulation", str, "fp32", ACCUMULATIONS,
              "fp32 (round each block term, FP32 adder in the loop) or exact (wide fixed-point "
              "sum, one rounding per dot product)"),
        Param("tree_group", int, None, None,
              "pipeline >= 3: products per group at the adder-tree cut (1, 2, 4, 8, 16; below "
              "block_size; default 4 in blocks of 16; 1 = before the shifters, pipeline 3 only)"),
        Param("fp4_rate", int, 1, FP4_RATES,
              "FP4xFP4 block pairs per cycle: 2 = double rate, two per beat (mixed split with "
              "exact accumulation; same numerics)"),
    ),
    # The default configurations are pipelined for 200 MHz at SG13G2 typical (docs/timing.md):
    # exact accumulation, and the shallowest pipeline that closes 5 ns.
    configs={
        "fp8-only": {"formats": "fp8", "accumulation": "exact", "pipeline": 3},
        "fp4-only": {"formats": "fp4", "accumulation": "exact", "pipeline": 2},
        "mixed-split": {"formats": "mixed", "organisation": "split", "accumulation": "exact",
                        "pipeline": 3, "tree_group": 1},
        "mixed-shared": {"formats": "mixed", "organisation": "shared", "accumulation": "exact",
                         "pipeline": 3},
        "mixed-split-x2": {"formats": "mixed", "organisation": "split", "accumulation": "exact",
                           "pipeline": 3, "tree_group": 1, "fp4_rate": 2},
    },
    design_clock_ns={name: 5.0 for name in ("fp8-only", "fp4-only", "mixed-split", "mixed-shared",
                                            "mixed-split-x2")},
    key_configs=("mixed-split", "fp8-only"),
    # FP4xFP4 vs FP8xFP8 in one unit (the report also measures the others, mixed-split-x2 too);
    # fp8-only is the area baseline
    energy_configs=("mixed-split",),
    golden="mpgen.golden.dotprod:dot_products",
    regression="mpgen.sim.dotprod:run_dotprod_regression",
    regression_sizes={
        "quick": "2,048 sampled element pairs per mode, corners, 150 random dot products, "
                 "reset mid-stream, random gaps and back-pressure",
        "full": "every E4M3xE4M3 (65,536), E2M1xE2M1 and E2M1xE4M3 element pair, corners, "
                "1,500 random dot products, reset mid-stream",
    },
    energy_modes="mpgen.sim.workloads:dotprod_modes",
    workload="mpgen.sim.workloads:dotprod_workload",
    area_groups={
        "multipliers": ["lanes_*"],
        "adder tree": ["tree_*"],
        "block scale & term": ["scale_decode*", "scale", "scale_*", "to_term*"],
        "accumulator": ["accumulator"],
        "control & pipeline": ["(top)"],  # also FP4 alignment and operand isolation
    },
    claims="mpgen.flows.units.dotprod_report:claims",
    pipeline_ladder="mpgen.flows.units.dotprod:pipeline_ladder",
    # What 200 MHz costs in the mixed unit: each organisation with FP32 and exact accumulation,
    # with and without the adder-tree cut (area-mapped: the fmax each reaches). Other axes
    # (block_size, clock_ns, ...) with ``mpgen sweep``.
    report_sweep={"organisation": ["split", "shared"], "accumulation": ["fp32", "exact"],
                  "pipeline": [2, 3], "formats": ["mixed"]},
    doc="numerics.md",
)
