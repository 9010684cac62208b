"""The training loss without the float32 logits of every position.

transformers' own causal-LM loss projects every position of a batch through the LM head and casts the logits to
float32 before the cross-entropy: for a 150k-token vocabulary and 16k tokens a batch that is 10 GB, and the backward
keeps it. Here the Trainer gets ``compute_loss_func=CausalLMLoss(...)`` and each batch asks the model for its last
hidden states and no logits (``output_hidden_states=-1`` and an empty ``logits_to_keep``: the inputs
:attr:`CausalLMLoss.model_inputs` adds to every batch). The loss takes the hidden states of the positions whose next
token is trained (labels are ``-100`` elsewhere) and then

- ``fused``: liger-kernel's ``LigerFusedLinearCrossEntropyLoss`` (Triton kernels, CUDA only), which computes the
  loss and its gradient chunk by chunk without ever holding the logits (TRL and axolotl use it the same way);
- ``chunked``: the LM head over chunks of those positions (about 2^25 logits a chunk), the cross-entropy of each
  chunk in float32, each chunk under activation checkpointing, so the backward recomputes one chunk's logits at a
  time instead of keeping all of them.

``auto`` takes ``fused`` where liger-kernel is installed, the model is on a CUDA device and the LM head is a plain
linear layer, else ``chunked``; ``full`` keeps transformers' own loss over the full logits (the reference). Every
path sums the per-token losses and divides by the Trainer's ``num_items_in_batch`` (the trained tokens of the whole
accumulated batch), as the model's own loss does, so gradient accumulation weighs every token the same.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging

log = logging.getLogger("finetune")

CHUNK_LOGITS = 2**25  # logits per chunk of the chunked path: 128 MiB in float32, whatever the vocabulary


def fused_available(model) -> str | None:
    """None when liger-kernel's fused linear cross-entropy can serve ``model``, else why not."""
    import torch

    if importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel is not installed (pip install liger-kernel)"
    head = model.get_output_embeddings()
    if head is None or head.weight.device.type != "cuda":
        return "it needs the model on a CUDA device (Triton kernels)"
    if type(head) is not torch.nn.Linear:
        return f"the LM head is a {type(head).__name__}, not a plain linear layer"
    return None


def hidden_states_only(model) -> bool:
    """The model's forward can skip the logits (``logits_to_keep``) and return its last hidden states."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(type(base).forward).parameters


def for_model(name: str, model) -> "CausalLMLoss | None":
    """The ``compute_loss_func`` for ``loss: name`` (None: the model's own loss over the full logits). Logs which
    path is used; ``fused`` where it cannot run is a ValueError saying why."""
    if name == "full":
        log.info("loss: the model's own cross-entropy over the full logits (loss: full)")
        return None
    if not hidden_states_only(model):
        if name != "auto":
            raise ValueError(f"loss: {name} needs a model whose forward takes logits_to_keep; "
                             f"{type(model).__name__} does not (use loss: full)")
        log.info("loss: the model's own cross-entropy over the full logits (its forward has no logits_to_keep)")
        return None
    why_not = fused_available(model)
    if name == "fused" and why_not:
        raise ValueError(f"loss: fused (liger-kernel's fused linear cross-entropy) cannot run here: {why_not}; "
                         "use loss: auto or chunked")
    kind = "fused" if why_not is None and name in ("auto", "fused") else "chunked"
    if kind == "fused":
        log.info("loss: liger-kernel's fused linear cross-entropy on the trained positions (no logits kept)")
    else:
        vocab = model.get_output_embeddings().weight.shape[0]
        log.info("loss: chunked cross-entropy on the trained positions, %d positions a chunk, each recomputed in the "
                 "backward%s", chunk_tokens(vocab),
                 "" if name == "chunked" else f" (fused linear cross-entropy not used: {why_not})")
    return CausalLMLoss(model, kind)


def chunk_tokens(vocab: int) -> int:
    """Positions per chunk for a vocabulary of ``vocab`` tokens."""
    return max(1, CHUNK_LOGITS // vocab)


class CausalLMLoss:
    """``compute_loss_func`` for the transformers Trainer: next-token cross-entropy from the last hidden states.

    ``model_inputs`` are the extra inputs every batch must carry (the collator adds them) so that the forward
    returns the hidden states and no logits."""

    def __init__(self, model, kind: str = "chunked"):
        import torch

        if kind not in ("fused", "chunked"):
            raise ValueError(f"kind must be fused or chunked, got {kind!r}")
        self.model = model
        self.kind = kind
        self.model_inputs = {"output_hidden_states": -1, "logits_to_keep": torch.zeros(0, dtype=torch.long)}
        self._fused = None

    def __call__(self, outputs, labels, num_items_in_batch=None):
        hidden = outputs.hidden_states[-1]
        head = self.model.get_output_embeddings()  # looked up per call: FSDP and peft may replace it
        labels = labels.to(hidden.device)
        shift = labels[:, 1:]
        mask = shift != -100
        h = hidden[:, :-1][mask]
        targets = shift[mask]
        if self.kind == "fused":
            total = self.fused_sum(h, head, targets)
        else:
            total = chunked_cross_entropy(h, head, targets, chunk_tokens(head.weight.shape[0]))
        count = mask.sum() if num_items_in_batch is None else num_items_in_batch
        if hasattr(count, "to"):
            count = count.to(total.device)
        return total / count

    def fused_sum(self, h, head, targets):
        import torch

        if self._fused is None:
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

            self._fused = LigerFusedLinearCrossEntropyLoss(reduction="sum", accum_dtype=torch.float32)
        if h.shape[0] == 0:  # a batch without trained tokens: a differentiable zero
            return hidden_zero(h)
        return self._fused(head.weight, h, targets, head.bias).float()


def hidden_zero(h):
    return (h.sum() * 0).float()


def chunked_cross_entropy(hidden, head, targets, chunk: int):
    """Sum over the rows of ``hidden`` (N, H) of the float32 cross-entropy of ``head(hidden)`` against ``targets`` (N),
    ``chunk`` rows at a time. With gradients on, each chunk runs under non-reentrant activation checkpointing: the
    forward keeps no logits, the backward recomputes one chunk's logits at a time."""
    import torch
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    def chunk_loss(h, t):
        return F.cross_entropy(head(h).float(), t, reduction="sum")

    if hidden.shape[0] == 0:
        return hidden_zero(hidden)
    total = None
    for start in range(0, hidden.shape[0], chunk):
        h, t = hidden[start:start + chunk], targets[start:start + chunk]
        if torch.is_grad_enabled():
            part = checkpoint(chunk_loss, h, t, use_reentrant=False)
        else:
            part = chunk_loss(h, t)
        total = part if total is None else total + part
    return total
