"""``method: dpo``: Direct Preference Optimization with QLoRA, through TRL's ``DPOTrainer``.

The run is the same as a supervised one (``finetune.train.run``: the run folder, config.yaml,
provenance, metrics.jsonl, checkpoints, ``--resume``, SIGTERM, the model card); only three steps
differ, and they are here:

- **data**: preference pairs (``{prompt, chosen, rejected}``, TRL's conversational format, as
  ``python -m eval pairs`` writes them) read and validated by ``contract.readers.read_preferences``
  (a bad record names its file and line); the same pre-flight check as SFT on both conversations of
  every pair (the inference prompt must be a token prefix of prompt + answer, the end-of-turn token is
  found), and the same ``max_length`` / ``overlong`` rule;
- **model**: the same 4-bit NF4 base and LoRA as SFT (``finetune.model``). Without
  ``init_adapter`` the reference policy is the base model (the adapter disabled); with it (DPO on top of
  an SFT run) TRL keeps a frozen copy of that adapter as the reference;
- **trainer**: ``trl.DPOTrainer`` with the run's hyperparameters and ``dpo_beta`` / ``dpo_loss``.
  TRL logs the implicit rewards: ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins`` and
  ``rewards/accuracies`` (and their ``eval_`` versions on the held-out pairs), all in metrics.jsonl.
"""

from __future__ import annotations

import logging

from finetune import data as fdata
from finetune.config import FinetuneConfig

log = logging.getLogger("finetune")


def conversation(pair: dict, side: str) -> dict:
    """The pair's prompt followed by its ``side`` answer, as an example for the SFT pre-flight check."""
    return {"id": f"{pair['id']}/{side}", "messages": pair["prompt"] + pair[side]}


def load_data(cfg: FinetuneConfig, tokenizer, eot: str):
    """Train and dev preference pairs as ``datasets.Dataset`` objects, and their statistics."""
    from datasets import Dataset

    from contract.readers import read_preferences

    pairs = read_preferences(cfg.data, split=cfg.data_split).examples
    dev_from = fdata.dev_source(cfg)
    if dev_from:
        train, dev = pairs, read_preferences(dev_from[0], split=dev_from[1]).examples
    else:
        train, dev = fdata.split_dev(pairs, cfg.dev_size, cfg.seed)
    stats, out = {}, []
    for label, subset in (("train", train), ("dev", dev)):
        if not subset:
            out.append([])
            continue
        kept, st = preflight(cfg, tokenizer, eot, subset, label)
        stats[label] = st
        log.info("%s: %d/%d preference pairs, %d tokens (chosen + rejected), longest %d; over max_length=%d: "
                 "%d truncated, %d dropped", label, st["kept"], st["examples"], st["tokens"], st["longest"],
                 cfg.max_length, st["truncated"], st["dropped_overlong"])
        out.append(Dataset.from_list([{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]}
                                      for p in kept]))
    return out[0], out[1], stats


def preflight(cfg: FinetuneConfig, tokenizer, eot: str, pairs: list[dict], label: str) -> tuple[list[dict], dict]:
    """Both conversations of every pair through SFT's tokenization and pre-flight check (raises naming the
    records that fail it); pairs over ``max_length`` are counted, and dropped with ``overlong: drop``."""
    rows_c, st_c = fdata.build_rows(tokenizer, [conversation(p, "chosen") for p in pairs], eot, 10**9, "truncate",
                                    label)
    rows_r, st_r = fdata.build_rows(tokenizer, [conversation(p, "rejected") for p in pairs], eot, 10**9, "truncate",
                                    label)
    kept, truncated, dropped, tokens, longest = [], 0, [], 0, 0
    for pair, rc, rr in zip(pairs, rows_c, rows_r):
        n = max(len(rc["input_ids"]), len(rr["input_ids"]))
        longest = max(longest, n)
        if n > cfg.max_length:
            if cfg.overlong == "drop":
                dropped.append(pair["id"])
                continue
            truncated += 1  # TRL keeps the start of prompt + answer (truncation_mode keep_start)
        kept.append(pair)
        tokens += min(len(rc["input_ids"]), cfg.max_length) + min(len(rr["input_ids"]), cfg.max_length)
    if not kept:
        raise ValueError(f"no {label} preference pair is left after max_length={cfg.max_length} ({cfg.overlong})")
    return kept, {"examples": len(pairs), "kept": len(kept), "truncated": truncated, "dropped_overlong": len(dropped),
                  "tokens": tokens, "label_tokens": st_c.label_tokens + st_r.label_tokens, "longest": longest,
                  "dropped_ids": dropped[:50]}


def load_model(cfg: FinetuneConfig, dtype):
    """The same prepared base as SFT (padded batches, so the model's own attention kernel). With
    ``init_adapter`` its adapter is loaded to train further (TRL keeps a frozen copy as the reference);
    without, the trainer adds new LoRA weights (``lora_config``) and the reference is the bare base."""
    from peft import PeftModel

    from finetune.model import prepare_base

    model = prepare_base(cfg, dtype, cfg.attn_implementation)
    if cfg.init_adapter:
        model = PeftModel.from_pretrained(model, cfg.init_adapter, is_trainable=True)
        log.info("DPO on top of the adapter of %s (the reference policy: a frozen copy of it)", cfg.init_adapter)
    return model


def make_trainer(cfg: FinetuneConfig, model, tokenizer, train_rows, dev_rows, run_dir, dtype,
                 eval_on_start: bool = False):
    import torch
    from trl import DPOConfig, DPOTrainer

    from finetune.callbacks import JsonlMetrics, StopOnSigterm
    from finetune.model import lora_config
    from finetune.sft import training_arguments

    args = training_arguments(cfg, run_dir, dtype, has_dev=len(dev_rows) > 0, eval_on_start=eval_on_start,
                              args_class=DPOConfig, beta=cfg.dpo_beta, loss_type=[cfg.dpo_loss],
                              max_length=cfg.max_length, truncation_mode="keep_start", dataset_num_proc=None,
                              precompute_ref_log_probs=cfg.dpo_precompute_ref)
    args.include_num_input_tokens_seen = "no"  # TRL's batches carry no input_ids to count
    trainer = DPOTrainer(model=model, args=args, train_dataset=train_rows,
                         eval_dataset=dev_rows if len(dev_rows) else None, processing_class=tokenizer,
                         peft_config=None if cfg.init_adapter else lora_config(cfg),
                         callbacks=[JsonlMetrics(run_dir / "metrics.jsonl"), StopOnSigterm()])
    # TRL casts a quantized model's LoRA weights to bf16; keep them in fp32 as SFT does (exact on every CPU,
    # and what the saved adapter and the reference copy hold)
    for param in trainer.model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
    return trainer
