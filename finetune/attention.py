"""Padding-free attention for sdpa: each packed example attends only to itself, at the cost of its own length.

transformers keeps packed examples apart under sdpa by building a block-diagonal mask over the whole row (T x T for
T tokens in the batch), so attention costs T^2 in time and memory, more than padding would. ``packed_sdpa`` runs
causal attention on each example instead: sum(len^2), no mask, exact. It is registered with transformers'
AttentionInterface under the name ``finetune_packed_sdpa`` and used for training with padding_free or packing
batches; inference (generation, the merge check) uses plain sdpa.

The sequence boundaries come with the batch: the collator (finetune/data.py) computes ``cu_seq_lens_q`` and
``max_length_q`` once per batch on the host, and transformers passes them to every attention call. Then

- on a CUDA device in bf16/fp16: one call of the varlen flash-attention kernel PyTorch ships
  (``aten._flash_attention_forward`` with the offsets, its backward by autograd), for the whole row, grouped-query
  heads as they are, no Python loop over the examples and no host sync. Where that kernel refuses (fp32, an old
  GPU, a head size it lacks): ``scaled_dot_product_attention`` on nested jagged tensors built from the same offsets
  (memory-efficient attention in fp32), the same kernels behind a tensor subclass that costs milliseconds of host
  time a layer; where that fails too, the loop below;
- on a CPU: sdpa per example (a loop over the boundaries, which are host values already). PyTorch has no causal
  varlen kernel on the CPU (nested-tensor sdpa refuses ``is_causal`` there, FlexAttention has no CPU backward), and
  one masked T x T sdpa call is about 7x slower than the loop on a LIMA-shaped batch of 8 (bench/README.md).

Called without boundaries (a caller that passes only packed ``position_ids``), they are found from the positions
that restart at 0 (a host sync, once per layer). ``attn_implementation: flash_attention_2`` (the flash-attn package)
goes through transformers' own integration, which takes the same ``cu_seq_lens_q``/``max_length_q`` from the batch.
"""

from __future__ import annotations

import logging

from torch.utils.weak import WeakTensorKeyDictionary

log = logging.getLogger("finetune")

NAME = "finetune_packed_sdpa"
_OFFSETS = WeakTensorKeyDictionary()  # cu_seq_lens tensor -> ((device, dtype), its offsets there) (see jagged)
_BOUNDS = WeakTensorKeyDictionary()  # position_ids tensor -> (cu_seq_lens, longest)
_served: set[str] = set()  # the paths that attended packed rows in this process: flash, nested, loop
_failed: dict[str, str] = {}  # varlen kernel -> why it could not run here (then the next one serves, said once)
# The CUDA kernels tried in order. A diagnostic override for benchmarks: FINETUNE_VARLEN=nested (or loop) skips
# the kernels before it.
_KERNELS = ("flash", "nested")
VARLEN_CHOICES = (*_KERNELS, "loop")  # what FINETUNE_VARLEN may name
VARLEN_CHOICES_TEXT = ", ".join(VARLEN_CHOICES[:-1]) + " or " + VARLEN_CHOICES[-1]  # "flash, nested or loop"


def packed_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """query/key/value: (batch, heads, tokens, head_dim). Returns (batch, tokens, heads, head_dim), None."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu = kwargs.pop("cu_seq_lens_q", None)
    max_len = kwargs.pop("max_length_q", None)
    kwargs.pop("cu_seq_lens_k", None)
    kwargs.pop("max_length_k", None)
    position_ids = kwargs.pop("position_ids", None)
    if (attention_mask is not None or (cu is None and position_ids is None) or query.shape[0] != 1
            or kwargs.get("sliding_window") is not None or key.shape[2] != query.shape[2]):
        # not a packed training row (padding mask, a cache, a sliding window): plain sdpa
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if cu is None:
        cu, max_len = _boundaries_of(position_ids, query.shape[2])
    if query.device.type == "cuda":
        for kernel in _cuda_kernels():
            try:
                out = _VARLEN[kernel](query, key, value, cu, int(max_len), dropout, scaling)
                _served.add(kernel)
                return out, None
            except (RuntimeError, TypeError) as err:  # no such kernel for this dtype / head size / GPU: the next
                _failed[kernel] = str(err).splitlines()[0]
                log.log(logging.INFO if kernel == "flash" else logging.WARNING,
                        "padding-free attention: PyTorch's %s varlen kernel cannot run here (%s); %s", kernel,
                        _failed[kernel], "trying the next" if kernel == "flash" else
                        "attending per example instead (slower: pip install flash-attn and set "
                        "attn_implementation: flash_attention_2)")
    bounds = cu.tolist()  # host values on a CPU; on a GPU only after the varlen kernels failed
    _served.add("loop")
    outs = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        out, _ = sdpa_attention_forward(module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], None,
                                        dropout=dropout, scaling=scaling, is_causal=True, **kwargs)
        outs.append(out)
    return torch.cat(outs, dim=1), None


def _cuda_kernels() -> list[str]:
    import os

    wanted = os.environ.get("FINETUNE_VARLEN", "flash")
    if wanted not in VARLEN_CHOICES:
        raise ValueError(f"FINETUNE_VARLEN={wanted!r}: choose {VARLEN_CHOICES_TEXT}")
    order = list(_KERNELS[_KERNELS.index(wanted):]) if wanted in _KERNELS else []
    return [k for k in order if k not in _failed]


def flash_varlen(query, key, value, cu, max_len: int, dropout: float, scaling):
    """Causal attention of every example of a packed row in one call of PyTorch's varlen flash-attention kernel
    (the one sdpa on nested tensors calls underneath), on the row's buffers themselves: (1, heads, T, d) in,
    (1, T, heads, d) out. Grouped-query key/value heads go in as they are (the kernel shares them); ``cu`` are the
    example boundaries (int32 on the device, made once per batch)."""
    import torch

    offsets = _offsets(cu, query.device, torch.int32)
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # (T, heads, d): the projections' own layout
    out = torch.ops.aten._flash_attention_forward(q, k, v, offsets, offsets, max_len, max_len, dropout, True, False,
                                                  scale=scaling)[0]
    return out.unsqueeze(0)


def _offsets(cu, device, dtype):
    """``cu`` on ``device`` as ``dtype``, made once per cu tensor (every layer, and the recomputation under gradient
    checkpointing, gets the same tensor)."""
    key = (str(device), dtype)
    cached = _OFFSETS.get(cu)
    if cached is None or cached[0] != key:
        cached = _OFFSETS[cu] = (key, cu.to(device=device, dtype=dtype))
    return cached[1]


def nested_sdpa(query, key, value, cu, max_len: int, dropout: float, scaling):
    """Causal attention of every example of a packed row in one varlen kernel call: sdpa on nested jagged tensors
    whose offsets are ``cu`` (the row's example boundaries). (1, heads, T, d) in, (1, T, heads, d) out."""
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import repeat_kv

    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: the nested kernels want as many key/value heads as query heads
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    out = F.scaled_dot_product_attention(jagged(query, cu, max_len), jagged(key, cu, max_len),
                                         jagged(value, cu, max_len), dropout_p=dropout, is_causal=True, scale=scaling)
    return out.transpose(1, 2).values().unsqueeze(0)


def jagged(x, cu, max_len: int):
    """(1, heads, T, d) -> (examples, heads, ragged, d), a nested jagged tensor with offsets ``cu``.

    The offsets tensor is made once per ``cu`` tensor and reused: PyTorch names a nested tensor's ragged dimension
    after its offsets tensor, and gradient checkpointing recomputes each layer and checks that the recomputed
    tensors have the shapes of the first forward, so a fresh offsets tensor per call (a new ragged dimension) fails
    that check."""
    import torch

    offsets = _offsets(cu, x.device, torch.int64)
    values = x[0].transpose(0, 1).contiguous()
    return torch.nested.nested_tensor_from_jagged(values, offsets, min_seqlen=1, max_seqlen=max_len).transpose(1, 2)


def _boundaries_of(position_ids, length: int):
    """boundaries_from_positions, once per position_ids tensor (the same cu tensor for every layer and for the
    recomputation under gradient checkpointing)."""
    found = _BOUNDS.get(position_ids)
    if found is None:
        found = _BOUNDS[position_ids] = boundaries_from_positions(position_ids, length)
    return found


def boundaries_from_positions(position_ids, length: int):
    """(cu_seq_lens, longest) from packed position_ids, where each example restarts at 0."""
    import torch

    pos = position_ids.reshape(-1)
    starts = (pos == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    bounds = starts + [length]
    cu = torch.tensor(bounds, dtype=torch.int32)
    return cu, max(e - s for s, e in zip(bounds[:-1], bounds[1:]))


_VARLEN = {"flash": flash_varlen, "nested": nested_sdpa}


def served() -> list[str]:
    """The paths that attended packed rows in this process (for the run's provenance)."""
    return sorted(_served)


def register() -> str:
    """Register ``packed_sdpa`` with transformers (idempotent) and return its name."""
    import torch
    from transformers import AttentionInterface

    # outside torch.compile's graphs (compile_layers): one kernel call whose host-side bookkeeping (the offsets cached
    # per batch, the fallbacks) dynamo cannot trace; the compiled layer calls it between its two graphs
    AttentionInterface.register(NAME, torch.compiler.disable(packed_sdpa))
    return NAME
