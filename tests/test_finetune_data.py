"""finetune's data path: labels on assistant tokens only, EOT learned, pre-flight check, packing, bad data."""

from __future__ import annotations

import json

import pytest
import torch

from finetune import data as D

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hello there"},
    {"role": "assistant", "content": "General Kenobi!\n  You are a bold one."},
    {"role": "user", "content": "Again?"},
    {"role": "assistant", "content": "Yes. Twice."},
]


@pytest.fixture()
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _labelled(row):
    return [i for i, lab in zip(row["input_ids"], row["labels"]) if lab != D.IGNORE]


def test_labels_match_the_templates_assistant_mask_token_by_token(tok):
    eot = D.setup_template(tok, None, None)
    assert eot == "<|im_end|>"
    row = D.tokenize(tok, CONV, eot)
    # independent oracle: the template's {% generation %} markers, through transformers
    ref = tok.apply_chat_template(CONV, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    assert row["input_ids"] == list(ref["input_ids"])
    mask = list(ref["assistant_masks"])
    assert sum(mask) > 0
    for j, (tid, lab, m) in enumerate(zip(row["input_ids"], row["labels"], mask)):
        assert (lab != D.IGNORE) == bool(m), f"token {j} {tok.decode([tid])!r}: label {lab}, assistant mask {m}"
        assert lab in (D.IGNORE, tid)
    # what is trained is exactly the two answers, each with its end-of-turn token
    assert tok.decode(_labelled(row)) == "General Kenobi!\n  You are a bold one.<|im_end|>Yes. Twice.<|im_end|>"
    assert D.check_prompt_prefix(tok, CONV, row) is None


def test_end_of_turn_is_labelled_when_pad_equals_eos(tok):
    tok.pad_token = tok.eos_token
    assert tok.pad_token_id == tok.eos_token_id
    eot = D.setup_template(tok, None, None)
    eot_id = tok.convert_tokens_to_ids(eot)
    rows, _ = D.build_rows(tok, [{"id": "a", "messages": CONV}, {"id": "b", "messages": CONV[1:3]}], eot, 512,
                           "truncate")
    for row in rows:
        assert row["labels"][-2] == eot_id  # <|im_end|> then "\n"
    padded = D.PaddedCollator(tok.pad_token_id)(rows)
    short = padded["attention_mask"][1].sum().item()
    assert short < padded["input_ids"].shape[1]  # the second row really is padded ...
    assert (padded["input_ids"][1, short:] == eot_id).all()  # ... with the EOS id
    assert (padded["labels"][1, short:] == D.IGNORE).all()  # padding is not trained
    assert (padded["labels"] == eot_id).sum().item() == 3  # every end of turn is (2 + 1 answers)
    free = D.PaddingFreeCollator()(rows)
    assert (free["labels"] == eot_id).sum().item() == 3
    assert "attention_mask" not in free and free["input_ids"].shape[0] == 1


def test_default_template_for_a_base_model_adds_no_tokens(tok):
    tok.chat_template = None
    n = len(tok)
    eot = D.setup_template(tok, None, None)
    assert tok.chat_template == D.DEFAULT_CHAT_TEMPLATE and eot == tok.eos_token and len(tok) == n
    row = D.tokenize(tok, CONV, eot)
    assert D.check_prompt_prefix(tok, CONV, row) is None
    assert tok.decode(_labelled(row)) == f"General Kenobi!\n  You are a bold one.{eot}Yes. Twice.{eot}"
    text = tok.decode(row["input_ids"])
    assert "### User:\nhello there" in text and "### Assistant:\n" in text


def test_template_from_a_file_and_named_eot(tok, tmp_path):
    path = tmp_path / "t.jinja"
    path.write_text(D.DEFAULT_CHAT_TEMPLATE)
    assert D.setup_template(tok, str(path), "<|endoftext|>") == "<|endoftext|>"
    with pytest.raises(ValueError, match="does not end assistant turn"):
        D.tokenize(tok, CONV, "<|endoftext|>")  # that template ends answers with EOS, not <|endoftext|>
    with pytest.raises(ValueError, match="not one token"):
        D.setup_template(tok, str(path), "<nope>")


def test_preflight_rejects_a_prompt_that_is_not_a_token_prefix(tok):
    # the generation prompt ends in a space that BPE merges with the answer's first word in training
    tok.chat_template = D.DEFAULT_CHAT_TEMPLATE.replace("'### Assistant:\n'", "'### Assistant: '")
    eot = D.setup_template(tok, None, None)
    exs = [{"id": "bad", "messages": [{"role": "user", "content": "where?"},
                                      {"role": "assistant", "content": "there it is"}]}]  # " there" is one token
    with pytest.raises(ValueError) as err:
        D.build_rows(tok, exs, eot, 512, "truncate")
    assert "pre-flight check failed for 1 of 1" in str(err.value)
    assert "record bad: the inference prompt is not a token prefix" in str(err.value)


def test_overlong_examples_are_truncated_or_dropped_and_counted(tok):
    eot = D.setup_template(tok, None, None)
    long_answer = " ".join(["word"] * 200)
    exs = [{"id": "short", "messages": CONV[1:3]},
           {"id": "long", "messages": [CONV[1], {"role": "assistant", "content": long_answer}]},
           {"id": "longprompt", "messages": [{"role": "user", "content": long_answer}, CONV[2]]}]
    rows, stats = D.build_rows(tok, exs, eot, 64, "truncate")
    assert (stats.kept, stats.truncated, stats.dropped_overlong) == (2, 1, 1)  # no answer left in 'longprompt'
    assert stats.dropped_ids == ["longprompt"]
    assert max(len(r["input_ids"]) for r in rows) == 64
    rows, stats = D.build_rows(tok, exs, eot, 64, "drop")
    assert (stats.kept, stats.truncated, stats.dropped_overlong) == (1, 0, 2)
    assert "1 truncated, 1 dropped" in D.describe(D.build_rows(tok, exs, eot, 64, "truncate")[1], "train", 64)


def test_packing_fills_bins_and_restarts_positions(tok):
    eot = D.setup_template(tok, None, None)
    exs = [{"id": f"e{i}", "messages": [{"role": "user", "content": "q " * (i + 1)},
                                        {"role": "assistant", "content": "a " * (3 * i + 1)}]} for i in range(12)]
    rows, _ = D.build_rows(tok, exs, eot, 128, "truncate")
    bins = D.pack(rows, 128)
    assert len(bins) < len(rows)
    assert all(len(b["input_ids"]) <= 128 for b in bins)
    assert sorted(x for b in bins for x in b["id"].split(",")) == sorted(r["id"] for r in rows)
    assert sum(len(b["input_ids"]) for b in bins) == sum(len(r["input_ids"]) for r in rows)
    batch = D.PaddingFreeCollator()(bins[:2])
    pos = batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(pos) if p == 0]
    assert len(starts) == len(bins[0]["lengths"]) + len(bins[1]["lengths"])
    assert all(batch["labels"][0, s] == D.IGNORE for s in starts)  # never predict across examples


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_examples_do_not_attend_to_each_other(tiny_model_dir, tok, attn):
    """Each example's logits in a padding-free batch (the model as finetune loads it for training: per-example
    sdpa, or transformers' block mask for eager) equal its logits alone in a plain eager model."""
    from finetune.config import FinetuneConfig
    from finetune.model import load_base, training_attention

    eot = D.setup_template(tok, None, None)
    exs = [{"id": str(i), "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
           for i, (q, a) in enumerate([("one", "first answer"), ("two two", "second"), ("three", "third one here")])]
    rows, _ = D.build_rows(tok, exs, eot, 128, "truncate")
    cfg = FinetuneConfig(model=str(tiny_model_dir), data="x", quantization="none", attn_implementation=attn)
    model = load_base(cfg, torch.float32, attn=training_attention(cfg)).train()  # train mode: no cache wanted
    assert model.config._attn_implementation == ("finetune_packed_sdpa" if attn == "sdpa" else "eager")
    reference = load_base(cfg, torch.float32, attn="eager").eval()
    batch = D.PaddingFreeCollator()(rows)
    lengths = [len(r["input_ids"]) for r in rows]
    assert batch["cu_seq_lens_q"].tolist() == [0, lengths[0], lengths[0] + lengths[1], sum(lengths)]
    assert batch["max_length_q"] == max(lengths)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    # with the collator's boundaries, and with position_ids alone (boundaries found from the restarts at 0)
    positions_only = {k: v for k, v in inputs.items() if not k.startswith(("cu_seq_lens", "max_length"))}
    with torch.no_grad():
        for packed in (model(**inputs).logits[0], model(**positions_only).logits[0]):
            start = 0
            for row in rows:
                alone = reference(input_ids=torch.tensor([row["input_ids"]])).logits[0]
                n = len(row["input_ids"])
                torch.testing.assert_close(packed[start:start + n], alone, atol=1e-5, rtol=1e-4)
                start += n


@pytest.mark.skipif(not torch.cuda.is_available(), reason="PyTorch's varlen sdpa kernels need a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_packed_examples_stay_apart_with_the_cuda_varlen_kernel(tiny_model_dir, tok, dtype):
    """On a GPU, packed rows go through one varlen kernel call (no loop): PyTorch's flash kernel in bf16, sdpa on
    nested tensors in fp32; logits equal each example alone."""
    from finetune import attention
    from finetune.config import FinetuneConfig
    from finetune.model import load_base, training_attention

    eot = D.setup_template(tok, None, None)
    exs = [{"id": str(i), "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
           for i, (q, a) in enumerate([("one", "first answer"), ("two two", "second"), ("three", "third one here")])]
    rows, _ = D.build_rows(tok, exs, eot, 128, "truncate")
    cfg = FinetuneConfig(model=str(tiny_model_dir), data="x", quantization="none")
    model = load_base(cfg, dtype, attn=training_attention(cfg)).train()
    reference = load_base(cfg, dtype, attn="eager").eval()
    batch = {k: (v.cuda() if hasattr(v, "cuda") else v) for k, v in D.PaddingFreeCollator()(rows).items()
             if k != "labels"}
    with torch.no_grad():
        packed = model(**batch).logits[0].float()
        start = 0
        for row in rows:
            alone = reference(input_ids=torch.tensor([row["input_ids"]], device="cuda")).logits[0].float()
            n = len(row["input_ids"])
            tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else dict(atol=5e-2, rtol=5e-2)
            torch.testing.assert_close(packed[start:start + n], alone, **tol)
            start += n
    assert "nested" not in attention._failed, attention._failed
    if dtype == torch.bfloat16:
        assert "flash" not in attention._failed, attention._failed


def test_the_flash_varlen_call_has_the_shapes_and_gradients_of_attention():
    """The flash varlen call, on the meta device (shapes and autograd without a GPU): (1, heads, T, d) in,
    (1, T, heads, d) out, grouped-query key/value heads as they are, gradients for all three inputs, the same int32
    offsets tensor for every call of a batch, and under gradient checkpointing."""
    from torch.utils.checkpoint import checkpoint

    from finetune import attention

    cu = torch.tensor([0, 3, 7, 12], dtype=torch.int32)
    q = torch.randn(1, 4, 12, 8, device="meta", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, 2, 12, 8, device="meta", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1, 2, 12, 8, device="meta", dtype=torch.bfloat16, requires_grad=True)
    out = checkpoint(attention.flash_varlen, q, k, v, cu, 5, 0.0, None, use_reentrant=False)
    assert out.shape == (1, 12, 4, 8)
    out.sum().backward()
    assert q.grad.shape == q.shape and k.grad.shape == k.shape and v.grad.shape == v.shape
    offsets = attention._offsets(cu, torch.device("meta"), torch.int32)
    assert offsets is attention._offsets(cu, torch.device("meta"), torch.int32) and offsets.dtype == torch.int32


def test_the_varlen_override_picks_the_first_kernel_tried(monkeypatch):
    """FINETUNE_VARLEN (for benchmarks): flash, then nested, by default; nested skips flash; loop skips both; an
    unknown value is an error naming the choices."""
    from finetune import attention

    monkeypatch.setattr(attention, "_failed", {})
    assert attention._cuda_kernels() == ["flash", "nested"]
    monkeypatch.setenv("FINETUNE_VARLEN", "nested")
    assert attention._cuda_kernels() == ["nested"]
    monkeypatch.setenv("FINETUNE_VARLEN", "loop")
    assert attention._cuda_kernels() == []
    monkeypatch.setenv("FINETUNE_VARLEN", "flsh")
    with pytest.raises(ValueError, match="choose flash, nested or loop"):
        attention._cuda_kernels()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="PyTorch's flash kernel needs a CUDA device")
def test_the_flash_varlen_call_equals_per_example_attention():
    import torch.nn.functional as F

    from finetune import attention

    torch.manual_seed(0)
    cu = torch.tensor([0, 3, 7, 12], dtype=torch.int32)
    q, k, v = (torch.randn(1, h, 12, 64, device="cuda", dtype=torch.bfloat16) for h in (4, 2, 2))
    out = attention.flash_varlen(q, k, v, cu, 5, 0.0, None)
    expected = torch.cat([F.scaled_dot_product_attention(q[:, :, s:e], k[:, :, s:e].repeat_interleave(2, 1),
                                                         v[:, :, s:e].repeat_interleave(2, 1), is_causal=True)
                          for s, e in [(0, 3), (3, 7), (7, 12)]], 2).transpose(1, 2)
    torch.testing.assert_close(out.float(), expected.float(), atol=2e-2, rtol=2e-2)


def test_the_varlen_path_equals_per_example_attention():
    """The one-call path of a GPU (nested jagged tensors) gives what causal attention over each example alone gives,
    with grouped-query heads (skipped where PyTorch has no causal nested kernel: the CPU)."""
    import torch.nn.functional as F

    from finetune import attention

    torch.manual_seed(0)
    cu = torch.tensor([0, 3, 7, 12], dtype=torch.int32)
    q, k, v = torch.randn(1, 4, 12, 8), torch.randn(1, 2, 12, 8), torch.randn(1, 2, 12, 8)
    try:
        out = attention.nested_sdpa(q, k, v, cu, 5, 0.0, None)
    except RuntimeError as err:
        pytest.skip(f"no causal nested-tensor sdpa on this device: {str(err).splitlines()[0]}")
    expected = torch.cat([F.scaled_dot_product_attention(q[:, :, s:e], k[:, :, s:e].repeat_interleave(2, 1),
                                                         v[:, :, s:e].repeat_interleave(2, 1), is_causal=True)
                          for s, e in [(0, 3), (3, 7), (7, 12)]], 2).transpose(1, 2)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_packed_rows_survive_gradient_checkpointing_recomputation():
    """The varlen path's nested tensors keep one ragged dimension per batch: gradient checkpointing recomputes a layer
    and compares the shapes of its saved tensors with the first forward's. A fresh offsets tensor per call named a
    new ragged dimension (j24 vs j25) and training on a GPU stopped with a CheckpointError at the first backward."""
    from torch.utils.checkpoint import checkpoint

    from finetune import attention

    cu = torch.tensor([0, 3, 7, 12], dtype=torch.int32)
    x = torch.randn(1, 2, 12, 4, requires_grad=True)
    w = torch.randn(4, 4, requires_grad=True)

    def layer(x, cu):  # a layer that saves a nested tensor for its backward
        nt = attention.jagged(x, cu, 5)
        return (nt * nt).transpose(1, 2).values().sum() * w.sum()

    assert attention.jagged(x, cu, 5).shape == attention.jagged(x, cu, 5).shape  # the same ragged dimension
    checkpoint(layer, x, cu, use_reentrant=False).backward()
    assert x.grad is not None and w.grad is not None


def test_bad_records_name_the_record_and_line(tmp_path, tiny_model_dir, capsys):
    from finetune.__main__ import main

    good = {"id": "ok1", "messages": CONV[1:3], "source": "s", "meta": {}}
    cases = {
        "no assistant answer": {"id": "rec-noasst", "messages": [{"role": "user", "content": "hi"}]},
        "empty assistant answer": {"id": "rec-empty", "messages": [{"role": "user", "content": "hi"},
                                                                   {"role": "assistant", "content": "  "}]},
    }
    for problem, bad in cases.items():
        path = tmp_path / f"{bad['id']}.jsonl"
        path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        rc = main(["--model", str(tiny_model_dir), "--data", str(path), "--output_dir", str(tmp_path / bad["id"])])
        err = capsys.readouterr().err
        assert rc == 2
        assert f"{path}:2 record {bad['id']}: {problem}" in err, err


def test_swap_roles_trains_the_instruction_given_the_answer(tmp_path, tiny_model_dir, tok):
    """A backward model (instruction backtranslation): the answer is the prompt, the instruction is learned."""
    from finetune import sft
    from finetune.config import FinetuneConfig, check

    rows = [{"messages": CONV},  # multi-turn with a system prompt: its first exchange, no system
            {"messages": [{"role": "user", "content": "Name a prime number."},
                          {"role": "assistant", "content": "Seven is prime."}]}]
    path = tmp_path / "seeds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = check(FinetuneConfig(model=str(tiny_model_dir), data=str(path), dev_size=0.0, swap_roles=True))
    eot = D.setup_template(tok, None, None)
    train, _, stats = sft.load_data(cfg, tok, eot)
    assert stats["train"]["kept"] == 2
    learned = sorted(tok.decode(_labelled(r)).replace(eot, "").strip() for r in train)
    prompts = sorted(tok.decode(r["input_ids"]) for r in train)
    assert learned == ["Name a prime number.", "hello there"]       # the instructions are the targets
    assert "Seven is prime." in prompts[0] + prompts[1]              # the answers are the prompts
    assert "General Kenobi!" in prompts[0] + prompts[1]
    assert not any("Be brief." in p or "Again?" in p for p in prompts)
    with pytest.raises(ValueError, match="swap_roles"):
        check(FinetuneConfig(model=str(tiny_model_dir), data=str(path), swap_roles=True, method="dpo"))


def test_a_curation_export_folder_is_data_and_its_dev_jsonl_the_dev_set(tmp_path, tiny_model_dir, tok):
    """--data data/<name> (the folder `curation export` writes): its train.jsonl trains and its dev.jsonl is the
    dev set; without a dev.jsonl, dev_size of the training examples is held out; dev_data, when given, wins."""
    from finetune.config import FinetuneConfig
    from finetune.sft import load_data

    folder = tmp_path / "my-lima"
    folder.mkdir()

    def write(name, n, tag):
        with open(folder / name, "w", encoding="utf-8") as fh:
            for i in range(n):
                fh.write(json.dumps({"messages": [{"role": "user", "content": f"{tag} question {i}"},
                                                  {"role": "assistant", "content": f"{tag} answer {i}"}]}) + "\n")

    write("train.jsonl", 20, "train")
    (folder / "manifest.json").write_text("{}")
    eot = D.setup_template(tok, None, None)
    cfg = FinetuneConfig(model=str(tiny_model_dir), data=str(folder), dev_size=0.1)
    train, dev, _ = load_data(cfg, tok, eot)
    assert (len(train), len(dev)) == (18, 2)  # no dev.jsonl: 10 % held out
    write("dev.jsonl", 3, "dev")
    train, dev, stats = load_data(cfg, tok, eot)
    assert (len(train), len(dev)) == (20, 3) and stats["dev"]["examples"] == 3
    write("other.jsonl", 4, "other")
    cfg = FinetuneConfig(model=str(tiny_model_dir), data=str(folder), dev_data=str(folder / "other.jsonl"))
    assert [len(x) for x in load_data(cfg, tok, eot)[:2]] == [20, 4]
