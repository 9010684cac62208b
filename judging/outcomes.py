"""What happened to a request, as typed values: a :class:`Status` and an :class:`Outcome`, never a string
to match. Also the run's counters and the errors a run raises."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(str, enum.Enum):
    """The fate of one request (one order of a pair, one rated item, one generated turn)."""

    OK = "ok"
    """A reply that parsed (from the endpoint or from the cache)."""
    UNPARSEABLE = "unparseable"
    """Every reply, repairs included, had no verdict. Cached: a re-run does not ask again unless told to."""
    FAILED = "failed"
    """The backend gave up (HTTP error after the client's retries, a refused request). Not cached."""
    BUDGET = "budget"
    """Not asked: the --max-cost budget was spent."""
    ERROR = "error"
    """An unexpected error on this one item (counted and shown, never silent)."""


BUDGET_MESSAGE = "not judged: the --max-cost budget was spent"


@dataclass
class Outcome:
    """One request's fate. Tokens and cost are cumulative over every attempt the judgment ever took
    (also when it came from the cache); ``spent`` is the part paid in this run."""

    status: Status
    value: Any = None
    """The parsed value (a verdict as shown, a score, or the generated text)."""
    reply: str | None = None
    error: str | None = None
    cached: bool = False
    requests: int = 0
    """Requests made in this run (each parse retry is one)."""
    attempts: int = 0
    """HTTP attempts in this run, the client's retries included."""
    unparseable: int = 0
    """Replies without a verdict, cumulative."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    spent: float = 0.0
    choice_logprobs: dict[str, float] | None = None
    """The verdict token's alternatives and their log-probabilities, where the backend returns them."""
    finish_reason: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def tokens(self) -> dict[str, int]:
        return {"prompt": self.prompt_tokens, "completion": self.completion_tokens}


@dataclass
class RunStats:
    """Counters of one run (this invocation only: cached replies count under ``cached``)."""

    requests: int = 0
    http_attempts: int = 0
    cached: int = 0
    unparseable_replies: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    """USD spent in this run."""
    budget_exhausted: bool = False

    @property
    def tokens(self) -> dict[str, int]:
        return {"prompt": self.prompt_tokens, "completion": self.completion_tokens}


class BackendError(RuntimeError):
    """One request failed for good (after the client's retries, or a 4xx that retrying will not fix)."""


class FatalBackendError(BackendError):
    """The run cannot work (bad key, unknown model, unreachable server): stop everything."""


class JudgeRunError(RuntimeError):
    """Too many unparseable verdicts. ``.run`` holds everything judged (a RatingRun or PairRun)."""

    def __init__(self, message: str, run):
        super().__init__(message)
        self.run = run


def failure_counts(outcomes: list[Outcome]) -> dict[str, int]:
    """How many outcomes ended in each status (a status with none is 0)."""
    return {s.value: sum(o.status is s for o in outcomes) for s in Status}
