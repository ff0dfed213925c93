"""Area and cycles of the FineQ temporal-coded array against multiplier baselines.

Every design comes from one generator, :class:`mpgen.rtl.fineq.FineQArray`:

* ``fineq-unary``: temporal PEs, unary coding (FineQ-like: |w| add cycles, S = max |level|);
* ``fineq-bitserial``: temporal PEs, shift-add over the magnitude bits (S = magnitude bits);
* ``fineq-mul``: the same FineQ words and decoders feeding conventional multiplier PEs (S = 1);
* ``w4a8`` / ``w8a8``: plain INT4 / INT8 weights, multiplier PEs (S = 1), no decoders.

Each is synthesised with :func:`mpgen.flows.area.synthesize` (Yosys; NAND2-eq, and µm² with a
Liberty file), split into decoders / PEs / control & pipeline, and paired with the cycles of one
GEMM tile of ``M`` activation vectors (:meth:`FineQArray.tile_cycles`, the formula the cocotb
regression measures in simulation). ``area × cycles`` is the honest figure of merit for temporal
coding, which trades multipliers for cycles.

``python -m mpgen.studies.fineq_area`` (``mpgen study fineq-area``) ``[--liberty FILE] [--sizes 8,16] [--m 64] [--write-docs]``
prints the table (and with ``--write-docs`` replaces it in ``docs/fineq_hw.md``). The unit's
registry pieces (configurations, breakdown groups, factory, regression) are in its unit spec,
:mod:`mpgen.flows.units.fineq`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from mpgen.flows.units import get_unit

#: The FineQ unit's breakdown groups (its spec, mpgen.flows.units.fineq).
AREA_GROUPS = get_unit("fineq").area_groups

__all__ = ["KINDS", "area_configs", "measure", "emit_verilog", "render", "write_docs", "main"]

DOC = Path(__file__).resolve().parents[1] / "docs" / "fineq_hw.md"
BEGIN, END = "<!-- fineq-area:begin -->", "<!-- fineq-area:end -->"
KINDS = {
    "fineq-unary": {"pe": "temporal", "coding": "unary"},
    "fineq-bitserial": {"pe": "temporal", "coding": "bitserial"},
    "fineq-mul": {"pe": "multiplier"},
    "w4a8": {"pe": "multiplier", "weight_bits": 4},
    "w8a8": {"pe": "multiplier", "weight_bits": 8},
}


def area_configs(sizes=(8, 16), kinds=tuple(KINDS)) -> dict:
    """``{name: FineQArray parameters}`` for every kind and square size."""
    out = {}
    for n in sizes:
        for kind in kinds:
            out[f"{kind}-{n}x{n}"] = {"rows": n, "cols": n, **KINDS[kind]}
    return out


def _row(arr, rep, m: int, seconds: float) -> dict:
    """One table row from an array and its :class:`~mpgen.flows.area.AreaReport`."""
    import fnmatch

    groups = {}
    for g, pats in AREA_GROUPS.items():
        subs = [s for s in rep.submodules if any(fnmatch.fnmatchcase(s, p) for p in pats)]
        groups[g] = {"nand2_eq": round(sum(rep.submodules[s].nand2_eq for s in subs), 1),
                     "area_um2": (round(sum(rep.submodules[s].area_um2 or 0 for s in subs), 1)
                                  if rep.area_um2 is not None else None)}
    return {
        "code": (f"{arr.code.name}: normal {list(arr.code.normal_levels)}, outlier "
                 f"{list(arr.code.outlier_levels)}" if arr.fineq else None),
        "params": arr.params, "pes": arr.rows * arr.cols, "step_cycles": arr.step_cycles,
        "latency_cycles": arr.latency_cycles, "weight_transfers": arr.weight_transfers,
        "acc_bits": arr.acc_bits, "m": m, "tile_cycles": arr.tile_cycles(m),
        "nand2_eq": rep.nand2_eq, "hier_nand2_eq": rep.hier_nand2_eq, "area_um2": rep.area_um2,
        "lib_nand2_eq": rep.lib_nand2_eq, "groups": groups,
        "mul_cells": sum(n for t, n in rep.cells_by_type.items() if "mul" in t.lower()),
        "synth_seconds": round(seconds, 1),
    }


def measure(configs: dict, *, m: int = 64, liberty=None, work_root=None, jobs: int = 1,
            reports_dir=None, log=print) -> dict:
    """Synthesise each configuration (``jobs`` Yosys processes at a time), or read the
    ``<reports_dir>/<name>/area.json`` reports a previous run (e.g. on another machine, from
    :func:`emit_verilog`'s files) left; returns ``{name: row dict}`` with the area breakdown, the
    step length, latency and cycles of an ``m``-vector tile."""
    from concurrent.futures import ThreadPoolExecutor

    from mpgen.flows.area import AreaReport, synthesize
    from mpgen.rtl.emit import to_verilog
    from mpgen.rtl.fineq import FineQArray

    arrays = {name: FineQArray(**params) for name, params in configs.items()}
    if reports_dir is not None:
        for arr in arrays.values():
            arr._MustUse__silence = True  # only parameters and formulas are needed

    def one(name):
        t0 = time.monotonic()
        if reports_dir is not None:
            rep = AreaReport.from_dict(json.loads((Path(reports_dir) / name / "area.json").read_text()))
            return rep, rep.synth_seconds
        wd = None if work_root is None else Path(work_root) / name
        rep = synthesize(to_verilog(arrays[name], "fineq", emit_src=False), "fineq",
                         liberty=liberty, work_dir=wd)
        return rep, time.monotonic() - t0

    rows = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for name, (rep, seconds) in zip(arrays, pool.map(one, arrays)):
            rows[name] = _row(arrays[name], rep, m, seconds)
            log(f"{name}: {rep.nand2_eq:,.0f} NAND2-eq"
                + (f", {rep.area_um2:,.0f} µm²" if rep.area_um2 is not None else "")
                + f", {rows[name]['synth_seconds']} s")
    return rows


def emit_verilog(configs: dict, out_dir) -> None:
    """Write ``<out_dir>/<name>.v`` for each configuration (for synthesis elsewhere with
    :func:`mpgen.flows.area.synthesize`, work folder ``<reports_dir>/<name>``, top ``fineq``)."""
    from mpgen.rtl.emit import to_verilog
    from mpgen.rtl.fineq import FineQArray

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, params in configs.items():
        (out / f"{name}.v").write_text(to_verilog(FineQArray(**params), "fineq", emit_src=False))


def _f(x, d=0):
    return "–" if x is None else f"{x:,.{d}f}"


def render(rows: dict) -> str:
    """Markdown: the area/cycles table and the reduction of each FineQ design vs each baseline."""
    lib = all(r["area_um2"] is not None for r in rows.values())
    unit = "µm²" if lib else "NAND2-eq"

    def area(r, what):
        """``total``: flat synthesis; ``no_dec``: hierarchical total minus decoders;
        ``pes``: the PE grid alone (hierarchical)."""
        key = "area_um2" if lib else "nand2_eq"
        if what == "total":
            return r[key]
        hier_total = sum(g[key] for g in r["groups"].values())
        if what == "no_dec":
            return hier_total - r["groups"]["decoders"][key]
        return r["groups"]["PEs"][key]

    out = [f"| config | S (cycles/step) | acc bits | total NAND2-eq{' (lib)' if lib else ''} | "
           f"total {unit} | decoders | PEs | control & "
           f"pipeline | {unit} / PE | cycles / tile (M={next(iter(rows.values()))['m']}) | "
           f"total {unit} × cycles (rel. W8A8) |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    key = "area_um2" if lib else "nand2_eq"
    sizes = sorted({r["pes"] for r in rows.values()})
    for n in sizes:
        group = {k: r for k, r in rows.items() if r["pes"] == n}
        ref = next((r for k, r in group.items() if k.startswith("w8a8")), None)
        for name, r in group.items():
            at = area(r, "total") * r["tile_cycles"]
            rel = f"{at / (area(ref, 'total') * ref['tile_cycles']):.2f}" if ref else "–"
            n2 = r["lib_nand2_eq"] if lib else r["nand2_eq"]
            out.append(f"| {name} | {r['step_cycles']} | {r['acc_bits']} | {_f(n2)} | {_f(area(r, 'total'))} | "
                       f"{_f(r['groups']['decoders'][key])} | {_f(r['groups']['PEs'][key])} | "
                       f"{_f(r['groups']['control & pipeline'][key])} | "
                       f"{_f(area(r, 'pes') / r['pes'], 1)} | {r['tile_cycles']:,} | {rel} |")
    codes = sorted({r["code"] for r in rows.values() if r.get("code")})
    out.append("")
    out.append("FineQ code (level sets): " + "; ".join(codes) + ". Cycles per tile: "
               "`weight_transfers + (M + R + C - 2)·S + 3` (measured in simulation).")
    out.append("")
    out.append(f"Area reduction of the FineQ designs ({unit}; positive = smaller than the baseline):")
    out.append("")
    out.append("| FineQ design | vs | PE grid only | array without decoders | whole array | "
               "cycles / tile ratio | area × cycles ratio |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for n in sizes:
        group = {k: r for k, r in rows.items() if r["pes"] == n}
        for name, r in group.items():
            if not name.startswith("fineq"):
                continue
            for bname, b in group.items():
                if not bname.startswith("w"):
                    continue
                red = [1 - area(r, w) / area(b, w) for w in ("pes", "no_dec", "total")]
                cyc = r["tile_cycles"] / b["tile_cycles"]
                axc = area(r, "total") * r["tile_cycles"] / (area(b, "total") * b["tile_cycles"])
                out.append(f"| {name} | {bname} | {red[0]:.1%} | {red[1]:.1%} | {red[2]:.1%} | "
                           f"{cyc:.2f}× | {axc:.2f} |")
    return "\n".join(out) + "\n"


def write_docs(table: str, doc: Path = DOC, command: str = "") -> None:
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{doc} has no {BEGIN} … {END} markers")
    block = f"{BEGIN}\n<!-- generated by: {command} -->\n\n{table}\n{END}"
    doc.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text,
                          flags=re.S))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mpgen.studies.fineq_area", description=__doc__.split("\n\n")[0])
    ap.add_argument("--liberty", help="Liberty file for µm² (e.g. sg13g2_stdcell_typ_1p20V_25C.lib)")
    ap.add_argument("--sizes", default="8,16", help="square array sizes, comma-separated (default 8,16)")
    ap.add_argument("--kinds", default=",".join(KINDS), help=f"designs (default {','.join(KINDS)})")
    ap.add_argument("--m", type=int, default=64, help="activation vectors per GEMM tile (default 64)")
    ap.add_argument("--jobs", type=int, default=1, help="Yosys runs in parallel (default 1)")
    ap.add_argument("--work-dir", help="keep each design's Yosys folder under this folder")
    ap.add_argument("--emit-verilog", metavar="DIR", help="only write the designs' Verilog to DIR")
    ap.add_argument("--reports", metavar="DIR",
                    help="read DIR/<config>/area.json (synthesised elsewhere) instead of running Yosys")
    ap.add_argument("--json", help="also write the measurements to this JSON file")
    ap.add_argument("--from-json", help="render from a JSON file written by --json (no synthesis)")
    ap.add_argument("--write-docs", action="store_true", help=f"replace the table in {DOC.name}")
    args = ap.parse_args(argv)
    try:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    except ValueError:
        ap.error(f"--sizes must be integers, got {args.sizes!r}")
    kinds = tuple(k.strip() for k in args.kinds.split(","))
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        ap.error(f"unknown kinds {bad}; choose from {list(KINDS)}")
    if args.m < 1:
        ap.error("--m must be >= 1")
    configs = area_configs(sizes, kinds)
    if args.emit_verilog:
        emit_verilog(configs, args.emit_verilog)
        return 0
    if args.from_json:
        rows = json.loads(Path(args.from_json).read_text())
    else:
        rows = measure(configs, m=args.m, liberty=args.liberty, jobs=args.jobs,
                       work_root=args.work_dir, reports_dir=args.reports,
                       log=lambda s: print(s, file=sys.stderr))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    table = render(rows)
    print(table)
    if args.write_docs:
        cmd = "python -m mpgen.studies.fineq_area" + (f" --liberty {args.liberty}" if args.liberty else "") \
            + (f" --sizes {args.sizes}" if args.sizes != "8,16" else "") + (f" --m {args.m}" if args.m != 64 else "")
        write_docs(table, command=cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
