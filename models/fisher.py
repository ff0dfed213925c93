"""Diagonal empirical Fisher information of the ``nn.Linear`` layers of any ``torch.nn.Module``.

For every hooked linear layer ``y = x Wᵀ (+ b)`` and every *sample* ``s`` (see below):

* weight Fisher ``F_W[o, i] = mean_s (∂L_s/∂W[o, i])²`` — the squared gradient of the sample's
  loss with respect to the weight, per element (``[out, in]``);
* activation Fisher ``F_x[i] = mean over samples and tokens of (∂L_s/∂x_t[i])²``, where
  ``∂L_s/∂x_t = (∂L_s/∂y_t) W`` is the gradient reaching the layer's input *through this layer*
  (what an error in this matmul's input operand costs, even when the same tensor also feeds other
  layers, e.g. q/k/v), per input channel (``[in]``); "tokens" are all positions of the input
  except those a ``token_mask`` excludes (padding).

Per-sample gradients, exactly: ``loss_fn(module, batch)`` returns either

* a 1-D tensor ``[B]`` of per-sample losses: the first dimension of every hooked layer's input
  is then the sample dimension, and the per-sample weight gradients
  ``Σ_t g[b, t]ᵀ x[b, t]`` are formed from the hooks' saved inputs and output gradients of one
  backward pass of ``Σ_b L_b`` (the samples of a batch must not interact in the forward pass,
  which holds for transformers with masked padding and for causal LMs, not for BatchNorm); or
* a 0-d scalar: the whole batch is one sample (its gradient is the batch gradient).

Either way the result is the textbook per-sample (empirical or, with model-sampled targets,
true) Fisher; the batch size only trades memory for speed.

Which loss? A loss that is minimal at the full-precision model (a divergence from it) has zero
gradient there and gives no information; a *likelihood of targets sampled from the model itself*
gives the true Fisher:

* :func:`llama2c_fisher_loss` — the summed NLL of sequences the model generated itself
  (:func:`llama2c_sequences`): ``E[g gᵀ]`` is the sequence-level Fisher of the LM;
* :func:`minilm_fisher_loss` — the Gaussian likelihood ``½‖e(x) − y‖²`` of a target
  ``y = stopgrad(e(x)) + ε``, ``ε ~ N(0, I)`` (noise drawn when the batches are made, seeded):
  the gradient is ``−εᵀ J`` with ``J = ∂e/∂θ``, so ``E[g²] = diag(JᵀJ)``, the Gauss-Newton /
  Fisher of ``y ~ N(e(x), I)``. Since embeddings have unit norm,
  ``1 − cos(e, e + Δe) ≈ ½‖Δe‖²``, so a weight perturbation ``δ`` costs about
  ``½ Σ F δ²`` of :func:`mpgen.models.minilm.embedding_divergence` (diagonal approximation).

See ``docs/models.md`` for measured run times.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import nn

__all__ = ["FisherStats", "collect_fisher", "minilm_batches", "minilm_fisher_loss",
           "minilm_token_mask", "minilm_fisher", "llama2c_sequences", "llama2c_batches",
           "llama2c_fisher_loss", "llama2c_fisher", "FORMAT_TAG"]

FORMAT_TAG = "mpgen.fisher/1"
#: Per-sample weight gradients are formed this many elements at a time at most (memory bound).
_CHUNK_ELEMENTS = 1 << 24


@dataclass
class FisherStats:
    """Diagonal Fisher of some linear layers (all float32 on the CPU).

    ``weight[name]``: ``[out, in]``; ``activation[name]``: ``[in]``; ``samples``: number of samples
    averaged; ``tokens[name]``: number of input positions averaged for ``activation[name]``;
    ``per_sample``: True if the loss gave per-sample losses (else each batch was one sample);
    ``seconds``: collection time; ``meta``: free-form description (str/int/float values).
    """

    weight: dict[str, torch.Tensor]
    activation: dict[str, torch.Tensor]
    samples: int
    tokens: dict[str, int] = field(default_factory=dict)
    per_sample: bool = True
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def layer_names(self) -> list[str]:
        return list(self.weight or self.activation)

    def to_dict(self) -> dict:
        return dict(format=FORMAT_TAG, weight=dict(self.weight), activation=dict(self.activation),
                    samples=int(self.samples), tokens=dict(self.tokens), per_sample=bool(self.per_sample),
                    seconds=float(self.seconds), meta=dict(self.meta))

    def save(self, path: str | Path) -> None:
        """``torch.save`` of a plain dict (tensors, ints, strings): loadable with ``weights_only``."""
        torch.save(self.to_dict(), Path(path))

    @classmethod
    def load(cls, path: str | Path) -> "FisherStats":
        d = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(d, dict) or d.get("format") != FORMAT_TAG:
            raise ValueError(f"{path}: not a FisherStats file (expected format {FORMAT_TAG!r})")
        return cls(weight=d["weight"], activation=d["activation"], samples=d["samples"],
                   tokens=d["tokens"], per_sample=d["per_sample"], seconds=d["seconds"], meta=d["meta"])


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _to_device(obj, device: torch.device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


class _Progress:
    def __init__(self, enabled: bool, total: int | None):
        self.enabled, self.total, self.t0, self.last = enabled, total, time.perf_counter(), 0.0

    def update(self, batches: int, samples: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not final and now - self.last < 0.5:
            return
        self.last = now
        tot = f"/{self.total}" if self.total is not None else ""
        sys.stderr.write(f"\rfisher: batch {batches}{tot}, {samples} samples, {now - self.t0:.1f} s")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def collect_fisher(module: nn.Module, batches: Iterable, loss_fn: Callable[[nn.Module, Any], torch.Tensor],
                   *, weights: bool = True, activations: bool = True,
                   device: str | torch.device | None = None, progress: bool = True,
                   layers: Iterable[str] | None = None,
                   token_mask: Callable[[Any], torch.Tensor] | None = None) -> FisherStats:
    """Diagonal Fisher of the ``nn.Linear`` layers of ``module`` (definition: module docstring).

    ``batches``: an iterable of batches (any structure of tensors; moved to ``device``);
    ``loss_fn(module, batch)``: per-sample losses ``[B]`` or one scalar (= one sample);
    ``layers``: names (as in ``named_modules()``) of the linears to hook, default all, in
    ``named_modules()`` order; ``token_mask(batch)``: optional bool tensor of the shape of the
    hooked inputs without their last dimension (e.g. ``[B, T]``), False for positions (padding)
    left out of the activation mean; ``device``: default CUDA if available, else CPU — the module
    is moved there in place (``module.to``). ``progress`` writes a status line to stderr.

    The module runs in eval mode; its parameters' ``requires_grad`` flags, training mode and
    ``.grad`` are left as they were (no parameter gradient is computed: gradients flow from the
    hooked layers' outputs). Raises ValueError for bad arguments, no batches, a non-finite loss or
    gradient, or a hooked input whose first dimension is not the number of per-sample losses;
    RuntimeError if a hooked layer runs twice in one forward pass.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(module, batch) -> loss")
    if not (weights or activations):
        raise ValueError("nothing to collect: weights and activations are both False")
    linears = {n: m for n, m in module.named_modules() if isinstance(m, nn.Linear)}
    if layers is None:
        names = list(linears)
    else:
        if isinstance(layers, str):
            raise TypeError("layers must be an iterable of layer names, not a str")
        names = list(layers)
        unknown = [n for n in names if n not in linears]
        if unknown:
            raise ValueError(f"not nn.Linear layers of the module: {unknown[:5]} "
                             f"(available: {list(linears)[:8]}...)")
        if len(set(names)) != len(names):
            raise ValueError("layers contains duplicates")
    if not names:
        raise ValueError("the module has no nn.Linear layer to hook")
    device = torch.device(device) if device is not None else _default_device()
    module.to(device)
    total = len(batches) if hasattr(batches, "__len__") else None

    acc_w = {n: torch.zeros(linears[n].weight.shape, dtype=torch.float64, device=device)
             for n in names} if weights else {}
    acc_a = {n: torch.zeros(linears[n].in_features, dtype=torch.float64, device=device)
             for n in names} if activations else {}
    tokens = dict.fromkeys(names, 0)
    state: dict[str, Any] = {}  # per batch: saved inputs, sample count, token mask
    mod_name = {linears[n]: n for n in names}

    def grad_hook(name: str, go: torch.Tensor) -> None:
        lin = linears[name]
        x = state["inputs"].pop(name)
        go = go.detach().to(x.dtype)
        if not bool(torch.isfinite(go).all()):
            raise ValueError(f"non-finite gradient at the output of {name}")
        B = state["B"]
        if B is None:  # the whole batch is one sample
            xs, gs = x.reshape(1, -1, lin.in_features), go.reshape(1, -1, lin.out_features)
        else:
            if x.dim() < 2 or x.shape[0] != B:
                raise ValueError(f"per-sample losses: the input of {name} has shape {tuple(x.shape)}, "
                                 f"whose first dimension is not the {B} samples")
            xs, gs = x.reshape(B, -1, lin.in_features), go.reshape(B, -1, lin.out_features)
        if weights:
            step = max(1, _CHUNK_ELEMENTS // (lin.in_features * lin.out_features))
            for i in range(0, xs.shape[0], step):
                g_w = torch.bmm(gs[i:i + step].transpose(1, 2), xs[i:i + step])  # [b, out, in]
                acc_w[name] += g_w.square_().sum(dim=0)  # batch sum in x's dtype, then float64
        if activations:
            g_x = gs @ lin.weight.detach().to(gs.dtype)  # [b, tokens, in]
            mask = state["mask"]
            if mask is not None:
                if tuple(mask.shape) != tuple(x.shape[:-1]):
                    raise ValueError(f"token_mask shape {tuple(mask.shape)} does not match the input "
                                     f"of {name} {tuple(x.shape)} without its last dimension")
                keep = mask.reshape(-1).to(device=g_x.device, dtype=torch.bool)
                g_x = g_x.reshape(-1, lin.in_features)[keep]
                tokens[name] += int(keep.sum())
            else:
                tokens[name] += g_x.shape[0] * g_x.shape[1]
            acc_a[name] += g_x.reshape(-1, lin.in_features).square().sum(dim=0)

    def forward_hook(lin: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        name = mod_name[lin]
        if name in state["inputs"] or name in state["seen"]:
            raise RuntimeError(f"linear layer {name} ran twice in one forward pass: per-layer Fisher "
                               "hooks need each hooked layer to run once per loss evaluation")
        state["seen"].add(name)
        x = inputs[0].detach()  # hooks compute in float32, or float64 for a float64 module
        state["inputs"][name] = x.to(torch.promote_types(x.dtype, torch.float32))
        if not out.requires_grad:
            out.requires_grad_()  # a leaf: gradients flow from here on, no parameter grads needed
        out.register_hook(lambda g, name=name: grad_hook(name, g))

    flags = {p: p.requires_grad for p in module.parameters()}
    was_training = module.training
    handles = [linears[n].register_forward_hook(forward_hook) for n in names]
    bar = _Progress(progress, total)
    samples = n_batches = 0
    per_sample = None
    t0 = time.perf_counter()
    try:
        for p in flags:
            p.requires_grad_(False)
        module.eval()
        for batch in batches:
            batch = _to_device(batch, device)
            state.update(inputs={}, seen=set(), B=None,
                         mask=token_mask(batch) if token_mask is not None else None)
            with torch.enable_grad():
                loss = loss_fn(module, batch)
                if not isinstance(loss, torch.Tensor) or not loss.dtype.is_floating_point \
                        or loss.dim() > 1 or loss.numel() == 0:
                    raise ValueError("loss_fn must return a floating scalar or a 1-D tensor of "
                                     f"per-sample losses, got {type(loss).__name__} "
                                     f"{getattr(loss, 'shape', '')}")
                if not bool(torch.isfinite(loss).all()):
                    raise ValueError(f"non-finite loss in batch {n_batches}")
                this_per_sample = loss.dim() == 1
                if per_sample is not None and this_per_sample != per_sample:
                    raise ValueError("loss_fn mixes per-sample and scalar losses across batches")
                per_sample = this_per_sample
                state["B"] = loss.shape[0] if this_per_sample else None
                if not loss.requires_grad:
                    raise ValueError("the loss does not depend on any hooked linear layer")
                loss.sum().backward()
            state["inputs"].clear()
            samples += loss.shape[0] if this_per_sample else 1
            n_batches += 1
            bar.update(n_batches, samples)
        bar.update(n_batches, samples, final=True)
    finally:
        for h in handles:
            h.remove()
        for p, f in flags.items():
            p.requires_grad_(f)
        module.train(was_training)
    if samples == 0:
        raise ValueError("batches was empty: no samples")
    stats = FisherStats(
        weight={n: (a / samples).float().cpu() for n, a in acc_w.items()},
        activation={n: (a / max(tokens[n], 1)).float().cpu() for n, a in acc_a.items()},
        samples=samples, tokens=tokens if activations else {}, per_sample=bool(per_sample),
        seconds=time.perf_counter() - t0,
        meta=dict(device=str(device), batches=n_batches))
    return stats


# --------------------------------------------------------------------------- all-MiniLM-L6-v2
def minilm_batches(model, texts: list[str], *, batch_size: int = 16, max_len: int = 128,
                   seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Tokenized batches of ``texts`` for :func:`minilm_fisher_loss`, each a dict with
    ``input_ids``, ``attention_mask`` ``[B, T]`` and ``noise`` ``[B, 384]`` (standard normal,
    drawn in order from a CPU ``torch.Generator`` seeded with ``seed``: deterministic)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)) or not texts:
        raise ValueError("texts must be a non-empty list of strings")
    gen = torch.Generator().manual_seed(int(seed))
    dim = model.config.hidden
    out = []
    for i in range(0, len(texts), batch_size):
        tok = model.tokenize(list(texts[i:i + batch_size]), max_len)
        tok["noise"] = torch.randn(tok["input_ids"].shape[0], dim, generator=gen)
        out.append(tok)
    return out


def minilm_fisher_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-sentence losses ``[B]``: ``½‖e(x) − (stopgrad(e(x)) + ε)‖²`` with ``ε = batch["noise"]``,
    the Gaussian NLL (unit variance, up to a constant) of a target sampled around the model's own
    embedding; its gradient ``−εᵀ ∂e/∂θ`` has ``E[g²] = diag(JᵀJ)``."""
    e = model(batch["input_ids"], batch["attention_mask"])
    noise = batch["noise"].to(e.device, e.dtype)
    if noise.shape != e.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} != embeddings {tuple(e.shape)}")
    return 0.5 * (e - (e.detach() + noise)).square().sum(dim=1)


def minilm_token_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Real (non-padding) token positions ``[B, T]`` of a MiniLM batch, for ``token_mask``."""
    return batch["attention_mask"].bool()


def minilm_fisher(model, texts: list[str], *, batch_size: int = 16, max_len: int = 128, seed: int = 0,
                  device=None, progress: bool = True, layers=None) -> FisherStats:
    """Fisher of all-MiniLM-L6-v2 (:func:`mpgen.models.minilm.load_minilm`) on ``texts``:
    :func:`minilm_batches` + :func:`minilm_fisher_loss`, padding left out of the activation mean."""
    stats = collect_fisher(model, minilm_batches(model, texts, batch_size=batch_size, max_len=max_len,
                                                 seed=seed),
                           minilm_fisher_loss, device=device, progress=progress, layers=layers,
                           token_mask=minilm_token_mask)
    stats.meta.update(model="all-MiniLM-L6-v2", loss="gaussian-sampled-target", texts=len(texts),
                      max_len=max_len, seed=seed, batch_size=batch_size)
    return stats


# --------------------------------------------------------------------------- llama2.c
@torch.no_grad()
def llama2c_sequences(module, n: int, n_tokens: int = 63, *, seed: int = 0,
                      temperature: float = 1.0) -> torch.Tensor:
    """``n`` token sequences ``[n, 1 + n_tokens]`` (int64, CPU) sampled from the model itself,
    each starting with BOS, all in parallel with a :class:`~mpgen.models.llama2c.Llama2cModule`
    (a ``Llama2cModel`` is wrapped): ``softmax(logits / temperature)`` with a CPU
    ``torch.Generator`` seeded by ``seed`` (deterministic for a given seed and device)."""
    from .llama2c import BOS, Llama2cModel, Llama2cModule

    if isinstance(module, Llama2cModel):
        module = Llama2cModule(module)
    for nm, v, lo in (("n", n, 1), ("n_tokens", n_tokens, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{nm} must be an int >= {lo}, got {v!r}")
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
    if 1 + n_tokens > module.config.seq_len:
        raise ValueError(f"1 + n_tokens exceeds seq_len {module.config.seq_len}")
    gen = torch.Generator().manual_seed(int(seed))
    seq = torch.full((n, 1), BOS, dtype=torch.int64)
    for _ in range(n_tokens):
        logits = module(seq)[:, -1].double().cpu()
        probs = torch.softmax(logits / temperature, dim=-1)
        seq = torch.cat([seq, torch.multinomial(probs, 1, generator=gen)], dim=1)
    return seq


def llama2c_batches(sequences: torch.Tensor, batch_size: int = 16) -> list[torch.Tensor]:
    """Split ``[N, T]`` token sequences into ``[B, T]`` batches for :func:`llama2c_fisher_loss`."""
    if not isinstance(sequences, torch.Tensor) or sequences.dim() != 2 or sequences.dtype.is_floating_point:
        raise TypeError("sequences must be a 2-D [N, T] integer tensor")
    if sequences.shape[0] == 0 or sequences.shape[1] < 2:
        raise ValueError(f"need N >= 1 sequences of >= 2 tokens, got shape {tuple(sequences.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return list(sequences.split(batch_size))


def llama2c_fisher_loss(module, tokens: torch.Tensor) -> torch.Tensor:
    """Per-sequence losses ``[B]``: the summed NLL (nats) of ``tokens[:, 1:]`` given their
    prefixes. On sequences the model sampled itself, ``E[g gᵀ]`` is the true Fisher of the
    sequence distribution."""
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise ValueError(f"tokens must be [B, T] with T >= 2, got {tuple(tokens.shape)}")
    logits = module(tokens)[:, :-1]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                            tokens[:, 1:].reshape(-1).to(logits.device).long(),
                                            reduction="none")
    return nll.view(tokens.shape[0], -1).sum(dim=1)


def llama2c_fisher(model, n_sequences: int = 64, n_tokens: int = 63, *, seed: int = 0,
                   batch_size: int = 16, device=None, progress: bool = True, layers=None) -> FisherStats:
    """Fisher of a llama2.c model (``Llama2cModel`` or ``Llama2cModule``) on ``n_sequences`` of
    its own samples (:func:`llama2c_sequences`, generated on the CPU) with
    :func:`llama2c_fisher_loss`. Returns stats keyed by the ``linear_weights()`` names."""
    from .llama2c import Llama2cModel, Llama2cModule

    module = Llama2cModule(model) if isinstance(model, Llama2cModel) else model
    module.to("cpu")
    seqs = llama2c_sequences(module, n_sequences, n_tokens, seed=seed)
    stats = collect_fisher(module, llama2c_batches(seqs, batch_size), llama2c_fisher_loss,
                           device=device, progress=progress, layers=layers)
    stats.meta.update(model="llama2c", loss="nll-of-own-samples", sequences=n_sequences,
                      n_tokens=n_tokens, seed=seed, batch_size=batch_size)
    return stats
