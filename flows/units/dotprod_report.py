"""The dot-product unit's rows in the report's claims table."""

from __future__ import annotations

from typing import Mapping

from mpgen.flows.report import energy_of

__all__ = ["claims"]


def claims(data: Mapping) -> list[tuple[str, str, str]]:
    """FP4×FP4 vs FP8×FP8 block-pair energy of each mixed configuration with energy data."""
    rows = []
    for config in ("mixed-split", "mixed-shared", "mixed-split-x2"):
        e4, u = energy_of(data, "dotprod", config, "fp4xfp4")
        e8, u8 = energy_of(data, "dotprod", config, "fp8xfp8")
        if e4 is not None and e8 is not None and u == u8:
            rows.append((f"dotprod/{config}: FP4×FP4 vs FP8×FP8 block pair",
                         f"{e4:.3g} vs {e8:.3g} {u} ({1 - e4 / e8:.0%} less)",
                         "FP4 products much cheaper than FP8 (the basis of FGMP's saving)"))
    return rows
