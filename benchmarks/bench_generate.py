"""Verilog generation time of ``BlockDotProduct`` for the four default configurations.

    python benchmarks/bench_generate.py [--quick] [--repeat R]

For each default configuration of the ``dotprod`` unit (fp8-only, fp4-only, mixed-split,
mixed-shared; ``mpgen.flows.units.get_unit("dotprod").configs``) it times
``BlockDotProduct(**config)`` followed by :func:`mpgen.rtl.emit.to_verilog` (Amaranth
elaboration + Verilog back end, top module ``dotprod`` as in the flows) and prints one
``FIGURE`` line per configuration (first call of the process and best of ``--repeat``), with the
size of the Verilog text. Not a test: nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import time


def figure(name: str, value: float, unit: str, detail: str = "") -> None:
    print(f"FIGURE {name} = {value:.4g} {unit}" + (f"  ({detail})" if detail else ""), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one generation per configuration")
    ap.add_argument("--repeat", type=int, default=None, help="generations per config (default 3; quick 1)")
    args = ap.parse_args(argv)
    repeat = args.repeat or (1 if args.quick else 3)

    t0 = time.perf_counter()
    import amaranth

    from mpgen.flows.units import get_unit
    from mpgen.rtl.dotprod import BlockDotProduct
    from mpgen.rtl.emit import to_verilog
    print(f"# bench_generate: amaranth {amaranth.__version__}, imports {time.perf_counter() - t0:.2f} s, "
          f"best of {repeat}")

    for name, config in get_unit("dotprod").configs.items():
        times, text = [], ""
        for _ in range(repeat):
            t = time.perf_counter()
            text = to_verilog(BlockDotProduct(**config), "dotprod")
            times.append(time.perf_counter() - t)
        figure(f"generate.{name}", min(times), "s",
               f"first {times[0]:.3f} s, {len(text.splitlines())} lines, {len(text)} chars of Verilog")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
