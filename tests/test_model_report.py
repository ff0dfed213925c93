"""mpgen.studies.model_report: the model-level energy rows of ``mpgen report``."""

from __future__ import annotations

import pytest

from mpgen.studies import model_energy as me
from mpgen.studies import model_report as mr


@pytest.fixture(autouse=True)
def no_quality_curves(monkeypatch):
    """The quality curves run the real models: not what these tests are about."""
    monkeypatch.setattr(me, "quality_curve", lambda model: [])


def _energy(fp4, mixed, fp8):
    modes = {"fp4xfp4": fp4, "fp4xfp8": mixed, "fp8xfp4": mixed, "fp8xfp8": fp8}
    return {"energy_unit": "pJ",
            "modes": {m: {"energy_per_op": e, "mismatches": 0} for m, e in modes.items()}}


def test_one_model_energy_row_per_reference_dot_product_unit(monkeypatch):
    """Each reference configuration of the dot-product unit (single and double FP4 rate) weights
    the same block mix with its own per-mode energies, and its rows say which unit they used."""
    mix = {"model": "toy", "policy": "fgmp", "fp4_fraction": 0.7, "activation_blocks": 0,
           "counts": {"fp4xfp4": 2, "fp4xfp8": 1, "fp8xfp4": 0, "fp8xfp8": 1}}
    monkeypatch.setattr(me, "mode_mix", lambda model, fraction: dict(mix, model=model))
    data = {"units": {"dotprod": {"mixed-split": {"energy": _energy(25.0, 50.0, 50.0)},
                                  "mixed-split-x2": {"energy": _energy(20.0, 50.0, 50.0)}}}}
    section = mr.report_section(data=data)
    rows = section["model_energy"]
    assert [r["dot_product_unit"] for r in rows] == \
        [f"dotprod/{c}" for c in mr.ENERGY_REFERENCE["dotprod"] for _ in mr.MODELS]
    by_unit = {r["dot_product_unit"]: r["saving_vs_fp8"] for r in rows if r["model"] == "minilm"}
    assert by_unit["dotprod/mixed-split"] == pytest.approx(1 - (2 * 25 + 50 + 50) / (4 * 50))
    assert by_unit["dotprod/mixed-split-x2"] == pytest.approx(1 - (2 * 20 + 50 + 50) / (4 * 50))


def test_a_missing_reference_unit_is_a_note_not_a_row(monkeypatch):
    monkeypatch.setattr(me, "mode_mix", lambda model, fraction: {
        "model": model, "counts": {"fp4xfp4": 1, "fp4xfp8": 0, "fp8xfp4": 0, "fp8xfp8": 1}})
    data = {"units": {"dotprod": {"mixed-split": {"energy": _energy(25.0, 50.0, 50.0)}}}}
    section = mr.report_section(data=data)
    assert {r["dot_product_unit"] for r in section["model_energy"]} == {"dotprod/mixed-split"}
    assert "model energy needs the energy of dotprod/mixed-split-x2" in section["notes"]
