"""python -m finetune end to end on a tiny random Llama with real bitsandbytes 4-bit weights, on the CPU.

One QLoRA run (module fixture) serves most assertions; merge, the NaN stop and plain LoRA run on their own.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerCallback

from conftest import COMPUTE_DTYPES
from contract.models import ENV_DTYPE, run_compute_dtype
from finetune import data as D
from finetune.config import load as load_config

REPO = Path(__file__).resolve().parent.parent
TINY_RECIPE = REPO / "finetune" / "recipes" / "tiny-cpu.yaml"
PROBE = [{"role": "user", "content": "Name a river."}, {"role": "assistant", "content": "The river answer."}]
WORDS = "the a river stone model data light sound cloud tree answer question simple careful build test".split()


def write_curated(folder: Path, n: int = 24, seed: int = 0) -> Path:
    """A curation-export-like folder: train.jsonl in the example schema and manifest.json beside it."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    answers = ["The river runs to the sea.", "A stone is a careful answer.", "Build the model, then test it."]
    with open(folder / "train.jsonl", "w", encoding="utf-8") as fh:
        for i in range(n):
            q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))).capitalize() + "?"
            a = " ".join([answers[i % 3]] * rng.randint(1, 4))
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            fh.write(json.dumps({"id": f"ex{i:03d}", "messages": msgs, "source": "synthetic", "meta": {}}) + "\n")
    (folder / "manifest.json").write_text(json.dumps({"name": folder.name, "count": n}))
    return folder / "train.jsonl"


class Observer(TrainerCallback):
    """Snapshots the weights when training starts and probes the model when it ends."""

    def __init__(self, tokenizer_dir: Path):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.param_types = {n: type(p).__name__ for n, p in model.named_parameters()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = {n: p.detach().clone() for n, p in model.named_parameters()}
        model.eval()
        ids = self.tok.apply_chat_template(PROBE, tokenize=True, return_dict=True)["input_ids"]
        convs = [PROBE, [{"role": "user", "content": "Why?"}, {"role": "assistant", "content": "Because the sea."}]]
        rows = [{"input_ids": self.tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"],
                 "labels": [0]} for c in convs]
        with torch.no_grad():
            self.probe_logits = model(input_ids=torch.tensor([ids])).logits[0].float()
            batch = D.PaddingFreeCollator()([dict(r, labels=list(r["input_ids"])) for r in rows])
            batch.pop("labels")
            self.packed = model(**batch).logits[0].float()
            self.alone = [model(input_ids=torch.tensor([r["input_ids"]])).logits[0].float() for r in rows]
        model.train()


@pytest.fixture(scope="module", params=COMPUTE_DTYPES)
def trained(request, tmp_path_factory, tiny_model_dir):
    """One QLoRA run per compute dtype (fp32 and bf16, whatever the CPU): every test below runs on both."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_DTYPE, request.param)
        yield _train(tmp_path_factory, tiny_model_dir)


def _train(tmp_path_factory, tiny_model_dir):
    from finetune.train import run

    root = tmp_path_factory.mktemp("finetune")
    data = write_curated(root / "data" / "demo")
    cfg = load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(data), output_dir=str(root / "runs" / "demo"),
                      max_steps=24, save_steps=12, eval_steps=12, logging_steps=2)
    observer = Observer(tiny_model_dir)
    run_dir = run(cfg, callbacks=(observer,))
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return SimpleNamespace(run_dir=run_dir, data=data, cfg=cfg, obs=observer, metrics=metrics,
                           model_dir=tiny_model_dir)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_run_folder_holds_the_contracted_files(trained):
    rd = trained.run_dir
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja", "config.yaml", "metrics.jsonl", "README.md", "provenance.json",
                 "generation_config.json", "data_stats.json"):
        assert (rd / name).is_file(), name
    adapter = json.loads((rd / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(trained.model_dir)
    assert adapter["r"] == 8 and adapter["lora_alpha"] == 16
    targets = {t.rsplit(".", 1)[-1] for t in adapter["target_modules"]}  # peft may store full module names
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert load_config(rd / "config.yaml") == trained.cfg  # the resolved config, overrides included
    prov = json.loads((rd / "provenance.json").read_text())
    assert prov["data"]["sha256"] == _sha(trained.data)
    assert prov["manifest"]["sha256"] == _sha(trained.data.parent / "manifest.json")
    assert prov["eot_token"] == "<|im_end|>" and prov["global_step"] == 24
    card = (rd / "README.md").read_text()
    assert prov["data"]["sha256"] in card and prov["manifest"]["sha256"] in card
    assert "PeftModel.from_pretrained" in card
    # the exact chat template used in training is saved for inference
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(rd).chat_template == AutoTokenizer.from_pretrained(trained.model_dir).chat_template


def test_metrics_show_the_loss_going_down(trained):
    losses = [m["loss"] for m in trained.metrics if "loss" in m]
    assert len(losses) >= 10
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.3, losses
    evals = [m for m in trained.metrics if "eval_loss" in m]
    # the dev loss at step 0 (the base's), at every eval_steps, and not twice at the end
    assert [m["step"] for m in evals] == [0, 12, 24] and all(m["eval_loss"] == m["eval_loss"] for m in evals)
    data = next(m for m in trained.metrics if m.get("event") == "data")
    assert data["train/kept"] + data["dev/kept"] == 24 and data["train/truncated"] == 0
    assert any("train_tokens_per_second" in m for m in trained.metrics)


def test_base_is_real_4bit_lora_changes_and_base_does_not(trained):
    obs = trained.obs
    quantized = [n for n, t in obs.param_types.items() if t == "Params4bit"]
    assert len(quantized) == 14  # 7 linear layers x 2 blocks
    assert all(obs.before[n].dtype == torch.uint8 for n in quantized)
    assert obs.trainable and all("lora_" in n for n in obs.trainable)
    for name, before in obs.before.items():
        after = obs.after[name]
        if name in obs.trainable:
            if "lora_B" in name:  # initialised at zero
                assert before.abs().max() == 0 and after.abs().max() > 0, name
            assert not torch.equal(before, after), f"LoRA weight {name} did not change"
        else:
            assert torch.equal(before, after), f"base weight {name} changed"


def test_saved_adapter_loads_onto_the_base_and_gives_the_trained_logits(trained):
    from peft import PeftModel
    from transformers import AutoTokenizer

    from finetune.model import load_base

    tok = AutoTokenizer.from_pretrained(trained.run_dir)
    base = load_base(trained.cfg, run_compute_dtype(trained.run_dir))  # the dtype the run trained in
    model = PeftModel.from_pretrained(base, trained.run_dir).eval()
    ids = tok.apply_chat_template(PROBE, tokenize=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    torch.testing.assert_close(logits, trained.obs.probe_logits, atol=1e-4, rtol=1e-4)
    # and the adapter matters: the bare base gives other logits
    with model.disable_adapter(), torch.no_grad():
        bare = model(input_ids=torch.tensor([ids])).logits[0].float()
    assert (bare - logits).abs().max() > 0.05


def test_packed_examples_stay_apart_in_the_trained_qlora_model(trained):
    obs = trained.obs
    start = 0
    for alone in obs.alone:
        n = alone.shape[0]
        torch.testing.assert_close(obs.packed[start:start + n], alone, atol=1e-4, rtol=1e-4)
        start += n


def test_merge_writes_bf16_model_with_the_adapters_logits(trained, tmp_path):
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finetune.__main__ import main
    from finetune.merge import compare
    from finetune.model import load_base

    out = tmp_path / "merged"
    assert main(["merge", str(trained.run_dir), "--output", str(out)]) == 0
    check = json.loads((out / "merge_check.json").read_text())
    assert check["passed"] and check["merged_into"] == "dequantized NF4 base"
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
        assert not any("lora" in k for k in f.keys())
    assert dtypes == {torch.bfloat16}
    # independent check on a conversation the merge check did not see
    tok = AutoTokenizer.from_pretrained(out)
    conv = [{"role": "user", "content": "Tell me about clouds and light."},
            {"role": "assistant", "content": "Light goes through the cloud."}]
    ids = torch.tensor([tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]])
    merged = AutoModelForCausalLM.from_pretrained(out)
    reference = PeftModel.from_pretrained(load_base(trained.cfg, run_compute_dtype(trained.run_dir)),
                                          trained.run_dir).eval()
    with torch.no_grad():
        ref = reference(input_ids=ids).logits[0]
        got = merged(input_ids=ids).logits[0]
        with reference.disable_adapter():
            bare = reference(input_ids=ids).logits[0]
    assert compare(ref, got, rtol=0.02)["passed"]
    assert not compare(ref, bare, rtol=0.02)["passed"]  # the tolerance is tight enough to see the adapter


def test_nan_loss_stops_with_a_clear_error(trained, tmp_path, capsys):
    from finetune.__main__ import main

    out = tmp_path / "nan"
    rc = main(["--config", str(TINY_RECIPE), "--model", str(trained.model_dir), "--data", str(trained.data),
               "--output_dir", str(out), "--learning_rate", "1e30", "--max_steps", "30", "--save_steps", "100"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "training loss is nan at step" in err and "Lower learning_rate" in err, err
    assert not (out / "adapter_model.safetensors").exists()


def test_plain_lora_without_quantization_and_padded_batches(trained, tmp_path):
    from finetune.train import run

    obs = Observer(trained.model_dir)
    cfg = load_config(TINY_RECIPE, model=str(trained.model_dir), data=str(trained.data), output_dir=str(tmp_path / "lora"),
                      quantization="none", batching="padded", max_steps=4, dev_size=0.0, save_steps=100)
    run_dir = run(cfg, callbacks=(obs,))
    assert "Params4bit" not in obs.param_types.values()
    assert (run_dir / "adapter_model.safetensors").is_file()
    assert all(torch.equal(obs.before[n], obs.after[n]) for n in obs.before if n not in obs.trainable)


def test_packing_run_trains_on_packed_rows(trained, tmp_path):
    from finetune.train import run

    cfg = load_config(TINY_RECIPE, model=str(trained.model_dir), data=str(trained.data), output_dir=str(tmp_path / "pk"),
                      batching="packing", max_length=160, batch_size=2, max_steps=3, dev_size=0.0, save_steps=100,
                      logging_steps=1)
    run_dir = run(cfg)
    stats = json.loads((run_dir / "data_stats.json").read_text())["train"]
    assert stats["kept"] == 24 and stats["packed_rows"] < 24 / 2
    losses = [m for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
    assert len(losses) == 3 and all(m["loss"] == m["loss"] for m in losses)
    # a step sees two packed rows: more tokens than two single examples would give
    assert losses[0]["num_input_tokens_seen"] > 2 * stats["tokens"] / stats["kept"]


def test_a_checkpoint_cut_short_is_skipped_on_resume(trained, tmp_path):
    import shutil

    from finetune.train import latest_checkpoint

    ckpts = tmp_path / "checkpoints"
    shutil.copytree(trained.run_dir / "checkpoints", ckpts)
    newest = latest_checkpoint(ckpts)
    assert newest.name == "checkpoint-24"
    partial = ckpts / "checkpoint-36"  # as a SIGKILL during the save would leave it: no trainer_state.json
    shutil.copytree(newest, partial)
    (partial / "trainer_state.json").unlink()
    assert latest_checkpoint(ckpts) == newest
    (partial / "trainer_state.json").write_text('{"global_step": 3')  # cut mid-write
    assert latest_checkpoint(ckpts) == newest


def test_the_run_records_its_loss_and_attention_paths(trained):
    """On a CPU without liger-kernel: the chunked loss (no full logits) and the packed-row sdpa, which attended
    per example (the CPU path; a GPU records its varlen kernel, flash or nested)."""
    prov = json.loads((trained.run_dir / "provenance.json").read_text())
    assert prov["loss"] == "chunked" and prov["attention"] == "finetune_packed_sdpa"
    assert prov["packed_attention"] == (["loop"] if not torch.cuda.is_available() else ["flash"])
    bf16_gpu = torch.cuda.is_available() and prov["compute_dtype"] == "bfloat16"
    assert prov["autocast"] == ("bf16" if bf16_gpu else None)


def test_adapters_compute_in_the_compute_dtype_under_autocast_on_a_gpu(monkeypatch):
    """On a GPU with a bf16/fp16 compute dtype the Trainer's autocast is on, for a 4-bit base too (without it peft
    runs every LoRA adapter in float32); off on a CPU, in float32, and with autocast: false."""
    from finetune.config import FinetuneConfig
    from finetune.sft import mixed_precision

    nf4 = FinetuneConfig(model="m", data="x")
    assert mixed_precision(nf4, torch.bfloat16) is None or torch.cuda.is_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert mixed_precision(nf4, torch.bfloat16) == "bf16"
    assert mixed_precision(FinetuneConfig(model="m", data="x", quantization="none"), torch.float16) == "fp16"
    assert mixed_precision(nf4, torch.float32) is None
    assert mixed_precision(FinetuneConfig(model="m", data="x", autocast=False), torch.bfloat16) is None


def test_paged_8bit_optimizer_from_the_recipe_options(trained, tmp_path):
    """optim: paged_adamw_8bit trains through bitsandbytes' optimizer (unpaged on a CPU, said once in the log)."""
    from finetune.train import run

    class OptimizerSeen(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
            self.optimizer = optimizer

    seen = OptimizerSeen()
    cfg = load_config(TINY_RECIPE, model=str(trained.model_dir), data=str(trained.data), output_dir=str(tmp_path / "o"),
                      optim="paged_adamw_8bit", max_steps=3, dev_size=0.0, save_steps=100, logging_steps=1)
    run_dir = run(cfg, callbacks=(seen,))
    inner = getattr(seen.optimizer, "optimizer", seen.optimizer)
    assert type(inner).__module__.startswith("bitsandbytes")
    assert inner.args.optim_bits == 8 and inner.is_paged
    losses = [m["loss"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in m]
    assert len(losses) == 3 and all(x == x for x in losses)


def test_liger_layer_kernels_are_refused_where_they_cannot_run(trained, tmp_path):
    """liger_kernels: true on a machine without liger-kernel or a CUDA device: one clear line before anything
    loads, naming the setting and what to do."""
    from finetune.loss import liger_missing
    from finetune.train import check_inputs

    if liger_missing() is None:
        pytest.skip("liger-kernel runs here")
    cfg = load_config(TINY_RECIPE, model=str(trained.model_dir), data=str(trained.data),
                      output_dir=str(tmp_path / "o"), liger_kernels=True)
    with pytest.raises(ValueError, match=r"liger_kernels: true needs (the liger-kernel package|a CUDA device).*; "
                                         r"set liger_kernels: false"):
        check_inputs(cfg)


@pytest.fixture
def liger_undone(monkeypatch):
    """liger-kernel also swaps the rotary function and the norm and MLP classes of the model's module, for the
    whole process (models made later use them): put them back."""
    from transformers.models.llama import modeling_llama

    for name in ("apply_rotary_pos_emb", "LlamaRMSNorm", "LlamaMLP"):
        monkeypatch.setattr(modeling_llama, name, getattr(modeling_llama, name))


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is None, reason="needs liger-kernel")
def test_liger_layer_kernels_patch_the_layers_under_the_adapters(trained, liger_undone):
    """The norms, MLPs and rotary embeddings of the base run liger-kernel's kernels, the LoRA layers stay where
    they were (the patched MLP calls the adapted projections), and the loss is not patched (loss chooses it)."""
    from transformers.models.llama import modeling_llama

    from finetune.config import FinetuneConfig
    from finetune.model import load_model

    cfg = FinetuneConfig(model=str(trained.model_dir), data="x", quantization="none", liger_kernels=True)
    model = load_model(cfg, torch.float32)
    base = model.get_base_model()
    layer = base.model.layers[0]
    assert layer.mlp._get_name() == "LigerSwiGLUMLP"
    assert layer.input_layernorm.forward.__func__.__qualname__ == "LigerRMSNorm.forward"
    assert base.model.norm.forward.__func__.__qualname__ == "LigerRMSNorm.forward"
    assert type(layer.mlp.gate_proj).__module__.startswith("peft") and hasattr(layer.mlp.gate_proj, "lora_A")
    assert "liger" in modeling_llama.apply_rotary_pos_emb.__module__
    assert "forward" not in vars(base) and type(base).forward is modeling_llama.LlamaForCausalLM.forward  # the loss


def test_liger_layer_kernels_refuse_a_model_type_they_do_not_patch(trained):
    pytest.importorskip("liger_kernel")
    from finetune.model import apply_layer_kernels

    with pytest.raises(ValueError, match=r"liger_kernels: liger-kernel has no kernels for model type 'gpt2'"):
        apply_layer_kernels(SimpleNamespace(config=SimpleNamespace(model_type="gpt2")))


@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("liger_kernel") is None,
                    reason="liger-kernel's Triton kernels need a CUDA device")
def test_liger_layer_kernels_give_the_models_logits_and_gradients(trained, liger_undone):
    """On a GPU: the same logits (bf16 tolerance) and LoRA gradients with and without liger's layer kernels."""
    from finetune.config import FinetuneConfig
    from finetune.model import load_model

    torch.manual_seed(0)
    ids = torch.randint(3, 200, (1, 48), device="cuda")
    results = []
    for liger in (False, True):
        cfg = FinetuneConfig(model=str(trained.model_dir), data="x", quantization="none", liger_kernels=liger,
                             lora_dropout=0.0)
        torch.manual_seed(1)
        model = load_model(cfg, torch.bfloat16).cuda()
        logits = model(input_ids=ids).logits.float()
        logits.logsumexp(-1).sum().backward()
        # lora_B: A is random and B starts at zero, so only B has a gradient yet
        grad = next(p.grad for n, p in model.named_parameters() if "lora_B" in n and p.grad is not None)
        results.append((logits.detach(), grad.float()))
    torch.testing.assert_close(results[1][0], results[0][0], atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(results[1][1], results[0][1], atol=5e-2, rtol=5e-2)


class BlocksSeen(TrainerCallback):
    """Records which modules of the model are compiled as training starts, and how many decoder layers it has."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from transformers.modeling_layers import GradientCheckpointingLayer

        compiled = [type(m).__name__ for m in model.modules() if getattr(m, "_compiled_call_impl", None) is not None]
        self.compiled, self.compiled_count = sorted(set(compiled)), len(compiled)
        self.layers = sum(isinstance(m, GradientCheckpointingLayer) for m in model.modules())


def test_compiled_layers_train_like_the_eager_ones(tiny_model_dir, tmp_path, compute_dtype):
    """compile_layers: true compiles the attention and MLP blocks of every decoder layer (not the norms) in place,
    and trains to the losses and adapter of the uncompiled run, in float32 and bf16: the same keys in the saved
    adapter and the same tensors up to rounding. (Compiled kernels round differently; Adam turns a rounding
    difference in a near-zero gradient into a whole step of the learning rate, so single elements may differ by
    a few steps' worth while the tensor as a whole stays the same.)"""
    from safetensors.torch import load_file

    from finetune.train import run

    data = write_curated(tmp_path / "data")
    runs, seen = {}, {}
    for compiled in (False, True):
        seen[compiled] = BlocksSeen()
        cfg = load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(data),
                          output_dir=str(tmp_path / str(compiled)), max_steps=4, dev_size=0.0, save_steps=100,
                          logging_steps=1, compile_layers=compiled)
        runs[compiled] = run(cfg, callbacks=(seen[compiled],))
    assert seen[False].compiled == []
    assert seen[True].compiled == ["LlamaAttention", "LlamaMLP"]
    assert seen[True].compiled_count == 2 * seen[True].layers

    def losses(run_dir):
        return [m["loss"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in m]

    fp32 = compute_dtype == "float32"
    assert len(losses(runs[True])) == 4
    assert losses(runs[True]) == pytest.approx(losses(runs[False]), rel=1e-4 if fp32 else 1e-2)
    eager, compiled = (load_file(str(runs[c] / "adapter_model.safetensors")) for c in (False, True))
    assert eager.keys() == compiled.keys()
    for key in eager:  # measured: at most 1.3e-5 in float32, 0.044 in bf16 (untrained or wrongly trained: ~1)
        e, c = eager[key].float(), compiled[key].float()
        assert float((c - e).norm() / e.norm()) < (1e-3 if fp32 else 0.1), key


def test_compile_layers_without_a_compiler_is_refused_before_anything_loads(tiny_model_dir, tmp_path, monkeypatch):
    """On a CPU inductor compiles with a C++ compiler ($CXX, else g++): without one, one line says so at start."""
    from finetune.train import check_inputs

    if torch.cuda.is_available():
        pytest.skip("on a GPU the compiler is Triton")
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    cfg = load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(write_curated(tmp_path / "d")),
                      output_dir=str(tmp_path / "o"), compile_layers=True)
    with pytest.raises(ValueError, match=r"compile_layers: true needs a C\+\+ compiler \(no-such-c\+\+-compiler is "
                                         r"not on PATH; set CXX to one\); set compile_layers: false"):
        check_inputs(cfg)
