"""The typed settings of eval's commands: field declarations only (``contract.config.option``).

The same dataclasses give the command-line flags (``--max-new-tokens``; ``--max_new_tokens`` works
too), the keys of ``python -m eval run``'s YAML file (``max_new_tokens``), and the provenance saved
beside every artifact. Unknown keys are an error naming the closest key; every problem is reported at
once. A setting left unset (``None``) comes from elsewhere, named in its help: a judge folder's
``backend:`` block is overridden only by a flag that was actually given. The mechanism is
``contract.config``, shared by the three command lines.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Optional

from contract import config as cc


def _f(default: Any, help: str, *, required: bool = False, nargs: str | None = None, **kw: Any):
    return cc.option(default, help, required=required, **kw)


@dataclass
class GenerateConfig:
    prompts: str = _f("", "Prompt file, JSONL or JSON: {id, prompt|instruction|turns, category} (AlpacaEval's and "
                          "MT-Bench's formats too), or a built-in set: mt-bench (80 two-turn questions).", required=True)
    out: str = _f("", "generations.jsonl to write; prompts already in it are skipped (resume).", required=True)
    backend: str = _f("hf", "hf (a local transformers model, batched), openai (any OpenAI-compatible endpoint: an API "
                            "model, a vLLM or llama.cpp server) or vllm (vLLM in this process, on a GPU).",
                      choices=("hf", "openai", "vllm"))
    model: str = _f("", "hf: a model folder, Hub id, .gguf file or built-in name; vllm: a model folder or Hub id (both: "
                        "the base when --adapter is given); openai: the endpoint's "
                        "model name (e.g. gpt-4o).")
    adapter: str = _f("", "PEFT adapter folder (a finetune run folder works: its adapter is found inside).")
    outputs: str = _f("", "Instead of a model: a file of existing outputs (AlpacaEval's {instruction, output, "
                          "generator}, or generations.jsonl) to use as this side's answers.")
    tokenizer: str = _f("", "Tokenizer and chat template to use (default: the adapter's if it has one, else the "
                            "model's). Use the fine-tuned run's to prompt its base model the same way.")
    quantization: str = _f("none", "none, or nf4: load --model quantized to 4-bit NF4 and dequantized, the very "
                                   "weights a QLoRA run starts from (to compare an adapter with its own starting "
                                   "point). With --adapter, the run's own setting applies: a QLoRA adapter is always "
                                   "merged into the NF4 base it trained on.", choices=("none", "nf4"))
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
    # openai backend (the judge engine's runner: cache, concurrency, retries, budget)
    base_url: str = _f("", "openai: the endpoint (env EVAL_GEN_BASE_URL, then OPENAI_BASE_URL; unset: api.openai.com). "
                           "The key is read from EVAL_GEN_API_KEY or OPENAI_API_KEY, never from a flag.",
                       group="openai")
    concurrency: int = _f(8, "openai: requests in flight at once.", group="openai")
    max_cost: float = _f(0.0, "openai: stop cleanly once this many USD are spent (0: no cap); the answers so far are "
                              "written and a re-run finishes.", group="openai")
    price_input: Optional[float] = _f(None, "openai: USD per million prompt tokens (env EVAL_GEN_PRICE_INPUT).",
                                      group="openai")
    price_output: Optional[float] = _f(None, "openai: USD per million completion tokens (env EVAL_GEN_PRICE_OUTPUT).",
                                       group="openai")
    timeout: float = _f(120.0, "openai: seconds per request before it is retried.", group="openai")
    max_retries: int = _f(6, "openai: retries per request on 429, 5xx and timeouts (the openai client's).",
                          group="openai")
    cache_dir: str = _f("", "openai: reply cache folder (default ~/.cache/curated-align/generate).", group="openai")
    no_cache: bool = _f(False, "openai: do not read or write the cache.", group="openai")


@dataclass
class JudgeArgs:
    a: str = _f("", "generations.jsonl of the system under test (A: the verdict is from its side).")
    b: str = _f("", "generations.jsonl of the reference (B), or AlpacaEval outputs. Not for single-answer "
                    "(pointwise) judges such as mtbench-single, which grade --a alone.")
    out: str = _f("", "judgments.jsonl to write (LLM judges, and human pull).")
    judge: str = _f("lima-three-way", "Judge name (a folder of judging/judges) or a judge folder path.")
    backend: Optional[str] = _f(None, "openai (any OpenAI-compatible endpoint), transformers (alias local) or human "
                                      "(Argilla). Default: the judge folder's backend block, else openai.",
                                choices=("openai", "transformers", "local", "human"))
    model: str = _f("", "Judge model: the endpoint's model name (env EVAL_JUDGE_MODEL), or a local path for transformers.",
                    aliases=("judge_model",))
    base_url: str = _f("", "OpenAI-compatible base URL (env EVAL_JUDGE_BASE_URL, then OPENAI_BASE_URL). The key is "
                           "read from EVAL_JUDGE_API_KEY or OPENAI_API_KEY, never from a flag.")
    judge_adapter: str = _f("", "transformers: a PEFT adapter for the judge model.")
    decoding: Optional[str] = _f(None, "transformers: constrained (score the verdict strings) or generate (free "
                                       "text + parser). Default: the judge folder's backend block, else constrained.",
                                 choices=("constrained", "generate"))
    references: str = _f("", "File with reference answers for reference-guided judges: a prompt file with "
                             "'reference', or generations/outputs whose 'output' is the reference.")
    concurrency: int = _f(8, "Requests in flight at once (openai backend).")
    max_cost: float = _f(0.0, "Stop cleanly once this many USD are spent (0: no cap); what was judged is written.")
    price_input: Optional[float] = _f(None, "USD per million prompt tokens. Default: env EVAL_JUDGE_PRICE_INPUT, "
                                            "else the judge folder's backend block, else 0.")
    price_output: Optional[float] = _f(None, "USD per million completion tokens. Default: env "
                                             "EVAL_JUDGE_PRICE_OUTPUT, else the judge folder's backend block, else 0.")
    timeout: Optional[float] = _f(None, "Seconds per request before it is retried. Default: the judge folder's "
                                        "backend block, else 60.")
    max_retries: Optional[int] = _f(None, "Retries per request on 429, 5xx, timeouts. Default: the judge folder's "
                                          "backend block, else 6.")
    max_unparseable: Optional[float] = _f(None, "Fail when more than this fraction of pairs has no parseable "
                                                "verdict. Default: the judge config's max_unparseable.")
    min_verdicts: float = _f(0.9, "Fail (exit 1, the summary says why) when fewer than this share of the pairs "
                                  "asked got a verdict; pairs the --max-cost budget left out do not count.")
    cache_dir: str = _f("", "Judgment cache folder (default ~/.cache/curated-align/judge).")
    no_cache: bool = _f(False, "Do not read or write the cache.")
    retry_unparseable: bool = _f(False, "Ask again the requests whose cached outcome is 'no verdict' (by default a "
                                        "re-run takes them from the cache and makes no request).")
    turns: list = _f([], "Turns of multi-turn prompts to judge, e.g. 1 2 (default: every turn both sides answered; "
                         "later turns need a judge with a multi-turn prompt).")
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
    selections: str = _f("", "A selections.json (written by eval study): each system's training selection "
                             "(strategy, size, profile) shown beside its outcome.")
    samples: int = _f(6, "Sample pairs shown per judge.")
    bootstrap: int = _f(2000, "Paired-bootstrap resamples for the win-rate interval.")
    seed: int = _f(0, "Seed of the bootstrap and of the sample choice.")


@dataclass
class PairsArgs:
    out: str = _f("", "Preference pairs to write (JSONL: prompt/chosen/rejected messages, id, source, meta).",
                  required=True)
    judgments: list = _f([], "judgments.jsonl files from eval judge (LLM: order-consistent verdicts only; human "
                             "A/B: the majority vote).")
    edits: list = _f([], "Curation exports (data/<name>/train.jsonl): an answer a curator edited is chosen over "
                         "the original.")
    scored: list = _f([], "Files of scored answers per prompt ({id, prompt, candidates: [{output, score}]}): the "
                          "best over the worst.")
    min_margin: float = _f(1.0, "--scored: smallest score difference between chosen and rejected.")


def add_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One ``--flag`` per dataclass field, with its help text and default."""
    cc.add_arguments(parser, cls)


def from_namespace(cls, ns: argparse.Namespace):
    """``cls`` from the flags given on the command line (defaults for the rest), checked."""
    return cc.build(cls, (cc.given(ns), "command line"))


def from_mapping(cls, data: dict, where: str) -> Any:
    """Build ``cls`` from a YAML mapping; unknown keys and wrong types are reported together."""
    return cc.build(cls, (data, where))
