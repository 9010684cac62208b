"""Decontamination: flag candidates whose prompt matches an evaluation prompt.

Two tests, either flags a candidate:

- n-gram overlap: the fraction of an eval prompt's word n-grams
  (n = ``decontam_ngram``, or the prompt's length when shorter) that occur in
  the candidate's prompt reaches ``decontam_ngram_overlap``;
- embedding similarity: the cosine similarity of the two prompts' embeddings
  reaches ``decontam_embedding_threshold`` (catches paraphrases).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from contract.schema import DataError

_WORDS = re.compile(r"\w+")
PROMPT_KEYS = ("prompt", "instruction", "question", "input", "text")


def read_eval_prompts(paths: list[str]) -> list[dict]:
    """``[{"id", "prompt", "file"}]`` from JSONL/JSON files with a prompt, instruction, question or messages."""
    out = []
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"score.eval_prompts: file not found: {p}")
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".json":
            try:
                records = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(f"malformed JSON: {err.msg}", path=p, line=err.lineno) from None
            if isinstance(records, dict):
                records = records.get("data") or records.get("prompts") or [records]
            numbered = [(None, i, r) for i, r in enumerate(records)]
        else:
            numbered = []
            for lineno, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        numbered.append((lineno, None, json.loads(line)))
                    except json.JSONDecodeError as err:
                        raise DataError(f"malformed JSON: {err.msg}", path=p, line=lineno) from None
        for lineno, idx, rec in numbered:
            prompt = _prompt_of(rec)
            if prompt is None:
                raise DataError(f"no prompt (expected one of {', '.join(PROMPT_KEYS)} or messages)", path=p,
                                line=lineno, record=idx)
            rid = rec.get("id") if isinstance(rec, dict) else None
            out.append({"id": str(rid if rid is not None else f"{p.name}:{lineno or idx}"), "prompt": prompt,
                        "file": str(p)})
    return out


def _prompt_of(rec) -> str | None:
    if isinstance(rec, str):
        return rec
    if not isinstance(rec, dict):
        return None
    if isinstance(rec.get("messages"), list):
        users = [t.get("content", "") for t in rec["messages"] if isinstance(t, dict) and t.get("role") == "user"]
        return "\n\n".join(users) if users else None
    for k in PROMPT_KEYS:
        if isinstance(rec.get(k), str) and rec[k].strip():
            return rec[k]
    return None


def words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def ngram_overlap(candidate_prompts: list[str], eval_prompts: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """For each candidate: the highest fraction of one eval prompt's n-grams found in it, and which eval prompt.

    >>> ov, which = ngram_overlap(["please write a haiku about autumn leaves falling", "hello"],
    ...                           ["write a haiku about autumn leaves"], 3)
    >>> ov.tolist(), which.tolist()
    ([1.0, 0.0], [0, -1])
    """
    index: dict[tuple, list[int]] = {}
    sizes = np.zeros(len(eval_prompts))
    ns = set()
    for e, text in enumerate(eval_prompts):
        w = words(text)
        if not w:
            continue
        k = min(n, len(w))
        ns.add(k)
        grams = {tuple(w[i:i + k]) for i in range(len(w) - k + 1)}
        sizes[e] = len(grams)
        for g in grams:
            index.setdefault(g, []).append(e)
    best = np.zeros(len(candidate_prompts))
    which = np.full(len(candidate_prompts), -1, dtype=np.int64)
    if not index:
        return best, which
    for c, text in enumerate(candidate_prompts):
        w = words(text)
        hits: dict[int, int] = {}
        for k in ns:
            for g in {tuple(w[i:i + k]) for i in range(len(w) - k + 1)}:
                for e in index.get(g, ()):
                    hits[e] = hits.get(e, 0) + 1
        for e, h in hits.items():
            frac = h / sizes[e]
            if frac > best[c]:
                best[c], which[c] = frac, e
    return best, which


def embedding_similarity(candidate_vecs: np.ndarray, eval_vecs: np.ndarray, block: int = 8192):
    """Highest cosine similarity of each candidate prompt to any eval prompt, and which one."""
    n = len(candidate_vecs)
    best = np.zeros(n, dtype=np.float32)
    which = np.full(n, -1, dtype=np.int64)
    if n == 0 or len(eval_vecs) == 0:
        return best, which
    for s in range(0, n, block):
        sims = candidate_vecs[s:s + block] @ eval_vecs.T
        which[s:s + block] = sims.argmax(axis=1)
        best[s:s + block] = sims.max(axis=1)
    return best, which
