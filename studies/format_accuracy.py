"""FP4 block formats on the real models: BlockDialect vs MXFP4 vs NVFP4 (docs/blockdialect.md).

Every linear layer's weights (per output row, blocks along K) and inputs (per token, blocks
along K) are quantized and dequantized with one format (fake quantization: the float matmul of
the dequantized values; the integer MACs of the units are exact, so only the block formats'
rounding differs from float), and the models' metrics are measured against the float model:
stories260K perplexity and KL divergence, MiniLM mean and worst 1 − cos of the sentence
embeddings. BlockDialect weights choose their dialect offline (exact search), activations
online (two-stage rule); the study also reports how often the two-stage rule picks the exact
search's dialect on the activations of the evaluation pass.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ..golden.blockdialect import bits_per_element, quantize_blockdialect
from ..golden.mx import quantize_mxfp4
from ..golden.nvfp4 import quantize_nvfp4
from .fgmp_study import StudySettings, add_model_arguments, selected_cases

#: name → (bits per element, weight quantizer, activation quantizer), each x [..., K] → x̂.
FORMATS = {
    "NVFP4-16": (4.5, lambda w: quantize_nvfp4(w, per_tensor_scale=True).dequantize(),
                 lambda x: quantize_nvfp4(x, per_tensor_scale=True).dequantize()),
    "MXFP4-32": (4.25, lambda w: quantize_mxfp4(w).dequantize(), lambda x: quantize_mxfp4(x).dequantize()),
    **{f"BlockDialect-{b}": (bits_per_element(b),
                             lambda w, b=b: quantize_blockdialect(w, b).dequantize(),
                             lambda x, b=b: quantize_blockdialect(x, b, selection="two_stage").dequantize())
       for b in (16, 32, 64)},
}
_PAD = 64


def _pad(x: torch.Tensor) -> torch.Tensor:
    """Zero-pad K to a multiple of 64 (stories260K's 172): zeros add nothing to a dot product
    and change no block maximum."""
    p = -x.shape[-1] % _PAD
    return torch.nn.functional.pad(x, (0, p)) if p else x


def evaluate_format(case, name: str, ref) -> dict:
    """The model metrics of ``case`` with every linear layer quantized in format ``name`` (against
    the float outputs ``ref``), and for BlockDialect the two-stage rule's agreement with the exact
    dialect search."""
    _, quant_w, quant_x = FORMATS[name]
    weights = {n: quant_w(_pad(w.to(torch.float32))) for n, w in case.weights.items()}
    agree = [0, 0]
    block = int(name.rpartition("-")[2]) if name.startswith("BlockDialect") else None

    def matmul(layer, x, w):
        xp = _pad(x.to(torch.float32))
        if block is not None:
            rows = xp.reshape(-1, xp.shape[-1])
            two = quantize_blockdialect(rows, block, selection="two_stage").dialect
            agree[0] += int((two == quantize_blockdialect(rows, block).dialect).sum())
            agree[1] += two.numel()
        return quant_x(xp) @ weights[layer].T

    out = case.run(matmul)
    metrics = case.metrics(out, ref)
    if block is not None:
        metrics["two_stage_agree"] = agree[0] / max(agree[1], 1)
    return metrics


def format_table(results: dict[str, dict], cases: dict) -> str:
    """Markdown tables; ``results[model]`` maps "float32" (the float model against itself) and
    each format to its metrics."""
    lines = []
    for model, per_format in results.items():
        names = cases[model].metric_names
        head = ["format", "bits / element"] + [lab for _, lab, _ in names] + ["two-stage = exact dialect"]
        lines += [f"**{cases[model].description}**", "", "| " + " | ".join(head) + " |",
                  "|---|" + "---:|" * (len(head) - 1)]
        fm = per_format["float32"]
        lines.append("| float32 | 32 | " + " | ".join(fmt.format(0.0 if abs(fm[k]) < 1e-12 else fm[k])
                                                   for k, _, fmt in names) + " | – |")
        for name, m in per_format.items():
            if name == "float32":
                continue
            cells = [name, f"{FORMATS[name][0]:.3f}"] + [fmt.format(m[k]) for k, _, fmt in names]
            cells.append(f"{100 * m['two_stage_agree']:.1f} %" if "two_stage_agree" in m else "–")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="mpgen study format-accuracy", description=__doc__.split("\n")[0])
    add_model_arguments(ap)
    ap.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated subset of {list(FORMATS)}")
    a = ap.parse_args(argv)
    formats = [f.strip() for f in a.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    results, cases = {}, {}
    for case in selected_cases(a, StudySettings()):
        cases[case.name] = case
        ref = case.run(None)
        results[case.name] = {"float32": case.metrics(ref, ref)}
        for f in formats:
            results[case.name][f] = evaluate_format(case, f, ref)
            if not a.quiet:
                print(f"[format-accuracy] {case.name} {f}: {results[case.name][f]}", file=sys.stderr, flush=True)
    print(format_table(results, cases))
    return 0


if __name__ == "__main__":
    sys.exit(main())
