"""flows/report.py: Markdown report with figures, from synthetic report data.

No synthesis or simulation here: the data dict holds what the CLI assembles: typed engine
records (:mod:`mpgen.flows.records`, built as the dataclasses and checked against their
schema), a SweepResult dict and model-level rows.
"""

from __future__ import annotations

import copy
import itertools
import json
import re

import pytest

from mpgen.flows.area import AreaReport, SubmoduleArea, area_table, submodule_groups
from mpgen.flows.records import (AreaRecord, EnergyRecord, RegressionRecord, TimingRecord,
                                 check_record, from_dict, to_dict)
from mpgen.flows.report import (FIGURES, _sweep_section, fig_area_breakdown, fig_energy_modes,
                                fig_model_energy, fig_quality, fig_sweep, figure_caption,
                                load_report_data, save_report_data, sweep_figures, units_view,
                                write_report)
from mpgen.flows.units.fineq_report import fig_vs_baselines as fig_fineq_vs_baselines

META = {"mpgen": "0.1.0", "python": "3.11.9", "yosys": "Yosys 0.70 (git sha1 28ba3cb92, Release)",
        "verilator": "5.036", "cocotb": "2.0.1", "amaranth": "0.5.8", "torch": "2.13.0",
        "matplotlib": "3.11.2", "liberty": None, "date": "2026-11-23T23:00:00+00:00",
        "command": "mpgen run --output out"}

DOTPROD_GROUPS = {"multipliers": ["lanes_*"], "adder tree": ["tree_*"], "block scale & term": ["scale_decode", "scale", "to_term"],
                  "accumulator": ["accumulator"], "control & pipeline": ["(top)"]}
FINEQ_GROUPS = {"decoders": ["decoder_*"], "PEs": ["pe_*"], "control & pipeline": ["(top)"]}
GROUPS = {"dotprod": DOTPROD_GROUPS, "fineq": FINEQ_GROUPS}  # as in the units' specs


def _area(top: str, subs: dict[str, float], *, flat: float, um2: float | None = None) -> dict:
    flat = round(sum(subs.values()), 4)  # one hierarchical synthesis: the total is the sum
    submodules = {name: SubmoduleArea(cells=int(n2 / 1.3), nand2_eq=n2, transistors=int(4 * n2),
                                      area_um2=None if um2 is None else round(n2 * 7.2576, 4))
                  for name, n2 in subs.items()}
    rep = AreaReport(top=top, cells=int(flat / 1.3), nand2_eq=flat, transistors=int(4 * flat),
                     cells_by_type={"$_NAND_": int(flat / 2)}, hier_nand2_eq=round(sum(subs.values()), 4),
                     submodules=submodules, synth_seconds=1.5, yosys=META["yosys"])
    if um2 is not None:
        rep.liberty, rep.area_um2, rep.lib_nand2_eq = "/x/sg13g2_stdcell_typ.lib", um2, round(um2 / 7.2576, 2)
        rep.nand2_cell, rep.nand2_area_um2 = "sg13g2_nand2_1", 7.2576
    return rep.to_dict()


def _regression(vectors: int, mismatches: int = 0) -> dict:
    return {"verilator": {"simulator": "verilator", "quick": True, "seed": 1, "vectors": vectors,
                          "mismatches": mismatches, "passed": mismatches == 0, "seconds": 12.34,
                          "details": {}}}


def _energy(unit: str, config: str, modes: dict[str, float], eunit: str = "GEU",
            op_name: str = "block pair") -> dict:
    return {"unit": unit, "config": config, "params": {}, "energy_unit": eunit, "liberty": None,
            "netlist_cells": 9000, "tools": {}, "seconds": 3.0,
            "modes": {m: {"energy_per_op": e, "op_name": op_name, "ops": 256, "cycles": 300,
                          "toggles": 123456, "mismatches": 0, "source": "synthetic",
                          "breakdown": {"internal": 0.5 * e, "switching": 0.3 * e, "clock": 0.2 * e}}
                      for m, e in modes.items()}}


def _sweep() -> dict:
    """12 points: block_size × organisation × pipeline, one error row, energy_per_op by mode."""
    grid = {"block_size": [8, 16, 32], "organisation": ["split", "shared"], "pipeline": [1, 2]}
    rows = []
    for i, (bs, org, pipe) in enumerate(itertools.product(*grid.values())):
        n2 = 1000.0 * bs + (1500.25 if org == "split" else 0.0) + 100.5 * pipe
        row = {"unit": "dotprod", "params": {"block_size": bs, "organisation": org, "pipeline": pipe},
               "status": "ok", "cells": int(n2 / 1.5), "nand2_eq": n2, "transistors": int(4 * n2),
               "area_um2": None, "lib_nand2_eq": None, "logic_depth": 100 + 10 * bs // 8 - 20 * pipe,
               "energy_per_op": {"fp4xfp4": 0.01 * n2, "fp8xfp8": 0.02 * n2},
               "energy_unit": "GEU", "simulator": "verilator", "vectors": 7684, "mismatches": 0,
               "regression_passed": True, "seconds_total": 10.0 + i, "cached": False,
               "error_stage": None, "error": None}
        if (bs, org, pipe) == (32, "shared", 2):
            row.update(status="error", error_stage="area", error="YosysError: boom", nand2_eq=None,
                       cells=None, logic_depth=None, energy_per_op=None)
        rows.append(row)
    return {"unit": "dotprod", "grid": grid, "liberty": None, "flow_version": 1, "points": 12,
            "computed": 12, "errors": 1, "seconds": 99.0, "energy_note": None, "rows": rows}


def make_data() -> dict:
    dot = {
        "fp8-only": ({"formats": "fp8"}, {"lanes_e4m3": 6000.0, "tree_e4m3": 3000.0, "scale": 900.0,
                                          "accumulator": 700.0, "(top)": 400.0}, 10500.0),
        "mixed-split": ({"formats": "mixed", "organisation": "split"},
                        {"lanes_e4m3": 6000.0, "lanes_e2m1": 1200.0, "tree_e4m3": 3000.0,
                         "tree_e2m1": 800.0, "scale": 900.0, "accumulator": 700.0, "(top)": 600.0},
                        13012.5),
    }
    units: dict = {"dotprod": {}, "fineq": {}}
    for name, (params, subs, flat) in dot.items():
        modes = ({"fp8xfp8": 120.0} if params["formats"] == "fp8"
                 else {"fp4xfp4": 40.0, "fp4xfp8": 75.0, "fp8xfp4": 76.0, "fp8xfp8": 125.0})
        units["dotprod"][name] = {"params": params, "area": _area("dotprod", subs, flat=flat),
                                  "regression": _regression(4242), "energy": _energy("dotprod", name, modes)}
    fineq = {"fineq-8x8": ({"rows": 8, "cols": 8, "pe": "temporal", "coding": "unary"}, 3100.0, 2.0),
             "w4a8-8x8": ({"rows": 8, "cols": 8, "pe": "multiplier", "weight_bits": 4}, 4200.0, 3.1),
             "w8a8-8x8": ({"rows": 8, "cols": 8, "pe": "multiplier", "weight_bits": 8}, 7300.0, 4.0)}
    for name, (params, total, mac) in fineq.items():
        subs = {"pe_0_0": total * 0.7, "(top)": total * 0.3}
        if params["pe"] == "temporal":
            subs = {"decoder_0": total * 0.1, **{k: v * 0.9 for k, v in subs.items()}}
        units["fineq"][name] = {"params": params, "regression": _regression(512),
                                "area": _area("fineq", subs, flat=total, um2=round(total * 7.1, 2)),
                                "energy": _energy("fineq", name, {"mac": mac}, "GEU", "MAC")}
    quality = [{"model": m, "policy": p, "fp4_fraction": f, "metric": "perplexity",
                "value": 10.0 + (2.0 if p == "random" else 1.0) * f + (5 if m == "stories260K" else 0)}
               for m in ("stories260K", "minilm") for p in ("fgmp", "random") for f in (0.0, 0.5, 0.9)]
    for r in quality:
        r.update(metric_key="ppl", float_value=15.0 if r["model"] == "stories260K" else 10.0, clip=False)
    # Rows as flows/model_energy.model_energy writes them (fractions, not percent).
    model_energy = [{"model": m, "policy": "FGMP", "fp4_fraction": f, "energy_unit": "GEU",
                     "block_products": 1000, "fp4xfp4_fraction": f * f, "energy_fgmp": 100.0 * (1 - 0.2 * f),
                     "energy_fp8": 100.0, "saving_vs_fp8": 0.2 * f,
                     "saving_vs_fp8_with_classifier": None if m == "minilm" and f == 0.5 else 0.2 * f - 0.01,
                     "paper_saving": 0.14}
                    for m in ("stories260K", "minilm") for f in (0.5, 0.9)]
    return {"meta": dict(META), "records": records_from(units),
            "sweeps": [_sweep()], "model_energy": model_energy, "quality": quality}


def records_from(units: dict) -> list[dict]:
    """The typed records (as JSON objects) of ``{unit: {config: {params, area, regression,
    energy}}}`` built with the record dataclasses, so the data follows the records' schema."""
    out = []
    for unit, configs in units.items():
        for config, e in configs.items():
            base = {"unit": unit, "config": config, "params": e.get("params") or {}}
            for sim, r in (e.get("regression") or {}).items():
                out.append(RegressionRecord(**base, simulator=sim, quick=r["quick"], seed=r["seed"],
                                            vectors=r["vectors"], mismatches=r["mismatches"],
                                            passed=r["passed"], seconds=r["seconds"]))
            if e.get("area"):
                a = AreaReport.from_dict(e["area"])
                out.append(AreaRecord(
                    **base, cells=a.cells, nand2_eq=a.nand2_eq, transistors=a.transistors,
                    area_um2=a.area_um2, liberty=a.liberty, nand2_cell=a.nand2_cell,
                    nand2_area_um2=a.nand2_area_um2,
                    submodules={k: vars(v) for k, v in a.submodules.items()},
                    cells_by_type=a.cells_by_type, yosys=a.yosys, seconds=a.synth_seconds))
            for mode, m in ((e.get("energy") or {}).get("modes") or {}).items():
                geu = e["energy"]["energy_unit"] == "GEU"
                out.append(EnergyRecord(
                    **base, mode=mode, op_name=m["op_name"], ops=m["ops"],
                    energy_geu_per_op=m["energy_per_op"] if geu else None,
                    energy_pj_per_op=None if geu else m["energy_per_op"],
                    breakdown_per_op=m["breakdown"], cycles=m["cycles"], vectors=m["ops"],
                    mismatches=m["mismatches"], source=m["source"],
                    netlist_cells=e["energy"]["netlist_cells"]))
    return [to_dict(r) for r in out]


def drop(data: dict, unit: str, kind: str | None = None) -> None:
    """Remove *unit*'s records (of one *kind*, or all) from *data*."""
    data["records"] = [r for r in data["records"]
                       if not (r["unit"] == unit and kind in (None, r["kind"]))]


def test_records_follow_their_schema():
    records = make_data()["records"]
    assert {r["kind"] for r in records} == {"regression", "area", "energy"}
    for r in records:
        assert from_dict(r) == from_dict(json.loads(json.dumps(r)))
        check_record(r)
    bad = dict(records[0], vectorz=1)
    with pytest.raises(ValueError, match="unknown fields"):
        check_record(bad)
    with pytest.raises(ValueError, match="schema"):
        check_record(dict(records[0], schema=99))
    with pytest.raises(ValueError, match="unknown record kind"):
        check_record(dict(records[0], kind="nope"))


def test_schema_1_energy_records_are_read_as_dynamic_energy():
    (e,) = [r for r in make_data()["records"] if r["kind"] == "energy"][:1]
    old = {k: v for k, v in e.items() if k not in (
        "dynamic_pj_per_op", "leakage_pj_per_op", "leakage_mw", "clock_ns", "clock_gating",
        "power_mw", "gops_per_w", "corner", "simulator")}
    old["schema"] = 1
    rec = from_dict(old)
    assert rec.dynamic_pj_per_op == old["energy_pj_per_op"] and rec.leakage_pj_per_op is None


EXPECTED = ["area_breakdown", "energy_modes", "fineq_vs_baselines", "quality_vs_fp4", "model_energy",
            "sweep1_dotprod_block_size", "sweep1_dotprod_organisation", "sweep1_dotprod_pipeline"]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    data = make_data()
    path = write_report(data, out, title="synthetic report")
    return data, out, path, path.read_text()


def test_every_figure_written_and_referenced(full_report):
    data, out, path, md = full_report
    assert path == out / "report.md"
    for name in EXPECTED:
        png, svg = out / "figures" / f"{name}.png", out / "figures" / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert b"<svg" in svg.read_bytes()[:2000], name
        assert f"](figures/{name}.png)" in md and f"(figures/{name}.svg)" in md, name
    assert sorted(p.stem for p in (out / "figures").glob("*.png")) == sorted(EXPECTED)
    assert "left out" not in md  # every figure had its data
    assert md.startswith("# synthetic report\n")


def test_captions_in_figures_and_markdown(full_report):
    data, out, _, md = full_report
    import matplotlib
    tools = ["mpgen 0.1.0", "yosys 0.70", "verilator 5.036", "cocotb 2.0.1", "amaranth 0.5.8",
             "torch 2.13.0", f"matplotlib {matplotlib.__version__}", "liberty: generic NAND2-eq"]
    figs = {name: fn(data) for name, (fn, _, _) in FIGURES.items()}
    figs.update({n: f for n, f, _ in sweep_figures(data)})
    figs["fineq_vs_baselines"] = fig_fineq_vs_baselines(data)  # the fineq unit's own figure
    assert sorted(figs) == sorted(EXPECTED)
    for name, fig in figs.items():
        caption = figure_caption(fig)
        for t in tools:
            assert t in caption, (name, t)
        assert f"*{caption}*" in md, name  # the same caption under the image
        svg = (out / "figures" / f"{name}.svg").read_text()
        # Text is drawn as glyph paths; matplotlib keeps each string as an XML comment beside them.
        drawn = " ".join(" ".join(re.findall(r"<!--(.*?)-->", svg, re.S)).split())
        assert "verilator 5.036" in drawn and "amaranth 0.5.8" in drawn, name


def test_caption_text_is_drawn_inside_figure(full_report):
    data, *_ = full_report
    fig = fig_energy_modes(data)
    texts = [t.get_text() for t in fig.texts]
    assert any("cocotb 2.0.1" in t and "amaranth 0.5.8" in t for t in texts)
    # It sits below every axes (bottom strip of the figure).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    cap = next(t for t in fig.texts if "cocotb" in t.get_text())
    cap_top = cap.get_window_extent(renderer).y1
    assert all(ax.get_tightbbox(renderer).y0 >= cap_top - 1 for ax in fig.axes if ax.get_visible())


def test_caption_names_liberty_when_given():
    data = make_data()
    data["meta"]["liberty"] = "/opt/pdk/sg13g2_stdcell_typ_1p20V_25C.lib"
    cap = figure_caption(fig_area_breakdown(data))
    assert "liberty: sg13g2_stdcell_typ_1p20V_25C.lib" in cap
    assert "generic NAND2-eq" not in cap.split("Tools:")[1]


def test_deterministic_output(tmp_path, full_report):
    data, out, _, md = full_report
    again = write_report(copy.deepcopy(data), tmp_path, title="synthetic report")
    assert again.read_text() == md
    for name in EXPECTED:
        assert (tmp_path / "figures" / f"{name}.svg").read_bytes() == \
            (out / "figures" / f"{name}.svg").read_bytes(), name
        assert (tmp_path / "figures" / f"{name}.png").read_bytes() == \
            (out / "figures" / f"{name}.png").read_bytes(), name
    svg = (out / "figures" / "area_breakdown.svg").read_text()
    assert "<dc:date>" not in svg


def test_tables_match_data(full_report):
    data, _, _, md = full_report
    # Sweep: a point's NAND2-eq, its energy and the error row.
    row = data["sweeps"][0]["rows"][3]  # block_size 8, shared, pipeline 2
    assert row["params"] == {"block_size": 8, "organisation": "shared", "pipeline": 2}
    line = next(ln for ln in md.splitlines() if ln.startswith("| 8 | shared | 2 |"))
    assert f"{row['nand2_eq']:,.1f}" in line and "8,201.0" in line
    assert f"{row['energy_per_op']['fp8xfp8']:,.4g}" in line and "164" in line
    assert "error (area): YosysError: boom" in md
    # Area tables are area_table's, with the unit's groups.
    for unit in ("dotprod", "fineq"):
        reports = {c: AreaReport.from_dict(e["area"]) for c, e in units_view(data)[unit].items()}
        assert area_table(reports, GROUPS[unit]) in md
    assert "| fp8-only | 8,461 | 11,000.0 |" in md
    # Regression table.
    assert "| dotprod | mixed-split | verilator | 4,242 | 0 | PASS | 12.3 |" in md
    # Energy table: the value and its internal share.
    assert re.search(r"\| dotprod \| mixed-split \| fp4xfp8 \| block pair \| 75 \| GEU \| 37\.5 \| 22\.5 \| 15 \|", md)
    # Model energy (fractions shown as percent) and quality rows.
    assert "| minilm | FGMP | 90.0 % | GEU | 1,000 | 81.0 % | 82 | 100 | 18.0 % | 17.0 % | 14.0 % |" in md
    assert "| minilm | FGMP | 50.0 % | GEU | 1,000 | 25.0 % | 90 | 100 | 10.0 % | – | 14.0 % |" in md
    assert "| stories260K | fgmp | 50.0 % | perplexity | 15.5 | ppl | 15 | no |" in md
    # Meta header.
    assert "- Date: 2026-11-23T23:00:00+00:00" in md and "`mpgen run --output out`" in md


def test_area_breakdown_uses_groups(full_report):
    data, *_ = full_report
    fig = fig_area_breakdown(data)
    labels = [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
    for g in list(DOTPROD_GROUPS) + list(FINEQ_GROUPS):
        assert g in labels
    # The stacked segments of mixed-split sum to its hierarchical total.
    ax = fig.axes[0]
    y_mixed = 0  # configs are drawn top to bottom: fp8-only at y=1, mixed-split at y=0
    widths = [p.get_width() for p in ax.patches if abs(p.get_y() + p.get_height() / 2 - y_mixed) < 1e-9]
    hier = AreaReport.from_dict(units_view(data)["dotprod"]["mixed-split"]["area"]).hier_nand2_eq
    assert sum(widths) == pytest.approx(hier)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "13,200.0 NAND2-eq" in texts
    assert any("(22,010.0 µm²)" in t for t in texts)  # fineq-8x8 has a Liberty area
    owner = submodule_groups({c: AreaReport.from_dict(e["area"]) for c, e in units_view(data)["dotprod"].items()},
                             DOTPROD_GROUPS)
    assert owner["lanes_e2m1"] == "multipliers" and owner["(top)"] == "control & pipeline"


def test_sweep_figure_lines_and_error_rows(full_report):
    data, *_ = full_report
    sweep = data["sweeps"][0]
    fig = fig_sweep(sweep, "block_size", data)
    area_ax = fig.axes[0]
    assert area_ax.get_ylabel() == "NAND2-eq"
    lines = area_ax.get_lines()
    assert len(lines) == 4  # organisation × pipeline
    pts = sorted((tuple(l.get_xdata()), tuple(l.get_ydata())) for l in lines)
    assert ((8, 16, 32), (8100.5, 16100.5, 32100.5)) in [(tuple(map(int, x)), y) for x, y in pts]
    # The error row (32, shared, 2) is skipped: that line has two points.
    assert sorted(len(l.get_xdata()) for l in lines) == [2, 3, 3, 3]
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["area", "logic depth", "energy per op by mode"]
    assert "(GEU)" in fig.axes[2].get_ylabel()
    assert "1 error row skipped" in figure_caption(fig)
    # Categorical parameter on the x axis.
    fig2 = fig_sweep(sweep, "organisation", data)
    assert [t.get_text() for t in fig2.axes[0].get_xticklabels()] == ["split", "shared"]
    assert fig_sweep(sweep, "no_such_param", data) is None


def test_sweep_old_energy_key():
    """Rows from before the rename carry energy_pj_per_op (picojoules)."""
    data = make_data()
    for r in data["sweeps"][0]["rows"]:
        e = r.pop("energy_per_op")
        r.pop("energy_unit")
        r["energy_pj_per_op"] = e
    fig = fig_sweep(data["sweeps"][0], "pipeline", data)
    assert fig.axes[-1].get_ylabel() == "energy per op (pJ)"
    md = "\n".join(_sweep_section(data))
    assert "fp8xfp8 (pJ/op)" in md and "| 8 | shared | 2 | ok | 8,201.0 | 70 | 82.01 | 164 |" in md


def test_fineq_ratios_vs_w8a8(full_report):
    data, *_ = full_report
    fig = fig_fineq_vs_baselines(data)
    area_ax, energy_ax = fig.axes
    assert area_ax.get_ylabel() == "area (µm²)"  # every fineq config has a Liberty area
    texts = [t.get_text() for t in area_ax.texts]
    assert any(t.startswith("22,010.0") and f"{3100 * 7.1 / (7300 * 7.1):.2f}× W8A8" in t for t in texts)
    etexts = [t.get_text() for t in energy_ax.texts]
    assert any("2.00× eff." in t for t in etexts)  # 4.0 / 2.0
    assert "1.79×" in energy_ax.get_legend().get_texts()[0].get_text()
    ref = [l for l in energy_ax.get_lines() if l.get_linestyle() == "--"]
    assert len(ref) == 1 and ref[0].get_ydata()[0] == pytest.approx(4.0 / 1.79)
    assert "1.79" in figure_caption(fig)


def test_quality_and_model_energy_figures(full_report):
    data, *_ = full_report
    fig = fig_quality(data)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert sorted(ax.get_title(loc="left") for ax in visible) == ["minilm", "stories260K"]
    for ax in visible:
        assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["fgmp", "float model", "random"]
        assert ax.get_ylabel() == "perplexity"
    fig = fig_model_energy(data)
    ax = fig.axes[0]
    ref = [l for l in ax.get_lines() if l.get_linestyle() == "--"]
    assert [l.get_ydata()[0] for l in ref] == [pytest.approx(14.0)]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert 18.0 in heights and 17.0 in heights  # 0.2 × 0.9 and that minus 1 point, in percent
    assert len(heights) == 8 and heights.count(0.0) == 1  # the missing classifier saving
    assert "n/a" in [t.get_text() for t in ax.texts]


def test_model_energy_tolerant_rows():
    data = {"meta": META, "model_energy": [{"model": "m", "saving_vs_fp8": 12.0, "note": "x"}]}
    fig = fig_model_energy(data)  # percent-scale savings, no fp4_fraction, no paper column
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [12.0]
    assert [l.get_ydata()[0] for l in ax.get_lines() if l.get_linestyle() == "--"] == [pytest.approx(14.0)]
    assert fig_model_energy({"model_energy": [{"model": "m"}]}) is None


def test_missing_data_skips_figures(tmp_path):
    data = make_data()
    del data["quality"], data["sweeps"], data["model_energy"]
    drop(data, "dotprod", "energy")
    drop(data, "fineq")
    md = write_report(data, tmp_path).read_text()
    written = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert written == ["area_breakdown.png", "area_breakdown.svg"]
    for name in ("energy_modes", "quality_vs_fp4", "model_energy", "sweeps"):
        line = next(ln for ln in md.splitlines() if f"(`{name}`)" in ln)
        assert "omitted, no data: needs" in line
    assert 'data["quality"]' in md and "## Model quality" not in md and "## Sweeps" not in md
    assert "## Energy per operation" not in md and "](figures/area_breakdown.png)" in md
    for fn in (fig_energy_modes, fig_fineq_vs_baselines, fig_quality, fig_model_energy):
        assert fn(data) is None


def test_empty_data_still_writes_report(tmp_path):
    md = write_report({}, tmp_path).read_text()
    assert md.startswith("# mpgen report")
    assert md.count("omitted, no data") == 5  # units' own figures only come with their data
    assert not list((tmp_path / "figures").iterdir())
    with pytest.raises(TypeError):
        write_report([1, 2], tmp_path)


def test_ungrouped_submodule_falls_back(tmp_path):
    data = make_data()
    data["area_groups"] = {"dotprod": {"multipliers": ["lanes_*"]}}  # misses tree_*, scale, ...
    del data["sweeps"], data["quality"], data["model_energy"]
    drop(data, "fineq")
    md = write_report(data, tmp_path).read_text()
    assert "do not cover every submodule" in md
    assert "tree_e4m3 NAND2-eq" in md  # one column per submodule
    assert "tree_e4m3" in [t.get_text() for t in fig_area_breakdown(data).axes[0].get_legend().get_texts()]


def test_json_round_trip(tmp_path):
    data = make_data()
    path = save_report_data(data, tmp_path / "sub" / "report_data.json")
    assert load_report_data(path) == json.loads(json.dumps(data))
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ValueError, match="JSON object"):
        load_report_data(tmp_path / "bad.json")


def test_claims_table_next_to_the_papers(tmp_path):
    """The headline ratios are computed from the data: FP4×FP4 vs FP8×FP8, the classifier per
    block (raw and amortised over the model's reuse), FineQ vs W8A8 per MAC, FGMP model saving."""
    data = make_data()
    data["records"] += records_from({"classifier": {"bf16": {
        "params": {}, "energy": _energy("classifier", "bf16", {"classify": 250.0}, op_name="block")}}})
    for r in data["model_energy"]:
        r["activation_blocks"] = 10
    text = write_report(data, tmp_path).read_text()
    claims = text[text.index("## The papers' claims"):text.index("## Regression")]
    assert "| dotprod/mixed-split: FP4×FP4 vs FP8×FP8 block pair | 40 vs 125 GEU (68% less) |" in claims
    # 250 / 125 = 2× per block; each activation block feeds 1000 / 10 = 100 block pairs: 2 %
    assert "250 vs 125 GEU (2.00× per block; amortised over the 100–100 block pairs" in claims
    assert "2.00%–2.00%" in claims
    assert "| fineq/fineq-8x8 vs w8a8-8x8, energy per MAC | 2 vs 4 GEU (2.00× efficiency) | up to 1.79× (FineQ) |" in claims
    assert "18.0% less energy (17.0% with the classifier)" in claims  # stories260K at 90 %
    bare = write_report({"meta": dict(META)}, tmp_path / "bare").read_text()
    assert "papers' claims" not in bare


def test_timing_section_lists_every_timed_configuration(tmp_path):
    data = make_data()
    base = {"unit": "dotprod", "params": {}}
    path = {"group": "reg-to-reg", "start": "a_q", "end": "acc (D)", "arrival_ns": 9.9,
            "setup_ns": 0.1, "required_period_ns": 10.0, "steps": []}
    data["records"] += [to_dict(TimingRecord(**base, config="mixed-split", critical_path_ns=10.0,
                                             fmax_mhz=100.0, critical_group="reg-to-reg",
                                             paths=[path], corner="typ (1.2 V)", area_um2=1000.0)),
                        to_dict(TimingRecord(**base, config="fp8-only", critical_path_ns=6.0,
                                             fmax_mhz=166.67, clock_ns=5.0, slack_ns=-1.0,
                                             closes=False, area_um2=900.0))]
    md = write_report(data, tmp_path).read_text()
    section = md[md.index("## Timing"):]
    section = section[:section.index("\n## ", 5)]
    assert "typ (1.2 V)" in section and "a_q → acc (D)" in section
    assert "| dotprod | mixed-split | 10.000 | 100.0 | – | – | – | 1,000.0 | reg-to-reg |" in section
    assert "| dotprod | fp8-only | 6.000 | 166.7 | 5.00 | -1.000 | no | 900.0 |" in section


def test_sweep_table_shows_timing_when_the_points_have_it():
    """Sweep points timed against a Liberty file carry their critical path and fmax into the
    table; untimed sweeps keep the table without those columns."""
    data = make_data()
    assert "fmax MHz" not in "\n".join(_sweep_section(data))
    for r in data["sweeps"][0]["rows"]:
        r.update(critical_path_ns=12.11, fmax_mhz=82.58)
    md = "\n".join(_sweep_section(data))
    assert "| critical path ns | fmax MHz |" in md
    assert "| 8 | shared | 2 | ok | 8,201.0 | 70 | 12.11 | 82.6 |" in md


def test_claims_amortise_the_classifier_over_a_16x16_array(tmp_path):
    """With both areas in the data, the classifier is set against the 16×16 array of mixed-split
    units it serves: area against 256 units, energy per block against the 16 pairs it feeds."""
    data = make_data()
    data["records"] += records_from({"classifier": {"bf16": {
        "params": {}, "area": _area("classifier", {"score_acc": 32000.0, "(top)": 768.0}, flat=0.0),
        "energy": _energy("classifier", "bf16", {"classify": 250.0}, op_name="block")}}})
    text = write_report(data, tmp_path).read_text()
    claims = text[text.index("## The papers' claims"):text.index("## Regression")]
    # 32,768 / (256 × 13,200) = 0.97 %; 250 / (16 × 125) = 12.5 %
    assert ("| one classifier per 16×16 array of mixed-split dot-product units | area 32,768 vs "
            "256 × 13,200 NAND2-eq (0.97%); energy per block vs the 16 FP8×FP8 block pairs it "
            "feeds in one pass: 12.5% | minimal overhead (FGMP) |") in claims
