"""The statistics of a pairwise evaluation. Small functions, checked by hand in the tests.

Verdicts are from A's side: ``win``, ``tie``, ``loss``. A win counts 1, a
tie 0.5, a loss 0 (AlpacaEval's and Arena-Hard's convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}
Z95 = 1.959963984540054


def win_rate(verdicts: Sequence[str]) -> float:
    """Ties count half.

    >>> win_rate(["win", "win", "tie", "loss"])
    0.625
    """
    if not verdicts:
        return float("nan")
    return sum(SCORE[v] for v in verdicts) / len(verdicts)


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; ``successes`` may be fractional (ties as half).

    >>> [round(x, 4) for x in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    """
    if n <= 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_interval(verdicts: Sequence[str], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Paired bootstrap: resample the prompts (each keeps its pair's verdict), percentile interval."""
    if not verdicts:
        return (float("nan"), float("nan"))
    scores = np.array([SCORE[v] for v in verdicts])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(scores), size=(n_boot, len(scores)))
    means = scores[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test of wins against losses (ties dropped): ``scipy.stats.binomtest``.

    >>> sign_test(9, 1)
    0.021484375
    >>> sign_test(0, 0)
    1.0
    """
    from scipy.stats import binomtest

    n = int(wins) + int(losses)
    if n == 0:
        return 1.0
    return float(binomtest(int(wins), n, 0.5).pvalue)


def cohen_kappa(a: Sequence[str], b: Sequence[str], labels: Sequence[str] = ("win", "tie", "loss")) -> float:
    """Cohen's kappa of two raters on the same items: ``sklearn.metrics.cohen_kappa_score``.

    No items: nan. Both raters giving one and the same label throughout: 1.0 (they agree on everything,
    where sklearn leaves kappa undefined).

    >>> round(cohen_kappa(["win", "win", "loss", "tie"], ["win", "loss", "loss", "tie"]), 4)
    0.6364
    >>> cohen_kappa(["tie", "tie"], ["tie", "tie"])
    1.0
    """
    from sklearn.metrics import cohen_kappa_score

    if len(a) != len(b):
        raise ValueError("kappa needs two equally long label lists")
    if not a:
        return float("nan")
    if len(set(a) | set(b)) == 1:
        return 1.0
    return float(cohen_kappa_score(list(a), list(b), labels=list(labels)))


def tie_discounted_accuracy(a: Sequence[str], b: Sequence[str]) -> float:
    """LIMA's agreement (section 4.2): 1 when both raters agree, 0.5 when exactly one says tie, else 0.

    >>> tie_discounted_accuracy(["win", "win", "tie", "loss"], ["win", "tie", "loss", "win"])
    0.5
    """
    if not a:
        return float("nan")
    total = 0.0
    for x, y in zip(a, b):
        if x == y:
            total += 1
        elif "tie" in (x, y):
            total += 0.5
    return total / len(a)


@dataclass
class LengthControlled:
    win_rate: float
    """P(A preferred) predicted at equal length, as a fraction."""
    intercept: float
    length_coef: float
    """Weight of tanh(length difference / sd): > 0 means the judge favours longer answers."""
    scale: float
    """The standard deviation of the length differences used to normalise them."""
    n: int


def length_controlled_win_rate(verdicts: Sequence[str], len_a: Sequence[float], len_b: Sequence[float],
                               l2: float = 0.1) -> LengthControlled:
    """AlpacaEval 2's idea on the given prompts, with no precomputed data.

    Fit ``P(A preferred) = sigmoid(b0 + b1 * tanh((len_a - len_b) / sd))`` by
    maximum likelihood (ties as y = 0.5), then report ``sigmoid(b0)``: the win
    rate the judge would give if both answers had the same length. A weak L2
    penalty ``l2 * b1**2`` (a Gaussian prior on the length weight) keeps the fit
    finite when length separates the verdicts, as it often does on a few dozen
    prompts; it shrinks the correction, never exaggerates it. ``l2=0`` is the
    plain maximum-likelihood fit.
    """
    from scipy.optimize import minimize

    y = np.array([SCORE[v] for v in verdicts], dtype=float)
    d = np.asarray(len_a, dtype=float) - np.asarray(len_b, dtype=float)
    n = len(y)
    if n == 0:
        return LengthControlled(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    sd = float(np.std(d)) or 1.0
    x = np.tanh(d / sd)

    def nll(beta):
        z = beta[0] + beta[1] * x
        # log(1 + e^z) computed stably
        return float(np.sum(np.logaddexp(0, z) - y * z) + l2 * beta[1] ** 2)

    def grad(beta):
        p = 1 / (1 + np.exp(-(beta[0] + beta[1] * x)))
        r = p - y
        return np.array([r.sum(), (r * x).sum() + 2 * l2 * beta[1]])

    res = minimize(nll, np.zeros(2), jac=grad, method="BFGS", options={"gtol": 1e-10, "maxiter": 1000})
    b0, b1 = (float(v) for v in res.x)
    return LengthControlled(1 / (1 + math.exp(-b0)), b0, b1, sd, n)


def summarize(verdicts: Sequence[str], len_a: Sequence[float] | None = None, len_b: Sequence[float] | None = None,
              n_boot: int = 2000, seed: int = 0) -> dict:
    """Everything the report shows for one (judge, A, B) comparison."""
    w, t, l = (sum(v == k for v in verdicts) for k in ("win", "tie", "loss"))
    n = len(verdicts)
    out = {
        "n": n, "win": w, "tie": t, "loss": l,
        "win_rate": win_rate(verdicts),
        "wilson": wilson_interval(w + t / 2, n),
        "bootstrap": bootstrap_interval(verdicts, n_boot=n_boot, seed=seed),
        "sign_test_p": sign_test(w, l),
    }
    if len_a is not None and len_b is not None and n >= 2:
        lc = length_controlled_win_rate(verdicts, len_a, len_b)
        out["lc_win_rate"] = lc.win_rate
        out["lc_length_coef"] = lc.length_coef
    return out
