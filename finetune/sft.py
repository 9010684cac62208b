"""``method: sft``: supervised fine-tuning on messages, the loss on the assistant tokens, through the
transformers Trainer. The three steps that differ between methods (``finetune.train.run`` calls them):
read the data, load the model, make the trainer; and the Trainer arguments every method shares."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from finetune import data as fdata
from finetune import loss as floss
from finetune.callbacks import JsonlMetrics, StopOnSigterm
from finetune.config import FinetuneConfig
from finetune.model import load_model  # noqa: F401 (this method's model: a new or given LoRA adapter on the base)

log = logging.getLogger("finetune")

CHECKPOINTS = "checkpoints"


def load_data(cfg: FinetuneConfig, tokenizer, eot: str) -> tuple[list[dict], list[dict], dict]:
    examples = fdata.read_messages(cfg.data, split=cfg.data_split)
    if cfg.swap_roles:  # a backward model: answer -> instruction
        examples = fdata.swap_roles(examples)
    dev_from = fdata.dev_source(cfg)
    if dev_from:
        dev = fdata.read_messages(*dev_from)
        train, dev = examples, fdata.swap_roles(dev) if cfg.swap_roles else dev
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


def training_arguments(cfg: FinetuneConfig, run_dir: Path, dtype, *, has_dev: bool, eval_on_start: bool = False,
                       args_class=None, **extra):
    """The Trainer's arguments for this run (``args_class``: a TrainingArguments subclass such as TRL's
    DPOConfig, ``extra``: its own fields). ``eval_on_start``: the dev loss at step 0 too (the base model's,
    so the gain from training shows in metrics.jsonl)."""
    import importlib.util

    import torch
    from transformers import TrainingArguments

    autocast = mixed_precision(cfg, dtype)
    report_to = []
    if cfg.tensorboard and (importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")):
        report_to = ["tensorboard"]
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    return (args_class or TrainingArguments)(
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
        bf16=autocast == "bf16",
        fp16=autocast == "fp16",
        activation_checkpointing=cfg.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,
        include_num_input_tokens_seen="non_padding" if cfg.batching == "padded" else "all",
        eval_strategy="steps" if has_dev else "no",
        eval_on_start=eval_on_start,
        eval_steps=cfg.eval_steps,
        prediction_loss_only=True,  # the dev loss is all evaluation computes: no logits gathered
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
        **extra,
    )


def mixed_precision(cfg: FinetuneConfig, dtype) -> str | None:
    """The Trainer's autocast for this run: ``bf16`` / ``fp16`` on a GPU with that compute dtype (``autocast: true``,
    quantized base or not), else None. Without it peft runs each LoRA adapter in float32 (the adapter weights'
    dtype), casting its input up and its output back. On a CPU the weights are already in ``dtype`` (load_base),
    and the Trainer refuses bf16 autocast there."""
    import torch

    if not (cfg.autocast and torch.cuda.is_available()):
        return None
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype)


def make_trainer(cfg: FinetuneConfig, model, tokenizer, train_rows, dev_rows, run_dir: Path, dtype,
                 eval_on_start: bool = False):
    """The transformers Trainer for a supervised run."""
    from transformers import Trainer

    loss = floss.for_model(cfg.loss, model)  # None: the model's own loss over the full logits
    return Trainer(
        model=model,
        args=training_arguments(cfg, run_dir, dtype, has_dev=bool(dev_rows), eval_on_start=eval_on_start),
        train_dataset=train_rows,
        eval_dataset=dev_rows or None,
        data_collator=fdata.collator_for(cfg.batching, tokenizer.pad_token_id,
                                         extra=loss.model_inputs if loss else None),
        compute_loss_func=loss,
        processing_class=tokenizer,
        callbacks=[JsonlMetrics(run_dir / "metrics.jsonl"), StopOnSigterm()],
    )
