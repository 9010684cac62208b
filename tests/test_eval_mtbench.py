"""MT-Bench end to end against the fake chat-completions server (a real HTTP server): the shipped questions,
generation through an OpenAI-compatible endpoint turn by turn, single-answer grading (reference-guided for math,
reasoning and coding) and pairwise judging of both turns, then the report."""

from __future__ import annotations

import hashlib
import json


from eval import cli
from eval.files import BENCHMARKS_DIR, load_prompts, read_records

SHIPPED = {  # sha256 of the files as published in lm-sys/FastChat (see SOURCE.md): shipped unchanged
    "LICENSE": "c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4",
    "SOURCE.md": "11082b6ed20d0b03d9926a64b7ab3a8973ddf1431c12a06e09c1793fde91a4ea",
    "question.jsonl": "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
    "reference_answer_gpt-4.jsonl": "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f",
}


def _env(monkeypatch, fake):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for k, v in fake.env().items():
        monkeypatch.setenv(k, v)
        monkeypatch.setenv(k.replace("EVAL_JUDGE", "EVAL_GEN"), v)
    monkeypatch.delenv("EVAL_GEN_MODEL")


def test_mt_bench_ships_verbatim_with_its_license():
    folder = BENCHMARKS_DIR / "mt_bench"
    for name, digest in SHIPPED.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    assert "Apache License" in (folder / "LICENSE").read_text()
    prompts = load_prompts("mt-bench")
    assert len(prompts) == 80 and all(len(p.turns) == 2 for p in prompts)
    assert {p.category for p in prompts} == {"writing", "roleplay", "reasoning", "math", "coding", "extraction",
                                            "stem", "humanities"}
    gpt4 = {str(json.loads(line)["question_id"]): json.loads(line)["choices"][0]["turns"]
            for line in (folder / "reference_answer_gpt-4.jsonl").read_text().splitlines()}
    by_id = {p.id: p for p in prompts}
    assert len(gpt4) == 30 and all(by_id[i].reference == turns for i, turns in gpt4.items())
    assert {by_id[i].category for i in gpt4} == {"math", "reasoning", "coding"}


def test_generate_through_an_endpoint_turn_by_turn(fake_openai, tmp_path, monkeypatch, capsys):
    _env(monkeypatch, fake_openai)
    out = tmp_path / "gpt.jsonl"
    args = ["generate", "--backend", "openai", "--model", "gpt-4o", "--prompts", "mt-bench", "--limit", "5",
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--price-input", "1", "--price-output", "1",
            "--no-progress"]
    assert cli.main(args) == 0
    rows = read_records(out)
    assert [r["id"] for r in rows] == ["81", "82", "83", "84", "85"] and fake_openai.requests == 10
    r = rows[0]
    assert r["generator"] == "gpt-4o" and r["model"] == "gpt-4o" and len(r["outputs"]) == 2
    assert r["output"] == r["outputs"][0] and r["outputs"][1].startswith("[gpt-4o] Point 1 on turn 2")
    assert r["config"]["backend"] == "openai" and r["config"]["cost"] > 0 and r["config"]["hit_max_new_tokens"] is False
    # turn 2 was asked with the model's own first answer in the context
    second = [b["messages"] for b in fake_openai.bodies if len(b["messages"]) == 3]
    assert len(second) == 5
    first_answers = {row["turns"][0]: row["outputs"][0] for row in rows}
    for messages in second:
        assert [m["role"] for m in messages] == ["user", "assistant", "user"]
        assert messages[1]["content"] == first_answers[messages[0]["content"]]
    assert f"Bearer {fake_openai.api_key}" in fake_openai.auth_headers  # the key from EVAL_GEN_API_KEY
    # resume: nothing to do; the cache: a deleted file is rebuilt without a request
    fake_openai.reset()
    assert cli.main(args) == 0 and fake_openai.requests == 0
    out.unlink()
    assert cli.main(args) == 0 and fake_openai.requests == 0 and len(read_records(out)) == 5
    assert "5 new answers" in capsys.readouterr().err


def test_generate_budget_stop_resume_and_failures(fake_openai, tmp_path, monkeypatch, capsys):
    _env(monkeypatch, fake_openai)
    fake_openai.usage = (1000, 1000)  # 0.002 USD a request at 1 USD / M tokens
    out = tmp_path / "g.jsonl"
    args = ["generate", "--backend", "openai", "--model", "m", "--prompts", "mt-bench", "--limit", "6", "--out", str(out),
            "--cache-dir", str(tmp_path / "cache"), "--price-input", "1", "--price-output", "1", "--concurrency", "1",
            "--no-progress"]
    assert cli.main(args + ["--max-cost", "0.007"]) == 0
    err = capsys.readouterr().err
    assert "stopped: the --max-cost budget" in err and "6 prompts have no answer yet" in err
    # the budget ran out during the first turns: no half conversation is written, the answers so far are cached
    assert fake_openai.requests == 4 and not read_records(out)
    fake_openai.reset()
    fake_openai.error_rate, fake_openai.error_statuses = 1.0, (400,)
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "failed: 6 prompt(s) got no answer" in err and "HTTP 400" in err
    assert fake_openai.requests == 2 + 4  # the 2 first turns not cached, the 4 second turns of the cached ones
    fake_openai.reset()
    fake_openai.error_rate = 0.0
    assert cli.main(args) == 0 and len(read_records(out)) == 6 and fake_openai.requests == 2 + 6
    monkeypatch.setenv("EVAL_GEN_API_KEY", "sk-wrong-key-000000000000")
    assert cli.main(args[:-3] + ["--out", str(tmp_path / "x.jsonl"), "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "refused the API key" in err and "EVAL_GEN_API_KEY" in err and "sk-wrong" not in err


def test_mt_bench_80_questions_graded_and_judged_pairwise(fake_openai, tmp_path, monkeypatch, capsys):
    """The issue's target: all 80 questions, both turns, single-answer (reference-guided where MT-Bench is) and
    pairwise, against the fake OpenAI-compatible server; then the report with per-category and per-turn scores."""
    from eval import report
    from eval.config import ReportArgs

    _env(monkeypatch, fake_openai)
    fake_openai.answer_repeats = {"thorough": 3, "terse": 1}
    common = ["--prompts", "mt-bench", "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    for name in ("thorough", "terse"):
        assert cli.main(["generate", "--backend", "openai", "--model", name, "--out", str(tmp_path / f"{name}.jsonl"),
                         *common]) == 0
    assert fake_openai.requests == 2 * 160
    fake_openai.reset()
    judge = ["--no-progress", "--cache-dir", str(tmp_path / "cache")]
    for name in ("thorough", "terse"):
        assert cli.main(["judge", "--judge", "mtbench-single", "--a", str(tmp_path / f"{name}.jsonl"),
                         "--out", str(tmp_path / f"grades-{name}.jsonl"), *judge]) == 0
    assert fake_openai.requests == 2 * 160
    grades = read_records(tmp_path / "grades-thorough.jsonl")
    assert len(grades) == 160 and {r["turn"] for r in grades} == {1, 2} and all(r["score"] for r in grades)
    routed = [r for r in grades if r.get("judge_variant") == "mtbench-single-reference"]
    assert len(routed) == 60 and {r["category"] for r in routed} == {"math", "reasoning", "coding"}
    # the reference answers and the whole conversation reach the judge
    bodies = [b["messages"][-1]["content"] for b in fake_openai.bodies]
    assert sum("### Reference answer:" in t for t in bodies) == 2 * 30
    assert sum("<|The Start of Assistant A's Conversation with User|>" in t for t in bodies) == 2 * 80
    fake_openai.reset()
    assert cli.main(["judge", "--judge", "mtbench-pairwise", "--a", str(tmp_path / "thorough.jsonl"),
                     "--b", str(tmp_path / "terse.jsonl"), "--out", str(tmp_path / "pairs.jsonl"), *judge]) == 0
    pairs = read_records(tmp_path / "pairs.jsonl")
    assert len(pairs) == 160 and fake_openai.requests == 320
    assert sum(r.get("judge_variant") == "mtbench-reference" for r in pairs) == 60
    assert {r["verdict"] for r in pairs} == {"win"}  # the thorough answers are longer, the fake prefers them
    # a re-run is free
    fake_openai.reset()
    assert cli.main(["judge", "--judge", "mtbench-pairwise", "--a", str(tmp_path / "thorough.jsonl"),
                     "--b", str(tmp_path / "terse.jsonl"), "--out", str(tmp_path / "pairs.jsonl"), *judge]) == 0
    assert fake_openai.requests == 0
    files = [str(tmp_path / f) for f in ("pairs.jsonl", "grades-thorough.jsonl", "grades-terse.jsonl")]
    out = report.main(ReportArgs(judgments=files, out=str(tmp_path / "rep"), title="MT-Bench"))
    summary = json.loads((out / "summary.json").read_text())
    g = {x["system"]: x for x in summary["grades"]}
    assert g["thorough"]["graded"] == g["terse"]["graded"] == 160 and g["thorough"]["mean"] > g["terse"]["mean"]
    assert set(g["thorough"]["turns"]) == {"1", "2"} and len(g["thorough"]["categories"]) == 8
    assert g["thorough"]["reference_guided"] == 60
    (r,) = summary["results"]
    assert r["n"] == 160 and r["prompts"] == 80 and r["turns"] == 2 and set(r["per_turn"]) == {"1", "2"}
    assert (out / "grades.png").stat().st_size > 10_000
    md = (out / "report.md").read_text()
    assert "thorough vs terse (judge mtbench-pairwise (openai:fake-judge), 80 prompts × 2 turns)" in md
    assert "## Single-answer grades" in md and "![grades per category](grades.png)" in md
    assert "| humanities |" in md
