"""Shared pytest set-up: a summary of how many vectors each regression checked."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


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
