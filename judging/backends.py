"""Backends: an OpenAI-compatible endpoint and a local transformers model.

A backend turns chat messages into a :class:`Completion`. It knows nothing
about verdicts, pairs or caching (see :mod:`judging.runner`). Humans are the
third way to judge, but they do not answer requests: see :mod:`eval.human`.

Settings are a :class:`judging.config.BackendConfig`. The API key is never
part of it: it is read from ``EVAL_JUDGE_API_KEY`` (``EVAL_GEN_API_KEY`` for
generation), then ``OPENAI_API_KEY``, when the client is made, or passed in
memory, and it never reaches a file, a cache key, a judgment row or a log line.

Retries are the ``openai`` client's own (one policy): ``max_retries`` on 408,
409, 429, 5xx, timeouts and dropped connections, exponential backoff with
jitter, or the server's ``retry-after``. Every HTTP attempt is counted.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from .config import BackendConfig, api_key_env
from .outcomes import BackendError, FatalBackendError


@dataclass
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    """HTTP attempts, the client's retries included."""
    notes: list[str] = field(default_factory=list)
    choice_logprobs: dict[str, float] | None = None
    """Log-probabilities of the alternatives for the verdict token (openai, with logprobs) or of each
    verdict string (transformers, constrained decoding)."""
    finish_reason: str | None = None
    """``stop``, ``length`` (cut at max_tokens), … as the endpoint reports it."""


def make_backend(cfg: BackendConfig, *, api_key: str | None = None, role: str = "judge"):
    if cfg.kind == "openai":
        return OpenAIBackend(cfg, api_key=api_key, role=role)
    return TransformersBackend(cfg)


class OpenAIBackend:
    """Chat completions through the ``openai`` client; its retry policy, every attempt counted."""

    parallel_safe = True

    def __init__(self, cfg: BackendConfig, *, api_key: str | None = None, role: str = "judge"):
        import openai

        self.cfg = cfg
        names = api_key_env(role)
        key = api_key or next((os.environ[n] for n in names if os.environ.get(n)), None)
        if not key:
            if not cfg.base_url:
                raise FatalBackendError(
                    f"no API key: set {names[0]} (or {names[1]}), or point {names[0].replace('API_KEY', 'BASE_URL')} "
                    "at a local OpenAI-compatible server (vLLM, llama.cpp, Ollama) that needs none"
                )
            key = "EMPTY"  # local servers accept any key
        self._secrets = [key]
        self._key_env = names[0]
        self._local = threading.local()
        http = openai.DefaultHttpxClient(event_hooks={"request": [self._count_attempt]})
        self._client = openai.OpenAI(api_key=key, base_url=cfg.base_url, max_retries=cfg.max_retries,
                                     timeout=cfg.timeout, http_client=http)

    def _count_attempt(self, request) -> None:  # an httpx event hook: runs in the calling thread
        self._local.attempts = getattr(self._local, "attempts", 0) + 1

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend({self.cfg.describe()}, base_url={self.cfg.base_url!r})"

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret and secret != "EMPTY":
                text = text.replace(secret, "***")
        return text

    def complete(self, messages: list[dict], *, temperature: float, max_tokens: int, choices=None,
                 logprobs: bool = False, seed: int | None = None, top_p: float | None = None) -> Completion:
        import openai

        self._local.attempts = 0
        extra = {}
        if logprobs:
            extra.update(logprobs=True, top_logprobs=5)
        if seed is not None:
            extra["seed"] = seed
        if top_p is not None:
            extra["top_p"] = top_p
        try:
            resp = self._client.chat.completions.create(
                model=self.cfg.model, messages=messages, temperature=temperature, max_tokens=max_tokens, **extra
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError) as err:
            raise FatalBackendError(
                f"the endpoint refused the API key (HTTP {err.status_code}); check {self._key_env}"
            ) from None
        except openai.NotFoundError:
            raise FatalBackendError(
                f"model {self.cfg.model!r} or the chat-completions route was not found at "
                f"{self.cfg.base_url or 'api.openai.com'} (HTTP 404)"
            ) from None
        except openai.APITimeoutError:
            raise BackendError(f"timeout after {self._attempts()} attempts") from None
        except openai.APIConnectionError:
            raise FatalBackendError(
                f"cannot reach the endpoint {self.cfg.base_url or 'api.openai.com'} after {self._attempts()} attempts"
            ) from None
        except openai.APIStatusError as err:
            status = err.status_code
            if status in (408, 409, 429) or status >= 500:
                raise BackendError(f"HTTP {status} after {self._attempts()} attempts") from None
            raise BackendError(self.redact(f"HTTP {status}: {err.message}")) from None
        if not resp.choices:
            raise BackendError("the endpoint returned no choices")
        choice = resp.choices[0]
        usage = resp.usage
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            attempts=self._attempts(),
            choice_logprobs=_verdict_logprobs(choice) if logprobs else None,
            finish_reason=choice.finish_reason,
        )

    def _attempts(self) -> int:
        return max(1, getattr(self._local, "attempts", 1))


def _verdict_logprobs(choice) -> dict[str, float] | None:
    """The alternatives of the first non-blank token of the reply, with their log-probabilities."""
    content = getattr(getattr(choice, "logprobs", None), "content", None) or []
    for tok in content:
        if str(tok.token).strip():
            alts = {str(t.token): float(t.logprob) for t in (tok.top_logprobs or [])}
            alts.setdefault(str(tok.token), float(tok.logprob))
            return alts
    return None


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

    def complete(self, messages: list[dict], *, temperature: float, max_tokens: int, choices=None,
                 logprobs: bool = False, seed: int | None = None, top_p: float | None = None) -> Completion:
        with self._lock, self.torch.inference_mode():
            if self.cfg.decoding == "constrained":
                if not choices:
                    raise FatalBackendError("constrained decoding needs the judge to list its verdict `choices`")
                return self._constrained(messages, choices)
            return self._generate(messages, max_tokens, temperature=temperature, top_p=top_p, seed=seed)

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
        return Completion(text=text, prompt_tokens=len(prompt), completion_tokens=len(cand[labels.index(best)]),
                          notes=notes, choice_logprobs=scores, finish_reason="stop")

    def _generate(self, messages: list[dict], max_tokens: int, *, temperature: float = 0.0,
                  top_p: float | None = None, seed: int | None = None) -> Completion:
        """Greedy at temperature 0; above it, sampling seeded by ``seed`` and the prompt, so the same request
        gives the same reply (a resumed run reproduces what it was asked before) and two prompts do not share
        one random stream."""
        torch = self.torch
        prompt, cut = self._prompt_ids(messages, reserve=max_tokens)
        input_ids = torch.tensor([prompt])
        eos = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else None
        sampling: dict = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if temperature and temperature > 0:
            sampling = {"do_sample": True, "temperature": float(temperature), "top_p": top_p or 1.0, "top_k": 0}
            torch.manual_seed(_request_seed(seed, prompt))
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_tokens,
            eos_token_id=eos,
            pad_token_id=self.tokenizer.pad_token_id,
            **sampling,
        )
        new = out[0, len(prompt):].tolist()
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        notes = [f"prompt cut by {cut} tokens"] if cut else []
        finish = "length" if len(new) >= max_tokens and (eos is None or new[-1] not in eos) else "stop"
        return Completion(text=text, prompt_tokens=len(prompt), completion_tokens=len(new), notes=notes,
                          finish_reason=finish)


def _request_seed(seed: int | None, prompt_ids: list[int]) -> int:
    """A 63-bit seed from the job's seed and the prompt's tokens (stable across runs and machines)."""
    import hashlib

    h = hashlib.sha256(f"{seed or 0}:{','.join(map(str, prompt_ids))}".encode()).digest()
    return int.from_bytes(h[:8], "big") >> 1
