"""What a run folder records about itself: provenance.json (inputs and their hashes, dtype, versions, outcome)
and the model card (README.md). ``finetune.train`` writes them when training begins and when it ends."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from contract.io import sha256_path
from finetune.config import FinetuneConfig


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


def packed_attention() -> list[str]:
    import sys

    attention = sys.modules.get("finetune.attention")
    return attention.served() if attention else []


def provenance(cfg, eot, dtype, stats, trainer, started) -> dict:
    """The start provenance completed with the outcome: steps and first/last losses."""
    logs = trainer.state.log_history
    train_losses = [x["loss"] for x in logs if "loss" in x]
    dev_losses = [x["eval_loss"] for x in logs if "eval_loss" in x]
    prov = start_provenance(cfg, eot, dtype, stats, started)
    prov.update({
        "global_step": trainer.state.global_step,
        "loss": getattr(trainer.compute_loss_func, "kind", "full"),  # finetune/loss.py: fused, chunked or full
        "autocast": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else None,  # mixed precision
        "attention": getattr(trainer.model.config, "_attn_implementation", None),
        "packed_attention": packed_attention(),  # finetune/attention.py: flash, nested or loop ([] when unused)
        "first_train_loss": train_losses[0] if train_losses else None,
        "last_train_loss": train_losses[-1] if train_losses else None,
        "first_dev_loss": dev_losses[0] if dev_losses else None,
        "last_dev_loss": dev_losses[-1] if dev_losses else None,
        "finished": now(),
    })
    return prov


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
        + ("trained with `python -m finetune` (curated-align) on a curated messages dataset, loss on the "
           "assistant tokens only." if cfg.method == "sft" else
           f"trained with `python -m finetune --method dpo` (curated-align): DPO (TRL's DPOTrainer, beta "
           f"{cfg.dpo_beta}, {cfg.dpo_loss} loss) on preference pairs"
           + (f", starting from the adapter of `{cfg.init_adapter}` (also the frozen reference)."
              if cfg.init_adapter else ", the base model as the reference.")),
        "",
        "## Data",
        "",
        *(["- **a backward model** (`swap_roles`): trained on the examples with their roles swapped, the answer "
           "as the user turn and the instruction as the answer to learn (instruction backtranslation)"]
          if getattr(cfg, "swap_roles", False) else []),
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


def started_before(run_dir: Path) -> str | None:
    """When a resumed run first started (its provenance.json)."""
    try:
        return json.loads((run_dir / "provenance.json").read_text(encoding="utf-8")).get("started")
    except (OSError, ValueError):
        return None


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
