"""The typed settings of eval's commands: each field documented once, defaults only here.

The same dataclasses give the command-line flags (``--max-new-tokens``), the
keys of ``python -m eval run``'s YAML file (``max_new_tokens``), and the
provenance saved beside every artifact. Unknown keys are an error.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _f(default: Any, help: str, **meta: Any):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class GenerateConfig:
    prompts: str = _f("", "Prompt file, JSONL or JSON: {id, prompt|instruction, category} (AlpacaEval's format too).", required=True)
    out: str = _f("", "generations.jsonl to write; prompts already in it are skipped (resume).", required=True)
    model: str = _f("", "Model folder or Hub id (the base when --adapter is given).")
    adapter: str = _f("", "PEFT adapter folder (a finetune run folder works: its adapter is found inside).")
    outputs: str = _f("", "Instead of a model: a file of existing outputs (AlpacaEval's {instruction, output, "
                          "generator}, or generations.jsonl) to use as this side's answers.")
    tokenizer: str = _f("", "Tokenizer and chat template to use (default: the adapter's if it has one, else the "
                            "model's). Use the fine-tuned run's to prompt its base model the same way.")
    generator: str = _f("", "Name of this system in judgments and the report (default: from the adapter or model).")
    batch_size: int = _f(8, "Prompts per generate() call (left padding).")
    max_new_tokens: int = _f(256, "Longest answer, in tokens; generation also stops at the end-of-turn token.")
    temperature: float = _f(0.0, "0 decodes greedily; above 0 samples (LIMA used 0.7 with top-p 0.9).")
    top_p: float = _f(0.9, "Nucleus sampling mass when temperature > 0.")
    repetition_penalty: float = _f(1.0, "Penalty on repeated tokens (LIMA used 1.2); 1.0 is none.")
    seed: int = _f(0, "Random seed (sampling and anything else random).")
    system_prompt: str = _f("", "Optional system message placed before every prompt.")
    limit: int = _f(0, "Use only the first N prompts (0: all).")
    device: str = _f("auto", "auto, cpu, cuda, cuda:1, mps …")
    progress: bool = _f(True, "Show a progress bar.")


@dataclass
class JudgeArgs:
    a: str = _f("", "generations.jsonl of the system under test (A: the verdict is from its side).")
    b: str = _f("", "generations.jsonl of the reference (B), or AlpacaEval outputs.")
    out: str = _f("", "judgments.jsonl to write (LLM judges, and human pull).")
    judge: str = _f("lima-three-way", "Judge name (a folder of eval/judges) or a judge folder path.")
    backend: str = _f("openai", "openai (any OpenAI-compatible endpoint), transformers (alias local) or human (Argilla).")
    model: str = _f("", "Judge model: the endpoint's model name (env EVAL_JUDGE_MODEL), or a local path for transformers.")
    base_url: str = _f("", "OpenAI-compatible base URL (env EVAL_JUDGE_BASE_URL, then OPENAI_BASE_URL). The key is "
                           "read from EVAL_JUDGE_API_KEY or OPENAI_API_KEY, never from a flag.")
    judge_adapter: str = _f("", "transformers: a PEFT adapter for the judge model.")
    decoding: str = _f("constrained", "transformers: constrained (score the verdict strings) or generate (free text + parser).")
    references: str = _f("", "File with reference answers for reference-guided judges: a prompt file with "
                             "'reference', or generations/outputs whose 'output' is the reference.")
    concurrency: int = _f(8, "Requests in flight at once (openai backend).")
    max_cost: float = _f(0.0, "Stop cleanly once this many USD are spent (0: no cap); what was judged is written.")
    price_input: float = _f(-1.0, "USD per million prompt tokens (env EVAL_JUDGE_PRICE_INPUT; -1: from env/config).")
    price_output: float = _f(-1.0, "USD per million completion tokens (env EVAL_JUDGE_PRICE_OUTPUT).")
    timeout: float = _f(60.0, "Seconds per request before it is retried.")
    max_retries: int = _f(6, "Retries per request on 429, 5xx, timeouts.")
    max_unparseable: float = _f(-1.0, "Fail when more than this fraction of pairs has no parseable verdict "
                                      "(-1: the judge config's max_unparseable).")
    cache_dir: str = _f("", "Judgment cache folder (default ~/.cache/curated-align/judge).")
    no_cache: bool = _f(False, "Do not read or write the cache.")
    limit: int = _f(0, "Judge only the first N pairs (0: all).")
    progress: bool = _f(True, "Show a progress bar.")
    # human (Argilla) backend
    dataset: str = _f("", "human: the Argilla dataset name (default: eval-ab-<A>-vs-<B>).")
    workspace: str = _f("", "human: the curation workspace folder (credentials), or use ARGILLA_API_URL/ARGILLA_API_KEY.")
    argilla_workspace: str = _f("", "human: the Argilla workspace name (default: the server's first workspace).")
    overlap: int = _f(2, "human: annotators per pair (Argilla TaskDistribution min_submitted), for agreement.")
    seed: int = _f(0, "human: seed of the per-pair A/B order randomization.")


@dataclass
class ReportArgs:
    judgments: list = _f([], "One or more judgments.jsonl files (LLM and human).", required=True, nargs="+")
    out: str = _f("", "Folder for report.html, report.md, charts and summary.json.", required=True)
    title: str = _f("Pairwise evaluation", "Report title.")
    manifest: str = _f("", "The training data's manifest.json (its sha256 and counts go in the provenance).")
    run_dir: str = _f("", "The finetune run folder (its resolved config goes in the provenance).")
    samples: int = _f(6, "Sample pairs shown per judge.")
    bootstrap: int = _f(2000, "Paired-bootstrap resamples for the win-rate interval.")
    seed: int = _f(0, "Seed of the bootstrap and of the sample choice.")


def add_arguments(parser: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per dataclass field, with its help text and default."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        meta = dict(f.metadata)
        help_text = meta.pop("help")
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kwargs: dict[str, Any] = {"dest": f.name, "help": f"{help_text} (default: {default!r})"}
        if meta.get("required"):
            kwargs["help"] = help_text
            kwargs["required"] = True
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
            kwargs["default"] = default
        elif isinstance(default, list):
            kwargs["nargs"] = meta.get("nargs", "+")
            kwargs["default"] = default
        else:
            kwargs["type"] = type(default)
            kwargs["default"] = default
        parser.add_argument(flag, **kwargs)


def from_namespace(cls, ns: argparse.Namespace):
    return cls(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)})


def from_mapping(cls, data: dict, where: str) -> Any:
    """Build ``cls`` from a YAML mapping; unknown keys and wrong types are reported together."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    problems = [f"{where}: unknown key {k!r} (known: {', '.join(names)})" for k in data if k not in names]
    values = {}
    for k, v in data.items():
        if k not in names:
            continue
        f = names[k]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, bool) and not isinstance(v, bool):
            problems.append(f"{where}.{k}: expected true/false, got {v!r}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            try:
                v = type(default)(v)
            except (TypeError, ValueError):
                problems.append(f"{where}.{k}: expected a number, got {v!r}")
        elif isinstance(default, str) and v is not None:
            v = str(v)
        elif isinstance(default, list) and isinstance(v, str):
            v = [v]
        values[k] = v if v is not None else default
    if problems:
        raise ValueError("\n".join(problems))
    return cls(**values)
