"""The judgment cache: one SQLite file, one row per (judge config, backend, rendered messages).

The key is a SHA-256 over the judge's fingerprint (its config and prompt
template), the backend's identity (kind, model, decoding mode — never a key
or a URL's credentials) and the exact messages sent, which hold the prompt and
both outputs in the order shown. Each order of a pair is its own entry.

Only replies that parsed are stored, so an interrupted run resumes where it
stopped, a re-run makes no requests, and an unparseable reply is asked again
next time. Rows are committed one by one (WAL), so a killed run loses at most
the requests in flight.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
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
        self._db.commit()

    def get(self, key: str) -> CachedReply | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens FROM replies WHERE key = ?", (key,)
            ).fetchone()
        return CachedReply(*row) if row else None

    def put(self, key: str, reply: CachedReply) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?)",
                (key, reply.text, reply.prompt_tokens, reply.completion_tokens, time.time()),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
