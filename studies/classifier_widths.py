"""Would narrower classifier score widths keep the exact classifier's decisions? (docs/classifier.md)

Issue 12 allows a cheaper classifier only as a new variant whose decisions agree with the exact
one on at least 99.9 % of the blocks of both real models. The cheapest change to the exact
datapath is fewer bits in the difference ``|D|`` (``diff_frac_bits`` f, ``diff_bits``): the
squarer, the Fisher multiply and the 16-term tree all shrink with it. For each real model this
study takes the BF16 activations of every activation site on the calibration data and the site's
Fisher table, sets one threshold T (in x's units, :func:`~mpgen.golden.classifier.score_values`)
at the 70 % quantile of the exact classifier's block scores over all sites (70 % of the blocks
NVFP4, FGMP's operating point), and counts the blocks on which each variant (the same T through
its own :func:`~mpgen.golden.classifier.threshold_register`) decides as the exact classifier does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..golden.classifier import (ClassifierConfig, activation_scale_exp, classify, fisher_to_table,
                                 score_values, threshold_register)
from .fgmp_study import (StudySettings, add_model_arguments, model_fisher, selected_cases,
                          site_activations)

#: (diff_frac_bits, diff_bits) of the variants; diff_bits = bit_length(42·2**f), the bound that
#: never saturates (docs/classifier.md §Widths), so only the truncation of |D| changes.
VARIANTS = ((2, 8), (1, 7), (0, 6))
NVFP4_FRACTION = 0.7


def _decisions(x: torch.Tensor, fisher: torch.Tensor, cfg: ClassifierConfig, T: float | None):
    """(is_fp8 per block for threshold T, or the block scores when T is None) of one site."""
    p = activation_scale_exp(float(x.float().abs().max()), cfg)
    table = fisher_to_table(fisher.to(torch.float32), cfg)
    if T is None:
        return score_values(classify(x, table, 0, p, cfg), table, p, cfg).reshape(-1)
    return classify(x, table, threshold_register(T, table, p, cfg), p, cfg).is_fp8.reshape(-1)


def agreement(sites: dict[str, tuple[torch.Tensor, torch.Tensor]], variants=VARIANTS,
              nvfp4_fraction: float = NVFP4_FRACTION) -> dict:
    """{"blocks", "threshold", "fp8_blocks", "variants": {(f, bits): {"agree", "fp8_blocks",
    "worst_site", "worst_agree"}}} over ``sites`` ({site: (BF16 activations [N, K], Fisher [K])})."""
    exact = ClassifierConfig()
    scores = torch.cat([_decisions(x, f, exact, None) for x, f in sites.values()])
    T = float(torch.quantile(scores, nvfp4_fraction))
    ref = {s: _decisions(x, f, exact, T) for s, (x, f) in sites.items()}
    n = sum(int(r.numel()) for r in ref.values())
    out = {"blocks": n, "threshold": T, "fp8_blocks": sum(int(r.sum()) for r in ref.values()),
           "variants": {}}
    for frac_bits, bits in variants:
        cfg = ClassifierConfig(diff_frac_bits=frac_bits, diff_bits=bits)
        same, fp8, worst = 0, 0, (None, 1.0)
        for s, (x, f) in sites.items():
            d = _decisions(x, f, cfg, T)
            agree = int((d == ref[s]).sum())
            same, fp8 = same + agree, fp8 + int(d.sum())
            if agree / d.numel() < worst[1]:
                worst = (s, agree / d.numel())
        out["variants"][(frac_bits, bits)] = {"agree": same / n, "fp8_blocks": fp8,
                                              "worst_site": worst[0], "worst_agree": worst[1]}
    return out


def format_table(results: dict[str, dict]) -> str:
    lines = ["| model | blocks | variant (f, diff_bits) | decisions agreeing | FP8 blocks (exact → variant) "
             "| worst site |", "|---|---:|---|---:|---:|---|"]
    for model, r in results.items():
        for (f, bits), v in r["variants"].items():
            lines.append(f"| {model} | {r['blocks']:,} | ({f}, {bits}) | {100 * v['agree']:.3f} % | "
                         f"{r['fp8_blocks']:,} → {v['fp8_blocks']:,} | {v['worst_site']} "
                         f"({100 * v['worst_agree']:.2f} %) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="mpgen study classifier-widths", description=__doc__.split("\n")[0])
    add_model_arguments(ap)
    ap.add_argument("--cache-dir", type=Path, default=None, help="the FGMP study's Fisher cache")
    a = ap.parse_args(argv)
    settings = StudySettings()
    results = {}
    for case in selected_cases(a, settings):
        _, af, _ = model_fisher(case, settings, cache_dir=a.cache_dir, progress=not a.quiet)
        results[case.name] = agreement(site_activations(case, af))
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
