"""Registry of the RTL units the ``mpgen`` CLI knows.

Each :class:`UnitSpec` says how to build the component from keyword parameters, which
named configurations ``mpgen run`` covers by default, and how to run its quick or full
regression.  Unit modules are imported lazily (inside the lambdas) so that ``mpgen
--help`` stays fast and a broken unit does not break the others.

Add a unit with :func:`register_unit` (tests register a toy unit this way).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping, Sequence

__all__ = ["UnitSpec", "UNITS", "register_unit", "get_unit", "parse_params", "top_name"]


@dataclasses.dataclass(frozen=True)
class UnitSpec:
    """How to build, configure and verify one unit.

    Attributes:
        factory: ``factory(**params) -> amaranth.lib.wiring.Component``; the component's
            ``__init__`` validates parameters and raises ``ValueError``/``TypeError``.
        default_configs: configuration name → parameter dict (what ``mpgen run`` covers).
        regression: ``regression(config, *, simulator, quick, seed) -> result`` where the
            result has ``.vectors``, ``.mismatches``, ``.passed`` and ``.details``;
            ``None`` if the unit has no testbench yet.
        description: one line for ``--help``.
        area_groups: breakdown columns of the area table: name → submodule patterns
            (``fnmatch``; ``"(top)"`` is the top module's own logic); ``None`` = one column
            per submodule.
        energy: ``energy(params, *, verilog, liberty, work_dir, ops, netlist_dir) -> EnergyReport``
            (activity-based energy per operation per mode, :mod:`mpgen.flows.energy`);
            ``None`` if the unit has no workloads.
    """

    factory: Callable[..., Any]
    default_configs: Mapping[str, Mapping[str, Any]]
    regression: Callable[..., Any] | None = None
    description: str = ""
    area_groups: Mapping[str, Sequence[str]] | None = None
    energy: Callable[..., Any] | None = None


def _energy_hook(unit: str) -> Callable[..., Any]:
    """Energy hook of a unit whose workloads :mod:`mpgen.sim.workloads` provides."""
    def energy(params, *, verilog=None, liberty=None, work_dir=None, ops=None, config="custom",
               progress=None, netlist_dir=None):
        from mpgen.flows.energy import GateNetlist, measure_energy
        netlist = (GateNetlist.load(netlist_dir, top_name(unit), liberty)
                   if netlist_dir is not None else None)
        return measure_energy(unit, params, config=config, verilog=verilog, liberty=liberty,
                              work_dir=work_dir, ops=ops, progress=progress, netlist=netlist)
    energy.__qualname__ = energy.__name__ = f"{unit}_energy"
    return energy


def _dotprod_factory(**params):
    from mpgen.rtl.dotprod import BlockDotProduct
    return BlockDotProduct(**params)


def _dotprod_regression(config, **kw):
    from mpgen.sim.dotprod import run_dotprod_regression
    return run_dotprod_regression(config, **kw)


UNITS: dict[str, UnitSpec] = {
    "dotprod": UnitSpec(
        factory=_dotprod_factory,
        default_configs={
            "fp8-only": {"formats": "fp8"},
            "fp4-only": {"formats": "fp4"},
            "mixed-split": {"formats": "mixed", "organisation": "split"},
            "mixed-shared": {"formats": "mixed", "organisation": "shared"},
        },
        regression=_dotprod_regression,
        energy=_energy_hook("dotprod"),
        description="block dot product (BlockDotProduct): FP8/FP4/mixed, split or shared",
        area_groups={
            "multipliers": ["lanes_*"],
            "adder tree": ["tree_*"],
            "scale & FP32 round": ["scale"],
            "accumulator": ["accumulator"],
            "control & pipeline": ["(top)"],  # also FP4 alignment and operand isolation
        },
    ),
}


def _fineq_spec() -> UnitSpec:
    from mpgen.flows import fineq_area  # light: imports the RTL lazily
    return UnitSpec(
        factory=fineq_area.fineq_factory,
        default_configs=fineq_area.DEFAULT_CONFIGS,
        regression=fineq_area.fineq_regression,
        description="FineQ outlier-decoding temporal PE array and its multiplier baselines",
        area_groups=fineq_area.AREA_GROUPS,
        energy=_energy_hook("fineq"),
    )


def _classifier_spec() -> UnitSpec:
    from mpgen.sim import classifier  # light: imports the RTL lazily
    return UnitSpec(
        factory=classifier.factory,
        default_configs=classifier.DEFAULT_CONFIGS,
        regression=classifier.run_classifier_regression,
        description="FGMP activation block classifier (ActivationClassifier): NVFP4 or FP8 per block",
        area_groups=classifier.AREA_GROUPS,
        energy=_energy_hook("classifier"),
    )


UNITS["classifier"] = _classifier_spec()
UNITS["fineq"] = _fineq_spec()


def register_unit(name: str, spec: UnitSpec, *, replace: bool = False) -> None:
    """Add *spec* to :data:`UNITS` under *name* (a plain identifier-like name)."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise ValueError(f"unit name must be an identifier, not {name!r}")
    if name in UNITS and not replace:
        raise ValueError(f"unit {name!r} is already registered")
    UNITS[name] = spec


def get_unit(name: str) -> UnitSpec:
    """The registered unit *name*; ``ValueError`` listing the known ones otherwise."""
    try:
        return UNITS[name]
    except KeyError:
        raise ValueError(f"unknown unit {name!r}; known units: {', '.join(sorted(UNITS))}") from None


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """Turn ``["k=v", ...]`` into a dict; values that parse as integers (``16``,
    ``-3``, ``0x10``) become ``int``, everything else stays ``str``."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"bad parameter {item!r}: expected NAME=VALUE, e.g. block_size=16")
        value = value.strip()
        try:
            params[key] = int(value, 0)
        except ValueError:
            try:
                params[key] = int(value)  # e.g. "08"
            except ValueError:
                params[key] = value
    return params


def top_name(unit: str) -> str:
    """Verilog top-module name used for *unit* (the unit name, made an identifier)."""
    return re.sub(r"\W", "_", unit)
