"""The statistics of a pairwise evaluation. Small functions, checked by hand in the tests.

Verdicts are from A's side: ``win``, ``tie``, ``loss``. A win counts 1, a
tie 0.5, a loss 0 (AlpacaEval's and Arena-Hard's convention). A judgment
may instead carry a ``score`` in [0, 1] (a logprob judge's probability that
A is preferred) and a ``weight`` (a strong win of a five-point judge counts
several times): the win rate is then the weighted mean score.

The primary interval is the paired bootstrap over prompts (it handles ties,
scores, weights and several turns of one prompt); the Wilson score interval
is shown beside it for reference.
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


def _as_arrays(verdicts: Sequence[str], scores=None, weights=None) -> tuple[np.ndarray, np.ndarray]:
    s = np.array([SCORE[v] for v in verdicts], dtype=float) if scores is None else np.asarray(scores, dtype=float)
    w = np.ones(len(s)) if weights is None else np.asarray(weights, dtype=float)
    return s, w


def _cluster_index(n: int, clusters: Sequence | None) -> tuple[np.ndarray, int]:
    """Each row's cluster (a prompt: its turns are resampled together); by default each row is its own."""
    if clusters is None:
        return np.arange(n), n
    _, inverse = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    return inverse, int(inverse.max()) + 1 if n else 0


def resample_counts(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """How many times each cluster is drawn in each bootstrap resample, shape (n_boot, n_clusters)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_clusters, size=(n_boot, n_clusters))
    counts = np.zeros((n_boot, n_clusters))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n_clusters), idx.ravel()), 1)
    return counts


def bootstrap_interval(verdicts: Sequence[str], n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                       scores=None, weights=None, clusters=None) -> tuple[float, float]:
    """Paired bootstrap: resample the prompts (each keeps its pair's verdict, and its other turns when
    ``clusters`` names the prompt of each row), percentile interval of the (weighted) win rate."""
    if not len(verdicts):
        return (float("nan"), float("nan"))
    s, w = _as_arrays(verdicts, scores, weights)
    cluster, n_clusters = _cluster_index(len(s), clusters)
    rows = resample_counts(n_clusters, n_boot, seed)[:, cluster]  # (n_boot, n): each row's multiplicity
    means = (rows * w * s).sum(axis=1) / np.maximum((rows * w).sum(axis=1), 1e-12)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


def weighted_win_rate(verdicts: Sequence[str], scores=None, weights=None) -> float:
    """The mean score, each judgment counted ``weight`` times.

    >>> weighted_win_rate(["win", "loss"], weights=[3, 1])
    0.75
    >>> weighted_win_rate(["win", "loss"], scores=[0.9, 0.2])
    0.55
    """
    if not len(verdicts):
        return float("nan")
    s, w = _as_arrays(verdicts, scores, weights)
    return float((w * s).sum() / w.sum())


def effective_n(weights) -> float:
    """Kish's effective sample size of weighted observations: (sum w)^2 / sum w^2.

    >>> effective_n([1, 1, 1, 1]), round(effective_n([3, 1]), 2)
    (4.0, 1.6)
    """
    w = np.asarray(weights, dtype=float)
    return float(w.sum() ** 2 / (w ** 2).sum()) if len(w) else 0.0


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
    """P(A preferred) predicted at equal length, as a fraction (averaged over the prompts' difficulty when an
    instruction-difficulty term is in the model)."""
    intercept: float
    length_coef: float
    """Weight of tanh(length difference / sd): > 0 means the judge favours longer answers."""
    scale: float
    """The standard deviation of the length differences used to normalise them."""
    n: int
    difficulty_coef: float | None = None
    """Weight of the instruction-difficulty term (several systems only)."""


def fit_logistic(X: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: np.ndarray, iters: int = 100) -> np.ndarray:
    """Penalized logistic regressions sharing one design, fitted at once by Newton's method.

    ``X`` (n, k), ``y`` (n,) in [0, 1] (a tie is 0.5), ``weights`` (B, n) or (n,): one fit per row of
    weights (bootstrap resamples as multiplicities). Minimizes sum w * logloss + sum l2 * beta**2 (a
    Gaussian prior; l2 = 0 leaves a coefficient free). Returns beta, (B, k)."""
    W = np.atleast_2d(np.asarray(weights, dtype=float))
    B, k = W.shape[0], X.shape[1]
    beta = np.zeros((B, k))
    pen = np.diag(2 * np.asarray(l2, dtype=float))
    for _ in range(iters):
        z = np.clip(beta @ X.T, -50, 50)
        p = 1 / (1 + np.exp(-z))
        grad = (W * (p - y)) @ X + 2 * np.asarray(l2) * beta
        H = np.einsum("bn,nk,nl->bkl", W * p * (1 - p), X, X) + pen + 1e-9 * np.eye(k)
        step = np.linalg.solve(H, grad[..., None])[..., 0]
        norm = np.abs(step).max(axis=1, keepdims=True)
        step = step * np.minimum(1.0, 5.0 / np.maximum(norm, 1e-12))  # damped: no overshoot far from the optimum
        beta = np.clip(beta - step, -30, 30)
        if norm.max() < 1e-10:
            break
    return beta


def _lc_design(len_a, len_b, difficulty=None) -> tuple[np.ndarray, float]:
    d = np.asarray(len_a, dtype=float) - np.asarray(len_b, dtype=float)
    sd = float(np.std(d)) or 1.0
    cols = [np.ones(len(d)), np.tanh(d / sd)]
    if difficulty is not None:
        cols.append(np.asarray(difficulty, dtype=float))
    return np.stack(cols, axis=1), sd


def _lc_rate(beta: np.ndarray, X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """The fitted P(A preferred) at equal length, averaged (weighted) over the prompts."""
    if X.shape[1] == 2:
        return 1 / (1 + np.exp(-beta[:, 0]))
    z = beta[:, [0]] + beta[:, [2]] * X[:, 2]  # length difference 0, each prompt's difficulty
    p = 1 / (1 + np.exp(-z))
    return (W * p).sum(axis=1) / np.maximum(W.sum(axis=1), 1e-12)


def length_controlled_win_rate(verdicts: Sequence[str], len_a: Sequence[float], len_b: Sequence[float],
                               l2: float = 0.1, scores=None, weights=None, difficulty=None) -> LengthControlled:
    """AlpacaEval 2's idea on the given prompts, with no precomputed data.

    Fit ``P(A preferred) = sigmoid(b0 + b1 * tanh((len_a - len_b) / sd) [+ b2 * difficulty])`` by maximum
    likelihood (ties as y = 0.5, a logprob judge's probability as y), then report the win rate the judge
    would give if both answers had the same length: ``sigmoid(b0)``, or with several systems the mean over
    prompts of ``sigmoid(b0 + b2 * difficulty)``, where ``difficulty`` is each prompt's difficulty measured
    on the other systems (:func:`instruction_difficulty`). A weak L2 penalty ``l2 * b**2`` on the length and
    difficulty weights (a Gaussian prior) keeps the fit finite when length separates the verdicts, as it
    often does on a few dozen prompts; it shrinks the correction, never exaggerates it. ``l2=0`` is the plain
    maximum-likelihood fit.
    """
    y, w = _as_arrays(verdicts, scores, weights)
    n = len(y)
    if n == 0:
        return LengthControlled(float("nan"), float("nan"), float("nan"), float("nan"), 0)
    X, sd = _lc_design(len_a, len_b, difficulty)
    penalty = [0.0] + [l2] * (X.shape[1] - 1)
    beta = fit_logistic(X, y, w, penalty)
    rate = float(_lc_rate(beta, X, w[None, :])[0])
    b = beta[0]
    return LengthControlled(rate, float(b[0]), float(b[1]), sd, n, float(b[2]) if len(b) > 2 else None)


def length_controlled_interval(verdicts: Sequence[str], len_a, len_b, n_boot: int = 2000, seed: int = 0,
                               level: float = 0.95, l2: float = 0.1, scores=None, weights=None, difficulty=None,
                               clusters=None) -> tuple[float, float]:
    """Paired-bootstrap interval of :func:`length_controlled_win_rate`: the prompts resampled (as in
    :func:`bootstrap_interval`, same seed: the same resamples) and the model refitted on each."""
    y, w = _as_arrays(verdicts, scores, weights)
    if not len(y):
        return (float("nan"), float("nan"))
    X, _ = _lc_design(len_a, len_b, difficulty)
    cluster, n_clusters = _cluster_index(len(y), clusters)
    W = resample_counts(n_clusters, n_boot, seed)[:, cluster] * w
    beta = fit_logistic(X, y, W, [0.0] + [l2] * (X.shape[1] - 1))
    rates = _lc_rate(beta, X, W)
    lo, hi = np.quantile(rates, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


MIN_LC_N = 10
ONE_SIDED = 0.9


def length_control_problem(verdicts: Sequence[str], len_a, len_b, scores=None) -> str | None:
    """Why the length term cannot be estimated on these prompts, or None when it can.

    >>> length_control_problem(["win"] * 12, [200] * 11 + [50], [100] * 12)
    "A's answer is longer on 92 % of the prompts: a length effect cannot be told apart from a difference between the systems"
    >>> length_control_problem(["win", "loss"] * 6, [200, 100] * 6, [100, 200] * 6)
    'the longer answer won every decisive verdict: the length weight is not identifiable'
    >>> length_control_problem(["win", "loss", "tie"] * 4, [200, 100, 150] * 4, [100, 200, 120] * 4) is None
    False
    >>> length_control_problem(["win", "loss", "loss", "win"] * 3, [200, 100, 150, 90] * 3, [100, 200, 120, 95] * 3) is None
    True
    """
    d = np.asarray(len_a, dtype=float) - np.asarray(len_b, dtype=float)
    n = len(d)
    if n < MIN_LC_N:
        return f"only {n} judged prompts: too few to fit a length term (at least {MIN_LC_N})"
    if not np.any(d):
        return "the two answers are equally long on every prompt: there is no length difference to control"
    longer, shorter = float(np.mean(d > 0)), float(np.mean(d < 0))
    if max(longer, shorter) >= ONE_SIDED:
        side = "longer" if longer >= shorter else "shorter"
        return (f"A's answer is {side} on {max(longer, shorter):.0%} of the prompts: a length effect cannot be told "
                "apart from a difference between the systems").replace("%", " %")
    y, _ = _as_arrays(verdicts, scores)
    decisive = (y != 0.5) & (d != 0)
    if decisive.sum() >= 2:
        agree = (y[decisive] > 0.5) == (d[decisive] > 0)
        if agree.all() or (~agree).all():
            who = "longer" if agree.all() else "shorter"
            return f"the {who} answer won every decisive verdict: the length weight is not identifiable"
    return None


def instruction_difficulty(scores_by_system: dict[str, dict[str, float]], system: str) -> dict[str, float]:
    """Each prompt's difficulty for ``system``, from the *other* systems' scores against the same reference
    on it (AlpacaEval 2's instruction-difficulty term, leave-one-out so a system's own verdicts do not
    explain themselves): the centred logit of their smoothed mean score. Prompts no other system answered
    get 0 (average difficulty).

    >>> d = instruction_difficulty({"x": {"p1": 1.0, "p2": 0.0}, "y": {"p1": 1.0, "p2": 0.0}}, "x")
    >>> d["p1"] > 0 > d["p2"]
    True
    """
    others = [s for name, s in scores_by_system.items() if name != system]
    ids = set(scores_by_system.get(system, {}))
    raw = {}
    for pid in ids:
        vals = [s[pid] for s in others if pid in s]
        if vals:
            p = (sum(vals) + 0.5) / (len(vals) + 1)
            raw[pid] = math.log(p / (1 - p))
    centre = float(np.mean(list(raw.values()))) if raw else 0.0
    return {pid: raw[pid] - centre if pid in raw else 0.0 for pid in ids}


def summarize(verdicts: Sequence[str], len_a: Sequence[float] | None = None, len_b: Sequence[float] | None = None,
              n_boot: int = 2000, seed: int = 0, scores=None, weights=None, clusters=None, difficulty=None) -> dict:
    """Everything the report shows for one (judge, A, B) comparison. Every key is always present (a number,
    or None where it cannot be computed, with the reason in ``lc_problem``)."""
    w_, t, l = (sum(v == k for v in verdicts) for k in ("win", "tie", "loss"))
    n = len(verdicts)
    weighted = scores is not None or (weights is not None and any(x != 1 for x in weights))
    rate = weighted_win_rate(verdicts, scores, weights) if weighted else win_rate(verdicts)
    n_eff = effective_n(weights) if weights is not None and n else n
    out = {
        "n": n, "win": w_, "tie": t, "loss": l,
        "win_rate": rate,
        "wilson": wilson_interval(rate * n_eff, n_eff) if weighted else wilson_interval(w_ + t / 2, n),
        "bootstrap": bootstrap_interval(verdicts, n_boot=n_boot, seed=seed, scores=scores, weights=weights,
                                        clusters=clusters),
        "sign_test_p": sign_test(w_, l),
        "weighted": weighted,
        "lc_win_rate": None, "lc_interval": None, "lc_length_coef": None, "lc_difficulty_coef": None,
        "lc_problem": None,
    }
    if len_a is None or len_b is None:
        out["lc_problem"] = "no answer lengths"
        return out
    if n >= 2:
        lc = length_controlled_win_rate(verdicts, len_a, len_b, scores=scores, weights=weights, difficulty=difficulty)
        out["lc_length_coef"] = lc.length_coef
        out["lc_difficulty_coef"] = lc.difficulty_coef
    problem = length_control_problem(verdicts, len_a, len_b, scores)
    if problem:
        out["lc_problem"] = problem
        return out
    out["lc_win_rate"] = lc.win_rate
    out["lc_interval"] = length_controlled_interval(verdicts, len_a, len_b, n_boot=n_boot, seed=seed, scores=scores,
                                                    weights=weights, difficulty=difficulty, clusters=clusters)
    return out
