"""Benchmark of finetune against TRL: trained tokens per second, peak memory, padding waste, MFU; the loss path's
memory; the padding-free attention paths; 4-bit weight size.

    python bench/bench_finetune.py                        # CPU, the tiny shape: bench/results/finetune.json
    python bench/bench_finetune.py --device cuda          # GPU, the three real shapes: bench/results/finetune-gpu.json
    python bench/bench_finetune.py --device cuda --shape llama8b --steps 12

A random-init model of the chosen shape is built locally (no Hub): ``tiny`` (8 layers, hidden 256, vocab 1,024:
5.2 M parameters, finetune/tiny.py), or the real shapes ``qwen0.5b`` (Qwen2.5-0.5B: 24 layers, hidden 896, vocab
151,936, tied), ``llama1b`` (Llama-3.2-1B: 16 layers, hidden 2,048, vocab 128,256, tied) and ``llama8b``
(Llama-3.1-8B: 32 layers, hidden 4,096, vocab 128,256), with a BPE tokenizer trained on the pydoc text. The same
LIMA-shaped data (short prompts, log-normal answer lengths) and batch size go through these arms, each in a fresh
process of this script, all with the same NF4 quantization config and the same LoRA config:

- ``finetune``: ``python -m finetune``'s ``run()`` (padding-free batches, the chunked or fused loss, varlen attention);
- ``finetune_padded``: the same with ``batching: padded``;
- ``trl_default``: TRL ``SFTTrainer`` with default ``SFTConfig`` settings (only the output folder, batch size, steps,
  max_length and reporting set). On a CPU its default ``bf16=True`` refuses to start unless ``use_cpu=True`` (its
  error says so), which is added;
- ``trl_same_dtype`` (CPU, where our compute dtype is not bf16): TRL defaults with ``bf16=False`` and its LoRA
  weights float32 like ours (TRL casts a quantized model's adapters to bf16 whatever ``bf16`` says), so both arms
  compute in the same dtype; on a CPU ``trl_best`` keeps float32 adapters too;
- ``trl_best``: TRL at its best settings available on the machine: ``padding_free=True`` (its collator then passes
  the sequence boundaries, like ours), flash-attention 2 where the flash-attn package is installed, liger-kernel's
  layer kernels (``use_liger_kernel``) where liger-kernel is installed, the same dtype as ours;
- ``trl_liger`` (GPU): TRL's defaults (padded batches) with liger-kernel's kernels. Without flash-attn, TRL's
  padding-free rows attend through sdpa with a T x T block-diagonal mask, which made ``trl_best`` slower than TRL's
  own defaults at the 1B shape; so "TRL's best" in the targets is the fastest TRL arm that ran
  (``trl_best_available`` in the summary), never a slower configuration.
- ``trl_compile``: TRL's defaults with ``torch_compile=True`` (the Trainer compiles the whole model), the TRL
  counterpart of ``finetune:compile_layers=true``; not a default arm (compiling takes its time), but one of the TRL
  arms "TRL's best" is taken from when it runs.

An arm may carry settings after colons, for ablations: ``finetune:loss=chunked`` (any training config key of
``finetune``, a YAML value), ``finetune:varlen=nested`` (the CUDA varlen kernel tried first, finetune/attention.py),
``:profile`` on any arm (torch.profiler over the first two measured steps; the tables of the top operators by
device and by host time go to ``--profile-dir``; a profiled arm's figures carry the profiler's overhead), and
``:full_length`` on any arm: data whose every conversation is longer than ``max_length`` (truncated to it), so each
batch is ``batch_size`` x ``max_length`` tokens, the worst case for memory (its throughput is not compared). Arm names
and settings are checked before anything is built (every problem at once). The JSON is
rewritten after every arm (``"complete": false`` until the end); a SIGTERM (a time limit) kills the arm then running
and exits 143, leaving the finished arms in it.

Measured per arm: trained tokens = non-padding tokens of the measured steps (counted on the model's inputs by a
forward pre-hook, on the device, without a sync); padding waste = padded positions / all positions. On a CPU the
whole epoch is measured in CPU-seconds of the training loop (torch on one thread, so other jobs on a shared machine
disturb it little) and memory is the process's peak RSS; on a GPU the steps after ``--warmup`` are timed by the wall
clock (synchronized) and memory is ``torch.cuda.max_memory_allocated`` (the whole process, loading included, and
the training loop alone), and also ``max_memory_reserved`` (what the caching allocator held, the figure the 24 GiB
target is judged on). MFU = 6 x parameters x trained tokens/s / the card's dense bf16 peak (``--peak-tflops``
overrides the table below).

Also measured: the loss path alone (``loss_full``: transformers' float32 logits of every position, against
``loss_chunked`` and, where liger-kernel runs, ``loss_fused``) at the shape's hidden size and vocabulary, each in its
own process (peak RSS / CUDA memory above the inputs, and time); the attention of one packed LIMA-shaped row
(per-example sdpa, one sdpa call with the block-diagonal T x T mask transformers builds, and on CUDA the flash varlen
call and the nested-tensor varlen kernel), forward and backward; for the tiny shape the NF4 weight size against bf16.

Targets. CPU: finetune >= 1.3x TRL defaults with the same dtype, <= 1.0x its peak RSS, padding waste <= 5 %, NF4
<= 0.35x bf16. GPU, per shape: >= 2.0x TRL defaults and <= 1.0x its peak memory, >= 1.2x TRL's best (the fastest
TRL arm), padding-free >= 1.5x our padded path, MFU at the 8B shape >= 35 %, and the 8B shape's full-length
batches (8 x 2,048 tokens, ``finetune:full_length``) in <= 24 GiB.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TINY_RECIPE = REPO / "finetune" / "recipes" / "tiny-cpu.yaml"

# Real shapes (the public configs of these models; random weights)
SHAPES = {
    "tiny": dict(arch="llama", hidden=256, layers=8, vocab=1024),
    "qwen0.5b": dict(arch="qwen2", hidden=896, intermediate=4864, layers=24, heads=14, kv_heads=2, vocab=151936,
                     tie=True, rope_theta=1_000_000.0),
    "llama1b": dict(arch="llama", hidden=2048, intermediate=8192, layers=16, heads=32, kv_heads=8, vocab=128256,
                    tie=True, rope_theta=500_000.0, head_dim=64),
    "llama8b": dict(arch="llama", hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8, vocab=128256,
                    tie=False, rope_theta=500_000.0),
}
# Data per device and shape: examples, median answer words, max_length
DATA = {"cpu": dict(examples=32, median_words=60, max_length=1024),
        "cuda": dict(examples=256, median_words=250, max_length=2048)}
# Dense bf16 tensor-core peak, TFLOP/s (vendor data sheets, without sparsity), by a substring of the device name
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0}


# --------------------------------------------------------------------------- inputs


def make_data(path: Path, n: int, median_words: int = 60, seed: int = 0) -> Path:
    """LIMA-shaped conversations: short prompts, answers with a long tail (log-normal word counts)."""
    from pydoc_data.topics import topics

    words = " ".join(topics.values()).split()
    rng = random.Random(seed)

    def conversation():
        q_len = rng.randint(8, 60)
        a_len = int(min(5 * median_words, max(10, rng.lognormvariate(math.log(median_words), 0.8))))
        start = rng.randrange(len(words) - 6 * median_words - 100)
        return words[start:start + q_len], words[start + q_len:start + q_len + a_len]

    return _write_conversations(path, "b", (conversation() for _ in range(n)))


def _write_conversations(path: Path, prefix: str, conversations) -> Path:
    """(question words, answer words) pairs as messages JSONL, ids ``<prefix><i>``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for i, (q, a) in enumerate(conversations):
            msgs = [{"role": "user", "content": " ".join(q)}, {"role": "assistant", "content": " ".join(a)}]
            fh.write(json.dumps({"id": f"{prefix}{i}", "messages": msgs, "source": "bench", "meta": {}}) + "\n")
    return path


def make_full_length_data(path: Path, n: int, max_length: int, seed: int = 0) -> Path:
    """``n`` conversations whose answers have ``2 x max_length`` words: longer than ``max_length`` tokens with any
    subword tokenizer (every word is at least one token), so truncation makes every one exactly ``max_length``."""
    from pydoc_data.topics import topics

    words = " ".join(topics.values()).split()
    words *= 1 + (2 * max_length + 100) // len(words)  # the text repeats for answers longer than it (~65k words)
    rng = random.Random(seed)
    starts = (rng.randrange(len(words) - 2 * max_length - 20) for _ in range(n))
    return _write_conversations(path, "f", ((words[s:s + 20], words[s + 20:s + 20 + 2 * max_length]) for s in starts))


def build_model(shape: str, out: Path, device: str) -> Path:
    """A random-init model of ``shape`` with a local tokenizer, saved to ``out`` (bf16 for the real shapes,
    initialised on the GPU when there is one: an 8B model inits in seconds there, minutes on a CPU)."""
    spec = SHAPES[shape]
    if shape == "tiny":
        from finetune.tiny import build_tiny_model

        return build_tiny_model(out, hidden_size=spec["hidden"], num_layers=spec["layers"], vocab_size=spec["vocab"])
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from finetune.tiny import build_tokenizer

    tokenizer = build_tokenizer(vocab_size=8192)
    common = dict(vocab_size=spec["vocab"], hidden_size=spec["hidden"], intermediate_size=spec["intermediate"],
                  num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"],
                  num_key_value_heads=spec["kv_heads"], tie_word_embeddings=spec["tie"], rope_theta=spec["rope_theta"],
                  max_position_embeddings=32768, pad_token_id=tokenizer.pad_token_id,
                  eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    if spec["arch"] == "qwen2":
        config, cls = Qwen2Config(**common), Qwen2ForCausalLM
    else:
        config, cls = LlamaConfig(**common, head_dim=spec.get("head_dim", spec["hidden"] // spec["heads"])), \
            LlamaForCausalLM
    torch.manual_seed(0)
    with torch.device("cuda" if device == "cuda" else "cpu"):
        model = cls._from_config(config, dtype=torch.bfloat16)  # initialised in bf16: 16 GB for 8B, not 48
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    return out


def weight_sizes(model_dir: Path) -> dict:
    """Bytes of the model in NF4 (double quantization) vs bf16: whole model and the quantized linears."""
    import torch
    from transformers import AutoModelForCausalLM

    from finetune.config import FinetuneConfig
    from finetune.model import load_base

    cfg = FinetuneConfig(model=str(model_dir), data="x", compute_dtype="float32")
    q4 = load_base(cfg, torch.bfloat16)
    bf16 = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    linear_names = {n for n, m in q4.named_modules() if type(m).__name__ == "Linear4bit"}

    def linear_bytes(model, quantized):
        total = 0
        for name, module in model.named_modules():
            if name in linear_names:
                w = module.weight
                total += w.numel() * w.element_size()
                if quantized:  # absmax (8-bit with double quantization), its own absmax and the code tables
                    qs = w.quant_state
                    total += qs.absmax.numel() * qs.absmax.element_size()
                    if qs.state2 is not None:
                        total += qs.state2.absmax.numel() * qs.state2.absmax.element_size()
                        total += qs.state2.code.numel() * qs.state2.code.element_size()
                    total += qs.code.numel() * qs.code.element_size()
        return total

    out = {
        "nf4_model_bytes": q4.get_memory_footprint(),
        "bf16_model_bytes": bf16.get_memory_footprint(),
        "nf4_linear_bytes": linear_bytes(q4, True),
        "bf16_linear_bytes": linear_bytes(bf16, False),
        "quantized_linear_layers": len(linear_names),
    }
    out["model_ratio"] = round(out["nf4_model_bytes"] / out["bf16_model_bytes"], 3)
    out["linear_ratio"] = round(out["nf4_linear_bytes"] / out["bf16_linear_bytes"], 3)
    return out


def count_params(model_dir: Path) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- one arm (own process)


class _PeakRss:
    """Peak RSS of this process between start() and stop(), sampled every 5 ms."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process()
        self.peak = self.start_rss = 0
        self._stop = threading.Event()

    def start(self):
        self.start_rss = self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def parse_arm(arm: str) -> tuple[str, dict]:
    """``finetune:loss=chunked:profile`` -> ("finetune", {"loss": "chunked", "profile": True})."""
    import yaml

    base, *parts = arm.split(":")
    settings: dict = {}
    for part in parts:
        key, eq, value = part.partition("=")
        settings[key] = yaml.safe_load(value) if eq else True
    return base, settings


ARMS = ("finetune", "finetune_padded", "trl_default", "trl_same_dtype", "trl_best", "trl_liger", "trl_compile")
# TRL arms tuned for speed: "TRL's best" is the fastest TRL arm, these or its defaults
TRL_TUNED = ("trl_best", "trl_liger", "trl_compile")
BENCH_SETTINGS = ("profile", "full_length", "varlen")  # an arm's settings the benchmark itself takes


def arm_problems(arms: list[str]) -> list[str]:
    """Every problem with these arm names, found before anything is built: an unknown arm, a setting that is no
    finetune config key (with the closest one) or has a bad value, config settings on a TRL arm, a bad varlen."""
    from contract.config import ConfigError
    from finetune.attention import VARLEN_CHOICES, VARLEN_CHOICES_TEXT
    from finetune.config import FinetuneConfig, check, from_dict

    problems = []
    for arm in arms:
        base, settings = parse_arm(arm)
        if base not in ARMS:
            problems.append(f"arm {arm}: no arm {base!r} (choose from {', '.join(ARMS)})")
            continue
        if settings.get("varlen", VARLEN_CHOICES[0]) not in VARLEN_CHOICES:
            problems.append(f"arm {arm}: varlen={settings['varlen']} (choose {VARLEN_CHOICES_TEXT})")
        config = {k: v for k, v in settings.items() if k not in BENCH_SETTINGS}
        if config and not base.startswith("finetune"):
            problems.append(f"arm {arm}: only finetune arms take config settings ({', '.join(config)})")
        elif config:
            try:
                check(from_dict(config, where=f"arm {arm}",
                                base=FinetuneConfig(model="bench", data="bench", output_dir="bench", max_steps=1)))
            except ConfigError as err:
                problems += [f"arm {arm}: {line.strip()[2:].removesuffix(f' [arm {arm}]')}"
                             for line in str(err).splitlines()[1:]]
    return problems


class _Profile:
    """torch.profiler over ``steps`` optimizer steps; ``write`` saves the top operators by device and host time."""

    def __init__(self, cuda: bool, steps: int = 2):
        self.cuda, self.steps, self.prof, self.started_at = cuda, steps, None, None

    def step_begin(self, step: int, first: int):
        import torch

        if self.prof is None and step == first:
            acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if self.cuda else [])
            self.prof = torch.profiler.profile(activities=acts)
            self.prof.__enter__()
            self.started_at = step
        elif self.prof is not None and self.started_at is not None and step == self.started_at + self.steps:
            self.stop()

    def stop(self):
        if self.prof is not None and self.started_at is not None:
            if self.cuda:
                import torch

                torch.cuda.synchronize()
            self.prof.__exit__(None, None, None)
            self.started_at = None

    def write(self, path: Path, title: str):
        if self.prof is None:
            return
        self.stop()
        events = self.prof.key_averages()
        parts = [f"{title}: {self.steps} optimizer steps under torch.profiler\n"]
        if self.cuda:
            parts += ["== top operators by self device time ==",
                      events.table(sort_by="self_device_time_total", row_limit=30, max_name_column_width=70)]
        parts += ["== top operators by self host time ==",
                  events.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=70)]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(parts), encoding="utf-8")


def _measuring_callback(result: dict, warmup: int, cuda: bool, profile: "_Profile | None" = None):
    import torch
    from transformers import TrainerCallback

    class Measure(TrainerCallback):
        """Counts the real and padded tokens the model is fed in training (a forward pre-hook, device tensors, no
        sync) and times the steps after ``warmup`` (CUDA: synchronized wall clock; CPU: process CPU time too)."""

        def __init__(self):
            self.real = self.positions = self.largest = 0
            self.mark = None

        def _count(self, module, args, kwargs):
            if module.training:
                ids = kwargs.get("input_ids", args[0] if args else None)
                mask = kwargs.get("attention_mask")
                self.positions = self.positions + ids.numel()
                self.largest = max(self.largest, ids.numel())  # positions of the largest micro-batch (a host int)
                self.real = self.real + (mask.sum() if mask is not None else ids.numel())

        def _snapshot(self):
            if cuda:
                torch.cuda.synchronize()
            return {"t": time.perf_counter(), "c": time.process_time(), "real": self.real,
                    "positions": self.positions}

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.hook = model.register_forward_pre_hook(self._count, with_kwargs=True)
            # the dtype the trained (adapter) weights have as training starts: TRL casts a quantized model's to bf16
            result["trainable_dtypes"] = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()
                                                 if p.requires_grad})
            if cuda:
                result["load_peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
                result["load_reserved_cuda_bytes"] = torch.cuda.max_memory_reserved()
                torch.cuda.reset_peak_memory_stats()
            result["rss"] = _PeakRss()
            result["rss"].start()
            if warmup == 0:
                self.mark = self._snapshot()

        def on_step_begin(self, args, state, control, **kwargs):
            if warmup and state.global_step == warmup and self.mark is None:
                self.mark = self._snapshot()
            if profile is not None:
                profile.step_begin(state.global_step, warmup)

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps and "end" not in result:
                result["end"] = self._snapshot()  # before the final checkpoint save
                if profile is not None:
                    profile.stop()

        def on_train_end(self, args, state, control, **kwargs):
            end = result.pop("end", None) or self._snapshot()
            self.hook.remove()
            result["rss"].stop()
            if cuda:
                result["train_peak_cuda_bytes"] = torch.cuda.max_memory_allocated()
                result["train_reserved_cuda_bytes"] = torch.cuda.max_memory_reserved()
            start = self.mark or end
            real = end["real"] - start["real"]
            positions = end["positions"] - start["positions"]
            result.update(
                measured_steps=state.global_step - (warmup if self.mark else state.global_step),
                train_seconds=end["t"] - start["t"], cpu_seconds=end["c"] - start["c"],
                trained_tokens=int(real), positions=int(positions), global_step=state.global_step,
                largest_batch_positions=self.largest)

    return Measure()


def our_config(model_dir: str, data: str, out: str, device: str, batch_size: int, steps: int, max_length: int):
    from finetune.config import FinetuneConfig, check, load

    common = dict(model=model_dir, data=data, output_dir=out, batch_size=batch_size, dev_size=0.0,
                  save_steps=100_000, logging_steps=5, max_length=max_length, tensorboard=False)
    if device == "cpu":  # the tiny-cpu recipe (LoRA r 8), one epoch
        return load(TINY_RECIPE, **common, epochs=1.0, max_steps=-1)
    # the GPU recipes' adapter (QLoRA r 64, all linear layers), a fixed number of steps
    return check(FinetuneConfig(**common, max_steps=steps, lora_r=64, lora_alpha=16, lora_dropout=0.05))


def run_arm(arm: str, model_dir: str, data: str, out: str, device: str, batch_size: int, steps: int, warmup: int,
            max_length: int, threads: int, profile_dir: str | None = None) -> dict:
    import bitsandbytes  # noqa: F401  every arm imports the same stack before measuring
    import peft  # noqa: F401
    import torch
    import transformers  # noqa: F401
    import trl  # noqa: F401

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    cuda = device == "cuda"
    result: dict = {"arm": arm}
    base, settings = parse_arm(arm)
    profile = _Profile(cuda) if settings.pop("profile", False) else None
    if settings.pop("full_length", False):  # every batch batch_size x max_length tokens (the data beside the run)
        n = batch_size * (steps if cuda else 2)
        data = str(make_full_length_data(Path(out + "-data") / "train.jsonl", n, max_length))
        result["full_length"] = True
    if "varlen" in settings:
        os.environ["FINETUNE_VARLEN"] = str(settings.pop("varlen"))
    measure = _measuring_callback(result, warmup if cuda else 0, cuda, profile)
    cfg = our_config(model_dir, data, out, device, batch_size, steps, max_length)
    if settings and not base.startswith("finetune"):
        raise SystemExit(f"arm {arm}: only finetune arms take config settings")
    if base.startswith("finetune"):
        from finetune.config import check
        from finetune.train import run

        if base == "finetune_padded":
            cfg.batching = "padded"
        for key, value in settings.items():
            if not hasattr(cfg, key):
                raise SystemExit(f"arm {arm}: {key} is not a finetune config key")
            setattr(cfg, key, value)
        cfg = check(cfg)
        run(cfg, callbacks=(measure,))
        prov = json.loads((Path(out) / "provenance.json").read_text())
        result.update(loss_path=prov.get("loss"), attention=prov.get("attention"),
                      packed_attention=prov.get("packed_attention"), autocast=prov.get("autocast"))
    else:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        from finetune.data import read_messages
        from finetune.model import lora_config, quantization_config, resolve_dtype

        dtype = resolve_dtype(cfg.compute_dtype)
        rows = [{"messages": ex["messages"]} for ex in read_messages(data)]
        kwargs: dict = dict(output_dir=out, per_device_train_batch_size=batch_size, report_to="none",
                            save_strategy="no", max_length=max_length,
                            model_init_kwargs={"quantization_config": quantization_config(cfg, dtype)})
        kwargs.update(num_train_epochs=1.0) if device == "cpu" else kwargs.update(max_steps=steps)
        if device == "cpu":
            # TRL's default bf16=True refuses to start on a CPU unless use_cpu=True (its error says so);
            # trl_same_dtype and trl_best compute in our dtype instead
            kwargs.update(use_cpu=True) if base == "trl_default" else kwargs.update(bf16=dtype == torch.bfloat16)
        if base in TRL_TUNED:
            if base == "trl_best":
                kwargs.update(padding_free=True, max_length=None)  # TRL refuses max_length without packing here
                if importlib.util.find_spec("flash_attn") and cuda:
                    kwargs["model_init_kwargs"]["attn_implementation"] = "flash_attention_2"
            if base == "trl_compile":
                kwargs["torch_compile"] = True  # the Trainer compiles the whole model (TrainingArguments' switch)
            elif importlib.util.find_spec("liger_kernel") and cuda:
                kwargs["use_liger_kernel"] = True
            result["settings"] = {k: v for k, v in kwargs.items()
                                  if k in ("padding_free", "use_liger_kernel", "torch_compile")}
            result["settings"]["attn_implementation"] = kwargs["model_init_kwargs"].get("attn_implementation", "sdpa")
        trainer = SFTTrainer(model=model_dir, args=SFTConfig(**kwargs), train_dataset=Dataset.from_list(rows),
                             peft_config=lora_config(cfg), callbacks=[measure])
        if device == "cpu" and base != "trl_default":
            # TRL casts a quantized model's LoRA weights to bf16 (QLoRA's recipe), whatever bf16 says; ours stay
            # float32 (peft's default). "The same dtype as ours" means these too: on a CPU without native bf16 its
            # bf16 adapters run emulated, which would slow TRL for a reason that is not the trainer's
            for param in trainer.model.parameters():
                if param.requires_grad:
                    param.data = param.data.float()
        trainer.train()
    if profile is not None:
        profile.write(Path(profile_dir or out) / f"profile-{arm.replace(':', '-').replace('=', '-')}.txt", arm)
        result["profiled"] = True
    rss = result.pop("rss")
    seconds, cpu_seconds = result["train_seconds"], result["cpu_seconds"]
    result.update(
        train_seconds=round(seconds, 3),
        cpu_seconds=round(cpu_seconds, 3),
        tokens_per_second=round(result["trained_tokens"] / seconds, 1),
        tokens_per_cpu_second=round(result["trained_tokens"] / cpu_seconds, 1),
        padding_waste=round(1 - result["trained_tokens"] / max(1, result["positions"]), 4),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        train_rss_start_mb=round(rss.start_rss / 2**20, 1),
        train_peak_rss_above_start_mb=round((rss.peak - rss.start_rss) / 2**20, 1),
        torch_threads=torch.get_num_threads(),
    )
    if cuda:
        result["train_peak_cuda_gib"] = round(result.pop("train_peak_cuda_bytes") / 2**30, 2)
        result["peak_cuda_gib"] = round(max(result.pop("load_peak_cuda_bytes") / 2**30, result["train_peak_cuda_gib"]),
                                        2)
        # what the caching allocator held from the device at its peak (allocated plus its cached blocks): the
        # figure a card's size must hold, besides the CUDA context
        result["peak_cuda_reserved_gib"] = round(max(result.pop("load_reserved_cuda_bytes"),
                                                     result.pop("train_reserved_cuda_bytes")) / 2**30, 2)
    return result


def run_loss_arm(arm: str, shape: str, device: str, tokens: int, threads: int) -> dict:
    """The loss and its backward alone at the shape's hidden size and vocabulary: peak memory above the inputs."""
    import torch
    import torch.nn.functional as F

    from contract.models import compute_dtype
    from finetune import loss as L

    torch.set_num_threads(threads)
    spec = SHAPES[shape]
    dtype = compute_dtype("auto", device)
    torch.manual_seed(0)
    h = torch.randn(tokens, spec["hidden"], device=device, dtype=dtype, requires_grad=True)
    head = torch.nn.Linear(spec["hidden"], spec["vocab"], bias=False, device=device, dtype=dtype)
    head.weight.requires_grad_(False)  # frozen, as in QLoRA
    targets = torch.randint(0, spec["vocab"], (tokens,), device=device)
    rss = _PeakRss()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss.start()
    t0 = time.perf_counter()
    if arm == "loss_full":  # what transformers' ForCausalLMLoss does: all logits, upcast to float32
        loss = F.cross_entropy(head(h).float(), targets, reduction="sum")
    elif arm == "loss_chunked":
        loss = L.chunked_cross_entropy(h, head, targets, L.chunk_tokens(spec["vocab"]))
    else:
        loss = L.fused_cross_entropy(h, head, targets)
    loss.backward()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    rss.stop()
    out = {"arm": arm, "tokens": tokens, "hidden": spec["hidden"], "vocab": spec["vocab"], "dtype": str(dtype),
           "seconds": round(seconds, 3), "loss": round(loss.item(), 3)}
    if device == "cuda":
        out["peak_above_inputs_mib"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
        del h, head, targets, loss
        torch.cuda.empty_cache()
    else:
        out["peak_above_inputs_mib"] = round((rss.peak - rss.start_rss) / 2**20, 1)
    return out


# --------------------------------------------------------------------------- attention paths (in process)


def attention_paths(shape: str, device: str, lengths: list[int], repeats: int = 5) -> dict:
    """Forward + backward of the attention of one packed row with ``lengths`` examples, per path (best of
    ``repeats``), and the largest difference from per-example sdpa."""
    import torch
    import torch.nn.functional as F

    from finetune import attention as A

    spec = SHAPES[shape]
    heads = spec.get("heads", 4)
    kv_heads = spec.get("kv_heads", 2)
    head_dim = spec.get("head_dim", spec["hidden"] // heads)
    from contract.models import compute_dtype

    dtype = compute_dtype("auto", device)
    total = sum(lengths)
    torch.manual_seed(0)
    q0 = torch.randn(1, heads, total, head_dim, device=device, dtype=dtype)
    k0 = torch.randn(1, kv_heads, total, head_dim, device=device, dtype=dtype)
    v0 = torch.randn(1, kv_heads, total, head_dim, device=device, dtype=dtype)
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32)

    class Module:  # what transformers' sdpa reads off the attention module
        is_causal = True
        num_key_value_groups = heads // kv_heads
        training = True

    def loop(q, k, v):
        bounds = cu.tolist()
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return torch.cat([sdpa_attention_forward(Module, q[:, :, s:e], k[:, :, s:e], v[:, :, s:e], None,
                                                 is_causal=True)[0] for s, e in zip(bounds[:-1], bounds[1:])], 1)

    doc = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths)).to(device)
    pos = torch.arange(total, device=device)
    mask = (doc[:, None] == doc[None, :]) & (pos[:, None] >= pos[None, :])

    def masked(q, k, v):  # transformers' sdpa with packed position_ids: one call, a T x T block-diagonal mask
        from transformers.integrations.sdpa_attention import repeat_kv

        g = heads // kv_heads
        return F.scaled_dot_product_attention(q, repeat_kv(k, g), repeat_kv(v, g), attn_mask=mask).transpose(1, 2)

    paths = {"per_example_sdpa": loop, "masked_sdpa": masked}
    if device == "cuda":
        paths["flash_varlen"] = lambda q, k, v: A.flash_varlen(q, k, v, cu.to(device), max(lengths), 0.0, None)
        paths["nested_varlen_sdpa"] = lambda q, k, v: A.nested_sdpa(q, k, v, cu.to(device), max(lengths), 0.0, None)
    out = {"lengths": lengths, "tokens": total, "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
           "dtype": str(dtype)}
    ref = None
    for name, fn in paths.items():
        q, k, v = (x.clone().requires_grad_() for x in (q0, k0, v0))
        try:
            res = fn(q, k, v)
        except RuntimeError as err:
            out[name] = {"error": str(err).splitlines()[0]}
            continue
        ref = res.detach().float() if ref is None else ref
        times = []
        for _ in range(repeats):
            q, k, v = (x.clone().requires_grad_() for x in (q0, k0, v0))
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn(q, k, v).float().sum().backward()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        out[name] = {"ms": round(1000 * min(times), 2), "max_diff": float((res.detach().float() - ref).abs().max())}
    base = out["per_example_sdpa"].get("ms")
    for name in paths:
        if "ms" in out[name] and base:
            out[name]["vs_per_example"] = round(out[name]["ms"] / base, 2)
    return out


def batch_lengths(model_dir: Path, data: Path, batch_size: int, max_length: int) -> list[int]:
    """Token lengths of the first batch of the bench data, as finetune tokenizes it."""
    from transformers import AutoTokenizer

    from finetune import data as D

    tok = AutoTokenizer.from_pretrained(model_dir)
    eot = D.setup_template(tok, None, None)
    rows, _ = D.build_rows(tok, D.read_messages(str(data))[:batch_size], eot, max_length, "truncate")
    return [len(r["input_ids"]) for r in rows]


# --------------------------------------------------------------------------- driver


def _subprocess(args: list[str], what: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, *args], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1"))
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH-RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(proc.stderr[-4000:], file=sys.stderr)
        raise SystemExit(f"{what} failed (rc {proc.returncode})")
    res = json.loads(line.split(" ", 1)[1])
    res["load_average"] = round(os.getloadavg()[0], 2)
    res["process_seconds"] = round(time.perf_counter() - t0, 1)  # the whole process: imports, loading, training
    return res


def arms_for(device: str, names: str | None, shape: str = "tiny") -> list[str]:
    if names:
        return names.split(",")
    from contract.models import compute_dtype

    import torch

    arms = ["finetune", "finetune_padded", "trl_default"]
    if device == "cpu" and compute_dtype("auto", "cpu") != torch.bfloat16:
        arms.append("trl_same_dtype")  # TRL's default autocasts to bf16; this CPU computes ours in fp32
    if device == "cuda":
        arms.append("trl_liger")  # TRL's padded defaults with liger's kernels: faster than trl_best without flash-attn
    if shape == "llama8b":  # the 8B target is memory on full-length batches too
        arms.insert(1, "finetune:full_length")
    return arms + ["trl_best"]


def summarize(arms: dict, device: str, params: int, peak_tflops: float | None, shape: str) -> tuple[dict, dict]:
    rate = "tokens_per_cpu_second" if device == "cpu" else "tokens_per_second"
    mem = "peak_rss_mb" if device == "cpu" else "peak_cuda_gib"
    ours = arms.get("finetune")
    summary: dict = {"throughput": rate, "memory": mem}
    if peak_tflops:
        for a in arms.values():
            a["mfu"] = round(6 * params * a["tokens_per_second"] / (peak_tflops * 1e12), 4)
    if ours:
        for other, a in arms.items():
            if other != "finetune" and not a.get("full_length"):  # other data: nothing to compare
                summary[f"throughput_vs_{other}"] = round(ours[rate] / a[rate], 2)
                summary[f"memory_vs_{other}"] = round(ours[mem] / a[mem], 3)
    same = "trl_same_dtype" if "trl_same_dtype" in arms else "trl_default"
    # TRL's best available configuration: the fastest TRL arm that ran, once a tuned one has run
    trl = {name: a for name, a in arms.items() if name in ("trl_default", *TRL_TUNED)}
    if ours and device == "cuda" and any(name in trl for name in TRL_TUNED):
        best = max(trl, key=lambda name: trl[name][rate])
        summary["trl_best_available"] = best
        summary["throughput_vs_trl_best_available"] = round(ours[rate] / trl[best][rate], 2)

    def at_least(key: str, bound: float):  # None: an arm the target needs was not run (or failed)
        return None if key not in summary else summary[key] >= bound

    def at_most(key: str, bound: float):
        return None if key not in summary else summary[key] <= bound

    if device == "cpu":
        targets = {
            f"throughput_ge_1.3x_{same}": at_least(f"throughput_vs_{same}", 1.3),
            f"peak_rss_le_{same}": at_most(f"memory_vs_{same}", 1.0),
            "padding_waste_le_5pct": None if not ours else ours["padding_waste"] <= 0.05,
        }
    else:
        targets = {
            "throughput_ge_2x_trl_default": at_least("throughput_vs_trl_default", 2.0),
            "peak_memory_le_trl_default": at_most("memory_vs_trl_default", 1.0),
            "throughput_ge_1.2x_trl_best": at_least("throughput_vs_trl_best_available", 1.2),
            "padding_free_ge_1.5x_padded": at_least("throughput_vs_finetune_padded", 1.5),
        }
        if shape == "llama8b" and ours and "mfu" in ours:
            targets["mfu_ge_35pct"] = ours["mfu"] >= 0.35
        if shape == "llama8b":  # batch 8 x 2,048 tokens in 24 GiB: only from batches that size
            full = arms.get("finetune:full_length")
            targets["fits_24gib_at_8x2048"] = (
                None if not full or full.get("largest_batch_positions", 0) < 8 * 2048
                else full.get("peak_cuda_reserved_gib", full["peak_cuda_gib"]) <= 24)
    return summary, targets


def _with_summary(result: dict, runs: dict[str, list], failed: dict[str, str], device: str, params: int, args,
                  shape: str) -> dict:
    """``result`` with the best run of each arm, the ratios and the targets (and the arms that failed)."""
    rate = "tokens_per_cpu_second" if device == "cpu" else "tokens_per_second"
    arms = {}
    for arm, rs in runs.items():
        if not rs:
            continue
        best = dict(max(rs, key=lambda a: a[rate]))
        best["tokens_per_second"] = max(a["tokens_per_second"] for a in rs)
        for key in ("tokens_per_second", "tokens_per_cpu_second", "peak_rss_mb", "peak_cuda_gib"):
            if key in best:
                best[f"{key}_all_runs"] = [a[key] for a in rs]
        for key in ("peak_rss_mb", "peak_cuda_gib"):  # memory: the worst run
            if key in best:
                best[key] = max(best[f"{key}_all_runs"])
        arms[arm] = best
    peak = args.peak_tflops or (gpu_peak_tflops() if device == "cuda" else None)
    summary, targets = summarize(arms, device, params, peak, shape)
    result.update(arms=arms, summary=summary, targets_met=targets, peak_bf16_tflops=peak)
    if failed:
        result["failed_arms"] = dict(failed)
    return result


def bench_shape(shape: str, args, work: Path, progress=lambda result: None) -> dict:
    """Every arm of ``shape``, then the loss and attention paths. ``progress(result)`` after each arm: the figures
    so far, so that a run stopped by a time limit still leaves the arms it finished."""
    device = args.device
    data_spec = DATA[device]
    examples = args.examples or data_spec["examples"]
    max_length = args.max_length or data_spec["max_length"]
    t0 = time.perf_counter()
    model_dir = build_model(shape, work / shape / "model", device)
    data = make_data(work / shape / "data" / "bench" / "train.jsonl", examples,
                     args.median_words or data_spec["median_words"])
    params = count_params(model_dir)
    print(f"[{shape}] {params:,} parameters, built in {time.perf_counter() - t0:.0f} s", flush=True)
    result: dict = {"shape": {"name": shape, "params": params, **SHAPES[shape]},
                    "data": {"examples": examples, "median_answer_words": args.median_words or data_spec["median_words"],
                             "max_length": max_length, "batch_size": args.batch_size}}
    if shape == "tiny" and device == "cpu" and not args.skip_weights:
        sizes = weight_sizes(model_dir)
        result["weights"] = sizes
        print(f"[{shape}] NF4 {sizes['nf4_model_bytes'] / 2**20:.2f} MiB vs bf16 {sizes['bf16_model_bytes'] / 2**20:.2f}"
              f" MiB ({sizes['model_ratio']}x; linear layers {sizes['linear_ratio']}x)", flush=True)

    names = arms_for(device, args.arms, shape)
    runs: dict[str, list] = {a: [] for a in names}
    # The machine may be shared: every arm runs `rounds` times in a rotated order, and the best run counts
    failed: dict[str, str] = {}
    out = Path(args.out or REPO / "bench" / "results" / "finetune")
    profile_dir = Path(args.profile_dir or out.with_suffix("")) / shape
    for r in range(args.rounds):
        for arm in names[r % len(names):] + names[:r % len(names)]:
            if arm in failed:
                continue
            try:
                a = _subprocess(["--arm", arm, "--model", str(model_dir), "--data", str(data), "--device", device,
                                 "--run-dir", str(work / shape / "runs" / f"{arm}-{r}"), "--batch-size",
                                 str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
                                 "--max-length", str(max_length), "--threads", str(args.threads),
                                 "--profile-dir", str(profile_dir)], f"arm {arm}")
            except SystemExit as err:  # one arm failing (its stderr is printed) does not lose the others
                failed[arm] = str(err)
                print(f"[{shape}] round {r} {arm}: {err}", flush=True)
                continue
            runs[arm].append(a)
            progress(_with_summary(dict(result), runs, failed, device, params, args, shape))
            memory = (f"peak {a['peak_cuda_gib']} GiB (training {a['train_peak_cuda_gib']})" if device == "cuda"
                      else f"peak RSS {a['peak_rss_mb']:7.1f} MB")
            print(f"[{shape}] round {r} {arm:16s} {a['tokens_per_second']:9.1f} tok/s {a['tokens_per_cpu_second']:8.1f} "
                  f"tok/cpu-s  waste {100 * a['padding_waste']:4.1f} %  {memory}  steps {a['measured_steps']}  "
                  f"load {a['load_average']}  process {a['process_seconds']} s", flush=True)
    result = _with_summary(result, runs, failed, device, params, args, shape)

    if not args.skip_loss:
        tokens = args.loss_tokens or (1024 if device == "cpu" else 8192)
        loss_shape = "qwen0.5b" if shape == "tiny" else shape  # the tiny vocabulary says nothing about the loss
        loss_arms = ["loss_full", "loss_chunked"] + (["loss_fused"] if device == "cuda" and
                                                     importlib.util.find_spec("liger_kernel") else [])
        if device == "cuda":  # CUDA memory is measured per allocation: one process, one arm after the other
            loss = {a: run_loss_arm(a, loss_shape, device, tokens, args.threads) for a in loss_arms}
        else:  # RSS only grows: each arm in its own process
            loss = {a: _subprocess(["--loss-arm", a, "--shape", loss_shape, "--device", device, "--loss-tokens",
                                    str(tokens), "--threads", str(args.threads)], a) for a in loss_arms}
        full = loss["loss_full"]["peak_above_inputs_mib"]
        for a in loss.values():
            a["memory_vs_full"] = round(a["peak_above_inputs_mib"] / full, 3) if full else None
            a["time_vs_full"] = round(a["seconds"] / loss["loss_full"]["seconds"], 2)
            print(f"[{shape}] {a['arm']:13s} ({loss_shape}: {tokens} tokens x vocab {a['vocab']}) "
                  f"{a['peak_above_inputs_mib']:9.1f} MiB ({a['memory_vs_full']}x full)  {a['seconds']:.2f} s", flush=True)
        result["loss_path"] = {"shape": loss_shape, "arms": loss}
    if not args.skip_attention:
        lengths = batch_lengths(model_dir, data, args.batch_size, max_length)
        att = attention_paths(shape, device, lengths)
        result["attention"] = att
        print(f"[{shape}] attention of one packed row ({att['tokens']} tokens, {len(lengths)} examples): "
              + ", ".join(f"{k} {v['ms']} ms" if "ms" in v else f"{k}: {v['error']}"
                          for k, v in att.items() if isinstance(v, dict)), flush=True)
    return result


def gpu_peak_tflops() -> float | None:
    import torch

    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--shape", help="comma-separated: tiny, qwen0.5b, llama1b, llama8b (default: tiny on cpu, "
                                        "the three real shapes on cuda)")
    parser.add_argument("--examples", type=int, help="conversations (default: 32 on cpu, 256 on cuda)")
    parser.add_argument("--median-words", type=int, help="median answer length in words (default: 60 cpu, 250 cuda)")
    parser.add_argument("--max-length", type=int, help="max_length (default: 1024 cpu, 2048 cuda)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8, help="cuda: optimizer steps per arm (cpu: one epoch)")
    parser.add_argument("--warmup", type=int, default=2, help="cuda: steps not timed")
    parser.add_argument("--arms", help="comma-separated arms (default: all that apply)")
    parser.add_argument("--rounds", type=int, help="runs per arm, the best counts (default: 2 cpu, 1 cuda)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per arm (cpu; 1: stable figures on a "
                                                               "shared machine)")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak, for MFU")
    parser.add_argument("--loss-tokens", type=int, help="positions in the loss-path measurement (1024 cpu, 8192 cuda)")
    parser.add_argument("--skip-loss", action="store_true")
    parser.add_argument("--skip-attention", action="store_true")
    parser.add_argument("--skip-weights", action="store_true")
    parser.add_argument("--out", help="default: bench/results/finetune.json (cpu), finetune-gpu.json (cuda)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 examples, one round")
    parser.add_argument("--profile-dir", help="where arms marked :profile write their profiler tables (default: a "
                                              "folder named after --out, one sub-folder per shape)")
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm in this process
    parser.add_argument("--loss-arm", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.examples, args.rounds = args.examples or 16, 1
    args.rounds = args.rounds or (2 if args.device == "cpu" else 1)

    if args.arm:
        res = run_arm(args.arm, args.model, args.data, args.run_dir, args.device, args.batch_size, args.steps,
                      args.warmup, args.max_length, args.threads, args.profile_dir)
        print("BENCH-RESULT " + json.dumps(res), flush=True)
        return 0
    if args.loss_arm:
        res = run_loss_arm(args.loss_arm, args.shape, args.device, args.loss_tokens, args.threads)
        print("BENCH-RESULT " + json.dumps(res), flush=True)
        return 0

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible to torch (a CUDA build of torch is needed)")
    shapes = (args.shape or ("tiny" if args.device == "cpu" else "qwen0.5b,llama1b,llama8b")).split(",")
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise SystemExit(f"--shape: unknown {', '.join(unknown)} (choose from {', '.join(SHAPES)})")
    problems = arm_problems(args.arms.split(",")) if args.arms else []
    if problems:
        raise SystemExit("--arms:\n  - " + "\n  - ".join(problems))
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-finetune-"))
    out = Path(args.out or REPO / "bench" / "results" / ("finetune.json" if args.device == "cpu"
                                                        else "finetune-gpu.json"))
    results: dict = {}
    signal.signal(signal.SIGTERM, _stop)  # a time limit's SIGTERM: the running arm's process is killed too
    try:
        for shape in shapes:
            results[shape] = bench_shape(shape, args, work, progress=lambda r, shape=shape: write_record(
                out, {**results, shape: r}, args, argv, started, complete=False))
            shutil.rmtree(work / shape, ignore_errors=True)  # an 8B model is 16 GB on disk, its adapters GBs more
    except Stopped:
        print(f"stopped by SIGTERM; {out} holds the arms that finished (complete: false)", flush=True)
        return 143
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record = write_record(out, results, args, argv, started, complete=True)
    print(json.dumps({s: {"summary": r["summary"], "targets_met": r["targets_met"]} for s, r in results.items()},
                     indent=2))
    print(f"written to {out} after {record['seconds']:.0f} s")
    return 0


class Stopped(BaseException):
    """SIGTERM (a time limit): not an Exception, so neither an arm's failure handler nor a library catches it."""


def _stop(signum, frame):
    raise Stopped()


def write_record(out: Path, results: dict, args, argv, started: float, *, complete: bool) -> dict:
    """The benchmark's JSON: setup, machine and the shapes measured so far (``complete``: every arm and path of
    every shape asked for), written whole (a temporary file renamed over the old one)."""
    import torch

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    record = {
        "command": "python bench/bench_finetune.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": args.device, "device_name": device_name,
        "setup": {"batch_size": args.batch_size, "rounds": args.rounds,
                  "steps": "one epoch" if args.device == "cpu" else args.steps,
                  "warmup": 0 if args.device == "cpu" else args.warmup,
                  "ours": "finetune/recipes/tiny-cpu.yaml (QLoRA NF4, LoRA r 8)" if args.device == "cpu" else
                          "QLoRA NF4 + double quant, LoRA r 64 alpha 16 all-linear, padding_free, gradient "
                          "checkpointing, loss auto, attn sdpa",
                  "trl": "SFTTrainer, default SFTConfig + the same BitsAndBytesConfig and LoraConfig",
                  "throughput": "trained (non-padding) tokens per CPU-second of the training loop" if
                                args.device == "cpu" else "trained (non-padding) tokens per second after warmup",
                  "memory": "peak RSS of each arm's process (getrusage ru_maxrss)" if args.device == "cpu" else
                            "torch.cuda.max_memory_allocated of each arm's process (loading included)",
                  "mfu": "6 x parameters x trained tokens/s / the card's dense bf16 peak"},
        "shapes": results,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "seconds": round(time.perf_counter() - started, 1),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "complete": complete,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(out)
    return record


if __name__ == "__main__":
    sys.exit(main())
