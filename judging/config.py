"""Judge folders and backend settings: declared once with ``contract.config.option``, loaded, validated.

A judge is a folder ``judging/judges/<name>/`` with ``config.yaml`` (the fields of :class:`JudgeConfig`)
and ``prompt.txt``: chat messages in alpaca_eval's ``<|im_start|>role … <|im_end|>`` blocks with the
placeholders of :data:`PLACEHOLDERS`. A judge for conversations adds a second template for the turns
after the first (``multi_turn_prompt``), which sees the whole conversation (MT-Bench's ``-multi-turn``
prompts).

Where a judge runs is a :class:`BackendConfig`, resolved in this order (later wins): the field
defaults, the judge's ``backend:`` block, the environment, explicit arguments. The API key is never a
setting: it is read from the environment when the client is made, or passed in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from contract import config as cc

from .parsers import PARSERS, Unparseable, verdicts_of

JUDGES_DIR = Path(__file__).resolve().parent / "judges"

JUDGE_ALIASES = {"lima": "lima-three-way", "mtbench": "mtbench-pairwise", "mtbench-ref": "mtbench-reference",
                 "arena-hard": "arena-hard-5", "alpaca-eval-2": "logprob-preference"}
"""Short names accepted wherever a judge name is."""


# --------------------------------------------------------------------------- the judge's config.yaml


@dataclass
class JudgeConfig:
    """A judge's ``config.yaml``. Unknown keys are an error naming the closest known key."""

    name: str = cc.option("", "The judge's name; must equal its folder's name.", required=True)
    description: str = cc.option("", "One or two sentences for --help and the report.", required=True)
    mode: str = cc.option("", "pairwise (two outputs, a verdict) or pointwise (one output, a score).",
                          choices=("pairwise", "pointwise"), required=True)
    parser: str = cc.option("", "Name of the verdict parser in judging.parsers.PARSERS.", required=True)
    choices: dict = cc.option({}, "Verdict -> the exact reply text that expresses it (pairwise: the parser's "
                                  "verdicts, e.g. A, B, tie; pointwise: the scores). Used by constrained "
                                  "decoding; each must parse to its key.", required=True)
    requires_reference: bool = cc.option(False, "The prompt needs a reference answer ({reference}) for every item.")
    scale: list = cc.option([1, 5], "Pointwise only: the lowest and highest score.")
    temperature: float = cc.option(0.0, "Sampling temperature of the judge model.")
    max_tokens: int = cc.option(1024, "Longest judge reply, in tokens.")
    parse_retries: int = cc.option(1, "How many times an unparseable reply is asked again, each time with a "
                                      "repair message that names the verdict format (never the identical request).")
    max_unparseable: float = cc.option(0.1, "Fail the run when more than this fraction of judged items has no "
                                            "parseable verdict.")
    backend: dict = cc.option({}, "Default backend settings (fields of BackendConfig); the environment and flags "
                                  "that are actually given override them.")
    logprobs: bool = cc.option(False, "Pairwise: ask the endpoint for the verdict token's log-probabilities and "
                                      "score the preference as a probability (AlpacaEval 2); the parsed verdict "
                                      "is the fallback where none are returned.")
    strong_weight: float = cc.option(1.0, "Pairwise, for scales with strong verdicts (A>>B): how many wins a "
                                          "strong win counts as (Arena-Hard uses 3); 1 weighs all wins alike.")
    multi_turn_prompt: str = cc.option("", "A second template in the folder for turns after the first: it sees "
                                           "the whole conversation ({question_1}, {answer_1}, … or "
                                           "{answer_a_1}, {answer_b_1}, …).")
    reference_judge: str = cc.option("", "Use this judge instead for items whose category is in "
                                         "reference_categories and that have a reference answer (MT-Bench grades "
                                         "math, reasoning and coding against a reference).")
    reference_categories: list = cc.option([], "The categories routed to reference_judge.")

    # filled by load_judge, never read from YAML
    path: Optional[Path] = None
    template: str = ""
    multi_turn_template: str = ""

    @property
    def fingerprint(self) -> str:
        """Hash of everything that shapes how a reply is read (config and prompt template; not the backend
        block, nor the multi-turn template and the reference routing: what they change is in the rendered
        messages, which are part of every cache key anyway).

        Fields added after v1 enter the hash only when set away from their default, so the caches of
        judges that do not use them stay valid."""
        canon = {}
        for f in dataclasses.fields(self):
            if f.name in _NOT_HASHED:
                continue
            value = getattr(self, f.name)
            if f.name in _V1_FIELDS or value != _default(f):
                canon[f.name] = value
        text = json.dumps(canon, sort_keys=True, default=str) + "\x00" + self.template
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def messages_template(self, multi_turn: bool = False) -> list[dict]:
        return _split_messages(self.multi_turn_template if multi_turn else self.template)

    @property
    def verdicts(self) -> tuple[str, ...]:
        """The keys ``choices`` must have: the parser's verdicts (pairwise) or the scores (pointwise)."""
        if self.mode == "pointwise":
            return tuple(str(s) for s in range(int(self.scale[0]), int(self.scale[1]) + 1))
        return verdicts_of(self.parser)

    def parse(self, reply: str):
        fn = PARSERS[self.parser]
        if self.mode == "pointwise":
            return fn(reply, tuple(self.scale))
        return fn(reply)

    def format_hint(self) -> str:
        """The verdict format in words, for the repair message after an unparseable reply."""
        return ", ".join(repr(v) for v in self.choices.values())


_NOT_HASHED = {"backend", "path", "template", "multi_turn_template", "multi_turn_prompt", "reference_judge",
               "reference_categories"}
_V1_FIELDS = {"name", "description", "mode", "parser", "choices", "requires_reference", "scale", "temperature",
              "max_tokens", "parse_retries", "max_unparseable"}
_INTERNAL = ("path", "template", "multi_turn_template")


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


PLACEHOLDERS = ("instruction", "output_a", "output_b", "output", "reference")
_PLACEHOLDER_RE = re.compile(r"\{(instruction|output_a|output_b|output|reference"
                             r"|question_\d+|answer_\d+|answer_[ab]_\d+|ref_answer_\d+)\}")
_MSG_RE = re.compile(r"<\|im_start\|>(system|user|assistant)\n(.*?)\n?<\|im_end\|>", re.S)


def _split_messages(template: str) -> list[dict]:
    found = _MSG_RE.findall(template)
    if not found:
        return [{"role": "user", "content": template.strip()}]
    return [{"role": role, "content": content.strip("\n")} for role, content in found]


def list_judges() -> list[str]:
    return sorted(p.name for p in JUDGES_DIR.iterdir() if (p / "config.yaml").is_file())


def load_judge(name_or_path: str | Path | JudgeConfig) -> JudgeConfig:
    """Load and validate a judge by name (``judging/judges/<name>``), alias, or folder path.

    Every problem is reported at once in one ``ValueError`` that names the file."""
    if isinstance(name_or_path, JudgeConfig):
        return name_or_path
    path = Path(name_or_path)
    if not (path / "config.yaml").is_file():
        path = JUDGES_DIR / JUDGE_ALIASES.get(str(name_or_path), str(name_or_path))
    if not (path / "config.yaml").is_file():
        raise ValueError(f"no judge {name_or_path!r}: known judges are {', '.join(list_judges())} (or give a folder)")
    where = str(path / "config.yaml")
    raw = cc.load_yaml(path / "config.yaml")
    problems = []
    known = [leaf.key for leaf in cc.leaves(JudgeConfig) if leaf.key not in _INTERNAL]
    unknown = sorted(str(k) for k in raw if str(k) not in known)
    if unknown:
        problems.append(f"unknown keys {unknown}" + "".join(cc.closest(k, known) for k in unknown))
    raw = {k: v for k, v in raw.items() if str(k) in known}
    try:
        cfg = cc.build(JudgeConfig, (raw, where))
    except cc.ConfigError as err:
        problems += err.issues
        cfg = None
    template_path = path / "prompt.txt"
    if not template_path.is_file():
        problems.append("no prompt.txt")
    if cfg is not None and not problems:
        cfg.path = path
        cfg.template = template_path.read_text(encoding="utf-8")
        cfg.choices = {str(k): str(v) for k, v in (cfg.choices or {}).items()}
        if cfg.multi_turn_prompt:
            mt = path / cfg.multi_turn_prompt
            if mt.is_file():
                cfg.multi_turn_template = mt.read_text(encoding="utf-8")
            else:
                problems.append(f"multi_turn_prompt: no file {cfg.multi_turn_prompt} in the folder")
        problems += validate_judge(cfg, path)
    if problems:
        raise ValueError(f"judge {path}: " + "; ".join(problems))
    return cfg


def validate_judge(cfg: JudgeConfig, path: Path) -> list[str]:
    """The checks that relate a judge's fields to each other and to its templates."""
    problems = []
    if cfg.name != path.name:
        problems.append(f"name {cfg.name!r} differs from the folder name {path.name!r}")
    if cfg.parser not in PARSERS:
        problems.append(f"parser {cfg.parser!r} unknown (known: {', '.join(PARSERS)})")
    used = set(_PLACEHOLDER_RE.findall(cfg.template))
    need = {"instruction", "output_a", "output_b"} if cfg.mode == "pairwise" else {"instruction", "output"}
    if cfg.requires_reference:
        need.add("reference")
    if need - used:
        problems.append(f"prompt.txt lacks placeholders {sorted(need - used)}")
    if "reference" in used and not cfg.requires_reference:
        problems.append("prompt.txt uses {reference} but requires_reference is false")
    if cfg.multi_turn_template:
        mt_used = set(_PLACEHOLDER_RE.findall(cfg.multi_turn_template))
        mt_need = {"question_1", "question_2"} | ({"answer_a_1", "answer_b_1", "answer_a_2", "answer_b_2"}
                                                 if cfg.mode == "pairwise" else {"answer_1", "answer_2"})
        if cfg.requires_reference:
            mt_need |= {"ref_answer_1", "ref_answer_2"}
        if mt_need - mt_used:
            problems.append(f"{cfg.multi_turn_prompt} lacks placeholders {sorted(mt_need - mt_used)}")
    if cfg.mode == "pointwise" and (len(cfg.scale) != 2 or int(cfg.scale[0]) >= int(cfg.scale[1])):
        problems.append(f"scale must be [lowest, highest], not {cfg.scale}")
    if cfg.mode == "pointwise" and cfg.logprobs:
        problems.append("logprobs: is for pairwise judges")
    if cfg.strong_weight < 1:
        problems.append(f"strong_weight must be at least 1, not {cfg.strong_weight}")
    if bool(cfg.reference_judge) != bool(cfg.reference_categories):
        problems.append("reference_judge and reference_categories go together")
    expected = set(cfg.verdicts)
    if set(cfg.choices) != expected:
        problems.append(f"choices must have exactly the keys {sorted(expected)}, has {sorted(cfg.choices)}")
    elif cfg.parser in PARSERS:
        for key, text in cfg.choices.items():
            try:
                got = cfg.parse(text)
            except Unparseable:
                got = None
            if str(got) != key:
                problems.append(f"choice {key!r}: {text!r} parses to {got!r}")
    try:
        cc.build(BackendConfig, (cfg.backend, f"{path / 'config.yaml'} backend:"))
    except cc.ConfigError as err:
        problems += [f"backend: {issue}" for issue in err.issues]
    return problems


def render(cfg: JudgeConfig, multi_turn: bool = False, **values: Any) -> list[dict]:
    """Fill the template's placeholders in one pass (braces inside the values stay as they are)."""

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if values.get(key) is None:
            raise ValueError(f"judge {cfg.name}: no value for {{{key}}}")
        return str(values[key])

    return [{"role": m["role"], "content": _PLACEHOLDER_RE.sub(sub, m["content"])}
            for m in cfg.messages_template(multi_turn)]


# --------------------------------------------------------------------------- where a judge (or a generator) runs


@dataclass
class BackendConfig:
    """Where and how requests run. Field docs are the reference for ``--help`` and the README."""

    kind: str = cc.option("openai", "openai (any OpenAI-compatible chat-completions endpoint: OpenAI, vLLM, "
                                    "llama.cpp, Ollama, …) or transformers (a local model).",
                          choices=("openai", "transformers"))
    model: Optional[str] = cc.option(None, "Model name at the endpoint (env EVAL_JUDGE_MODEL), or for transformers "
                                           "a local folder, Hub id, .gguf file or built-in name.")
    base_url: Optional[str] = cc.option(None, "Endpoint URL, e.g. http://localhost:8000/v1 (env EVAL_JUDGE_BASE_URL, "
                                              "then OPENAI_BASE_URL; unset means api.openai.com).")
    timeout: float = cc.option(60.0, "Seconds before one request is abandoned (and retried).")
    max_retries: int = cc.option(6, "Retries per request on 408, 409, 429, 5xx, timeouts and dropped connections, "
                                    "by the openai client: exponential backoff with jitter, or the server's "
                                    "retry-after.")
    price_input: float = cc.option(0.0, "USD per million prompt tokens (env EVAL_JUDGE_PRICE_INPUT), for cost "
                                        "accounting and --max-cost.")
    price_output: float = cc.option(0.0, "USD per million completion tokens (env EVAL_JUDGE_PRICE_OUTPUT).")
    adapter: Optional[str] = cc.option(None, "transformers only: a PEFT adapter folder applied on model.")
    decoding: str = cc.option("constrained", "transformers only: constrained scores each verdict string of the "
                                             "judge (its choices) by log-probability and picks the best; generate "
                                             "decodes freely and parses the reply like an API judge's.",
                              choices=("constrained", "generate"))
    max_context: Optional[int] = cc.option(None, "transformers only: longest prompt in tokens (default: the model's "
                                                 "maximum); longer prompts are cut from the left and the cut is counted.")

    def identity(self) -> dict[str, Any]:
        """What makes two replies comparable, for the cache key. No URL, no key."""
        if self.kind == "transformers":
            return {"kind": self.kind, "model": self.model, "adapter": self.adapter, "decoding": self.decoding}
        return {"kind": self.kind, "model": self.model}

    def describe(self) -> str:
        if self.kind == "transformers":
            extra = f"+{self.adapter}" if self.adapter else ""
            return f"transformers:{self.model}{extra} ({self.decoding})"
        return f"openai:{self.model}"


ROLES = {
    # role -> (environment prefix, the flag that names the model)
    "judge": ("EVAL_JUDGE", "--judge-model"),
    "generator": ("EVAL_GEN", "--model"),
    "teacher": ("CURATION_TEACHER", "--teacher-model"),
}


def env_names(role: str = "judge") -> dict[str, tuple[str, ...]]:
    prefix = ROLES[role][0]
    names = {
        "kind": (f"{prefix}_BACKEND",),
        "model": (f"{prefix}_MODEL",),
        "base_url": (f"{prefix}_BASE_URL", "OPENAI_BASE_URL"),
        "price_input": (f"{prefix}_PRICE_INPUT",),
        "price_output": (f"{prefix}_PRICE_OUTPUT",),
    }
    if role == "generator":
        names.pop("kind")
    return names


def api_key_env(role: str = "judge") -> tuple[str, ...]:
    return (f"{ROLES[role][0]}_API_KEY", "OPENAI_API_KEY")


def _from_env(role: str) -> dict[str, str]:
    out = {}
    for key, names in env_names(role).items():
        for name in names:
            if os.environ.get(name):
                out[key] = os.environ[name]
                break
    return out


def resolve_backend_config(defaults: dict | None = None, *, role: str = "judge", **overrides: Any) -> BackendConfig:
    """Defaults < a judge's ``backend:`` block < environment < ``overrides`` (``None`` or ``""`` = not given).

    Every problem in one ``ValueError``."""
    given = {k: v for k, v in overrides.items() if v is not None and v != ""}
    env_prefix, model_flag = ROLES[role]

    def check(cfg: BackendConfig) -> list[str]:
        if cfg.model:
            return []
        what = "judge model" if role == "judge" else "model"
        return [f"no {what}: set {env_prefix}_MODEL or pass {model_flag} "
                "(an endpoint's model name, or a local path for the transformers backend)"]

    return cc.build(BackendConfig, (defaults or {}, "judge config backend:"), (_from_env(role), "environment"),
                    (given, "arguments"), validate=check, title="invalid backend settings")
