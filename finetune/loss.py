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
  chunk in float32, and its gradient computed right there (the chunk's softmax minus the one-hot targets, times the
  head's weight: :class:`LinearCrossEntropy`), so neither the forward nor the backward keeps more than one chunk's
  logits and nothing is recomputed. A head that is not a plain linear layer (one with LoRA adapters) runs each
  chunk under activation checkpointing instead (the backward recomputes one chunk at a time).

``auto`` takes ``fused`` where liger-kernel is installed, the model is on a CUDA device and the LM head is a plain
linear layer, else ``chunked``; ``full`` keeps transformers' own loss over the full logits (the reference). Every
path sums the per-token losses and divides by the Trainer's ``num_items_in_batch`` (the trained tokens of the whole
accumulated batch), as the model's own loss does, so gradient accumulation weighs every token the same.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging

import torch

log = logging.getLogger("finetune")

CHUNK_LOGITS = 2**25  # logits per chunk of the chunked path: 128 MiB in float32, whatever the vocabulary


def liger_missing(device_type: str | None = None) -> str | None:
    """What liger-kernel's Triton kernels lack here (its package, a CUDA device), or None. ``device_type``: where
    the model is (None: whether this machine has a CUDA device at all, asked before anything loads)."""
    if importlib.util.find_spec("liger_kernel") is None:
        return "the liger-kernel package (pip install liger-kernel)"
    on_cuda = torch.cuda.is_available() if device_type is None else device_type == "cuda"
    if not on_cuda:
        return "a CUDA device (liger-kernel's kernels are Triton kernels)"
    return None


def fused_available(model) -> str | None:
    """None when liger-kernel's fused linear cross-entropy can serve ``model``, else why not."""
    head = model.get_output_embeddings()
    missing = liger_missing(head.weight.device.type if head is not None else "meta")
    if missing:
        return f"it needs {missing}"
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
        log.info("loss: chunked cross-entropy on the trained positions, %d positions a chunk, no logits kept%s",
                 chunk_tokens(vocab),
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
        if kind not in ("fused", "chunked"):
            raise ValueError(f"kind must be fused or chunked, got {kind!r}")
        self.model = model
        self.kind = kind
        self.model_inputs = {"output_hidden_states": -1, "logits_to_keep": torch.zeros(0, dtype=torch.long)}

    def __call__(self, outputs, labels, num_items_in_batch=None):
        hidden = outputs.hidden_states[-1]
        head = self.model.get_output_embeddings()  # looked up per call: FSDP and peft may replace it
        labels = labels.to(hidden.device)
        shift = labels[:, 1:]
        mask = shift != -100
        h = hidden[:, :-1][mask]
        targets = shift[mask]
        weight = getattr(head, "weight", None)
        if weight is not None and weight.is_floating_point() and h.dtype != weight.dtype:
            # under mixed precision accelerate hands the model's outputs over in float32 and the loss runs outside
            # autocast: the head's matmul in its own dtype, as autocast would run it (the cross-entropy stays float32)
            h = h.to(weight.dtype)
        if self.kind == "fused":
            total = fused_cross_entropy(h, head, targets)
        else:
            total = chunked_cross_entropy(h, head, targets, chunk_tokens(head.weight.shape[0]))
        count = mask.sum() if num_items_in_batch is None else num_items_in_batch
        if hasattr(count, "to"):
            count = count.to(total.device)
        return total / count


def hidden_zero(h):
    return (h.sum() * 0).float()


def fused_cross_entropy(hidden, head, targets):
    """Sum of the cross-entropy of ``head(hidden)`` against ``targets`` by liger-kernel's fused linear
    cross-entropy (CUDA): the loss and the input gradient chunk by chunk, no logits kept."""
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    if hidden.shape[0] == 0:  # a batch without trained tokens: a differentiable zero
        return hidden_zero(hidden)
    return LigerFusedLinearCrossEntropyLoss(reduction="sum")(head.weight, hidden, targets, head.bias).float()


def chunked_cross_entropy(hidden, head, targets, chunk: int):
    """Sum over the rows of ``hidden`` (N, H) of the float32 cross-entropy of ``head(hidden)`` against ``targets`` (N),
    ``chunk`` rows at a time; no logits are kept for the backward.

    A plain linear head (the usual case: a frozen LM head, or tied embeddings): :class:`LinearCrossEntropy`, which
    computes each chunk's gradient in the forward, so the backward has nothing to recompute. Any other head module
    (e.g. one with LoRA adapters): each chunk under non-reentrant activation checkpointing, so the backward recomputes
    one chunk's logits at a time."""
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    if hidden.shape[0] == 0:
        return hidden_zero(hidden)
    if type(head) is torch.nn.Linear:
        return LinearCrossEntropy.apply(hidden, head.weight, head.bias, targets, chunk)

    def chunk_loss(h, t):
        return F.cross_entropy(head(h).float(), t, reduction="sum")

    total = None
    for start in range(0, hidden.shape[0], chunk):
        h, t = hidden[start:start + chunk], targets[start:start + chunk]
        part = checkpoint(chunk_loss, h, t, use_reentrant=False) if torch.is_grad_enabled() else chunk_loss(h, t)
        total = part if total is None else total + part
    return total


class LinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(hidden_i @ weight.T + bias, target_i) in float32, chunk by chunk, with the gradients computed in the
    forward: the softmax of a chunk minus its one-hot targets, cast to the hidden states' dtype, times the weight, as
    autograd computes it for ``F.cross_entropy(F.linear(h, w, b).float(), t, reduction="sum")``. Saved for the
    backward: the gradient of the hidden states (N x H) and, where the weight or bias are trained, theirs (float32
    sums); no logits."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk):
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        grad_b = torch.zeros_like(bias, dtype=torch.float32) if need_b else None
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start:start + chunk], targets[start:start + chunk]
            logits = torch.nn.functional.linear(h, weight, bias)
            low = logits.dtype
            logits = logits.float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if need_h or need_w or need_b:
                grad = logits.sub_(lse[:, None]).exp_()  # the softmax, in place of the logits
                grad[torch.arange(t.shape[0], device=t.device), t] -= 1
                grad = grad.to(low)
                if need_h:
                    grad_h[start:start + chunk] = grad @ weight.to(low)
                if need_w:
                    grad_w += (grad.t() @ h.to(low)).float()
                if need_b:
                    grad_b += grad.float().sum(0)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        grads = ctx.saved_tensors
        return (*(None if g is None else (g * grad_output).to(dtype) for g, dtype in zip(grads, ctx.dtypes)),
                None, None)
