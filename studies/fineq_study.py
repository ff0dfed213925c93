"""FineQ accuracy study on real weights (regenerates the tables of ``docs/fineq.md``).

Two parts:

1. **Code points.** Every candidate :class:`~mpgen.golden.fineq.FineQCode` of :data:`CANDIDATES`
   quantizes every linear layer of both real models (stories260K: all rows; all-MiniLM-L6-v2: every
   ``minilm_row_stride``-th output row, to keep the study fast — rows are quantized independently,
   so a row subset gives those rows' exact errors). Score: the mean over all layers of both models
   of the per-layer relative Frobenius error ``||W - Q(W)||_F / ||W||_F`` (each layer counts
   once); ``DEFAULT_CODE`` is the best candidate (see ``docs/fineq.md``).
2. **Accuracy.** FineQ (``DEFAULT_CODE``) at several group sizes vs round-to-nearest symmetric INT2,
   INT3 and INT4 per output channel (the usual amax scale, and the same MSE scale search as FineQ)
   and at FineQ's group size: bits per weight (float16 scales included), whole-model relative
   Frobenius error, and model-level divergence with the float activations unchanged (weights
   only): stories260K mean KL(float || quantized) per token and perplexity on sequences the float
   model sampled itself; MiniLM mean ``1 - cos`` of sentence embeddings against the float model.

``python -m mpgen.studies.fineq_study`` (or ``mpgen study fineq-accuracy``) prints the markdown;
``--out FILE`` also writes it; stories260K is read from ``--models DIR`` (else ``$MPGEN_MODELS``).
Models that are absent are skipped (and said so in the output, with the reason).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..golden.fineq import (CLUSTER, DEFAULT_CODE, SCALE_BITS, WORD_BITS, FineQCode, fineq_quantize,
                            rtn_quantize)
from ..models.paths import STORIES260K, ModelNotFoundError, model_file

__all__ = ["CANDIDATES", "StudySettings", "ModelCase", "stories_case", "minilm_case",
           "load_cases", "code_point_study", "accuracy_study", "worked_example", "int8_act_linear", "run_fineq_study", "main"]



def _c(name, n, o):
    return FineQCode(tuple(n), tuple(o), name=name)


#: Candidate level sets (normal 2-bit, outlier 3-bit), all with max |level| <= 8.
CANDIDATES: tuple[FineQCode, ...] = (
    _c("A", (-2, -1, 1, 2), (-4, -3, -2, -1, 1, 2, 3, 4)),
    _c("B", (-2, -1, 0, 1), (-4, -3, -2, -1, 0, 1, 2, 3)),
    _c("C", (-2, -1, 0, 1), (-4, -3, -2, -1, 1, 2, 3, 4)),
    _c("D", (-1, 0, 1, 2), (-4, -3, -2, -1, 0, 1, 2, 3)),
    _c("E", (-2, -1, 0, 1), (-6, -4, -3, -2, 2, 3, 4, 6)),
    _c("F", (-2, -1, 0, 1), (-8, -6, -4, -2, 2, 4, 6, 8)),
    _c("G", (-2, -1, 1, 2), (-6, -4, -3, -2, 2, 3, 4, 6)),
    _c("H", (-2, -1, 1, 2), (-8, -6, -4, -2, 2, 4, 6, 8)),
    _c("I", (-3, -1, 1, 3), (-7, -5, -3, -1, 1, 3, 5, 7)),
    _c("J", (-3, -1, 1, 3), (-8, -6, -4, -2, 2, 4, 6, 8)),
    _c("K", (-3, -1, 1, 3), (-8, -5, -3, -1, 1, 3, 5, 8)),
    _c("L", (-4, -2, 0, 2), (-8, -6, -3, -1, 1, 3, 6, 8)),
    _c("M", (-3, -1, 1, 3), (-6, -5, -3, -1, 1, 3, 5, 6)),
    _c("N", (-5, -2, 2, 5), (-8, -6, -4, -2, 2, 4, 6, 8)),
    _c("P", (-3, -1, 1, 3), (-7, -5, -3, -2, 2, 3, 5, 7)),
)
# (level sets that are integer multiples of another candidate's, e.g. {-4,-2,0,2}/{-8,..,6} of B,
# are the same code up to the scale and give the same errors: not listed twice)


@dataclass
class StudySettings:
    group_sizes: tuple = (None, 96, 48, 24)   # FineQ rows of the accuracy table (None = per channel)
    code_group_size: int | None = 48           # group size of the code-point study
    equal_group: int = 48                      # RTN "at equal group size" rows
    int8_act_group: int | None = 48            # FineQ + INT8 activations row (None: no such row)
    minilm_row_stride: int = 8                 # code study: every 8th output row of MiniLM
    stories_seqs: int = 4
    stories_tokens: int = 63
    minilm_texts: int = 48
    minilm_max_len: int = 64
    minilm_batch: int = 16
    models: tuple = ("stories260K", "MiniLM")  # which models to use (if available)


@dataclass
class ModelCase:
    """One real model: its linear weights and a divergence metric for substituted weights."""

    name: str
    weights: dict[str, torch.Tensor]
    divergence: Callable[[dict[str, torch.Tensor]], dict[str, float]]
    metric_cols: list[tuple[str, str, str]]   # (key, header, format)
    reference: dict[str, float] = field(default_factory=dict)


def _log(msg: str, t0: float, progress: bool) -> None:
    if progress:
        print(f"[fineq-study {time.monotonic() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def stories_case(settings: StudySettings, path: Path | None = None, *,
                 models_dir=None) -> ModelCase:
    """stories260K (llama2.c) from ``path``, else ``stories260K.bin`` in ``models_dir`` (else
    ``$MPGEN_MODELS``); :class:`~mpgen.models.paths.ModelNotFoundError` if absent. Divergence on
    ``stories_seqs`` sequences sampled (temperature 1, seeds 0..) from the float model: mean
    KL(float || quant) per predicted token and perplexity of those sequences."""
    if path is None:
        path = model_file(STORIES260K, models_dir)
    elif not Path(path).is_file():
        raise ModelNotFoundError(f"stories260K model file {path} not found")
    from ..models.llama2c import generate, load_llama2c

    model = load_llama2c(path)
    seqs = [generate(model, seed, settings.stories_tokens, temperature=1.0)
            for seed in range(settings.stories_seqs)]
    with torch.no_grad():
        ref_logits = [model.forward(t)[:-1].double() for t in seqs]
    weights = dict(model.linear_weights())

    def divergence(wq: dict[str, torch.Tensor]) -> dict[str, float]:
        def mm(name, x, w):
            v = wq[name]
            return v(x) if callable(v) else x @ v.T
        nll = kl = 0.0
        n = 0
        with torch.no_grad():
            for t, lf in zip(seqs, ref_logits):
                lq = model.forward(t, mm)[:-1].double()
                nll += float(torch.nn.functional.cross_entropy(lq, t[1:].long(), reduction="sum"))
                lpf, lpq = lf.log_softmax(-1), lq.log_softmax(-1)
                kl += float((lpf.exp() * (lpf - lpq)).sum())
                n += lq.shape[0]
        return {"kl": kl / n, "ppl": math.exp(nll / n)}

    return ModelCase("stories260K", weights, divergence,
                     [("kl", "stories KL", "{:.4f}"), ("ppl", "stories PPL", "{:.3f}")])


def minilm_case(settings: StudySettings) -> ModelCase | None:
    """all-MiniLM-L6-v2, or ``None`` if the weights package is not installed. Divergence: mean
    ``1 - cos`` of the sentence embeddings of ``minilm_texts`` eval paragraphs vs the float model."""
    try:
        from ..models.minilm import embedding_divergence, load_minilm, text_corpus
        model = load_minilm()
    except (ImportError, FileNotFoundError):
        return None
    model.eval()
    texts = text_corpus("eval", settings.minilm_texts)
    kw = dict(max_len=settings.minilm_max_len, batch_size=settings.minilm_batch)
    ref = model.embed(texts, **kw)
    weights = {n: lin.weight.detach() for n, lin in model.linear_layers()}

    def divergence(wq: dict[str, torch.Tensor]) -> dict[str, float]:
        def mm(name, x, w):
            v = wq[name]
            return v(x) if callable(v) else x @ v.T
        return {"div": embedding_divergence(model.embed(texts, matmul=mm, **kw), ref)}

    return ModelCase("MiniLM", weights, divergence, [("div", "MiniLM 1−cos", "{:.5f}")])


def load_cases(settings: StudySettings, *, models_dir=None) -> tuple[list[ModelCase], list[str]]:
    """The available cases of ``settings.models`` and the missing ones (``"name (reason)"``).
    stories260K comes from ``models_dir`` (else ``$MPGEN_MODELS``)."""
    cases, missing = [], []
    if "stories260K" in settings.models:
        try:
            cases.append(stories_case(settings, models_dir=models_dir))
        except ModelNotFoundError as e:
            missing.append(f"stories260K ({e})")
    if "MiniLM" in settings.models:
        c = minilm_case(settings)
        (cases.append(c) if c is not None else missing.append("all-MiniLM-L6-v2"))
    return cases, missing


# ------------------------------------------------------------------------------- quantizers

Quantizer = Callable[[torch.Tensor], tuple[torch.Tensor, dict]]


def fineq_q(code: FineQCode = DEFAULT_CODE, group_size: int | None = 48, scale_search: str = "mse",
            outlier_rule: str = "paper") -> Quantizer:
    def q(w):
        fw = fineq_quantize(w, group_size, code, scale_search=scale_search, outlier_rule=outlier_rule)
        return fw.dequantize(), {"bits": WORD_BITS * fw.words.numel() + SCALE_BITS * fw.scales.numel(),
                                 "outliers": int(fw.outlier_clusters().sum()), "clusters": fw.words.numel(),
                                 "dropped_abs": float(w[fw.dropped()[:, : w.shape[1]]].abs().sum())}
    return q


def rtn_q(bits: int, group_size: int | None = None, scale_search: str = "amax") -> Quantizer:
    def q(w):
        r = rtn_quantize(w, bits, group_size, scale_search=scale_search)
        return r.dequantize(), {"bits": bits * r.q.numel() + SCALE_BITS * r.scales.numel()}
    return q


def quantize_model(case: ModelCase, quant: Quantizer, rows: int = 1) -> tuple[dict, dict]:
    """Quantize every layer (every ``rows``-th output row); returns (dequantized weights,
    totals: sse, energy, per-layer relative errors, bits, numel, outliers, clusters)."""
    out, tot = {}, {"sse": 0.0, "energy": 0.0, "rel": [], "bits": 0, "numel": 0, "outliers": 0, "clusters": 0}
    for name, w in case.weights.items():
        w = w[::rows].contiguous() if rows > 1 else w
        d, info = quant(w)
        sse = float(((d.double() - w.double()) ** 2).sum())
        en = float((w.double() ** 2).sum())
        tot["sse"] += sse
        tot["energy"] += en
        tot["rel"].append(math.sqrt(sse / en))
        tot["bits"] += info["bits"]
        tot["numel"] += w.numel()
        tot["outliers"] += info.get("outliers", 0)
        tot["clusters"] += info.get("clusters", 0)
        out[name] = d
    return out, tot


# ------------------------------------------------------------------------------- studies


def code_point_study(cases: list[ModelCase], settings: StudySettings, *, candidates=CANDIDATES,
                     progress: bool = True, t0: float | None = None) -> tuple[list[dict], FineQCode]:
    """Rows ``{code, per-model rel. error, mean per-layer rel. error, outlier share}``, sorted
    by the score, and the best code."""
    t0 = time.monotonic() if t0 is None else t0
    rows = []
    for code in candidates:
        r = {"code": code, "layers": []}
        for case in cases:
            stride = settings.minilm_row_stride if case.name == "MiniLM" else 1
            _, tot = quantize_model(case, fineq_q(code, settings.code_group_size), stride)
            r[case.name] = math.sqrt(tot["sse"] / tot["energy"])
            r[case.name + "/outl"] = tot["outliers"] / tot["clusters"]
            r["layers"] += tot["rel"]
        r["score"] = sum(r["layers"]) / len(r["layers"])
        rows.append(r)
        _log(f"code {code.name}: score {r['score']:.4f}", t0, progress)
    rows.sort(key=lambda r: r["score"])
    return rows, choose_code(rows)


#: Codes whose score is within this factor of the best count as equal; among them the narrowest
#: decoded weight (``weight_width``), then the smallest max |level|, then the best score wins.
SCORE_TOLERANCE = 1.005


def choose_code(rows: list[dict]) -> FineQCode:
    best = min(r["score"] for r in rows)
    near = [r for r in rows if r["score"] <= best * SCORE_TOLERANCE]
    return min(near, key=lambda r: (r["code"].weight_width, r["code"].max_magnitude, r["score"]))["code"]


def rule_ablation(cases: list[ModelCase], settings: StudySettings, code: FineQCode) -> list[dict]:
    """The chosen code with the paper's outlier rule vs each cluster taking its cheaper encoding."""
    out = []
    for rule in ("paper", "min_error"):
        r = {"rule": rule, "layers": []}
        for case in cases:
            stride = settings.minilm_row_stride if case.name == "MiniLM" else 1
            q = fineq_q(code, settings.code_group_size, outlier_rule=rule)
            _, tot = quantize_model(case, q, stride)
            r[case.name] = math.sqrt(tot["sse"] / tot["energy"])
            r[case.name + "/outl"] = tot["outliers"] / tot["clusters"]
            r["layers"] += tot["rel"]
        r["score"] = sum(r["layers"]) / len(r["layers"])
        out.append(r)
    return out


def accuracy_methods(settings: StudySettings, code: FineQCode) -> list[tuple[str, Quantizer]]:
    m = []
    for b in (2, 3, 4):
        m.append((f"RTN INT{b} per-channel (amax)", rtn_q(b, None, "amax")))
    for b in (2, 3, 4):
        m.append((f"RTN INT{b} per-channel (MSE scale)", rtn_q(b, None, "mse")))
    for b in (2, 3, 4):
        m.append((f"RTN INT{b} g{settings.equal_group} (MSE scale)", rtn_q(b, settings.equal_group, "mse")))
    for g in settings.group_sizes:
        m.append((f"FineQ {'per-channel' if g is None else f'g{g}'} (code {code.name})", fineq_q(code, g)))
    return m


def int8_act_linear(fw, x_check: bool = True):
    """``x -> y`` for one layer on the PE array's exact path: activations quantized per token to
    symmetric INT8 (``s_a = amax / 127``, round half to even, ``x == 0`` rows give 0), FineQ
    levels times INT8 codes summed exactly per K-group, then group and token scales applied.
    The per-group partial sums are at most ``127 · 127 · group_size`` in magnitude, far below
    2**53, so they are computed exactly as float64 matmuls; the first call checks them against
    :func:`~mpgen.golden.fineq.int_gemm`."""
    from ..golden.fineq import int_gemm
    wd = fw.decoded().to(torch.float64)
    n, kp, gs, ng = fw.N, fw.Kp, fw.group_size, fw.ngroups
    wg = torch.nn.functional.pad(wd, (0, ng * gs - kp)).view(n, ng, gs)
    sw = fw.scales.to(torch.float64)
    checked = [not x_check]

    def lin(x):
        x = x.to(torch.float32)
        s_a = x.abs().amax(dim=1, keepdim=True) / 127
        a = torch.where(s_a > 0, torch.round(x / torch.where(s_a > 0, s_a, 1)), 0).clamp(-127, 127)
        a = torch.nn.functional.pad(a, (0, ng * gs - fw.K))
        parts = torch.einsum("tgk,ngk->tng", a.view(-1, ng, gs).to(torch.float64), wg)
        if not checked[0]:
            ref = int_gemm(fw.decoded(), a[:4, :kp].to(torch.int8), group_size=gs)
            assert torch.equal(parts[:4].to(torch.int64), ref), "float64 partial sums are not exact"
            checked[0] = True
        return ((parts * sw[None]).sum(-1) * s_a.to(torch.float64)).to(torch.float32)

    return lin


def accuracy_study(cases: list[ModelCase], settings: StudySettings, code: FineQCode = DEFAULT_CODE, *,
                   progress: bool = True, t0: float | None = None) -> list[dict]:
    t0 = time.monotonic() if t0 is None else t0
    rows = [{"method": "float32", **{c.name + "/" + k: 0.0 for c in cases for k in ("rel",)},
             **{c.name + "/bpw": 32.0 for c in cases}}]
    for case in cases:
        rows[0].update({case.name + "/" + k: v for k, v in case.divergence(dict(case.weights)).items()})
    for label, quant in accuracy_methods(settings, code):
        r = {"method": label}
        for case in cases:
            wq, tot = quantize_model(case, quant)
            r[case.name + "/rel"] = math.sqrt(tot["sse"] / tot["energy"])
            r[case.name + "/bpw"] = tot["bits"] / tot["numel"]
            if tot["clusters"]:
                r[case.name + "/outl"] = tot["outliers"] / tot["clusters"]
            r.update({case.name + "/" + k: v for k, v in case.divergence(wq).items()})
        rows.append(r)
        _log(f"{label} done", t0, progress)
    if settings.int8_act_group is not None:
        g = settings.int8_act_group
        r = {"method": f"FineQ g{g} (code {code.name}) + INT8 per-token activations (PE array path)"}
        for case in cases:
            fws = {n: fineq_quantize(w, g, code) for n, w in case.weights.items()}
            sse = sum(float(((fws[n].dequantize().double() - w.double()) ** 2).sum())
                      for n, w in case.weights.items())
            r[case.name + "/rel"] = math.sqrt(sse / sum(float((w.double() ** 2).sum()) for w in case.weights.values()))
            r[case.name + "/bpw"] = sum(f.bits_per_weight() * f.N * f.K for f in fws.values()) / \
                sum(f.N * f.K for f in fws.values())
            r[case.name + "/outl"] = sum(int(f.outlier_clusters().sum()) for f in fws.values()) / \
                sum(f.words.numel() for f in fws.values())
            r.update({case.name + "/" + k: v for k, v in
                      case.divergence({n: int8_act_linear(fw) for n, fw in fws.items()}).items()})
        rows.append(r)
        _log("INT8-activation row done", t0, progress)
    return rows


# ------------------------------------------------------------------------------- markdown


def _levels(v) -> str:
    return "{" + ",".join(str(x) for x in v) + "}"


def code_table(rows: list[dict], cases: list[ModelCase], settings: StudySettings) -> str:
    g = "per-channel" if settings.code_group_size is None else f"g{settings.code_group_size}"
    hdr = ["code", "normal levels", "outlier levels", "max", "bits"] + \
        [f"{c.name} rel. err ({g})" for c in cases] + ["mean per-layer rel. err"]
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for r in rows:
        c = r["code"]
        cells = [c.name, _levels(c.normal_levels), _levels(c.outlier_levels), str(c.max_magnitude),
                 str(c.weight_width)] + [f"{r[cs.name]:.4f}" for cs in cases] + [f"**{r['score']:.4f}**"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def accuracy_table(rows: list[dict], cases: list[ModelCase]) -> str:
    hdr = ["method"]
    for c in cases:
        hdr += [f"{c.name} bits/w", f"{c.name} rel. err"] + [h for _, h, _ in c.metric_cols]
    hdr += ["outlier clusters"]
    lines = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for r in rows:
        cells = [r["method"]]
        for c in cases:
            cells += [f"{r[c.name + '/bpw']:.3f}", f"{r[c.name + '/rel']:.4f}"]
            cells += [fmt.format(r[c.name + "/" + k]) for k, _, fmt in c.metric_cols]
        outl = [f"{r[c.name + '/outl']:.1%}" for c in cases if c.name + "/outl" in r]
        cells.append(" / ".join(outl) if outl else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def worked_example(case: ModelCase, layer: str, group_size: int | None = 48, code: FineQCode = DEFAULT_CODE) -> str:
    """Markdown: the first normal and the first outlier cluster of row 0 of a real layer, from
    float weights to levels, fields and the packed word."""
    from ..golden.fineq import decode_fields, decode_words
    w = case.weights[layer]
    fw = fineq_quantize(w, group_size, code)
    kinds = fw.outlier_clusters()[0]
    lines = [f"Row 0 of `{case.name}` `{layer}` (`fineq_quantize(w, {group_size}, DEFAULT_CODE)`):\n"]
    for want in (False, True):
        c = int(torch.nonzero(kinds == want)[0])
        g = (CLUSTER * c) // fw.group_size
        s = float(fw.scales[0, g])
        ws = w[0, CLUSTER * c: CLUSTER * c + CLUSTER].tolist()
        word = int(fw.words[0, c])
        f = decode_fields(word)
        lv, dr = decode_words(fw.words[0, c:c + 1], code)
        what = "outlier" if want else "normal"
        lines.append(f"* {what} cluster {c} (K positions {CLUSTER * c}..{CLUSTER * c + 2}), group {g} scale "
                     f"s = {s:.6g} (float16 0x{int(torch.tensor(s).half().view(torch.int16)) & 0xFFFF:04x}): "
                     f"w = ({', '.join(f'{v:+.5f}' for v in ws)}), w/s = ({', '.join(f'{v / s:+.3f}' for v in ws)}); "
                     f"max|w|/min|w| = {max(map(abs, ws)) / max(min(map(abs, ws)), 1e-30):.2f}")
        if want:
            lines.append(f"  → index {f.index} (outlier at position {f.index - 1}), outlier code {f.f0} "
                         f"(level {code.outlier_levels[f.f0]}), kept-neighbour code {f.f1} "
                         f"(level {code.normal_levels[f.f1]}), which {f.f2}; "
                         f"levels {tuple(lv[0].tolist())}, dropped {tuple(int(b) for b in dr[0].tolist())}")
        else:
            lines.append(f"  → index 0, codes ({f.f0}, {f.f1}, {f.f2}) = levels {tuple(lv[0].tolist())}")
        lines.append(f"  → word 0x{word:02x} = 0b{word:08b} (bit 7 … bit 0); dequantized "
                     f"({', '.join(f'{v * s:+.5f}' for v in lv[0].tolist())})")
    return "\n".join(lines)


def run_fineq_study(settings: StudySettings | None = None, *, codes: bool = True, accuracy: bool = True,
                    progress: bool = True, models_dir=None) -> str:
    """Run the study and return the markdown (code-point table, then accuracy table);
    stories260K from ``models_dir`` (else ``$MPGEN_MODELS``)."""
    s = settings or StudySettings()
    t0 = time.monotonic()
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matmuls; the 2-core box is shared
    try:
        cases, missing = load_cases(s, models_dir=models_dir)
        _log(f"models: {[c.name for c in cases]}; missing: {missing}", t0, progress)
        parts = []
        if missing:
            parts.append("Skipped (not available here): " + "; ".join(missing) + ".\n")
        if not cases:
            return "\n".join(parts + ["No model available: nothing measured."])
        code = DEFAULT_CODE
        if codes:
            rows, best = code_point_study(cases, s, progress=progress, t0=t0)
            parts.append(f"### Code-point candidates (sorted by the score; FineQ "
                         f"{'per-channel' if s.code_group_size is None else f'g{s.code_group_size}'}, "
                         f"MiniLM every {s.minilm_row_stride}th row)\n")
            parts.append(code_table(rows, cases, s))
            same = best.normal_levels == DEFAULT_CODE.normal_levels and \
                best.outlier_levels == DEFAULT_CODE.outlier_levels
            parts.append(f"\nChosen (best score; within {SCORE_TOLERANCE - 1:.1%} of it the narrowest weight, then "
                         f"the smallest max |level|): code {best.name} "
                         f"(normal {_levels(best.normal_levels)}, outlier {_levels(best.outlier_levels)}); "
                         f"DEFAULT_CODE is {'this code' if same else 'NOT this code: ' + DEFAULT_CODE.name}.\n")
        if codes:
            abl = rule_ablation(cases, s, DEFAULT_CODE)
            parts.append("### Outlier rule ablation (DEFAULT_CODE, same settings)\n")
            hdr = ["outlier rule"] + [f"{c.name} rel. err" for c in cases] + \
                [f"{c.name} outlier clusters" for c in cases] + ["mean per-layer rel. err"]
            parts.append("| " + " | ".join(hdr) + " |\n|" + "---|" * len(hdr))
            for r in abl:
                label = {"paper": "paper: max > 4·min", "min_error": "cheaper encoding per cluster"}[r["rule"]]
                parts.append("| " + " | ".join([label] + [f"{r[c.name]:.4f}" for c in cases] +
                                               [f"{r[c.name + '/outl']:.1%}" for c in cases] +
                                               [f"{r['score']:.4f}"]) + " |")
            parts.append("")
            _log("rule ablation done", t0, progress)
        ex = next((c for c in cases if c.name == "stories260K"), None)
        parts.append("### Worked example\n")
        parts.append(worked_example(ex, "layers.0.wq") if ex else worked_example(cases[0], "layers.0.query"))
        parts.append("")
        if accuracy:
            rows = accuracy_study(cases, s, code, progress=progress, t0=t0)
            parts.append(f"### Accuracy (weights only; DEFAULT_CODE {_levels(code.normal_levels)} / "
                         f"{_levels(code.outlier_levels)})\n")
            parts.append(accuracy_table(rows, cases))
        _log("done", t0, progress)
        return "\n".join(parts) + "\n"
    finally:
        torch.set_num_threads(n_threads)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mpgen study fineq-accuracy",
                                 description="FineQ code points and accuracy vs RTN on real weights "
                                             "(the tables of docs/fineq.md).")
    ap.add_argument("--only", choices=("codes", "accuracy"), help="run one part only")
    ap.add_argument("--out", type=Path, help="also write the markdown to this file")
    ap.add_argument("--quiet", action="store_true", help="no progress on stderr")
    ap.add_argument("--models", metavar="DIR", type=Path, default=None,
                    help="folder with stories260K.bin (default: $MPGEN_MODELS; without either, "
                         "stories260K is skipped)")
    a = ap.parse_args(argv)
    md = run_fineq_study(codes=a.only != "accuracy", accuracy=a.only != "codes", progress=not a.quiet,
                         models_dir=a.models)
    print(md)
    if a.out:
        a.out.write_text(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
