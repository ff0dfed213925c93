"""Model-level FGMP study (mpgen.studies.fgmp_study) end to end on stories260K, small sizes.

Checks properties that a wrong policy, threshold or fake-quantization hook would break: FGMP at
70 % FP4 beats random blocks at 70 % (measured: perplexity ~50 vs ~150), all-FP8 beats all-NVFP4,
the achieved FP4 fractions of weights and activations are near their targets, the activations
are classified by the classifier golden exactly (``classify`` with ``threshold_register``), and
the float32 matmul of dequantized operands gives the same metric as the hardware-exact
``fgmp_matmul``. ~30-40 s on 2 cores.
"""

from __future__ import annotations

import pytest
import torch

from mpgen.studies import fgmp_study as S
from mpgen.golden.classifier import classify, threshold_register
from mpgen.golden.dotprod import fgmp_matmul
from mpgen.golden.policy import ActivationQuantizer, Policy, assign_weights

SETTINGS = S.StudySettings(stories_calib_seqs=12, stories_eval_seqs=4, stories_tokens=63,
                           calib_rows=512)
ROWS = (("all-FP8", "fp8", 0.0), ("all-NVFP4", "nvfp4", 1.0), ("FGMP 70 %", "fgmp", 0.7),
        ("random 70 %", "random", 0.7))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def case(stories260k):
    return S.stories_case(SETTINGS, stories260k, progress=False)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fgmp_cache")


@pytest.fixture(scope="module")
def study(case, cache_dir):
    return S.study_model(case, SETTINGS, rows=ROWS, clip_modes=(False,), cache_dir=cache_dir,
                         progress=False)


def test_study_orders_policies(study):
    r = {label: res for (label, clip), res in study["results"].items()}
    ppl = {k: v.metrics["ppl"] for k, v in r.items()}
    kl = {k: v.metrics["kl"] for k, v in r.items()}
    print("\nperplexity:", {k: round(v, 2) for k, v in ppl.items()}, "float", round(study["float"]["ppl"], 2))
    print("KL:", {k: round(v, 3) for k, v in kl.items()})
    assert study["float"]["ppl"] < ppl["all-FP8"] < ppl["FGMP 70 %"] < ppl["all-NVFP4"]
    assert ppl["FGMP 70 %"] < ppl["random 70 %"] and kl["FGMP 70 %"] < kl["random 70 %"]
    assert kl["all-FP8"] < kl["FGMP 70 %"] < kl["all-NVFP4"]
    assert study["float"]["kl"] == pytest.approx(0.0, abs=1e-9)
    for label, res in r.items():
        want = {"all-FP8": 0.0, "all-NVFP4": 1.0}.get(label, 0.7)
        assert abs(res.w_fp4 - want) < 0.002, (label, res.w_fp4)
        assert abs(res.a_fp4_calib - want) < 0.01, (label, res.a_fp4_calib)
        assert abs(res.a_fp4_eval - want) < 0.05, (label, res.a_fp4_eval)  # other sequences
    table = S.format_table(study, ROWS)
    assert table.count("\n") == 2 + 1 + len(ROWS) - 1 and "FGMP 70 %" in table


def test_activations_go_through_classifier_and_exact_matmul(case, study, cache_dir):
    # reuse the study's cached Fisher and calibration
    (fisher_file,), (sites_file,) = cache_dir.glob("*-fisher.pt"), cache_dir.glob("*-sites.pt")
    wf, af = torch.load(fisher_file, weights_only=False)
    sites = torch.load(sites_file, weights_only=False)
    weights = S.padded_weights(case)
    pol = Policy("fgmp", 0.7, clip=True)
    wa = assign_weights(weights, S.padded_fisher(wf, case), pol)
    aq = ActivationQuantizer(sites, pol)
    calls = []

    def spy(site, x):
        q = aq(site, x)
        calls.append((site, x, q))
        return q

    ref = case.run(None)
    out = case.run(S.make_matmul(case, wa, spy))
    # the hook classified each shared input once: 4 sites per layer + the classifier input
    n_layers = 5
    assert len(calls) == len(ref) * (4 * n_layers + 1)
    for site, x, q in calls[:: 7]:
        s = sites[site]
        reg = threshold_register(aq.threshold, s.tables["fgmp"], s.p)
        res = classify(x.to(torch.bfloat16), s.tables["fgmp"], reg, s.p)
        assert torch.equal(q.is_fp8, res.is_fp8) and torch.equal(q.codes, res.codes)
        assert torch.equal(q.block_scale, res.block_scale)
    assert 0 < sum(int(q.is_fp8.sum()) for _, _, q in calls)
    m_fast = case.metrics(out, ref)

    # the same policy with the hardware-exact fgmp_matmul (FP32 block terms, FP32 accumulation)
    aq2 = ActivationQuantizer(sites, pol)
    last = {}

    def exact(name, x, w):
        site = case.sites[name]
        if site not in last or last[site][0] is not x:
            last[site] = (x, aq2(site, S._pad_k(x)))
        return fgmp_matmul(last[site][1], wa.tensors[name])

    out2 = case.run(exact)
    m_exact = case.metrics(out2, ref)
    print("\ndequantized float32 matmul:", m_fast, "fgmp_matmul:", m_exact)
    assert m_fast["ppl"] == pytest.approx(m_exact["ppl"], rel=2e-3)
    assert m_fast["kl"] == pytest.approx(m_exact["kl"], rel=5e-3, abs=1e-3)


def test_doc_update_and_bad_model(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text(f"intro\n{S.DOC_BEGIN}\nold table\n{S.DOC_END}\nafter\n")
    S.update_doc(doc, "| new | table |\n")
    assert doc.read_text() == f"intro\n{S.DOC_BEGIN}\n| new | table |\n{S.DOC_END}\nafter\n"
    (tmp_path / "e.md").write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        S.update_doc(tmp_path / "e.md", "x")
    with pytest.raises(ValueError, match="unknown model"):
        S.run_study(("gpt2",), progress=False)


def test_stories_needs_a_model_folder(monkeypatch, tmp_path):
    """Without --models DIR / $MPGEN_MODELS the study says how to give the folder, and skips."""
    from mpgen.models.paths import ModelNotFoundError
    monkeypatch.delenv("MPGEN_MODELS", raising=False)
    with pytest.raises(ModelNotFoundError, match="--models DIR.*MPGEN_MODELS"):
        S.stories_case(SETTINGS, progress=False)
    with pytest.raises(ModelNotFoundError, match=f"not found in {tmp_path}"):
        S.stories_case(SETTINGS, models_dir=tmp_path, progress=False)
    report = S.run_study(("stories260K",), SETTINGS, progress=False, models_dir=tmp_path)
    assert "skipped" in report and "MPGEN_MODELS" in report
