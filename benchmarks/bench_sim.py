"""Simulation speed of the ``BlockDotProduct`` cocotb regression (Verilator, and Icarus if present).

    python benchmarks/bench_sim.py [--quick] [--configs a,b] [--simulators verilator,icarus]
                                   [--build-root DIR]

For each simulator and default configuration, :func:`mpgen.sim.dotprod.run_dotprod_regression`
runs in quick mode twice with the same build folder (default: a fresh temporary one, so that the
first run compiles): the first run's build seconds (from the build stamp) are reported, the second
(warm cache) run is timed. Figures (``FIGURE`` lines):

* ``sim.<simulator>.<config>.vectors_per_s``: block-pair vectors / seconds of the warm run, end to
  end (Verilog generation, simulator start-up with cocotb and torch imports, simulation, checks);
* ``...sim_only_vectors_per_s``: vectors / the cocotb test's own time (results.xml), i.e. the
  simulation loop without start-up;
* ``...build_s``: seconds the first run spent compiling the model.

``--quick``: only mixed-split on Verilator, in the default build cache
(:func:`mpgen.sim.runner.default_build_root`: ``$MPGEN_BUILD_DIR``, else ``sim/`` in the cache root
``$MPGEN_CACHE``, else ``build/sim`` of a source checkout), so a warm cache gives no build figure.
Not a test: nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

STAMP = ".mpgen-build.json"  # mpgen.sim.runner's build stamp


def figure(name: str, value: float, unit: str, detail: str = "") -> None:
    print(f"FIGURE {name} = {value:.4g} {unit}" + (f"  ({detail})" if detail else ""), flush=True)


def _newest_run(build_root: Path, simulator: str, since: float) -> tuple[dict, float | None]:
    """(build stamp, cocotb test seconds) of the newest run under build_root after ``since``."""
    best = None
    for d in build_root.glob(f"dotprod-{simulator}-*/runs/*"):
        xml = d / "results.xml"
        if xml.is_file() and xml.stat().st_mtime >= since and (best is None or xml.stat().st_mtime > best[1]):
            best = (d, xml.stat().st_mtime)
    if best is None:
        return {}, None
    run_dir = best[0]
    stamp_file = run_dir.parent.parent / STAMP
    stamp = json.loads(stamp_file.read_text()) if stamp_file.is_file() else {}
    secs = None
    for case in ET.parse(run_dir / "results.xml").getroot().iter("testcase"):
        secs = (secs or 0.0) + float(case.get("time", 0.0))
    return stamp, secs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="mixed-split on Verilator only, default build cache")
    ap.add_argument("--configs", default=None, help="comma-separated default config names")
    ap.add_argument("--simulators", default=None, help="comma-separated (default: all installed)")
    ap.add_argument("--build-root", default=None, help="build cache folder (default: fresh temp dir)")
    args = ap.parse_args(argv)

    from mpgen.flows.units import get_unit
    from mpgen.sim.dotprod import run_dotprod_regression
    from mpgen.sim.runner import available_simulators, default_build_root, find_simulator

    configs = get_unit("dotprod").configs
    names = (args.configs.split(",") if args.configs else
             ["mixed-split"] if args.quick else list(configs))
    sims = (args.simulators.split(",") if args.simulators else
            ["verilator"] if args.quick else available_simulators())
    for s in ("verilator", "icarus"):
        if s not in sims and not args.simulators:
            print(f"# {s}: not run ({'quick mode' if args.quick else 'not installed'})")

    for sim in sims:
        print(f"# {sim}: {find_simulator(sim).version}")
        for name in names:
            if args.build_root:
                root, tmp = Path(args.build_root), None
            elif args.quick:
                root, tmp = default_build_root(), None
            else:
                tmp = Path(tempfile.mkdtemp(prefix="mpgen-bench-sim-"))
                root = tmp
            try:
                t0 = time.time()
                first = run_dotprod_regression(configs[name], simulator=sim, quick=True, build_root=root)
                stamp, _ = _newest_run(root, sim, t0)
                t1 = time.time()
                warm = run_dotprod_regression(configs[name], simulator=sim, quick=True, build_root=root)
                _, sim_secs = _newest_run(root, sim, t1)
            finally:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
            ok = "PASS" if first.passed and warm.passed else "FAIL"
            tag = f"sim.{sim}.{name}"
            figure(f"{tag}.vectors_per_s", warm.vectors / warm.seconds, "vectors/s",
                   f"warm run {warm.vectors} vectors, {warm.results} results in {warm.seconds:.1f} s "
                   f"end to end, {ok}")
            if sim_secs:
                figure(f"{tag}.sim_only_vectors_per_s", warm.vectors / sim_secs, "vectors/s",
                       f"{sim_secs:.2f} s inside the simulator")
            build = stamp.get("build_seconds")
            built_now = stamp.get("built_at", 0) >= t0
            if build is not None and built_now:
                figure(f"{tag}.build_s", build, "s",
                       f"first run {first.seconds:.1f} s in all (build + run)")
            else:
                print(f"# {tag}: build cache was already warm (first run {first.seconds:.1f} s); "
                      "no build figure")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
