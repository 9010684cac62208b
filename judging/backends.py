"""Judge backends: an OpenAI-compatible endpoint and a local transformers model.

A backend turns chat messages into a :class:`Completion`. It knows nothing
about verdicts, pairs or caching (see :mod:`judging`). Humans are the
third backend, but they do not answer requests: see :mod:`eval.human`.

Settings come from :class:`BackendConfig`, resolved in this order (later
wins): the dataclass defaults, the judge's ``config.yaml`` ``backend:`` block,
the environment, explicit arguments. The API key is never part of the
config: it is read from ``EVAL_JUDGE_API_KEY`` (or ``OPENAI_API_KEY``) when
the client is made, or passed in memory, and it never reaches a file, a
cache key, a judgment row or a log line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BackendConfig:
    """Where and how a judge runs. Field docs are the reference for ``--help`` and the README."""

    kind: str = "openai"
    """``openai`` (any OpenAI-compatible chat-completions endpoint: OpenAI, vLLM,
    llama.cpp, Ollama, …) or ``transformers`` (a local model)."""
    model: str | None = None
    """Model name at the endpoint (env ``EVAL_JUDGE_MODEL``), or a local path / Hub id for transformers."""
    base_url: str | None = None
    """Endpoint URL, e.g. ``http://localhost:8000/v1`` (env ``EVAL_JUDGE_BASE_URL``, then
    ``OPENAI_BASE_URL``; unset means api.openai.com)."""
    timeout: float = 60.0
    """Seconds before one request is abandoned (and retried)."""
    max_retries: int = 6
    """Retries per request on 429, 5xx, timeouts and connection errors."""
    backoff_base: float = 1.0
    """First retry delay in seconds; doubles each retry (with jitter), capped by ``backoff_max``.
    A server's ``retry-after`` header takes precedence."""
    backoff_max: float = 30.0
    """Longest delay between two retries, in seconds."""
    price_input: float = 0.0
    """USD per million prompt tokens (env ``EVAL_JUDGE_PRICE_INPUT``), for cost accounting and ``--max-cost``."""
    price_output: float = 0.0
    """USD per million completion tokens (env ``EVAL_JUDGE_PRICE_OUTPUT``)."""
    adapter: str | None = None
    """transformers only: a PEFT adapter folder applied on ``model``."""
    decoding: str = "constrained"
    """transformers only: ``constrained`` scores each verdict string of the judge (its ``choices``)
    by log-probability and picks the best — always parseable, even from a weak model;
    ``generate`` decodes freely and parses the reply like an API judge's."""
    max_context: int | None = None
    """transformers only: longest prompt in tokens (default: the model's maximum); longer prompts
    are cut from the left and the cut is counted."""

    def identity(self) -> dict[str, Any]:
        """What makes two replies comparable, for the cache key. No URL, no key."""
        if self.kind == "transformers":
            return {"kind": self.kind, "model": self.model, "adapter": self.adapter, "decoding": self.decoding}
        return {"kind": self.kind, "model": self.model}

    def describe(self) -> str:
        if self.kind == "transformers":
            extra = f"+{self.adapter}" if self.adapter else ""
            return f"transformers:{self.model}{extra} ({self.decoding})"
        return f"openai:{self.model}"


ENV = {
    "kind": ("EVAL_JUDGE_BACKEND",),
    "model": ("EVAL_JUDGE_MODEL",),
    "base_url": ("EVAL_JUDGE_BASE_URL", "OPENAI_BASE_URL"),
    "price_input": ("EVAL_JUDGE_PRICE_INPUT",),
    "price_output": ("EVAL_JUDGE_PRICE_OUTPUT",),
}
API_KEY_ENV = ("EVAL_JUDGE_API_KEY", "OPENAI_API_KEY")


def resolve_backend_config(defaults: dict | None = None, **overrides: Any) -> BackendConfig:
    """Defaults < judge config ``backend:`` block < environment < ``overrides`` (``None`` or ``""`` = not given)."""
    names = {f.name: f for f in dataclasses.fields(BackendConfig)}
    values: dict[str, Any] = {}
    problems = []
    given = {k: v for k, v in overrides.items() if v is not None and v != ""}
    for source in (defaults or {}), _from_env(), given:
        for key, value in source.items():
            if key not in names:
                problems.append(f"unknown backend setting {key!r} (known: {', '.join(names)})")
                continue
            values[key] = value
    if problems:
        raise ValueError("; ".join(problems))
    cfg = BackendConfig(**values)
    for num in ("timeout", "backoff_base", "backoff_max", "price_input", "price_output"):
        setattr(cfg, num, float(getattr(cfg, num)))
    cfg.max_retries = int(cfg.max_retries)
    if cfg.kind not in ("openai", "transformers"):
        problems.append(f"backend kind must be 'openai' or 'transformers', not {cfg.kind!r}")
    if cfg.decoding not in ("constrained", "generate"):
        problems.append(f"decoding must be 'constrained' or 'generate', not {cfg.decoding!r}")
    if not cfg.model:
        problems.append(
            "no judge model: set EVAL_JUDGE_MODEL or pass --judge-model "
            "(an endpoint's model name, or a local path for the transformers backend)"
        )
    if problems:
        raise ValueError("; ".join(problems))
    return cfg


def _from_env() -> dict[str, Any]:
    out = {}
    for key, names in ENV.items():
        for name in names:
            if os.environ.get(name):
                out[key] = os.environ[name]
                break
    return out


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    notes: list[str] = field(default_factory=list)


class BackendError(RuntimeError):
    """One request failed for good (after retries, or a 4xx that retrying will not fix)."""


class FatalBackendError(BackendError):
    """The run cannot work (bad key, unknown model, unreachable server): stop everything."""


def make_backend(cfg: BackendConfig, *, api_key: str | None = None):
    if cfg.kind == "openai":
        return OpenAIBackend(cfg, api_key=api_key)
    return TransformersBackend(cfg)


class OpenAIBackend:
    """Chat completions through the ``openai`` client, with our own retry loop.

    The client's built-in retries are off (``max_retries=0``) so that every
    attempt is counted and the backoff is ours: exponential with jitter, or the
    server's ``retry-after``.
    """

    parallel_safe = True

    def __init__(self, cfg: BackendConfig, *, api_key: str | None = None):
        from openai import OpenAI

        self.cfg = cfg
        key = api_key or next((os.environ[n] for n in API_KEY_ENV if os.environ.get(n)), None)
        if not key:
            if not cfg.base_url:
                raise FatalBackendError(
                    "no API key: set EVAL_JUDGE_API_KEY (or OPENAI_API_KEY), or point EVAL_JUDGE_BASE_URL "
                    "at a local OpenAI-compatible server (vLLM, llama.cpp, Ollama) that needs none"
                )
            key = "EMPTY"  # local servers accept any key
        self._secrets = [key]
        self._client = OpenAI(api_key=key, base_url=cfg.base_url, max_retries=0, timeout=cfg.timeout)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend({self.cfg.describe()}, base_url={self.cfg.base_url!r})"

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret and secret != "EMPTY":
                text = text.replace(secret, "***")
        return text

    def complete(self, messages: list[dict], *, temperature: float, max_tokens: int, choices=None) -> Completion:
        import openai

        attempts = 0
        notes = []
        while True:
            attempts += 1
            try:
                resp = self._client.chat.completions.create(
                    model=self.cfg.model, messages=messages, temperature=temperature, max_tokens=max_tokens
                )
            except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
                raise FatalBackendError(
                    f"the judge endpoint refused the API key (HTTP {err.status_code}); check EVAL_JUDGE_API_KEY"
                ) from None
            except openai.NotFoundError:
                raise FatalBackendError(
                    f"model {self.cfg.model!r} or the chat-completions route was not found at "
                    f"{self.cfg.base_url or 'api.openai.com'} (HTTP 404)"
                ) from None
            except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as err:
                status = getattr(err, "status_code", None)
                what = f"HTTP {status}" if status else type(err).__name__
                if attempts > self.cfg.max_retries:
                    if isinstance(err, openai.APIConnectionError) and not isinstance(err, openai.APITimeoutError):
                        raise FatalBackendError(
                            f"cannot reach the judge endpoint {self.cfg.base_url or 'api.openai.com'} "
                            f"after {attempts} attempts ({what})"
                        ) from None
                    raise BackendError(f"{what} after {attempts} attempts") from None
                notes.append(what)
                time.sleep(self._delay(attempts, getattr(err, "response", None)))
                continue
            except openai.APIStatusError as err:
                status = getattr(err, "status_code", None)
                if status is not None and status >= 500:  # 5xx not mapped to InternalServerError
                    if attempts > self.cfg.max_retries:
                        raise BackendError(f"HTTP {status} after {attempts} attempts") from None
                    notes.append(f"HTTP {status}")
                    time.sleep(self._delay(attempts, getattr(err, "response", None)))
                    continue
                raise BackendError(self.redact(f"HTTP {status}: {err.message}")) from None
            break
        if not resp.choices:
            raise BackendError("the endpoint returned no choices")
        text = resp.choices[0].message.content or ""
        usage = resp.usage
        return Completion(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            attempts=attempts,
            notes=notes,
        )

    def _delay(self, attempt: int, response) -> float:
        if response is not None:
            headers = getattr(response, "headers", {}) or {}
            for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
                value = headers.get(name)
                if value:
                    try:
                        seconds = float(value) / divisor
                    except ValueError:
                        continue
                    if math.isfinite(seconds) and 0 <= seconds <= self.cfg.backoff_max:
                        return seconds
        delay = min(self.cfg.backoff_max, self.cfg.backoff_base * 2 ** (attempt - 1))
        return delay * random.uniform(0.5, 1.0)


class TransformersBackend:
    """A local causal LM as a judge.

    ``decoding="constrained"`` appends each of the judge's verdict strings
    (``choices``) to the prompt, sums their token log-probabilities, and
    answers with the best one — a parseable verdict from any model, however
    weak. ``decoding="generate"`` decodes greedily and returns the text.
    """

    parallel_safe = False

    def __init__(self, cfg: BackendConfig):
        import torch
        from transformers import AutoTokenizer

        from contract.models import compute_dtype, load_for_inference, resolve_model, run_compute_dtype

        self.cfg = cfg
        self._lock = threading.Lock()
        has_tokenizer = cfg.adapter and os.path.exists(os.path.join(cfg.adapter, "tokenizer_config.json"))
        tok_src = cfg.adapter if has_tokenizer else resolve_model(cfg.model)  # Hub id, folder, .gguf, built-in
        self.tokenizer = AutoTokenizer.from_pretrained(tok_src)
        if self.tokenizer.chat_template is None:
            raise FatalBackendError(f"the tokenizer of {tok_src} has no chat template; a judge model needs one")
        dtype = (run_compute_dtype(cfg.adapter) if cfg.adapter else None) or compute_dtype("auto")
        self.model = load_for_inference(cfg.model, cfg.adapter, dtype=dtype)
        self.torch = torch
        limit = cfg.max_context or getattr(self.model.config, "max_position_embeddings", None) or 4096
        self.max_context = int(limit)

    def __repr__(self) -> str:
        return f"TransformersBackend({self.cfg.describe()})"

    def redact(self, text: str) -> str:
        return text

    def _prompt_ids(self, messages: list[dict], reserve: int) -> tuple[list[int], int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        room = self.max_context - reserve
        cut = max(0, len(ids) - room)
        return ids[cut:], cut

    def complete(self, messages: list[dict], *, temperature: float, max_tokens: int, choices=None) -> Completion:
        with self._lock, self.torch.inference_mode():
            if self.cfg.decoding == "constrained":
                if not choices:
                    raise FatalBackendError("constrained decoding needs the judge to list its verdict `choices`")
                return self._constrained(messages, choices)
            return self._generate(messages, max_tokens)

    def _constrained(self, messages: list[dict], choices: dict[str, str]) -> Completion:
        torch = self.torch
        labels = list(choices)
        cand = [self.tokenizer(choices[k], add_special_tokens=False)["input_ids"] for k in labels]
        prompt, cut = self._prompt_ids(messages, reserve=max(len(c) for c in cand))
        seqs = [prompt + c for c in cand]
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
        attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        logprobs = torch.log_softmax(self.model(input_ids=input_ids, attention_mask=attention).logits.float(), -1)
        scores = {}
        for row, (label, c) in enumerate(zip(labels, cand)):
            start = len(prompt)
            scores[label] = float(
                sum(logprobs[row, start + j - 1, tok].item() for j, tok in enumerate(c))
            )
        best = max(labels, key=lambda k: scores[k])
        detail = ", ".join(f"{k} {v:.2f}" for k, v in scores.items())
        notes = [f"prompt cut by {cut} tokens"] if cut else []
        text = f"(constrained choice by log-probability of each verdict: {detail})\n{choices[best]}"
        return Completion(text=text, prompt_tokens=len(prompt), completion_tokens=len(cand[labels.index(best)]), notes=notes)

    def _generate(self, messages: list[dict], max_tokens: int) -> Completion:
        torch = self.torch
        prompt, cut = self._prompt_ids(messages, reserve=max_tokens)
        input_ids = torch.tensor([prompt])
        eos = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else None
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        new = out[0, len(prompt):].tolist()
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        notes = [f"prompt cut by {cut} tokens"] if cut else []
        return Completion(text=text, prompt_tokens=len(prompt), completion_tokens=len(new), notes=notes)
