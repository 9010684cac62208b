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
  ``[[C]]``, LIMA's "Response A is better", Arena-Hard's ``[[A>>B]]`` … (strong
  when one answer is at least twice as long), AlpacaEval's single letter, or
  ``Rating: [[n]]`` with n from the answer's length, on 1–5 or 1–10 as asked),
  for single-turn prompts and MT-Bench's two-turn conversations (the second
  answers decide); any other request is answered like a chat model:
  ``"[<model>] …"`` with ``answer_repeats[model]`` sentences (default 2) that
  quote the last user message. E.g. ``fake.reply = lambda m: "Fine.\\nRating: [[4]]"``.
- ``logprobs`` (bool, default True): answer ``"logprobs": true`` requests with
  the first token's ``top_logprobs`` (the verdict letter's probability from the
  two answers' lengths); False returns ``"logprobs": null`` like an endpoint
  that has none.
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
import math
import random
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import pytest

__all__ = ["FakeOpenAI", "default_reply", "fake_openai", "preference_first"]

_ANSWER_RE = re.compile(
    r"(?:\[|<\|)The Start of Assistant ([AB])'s Answer(?:\]|\|>)\n?(.*?)\n?(?:\[|<\|)The End of Assistant \1's Answer",
    re.S,
)
_CONV_RE = re.compile(
    r"<\|The Start of Assistant ([AB])'s Conversation with User\|>(.*?)<\|The End of Assistant \1's Conversation with User\|>",
    re.S,
)
_SINGLE_RE = re.compile(r"\[The Start of (?:the )?Response\]\n?(.*?)\n?\[The End of (?:the )?Response\]"
                        r"|\[The Start of Assistant's Answer\]\n?(.*?)\n?\[The End of Assistant's Answer\]", re.S)


def _all_text(messages: list[dict]) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages)


def _last_answer(conversation: str, side: str) -> str:
    parts = re.split(rf"### Assistant {side}:\n", conversation)
    return parts[-1].split("\n\n### User:")[0].strip() if len(parts) > 1 else ""


def _answers(text: str) -> dict[str, str]:
    """The answers to compare (A and B), or the one to rate (A), from any of the judge formats."""
    convs = dict(_CONV_RE.findall(text))
    if convs:  # MT-Bench's multi-turn prompts: the answer to the last turn decides
        return {side: _last_answer(body, side) for side, body in convs.items()}
    found = dict(_ANSWER_RE.findall(text))
    if found:
        return found
    single = _SINGLE_RE.findall(text)
    if single:
        return {"A": next(x for x in single[-1] if x is not None)}
    return {}


def _format_pairwise(text: str, choice: str, strong: bool = False) -> str:
    """Write ``choice`` ("A", "B" or "tie") in the verdict style the prompt asks for."""
    if "Neither is significantly better" in text:
        phrase = {"A": "Response A is better", "B": "Response B is better", "tie": "Neither is significantly better"}
        return f"Both answers address the question.\nVerdict: {phrase[choice]}"
    if "[[A>>B]]" in text:
        token = {"A": "A>>B" if strong else "A>B", "B": "B>>A" if strong else "B>A", "tie": "A=B"}[choice]
        return f"Comparing the two answers.\nMy final verdict is: [[{token}]]"
    if "one letter only" in text:
        return {"A": "A", "B": "B", "tie": "A"}[choice]
    token = {"A": "[[A]]", "B": "[[B]]", "tie": "[[C]]"}[choice]
    return f"Comparing the two answers for helpfulness and detail.\n{token}"


def _biased(a: str, b: str, position_bias: float) -> bool:
    key = "\x00".join(sorted([a, b])).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64 < position_bias


def preference_first(a: str, b: str, position_bias: float = 0.0) -> float:
    """The fake's probability that the first answer is preferred: from the length difference."""
    if _biased(a, b, position_bias):
        return 0.9
    return min(0.98, max(0.02, 1 / (1 + math.exp(-(len(a) - len(b)) / 20))))


def default_reply(messages: list[dict], *, position_bias: float = 0.0, model: str = "fake",
                  repeats: int = 2) -> str:
    """A deterministic judge: prefers the longer answer; rates by length. Otherwise a chat model.

    With ``position_bias`` p, a fraction p of pairs (by a hash of the unordered
    pair of answers) are answered "A" in both orders.
    """
    text = _all_text(messages)
    answers = _answers(text)
    if "A" in answers and "B" in answers:
        a, b = answers["A"], answers["B"]
        if _biased(a, b, position_bias):
            choice = "A"
        elif len(a) == len(b):
            choice = "tie"
        else:
            choice = "A" if len(a) > len(b) else "B"
        strong = max(len(a), len(b)) >= 2 * max(1, min(len(a), len(b)))
        return _format_pairwise(text, choice, strong)
    if "A" in answers:
        n = len(answers["A"].strip())
        score = max(1, min(10, 1 + n // 30)) if "scale of 1 to 10" in text else max(1, min(5, 1 + n // 40))
        return f"The response is on topic.\nRating: [[{score}]]"
    users = [m for m in messages if m.get("role") == "user"]
    if users:
        last = " ".join(str(users[-1].get("content", "")).split())[:60]
        turn = len(users)
        return f"[{model}] " + " ".join(f"Point {i + 1} on turn {turn} about: {last}." for i in range(repeats))
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
        self.logprobs = True
        self.answer_repeats: dict[str, int] = {}
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
            model = str(body.get("model", self.model))
            text = default_reply(messages, position_bias=self.position_bias, model=model,
                                 repeats=self.answer_repeats.get(model, 2))
        finish = "stop"
        limit = body.get("max_tokens")
        if isinstance(limit, int) and len(text) // 4 > limit:  # ~4 characters a token, cut like a real server
            text, finish = text[: 4 * limit], "length"
        if self.usage is not None:
            prompt_tokens, completion_tokens = self.usage
        else:
            prompt_tokens = max(1, len(_all_text(messages)) // 4)
            completion_tokens = max(1, len(text) // 4)
        logprobs = None
        if body.get("logprobs") and self.logprobs:
            logprobs = {"content": [self._token_logprobs(text, messages, int(body.get("top_logprobs") or 2))]}
        with self._lock:
            self.completions += 1
        payload = {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text},
                 "finish_reason": finish,
                 "logprobs": logprobs}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return 200, payload, {}

    def _token_logprobs(self, text: str, messages: list[dict], top: int) -> dict:
        """The first token of the reply and its alternatives: for a verdict letter, A and B with the
        probabilities the lengths give; otherwise the token alone, with probability 1."""
        first = (text.strip().split() or [""])[0]
        answers = _answers(_all_text(messages))
        if first in ("A", "B") and "A" in answers and "B" in answers:
            p_a = preference_first(answers["A"], answers["B"], self.position_bias)
            alts = [("A", math.log(p_a)), ("B", math.log(1 - p_a))]
        else:
            alts = [(first, 0.0)]
        alts = sorted(alts, key=lambda t: -t[1])[:max(1, top)]
        chosen = dict(alts).get(first, 0.0)
        return {"token": first, "logprob": chosen, "bytes": list(first.encode()),
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in alts]}

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
