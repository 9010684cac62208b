"""A local HTTP server that speaks the OpenAI chat-completions protocol, for tests.

It is a real server on a real socket (``http.server.ThreadingHTTPServer`` on
127.0.0.1, an ephemeral port): the ``openai`` client talks to it unchanged, so
retries, timeouts, concurrency and JSON parsing are exercised for real.

Fixture
-------
``fake_openai`` (function-scoped, starts in milliseconds) yields a
:class:`FakeOpenAI`. Point a client at it with::

    OpenAI(base_url=fake_openai.base_url, api_key=fake_openai.api_key)

or set the environment the judges read: ``fake_openai.env()`` returns
``{"EVAL_JUDGE_BASE_URL": …, "EVAL_JUDGE_API_KEY": …, "EVAL_JUDGE_MODEL": …}``
(use ``monkeypatch.setenv`` for each item).

Endpoints
---------
- ``POST /v1/chat/completions``: ``{"model", "messages", …}`` → a
  ``chat.completion`` object with one choice and ``usage``. Requests without
  ``Authorization: Bearer <api_key>`` get 401.
- ``GET /v1/models``: the one model, ``fake_openai.model``.

Knobs (attributes; change them at any time, also between requests)
------------------------------------------------------------------
- ``reply``: ``callable(messages: list[dict]) -> str`` producing the assistant
  text. Default: :func:`default_reply`, a judge that prefers the longer of two
  answers and formats its verdict the way the prompt asks (``[[A]]``/``[[B]]``/
  ``[[C]]``, LIMA's "Response A is better", or ``Rating: [[n]]`` with n from
  the answer's length). E.g. ``fake.reply = lambda m: "Fine.\\nRating: [[4]]"``.
- ``position_bias`` (0–1): the fraction of pairs (chosen by a hash of the two
  answers, so the same pairs in both orders) for which the default judge
  answers "the first one" (A) whatever the order: those verdicts flip when
  the order flips.
- ``latency`` (seconds): sleep before answering every request.
- ``error_rate`` (0–1) and ``error_statuses`` (default ``(429, 500, 503)``):
  answer that fraction of requests with one of those statuses (seeded random);
  ``fail_first`` (int): the first N requests get an error status whatever the
  rate. Error replies carry ``retry-after-ms: retry_after_ms`` (``None``: no
  header, so the client falls back to its exponential backoff).
- ``stall_first`` (int) and ``stall_seconds``: the first N requests sleep that
  long before answering (to trigger client timeouts).
- ``malformed_rate`` (0–1): that fraction of replies (seeded random) are
  replaced by text without any verdict ("I am not sure which is better.").
- ``usage``: ``(prompt_tokens, completion_tokens)`` reported per completion;
  default ``None`` counts ~4 characters per token.
- ``seed``: seeds the error/malformed draws (``reset()`` re-seeds).

Observations
------------
- ``requests``: number of POSTs to chat completions (errors included).
- ``completions``: number answered with 200.
- ``bodies``: the JSON bodies received (list of dicts).
- ``auth_headers``: the set of Authorization headers seen.
- ``max_in_flight``: the most requests handled at the same time.
- ``reset()``: zero the counters and re-seed.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import pytest

__all__ = ["FakeOpenAI", "default_reply", "fake_openai"]

_ANSWER_RE = re.compile(
    r"\[The Start of Assistant ([AB])'s Answer\]\n?(.*?)\n?\[The End of Assistant \1's Answer\]", re.S
)
_SINGLE_RE = re.compile(r"\[The Start of (?:the )?Response\]\n?(.*?)\n?\[The End of (?:the )?Response\]", re.S)


def _all_text(messages: list[dict]) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages)


def _format_pairwise(text: str, choice: str) -> str:
    """Write ``choice`` ("A", "B" or "tie") in the verdict style the prompt asks for."""
    if "Neither is significantly better" in text:
        phrase = {"A": "Response A is better", "B": "Response B is better", "tie": "Neither is significantly better"}
        return f"Both answers address the question.\nVerdict: {phrase[choice]}"
    token = {"A": "[[A]]", "B": "[[B]]", "tie": "[[C]]"}[choice]
    return f"Comparing the two answers for helpfulness and detail.\n{token}"


def default_reply(messages: list[dict], *, position_bias: float = 0.0) -> str:
    """A deterministic judge: prefers the longer answer; rates by length.

    With ``position_bias`` p, a fraction p of pairs (by a hash of the unordered
    pair of answers) are answered "A" in both orders.
    """
    text = _all_text(messages)
    answers = dict((k, v) for k, v in _ANSWER_RE.findall(text))
    if "A" in answers and "B" in answers:
        a, b = answers["A"], answers["B"]
        key = "\x00".join(sorted([a, b])).encode()
        draw = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
        if draw < position_bias:
            choice = "A"
        elif len(a) == len(b):
            choice = "tie"
        else:
            choice = "A" if len(a) > len(b) else "B"
        return _format_pairwise(text, choice)
    single = _SINGLE_RE.findall(text)
    if single:
        score = max(1, min(5, 1 + len(single[-1].strip()) // 40))
        return f"The response is on topic.\nRating: [[{score}]]"
    return "Hello from the fake chat-completions server."


class FakeOpenAI:
    """See the module docstring for the knobs and observations."""

    def __init__(self, *, model: str = "fake-judge", api_key: str | None = None, seed: int = 0):
        self.model = model
        self.api_key = api_key or "sk-test-" + secrets.token_hex(12)
        self.reply: Callable[[list[dict]], str] | None = None
        self.position_bias = 0.0
        self.latency = 0.0
        self.error_rate = 0.0
        self.error_statuses: tuple[int, ...] = (429, 500, 503)
        self.fail_first = 0
        self.retry_after_ms = 10
        self.stall_first = 0
        self.stall_seconds = 2.0
        self.malformed_rate = 0.0
        self.usage: tuple[int, int] | None = None
        self.seed = seed
        self._lock = threading.Lock()
        self._in_flight = 0
        self.reset()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.completions = 0
            self.bodies: list[dict] = []
            self.auth_headers: set[str] = set()
            self.max_in_flight = 0
            self._rng = random.Random(self.seed)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def env(self) -> dict[str, str]:
        return {
            "EVAL_JUDGE_BASE_URL": self.base_url,
            "EVAL_JUDGE_API_KEY": self.api_key,
            "EVAL_JUDGE_MODEL": self.model,
        }

    # -- request handling --------------------------------------------------
    def _handle_chat(self, body: dict) -> tuple[int, dict, dict]:
        with self._lock:
            self.requests += 1
            n = self.requests
            self.bodies.append(body)
            error_draw = self._rng.random()
            malformed_draw = self._rng.random()
            status_pick = self._rng.choice(self.error_statuses) if self.error_statuses else 500
        if n <= self.stall_first:
            time.sleep(self.stall_seconds)
        if self.latency:
            time.sleep(self.latency)
        if n <= self.fail_first or error_draw < self.error_rate:
            status = status_pick
            headers = {"retry-after-ms": str(self.retry_after_ms)} if self.retry_after_ms is not None else {}
            kind = "rate_limit_exceeded" if status == 429 else "server_error"
            return status, {"error": {"message": f"fake {status}", "type": kind, "code": kind}}, headers
        messages = body.get("messages") or []
        if malformed_draw < self.malformed_rate:
            text = "I am not sure which is better."
        elif self.reply is not None:
            text = self.reply(messages)
        else:
            text = default_reply(messages, position_bias=self.position_bias)
        if self.usage is not None:
            prompt_tokens, completion_tokens = self.usage
        else:
            prompt_tokens = max(1, len(_all_text(messages)) // 4)
            completion_tokens = max(1, len(text) // 4)
        with self._lock:
            self.completions += 1
        payload = {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return 200, payload, {}

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                auth = self.headers.get("Authorization", "")
                with fake._lock:
                    fake.auth_headers.add(auth)
                return auth == f"Bearer {fake.api_key}"

            def do_GET(self):
                if self.path.rstrip("/") != "/v1/models":
                    return self._send(404, {"error": {"message": "not found"}})
                if not self._authorized():
                    return self._send(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
                self._send(200, {"object": "list", "data": [{"id": fake.model, "object": "model", "owned_by": "fake"}]})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                if not self._authorized():
                    return self._send(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    return self._send(400, {"error": {"message": "invalid JSON"}})
                with fake._lock:
                    fake._in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake._in_flight)
                try:
                    status, payload, headers = fake._handle_chat(body)
                finally:
                    with fake._lock:
                        fake._in_flight -= 1
                try:
                    self._send(status, payload, headers)
                except (BrokenPipeError, ConnectionResetError):  # client timed out and left
                    pass

        return Handler


@pytest.fixture
def fake_openai():
    """A running :class:`FakeOpenAI` on 127.0.0.1 (see the module docstring)."""
    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()
