"""What the timing stage costs next to the synthesis it follows (mpgen.flows.timing).

    python benchmarks/bench_timing.py [--liberty FILE] [--configs a,b] [--repeat N]

For each dot-product configuration: one Liberty-mapped synthesis with the flat netlist
(:func:`mpgen.flows.area.synthesize`, reference), then the static timing of that netlist
(:func:`mpgen.flows.timing.analyze_netlist`, best of ``--repeat``) and the Liberty timing data
read once per process.  Prints ``FIGURE`` lines: seconds, cells per second and the ratio timing /
synthesis measured in the same run.  Needs the SG13G2 Liberty file (``../shared/lib``) or
``--liberty``.  Not a test: nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

DEFAULT_LIB = Path(__file__).resolve().parents[1].parent / "shared" / "lib" / "sg13g2_stdcell_typ_1p20V_25C.lib"


def figure(name: str, value: float, unit: str, detail: str = "") -> None:
    print(f"FIGURE {name} = {value:.4g} {unit}" + (f"  ({detail})" if detail else ""), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--liberty", default=str(DEFAULT_LIB), help="Liberty file (default: SG13G2 typical)")
    ap.add_argument("--configs", default="fp4-only,fp8-only", help="dot-product configurations")
    ap.add_argument("--repeat", type=int, default=3, help="timing runs per netlist (best is kept)")
    args = ap.parse_args(argv)
    lib = Path(args.liberty)
    if not lib.is_file():
        print(f"bench_timing: no Liberty file at {lib} (pass --liberty)")
        return 1

    from mpgen.flows import timing
    from mpgen.flows.area import synthesize
    from mpgen.flows.engine import verilog_of
    from mpgen.flows.units import get_unit

    t0 = time.perf_counter()
    timing.timing_library(lib)
    figure("timing.read_liberty_s", time.perf_counter() - t0, "s", lib.name)
    spec = get_unit("dotprod")
    for name in args.configs.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"mpgen-bench-timing-{name}-"))
        t0 = time.perf_counter()
        synthesize(verilog_of(spec, spec.configs[name]), "dotprod", liberty=lib, work_dir=work,
                   netlist=True)
        synth = time.perf_counter() - t0
        best = None
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            rep = timing.analyze_netlist(work / "netlist.json", "dotprod", lib)
            best = min(best or 1e9, time.perf_counter() - t0)
        figure(f"timing.{name}.synthesis_s", synth, "s", "reference: Liberty synthesis + netlist")
        figure(f"timing.{name}.sta_s", best, "s", f"{rep.cells} cells, {rep.critical_path_ns} ns")
        figure(f"timing.{name}.cells_per_s", rep.cells / best, "cells/s")
        figure(f"timing.{name}.sta_over_synthesis", best / synth, "x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
