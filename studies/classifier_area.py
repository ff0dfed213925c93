"""Area of the FGMP activation classifier against the dot-product unit it feeds (the table of
``docs/classifier.md``): ``mpgen study classifier-area`` or
``python -m mpgen.studies.classifier_area``.

The classifier's registry pieces (configurations, breakdown groups, factory, the regression)
are in its unit spec, :mod:`mpgen.flows.units.classifier`.
"""

from __future__ import annotations

import argparse
import fnmatch
import tempfile
from pathlib import Path

from mpgen.flows.units import get_unit
from mpgen.rtl.classifier import ActivationClassifier

#: The classifier unit's breakdown groups (its spec, mpgen.flows.units.classifier).
AREA_GROUPS = get_unit("classifier").area_groups

__all__ = ["area_comparison", "main"]


def area_comparison(channels=(16, 64), *, liberty=None, work_root=None, input_format="bf16") -> str:
    """Synthesize the classifier (for each table size in ``channels``) and
    ``BlockDotProduct(formats="mixed", organisation="split")``; return a Markdown table of the
    classifier's breakdown, its ratio to the dot-product unit (with and without the Fisher
    table) and the score path's share (``python -m mpgen.studies.classifier_area``)."""
    from mpgen.flows.area import synthesize
    from mpgen.rtl.dotprod import BlockDotProduct
    from mpgen.rtl.emit import to_verilog

    root = Path(work_root or tempfile.mkdtemp(prefix="mpgen-classifier-area-"))
    dot = synthesize(to_verilog(BlockDotProduct(formats="mixed", organisation="split"), "dotprod"),
                     "dotprod", liberty=liberty, work_dir=root / "dotprod")
    um = liberty is not None
    lines = ["| design | NAND2-eq | " + ("µm² | " if um else "") + " | ".join(AREA_GROUPS) +
             " | ratio to dot product | ratio without Fisher table | score path share |",
             "|" + "---|" * (4 + int(um) + len(AREA_GROUPS))]
    lines.append(f"| BlockDotProduct mixed/split | {dot.nand2_eq:.0f} | " +
                 (f"{dot.area_um2:.0f} | " if um else "") + " | ".join("" for _ in AREA_GROUPS) + " | 1 | | |")
    for k in channels:
        rep = synthesize(to_verilog(ActivationClassifier(input_format=input_format, channels=k), "classifier"), "classifier",
                         liberty=liberty, work_dir=root / f"classifier_k{k}")
        groups = {}
        for g, pats in AREA_GROUPS.items():
            groups[g] = sum(a.nand2_eq for s, a in rep.submodules.items()
                            if any(fnmatch.fnmatchcase(s, p) for p in pats))
        hier = rep.hier_nand2_eq
        table = groups["Fisher table"]
        score = groups["score path"]
        lines.append(f"| ActivationClassifier {input_format} K={k} | {rep.nand2_eq:.0f} | " +
                     (f"{rep.area_um2:.0f} | " if um else "") +
                     " | ".join(f"{v:.0f}" for v in groups.values()) +
                     f" | {rep.nand2_eq / dot.nand2_eq:.3f} | "
                     f"{(rep.nand2_eq * (1 - table / hier)) / dot.nand2_eq:.3f} | "
                     f"{score / hier:.1%} ({score / (hier - table):.1%} without table) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m mpgen.studies.classifier_area`` / ``mpgen study classifier-area``: the area
    table of docs/classifier.md (classifier vs the dot-product unit it feeds)."""
    ap = argparse.ArgumentParser(prog="mpgen study classifier-area",
                                 description="classifier vs dot-product area (docs/classifier.md)")
    ap.add_argument("--liberty", help="Liberty file for µm² figures")
    ap.add_argument("--channels", type=int, nargs="+", default=[16, 64],
                    help="Fisher-table sizes K to synthesize (default 16 64)")
    ap.add_argument("--work-root", help="keep the Yosys work folders here")
    a = ap.parse_args(argv)
    print(area_comparison(tuple(a.channels), liberty=a.liberty, work_root=a.work_root))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
