"""The runner: each request through cache → budget → backend → parser, many at once on a thread pool.

What to ask and how to read the reply is a :class:`Job` (a judge gives one with :func:`judge_job`;
generation gives one whose parser accepts any text). The runner knows nothing about pairs or scores.

- **Cache**: a reply that parsed is cached; so is "no verdict" after every repair failed, so a re-run
  makes no requests either way unless ``retry_unparseable`` is set. Each row keeps what the request
  cost over all its attempts.
- **Unparseable replies** are asked again at most ``job.retries`` times, each time with a varied request:
  the judge's reply and a repair message naming the verdict format, never the identical request (a
  deterministic judge would repeat its reply).
- **Budget**: ``max_cost`` USD spent in this run stops new requests (requests in flight finish).
- **Retries** on 429/5xx/timeouts are the backend client's own; a fatal backend error (bad key, unknown
  model, unreachable server) stops the pool and is raised.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .backends import Completion
from .cache import CachedReply, JudgeCache, cache_key
from .config import BackendConfig, JudgeConfig
from .outcomes import BUDGET_MESSAGE, BackendError, FatalBackendError, Outcome, RunStats, Status
from .parsers import Unparseable


@dataclass
class Job:
    """What the runner asks and how it reads the replies."""

    fingerprint: str
    """Everything besides the messages that shapes a reply (a judge's config hash, generation settings)."""
    temperature: float
    max_tokens: int
    parse: Callable[[str], Any]
    """Reply → value; raises :class:`~judging.parsers.Unparseable` when the reply holds none."""
    retries: int = 0
    """Repairs after an unparseable reply."""
    repair: Callable[[list[dict], str, str], list[dict]] | None = None
    """(messages, the unparseable reply, the parser's complaint) → the varied request to send next."""
    choices: dict[str, str] | None = None
    logprobs: bool = False
    seed: int | None = None
    top_p: float | None = None


def judge_job(judge: JudgeConfig) -> Job:
    return Job(judge.fingerprint, judge.temperature, judge.max_tokens, judge.parse, max(0, judge.parse_retries),
               repair_request(judge.format_hint()), judge.choices, judge.logprobs)


def repair_request(hint: str) -> Callable[[list[dict], str, str], list[dict]]:
    """The varied request after an unparseable reply: the same conversation, its last user message followed
    by a reminder of the verdict format (a deterministic judge asked the identical request repeats itself)."""

    def repair(messages: list[dict], reply: str, problem: str) -> list[dict]:
        out = [dict(m) for m in messages]
        last = next(i for i in range(len(out) - 1, -1, -1) if out[i]["role"] == "user")
        out[last]["content"] += ("\n\n(Reminder: your previous reply had no verdict in the required format. "
                                 f"End your reply with exactly one of: {hint}.)")
        return out

    return repair


class Runner:
    """Runs requests concurrently (``concurrent.futures``) through cache, budget, backend and parser."""

    def __init__(self, job: Job, cfg: BackendConfig, backend, cache: JudgeCache | None, *, concurrency: int = 8,
                 max_cost: float | None = None, progress: bool = False, desc: str = "judge",
                 retry_unparseable: bool = False):
        self.job, self.cfg, self.backend, self.cache = job, cfg, backend, cache
        self.concurrency = max(1, int(concurrency)) if getattr(backend, "parallel_safe", False) else 1
        self.max_cost = max_cost if max_cost is not None and max_cost > 0 else None  # 0 means no cap
        self.progress, self.desc = progress, desc
        self.retry_unparseable = retry_unparseable
        self.stats = RunStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def price(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.cfg.price_input + completion_tokens * self.cfg.price_output) / 1e6

    def _over_budget(self) -> bool:
        with self._lock:
            if self.max_cost is not None and self.stats.cost >= self.max_cost:
                self.stats.budget_exhausted = True
            return self.stats.budget_exhausted

    # ------------------------------------------------------------------ one request

    def one(self, messages: list[dict]) -> Outcome:
        key = cache_key(self.job.fingerprint, self.cfg.identity(), messages)
        hit = self.cache.get(key) if self.cache is not None else None
        out = Outcome(Status.UNPARSEABLE)
        if hit is not None:
            from_cache = self._from_cache(hit)
            if from_cache.ok or not self.retry_unparseable:
                with self._lock:
                    self.stats.cached += 1
                return from_cache
            out = from_cache  # asked again on request: what it cost so far carries over
            out.cached = False
        for attempt in range(1 + self.job.retries):
            if self._over_budget():
                if out.requests:  # a repair was cut short: keep what was spent, ask again next time
                    out.notes.append("the budget ran out during the repairs")
                out.status, out.error = Status.BUDGET, BUDGET_MESSAGE
                return out
            request = messages if attempt == 0 or self.job.repair is None else self.job.repair(
                messages, out.reply or "", out.error or "")
            try:
                comp: Completion = self.backend.complete(
                    request, temperature=self.job.temperature, max_tokens=self.job.max_tokens,
                    choices=self.job.choices, logprobs=self.job.logprobs, seed=self.job.seed, top_p=self.job.top_p)
            except FatalBackendError:
                raise
            except BackendError as err:
                out.status, out.error = Status.FAILED, self.backend.redact(str(err))
                return out
            cost = self.price(comp.prompt_tokens, comp.completion_tokens)
            out.requests += 1
            out.attempts += comp.attempts
            out.prompt_tokens += comp.prompt_tokens
            out.completion_tokens += comp.completion_tokens
            out.cost += cost
            out.spent += cost
            out.notes += comp.notes
            out.reply, out.choice_logprobs, out.finish_reason = comp.text, comp.choice_logprobs, comp.finish_reason
            with self._lock:
                self.stats.requests += 1
                self.stats.http_attempts += comp.attempts
                self.stats.prompt_tokens += comp.prompt_tokens
                self.stats.completion_tokens += comp.completion_tokens
                self.stats.cost += cost
            try:
                out.value = self.job.parse(comp.text)
            except Unparseable as err:
                out.unparseable += 1
                out.error = f"unparseable reply: {err}"
                with self._lock:
                    self.stats.unparseable_replies += 1
                continue
            out.status, out.error = Status.OK, None
            self._store(key, out)
            return out
        out.status = Status.UNPARSEABLE
        self._store(key, out)
        return out

    def _from_cache(self, hit: CachedReply) -> Outcome:
        cost = hit.cost if hit.cost is not None else self.price(hit.prompt_tokens, hit.completion_tokens)
        extra = hit.extra or {}
        out = Outcome(Status.OK, reply=hit.text, cached=True, unparseable=hit.unparseable,
                      prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens, cost=cost,
                      choice_logprobs=extra.get("choice_logprobs"), finish_reason=extra.get("finish_reason"))
        try:  # parsed again: a parser fixed since turns a cached "no verdict" into a verdict, for free
            out.value = self.job.parse(hit.text)
        except Unparseable as err:
            out.status = Status.UNPARSEABLE
            out.error = hit.error or f"unparseable reply: {err}"
        return out

    def _store(self, key: str, out: Outcome) -> None:
        if self.cache is None:
            return
        extra = {k: v for k, v in (("choice_logprobs", out.choice_logprobs), ("finish_reason", out.finish_reason)) if v}
        self.cache.put(key, CachedReply(out.reply or "", out.prompt_tokens, out.completion_tokens,
                                        status=out.status.value, cost=out.cost, requests=out.requests,
                                        unparseable=out.unparseable, error=out.error, extra=extra))

    # ------------------------------------------------------------------ many requests

    def _guarded(self, messages: list[dict]) -> Outcome:
        if self._stop.is_set():
            return Outcome(Status.ERROR, error="not run: the run stopped")
        try:
            return self.one(messages)
        except FatalBackendError:
            self._stop.set()
            raise
        except Exception as err:  # a bug or an odd reply on one item: counted, never silent
            return Outcome(Status.ERROR, error=f"{type(err).__name__}: {self.backend.redact(str(err))}")

    def run(self, requests: Sequence[list[dict]]) -> list[Outcome]:
        """One outcome per request, in order. Raises the first :class:`FatalBackendError`."""
        from tqdm.auto import tqdm

        results: list[Outcome | None] = [None] * len(requests)
        workers = min(self.concurrency, max(1, len(requests)))
        fatal: BaseException | None = None
        with tqdm(total=len(requests), desc=self.desc, disable=not self.progress, file=sys.stderr, unit="req") as bar, \
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge") as pool:
            futures = {pool.submit(self._guarded, messages): i for i, messages in enumerate(requests)}
            for future in as_completed(futures):
                if future.cancelled():  # after a fatal error: never started
                    continue
                try:
                    results[futures[future]] = future.result()
                except FatalBackendError as err:
                    fatal = fatal or err
                    for f in futures:
                        f.cancel()
                bar.update(1)
        if fatal is not None:
            raise fatal
        return [r if r is not None else Outcome(Status.ERROR, error="not run") for r in results]


DEFAULT_CACHE_DIR = Path.home() / ".cache" / "curated-align" / "judge"


def judge_runner(judge, *, cache_dir=None, concurrency: int = 8, max_cost: float | None = None,
                 progress: bool = False, api_key: str | None = None, backend=None, retry_unparseable: bool = False,
                 overrides: dict | None = None) -> tuple[JudgeConfig, BackendConfig, Runner]:
    """A loaded judge, its resolved backend settings, and a runner for its requests."""
    from .backends import make_backend
    from .config import load_judge, resolve_backend_config

    judge_cfg = load_judge(judge)
    cfg = resolve_backend_config(judge_cfg.backend, **(overrides or {}))
    if backend is None:
        backend = make_backend(cfg, api_key=api_key)
    cache = JudgeCache(cache_dir) if cache_dir is not None else None
    runner = Runner(judge_job(judge_cfg), cfg, backend, cache, concurrency=concurrency, max_cost=max_cost,
                    progress=progress, desc=f"judge {judge_cfg.name}", retry_unparseable=retry_unparseable)
    return judge_cfg, cfg, runner
