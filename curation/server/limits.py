"""Bounds on what one search may cost, so that no user can stall the server with a query.

Text queries are capped in length and in distinct words (Elasticsearch caps boolean clauses the same way; see
`text_query.py`), and every SQL statement of a search runs under a deadline (an SQLite progress handler that
aborts the statement). Searches sent with one credential (an API key, a UI session) run one at a time, in order,
and take at most `SEARCH_SHARE` of the time: after a search that took t seconds, the next one of the same
credential starts t * (1 / SEARCH_SHARE - 1) seconds later at the earliest. A few more may wait, before any
authentication or database work (`guard.EarlyRefusal`); beyond that they are refused with 429. Behind that, a
user runs at most `SEARCHES_PER_USER` searches at once whatever credentials they use: more are refused with 429,
not queued, because there a request already holds a database connection.

Light on purpose (no argilla_server import): the tests exercise it directly.
"""

from __future__ import annotations

import collections
import contextlib
import sqlite3
import threading
import time
from typing import Callable, Hashable, Iterator, Optional, TypeVar

MAX_QUERY_CHARS = 2_000  # a text query longer than this is refused before it is parsed
MAX_QUERY_WORDS = 32  # distinct words of a text query, phrases included, after removing repeats
SEARCH_TIMEOUT_S = 5.0  # one SQL statement of a search; the slowest normal search at 100,000 records takes 0.3 s
SEARCHES_RUNNING_PER_KEY = 1  # searches of one credential run one after another
SEARCHES_WAITING_PER_KEY = 3  # and so many more wait their turn (the UI sends the next before the last is done)
SEARCHES_PER_USER = 2  # concurrent searches of one user over all their credentials
SEARCH_SHARE = 0.5  # of the wall time one credential's searches may take; a curator's take far less
MAX_SEARCH_PAUSE_S = 5.0  # the longest wait that share imposes
_PROGRESS_STEPS = 200_000  # SQLite VM instructions between two deadline checks (about 10 ms, few GIL handoffs)

T = TypeVar("T")


class SearchLimitError(ValueError):
    """A search over one of the limits above; the message says which and what to do (the API answers 422)."""


class TooManySearches(RuntimeError):
    """The user already runs SEARCHES_PER_USER searches (the API answers 429)."""


class Deadline:
    """Per-thread deadline for the statements run on one SQLite connection."""

    def __init__(self) -> None:
        self._local = threading.local()

    def install(self, con: sqlite3.Connection) -> None:
        con.set_progress_handler(self._expired, _PROGRESS_STEPS)

    def _expired(self) -> bool:
        at = getattr(self._local, "at", None)
        return at is not None and time.monotonic() > at

    def run(self, seconds: Optional[float], fn: Callable[[], T]) -> T:
        """fn() with its statements aborted after `seconds` (None: no limit); SearchLimitError when aborted."""
        if seconds is None:
            return fn()
        self._local.at = time.monotonic() + seconds
        try:
            return fn()
        except sqlite3.OperationalError as err:
            if "interrupted" in str(err) and time.monotonic() > self._local.at:
                raise SearchLimitError(
                    f"The search was stopped after {seconds:g} s, the limit for one search: make it narrower "
                    "(fewer or rarer words, no leading-letter prefixes like a*, a filter)") from None
            raise
        finally:
            self._local.at = None


class SearchSlots:
    """At most `per_user` searches at a time per user. Used from the event loop thread only."""

    def __init__(self, per_user: int = SEARCHES_PER_USER):
        self.per_user = per_user
        self._running: collections.Counter = collections.Counter()

    def running(self, user: Hashable) -> int:
        return self._running[user]

    @contextlib.contextmanager
    def take(self, user: Hashable) -> Iterator[None]:
        if self._running[user] >= self.per_user:
            raise TooManySearches(
                f"Too many searches at once: {self.per_user} of yours are still running. Wait for them to finish.")
        self._running[user] += 1
        try:
            yield
        finally:
            self._running[user] -= 1
            if self._running[user] <= 0:
                del self._running[user]
