"""mpgen.sim.stream driver/sink on the toy stream adder, on every installed simulator."""

import json

import pytest

from mpgen.rtl.emit import to_verilog
from mpgen.sim import PARAMS_ENV, RESULT_ENV
from mpgen.sim.runner import SimulatorNotFound, find_simulator, run_cocotb
from toy_design import ToyStreamAdder

pytestmark = pytest.mark.sim


def _need(sim):
    try:
        find_simulator(sim)
    except SimulatorNotFound as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def toy_verilog():
    return to_verilog(ToyStreamAdder(8), "toy")


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.5, 0.5), (0.0, 0.8)])
def test_stream_traffic(sim, idle, stall, toy_verilog):
    _need(sim)
    n = 150
    run = run_cocotb(toy_verilog, "toy", "toy_tb", simulator=sim, seed=11,
                     params={"n": n, "idle_prob": idle, "stall_prob": stall})
    assert run.passed, run.log.read_text()[-3000:]
    assert run.result["vectors"] == n and run.result["mismatches"] == 0
    cycles = run.result["cycles"]
    if idle == stall == 0.0:
        assert cycles <= n + 8  # back-to-back: one transfer per cycle through both stages
    else:
        assert cycles > n * 1.3  # gaps and back-pressure really happened


def test_simulators_agree_cycle_for_cycle(toy_verilog):
    _need("icarus")
    params = {"n": 80, "idle_prob": 0.3, "stall_prob": 0.4}
    runs = [run_cocotb(toy_verilog, "toy", "toy_tb", simulator=s, seed=5, params=params)
            for s in ("verilator", "icarus")]
    assert all(r.passed for r in runs)
    assert runs[0].result["cycles"] == runs[1].result["cycles"]


def test_params_and_result_contract(monkeypatch, tmp_path):
    from mpgen.sim.stream import tb_params, write_tb_result

    out = tmp_path / "r.json"
    monkeypatch.setenv(PARAMS_ENV, json.dumps({"n": 3, "mode": "x"}))
    monkeypatch.setenv(RESULT_ENV, str(out))
    assert tb_params() == {"n": 3, "mode": "x"}
    write_tb_result({"vectors": 10, "mismatches": 1, "note": "a"})
    write_tb_result({"vectors": 5, "mismatches": 0, "note": "b"})
    assert json.loads(out.read_text()) == {"vectors": 15, "mismatches": 1, "note": "b"}
    monkeypatch.delenv(RESULT_ENV)
    write_tb_result({"vectors": 1})  # no-op outside run_cocotb
