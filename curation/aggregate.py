"""From several curators' answers to one decision per record, with agreement.

Rules (documented in curation/README.md):

- Only *submitted* answers count, and Argilla's own Discard button: a record
  a curator discarded in the UI is a discard vote from that curator (with no
  rating, edit or category, whatever the form held). Drafts do not count.
- keep/discard: the majority of the keep votes. On a tie the record is kept
  when the mean rating reaches ``pull.tie_keep_min_rating``; a tie is always
  disputed.
- rating: the mean of the submitted ratings.
- edited response: the edit box is pre-filled with the original response, so
  an edit is a submitted text that differs from it (whitespace aside); among
  curators who voted *keep* and submitted such an edit, the edit of the curator who gave
  the highest rating; then the edit submitted by more curators; then the
  curator whose username sorts first. Edits from curators voting discard are
  ignored.
- category: the most voted category; ties go to the label listed first in
  ``push.categories``.
- disputed: the keep vote is not unanimous, or the ratings differ by at least
  ``pull.dispute_rating_spread``.
- Records nobody answered are *pending*; in unattended mode the AI suggestion
  decides them and they are labelled ``decided_by = "ai"``.

Agreement per question: Krippendorff's alpha (nominal for keep and category,
ordinal for the rating) over all records with at least two answers, and
Cohen's kappa for every pair of curators over the records both answered
(quadratic weights for the rating), by scikit-learn.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


class NothingAnswered(RuntimeError):
    """No curator submitted any answer, and unattended mode is off."""


# --------------------------------------------------------------------------- agreement


def krippendorff_alpha(units: list[list], level: str = "nominal") -> float | None:
    """Krippendorff's alpha for ``units``: each a list of the values the coders gave (None = no value).

    Units with fewer than two values are not pairable and are left out.
    Returns None when there is no variation at all (alpha is undefined).

    The example of Krippendorff (2011), "Computing Krippendorff's alpha-reliability":

    >>> data = [[1, 1, None, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
    ...         [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [None, 5, 5, 5], [None, None, 1, 1], [None, 3, None, None]]
    >>> round(krippendorff_alpha(data, "nominal"), 3), round(krippendorff_alpha(data, "ordinal"), 3)
    (0.743, 0.815)
    >>> round(krippendorff_alpha(data, "interval"), 3)
    0.849
    """
    clean = [[v for v in u if v is not None] for u in units]
    clean = [u for u in clean if len(u) >= 2]
    if not clean:
        return None
    values = sorted({v for u in clean for v in u}, key=lambda v: (str(type(v)), v))
    index = {v: i for i, v in enumerate(values)}
    k = len(values)
    o = np.zeros((k, k))
    for u in clean:
        m = len(u)
        counts = Counter(index[v] for v in u)
        for c, nc in counts.items():
            for d, nd in counts.items():
                pairs = nc * (nd - 1) if c == d else nc * nd
                o[c, d] += pairs / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if level == "nominal":
        delta = 1.0 - np.eye(k)
    elif level == "interval":
        v = np.asarray(values, dtype=float)
        delta = (v[:, None] - v[None, :]) ** 2
    elif level == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        delta = np.zeros((k, k))
        for c in range(k):
            for d in range(k):
                lo, hi = min(c, d), max(c, d)
                delta[c, d] = (cum[hi + 1] - cum[lo] - (n_c[c] + n_c[d]) / 2) ** 2
    else:
        raise ValueError(f"unknown level {level!r}: nominal, ordinal or interval")
    d_o = (o * delta).sum() / n
    d_e = (np.outer(n_c, n_c) * delta).sum() / (n * (n - 1))
    if d_e == 0:
        return None
    return float(1 - d_o / d_e)


def cohen_kappa(a: list, b: list, weights: str | None = None, labels: list | None = None) -> float | None:
    """Cohen's kappa of two raters over the same items (``weights``: None or "quadratic"), by
    :func:`sklearn.metrics.cohen_kappa_score`; None where it is undefined (no item, or no variation).

    >>> cohen_kappa(["keep", "keep", "discard", "keep"], ["keep", "discard", "discard", "keep"])
    0.5
    >>> cohen_kappa(["keep", "keep"], ["keep", "keep"]) is None
    True
    """
    import warnings

    from sklearn.metrics import cohen_kappa_score

    if len(a) != len(b):
        raise ValueError("the two raters must rate the same items")
    if not a:
        return None
    labels = labels or sorted(set(a) | set(b), key=lambda v: (str(type(v)), v))
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")  # sklearn warns where kappa is undefined: None says so here
        kappa = cohen_kappa_score(a, b, labels=labels, weights=weights)
    return None if np.isnan(kappa) else float(kappa)


# --------------------------------------------------------------------------- decisions


@dataclass
class Answer:
    """One curator's submitted answers to one record."""

    user: str
    keep: str | None = None
    rating: int | None = None
    edited_response: str | None = None
    category: str | None = None
    discarded_in_ui: bool = False  # Argilla's Discard button: a discard vote, nothing else


@dataclass
class Suggestion:
    """The AI suggestion for one record (from the signals, or the LLM judge's rating)."""

    keep: bool
    rating: int
    category: str | None = None
    agent: str = ""


@dataclass
class Decision:
    id: str
    decision: str | None  # keep | discard | None (pending)
    decided_by: str  # human | ai | pending
    n_answers: int = 0
    keep_votes: int = 0
    discard_votes: int = 0
    ratings: list = field(default_factory=list)
    mean_rating: float | None = None
    edited_response: str = ""
    edit_by: str = ""
    category: str = ""
    users: list = field(default_factory=list)
    tie: bool = False
    disputed: bool = False
    dispute_reason: str = ""

    def to_row(self) -> dict:
        return dict(self.__dict__)


def same_text(a: str, b: str) -> bool:
    """Equal but for whitespace (the UI's editor may re-wrap or trim an unchanged answer)."""
    return " ".join(a.split()) == " ".join(b.split())


def decide(record_id: str, answers: list[Answer], original_response: str, suggestion: Suggestion | None, *,
           unattended: bool, tie_keep_min_rating: float, dispute_rating_spread: int,
           categories: list[str]) -> Decision:
    """One decision for a record, by the rules in this module's docstring."""
    if not answers:
        if unattended and suggestion is not None:
            return Decision(record_id, "keep" if suggestion.keep else "discard", "ai",
                            mean_rating=float(suggestion.rating), ratings=[], category=suggestion.category or "")
        return Decision(record_id, None, "pending")
    answers = sorted(answers, key=lambda a: a.user)
    keeps = sum(a.keep == "keep" for a in answers)
    discards = sum(a.keep == "discard" for a in answers)
    ratings = [a.rating for a in answers if a.rating is not None]
    mean = float(np.mean(ratings)) if ratings else None
    tie = keeps == discards
    if tie:
        decision = "keep" if mean is not None and mean >= tie_keep_min_rating else "discard"
    else:
        decision = "keep" if keeps > discards else "discard"
    reasons = []
    if keeps and discards:
        reasons.append(f"keep {keeps} vs discard {discards}")
    if len(ratings) >= 2 and max(ratings) - min(ratings) >= dispute_rating_spread:
        reasons.append(f"ratings {min(ratings)}..{max(ratings)}")
    edits = [a for a in answers if a.keep == "keep" and a.edited_response and a.edited_response.strip()
             and not same_text(a.edited_response, original_response)]
    edit, edit_by = "", ""
    if edits:
        support = Counter(" ".join(a.edited_response.split()) for a in edits)
        best = min(edits, key=lambda a: (-(a.rating or 0), -support[" ".join(a.edited_response.split())], a.user))
        edit, edit_by = best.edited_response.strip(), best.user
    cats = Counter(a.category for a in answers if a.category)
    category = ""
    if cats:
        top = max(cats.values())
        order = {c: i for i, c in enumerate(categories)}
        category = min((c for c, v in cats.items() if v == top), key=lambda c: (order.get(c, len(order)), c))
    return Decision(record_id, decision, "human", n_answers=len(answers), keep_votes=keeps, discard_votes=discards,
                    ratings=ratings, mean_rating=mean, edited_response=edit, edit_by=edit_by, category=category,
                    users=[a.user for a in answers], tie=tie, disputed=bool(reasons) or tie,
                    dispute_reason="; ".join(reasons) or ("tie" if tie else ""))


def agreement(answers_by_record: dict[str, list[Answer]]) -> dict:
    """Krippendorff's alpha and pairwise Cohen's kappa per question."""
    users = sorted({a.user for ans in answers_by_record.values() for a in ans})
    out = {}
    for question, level, weights in (("keep", "nominal", None), ("quality", "ordinal", "quadratic"),
                                     ("category", "nominal", None)):
        attr = "rating" if question == "quality" else question
        units = []
        per_user: dict[str, dict[str, object]] = {u: {} for u in users}
        for rid, ans in answers_by_record.items():
            vals = {a.user: getattr(a, attr) for a in ans if getattr(a, attr) not in (None, "")}
            units.append([vals.get(u) for u in users])
            for u, v in vals.items():
                per_user[u][rid] = v
        n_units = sum(1 for u in units if sum(v is not None for v in u) >= 2)
        if n_units == 0:
            continue
        all_vals = sorted({v for u in units for v in u if v is not None}, key=lambda v: (str(type(v)), v))
        if question == "quality":
            all_vals = list(range(1, 6))
        pairs = {}
        for u1, u2 in itertools.combinations(users, 2):
            common = sorted(set(per_user[u1]) & set(per_user[u2]))
            if not common:
                continue
            kappa = cohen_kappa([per_user[u1][r] for r in common], [per_user[u2][r] for r in common],
                                weights=weights, labels=all_vals)
            pairs[f"{u1}|{u2}"] = {"kappa": kappa, "records": len(common)}
        kappas = [p["kappa"] for p in pairs.values() if p["kappa"] is not None]
        out[question] = {"alpha": krippendorff_alpha(units, level), "level": level, "records": n_units,
                         "pairwise_kappa": pairs, "mean_kappa": float(np.mean(kappas)) if kappas else None}
    return out
