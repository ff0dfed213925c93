"""Toy Amaranth design used to test mpgen's infrastructure (not a product unit).

``ToyStreamAdder`` is a 2-stage pipelined stream adder: the input stream carries a
``{a, b}`` struct, the output stream carries ``a + b`` (``width + 1`` bits) two
register stages later.  It has three submodules (``stage0``, ``adder``, ``stage1``)
so that the area flow's per-submodule breakdown has something to break down.
"""

import dataclasses

from amaranth import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


class PipeStage(wiring.Component):
    """One stream register stage (no skid buffer): ``i.ready = o.ready | ~o.valid``."""

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(self.o.ready | ~self.o.valid)
        with m.If(self.i.ready):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m


class Adder(wiring.Component):
    """Combinational stream adder (passes valid/ready through)."""

    def __init__(self, width):
        self.width = width
        layout = data.StructLayout({"a": width, "b": width})
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(width + 1))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [
            self.o.payload.eq(self.i.payload.a + self.i.payload.b),
            self.o.valid.eq(self.i.valid),
            self.i.ready.eq(self.o.ready),
        ]
        return m


class ToyStreamAdder(wiring.Component):
    """2-stage pipelined stream adder: ``i`` ({a, b}) → ``o`` (a + b)."""

    def __init__(self, width: int = 8):
        if not isinstance(width, int) or isinstance(width, bool):
            raise TypeError(f"width must be an int, not {width!r}")
        if not 1 <= width <= 64:
            raise ValueError(f"width must be in 1..64, not {width}")
        self.width = width
        layout = data.StructLayout({"a": width, "b": width})
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(width + 1))})

    def elaborate(self, platform):
        m = Module()
        layout = data.StructLayout({"a": self.width, "b": self.width})
        m.submodules.stage0 = stage0 = PipeStage(layout)
        m.submodules.adder = adder = Adder(self.width)
        m.submodules.stage1 = stage1 = PipeStage(self.width + 1)
        wiring.connect(m, wiring.flipped(self.i), stage0.i)
        wiring.connect(m, stage0.o, adder.i)
        wiring.connect(m, adder.o, stage1.i)
        wiring.connect(m, stage1.o, wiring.flipped(self.o))
        return m


# ----------------------------------------------------------------- regression (CLI tests)


@dataclasses.dataclass
class ToyResult:
    """Same shape as the lead's ``RegressionResult``."""

    vectors: int
    mismatches: int
    passed: bool
    details: dict


def toy_regression(config, *, simulator="verilator", quick=True, seed=None, offset=0):
    """Run tests/toy_tb.py on ``ToyStreamAdder(**config)``; *offset* != 0 forces mismatches."""
    from mpgen.rtl.emit import to_verilog
    from mpgen.sim.runner import run_cocotb

    width = config.get("width", 8)
    verilog = to_verilog(ToyStreamAdder(**config), "toy")
    run = run_cocotb(verilog, "toy", "toy_tb", simulator=simulator, seed=seed,
                     params={"width": width, "n": 100 if quick else 1000, "offset": offset})
    return ToyResult(vectors=run.result.get("vectors", 0),
                     mismatches=run.result.get("mismatches", 0),
                     passed=run.passed, details=run.to_dict())


# ----------------------------------------------------------------- the toy as a unit plugin


def toy_modes(comp) -> list[str]:
    """The toy's one energy mode."""
    return ["add"]


def toy_workload(comp, mode="add", *, ops=None, seed=0, data="auto"):
    """Random {a, b} pairs at full rate; the expected sums come from plain Python (the toy's
    golden model)."""
    import random

    from mpgen.sim.workload import StreamPhase, Workload

    if mode != "add":
        raise ValueError(f"mode {mode!r} is not a mode of the toy; modes: ['add']")
    rng = random.Random(seed)
    layout = data_layout(comp.width)
    offs = {name: f.offset for name, f in layout}

    def phase(n, name):
        pairs = [(rng.randrange(1 << comp.width), rng.randrange(1 << comp.width)) for _ in range(n)]
        payloads = [a << offs["a"] | b << offs["b"] for a, b in pairs]
        return StreamPhase({"i": payloads}, {"o": n}, {"o": [a + b for a, b in pairs]}, name)

    ops = ops or 32
    return Workload("add", [phase(4, "warmup")], [phase(ops, "adds")], ops, "add",
                    f"{ops} random {comp.width}-bit pairs (seed {seed})")


def data_layout(width):
    return data.StructLayout({"a": width, "b": width})


def toy_spec(name="toy", offset=0):
    """A complete unit plugin for the toy (registered by the tests that need it)."""
    import functools

    from mpgen.flows.units import Param, UnitSpec

    return UnitSpec(
        name=name, description="toy stream adder (tests only)", factory=ToyStreamAdder,
        params=(Param("width", int, 8, None, "operand width, 1..64"),),
        configs={"w8": {"width": 8}, "w4": {"width": 4}}, key_configs=("w8",),
        regression=functools.partial(toy_regression, offset=offset) if offset else toy_regression,
        regression_sizes={"quick": "100 random pairs", "full": "1,000 random pairs"},
        energy_modes=toy_modes, workload=toy_workload,
        area_groups={"stages": ["stage*"], "adder": ["adder"], "glue": ["(top)"]},
        report_sweep={"width": [4, 6]})
