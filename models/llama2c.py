"""Loader and float32 reference forward pass for llama2.c legacy checkpoints (e.g. ``stories260K.bin``).

File format (llama2.c "legacy" export, little-endian):

* header: 7 int32 ``dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len``; a
  positive ``vocab_size`` means the classifier shares the token-embedding weights, a negative one
  that a separate classifier ``wcls [vocab, dim]`` follows the RoPE tables;
* float32 arrays, in this order: ``token_embedding [vocab, dim]``, ``rms_att [layers, dim]``,
  ``wq [layers, dim, dim]``, ``wk [layers, kv_dim, dim]``, ``wv [layers, kv_dim, dim]``,
  ``wo [layers, dim, dim]``, ``rms_ffn [layers, dim]``, ``w1 [layers, hidden, dim]``,
  ``w2 [layers, dim, hidden]``, ``w3 [layers, hidden, dim]``, ``rms_final [dim]``,
  ``freq_cis_real`` and ``freq_cis_imag [seq_len, head_size/2]`` (unused: RoPE is computed here);
  ``kv_dim = dim · n_kv_heads / n_heads``.

These sizes must account for every byte of the file; :func:`load_llama2c` checks that and raises
``ValueError`` otherwise.

The forward pass is standard Llama in float32: RMSNorm (eps 1e-5, ``x / sqrt(mean(x²) + eps) · g``),
grouped-query causal attention with RoPE (theta 10000, llama2.c's rotation of the pairs
``(2i, 2i+1)`` inside each head), SwiGLU ``w2(silu(w1 x) · w3 x)``, final RMSNorm and
``logits = x · token_embeddingᵀ`` (or ``wcls``). Every matmul with a weight goes through one
function ``matmul(name, x, w) -> x @ w.T`` that the caller may replace (e.g. by a quantized matmul
such as :func:`mpgen.golden.dotprod.fgmp_matmul`); ``name`` is one of the names yielded by
:meth:`Llama2cModel.linear_weights`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

__all__ = ["Llama2cConfig", "Llama2cModel", "Llama2cModule", "MatmulFn", "load_llama2c", "generate",
           "mean_nll", "RMS_EPS", "ROPE_THETA", "BOS"]

RMS_EPS = 1e-5
ROPE_THETA = 10000.0
#: llama2.c's BOS token id (sentencepiece tokenizers of the tinyllamas models).
BOS = 1
_HEADER_INTS = 7
_HEADER_BYTES = 4 * _HEADER_INTS

#: ``matmul(name, x [T, in], w [out, in]) -> [T, out]`` (float32).
MatmulFn = Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor]


def _float_matmul(name: str, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x @ w.T


@dataclass(frozen=True)
class Llama2cConfig:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool = True

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    @property
    def kv_dim(self) -> int:
        return self.dim * self.n_kv_heads // self.n_heads

    def validate(self) -> None:
        names = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
        for n in names:
            if getattr(self, n) <= 0:
                raise ValueError(f"llama2.c header: {n} must be positive, got {getattr(self, n)}")
        if self.dim % self.n_heads:
            raise ValueError(f"llama2.c header: dim {self.dim} is not a multiple of n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"llama2.c header: n_heads {self.n_heads} is not a multiple of "
                             f"n_kv_heads {self.n_kv_heads}")
        if self.head_size % 2:
            raise ValueError(f"llama2.c header: head size {self.head_size} must be even for RoPE")

    def array_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every float32 array of the file, in file order."""
        L, d, h, kv, v = self.n_layers, self.dim, self.hidden_dim, self.kv_dim, self.vocab_size
        shapes = [
            ("token_embedding", (v, d)), ("rms_att", (L, d)), ("wq", (L, d, d)), ("wk", (L, kv, d)),
            ("wv", (L, kv, d)), ("wo", (L, d, d)), ("rms_ffn", (L, d)), ("w1", (L, h, d)),
            ("w2", (L, d, h)), ("w3", (L, h, d)), ("rms_final", (d,)),
            ("freq_cis_real", (self.seq_len, self.head_size // 2)),
            ("freq_cis_imag", (self.seq_len, self.head_size // 2)),
        ]
        if not self.shared_classifier:
            shapes.append(("wcls", (v, d)))
        return shapes

    def file_bytes(self) -> int:
        return _HEADER_BYTES + 4 * sum(math.prod(s) for _, s in self.array_shapes())


@dataclass(eq=False)
class Llama2cModel:
    """A loaded llama2.c model: config and float32 weights (layer-stacked as in the file)."""

    config: Llama2cConfig
    token_embedding: torch.Tensor  # [vocab, dim]
    rms_att: torch.Tensor          # [layers, dim]
    wq: torch.Tensor               # [layers, dim, dim]
    wk: torch.Tensor               # [layers, kv_dim, dim]
    wv: torch.Tensor               # [layers, kv_dim, dim]
    wo: torch.Tensor               # [layers, dim, dim]
    rms_ffn: torch.Tensor          # [layers, dim]
    w1: torch.Tensor               # [layers, hidden, dim]
    w2: torch.Tensor               # [layers, dim, hidden]
    w3: torch.Tensor               # [layers, hidden, dim]
    rms_final: torch.Tensor        # [dim]
    wcls: torch.Tensor | None = None  # [vocab, dim] when not shared with token_embedding
    _rope_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def classifier(self) -> torch.Tensor:
        return self.token_embedding if self.wcls is None else self.wcls

    def linear_weights(self, *, include_classifier: bool = True) -> Iterator[tuple[str, torch.Tensor]]:
        """``(name, weight [out, in])`` of every matmul weight, in forward order:
        ``layers.{l}.{wq,wk,wv,wo,w1,w3,w2}`` and ``classifier`` (the tied token embedding)."""
        for layer in range(self.config.n_layers):
            for n in ("wq", "wk", "wv", "wo", "w1", "w3", "w2"):
                yield f"layers.{layer}.{n}", getattr(self, n)[layer]
        if include_classifier:
            yield "classifier", self.classifier

    def n_params(self) -> int:
        ts = [self.token_embedding, self.rms_att, self.wq, self.wk, self.wv, self.wo, self.rms_ffn,
              self.w1, self.w2, self.w3, self.rms_final]
        return sum(t.numel() for t in ts) + (self.wcls.numel() if self.wcls is not None else 0)

    # ---------------------------------------------------------------- forward
    def _rope(self, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin [T, head_size/2] as llama2.c computes them (float32 frequencies and angles)."""
        if T not in self._rope_cache:
            hs = self.config.head_size
            i = torch.arange(0, hs, 2, dtype=torch.float32)
            freq = 1.0 / torch.pow(torch.tensor(ROPE_THETA, dtype=torch.float32), i / hs)
            ang = torch.arange(T, dtype=torch.float32)[:, None] * freq[None, :]
            self._rope_cache[T] = (torch.cos(ang), torch.sin(ang))
        return self._rope_cache[T]

    @staticmethod
    def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x [T, heads, head_size]: rotate the pairs (2i, 2i+1) by the angle pos·freq_i."""
        x0, x1 = x[..., 0::2], x[..., 1::2]
        c, s = cos[:, None, :], sin[:, None, :]
        return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)

    @staticmethod
    def rmsnorm(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + RMS_EPS) * g

    def forward(self, tokens: torch.Tensor, matmul: MatmulFn | None = None) -> torch.Tensor:
        """float32 logits ``[T, vocab]`` for the token ids ``tokens`` (1-D, T ≤ seq_len), causal.

        ``matmul(name, x, w)`` replaces every ``x @ w.T`` with a weight (names as in
        :meth:`linear_weights`); default: float32 ``x @ w.T``.
        """
        cfg = self.config
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 1 or tokens.dtype.is_floating_point:
            raise TypeError("tokens must be a 1-D integer tensor")
        T = tokens.shape[0]
        if not 0 < T <= cfg.seq_len:
            raise ValueError(f"sequence length {T} must be in [1, {cfg.seq_len}]")
        if bool((tokens < 0).any()) or bool((tokens >= cfg.vocab_size).any()):
            raise ValueError(f"token ids must lie in [0, {cfg.vocab_size})")
        mm = matmul or _float_matmul
        nh, nkv, hs = cfg.n_heads, cfg.n_kv_heads, cfg.head_size
        cos, sin = self._rope(T)
        causal = torch.ones(T, T, dtype=torch.bool).tril()

        x = self.token_embedding[tokens.long()].clone()
        for layer in range(cfg.n_layers):
            p = f"layers.{layer}."
            xb = self.rmsnorm(x, self.rms_att[layer])
            q = mm(p + "wq", xb, self.wq[layer]).view(T, nh, hs)
            k = mm(p + "wk", xb, self.wk[layer]).view(T, nkv, hs)
            v = mm(p + "wv", xb, self.wv[layer]).view(T, nkv, hs)
            q, k = self._apply_rope(q, cos, sin), self._apply_rope(k, cos, sin)
            rep = nh // nkv  # query head h uses kv head h // rep (llama2.c)
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
            att = torch.einsum("thd,shd->hts", q, k) / math.sqrt(hs)
            att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
            o = torch.einsum("hts,shd->thd", att, v).reshape(T, cfg.dim)
            x = x + mm(p + "wo", o, self.wo[layer])

            xb = self.rmsnorm(x, self.rms_ffn[layer])
            h1 = mm(p + "w1", xb, self.w1[layer])
            h3 = mm(p + "w3", xb, self.w3[layer])
            x = x + mm(p + "w2", torch.nn.functional.silu(h1) * h3, self.w2[layer])

        x = self.rmsnorm(x, self.rms_final)
        return mm("classifier", x, self.classifier)

    __call__ = forward


def load_llama2c(path: str | Path) -> Llama2cModel:
    """Load a llama2.c legacy checkpoint. Raises ``ValueError`` if the header is invalid or the
    file size is not exactly what the header implies (truncated, trailing bytes, another format),
    or if a weight is not finite; ``FileNotFoundError`` if it does not exist."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < _HEADER_BYTES:
        raise ValueError(f"{path}: {len(data)} bytes is too short for the llama2.c header "
                         f"({_HEADER_BYTES} bytes)")
    header = [int(v) for v in np.frombuffer(data[:_HEADER_BYTES], dtype="<i4")]
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = header
    cfg = Llama2cConfig(dim, hidden, layers, heads, kv_heads, abs(vocab), seq_len,
                        shared_classifier=vocab > 0)
    try:
        cfg.validate()
    except ValueError as e:
        raise ValueError(f"{path}: {e} (header {header}; not a llama2.c legacy checkpoint?)") from None
    expected = cfg.file_bytes()
    if len(data) != expected:
        raise ValueError(
            f"{path}: size {len(data)} bytes does not match the header {header}, which implies "
            f"{expected} bytes ({'truncated' if len(data) < expected else 'trailing data'}; "
            f"difference {len(data) - expected:+d} bytes)")

    arrays = {}
    off = _HEADER_BYTES
    for name, shape in cfg.array_shapes():
        n = math.prod(shape)
        a = np.frombuffer(data, dtype="<f4", count=n, offset=off)
        off += 4 * n
        t = torch.from_numpy(a.astype(np.float32)).reshape(shape)  # astype copies (writable)
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{path}: array {name} contains NaN or Inf")
        arrays[name] = t
    assert off == len(data)
    return Llama2cModel(
        config=cfg, token_embedding=arrays["token_embedding"], rms_att=arrays["rms_att"],
        wq=arrays["wq"], wk=arrays["wk"], wv=arrays["wv"], wo=arrays["wo"],
        rms_ffn=arrays["rms_ffn"], w1=arrays["w1"], w2=arrays["w2"], w3=arrays["w3"],
        rms_final=arrays["rms_final"], wcls=arrays.get("wcls"))


@torch.no_grad()
def generate(model: Llama2cModel, seed: int, n_tokens: int, *, temperature: float = 1.0,
             prompt: torch.Tensor | None = None, matmul: MatmulFn | None = None) -> torch.Tensor:
    """Token sequence ``[len(prompt) + n_tokens]`` (int64) continued from ``prompt`` (default
    ``[BOS]``): greedy when ``temperature == 0``, else sampled from ``softmax(logits / temperature)``
    with a ``torch.Generator`` seeded by ``seed`` (deterministic for a given seed). Each step reruns
    the full causal forward pass (fine for small models)."""
    if n_tokens < 0:
        raise ValueError("n_tokens must be >= 0")
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    seq = torch.tensor([BOS], dtype=torch.int64) if prompt is None else prompt.to(torch.int64).flatten()
    if seq.numel() + n_tokens > model.config.seq_len:
        raise ValueError(f"prompt + n_tokens exceeds seq_len {model.config.seq_len}")
    gen = torch.Generator().manual_seed(int(seed))
    for _ in range(n_tokens):
        logits = model.forward(seq, matmul)[-1]
        if temperature == 0:
            nxt = torch.argmax(logits).view(1)
        else:
            probs = torch.softmax(logits.double() / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=gen)
        seq = torch.cat([seq, nxt])
    return seq


@torch.no_grad()
def mean_nll(model: Llama2cModel, tokens: torch.Tensor, matmul: MatmulFn | None = None) -> float:
    """Mean negative log-likelihood (nats) of ``tokens[1:]`` given their prefixes (teacher
    forcing, one forward pass)."""
    logits = model.forward(tokens, matmul)[:-1].double()
    return float(torch.nn.functional.cross_entropy(logits, tokens[1:].long()))


class _Llama2cBlock(torch.nn.Module):
    """One transformer layer's weights as ``nn.Linear`` modules (registered in forward order)."""

    def __init__(self, model: Llama2cModel, layer: int):
        super().__init__()
        self.rms_att = torch.nn.Parameter(model.rms_att[layer].clone())
        for n in ("wq", "wk", "wv", "wo", "w1", "w3", "w2"):
            w = getattr(model, n)[layer]
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            lin.weight = torch.nn.Parameter(w.clone())
            setattr(self, n, lin)
            if n == "wo":
                self.rms_ffn = torch.nn.Parameter(model.rms_ffn[layer].clone())


class Llama2cModule(torch.nn.Module):
    """A :class:`Llama2cModel` as a ``torch.nn.Module`` whose weight matmuls are real ``nn.Linear``
    layers (bias-free), so that module hooks (e.g. :func:`mpgen.models.fisher.collect_fisher`)
    and autograd see them. ``named_modules()`` names of the linears equal
    :meth:`Llama2cModel.linear_weights` names: ``layers.{l}.{wq,wk,wv,wo,w1,w3,w2}`` and
    ``classifier``; with a shared classifier, ``classifier.weight`` *is* the ``token_embedding``
    parameter (tied, as in the file). The parameters are copies of the model's tensors.

    ``forward(tokens)``: ``tokens`` ``[T]`` gives logits ``[T, vocab]`` equal to
    ``Llama2cModel.forward(tokens)`` (same float32 operations); ``[B, T]`` gives ``[B, T, vocab]``,
    each row computed independently (causal, no padding).
    """

    def __init__(self, model: Llama2cModel):
        super().__init__()
        if not isinstance(model, Llama2cModel):
            raise TypeError(f"expected a Llama2cModel (see load_llama2c), got {type(model).__name__}")
        self.config = model.config
        self._rope_source = Llama2cModel(  # only its RoPE table cache is used (depends on config)
            model.config, *(torch.empty(0) for _ in range(11)))
        self.token_embedding = torch.nn.Parameter(model.token_embedding.clone())
        self.layers = torch.nn.ModuleList(_Llama2cBlock(model, i) for i in range(model.config.n_layers))
        self.rms_final = torch.nn.Parameter(model.rms_final.clone())
        cfg = model.config
        self.classifier = torch.nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        self.classifier.weight = (self.token_embedding if model.wcls is None
                                  else torch.nn.Parameter(model.wcls.clone()))

    def linear_layers(self) -> list[tuple[str, torch.nn.Linear]]:
        """``(name, nn.Linear)`` in forward order, names as in :meth:`Llama2cModel.linear_weights`."""
        out = [(f"layers.{i}.{n}", getattr(b, n)) for i, b in enumerate(self.layers)
               for n in ("wq", "wk", "wv", "wo", "w1", "w3", "w2")]
        return out + [("classifier", self.classifier)]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if not isinstance(tokens, torch.Tensor) or tokens.dim() not in (1, 2) \
                or tokens.dtype.is_floating_point or tokens.dtype.is_complex:
            raise TypeError("tokens must be a 1-D [T] or 2-D [B, T] integer tensor")
        single = tokens.dim() == 1
        if single:
            tokens = tokens[None]
        B, T = tokens.shape
        if B == 0 or not 0 < T <= cfg.seq_len:
            raise ValueError(f"need batch >= 1 and sequence length in [1, {cfg.seq_len}], got {(B, T)}")
        if bool((tokens < 0).any()) or bool((tokens >= cfg.vocab_size).any()):
            raise ValueError(f"token ids must lie in [0, {cfg.vocab_size})")
        dev = self.token_embedding.device
        tokens = tokens.to(dev)
        nh, nkv, hs = cfg.n_heads, cfg.n_kv_heads, cfg.head_size
        cos, sin = (t.to(dev) for t in self._rope_source._rope(T))
        causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
        rms, rope = Llama2cModel.rmsnorm, Llama2cModel._apply_rope

        x = self.token_embedding[tokens.long()]
        for blk in self.layers:
            xb = rms(x, blk.rms_att)
            q = rope(blk.wq(xb).view(B, T, nh, hs), cos, sin)
            k = rope(blk.wk(xb).view(B, T, nkv, hs), cos, sin)
            v = blk.wv(xb).view(B, T, nkv, hs)
            rep = nh // nkv  # query head h uses kv head h // rep (llama2.c)
            k = k.repeat_interleave(rep, dim=2)
            v = v.repeat_interleave(rep, dim=2)
            att = torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(hs)
            att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
            o = torch.einsum("bhts,bshd->bthd", att, v).reshape(B, T, cfg.dim)
            x = x + blk.wo(o)
            xb = rms(x, blk.rms_ffn)
            x = x + blk.w2(torch.nn.functional.silu(blk.w1(xb)) * blk.w3(xb))
        logits = self.classifier(rms(x, self.rms_final))
        return logits[0] if single else logits
