"""The model studies' part of ``mpgen report``: model-level FGMP energy and quality vs FP4 fraction.

:func:`report_section` weights the FGMP policy's block-precision mix on each real model
(:func:`mpgen.studies.model_energy.mode_mix`) with the energy per mode this run measured for the
reference configurations (:data:`ENERGY_REFERENCE`), and adds the quality curves.  Models that
are not installed are skipped with a note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from mpgen.flows.report import units_view

from . import model_energy as me

__all__ = ["ENERGY_REFERENCE", "MODELS", "report_section"]

#: Configurations whose energy per mode feeds the model-level energy: the dot-product unit
#: (mixed precision, split datapath, at single and double FP4 rate: one row each) and the
#: classifier (BF16 activations).
ENERGY_REFERENCE = {"dotprod": ("mixed-split", "mixed-split-x2"), "classifier": "bf16"}
#: The models the report covers (when installed).
MODELS = ("minilm", "stories260K")


def _energy_rows(view: Mapping, fraction: float, progress) -> tuple[list, list[str]]:
    cls = (view.get("classifier") or {}).get(ENERGY_REFERENCE["classifier"], {}).get("energy")
    references = {}
    notes = []
    for config in ENERGY_REFERENCE["dotprod"]:
        dot = (view.get("dotprod") or {}).get(config, {}).get("energy")
        if dot is None:
            notes.append(f"model energy needs the energy of dotprod/{config}")
        else:
            references[config] = me.energies_from_report(dot)
    if not references:
        return [], notes
    rows, mixes = [], {}
    for model in MODELS:
        try:
            progress(f"model energy: FGMP block mix of {model} at {fraction:.0%} FP4")
            mixes[model] = me.mode_mix(model, fraction)
        except (FileNotFoundError, ImportError) as e:
            notes.append(f"{model}: skipped ({str(e).splitlines()[0]})")
    for config, (energies, unit) in references.items():
        cls_block = None
        if cls is not None and cls["energy_unit"] == unit:
            cls_block = next(iter(cls["modes"].values()))["energy_per_op"]
        for mix in mixes.values():
            row = me.model_energy(mix, energies, classifier_energy_per_block=cls_block,
                                  energy_unit=unit)
            rows.append({"dot_product_unit": f"dotprod/{config}", **row})
    return rows, notes


def report_section(*, data: Mapping, jobs: int | None = None, liberty: str | None = None,
                   out: Path | None = None, fraction: float = 0.7,
                   progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """``{"model_energy": rows, "quality": rows, "notes": [...]}`` for the report *data*."""
    rows, notes = _energy_rows(units_view(data), fraction, progress)
    quality = []
    for model in MODELS:
        try:
            progress(f"quality vs FP4 fraction: {model}")
            quality += me.quality_curve(model)
        except (FileNotFoundError, ImportError) as e:
            notes.append(f"{model}: skipped ({str(e).splitlines()[0]})")
    return {"model_energy": rows, "quality": quality, "notes": notes}
