"""``ClassifierDotProduct`` as a unit of the tool: its regression and its energy workload.

Simulator tests (``@pytest.mark.sim``, skipped without Verilator): the quick regression passes;
the same regression with one golden result corrupted reports exactly that mismatch; the energy
workload (real MiniLM data when installed, else synthetic) runs through the generic workload
testbench on the RTL with no mismatch. Without a simulator: parameter validation, the workload's
shape and packing.
"""

from __future__ import annotations

import pytest
import torch
from mpgen.sim import fgmp_pipeline as fp


@pytest.fixture(scope="module")
def verilator():
    from mpgen.sim.runner import SimulatorNotFound, find_simulator

    try:
        find_simulator("verilator")
    except SimulatorNotFound as e:
        pytest.skip(str(e))
    return "verilator"


def _print(result):
    print(result.summary())
    for name, ph in result.phases.items():
        print(f"  {name}: {ph['vectors']} block pairs, {ph['results']} results, {ph['mismatches']} "
              f"mismatches (gaps {ph['gap']}, stalls {ph['stall']}; FP8 blocks: activations "
              f"{ph['a_fp8']:.0%}, weights {ph['w_fp8']:.0%})")


@pytest.mark.sim
def test_regression_quick_passes(verilator, record_property):
    result = fp.run_pipeline_regression({}, simulator=verilator, quick=True, seed=1)
    _print(result)
    record_property("vectors_checked", f"{result.vectors} block pairs / {result.results} results "
                                       f"on {result.simulator} (classifier + dot product)")
    assert result.mismatches == 0, result.details
    assert result.passed
    assert 200 <= result.vectors <= 1000 and result.results > 50
    assert len(result.phases) >= 2
    settings = {(ph["gap"], ph["stall"]) for ph in result.phases.values()}
    assert (0.0, 0.0) in settings and any(g > 0 and s > 0 for g, s in settings)
    # a mix of NVFP4 and FP8 blocks on both sides
    assert any(0.1 < ph["a_fp8"] < 0.9 for ph in result.phases.values())
    assert all(0.1 < ph["w_fp8"] < 0.6 for ph in result.phases.values())


@pytest.mark.sim
def test_regression_detects_corrupted_expectation(verilator, monkeypatch):
    golden = fp._golden
    corrupted = []

    def bad_golden(stream, cfg):
        exp = golden(stream, cfg)
        if not corrupted:  # first stream, first result: flip the FP32 lsb
            exp[0] ^= 1
            corrupted.append(stream.name)
        return exp

    monkeypatch.setattr(fp, "_golden", bad_golden)
    result = fp.run_pipeline_regression({}, simulator=verilator, quick=True, seed=1)
    print(result.summary(), result.details, sep="\n")
    assert corrupted
    assert result.mismatches == 1
    assert not result.passed
    assert f"{corrupted[0]} result 0" in result.details
    assert result.phases[corrupted[0]]["mismatches"] == 1


def test_compare_counts_mismatches_and_missing():
    assert fp._compare("s", [1, 2, 3], [1, 2, 3]) == (0, [])
    mism, notes = fp._compare("s", [1, 5, 3], [1, 2, 3])
    assert mism == 1 and "s result 1" in notes[0]
    mism, notes = fp._compare("s", [1], [1, 2, 3])
    assert mism == 2 and "1 results, expected 3" in notes[-1]


@pytest.mark.sim
def test_workload_passes_on_rtl(verilator, record_property):
    from mpgen.rtl.emit import to_verilog
    from mpgen.rtl.fgmp_pipeline import ClassifierDotProduct
    from mpgen.sim.workload import run_workload

    unit = ClassifierDotProduct()
    w = fp.pipeline_workload(unit, "classify+dot")
    print(w.source)
    verilog = to_verilog(ClassifierDotProduct(), "fgmp_pipeline")
    run = run_workload(verilog, "fgmp_pipeline", w.setup + w.measure, simulator=verilator)
    print(run.result)
    n_out = sum(ph.outputs.get("o", 0) for ph in w.setup + w.measure)
    record_property("vectors_checked", f"{n_out} results of {w.ops} measured block pairs on "
                                       f"{verilator} (classifier + dot product energy workload)")
    assert run.result["mismatches"] == 0, run.result.get("first_mismatches")
    assert run.passed
    assert run.result["vectors"] == n_out and run.result["outputs"]["o"] == n_out


@pytest.mark.parametrize("config, name", [
    ({"channels": 20}, "channels"),
    ({"input_format": "fp8"}, "input_format"),
    ({"organisation": "diagonal"}, "organisation"),
    ({"pipeline": 7}, "pipeline"),
    ({"diff_bits": 40}, "diff_bits"),
    ({"p_bits": "8"}, "p_bits"),
    ({"block_size": 16}, "block_size"),
])
def test_bad_params_raise_value_error(config, name):
    with pytest.raises(ValueError, match=name):
        fp.run_pipeline_regression(config)


def test_bad_workload_arguments():
    from mpgen.rtl.fgmp_pipeline import ClassifierDotProduct

    unit = ClassifierDotProduct()
    assert fp.energy_modes(unit) == ["classify+dot"]
    with pytest.raises(ValueError, match="mode"):
        fp.pipeline_workload(unit, "classify")
    with pytest.raises(ValueError, match="ops"):
        fp.pipeline_workload(unit, "classify+dot", ops=0)
    with pytest.raises(ValueError, match="data"):
        fp.pipeline_workload(unit, "classify+dot", data="imagenet")
    with pytest.raises(TypeError):
        fp.energy_modes({})


def test_default_layer_matches_workloads():
    from mpgen.sim.workloads import DEFAULT_LAYER

    assert fp.DEFAULT_LAYER == DEFAULT_LAYER


def test_workload_shape_and_packing():
    from mpgen.rtl.fgmp_pipeline import ClassifierDotProduct

    unit = ClassifierDotProduct(channels=32)
    w = fp.pipeline_workload(unit, "classify+dot", ops=13, data="synthetic", seed=3)
    assert w.mode == "classify+dot" and w.op_name == "block pair" and w.ops == 13
    (meas,) = w.measure
    assert len(meas.inputs["act"]) == len(meas.inputs["w"]) == 13
    assert meas.outputs["o"] == len(meas.expected["o"]) == 7  # 6 dot products of 2 pairs + 1
    program, warm = w.setup
    assert set(program.inputs) == {"cfg"} and not program.outputs
    assert len(program.inputs["cfg"]) == unit.classifier.words + 2
    assert len(warm.inputs["act"]) == len(warm.inputs["w"]) == unit.classifier.words
    # weight payloads unpack to FGMP blocks through the layout's own field offsets
    lay = unit.weight_layout
    offs = {n: f.offset for n, f in lay}
    codes = torch.tensor([[1, 2, 3] + [0] * 13], dtype=torch.uint8)
    (v,) = fp.pack_weights(lay, codes, torch.tensor([True]), torch.tensor([0x38], dtype=torch.uint8))
    assert (v >> offs["fp8"]) & 1 == 1 and (v >> offs["scale"]) & 0x7F == 0x38
    assert [(v >> (offs["codes"] + 8 * j)) & 0xFF for j in range(3)] == [1, 2, 3]
    assert "FP8" in w.source


def test_workload_weights_are_mixed():
    from mpgen.rtl.fgmp_pipeline import ClassifierDotProduct

    unit = ClassifierDotProduct()
    w = fp.pipeline_workload(unit, "classify+dot", ops=512, data="synthetic")
    offs = {n: f.offset for n, f in unit.weight_layout}
    fp8 = [(v >> offs["fp8"]) & 1 for v in w.measure[0].inputs["w"]]
    assert 0.1 < sum(fp8) / len(fp8) < 0.6
