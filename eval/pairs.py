"""``python -m eval pairs``: votes become preference pairs for DPO.

Sources, each pair keeping its provenance in ``meta``:

- **LLM judgments** (``--judgments``, from ``eval judge``): a pair whose verdict held in both orders
  gives ``chosen`` = the preferred answer, ``rejected`` = the other. Ties and order-inconsistent
  verdicts (a flip, which ``judge`` counts as a tie) are dropped and counted; ``--include-inconsistent``
  is not offered on purpose: a verdict that flips with the order is the judge's position bias.
- **Human A/B votes** (``--judgments`` from ``eval judge --backend human pull``): the majority vote;
  ``meta.agreement`` is the share of voters who agree with it, ``meta.voters`` who voted.
- **Curator edits** (``--edits``, a curation export's ``train.jsonl``): an answer a curator rewrote is
  chosen over the original (``meta.original_response``).
- **Scored candidates** (``--scored``, ``{"id", "prompt" | "messages", "candidates": [{"output",
  "score", "generator"?}]}`` per prompt, e.g. teacher or ReST samples rated by a pointwise judge):
  the best-scored answer over the worst, when their scores differ by at least ``--min-margin``.

The output is TRL's conversational preference format (``prompt``/``chosen``/``rejected`` as message
lists) plus ``id``, ``source`` and ``meta``: ``datasets.load_dataset("json", data_files=...)`` reads it
and ``python -m finetune --method dpo --data pairs.jsonl`` trains on it.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from contract.io import write_jsonl
from contract.readers import read_examples
from contract.schema import DataError, preference_pair

from .files import read_records


@dataclass
class PairsReport:
    pairs: list[dict] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    seen: set = field(default_factory=set)

    def add(self, record: dict, where: dict) -> None:
        """Normalize and keep one pair (the same pair from two sources is kept once)."""
        pair = preference_pair(record, default_source=record["source"], where=where)
        if pair["id"] in self.seen:
            self.counts["duplicate (dropped)"] += 1
            return
        self.seen.add(pair["id"])
        self.pairs.append(pair)
        self.counts[f"from {pair['source']}"] += 1


def _user(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def from_judgments(path: str | Path, report: PairsReport) -> None:
    """LLM verdicts (both orders agreeing) and human majority votes."""
    for n, row in enumerate(read_records(path), start=1):
        where = {"path": str(path), "line": n, "record": row.get("id")}
        verdict, human = row.get("verdict"), row.get("judge_kind") == "human"
        kind = "human" if human else "llm"
        if verdict is None:
            report.counts[f"{kind}: no verdict"] += 1
            continue
        if verdict == "tie":
            report.counts[f"{kind}: inconsistent (dropped)" if row.get("consistent") is False
                          else f"{kind}: tie (dropped)"] += 1
            continue
        if not human and row.get("consistent") is not True:
            report.counts["llm: inconsistent (dropped)"] += 1
            continue
        a, b = row.get("output_a") or "", row.get("output_b") or ""
        chosen, rejected = (a, b) if verdict == "win" else (b, a)
        sides = (row.get("a") or {}, row.get("b") or {})
        winner, loser = sides if verdict == "win" else sides[::-1]
        meta = {"judge": row.get("judge"), "judge_kind": kind, "chosen_by": winner.get("generator"),
                "rejected_by": loser.get("generator"), "from": str(path), "judgment_id": row.get("id"),
                "category": row.get("category")}
        if human:
            votes = [v.get("verdict") for v in row.get("votes") or []]
            meta.update(voters=[v.get("annotator") for v in row.get("votes") or []],
                        agreement=round(votes.count(verdict) / len(votes), 4) if votes else None)
        else:
            meta.update(judge_model=(row.get("judge_model") or {}).get("model"), consistent=True)
        report.add({"prompt": _user(row["prompt"]), "chosen": chosen, "rejected": rejected,
                    "source": f"{kind}:{row.get('judge')}", "meta": meta}, where)


def from_edits(path: str | Path, report: PairsReport) -> None:
    """Curator edits in a curation export: the edited answer over the original."""
    for ex in read_examples(path, on_error="raise").examples:
        original = ex["meta"].get("original_response")
        if not original:
            continue
        why = ex["meta"].get("why") or {}
        report.add({"prompt": ex["messages"][:-1], "chosen": ex["messages"][-1]["content"], "rejected": original,
                    "source": "curator-edit",
                    "meta": {"edited_by": ex["meta"].get("edited_by") or why.get("edited_by"), "from": str(path),
                             "example_id": ex["id"], "candidate_id": ex["meta"].get("candidate_id"),
                             "category": ex["meta"].get("category")}},
                   {"path": str(path), "record": ex["id"]})


def from_scored(path: str | Path, report: PairsReport, min_margin: float) -> None:
    """Several scored answers per prompt: the best over the worst, when they differ by ``min_margin``."""
    for n, row in enumerate(read_records(path), start=1):
        where = {"path": str(path), "line": n, "record": row.get("id")}
        cands = [c for c in row.get("candidates") or [] if isinstance(c, dict) and c.get("score") is not None
                 and (c.get("output") or "").strip()]
        if len(cands) < 2:
            report.counts["scored: fewer than two scored answers"] += 1
            continue
        best = max(cands, key=lambda c: c["score"])
        worst = min(cands, key=lambda c: c["score"])
        if best["score"] - worst["score"] < min_margin:
            report.counts["scored: margin below --min-margin (dropped)"] += 1
            continue
        prompt = row.get("messages") or _user(row.get("prompt") or "")
        report.add({"prompt": prompt, "chosen": best["output"], "rejected": worst["output"],
                    "source": f"scored:{row.get('judge') or 'judge'}",
                    "meta": {"chosen_score": best["score"], "rejected_score": worst["score"],
                             "chosen_by": best.get("generator"), "rejected_by": worst.get("generator"),
                             "judge": row.get("judge"), "from": str(path), "prompt_id": row.get("id")}},
                   where)


def build(*, judgments=(), edits=(), scored=(), min_margin: float = 1.0) -> PairsReport:
    report = PairsReport()
    for path in judgments:
        from_judgments(path, report)
    for path in edits:
        from_edits(path, report)
    for path in scored:
        from_scored(path, report, min_margin)
    return report


def main(cfg) -> int:
    if not (cfg.judgments or cfg.edits or cfg.scored):
        raise ValueError("give at least one source: --judgments, --edits or --scored")
    try:
        report = build(judgments=cfg.judgments, edits=cfg.edits, scored=cfg.scored, min_margin=cfg.min_margin)
    except DataError as err:
        raise ValueError(str(err)) from None
    write_jsonl(cfg.out, report.pairs)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(report.counts.items()))
    print(f"{len(report.pairs)} preference pairs -> {cfg.out} ({counts or 'nothing dropped'})", file=sys.stderr)
    if not report.pairs:
        print("error: no pair was made (every verdict was a tie, inconsistent or missing)", file=sys.stderr)
        return 1
    return 0
