"""cocotb testbench for tests/toy_design.py (run through mpgen.sim.runner.run_cocotb).

Params (``MPGEN_TB_PARAMS``): ``width``, ``n`` (vectors), ``idle_prob``, ``stall_prob``,
``offset`` (added to the expected value; non-zero forces mismatches, to test the
failure path), ``hang`` (never finish, to test timeouts).
"""

import random

import cocotb
from cocotb.triggers import Timer

from mpgen.sim.stream import (StreamDriver, StreamSink, reset, start_clock, tb_params,
                              write_tb_result)


@cocotb.test()
async def stream_adder(dut):
    p = tb_params()
    width, n = int(p.get("width", 8)), int(p.get("n", 200))
    if p.get("hang"):
        while True:
            await Timer(1000, unit="ns")
    start_clock(dut)
    await reset(dut, 2)
    rng = random.Random(cocotb.RANDOM_SEED)
    pairs = [(rng.getrandbits(width), rng.getrandbits(width)) for _ in range(n)]
    driver = StreamDriver(dut, "i", dut.clk, idle_prob=float(p.get("idle_prob", 0.3)))
    sink = StreamSink(dut, "o", dut.clk, stall_prob=float(p.get("stall_prob", 0.3)))
    sink.start()
    await driver.send(a | (b << width) for a, b in pairs)
    got = await sink.wait_for(n, timeout_cycles=20 * n + 100)
    offset = int(p.get("offset", 0))
    mismatches = sum(g != a + b + offset for g, (a, b) in zip(got, pairs))
    write_tb_result({"vectors": n, "mismatches": mismatches, "cycles": sink.cycles,
                     "seed": cocotb.RANDOM_SEED})
    assert mismatches == 0, f"{mismatches} of {n} sums wrong"
