"""Generation on the tiny random Llama: batching with left padding, end of turn, resume, outputs files."""

from __future__ import annotations

import json

import pytest

from eval.config import GenerateConfig
from eval.files import load_prompts, read_records, write_jsonl
from eval.generate import _load, end_of_turn_ids, generate_batch, main


@pytest.fixture
def prompts_file(tmp_path):
    rows = [{"id": f"p{i}", "prompt": "Explain " + " ".join(["topic"] * (i + 1)) + f" number {i}.",
             "category": "c" + str(i % 2)} for i in range(7)]
    write_jsonl(tmp_path / "prompts.jsonl", rows)
    return tmp_path / "prompts.jsonl"


def test_batched_equals_one_at_a_time(tiny_model_dir, prompts_file, compute_dtype):
    cfg = GenerateConfig(prompts=str(prompts_file), out="-", model=str(tiny_model_dir), max_new_tokens=12)
    model, tokenizer, _, _, _ = _load(cfg)
    assert tokenizer.padding_side == "left"
    eos = end_of_turn_ids(tokenizer, model)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in eos
    texts = [p.prompt for p in load_prompts(prompts_file)]
    batched, _ = generate_batch(model, tokenizer, texts, cfg, eos)
    single = [generate_batch(model, tokenizer, [t], cfg, eos)[0][0] for t in texts]
    assert batched == single  # left padding + attention mask: padding changes nothing
    assert len(set(batched)) > 1


def test_stops_at_end_of_turn(tiny_model_dir, prompts_file):
    cfg = GenerateConfig(prompts=str(prompts_file), out="-", model=str(tiny_model_dir), max_new_tokens=10)
    model, tokenizer, _, _, _ = _load(cfg)
    text = load_prompts(prompts_file)[0].prompt
    enc = tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                                  tokenize=False), return_tensors="pt", add_special_tokens=False)
    full = model.generate(**enc, max_new_tokens=10, do_sample=False, eos_token_id=None,
                          pad_token_id=tokenizer.pad_token_id)[0, enc["input_ids"].shape[1]:].tolist()
    stop = full[4]  # pretend the 5th token the model emits ends the turn
    k = full.index(stop)
    answers, lengths = generate_batch(model, tokenizer, [text], cfg, [stop])
    assert lengths == [k]
    assert answers[0] == tokenizer.decode(full[:k], skip_special_tokens=True).strip()


def test_generate_file_resume_and_schema(tiny_model_dir, prompts_file, tmp_path, capsys):
    out = tmp_path / "gens.jsonl"
    base = dict(prompts=str(prompts_file), out=str(out), model=str(tiny_model_dir), max_new_tokens=8,
                batch_size=3, progress=False, generator="tiny")
    main(GenerateConfig(**base, limit=3))
    first = {r["id"]: r for r in read_records(out)}
    assert list(first) == ["p0", "p1", "p2"]
    capsys.readouterr()
    main(GenerateConfig(**base))
    err = capsys.readouterr().err
    assert "resuming: 3 answers already" in err and "4 new answers" in err
    rows = read_records(out)
    assert [r["id"] for r in rows] == [f"p{i}" for i in range(7)]  # rewritten in prompt order
    for r in rows[:3]:
        assert r == first[r["id"]]  # untouched by the resumed run
    r = rows[0]
    assert set(r) >= {"id", "prompt", "category", "output", "generator", "model", "adapter", "config"}
    assert r["generator"] == "tiny" and r["category"] == "c0" and r["adapter"] is None
    assert r["config"]["max_new_tokens"] == 8 and r["config"]["seed"] == 0
    assert len(r["config"]["chat_template_sha256"]) == 16
    # a third run has nothing to do
    main(GenerateConfig(**base))
    assert "0 new answers" in capsys.readouterr().err
    # another model, or other decoding settings, into the same file is refused (no stale answer passes as fresh)
    with pytest.raises(ValueError, match="record p0: model differ"):
        main(GenerateConfig(**{**base, "model": str(tmp_path)}))
    with pytest.raises(ValueError, match="max_new_tokens, temperature differ"):
        main(GenerateConfig(**{**base, "max_new_tokens": 16, "temperature": 0.7}))


def test_alpaca_eval_formats(tmp_path):
    # AlpacaEval's evaluation set (instruction, dataset) as prompts, its model outputs as the reference
    prompts = [{"instruction": "What is the capital of France?", "dataset": "helpful_base"},
               {"instruction": "Name a prime number.", "dataset": "oasst"}]
    (tmp_path / "alpaca_eval.json").write_text(json.dumps(prompts))
    outputs = [{"instruction": "Name a prime number.", "output": "7", "generator": "gpt4_turbo"},
               {"instruction": "What is the capital of France?", "output": "Paris.", "generator": "gpt4_turbo"}]
    (tmp_path / "gpt4_outputs.json").write_text(json.dumps(outputs))
    out = tmp_path / "ref.jsonl"
    main(GenerateConfig(prompts=str(tmp_path / "alpaca_eval.json"), out=str(out), outputs=str(tmp_path / "gpt4_outputs.json")))
    rows = read_records(out)
    assert [(r["output"], r["generator"], r["category"]) for r in rows] == [
        ("Paris.", "gpt4_turbo", "helpful_base"), ("7", "gpt4_turbo", "oasst")]
    assert rows[0]["id"].startswith("p-")


def test_validation_reports_every_problem(tmp_path):
    with pytest.raises(ValueError) as info:
        main(GenerateConfig(prompts=str(tmp_path / "missing.jsonl"), out=str(tmp_path / "o.jsonl"),
                            adapter="x", batch_size=0))
    msg = str(info.value)
    for part in ("either --model", "--adapter needs --model", "--batch-size", "no such file"):
        assert part in msg


def test_adapter_run_folder_and_its_provenance(tiny_model_dir, prompts_file, tmp_path, compute_dtype):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = tmp_path / "runs" / "lima"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(run_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(run_dir)
    (run_dir / "provenance.json").write_text(json.dumps({
        "base_model": str(tiny_model_dir), "data": {"path": "data/lima/train.jsonl", "sha256": "d" * 64},
        "manifest": {"path": "data/lima/manifest.json", "sha256": "m" * 64}, "global_step": 20}))
    out = tmp_path / "cand.jsonl"
    main(GenerateConfig(prompts=str(prompts_file), out=str(out), model=str(tiny_model_dir), adapter=str(run_dir),
                        max_new_tokens=4, progress=False, limit=2))
    row = read_records(out)[0]
    assert row["adapter"] == str(run_dir) and row["generator"] == "lima"
    assert row["config"]["tokenizer"] == str(run_dir)  # the chat template as trained
    training = row["config"]["training"]
    assert training["data_manifest_sha256"] == "m" * 64 and training["train_data_sha256"] == "d" * 64
    assert len(row["config"]["adapter_sha256"]) == 64
    # the run trained again (new adapter weights in the same folder): its old answers are not reused as fresh
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.add_(0.5)
    model.save_pretrained(run_dir)
    with pytest.raises(ValueError, match="adapter_sha256 differ: the adapter was trained again since"):
        main(GenerateConfig(prompts=str(prompts_file), out=str(out), model=str(tiny_model_dir), adapter=str(run_dir),
                            max_new_tokens=4, progress=False))


def test_empty_and_cut_answers_are_flagged(tiny_model_dir, prompts_file, tmp_path, capsys):
    from eval.generate import flag_answers

    rows = [{"id": "e", "output": "  ", "config": {"max_new_tokens": 8, "hit_max_new_tokens": False}},
            {"id": "c", "output": "cut", "config": {"max_new_tokens": 8, "hit_max_new_tokens": True}},
            {"id": "ok", "output": "fine.", "config": {"max_new_tokens": 8, "hit_max_new_tokens": False}}]
    lines = flag_answers(rows)
    assert lines == ["warning: 1 of 3 answers are empty (e.g. e)",
                     "warning: 1 of 3 answers stopped at --max-new-tokens 8 and are cut short (e.g. c); raise it for "
                     "complete answers"]
    assert flag_answers(rows[2:]) == []
    # the command prints them: the tiny random model never emits its end-of-turn token within 4 tokens
    main(GenerateConfig(prompts=str(prompts_file), out=str(tmp_path / "g.jsonl"), model=str(tiny_model_dir),
                        max_new_tokens=4, progress=False, limit=3))
    err = capsys.readouterr().err
    assert "answers stopped at --max-new-tokens 4 and are cut short" in err


def test_multi_turn_prompts_are_answered_turn_by_turn(tiny_model_dir, tmp_path):
    rows = [{"id": "m1", "turns": ["Name a colour.", "Now name another one."], "category": "writing"},
            {"id": "s1", "prompt": "Say hello.", "category": "chat"}]
    write_jsonl(tmp_path / "p.jsonl", rows)
    out = tmp_path / "g.jsonl"
    cfg = GenerateConfig(prompts=str(tmp_path / "p.jsonl"), out=str(out), model=str(tiny_model_dir), max_new_tokens=6,
                         progress=False)
    main(cfg)
    multi, single = read_records(out)
    assert multi["turns"] == rows[0]["turns"] and len(multi["outputs"]) == 2 and multi["output"] == multi["outputs"][0]
    assert "turns" not in single and single["output"]
    assert len(multi["config"]["new_tokens_per_turn"]) == 2
    # the second answer was generated with the model's own first answer in the context
    model, tokenizer, _, _, _ = _load(cfg)
    eos = end_of_turn_ids(tokenizer, model)
    conversation = [{"role": "user", "content": rows[0]["turns"][0]},
                    {"role": "assistant", "content": multi["outputs"][0]},
                    {"role": "user", "content": rows[0]["turns"][1]}]
    assert generate_batch(model, tokenizer, [conversation], cfg, eos)[0] == [multi["outputs"][1]]


def test_vllm_backend_without_the_package_is_a_clear_error(tmp_path, capsys):
    import importlib.util

    from eval import cli

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here: bench/bench_generate.py exercises the backend on a GPU")
    write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "prompt": "Hi"}])
    code = cli.main(["generate", "--backend", "vllm", "--model", "some/model", "--prompts", str(tmp_path / "p.jsonl"),
                     "--out", str(tmp_path / "o.jsonl"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--backend vllm needs the vllm package" in err and "Traceback" not in err
