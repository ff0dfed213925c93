"""The unit registry: one :class:`UnitSpec` per unit, the only central list of units.

A unit is one plugin.  Its spec module (``mpgen.flows.units.<name>``) says everything the tool
knows about it: how to build the component, its parameter schema, default and key
configurations, the golden reference, the regression, the energy modes with their workload,
the area breakdown groups and any report sections of its own.  The engine
(:mod:`mpgen.flows.engine`), the CLI, sweeps and the report read specs; none of them names a
unit.

Hooks are named as ``"module:attribute"`` strings and resolved on first use
(:func:`resolve`), so that listing units or writing Verilog imports neither torch nor the
testbenches, and so that the engine can fingerprint exactly the modules a stage runs.

Adding a unit: its golden model, RTL, stimulus/regression and testbench modules, one spec
module in this package, and one line in :data:`BUILTIN_UNITS`.  Tests and plug-ins register
units at run time with :func:`register_unit`.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any, Callable, Mapping, Sequence

__all__ = ["Param", "UnitSpec", "BUILTIN_UNITS", "units", "unit_names", "register_unit",
           "unregister_unit", "get_unit", "resolve", "parse_params", "parse_value", "AUTO"]

#: The ``pipeline`` value that asks the engine for the shallowest pipeline closing the clock.
AUTO = "auto"

#: Built-in units: name → spec module (each defines ``SPEC``).  The one registry line per unit.
BUILTIN_UNITS: dict[str, str] = {
    "dotprod": "mpgen.flows.units.dotprod",
    "classifier": "mpgen.flows.units.classifier",
    "fineq": "mpgen.flows.units.fineq",
    "fgmp_pipeline": "mpgen.flows.units.fgmp_pipeline",
}

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_KINDS = (int, str, bool)


@dataclasses.dataclass(frozen=True)
class Param:
    """One constructor parameter of a unit, as the CLI and sweeps see it.

    Parameters
    ----------
    name : str
        Keyword argument of the unit's factory.
    kind : type
        ``int``, ``str`` or ``bool``: what ``--param name=TEXT`` is converted to.
    default : object
        The factory's default (``None`` where the factory derives it from other parameters).
    choices : tuple or None
        Allowed values, or ``None`` for any value the component accepts.
    help : str
        One line for ``mpgen list``.
    """

    name: str
    kind: type
    default: Any = None
    choices: tuple | None = None
    help: str = ""

    def __post_init__(self):
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"parameter name must be an identifier, not {self.name!r}")
        if self.kind not in _KINDS:
            raise TypeError(f"parameter {self.name}: kind must be int, str or bool, not {self.kind!r}")

    def parse(self, text: str) -> Any:
        """Convert ``--param`` text to this parameter's kind (``ValueError`` naming it)."""
        if self.kind is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"parameter {self.name} takes true/false, not {text!r}")
        if self.kind is int:
            try:
                return int(text.strip(), 0)
            except ValueError:
                try:
                    return int(text.strip())  # "08"
                except ValueError:
                    raise ValueError(f"parameter {self.name} takes an integer, not {text!r}") from None
        return text.strip()

    def check(self, value: Any) -> None:
        """``TypeError``/``ValueError`` naming the parameter for a value outside the schema."""
        if value is None and self.default is None:
            return
        if self.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"parameter {self.name} must be an int, not {value!r}")
        if self.kind is not int and not isinstance(value, self.kind):
            raise TypeError(f"parameter {self.name} must be a {self.kind.__name__}, not {value!r}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"parameter {self.name} must be one of "
                             f"{', '.join(map(str, self.choices))}, not {value!r}")

    def describe(self) -> str:
        allowed = ", ".join(map(str, self.choices)) if self.choices else f"any {self.kind.__name__}"
        return f"{self.name} ({allowed}; default {self.default})"


@dataclasses.dataclass(frozen=True)
class UnitSpec:
    """Everything the tool knows about one unit.

    Parameters
    ----------
    name : str
        Unit name (an identifier): the CLI's ``UNIT`` and the Verilog top's default prefix.
    description : str
        One line for ``mpgen list`` and ``--help``.
    factory : str or callable
        ``factory(**params) -> wiring.Component``; the component validates what the schema does
        not (combinations, ranges).
    params : tuple of Param
        The parameter schema.  ``--param`` names outside it are rejected with the valid names.
    configs : mapping
        Default configurations: name → parameters (``mpgen run`` covers all of them).
    key_configs : tuple of str
        The configurations ``mpgen run`` covers by default (``--configs all``: every one).
    energy_configs : tuple of str or None
        The configurations ``mpgen run`` measures gate-level energy for by default
        (``--energy all``: every one it runs); ``None`` = the key configurations.
    golden : str or callable, optional
        The golden reference model of the unit (documentation and provenance; the regression
        calls it).
    regression : str or callable, optional
        ``regression(params, *, simulator, quick, seed) -> result`` with ``vectors``,
        ``mismatches``, ``passed`` and ``details``.
    regression_sizes : mapping
        ``{"quick": "...", "full": "..."}``: what each regression checks, for ``mpgen list``.
    energy_modes : str or callable, optional
        ``energy_modes(component) -> list[str]``: the operating modes energy is measured in.
    workload : str or callable, optional
        ``workload(component, mode, *, ops, seed, data) -> mpgen.sim.workload.Workload``.
    op_quantum : str or callable, optional
        ``op_quantum(component) -> int``: the workload's ``ops`` must be a multiple of it (the
        engine rounds each energy batch up to one); ``None`` = 1.
    area_groups : mapping, optional
        Area breakdown columns: name → submodule patterns (``fnmatch``; ``"(top)"`` is the top
        module's own logic); ``None`` = one column per submodule.
    report_sections : tuple of (str or callable)
        ``section(data) -> [(name, title, figure or None), ...]``: the unit's own report
        figures (:mod:`mpgen.flows.report`).
    claims : str or callable, optional
        ``claims(data) -> list of (what, this run, the paper's claim)`` rows for the report's
        claims table.
    report_sweep : mapping, optional
        The parameter grid ``mpgen report`` sweeps for this unit (name → values).
    design_clock_ns : mapping, optional
        Configuration name → the clock period (ns) it is pipelined for: with a Liberty file and
        no target clock of its own, a job synthesises that configuration toward it (and reports
        slack against it).
    pipeline_ladder : str or callable, optional
        ``pipeline_ladder(params) -> list of parameter dicts``: the unit's pipeline choices for
        *params*, from the shallowest to the deepest. With one, ``pipeline=auto`` is accepted
        and the engine picks the first choice that closes the target clock
        (:func:`mpgen.flows.engine.resolve_auto_pipelines`).
    doc : str
        The unit's documentation page (relative to the repository's ``docs/``).
    """

    name: str
    description: str
    factory: str | Callable[..., Any]
    params: tuple[Param, ...] = ()
    configs: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    key_configs: tuple[str, ...] = ()
    energy_configs: tuple[str, ...] | None = None
    golden: str | Callable[..., Any] | None = None
    regression: str | Callable[..., Any] | None = None
    regression_sizes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    energy_modes: str | Callable[..., Any] | None = None
    workload: str | Callable[..., Any] | None = None
    op_quantum: str | Callable[..., Any] | None = None
    area_groups: Mapping[str, Sequence[str]] | None = None
    report_sections: tuple[str | Callable[..., Any], ...] = ()
    claims: str | Callable[..., Any] | None = None
    report_sweep: Mapping[str, Sequence[Any]] | None = None
    pipeline_ladder: str | Callable[..., Any] | None = None
    design_clock_ns: Mapping[str, float] = dataclasses.field(default_factory=dict)
    doc: str = ""

    def __post_init__(self):
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"unit name must be an identifier, not {self.name!r}")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"unit {self.name}: duplicate parameter names in {names}")
        for cfg, params in self.configs.items():
            self.check_params(params, where=f"configuration {cfg!r}")
        for cfg in (*self.key_configs, *(self.energy_configs or ()), *self.design_clock_ns):
            if cfg not in self.configs:
                raise ValueError(f"unit {self.name}: key configuration {cfg!r} is not one of "
                                 f"{', '.join(self.configs)}")

    @property
    def run_configs(self) -> tuple[str, ...]:
        """What ``mpgen run`` covers by default: the key configurations (all when none)."""
        return self.key_configs or tuple(self.configs)

    @property
    def energy_default(self) -> tuple[str, ...]:
        """The configurations whose energy ``mpgen run`` measures by default."""
        return self.run_configs if self.energy_configs is None else self.energy_configs

    # ------------------------------------------------------------------ parameters
    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        valid = ", ".join(p.name for p in self.params) or "none"
        raise ValueError(f"unknown parameter {name!r} for {self.name}; valid parameters: {valid}")

    def check_params(self, params: Mapping[str, Any], where: str = "") -> None:
        """Schema check: every name known, every value of its kind and choices."""
        for k, v in params.items():
            if self.is_auto(k, v):
                continue
            try:
                self.param(k).check(v)
            except (TypeError, ValueError) as e:
                raise type(e)(f"{self.name}{' ' + where if where else ''}: {e}") from None

    def is_auto(self, name: str, value: Any) -> bool:
        """Whether ``name=value`` is ``pipeline=auto`` on a unit with a pipeline ladder."""
        return name == "pipeline" and value == AUTO and self.pipeline_ladder is not None

    def build(self, params: Mapping[str, Any]):
        """The component for *params* (schema-checked, then validated by the component)."""
        self.check_params(params)
        return resolve(self.factory)(**dict(params))

    @property
    def has_energy(self) -> bool:
        return self.workload is not None and self.energy_modes is not None


def resolve(ref: str | Callable[..., Any]) -> Any:
    """``"package.module:attr"`` → the attribute (imported on first use); callables pass."""
    if not isinstance(ref, str):
        return ref
    module, sep, attr = ref.partition(":")
    if not sep:
        raise ValueError(f"hook reference must be 'module:attribute', not {ref!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


_REGISTERED: dict[str, UnitSpec] = {}
_LOADED: dict[str, UnitSpec] = {}


def register_unit(spec: UnitSpec, *, replace: bool = False) -> UnitSpec:
    """Add *spec* to the registry (tests and plug-ins); ``ValueError`` if the name is taken."""
    if not isinstance(spec, UnitSpec):
        raise TypeError(f"register_unit takes a UnitSpec, not {type(spec).__name__}")
    if not replace and (spec.name in _REGISTERED or spec.name in BUILTIN_UNITS):
        raise ValueError(f"unit {spec.name!r} is already registered")
    _REGISTERED[spec.name] = spec
    return spec


def unregister_unit(name: str) -> None:
    """Remove a unit added with :func:`register_unit` (built-in units stay)."""
    _REGISTERED.pop(name, None)


def unit_names() -> list[str]:
    """Every unit name, built-in first, in registry order."""
    return list(BUILTIN_UNITS) + [n for n in _REGISTERED if n not in BUILTIN_UNITS]


def get_unit(name: str) -> UnitSpec:
    """The unit *name*; ``ValueError`` listing the known units otherwise."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in BUILTIN_UNITS:
        if name not in _LOADED:
            spec = importlib.import_module(BUILTIN_UNITS[name]).SPEC
            if spec.name != name:
                raise RuntimeError(f"{BUILTIN_UNITS[name]} defines unit {spec.name!r}, not {name!r}")
            _LOADED[name] = spec
        return _LOADED[name]
    raise ValueError(f"unknown unit {name!r}; known units: {', '.join(unit_names())}")


def units() -> dict[str, UnitSpec]:
    """Every unit, name → spec."""
    return {n: get_unit(n) for n in unit_names()}


def parse_value(text: str) -> Any:
    """Schema-free conversion (grids of units without a schema entry): integers become ``int``,
    everything else stays ``str``."""
    text = text.strip()
    for conv in (lambda t: int(t, 0), int):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def parse_params(items: Sequence[str] | None, spec: UnitSpec | None = None) -> dict[str, Any]:
    """``["k=v", ...]`` → a dict, each value converted by the unit's schema (*spec*) or, without
    one, by :func:`parse_value`.  ``ValueError`` names a malformed item or an unknown name."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"bad parameter {item!r}: expected NAME=VALUE, e.g. block_size=16")
        if spec is not None and spec.is_auto(key, value.strip()):
            params[key] = AUTO
        else:
            params[key] = spec.param(key).parse(value) if spec is not None else parse_value(value)
    return params
