"""Cost of the activity-based energy flow (mpgen.flows.energy) per dot-product configuration.

    python benchmarks/bench_energy.py [--quick] [--configs a,b] [--liberty FILE]

Each configuration runs the pieces the engine's energy stage runs, in a fresh temporary folder
(netlist, work folders and the gate-level build cache, so the first measurement builds): the
gate-level netlist (:func:`~mpgen.flows.energy.gate_netlist`, Yosys), the workloads of every mode
(:func:`mpgen.sim.workloads.dotprod_workload`, golden results included), then
:func:`~mpgen.flows.energy.measure_energy` twice on the same netlist and workloads: cold (Verilator
build of netlist + testbench with toggle coverage, then two runs per mode: setup alone and setup +
measured) and warm (the build comes from the content-addressed cache; only the runs). Prints
``FIGURE`` lines: netlist, workload and Verilator build seconds, the cold and warm measurement
seconds and their ratio (warm / cold, the same run's reference), and the energy per block pair
found (for reference, not a speed).  ``--quick``: fp4-only at block size 8, 16 block pairs,
synthetic data, generic weights.  Not a test: nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import json
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
    from mpgen.flows.engine import verilog_of
    from mpgen.flows.units import get_unit, resolve

    spec = get_unit("dotprod")
    if args.quick:
        configs = {"fp4-b8": {"formats": "fp4", "block_size": 8}}
        ops = 16
    else:
        configs = {n: dict(spec.configs[n]) for n in args.configs.split(",")}
        ops = None
    data = "synthetic" if args.quick else "auto"
    modes, workload = resolve(spec.energy_modes), resolve(spec.workload)
    for name, params in configs.items():
        with tempfile.TemporaryDirectory(prefix="mpgen-bench-energy-") as tmp:
            tmp = Path(tmp)
            build_root = tmp / "sim"  # a private build cache: the first measurement builds
            verilog = verilog_of(spec, params)  # top module "dotprod", as in the engine
            t0 = time.monotonic()
            net = E.gate_netlist(verilog, "dotprod", liberty=args.liberty, work_dir=tmp / "netlist")
            netlist_seconds = time.monotonic() - t0
            t = time.monotonic()
            comp = spec.build(params)
            comp._MustUse__silence = True  # read for its layouts only (the netlist is built)
            loads = {m: workload(comp, m, ops=ops, data=data) for m in modes(comp)}
            workload_seconds = time.monotonic() - t
            t = time.monotonic()
            rep = E.measure_energy(net, loads, label=f"dotprod/{name}", work_dir=tmp / "cold",
                                   build_root=build_root)
            cold = time.monotonic() - t
            total = time.monotonic() - t0
            t = time.monotonic()
            warm_rep = E.measure_energy(net, loads, label=f"dotprod/{name}", work_dir=tmp / "warm",
                                        build_root=build_root)
            warm = time.monotonic() - t
            stamps = list(build_root.glob("energy-dotprod-*/.mpgen-build.json"))
            runs = f"{len(rep.modes)} mode(s), 2 runs per mode"
            figure(f"energy.{name}.netlist_s", netlist_seconds, "s",
                   f"{rep.netlist_cells} cells, {'liberty' if args.liberty else 'generic gates'}")
            figure(f"energy.{name}.workloads_s", workload_seconds, "s",
                   f"{len(loads)} mode(s), {data} data, golden results")
            if len(stamps) == 1:
                figure(f"energy.{name}.verilator_build_s",
                       json.loads(stamps[0].read_text())["seconds"], "s",
                       "netlist + testbench, --coverage-toggle, C++ at -O0")
            figure(f"energy.{name}.total_s", total, "s",
                   f"netlist + workloads + cold measurement; {runs}")
            figure(f"energy.{name}.measure_cold_s", cold, "s", f"Verilator build + {runs}")
            figure(f"energy.{name}.measure_warm_s", warm, "s",
                   f"build from the cache ({len(stamps)} build(s) in all) + {runs}")
            figure(f"energy.{name}.warm_vs_cold", warm / cold, "x",
                   "warm / cold measurement of the same netlist and workloads")
            cycles = sum(m.cycles for m in rep.modes.values())
            for mode, m in rep.modes.items():
                same = warm_rep.modes[mode].energy_per_op == m.energy_per_op
                figure(f"energy.{name}.{mode}", m.energy_per_op, f"{rep.energy_unit}/{m.op_name}",
                       f"{m.ops} ops, {m.cycles} cycles, {m.toggles} toggles"
                       + ("" if same else "; WARM RUN DIFFERS"))
            figure(f"energy.{name}.measured_cycles", cycles, "cycles")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
