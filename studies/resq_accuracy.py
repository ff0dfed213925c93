"""ResQ vs RTN W4A4 / W8A8 (and FGMP at a similar bit width) on the real models (docs/resq.md).

Every linear layer is fake-quantized (the float32 matmul of the dequantized operands; the
``resq`` unit's integer partial sums are exact, :func:`mpgen.golden.resq.resq_dot`):

* ``RTN W8A8`` / ``RTN W4A4``: weights per output channel symmetric, activations per token
  asymmetric, all channels at 8 / 4 bits, no basis change.
* ``rotated W4A4``: one Haar-random orthogonal rotation of the whole K (no PCA, no 8-bit part),
  the ablation that separates ResQ's rotation from its 8-bit subspace.
* ``ResQ``: per activation site (a layer's input; q/k/v and llama's w1/w3 share one) the basis of
  :func:`mpgen.golden.resq.resq_basis` from the float model's inputs on the calibration data,
  ``ceil(K/8)`` high-variance coordinates at 8 bits (separate scale/zero per segment), the rest
  at 4; weights fused (``W·P``) then quantized per segment. Ours, not the paper's: one basis per
  site (the paper fuses one shared residual-stream basis across RMSNorm, and uses an online
  Hadamard on the down-projection input); the rotation ``x·P`` is applied to the layer input.
* ``FGMP``: :mod:`mpgen.studies.fgmp_study`'s policy at the given NVFP4 fraction (0.875: 1/8 of
  the blocks FP8, 4.5 element bits plus NVFP4's block scales), no clipping.

Calibration and evaluation data are the disjoint sets of :mod:`mpgen.studies.fgmp_study`
(stories260K: sequences sampled from seed 1 vs seed 0; MiniLM: ``text_corpus("calib")`` vs
``("eval")``).
"""

from __future__ import annotations

import argparse
import sys

import torch

from ..golden.policy import Policy
from ..golden.resq import (calibration_covariance, fuse_weights, high_precision_count,
                           quantize_asymmetric, quantize_resq_activations, quantize_resq_weights,
                           quantize_symmetric, random_orthogonal, resq_basis, rotate_activations)
from .fgmp_study import (StudySettings, add_model_arguments, calibrate, evaluate, model_fisher,
                         padded_fisher, padded_weights, selected_cases)

METHODS = ("RTN W8A8", "RTN W4A4", "rotated W4A4", "ResQ")


def _same_input(prev, x) -> bool:
    """Whether ``x`` is the input ``prev`` already seen at this site (same tensor storage)."""
    return prev is not None and (prev is x or (prev.data_ptr() == x.data_ptr()
                                               and prev.shape == x.shape))


def site_covariances(case) -> dict:
    """{site: float64 Σ xᵀx of the float model's inputs over the calibration data}; an input
    shared by several layers is counted once."""
    cov: dict = {}
    last: dict = {}

    def grab(name, x, w):
        site = case.sites[name]
        if not _same_input(last.get(site), x):
            cov[site] = calibration_covariance(x.detach().to(torch.float32), cov.get(site))
            last[site] = x
        return x @ w.T

    case.calib_run(grab)
    return cov


def site_projections(case, method: str, covariances: dict, seed: int) -> dict:
    """{site: (float64 projection P, n_high)} of ``method`` (``None`` for the RTN methods)."""
    out = {}
    for site, cov in covariances.items():
        k = cov.shape[0]
        if method == "ResQ":
            b = resq_basis(cov, seed=seed)
            out[site] = (b.projection, b.n_high)
        elif method == "rotated W4A4":
            out[site] = (random_orthogonal(k, torch.Generator().manual_seed(seed)), 0)
        else:
            out[site] = None
    return out


def average_bits(case, method: str) -> float:
    """Weight-element-weighted mean bits per element over all layers (scales not counted)."""
    if method == "RTN W8A8":
        return 8.0
    if method != "ResQ":
        return 4.0
    total = bits = 0
    for w in case.weights.values():
        n, k = w.shape
        hi = high_precision_count(k)
        total += n * k
        bits += n * (8 * hi + 4 * (k - hi))
    return bits / total


def _quantize_weight(w, proj, method):
    if method == "RTN W8A8":
        return quantize_symmetric(w, 8).dequantize()
    if method == "RTN W4A4":
        return quantize_symmetric(w, 4).dequantize()
    p, n_high = proj
    fused = fuse_weights(w, p)
    return quantize_symmetric(fused, 4).dequantize() if n_high == 0 else \
        quantize_resq_weights(fused, n_high).dequantize()


def _quantize_input(x, proj, method):
    if method in ("RTN W8A8", "RTN W4A4"):
        return quantize_asymmetric(x, 8 if method == "RTN W8A8" else 4).dequantize()
    p, n_high = proj
    xr = rotate_activations(x, p)
    return quantize_asymmetric(xr, 4).dequantize() if n_high == 0 else \
        quantize_resq_activations(xr, n_high).dequantize()


def evaluate_method(case, method: str, covariances: dict, ref, seed: int = 0) -> dict:
    """The model metrics of ``case`` with every linear layer quantized by ``method``."""
    proj = site_projections(case, method, covariances, seed)
    weights = {n: _quantize_weight(w.to(torch.float32), proj[case.sites[n]], method)
               for n, w in case.weights.items()}
    last: dict = {}

    def matmul(name, x, w):
        site = case.sites[name]
        hit = last.get(site)
        if hit is None or not _same_input(hit[0], x):
            hit = (x, _quantize_input(x.to(torch.float32), proj[site], method))
            last[site] = hit
        return hit[1] @ weights[name].T

    return case.metrics(case.run(matmul), ref)


def evaluate_fgmp(case, settings: StudySettings, fp4_fraction: float, ref) -> dict:
    """FGMP (no clipping) at ``fp4_fraction`` through :mod:`mpgen.studies.fgmp_study`."""
    wf, af, _ = model_fisher(case, settings, progress=False)
    sites = calibrate(case, af, settings.calib_rows, progress=False)
    res = evaluate(case, Policy("fgmp", fp4_fraction, clip=False, seed=settings.seed),
                   padded_weights(case), padded_fisher(wf, case), sites, ref)
    return res.metrics


def format_table(results: dict, cases: dict, bits: dict) -> str:
    """Markdown tables; ``results[model]`` maps "float32" and each method to its metrics,
    ``bits[model][method]`` its mean element bits."""
    lines = []
    for model, per_method in results.items():
        names = cases[model].metric_names
        head = ["method", "bits / element"] + [lab for _, lab, _ in names]
        lines += [f"**{cases[model].description}**", "", "| " + " | ".join(head) + " |",
                  "|---|" + "---:|" * (len(head) - 1)]
        for name, m in per_method.items():
            b = "32" if name == "float32" else f"{bits[model][name]:.3f}"
            cells = [name, b] + [fmt.format(0.0 if abs(m[k]) < 1e-12 else m[k]) for k, _, fmt in names]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="mpgen study resq-accuracy", description=__doc__.split("\n")[0])
    add_model_arguments(ap)
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    ap.add_argument("--fgmp-fraction", type=float, default=0.875,
                    help="NVFP4 fraction of the FGMP row (0 or less: no FGMP row)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random rotations")
    a = ap.parse_args(argv)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    settings = StudySettings()
    results, cases, bits = {}, {}, {}
    for case in selected_cases(a, settings):
        cases[case.name] = case
        ref = case.run(None)
        cov = site_covariances(case)
        results[case.name] = {"float32": case.metrics(ref, ref)}
        bits[case.name] = {}
        for m in methods:
            results[case.name][m] = evaluate_method(case, m, cov, ref, a.seed)
            bits[case.name][m] = average_bits(case, m)
            if not a.quiet:
                print(f"[resq-accuracy] {case.name} {m}: {results[case.name][m]}", file=sys.stderr, flush=True)
        if a.fgmp_fraction > 0:
            label = f"FGMP {100 * a.fgmp_fraction:g} % NVFP4"
            results[case.name][label] = evaluate_fgmp(case, settings, a.fgmp_fraction, ref)
            bits[case.name][label] = 4 * a.fgmp_fraction + 8 * (1 - a.fgmp_fraction)
            if not a.quiet:
                print(f"[resq-accuracy] {case.name} {label}: {results[case.name][label]}", file=sys.stderr, flush=True)
    print(format_table(results, cases, bits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
