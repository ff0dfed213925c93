"""Model-level energy and quality of the FGMP policy (issue 5 §2, §3).

* :func:`mode_mix` runs the FGMP policy of :mod:`mpgen.studies.fgmp_study` on a real model (weights by
  :func:`~mpgen.golden.policy.assign_weights`, activations classified by the classifier golden
  through :class:`~mpgen.golden.policy.ActivationQuantizer`, the study's own fake-quantized matmul
  hook :func:`~mpgen.studies.fgmp_study.make_matmul`) and counts, over every quantized matmul of the
  evaluation forward pass, the block products of each precision pairing (weight × activation).
  For ``y = x Wᵀ`` with weight rows n, activation rows m and K-blocks k, the block product
  ``(n, m, k)`` has the pairing (precision of W[n, block k], precision of x[m, block k]), so
  ``#(w, a) = Σ_k #{n: W[n, k] is w} · #{m: x[m, k] is a}`` (:func:`count_block_products`, exact
  integers). One block product is one "block pair" operation of the dot-product unit.
* :func:`model_energy` turns a mix and the unit's energy per block pair per mode (an
  ``EnergyReport``'s ``modes[m]["energy_per_op"]``, docs/energy) into the model's matmul energy,
  the same block products all at the FP8×FP8 energy, and the saving vs all-FP8, optionally with
  the classifier's energy (one classification per activation block) added to the FGMP side;
  next to :data:`FGMP_PAPER_SAVING`.
* :func:`quality_curve`: the study's headline metric (perplexity for stories260K, mean 1 − cos for
  MiniLM) against the FP4 fraction for FGMP and the study's baselines.

Only the weight matmuls are counted (the study quantizes exactly those: attention score/context
products, norms and softmax stay float and are not part of the FGMP datapath). MiniLM's padding
rows are quantized and computed like every row (batches of length-sorted texts), so they are
counted too. The Fisher statistics, activation calibration and weight scales/scores are the
study's caches (:func:`~mpgen.studies.fgmp_study.default_cache_dir`, keyed by model, settings
and :func:`~mpgen.studies.fgmp_study.code_fingerprint`).

CLI: ``python -m mpgen.studies.model_energy --model minilm --fraction 0.7 [--energy dotprod.json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..golden.policy import POLICY_KINDS, ActivationQuantizer, Policy, assign_weights
from ..models.paths import STORIES260K, model_file
from . import fgmp_study as study

__all__ = ["FGMP_PAPER_SAVING", "MODES", "CURVE_SETTINGS", "CURVE_POLICIES", "CURVE_FRACTIONS",
           "count_block_products", "mode_mix", "model_energy", "energies_from_report",
           "quality_curve", "format_mix_table", "format_energy_table", "format_quality_table",
           "main"]

#: Energy saving of FGMP vs an all-FP8 design reported by the FGMP paper: Hooper et al., "FGMP:
#: Fine-Grained Mixed-Precision Weight and Activation Quantization for Hardware-Accelerated LLM
#: Inference", arXiv:2504.14152 (2025), abstract: "<1 % perplexity degradation on Wikitext-103 for
#: Llama-2-7B relative to an all-FP8 baseline design while consuming 14 % less energy during
#: inference" (their datapath and energy model, 70 % of blocks in NVFP4).
FGMP_PAPER_SAVING = 0.14
#: Precision pairings of a block product, weight × activation (sim/workloads.py mode names).
MODES = ("fp4xfp4", "fp4xfp8", "fp8xfp4", "fp8xfp8")
#: Baselines of the study that :func:`quality_curve` plots by default (same FP4 fraction).
CURVE_POLICIES = ("fgmp", "random", "magnitude", "unweighted")
CURVE_FRACTIONS = (0.0, 0.25, 0.5, 0.7, 0.9, 1.0)
#: Small settings for :func:`quality_curve` (a report on a laptop): half the study's calibration
#: and evaluation data. The headline 70 % numbers of docs/fgmp_policy.md use StudySettings().
CURVE_SETTINGS = study.StudySettings(minilm_calib_texts=32, minilm_eval_texts=16,
                                     stories_calib_seqs=32, stories_eval_seqs=8)


# ---------------------------------------------------------------------------------- counting


def _check_mask(m, what: str) -> torch.Tensor:
    if not isinstance(m, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(m).__name__}")
    if m.dtype != torch.bool:
        raise TypeError(f"{what} must be a torch.bool tensor (True = FP8 block), got {m.dtype}")
    if m.dim() != 2:
        raise ValueError(f"{what} must be 2-D [rows, K/16], got shape {tuple(m.shape)}")
    return m


def count_block_products(weight_fp8: torch.Tensor, act_fp8: torch.Tensor) -> dict[str, int]:
    """Block products of ``y = x Wᵀ`` per precision pairing (weight × activation).

    ``weight_fp8``: bool ``[N, KB]`` (True = the weight row's block k is FP8, else NVFP4);
    ``act_fp8``: bool ``[M, KB]`` for the activation rows. Returns ``{mode: int}`` over
    :data:`MODES` with ``#(w, a) = Σ_k #{n: W[n,k] is w} · #{m: x[m,k] is a}``; the four counts sum
    to ``N · M · KB``. Exact int64 arithmetic (column counts ≤ 2**31, products summed over KB).
    """
    w = _check_mask(weight_fp8, "weight_fp8")
    a = _check_mask(act_fp8, "act_fp8")
    if w.shape[1] != a.shape[1]:
        raise ValueError(f"weight_fp8 has {w.shape[1]} K-blocks, act_fp8 has {a.shape[1]}")
    n, m = w.shape[0], a.shape[0]
    if n >= 1 << 31 or m >= 1 << 31 or n * m * w.shape[1] >= 1 << 62:
        raise ValueError("matmul too large for exact int64 counting")
    w8 = w.sum(dim=0, dtype=torch.int64)
    a8 = a.sum(dim=0, dtype=torch.int64)
    w4, a4 = n - w8, m - a8
    return {"fp4xfp4": int((w4 * a4).sum()), "fp4xfp8": int((w4 * a8).sum()),
            "fp8xfp4": int((w8 * a4).sum()), "fp8xfp8": int((w8 * a8).sum())}


# ---------------------------------------------------------------------------------- model setup


@dataclass
class _Prepared:
    """One model case with the study's cached Fisher, calibration and weight scales."""

    case: study.ModelCase
    settings: study.StudySettings
    weights: dict
    wfisher: dict
    sites: dict
    wcache: dict
    wpath: Path
    n_wcache: int
    ref: object = None
    float_metrics: dict = field(default_factory=dict)

    def reference(self):
        if self.ref is None:
            self.ref = self.case.run(None)
            self.float_metrics = self.case.metrics(self.ref, self.ref)
        return self.ref

    def save_weight_cache(self, progress=False) -> None:
        """Write new weight scales/codes/scores back to the study's cache (what study_model keeps)."""
        keep = _kept(self.wcache)
        if len(keep) == self.n_wcache:  # nothing new worth storing
            return
        tmp = self.wpath.with_suffix(f".{id(self)}.tmp")
        try:
            self.wpath.parent.mkdir(parents=True, exist_ok=True)
            torch.save(keep, tmp)
            tmp.replace(self.wpath)
            self.n_wcache = len(keep)
        except OSError as e:  # a cache is an optimisation only
            study.study_log(f"could not write {self.wpath}: {e}", progress=progress)


_PREPARED: dict = {}


def _kept(wcache: dict) -> dict:
    # the entries study.study_model stores (the rest are cheap to recompute)
    return {k: v for k, v in wcache.items() if k[1] in ("scale", "fp4codes", "fp8codes", "score")}


def _stories_path(stories_path, models_dir) -> Path:
    """``stories_path`` (checked), else ``stories260K.bin`` in ``models_dir`` / ``$MPGEN_MODELS``."""
    if stories_path is None:
        return model_file(STORIES260K, models_dir)
    path = Path(stories_path)
    if not path.is_file():
        raise FileNotFoundError(f"stories260K model file {path} not found (llama2.c "
                                "stories260K.bin; see docs/models.md)")
    return path


def _case_for(model: str, settings, stories_path, progress):
    if model == "minilm":
        return study.minilm_case(settings, progress=progress)
    if model == "stories260K":
        return study.stories_case(settings, stories_path, progress=progress)
    raise ValueError(f"unknown model {model!r}; choose from {study.MODELS} or pass a ModelCase")


def _prepare(case_or_model, settings, cache_dir, stories_path, progress, models_dir=None) -> _Prepared:
    settings = study.StudySettings() if settings is None else settings
    # the model file is resolved first (a clear error without it) and only matters for stories260K
    stories_path = _stories_path(stories_path, models_dir) \
        if isinstance(case_or_model, str) and case_or_model == "stories260K" else None
    if not isinstance(settings, study.StudySettings):
        raise TypeError(f"settings must be a StudySettings, got {type(settings).__name__}")
    cdir = Path(cache_dir) if cache_dir is not None else study.default_cache_dir()
    if isinstance(case_or_model, study.ModelCase):
        memo = ("case", id(case_or_model), settings, str(cdir))
    elif isinstance(case_or_model, str):
        memo = (case_or_model, settings, str(cdir), str(stories_path))
    else:
        raise TypeError("case_or_model must be a model name or a fgmp_study.ModelCase, got "
                        f"{type(case_or_model).__name__}")
    hit = _PREPARED.get(memo)
    if hit is not None and (not isinstance(case_or_model, study.ModelCase) or hit.case is case_or_model):
        return hit
    case = case_or_model if isinstance(case_or_model, study.ModelCase) else \
        _case_for(case_or_model, settings, stories_path, progress)
    # the same cache files and keys as study.study_model
    key = settings.key(case.name, *case.settings_fields)
    wf, af = study.load_or_compute(cdir / f"{key}-fisher.pt", case.fisher, progress)
    key = settings.key(case.name, *case.settings_fields, "calib_rows")
    sites = study.load_or_compute(cdir / f"{key}-sites.pt",
                           lambda: study.calibrate(case, af, settings.calib_rows, progress=progress),
                           progress)
    wpath, wcache = study.load_weight_cache(cdir, settings, case, progress)
    prep = _Prepared(case, settings, study.padded_weights(case), study.padded_fisher(wf, case),
                     sites, wcache, wpath, len(_kept(wcache)))
    _PREPARED.clear()  # keep one model in memory (MiniLM's caches are ~100 MB)
    _PREPARED[memo] = prep
    return prep


@contextmanager
def _one_thread():
    # small matmuls: one thread is faster on a busy 2-core machine (as run_study does)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _policy(kind, fraction, clip, settings) -> Policy:
    if kind not in POLICY_KINDS:
        raise ValueError(f"policy must be one of {POLICY_KINDS}, got {kind!r}")
    return Policy(kind, fraction, clip=clip, clip_candidates=settings.clip_candidates,
                  seed=settings.seed)


# ---------------------------------------------------------------------------------- mode mix


def mode_mix(case_or_model, fp4_fraction: float, *, policy: str = "fgmp", clip: bool = False,
             settings: study.StudySettings | None = None, progress: bool = False,
             cache_dir: Path | None = None, stories_path: Path | None = None,
             models_dir=None, per_layer: bool = False) -> dict:
    """Block-precision mix of ``policy`` at ``fp4_fraction`` on a real model.

    ``case_or_model``: "minilm", "stories260K" (``stories_path``, else ``stories260K.bin`` in
    ``models_dir``, else in ``$MPGEN_MODELS``; FileNotFoundError if absent) or
    a :class:`~mpgen.studies.fgmp_study.ModelCase` built with ``settings``. ``settings``: the
    study's sizes (default ``StudySettings()``, the settings of docs/fgmp_policy.md).
    ``clip``: sensitivity-weighted clipping of NVFP4 weight blocks (changes which weight blocks
    are FP8 slightly). The evaluation forward pass is the study's exactly (same hook, same
    classification), so ``metrics`` equals the study's row for the same policy.

    Returns ``{"model", "policy" (label), "policy_kind", "clip", "fp4_fraction" (target),
    "counts": {mode: block products}, "block_products", "product_fractions": {mode: share},
    "weight_blocks", "weight_fp4_fraction", "activation_blocks" (classified, each once),
    "activation_fp4_fraction", "matmuls" (hook calls), "metrics", "float_metrics", "settings",
    "seconds"}`` and, with ``per_layer``, ``"layers": {layer: {mode..., "rows", "calls"}}``.
    """
    t0 = time.time()
    _policy(policy, fp4_fraction, clip, settings or study.StudySettings())  # validate first
    with _one_thread():
        prep = _prepare(case_or_model, settings, cache_dir, stories_path, progress, models_dir)
        case, st = prep.case, prep.settings
        pol = _policy(policy, fp4_fraction, clip, st)
        ref = prep.reference()
        wa = assign_weights(prep.weights, prep.wfisher, pol, cache=prep.wcache)
        aq = ActivationQuantizer(prep.sites, pol)
        used: dict[str, torch.Tensor] = {}  # site -> mask of its latest classification

        def classify_site(site, x):
            q = aq(site, x)
            used[site] = q.is_fp8
            return q

        # make_matmul classifies a shared input once (calling classify_site) and reuses it
        inner = study.make_matmul(case, wa, classify_site)
        layers: dict[str, dict] = {}

        def hook(name, x, w):
            y = inner(name, x, w)
            a = used[case.sites[name]]
            c = count_block_products(wa.is_fp8[name], a.reshape(-1, a.shape[-1]))
            acc = layers.setdefault(name, {**{m: 0 for m in MODES}, "rows": 0, "calls": 0})
            for m in MODES:
                acc[m] += c[m]
            acc["rows"] += a.numel() // a.shape[-1]
            acc["calls"] += 1
            return y

        out = case.run(hook)
        metrics = case.metrics(out, ref)
        prep.save_weight_cache(progress)
    counts = {m: sum(v[m] for v in layers.values()) for m in MODES}
    total = sum(counts.values())
    res = {
        "model": case.name, "policy": pol.label, "policy_kind": pol.kind, "clip": pol.clip,
        "fp4_fraction": float(fp4_fraction), "counts": counts, "block_products": total,
        "product_fractions": {m: (c / total if total else math.nan) for m, c in counts.items()},
        "weight_blocks": sum(m.numel() for m in wa.is_fp8.values()),
        "weight_fp4_fraction": wa.fp4_fraction,
        "activation_blocks": aq.blocks, "activation_fp4_fraction": aq.fp4_fraction,
        "matmuls": sum(v["calls"] for v in layers.values()),
        "metrics": metrics, "float_metrics": dict(prep.float_metrics),
        "settings": asdict(st), "seconds": time.time() - t0,
    }
    if per_layer:
        res["layers"] = layers
    study.study_log(f"{case.name}: {pol.label} clip={clip} mix "
               + " ".join(f"{m}={c}" for m, c in counts.items()), t0, progress)
    return res


# ---------------------------------------------------------------------------------- energy


def _energy_value(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(v).__name__}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {v}")
    if v < 0:
        raise ValueError(f"{what} must be >= 0, got {v}")
    return v


def _counts_of(mix) -> dict[str, int]:
    if not isinstance(mix, Mapping):
        raise TypeError(f"mix must be a mapping (mode_mix result or {{mode: count}}), got {type(mix).__name__}")
    counts = mix.get("counts", mix)
    if not isinstance(counts, Mapping):
        raise TypeError("mix['counts'] must be a mapping mode -> count")
    missing = [m for m in MODES if m not in counts]
    if missing:
        raise ValueError(f"mix lacks block-product counts for modes {missing}")
    out = {}
    for m in MODES:
        c = counts[m]
        if isinstance(c, bool) or not isinstance(c, int):
            raise TypeError(f"count of {m} must be an int, got {type(c).__name__}")
        if c < 0:
            raise ValueError(f"count of {m} must be >= 0, got {c}")
        out[m] = c
    return out


def model_energy(mix: Mapping, energy_per_mode: Mapping[str, float], *,
                 classifier_energy_per_block: float | None = None, energy_unit: str = "pJ") -> dict:
    """Matmul energy of a :func:`mode_mix` result vs all-FP8 for the same block products.

    ``energy_per_mode``: energy of one block product (block pair) per mode, e.g.
    :func:`energies_from_report` of the dot-product unit's EnergyReport. Needed: ``fp8xfp8`` (the
    all-FP8 reference) and every mode with a non-zero count; ValueError names the missing ones.
    Extra keys are ignored. ``classifier_energy_per_block``: energy of classifying one activation
    block (the classifier's ``classify`` mode), charged once per classified activation block
    (``mix["activation_blocks"]``) to the FGMP side.

    ``E_fgmp = Σ_mode count·e_mode``, ``E_fp8 = Σ count · e_fp8xfp8``, ``saving = 1 − E_fgmp/E_fp8``.

    Returns a flat row (the report's ``data["model_energy"]`` format): ``{"model", "policy",
    "fp4_fraction", "energy_unit", "block_products", "<mode>_fraction" (share of the block
    products), "energy_fgmp", "energy_fp8", "saving_vs_fp8", "activation_blocks",
    "classifier_energy_per_block", "classifier_energy", "energy_fgmp_with_classifier",
    "saving_vs_fp8_with_classifier"`` (the last four None without a classifier energy),
    ``"paper_saving"`` (:data:`FGMP_PAPER_SAVING`)``}``. Energies are in ``energy_unit``.
    """
    counts = _counts_of(mix)
    if not isinstance(energy_per_mode, Mapping):
        raise TypeError(f"energy_per_mode must be a mapping mode -> energy, got {type(energy_per_mode).__name__}")
    if not isinstance(energy_unit, str) or not energy_unit:
        raise TypeError("energy_unit must be a non-empty string")
    need = [m for m in MODES if counts[m] > 0 or m == "fp8xfp8"]
    missing = [m for m in need if m not in energy_per_mode]
    if missing:
        raise ValueError(f"energy_per_mode lacks modes {missing} (the mix has block products of "
                         f"{[m for m in MODES if counts[m]]}; fp8xfp8 is the all-FP8 reference)")
    e = {m: _energy_value(energy_per_mode[m], f"energy of {m}") for m in need}
    total = sum(counts.values())
    e_fgmp = sum(counts[m] * e[m] for m in need if counts[m])
    e_fp8 = total * e["fp8xfp8"]
    saving = (1 - e_fgmp / e_fp8) if e_fp8 > 0 else math.nan
    res = {
        "model": mix.get("model"), "policy": mix.get("policy"), "fp4_fraction": mix.get("fp4_fraction"),
        "energy_unit": energy_unit, "block_products": total,
        **{f"{m}_fraction": (counts[m] / total if total else math.nan) for m in MODES},
        "energy_fgmp": e_fgmp, "energy_fp8": e_fp8, "saving_vs_fp8": saving,
        "activation_blocks": mix.get("activation_blocks"), "classifier_energy_per_block": None,
        "classifier_energy": None, "energy_fgmp_with_classifier": None,
        "saving_vs_fp8_with_classifier": None,
        "paper_saving": FGMP_PAPER_SAVING,
    }
    if classifier_energy_per_block is not None:
        ec = _energy_value(classifier_energy_per_block, "classifier_energy_per_block")
        blocks = mix.get("activation_blocks")
        if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 0:
            raise ValueError("classifier energy needs mix['activation_blocks'] (an int >= 0, "
                             "from mode_mix)")
        e_cls = blocks * ec
        res.update(classifier_energy_per_block=ec, classifier_energy=e_cls,
                   energy_fgmp_with_classifier=e_fgmp + e_cls,
                   saving_vs_fp8_with_classifier=(1 - (e_fgmp + e_cls) / e_fp8) if e_fp8 > 0 else math.nan)
    return res


def energies_from_report(report: Mapping, modes: Sequence[str] = MODES) -> tuple[dict[str, float], str]:
    """``({mode: energy_per_op}, energy_unit)`` from an ``EnergyReport.to_dict()`` (docs: the
    issue 5 energy API) for the ``modes`` it has; a mode measured with mismatches is refused."""
    if not isinstance(report, Mapping) or not isinstance(report.get("modes"), Mapping):
        raise ValueError("not an EnergyReport dict: no 'modes' mapping")
    unit = report.get("energy_unit")
    if not isinstance(unit, str) or not unit:
        raise ValueError("EnergyReport has no energy_unit")
    out = {}
    for m in modes:
        r = report["modes"].get(m)
        if r is None:
            continue
        if r.get("mismatches"):
            raise ValueError(f"EnergyReport mode {m} had {r['mismatches']} mismatches: its energy "
                             "is not that of a correct run")
        out[m] = _energy_value(r.get("energy_per_op"), f"energy_per_op of {m}")
    if not out:
        raise ValueError(f"EnergyReport has none of the modes {list(modes)} "
                         f"(it has {list(report['modes'])})")
    return out, unit


# ---------------------------------------------------------------------------------- quality


def quality_curve(model, fractions: Sequence[float] = CURVE_FRACTIONS,
                  policies: Sequence[str] = CURVE_POLICIES, *, clip: bool = False,
                  settings: study.StudySettings | None = CURVE_SETTINGS, cache_dir: Path | None = None,
                  progress: bool = False, stories_path: Path | None = None,
                  models_dir=None) -> list[dict]:
    """The study's headline metric vs FP4 fraction for each policy (``study.evaluate``, the
    study's caches).

    Rows: ``{"model", "policy" (kind), "fp4_fraction" (target), "metric" (label: "perplexity" /
    "mean 1−cos"), "value", "metric_key", "float_value" (the float model's value),
    "weight_fp4_fraction", "activation_fp4_fraction" (achieved, evaluation data), "clip"}``. At fraction 0 and 1 every policy selects all-FP8 / all-NVFP4 blocks (weights
    exactly; activations when no evaluation block scores outside the calibrated range, which the
    achieved fractions show). ``settings`` default :data:`CURVE_SETTINGS` (smaller than the
    study's). Measured (2-core machine shared with other jobs): MiniLM, 24 points, 3.4 min
    wall / ~1.7 min CPU (~8 s per point, FGMP ~11 s) plus ~25 s once for the Fisher and
    calibration caches; stories260K about 2 min.
    """
    fr = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= float(f) <= 1.0:
            raise ValueError(f"fractions must be numbers in [0, 1], got {f!r}")
        fr.append(float(f))
    pols = list(policies)
    bad = [p for p in pols if p not in POLICY_KINDS]
    if bad or not pols or not fr:
        raise ValueError(f"policies must be a non-empty subset of {POLICY_KINDS} (got {pols}) and "
                         "fractions non-empty")
    rows = []
    with _one_thread():
        prep = _prepare(model, settings, cache_dir, stories_path, progress, models_dir)
        case, st = prep.case, prep.settings
        ref = prep.reference()
        key, label, _ = case.metric_names[0]
        for kind in pols:
            for f in fr:
                t0 = time.time()
                r = study.evaluate(case, _policy(kind, f, clip, st), prep.weights, prep.wfisher,
                                   prep.sites, ref, cache=prep.wcache)
                rows.append({"model": case.name, "policy": kind, "fp4_fraction": f, "metric": label,
                             "value": r.metrics[key], "metric_key": key,
                             "float_value": prep.float_metrics[key],
                             "weight_fp4_fraction": r.w_fp4, "activation_fp4_fraction": r.a_fp4_eval,
                             "clip": clip})
                study.study_log(f"{case.name}: {kind} {f:.2f} {key}={r.metrics[key]:.5g}", t0, progress)
        prep.save_weight_cache(progress)
    return rows


# ---------------------------------------------------------------------------------- report


def format_mix_table(mixes: Sequence[Mapping]) -> str:
    head = ["model", "policy", "W FP4", "A FP4", *MODES, "block products", "A blocks classified",
            "metric"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for x in mixes:
        tot = x["block_products"]
        (k, v), = list(x["metrics"].items())[:1]
        lines.append("| " + " | ".join([
            x["model"], x["policy"] + (" (clip)" if x.get("clip") else ""),
            f"{x['weight_fp4_fraction']:.3f}", f"{x['activation_fp4_fraction']:.3f}",
            *(f"{x['counts'][m]:,} ({x['counts'][m] / tot:.1%})" for m in MODES),
            f"{tot:,}", f"{x['activation_blocks']:,}", f"{k} {v:.5g}"]) + " |")
    return "\n".join(lines)


def format_energy_table(rows: Sequence[Mapping]) -> str:
    head = ["model", "policy", "E FGMP", "E all-FP8", "saving vs FP8", "E classifier",
            "saving incl. classifier", "FGMP paper"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in rows:
        u = r["energy_unit"]
        wc = r["saving_vs_fp8_with_classifier"]
        lines.append("| " + " | ".join([
            str(r["model"]), str(r["policy"]), f"{r['energy_fgmp']:.4g} {u}", f"{r['energy_fp8']:.4g} {u}",
            f"{r['saving_vs_fp8']:.1%}",
            "–" if r["classifier_energy"] is None else f"{r['classifier_energy']:.4g} {u}",
            "–" if wc is None else f"{wc:.1%}", f"{r['paper_saving']:.0%}"]) + " |")
    return "\n".join(lines)


def format_quality_table(rows: Sequence[Mapping]) -> str:
    fr = sorted({r["fp4_fraction"] for r in rows})
    pols = list(dict.fromkeys(r["policy"] for r in rows))
    val = {(r["policy"], r["fp4_fraction"]): r["value"] for r in rows}
    metric = rows[0]["metric"] if rows else ""
    lines = [f"| {metric} | " + " | ".join(f"{f:.0%} FP4" for f in fr) + " |",
             "|---|" + "---:|" * len(fr)]
    for p in pols:
        lines.append(f"| {p} | " + " | ".join(
            "–" if (p, f) not in val else f"{val[(p, f)]:.5g}" for f in fr) + " |")
    return "\n".join(lines)


def _load_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"cannot read {path}: {e}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mpgen.studies.model_energy",
                                 description="FGMP block-precision mix, model-level energy and "
                                             "quality curve on real models")
    ap.add_argument("--model", default="minilm", help=f"comma-separated subset of {study.MODELS}")
    ap.add_argument("--fraction", type=float, default=0.7, help="target NVFP4 fraction (0.7)")
    ap.add_argument("--policy", default="fgmp", choices=POLICY_KINDS)
    ap.add_argument("--clip", action="store_true", help="sensitivity-weighted clipping of weights")
    ap.add_argument("--energy", type=Path, help="EnergyReport JSON of the dot-product unit "
                    "(modes fp4xfp4 ... fp8xfp8, energy_per_op per block pair)")
    ap.add_argument("--classifier-energy", type=Path, help="EnergyReport JSON of the classifier "
                    "(mode 'classify', energy per block)")
    ap.add_argument("--quality", action="store_true", help="also print the quality curve "
                    "(CURVE_SETTINGS, ~3.5 min for MiniLM on 2 busy cores)")
    ap.add_argument("--quick", action="store_true", help="mode mix with CURVE_SETTINGS instead of "
                    "the study's settings")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=INT",
                    help="override a StudySettings field (e.g. minilm_eval_texts=8) for the mix "
                    "and the quality curve; repeatable")
    ap.add_argument("--json", type=Path, help="write {'model_energy': [...], 'quality': [...], "
                    "'mixes': [...]} here")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--models", metavar="DIR", type=Path, default=None,
                    help="folder with stories260K.bin (default: $MPGEN_MODELS)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    energies = unit = e_cls = None
    if a.energy:
        energies, unit = energies_from_report(_load_json(a.energy))
    if a.classifier_energy:
        cls, cunit = energies_from_report(_load_json(a.classifier_energy), modes=("classify",))
        if unit is not None and cunit != unit:
            raise SystemExit(f"energy units differ: dot product {unit}, classifier {cunit}")
        e_cls = cls["classify"]
    over = {}
    fields = set(asdict(study.StudySettings()))
    for item in a.set:
        k, sep, v = item.partition("=")
        if not sep or k.strip() not in fields:
            raise SystemExit(f"--set {item!r}: expected FIELD=INT with FIELD one of {sorted(fields)}")
        try:
            over[k.strip()] = int(v)
        except ValueError:
            raise SystemExit(f"--set {item!r}: {v!r} is not an int")
    settings = replace(CURVE_SETTINGS if a.quick else study.StudySettings(), **over)
    curve_settings = replace(CURVE_SETTINGS, **over)
    mixes, energy_rows, quality, parts = [], [], [], []
    for m in (s.strip() for s in a.model.split(",") if s.strip()):
        try:
            mixes.append(mode_mix(m, a.fraction, policy=a.policy, clip=a.clip, settings=settings,
                                  cache_dir=a.cache_dir, progress=not a.quiet,
                                  models_dir=a.models))
        except (FileNotFoundError, ImportError) as e:
            parts.append(f"{m}: skipped ({e})\n")
            continue
        if energies is not None:
            energy_rows.append(model_energy(mixes[-1], energies, classifier_energy_per_block=e_cls,
                                            energy_unit=unit))
        if a.quality:
            quality.extend(quality_curve(m, clip=a.clip, settings=curve_settings,
                                         cache_dir=a.cache_dir, progress=not a.quiet,
                                         models_dir=a.models))
    if mixes:
        parts.append("Block products per precision pairing (weight × activation):\n\n"
                     + format_mix_table(mixes) + "\n")
    if energy_rows:
        parts.append("Model-level matmul energy (FGMP mix vs the same block products all FP8×FP8):"
                     "\n\n" + format_energy_table(energy_rows) + "\n")
    for m in dict.fromkeys(r["model"] for r in quality):
        parts.append(f"Quality vs FP4 fraction, {m}:\n\n"
                     + format_quality_table([r for r in quality if r["model"] == m]) + "\n")
    print("\n".join(parts))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"mixes": mixes, "model_energy": energy_rows, "quality": quality},
                                     indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
