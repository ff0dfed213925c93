"""Typed result records: what every measuring command prints with ``--json`` and the report reads.

Each record is a dataclass with a ``kind``, the ``schema`` version (:data:`SCHEMA_VERSION`) and
the point it describes (``unit``, ``config``, ``params``); its figures have snake_case names
with their unit in the name (``nand2_eq``, ``area_um2``, ``energy_pj_per_op``).  ``docs/records.md``
documents the schema.  :func:`to_dict` / :func:`from_dict` convert to and from JSON objects;
:func:`from_dict` rejects an unknown kind, another schema version, missing or unknown fields.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

__all__ = ["SCHEMA_VERSION", "Record", "RegressionRecord", "AreaRecord", "TimingRecord",
           "EnergyRecord", "ErrorRecord", "RECORD_KINDS", "to_dict", "from_dict", "check_record"]

#: Bump when a field changes meaning or is removed (adding an optional field is compatible).
#: 2: ``energy_pj_per_op`` is dynamic + leakage (in 1 it was the dynamic energy alone).
SCHEMA_VERSION = 2
#: Schemas :func:`from_dict` reads (older ones are upgraded: see :func:`_upgrade`).
READABLE_SCHEMAS = (1, 2)


@dataclasses.dataclass
class Record:
    """Fields every record has."""

    unit: str
    config: str
    params: dict[str, Any]
    cached: bool = False

    kind = "record"


@dataclasses.dataclass
class RegressionRecord(Record):
    """One regression run on one simulator against the golden model."""

    simulator: str = "verilator"
    quick: bool = True
    seed: int = 1
    vectors: int = 0
    mismatches: int = 0
    passed: bool = False
    seconds: float = 0.0
    details: str = ""

    kind = "regression"


@dataclasses.dataclass
class AreaRecord(Record):
    """One synthesis: totals, breakdown and (with ``depth``) logic depth.

    ``nand2_eq`` is the Liberty NAND2-eq (µm² / the library's NAND2 area) when ``liberty`` is
    set, else generic gate costs (docs/area.md); ``transistors`` only without a Liberty.
    ``groups``: NAND2-eq per area group of the unit's spec; ``submodules``: name →
    ``{cells, nand2_eq, transistors, area_um2}``.
    """

    cells: int = 0
    nand2_eq: float = 0.0
    transistors: int | None = None
    area_um2: float | None = None
    liberty: str | None = None
    nand2_cell: str | None = None
    nand2_area_um2: float | None = None
    logic_depth: int | None = None
    groups: dict[str, float] = dataclasses.field(default_factory=dict)
    submodules: dict[str, dict] = dataclasses.field(default_factory=dict)
    cells_by_type: dict[str, int] = dataclasses.field(default_factory=dict)
    yosys: str = ""
    seconds: float = 0.0
    clock_ns: float | None = None
    clock_gating: bool = False
    clock_gates: int = 0

    kind = "area"


@dataclasses.dataclass
class TimingRecord(Record):
    """Static timing of the mapped netlist (Liberty NLDM tables, :mod:`mpgen.flows.timing`).

    ``critical_path_ns`` is the clock period the design needs (worst path of every group, setup
    included), ``fmax_mhz`` its inverse.  With a target clock (``clock_ns``), synthesis was
    delay-driven toward it and ``slack_ns`` = ``clock_ns`` − ``critical_path_ns`` (``closes`` when
    ≥ 0); ``area_um2``/``nand2_eq`` are the area of that netlist.  ``paths``: the worst path per
    group (``reg-to-reg``, ``in-to-reg``, ``reg-to-out``, ``in-to-out``) with ``start``, ``end``,
    ``arrival_ns``, ``setup_ns``, ``required_period_ns`` and its ``steps``.
    """

    critical_path_ns: float | None = None
    fmax_mhz: float | None = None
    clock_ns: float | None = None
    slack_ns: float | None = None
    closes: bool | None = None
    area_um2: float | None = None
    nand2_eq: float | None = None
    critical_group: str = ""
    paths: list[dict] = dataclasses.field(default_factory=list)
    liberty: str | None = None
    corner: str = ""
    input_transition_ns: float = 0.0
    cells: int = 0
    seconds: float = 0.0

    kind = "timing"

    @property
    def worst_path(self) -> dict | None:
        """The path of ``critical_group`` (``None`` when nothing was timed)."""
        return next((p for p in self.paths if p["group"] == self.critical_group), None)


@dataclasses.dataclass
class EnergyRecord(Record):
    """Energy per operation of one mode, from the gate-level switching activity.

    Exactly one of ``energy_pj_per_op`` (with a Liberty file) and ``energy_geu_per_op``
    (generic weights) is set; ``breakdown_per_op`` (internal, switching, clock: the dynamic
    part) is in the same unit.  With a Liberty file that has timing data,
    ``energy_pj_per_op`` = ``dynamic_pj_per_op`` + ``leakage_pj_per_op``: the cells' leakage
    integrated over the operation's cycles at ``clock_ns`` (the target clock, else the
    period at fmax); ``ops`` operations in independent batches, whose dynamic energy per op is
    ``batch_energies_per_op`` and twice their sample standard deviation ``spread_2sigma_per_op``; ``power_mw`` is the average power at that clock and ``gops_per_w`` the
    operations (``op_name``) per second per watt, in 10⁹.  ``vectors`` outputs were compared
    with the golden model, ``mismatches`` differed.
    """

    mode: str = ""
    op_name: str = ""
    ops: int = 0
    energy_pj_per_op: float | None = None
    energy_geu_per_op: float | None = None
    breakdown_per_op: dict[str, float] = dataclasses.field(default_factory=dict)
    cycles: int = 0
    vectors: int = 0
    mismatches: int = 0
    source: str = ""
    liberty: str | None = None
    netlist_cells: int = 0
    nets_observed: float = 0.0
    seconds: float = 0.0
    dynamic_pj_per_op: float | None = None
    leakage_pj_per_op: float | None = None
    leakage_mw: float | None = None
    clock_ns: float | None = None
    clock_gating: bool = False
    power_mw: float | None = None
    gops_per_w: float | None = None
    corner: str = ""
    simulator: str = ""
    batch_energies_per_op: list[float] = dataclasses.field(default_factory=list)
    spread_2sigma_per_op: float | None = None

    kind = "energy"

    @property
    def energy_per_op(self) -> float:
        return self.energy_pj_per_op if self.energy_pj_per_op is not None else self.energy_geu_per_op

    @property
    def energy_unit(self) -> str:
        return "pJ" if self.energy_pj_per_op is not None else "GEU"


@dataclasses.dataclass
class ErrorRecord(Record):
    """A stage that could not produce its figures (bad parameters, a tool failure)."""

    stage: str = ""
    error: str = ""

    kind = "error"


RECORD_KINDS: dict[str, type[Record]] = {
    cls.kind: cls for cls in (RegressionRecord, AreaRecord, TimingRecord, EnergyRecord,
                               ErrorRecord)}


def to_dict(record: Record) -> dict[str, Any]:
    """The JSON object of *record*: ``kind``, ``schema``, then its fields."""
    return {"kind": record.kind, "schema": SCHEMA_VERSION, **dataclasses.asdict(record)}


def check_record(d: Mapping[str, Any]) -> type[Record]:
    """The record class of JSON object *d*; ``ValueError`` naming what does not fit."""
    if not isinstance(d, Mapping):
        raise ValueError(f"a record is a JSON object, not {type(d).__name__}")
    kind = d.get("kind")
    if kind not in RECORD_KINDS:
        raise ValueError(f"unknown record kind {kind!r}; kinds: {', '.join(RECORD_KINDS)}")
    if d.get("schema") not in READABLE_SCHEMAS:
        raise ValueError(f"{kind} record has schema {d.get('schema')!r}, this mpgen reads "
                         f"{', '.join(map(str, READABLE_SCHEMAS))}")
    cls = RECORD_KINDS[kind]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields) - {"kind", "schema"})
    if unknown:
        raise ValueError(f"{kind} record has unknown fields {unknown}")
    missing = [n for n, f in fields.items() if n not in d and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{kind} record lacks fields {missing}")
    return cls


def _upgrade(d: Mapping[str, Any]) -> dict[str, Any]:
    """A record of an older schema in the current one."""
    d = dict(d)
    if d.get("schema") == 1 and d.get("kind") == "energy":
        d.setdefault("dynamic_pj_per_op", d.get("energy_pj_per_op"))  # no leakage in schema 1
    return d


def from_dict(d: Mapping[str, Any]) -> Record:
    """The record of JSON object *d* (checked by :func:`check_record`, upgraded to the current
    schema)."""
    cls = check_record(d)
    return cls(**{k: v for k, v in _upgrade(d).items() if k not in ("kind", "schema")})
