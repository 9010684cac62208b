"""Judges: load them, render their prompts, run them through a backend with a cache.

The one judge abstraction of the project. ``eval`` compares two outputs per
prompt (pairwise, both orders) and grades single answers; ``curation`` rates
single responses 1–5 (pointwise) through the same judges, backends and cache::

    from judging import rate_many, Rating
    run = rate_many([(prompt, response), ...], "quality-rating", model="gpt-4o-mini")
    for r in run.results:        # aligned with the items
        if isinstance(r, Rating): print(r.score, r.rationale)
        else: print("failed:", r.status, r.error)   # a JudgeFailure, never None
    print(run.counts, run.cost, run.tokens)

A judge is data: a folder with its config and prompt, and a parser for its replies::

    >>> judge = load_judge("mtbench")          # an alias of judges/mtbench-pairwise
    >>> judge.parse("Both are fine. [[C]]"), judge.verdicts
    ('tie', ('A', 'B', 'tie'))

One idea per module:

- :mod:`judging.config`: judge folders (``judges/<name>/config.yaml`` + ``prompt.txt``) and backend
  settings, declared with ``contract.config.option``; loading, validation, rendering.
- :mod:`judging.backends`: an OpenAI-compatible endpoint (the ``openai`` client's retries) or a local
  transformers model.
- :mod:`judging.runner`: cache → budget → backend → parser, on a ``concurrent.futures`` thread pool;
  unparseable replies repaired, then cached as "no verdict".
- :mod:`judging.pointwise` (:func:`rate_many`) and :mod:`judging.pairwise` (:func:`judge_pairs`).
- :mod:`judging.outcomes`: what happened to a request, as typed values (:class:`Status`).
- :mod:`judging.cache`, :mod:`judging.parsers` (small functions with doctests).
"""

from __future__ import annotations

from .backends import Completion, make_backend
from .cache import JudgeCache
from .config import (
    JUDGE_ALIASES,
    JUDGES_DIR,
    BackendConfig,
    JudgeConfig,
    list_judges,
    load_judge,
    render,
    resolve_backend_config,
)
from .outcomes import BackendError, FatalBackendError, JudgeRunError, Outcome, RunStats, Status
from .pairwise import Pair, PairJudgment, PairRun, judge_pairs
from .parsers import rationale_of
from .pointwise import Item, JudgeFailure, Rating, RatingRun, rate_many
from .runner import DEFAULT_CACHE_DIR, Job, Runner, judge_job

__all__ = [
    "BackendConfig",
    "BackendError",
    "Completion",
    "DEFAULT_CACHE_DIR",
    "FatalBackendError",
    "Item",
    "Job",
    "JudgeCache",
    "JudgeConfig",
    "JudgeFailure",
    "JudgeRunError",
    "JUDGE_ALIASES",
    "JUDGES_DIR",
    "Outcome",
    "Pair",
    "PairJudgment",
    "PairRun",
    "Rating",
    "RatingRun",
    "Runner",
    "RunStats",
    "Status",
    "judge_job",
    "judge_pairs",
    "list_judges",
    "load_judge",
    "make_backend",
    "rate_many",
    "rationale_of",
    "render",
    "resolve_backend_config",
]
