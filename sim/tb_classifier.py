"""cocotb regression of ``ActivationClassifier`` against the golden model.

Run through :func:`mpgen.sim.classifier.run_classifier_regression`. Each phase of
:func:`mpgen.sim.classifier.make_phases` writes its configuration through the ``cfg`` stream, then
streams its blocks with random input gaps and random output back-pressure; every output block
(codes, FP8 flag, scale, last) is compared bit for bit with the golden model.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from mpgen.rtl.classifier import CFG_FISHER, CFG_SCALE_EXP, CFG_THRESHOLD, ActivationClassifier
from mpgen.sim.classifier import expected_outputs, make_phases, pack_inputs
from mpgen.sim.stream import StreamDriver, StreamSink, reset, start_clock, tb_params, write_tb_result

TRAFFIC = [(0.0, 0.0), (0.3, 0.3), (0.1, 0.5), (0.6, 0.1), (0.0, 0.2)]


def cfg_payload(unit, kind, addr, value):
    offs = {n: f.offset for n, f in unit.cfg_layout}
    return (kind << offs["kind"]) | (addr << offs["addr"]) | (value << offs["data"])


class _Bench:
    def __init__(self, dut, unit, rng):
        self.dut, self.unit = dut, unit
        self.driver = StreamDriver(dut, "i", dut.clk, rng=rng)
        self.cfg = StreamDriver(dut, "cfg", dut.clk, rng=rng)
        self.sink = StreamSink(dut, "o", dut.clk, rng=rng)
        self.sink.start()
        self.table = self.threshold = self.p = None

    async def program(self, phase):
        unit, writes = self.unit, []
        if phase.table is not None:
            writes += [cfg_payload(unit, CFG_FISHER, a, w) for a, w in enumerate(phase.table.words())]
            self.table = phase.table
        if phase.threshold is not None:
            writes.append(cfg_payload(unit, CFG_THRESHOLD, 0, phase.threshold))
            self.threshold = phase.threshold
        if phase.p is not None:
            writes.append(cfg_payload(unit, CFG_SCALE_EXP, 0, phase.p & ((1 << unit.config.p_bits) - 1)))
            self.p = phase.p
        if writes:
            await self.cfg.send(writes)


async def _measure_timing(dut, unit, payloads):
    """Back-to-back blocks with ``o.ready`` high: the cycles from the first block's handshake to
    the last one's (both inclusive), and the clock edges from the first handshake (inclusive)
    to ``o.valid``."""
    await FallingEdge(dut.clk)
    dut.o__ready.value = 1
    edges = sent = 0
    first_handshake = first_valid = last_handshake = None
    dut.i__payload.value = payloads[0]
    dut.i__valid.value = 1
    while sent < len(payloads) or (first_valid is None and edges < 100 + 20 * len(payloads)):
        await ReadOnly()
        if first_valid is None and first_handshake is not None and int(dut.o__valid.value):
            first_valid = edges - first_handshake
        handshake = sent < len(payloads) and int(dut.i__ready.value)
        await FallingEdge(dut.clk)  # a handshake happened at the rising edge in between
        if handshake:
            first_handshake = edges if first_handshake is None else first_handshake
            last_handshake = edges
            sent += 1
            if sent < len(payloads):
                dut.i__payload.value = payloads[sent]
            else:
                dut.i__valid.value = 0
        edges += 1
    await ClockCycles(dut.clk, 8 + unit.latency)
    return {"blocks": len(payloads), "cycles": last_handshake - first_handshake + 1,
            "latency": first_valid}


@cocotb.test()
async def regression(dut):
    params = tb_params()
    unit = ActivationClassifier(**params["config"])
    rng = random.Random(params["seed"])
    start_clock(dut)
    dut.i__valid.value = 0
    dut.cfg__valid.value = 0
    dut.o__ready.value = 0
    await reset(dut, 3)
    bench = _Bench(dut, unit, rng)
    vectors = results = mismatches = 0
    report, first = {}, []
    phases = make_phases(params["config"], quick=params["quick"], seed=params["seed"])
    for phase in phases:
        await bench.program(phase)
        payloads = pack_inputs(unit.input_layout, phase.values, phase.index, phase.last)
        expected = expected_outputs(unit.output_layout, phase, bench.table, bench.threshold, bench.p,
                                    unit.config)
        idle, stall = rng.choice(TRAFFIC)
        bench.driver.idle_prob, bench.sink.stall_prob = idle, stall
        start = len(bench.sink.items)
        if phase.reset_after is not None:
            await bench.driver.send(payloads[:phase.reset_after])
            await reset(dut, rng.randint(1, 4))
            got = bench.sink.items[start:]
            expected = expected[:len(got)]
            accepted = phase.reset_after
        else:
            await bench.driver.send(payloads)
            try:
                await bench.sink.wait_for(start + len(expected), timeout_cycles=200 + (8 + 2 * unit.cycles_per_block) * len(payloads))
            except TimeoutError as e:
                mismatches += 1
                first.append(f"{phase.name}: {e}")
            await ClockCycles(dut.clk, 6)
            got = bench.sink.items[start:]
            if len(got) != len(expected):
                mismatches += abs(len(got) - len(expected))
                first.append(f"{phase.name}: {len(got)} outputs, expected {len(expected)}")
            accepted = len(payloads)
        bad = [(k, g, e) for k, (g, e) in enumerate(zip(got, expected)) if g != e]
        mismatches += len(bad)
        for k, g, e in bad[:3]:
            first.append(f"{phase.name}[{k}]: got {g:#x}\n   expected {e:#x}")
        vectors += accepted
        results += min(len(got), len(expected))
        group = report.setdefault(phase.name, {"vectors": 0, "results": 0, "mismatches": 0,
                                               "gap": idle, "stall": stall})
        group["vectors"] += accepted
        group["results"] += min(len(got), len(expected))
        group["mismatches"] += len(bad)
    for name, ph in report.items():
        dut._log.info("%s: %s", name, ph)

    bench.sink.stop()
    timing = await _measure_timing(dut, unit, pack_inputs(unit.input_layout, phases[-1].values,
                                                          phases[-1].index, phases[-1].last))
    dut._log.info("timing: %s", timing)
    period = unit.cycles_per_block
    if timing["latency"] != unit.latency or timing["cycles"] != (timing["blocks"] - 1) * period + 1:
        mismatches += 1
        first.append(f"timing: {timing}, expected latency {unit.latency} and one block per "
                     f"{period} cycle(s)")
    report["timing"] = {"vectors": timing["blocks"], "results": 0, "mismatches": 0, "gap": 0.0,
                        "stall": 0.0, **timing}
    write_tb_result({"vectors": vectors, "results": results, "mismatches": mismatches,
                     "phases": report, "first_mismatches": "\n".join(first[:20])}, merge=False)
    assert mismatches == 0, f"{mismatches} mismatches:\n" + "\n".join(first[:20])
