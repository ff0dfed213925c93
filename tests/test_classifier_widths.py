"""studies/classifier_widths.py: decision agreement of narrower classifier score widths."""

import torch

from mpgen.studies.classifier_widths import agreement, format_table


def _sites(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 32, generator=g) * torch.exp(torch.randn(32, generator=g))
    heavy = torch.rand(64, 32, generator=g) < 0.05
    x = torch.where(heavy, x * 20, x).to(torch.bfloat16)
    return {"a": (x, x.float().square().mean(0)), "b": (x.flip(0), torch.rand(32, generator=g))}


def test_the_exact_widths_agree_with_themselves():
    r = agreement(_sites(), variants=((3, 9),))
    assert r["blocks"] == 2 * 64 * 2
    assert r["variants"][(3, 9)]["agree"] == 1.0
    assert r["variants"][(3, 9)]["fp8_blocks"] == r["fp8_blocks"]
    assert 0.25 < r["fp8_blocks"] / r["blocks"] < 0.31  # threshold at the 70 % quantile


def test_truncating_the_difference_changes_some_decisions():
    r = agreement(_sites(), variants=((0, 6),))
    v = r["variants"][(0, 6)]
    assert v["agree"] < 1.0 and v["worst_site"] in ("a", "b")
    assert "(0, 6)" in format_table({"toy": r})
