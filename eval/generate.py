"""``python -m eval generate``: answers from a model to generations.jsonl.

    python -m eval generate --model HuggingFaceTB/SmolLM2-360M --adapter runs/lima \\
        --prompts data/eval-prompts/prompts.jsonl --out gens/lima.jsonl
    python -m eval generate --backend openai --model gpt-4o --prompts mt-bench --out gens/gpt-4o.jsonl

Three backends, one file format and one resume rule (prompts already in ``--out`` are skipped; the file
is rewritten in prompt order at the end):

- ``hf`` (default): a local transformers model (base + adapter, or merged), batched (left padding,
  longest prompts first), the chat template the model was trained with, greedy or seeded sampling,
  stopping at the end-of-turn token.
- ``openai``: any OpenAI-compatible endpoint (an API model as the reference; a vLLM or llama.cpp server
  for speed) through the judge engine's runner: the key from ``EVAL_GEN_API_KEY``/``OPENAI_API_KEY``,
  concurrency, the client's retries, a reply cache, cost and ``--max-cost``.
- ``vllm``: vLLM in this process on a GPU, where the package is installed.

Multi-turn prompts (MT-Bench's two turns) are answered turn by turn, each turn with the model's own
earlier answers in the context. ``--outputs FILE`` takes the answers from a file instead (AlpacaEval's
``{instruction, output, generator}``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path

from .config import GenerateConfig
from .files import Prompt, append_jsonl, load_generations, load_prompts, read_records, resolve_prompts, write_jsonl

END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "curated-align" / "generate"


class GenerationIncomplete(RuntimeError):
    """Some prompts got no answer (HTTP errors after the client's retries); the others are written."""


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
    if cfg.adapter and cfg.backend == "openai":
        issues.append("--adapter is for the hf and vllm backends (an endpoint serves its own weights)")
    if cfg.batch_size < 1:
        issues.append("--batch-size must be at least 1")
    if cfg.max_new_tokens < 1:
        issues.append("--max-new-tokens must be at least 1")
    if cfg.temperature < 0:
        issues.append("--temperature must be >= 0")
    if cfg.concurrency < 1:
        issues.append("--concurrency must be at least 1")
    if not resolve_prompts(cfg.prompts).is_file():
        issues.append(f"--prompts {cfg.prompts}: no such file (or a built-in set: mt-bench)")
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
            **({"turns": r["turns"], "outputs": r["outputs"]} if r.get("turns") else {}),
        })
    if not kept:
        raise ValueError(f"--outputs {cfg.outputs}: none of its answers matches a prompt (by id or by text)")
    if missing:
        print(f"warning: {len(missing)} prompt(s) have no answer in {cfg.outputs} (first: {missing[:5]})", file=sys.stderr)
    write_jsonl(out, kept)
    print(f"{len(kept)} answers from {cfg.outputs} -> {out}", file=sys.stderr)
    return out


# ---------------------------------------------------------------------------------------------- the spine


def generate(cfg: GenerateConfig, prompts: list[Prompt], out: Path) -> Path:
    """Resume from ``out``, answer the pending prompts turn by turn with the chosen backend, write in order."""
    done: dict[str, dict] = {}
    if out.is_file():
        for row in read_records(out):
            done[row["id"]] = row
    adapter = resolve_adapter(cfg.adapter) if cfg.backend != "openai" else ""
    identity = answer_identity(cfg, adapter)
    for r in done.values():
        stored = {"model": r.get("model"), "adapter": r.get("adapter") or "", **(r.get("config") or {})}
        differ = [k for k, v in identity.items() if stored.get(k, RESUME_DEFAULTS.get(k)) != v]
        if differ:
            raise ValueError(
                f"{out} already holds answers made otherwise (record {r['id']}: {', '.join(differ)} differ"
                + (": the adapter was trained again since" if "adapter_sha256" in differ else "")
                + "); use another --out, or delete it to start over")
    pending = [p for p in prompts if p.id not in done]
    if done:
        print(f"resuming: {len(done)} answers already in {out}, {len(pending)} to go", file=sys.stderr)
    started = time.perf_counter()
    backend = {"hf": HFGenerator, "openai": APIGenerator, "vllm": VLLMGenerator}[cfg.backend](cfg, adapter)
    if adapter:
        backend.provenance["adapter_sha256"] = identity["adapter_sha256"]
    generator = generator_name(cfg)
    failed: list[tuple[str, str]] = []
    stopped = False
    for chunk in backend.chunks(pending):
        answers = {p.id: [] for p in chunk}
        info = {p.id: [] for p in chunk}
        live = list(chunk)
        for turn in range(1, max(len(p.messages) for p in chunk) + 1):
            asked = [p for p in live if len(p.messages) >= turn]
            if not asked:
                break
            conversations = [_conversation(cfg, p, answers[p.id], turn) for p in asked]
            for p, result in zip(asked, backend.answer(conversations)):
                if isinstance(result, str):  # why there is no answer
                    if result == "budget":
                        stopped = True
                    else:
                        failed.append((p.id, result))
                    live.remove(p)
                    continue
                text, meta = result
                answers[p.id].append(text)
                info[p.id].append(meta)
        rows = [_row(cfg, p, answers[p.id], info[p.id], generator, adapter, backend.provenance) for p in live]
        for r in rows:
            done[r["id"]] = r
        append_jsonl(out, rows)
        if stopped:
            break
    backend.close()
    order = {p.id: i for i, p in enumerate(prompts)}
    write_jsonl(out, sorted(done.values(), key=lambda r: order.get(r["id"], len(order))))
    new = len(done) - (len(prompts) - len(pending))
    took = time.perf_counter() - started
    print(f"{new} new answers in {took:.1f}s ({len(done)} in {out})" + backend.summary(), file=sys.stderr)
    for line in flag_answers(list(done.values())):
        print(line, file=sys.stderr)
    if stopped:
        print(f"stopped: the --max-cost budget (${cfg.max_cost}) is spent; {len(prompts) - len(done)} prompts have no "
              "answer yet. Run the same command again with a larger budget to finish.", file=sys.stderr)
    if failed:
        raise GenerationIncomplete(f"{len(failed)} prompt(s) got no answer (first: {failed[0][0]}: {failed[0][1]}); "
                                   f"the other answers are in {out}: run the same command again to retry them")
    return out


# What makes an answer file's rows reusable on resume: the same system and the same decoding. A row written by an
# earlier version lacks the newer keys; these defaults stand for them.
RESUME_DEFAULTS = {"quantization": "none", "backend": "hf"}


def answer_identity(cfg: GenerateConfig, adapter: str) -> dict:
    """The settings a resumed file's rows must share with this run (``_row`` stores each in the row)."""
    identity = {"model": cfg.model, "adapter": adapter or "", "quantization": cfg.quantization,
                "backend": cfg.backend, "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature,
                "system_prompt": cfg.system_prompt, "seed": cfg.seed}
    if cfg.temperature > 0:
        identity["top_p"] = cfg.top_p
    if adapter:
        identity["adapter_sha256"] = adapter_sha256(adapter)
    return identity


def adapter_sha256(adapter: str) -> str:
    """The sha256 of the adapter's weights (what changes when the run is trained again)."""
    from contract.io import sha256_file

    weights = sorted(Path(adapter).glob("adapter_model.*"))
    return sha256_file(weights[0]) if weights else ""


def _conversation(cfg: GenerateConfig, p: Prompt, answers: list[str], turn: int) -> list[dict]:
    """The messages for ``turn``: every earlier user message with the model's own answer to it."""
    messages = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    for k, user in enumerate(p.messages[:turn], 1):
        messages.append({"role": "user", "content": user})
        if k < turn:
            messages.append({"role": "assistant", "content": answers[k - 1]})
    return messages


def _row(cfg: GenerateConfig, p: Prompt, answers: list[str], meta: list[dict], generator: str, adapter: str,
         provenance: dict) -> dict:
    first = meta[0] if meta else {}
    gen_cfg = {k: v for k, v in dataclasses.asdict(cfg).items()
               if k in ("batch_size", "max_new_tokens", "temperature", "top_p", "repetition_penalty", "seed",
                        "system_prompt", "backend", "quantization")}
    gen_cfg.update(provenance)
    gen_cfg.update(new_tokens=first.get("new_tokens"), hit_max_new_tokens=any(m.get("hit_max") for m in meta))
    if any("cost" in m for m in meta):
        gen_cfg.update(cost=sum(m.get("cost", 0.0) for m in meta),
                       tokens={k: sum(m.get("tokens", {}).get(k, 0) for m in meta) for k in ("prompt", "completion")})
    if p.turns:
        gen_cfg["new_tokens_per_turn"] = [m.get("new_tokens") for m in meta]
    return {
        "id": p.id, "prompt": p.prompt, "category": p.category, "output": answers[0],
        "generator": generator, "model": cfg.model, "adapter": adapter or None, "config": gen_cfg,
        **({"reference": p.reference} if p.reference else {}),
        **({"turns": p.turns, "outputs": answers} if p.turns else {}),
    }


# ---------------------------------------------------------------------------------------------- hf


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


def load_model(model_name: str, adapter: str, dtype, device: str, quantization: str = "none"):
    """The one place that loads a local model for generation: ``--model`` (a Hub id, a folder, a .gguf file or a
    built-in name), with ``--adapter`` merged into the base as its training saw it (a QLoRA run's: NF4,
    dequantized; contract.models.load_for_inference)."""
    from contract.models import load_for_inference

    return load_for_inference(model_name, adapter or None, dtype=dtype, device=device, quantization=quantization)


def _tokenizer_source(cfg: GenerateConfig, adapter: str) -> str:
    tok_src = cfg.tokenizer or (adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else "")
    if not tok_src and adapter and (Path(adapter).parent / "tokenizer_config.json").is_file():
        tok_src = str(Path(adapter).parent)
    from contract.models import resolve_model

    return tok_src or resolve_model(cfg.model)  # a Hub id, a folder, a .gguf file or a built-in name


def _load(cfg: GenerateConfig):
    import torch
    from transformers import AutoTokenizer

    from contract.models import compute_dtype, run_compute_dtype

    adapter = resolve_adapter(cfg.adapter)
    tok_src = _tokenizer_source(cfg, adapter)
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
    model = load_model(cfg.model, adapter, dtype, device, cfg.quantization)
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


def render_prompts(tokenizer, conversations: list, system_prompt: str = "") -> list[str]:
    """Chat-template each conversation (a list of messages, or one user message as text)."""
    out = []
    for conv in conversations:
        if isinstance(conv, str):
            conv = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
                {"role": "user", "content": conv}]
        out.append(tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False))
    return out


def generate_batch(model, tokenizer, conversations: list, cfg: GenerateConfig, eos_ids: list[int]) -> tuple[list[str], list[int]]:
    """One left-padded batch; returns the decoded answers and their token counts."""
    import torch

    enc = tokenizer(render_prompts(tokenizer, conversations, cfg.system_prompt), return_tensors="pt",
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


class HFGenerator:
    """Batches of prompts through transformers ``generate`` (longest first: less padding per batch, and an
    out-of-memory error shows up at once)."""

    def __init__(self, cfg: GenerateConfig, adapter: str):
        from transformers import set_seed

        self.cfg = cfg
        self.model, self.tokenizer, _, tok_src, device = _load(cfg)
        self.eos_ids = end_of_turn_ids(self.tokenizer, self.model)
        template_sha = hashlib.sha256((self.tokenizer.chat_template or "").encode()).hexdigest()[:16]
        self.provenance = {"tokenizer": tok_src, "chat_template_sha256": template_sha, "device": device,
                           "parameters": int(sum(p.numel() for p in self.model.parameters()))}
        training = training_provenance(adapter)
        if training:
            self.provenance["training"] = training
        set_seed(cfg.seed)
        self.bar = None

    def chunks(self, pending: list[Prompt]):
        from tqdm.auto import tqdm

        pending = sorted(pending, key=lambda p: -len(p.prompt))
        self.bar = tqdm(total=len(pending), desc=f"generate {generator_name(self.cfg)}", disable=not self.cfg.progress,
                        file=sys.stderr, unit="prompt")
        for i in range(0, len(pending), self.cfg.batch_size):
            yield pending[i:i + self.cfg.batch_size]
            self.bar.update(len(pending[i:i + self.cfg.batch_size]))

    def answer(self, conversations: list[list[dict]]) -> list:
        # the system prompt is already in each conversation
        answers, lengths = generate_batch(self.model, self.tokenizer, conversations,
                                          dataclasses.replace(self.cfg, system_prompt=""), self.eos_ids)
        return [(a, {"new_tokens": n, "hit_max": n >= self.cfg.max_new_tokens}) for a, n in zip(answers, lengths)]

    def summary(self) -> str:
        return ""

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------------------------------- openai


class APIGenerator:
    """Any OpenAI-compatible endpoint through the judge engine's runner: the same key handling,
    concurrency, retries, cache and budget as ``eval judge``."""

    def __init__(self, cfg: GenerateConfig, adapter: str):
        from judging import JudgeCache, Job, Runner, make_backend, resolve_backend_config

        self.cfg = cfg
        self.backend_cfg = resolve_backend_config(
            {}, role="generator", kind="openai", model=cfg.model, base_url=cfg.base_url or None, timeout=cfg.timeout,
            max_retries=cfg.max_retries, price_input=cfg.price_input, price_output=cfg.price_output)
        backend = make_backend(self.backend_cfg, role="generator")
        settings = {"task": "generate", "temperature": cfg.temperature, "max_tokens": cfg.max_new_tokens,
                    "top_p": cfg.top_p if cfg.temperature > 0 else None, "seed": cfg.seed}
        fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        job = Job(fingerprint, cfg.temperature, cfg.max_new_tokens, parse=lambda text: text, seed=cfg.seed,
                  top_p=settings["top_p"])
        cache = None if cfg.no_cache else JudgeCache(Path(cfg.cache_dir or DEFAULT_CACHE_DIR))
        self.runner = Runner(job, self.backend_cfg, backend, cache, concurrency=cfg.concurrency,
                             max_cost=cfg.max_cost or None, progress=cfg.progress, desc=f"generate {generator_name(cfg)}")
        self.provenance = {"endpoint_model": cfg.model, "backend_describe": self.backend_cfg.describe()}
        self.cost_total = 0.0

    def chunks(self, pending: list[Prompt]):
        size = max(32, 4 * self.cfg.concurrency)  # appended to --out after each chunk: a kill loses little
        for i in range(0, len(pending), size):
            yield pending[i:i + size]

    def answer(self, conversations: list[list[dict]]) -> list:
        from judging import Status

        results = []
        for o in self.runner.run(conversations):
            if o.status is Status.BUDGET:
                results.append("budget")
            elif not o.ok:
                results.append(o.error or o.status.value)
            else:
                self.cost_total += o.cost
                results.append((o.value, {"new_tokens": o.completion_tokens, "hit_max": o.finish_reason == "length",
                                          "cost": o.cost, "tokens": o.tokens, "cached": o.cached}))
        return results

    def summary(self) -> str:
        s = self.runner.stats
        return (f"; {s.requests} requests ({s.cached} cached), {s.prompt_tokens}+{s.completion_tokens} tokens, "
                f"${s.cost:.4f} spent in this run; the replies received cost ${self.cost_total:.4f} in all, cached ones included")

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------- vllm


class VLLMGenerator:
    """vLLM's offline engine in this process (a CUDA GPU): every pending prompt of a turn in one call."""

    def __init__(self, cfg: GenerateConfig, adapter: str):
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise ValueError("--backend vllm needs the vllm package on a machine with a CUDA GPU (pip install vllm); "
                             "or serve the model with `vllm serve` and use --backend openai") from None
        from contract.models import compute_dtype, dtype_name, run_compute_dtype

        self.cfg = cfg
        self.adapter = adapter
        dtype = (run_compute_dtype(adapter) if adapter else None) or compute_dtype("auto", "cuda")
        tok_src = _tokenizer_source(cfg, adapter)
        self.llm = LLM(model=cfg.model, tokenizer=tok_src, dtype=dtype_name(dtype), seed=cfg.seed,
                       enable_lora=bool(adapter))
        sampling = dict(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                        repetition_penalty=cfg.repetition_penalty, seed=cfg.seed)
        if cfg.temperature > 0:
            sampling["top_p"] = cfg.top_p
        self.params = SamplingParams(**sampling)
        self.lora = None
        if adapter:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, adapter)
        self.provenance = {"tokenizer": tok_src, "engine": "vllm", "dtype": dtype_name(dtype)}
        training = training_provenance(adapter)
        if training:
            self.provenance["training"] = training

    def chunks(self, pending: list[Prompt]):
        if pending:
            yield pending

    def answer(self, conversations: list[list[dict]]) -> list:
        outs = self.llm.chat(conversations, self.params, lora_request=self.lora, use_tqdm=self.cfg.progress)
        results = []
        for o in outs:
            c = o.outputs[0]
            results.append((c.text.strip(), {"new_tokens": len(c.token_ids), "hit_max": c.finish_reason == "length"}))
        return results

    def summary(self) -> str:
        return ""

    def close(self) -> None:
        pass


def load_references(path: str) -> dict[str, str]:
    """Reference answers by id and by prompt text: a prompt file with 'reference', or outputs/generations."""
    refs: dict[str, str] = {}
    for row in read_records(resolve_prompts(path)):
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


__all__ = ["main", "generate", "flag_answers", "import_outputs", "load_model", "load_references", "resolve_adapter",
           "GenerationIncomplete"]
