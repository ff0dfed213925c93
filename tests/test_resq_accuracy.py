"""studies/resq_accuracy.py on a toy one-layer model with a planted outlier subspace, and a short
run on stories260K (skipped when the model file is absent)."""

import pytest
import torch

from mpgen.studies import resq_accuracy as S
from mpgen.studies.fgmp_study import ModelCase, StudySettings, stories_case


@pytest.fixture
def toy_case(heavy_tailed):
    gen = torch.Generator().manual_seed(4)
    q, _ = torch.linalg.qr(torch.randn(64, 64, generator=gen))
    gains = torch.ones(64)
    gains[:8] = 30.0                                   # 8 high-variance directions (= K/8)
    x = (torch.randn(200, 64, generator=gen) * gains) @ q.T
    w = heavy_tailed((24, 64), 1) * 0.1
    calib, evals = x[:100], x[100:]

    def run(matmul):
        return evals @ w.T if matmul is None else matmul("layer", evals, w)

    def calib_run(matmul):
        matmul("layer", calib, w)

    def metrics(out, ref):
        return {"err": float((out - ref).norm() / ref.norm())}

    return ModelCase("toy", "toy layer", {"layer": w}, {"layer": "layer"}, run, calib_run,
                     metrics, [("err", "relative error", "{:.4f}")], None, ())


def test_resq_beats_rtn_w4a4_on_a_planted_outlier_subspace(toy_case):
    ref = toy_case.run(None)
    cov = S.site_covariances(toy_case)
    err = {m: S.evaluate_method(toy_case, m, cov, ref)["err"] for m in S.METHODS}
    # the 8-bit subspace holds the outliers: ResQ at 4.5 bits is near W8A8, far from W4A4
    assert err["ResQ"] < 2 * err["RTN W8A8"] and err["ResQ"] < err["rotated W4A4"] / 5, err
    assert err["rotated W4A4"] < err["RTN W4A4"], err
    bits = {"toy": {m: S.average_bits(toy_case, m) for m in S.METHODS}}
    assert bits["toy"]["ResQ"] == 4.5
    table = S.format_table({"toy": {"float32": {"err": 0.0}, **{m: {"err": e} for m, e in err.items()}}},
                           {"toy": toy_case}, bits)
    assert "| float32 | 32 | 0.0000 |" in table and "| ResQ | 4.500 |" in table


def test_stories260k_short_run(stories260k):
    settings = StudySettings(stories_calib_seqs=2, stories_eval_seqs=2, stories_tokens=31)
    case = stories_case(settings, stories260k, progress=False)
    ref = case.run(None)
    cov = S.site_covariances(case)
    assert len(cov) == 5 * 4 + 1   # 5 layers × (attn_in, wo, ffn_in, w2) + the output head
    ppl = {m: S.evaluate_method(case, m, cov, ref)["ppl"] for m in ("RTN W4A4", "ResQ")}
    assert ppl["ResQ"] < ppl["RTN W4A4"], ppl


def test_unknown_methods_are_refused():
    with pytest.raises(ValueError, match="FOO"):
        S.main(["--methods", "ResQ,FOO"])
