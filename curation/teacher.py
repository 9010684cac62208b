"""The teacher of ``curation generate``: a model that writes instructions and answers, through the judge engine.

Nothing here talks to a model itself: the backend (any OpenAI-compatible endpoint, or a local transformers
model, optionally with a PEFT adapter), the concurrency, the client's retries, the reply cache, the cost
accounting and the budget are judging's (:mod:`judging.backends`, :mod:`judging.runner`,
:mod:`judging.cache`), exactly as for the LLM ratings of ``score`` and eval's generation. What the teacher
adds is one budget and one set of counters over its several kinds of request (new tasks, answers, …), and
a prompt template with a version.

The reply cache is what makes a killed run resume: every reply is stored as it arrives, and a re-run asks
the identical requests (the few-shot draws are seeded) and finds them there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@dataclass
class Template:
    """A prompt template shipped in ``curation/templates/<name>.txt``; ``version`` is ``<name>@<sha8>``."""

    name: str
    text: str

    @classmethod
    def load(cls, name: str) -> "Template":
        path = TEMPLATES_DIR / f"{name}.txt"
        return cls(name, path.read_text(encoding="utf-8"))

    @property
    def version(self) -> str:
        return f"{self.name}@{hashlib.sha256(self.text.encode()).hexdigest()[:8]}"

    def render(self, **values: Any) -> str:
        out = self.text
        for k, v in values.items():
            out = out.replace("{" + k + "}", str(v))
        return out.strip()


@dataclass
class TeacherStats:
    requests: int = 0
    cached: int = 0
    failed: int = 0
    unparseable: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    """USD spent in this run."""
    cost_total: float = 0.0
    """USD the replies cost over all runs, the cached ones included."""
    budget_exhausted: bool = False
    by_task: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


class Teacher:
    """One model behind judging's runner; ``ask`` sends a list of chat requests and returns one
    :class:`judging.Outcome` per request, in order."""

    def __init__(self, *, kind: str, model: str, base_url: str = "", adapter: str = "", cache_dir: Path | None,
                 concurrency: int = 8, max_cost: float = 0.0, price_input: float = 0.0, price_output: float = 0.0,
                 timeout: float = 120.0, seed: int = 0, progress: bool = True, role: str = "teacher"):
        from judging import JudgeCache, make_backend, resolve_backend_config

        self.cfg = resolve_backend_config(
            {}, role=role, kind=kind, model=model or None, base_url=base_url or None, adapter=adapter or None,
            decoding="generate", timeout=timeout, price_input=price_input or None, price_output=price_output or None)
        self.backend = make_backend(self.cfg, role=role)
        self.cache = JudgeCache(cache_dir) if cache_dir is not None else None
        self.concurrency, self.max_cost, self.seed, self.progress = concurrency, max_cost, seed, progress
        self.stats = TeacherStats()

    @property
    def describe(self) -> str:
        """The teacher as provenance names it: ``openai:<model>`` or ``transformers:<model>[+adapter]``."""
        return self.cfg.describe().removesuffix(" (generate)")

    def remaining(self) -> float | None:
        if not self.max_cost:
            return None
        return self.max_cost - self.stats.cost

    def ask(self, task: str, requests: Sequence[list[dict]], *, parse: Callable[[str], Any] | None = None,
            temperature: float = 0.0, top_p: float | None = None, max_tokens: int = 512,
            fingerprint: dict | None = None, desc: str | None = None) -> list:
        """One outcome per request (``judging.Outcome``: ``.ok``, ``.value`` the parsed reply, ``.status``).
        ``task`` names the kind of request (for the counters and the cache key, with ``fingerprint``: the
        template version and anything else that shapes the reply)."""
        from judging import Job, Outcome, Runner, Status
        from judging.outcomes import BUDGET_MESSAGE

        if not requests:
            return []
        left = self.remaining()
        if left is not None and left <= 0:
            self.stats.budget_exhausted = True
            return [Outcome(Status.BUDGET, error=BUDGET_MESSAGE) for _ in requests]
        settings = {"task": task, "temperature": temperature, "top_p": top_p if temperature > 0 else None,
                    "max_tokens": max_tokens, "seed": self.seed, **(fingerprint or {})}
        job = Job(hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16], temperature,
                  max_tokens, parse=parse or _text, seed=self.seed, top_p=settings["top_p"])
        runner = Runner(job, self.cfg, self.backend, self.cache, concurrency=self.concurrency, max_cost=left,
                        progress=self.progress, desc=desc or f"teacher: {task}")
        outcomes = runner.run(list(requests))
        s, rs = self.stats, runner.stats
        s.requests += rs.requests
        s.cached += rs.cached
        s.prompt_tokens += rs.prompt_tokens
        s.completion_tokens += rs.completion_tokens
        s.cost += rs.cost
        s.cost_total += sum(o.cost for o in outcomes)
        s.failed += sum(o.status in (Status.FAILED, Status.ERROR) for o in outcomes)
        s.unparseable += sum(o.status is Status.UNPARSEABLE for o in outcomes)
        s.budget_exhausted = s.budget_exhausted or rs.budget_exhausted
        t = s.by_task.setdefault(task, {"requests": 0, "cached": 0, "ok": 0})
        t["requests"] += rs.requests
        t["cached"] += rs.cached
        t["ok"] += sum(o.ok for o in outcomes)
        return outcomes


def _text(reply: str) -> str:
    """A non-empty reply, stripped."""
    from judging.parsers import Unparseable

    text = (reply or "").strip()
    if not text:
        raise Unparseable("empty reply")
    return text
