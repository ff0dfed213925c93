"""Shared pytest set-up: a summary of how many vectors each regression checked, where the model
files are (the only place tests decide that: fixtures ``models_dir`` and ``stories260k``), and
the clock-gated vs ungated energy measurement of a design (fixture ``gated_and_ungated``), and
heavy-tailed random tensors (fixture ``heavy_tailed``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mpgen.flows import energy as E
from mpgen.flows.area import synthesize

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
STORIES260K = "stories260K.bin"


def _models_dir() -> tuple[Path | None, str]:
    """(folder, why not) — ``$MPGEN_MODELS``, else ``<repo>/../shared/models`` when present."""
    env = os.environ.get("MPGEN_MODELS", "").strip()
    if env:
        d = Path(env).expanduser()
        return (d, "") if d.is_dir() else (None, f"MPGEN_MODELS={env} is not a folder")
    d = SHARED / "models"
    return (d, "") if d.is_dir() else (None, f"no model folder: set MPGEN_MODELS (or provide {d})")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = []
    for outcome in ("passed", "failed"):
        for rep in terminalreporter.stats.get(outcome, []):
            if getattr(rep, "when", "call") != "call":
                continue
            for key, value in getattr(rep, "user_properties", []):
                if key == "vectors_checked":
                    rows.append((rep.nodeid, outcome, value))
    if rows:
        terminalreporter.section("vectors checked")
        total = 0
        for nodeid, outcome, value in sorted(rows):
            terminalreporter.write_line(f"{outcome:6s} {value}  {nodeid}")
            total += int(str(value).split()[0])
        failed = sum(outcome == "failed" for _, outcome, _ in rows)
        verdict = (f"{failed} regression(s) FAILED" if failed
                   else "every one matched its reference bit for bit")
        terminalreporter.write_line(f"total: {total} vectors checked; {verdict}")


@pytest.fixture
def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def sg13g2_lib() -> Path:
    """The IHP SG13G2 typical-corner Liberty file in ``../shared/lib``; skips when absent."""
    path = SHARED / "lib" / "sg13g2_stdcell_typ_1p20V_25C.lib"
    if not path.is_file():
        pytest.skip(f"no Liberty file at {path}")
    return path


@pytest.fixture
def gated_and_ungated(tmp_path, sg13g2_lib):
    """``measure(verilog, top, workloads) -> {gated: {mode: ModeEnergy}}``: synthesise *verilog*
    with the SG13G2 Liberty without and with clock gating (checking that gating cells appear only
    in the gated netlist) and measure *workloads* on both gate-level netlists."""
    def measure(verilog: str, top: str, workloads) -> dict:
        got = {}
        for gated in (False, True):
            wd = tmp_path / ("gated" if gated else "ungated")
            rep = synthesize(verilog, top, liberty=sg13g2_lib, work_dir=wd, netlist=True,
                             clock_gating=gated)
            assert (rep.clock_gates > 0) == gated
            net = E.GateNetlist.load(wd, top, sg13g2_lib)
            got[gated] = E.measure_energy(net, workloads, work_dir=wd / "energy").modes
        return got
    return measure


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The model folder: ``$MPGEN_MODELS``, else ``<repo>/../shared/models``; skips otherwise."""
    d, why = _models_dir()
    if d is None:
        pytest.skip(why)
    return d


@pytest.fixture(scope="session")
def stories260k(models_dir) -> Path:
    """``stories260K.bin`` in :func:`models_dir`; skips when it is not there."""
    path = models_dir / STORIES260K
    if not path.is_file():
        pytest.skip(f"model file {path} not present")
    return path


@pytest.fixture(scope="session")
def stories260k_optional() -> Path | None:
    """Like :func:`stories260k` for tests that also run without the model: the file or None."""
    d, _ = _models_dir()
    return d / STORIES260K if d is not None and (d / STORIES260K).is_file() else None


@pytest.fixture
def results_cache(tmp_path, monkeypatch) -> Path:
    """A fresh engine result cache (``MPGEN_CACHE``) for one test; the simulation build cache
    stays the shared one, so Verilator models are not rebuilt."""
    from mpgen.sim.runner import default_build_root

    monkeypatch.setenv("MPGEN_BUILD_DIR", str(default_build_root()))
    monkeypatch.setenv("MPGEN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "results"


@pytest.fixture
def heavy_tailed():
    """``make(shape, seed)``: float32 normal values with 5 % of them ×8 (a heavy tail)."""
    def make(shape, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(*shape, generator=g)
        return torch.where(torch.rand(*shape, generator=g) < 0.05, x * 8, x)
    return make
