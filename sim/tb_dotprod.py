"""cocotb regression of ``BlockDotProduct`` against the golden model.

Run through :func:`mpgen.sim.dotprod.run_dotprod_regression` (pytest, ``mpgen sim``), which passes
the unit's parameters in ``MPGEN_TB_PARAMS`` and collects the counts written to
``MPGEN_TB_RESULT``. Every phase of :func:`mpgen.sim.dotprod.make_phases` is driven with random
input gaps and random output back-pressure; every result is compared bit for bit with
:func:`mpgen.golden.dotprod.dot_products`.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import torch
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from mpgen.golden.dotprod import BlockPairs, dot_products
from mpgen.rtl.dotprod import BlockDotProduct
from mpgen.sim.dotprod import make_phases, pack_payloads


async def _reset(dut, cycles=3):
    await RisingEdge(dut.clk)  # let the handshakes seen in the last ReadOnly phase complete
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def _drive(dut, payloads, rng, p_gap, p_stall, stop_after=None, max_results=None):
    """Send ``payloads`` (until ``stop_after`` of them were accepted) and collect every result
    handed over on ``o``. Returns (accepted, results)."""
    sent = 0
    results = []
    holding = False
    target = len(payloads) if stop_after is None else stop_after
    idle = 0
    while True:
        await RisingEdge(dut.clk)
        if not holding and sent < target and rng.random() >= p_gap:
            dut.i__payload.value = payloads[sent]
            holding = True
        dut.i__valid.value = int(holding)
        ready = rng.random() >= p_stall
        dut.o__ready.value = int(ready)
        await ReadOnly()
        if holding and int(dut.i__ready.value):
            holding = False
            sent += 1
            idle = 0
        if ready and int(dut.o__valid.value):
            results.append(int(dut.o__payload.value))
            idle = 0
        else:
            idle += 1
        done_sending = sent >= target and not holding
        if stop_after is not None and done_sending:
            return sent, results
        if done_sending and max_results is not None and len(results) >= max_results:
            return sent, results
        if done_sending and idle > 64:  # nothing left in flight
            return sent, results


async def _measure_timing(dut, unit, phase):
    """Back-to-back input with the output always ready, as one long dot product: count the cycles
    the stream takes and the clock edges from the handshake of its ``last`` pair (inclusive) to
    ``o.valid``."""
    p = phase.pairs
    last = torch.zeros_like(p.last)
    last[-1] = True
    single = BlockPairs(p.w_codes, p.a_codes, p.w_fp8, p.a_fp8, p.w_scale, p.a_scale, last)
    payloads = pack_payloads(unit.input_layout, single, unit.formats)
    await _reset(dut)
    dut.o__ready.value = 1
    cycles = 0
    for payload in payloads:
        await RisingEdge(dut.clk)
        dut.i__payload.value = payload
        dut.i__valid.value = 1
        await ReadOnly()
        cycles += 1
        while not int(dut.i__ready.value):  # stalled: hold the pair
            await RisingEdge(dut.clk)
            await ReadOnly()
            cycles += 1
    await RisingEdge(dut.clk)  # the final handshake happens at this edge
    dut.i__valid.value = 0
    latency = 0
    while latency < 4 * unit.latency:
        await ReadOnly()
        latency += 1
        if int(dut.o__valid.value):
            break
        await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    return {"pairs": len(payloads), "cycles": cycles, "latency": latency}


@cocotb.test()
async def stream(dut):
    """Drive one caller-given BlockPairs stream (saved with torch.save at params["stimulus"]) and
    write the RTL's results (FP32 bit patterns) to the result file. Run it alone (testcase)."""
    params = json.loads(os.environ["MPGEN_TB_PARAMS"])
    assert "stimulus" in params, "the stream test needs params['stimulus'] (a torch.save file)"
    pairs = BlockPairs(**torch.load(params["stimulus"]))
    unit = BlockDotProduct(**params["config"])
    rng = random.Random(params["seed"])
    Clock(dut.clk, 2, unit="step").start()
    await _reset(dut)
    payloads = pack_payloads(unit.input_layout, pairs, unit.formats)
    expected = int(pairs.last.sum())
    accepted, got = await _drive(dut, payloads, rng, params.get("gap", 0.0), params.get("stall", 0.0),
                                 max_results=expected)
    with open(os.environ["MPGEN_TB_RESULT"], "w") as f:
        json.dump({"vectors": accepted, "results": got}, f)


@cocotb.test()
async def regression(dut):
    params = json.loads(os.environ["MPGEN_TB_PARAMS"])
    config, quick, seed = params["config"], params["quick"], params["seed"]
    unit = BlockDotProduct(**config)
    rng = random.Random(seed)
    Clock(dut.clk, 2, unit="step").start()  # any timescale: Icarus defaults to 1 s
    await _reset(dut)

    vectors = results_checked = mismatches = 0
    phases_report = {}
    first = []
    for phase in make_phases(config, quick=quick, seed=seed):
        payloads = pack_payloads(unit.input_layout, phase.pairs, unit.formats)
        expected = dot_products(phase.pairs).tolist()
        p_gap, p_stall = rng.choice([(0.0, 0.0), (0.3, 0.3), (0.1, 0.5), (0.6, 0.1)])
        if phase.reset_after is not None:
            accepted, got = await _drive(dut, payloads, rng, p_gap, p_stall,
                                         stop_after=phase.reset_after)
            # Results taken before the reset must be right; everything in flight is dropped.
            expected = expected[:len(got)]
            await _reset(dut, cycles=rng.randint(1, 4))
        else:
            accepted, got = await _drive(dut, payloads, rng, p_gap, p_stall,
                                         max_results=len(expected))
            if len(got) != len(expected):
                mismatches += abs(len(expected) - len(got)) or 1
                first.append(f"{phase.name}: {len(got)} results, expected {len(expected)}")
        bad = [(k, g, e) for k, (g, e) in enumerate(zip(got, expected)) if g != e]
        mismatches += len(bad)
        for k, g, e in bad[:3]:
            first.append(f"{phase.name}[{k}]: got {g:#010x} expected {e:#010x}")
        vectors += accepted
        results_checked += min(len(got), len(expected))
        phases_report[phase.name] = {"vectors": accepted, "results": len(got), "mismatches": len(bad),
                                     "gap": p_gap, "stall": p_stall}
        dut._log.info("%s: %d vectors, %d results, %d mismatches", phase.name, accepted, len(got), len(bad))

    # Timing contract: throughput one block pair per cycle, latency pipeline + 1 cycles.
    timing = await _measure_timing(dut, unit, make_phases(config, quick=True, seed=seed)[-1])
    dut._log.info("timing: %s", timing)
    if timing["latency"] != unit.latency or timing["cycles"] != timing["pairs"]:
        mismatches += 1
        first.append(f"timing: {timing}, expected latency {unit.latency} and one pair per cycle")
    phases_report["timing"] = {"vectors": timing["pairs"], "results": 1, "mismatches": 0,
                               "gap": 0.0, "stall": 0.0, **timing}
    report = {"vectors": vectors, "results": results_checked, "mismatches": mismatches,
              "phases": phases_report, "first_mismatches": "\n".join(first[:20])}
    path = os.environ.get("MPGEN_TB_RESULT")
    if path:
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
    assert mismatches == 0, f"{mismatches} mismatches:\n" + "\n".join(first[:20])
