"""The mpgen CLI, driven in-process with a toy unit registered in the unit registry."""

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mpgen.flows import cli, units
from mpgen.flows.units import UnitSpec, parse_params
from mpgen.sim import runner
from toy_design import ToyStreamAdder, toy_regression

LIB = Path(__file__).resolve().parents[1].parent / "shared" / "lib" / "sg13g2_stdcell_typ_1p20V_25C.lib"


@pytest.fixture(autouse=True)
def toy_units(monkeypatch):
    monkeypatch.setitem(units.UNITS, "toy", UnitSpec(
        factory=ToyStreamAdder, default_configs={"w8": {"width": 8}},
        regression=toy_regression, description="toy stream adder"))
    monkeypatch.setitem(units.UNITS, "toybad", UnitSpec(
        factory=ToyStreamAdder, default_configs={"w8": {"width": 8}},
        regression=functools.partial(toy_regression, offset=1)))


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err):
    lines = [ln for ln in err.splitlines() if ln.startswith("mpgen:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_parse_params():
    assert parse_params(["block_size=16", "formats=fp8", "x=-3", "h=0x10", "z=08"]) == {
        "block_size": 16, "formats": "fp8", "x": -3, "h": 16, "z": 8}
    for bad in (["block_size"], ["=3"], ["a b=1"]):
        with pytest.raises(ValueError, match="NAME=VALUE"):
            parse_params(bad)


def test_registry():
    assert set(units.UNITS["dotprod"].default_configs) == {
        "fp8-only", "fp4-only", "mixed-split", "mixed-shared"}
    with pytest.raises(ValueError, match="already registered"):
        units.register_unit("toy", units.UNITS["toy"])
    with pytest.raises(ValueError, match="known units"):
        units.get_unit("nope")


@pytest.mark.parametrize("argv", [[], ["verilog"], ["sim"], ["area"], ["run"]])
def test_help(capsys, argv):
    with pytest.raises(SystemExit) as e:
        cli.main(argv + ["--help"])
    assert e.value.code == 0
    assert "usage: mpgen" in capsys.readouterr().out


def test_console_script():
    out = subprocess.run([sys.executable, "-c", "from mpgen.flows.cli import main; main()", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "verilog" in out.stdout and "dotprod" in out.stdout


def test_verilog(capsys, tmp_path):
    code, out, _ = run(capsys, "verilog", "toy", "--param", "width=4", "-o", str(tmp_path))
    assert code == 0 and "module toy(" in (tmp_path / "toy.v").read_text()
    code, out, _ = run(capsys, "-q", "verilog", "toy", "--config", "w8", "-o", str(tmp_path))
    assert code == 0 and (tmp_path / "toy-w8.v").is_file()


@pytest.mark.parametrize("argv,message", [
    (["verilog", "toy", "--param", "width=0", "-o", "X"], "width must be in 1..64"),
    (["verilog", "toy", "--param", "depth=3", "-o", "X"], "unexpected keyword argument 'depth'"),
    (["verilog", "toy", "--param", "width", "-o", "X"], "NAME=VALUE"),
    (["verilog", "nope", "-o", "X"], "unknown unit 'nope'"),
    (["verilog", "toy", "--config", "w99", "-o", "X"], "unknown configuration 'w99'"),
    (["area", "toy", "--liberty", "/no/such.lib"], "Liberty file not found"),
    (["sim", "toy", "--param", "width=x"], "width must be an int"),
])
def test_errors_are_one_line(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 1 and message in one_error_line(err)


def test_missing_simulator(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "_FOUND", {})
    monkeypatch.setenv("PATH", str(tmp_path))
    code, _, err = run(capsys, "sim", "toy", "--simulator", "icarus")
    assert code == 1 and "apt-get install iverilog" in one_error_line(err)


@pytest.mark.sim
def test_sim_pass_and_fail(capsys):
    code, out, err = run(capsys, "sim", "toy", "--seed", "3")
    assert code == 0 and "PASS toy/w8 [verilator] 100 vectors, 0 mismatches" in out
    assert "[" in err and "s]" in err  # timestamped progress
    code, out, err = run(capsys, "sim", "toybad", "--seed", "3")
    assert code == 1 and "FAIL" in out
    assert "regression failed: toybad/w8 on verilator (100 mismatches)" in one_error_line(err)


@pytest.mark.synth
def test_area(capsys, tmp_path):
    argv = ["area", "toy", "--config", "w8", "-o", str(tmp_path)]
    if LIB.is_file():
        argv += ["--liberty", str(LIB)]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "| w8 |" in out and "adder NAND2-eq" in out
    assert ("µm²" in out) == LIB.is_file()
    data = json.loads((tmp_path / "toy-area.json").read_text())
    assert data["w8"]["nand2_eq"] > 0


@pytest.mark.sim
@pytest.mark.synth
def test_run_main_job(capsys, tmp_path):
    argv = ["run", "--unit", "toy", "-o", str(tmp_path / "out"), "--seed", "1"]
    if LIB.is_file():
        argv += ["--liberty", str(LIB)]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "| w8 |" in out and "NAND2-eq" in out
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| toy | w8 | verilator | 100 | 0 | PASS |" in md and "## Area" in md
    assert "figures/area_breakdown.png" in md
    assert (tmp_path / "out" / "figures" / "area_breakdown.svg").is_file()
    rep = json.loads((tmp_path / "out" / "report-data.json").read_text())
    entry = rep["units"]["toy"]["w8"]
    assert entry["regression"]["verilator"]["passed"] and entry["area"]["nand2_eq"] > 0
    assert Path(entry["verilog"]).is_file()

    # the report re-rendered from its saved data is the same file
    code, _, err = run(capsys, "report", "--from", str(tmp_path / "out"), "-o", str(tmp_path / "again"))
    assert code == 0, err
    assert (tmp_path / "again" / "report.md").read_text() == md
    code, _, err = run(capsys, "report", "--from", str(tmp_path / "nothing"), "-o", str(tmp_path / "x"))
    assert code == 1 and "no report data" in one_error_line(err)

    code, _, err = run(capsys, "run", "--unit", "toybad", "-o", str(tmp_path / "bad"))
    assert code == 1 and "regression failed" in one_error_line(err)
    assert (tmp_path / "bad" / "report.md").is_file()  # report written even on failure


def test_study_dispatches_arguments_to_the_study_module(capsys, monkeypatch):
    seen = []
    fake = type(sys)("fake_study")
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, "fake_study", fake)
    monkeypatch.setitem(cli.STUDIES, "fake", ("fake_study", "a fake study"))
    code, _, _ = run(capsys, "study", "fake", "--quick", "--out", "x.md")
    assert code == 0 and seen == [["--quick", "--out", "x.md"]]
    fake.main = lambda argv: 3
    assert run(capsys, "study", "fake")[0] == 3


def test_study_unknown_name_is_one_error_line(capsys):
    code, _, err = run(capsys, "study", "nope")
    assert code == 1
    line = one_error_line(err)
    assert "unknown study 'nope'" in line and "fgmp-policy" in line


def test_studies_point_at_importable_modules():
    import importlib.util
    for name, (module, _) in cli.STUDIES.items():
        assert importlib.util.find_spec(module) is not None, f"{name}: {module} missing"


@pytest.mark.sim
@pytest.mark.synth
def test_energy_command(capsys, tmp_path):
    argv = ["energy", "dotprod", "--param", "block_size=8", "--param", "formats=fp4", "--ops", "16",
            "--data", "synthetic", "-o", str(tmp_path)]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "| custom | fp4xfp4 |" in out and "GEU/block pair" in out
    data = json.loads((tmp_path / "dotprod-energy.json").read_text())
    assert data["custom"]["modes"]["fp4xfp4"]["energy_per_op"] > 0
    assert data["custom"]["modes"]["fp4xfp4"]["mismatches"] == 0
    code, _, err = run(capsys, "energy", "toy", "-o", str(tmp_path))
    assert code == 1 and "no energy workloads" in one_error_line(err)
    code, _, err = run(capsys, "energy", "dotprod", "--param", "block_size=7", "-o", str(tmp_path))
    assert code == 1 and "block_size" in one_error_line(err)
