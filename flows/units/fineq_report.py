"""The FineQ unit's report pieces: the area/energy figure against the multiplier baselines and
its row in the claims table."""

from __future__ import annotations

from typing import Mapping

from mpgen.flows.report import (area_reports, color, finish, fmt, fmt_energy, is_number,
                                new_figure, params_text, tools_line, units_view)

__all__ = ["PAPER_FINEQ_EFFICIENCY", "section", "claims", "fig_vs_baselines", "fineq_baseline",
           "mac_energy"]

#: FineQ paper (Wu et al. 2025): "up to 1.79x energy efficiency" of its temporal-coding array
#: over the conventional (W8A8 multiplier) baseline.
PAPER_FINEQ_EFFICIENCY = 1.79


def fineq_baseline(configs: Mapping[str, Mapping], name: str) -> str | None:
    """The W8A8 multiplier baseline of the same array size as *name* (by parameters, else by
    the ``w8a8`` name prefix)."""
    params = configs[name].get("params") or {}
    for other, entry in configs.items():
        p = entry.get("params") or {}
        if (p.get("pe") == "multiplier" and p.get("weight_bits") == 8
                and p.get("rows") == params.get("rows") and p.get("cols") == params.get("cols")):
            return other
    named = [c for c in configs if c.lower().startswith("w8a8")]
    return named[0] if len(named) == 1 else None


def mac_energy(entry: Mapping) -> tuple[float | None, str | None, str | None]:
    """(energy per MAC, unit, mode) of a FineQ config: mode ``mac`` (or the only mode)."""
    rep = entry.get("energy") or {}
    modes = rep.get("modes") or {}
    mode = "mac" if "mac" in modes else (next(iter(modes)) if len(modes) == 1 else None)
    if mode is None:
        return None, None, None
    e = modes[mode].get("energy_per_op")
    return (float(e) if is_number(e) else None), rep.get("energy_unit"), mode


def fig_vs_baselines(data: Mapping, unit: str = "fineq"):
    """FineQ configurations vs the multiplier baselines: area (µm² with a Liberty file, else
    NAND2-eq) and energy per MAC side by side, each bar annotated with its ratio to the W8A8
    baseline of the same size; the FineQ paper's "up to 1.79× energy efficiency" is drawn as
    the energy a 1.79× gain over W8A8 would give.  ``None`` without the unit's areas."""
    configs = units_view(data).get(unit) or {}
    reports = area_reports(data, unit)
    if not reports:
        return None
    names = list(reports)
    use_um2 = all(r.area_um2 is not None for r in reports.values())
    area = {n: (r.area_um2 if use_um2 else r.nand2_eq) for n, r in reports.items()}
    energy = {n: mac_energy(configs[n]) for n in names}
    has_energy = any(e[0] is not None for e in energy.values())
    fig = new_figure(11 if has_energy else 6, 3.8)
    axes = fig.subplots(1, 2 if has_energy else 1, squeeze=False)[0]
    base = {n: fineq_baseline(configs, n) for n in names}
    x = list(range(len(names)))

    def bars(ax, values: Mapping[str, float | None], better: str):
        vals = [values[n] if values[n] is not None else 0.0 for n in names]
        colors = ["#8C8C8C" if base[n] == n else color(0 if "fineq" in n.lower() else 1)
                  for n in names]
        ax.bar(x, vals, color=colors, width=0.7)
        top = max(vals) or 1.0
        for xi, n in zip(x, names):
            v, b = values[n], base[n]
            if v is None:
                ax.text(xi, 0, "n/a", ha="center", va="bottom", fontsize=7)
                continue
            text = fmt(v) if better == "area" else fmt_energy(v)
            if b is not None and b != n and values.get(b):
                ratio = v / values[b]
                text += (f"\n{ratio:.2f}× W8A8" if better == "area"
                         else f"\n{1 / ratio:.2f}× eff." if ratio else "")
            elif b == n:
                text += "\n(baseline)"
            ax.text(xi, v + 0.01 * top, text, ha="center", va="bottom", fontsize=6.5)
        ax.set_xticks(x, names, rotation=25, ha="right", fontsize=7)
        ax.set_ylim(0, top * 1.3)
        ax.grid(axis="y", alpha=0.3)

    bars(axes[0], area, "area")
    axes[0].set_ylabel("area (µm²)" if use_um2 else "area (NAND2-eq)")
    axes[0].set_title("area", fontsize=10, loc="left")
    if has_energy:
        ax = axes[1]
        bars(ax, {n: e[0] for n, e in energy.items()}, "energy")
        eunit = next((e[1] for e in energy.values() if e[1]), "?")
        ax.set_ylabel(f"energy per MAC ({eunit})")
        ax.set_title("energy per MAC", fontsize=10, loc="left")
        refs = {b for b in base.values() if b is not None and energy[b][0]}
        for b in sorted(refs):
            target = energy[b][0] / PAPER_FINEQ_EFFICIENCY
            ax.axhline(target, color="black", linestyle="--", linewidth=0.8,
                       label=f"FineQ paper: up to {PAPER_FINEQ_EFFICIENCY}× efficiency vs {b}")
        if refs:
            ax.legend(fontsize=7, frameon=False, loc="upper left")
    cfgs = "; ".join(f"{n} ({params_text(configs[n].get('params'))})" for n in names)
    cap = (f"FineQ vs multiplier baselines ({unit} unit): area "
           + ("(Liberty µm²)" if use_um2 else "(generic NAND2-eq, flattened synthesis)")
           + (" and energy per MAC" if has_energy else "")
           + "; ratios against the W8A8 multiplier array of the same size (grey bar). "
           + (f"Energy efficiency = W8A8 energy / config energy; dashed line: the FineQ paper's "
              f"'up to {PAPER_FINEQ_EFFICIENCY}× energy efficiency' over W8A8 (its own technology "
              "and baseline, a reference not a like-for-like target). " if has_energy
              else "No energy data for this unit. ")
           + f"Configurations: {cfgs}. " + tools_line(data))
    return finish(fig, cap)


def section(data: Mapping) -> list[tuple[str, str, object]]:
    """The report figures of this unit: (name, title, figure or None)."""
    return [("fineq_vs_baselines", "FineQ vs baselines", fig_vs_baselines(data))]


def claims(data: Mapping) -> list[tuple[str, str, str]]:
    """Energy per MAC of every FineQ-coded array against the W8A8 array of its size."""
    rows = []
    fineq = units_view(data).get("fineq") or {}
    for name in fineq:
        # FineQ-coded arrays (temporal or multiplier PEs); the baselines have plain weight_bits
        is_fineq = "weight_bits" not in (fineq[name].get("params") or {})
        base = fineq_baseline(fineq, name) if is_fineq else None
        if base is None:
            continue
        ef, uf, _ = mac_energy(fineq[name])
        eb, ub, _ = mac_energy(fineq[base])
        if ef is not None and eb is not None and uf == ub:
            rows.append((f"fineq/{name} vs {base}, energy per MAC",
                         f"{ef:.3g} vs {eb:.3g} {uf} ({eb / ef:.2f}× efficiency)",
                         f"up to {PAPER_FINEQ_EFFICIENCY}× (FineQ)"))
    return rows
