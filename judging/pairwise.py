"""Pairwise judging: every pair in both orders, the two verdicts combined.

Both orders agree → that verdict, consistent. They differ → a tie, inconsistent (MT-Bench's
conservative rule). Either order without a verdict → no verdict, with a typed ``status`` and an
``error``, counted. Verdicts are from A's side (``win``/``tie``/``loss``); each pair also has a
``score`` (A's preference in [0, 1]: 1, 0.5, 0 from the verdict, or the mean of both orders'
probabilities for a judge with ``logprobs``) and a ``weight`` (a strong win counts ``strong_weight``
times, Arena-Hard's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .config import BackendConfig, JudgeConfig, render
from .outcomes import BUDGET_MESSAGE, Outcome, Status
from .parsers import VERDICTS, preference_from_logprobs, rationale_of
from .pointwise import check_unparseable
from .runner import judge_runner

SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


@dataclass
class Pair:
    """One prompt with the two outputs to compare (A is the candidate, B the reference). For a later turn
    (``turn`` ≥ 2) of a conversation, ``turns`` are the user's messages and ``outputs_a``/``outputs_b``
    each side's answers; the judge's multi-turn template shows both whole conversations."""

    id: str
    prompt: str
    output_a: str
    output_b: str
    reference: str | None = None
    turns: list[str] | None = None
    outputs_a: list[str] | None = None
    outputs_b: list[str] | None = None
    references: list[str] | None = None
    turn: int = 1


@dataclass
class PairJudgment:
    id: str
    verdict: str | None
    """From A's perspective: ``win``, ``tie``, ``loss``; None when not judged (see ``status``, ``error``)."""
    orders: list[dict]
    """Per order shown: ``order`` (``ab`` = A first), ``raw`` (the verdict as shown), ``verdict`` (A's view),
    ``strong``, ``prob`` (A's preference probability, logprob judges), ``reply``, ``cached``, ``status``,
    ``error``."""
    consistent: bool | None
    rationale: str
    tokens: dict[str, int]
    """Over every attempt both orders ever took, cached or not."""
    cost: float
    """USD over every attempt, cached or not."""
    parse_failures: int
    error: str | None = None
    status: str = Status.OK.value
    score: float | None = None
    """A's preference in [0, 1]; None when not judged."""
    weight: float = 1.0
    spent: float = 0.0
    """USD paid for this pair in this run (0 when it came from the cache)."""
    turn: int = 1


@dataclass
class PairRun:
    judge: str
    backend: str
    results: list[PairJudgment]
    counts: dict[str, int]
    cost: float
    """USD spent in this run."""
    tokens: dict[str, int]
    budget_exhausted: bool = False
    judge_config: JudgeConfig | None = None
    backend_config: BackendConfig | None = None
    cost_total: float = 0.0
    """USD the judgments cost over all their attempts, the cached ones included."""


def messages_for(judge: JudgeConfig, pair: Pair, swap: bool) -> list[dict]:
    """The request for one order (``swap``: B shown first)."""
    first, second = ("b", "a") if swap else ("a", "b")
    if pair.turn >= 2 and judge.multi_turn_template:
        sides = {"a": pair.outputs_a or [], "b": pair.outputs_b or []}
        values: dict[str, Any] = {}
        for k in range(1, pair.turn + 1):
            turns = pair.turns or []
            values[f"question_{k}"] = turns[k - 1] if len(turns) >= k else None
            values[f"answer_a_{k}"] = sides[first][k - 1] if len(sides[first]) >= k else None
            values[f"answer_b_{k}"] = sides[second][k - 1] if len(sides[second]) >= k else None
            if judge.requires_reference:
                refs = pair.references or []
                values[f"ref_answer_{k}"] = refs[k - 1] if len(refs) >= k else None
        return render(judge, multi_turn=True, **values)
    out = {"a": pair.output_a, "b": pair.output_b}
    ref = {"reference": pair.reference} if judge.requires_reference else {}
    return render(judge, instruction=pair.prompt, output_a=out[first], output_b=out[second], **ref)


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
    retry_unparseable: bool = False,
    **backend_overrides: Any,
) -> PairRun:
    """Judge each pair in both orders and combine the two verdicts (see the module docstring).

    Raises :class:`~judging.outcomes.JudgeRunError` past the judge's ``max_unparseable`` fraction
    (``.run`` holds the results)."""
    judge_cfg, cfg, runner = judge_runner(judge, cache_dir=cache_dir, concurrency=concurrency, max_cost=max_cost,
                                          progress=progress, api_key=api_key, backend=backend,
                                          retry_unparseable=retry_unparseable, overrides=backend_overrides)
    if judge_cfg.mode != "pairwise":
        raise ValueError(f"judge {judge_cfg.name} is {judge_cfg.mode}; judge_pairs needs a pairwise judge")
    missing_ref = [p.id for p in pairs if judge_cfg.requires_reference and not p.reference
                   and not (p.turn >= 2 and p.references)]
    if missing_ref:
        raise ValueError(
            f"judge {judge_cfg.name} needs a reference answer for every prompt; missing for "
            f"{len(missing_ref)} (first: {missing_ref[:5]}). Add a 'reference' field to the prompt file or pass --references"
        )
    requests = []
    for p in pairs:
        requests += [messages_for(judge_cfg, p, swap=False), messages_for(judge_cfg, p, swap=True)]
    outcomes = runner.run(requests)
    results = [combine(judge_cfg, p, outcomes[2 * i], outcomes[2 * i + 1]) for i, p in enumerate(pairs)]
    s = runner.stats
    judged = [r for r in results if r.verdict is not None]
    skipped = sum(r.status == Status.BUDGET.value for r in results)
    unparseable = sum(r.status == Status.UNPARSEABLE.value for r in results)
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
    run = PairRun(judge_cfg.name, cfg.describe(), results, counts, s.cost, s.tokens, s.budget_exhausted, judge_cfg,
                  cfg, cost_total=sum(o.cost for o in outcomes))
    check_unparseable(judge_cfg, max_unparseable, unparseable, len(pairs) - skipped, run)
    return run


def _order(judge: JudgeConfig, name: str, o: Outcome) -> dict:
    view = {"order": name, "raw": None, "verdict": None, "strong": False, "reply": o.reply, "cached": o.cached,
            "status": o.status.value, "error": o.error}
    if o.ok and o.value in VERDICTS:
        first_score, strong = VERDICTS[o.value]
        a_score = first_score if name == "ab" else 1 - first_score
        view.update(raw=o.value, strong=strong, verdict="win" if a_score > 0.5 else "loss" if a_score < 0.5 else "tie")
        if judge.logprobs:
            p_first = preference_from_logprobs(o.choice_logprobs or {})
            source = "logprobs" if p_first is not None else "verdict"
            p_first = first_score if p_first is None else p_first
            view.update(prob=p_first if name == "ab" else 1 - p_first, prob_source=source)
    elif o.ok:
        view.update(status=Status.ERROR.value, error=f"the parser returned {o.value!r}, not a verdict")
    return view


def _pair_status(orders: list[dict]) -> str:
    """ok when both orders have a verdict; else why not: the budget (when that is the only reason),
    an unparseable reply, a failed request, or an error."""
    bad = {o["status"] for o in orders} - {Status.OK.value}
    if not bad:
        return Status.OK.value
    if bad == {Status.BUDGET.value}:
        return Status.BUDGET.value
    for status in (Status.UNPARSEABLE, Status.FAILED):
        if status.value in bad:
            return status.value
    return Status.ERROR.value


def combine(judge: JudgeConfig, pair: Pair, first: Outcome, second: Outcome) -> PairJudgment:
    orders = [_order(judge, "ab", first), _order(judge, "ba", second)]
    tokens = {"prompt": first.prompt_tokens + second.prompt_tokens,
              "completion": first.completion_tokens + second.completion_tokens}
    status = _pair_status(orders)
    verdict = consistent = score = None
    weight = 1.0
    error = None
    if status != Status.OK.value:
        error = "; ".join(f"{o['order']}: {o['error']}" for o in orders if o["error"])
        if status == Status.BUDGET.value:
            error = BUDGET_MESSAGE
        elif status == Status.UNPARSEABLE.value:
            error = "unparseable verdict (" + error + ")"
    else:
        v1, v2 = orders[0]["verdict"], orders[1]["verdict"]
        consistent = v1 == v2
        verdict = v1 if consistent else "tie"
        if judge.logprobs:
            score = (orders[0]["prob"] + orders[1]["prob"]) / 2
        else:
            score = SCORE[verdict]
        if consistent and verdict != "tie" and judge.strong_weight != 1:
            weight = sum(judge.strong_weight if o["strong"] else 1.0 for o in orders) / 2
    rationale = rationale_of(first.reply) if first.reply else rationale_of(second.reply)
    return PairJudgment(pair.id, verdict, orders, consistent, rationale, tokens, first.cost + second.cost,
                        first.unparseable + second.unparseable, error, status, score, weight,
                        first.spent + second.spent, pair.turn)
