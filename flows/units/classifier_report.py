"""The classifier's row in the report's claims table."""

from __future__ import annotations

from typing import Mapping

from mpgen.flows.report import energy_of, is_number

__all__ = ["claims"]


def claims(data: Mapping) -> list[tuple[str, str, str]]:
    """Energy per BF16 block vs a dot-product FP8×FP8 block pair, amortised over the block
    pairs each activation block feeds in the models (when the model studies ran)."""
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
    return [("classifier (BF16 block) vs dot-product FP8×FP8 block pair",
             f"{ec:.3g} vs {ed:.3g} {uc} ({ec / ed:.2f}× per block{amort})",
             "classifier under 1 % of the dot-product energy (FGMP)")]
