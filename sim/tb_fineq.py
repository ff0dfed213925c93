"""cocotb regressions of the FineQ decoder, PE and array against the golden model.

Run through :func:`mpgen.sim.fineq.run_fineq_regression`, which builds one top per test
(``decoder``: :class:`~mpgen.rtl.fineq.FineQDecoder`; ``pe``: a standalone PE like the array's;
``array``: :class:`~mpgen.rtl.fineq.FineQArray`) and passes the array's parameters in
``MPGEN_TB_PARAMS``. Every comparison is bit for bit with :mod:`mpgen.golden.fineq`.
"""

from __future__ import annotations

import random

import cocotb
import torch
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, Timer

from mpgen.golden.fineq import decode_words
from mpgen.rtl.fineq import FineQArray
from mpgen.sim.fineq import (expected_results, make_array_phases, make_timing_tiles, pack_acts,
                             pack_weights, pe_for, pe_weight_values, tile_max_magnitude,
                             unpack_results)
from mpgen.sim.stream import (StreamDriver, StreamSink, reset, resolve, resolve_bool, start_clock,
                              tb_params, write_tb_result)

#: (weight/activation input idle probability, output stall probability) the phases draw from.
TRAFFIC = [(0.0, 0.0), (0.3, 0.3), (0.1, 0.5), (0.5, 0.1)]


def _array(params) -> FineQArray:
    arr = FineQArray(**params["config"])
    arr._MustUse__silence = True  # the decoder and PE tests only read its parameters
    return arr


def _finish(dut, vectors, results, mismatches, first, phases, timing=None):
    write_tb_result({"vectors": vectors, "results": results, "mismatches": mismatches,
                     "phases": phases, "timing": timing or {},
                     "first_mismatches": "\n".join(first[:20])}, merge=False)
    assert mismatches == 0, f"{mismatches} mismatches:\n" + "\n".join(first[:20])


# --------------------------------------------------------------------------- decoder


@cocotb.test()
async def decoder(dut):
    """All 256 words through the combinational decoder vs ``decode_words``."""
    array = _array(tb_params())
    want_w, want_d = decode_words(torch.arange(256, dtype=torch.uint8), array.code)
    ww = array.code.weight_width
    mismatches, first = 0, []
    for word in range(256):
        dut.word.value = word
        await Timer(1, "ns")
        packed = resolve(dut.weights)
        got = []
        for p in range(3):
            x = (packed >> (p * ww)) & ((1 << ww) - 1)
            got.append(x - (1 << ww) if x >> (ww - 1) else x)
        dropped = [(resolve(dut.dropped) >> p) & 1 for p in range(3)]
        exp = want_w[word].tolist()
        exp_d = [int(b) for b in want_d[word].tolist()]
        if got != exp or dropped != exp_d:
            mismatches += 1
            first.append(f"word {word:#04x}: got {got} dropped {dropped}, expected {exp} {exp_d}")
    _finish(dut, 256, 256, mismatches, first,
            {"decoder_exhaustive": {"vectors": 256, "results": 256, "mismatches": mismatches}})


# --------------------------------------------------------------------------- PE


@cocotb.test()
async def pe(dut):
    """Every weight × every activation (quick: 64 sampled activations and the corners) through a
    standalone PE, each product added to a random partial sum, with random stall cycles
    (``advance`` low, garbage on the inputs the PE must ignore)."""
    params = tb_params()
    array = _array(params)
    unit = pe_for(array)
    S = unit.step_cycles
    rng = random.Random(params["seed"])
    temporal = array.pe == "temporal"
    weights = pe_weight_values(array.pe, array.code if array.fineq else None, array.weight_width)
    alo, ahi = -(1 << (array.act_bits - 1)), (1 << (array.act_bits - 1)) - 1
    acts = list(range(alo, ahi + 1))
    if params.get("quick"):
        acts = sorted(set(rng.sample(acts, 64)) | {alo, ahi, 0, -1, 1})
    plo, phi = -(1 << (unit.acc_bits - 1)), (1 << (unit.acc_bits - 1)) - 1
    max_prod = max(abs(w) for w in weights) * (1 << (array.act_bits - 1))
    wlo, whi = -(1 << (unit.weight_width - 1)), (1 << (unit.weight_width - 1)) - 1

    def psum():
        r = rng.random()
        if r < 0.1:
            return plo + max_prod
        if r < 0.2:
            return phi - max_prod
        if r < 0.3:
            return 0
        return rng.randint(plo + max_prod, phi - max_prod)

    def drive(advance, step_end, first, phase, a_in, psum_in, load=0, w_in=0):
        dut.advance.value, dut.step_end.value, dut.load.value = advance, step_end, load
        dut.w_in.value = w_in
        dut.a_in.value, dut.psum_in.value = a_in, psum_in
        if temporal:
            dut.first.value = first
            if S > 1:
                dut.phase.value = phase

    start_clock(dut)
    drive(0, 0, 0, 0, 0, 0)
    await reset(dut, 2)
    mismatches = checked = 0
    first_bad = []
    for w in weights:
        await FallingEdge(dut.clk)
        drive(0, 0, 0, 0, rng.randint(alo, ahi), 0, load=1, w_in=w)
        await FallingEdge(dut.clk)  # pre-load the first activation (end of a step)
        drive(1, 1, int(S == 1), S - 1, acts[0], rng.randint(plo, phi))
        sums = [psum() for _ in acts]
        for k in range(len(acts) + 1):
            for p in range(S):
                await FallingEdge(dut.clk)
                while rng.random() < 0.15:  # stall: garbage everywhere, nothing may change
                    drive(0, rng.randrange(2), rng.randrange(2), rng.randrange(S), rng.randint(alo, ahi),
                          rng.randint(plo, phi), w_in=rng.randint(wlo, whi))
                    await FallingEdge(dut.clk)
                if p == 0 and k > 0:  # a register output: settled since the last rising edge
                    got = resolve(dut.psum_out, signed=True)
                    exp = sums[k - 1] + w * acts[k - 1]
                    checked += 1
                    if got != exp:
                        mismatches += 1
                        first_bad.append(f"w={w} a={acts[k - 1]} psum_in={sums[k - 1]}: got {got}, "
                                         f"expected {exp}")
                if k == len(acts):
                    break
                nxt = acts[k + 1] if k + 1 < len(acts) else 0
                drive(1, int(p == S - 1), int(p == 0), p,
                      nxt if p == S - 1 else rng.randint(alo, ahi),
                      sums[k] if p == 0 else rng.randint(plo, phi))
            if k == len(acts):
                break
    total = len(weights) * len(acts)
    _finish(dut, total, checked, mismatches + (checked != total), first_bad,
            {"pe_exhaustive": {"vectors": total, "results": checked, "mismatches": mismatches,
                               "weights": len(weights), "activations": len(acts)}})


# --------------------------------------------------------------------------- array


class _Recorder:
    """Counts cycles and records the cycle of every handshake on ``w``, ``a`` and ``o``."""

    def __init__(self, dut):
        self.dut = dut
        self.cycle = 0
        self.events = {"w": [], "a": [], "o": []}
        self.task = cocotb.start_soon(self._run())

    async def _run(self):
        dut = self.dut
        while True:
            await FallingEdge(dut.clk)
            await ReadOnly()
            for name in self.events:
                if resolve_bool(getattr(dut, f"{name}__valid")) and \
                        resolve_bool(getattr(dut, f"{name}__ready")):
                    self.events[name].append(self.cycle)
            self.cycle += 1

    def clear(self):
        for v in self.events.values():
            v.clear()


class _ArrayBench:
    def __init__(self, dut, array, rng):
        self.dut, self.array, self.rng = dut, array, rng
        self.wdrv = StreamDriver(dut, "w", dut.clk, rng=rng)
        self.adrv = StreamDriver(dut, "a", dut.clk, rng=rng)
        self.sink = StreamSink(dut, "o", dut.clk, rng=rng)
        self.sink.start()

    def traffic(self, idle, stall):
        self.wdrv.idle_prob = self.adrv.idle_prob = idle
        self.sink.stall_prob = stall

    async def tile(self, tile, n_acts=None):
        """Load the tile's weights, then stream its activations (the first ``n_acts``)."""
        await self.wdrv.send(pack_weights(self.array, tile))
        acts = pack_acts(self.array, tile)
        await self.adrv.send(acts if n_acts is None else acts[:n_acts])

    async def results(self, count, timeout):
        return await self.sink.wait_for(count, timeout_cycles=timeout)


def _cycles_bound(array, tiles, stall):
    s = sum(array.tile_cycles(t.m) for t in tiles)
    return int(64 + 4 * s / (1 - stall))


@cocotb.test()
async def array(dut):
    params = tb_params()
    arr = _array(params)
    rng = random.Random(params["seed"])
    start_clock(dut)
    for name in ("w", "a"):
        getattr(dut, f"{name}__valid").value = 0
    dut.o__ready.value = 0
    await reset(dut, 3)
    bench = _ArrayBench(dut, arr, rng)
    vectors = results = mismatches = 0
    first, phases_report = [], {}

    def compare(phase, got, expected):
        bad = 0
        for k, (g, e) in enumerate(zip(got, expected)):
            gv = unpack_results(arr, g)
            if gv != e:
                bad += 1
                if len(first) < 20:
                    first.append(f"{phase}[{k}]: got {gv} expected {e}")
        return bad

    phases = make_array_phases(arr, quick=params.get("quick", True), seed=params["seed"],
                               model_path=params.get("model_path"))
    for phase in phases:
        idle, stall = rng.choice(TRAFFIC)
        bench.traffic(idle, stall)
        start = len(bench.sink.items)
        expected = []
        accepted = 0
        for i, tile in enumerate(phase.tiles):
            cut = phase.reset_after if (phase.reset_after is not None and i == len(phase.tiles) - 1) \
                else None
            await bench.tile(tile, cut)
            exp = expected_results(arr, tile)
            expected += exp if cut is None else exp[:cut]
            accepted += tile.m if cut is None else cut
        if phase.reset_after is not None:
            await reset(dut, rng.randint(1, 4))  # vectors of the cut tile are still in flight
            got = bench.sink.items[start:]
            n_in_flight = len(expected) - len(got)
            expected = expected[:len(got)]
            bad = compare(phase.name, got, expected)
            extra = 0
        else:
            try:
                got = (await bench.results(start + len(expected),
                                           _cycles_bound(arr, phase.tiles, stall)))[start:]
            except TimeoutError as e:
                got = bench.sink.items[start:]
                mismatches += 1
                first.append(f"{phase.name}: {e}")
            await ClockCycles(dut.clk, 8)
            extra = len(bench.sink.items) - start - len(expected)
            if extra:
                first.append(f"{phase.name}: {extra} results more than expected")
            bad = compare(phase.name, got, expected)
            n_in_flight = 0
        mismatches += bad + max(extra, 0)
        vectors += accepted
        results += min(len(got), len(expected))
        phases_report[phase.name] = {"vectors": accepted, "results": len(got), "mismatches": bad,
                                     "tiles": len(phase.tiles), "gap": idle, "stall": stall,
                                     "dropped_by_reset": n_in_flight}
        dut._log.info("%s: %d tiles, %d vectors, %d results, %d mismatches", phase.name,
                      len(phase.tiles), accepted, len(got), bad)

    # ---- timing: back-to-back streams, output always ready; check the documented formulas
    # for each tile's own step (its largest |w|), tiles of every reachable max|w| included
    bench.traffic(0.0, 0.0)
    timing = {}
    timing_vectors = timing_bad = 0
    for name, tile in make_timing_tiles(arr, seed=params["seed"]).items():
        m, top = tile.m, tile_max_magnitude(arr, tile)
        rec = _Recorder(dut)
        start = len(bench.sink.items)
        w_task = cocotb.start_soon(bench.wdrv.send(pack_weights(arr, tile)))
        await bench.adrv.send(pack_acts(arr, tile))  # offered at once: must wait for the weights
        await w_task
        got = (await bench.results(start + m, 4 * arr.tile_cycles(m) + 64))[start:]
        await ClockCycles(dut.clk, 2)
        rec.task.cancel()
        ev = rec.events
        bad = compare(f"timing_{name}", got, expected_results(arr, tile))
        latencies = sorted({o - a - 1 for a, o in zip(ev["a"], ev["o"])})
        gaps = sorted({b - a for a, b in zip(ev["a"], ev["a"][1:])})
        measured = {"tile_cycles": ev["o"][-1] - ev["w"][0] + 1, "latency_cycles": latencies,
                    "accept_interval": gaps, "weight_to_act": ev["a"][0] - ev["w"][-1]}
        want = {"tile_cycles": arr.tile_cycles(m, top),
                "latency_cycles": [arr.tile_latency_cycles(top)],
                "accept_interval": [arr.tile_step_cycles(top)] if m > 1 else [],
                "weight_to_act": 1}
        timing[name] = {"measured": measured, "formula": want, "m": m, "max_magnitude": top}
        dut._log.info("timing %s (m=%d, max|w| %d): measured %s, formula %s", name, m, top,
                      measured, want)
        if measured != want:
            timing_bad += 1
            first.append(f"timing {name} (max|w| {top}): measured {measured}, formula {want}")
        timing_bad += bad
        vectors += m
        timing_vectors += m
        results += len(got)
    mismatches += timing_bad
    phases_report["timing"] = {"vectors": timing_vectors, "results": timing_vectors,
                               "mismatches": timing_bad}
    _finish(dut, vectors, results, mismatches, first, phases_report,
            {"step_cycles": arr.step_cycles, "latency_cycles": arr.latency_cycles,
             "weight_transfers": arr.weight_transfers, **timing})
