"""Smoke runs of the benchmark scripts (--quick): they exit 0 and print their figure lines.

Speed is not checked. bench_sim.py, bench_synth.py and bench_energy.py need simulators / Yosys
and minutes; they are not run here (bench_units.py runs with ``--skip-sim``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mpgen.flows.units import unit_names

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
FIGURE = re.compile(r"^FIGURE (\S+) = (\S+) (.+?)(?:  \(.*)?$", re.M)  # name = value unit  (detail)


def _run(script: str) -> dict[str, tuple[float, str]]:
    proc = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    figs = {m.group(1): (float(m.group(2)), m.group(3)) for m in FIGURE.finditer(proc.stdout)}
    print(proc.stdout)
    return figs


def test_bench_golden_quick():
    figs = _run("bench_golden.py")
    expected = {"nvfp4.torchao_recipe": "elements/s", "nvfp4.exact_recipe": "elements/s",
                "fgmp.quantize": "elements/s", "dotprod.dot_products": "block pairs/s"}
    for name, unit in expected.items():
        assert name in figs, f"missing figure {name}"
        value, got_unit = figs[name]
        assert value > 0 and got_unit == unit
    try:
        import torchao.prototype.mx_formats.nvfp4_tensor  # noqa: F401
    except Exception:  # noqa: BLE001
        pytest.skip("torchao not importable: its figure is not printed")
    assert figs["nvfp4.torchao_lib"][0] > 0


def test_bench_generate_quick():
    figs = _run("bench_generate.py")
    for name in ("fp8-only", "fp4-only", "mixed-split", "mixed-shared"):
        value, unit = figs[f"generate.{name}"]
        assert value > 0 and unit == "s"


def test_bench_units_generation_and_golden():
    """Every unit of the registry gets a generation figure; the golden figures are printed."""
    proc = subprocess.run([sys.executable, str(BENCH / "bench_units.py"), "--skip-sim"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figs = {m.group(1): (float(m.group(2)), m.group(3)) for m in FIGURE.finditer(proc.stdout)}
    print(proc.stdout)
    for unit in unit_names():  # dotprod, classifier, fineq, fgmp_pipeline
        assert any(k.startswith(f"gen.{unit}.") and v[0] > 0 for k, v in figs.items()), unit
    for name, unit in (("golden.classifier.blocks_per_s", "blocks/s"),
                       ("golden.fineq.quantize_weights_per_s", "weights/s"),
                       ("golden.fineq.int_gemm_macs_per_s", "MAC/s")):
        assert figs[name][0] > 0 and figs[name][1] == unit


def test_bench_design_reads_the_committed_report():
    """The design ratios of the committed report data: the mixed units' FP4/FP8 energy and area
    ratios are printed, each a positive ratio."""
    figs = _run("bench_design.py")
    for name in ("dotprod.mixed-split.fp4xfp4_vs_fp8xfp8", "dotprod.mixed-split.area_vs_fp8_only"):
        value, unit = figs[name]
        assert 0 < value < 10 and unit == "x"
