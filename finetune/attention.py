"""Padding-free attention for sdpa: each packed example attends only to itself, at the cost of its own length.

transformers keeps packed examples apart under sdpa by building a block-diagonal mask over the whole
row (T x T for T tokens in the batch), so attention costs T^2 in time and memory, more than padding
would. ``packed_sdpa`` instead cuts the row where ``position_ids`` restart at 0 and runs causal sdpa on
each example: sum(len^2), no mask, exact. It is registered with transformers' AttentionInterface
under the name ``finetune_packed_sdpa`` and used for training with padding_free or packing batches;
inference (generation, the merge check) uses plain sdpa.
"""

from __future__ import annotations

NAME = "finetune_packed_sdpa"


def packed_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """query/key/value: (batch, heads, tokens, head_dim). Returns (batch, tokens, heads, head_dim), None."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.pop("position_ids", None)
    if (attention_mask is not None or position_ids is None or query.shape[0] != 1
            or kwargs.get("sliding_window") is not None or key.shape[2] != query.shape[2]):
        # not a packed training row (padding mask, a cache, a sliding window): fall back to plain sdpa
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    pos = position_ids.reshape(-1)
    starts = (pos == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0] + starts
    bounds = starts + [query.shape[2]]
    outs = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        out, _ = sdpa_attention_forward(module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e], None,
                                        dropout=dropout, scaling=scaling, is_causal=True, **kwargs)
        outs.append(out)
    return torch.cat(outs, dim=1), None


def register() -> str:
    """Register ``packed_sdpa`` with transformers (idempotent) and return its name."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, packed_sdpa)
    return NAME
