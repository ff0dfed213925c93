"""The classifier's row in the report's claims table."""

from __future__ import annotations

from typing import Mapping

from mpgen.flows.report import area_reports, energy_of, is_number

__all__ = ["claims", "ARRAY", "MULTIPLEXED"]

#: One classifier per ARRAY × ARRAY array of dot-product units, as FGMP deploys it: each block
#: it classifies feeds one row of ARRAY units in a pass through the array.
ARRAY = 16
#: The configuration with ``cycles_per_block = ARRAY``.
MULTIPLEXED = "bf16-c16"


def claims(data: Mapping) -> list[tuple[str, str, str]]:
    """Energy per BF16 block vs a dot-product FP8×FP8 block pair, amortised over the block
    pairs each activation block feeds in the models (when the model studies ran); and the
    classifier's area and energy against the :data:`ARRAY` × :data:`ARRAY` array of mixed-split
    units it serves (when both areas are in the data)."""
    ec, uc = energy_of(data, "classifier", "bf16")
    ed, ud = energy_of(data, "dotprod", "mixed-split", "fp8xfp8")
    if ec is None or ed is None or uc != ud:
        return []
    reuse = [r.get("activation_reuse") or (r.get("block_products") and r.get("activation_blocks")
             and r["block_products"] / r["activation_blocks"]) for r in data.get("model_energy") or []]
    reuse = [float(x) for x in reuse if is_number(x)]
    amort = (f"; amortised over the {min(reuse):,.0f}–{max(reuse):,.0f} block pairs each "
             f"activation block feeds in the models: {ec / ed / max(reuse):.2%}–"
             f"{ec / ed / min(reuse):.2%}") if reuse else ""
    rows = [("classifier (BF16 block) vs dot-product FP8×FP8 block pair",
             f"{ec:.3g} vs {ed:.3g} {uc} ({ec / ed:.2f}× per block{amort})",
             "classifier under 1 % of the dot-product energy (FGMP)")]
    ac = area_reports(data, "classifier").get("bf16")
    ad = area_reports(data, "dotprod").get("mixed-split")
    if ac is not None and ad is not None:
        n = ARRAY * ARRAY
        rows.append((f"one classifier per {ARRAY}×{ARRAY} array of mixed-split dot-product units",
                     f"area {ac.nand2_eq:,.0f} vs {n} × {ad.nand2_eq:,.0f} NAND2-eq "
                     f"({ac.nand2_eq / (n * ad.nand2_eq):.2%}); energy per block vs the {ARRAY} "
                     f"FP8×FP8 block pairs it feeds in one pass: {ec / (ARRAY * ed):.1%}",
                     "minimal overhead (FGMP)"))
    # the time-multiplexed variant (one block per ARRAY cycles) against the unit it feeds
    am = area_reports(data, "classifier").get(MULTIPLEXED)
    em, um = energy_of(data, "classifier", MULTIPLEXED)
    if am is not None and ad is not None and em is not None and um == ud:
        rows.append((f"classifier {MULTIPLEXED} (one lane, a block per {ARRAY} cycles) vs one "
                     f"mixed-split dot-product unit",
                     f"area {am.nand2_eq:,.0f} vs {ad.nand2_eq:,.0f} NAND2-eq "
                     f"({am.nand2_eq / ad.nand2_eq:.2f}×); {em:.3g} {um} per block = "
                     f"{em / ed:.2f} FP8×FP8 block pairs",
                     "goal (issue 12): ≤ 0.5× the area, ≤ 1 block pair of energy"))
    return rows
