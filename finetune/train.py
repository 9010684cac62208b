"""QLoRA / LoRA supervised fine-tuning on a messages dataset, through the transformers Trainer.

``run(cfg)`` reads top to bottom: check inputs → output folder → tokenizer and data → model →
trainer → train (or resume) → save the run folder. The Trainer does the loop, checkpoints, the dev
loss, the progress bar and the optimizer; this module only feeds it and records what happened.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from finetune import data as fdata
from finetune.config import FinetuneConfig, save_yaml

log = logging.getLogger("finetune")

CHECKPOINTS = "checkpoints"


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingInterrupted(RuntimeError):
    """Training stopped early on SIGTERM after saving a checkpoint; ``--resume`` continues it."""


# --------------------------------------------------------------------------- the spine


def run(cfg: FinetuneConfig, callbacks: tuple = ()) -> Path:
    """Train an adapter as ``cfg`` says and return the run folder. ``callbacks``: extra
    ``transformers.TrainerCallback`` objects (they see the model at every step)."""
    import torch

    check_inputs(cfg)
    run_dir, resume_from = prepare_output_dir(cfg)
    if _is_main():
        save_yaml(cfg, run_dir / "config.yaml", header=config_header(cfg))
    started = _now()

    tokenizer, eot = load_tokenizer(cfg)
    train_rows, dev_rows, stats = load_data(cfg, tokenizer, eot)
    if _is_main():
        write_json(run_dir / "data_stats.json", stats)

    dtype = resolve_dtype(cfg.compute_dtype)
    torch.manual_seed(cfg.seed)
    model = load_model(cfg, dtype)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and cfg.max_length > limit:
        log.warning("max_length %d exceeds the model's max_position_embeddings %d", cfg.max_length, limit)
    trainer = make_trainer(cfg, model, tokenizer, train_rows, dev_rows, run_dir, dtype)
    for callback in callbacks:
        trainer.add_callback(callback)
    guard = NonFiniteLossGuard(trainer)
    if _is_main():
        append_jsonl(run_dir / "metrics.jsonl", {"step": _step_of(resume_from) if resume_from else 0, "event": "data",
                                                 **{f"{k}/{s}": v for k, st in stats.items() for s, v in st.items()
                                                    if s != "dropped_ids"}})

    log.info("training %s on %s → %s%s", cfg.model, cfg.data, run_dir,
             f" (resuming from {resume_from.name})" if resume_from else "")
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except TrainingDiverged as err:
        last = latest_checkpoint(run_dir / CHECKPOINTS)
        raise TrainingDiverged(f"{err}. Last complete checkpoint: {last or 'none'}. Lower learning_rate "
                               f"(now {cfg.learning_rate}), check max_grad_norm or the data.") from None
    finally:
        guard.remove()
    state = trainer.state
    if state.global_step < state.max_steps:
        raise TrainingInterrupted(f"training stopped at step {state.global_step} of {state.max_steps} (SIGTERM); "
                                  f"a checkpoint is in {run_dir / CHECKPOINTS}. Run the same command with "
                                  "--resume to continue.")
    if dev_rows:
        trainer.evaluate()

    save_run(cfg, trainer, tokenizer, eot, run_dir, stats, dtype, started)
    log.info("done: %s (step %d)", run_dir, state.global_step)
    return run_dir


# --------------------------------------------------------------------------- inputs and output folder


def check_inputs(cfg: FinetuneConfig) -> None:
    """The files and folders the config names exist (all problems in one ValueError)."""
    from curation.schema import DataError, container_kind

    issues = []
    if _looks_like_path(cfg.model) and not Path(cfg.model).is_dir():
        issues.append(f"model: no such folder {cfg.model!r} (give a local model folder or a Hub id owner/name)")
    for key in ("data", "dev_data"):
        value = getattr(cfg, key)
        if value:
            try:
                container_kind(value)
            except DataError as err:
                issues.append(f"{key}: {err}")
    if cfg.chat_template and not Path(cfg.chat_template).is_file():
        issues.append(f"chat_template: no such file {cfg.chat_template!r}")
    run_dir = Path(cfg.output_dir)
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (cfg.resume or cfg.overwrite):
        issues.append(f"output_dir: {run_dir} already holds a run; pass --resume to continue it or --overwrite "
                      "to start over")
    if cfg.overwrite and run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / "config.yaml").exists():
        issues.append(f"output_dir: {run_dir} is not empty and has no config.yaml; refusing to delete it "
                      "with --overwrite")
    if issues:
        raise ValueError("cannot start:\n  - " + "\n  - ".join(issues))


def _is_main() -> bool:
    """Rank 0 (or a single process): the one that writes the run folder."""
    return int(os.environ.get("RANK", "0")) == 0


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def prepare_output_dir(cfg: FinetuneConfig) -> tuple[Path, Path | None]:
    """Create (or clear, or reuse) the run folder; return it and the checkpoint to resume from."""
    run_dir = Path(cfg.output_dir)
    if cfg.overwrite and run_dir.exists() and _is_main():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resume_from = latest_checkpoint(run_dir / CHECKPOINTS) if cfg.resume else None
    if cfg.resume:
        old = run_dir / "config.yaml"
        if old.exists():
            _warn_config_changes(old, cfg)
        if resume_from is None:
            log.warning("--resume: no complete checkpoint in %s, starting from step 0", run_dir / CHECKPOINTS)
        if _is_main():
            _truncate_metrics(run_dir / "metrics.jsonl", _step_of(resume_from) if resume_from else 0)
    return run_dir, resume_from


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint-N folder that was written completely (a kill mid-save leaves a partial one)."""
    if not folder.is_dir():
        return None
    found = sorted((p for p in folder.iterdir() if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()),
                   key=_step_of, reverse=True)
    for ckpt in found:
        if (ckpt / "checkpoint-is-incomplete.txt").exists():
            continue
        try:
            json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (ckpt / "adapter_model.safetensors").exists() and (ckpt / "optimizer.pt").exists():
            return ckpt
        log.warning("skipping incomplete checkpoint %s", ckpt)
    return None


def _step_of(ckpt: Path) -> int:
    return int(ckpt.name.rsplit("-", 1)[1])


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop the metrics a killed run logged after the checkpoint we resume from."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:  # a line cut short by the kill
            continue
    path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")


def _warn_config_changes(old_path: Path, cfg: FinetuneConfig) -> None:
    import yaml

    old = yaml.safe_load(old_path.read_text(encoding="utf-8")) or {}
    ignore = {"resume", "overwrite"}
    changed = [k for k, v in cfg.__dict__.items() if k not in ignore and k in old and old[k] != v]
    if changed:
        log.warning("--resume with settings that differ from the saved config.yaml: %s", ", ".join(changed))


# --------------------------------------------------------------------------- tokenizer and data


def load_tokenizer(cfg: FinetuneConfig):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    eot = fdata.setup_template(tokenizer, cfg.chat_template, cfg.eot_token)
    tokenizer.padding_side = "right"
    return tokenizer, eot


def load_data(cfg: FinetuneConfig, tokenizer, eot: str) -> tuple[list[dict], list[dict], dict]:
    examples = fdata.read_messages(cfg.data, split=cfg.data_split)
    if cfg.dev_data:
        train, dev = examples, fdata.read_messages(cfg.dev_data, split=cfg.data_split)
    else:
        train, dev = fdata.split_dev(examples, cfg.dev_size, cfg.seed)
    train_rows, train_stats = fdata.build_rows(tokenizer, train, eot, cfg.max_length, cfg.overlong, "train")
    stats = {"train": train_stats.to_json()}
    log.info(fdata.describe(train_stats, "train", cfg.max_length))
    dev_rows = []
    if dev:
        dev_rows, dev_stats = fdata.build_rows(tokenizer, dev, eot, cfg.max_length, cfg.overlong, "dev")
        stats["dev"] = dev_stats.to_json()
        log.info(fdata.describe(dev_stats, "dev", cfg.max_length))
    if cfg.batching == "packing":
        n = len(train_rows)
        train_rows = fdata.pack(train_rows, cfg.max_length)
        stats["train"]["packed_rows"] = len(train_rows)
        log.info("packing: %d examples into %d rows of <= %d tokens", n, len(train_rows), cfg.max_length)
    return train_rows, dev_rows, stats


# --------------------------------------------------------------------------- model


def resolve_dtype(name: str):
    """``auto``: bf16 where the device computes it natively, else fp32."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if _cpu_has_native_bf16() else torch.float32


def _cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def _device_map():
    import torch

    if not torch.cuda.is_available():
        return {"": "cpu"}
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return None  # FSDP places the shards itself
    return {"": int(os.environ.get("LOCAL_RANK", 0))}


def quantization_config(cfg: FinetuneConfig, dtype):
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=cfg.double_quant,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=getattr(torch, cfg.quant_storage),
    )


def training_attention(cfg: FinetuneConfig) -> str:
    """sdpa with padding-free or packed batches: per-example sdpa (finetune/attention.py), else as configured."""
    if cfg.attn_implementation == "sdpa" and cfg.batching != "padded":
        from finetune.attention import register

        return register()
    return cfg.attn_implementation


def load_base(cfg: FinetuneConfig, dtype, *, quantized: bool | None = None, attn: str | None = None):
    """The base model as training sees it: 4-bit NF4 (QLoRA) or unquantized in ``dtype``."""
    import torch
    from transformers import AutoModelForCausalLM

    quantized = cfg.quantization == "nf4" if quantized is None else quantized
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn or cfg.attn_implementation}
    if quantized:
        kwargs["quantization_config"] = quantization_config(cfg, dtype)
        if cfg.quant_storage != "uint8":  # FSDP-QLoRA: every weight in one dtype
            kwargs["dtype"] = getattr(torch, cfg.quant_storage)
    device_map = _device_map()
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(cfg.model, **kwargs)
    model.config.use_cache = False  # a cache would defeat the packed-sequence attention mask
    return model


def lora_config(cfg: FinetuneConfig):
    from peft import LoraConfig

    target = cfg.lora_target if cfg.lora_target == "all-linear" else [
        t.strip() for t in cfg.lora_target.split(",") if t.strip()]
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=target, bias="none", task_type="CAUSAL_LM")


def load_model(cfg: FinetuneConfig, dtype):
    """Base (4-bit or not) → k-bit training preparation → LoRA adapters on it."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = load_base(cfg, dtype, attn=training_attention(cfg))
    sharded = cfg.quantization == "nf4" and cfg.quant_storage != "uint8"
    if cfg.quantization == "nf4" and not sharded:
        # freezes the base, casts the small unquantized weights (norms, embeddings, head) to fp32 for
        # stability, and makes the input embeddings require grad for gradient checkpointing
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    elif cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    model = get_peft_model(model, lora_config(cfg), autocast_adapter_dtype=not sharded)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA r=%d alpha=%s on %s: %s trainable of %s parameters (%.2f%%)", cfg.lora_r, cfg.lora_alpha,
             cfg.lora_target, f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model


# --------------------------------------------------------------------------- trainer


def make_trainer(cfg: FinetuneConfig, model, tokenizer, train_rows, dev_rows, run_dir: Path, dtype):
    import importlib.util

    import torch
    from transformers import Trainer, TrainingArguments

    report_to = []
    if cfg.tensorboard and (importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")):
        report_to = ["tensorboard"]
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    args = TrainingArguments(
        output_dir=str(run_dir / CHECKPOINTS),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=cfg.weight_decay,
        adam_beta2=cfg.adam_beta2,
        max_grad_norm=cfg.max_grad_norm,
        optim=cfg.optim,
        bf16=dtype == torch.bfloat16 and cfg.quantization == "none",
        fp16=dtype == torch.float16 and cfg.quantization == "none",
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,
        include_num_input_tokens_seen="non_padding" if cfg.batching == "padded" else "all",
        eval_strategy="steps" if dev_rows else "no",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to=report_to,
        seed=cfg.seed,
        data_seed=cfg.seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cache=False,
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        eval_dataset=dev_rows or None,
        data_collator=fdata.collator_for(cfg.batching, tokenizer.pad_token_id),
        processing_class=tokenizer,
        callbacks=[JsonlMetrics(run_dir / "metrics.jsonl"), StopOnSigterm()],
    )


class JsonlMetrics(TrainerCallback):
    """Append every log (train loss, dev loss, learning rate, throughput) to metrics.jsonl."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            append_jsonl(self.path, {"step": state.global_step, "epoch": state.epoch, "time": round(time.time(), 3),
                                     **logs})


class StopOnSigterm(TrainerCallback):
    """On SIGTERM (preemption, ``kill``, a scheduler's time limit): finish the current step, save a
    checkpoint through the Trainer, stop. A second SIGTERM kills at once. (transformers'
    ``enable_jit_checkpoint`` waits 3 s first and saves before the optimizer step; this is simpler.)"""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested:
            log.warning("SIGTERM: saving a checkpoint at step %d and stopping", state.global_step)
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


class NonFiniteLossGuard:
    """Stop training with a clear error the moment a training loss is NaN or infinite (before the
    optimizer step, so no checkpoint holds broken weights)."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.handle = trainer.model.register_forward_hook(self._check)

    def _check(self, module, args, output):
        import torch

        loss = getattr(output, "loss", None)
        if module.training and loss is not None and not torch.isfinite(loss.detach()).all():
            state = self.trainer.state
            raise TrainingDiverged(f"training loss is {loss.item()} at step {state.global_step + 1} "
                                   f"(epoch {state.epoch or 0:.2f})")

    def remove(self):
        self.handle.remove()


# --------------------------------------------------------------------------- outputs


def save_run(cfg, trainer, tokenizer, eot, run_dir: Path, stats: dict, dtype, started: str) -> None:
    from transformers import GenerationConfig

    if getattr(trainer, "is_fsdp_enabled", False):  # gather the sharded adapter into one file
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(run_dir))  # adapter_model.safetensors + adapter_config.json (+ tokenizer)
    if not trainer.is_world_process_zero():
        return
    tokenizer.save_pretrained(str(run_dir))  # with the exact chat template used in training
    eos_ids = [tokenizer.convert_tokens_to_ids(eot)]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids.append(tokenizer.eos_token_id)
    GenerationConfig(eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id).save_pretrained(str(run_dir))
    save_yaml(cfg, run_dir / "config.yaml", header=config_header(cfg))
    prov = provenance(cfg, eot, dtype, stats, trainer, started)
    write_json(run_dir / "provenance.json", prov)
    (run_dir / "README.md").write_text(model_card(cfg, prov, run_dir), encoding="utf-8")


def provenance(cfg, eot, dtype, stats, trainer, started) -> dict:
    import importlib.metadata as md

    versions = {}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets", "trl"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    logs = trainer.state.log_history
    train_losses = [x["loss"] for x in logs if "loss" in x]
    dev_losses = [x["eval_loss"] for x in logs if "eval_loss" in x]
    return {
        "base_model": cfg.model,
        "data": _file_record(cfg.data),
        "dev_data": _file_record(cfg.dev_data) if cfg.dev_data else None,
        "manifest": _manifest_record(cfg.data),
        "chat_template": cfg.chat_template or "tokenizer's own (or the default base-model template)",
        "eot_token": eot,
        "compute_dtype": str(dtype).replace("torch.", ""),
        "quantization": cfg.quantization,
        "data_stats": stats,
        "global_step": trainer.state.global_step,
        "first_train_loss": train_losses[0] if train_losses else None,
        "last_train_loss": train_losses[-1] if train_losses else None,
        "last_dev_loss": dev_losses[-1] if dev_losses else None,
        "started": started,
        "finished": _now(),
        "versions": versions,
    }


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file; for a folder, of the sorted list of its files' relative names and sha256s."""
    from curation.schema import sha256_file

    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    h = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        h.update(f"{f.relative_to(p).as_posix()}\t{sha256_file(f)}\n".encode())
    return h.hexdigest()


def _file_record(source: str) -> dict:
    p = Path(source)
    if p.exists():
        return {"path": str(p), "sha256": sha256_path(p)}
    return {"hub_id": source.removeprefix("hf:"), "sha256": None}


def _manifest_record(source: str) -> dict | None:
    p = Path(source)
    if not p.exists():
        return None
    manifest = (p if p.is_dir() else p.parent) / "manifest.json"
    if not manifest.is_file():
        return None
    return {"path": str(manifest), "sha256": sha256_path(manifest)}


def config_header(cfg: FinetuneConfig) -> str:
    return ("Resolved config of a finetune run (defaults < recipe < flags). Re-run it with:\n"
            f"  python -m finetune --config {Path(cfg.output_dir) / 'config.yaml'} --output_dir NEW_DIR")


def model_card(cfg: FinetuneConfig, prov: dict, run_dir: Path) -> str:
    stats = prov["data_stats"]["train"]
    data = prov["data"]
    manifest = prov["manifest"]
    fmt = lambda x: "n/a" if x is None else f"{x:.4f}"  # noqa: E731
    lines = [
        f"# {run_dir.name}",
        "",
        f"A {'QLoRA (4-bit NF4 base)' if cfg.quantization == 'nf4' else 'LoRA'} adapter for `{cfg.model}`, "
        "trained with `python -m finetune` (curated-align) on a curated messages dataset, loss on the "
        "assistant tokens only.",
        "",
        "## Data",
        "",
        f"- training file: `{data.get('path') or data.get('hub_id')}`"
        + (f" (sha256 `{data['sha256']}`)" if data.get("sha256") else ""),
        f"- manifest: `{manifest['path']}` (sha256 `{manifest['sha256']}`)" if manifest else "- manifest: none",
        f"- examples: {stats['kept']} trained of {stats['examples']} ({stats['tokens']} tokens, "
        f"{stats['label_tokens']} of them trained); over max_length={cfg.max_length}: {stats['truncated']} "
        f"truncated, {stats['dropped_overlong']} dropped",
    ]
    if "dev" in prov["data_stats"]:
        lines.append(f"- dev examples: {prov['data_stats']['dev']['kept']}")
    lines += [
        "",
        "## Training",
        "",
        f"- LoRA r={cfg.lora_r}, alpha={cfg.lora_alpha}, dropout={cfg.lora_dropout}, targets {cfg.lora_target}",
        f"- {prov['global_step']} optimizer steps, batch {cfg.batch_size} x {cfg.grad_accum} accumulation, "
        f"lr {cfg.learning_rate} ({cfg.lr_scheduler}), batching {cfg.batching}, compute {prov['compute_dtype']}",
        f"- train loss {fmt(prov['first_train_loss'])} → {fmt(prov['last_train_loss'])}; "
        f"dev loss {fmt(prov['last_dev_loss'])}",
        f"- end-of-turn token: `{prov['eot_token']}`; the chat template used is saved with the tokenizer here",
        "- full settings: `config.yaml`; metrics: `metrics.jsonl`; provenance: `provenance.json`",
        "",
        "## Use",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f'base = AutoModelForCausalLM.from_pretrained("{cfg.model}")',
        f'model = PeftModel.from_pretrained(base, "{run_dir}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{run_dir}")',
        "ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\", "
        "return_dict=True)",
        "```",
        "",
        f"Merged bf16 model: `python -m finetune merge {run_dir}`.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in prov["versions"].items()),
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- small helpers


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, default=str) + "\n")


def write_json(path: Path, obj: Any) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
