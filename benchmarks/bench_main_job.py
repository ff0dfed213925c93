"""The main job's cost: ``mpgen run`` cold (empty caches) and warm, with the time per stage.

    python benchmarks/bench_main_job.py [--liberty FILE] [--jobs N] [--unit UNIT ...]

Cold: a fresh ``MPGEN_CACHE`` (so no Verilator model, no Verilator run-time objects, no
synthesis and no energy result is cached) and, as on a fresh machine, a fresh YoWASP compile
cache (``YOWASP_CACHE_DIR``: the WebAssembly Yosys is compiled again, about 60 CPU-seconds;
``--keep-yowasp`` uses the machine's own cache instead).  Warm: the same command again, which only
reads the cache.  Per stage: the sum of the stage's own seconds over all points from the
records (``--json``), i.e. CPU-side work spread over the worker processes, next to the wall
time of the whole command.  The warm/cold ratio is measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(args, cache: Path, out: Path, yowasp: Path) -> tuple[float, list[dict]]:
    cmd = [sys.executable, "-m", "mpgen.flows.cli", "-q", "run", "-o", str(out), "--json"]
    for u in args.unit or []:
        cmd += ["--unit", u]
    if args.liberty:
        cmd += ["--liberty", args.liberty]
    if args.jobs:
        cmd += ["--jobs", str(args.jobs)]
    env = {k: v for k, v in os.environ.items() if k not in ("MPGEN_BUILD_DIR",)}
    env["MPGEN_CACHE"] = str(cache)
    if not args.keep_yowasp:
        env["YOWASP_CACHE_DIR"] = str(yowasp)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit(f"mpgen run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout)


def stages(records: list[dict]) -> dict[str, float]:
    out = {"regression": 0.0, "area": 0.0, "energy": 0.0}
    seen_energy = set()
    for r in records:
        if r["kind"] == "energy":  # one figure per point, repeated on each mode's record
            key = (r["unit"], r["config"])
            if key not in seen_energy:
                seen_energy.add(key)
                out["energy"] += r["seconds"]
        elif r["kind"] in out:
            out[r["kind"]] += r["seconds"]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--liberty", help="Liberty file (default: none, as the README's quick start)")
    p.add_argument("--jobs", type=int, help="worker processes (default: mpgen's, the CPU count)")
    p.add_argument("--unit", action="append", help="only this unit (repeatable)")
    p.add_argument("--keep-yowasp", action="store_true",
                   help="use the machine's YoWASP compile cache (default: a fresh one)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mpgen-bench-main-") as tmp:
        cache, out, yowasp = Path(tmp) / "cache", Path(tmp) / "out", Path(tmp) / "yowasp"
        cold, records = run(args, cache, out, yowasp)
        warm, again = run(args, cache, out, yowasp)
    cold_stages = stages(records)
    points = len({(r["unit"], r["config"]) for r in records})
    print(f"mpgen run: {points} points, {os.cpu_count()} CPUs, "
          f"liberty {'yes' if args.liberty else 'no (generic)'}, YoWASP cache "
          f"{'kept' if args.keep_yowasp else 'fresh'}")
    print(f"{'':24s} {'seconds':>9s}")
    print(f"{'cold, wall':24s} {cold:9.1f}")
    for name, secs in cold_stages.items():
        print(f"{'  ' + name + ' (sum over points)':24s} {secs:9.1f}")
    print(f"{'warm, wall':24s} {warm:9.1f}")
    print(f"warm / cold: {warm / cold:.3f}; warm records all cached: "
          f"{all(r['cached'] for r in again)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
