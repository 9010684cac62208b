"""Single-answer grading (MT-Bench): each system's scores, overall, per turn and per category.

One row of ``judgments.jsonl`` with ``"mode": "single"`` is one answer (one turn) graded on the judge's scale
(``score``, ``scale``). A system's score is the mean over its graded answers, with a 95 % bootstrap interval
that resamples prompts (both turns of a prompt together), as MT-Bench reports the mean of both turns.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from . import stats


def group(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Single-answer rows by (judge with its backend, system)."""
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        judge = f"{r.get('judge') or '?'} ({r.get('backend', '?')})"
        system = (r.get("a") or {}).get("generator") or "A"
        out[(judge, system)].append(r)
    return dict(out)


def _mean_ci(scores: list[float], clusters: list[str], n_boot: int, seed: int) -> tuple[float, tuple[float, float]]:
    if not scores:
        return float("nan"), (float("nan"), float("nan"))
    s = np.asarray(scores, dtype=float)
    cluster, n_clusters = stats._cluster_index(len(s), clusters)
    counts = stats.resample_counts(n_clusters, n_boot, seed)[:, cluster]
    means = (counts * s).sum(axis=1) / np.maximum(counts.sum(axis=1), 1e-12)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(s.mean()), (float(lo), float(hi))


def analyse(judge: str, system: str, rows: list[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    graded = [r for r in rows if r.get("score") is not None]
    scores = [float(r["score"]) for r in graded]
    mean, ci = _mean_ci(scores, [r["id"] for r in graded], n_boot, seed)
    by_turn: dict[int, list[float]] = defaultdict(list)
    by_cat: dict[str, list[float]] = defaultdict(list)
    for r in graded:
        by_turn[int(r.get("turn") or 1)].append(float(r["score"]))
        by_cat[r.get("category") or "general"].append(float(r["score"]))
    scale = next((r.get("scale") for r in rows if r.get("scale")), [1, 10])
    return {
        "judge": judge, "system": system, "key": f"{system} — {judge}", "scale": scale,
        "answers": len(rows), "graded": len(graded), "not_graded": len(rows) - len(graded),
        "prompts": len({r["id"] for r in rows}),
        "mean": mean, "interval": ci,
        "turns": {t: {"n": len(v), "mean": float(np.mean(v))} for t, v in sorted(by_turn.items())},
        "categories": {c: {"n": len(v), "mean": float(np.mean(v))} for c, v in sorted(by_cat.items())},
        "reference_guided": sum(1 for r in rows if r.get("judge_variant")),
        "cost": sum(float(r.get("cost") or 0) for r in rows),
        "spent": sum(float(r.get("spent") or 0) for r in rows),
        "unparseable": sum(1 for r in rows if r.get("status") == "unparseable"),
        "judge_parameters": _local_parameters(rows),
    }


def _local_parameters(rows: list[dict]) -> int | None:
    info = next((r.get("judge_model") for r in rows if r.get("judge_model")), None) or {}
    return info.get("parameters") if info.get("kind") == "transformers" else None


def sentence(g: dict) -> str:
    """The headline of one system's grades.

    >>> sentence({"system": "lima", "judge": "mtbench-single (openai:gpt-4)", "prompts": 80, "graded": 160,
    ...           "mean": 6.52, "interval": (6.1, 6.9), "scale": [1, 10], "turns": {1: {"mean": 7.0}, 2: {"mean": 6.04}}})
    'lima (judge mtbench-single (openai:gpt-4), 80 prompts, 160 answers graded): 6.52 of 10 [6.10–6.90]; turn 1: 7.00, turn 2: 6.04.'
    """
    if not g["graded"]:
        return f"{g['system']} (judge {g['judge']}): no answer got a grade."
    params = g.get("judge_parameters")
    if params is not None and params < 1e9:
        return (f"{g['system']} (judge {g['judge']}): no score is given as a result: the judge is a small local model "
                f"({params / 1e6:.0f} M parameters); its mean would be {g['mean']:.2f} of {g['scale'][1]}.")
    turns = ", ".join(f"turn {t}: {v['mean']:.2f}" for t, v in g["turns"].items()) if len(g["turns"]) > 1 else ""
    lo, hi = g["interval"]
    return (f"{g['system']} (judge {g['judge']}, {g['prompts']} prompts, {g['graded']} answers graded): "
            f"{g['mean']:.2f} of {g['scale'][1]} [{lo:.2f}–{hi:.2f}]" + (f"; {turns}" if turns else "") + ".")
