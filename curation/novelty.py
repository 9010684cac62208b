"""The novelty filter of Self-Instruct: a new task is kept only when it is far from every task already known
(the pool, the seeds, the tasks kept so far) by ROUGE-L and by sentence-embedding similarity.

ROUGE-L is computed as Self-Instruct and Alpaca did, with Google's ``rouge-score`` package (its tokenizer:
lower-cased alphanumeric words, no stemming) and the F-measure of the longest common subsequence::

    >>> nf = NoveltyFilter(rouge_threshold=0.7)
    >>> nf.add("t1", "Write a poem about the sea.")
    >>> nf.check("Write a short poem about the sea.").reason
    'rouge'
    >>> nf.check("List three uses of baking soda.").reason is None
    True

Each known task is tokenized once; a candidate is compared only with the tasks whose length and shared words
allow a ROUGE-L of the threshold (F = 2 LCS / (|a| + |b|), and LCS is at most the shared words), then by
the exact LCS. Embeddings (MiniLM, L2-normalized) are compared by one matrix product.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np


def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 between two texts (rouge-score's tokenizer, no stemming).

    >>> round(rouge_l("the cat sat on the mat", "the cat sat on a mat"), 3)
    0.833
    """
    return float(_scorer().score(a, b)["rougeL"].fmeasure)


@dataclass
class Verdict:
    reason: str | None
    """None (novel), ``rouge`` or ``embedding``."""
    rouge: float = 0.0
    rouge_nearest: str | None = None
    similarity: float = 0.0
    similarity_nearest: str | None = None

    @property
    def novel(self) -> bool:
        return self.reason is None

    def to_json(self) -> dict:
        return {"reason": self.reason, "rouge_l": round(self.rouge, 4), "rouge_nearest": self.rouge_nearest,
                "similarity": round(self.similarity, 4), "similarity_nearest": self.similarity_nearest}


class NoveltyFilter:
    """Known tasks (``add``) and the check of a new one (``check``) against all of them."""

    def __init__(self, *, rouge_threshold: float = 0.7, embedding_threshold: float = 1.0,
                 embed: Callable[[list[str]], np.ndarray] | None = None):
        from rouge_score import rouge_scorer

        self._lcs = rouge_scorer._score_lcs  # the function rouge-score's own RougeScorer calls
        self._tokenize = _scorer()._tokenizer.tokenize
        self.rouge_threshold = rouge_threshold
        self.embedding_threshold = embedding_threshold
        self.embed = embed if embedding_threshold < 1 else None
        self.ids: list[str] = []
        self.tokens: list[list[str]] = []
        self.counts: list[Counter] = []
        self.vectors: np.ndarray | None = None
        self._pending: list[str] = []  # texts added but not embedded yet

    def __len__(self) -> int:
        return len(self.ids)

    def add_many(self, ids: list[str], texts: list[str], vectors: np.ndarray | None = None) -> None:
        for i, t in zip(ids, texts):
            toks = self._tokenize(t)
            self.ids.append(i)
            self.tokens.append(toks)
            self.counts.append(Counter(toks))
        if self.embed is not None:
            if vectors is None:
                vectors = self.embed(list(texts)) if texts else None
            if vectors is not None and len(vectors):
                vectors = np.asarray(vectors, dtype=np.float32)
                self.vectors = vectors if self.vectors is None else np.vstack([self.vectors, vectors])

    def add(self, id_: str, text: str, vector: np.ndarray | None = None) -> None:
        self.add_many([id_], [text], None if vector is None else vector[None, :])

    def nearest_rouge(self, text: str, stop_at: float | None = None) -> tuple[float, str | None]:
        """The highest ROUGE-L F1 of ``text`` with a known task, and that task's id (``stop_at``: return as soon
        as one reaches it)."""
        toks = self._tokenize(text)
        if not toks:
            return 0.0, None
        counts = Counter(toks)
        n = len(toks)
        best, best_id = 0.0, None
        for i, (other, other_counts) in enumerate(zip(self.tokens, self.counts)):
            m = len(other)
            if not m or 2 * min(n, m) / (n + m) <= best:
                continue
            shared = sum((counts & other_counts).values())
            if 2 * shared / (n + m) <= best:
                continue
            f = self._lcs(toks, other).fmeasure
            if f > best:
                best, best_id = f, self.ids[i]
                if stop_at is not None and best >= stop_at:
                    break
        return float(best), best_id

    def nearest_embedding(self, vector: np.ndarray | None) -> tuple[float, str | None]:
        if vector is None or self.vectors is None or not len(self.vectors):
            return 0.0, None
        sims = self.vectors @ vector
        k = int(np.argmax(sims))
        return float(sims[k]), self.ids[k]

    def check(self, text: str, vector: np.ndarray | None = None) -> Verdict:
        """Whether ``text`` is novel; the nearest known task by each measure (ROUGE-L first: it is what
        Self-Instruct used, and it needs no model)."""
        rouge, near = self.nearest_rouge(text, stop_at=self.rouge_threshold)
        if rouge >= self.rouge_threshold:
            return Verdict("rouge", rouge, near)
        if self.embed is not None and vector is None:
            vector = self.embed([text])[0]
        sim, sim_near = self.nearest_embedding(vector)
        if self.embed is not None and sim >= self.embedding_threshold:
            return Verdict("embedding", rouge, near, sim, sim_near)
        return Verdict(None, rouge, near, sim, sim_near)


def max_pairwise_rouge(texts: list[str], against: list[str] = ()) -> dict:
    """The highest ROUGE-L between two of ``texts``, and between one of ``texts`` and one of ``against``
    (the check behind "0 generated pairs within ROUGE-L 0.7 of each other or of the pool")."""
    within = NoveltyFilter()
    worst_within = 0.0
    for k, t in enumerate(texts):
        worst_within = max(worst_within, within.nearest_rouge(t)[0])
        within.add(str(k), t)
    pool = NoveltyFilter()
    pool.add_many([str(i) for i in range(len(against))], list(against))
    worst_pool = 0.0
    for t in texts:
        worst_pool = max(worst_pool, pool.nearest_rouge(t)[0])
    return {"within": round(worst_within, 4), "to_pool": round(worst_pool, 4), "n": len(texts),
            "pool": len(against)}
