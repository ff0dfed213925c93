"""Design ratios of issue 12 from ``mpgen report`` data: what the hardware costs, not how fast
the tools run.

    python benchmarks/bench_design.py [--data docs/report/report-data.json] [--before OLD.json]

Reads the records of one report run (every ratio's two figures come from that same run) and
prints ``FIGURE`` lines:

* ``dotprod.<config>.fp4xfp4_vs_fp8xfp8``: FP4×FP4 over FP8×FP8 block-pair energy in one mixed unit
  (goal <= 0.30);
* ``dotprod.<config>.area_vs_fp8_only``: mixed unit area over the fp8-only unit's (goal <= 1.15);
* ``classifier.<config>.area_vs_mixed_split`` (goal <= 0.5) and
  ``classifier.<config>.energy_vs_fp8xfp8_pair`` (goal <= 1);
* ``fineq.<config>.efficiency_vs_w8a8`` (W8A8 pJ/MAC over the config's; goal >= 1.79) and
  ``fineq.<config>.pe_grid_vs_w8a8`` (PE-grid area ratio; goal <= 0.39).

With ``--before`` the same figures of an older report run are printed in the details.
Nothing is asserted; figures a report lacks are left out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def figure(name: str, value: float, unit: str, detail: str = "") -> None:
    print(f"FIGURE {name} = {value:.4g} {unit}" + (f"  ({detail})" if detail else ""), flush=True)


def _index(path: Path) -> tuple[dict, dict]:
    """({(unit, config): area record}, {(unit, config, mode): pJ per op}) of a report data file."""
    records = json.loads(path.read_text())["records"]
    area = {(r["unit"], r["config"]): r for r in records if r["kind"] == "area"}
    energy = {(r["unit"], r["config"], r["mode"]): r["energy_pj_per_op"]
              for r in records if r["kind"] == "energy"}
    return area, energy


def ratios(path: Path) -> dict[str, float]:
    area, energy = _index(path)
    out = {}
    fp8_area = area.get(("dotprod", "fp8-only"), {}).get("nand2_eq")
    for (unit, config), rec in area.items():
        if unit == "dotprod" and config.startswith("mixed"):
            e4, e8 = energy.get((unit, config, "fp4xfp4")), energy.get((unit, config, "fp8xfp8"))
            if e4 and e8:
                out[f"dotprod.{config}.fp4xfp4_vs_fp8xfp8"] = e4 / e8
            if fp8_area:
                out[f"dotprod.{config}.area_vs_fp8_only"] = rec["nand2_eq"] / fp8_area
    split_area = area.get(("dotprod", "mixed-split"), {}).get("nand2_eq")
    split_e8 = energy.get(("dotprod", "mixed-split", "fp8xfp8"))
    for (unit, config), rec in area.items():
        if unit != "classifier":
            continue
        if split_area:
            out[f"classifier.{config}.area_vs_mixed_split"] = rec["nand2_eq"] / split_area
        e = energy.get((unit, config, "classify"))
        if e and split_e8:
            out[f"classifier.{config}.energy_vs_fp8xfp8_pair"] = e / split_e8
    w8 = energy.get(("fineq", "w8a8-8x8", "mac"))
    w8_grid = area.get(("fineq", "w8a8-8x8"), {}).get("groups", {}).get("PEs")
    for (unit, config), rec in area.items():
        if unit != "fineq" or config == "w8a8-8x8":
            continue
        e = energy.get((unit, config, "mac"))
        if e and w8:
            out[f"fineq.{config}.efficiency_vs_w8a8"] = w8 / e
        if w8_grid and rec.get("groups", {}).get("PEs"):
            out[f"fineq.{config}.pe_grid_vs_w8a8"] = rec["groups"]["PEs"] / w8_grid
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1]
                    / "docs" / "report" / "report-data.json")
    ap.add_argument("--before", type=Path, default=None, help="an older report-data.json")
    ap.add_argument("--quick", action="store_true", help="the same (it only reads a file)")
    args = ap.parse_args(argv)
    now = ratios(args.data)
    before = ratios(args.before) if args.before else {}
    for name, value in sorted(now.items()):
        old = before.get(name)
        figure(name, value, "x", f"before {old:.4g}" if old is not None else "")


if __name__ == "__main__":
    main()
