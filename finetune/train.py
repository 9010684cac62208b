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
    started = _started_before(run_dir) if resume_from else None
    started = started or _now()

    tokenizer, eot = load_tokenizer(cfg)
    train_rows, dev_rows, stats = load_data(cfg, tokenizer, eot)
    dtype = resolve_dtype(cfg.compute_dtype)
    torch.manual_seed(cfg.seed)
    model = load_model(cfg, dtype)
    check_model_fits(cfg, model)

    # Training begins: only from here does the folder hold a run (a start that failed above leaves it as it was).
    if _is_main():
        if cfg.overwrite and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, run_dir / "config.yaml", header=config_header(cfg))
        write_json(run_dir / "data_stats.json", stats)
        write_json(run_dir / "provenance.json", start_provenance(cfg, eot, dtype, stats, started))
    trainer = make_trainer(cfg, model, tokenizer, train_rows, dev_rows, run_dir, dtype,
                           eval_on_start=bool(dev_rows) and resume_from is None)
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
        if resume_from and checkpoint_is_final(resume_from):
            # killed after the final checkpoint: finish from it without training (the Trainer would run a step
            # past max_steps when resuming at the end with gradient accumulation)
            restore_final_checkpoint(trainer, resume_from)
        else:
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
    if dev_rows and not any("eval_loss" in x and x.get("step") == state.global_step for x in state.log_history):
        trainer.evaluate()  # the dev loss at the final step, unless eval_steps already took it there

    save_run(cfg, trainer, tokenizer, eot, run_dir, stats, dtype, started)
    log.info("done: %s (step %d)", run_dir, state.global_step)
    return run_dir


# --------------------------------------------------------------------------- inputs and output folder


def check_inputs(cfg: FinetuneConfig) -> None:
    """The files and folders the config names exist (all problems in one ValueError)."""
    from contract.models import model_problem
    from contract.readers import container_kind
    from contract.schema import DataError

    issues = []
    problem = model_problem(cfg.model)  # a Hub id, a model folder, a .gguf file or a built-in name
    if problem:
        issues.append(problem)
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
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if (run_dir / "config.yaml").exists():  # written when training began
            if not (cfg.resume or cfg.overwrite):
                issues.append(f"output_dir: {run_dir} already holds a run; pass --resume to continue it or "
                              "--overwrite to start over")
        elif cfg.overwrite:
            issues.append(f"output_dir: {run_dir} is not empty and holds no finetune run (no config.yaml); "
                          "refusing to delete it with --overwrite")
        elif not cfg.resume:
            issues.append(f"output_dir: {run_dir} is not empty and holds no finetune run (no config.yaml); "
                          "choose a new or empty folder")
    if issues:
        raise ValueError("cannot start:\n  - " + "\n  - ".join(issues))


def check_model_fits(cfg: FinetuneConfig, model) -> None:
    """max_length must not exceed the model's positions unless allow_longer_than_model says so."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit and cfg.max_length > limit:
        if not cfg.allow_longer_than_model:
            raise ValueError(f"max_length: {cfg.max_length} exceeds the model's max_position_embeddings ({limit}); "
                             f"lower max_length, or set allow_longer_than_model: true if the model's RoPE scaling "
                             "extends it")
        log.warning("max_length %d exceeds the model's max_position_embeddings %d (allow_longer_than_model)",
                    cfg.max_length, limit)


def _is_main() -> bool:
    """Rank 0 (or a single process): the one that writes the run folder."""
    return int(os.environ.get("RANK", "0")) == 0


def prepare_output_dir(cfg: FinetuneConfig) -> tuple[Path, Path | None]:
    """The run folder and the checkpoint to resume from. Nothing is created or deleted here: that waits
    until training begins (``run``), so a start that fails leaves the folder as it was."""
    run_dir = Path(cfg.output_dir)
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
    """The newest checkpoint-N folder that is intact. A kill mid-save leaves a partial one (no
    trainer_state.json, or a file cut short); it is skipped with a warning naming what is damaged."""
    if not folder.is_dir():
        return None
    found = sorted((p for p in folder.iterdir() if re.fullmatch(r"checkpoint-\d+", p.name) and p.is_dir()),
                   key=_step_of, reverse=True)
    for ckpt in found:
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        log.warning("skipping damaged checkpoint %s: %s", ckpt.name, problem)
    return None


def checkpoint_problem(ckpt: Path) -> str | None:
    """What makes ``ckpt`` unusable for a resume (missing or truncated files), or None when it is intact.

    Cheap structural checks, no tensor is loaded: trainer_state.json parses; the safetensors header parses
    and the file is as long as the header says; every torch ``.pt``/``.pth`` file (a zip archive) has its
    central directory, which a truncated write loses."""
    import zipfile

    if (ckpt / "checkpoint-is-incomplete.txt").exists():
        return "marked incomplete by the trainer"
    try:
        json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "trainer_state.json is missing or cut short"
    for name in ("adapter_model.safetensors", "optimizer.pt"):
        if not (ckpt / name).is_file():
            return f"{name} is missing"
    for f in sorted(ckpt.glob("*.safetensors")):
        try:
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if f.stat().st_size < 8 + n + end:
                return f"{f.name} is cut short ({f.stat().st_size} of {8 + n + end} bytes)"
        except (OSError, ValueError, KeyError, TypeError):
            return f"{f.name} is not a readable safetensors file"
    for f in sorted([*ckpt.glob("*.pt"), *ckpt.glob("*.pth")]):
        try:
            with zipfile.ZipFile(f) as zf:
                zf.infolist()
        except (OSError, zipfile.BadZipFile):
            return f"{f.name} is cut short or not a torch file"
    return None


def checkpoint_is_final(ckpt: Path) -> bool:
    """The checkpoint was saved at the run's last step."""
    state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    return state.get("max_steps", 0) > 0 and state.get("global_step", 0) >= state["max_steps"]


def restore_final_checkpoint(trainer, ckpt: Path) -> None:
    """Load the adapter and trainer state of a final checkpoint into ``trainer`` (no training step)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState

    log.info("%s is the final checkpoint: finishing the run from it without training", ckpt.name)
    set_peft_model_state_dict(trainer.model, load_file(str(ckpt / "adapter_model.safetensors")))
    trainer.state = TrainerState.load_from_json(str(ckpt / "trainer_state.json"))


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
    from contract.models import load_tokenizer as load_model_tokenizer

    tokenizer = load_model_tokenizer(cfg.model)  # a clear ModelNotFound (a ValueError) when it cannot be loaded
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
    """The compute dtype for ``compute_dtype: name`` (``auto``: bf16 where the device computes it natively,
    else fp32); one function for the whole project, :func:`contract.models.compute_dtype`."""
    from contract.models import compute_dtype

    return compute_dtype(name)


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

    from contract.models import load_causal_lm

    quantized = cfg.quantization == "nf4" if quantized is None else quantized
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn or cfg.attn_implementation}
    if quantized:
        kwargs["quantization_config"] = quantization_config(cfg, dtype)
        if cfg.quant_storage != "uint8":  # FSDP-QLoRA: every weight in one dtype
            kwargs["dtype"] = getattr(torch, cfg.quant_storage)
    device_map = _device_map()
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = load_causal_lm(cfg.model, **kwargs)  # a Hub id, a folder, a .gguf file or a built-in name
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
    if cfg.quantization == "nf4" and not sharded and cfg.upcast_layers:
        # QLoRA's original preparation: freezes the base, casts the small unquantized weights (norms,
        # embeddings, head) to fp32, and makes the input embeddings require grad for checkpointing
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        # the base frozen in the compute dtype, as inference will load it (embeddings and head included:
        # an fp32 copy of a 150k-vocabulary head and its logits cost GBs); the Trainer turns on
        # (non-reentrant) checkpointing, which needs no input gradients
        for param in model.parameters():
            param.requires_grad_(False)
    model = get_peft_model(model, lora_config(cfg), autocast_adapter_dtype=not sharded)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA r=%d alpha=%s on %s: %s trainable of %s parameters (%.2f%%)", cfg.lora_r, cfg.lora_alpha,
             cfg.lora_target, f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model


# --------------------------------------------------------------------------- trainer


def make_trainer(cfg: FinetuneConfig, model, tokenizer, train_rows, dev_rows, run_dir: Path, dtype,
                 eval_on_start: bool = False):
    """The transformers Trainer for this run. ``eval_on_start``: the dev loss at step 0 too (the base
    model's, so the gain from training shows in metrics.jsonl)."""
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
        # mixed-precision autocast only for an unquantized base on a GPU; on a CPU the weights are already in
        # ``dtype`` (load_base), and the Trainer refuses bf16 autocast there
        bf16=dtype == torch.bfloat16 and cfg.quantization == "none" and torch.cuda.is_available(),
        fp16=dtype == torch.float16 and cfg.quantization == "none" and torch.cuda.is_available(),
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,
        include_num_input_tokens_seen="non_padding" if cfg.batching == "padded" else "all",
        eval_strategy="steps" if dev_rows else "no",
        eval_on_start=eval_on_start,
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


def start_provenance(cfg, eot, dtype, stats, started) -> dict:
    """What is known when training begins: inputs and their hashes, the resolved compute dtype (what
    reloads the adapter uses: ``contract.models.run_compute_dtype``), versions."""
    import importlib.metadata as md

    from contract.models import dtype_name

    versions = {}
    for pkg in ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets", "trl"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return {
        "base_model": cfg.model,
        "data": _file_record(cfg.data),
        "dev_data": _file_record(cfg.dev_data) if cfg.dev_data else None,
        "manifest": _manifest_record(cfg.data),
        "chat_template": cfg.chat_template or "tokenizer's own (or the default base-model template)",
        "eot_token": eot,
        "compute_dtype": dtype_name(dtype),
        "quantization": cfg.quantization,
        "data_stats": stats,
        "started": started,
        "versions": versions,
    }


def provenance(cfg, eot, dtype, stats, trainer, started) -> dict:
    """The start provenance completed with the outcome: steps and first/last losses."""
    logs = trainer.state.log_history
    train_losses = [x["loss"] for x in logs if "loss" in x]
    dev_losses = [x["eval_loss"] for x in logs if "eval_loss" in x]
    prov = start_provenance(cfg, eot, dtype, stats, started)
    prov.update({
        "global_step": trainer.state.global_step,
        "first_train_loss": train_losses[0] if train_losses else None,
        "last_train_loss": train_losses[-1] if train_losses else None,
        "first_dev_loss": dev_losses[0] if dev_losses else None,
        "last_dev_loss": dev_losses[-1] if dev_losses else None,
        "finished": _now(),
    })
    return prov


def sha256_path(path: str | os.PathLike) -> str:
    """sha256 of a file; for a folder, of the sorted list of its files' relative names and sha256s."""
    from contract.io import sha256_file

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
        f"dev loss {fmt(prov['first_dev_loss'])} (step 0) → {fmt(prov['last_dev_loss'])}",
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


def _started_before(run_dir: Path) -> str | None:
    """When a resumed run first started (its provenance.json)."""
    try:
        return json.loads((run_dir / "provenance.json").read_text(encoding="utf-8")).get("started")
    except (OSError, ValueError):
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
