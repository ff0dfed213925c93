"""cocotb regression of ``BlockDotProduct`` against the golden model.

Run through :func:`mpgen.sim.dotprod.run_dotprod_regression` (pytest, ``mpgen sim``), which passes
the unit's parameters in ``MPGEN_TB_PARAMS`` and collects the counts written to
``MPGEN_TB_RESULT``. Every phase of :func:`mpgen.sim.dotprod.make_phases` is driven with random
input gaps and random output back-pressure (:mod:`mpgen.sim.stream`); every result is compared bit
for bit with :func:`mpgen.golden.dotprod.dot_products`.
"""

from __future__ import annotations

import random

import cocotb
import torch
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from mpgen.golden.dotprod import BlockPairs, dot_products
from mpgen.rtl.dotprod import BlockDotProduct
from mpgen.sim.dotprod import beat_sizes, make_phases, pack_payloads
from mpgen.sim.stream import StreamDriver, StreamSink, reset, start_clock, tb_params, write_tb_result

#: (input idle probability, output stall probability) pairs the phases draw from.
TRAFFIC = [(0.0, 0.0), (0.3, 0.3), (0.1, 0.5), (0.6, 0.1)]


class _Bench:
    """Driver and sink of one DUT, kept for the whole test; phases change their rates."""

    def __init__(self, dut, rng: random.Random):
        self.dut = dut
        self.driver = StreamDriver(dut, "i", dut.clk, rng=rng)
        self.sink = StreamSink(dut, "o", dut.clk, rng=rng)
        self.sink.start()

    async def run(self, payloads, n_results, *, idle, stall):
        """Send every payload and collect ``n_results`` results; returns them (and checks that
        nothing more arrives within a few cycles)."""
        self.driver.idle_prob, self.sink.stall_prob = idle, stall
        start = len(self.sink.items)
        await self.driver.send(payloads)
        timeout = 64 + len(payloads) * 4 + int(64 / (1 - stall))
        got = (await self.sink.wait_for(start + n_results, timeout_cycles=timeout))[start:]
        await ClockCycles(self.dut.clk, 8)
        extra = len(self.sink.items) - start - n_results
        return got, extra

    async def run_then_reset(self, payloads, accepted, *, idle, stall, reset_cycles):
        """Send the first ``accepted`` payloads, then reset with a dot product in flight.
        Returns the results handed over before the reset."""
        self.driver.idle_prob, self.sink.stall_prob = idle, stall
        start = len(self.sink.items)
        await self.driver.send(payloads[:accepted])
        await reset(self.dut, reset_cycles)
        return self.sink.items[start:]


async def _measure_timing(dut, unit, phase):
    """Back-to-back input with the output always ready, as one long dot product: count the cycles
    the stream takes (its beats: one or, at double FP4 rate, two block pairs each) and the clock
    edges from the transfer of its ``last`` beat (inclusive) to ``o.valid``."""
    p = phase.pairs
    last = torch.zeros_like(p.last)
    last[-1] = True
    single = BlockPairs(p.w_codes, p.a_codes, p.w_fp8, p.a_fp8, p.w_scale, p.a_scale, last)
    payloads = pack_payloads(unit.input_layout, single, unit.formats)
    await FallingEdge(dut.clk)
    dut.o__ready.value = 1
    cycles = 0
    for payload in payloads:
        dut.i__payload.value = payload
        dut.i__valid.value = 1
        await ReadOnly()
        cycles += 1
        while not int(dut.i__ready.value):  # stalled: hold the pair
            await FallingEdge(dut.clk)
            await ReadOnly()
            cycles += 1
        await FallingEdge(dut.clk)  # the transfer happened at the rising edge in between
    dut.i__valid.value = 0
    latency = 1
    while latency < 4 * unit.latency:
        await ReadOnly()
        if int(dut.o__valid.value):
            break
        await FallingEdge(dut.clk)
        latency += 1
    await FallingEdge(dut.clk)
    return {"pairs": single.n, "beats": len(payloads), "cycles": cycles, "latency": latency}


@cocotb.test()
async def regression(dut):
    params = tb_params()
    config, quick, seed = params["config"], params["quick"], params["seed"]
    unit = BlockDotProduct(**config)
    rng = random.Random(seed)
    start_clock(dut)
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await reset(dut, 3)
    bench = _Bench(dut, rng)

    vectors = results_checked = mismatches = 0
    phases_report = {}
    first = []
    phases = make_phases(config, quick=quick, seed=seed)
    for phase in phases:
        payloads = pack_payloads(unit.input_layout, phase.pairs, unit.formats)
        sizes = beat_sizes(phase.pairs, unit.fp4_rate)  # block pairs per beat
        expected = dot_products(phase.pairs, unit.accumulation).tolist()
        idle, stall = rng.choice(TRAFFIC)
        if phase.reset_after is not None:
            beats, accepted = 0, 0  # the beats that hold the first reset_after pairs
            while accepted < phase.reset_after:
                accepted += sizes[beats]
                beats += 1
            got = await bench.run_then_reset(payloads, beats, idle=idle, stall=stall,
                                             reset_cycles=rng.randint(1, 4))
            # Results handed over before the reset must be right; the rest is dropped.
            expected = expected[:len(got)]
        else:
            accepted = phase.pairs.n
            try:
                got, extra = await bench.run(payloads, len(expected), idle=idle, stall=stall)
            except TimeoutError as e:
                got, extra = bench.sink.items[-len(expected):], 0
                mismatches += 1
                first.append(f"{phase.name}: {e}")
            if extra:
                mismatches += extra
                first.append(f"{phase.name}: {extra} results more than expected")
        bad = [(k, g, e) for k, (g, e) in enumerate(zip(got, expected)) if g != e]
        mismatches += len(bad)
        for k, g, e in bad[:3]:
            first.append(f"{phase.name}[{k}]: got {g:#010x} expected {e:#010x}")
        vectors += accepted
        results_checked += min(len(got), len(expected))
        phases_report[phase.name] = {"vectors": accepted, "results": len(got), "mismatches": len(bad),
                                     "gap": idle, "stall": stall}
        dut._log.info("%s: %d vectors, %d results, %d mismatches", phase.name, accepted, len(got), len(bad))

    # Timing contract: throughput one beat per cycle, latency unit.latency cycles.
    bench.sink.stop()
    timing = await _measure_timing(dut, unit, phases[-1])
    dut._log.info("timing: %s", timing)
    if timing["latency"] != unit.latency or timing["cycles"] != timing["beats"]:
        mismatches += 1
        first.append(f"timing: {timing}, expected latency {unit.latency} and one beat per cycle")
    phases_report["timing"] = {"vectors": timing["pairs"], "results": 1, "mismatches": 0,
                               "gap": 0.0, "stall": 0.0, **timing}

    write_tb_result({"vectors": vectors, "results": results_checked, "mismatches": mismatches,
                     "phases": phases_report, "first_mismatches": "\n".join(first[:20])},
                    merge=False)
    assert mismatches == 0, f"{mismatches} mismatches:\n" + "\n".join(first[:20])


@cocotb.test()
async def stream(dut):
    """Drive one caller-given BlockPairs stream (saved with torch.save at params["stimulus"]) and
    write the RTL's results (FP32 bit patterns) to the result file. Run it alone (testcase)."""
    params = tb_params()
    assert "stimulus" in params, "the stream test needs params['stimulus'] (a torch.save file)"
    pairs = BlockPairs(**torch.load(params["stimulus"]))
    unit = BlockDotProduct(**params["config"])
    start_clock(dut)
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await reset(dut, 3)
    bench = _Bench(dut, random.Random(params["seed"]))
    payloads = pack_payloads(unit.input_layout, pairs, unit.formats)
    got, extra = await bench.run(payloads, int(pairs.last.sum()), idle=params.get("gap", 0.0),
                                 stall=params.get("stall", 0.0))
    assert extra == 0, f"{extra} unexpected results"
    write_tb_result({"vectors": len(payloads), "results": got}, merge=False)
