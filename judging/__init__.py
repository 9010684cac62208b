"""Judges: load them, render their prompts, run them through a backend with a cache.

The one judge abstraction of the project. ``eval`` compares two outputs per
prompt (pairwise, both orders); ``curation`` rates single responses 1–5
(pointwise) through the same judges, backends and cache::

    from judging import rate_many, Rating
    run = rate_many([(prompt, response), ...], "quality-rating", model="gpt-4o-mini")
    for r in run.results:        # aligned with the items
        if isinstance(r, Rating): print(r.score, r.rationale)
        else: print("failed:", r.error)   # a JudgeFailure, never None
    print(run.counts, run.cost, run.tokens)

A judge is a folder ``judging/judges/<name>/`` with ``config.yaml`` (fields of
:class:`JudgeConfig`) and ``prompt.txt``: chat messages in alpaca_eval's
``<|im_start|>role … <|im_end|>`` blocks, with the placeholders
``{instruction}``, ``{output_a}``, ``{output_b}``, ``{reference}`` (pairwise)
or ``{instruction}``, ``{output}`` (pointwise).

Pairwise judges see both orders. The verdict is kept only when both orders
agree; a verdict that flips with the order becomes a tie and the pair is
marked inconsistent (MT-Bench's conservative rule).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import yaml

from .backends import (
    BackendConfig,
    BackendError,
    Completion,
    FatalBackendError,
    make_backend,
    resolve_backend_config,
)
from .cache import CachedReply, JudgeCache, cache_key
from .parsers import PARSERS, Unparseable

__all__ = [
    "BackendConfig",
    "FatalBackendError",
    "JudgeConfig",
    "JudgeFailure",
    "JudgeRunError",
    "Pair",
    "PairJudgment",
    "PairRun",
    "Rating",
    "RatingRun",
    "JUDGES_DIR",
    "judge_pairs",
    "list_judges",
    "load_judge",
    "make_backend",
    "rate_many",
    "resolve_backend_config",
]

JUDGES_DIR = Path(__file__).resolve().parent / "judges"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "curated-align" / "judge"


# --------------------------------------------------------------------------- judge config


@dataclass
class JudgeConfig:
    """A judge's ``config.yaml``. Unknown keys are an error."""

    name: str
    """The judge's name; must equal its folder's name."""
    description: str
    """One or two sentences for ``--help`` and the report."""
    mode: str
    """``pairwise`` (two outputs, a verdict A/B/tie) or ``pointwise`` (one output, a score)."""
    parser: str
    """Name of the verdict parser in :data:`judging.parsers.PARSERS`."""
    choices: dict[str, str]
    """Verdict → the exact reply text that expresses it (pairwise keys ``A``, ``B``, ``tie``;
    pointwise keys the scores). Used by constrained decoding; each must parse to its key."""
    requires_reference: bool = False
    """The prompt needs a reference answer (``{reference}``) for every item."""
    scale: list[int] = field(default_factory=lambda: [1, 5])
    """Pointwise only: the lowest and highest score."""
    temperature: float = 0.0
    """Sampling temperature of the judge model."""
    max_tokens: int = 1024
    """Longest judge reply, in tokens."""
    parse_retries: int = 1
    """How many times an unparseable reply is asked again (bypassing the cache)."""
    max_unparseable: float = 0.1
    """Fail the run when more than this fraction of judged items has no parseable verdict."""
    backend: dict[str, Any] = field(default_factory=dict)
    """Default backend settings (fields of :class:`BackendConfig`); the environment and flags override them."""

    # filled by load_judge, not read from YAML
    path: Path | None = None
    template: str = ""

    @property
    def fingerprint(self) -> str:
        """Hash of everything that shapes a verdict (config and template; not the backend block)."""
        canon = json.dumps({k: getattr(self, k) for k in _YAML_FIELDS if k != "backend"}, sort_keys=True)
        return hashlib.sha256((canon + "\x00" + self.template).encode()).hexdigest()[:16]

    @property
    def messages_template(self) -> list[dict]:
        return _split_messages(self.template)

    def parse(self, reply: str):
        fn = PARSERS[self.parser]
        if self.mode == "pointwise":
            return fn(reply, tuple(self.scale))
        return fn(reply)


_YAML_FIELDS = [f.name for f in dataclasses.fields(JudgeConfig) if f.name not in ("path", "template")]
_PLACEHOLDER_RE = re.compile(r"\{(instruction|output_a|output_b|output|reference)\}")
_MSG_RE = re.compile(r"<\|im_start\|>(system|user|assistant)\n(.*?)\n?<\|im_end\|>", re.S)


def _split_messages(template: str) -> list[dict]:
    found = _MSG_RE.findall(template)
    if not found:
        return [{"role": "user", "content": template.strip()}]
    return [{"role": role, "content": content.strip("\n")} for role, content in found]


JUDGE_ALIASES = {"lima": "lima-three-way", "mtbench": "mtbench-pairwise", "mtbench-ref": "mtbench-reference"}
"""Short names accepted wherever a judge name is."""


def list_judges() -> list[str]:
    return sorted(p.name for p in JUDGES_DIR.iterdir() if (p / "config.yaml").is_file())


def load_judge(name_or_path: str | Path | JudgeConfig) -> JudgeConfig:
    """Load and validate a judge by name (``judging/judges/<name>``) or folder path.

    Every problem is reported at once in one ``ValueError``.
    """
    if isinstance(name_or_path, JudgeConfig):
        return name_or_path
    path = Path(name_or_path)
    if not (path / "config.yaml").is_file():
        path = JUDGES_DIR / JUDGE_ALIASES.get(str(name_or_path), str(name_or_path))
    if not (path / "config.yaml").is_file():
        raise ValueError(f"no judge {name_or_path!r}: known judges are {', '.join(list_judges())} (or give a folder)")
    raw_text = (path / "config.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(raw_text) or {}
    problems = []
    unknown = sorted(set(raw) - set(_YAML_FIELDS))
    if unknown:
        problems.append(f"unknown keys {unknown} (known: {', '.join(_YAML_FIELDS)})")
    required = [f.name for f in dataclasses.fields(JudgeConfig)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in raw]
    if missing:
        problems.append(f"missing keys {missing}")
    template_path = path / "prompt.txt"
    if not template_path.is_file():
        problems.append("no prompt.txt")
    if problems:
        raise ValueError(f"judge {path}: " + "; ".join(problems))
    cfg = JudgeConfig(**{k: raw[k] for k in raw if k in _YAML_FIELDS})
    cfg.path = path
    cfg.template = template_path.read_text(encoding="utf-8")
    cfg.choices = {str(k): str(v) for k, v in (cfg.choices or {}).items()}
    problems += _validate(cfg, path)
    if problems:
        raise ValueError(f"judge {path}: " + "; ".join(problems))
    return cfg


def _validate(cfg: JudgeConfig, path: Path) -> list[str]:
    problems = []
    if cfg.name != path.name:
        problems.append(f"name {cfg.name!r} differs from the folder name {path.name!r}")
    if cfg.mode not in ("pairwise", "pointwise"):
        problems.append(f"mode must be pairwise or pointwise, not {cfg.mode!r}")
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
    expected = {"A", "B", "tie"} if cfg.mode == "pairwise" else {str(s) for s in range(cfg.scale[0], cfg.scale[1] + 1)}
    if set(cfg.choices) != expected:
        problems.append(f"choices must have exactly the keys {sorted(expected)}, has {sorted(cfg.choices)}")
    elif cfg.parser in PARSERS and cfg.mode in ("pairwise", "pointwise"):
        for key, text in cfg.choices.items():
            try:
                got = cfg.parse(text)
            except Unparseable:
                got = None
            if str(got) != key:
                problems.append(f"choice {key!r}: {text!r} parses to {got!r}")
    if not isinstance(cfg.backend, dict):
        problems.append("backend: must be a mapping")
    else:
        unknown = set(cfg.backend) - {f.name for f in dataclasses.fields(BackendConfig)}
        if unknown:
            problems.append(f"backend: unknown settings {sorted(unknown)}")
    return problems


def render(cfg: JudgeConfig, **values: str) -> list[dict]:
    """Fill the template's placeholders in one pass (braces inside the values stay as they are)."""

    def sub(m: re.Match) -> str:
        key = m.group(1)
        if values.get(key) is None:
            raise ValueError(f"judge {cfg.name}: no value for {{{key}}}")
        return str(values[key])

    return [{"role": m["role"], "content": _PLACEHOLDER_RE.sub(sub, m["content"])} for m in cfg.messages_template]


# --------------------------------------------------------------------------- results


@dataclass
class Rating:
    score: int
    rationale: str
    cached: bool = False


@dataclass
class JudgeFailure:
    error: str


@dataclass
class Outcome:
    """One request's fate: a parsed value, or an error (unparseable, HTTP, budget)."""

    value: Any = None
    reply: str | None = None
    error: str | None = None
    cached: bool = False
    skipped: bool = False
    requests: int = 0
    unparseable: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class RunStats:
    requests: int = 0
    http_attempts: int = 0
    cached: int = 0
    unparseable_replies: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    budget_exhausted: bool = False

    @property
    def tokens(self) -> dict[str, int]:
        return {"prompt": self.prompt_tokens, "completion": self.completion_tokens}


@dataclass
class RatingRun:
    judge: str
    backend: str
    results: list  # Rating | JudgeFailure, aligned with the items
    counts: dict[str, int]
    cost: float
    tokens: dict[str, int]
    budget_exhausted: bool = False


class JudgeRunError(RuntimeError):
    """Too many unparseable verdicts. ``.run`` holds everything judged (a RatingRun or PairRun)."""

    def __init__(self, message: str, run):
        super().__init__(message)
        self.run = run


# --------------------------------------------------------------------------- the runner


class _Runner:
    """Runs requests through cache → budget check → backend → parser, concurrently."""

    def __init__(self, judge: JudgeConfig, cfg: BackendConfig, backend, cache: JudgeCache | None,
                 concurrency: int, max_cost: float | None, progress: bool, desc: str):
        self.judge, self.cfg, self.backend, self.cache = judge, cfg, backend, cache
        self.concurrency = max(1, int(concurrency)) if getattr(backend, "parallel_safe", False) else 1
        self.max_cost = max_cost if max_cost is not None and max_cost > 0 else None  # 0 means no cap
        self.progress, self.desc = progress, desc
        self.stats = RunStats()
        self._lock = threading.Lock()

    def _cost(self, pt: int, ct: int) -> float:
        return (pt * self.cfg.price_input + ct * self.cfg.price_output) / 1e6

    def _over_budget(self) -> bool:
        with self._lock:
            if self.max_cost is not None and self.stats.cost >= self.max_cost:
                self.stats.budget_exhausted = True
            return self.stats.budget_exhausted

    def one(self, messages: list[dict]) -> Outcome:
        key = cache_key(self.judge.fingerprint, self.cfg.identity(), messages)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                try:
                    value = self.judge.parse(hit.text)
                except Unparseable:  # a parser changed since: ask again
                    value = None
                if value is not None:
                    with self._lock:
                        self.stats.cached += 1
                    return Outcome(value=value, reply=hit.text, cached=True)
        out = Outcome()
        for _ in range(1 + max(0, self.judge.parse_retries)):
            if self._over_budget():
                out.skipped = True
                out.error = "not judged: the --max-cost budget was spent"
                return out
            try:
                comp: Completion = self.backend.complete(
                    messages, temperature=self.judge.temperature, max_tokens=self.judge.max_tokens,
                    choices=self.judge.choices,
                )
            except FatalBackendError:
                raise
            except BackendError as err:
                out.error = self.backend.redact(str(err))
                return out
            cost = self._cost(comp.prompt_tokens, comp.completion_tokens)
            out.requests += 1
            out.prompt_tokens += comp.prompt_tokens
            out.completion_tokens += comp.completion_tokens
            out.cost += cost
            out.notes += comp.notes
            out.reply = comp.text
            with self._lock:
                self.stats.requests += 1
                self.stats.http_attempts += comp.attempts
                self.stats.prompt_tokens += comp.prompt_tokens
                self.stats.completion_tokens += comp.completion_tokens
                self.stats.cost += cost
            try:
                out.value = self.judge.parse(comp.text)
            except Unparseable as err:
                out.unparseable += 1
                out.error = f"unparseable reply: {err}"
                with self._lock:
                    self.stats.unparseable_replies += 1
                continue
            out.error = None
            if self.cache is not None:
                self.cache.put(key, CachedReply(comp.text, comp.prompt_tokens, comp.completion_tokens))
            return out
        return out

    def run(self, requests: Sequence[list[dict]]) -> list[Outcome]:
        from tqdm.auto import tqdm

        results: list[Outcome | None] = [None] * len(requests)
        cursor = iter(range(len(requests)))
        fatal: list[BaseException] = []
        bar = tqdm(total=len(requests), desc=self.desc, disable=not self.progress, file=sys.stderr, unit="req")

        def worker():
            while not fatal:
                with self._lock:
                    i = next(cursor, None)
                if i is None:
                    return
                try:
                    results[i] = self.one(requests[i])
                except FatalBackendError as err:
                    fatal.append(err)
                    return
                except Exception as err:  # a bug or an odd reply on one item: counted, never silent
                    results[i] = Outcome(error=f"{type(err).__name__}: {self.backend.redact(str(err))}")
                bar.update(1)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(self.concurrency, max(1, len(requests))))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        bar.close()
        if fatal:
            raise fatal[0]
        return [r if r is not None else Outcome(error="not run") for r in results]


def _setup(judge, cache_dir, concurrency, max_cost, progress, api_key, overrides, backend=None):
    cfg_judge = load_judge(judge)
    cfg = resolve_backend_config(cfg_judge.backend, **overrides)
    if backend is None:
        backend = make_backend(cfg, api_key=api_key)
    cache = JudgeCache(cache_dir) if cache_dir is not None else None
    runner = _Runner(cfg_judge, cfg, backend, cache, concurrency, max_cost, progress, desc=f"judge {cfg_judge.name}")
    return cfg_judge, cfg, runner


_VERDICT_LINE_RE = re.compile(r"^\s*(verdict|rating|final verdict)\b.*$|^\s*\[\[[^\]]+\]\]\s*$", re.I)


def rationale_of(reply: str | None) -> str:
    """The reply without its final verdict line (kept whole if that is all there is).

    >>> rationale_of("Clear and correct.\\nRating: [[4]]")
    'Clear and correct.'
    >>> rationale_of("[[A]]")
    '[[A]]'
    """
    text = (reply or "").strip()
    lines = text.splitlines()
    if len(lines) > 1 and _VERDICT_LINE_RE.match(lines[-1]):
        return "\n".join(lines[:-1]).strip()
    return text


# --------------------------------------------------------------------------- pointwise


def rate_many(
    items: Sequence[tuple[str, str]],
    judge: str | Path | JudgeConfig = "quality-rating",
    *,
    cache_dir: Path | None = None,
    concurrency: int = 8,
    max_cost: float | None = None,
    progress: bool = False,
    api_key: str | None = None,
    max_unparseable: float | None = None,
    backend=None,
    **backend_overrides: Any,
) -> RatingRun:
    """Rate each ``(prompt, response)`` with a pointwise judge.

    ``backend_overrides`` are :class:`BackendConfig` fields (``base_url``,
    ``model``, ``kind``, ``price_input``, ``decoding``, …); unset ones come
    from the judge config and the environment. ``cache_dir=None`` disables the
    cache; ``max_cost`` in USD (``None`` or 0: no cap) stops new requests once spent. ``results`` is aligned with ``items``: a :class:`Rating` or a
    :class:`JudgeFailure` (unparseable after retries, an HTTP error after
    retries, or not judged because ``max_cost`` was spent). Raises
    :class:`JudgeRunError` (with ``.run``) when more than the judge's
    ``max_unparseable`` fraction of the judged items has no parseable rating,
    and :class:`FatalBackendError` when the endpoint cannot work at all.
    """
    cfg_judge, cfg, runner = _setup(judge, cache_dir, concurrency, max_cost, progress, api_key, backend_overrides, backend)
    if cfg_judge.mode != "pointwise":
        raise ValueError(f"judge {cfg_judge.name} is {cfg_judge.mode}; rate_many needs a pointwise judge")
    requests = [render(cfg_judge, instruction=p, output=r) for p, r in items]
    outcomes = runner.run(requests)
    results: list[Rating | JudgeFailure] = []
    for o in outcomes:
        if o.error is None and o.value is not None:
            results.append(Rating(score=int(o.value), rationale=rationale_of(o.reply), cached=o.cached))
        else:
            results.append(JudgeFailure(error=o.error or "no verdict"))
    s = runner.stats
    unparseable = sum(1 for o in outcomes if o.error and o.error.startswith("unparseable"))
    counts = {
        "items": len(items),
        "rated": sum(isinstance(r, Rating) for r in results),
        "failed": sum(isinstance(r, JudgeFailure) for r in results),
        "unparseable": unparseable,
        "skipped_budget": sum(o.skipped for o in outcomes),
        "cached": s.cached,
        "requests": s.requests,
        "http_attempts": s.http_attempts,
        "unparseable_replies": s.unparseable_replies,
    }
    run = RatingRun(cfg_judge.name, cfg.describe(), results, counts, s.cost, s.tokens, s.budget_exhausted)
    _check_unparseable(cfg_judge, max_unparseable, unparseable, len(items) - counts["skipped_budget"], run)
    return run


def _check_unparseable(cfg_judge: JudgeConfig, limit: float | None, bad: int, judged: int, run) -> None:
    limit = cfg_judge.max_unparseable if limit is None else limit
    if judged and bad / judged > limit:
        raise JudgeRunError(
            f"judge {cfg_judge.name}: {bad} of {judged} items ({bad / judged:.0%}) had no parseable verdict, "
            f"more than the allowed {limit:.0%}; see the replies in the output, fix the prompt or the parser",
            run,
        )


# --------------------------------------------------------------------------- pairwise


@dataclass
class Pair:
    """One prompt with the two outputs to compare (A is the candidate, B the reference)."""

    id: str
    prompt: str
    output_a: str
    output_b: str
    reference: str | None = None


_FROM_A = {"ab": {"A": "win", "B": "loss", "tie": "tie"}, "ba": {"A": "loss", "B": "win", "tie": "tie"}}


@dataclass
class PairJudgment:
    id: str
    verdict: str | None
    """From A's perspective: ``win``, ``tie``, ``loss``; None when not judged (see ``error``)."""
    orders: list[dict]
    """Per order shown: ``order`` (``ab`` = A first), ``raw`` (A/B/tie as shown), ``verdict`` (A's view),
    ``reply``, ``cached``, ``error``."""
    consistent: bool | None
    rationale: str
    tokens: dict[str, int]
    cost: float
    parse_failures: int
    error: str | None = None


@dataclass
class PairRun:
    judge: str
    backend: str
    results: list[PairJudgment]
    counts: dict[str, int]
    cost: float
    tokens: dict[str, int]
    budget_exhausted: bool = False
    judge_config: JudgeConfig | None = None
    backend_config: BackendConfig | None = None


def judge_pairs(
    pairs: Sequence[Pair],
    judge: str | Path | JudgeConfig = "mtbench-pairwise",
    *,
    cache_dir: Path | None = None,
    concurrency: int = 8,
    max_cost: float | None = None,
    progress: bool = False,
    api_key: str | None = None,
    max_unparseable: float | None = None,
    backend=None,
    **backend_overrides: Any,
) -> PairRun:
    """Judge each pair in both orders and combine the two verdicts.

    Both agree → that verdict, consistent. They differ → ``tie``, inconsistent.
    Either order without a parseable verdict (after retries) → no verdict, an
    ``error``, counted. Raises :class:`JudgeRunError` past the judge's
    ``max_unparseable`` fraction (``.run`` holds the results).
    """
    cfg_judge, cfg, runner = _setup(judge, cache_dir, concurrency, max_cost, progress, api_key, backend_overrides, backend)
    if cfg_judge.mode != "pairwise":
        raise ValueError(f"judge {cfg_judge.name} is {cfg_judge.mode}; judge_pairs needs a pairwise judge")
    missing_ref = [p.id for p in pairs if cfg_judge.requires_reference and not p.reference]
    if missing_ref:
        raise ValueError(
            f"judge {cfg_judge.name} needs a reference answer for every prompt; missing for "
            f"{len(missing_ref)} (first: {missing_ref[:5]}). Add a 'reference' field to the prompt file or pass --references"
        )
    requests = []
    for p in pairs:
        ref = {"reference": p.reference} if cfg_judge.requires_reference else {}
        requests.append(render(cfg_judge, instruction=p.prompt, output_a=p.output_a, output_b=p.output_b, **ref))
        requests.append(render(cfg_judge, instruction=p.prompt, output_a=p.output_b, output_b=p.output_a, **ref))
    outcomes = runner.run(requests)
    results = [_combine(p, outcomes[2 * i], outcomes[2 * i + 1]) for i, p in enumerate(pairs)]
    s = runner.stats
    judged = [r for r in results if r.verdict is not None]
    skipped = sum(1 for r in results if r.verdict is None and r.error and "budget" in r.error)
    unparseable = sum(1 for r in results if r.verdict is None and r.error and r.error.startswith("unparseable"))
    counts = {
        "pairs": len(pairs),
        "judged": len(judged),
        "win": sum(r.verdict == "win" for r in judged),
        "tie": sum(r.verdict == "tie" for r in judged),
        "loss": sum(r.verdict == "loss" for r in judged),
        "consistent": sum(bool(r.consistent) for r in judged),
        "inconsistent": sum(r.consistent is False for r in judged),
        "failed": len(results) - len(judged) - skipped,
        "unparseable": unparseable,
        "skipped_budget": skipped,
        "cached": s.cached,
        "requests": s.requests,
        "http_attempts": s.http_attempts,
        "unparseable_replies": s.unparseable_replies,
    }
    run = PairRun(cfg_judge.name, cfg.describe(), results, counts, s.cost, s.tokens, s.budget_exhausted, cfg_judge, cfg)
    _check_unparseable(cfg_judge, max_unparseable, unparseable, len(pairs) - skipped, run)
    return run


def _combine(pair: Pair, first: Outcome, second: Outcome) -> PairJudgment:
    orders = []
    for name, o in (("ab", first), ("ba", second)):
        orders.append({
            "order": name,
            "raw": o.value if o.error is None else None,
            "verdict": _FROM_A[name][o.value] if o.error is None and o.value is not None else None,
            "reply": o.reply,
            "cached": o.cached,
            "error": o.error,
        })
    tokens = {"prompt": first.prompt_tokens + second.prompt_tokens,
              "completion": first.completion_tokens + second.completion_tokens}
    failures = first.unparseable + second.unparseable
    errors = [f"{o['order']}: {o['error']}" for o in orders if o["error"]]
    if errors:
        verdict, consistent = None, None
        error = "; ".join(errors)
        if all(o.skipped for o in (first, second) if o.error):
            error = "not judged: the --max-cost budget was spent"
        elif any(o.error and o.error.startswith("unparseable") for o in (first, second)):
            error = "unparseable verdict (" + error + ")"
    else:
        error = None
        v1, v2 = orders[0]["verdict"], orders[1]["verdict"]
        consistent = v1 == v2
        verdict = v1 if consistent else "tie"
    rationale = rationale_of(first.reply) if first.reply else rationale_of(second.reply)
    return PairJudgment(pair.id, verdict, orders, consistent, rationale, tokens,
                        first.cost + second.cost, failures, error)
