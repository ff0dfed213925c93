"""The mpgen report: one Markdown file with tables and figures (PNG + SVG).

    write_report(data, out_dir) → out_dir/report.md, out_dir/figures/<name>.png|.svg

*data* is the report-data dict the CLI assembles (:mod:`mpgen.flows.report_data`)::

    {"meta": {"mpgen", "python", "yosys", "verilator", "cocotb", "amaranth", "torch",
              "matplotlib", "liberty", "date", "command"},
     "records": [typed record dicts (mpgen.flows.records, docs/records.md), ...],
     "sweeps": [SweepResult.to_dict(), ...],
     "model_energy": [row, ...], "quality": [row, ...], "notes": [str, ...]}

(Older report data with ``"units"`` and ``"area_groups"`` instead of ``"records"`` still
renders.)  The report names no unit: breakdown groups, claims and any figures of a unit's own
come from its :class:`~mpgen.flows.units.UnitSpec`.

Every key is optional: a table or figure whose data is absent is left out and the report says
which one and why.  Each figure is built by a function ``fig_<name>(data) -> Figure | None``
(:data:`FIGURES`; sweeps give one figure per swept parameter, :func:`sweep_figures`) and carries a
caption at its bottom (what it shows, the configuration and the tool versions); the same caption
is written under the image in the Markdown (:func:`figure_caption` reads it back from a figure).

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg renderer and never
touch pyplot's global state, so the report works headless and inside other programs.  Output
is deterministic: the same *data* gives byte-identical PNG, SVG and Markdown files (fixed SVG
hash salt, no dates or software tags in the file metadata; the report's date comes from
``data["meta"]["date"]``, never from the clock).
"""

from __future__ import annotations

import json
import math
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .area import AreaReport, area_table, submodule_groups
from .engine import area_report, energy_report
from .records import AreaRecord, EnergyRecord, RegressionRecord, TimingRecord, from_dict
from .units import UnitSpec, get_unit, resolve

__all__ = [
    "FIGURES",
    "PAPER_FGMP_SAVING",
    "write_report",
    "load_report_data",
    "save_report_data",
    "figure_caption",
    "sweep_figures",
    "fig_area_breakdown",
    "fig_sweep",
    "fig_energy_modes",
    "units_view",
    "area_reports",
    "energy_of",
    "fmt",
    "fmt_energy",
    "md_table",
    "new_figure",
    "finish",
    "color",
    "params_text",
    "tools_line",
    "is_number",
    "fig_quality",
    "fig_model_energy",
]

#: FGMP paper (Hooper et al. 2025): 14 % less energy than FP8 at about 1 % perplexity loss.
PAPER_FGMP_SAVING = 0.14

#: Tools named in every caption, in this order.
CAPTION_TOOLS = ("mpgen", "yosys", "verilator", "cocotb", "amaranth", "torch", "matplotlib")

#: Energy components stacked in the energy figure, in this order (EnergyReport breakdown keys).
ENERGY_PARTS = ("internal", "switching", "clock")

_LINESTYLES = ("-", "--", ":", "-.")
_GEU_NOTE = "1 GEU = one output toggle of a NAND2 driving one NAND2 input"
_CAPTION_GID = "mpgen-caption"
_CAPTION_PT = 6.5
_SVG_SALT = "mpgen-report"
_PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3",
            "#8C8C8C", "#CCB974", "#64B5CD")


# --------------------------------------------------------------------------- JSON helpers


def save_report_data(data: Mapping, path: Path | str) -> Path:
    """Write *data* as JSON (paths and other non-JSON values become strings); return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return p


def load_report_data(path: Path | str) -> dict:
    """Read report data written by :func:`save_report_data`; ``ValueError`` if it is not an object."""
    p = Path(path)
    data = json.loads(p.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{p}: report data must be a JSON object, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------- formatting


def fmt(x: Any, digits: int = 1) -> str:
    """Numbers as in :func:`mpgen.flows.area.area_table`: thousands separators, fixed decimals."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        return f"{x:,.{digits}f}"
    return str(x)


def fmt_energy(x: Any) -> str:
    """Energies span decades (GEU per op vs pJ per MAC): four significant digits."""
    if x is None:
        return "–"
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        x = float(x)
        if x == 0 or not math.isfinite(x):
            return f"{x:g}"
        return f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"
    return str(x)


def _fmt_pct(x: Any, percent_scale: bool = False) -> str:
    if x is None:
        return "–"
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return f"{x if percent_scale else 100 * x:.1f} %"
    return str(x)


def _cell(x: Any) -> str:
    """A Markdown table cell: pipes escaped, newlines flattened."""
    return str(x).replace("|", "\\|").replace("\n", " ")


def md_table(head: Sequence[str], rows: Iterable[Sequence[Any]], align: Sequence[str]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in head) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _short_version(tool: str, value: Any) -> str:
    if value is None or value == "":
        return "n/a"
    s = str(value)
    if tool == "yosys":  # "Yosys 0.70 (git sha1 ..., Release, Clang ...)" → "0.70"
        m = re.search(r"Yosys\s+(\S+)", s)
        if m:
            return m.group(1)
    return s.split()[0] if len(s) > 40 else s


def _meta(data: Mapping) -> dict:
    return dict(data.get("meta") or {})


def _liberty_name(data: Mapping) -> str:
    lib = _meta(data).get("liberty")
    return Path(str(lib)).name if lib else "generic NAND2-eq"


def tools_line(data: Mapping) -> str:
    import matplotlib

    meta = _meta(data)
    versions = []
    for tool in CAPTION_TOOLS:
        # The figure is drawn by this matplotlib, whatever the data says.
        value = matplotlib.__version__ if tool == "matplotlib" else meta.get(tool)
        versions.append(f"{tool} {_short_version(tool, value)}")
    return "Tools: " + ", ".join(versions) + f"; liberty: {_liberty_name(data)}."


def params_text(params: Mapping | None) -> str:
    if not params:
        return "defaults"
    return ", ".join(f"{k}={v}" for k, v in params.items())


# --------------------------------------------------------------------------- figure plumbing


def new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _wrap(text: str, width_in: float) -> list[str]:
    chars = max(40, int(width_in * 72 / (0.55 * _CAPTION_PT)))
    out: list[str] = []
    for para in text.split("\n"):
        out += textwrap.wrap(para, chars) or [""]
    return out


def finish(fig, caption: str):
    """Put *caption* (wrapped, small) at the bottom of *fig* and keep the axes above it."""
    width, height = fig.get_size_inches()
    lines = _wrap(caption, width - 0.2)
    caption_in = (len(lines) * _CAPTION_PT * 1.3 + 8) / 72
    fig.set_size_inches(width, height + caption_in)
    frac = caption_in / (height + caption_in)
    fig.get_layout_engine().set(rect=(0, frac, 1, 1 - frac))
    text = fig.text(0.01, 0.5 * 4 / 72 / (height + caption_in), "\n".join(lines),
                    fontsize=_CAPTION_PT, ha="left", va="bottom", color="#333333",
                    linespacing=1.3, gid=_CAPTION_GID)
    text.set_in_layout(False)
    fig._mpgen_caption = caption  # the unwrapped text, for the Markdown
    return fig


def figure_caption(fig) -> str:
    """The caption a ``fig_*`` function put on *fig* (the same text goes into the Markdown)."""
    cap = getattr(fig, "_mpgen_caption", None)
    if cap is not None:
        return cap
    for t in fig.texts:
        if t.get_gid() == _CAPTION_GID:
            return t.get_text()
    raise ValueError("figure has no mpgen caption")


def color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _save(fig, directory: Path, name: str) -> tuple[Path, Path]:
    import matplotlib

    import io

    png, svg = directory / f"{name}.png", directory / f"{name}.svg"
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": _SVG_SALT, "svg.fonttype": "path"}):
        fig.savefig(png, format="png", dpi=120, metadata={"Software": None})
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg.write_text(_canonical_svg_ids(buf.getvalue()))
    return png, svg


_SVG_ID = re.compile(r'(?<=id=")[pmh][0-9a-f]{10}(?=")|(?<=url\(#)[pmh][0-9a-f]{10}(?=\))'
                     r'|(?<=xlink:href="#)[pmh][0-9a-f]{10}(?=")')


def _canonical_svg_ids(text: str) -> str:
    """Number matplotlib's hashed clip-path/marker/hatch ids in order of appearance.  The hashes
    cover float coordinates whose last bits can differ between the first figure a process draws
    and later ones (text-metric caches), which would make re-runs differ in ids only."""
    names: dict[str, str] = {}

    def rename(m: re.Match) -> str:
        old = m.group(0)
        if old not in names:
            names[old] = f"{old[0]}{len(names):010x}"
        return names[old]

    return _SVG_ID.sub(rename, text)


# --------------------------------------------------------------------------- data access


def _spec(unit: str) -> UnitSpec | None:
    try:
        return get_unit(unit)
    except ValueError:  # data of a unit this installation does not have
        return None


def units_view(data: Mapping) -> dict:
    """``{unit: {config: {"params", "regression": {simulator: {...}}, "area": AreaReport dict,
    "energy": EnergyReport dict}}}`` from ``data["records"]`` (typed records, checked against
    their schema; :mod:`mpgen.flows.records`), or ``data["units"]`` of older report data."""
    if "records" not in data:
        return dict(data.get("units") or {})
    view: dict[str, dict] = {}
    energies: dict[tuple[str, str], list] = {}
    for d in data["records"]:
        rec = from_dict(d)
        entry = view.setdefault(rec.unit, {}).setdefault(
            rec.config, {"params": dict(rec.params), "regression": {}, "area": None,
                         "energy": None, "timing": None})
        if isinstance(rec, RegressionRecord):
            entry["regression"][rec.simulator] = {
                "vectors": rec.vectors, "mismatches": rec.mismatches, "passed": rec.passed,
                "seconds": rec.seconds, "quick": rec.quick, "seed": rec.seed}
        elif isinstance(rec, AreaRecord):
            entry["area"] = area_report(rec).to_dict()
        elif isinstance(rec, TimingRecord):
            entry["timing"] = {k: getattr(rec, k) for k in (
                "critical_path_ns", "fmax_mhz", "clock_ns", "slack_ns", "closes", "area_um2",
                "nand2_eq", "critical_group", "corner")}
            crit = rec.worst_path
            entry["timing"]["path"] = f"{crit['start']} → {crit['end']}" if crit else ""
        elif isinstance(rec, EnergyRecord):
            energies.setdefault((rec.unit, rec.config), []).append(rec)
    for (unit, config), recs in energies.items():
        view[unit][config]["energy"] = energy_report(recs)
    return view


def area_reports(data: Mapping, unit: str) -> dict:
    """``{config: AreaReport}`` of *unit* (configs without an area are left out)."""
    out = {}
    for config, entry in (units_view(data).get(unit) or {}).items():
        area = (entry or {}).get("area")
        if area:
            out[config] = area if isinstance(area, AreaReport) else AreaReport.from_dict(area)
    return out


def _grouping(data: Mapping, unit: str, reports: Mapping) -> tuple[dict[str, str], list[str], str]:
    """(submodule → group, group order, note) with the unit's ``area_groups``; falls back to
    one group per submodule (with a note) when a submodule matches no group."""
    spec = _spec(unit)
    groups = (data.get("area_groups") or {}).get(unit) or (spec.area_groups if spec else None)
    note = ""
    if groups:
        try:
            owner = submodule_groups(reports, groups)
            return owner, list(groups), note
        except ValueError as e:
            note = f"{unit}: area groups do not cover every submodule ({e}); one column per submodule"
    owner = submodule_groups(reports, None)
    return owner, list(dict.fromkeys(owner.values())), note


def _energy_reports(data: Mapping) -> list[tuple[str, str, dict]]:
    out = []
    for unit, configs in units_view(data).items():
        for config, entry in (configs or {}).items():
            energy = (entry or {}).get("energy")
            if energy and energy.get("modes"):
                out.append((unit, config, energy))
    return out


def _row_energy(row: Mapping, sweep: Mapping) -> tuple[dict[str, float], str | None]:
    """``({mode: energy per op}, unit)`` of a sweep row: ``energy_per_op`` + ``energy_unit``
    (current schema) or ``energy_pj_per_op`` (older rows, picojoules)."""
    e = row.get("energy_per_op")
    if isinstance(e, Mapping) and e:
        unit = row.get("energy_unit") or sweep.get("energy_unit")
        return {str(k): float(v) for k, v in e.items() if is_number(v)}, unit
    e = row.get("energy_pj_per_op")
    if isinstance(e, Mapping) and e:
        return {str(k): float(v) for k, v in e.items() if is_number(v)}, "pJ"
    return {}, None


def _swept_params(sweep: Mapping) -> list[str]:
    grid = sweep.get("grid") or {}
    return [p for p, vals in grid.items() if len(vals) > 1]


def _sweep_label(sweep: Mapping, index: int) -> str:
    return f"sweep {index + 1} ({sweep.get('unit', '?')})"


# --------------------------------------------------------------------------- figures


def fig_area_breakdown(data: Mapping):
    """Stacked horizontal bars, one per configuration and one panel per unit: the hierarchical
    NAND2-eq of each area group (``data["area_groups"]``, grouped with
    :func:`mpgen.flows.area.submodule_groups`); a diamond marks the flattened total, and the
    label gives the total in NAND2-eq and µm² (with a Liberty file).  ``None`` without areas."""
    per_unit = {u: r for u in units_view(data) if (r := area_reports(data, u))}
    if not per_unit:
        return None
    n_bars = sum(len(r) for r in per_unit.values())
    fig = new_figure(10, 1.0 + 0.42 * n_bars + 0.9 * len(per_unit))
    axes = fig.subplots(len(per_unit), 1, squeeze=False,
                        height_ratios=[len(r) + 1.5 for r in per_unit.values()])[:, 0]
    notes, lib_any = [], False
    for ax, (unit, reports) in zip(axes, per_unit.items()):
        owner, groups, note = _grouping(data, unit, reports)
        if note:
            notes.append(note)
        names = list(reports)
        y = list(range(len(names)))[::-1]
        left = [0.0] * len(names)
        for gi, group in enumerate(groups):
            widths = [sum(s.nand2_eq for sub, s in r.submodules.items() if owner[sub] == group)
                      for r in reports.values()]
            if not any(widths):
                continue
            ax.barh(y, widths, left=left, color=color(gi), label=group, height=0.6,
                    edgecolor="white", linewidth=0.5)
            left = [a + b for a, b in zip(left, widths)]
        # Reports without a breakdown: the flat total as one neutral segment.
        bare = [(yy, r.nand2_eq) for yy, r in zip(y, reports.values()) if not r.submodules]
        if bare:
            ax.barh([b[0] for b in bare], [b[1] for b in bare], color="#BBBBBB", height=0.6,
                    label="(no breakdown)")
            for yy, v in bare:
                left[y.index(yy)] = v
        ax.scatter([r.nand2_eq for r in reports.values()], y, marker="D", s=18, color="black",
                   zorder=3, label="flat total")
        xmax = max(max(left), max(r.nand2_eq for r in reports.values()))
        for yy, r, end in zip(y, reports.values(), left):
            label = f"{fmt(r.nand2_eq)} NAND2-eq"
            if r.area_um2 is not None:
                lib_any = True
                label += f" ({fmt(r.area_um2)} µm²)"
            ax.text(max(end, r.nand2_eq) + 0.01 * xmax, yy, label, va="center", fontsize=7)
        ax.set_xlim(0, xmax * 1.3)
        ax.set_yticks(y, names, fontsize=8)
        ax.set_xlabel("NAND2-eq")
        ax.set_title(f"{unit}: area breakdown", fontsize=10, loc="left")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        ax.grid(axis="x", alpha=0.3)
    units_txt = "; ".join(f"{u}: " + ", ".join(f"{c} ({params_text(units_view(data)[u][c].get('params'))})"
                                               for c in r) for u, r in per_unit.items())
    cap = ("Area breakdown per unit. Segments: NAND2-eq of the unit's area groups from the "
           "hierarchical Yosys synthesis (fnmatch groups; '(top)' = the top module's glue logic); "
           "diamond: the flattened netlist's total (the headline number). "
           + ("Labels give the Liberty-mapped area in µm². " if lib_any else "")
           + f"Configurations: {units_txt}. " + " ".join(notes) + " " + tools_line(data))
    return finish(fig, cap)


def fig_sweep(sweep: Mapping, param: str, data: Mapping | None = None, *, index: int = 0):
    """Area (NAND2-eq), logic depth and, when the rows have it, energy per op by mode against
    sweep parameter *param*: one line per combination of the other grid parameters.  Error rows
    are skipped; a red cross marks points whose regression failed.  ``None`` if no row is usable
    or *param* is not in the grid."""
    data = data or {}
    grid = dict(sweep.get("grid") or {})
    if param not in grid:
        return None
    rows = [r for r in sweep.get("rows") or [] if r.get("status") != "error"
            and param in (r.get("params") or {}) and is_number(r.get("nand2_eq"))]
    if not rows:
        return None
    others = [p for p in grid if p != param and len(grid[p]) > 1]
    fixed = {p: v[0] for p, v in grid.items() if p != param and len(v) == 1}
    order = list(grid[param])
    numeric = all(is_number(v) for v in order)

    def xpos(v):
        if numeric:
            return v
        return order.index(v) if v in order else len(order)

    series: dict[tuple, list[dict]] = {}
    for r in rows:
        key = tuple(r["params"].get(p) for p in others)
        series.setdefault(key, []).append(r)
    for key in series:
        series[key].sort(key=lambda r: xpos(r["params"][param]))
    energies = [(r, *_row_energy(r, sweep)) for r in rows]
    modes = list(dict.fromkeys(m for _, e, _ in energies for m in e))
    energy_units = sorted({u or "?" for _, e, u in energies if e})
    depth = any(is_number(r.get("logic_depth")) for r in rows)
    panels = ["area"] + (["depth"] if depth else []) + (["energy"] if modes else [])
    fig = new_figure(4.2 * len(panels) + 0.6, 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]

    def label(key: tuple) -> str:
        return ", ".join(f"{p}={v}" for p, v in zip(others, key)) or "all"

    markers = "osD^vP*Xh"
    for ax, panel in zip(axes, panels):
        for si, (key, srows) in enumerate(series.items()):
            xs = [xpos(r["params"][param]) for r in srows]
            if panel == "energy":
                for mi, mode in enumerate(modes):
                    pts = [(x, _row_energy(r, sweep)[0].get(mode)) for x, r in zip(xs, srows)]
                    pts = [(x, v) for x, v in pts if v is not None]
                    if pts:
                        ax.plot(*zip(*pts), marker=markers[mi % len(markers)], color=color(si),
                                linestyle=_LINESTYLES[mi % 4], linewidth=1.2, markersize=4)
                continue
            col = "nand2_eq" if panel == "area" else "logic_depth"
            pts = [(x, r.get(col)) for x, r in zip(xs, srows) if is_number(r.get(col))]
            if pts:
                ax.plot(*zip(*pts), marker="o", color=color(si), linewidth=1.2, markersize=4,
                        label=label(key))
            bad = [(x, r.get(col)) for x, r in zip(xs, srows)
                   if r.get("status") == "fail" and is_number(r.get(col))]
            if bad:
                ax.scatter(*zip(*bad), marker="x", s=50, color="red", zorder=4)
        ax.set_xlabel(param)
        if not numeric:
            ax.set_xticks(range(len(order)), [str(v) for v in order])
        elif all(isinstance(v, int) for v in order):
            if len(order) > 2 and all(v > 0 and v & (v - 1) == 0 for v in order):
                ax.set_xscale("log", base=2)  # powers of two (block sizes, lanes): even spacing
            ax.set_xticks(order, [str(v) for v in order])
            ax.minorticks_off()
        ax.grid(alpha=0.3)
        if panel == "area":
            ax.set_ylabel("NAND2-eq")
            ax.set_title("area", fontsize=10, loc="left")
        elif panel == "depth":
            ax.set_ylabel("logic depth (gates)")
            ax.set_title("logic depth", fontsize=10, loc="left")
        else:
            ax.set_ylabel(f"energy per op ({'/'.join(energy_units)})")
            ax.set_title("energy per op by mode", fontsize=10, loc="left")
    # One legend for the figure: colour = the other parameters, line style = the energy mode.
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=color(si), marker="o", markersize=4, label=label(key))
               for si, key in enumerate(series)] if len(series) > 1 else []
    handles += [Line2D([], [], color="black", linestyle=_LINESTYLES[mi % 4],
                       marker=markers[mi % len(markers)], markersize=4, label=f"energy: {mode}")
                for mi, mode in enumerate(modes)]
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False)
    errors = sum(1 for r in sweep.get("rows") or [] if r.get("status") == "error")
    fails = sum(1 for r in rows if r.get("status") == "fail")
    unit = sweep.get("unit", "?")
    grid_txt = " × ".join(f"{p}={','.join(map(str, v))}" for p, v in grid.items())
    sims = sorted({str(r.get("simulator")) for r in rows if r.get("simulator")})
    kind = "Liberty-mapped" if sweep.get("liberty") else "generic"
    cap = (f"Sweep {index + 1}, unit {unit}: area ({kind} NAND2-eq, one-pass Yosys synthesis)"
           + (", logic depth (Yosys ltp, gates between flip-flops)" if depth else "")
           + (f" and energy per op by mode ({'/'.join(energy_units)}"
              + (f"; {_GEU_NOTE}" if "GEU" in energy_units else "") + ")" if modes else "")
           + f" vs {param}"
           + (f"; one line per combination of {', '.join(others)}." if others else ".")
           + (f" Fixed: {params_text(fixed)}." if fixed else "")
           + f" Grid {grid_txt}: {len(rows)} points plotted"
           + (f", {errors} error row{'s' * (errors != 1)} skipped" if errors else "")
           + (f", {fails} failed their regression (red ×)" if fails else "")
           + (f"; quick regression on {', '.join(sims)}" if sims else "")
           + (f"; liberty {Path(str(sweep['liberty'])).name}" if sweep.get("liberty") else "")
           + ". " + tools_line(data))
    return finish(fig, cap)


def sweep_figures(data: Mapping) -> list[tuple[str, Any, str]]:
    """``[(name, Figure | None, title)]``: one per swept parameter (two or more values) of every
    sweep in ``data["sweeps"]``; names ``sweep<i>_<unit>_<param>``."""
    out = []
    for i, sweep in enumerate(data.get("sweeps") or []):
        unit = re.sub(r"\W+", "_", str(sweep.get("unit", "unit")))
        for param in _swept_params(sweep):
            safe = re.sub(r"\W+", "_", param)
            name = f"sweep{i + 1}_{unit}_{safe}"
            out.append((name, fig_sweep(sweep, param, data, index=i),
                        f"{_sweep_label(sweep, i)}: results vs {param}"))
    return out


def _mode_parts(mode: Mapping) -> dict[str, float]:
    """Stack segments of one mode: the breakdown components; 'other' for what they miss."""
    total = mode.get("energy_per_op")
    parts = {k: float(v) for k, v in (mode.get("breakdown") or {}).items() if is_number(v)}
    if not parts:
        return {"total": float(total)} if is_number(total) else {}
    ordered = {k: parts[k] for k in ENERGY_PARTS if k in parts}
    ordered.update({k: v for k, v in parts.items() if k not in ordered})
    if is_number(total) and total - sum(ordered.values()) > 1e-9 * max(abs(total), 1):
        ordered["other"] = total - sum(ordered.values())
    return ordered


def fig_energy_modes(data: Mapping):
    """Energy per operation by mode: one bar per (configuration, mode), grouped by
    configuration, stacked internal / switching / clock; one panel per unit and energy unit.
    ``None`` if no configuration has an energy report."""
    reports = _energy_reports(data)
    if not reports:
        return None
    panels: dict[tuple[str, str], list[tuple[str, dict]]] = {}
    for unit, config, rep in reports:
        panels.setdefault((unit, rep.get("energy_unit") or "?"), []).append((config, rep))
    n_bars = [sum(len(r["modes"]) for _, r in reps) + len(reps) for reps in panels.values()]
    fig = new_figure(max(6.0, 0.42 * max(n_bars) + 2.5), 3.6 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    part_names = list(dict.fromkeys(p for _, _, r in reports for m in r["modes"].values()
                                    for p in _mode_parts(m)))
    cfg_txt, ops_txt = [], set()
    for ax, ((unit, eunit), reps) in zip(axes, panels.items()):
        x, ticks, labels, groups = 0.0, [], [], []
        drawn: set[str] = set()
        for config, rep in reps:
            start = x
            for mode, m in rep["modes"].items():
                bottom = 0.0
                for part, value in _mode_parts(m).items():
                    ax.bar(x, value, bottom=bottom, width=0.75,
                           color=color(part_names.index(part)), edgecolor="white", linewidth=0.5,
                           label=part if part not in drawn else None)
                    drawn.add(part)
                    bottom += value
                total = m.get("energy_per_op")
                if is_number(total):
                    ax.text(x, total, fmt_energy(total), ha="center", va="bottom", fontsize=6)
                if m.get("mismatches"):
                    ax.text(x, 0, "!", color="red", ha="center", va="bottom", fontsize=9)
                ticks.append(x)
                labels.append(mode)
                if m.get("op_name"):
                    ops_txt.add(f"{mode}: per {m['op_name']}")
                x += 1
            groups.append(((start + x - 1) / 2, config))
            params = units_view(data)[unit][config].get("params") or rep.get("params")
            cfg_txt.append(f"{unit}/{config} ({params_text(params)})")
            x += 0.8
        ax.set_xticks(ticks, labels, rotation=30, ha="right", fontsize=7)
        for gx, config in groups:
            ax.annotate(config, (gx, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7,
                        fontweight="bold")
        ax.set_ylabel(f"energy per op ({eunit})")
        ax.set_title(f"{unit}", fontsize=10, loc="left", pad=14)
        ax.margins(y=0.15)
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(axis="y", alpha=0.3)
    eunits = sorted({k[1] for k in panels})
    mism = any(m.get("mismatches") for _, _, r in reports for m in r["modes"].values())
    cap = ("Energy per operation by mode from gate-level toggle counts of the workload simulation, "
           "stacked into internal, switching and clock energy"
           + (f" ({_GEU_NOTE})" if "GEU" in eunits else "") + ". "
           + ("Operation: " + "; ".join(sorted(ops_txt)) + ". " if ops_txt else "")
           + ("Red '!': the workload had output mismatches. " if mism else "")
           + "Configurations: " + "; ".join(cfg_txt) + ". " + tools_line(data))
    return finish(fig, cap)


def _quality_rows(data: Mapping) -> list[dict]:
    return [r for r in data.get("quality") or []
            if is_number(r.get("fp4_fraction")) and is_number(r.get("value"))]


def fig_quality(data: Mapping):
    """Model quality vs the fraction of FP4 blocks: one panel per (model, metric), one line
    per policy.  ``None`` without ``data["quality"]`` rows."""
    rows = _quality_rows(data)
    if not rows:
        return None
    panels: dict[tuple[str, str], dict[str, list]] = {}
    for r in rows:
        key = (str(r.get("model", "?")), str(r.get("metric", "value")))
        panels.setdefault(key, {}).setdefault(str(r.get("policy", "?")), []).append(r)
    policies = list(dict.fromkeys(str(r.get("policy", "?")) for r in rows))
    n = len(panels)
    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    fig = new_figure(4.2 * cols, 3.3 * nrows)
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    for ax, ((model, metric), lines) in zip(axes, panels.items()):
        for policy, prow in lines.items():
            prow = sorted(prow, key=lambda r: r["fp4_fraction"])
            ax.plot([100 * r["fp4_fraction"] for r in prow], [r["value"] for r in prow],
                    marker="o", markersize=3.5, linewidth=1.2,
                    color=color(policies.index(policy)), label=policy)
        floats = sorted({r["float_value"] for pr in lines.values() for r in pr
                         if is_number(r.get("float_value"))})
        for fv in floats[:1]:
            ax.axhline(fv, color="black", linestyle=":", linewidth=0.9, label="float model")
        ax.set_title(model, fontsize=10, loc="left")
        ax.set_xlabel("FP4 fraction (%)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    for ax in axes[n:]:
        ax.set_visible(False)
    models = ", ".join(dict.fromkeys(m for m, _ in panels))
    cap = (f"Model-level quality vs the fraction of blocks kept in FP4 (the rest FP8), one line "
           f"per block-selection policy; models: {models}; metrics: "
           f"{', '.join(dict.fromkeys(k[1] for k in panels))}"
           + ("; dotted: the unquantised (float) model" if any(is_number(r.get("float_value"))
                                                            for r in rows) else "")
           + ". " + tools_line(data))
    return finish(fig, cap)


_ME_LABEL_KEYS = ("model", "policy", "fp4_fraction")


def _saving_keys(rows: Sequence[Mapping]) -> list[str]:
    keys = []
    for r in rows:
        for k, v in r.items():
            if k.startswith("saving") and is_number(v) and k not in keys:
                keys.append(k)
    return keys


def _saving_label(key: str) -> str:
    return re.sub(r"\bfp(\d)", r"FP\1", key.replace("_", " "))


def _percent_scale(rows: Sequence[Mapping], keys: Iterable[str]) -> bool:
    """Savings are fractions (0.14); a value beyond ±1 means the rows use percent (14)."""
    return any(abs(r[k]) > 1 for r in rows for k in keys if is_number(r.get(k)))


def fig_model_energy(data: Mapping):
    """Model-level energy saving: for every ``data["model_energy"]`` row, bars for each
    ``saving*`` column (e.g. vs FP8, with the classifier's overhead), with the FGMP paper's 14 %
    (or the rows' ``paper_saving``) as a reference line.  ``None`` without such rows."""
    rows = [r for r in data.get("model_energy") or [] if isinstance(r, Mapping)]
    keys = _saving_keys(rows)
    keys_plot = [k for k in keys if k != "paper_saving"]
    rows = [r for r in rows if any(is_number(r.get(k)) for k in keys_plot)]
    if not rows or not keys_plot:
        return None
    pct = _percent_scale(rows, keys)
    scale = 1.0 if pct else 100.0
    labels = []
    for r in rows:
        parts = [str(r["model"])] if r.get("model") is not None else []
        if r.get("policy") is not None:
            parts.append(str(r["policy"]))
        if r.get("dot_product_unit") is not None:
            parts.append(str(r["dot_product_unit"]).split("/")[-1])
        if is_number(r.get("fp4_fraction")):
            parts.append(f"FP4 {100 * r['fp4_fraction']:.0f} %")
        labels.append("\n".join(parts) or "?")
    fig = new_figure(max(6.0, 0.5 * len(rows) * len(keys_plot) + 2.5), 3.8)
    ax = fig.subplots()
    width = 0.8 / len(keys_plot)
    for ki, k in enumerate(keys_plot):
        xs = [i - 0.4 + width * (ki + 0.5) for i in range(len(rows))]
        vals = [scale * r[k] if is_number(r.get(k)) else 0.0 for r in rows]
        ax.bar(xs, vals, width=width * 0.95, color=color(ki), label=_saving_label(k))
        for xx, v, r in zip(xs, vals, rows):
            ax.text(xx, v, f"{v:.1f}" if is_number(r.get(k)) else "n/a", ha="center",
                    va="bottom" if v >= 0 else "top", fontsize=6.5)
    papers = sorted({r["paper_saving"] for r in rows if is_number(r.get("paper_saving"))})
    paper = [p * scale for p in papers] or [100 * PAPER_FGMP_SAVING]
    for p in paper:
        ax.axhline(p, color="black", linestyle="--", linewidth=0.8,
                   label=f"FGMP paper: {p:.0f} % vs FP8")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("energy saving (%)")
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    ax.margins(y=0.15)
    cap = ("Model-level energy saving of fine-grained mixed precision over an all-FP8 baseline "
           f"({', '.join(_saving_label(k) for k in keys_plot)}; mpgen.studies.model_energy: "
           "measured per-op unit energies over each model's operations); dashed: the FGMP "
           "paper's reported saving "
           "(its hardware and models: a reference, not a like-for-like target). "
           + tools_line(data))
    return finish(fig, cap)


#: The fixed figures: name → (function, title, what data it needs).  Sweep figures are added
#: per swept parameter by :func:`sweep_figures`.
FIGURES: dict[str, tuple[Callable, str, str]] = {
    "area_breakdown": (fig_area_breakdown, "Area breakdown per unit",
                       'data["units"][unit][config]["area"] (AreaReport dicts)'),
    "energy_modes": (fig_energy_modes, "Energy per operation by mode",
                     'data["units"][unit][config]["energy"] with "modes" (EnergyReport dicts)'),
    "quality_vs_fp4": (fig_quality, "Model quality vs FP4 fraction",
                       'data["quality"] rows {model, policy, fp4_fraction, metric, value}'),
    "model_energy": (fig_model_energy, "Model-level energy saving",
                     'data["model_energy"] rows with numeric "saving*" columns'),
}


# --------------------------------------------------------------------------- Markdown tables


def _meta_section(data: Mapping) -> list[str]:
    import matplotlib

    meta = _meta(data)
    out = []
    if meta.get("date"):
        out.append(f"- Date: {meta['date']}")
    if meta.get("command"):
        out.append(f"- Command: `{meta['command']}`")
    out.append(f"- Liberty: `{meta['liberty']}`" if meta.get("liberty")
               else "- Liberty: none (generic NAND2-eq gate costs, docs/area.md)")
    tools = {"python": meta.get("python")}
    tools.update({t: meta.get(t) for t in CAPTION_TOOLS})
    tools["matplotlib"] = matplotlib.__version__
    out += ["", md_table(["tool", "version"], [(t, _short_version("", v) if t != "yosys" else
                                                 (v or "n/a")) for t, v in tools.items()],
                          ["l", "l"])]
    return out


def _regression_section(data: Mapping) -> list[str]:
    rows = []
    for unit, configs in units_view(data).items():
        for config, entry in (configs or {}).items():
            reg = (entry or {}).get("regression") or {}
            for sim, r in reg.items():
                passed = r.get("passed")
                rows.append((unit, config, sim, fmt(r.get("vectors")), fmt(r.get("mismatches")),
                             "PASS" if passed else "**FAIL**" if passed is not None else "–",
                             fmt(r.get("seconds"))))
            if not reg and "regression" in (entry or {}):
                rows.append((unit, config, "–", "–", "–", "no testbench", "–"))
    if not rows:
        return []
    return ["## Regression (quick)", "",
            md_table(["unit", "config", "simulator", "vectors", "mismatches", "result", "seconds"],
                      rows, "lllrrlr")]


def _area_section(data: Mapping) -> list[str]:
    out = []
    for unit in units_view(data):
        reports = area_reports(data, unit)
        if not reports:
            continue
        spec = _spec(unit)
        groups = (data.get("area_groups") or {}).get(unit) or (spec.area_groups if spec else None)
        try:
            table = area_table(reports, groups)
        except ValueError as e:
            table = (area_table(reports) + f"\nArea groups of {unit} do not cover every "
                     f"submodule ({e}); one column per submodule.\n")
        out += [f"### {unit}", "", table]
    if not out:
        return []
    return ["## Area", "", "Headline NAND2-eq from the flattened netlist; breakdown columns from "
            "the hierarchical synthesis (docs/area.md).", ""] + out


def _timing_section(data: Mapping) -> list[str]:
    rows = []
    corner = ""
    for unit, configs in units_view(data).items():
        for config, entry in configs.items():
            t = (entry or {}).get("timing")
            if not t:
                continue
            corner = corner or t.get("corner", "")
            rows.append((unit, config, fmt(t.get("critical_path_ns"), 3), fmt(t.get("fmax_mhz")),
                         "–" if t.get("clock_ns") is None else fmt(t["clock_ns"], 2),
                         "–" if t.get("slack_ns") is None else f"{t['slack_ns']:+.3f}",
                         "–" if t.get("closes") is None else ("yes" if t["closes"] else "no"),
                         fmt(t.get("area_um2")), t.get("critical_group", ""), t.get("path", "")))
    if not rows:
        return []
    head = ["unit", "config", "critical path ns", "fmax MHz", "clock ns", "slack ns", "closes",
            "µm² at that clock", "worst group", "start → end"]
    return ["## Timing", "",
            f"Static timing of each mapped netlist from the Liberty delay tables ({corner}): "
            "the clock period it needs (worst path of every group, setup included) and fmax; "
            "ideal clock, no wires (docs/timing.md).", "",
            md_table(head, rows, "ll" + "r" * 6 + "ll")]


def _energy_section(data: Mapping) -> list[str]:
    reports = _energy_reports(data)
    if not reports:
        return []
    rows = []
    extra = sorted({k for _, _, r in reports for m in r["modes"].values()
                    for k in (m.get("breakdown") or {}) if k not in ENERGY_PARTS})
    parts = list(ENERGY_PARTS) + extra
    leak = any(m.get("leakage") is not None for _, _, r in reports for m in r["modes"].values())
    for unit, config, rep in reports:
        for mode, m in rep["modes"].items():
            b = m.get("breakdown") or {}
            row = [unit, config, mode, m.get("op_name", "–"), fmt_energy(m.get("energy_per_op")),
                   rep.get("energy_unit", "?"), *(fmt_energy(b.get(p)) for p in parts)]
            if leak:
                row += [fmt_energy(m.get("leakage")), fmt(m.get("clock_ns"), 2),
                        fmt(m.get("gops_per_w"))]
            row += [f"± {fmt_energy(m.get('spread_2sigma'))} ({len(m.get('batches') or [])})",
                    "on" if m.get("clock_gating") else "off", fmt(m.get("ops")),
                    fmt(m.get("cycles")), fmt(m.get("mismatches"))]
            rows.append(row)
    head = ["unit", "config", "mode", "op", "energy/op", "unit"] + parts
    if leak:
        head += ["leakage", "clock ns", "GOPS/W"]
    head += ["± 2σ (batches)", "clock gating", "ops", "cycles", "mismatches"]
    note = (f" Energy unit GEU: {_GEU_NOTE}." if any(r.get("energy_unit") == "GEU"
                                                     for _, _, r in reports) else "")
    leak_note = (" Energy/op = dynamic (internal + switching + clock) + leakage of the cells "
                 "over the operation's cycles at the clock (the target clock, else fmax); GOPS/W "
                 "counts the record's own operation." if leak else "")
    return ["## Energy per operation", "",
            "Per operation of each mode, from the gate-level toggle counts of a workload "
            "simulation, in independent batches (± twice their standard deviation); breakdown "
            "columns per op, same unit." + leak_note + note, "",
            md_table(head, rows, "llll" + "r" + "l" + "r" * (len(head) - 6))]


def energy_of(data: Mapping, unit: str, config: str, mode: str | None = None):
    entry = (units_view(data).get(unit) or {}).get(config) or {}
    rep = entry.get("energy") or {}
    modes = rep.get("modes") or {}
    if mode is None and len(modes) == 1:
        mode = next(iter(modes))
    e = (modes.get(mode) or {}).get("energy_per_op")
    return (float(e), rep.get("energy_unit")) if is_number(e) else (None, None)


def _claims_section(data: Mapping) -> list[str]:
    """The papers' energy claims next to what this run measured (where its data is present):
    each unit's spec contributes its rows (``UnitSpec.claims``), the model studies theirs."""
    rows = []
    for unit in units_view(data):
        spec = _spec(unit)
        if spec is not None and spec.claims is not None:
            rows += resolve(spec.claims)(data)
    for r in data.get("model_energy") or []:
        sv = r.get("saving_vs_fp8")
        if is_number(sv):
            sc = r.get("saving_vs_fp8_with_classifier")
            on = f" on {r['dot_product_unit']}" if r.get("dot_product_unit") else ""
            rows.append((f"{r.get('model')}: FGMP block mix at {r.get('fp4_fraction', 0.7):.0%} FP4 "
                         f"vs all-FP8{on}",
                         f"{sv:.1%} less energy" + (f" ({sc:.1%} with the classifier)"
                                                    if is_number(sc) else ""),
                         f"{PAPER_FGMP_SAVING:.0%} less (FGMP)"))
    if not rows:
        return []
    return ["## The papers' claims next to this run", "",
            "Measured with this run's gate-level energy flow (docs/energy.md: zero-delay "
            "activity, no wires; clock gating and leakage as in the energy table), so ratios "
            "are more meaningful than absolute values.",
            "", md_table(["what", "measured here", "paper"], rows, "lll")]


def _sweep_section(data: Mapping) -> list[str]:
    sweeps = data.get("sweeps") or []
    if not sweeps:
        return []
    out = ["## Sweeps", ""]
    for i, sweep in enumerate(sweeps):
        grid = dict(sweep.get("grid") or {})
        names = list(grid)
        rows = sweep.get("rows") or []
        modes, eunits = [], set()
        for r in rows:
            e, u = _row_energy(r, sweep)
            modes += [m for m in e if m not in modes]
            if e:
                eunits.add(u or "?")
        lib = any(r.get("area_um2") is not None for r in rows)
        timed = any(r.get("fmax_mhz") is not None for r in rows)
        eu = "/".join(sorted(eunits))
        head = (names + ["status", "NAND2-eq"] + (["µm²"] if lib else []) + ["depth"]
                + (["critical path ns", "fmax MHz"] if timed else [])
                + [f"{m} ({eu}/op)" for m in modes] + ["vectors", "mismatches"])
        body = []
        for r in rows:
            p = r.get("params") or {}
            status = r.get("status") or "–"
            if status == "error":
                status = f"error ({r.get('error_stage') or '?'}): {r.get('error') or ''}".strip()
            e, _ = _row_energy(r, sweep)
            body.append([fmt(p.get(n)) for n in names] + [status, fmt(r.get("nand2_eq"))]
                        + ([fmt(r.get("area_um2"))] if lib else []) + [fmt(r.get("logic_depth"))]
                        + ([fmt(r.get("critical_path_ns"), 2), fmt(r.get("fmax_mhz"), 1)]
                           if timed else [])
                        + [fmt_energy(e.get(m)) for m in modes]
                        + [fmt(r.get("vectors")), fmt(r.get("mismatches"))])
        grid_txt = " × ".join(f"{p} ∈ {{{', '.join(map(str, v))}}}" for p, v in grid.items())
        out += [f"### {_sweep_label(sweep, i)}", "",
                f"Grid {grid_txt}: {len(rows)} points, {_count(rows, 'error')} with errors, "
                f"{_count(rows, 'fail')} failed their regression"
                + (f"; liberty `{sweep['liberty']}`" if sweep.get("liberty") else "") + ".", "",
                md_table(head, body, "l" * (len(names) + 1) + "r" * (len(head) - len(names) - 1))]
        if not modes and sweep.get("energy_note"):
            out += [f"Energy: {sweep['energy_note']}.", ""]
    return out


def _count(rows: Sequence[Mapping], status: str) -> int:
    return sum(1 for r in rows if r.get("status") == status)


def _generic_rows_table(rows: Sequence[Mapping], fraction_keys: Callable[[str], bool],
                        pct: bool) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]

    def cell_text(k, v):
        if is_number(v) and fraction_keys(k):
            return _fmt_pct(v, pct and k != "fp4_fraction")
        if isinstance(v, float):
            return fmt_energy(v)
        if isinstance(v, (dict, list)):
            return json.dumps(v, sort_keys=True)
        return fmt(v)

    body = [[cell_text(k, r.get(k)) for k in keys] for r in rows]
    align = ["r" if any(is_number(r.get(k)) for r in rows) else "l" for k in keys]
    return md_table(keys, body, align)


def _model_energy_section(data: Mapping) -> list[str]:
    rows = [r for r in data.get("model_energy") or [] if isinstance(r, Mapping)]
    if not rows:
        return []
    pct = _percent_scale(rows, _saving_keys(rows))
    return ["## Model-level energy", "",
            f"Savings relative to all-FP8; the FGMP paper reports {100 * PAPER_FGMP_SAVING:.0f} %.",
            "", _generic_rows_table(rows, lambda k: "saving" in k or k.endswith("fraction"),
                                    pct)]


def _quality_section(data: Mapping) -> list[str]:
    rows = [r for r in data.get("quality") or [] if isinstance(r, Mapping)]
    if not rows:
        return []
    return ["## Model quality", "",
            _generic_rows_table(rows, lambda k: k.endswith("fraction"), False)]


# --------------------------------------------------------------------------- report


def write_report(data: Mapping, out_dir: Path | str, *, title: str = "mpgen report") -> Path:
    """Write ``out_dir/report.md`` and ``out_dir/figures/<name>.png`` + ``.svg``; return the
    Markdown path.  Figures whose data is absent are omitted with a one-line note; stale figure
    files from an earlier run are not removed, but the report only links the ones it wrote."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # headless; never switch a caller's backend
        matplotlib.use("Agg")
    if not isinstance(data, Mapping):
        raise TypeError(f"report data must be a mapping, got {type(data).__name__}")
    out = Path(out_dir)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)

    planned: list[tuple[str, Callable[[], Any], str, str]] = []
    for name, (fn, ftitle, needs) in FIGURES.items():
        planned.append((name, lambda fn=fn: fn(data), ftitle, needs))
    for unit in units_view(data):  # the units' own figures (UnitSpec.report_sections)
        spec = _spec(unit)
        for ref in (spec.report_sections if spec else ()):
            for name, ftitle, fig in resolve(ref)(data):
                planned.append((name, lambda fig=fig: fig, ftitle, f"data of unit {unit}"))
    sweeps = sweep_figures(data)
    insert_at = 1  # sweeps right after the area breakdown
    for k, (name, fig, stitle) in enumerate(sweeps):
        planned.insert(insert_at + k, (name, lambda fig=fig: fig, stitle,
                                       "sweep rows without an error status and a numeric nand2_eq"))
    if not data.get("sweeps"):
        planned.insert(insert_at, ("sweeps", lambda: None, "Sweeps",
                                   'data["sweeps"] (SweepResult.to_dict() with at least one '
                                   "parameter of two or more values)"))
    elif not sweeps:
        planned.insert(insert_at, ("sweeps", lambda: None, "Sweeps",
                                   "a sweep parameter with two or more values in its grid"))

    from matplotlib.figure import Figure

    figure_md, skipped = [], []
    for name, make, ftitle, needs in planned:
        fig = make()
        if fig is None:
            skipped.append(f"- *{ftitle}* (`{name}`): omitted, no data: needs {needs}.")
            continue
        assert isinstance(fig, Figure)
        _save(fig, figdir, name)
        caption = figure_caption(fig)
        alt = ftitle.replace("[", "(").replace("]", ")")
        figure_md += [f"### {ftitle}", "", f"![{alt}](figures/{name}.png)", "",
                      f"*{caption}*  ", f"[SVG](figures/{name}.svg)", ""]
        fig.clear()

    md = [f"# {title}", ""] + _meta_section(data)
    for section in (_claims_section, _regression_section, _area_section, _timing_section,
                    _energy_section, _sweep_section,
                    _model_energy_section, _quality_section):
        lines = section(data)
        if lines:
            md += lines + [""]
    notes = [str(n) for n in (data.get("notes") or [])]
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    md += ["## Figures", ""]
    if skipped:
        md += ["Figures left out:", ""] + skipped + [""]
    md += figure_md
    text = "\n".join(md)
    text = re.sub(r"\n{3,}", "\n\n", text).rstrip("\n") + "\n"
    path = out / "report.md"
    path.write_text(text)
    return path
