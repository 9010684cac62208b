"""Verdict parsers: small functions from a judge's reply to a verdict.

Pairwise parsers return the verdict in the order the answers were *shown*:
``"A"`` (the first answer), ``"B"`` (the second) or ``"tie"``; Arena-Hard's
five-point scale adds strength (``"A>>B"`` … ``"B>>A"``). :data:`VERDICTS`
says what each verdict means for the answer shown first (its score, and
whether the verdict is a strong one). Pointwise parsers return a score.
Every parser raises :class:`Unparseable` when the reply holds no verdict;
the caller counts it, nothing is guessed.

A judge's ``config.yaml`` names its parser (``parser: brackets_abc``); the
names are the keys of :data:`PARSERS`.
"""

from __future__ import annotations

import math
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


_RATING_DECIMAL_RE = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_RATING_DECIMAL_BACKUP_RE = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*\]")


def rating_brackets(reply: str, scale: tuple[int, int] = (1, 10)) -> int | float:
    """MT-Bench's single-answer score: ``Rating: [[7]]`` (decimals allowed, ``[[7.5]]``; FastChat's
    fallback ``[7]`` too). The last one wins; a score outside the scale is unparseable.

    >>> rating_brackets("Accurate and complete.\\nRating: [[8]]")
    8
    >>> rating_brackets("Rating: [[6.5]]")
    6.5
    >>> rating_brackets("Rating: [9]")
    9
    >>> rating_brackets("Rating: [[11]]")
    Traceback (most recent call last):
    ...
    judging.parsers.Unparseable: rating 11 outside 1–10 in: 'Rating: [[11]]'
    >>> rating_brackets("A fine answer.")
    Traceback (most recent call last):
    ...
    judging.parsers.Unparseable: no rating ([[n]]) in: 'A fine answer.'
    """
    found = _RATING_DECIMAL_RE.findall(reply or "") or _RATING_DECIMAL_BACKUP_RE.findall(reply or "")
    if not found:
        raise Unparseable(f"no rating ([[n]]) in: {_clip(reply)!r}")
    value = float(found[-1])
    score = int(value) if value.is_integer() else value
    lo, hi = scale
    if not lo <= score <= hi:
        raise Unparseable(f"rating {score} outside {lo}–{hi} in: {_clip(reply)!r}")
    return score


_ARENA_RE = re.compile(r"\[\[\s*([AB<>=]+)\s*\]\]")
_ARENA_VERDICTS = {"A>>B": "A>>B", "A>B": "A>B", "A=B": "A=B", "B>A": "B>A", "B>>A": "B>>A",
                   "B<<A": "A>>B", "B<A": "A>B", "B=A": "A=B", "A<B": "B>A", "A<<B": "B>>A"}


def arena_hard_5(reply: str) -> str:
    """Arena-Hard's five-point verdict: ``[[A>>B]]``, ``[[A>B]]``, ``[[A=B]]``, ``[[B>A]]``, ``[[B>>A]]``
    (``[[B<A]]`` and the like are read the same way round). As in Arena-Hard, a reply holding two
    different verdicts is unparseable rather than guessed.

    >>> arena_hard_5("A is correct, B is not.\\nMy final verdict is: [[A>>B]]")
    'A>>B'
    >>> arena_hard_5("Slightly better: [[B>A]]")
    'B>A'
    >>> arena_hard_5("[[A=B]] ... final: [[A=B]]")
    'A=B'
    >>> arena_hard_5("first [[A>B]] then [[B>A]]")
    Traceback (most recent call last):
    ...
    judging.parsers.Unparseable: two different verdicts ['A>B', 'B>A'] in: 'first [[A>B]] then [[B>A]]'
    >>> arena_hard_5("A is better.")
    Traceback (most recent call last):
    ...
    judging.parsers.Unparseable: no [[A>>B]] … [[B>>A]] verdict in: 'A is better.'
    """
    found = [_ARENA_VERDICTS[m] for m in _ARENA_RE.findall(reply or "") if m in _ARENA_VERDICTS]
    if not found:
        raise Unparseable(f"no [[A>>B]] … [[B>>A]] verdict in: {_clip(reply)!r}")
    if len(set(found)) > 1:
        raise Unparseable(f"two different verdicts {sorted(set(found))} in: {_clip(reply)!r}")
    return found[0]


_LETTER_RE = re.compile(r"^\W*(?:output|answer|assistant|response)?\s*\(?\s*([AB])\s*\)?\W*$", re.I)


def preference_ab(reply: str) -> str:
    """AlpacaEval 2's classifier format: the reply (its last line) is only the letter of the preferred answer.

    >>> preference_ab("A")
    'A'
    >>> preference_ab(" b. ")
    'B'
    >>> preference_ab("Output (a)")
    'A'
    >>> preference_ab("(constrained choice by log-probability: A -0.3, B -1.2)\\nA")
    'A'
    >>> preference_ab("A, because it is longer")
    Traceback (most recent call last):
    ...
    judging.parsers.Unparseable: not a single letter A or B: 'A, because it is longer'
    """
    lines = [line for line in (reply or "").splitlines() if line.strip()]
    m = _LETTER_RE.match(lines[-1] if lines else "")
    if not m:
        raise Unparseable(f"not a single letter A or B: {_clip(reply)!r}")
    return m.group(1).upper()


def preference_from_logprobs(top_logprobs: dict[str, float], labels: tuple[str, str] = ("A", "B")) -> float | None:
    """P(the first answer is preferred) from the verdict token's alternatives and their log-probabilities
    (AlpacaEval 2's weighted win rate): the probability mass on ``A`` over the mass on ``A`` and ``B``.
    Tokens are compared without spaces and case (`` A``, ``a``); None when neither label is among them.

    >>> round(preference_from_logprobs({"A": -0.105, "B": -2.3, "The": -5.0}), 3)
    0.9
    >>> round(preference_from_logprobs({" b": -0.01, " a": -4.6}), 3)
    0.01
    >>> preference_from_logprobs({"A": -0.01})
    1.0
    >>> preference_from_logprobs({"I": -0.1}) is None
    True
    """
    mass = {label: 0.0 for label in labels}
    for token, lp in (top_logprobs or {}).items():
        key = str(token).strip().upper()
        for label in labels:
            if key == label.upper():
                mass[label] += math.exp(float(lp))
    total = sum(mass.values())
    if total <= 0:
        return None
    return mass[labels[0]] / total


_VERDICT_LINE_RE = re.compile(r"^\s*(verdict|rating|final verdict|my final verdict)\b.*$|^\s*\[\[[^\]]+\]\]\s*$", re.I)


def rationale_of(reply: str | None) -> str:
    """The reply without its final verdict line (kept whole if that is all there is).

    >>> rationale_of("Clear and correct.\\nRating: [[4]]")
    'Clear and correct.'
    >>> rationale_of("[[A]]")
    '[[A]]'
    """
    text = (reply or "").strip()
    lines = text.splitlines()
    if len(lines) > 1 and _VERDICT_LINE_RE.match(lines[-1]):
        return "\n".join(lines[:-1]).strip()
    return text


def _clip(text: str | None, n: int = 120) -> str:
    text = text or ""
    return text if len(text) <= n else text[: n - 1] + "…"


PARSERS = {
    "brackets_abc": brackets_abc,
    "lima_three_way": lima_three_way,
    "rating_1_5": rating_1_5,
    "rating_brackets": rating_brackets,
    "arena_hard_5": arena_hard_5,
    "preference_ab": preference_ab,
}
"""Parser name (as written in a judge's ``config.yaml``) → function."""

THREE_WAY = ("A", "B", "tie")
PAIRWISE_VERDICTS = {
    "brackets_abc": THREE_WAY,
    "lima_three_way": THREE_WAY,
    "arena_hard_5": ("A>>B", "A>B", "A=B", "B>A", "B>>A"),
    "preference_ab": ("A", "B"),
}
"""Pairwise parser → the verdicts it returns (a judge's ``choices`` must have exactly these keys)."""

VERDICTS = {
    "A": (1.0, False), "B": (0.0, False), "tie": (0.5, False),
    "A>>B": (1.0, True), "A>B": (1.0, False), "A=B": (0.5, False), "B>A": (0.0, False), "B>>A": (0.0, True),
}
"""A verdict as shown → (the score of the answer shown first: 1 preferred, 0.5 tie, 0 not; strong or not)."""


def verdicts_of(parser: str) -> tuple[str, ...]:
    return PAIRWISE_VERDICTS.get(parser, THREE_WAY)
