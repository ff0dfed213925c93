"""Acceptance test of the unit plugin architecture: a toy unit registered from tests/ only goes
through every command (verilog, sim, area, energy, sweep, run, report) like a built-in one."""

import json

import pytest

from mpgen.flows import cli, units
from mpgen.flows.engine import Settings, energy_workloads
from mpgen.flows.records import check_record
from toy_design import toy_spec

pytestmark = [pytest.mark.sim, pytest.mark.synth]


@pytest.fixture(autouse=True)
def toy_unit(results_cache):
    units.register_unit(toy_spec("toy"))
    yield
    units.unregister_unit("toy")


def run_json(capsys, *argv):
    code = cli.main([*argv, "--json", "--jobs", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    records = json.loads(out)
    for r in records:
        check_record(r)
    return records, err


def test_verilog(capsys, tmp_path):
    assert cli.main(["verilog", "toy", "-o", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy-w4.v", "toy-w8.v"]


def test_sim(capsys):
    records, _ = run_json(capsys, "sim", "toy", "--seed", "5")
    assert [(r["config"], r["passed"], r["vectors"]) for r in records] == [
        ("w8", True, 100), ("w4", True, 100)]


def test_area_has_the_specs_groups(capsys):
    records, _ = run_json(capsys, "area", "toy", "--config", "w8", "--depth")
    (r,) = records
    assert r["kind"] == "area" and r["nand2_eq"] > 0 and r["logic_depth"] > 0
    assert set(r["groups"]) == {"stages", "adder", "glue"}
    assert sum(r["groups"].values()) == pytest.approx(r["nand2_eq"], rel=1e-6)


def test_energy_per_mode_is_checked_against_the_golden_model(capsys):
    records, _ = run_json(capsys, "energy", "toy", "--config", "w8", "--ops", "16")
    (r,) = records
    assert (r["kind"], r["mode"], r["ops"], r["mismatches"]) == ("energy", "add", 16, 0)
    assert r["energy_geu_per_op"] > 0 and r["energy_pj_per_op"] is None
    # every output is checked: each batch's 4 warm-up outputs and the 16 measured ones
    assert len(r["batch_energies_per_op"]) == 5 and r["vectors"] == 5 * 4 + 16


def test_warm_rerun_reads_the_cache(capsys):
    first, _ = run_json(capsys, "area", "toy", "--config", "w4")
    again, err = run_json(capsys, "area", "toy", "--config", "w4")
    assert not first[0]["cached"] and again[0]["cached"]
    assert {**first[0], "cached": True} == again[0]
    assert "(cached)" in err


def test_sweep(capsys, tmp_path):
    code = cli.main(["sweep", "toy", "--grid", "width=3,5", "--no-energy", "--jobs", "1",
                     "-o", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = json.loads((tmp_path / "sweep.json").read_text())["rows"]
    assert [(r["params"], r["status"]) for r in rows] == [({"width": 3}, "ok"), ({"width": 5}, "ok")]
    assert rows[0]["nand2_eq"] < rows[1]["nand2_eq"] and rows[0]["logic_depth"] > 0


def test_run_and_report(capsys, tmp_path):
    out = tmp_path / "out"
    assert cli.main(["run", "--unit", "toy", "-o", str(out), "--jobs", "1"]) == 0
    data = json.loads((out / "report-data.json").read_text())
    kinds = sorted({r["kind"] for r in data["records"]})
    assert kinds == ["area", "energy", "regression"]  # energy for the key configuration w8
    assert {r["config"] for r in data["records"] if r["kind"] == "energy"} == {"w8"}
    md = (out / "report.md").read_text()
    assert "| toy | w8 | verilator | 100 | 0 | PASS |" in md and "stages" in md
    assert (out / "figures" / "area_breakdown.png").is_file()
    capsys.readouterr()
    # the full report: the unit's own sweep grid (report_sweep), no model studies
    assert cli.main(["report", "--unit", "toy", "--no-models", "--energy", "key",
                     "-o", str(tmp_path / "full"), "--jobs", "1"]) == 0
    full = json.loads((tmp_path / "full" / "report-data.json").read_text())
    assert [s["unit"] for s in full["sweeps"]] == ["toy"]
    assert "## Sweeps" in (tmp_path / "full" / "report.md").read_text()
    # re-rendered from its data: byte-identical
    assert cli.main(["report", "--from", str(tmp_path / "full"), "-o", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "report.md").read_text() == (tmp_path / "full" / "report.md").read_text()


def test_energy_batches_share_the_operations_and_give_a_spread(capsys):
    records, _ = run_json(capsys, "energy", "toy", "--config", "w8", "--ops", "33", "--batches", "3")
    (r,) = records
    batches = r["batch_energies_per_op"]
    assert r["ops"] == 33 and len(batches) == 3  # 11 operations per batch
    mean, spread = sum(batches) / 3, r["spread_2sigma_per_op"]
    assert r["energy_geu_per_op"] == pytest.approx(mean, rel=1e-4)  # equal batches: the mean
    sd = (sum((b - mean) ** 2 for b in batches) / 2) ** 0.5
    assert spread == pytest.approx(2 * sd, abs=1e-5) and spread > 0  # different data per batch


def test_energy_batches_round_up_to_whole_quanta():
    spec = units.get_unit("fineq")
    comp = spec.build({"rows": 4, "cols": 4})
    loads = energy_workloads(spec, comp, Settings(energy_ops=100, energy_batches=5, data="synthetic"))
    (batches,) = loads.values()
    assert [w.ops for w in batches] == [32, 32, 16, 16, 16]  # 7 vectors of 16 MACs, 112 >= 100
    assert len({w.measure[0].inputs["a"][0] for w in batches}) > 1  # independent data


def test_cached_records_take_the_name_of_the_point_asking(capsys):
    first, _ = run_json(capsys, "area", "toy", "--config", "w4")
    again, _ = run_json(capsys, "area", "toy", "--param", "width=4")  # the same parameters
    assert again[0]["cached"] and again[0]["nand2_eq"] == first[0]["nand2_eq"]
    assert (first[0]["config"], again[0]["config"]) == ("w4", "width=4")
