"""finetune/loss.py: the loss without full logits equals transformers' own cross-entropy, values and gradients."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from finetune import data as D
from finetune import loss as L

DTYPES = [torch.float32, torch.bfloat16]
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


def _head(kind, hidden, vocab, dtype):
    linear = torch.nn.Linear(hidden, vocab, bias=kind == "linear_bias", dtype=dtype)
    if kind == "module":  # not a plain linear layer (as a head with LoRA adapters): the checkpointed path
        return torch.nn.Sequential(linear), linear
    return linear, linear


@pytest.mark.parametrize("kind", ["linear", "linear_bias", "module"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "bfloat16"])
def test_chunked_cross_entropy_equals_the_plain_one(dtype, kind):
    """Several chunks (7 rows each, the last one short): the same sum and the same gradients for the hidden
    states, the head weight (and bias) as one float32 cross-entropy over all the logits."""
    torch.manual_seed(0)
    n, hidden, vocab = 50, 16, 97
    h = torch.randn(n, hidden, dtype=dtype, requires_grad=True)
    head, linear = _head(kind, hidden, vocab, dtype)
    params = [p for p in linear.parameters()]
    targets = torch.randint(0, vocab, (n,))

    got = L.chunked_cross_entropy(h, head, targets, chunk=7)
    (2.5 * got).backward()  # a scaled upstream gradient, as the division by num_items_in_batch gives
    got_grads = [h.grad.clone()] + [p.grad.clone() for p in params]
    h.grad = None
    for p in params:
        p.grad = None
    want = F.cross_entropy(head(h).float(), targets, reduction="sum")
    (2.5 * want).backward()

    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, **TOL[dtype])
    for g, x in zip(got_grads, [h] + params):
        assert g.dtype == x.dtype
        torch.testing.assert_close(g, x.grad, **TOL[dtype])


@pytest.mark.parametrize("kind", ["linear", "module"])
def test_chunked_cross_entropy_keeps_no_logits_for_the_backward(kind):
    """The autograd graph holds the chunks' inputs or gradients (rows x hidden), never their (rows x vocab) logits."""
    n, hidden, vocab = 64, 8, 4096
    h = torch.randn(n, hidden, requires_grad=True)
    head, linear = _head(kind, hidden, vocab, torch.float32)
    linear.requires_grad_(False)  # frozen, as in QLoRA
    targets = torch.randint(0, vocab, (n,))
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = L.chunked_cross_entropy(h, head, targets, chunk=16)
    saved += [t.numel() for t in getattr(loss.grad_fn, "saved_tensors", ()) if t is not None]
    assert saved and max(saved) <= n * hidden * 8, saved  # inputs or gradients of the hidden states, not logits
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(head(h).float(), targets, reduction="sum")
    assert max(saved) >= n * vocab  # the plain path keeps the logits


def _peft_model(model_dir, dtype):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    for name, p in model.named_parameters():  # LoRA B starts at zero: give it values so every gradient flows
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return model.train()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "bfloat16"])
@pytest.mark.parametrize("batching", ["padding_free", "padded"])
def test_causal_lm_loss_equals_the_models_own_loss(tiny_model_dir, dtype, batching):
    """Through the real tiny Llama with LoRA: CausalLMLoss on the hidden states the collator asks for gives the
    model's own loss (full logits, num_items_in_batch) and the same LoRA gradients."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    eot = D.setup_template(tok, None, None)
    exs = [{"id": str(i), "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
           for i, (q, a) in enumerate([("one", "first answer here"), ("two two", "second"),
                                       ("three", "the third answer is the longest of them all")])]
    rows, _ = D.build_rows(tok, exs, eot, 128, "truncate")
    model = _peft_model(tiny_model_dir, dtype)
    loss_fn = L.CausalLMLoss(model, "chunked")
    batch = D.collator_for(batching, tok.pad_token_id, extra=loss_fn.model_inputs)(rows)
    plain_batch = D.collator_for(batching, tok.pad_token_id)(rows)
    labels = batch.pop("labels")
    n_items = int((labels[:, 1:] != -100).sum()) + 5  # as under gradient accumulation: more tokens than this batch

    outputs = model(**batch)
    assert outputs.logits.shape[1] == 0  # no logits were computed
    got = loss_fn(outputs, labels, num_items_in_batch=n_items)
    got.backward()
    got_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    want = model(**plain_batch, num_items_in_batch=n_items).loss
    want.backward()

    torch.testing.assert_close(got, want.float(), **TOL[dtype])
    assert got_grads
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(got_grads[name], p.grad, **TOL[dtype], msg=name)


def test_causal_lm_loss_takes_the_float32_outputs_of_a_mixed_precision_forward(tiny_model_dir):
    """Under the Trainer's mixed precision (finetune's autocast on a GPU) accelerate runs the forward under autocast
    and converts its outputs to float32, and the loss runs outside autocast: the hidden states reach the loss in
    float32 while the head is bf16. The loss takes them (it failed on the dtype mismatch) and gives the model's own
    mixed-precision loss and LoRA gradients. The CPU's autocast stands in for the GPU's here."""
    from accelerate.utils import convert_outputs_to_fp32
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    eot = D.setup_template(tok, None, None)
    exs = [{"id": str(i), "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
           for i, (q, a) in enumerate([("one", "first answer here"), ("two two", "the second answer")])]
    rows, _ = D.build_rows(tok, exs, eot, 128, "truncate")
    model = _peft_model(tiny_model_dir, torch.bfloat16)
    forward = convert_outputs_to_fp32(torch.autocast("cpu", dtype=torch.bfloat16)(model.forward))
    loss_fn = L.CausalLMLoss(model, "chunked")
    batch = D.collator_for("padding_free", tok.pad_token_id, extra=loss_fn.model_inputs)(rows)
    labels = batch.pop("labels")
    outputs = forward(**batch)
    assert outputs.hidden_states[-1].dtype == torch.float32
    got = loss_fn(outputs, labels)
    got.backward()
    got_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    want = forward(**D.collator_for("padding_free", tok.pad_token_id)(rows)).loss
    want.backward()
    torch.testing.assert_close(got, want, **TOL[torch.bfloat16])
    for name, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(got_grads[name], p.grad, atol=5e-2, rtol=5e-2, msg=name)


def test_auto_takes_the_chunked_path_without_liger_or_cuda(tiny_model_dir, caplog):
    model = _peft_model(tiny_model_dir, torch.float32)
    with caplog.at_level(logging.INFO, logger="finetune"):
        fn = L.for_model("auto", model)
    assert fn.kind == "chunked"
    assert "chunked cross-entropy" in caplog.text and "fused linear cross-entropy not used" in caplog.text
    assert L.fused_available(model) is not None
    with pytest.raises(ValueError, match="loss: fused .* cannot run here"):
        L.for_model("fused", model)
    assert L.for_model("full", model) is None
