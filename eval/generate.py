"""``python -m eval generate``: answers from a model (base + adapter, or merged) to generations.jsonl.

    python -m eval generate --model HuggingFaceTB/SmolLM2-360M --adapter runs/lima \\
        --prompts data/eval-prompts/prompts.jsonl --out gens/lima.jsonl

Batched (left padding, longest prompts first), the chat template the model
was trained with, greedy or seeded sampling, stops at the end-of-turn token,
a progress bar, and resume: prompts already in ``--out`` are skipped and the
file is rewritten in prompt order at the end. ``--outputs FILE`` takes the
answers from a file instead (AlpacaEval's ``{instruction, output, generator}``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

from .config import GenerateConfig
from .files import append_jsonl, load_generations, load_prompts, read_records, write_jsonl

END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")


def resolve_adapter(path: str) -> str:
    """An adapter folder, or a finetune run folder holding one (``adapter/`` or ``final/``)."""
    if not path:
        return ""
    p = Path(path)
    if (p / "adapter_config.json").is_file():
        return str(p)
    for sub in ("adapter", "final", "final_adapter", "checkpoint-final"):
        if (p / sub / "adapter_config.json").is_file():
            return str(p / sub)
    found = sorted(p.glob("**/adapter_config.json"))
    if found:
        return str(found[-1].parent)
    raise FileNotFoundError(f"--adapter {path}: no adapter_config.json in it or below it")


def training_provenance(adapter: str) -> dict | None:
    """What the finetune run recorded about its data (``provenance.json`` beside the adapter or one up)."""
    if not adapter:
        return None
    for folder in (Path(adapter), Path(adapter).parent):
        p = folder / "provenance.json"
        if p.is_file():
            try:
                prov = json.loads(p.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, OSError):
                return {"run_dir": str(folder), "error": "unreadable provenance.json"}
            manifest = prov.get("manifest") or {}
            data = prov.get("data") or {}
            return {"run_dir": str(folder), "base_model": prov.get("base_model"),
                    "data_manifest": manifest.get("path"), "data_manifest_sha256": manifest.get("sha256"),
                    "train_data_sha256": data.get("sha256"), "global_step": prov.get("global_step")}
    return None


def generator_name(cfg: GenerateConfig) -> str:
    if cfg.generator:
        return cfg.generator
    if cfg.adapter:
        p = Path(cfg.adapter)
        return p.name if p.name not in ("adapter", "final") else p.parent.name
    return Path(cfg.model.rstrip("/")).name or cfg.model


def validate(cfg: GenerateConfig) -> None:
    issues = []
    if bool(cfg.model) == bool(cfg.outputs):
        issues.append("give either --model (to generate) or --outputs (a file of existing answers)")
    if cfg.adapter and not cfg.model:
        issues.append("--adapter needs --model (its base)")
    if cfg.batch_size < 1:
        issues.append("--batch-size must be at least 1")
    if cfg.max_new_tokens < 1:
        issues.append("--max-new-tokens must be at least 1")
    if cfg.temperature < 0:
        issues.append("--temperature must be >= 0")
    if not Path(cfg.prompts).is_file():
        issues.append(f"--prompts {cfg.prompts}: no such file")
    if cfg.outputs and not Path(cfg.outputs).is_file():
        issues.append(f"--outputs {cfg.outputs}: no such file")
    if issues:
        raise ValueError("generate: " + "; ".join(issues))


def main(cfg: GenerateConfig) -> Path:
    validate(cfg)
    prompts = load_prompts(cfg.prompts, cfg.limit or None)
    out = Path(cfg.out)
    if cfg.outputs:
        return import_outputs(cfg, prompts, out)
    return generate(cfg, prompts, out)


def import_outputs(cfg: GenerateConfig, prompts, out: Path) -> Path:
    """Take this side's answers from a file (AlpacaEval outputs or generations.jsonl)."""
    rows = load_generations(cfg.outputs)
    by_id = {r["id"]: r for r in rows}
    by_text = {" ".join(r["prompt"].split()): r for r in rows}
    kept, missing = [], []
    for p in prompts:
        r = by_id.get(p.id) or by_text.get(" ".join(p.prompt.split()))
        if r is None:
            missing.append(p.id)
            continue
        kept.append({
            "id": p.id, "prompt": p.prompt, "category": p.category, "output": r["output"],
            "generator": cfg.generator or r["generator"], "model": r.get("model") or f"outputs:{Path(cfg.outputs).name}",
            "adapter": r.get("adapter"),
            "config": {**(r.get("config") or {}), "source_file": str(cfg.outputs)},
            **({"reference": p.reference} if p.reference else {}),
        })
    if not kept:
        raise ValueError(f"--outputs {cfg.outputs}: none of its answers matches a prompt (by id or by text)")
    if missing:
        print(f"warning: {len(missing)} prompt(s) have no answer in {cfg.outputs} (first: {missing[:5]})", file=sys.stderr)
    write_jsonl(out, kept)
    print(f"{len(kept)} answers from {cfg.outputs} -> {out}", file=sys.stderr)
    return out


def _load(cfg: GenerateConfig):
    import torch
    from transformers import AutoTokenizer

    from contract.models import compute_dtype, load_for_inference, resolve_model, run_compute_dtype

    adapter = resolve_adapter(cfg.adapter)
    tok_src = cfg.tokenizer or (adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else "")
    if not tok_src and adapter and (Path(adapter).parent / "tokenizer_config.json").is_file():
        tok_src = str(Path(adapter).parent)
    tok_src = tok_src or resolve_model(cfg.model)  # a Hub id, a folder, a .gguf file or a built-in name
    tokenizer = AutoTokenizer.from_pretrained(tok_src)
    if tokenizer.chat_template is None:
        raise ValueError(
            f"the tokenizer of {tok_src} has no chat template. Pass --tokenizer with the fine-tuned run's folder "
            "so the base model is prompted the way the candidate was trained."
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if cfg.device == "auto":
        device = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    else:
        device = cfg.device
    # the dtype the adapter was trained in (its run folder records it), else the project's one rule
    dtype = (run_compute_dtype(adapter) if adapter else None) or compute_dtype("auto", device)
    # an adapter is merged into the base as its training saw it (a QLoRA run's: NF4, dequantized)
    model = load_for_inference(cfg.model, adapter or None, dtype=dtype, device=device, quantization=cfg.quantization)
    return model, tokenizer, adapter, tok_src, device


def end_of_turn_ids(tokenizer, model) -> list[int]:
    ids = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, gen_eos):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in END_OF_TURN if t in vocab)
    return sorted(ids)


def render_prompts(tokenizer, texts: list[str], system_prompt: str = "") -> list[str]:
    out = []
    for text in texts:
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
            {"role": "user", "content": text}
        ]
        out.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    return out


def generate_batch(model, tokenizer, texts: list[str], cfg: GenerateConfig, eos_ids: list[int]) -> tuple[list[str], list[int]]:
    """One left-padded batch; returns the decoded answers and their token counts."""
    import torch

    enc = tokenizer(render_prompts(tokenizer, texts, cfg.system_prompt), return_tensors="pt",
                    padding=True, add_special_tokens=False).to(model.device)
    kwargs = dict(max_new_tokens=cfg.max_new_tokens, eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id,
                  repetition_penalty=cfg.repetition_penalty)
    if cfg.temperature > 0:
        kwargs.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        out = model.generate(**enc, **kwargs)
    new = out[:, enc["input_ids"].shape[1]:]
    answers, lengths = [], []
    eos = set(eos_ids)
    for row in new.tolist():
        n = next((i for i, t in enumerate(row) if t in eos), len(row))
        answers.append(tokenizer.decode(row[:n], skip_special_tokens=True).strip())
        lengths.append(n)
    return answers, lengths


def generate(cfg: GenerateConfig, prompts, out: Path) -> Path:
    from tqdm.auto import tqdm
    from transformers import set_seed

    done: dict[str, dict] = {}
    if out.is_file():
        for row in read_records(out):
            done[row["id"]] = row
    adapter = resolve_adapter(cfg.adapter)
    clash = [r["id"] for r in done.values() if (r.get("model"), r.get("adapter") or "") != (cfg.model, adapter)
             or (r.get("config") or {}).get("quantization", "none") != cfg.quantization]
    if clash:
        raise ValueError(f"{out} already holds answers from another model/adapter/quantization (e.g. {clash[0]}); "
                         "use another --out, or delete it to start over")
    model, tokenizer, adapter, tok_src, device = _load(cfg)
    gen_cfg = {k: v for k, v in dataclasses.asdict(cfg).items()
               if k in ("batch_size", "max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed", "system_prompt",
                        "quantization")}
    template_sha = hashlib.sha256((tokenizer.chat_template or "").encode()).hexdigest()[:16]
    gen_cfg.update(tokenizer=tok_src, chat_template_sha256=template_sha, device=device,
                   parameters=int(sum(p.numel() for p in model.parameters())))
    training = training_provenance(adapter)
    if training:
        gen_cfg["training"] = training
    generator = generator_name(cfg)
    pending = [p for p in prompts if p.id not in done]
    if done:
        print(f"resuming: {len(done)} answers already in {out}, {len(pending)} to go", file=sys.stderr)
    set_seed(cfg.seed)
    eos_ids = end_of_turn_ids(tokenizer, model)
    # longest prompts first: less padding per batch, and an out-of-memory shows up at once
    pending.sort(key=lambda p: -len(p.prompt))
    bar = tqdm(total=len(pending), desc=f"generate {generator}", disable=not cfg.progress, file=sys.stderr, unit="prompt")
    started = time.perf_counter()
    for i in range(0, len(pending), cfg.batch_size):
        batch = pending[i:i + cfg.batch_size]
        answers, lengths = generate_batch(model, tokenizer, [p.prompt for p in batch], cfg, eos_ids)
        rows = []
        for p, answer, n in zip(batch, answers, lengths):
            rows.append({
                "id": p.id, "prompt": p.prompt, "category": p.category, "output": answer,
                "generator": generator, "model": cfg.model, "adapter": adapter or None,
                "config": {**gen_cfg, "new_tokens": n, "hit_max_new_tokens": n >= cfg.max_new_tokens},
                **({"reference": p.reference} if p.reference else {}),
            })
            done[p.id] = rows[-1]
        append_jsonl(out, rows)
        bar.update(len(batch))
    bar.close()
    order = {p.id: i for i, p in enumerate(prompts)}
    write_jsonl(out, sorted(done.values(), key=lambda r: order.get(r["id"], len(order))))
    took = time.perf_counter() - started
    print(f"{len(pending)} new answers in {took:.1f}s ({len(done)} in {out})", file=sys.stderr)
    for line in flag_answers(list(done.values())):
        print(line, file=sys.stderr)
    return out


def flag_answers(rows: list[dict]) -> list[str]:
    """Warnings for answers that are empty or stopped at --max-new-tokens (cut short), naming the first ids."""
    lines = []
    empty = [r["id"] for r in rows if not (r.get("output") or "").strip()]
    cut = [r["id"] for r in rows if (r.get("config") or {}).get("hit_max_new_tokens")]
    if empty:
        lines.append(f"warning: {len(empty)} of {len(rows)} answers are empty (e.g. {', '.join(empty[:5])})")
    if cut:
        limit = (rows[0].get("config") or {}).get("max_new_tokens")
        lines.append(f"warning: {len(cut)} of {len(rows)} answers stopped at --max-new-tokens {limit} and are cut "
                     f"short (e.g. {', '.join(cut[:5])}); raise it for complete answers")
    return lines


def load_references(path: str) -> dict[str, str]:
    """Reference answers by id and by prompt text: a prompt file with 'reference', or outputs/generations."""
    refs: dict[str, str] = {}
    for row in read_records(path):
        text = row.get("prompt") or row.get("instruction") or ""
        value = row.get("reference") if row.get("reference") is not None else row.get("output")
        if value is None:
            continue
        if row.get("id"):
            refs[str(row["id"])] = value
        if text:
            refs[" ".join(text.split())] = value
    if not refs:
        raise ValueError(f"--references {path}: no 'reference' or 'output' fields")
    return refs


__all__ = ["main", "generate", "flag_answers", "import_outputs", "load_references", "resolve_adapter"]
