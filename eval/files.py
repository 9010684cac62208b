"""Reading and writing eval's files: prompts, generations, judgments (schemas in eval/README.md).

- Prompt file (JSONL or JSON): ``{"id", "prompt" | "instruction" (+ "input") | "turns", "category",
  "reference"?}``; AlpacaEval's evaluation set (``instruction``, ``dataset``) and MT-Bench's questions
  (``question_id``, ``turns``) are read as they are. A built-in set is named instead of a path
  (:data:`BUILTIN_PROMPTS`: ``mt-bench``).
- generations.jsonl: ``{"id", "prompt", "category", "output", "generator", "model", "adapter", "config"}``,
  plus ``turns`` and ``outputs`` (one answer per turn) for multi-turn prompts (``output`` is the first
  turn's answer); AlpacaEval's model outputs (``{"instruction", "output", "generator"}``) are read as
  generations too.
- judgments.jsonl: one row per pair and judge (see ``eval/README.md``).

Every problem names its place (``file:line``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from contract.io import sha256_file, write_jsonl  # noqa: F401 (part of this module's API)


def prompt_id(text: str) -> str:
    """A stable id for a prompt without one.

    >>> prompt_id("What is 2+2?")
    'p-52cb6b5e4a03'
    """
    return "p-" + hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()[:12]


def read_records(path: str | Path) -> list[dict]:
    """JSON objects from a JSONL file, or a JSON list (or an object with a list under data/examples/train)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if path.suffix == ".json" or stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            if path.suffix == ".json":
                raise ValueError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
        else:
            if isinstance(data, dict):
                data = next((data[k] for k in ("data", "examples", "train", "prompts") if isinstance(data.get(k), list)), None)
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise ValueError(f"{path}: expected a list of objects")
            return data
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{n}: invalid JSON: {err.msg}") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object")
        rows.append(obj)
    return rows


BENCHMARKS_DIR = Path(__file__).resolve().parent / "benchmarks"
BUILTIN_PROMPTS = {
    "mt-bench": BENCHMARKS_DIR / "mt_bench" / "question.jsonl",
}
"""Prompt sets that ship with eval, selectable by name (``--prompts mt-bench``)."""
BUILTIN_REFERENCES = {
    "mt-bench": BENCHMARKS_DIR / "mt_bench" / "reference_answer_gpt-4.jsonl",
}
"""Reference answers of a built-in set (FastChat's ``reference_answer/gpt-4.jsonl`` format)."""


def resolve_prompts(name_or_path: str | Path) -> Path:
    """A built-in prompt set's file (``mt-bench``), or the path as given."""
    key = str(name_or_path).strip().lower().replace("_", "-")
    return BUILTIN_PROMPTS.get(key, Path(name_or_path))


@dataclass
class Prompt:
    id: str
    prompt: str
    category: str = "general"
    reference: str | list[str] | None = None
    """A reference answer; for multi-turn prompts, one per turn."""
    turns: list[str] | None = None
    """The user's messages of a multi-turn prompt (``prompt`` is the first); None for a single turn."""

    @property
    def messages(self) -> list[str]:
        return self.turns or [self.prompt]

    def reference_for(self, turn: int) -> str | None:
        if isinstance(self.reference, list):
            return self.reference[turn - 1] if len(self.reference) >= turn else None
        return self.reference if turn == 1 else None


def _prompt_text(row: dict) -> str | None:
    turns = row.get("turns")
    if isinstance(turns, list) and turns and all(isinstance(t, str) for t in turns):
        return turns[0]
    if isinstance(row.get("prompt"), str):
        return row["prompt"]
    if isinstance(row.get("instruction"), str):
        extra = row.get("input")
        return row["instruction"] + (f"\n\n{extra}" if isinstance(extra, str) and extra.strip() else "")
    msgs = row.get("messages")
    if isinstance(msgs, list):
        users = [m.get("content") for m in msgs if isinstance(m, dict) and m.get("role") == "user"]
        if users and isinstance(users[0], str):
            return users[0]
    return None


def load_prompts(path: str | Path, limit: int | None = None) -> list[Prompt]:
    """Prompts from a file, or a built-in set by name (``mt-bench``: 80 two-turn questions with GPT-4
    reference answers for math, reasoning and coding)."""
    builtin = str(path).strip().lower().replace("_", "-")
    path = resolve_prompts(path)
    problems, out, seen = [], [], set()
    for n, row in enumerate(read_records(path), 1):
        text = _prompt_text(row)
        if not text or not text.strip():
            problems.append(f"{path} record {n}: no 'prompt', 'instruction', 'turns' or user message")
            continue
        pid = str(row.get("id") or row.get("question_id") or prompt_id(text))
        if pid in seen:
            problems.append(f"{path} record {n}: duplicate id {pid!r}")
            continue
        seen.add(pid)
        category = row.get("category") or row.get("dataset") or "general"
        turns = row.get("turns") if isinstance(row.get("turns"), list) and len(row["turns"]) > 1 else None
        out.append(Prompt(pid, text, str(category), row.get("reference"), turns))
    if problems:
        raise ValueError(f"{len(problems)} problem(s) in the prompt file:\n  " + "\n  ".join(problems[:20]))
    if not out:
        raise ValueError(f"{path}: no prompts")
    if builtin in BUILTIN_REFERENCES:
        refs = load_reference_answers(BUILTIN_REFERENCES[builtin])
        for p in out:
            if p.id in refs:
                p.reference = refs[p.id] if p.turns else refs[p.id][0]
    return out[:limit] if limit else out


def load_reference_answers(path: str | Path) -> dict[str, list[str]]:
    """FastChat's reference answers (``{"question_id", "choices": [{"turns": [...]}]}``) by question id."""
    out = {}
    for n, row in enumerate(read_records(path), 1):
        choices = row.get("choices") or []
        if "question_id" not in row or not choices or not isinstance(choices[0].get("turns"), list):
            raise ValueError(f"{path} record {n}: expected question_id and choices[0].turns")
        out[str(row["question_id"])] = [str(t) for t in choices[0]["turns"]]
    return out


def load_generations(path: str | Path) -> list[dict]:
    """Generation rows in our schema; AlpacaEval outputs (``instruction``/``output``/``generator``) are converted."""
    rows, problems = [], []
    for n, row in enumerate(read_records(path), 1):
        text = _prompt_text(row)
        if text is None or not isinstance(row.get("output"), str):
            problems.append(f"{path} record {n}: needs a prompt ('prompt' or 'instruction') and an 'output'")
            continue
        turns, outputs = row.get("turns"), row.get("outputs")
        multi = isinstance(turns, list) and isinstance(outputs, list) and len(turns) > 1
        if multi and (len(outputs) > len(turns) or not all(isinstance(o, str) for o in outputs)):
            problems.append(f"{path} record {n}: 'outputs' must be one answer (text) per turn")
            continue
        rows.append({
            "id": str(row.get("id") or row.get("question_id") or prompt_id(text)),
            "prompt": text,
            "category": str(row.get("category") or row.get("dataset") or "general"),
            "output": row["output"],
            "generator": str(row.get("generator") or Path(path).stem),
            "model": row.get("model"),
            "adapter": row.get("adapter"),
            "config": row.get("config") or {},
            **({"reference": row["reference"]} if row.get("reference") else {}),
            **({"turns": turns, "outputs": outputs} if multi else {}),
        })
    if problems:
        raise ValueError(f"{len(problems)} problem(s) in {path}:\n  " + "\n  ".join(problems[:20]))
    return rows


@dataclass
class Joined:
    pairs: list[tuple[dict, dict]] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)


def join_generations(a_rows: list[dict], b_rows: list[dict]) -> Joined:
    """Pair rows by id, then (for files from elsewhere, e.g. AlpacaEval) by the prompt text."""
    by_id = {r["id"]: r for r in b_rows}
    by_text = {" ".join(r["prompt"].split()): r for r in b_rows}
    out, used = Joined(), set()
    for a in a_rows:
        b = by_id.get(a["id"]) or by_text.get(" ".join(a["prompt"].split()))
        if b is None or id(b) in used:
            out.only_a.append(a["id"])
            continue
        used.add(id(b))
        out.pairs.append((a, b))
    out.only_b = [b["id"] for b in b_rows if id(b) not in used]
    return out


def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())

