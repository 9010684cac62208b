"""The reply cache: one SQLite file, one row per (judge config, backend, rendered messages).

The key is a SHA-256 over the judge's fingerprint (its config and prompt
templates; for generation, the decoding settings), the backend's identity
(kind, model, decoding mode — never a key or a URL's credentials) and the
exact messages sent, which hold the prompt and both outputs in the order
shown. Each order of a pair is its own entry.

A row keeps the outcome, not only the text: ``ok`` with the reply that
parsed, or ``unparseable`` with the last reply when every repair failed —
so a re-run makes no requests either way (``retry_unparseable`` asks
again). It also keeps what the judgment cost over all its attempts (tokens,
USD, requests), so a fully cached re-run still reports what its judgments
cost. HTTP failures are not cached. Rows are committed one by one (WAL), so
a killed run loses at most the requests in flight.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def cache_key(judge_fingerprint: str, backend_identity: dict, messages: list[dict]) -> str:
    payload = json.dumps(
        {"judge": judge_fingerprint, "backend": backend_identity, "messages": messages},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class CachedReply:
    text: str
    prompt_tokens: int
    completion_tokens: int
    status: str = "ok"
    """``ok`` (the text parsed) or ``unparseable`` (no verdict after every repair)."""
    cost: float | None = None
    """USD over every attempt; None for rows written before costs were kept."""
    requests: int = 1
    unparseable: int = 0
    error: str | None = None
    extra: dict = field(default_factory=dict)
    """``choice_logprobs``, ``finish_reason``."""


_COLUMNS = {  # added after v1: old cache files gain them on open
    "status": "TEXT NOT NULL DEFAULT 'ok'",
    "cost": "REAL",
    "requests": "INTEGER NOT NULL DEFAULT 1",
    "unparseable": "INTEGER NOT NULL DEFAULT 0",
    "error": "TEXT",
    "extra": "TEXT",
}


class JudgeCache:
    """A thread-safe key → reply store in ``<cache_dir>/judgments.sqlite``."""

    FILENAME = "judgments.sqlite"

    def __init__(self, cache_dir: str | Path):
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / self.FILENAME
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, text TEXT NOT NULL,"
            " prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)"
        )
        have = {row[1] for row in self._db.execute("PRAGMA table_info(replies)")}
        for name, decl in _COLUMNS.items():
            if name not in have:
                self._db.execute(f"ALTER TABLE replies ADD COLUMN {name} {decl}")
        self._db.commit()

    def get(self, key: str) -> CachedReply | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens, status, cost, requests, unparseable, error, extra"
                " FROM replies WHERE key = ?", (key,)
            ).fetchone()
        if not row:
            return None
        text, pt, ct, status, cost, requests, unparseable, error, extra = row
        return CachedReply(text, int(pt or 0), int(ct or 0), status or "ok", cost, int(requests or 1),
                           int(unparseable or 0), error, json.loads(extra) if extra else {})

    def put(self, key: str, reply: CachedReply) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO replies (key, text, prompt_tokens, completion_tokens, created, status, cost,"
                " requests, unparseable, error, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, reply.text, reply.prompt_tokens, reply.completion_tokens, time.time(), reply.status,
                 reply.cost, reply.requests, reply.unparseable, reply.error,
                 json.dumps(reply.extra) if reply.extra else None),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
