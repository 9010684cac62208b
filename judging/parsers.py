"""Verdict parsers: small functions from a judge's reply to a verdict.

Pairwise parsers return the verdict in the order the answers were *shown*:
``"A"`` (the first answer), ``"B"`` (the second) or ``"tie"``. Pointwise
parsers return an integer score. Every parser raises :class:`Unparseable`
when the reply holds no verdict; the caller counts it, nothing is guessed.

A judge's ``config.yaml`` names its parser (``parser: brackets_abc``); the
names are the keys of :data:`PARSERS`.
"""

from __future__ import annotations

import re


class Unparseable(ValueError):
    """The reply holds no verdict the parser recognises."""


_ABC_RE = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def brackets_abc(reply: str) -> str:
    """MT-Bench's pairwise format: ``[[A]]``, ``[[B]]``, ``[[C]]`` (tie). The last one wins.

    >>> brackets_abc("Assistant A is more detailed. [[A]]")
    'A'
    >>> brackets_abc("Both fine.\\n[[C]]")
    'tie'
    >>> brackets_abc("I first leaned to [[A]] but on reflection: [[B]]")
    'B'
    >>> brackets_abc("[[ b ]]")
    Traceback (most recent call last):
    ...
    judging.parsers.Unparseable: no [[A]]/[[B]]/[[C]] verdict in: '[[ b ]]'
    >>> brackets_abc("I cannot decide.")
    Traceback (most recent call last):
    ...
    judging.parsers.Unparseable: no [[A]]/[[B]]/[[C]] verdict in: 'I cannot decide.'
    """
    found = _ABC_RE.findall(reply or "")
    if not found:
        raise Unparseable(f"no [[A]]/[[B]]/[[C]] verdict in: {_clip(reply)!r}")
    return {"A": "A", "B": "B", "C": "tie"}[found[-1]]


_LIMA_RE = re.compile(
    r"((?:response|answer)\s*a\s+is\s+(?:significantly\s+|slightly\s+)?better)"
    r"|((?:response|answer)\s*b\s+is\s+(?:significantly\s+|slightly\s+)?better)"
    r"|(neither\s+is\s+significantly\s+better)",
    re.I,
)


def lima_three_way(reply: str) -> str:
    """LIMA's three options: "Answer A is significantly better", "Answer B is
    significantly better", "Neither is significantly better" ("Response A is
    better" is accepted too). The last phrase in the reply wins.

    >>> lima_three_way("A covers more.\\nVerdict: Answer A is significantly better")
    'A'
    >>> lima_three_way("Verdict: response b is better.")
    'B'
    >>> lima_three_way("Close call. Verdict: Neither is significantly better")
    'tie'
    >>> lima_three_way("Response A is better at style, but overall Verdict: Response B is better")
    'B'
    >>> lima_three_way("Verdict: A")
    Traceback (most recent call last):
    ...
    judging.parsers.Unparseable: no LIMA verdict ("Response A is better", …) in: 'Verdict: A'
    """
    found = _LIMA_RE.findall(reply or "")
    if not found:
        raise Unparseable(f'no LIMA verdict ("Response A is better", …) in: {_clip(reply)!r}')
    a, b, _tie = found[-1]
    return "A" if a else "B" if b else "tie"


_RATING_BRACKETS_RE = re.compile(r"\[\[\s*(\d+)\s*\]\]")
_RATING_WORD_RE = re.compile(r"rating\s*[:=]\s*\**\s*(\d+)", re.I)


def rating_1_5(reply: str, scale: tuple[int, int] = (1, 5)) -> int:
    """A 1–5 score: ``Rating: [[4]]`` (MT-Bench single-answer style) or ``Rating: 4``.

    The last bracketed number wins; a number outside the scale is unparseable.

    >>> rating_1_5("Clear and correct.\\nRating: [[4]]")
    4
    >>> rating_1_5("Rating: 2")
    2
    >>> rating_1_5("Rating: [[7]]")
    Traceback (most recent call last):
    ...
    judging.parsers.Unparseable: rating 7 outside 1–5 in: 'Rating: [[7]]'
    >>> rating_1_5("Pretty good overall.")
    Traceback (most recent call last):
    ...
    judging.parsers.Unparseable: no rating ([[n]] or 'Rating: n') in: 'Pretty good overall.'
    """
    found = _RATING_BRACKETS_RE.findall(reply or "") or _RATING_WORD_RE.findall(reply or "")
    if not found:
        raise Unparseable(f"no rating ([[n]] or 'Rating: n') in: {_clip(reply)!r}")
    score = int(found[-1])
    lo, hi = scale
    if not lo <= score <= hi:
        raise Unparseable(f"rating {score} outside {lo}–{hi} in: {_clip(reply)!r}")
    return score


def _clip(text: str | None, n: int = 120) -> str:
    text = text or ""
    return text if len(text) <= n else text[: n - 1] + "…"


PARSERS = {
    "brackets_abc": brackets_abc,
    "lima_three_way": lima_three_way,
    "rating_1_5": rating_1_5,
}
"""Parser name (as written in a judge's ``config.yaml``) → function."""
