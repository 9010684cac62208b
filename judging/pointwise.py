"""Pointwise rating: one response (or one turn of a conversation) → a score on the judge's scale.

    run = rate_many([(prompt, response), ...], "quality-rating", model="gpt-4o-mini")
    run.results   # aligned with the items: Rating(score, rationale) or JudgeFailure(error, status)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .config import JudgeConfig, render
from .outcomes import JudgeRunError, Outcome, Status
from .parsers import rationale_of
from .runner import judge_runner


@dataclass
class Item:
    """One response to rate. For a later turn of a conversation (``turn`` ≥ 2), ``turns`` holds the
    user's messages, ``outputs`` the assistant's answers and ``references`` the reference answers per turn;
    the judge's multi-turn template sees them all."""

    prompt: str
    output: str
    reference: str | None = None
    turns: list[str] | None = None
    outputs: list[str] | None = None
    references: list[str] | None = None
    turn: int = 1


@dataclass
class Rating:
    score: int | float
    rationale: str
    cached: bool = False
    reply: str | None = field(default=None, compare=False)
    tokens: dict[str, int] = field(default_factory=dict, compare=False)
    cost: float = field(default=0.0, compare=False)
    """USD over every attempt, cached or not."""
    spent: float = field(default=0.0, compare=False)
    """USD paid in this run."""
    parse_failures: int = field(default=0, compare=False)


@dataclass
class JudgeFailure:
    error: str
    status: Status = field(default=Status.FAILED, compare=False)
    reply: str | None = field(default=None, compare=False)
    tokens: dict[str, int] = field(default_factory=dict, compare=False)
    cost: float = field(default=0.0, compare=False)
    spent: float = field(default=0.0, compare=False)
    parse_failures: int = field(default=0, compare=False)


@dataclass
class RatingRun:
    judge: str
    backend: str
    results: list  # Rating | JudgeFailure, aligned with the items
    counts: dict[str, int]
    cost: float
    """USD spent in this run."""
    tokens: dict[str, int]
    budget_exhausted: bool = False
    cost_total: float = 0.0
    """USD the ratings cost over all their attempts, the cached ones included."""


def messages_for(judge: JudgeConfig, item: Item) -> list[dict]:
    ref = {"reference": item.reference} if judge.requires_reference else {}
    if item.turn >= 2 and judge.multi_turn_template:
        values: dict[str, Any] = {}
        for k in range(1, item.turn + 1):
            values[f"question_{k}"] = (item.turns or [])[k - 1] if len(item.turns or []) >= k else None
            values[f"answer_{k}"] = (item.outputs or [])[k - 1] if len(item.outputs or []) >= k else None
            if judge.requires_reference:
                refs = item.references or []
                values[f"ref_answer_{k}"] = refs[k - 1] if len(refs) >= k else None
        return render(judge, multi_turn=True, **values)
    return render(judge, instruction=item.prompt, output=item.output, **ref)


def rate_many(
    items: Sequence[tuple[str, str] | Item],
    judge: str | Path | JudgeConfig = "quality-rating",
    *,
    cache_dir: Path | None = None,
    concurrency: int = 8,
    max_cost: float | None = None,
    progress: bool = False,
    api_key: str | None = None,
    max_unparseable: float | None = None,
    backend=None,
    retry_unparseable: bool = False,
    **backend_overrides: Any,
) -> RatingRun:
    """Rate each ``(prompt, response)`` (or :class:`Item`) with a pointwise judge.

    ``backend_overrides`` are :class:`~judging.config.BackendConfig` fields (``base_url``, ``model``,
    ``kind``, ``price_input``, ``decoding``, …); unset ones come from the judge config and the
    environment. ``cache_dir=None`` disables the cache; ``max_cost`` in USD (``None`` or 0: no cap) stops
    new requests once spent. ``results`` is aligned with ``items``: a :class:`Rating` or a
    :class:`JudgeFailure` (unparseable after the repairs, an HTTP error after the client's retries, or not
    judged because ``max_cost`` was spent; its ``status`` says which). Raises :class:`JudgeRunError`
    (with ``.run``) when more than the judge's ``max_unparseable`` fraction of the judged items has no
    parseable rating, and :class:`~judging.outcomes.FatalBackendError` when the endpoint cannot work.
    """
    judge_cfg, cfg, runner = judge_runner(judge, cache_dir=cache_dir, concurrency=concurrency, max_cost=max_cost,
                                          progress=progress, api_key=api_key, backend=backend,
                                          retry_unparseable=retry_unparseable, overrides=backend_overrides)
    if judge_cfg.mode != "pointwise":
        raise ValueError(f"judge {judge_cfg.name} is {judge_cfg.mode}; rate_many needs a pointwise judge")
    items = [it if isinstance(it, Item) else Item(*it) for it in items]
    missing = [i for i, it in enumerate(items) if judge_cfg.requires_reference and not it.reference
               and not (it.turn >= 2 and it.references)]
    if missing:
        raise ValueError(f"judge {judge_cfg.name} needs a reference answer for every item; missing for "
                         f"{len(missing)} (first: item {missing[0]})")
    outcomes = runner.run([messages_for(judge_cfg, it) for it in items])
    results = [_result(o) for o in outcomes]
    s = runner.stats
    counts = {
        "items": len(items),
        "rated": sum(isinstance(r, Rating) for r in results),
        "failed": sum(isinstance(r, JudgeFailure) for r in results),
        "unparseable": sum(o.status is Status.UNPARSEABLE for o in outcomes),
        "skipped_budget": sum(o.status is Status.BUDGET for o in outcomes),
        "cached": s.cached,
        "requests": s.requests,
        "http_attempts": s.http_attempts,
        "unparseable_replies": s.unparseable_replies,
    }
    run = RatingRun(judge_cfg.name, cfg.describe(), results, counts, s.cost, s.tokens, s.budget_exhausted,
                    cost_total=sum(o.cost for o in outcomes))
    check_unparseable(judge_cfg, max_unparseable, counts["unparseable"], len(items) - counts["skipped_budget"], run)
    return run


def _result(o: Outcome) -> Rating | JudgeFailure:
    common = dict(reply=o.reply, tokens=o.tokens, cost=o.cost, spent=o.spent, parse_failures=o.unparseable)
    if o.ok:
        return Rating(score=o.value, rationale=rationale_of(o.reply), cached=o.cached, **common)
    return JudgeFailure(error=o.error or "no verdict", status=o.status, **common)


def check_unparseable(judge: JudgeConfig, limit: float | None, bad: int, judged: int, run) -> None:
    limit = judge.max_unparseable if limit is None else limit
    if judged and bad / judged > limit:
        raise JudgeRunError(
            f"judge {judge.name}: {bad} of {judged} items ({bad / judged:.0%}) had no parseable verdict, "
            f"more than the allowed {limit:.0%}; see the replies in the output, fix the prompt or the parser",
            run,
        )
