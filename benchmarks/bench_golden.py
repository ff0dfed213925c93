"""Throughput of the golden model (CPU, torch): NVFP4 quantizers, FGMP quantize, dot products.

    python benchmarks/bench_golden.py [--quick] [--size N] [--repeat R] [--threads T]

Prints one ``FIGURE`` line per figure (best of ``--repeat`` runs):

* ``nvfp4.torchao_recipe`` / ``nvfp4.exact_recipe``: :func:`mpgen.golden.nvfp4.quantize_nvfp4`
  (two-level: per-tensor scale from the amax) on an N×N float32 tensor, elements/s;
* ``nvfp4.torchao_lib``: torchao's own ``nvfp4_quantize`` on the same tensor with the same
  per-tensor scale, in the same run (skipped if torchao is missing); its codes are checked to be
  identical to the torchao recipe's;
* ``fgmp.quantize``: :func:`mpgen.golden.fgmp.fgmp_quantize` with 10 % FP8 blocks, elements/s;
* ``dotprod.dot_products`` (and ``[exact]``, exact accumulation, as a ratio against it):
  :func:`mpgen.golden.dotprod.dot_products` on FGMP block pairs of
  64-block dot products (all four block modes), block pairs/s.

Not a test: nothing is asserted about speed.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch


def figure(name: str, value: float, unit: str, detail: str = "") -> None:
    print(f"FIGURE {name} = {value:.4g} {unit}" + (f"  ({detail})" if detail else ""), flush=True)


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small tensors, one repetition")
    ap.add_argument("--size", type=int, default=None, help="N of the N×N tensor (default 4096; quick 512)")
    ap.add_argument("--repeat", type=int, default=None, help="repetitions, best kept (default 3; quick 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    n = args.size or (512 if args.quick else 4096)
    repeat = args.repeat or (1 if args.quick else 3)
    if args.threads:
        torch.set_num_threads(args.threads)

    from mpgen.golden.dotprod import dot_products, pairs_from_fgmp
    from mpgen.golden.fgmp import BLOCK, fgmp_quantize
    from mpgen.golden.nvfp4 import quantize_nvfp4, tensor_scale_from_amax

    print(f"# bench_golden: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, tensor {n}x{n} float32, best of {repeat}")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, n, generator=g) * torch.exp(torch.randn(n, 1, generator=g))  # varied row scales
    numel = x.numel()

    for recipe in ("torchao", "exact"):
        t, _ = best_time(lambda: quantize_nvfp4(x, per_tensor_scale=True, recipe=recipe), repeat)
        figure(f"nvfp4.{recipe}_recipe", numel / t, "elements/s", f"{t:.3f} s per {n}x{n}")

    try:
        from torchao.prototype.mx_formats.nvfp4_tensor import nvfp4_quantize
    except Exception as e:  # noqa: BLE001 - torchao is optional
        print(f"# torchao nvfp4_quantize not available ({type(e).__name__}: {e}); skipped")
    else:
        s_t = tensor_scale_from_amax(x.abs().amax())
        t, (scales, packed) = best_time(lambda: nvfp4_quantize(x, 16, s_t), repeat)
        ours = quantize_nvfp4(x, per_tensor_scale=True, recipe="torchao")
        # torchao packs two E2M1 codes per byte, first element in the low nibble
        codes = torch.stack([packed.view(torch.uint8) & 0xF, packed.view(torch.uint8) >> 4], dim=-1)
        same = torch.equal(codes.reshape(n, n), ours.codes) and torch.equal(
            scales.view(torch.uint8).reshape(ours.block_scale.shape), ours.block_scale)
        figure("nvfp4.torchao_lib", numel / t, "elements/s",
               f"{t:.3f} s; codes/scales identical to the torchao recipe: {same}")

    mask = torch.rand(n, n // BLOCK, generator=g) < 0.1
    t, _ = best_time(lambda: fgmp_quantize(x, mask), repeat)
    figure("fgmp.quantize", numel / t, "elements/s", f"{t:.3f} s, 10 % FP8 blocks")

    k = 64 * BLOCK  # 64 block pairs per dot product
    m_rows, n_rows = (8, 32) if args.quick else (32, 128)
    a = torch.randn(m_rows, k, generator=g)
    w = torch.randn(n_rows, k, generator=g)
    qa = fgmp_quantize(a, torch.rand(m_rows, k // BLOCK, generator=g) < 0.5)
    qw = fgmp_quantize(w, torch.rand(n_rows, k // BLOCK, generator=g) < 0.5)
    pairs = pairs_from_fgmp(qa, qw)
    t, _ = best_time(lambda: dot_products(pairs), repeat)
    figure("dotprod.dot_products", pairs.n / t, "block pairs/s",
           f"{pairs.n} pairs, {m_rows * n_rows} dot products of 64 blocks, {t:.3f} s")
    t_exact, _ = best_time(lambda: dot_products(pairs, "exact"), repeat)
    figure("dotprod.dot_products[exact]", pairs.n / t_exact, "block pairs/s",
           f"{t / t_exact:.2f}x the FP32-accumulation golden on the same pairs, {t_exact:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
