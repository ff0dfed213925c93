"""Generic cocotb testbench: drives a :class:`mpgen.sim.workload.Workload`'s phases.

Run through :func:`mpgen.sim.workload.run_workload`.  ``MPGEN_TB_PARAMS`` names a JSON
file with a list of :class:`~mpgen.sim.workload.StreamPhase` dicts.  After a reset, each
phase drives its input streams concurrently, back to back (``valid`` held high while a
stream has payloads left), holds ``ready`` high on every output stream of the workload,
and ends once each awaited output has arrived.  Output payloads are compared with the
phase's ``expected`` ones where given.  The design may be the RTL or a gate-level
netlist with the same ports (the energy flow simulates the latter).

Result keys: ``vectors`` (outputs compared), ``mismatches``, ``outputs`` (per stream),
``cycles`` (clock cycles from the end of reset to the end of the last phase),
``first_mismatches`` (up to 5 descriptions).
"""

from __future__ import annotations

import json

import cocotb
from cocotb.triggers import ClockCycles, Combine, RisingEdge

from mpgen.sim.stream import StreamDriver, StreamSink, reset, start_clock, tb_params, write_tb_result

#: Idle cycles after the last phase (outputs that should not come would show up here).
TAIL_CYCLES = 4


@cocotb.test()
async def workload(dut):
    params = tb_params()
    with open(params["phases_file"]) as f:
        phases = json.load(f)
    start_clock(dut)
    out_names = sorted({name for ph in phases for name in ph["outputs"]})
    in_names = sorted({name for ph in phases for name in ph["inputs"]})
    drivers = {n: StreamDriver(dut, n, dut.clk) for n in in_names}
    sinks = {n: StreamSink(dut, n, dut.clk) for n in out_names}
    await reset(dut, 2)
    for s in sinks.values():
        s.start()
    cycles = 0

    async def count_cycles():
        nonlocal cycles
        while True:
            await RisingEdge(dut.clk)
            cycles += 1

    counter = cocotb.start_soon(count_cycles())
    vectors = mismatches = 0
    first: list[str] = []
    for ph in phases:
        starts = {n: len(s.items) for n, s in sinks.items()}
        tasks = [drivers[n].start(items) for n, items in ph["inputs"].items() if items]
        waits = [cocotb.start_soon(sinks[n].wait_for(starts[n] + int(c),
                                                      timeout_cycles=10_000 + 64 * int(c)))
                 for n, c in ph["outputs"].items() if int(c)]
        if tasks or waits:
            await Combine(*tasks, *waits)
        for n, exp in (ph.get("expected") or {}).items():
            got = sinks[n].items[starts[n]:starts[n] + len(exp)]
            for k, (g, e) in enumerate(zip(got, exp)):
                vectors += 1
                if g != int(e):
                    mismatches += 1
                    if len(first) < 5:
                        first.append(f"phase {ph.get('name', '')!r} {n}[{k}]: got {g:#x}, "
                                     f"expected {int(e):#x}")
    await ClockCycles(dut.clk, TAIL_CYCLES)
    counter.cancel()
    expected_total = {n: sum(int(ph["outputs"].get(n, 0)) for ph in phases) for n in out_names}
    extra = {n: len(sinks[n].items) - expected_total[n] for n in out_names}
    for n, x in extra.items():
        if x:
            mismatches += abs(x)
            if len(first) < 5:
                first.append(f"{n}: {len(sinks[n].items)} outputs, expected {expected_total[n]}")
    write_tb_result({"vectors": vectors, "mismatches": mismatches, "cycles": cycles,
                     "outputs": {n: len(s.items) for n, s in sinks.items()},
                     "first_mismatches": first})
    assert mismatches == 0, "; ".join(first)
