"""The report's first lines: one sentence per comparison that says who won, by how much, how sure, and by which
judge — or, when the judge cannot be trusted, says so instead of naming a winner — with the warnings that
belong next to it (empty or truncated answers, few prompts, pairs without a verdict).

    >>> r = {"a": "lima", "b": "base", "judge": "lima-three-way (openai:gpt-4o)", "kind": "llm", "n": 300,
    ...      "prompts": 300, "turns": 1, "win_rate": 0.62, "bootstrap": (0.55, 0.69), "lc_win_rate": 0.55,
    ...      "lc_interval": (0.48, 0.62), "lc_problem": None, "consistency": 0.81, "sign_test_p": 0.003,
    ...      "trust": {"trusted": True, "reasons": []}}
    >>> sentence(r)
    'lima vs base (judge lima-three-way (openai:gpt-4o), 300 prompts): lima wins 62 % [55–69], length-controlled 55 % [48–62]; position-consistent on 81 %; significant (sign test p = 0.003).'
"""

from __future__ import annotations

PRIMARY = ("Numbers in brackets are 95 % paired-bootstrap intervals over prompts: the primary intervals (the table "
           "adds Wilson score intervals for reference). Significant: the two-sided sign test of wins against losses "
           "gives p < 0.05.")
TINY_N = 30
MIN_CONSISTENCY = 0.5
SMALL_JUDGE = 1e9


def _p(x: float) -> str:
    return f"{100 * x:.0f}"


def _interval(lo_hi) -> str:
    lo, hi = lo_hi
    return f"[{_p(lo)}–{_p(hi)}]"


def trust(r: dict, human_agreement: dict | None = None) -> dict:
    """Whether this judge's verdicts can name a winner: its position consistency (an LLM that mostly picks a
    position is not judging the answers), its size (a local model under a billion parameters), and, where
    humans voted on the same pairs, its agreement with them."""
    reasons = []
    facts = []
    if r["kind"] == "llm" and r.get("consistency") is not None:
        facts.append(f"position-consistent on {_p(r['consistency'])} %")
        position = (r.get("prefers_first") or 0) + (r.get("prefers_second") or 0)
        if r["consistency"] < MIN_CONSISTENCY:
            reasons.append(f"it gave the same verdict in both orders on only {_p(r['consistency'])} % of the pairs"
                           + (f" and picked a position rather than an answer on {position}" if position else ""))
    params = r.get("judge_parameters")
    if r["kind"] == "llm" and params is not None and params < SMALL_JUDGE:
        reasons.append(f"it is a small local model ({params / 1e6:.0f} M parameters)")
    if human_agreement:
        facts.append(f"agreement with humans: kappa {human_agreement['kappa']:.2f} on {human_agreement['n']} pairs")
        if human_agreement["n"] >= 10 and not human_agreement["kappa"] > 0.2:
            reasons.append(f"it agrees with the human votes no better than chance (kappa {human_agreement['kappa']:.2f} "
                           f"on {human_agreement['n']} pairs)")
    return {"trusted": not reasons, "reasons": reasons, "facts": facts}


def sentence(r: dict) -> str:
    """"A vs B (judge J, n prompts): A wins 62 % [55–69], length-controlled 55 % [48–62]; position-consistent on
    81 %; significant (sign test p = 0.003).\""""
    size = f"{r['prompts']} prompts" + (f" × {r['turns']} turns" if r.get("turns", 1) > 1 else "")
    head = f"{r['a']} vs {r['b']} (judge {r['judge']}, {size}): "
    if not r["n"]:
        return head + "no pair got a verdict."
    t = r.get("trust") or {"trusted": True, "reasons": []}
    if not t["trusted"]:
        return (head + "no winner is named: this judge cannot be trusted here (" + "; ".join(t["reasons"]) + "). "
                f"Its raw numbers are below; {r['a']}'s win rate would be {_p(r['win_rate'])} % "
                f"{_interval(r['bootstrap'])}.")
    parts = [f"{r['a']} wins {_p(r['win_rate'])} % {_interval(r['bootstrap'])}"]
    if r.get("lc_win_rate") is not None:
        parts[0] += f", length-controlled {_p(r['lc_win_rate'])} % {_interval(r['lc_interval'])}"
    elif r.get("lc_problem"):
        parts[0] += f"; length cannot be controlled ({r['lc_problem']})"
    if r["kind"] == "llm" and r.get("consistency") is not None:
        parts.append(f"position-consistent on {_p(r['consistency'])} %")
        agree = r.get("human_agreement")
        if agree:
            parts[-1] += f", agrees with humans at kappa {agree['kappa']:.2f} on {agree['n']} pairs"
    elif r["kind"] == "human":
        parts.append(f"{len(r.get('annotators') or [])} human annotators, blind A/B")
    sig = "significant" if r["sign_test_p"] < 0.05 else "not significant"
    parts.append(f"{sig} (sign test p = {r['sign_test_p']:.2g})")
    return head + "; ".join(parts) + "."


def warnings(r: dict) -> list[str]:
    """What to keep in mind when reading the sentence."""
    out = []
    q = r.get("quality") or {}
    for side in ("a", "b"):
        name = r[side]
        empty, cut = q.get(f"empty_{side}", 0), q.get(f"truncated_{side}", 0)
        if empty:
            out.append(f"{name} gave {empty} empty answer(s) out of {r['pairs']}.")
        if cut:
            out.append(f"{name}'s answers were cut at the token limit on {cut} of {r['pairs']} prompts.")
    if 0 < r["prompts"] < TINY_N:
        out.append(f"Only {r['prompts']} prompts: the intervals are wide and a few verdicts can change the winner.")
    if r.get("not_judged"):
        out.append(f"{r['not_judged']} of {r['pairs']} pairs have no verdict ({r['unparseable_pairs']} unparseable, "
                   f"{r['failed_pairs']} failed requests, {r['budget_skipped']} skipped by the budget); they are left out.")
    if r.get("weighted"):
        out.append("Judgments are weighted (strong wins count more, or logprob probabilities): the win rate is a "
                   "weighted mean score, and the Wilson interval uses the effective number of judgments.")
    return out
