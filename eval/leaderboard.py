"""N systems, one leaderboard per judge: each system's win rate against the reference (bootstrap and Wilson
intervals, the length-controlled rate with its interval), and with more than two systems a Bradley–Terry
rating with a 95 % bootstrap interval fitted on every pairwise judgment of that judge (system vs reference
and, when judged, system vs system).

Bradley–Terry: ``P(i preferred over j) = sigmoid(beta_i - beta_j)``, the reference anchored at 0, fitted by
penalized maximum likelihood on the verdicts (ties as 0.5, weights as repeats); ratings are shown on the Elo
scale Chatbot Arena uses, ``1000 + 400 * beta / ln 10`` (the reference at 1000). The bootstrap resamples
prompts, every judgment on a prompt together.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from . import stats

ELO = 400 / math.log(10)


def bradley_terry(battles: list[dict], systems: list[str], anchor: str, n_boot: int = 1000, seed: int = 0,
                  l2: float = 1e-3) -> dict[str, dict]:
    """Ratings (Elo scale, ``anchor`` at 1000) with 95 % bootstrap intervals from ``battles``
    (``{"a", "b", "score", "weight", "prompt"}``, the score being A's).

    >>> b = [{"a": "x", "b": "ref", "score": s, "weight": 1, "prompt": f"p{i}"} for i, s in enumerate([1, 1, 1, 0])]
    >>> r = bradley_terry(b, ["x", "ref"], "ref", n_boot=200)
    >>> round(r["x"]["rating"]), r["ref"]["rating"], r["x"]["interval"][0] < r["x"]["rating"] < r["x"]["interval"][1]
    (1190, 1000.0, True)
    """
    free = [s for s in systems if s != anchor]
    col = {s: i for i, s in enumerate(free)}
    X = np.zeros((len(battles), len(free)))
    for k, b in enumerate(battles):
        if b["a"] in col:
            X[k, col[b["a"]]] += 1
        if b["b"] in col:
            X[k, col[b["b"]]] -= 1
    y = np.array([b["score"] for b in battles], dtype=float)
    w = np.array([b.get("weight", 1.0) for b in battles], dtype=float)
    penalty = [l2] * len(free)
    (beta,) = stats.fit_logistic(X, y, w, penalty)
    cluster, n_clusters = stats._cluster_index(len(battles), [b["prompt"] for b in battles])
    W = stats.resample_counts(n_clusters, n_boot, seed)[:, cluster] * w
    boot = stats.fit_logistic(X, y, W, penalty)
    out = {anchor: {"rating": 1000.0, "interval": (1000.0, 1000.0), "p_vs_reference": 0.5}}
    for s, i in col.items():
        lo, hi = np.quantile(boot[:, i], [0.025, 0.975])
        out[s] = {"rating": 1000 + ELO * float(beta[i]), "interval": (1000 + ELO * float(lo), 1000 + ELO * float(hi)),
                  "p_vs_reference": 1 / (1 + math.exp(-float(beta[i])))}
    return out


def _battles(comparisons) -> list[dict]:
    out = []
    for c in comparisons:
        for r in c.judged:
            score = r["score"] if r.get("score") is not None else stats.SCORE[r["verdict"]]
            out.append({"a": c.a, "b": c.b, "score": score, "weight": float(r.get("weight") or 1.0),
                        "prompt": r["id"]})
    return out


def build(comparisons, results: list[dict], n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """One board per judge that compared at least two systems against one reference, or three systems."""
    boards = []
    for judge in dict.fromkeys(c.judge for c in comparisons):
        comps = [c for c in comparisons if c.judge == judge and c.judged]
        systems = list(dict.fromkeys([s for c in comps for s in (c.a, c.b)]))
        if not comps:
            continue
        reference = Counter(c.b for c in comps).most_common(1)[0][0]
        against = {r["a"]: r for r in results if r["judge"] == judge and r["b"] == reference}
        if len(systems) < 3 and len(against) < 2:
            continue
        rows = []
        for s in systems:
            if s == reference:
                continue
            r = against.get(s)
            rows.append({
                "system": s, "n": r["n"] if r else 0,
                "win_rate": r["win_rate"] if r else None, "bootstrap": r["bootstrap"] if r else None,
                "wilson": r["wilson"] if r else None, "lc_win_rate": r["lc_win_rate"] if r else None,
                "lc_interval": r["lc_interval"] if r else None, "lc_problem": r["lc_problem"] if r else "not judged against the reference",
                "sign_test_p": r["sign_test_p"] if r else None,
                "trusted": r["trust"]["trusted"] if r and r.get("trust") else True,
            })
        bt = None
        if len(systems) > 2:
            bt = bradley_terry(_battles(comps), systems, reference, n_boot=n_boot, seed=seed)
            for row in rows:
                row.update(rating=bt[row["system"]]["rating"], rating_interval=bt[row["system"]]["interval"])
        rows.sort(key=lambda r: -(r.get("rating") or 0) if bt else -(r["win_rate"] if r["win_rate"] is not None else -1))
        boards.append({"judge": judge, "reference": reference, "systems": rows, "bradley_terry": bt is not None,
                       "pairs_between_systems": sum(1 for c in comps if c.b != reference),
                       "trusted": all(r["trusted"] for r in rows)})
    return boards
