"""The report's charts (matplotlib, Agg): each function takes the analysed numbers and returns PNG bytes."""

from __future__ import annotations

import io

COLORS = {"win": "#2e7d32", "tie": "#9e9e9e", "loss": "#c62828"}
PALETTE = ["#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#c62828", "#00838f", "#5d4037", "#9e9d24"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return matplotlib, plt


def _png(fig) -> bytes:
    _, plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def chart_bars(results: list[dict]) -> bytes:
    """LIMA's figure 1: one horizontal bar per comparison, win / tie / loss shares."""
    matplotlib, plt = _plt()
    labels = [f"{r['a']} vs {r['b']}\n{r['judge']}" for r in results]
    fig, ax = plt.subplots(figsize=(8.5, 0.75 * len(results) + 1.2))
    for i, r in enumerate(results):
        n = max(1, r["n"])
        left = 0.0
        for k in ("win", "tie", "loss"):
            share = r[k] / n
            ax.barh(i, share, left=left, color=COLORS[k], edgecolor="white",
                    label={"win": "A wins", "tie": "Tie", "loss": "B wins"}[k] if i == 0 else None)
            if share >= 0.06:
                ax.text(left + share / 2, i, f"{share:.0%}", ha="center", va="center", color="white", fontsize=9)
            left += share
    ax.set_yticks(range(len(results)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of prompts")
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    ax.set_title("Preference of A over B (LIMA figure 1 style)", pad=28)
    fig.tight_layout()
    return _png(fig)


def chart_win_rates(results: list[dict]) -> bytes:
    """Win rates with their bootstrap intervals (the primary ones), and the length-controlled rates with theirs."""
    matplotlib, plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 0.6 * len(results) + 1.2))
    for i, r in enumerate(results):
        lo, hi = r["bootstrap"]
        ax.errorbar(r["win_rate"], i - 0.1, xerr=[[r["win_rate"] - lo], [hi - r["win_rate"]]], fmt="o",
                    color="#1565c0", capsize=4, label="win rate (bootstrap 95 %)" if i == 0 else None)
        if r.get("lc_win_rate") is not None:
            lo, hi = r["lc_interval"]
            ax.errorbar(r["lc_win_rate"], i + 0.1, xerr=[[r["lc_win_rate"] - lo], [hi - r["lc_win_rate"]]], fmt="D",
                        color="#ef6c00", capsize=4, label="length-controlled (bootstrap 95 %)" if i == 0 else None)
    ax.axvline(0.5, color="#666", lw=0.8, ls="--")
    ax.set_yticks(range(len(results)), [f"{r['a']} vs {r['b']} — {r['judge']}" for r in results], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel("win rate of A (ties count half)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    return _png(fig)


def chart_lengths(lengths: dict[str, list[int]]) -> bytes:
    """Box plots of the answer lengths per system."""
    _, plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 0.45 * len(lengths) + 1.8))
    names = list(lengths)
    ax.boxplot([lengths[n] or [0] for n in names], orientation="horizontal", tick_labels=names)
    ax.set_xlabel("answer length (characters)")
    ax.set_title("Answer lengths")
    fig.tight_layout()
    return _png(fig)


def chart_grades(grades: list[dict]) -> bytes:
    """MT-Bench's radar: each system's mean score per category (single-answer grading), one line per system."""
    import numpy as np

    _, plt = _plt()
    cats = sorted({c for g in grades for c in g["categories"]})
    if len(cats) < 3:  # a radar needs three axes: bars instead
        fig, ax = plt.subplots(figsize=(8.5, 3.2))
        width = 0.8 / max(1, len(grades))
        for i, g in enumerate(grades):
            xs = [j + i * width for j in range(len(cats))]
            ax.bar(xs, [g["categories"].get(c, {}).get("mean", 0) for c in cats], width, label=g["system"],
                   color=PALETTE[i % len(PALETTE)])
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cats))], cats)
        ax.set_ylabel("mean score")
        ax.legend(frameon=False)
        fig.tight_layout()
        return _png(fig)
    angles = np.linspace(0, 2 * np.pi, len(cats), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(6.5, 6.5), subplot_kw={"polar": True})
    top = max([g["scale"][1] for g in grades] + [1])
    for i, g in enumerate(grades):
        vals = [g["categories"].get(c, {}).get("mean") or 0 for c in cats]
        ax.plot(angles + angles[:1], vals + vals[:1], color=PALETTE[i % len(PALETTE)], lw=2,
                label=f"{g['system']} ({g['mean']:.2f})")
        ax.fill(angles + angles[:1], vals + vals[:1], color=PALETTE[i % len(PALETTE)], alpha=0.08)
    ax.set_xticks(angles, cats)
    ax.set_ylim(0, top)
    ax.set_title("Single-answer grades per category (MT-Bench style)", pad=24)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=2, frameon=False)
    fig.tight_layout()
    return _png(fig)


def chart_leaderboard(board: list[dict]) -> bytes:
    """Each system's win rate against the reference with its bootstrap interval, best first."""
    matplotlib, plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 0.5 * len(board) + 1.4))
    for i, row in enumerate(board):
        lo, hi = row["bootstrap"]
        ax.errorbar(row["win_rate"], i, xerr=[[row["win_rate"] - lo], [hi - row["win_rate"]]], fmt="o",
                    color="#1565c0", capsize=4, label="win rate vs reference (bootstrap 95 %)" if i == 0 else None)
        if row.get("lc_win_rate") is not None:
            ax.plot(row["lc_win_rate"], i, "D", color="#ef6c00", label="length-controlled" if i == 0 else None)
    ax.axvline(0.5, color="#666", lw=0.8, ls="--")
    ax.set_yticks(range(len(board)), [row["system"] for row in board], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel("win rate against the reference (ties count half)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    return _png(fig)
