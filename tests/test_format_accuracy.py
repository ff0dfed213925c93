"""studies/format_accuracy.py on a toy one-layer model (the real models run in the study itself)."""

import pytest

from mpgen.studies.fgmp_study import ModelCase
from mpgen.studies.format_accuracy import FORMATS, evaluate_format, format_table, main


@pytest.fixture
def toy_case(heavy_tailed):
    w = heavy_tailed((24, 172), 1) * 0.1          # K = 172: padded to 192 like stories260K
    x = heavy_tailed((40, 172), 2)

    def run(matmul):
        return x @ w.T if matmul is None else matmul("layer", x, w)

    def metrics(out, ref):
        return {"err": float((out - ref).norm() / ref.norm())}

    return ModelCase("toy", "toy layer", {"layer": w}, {"layer": "layer"}, run, run, metrics,
                     [("err", "relative error", "{:.4f}")], None, ())


def test_every_format_quantizes_and_blockdialect_reports_its_selection(toy_case):
    ref = toy_case.run(None)
    results = {"float32": toy_case.metrics(ref, ref)}
    for name in FORMATS:
        m = evaluate_format(toy_case, name, ref)
        assert 0.01 < m["err"] < 0.3, (name, m)
        assert ("two_stage_agree" in m) == name.startswith("BlockDialect")
        if "two_stage_agree" in m:
            assert 0 < m["two_stage_agree"] <= 1
        results[name] = m
    table = format_table({"toy": results}, {"toy": toy_case})
    assert "| float32 | 32 | 0.0000 |" in table and "| BlockDialect-32 | 4.281 |" in table


def test_unknown_formats_are_refused():
    with pytest.raises(ValueError, match="FOO"):
        main(["--formats", "NVFP4-16,FOO"])
