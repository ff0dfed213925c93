"""Cost of the activity-based energy flow (mpgen.flows.energy) per dot-product configuration.

    python benchmarks/bench_energy.py [--quick] [--configs a,b] [--liberty FILE]

Prints ``FIGURE`` lines: the gate-level netlist's Yosys time, the Verilator build of netlist +
testbench with toggle coverage, the simulated cycles per second of one mode's run (two runs
per mode: setup alone and setup + measured), and the energy per block pair found (for
reference, not a speed).  ``--quick``: fp4-only at block size 8, 16 block pairs, generic weights.
Not a test: nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def figure(name: str, value: float, unit: str, detail: str = "") -> None:
    print(f"FIGURE {name} = {value:.4g} {unit}" + (f"  ({detail})" if detail else ""), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--configs", default="fp8-only,mixed-split")
    ap.add_argument("--liberty", default=None)
    args = ap.parse_args(argv)

    from mpgen.flows import energy as E
    from mpgen.flows.units import get_unit

    spec = get_unit("dotprod")
    if args.quick:
        configs = {"fp4-b8": {"formats": "fp4", "block_size": 8}}
        ops = 16
    else:
        configs = {n: dict(spec.default_configs[n]) for n in args.configs.split(",")}
        ops = None
    for name, params in configs.items():
        with tempfile.TemporaryDirectory(prefix="mpgen-bench-energy-") as tmp:
            from mpgen.rtl.emit import to_verilog
            verilog = to_verilog(spec.factory(**params), name="dotprod")
            t0 = time.monotonic()
            net = E.gate_netlist(verilog, "dotprod", liberty=args.liberty,
                                 work_dir=Path(tmp) / "netlist")
            netlist_seconds = time.monotonic() - t0
            rep = E.measure_energy("dotprod", params, config=name, liberty=args.liberty, ops=ops,
                                   data="synthetic" if args.quick else "auto", work_dir=tmp,
                                   netlist=net)
            total = time.monotonic() - t0
            build_log = (Path(tmp) / "sim" / "build.log").read_text()
            walltime = [ln for ln in build_log.splitlines() if "Walltime" in ln]
            figure(f"energy.{name}.netlist_s", netlist_seconds, "s",
                   f"{rep.netlist_cells} cells, {'liberty' if args.liberty else 'generic gates'}")
            figure(f"energy.{name}.total_s", total, "s",
                   f"{len(rep.modes)} mode(s), netlist + build + 2 runs per mode")
            if walltime:
                figure(f"energy.{name}.verilator_build_s",
                       float(walltime[-1].split("Walltime")[1].split()[0]), "s")
            cycles = sum(m.cycles for m in rep.modes.values())
            for mode, m in rep.modes.items():
                figure(f"energy.{name}.{mode}", m.energy_per_op, f"{rep.energy_unit}/{m.op_name}",
                       f"{m.ops} ops, {m.cycles} cycles, {m.toggles} toggles")
            figure(f"energy.{name}.measured_cycles", cycles, "cycles")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
