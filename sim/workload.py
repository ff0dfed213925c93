"""Stream workloads: what a testbench drives into a unit, cycle for cycle, to measure it.

A :class:`Workload` is a list of :class:`StreamPhase` objects.  Each phase drives one or
more input streams of the unit at full rate (``valid`` held high while a stream has
payloads left, no idle gaps) and holds ``ready`` high on its output streams until the
expected number of transfers has arrived.  Phases run one after another.

The activity-based energy flow (:mod:`mpgen.flows.energy`) simulates a gate-level
netlist twice, once with ``setup`` alone and once with ``setup + measure``, so that
the energy of reset, configuration and pipeline fill-up cancels out; the difference
divided by ``ops`` is the energy per operation.  The generic testbench
(:mod:`mpgen.sim.tb_workload`) also compares every output payload with ``expected``
(where given), so the netlist under measurement is checked against the golden model on
the very stimulus that is measured.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

__all__ = ["StreamPhase", "Workload", "run_workload"]


@dataclasses.dataclass
class StreamPhase:
    """One phase: input payloads per stream, output transfers to wait for.

    Attributes:
        inputs: stream prefix (``"i"``, ``"cfg"``, ...) → payload integers, driven in order.
        outputs: output stream prefix → number of transfers to receive before the phase ends.
        expected: output stream prefix → expected payload integers (``None``: not checked).
        name: for logs.
    """

    inputs: Mapping[str, Sequence[int]]
    outputs: Mapping[str, int]
    expected: Mapping[str, Sequence[int]] | None = None
    name: str = ""

    def __post_init__(self):
        for prefix, count in self.outputs.items():
            if int(count) < 0:
                raise ValueError(f"phase {self.name!r}: negative output count for {prefix!r}")
            if self.expected and prefix in self.expected and len(self.expected[prefix]) != count:
                raise ValueError(f"phase {self.name!r}: {len(self.expected[prefix])} expected "
                                 f"payloads for {prefix!r} but {count} outputs awaited")
        for prefix in (self.expected or {}):
            if prefix not in self.outputs:
                raise ValueError(f"phase {self.name!r}: expected payloads for {prefix!r}, "
                                 "which is not an awaited output")

    def to_dict(self) -> dict:
        return {"name": self.name,
                "inputs": {k: [int(v) for v in vs] for k, vs in self.inputs.items()},
                "outputs": {k: int(v) for k, v in self.outputs.items()},
                "expected": None if self.expected is None else
                {k: [int(v) for v in vs] for k, vs in self.expected.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "StreamPhase":
        return cls(inputs=d["inputs"], outputs=d["outputs"], expected=d.get("expected"),
                   name=d.get("name", ""))


@dataclasses.dataclass
class Workload:
    """Stimulus for one operating mode of one unit.

    Attributes:
        mode: mode name (dot product: ``"fp4xfp4"``, ``"fp4xfp8"``, ``"fp8xfp4"``,
            ``"fp8xfp8"`` as weight×activation; classifier: ``"classify"``; FineQ: ``"mac"``).
        setup: phases run before the measured ones (configuration, warm-up).
        measure: the measured phases.
        ops: operations in ``measure`` (what "per op" means is ``op_name``).
        op_name: ``"block pair"``, ``"block"``, ``"MAC"``, ...
        source: where the data came from, one line (e.g. ``"all-MiniLM-L6-v2 layer 0 query
            weights × activations, NVFP4/FP8 per golden quantizers"``).
    """

    mode: str
    setup: list[StreamPhase]
    measure: list[StreamPhase]
    ops: int
    op_name: str
    source: str

    def __post_init__(self):
        if self.ops <= 0:
            raise ValueError(f"workload {self.mode!r}: ops must be positive, not {self.ops}")
        if not self.measure:
            raise ValueError(f"workload {self.mode!r}: no measured phase")

    def to_dict(self) -> dict:
        return {"mode": self.mode, "ops": self.ops, "op_name": self.op_name,
                "source": self.source,
                "setup": [p.to_dict() for p in self.setup],
                "measure": [p.to_dict() for p in self.measure]}


def run_workload(verilog: str, toplevel: str, phases: Sequence[StreamPhase], *,
                 simulator: str = "verilator", build_args: Sequence[str] = (),
                 build_root=None, seed: int = 0, timeout_s: float | None = None):
    """Drive *phases* into the design *toplevel* of *verilog* with the generic testbench
    :mod:`mpgen.sim.tb_workload` and return the :class:`~mpgen.sim.runner.CocotbRun`.

    Its ``result`` holds ``vectors``, ``mismatches``, ``outputs`` and ``cycles``; a
    mismatch makes the run fail (``passed=False``), it does not raise.  The phases travel
    to the simulator in a JSON file in the run's folder.
    """
    import json
    import tempfile
    from pathlib import Path

    from mpgen.sim.runner import run_cocotb

    phases = list(phases)
    if not phases:
        raise ValueError("run_workload: no phases to run")
    with tempfile.TemporaryDirectory(prefix="mpgen-workload-") as tmp:
        path = Path(tmp) / "phases.json"
        path.write_text(json.dumps([p.to_dict() for p in phases]))
        return run_cocotb(verilog, toplevel, "mpgen.sim.tb_workload", simulator=simulator,
                          params={"phases_file": str(path)}, seed=seed, build_root=build_root,
                          build_args=build_args, timeout_s=timeout_s)
