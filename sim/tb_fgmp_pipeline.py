"""cocotb stream test of ``ClassifierDotProduct``: program the classifier, then drive activation
blocks and weight blocks as two independent streams (random gaps on each, random back-pressure on
the result) and write the FP32 results to the result file. Run through
:func:`mpgen.sim.classifier.simulate_classifier_dotprod`."""

from __future__ import annotations

import random

import cocotb
import torch
from cocotb.triggers import ClockCycles

from mpgen.golden.classifier import FisherTable
from mpgen.rtl.classifier import CFG_FISHER, CFG_SCALE_EXP, CFG_THRESHOLD
from mpgen.rtl.fgmp_pipeline import ClassifierDotProduct
from mpgen.sim.classifier import pack_inputs
from mpgen.sim.stream import StreamDriver, StreamSink, reset, start_clock, tb_params, write_tb_result


def _pack_weights(layout, codes, fp8, scale):
    offs = {n: f.offset for n, f in layout}
    out = []
    for row, f8, sc in zip(codes.tolist(), fp8.tolist(), scale.tolist()):
        v = sum(int(c) << (offs["codes"] + 8 * j) for j, c in enumerate(row))
        out.append(v | int(f8) << offs["fp8"] | int(sc) << offs["scale"])
    return out


@cocotb.test()
async def stream(dut):
    params = tb_params()
    s = torch.load(params["stimulus"])
    unit = ClassifierDotProduct(**params["config"])
    cls = unit.classifier
    rng = random.Random(params["seed"])
    start_clock(dut)
    for port in ("act__valid", "w__valid", "cfg__valid", "o__ready"):
        getattr(dut, port).value = 0
    await reset(dut, 3)
    offs = {n: f.offset for n, f in cls.cfg_layout}

    def cfg(kind, addr, value):
        return kind << offs["kind"] | addr << offs["addr"] | value << offs["data"]

    table = FisherTable(s["table_codes"], s["table_unit_exp"])
    writes = [cfg(CFG_FISHER, a, w) for a, w in enumerate(table.words())]
    writes += [cfg(CFG_THRESHOLD, 0, s["threshold"]),
               cfg(CFG_SCALE_EXP, 0, s["p"] & ((1 << cls.config.p_bits) - 1))]
    await StreamDriver(dut, "cfg", dut.clk, rng=rng).send(writes)

    act = StreamDriver(dut, "act", dut.clk, idle_prob=params["gap"], rng=random.Random(rng.random()))
    wts = StreamDriver(dut, "w", dut.clk, idle_prob=params["gap"], rng=random.Random(rng.random()))
    sink = StreamSink(dut, "o", dut.clk, stall_prob=params["stall"], rng=random.Random(rng.random()))
    sink.start()
    a_task = act.start(pack_inputs(cls.input_layout, s["values"], s["index"], s["last"]))
    w_task = wts.start(_pack_weights(unit.weight_layout, s["w_codes"], s["w_fp8"], s["w_scale"]))
    n_results = int(s["last"].sum())
    got = await sink.wait_for(n_results, timeout_cycles=1000 + 20 * len(s["last"]))
    await a_task
    await w_task
    await ClockCycles(dut.clk, 10)
    assert len(sink.items) == n_results, f"{len(sink.items)} results, expected {n_results}"
    write_tb_result({"vectors": len(s["last"]), "results": got}, merge=False)
