"""cocotb regressions of the FineQ decoder, PE and array (and the multiplier baselines from the
same generator), driven from pytest, bit-exact against mpgen.golden.fineq.

Verilator: the decoder on all 256 words; the PE on every weight it can hold × every INT8
activation added to random partial sums, with random stalls; the array on random tiles, corner
tiles, tiles of real stories260K weights and activations (when the ``stories260k_optional``
fixture finds the model),
random valid/ready back-pressure on all three streams, a reset mid-stream, and a timing phase
that checks the latency, the accept interval and the cycles per tile against the formulas of
``FineQArray``. Configurations: 4×4 unary (the FineQ-like default, full), 8×8 unary (quick),
5×3 bitserial (non-square, R not a multiple of 3), the W4A8 and W8A8 baselines and the
decoder-fed multiplier array. Icarus runs one quick configuration when ``iverilog`` is on PATH.
"""

import shutil

import pytest

from mpgen.sim.fineq import run_fineq_regression

ALL = ("decoder", "pe", "array")
CONFIGS = {  # name: (parameters, quick, levels); the decoder is one build for every FineQ config
    "fineq-unary-4x4": ({"rows": 4, "cols": 4}, False, ALL),
    "fineq-unary-8x8": ({"rows": 8, "cols": 8}, True, ("array",)),
    "fineq-bitserial-5x3": ({"rows": 5, "cols": 3, "coding": "bitserial"}, False, ("pe", "array")),
    "w4a8-3x5": ({"rows": 3, "cols": 5, "pe": "multiplier", "weight_bits": 4}, False, ("pe", "array")),
    "w8a8-4x4": ({"rows": 4, "cols": 4, "pe": "multiplier", "weight_bits": 8}, False, ("array",)),
    "fineq-mul-4x2": ({"rows": 4, "cols": 2, "pe": "multiplier"}, True, ("array",)),
}


def _check(result, record_property, config, levels=ALL, model=None):
    print(result.summary())
    for name, ph in result.phases.items():
        print(f"  {name}: {ph}")
    record_property("vectors_checked", f"{result.vectors} vectors (decoder words, PE pairs, array "
                                       f"activation vectors) / {result.results} results on "
                                       f"{result.simulator}")
    assert result.mismatches == 0, result.details
    assert result.passed, result.details
    if "decoder" in levels and "weight_bits" not in config:
        assert result.phases["decoder_exhaustive"]["vectors"] == 256
    if "pe" in levels:
        pe = result.phases["pe_exhaustive"]
        assert pe["results"] == pe["vectors"] > 0
    for phase in ("random", "corners", "reset_mid_stream", "after_reset", "timing"):
        assert result.phases[phase]["vectors"] > 0, phase
    assert result.phases["reset_mid_stream"]["dropped_by_reset"] > 0  # the reset hit in-flight work
    if model is not None and "array" in levels:
        assert result.phases["model"]["results"] > 0
    for m in ("m1", "m5", "m16"):
        t = result.timing[m]
        assert t["measured"] == t["formula"], (m, t)


@pytest.mark.sim
@pytest.mark.parametrize("name", list(CONFIGS))
def test_fineq_verilator(name, record_property, stories260k_optional):
    config, quick, levels = CONFIGS[name]
    result = run_fineq_regression(config, simulator="verilator", quick=quick, seed=3, levels=levels,
                                  model_path=stories260k_optional)
    _check(result, record_property, config, levels, stories260k_optional)
    if "pe" in levels and not quick:  # exhaustive: every weight × all 256 activations
        assert result.phases["pe_exhaustive"]["activations"] == 256


@pytest.mark.sim
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog (iverilog) not on PATH")
def test_fineq_icarus_quick(record_property, stories260k_optional):
    config = {"rows": 3, "cols": 3, "coding": "bitserial"}
    result = run_fineq_regression(config, simulator="icarus", quick=True, seed=4,
                                  model_path=stories260k_optional)
    _check(result, record_property, config, model=stories260k_optional)
