"""cocotb (2.x) helpers shared by mpgen testbenches.

Port names: Amaranth flattens a ``stream.Signature`` member called ``<prefix>`` of a
``wiring.Component`` into the Verilog ports ``<prefix>__payload``, ``<prefix>__valid``
and ``<prefix>__ready`` (a struct/array payload is one packed vector, first field in
the least significant bits).  The clock and reset of the ``sync`` domain are ``clk``
and ``rst`` (active high, synchronous).

Timing discipline: drivers and sinks update their outputs on the *falling* edge of the
clock and then sample handshakes in the ``ReadOnly`` phase of the same time step.
Nothing changes between that point and the next rising edge, so "``valid & ready`` at
ReadOnly after the falling edge" is exactly "a transfer happens at the next rising
edge".  This is race-free on both Verilator and Icarus, including through
combinational ready/valid paths in the design.

Stream rules honoured (those of :mod:`amaranth.lib.stream`): a driver never drops
``valid`` or changes ``payload`` before the transfer happens; idle gaps are only
inserted between transfers.

Also here: :func:`reset`, :func:`start_clock`, and the testbench side of the
params/result contract with :func:`mpgen.sim.runner.run_cocotb`
(:func:`tb_params`, :func:`write_tb_result`).
"""

from __future__ import annotations

import json
import os
import random
import zlib
from typing import Any, Iterable

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge
from cocotb.types import LogicArray

from . import PARAMS_ENV, RESULT_ENV

__all__ = [
    "StreamDriver",
    "StreamSink",
    "StreamMonitor",
    "start_clock",
    "reset",
    "tb_params",
    "write_tb_result",
    "resolve",
]

#: Clock period used by :func:`start_clock` (ns); only the cycle count matters.
CLOCK_PERIOD_NS = 10


def _port(dut, name: str):
    try:
        return getattr(dut, name)
    except AttributeError:
        raise AttributeError(
            f"design has no port {name!r} (Amaranth names a stream member <prefix> as "
            "<prefix>__payload/__valid/__ready)") from None


def _seed(prefix: str, salt: int) -> int:
    """Stable per-stream seed derived from cocotb's random seed (``hash()`` is salted)."""
    return (int(cocotb.RANDOM_SEED) * 1_000_003 + zlib.crc32(prefix.encode()) * 2 + salt) & (2**63 - 1)


def resolve(handle, signed: bool = False) -> int:
    """Integer value of a signal; raises ``ValueError`` if it holds X/Z bits."""
    value = handle.value
    if not value.is_resolvable:
        raise ValueError(f"{handle._name} is not resolvable: {value}")
    if isinstance(value, LogicArray):
        return value.to_signed() if signed else value.to_unsigned()
    return int(value)  # a 1-bit port reads as a Logic


def start_clock(dut, clk: str = "clk", period_ns: int = CLOCK_PERIOD_NS):
    """Start a free-running clock on ``dut.<clk>``; returns the cocotb ``Task``."""
    return Clock(getattr(dut, clk), period_ns, unit="ns").start()


async def reset(dut, cycles: int = 2, *, clk: str = "clk", rst: str = "rst") -> None:
    """Hold ``dut.<rst>`` high for *cycles* rising edges of ``dut.<clk>`` and release it
    on a falling edge.  The clock must already be running (:func:`start_clock`)."""
    clock, rst_sig = getattr(dut, clk), getattr(dut, rst)
    rst_sig.value = 1
    await ClockCycles(clock, max(1, cycles), rising=True)
    await FallingEdge(clock)
    rst_sig.value = 0


class _StreamEnd:
    """The ``payload``/``valid``/``ready`` handles of stream ``<prefix>`` and its clock."""

    def __init__(self, dut, prefix: str, clk):
        self.payload = _port(dut, f"{prefix}__payload")
        self.valid = _port(dut, f"{prefix}__valid")
        self.ready = _port(dut, f"{prefix}__ready")
        self.clk = clk


class StreamDriver(_StreamEnd):
    """Sends payload integers into the design's input stream ``<prefix>``.

    Args:
        dut: cocotb top handle.
        prefix: stream member name (ports ``<prefix>__payload/__valid/__ready``).
        clk: clock handle (e.g. ``dut.clk``).
        idle_prob: probability of an idle cycle before each transfer (0 = back-to-back).
        rng: a seeded :class:`random.Random` (default: seeded from ``cocotb.RANDOM_SEED``).

    Call :meth:`send` (awaitable, returns once every item was accepted) or
    :meth:`start` to run it in the background.
    """

    def __init__(self, dut, prefix: str, clk, *, idle_prob: float = 0.0,
                 rng: random.Random | None = None):
        if not 0.0 <= idle_prob < 1.0:
            raise ValueError(f"idle_prob must be in [0, 1), not {idle_prob}")
        _StreamEnd.__init__(self, dut, prefix, clk)
        self.idle_prob = idle_prob
        self.rng = rng if rng is not None else random.Random(_seed(prefix, 0))
        self.sent = 0
        self.valid.value = 0

    async def send(self, items: Iterable[int]) -> None:
        """Drive every item in order, honouring ``ready``; returns after the last transfer."""
        for item in items:
            while self.rng.random() < self.idle_prob:
                await FallingEdge(self.clk)
                self.valid.value = 0
            await FallingEdge(self.clk)
            self.payload.value = int(item)
            self.valid.value = 1
            while True:
                await ReadOnly()
                if resolve_bool(self.ready):
                    break  # transfer at the next rising edge
                await FallingEdge(self.clk)
            self.sent += 1
            await RisingEdge(self.clk)
        await FallingEdge(self.clk)
        self.valid.value = 0

    def start(self, items: Iterable[int]):
        """Run :meth:`send` as a background task; returns the ``Task``."""
        return cocotb.start_soon(self.send(list(items)))


class StreamSink(_StreamEnd):
    """Consumes the design's output stream ``<prefix>`` with random back-pressure.

    ``ready`` is low with probability *stall_prob* in each cycle (drawn from *rng*).
    Received payloads are appended to :attr:`items` in order.  Start it with
    :meth:`start`; wait for data with :meth:`wait_for`.
    """

    def __init__(self, dut, prefix: str, clk, *, stall_prob: float = 0.0,
                 rng: random.Random | None = None, signed: bool = False):
        if not 0.0 <= stall_prob < 1.0:
            raise ValueError(f"stall_prob must be in [0, 1), not {stall_prob}")
        _StreamEnd.__init__(self, dut, prefix, clk)
        self.stall_prob = stall_prob
        self.rng = rng if rng is not None else random.Random(_seed(prefix, 1))
        self.signed = signed
        self.items: list[int] = []
        self.cycles = 0
        self._task = None
        self.ready.value = 0

    async def _run(self) -> None:
        while True:
            await FallingEdge(self.clk)
            self.ready.value = int(self.rng.random() >= self.stall_prob)
            await ReadOnly()
            self.cycles += 1
            if resolve_bool(self.ready) and resolve_bool(self.valid):
                self.items.append(resolve(self.payload, self.signed))

    def start(self):
        """Start consuming in the background; returns the ``Task``."""
        if self._task is None:
            self._task = cocotb.start_soon(self._run())
        return self._task

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def wait_for(self, count: int, timeout_cycles: int = 10_000) -> list[int]:
        """Wait until *count* items arrived; raises ``TimeoutError`` after *timeout_cycles*."""
        self.start()
        for _ in range(timeout_cycles):
            if len(self.items) >= count:
                return self.items[:count]
            await RisingEdge(self.clk)
        raise TimeoutError(
            f"{self.payload._name}: got {len(self.items)} of {count} items in {timeout_cycles} cycles")


class StreamMonitor(StreamSink):
    """A passive :class:`StreamSink`: records transfers without driving ``ready``.

    Use it on a stream whose ``ready`` is driven by something else (another sink or
    the design itself).
    """

    def __init__(self, dut, prefix: str, clk, *, signed: bool = False):
        _StreamEnd.__init__(self, dut, prefix, clk)
        self.signed = signed
        self.items = []
        self.cycles = 0
        self._task = None

    async def _run(self) -> None:
        while True:
            await FallingEdge(self.clk)
            await ReadOnly()
            self.cycles += 1
            if resolve_bool(self.ready) and resolve_bool(self.valid):
                self.items.append(resolve(self.payload, self.signed))


def resolve_bool(handle) -> bool:
    """True if a 1-bit signal is 1 (X/Z counts as 0)."""
    v = handle.value
    return bool(v.is_resolvable and int(v))


# ----------------------------------------------------------------- params/result contract


def tb_params() -> dict[str, Any]:
    """The ``params`` dict :func:`mpgen.sim.runner.run_cocotb` passed (``{}`` if none)."""
    text = os.environ.get(PARAMS_ENV, "")
    return json.loads(text) if text else {}


def write_tb_result(result: dict[str, Any], *, merge: bool = True) -> None:
    """Write *result* (JSON-serialisable) where :func:`run_cocotb` reads it.

    With ``merge`` (default) keys already written by an earlier test in the same run
    are kept and integer counters named ``vectors``/``mismatches`` are summed, so
    several ``@cocotb.test()`` functions can each report.  A no-op outside run_cocotb.
    """
    path = os.environ.get(RESULT_ENV)
    if not path:
        return
    data: dict[str, Any] = {}
    if merge and os.path.isfile(path):
        with open(path) as f:
            data = json.load(f)
    for k, v in result.items():
        if merge and k in ("vectors", "mismatches") and isinstance(data.get(k), int):
            data[k] += int(v)
        else:
            data[k] = v
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
