"""N systems, one leaderboard: `eval run` with several candidates, all pairs judged by an LLM behind the fake
chat-completions server, then the Bradley–Terry leaderboard in the report and in leaderboard.json."""

from __future__ import annotations

import hashlib
import json
import math
import random

import yaml

from eval import cli
from eval.files import write_jsonl

QUALITY = {"strong": 1.5, "mid": 0.5, "weak": -0.5, "ref": 0.0}


def _judge_reply(messages):
    """A noisy but position-consistent judge: it prefers the better system (the tag its answers start with) and,
    a little, the longer answer; the draw depends on the two answers, not on the order they are shown in."""
    from openai_fixtures import _all_text, _answers, _format_pairwise

    text = _all_text(messages)
    shown = _answers(text)
    x, y = sorted([shown["A"], shown["B"]])
    qx, qy = (QUALITY[t.split("]")[0].strip("[")] for t in (x, y))
    p = 1 / (1 + math.exp(-(qx - qy + 0.6 * math.tanh((len(x) - len(y)) / 150))))
    u = int.from_bytes(hashlib.sha256((x + "\x00" + y).encode()).digest()[:8], "big") / 2**64
    winner = None if abs(u - p) < 0.05 else (x if u < p else y)
    choice = "tie" if winner is None else ("A" if winner == shown["A"] else "B")
    return _format_pairwise(text, choice)


def test_several_systems_one_leaderboard(fake_openai, tmp_path, monkeypatch):
    for k, v in fake_openai.env().items():
        monkeypatch.setenv(k, v)
    fake_openai.reply = _judge_reply
    n = 40
    write_jsonl(tmp_path / "prompts.jsonl", [{"id": f"q{i}", "prompt": f"Question {i}?", "category": "c"}
                                             for i in range(n)])
    rng = random.Random(1)
    for name in QUALITY:
        write_jsonl(tmp_path / f"{name}.jsonl",
                    [{"id": f"q{i}", "prompt": f"Question {i}?", "output": f"[{name}] " + "word " * rng.randint(5, 80),
                      "generator": name} for i in range(n)])
    config = {
        "out_dir": str(tmp_path / "out"), "prompts": str(tmp_path / "prompts.jsonl"),
        "candidates": [{"generator": s, "outputs": str(tmp_path / f"{s}.jsonl")} for s in ("weak", "strong", "mid")],
        "all_pairs": True,
        "references": [{"generator": "ref", "outputs": str(tmp_path / "ref.jsonl")}],
        "judges": [{"judge": "mtbench-pairwise", "cache_dir": str(tmp_path / "cache")}],
        "report": {"title": "three systems", "bootstrap": 500},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert cli.main(["run", "--config", str(tmp_path / "run.yaml")]) == 0
    assert len(list((tmp_path / "out" / "judgments").iterdir())) == 3 + 3  # each vs ref, and the 3 pairs
    board_file = tmp_path / "out" / "report" / "leaderboard.json"
    (board,) = json.loads(board_file.read_text())["leaderboards"]
    assert board["reference"] == "ref" and board["bradley_terry"] and board["pairs_between_systems"] == 3
    systems = board["systems"]
    assert [s["system"] for s in systems] == ["strong", "mid", "weak"]
    ratings = [s["rating"] for s in systems]
    assert ratings == sorted(ratings, reverse=True) and ratings[0] > 1000 > ratings[-1] - 1  # the reference is 1000
    for s in systems:
        lo, hi = s["rating_interval"]
        assert lo < s["rating"] < hi and s["n"] == n
        assert s["bootstrap"][0] <= s["win_rate"] <= s["bootstrap"][1]
        assert s["wilson"][0] <= s["win_rate"] <= s["wilson"][1]
        assert s["lc_win_rate"] is None or s["lc_interval"][0] <= s["lc_win_rate"] <= s["lc_interval"][1]
    assert any(s["lc_win_rate"] is not None for s in systems)
    summary = json.loads((tmp_path / "out" / "report" / "summary.json").read_text())
    vs_ref = [r for r in summary["results"] if r["b"] == "ref"]
    assert len(vs_ref) == 3 and all(r["difficulty_term"] for r in vs_ref)  # several systems: AlpacaEval 2's term
    md = (tmp_path / "out" / "report" / "report.md").read_text()
    assert "## Leaderboard — mtbench-pairwise (openai:fake-judge) (reference: ref)" in md
    assert "| 1 | strong |" in md and (tmp_path / "out" / "report" / "leaderboard.png").stat().st_size > 10_000
    # every stage resumes: a second run makes no request
    requests = fake_openai.requests
    assert cli.main(["run", "--config", str(tmp_path / "run.yaml")]) == 0 and fake_openai.requests == requests
