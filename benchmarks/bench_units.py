"""Speed of every registered unit's flow pieces and of the classifier / FineQ golden models.

    python benchmarks/bench_units.py [--units dotprod,classifier,...] [--skip-sim] [--skip-golden]

Units are those of the registry (:func:`mpgen.flows.units.unit_names`: dotprod, classifier, fineq,
fgmp_pipeline and any registered at run time). Figures (``FIGURE`` lines; nothing is asserted, this
is not a test):

* ``gen.<unit>.<config>.seconds``: building the component from the unit's spec
  (``spec.build(params)``) + Amaranth elaboration + Verilog emission of the first default
  configuration of each unit (:func:`mpgen.flows.engine.verilog_of`, top module = unit name);
* ``sim.verilator.<unit>.<config>.vectors_per_s``: vectors checked per second by that
  configuration's quick regression, end to end (start-up, simulation, checks), on a warm build
  cache (a first run builds the model if needed; its time is reported as ``...first_run_s``);
* ``golden.classifier.blocks_per_s``: :func:`mpgen.golden.classifier.classify` on BF16 activations;
* ``golden.fineq.quantize_weights_per_s`` and ``golden.fineq.int_gemm_macs_per_s``.
"""

from __future__ import annotations

import argparse
import time


def figure(name: str, value: float, unit: str, detail: str = "") -> None:
    print(f"FIGURE {name} = {value:.4g} {unit}" + (f"  ({detail})" if detail else ""), flush=True)


def bench_unit(unit: str, skip_sim: bool) -> None:
    from mpgen.flows.engine import verilog_of
    from mpgen.flows.units import get_unit, resolve

    spec = get_unit(unit)
    config, params = next(iter(spec.configs.items()))
    t0 = time.perf_counter()
    text = verilog_of(spec, params)
    figure(f"gen.{unit}.{config}.seconds", time.perf_counter() - t0, "s", f"{len(text):,} chars of Verilog")
    if skip_sim or spec.regression is None:
        return
    regression = resolve(spec.regression)
    t0 = time.perf_counter()
    regression(dict(params), simulator="verilator", quick=True, seed=1)
    figure(f"sim.verilator.{unit}.{config}.first_run_s", time.perf_counter() - t0, "s",
           "includes the model build unless cached")
    t0 = time.perf_counter()
    res = regression(dict(params), simulator="verilator", quick=True, seed=1)
    secs = time.perf_counter() - t0
    figure(f"sim.verilator.{unit}.{config}.vectors_per_s", res.vectors / secs, "vectors/s",
           f"{res.vectors} vectors, {res.mismatches} mismatches in {secs:.1f} s, warm cache")


def bench_golden() -> None:
    import torch

    from mpgen.golden.classifier import (ClassifierConfig, activation_scale_exp, classify,
                                         fisher_to_table)
    from mpgen.golden.fineq import fineq_quantize, int_gemm

    g = torch.Generator().manual_seed(0)
    x = (torch.randn(1024, 1024, generator=g) * torch.rand(1024, 1, generator=g) * 4).to(torch.bfloat16)
    cfg = ClassifierConfig()
    table = fisher_to_table(torch.rand(1024, generator=g))
    p = activation_scale_exp(float(x.float().abs().max()), cfg)
    classify(x[:16], table, 0, p, cfg)  # warm-up
    t0 = time.perf_counter()
    classify(x, table, 1 << 30, p, cfg)
    secs = time.perf_counter() - t0
    figure("golden.classifier.blocks_per_s", x.numel() / 16 / secs, "blocks/s", f"{x.numel() // 16:,} blocks")

    w = torch.randn(1024, 1536, generator=g)
    t0 = time.perf_counter()
    q = fineq_quantize(w)
    secs = time.perf_counter() - t0
    figure("golden.fineq.quantize_weights_per_s", w.numel() / secs, "weights/s", "1024x1536, default group")
    wi = q.decoded()
    a = torch.randint(-128, 128, (256, wi.shape[1]), generator=g, dtype=torch.int8)
    t0 = time.perf_counter()
    int_gemm(wi, a)
    secs = time.perf_counter() - t0
    figure("golden.fineq.int_gemm_macs_per_s", a.shape[0] * wi.numel() / secs, "MAC/s",
           f"{a.shape[0]}x{wi.shape[1]} @ {wi.shape[1]}x{wi.shape[0]}, exact int64")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--units", default=None, help="comma-separated units (default: all registered)")
    ap.add_argument("--skip-sim", action="store_true", help="only generation (no simulator runs)")
    ap.add_argument("--skip-golden", action="store_true", help="no golden-model figures")
    args = ap.parse_args(argv)
    from mpgen.flows.units import unit_names

    for unit in (args.units.split(",") if args.units else unit_names()):
        bench_unit(unit, args.skip_sim)
    if not args.skip_golden:
        bench_golden()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
