"""The command line: help, judge (keys never on disk, budget stop, unparseable exit), run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from eval import cli
from eval.files import read_records, write_jsonl
from eval.run import plan


def _gens(tmp_path, n=6):
    a, b = [], []
    for i in range(n):
        long, short = f"A long, careful answer number {i} with useful details.", f"Short {i}."
        ao, bo = (long, short) if i % 3 else (short, long)  # A longer on 2 of 3 prompts
        base = {"id": f"q{i}", "prompt": f"Question {i}?", "category": ["x", "y"][i % 2]}
        a.append({**base, "output": ao, "generator": "cand", "model": "m", "adapter": "runs/a", "config": {"seed": 0}})
        b.append({**base, "output": bo, "generator": "ref", "model": "m", "adapter": None, "config": {"seed": 0}})
    write_jsonl(tmp_path / "a.jsonl", a)
    write_jsonl(tmp_path / "b.jsonl", b)
    return str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")


def _env(monkeypatch, fake):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for k, v in fake.env().items():
        monkeypatch.setenv(k, v)


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for word in ("generate", "judge", "report", "run"):
        assert word in out


def test_api_key_is_never_written_or_logged(fake_openai, tmp_path, repo_root):
    a, b = _gens(tmp_path)
    secret = fake_openai.api_key
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "EVAL_JUDGE_"))}
    env.update(fake_openai.env(), HOME=str(tmp_path / "home"), PYTHONPATH=str(repo_root))
    cmd = [sys.executable, "-m", "eval", "judge", "--judge", "mtbench-pairwise", "--a", a, "--b", b,
           "--out", str(tmp_path / "j.jsonl"), "--cache-dir", str(tmp_path / "cache"), "--price-input", "1"]
    done = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"Bearer {secret}" in fake_openai.auth_headers  # the key was used...
    logs = done.stdout + done.stderr
    # ...and a wrong key fails fast without being echoed
    wrong = "sk-wrong-" + "9" * 30
    env["EVAL_JUDGE_API_KEY"] = wrong
    failed = subprocess.run(cmd[:-4] + ["--no-cache"], cwd=repo_root, env=env, capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and "refused the API key" in failed.stderr
    logs += failed.stdout + failed.stderr
    assert secret not in logs and wrong not in logs
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "judgments.sqlite" for p in files) and (tmp_path / "j.jsonl").is_file()
    for p in files:
        data = p.read_bytes()
        assert secret.encode() not in data and wrong.encode() not in data, p


def test_judge_cli_rows_budget_and_resume(fake_openai, tmp_path, monkeypatch, capsys):
    _env(monkeypatch, fake_openai)
    a, b = _gens(tmp_path)
    fake_openai.usage = (500, 50)  # 0.00055 USD per request at 1 USD / M tokens
    out = tmp_path / "j.jsonl"
    args = ["judge", "--judge", "lima", "--a", a, "--b", b, "--out", str(out), "--cache-dir", str(tmp_path / "c"),
            "--price-input", "1", "--price-output", "1", "--concurrency", "1", "--no-progress"]
    assert cli.main(args + ["--max-cost", "0.002"]) == 0
    err = capsys.readouterr().err
    assert "budget" in err and "not judged" in err
    rows = read_records(out)
    assert len(rows) == 6 and fake_openai.requests == 4
    assert [r["verdict"] for r in rows[:2]] == ["loss", "win"] and all(r["verdict"] is None for r in rows[2:])
    assert rows[2]["error"].startswith("not judged")
    r = rows[0]
    assert r["judge"] == "lima-three-way" and r["judge_kind"] == "llm" and r["backend"] == "openai:fake-judge"
    assert r["a"]["generator"] == "cand" and r["b"]["generator"] == "ref" and r["category"] == "x"
    assert [o["raw"] for o in r["orders"]] == ["B", "A"] and r["consistent"] is True
    assert r["tokens"] == {"prompt": 1000, "completion": 100} and r["cost"] == pytest.approx(0.0011)
    # finish with no budget: only the missing orders are requested
    fake_openai.reset()
    assert cli.main(args) == 0
    assert fake_openai.requests == 12 - 4
    assert [r["verdict"] for r in read_records(out)] == ["loss", "win", "win", "loss", "win", "win"]
    fake_openai.reset()
    assert cli.main(args) == 0 and fake_openai.requests == 0


def test_judge_cli_unparseable_fails_but_writes(fake_openai, tmp_path, monkeypatch, capsys):
    _env(monkeypatch, fake_openai)
    a, b = _gens(tmp_path)
    fake_openai.malformed_rate = 1.0
    out = tmp_path / "j.jsonl"
    code = cli.main(["judge", "--judge", "mtbench", "--a", a, "--b", b, "--out", str(out), "--no-cache", "--no-progress"])
    assert code == 1
    assert "no parseable verdict" in capsys.readouterr().err
    rows = read_records(out)
    assert all(r["verdict"] is None and r["parse_failures"] == 4 for r in rows)
    assert rows[0]["orders"][0]["reply"] == "I am not sure which is better."


def test_reference_guided_judge_with_references_file(fake_openai, tmp_path, monkeypatch):
    _env(monkeypatch, fake_openai)
    a, b = _gens(tmp_path, n=3)
    write_jsonl(tmp_path / "refs.jsonl", [{"id": f"q{i}", "prompt": f"Question {i}?", "reference": f"REF-{i}"} for i in range(3)])
    out = tmp_path / "j.jsonl"
    base = ["judge", "--judge", "mtbench-reference", "--a", a, "--b", b, "--out", str(out), "--no-cache", "--no-progress"]
    assert cli.main(base) == 2  # no references: a setup error
    assert cli.main(base + ["--references", str(tmp_path / "refs.jsonl")]) == 0
    assert [r["reference"] for r in read_records(out)] == ["REF-0", "REF-1", "REF-2"]
    assert any("REF-1" in body["messages"][-1]["content"] for body in fake_openai.bodies)


def test_shipped_run_files_are_valid(repo_root):
    files = sorted((repo_root / "eval" / "runs").glob("*.yaml"))
    assert files
    for f in files:
        assert f.read_text().startswith("# python -m"), f"{f.name} should begin with the command that runs it"
        steps = plan(yaml.safe_load(f.read_text()))
        assert steps.generate and steps.judge and steps.report


def test_run_file_problems_reported_together(tmp_path):
    bad = {"out_dir": str(tmp_path), "prompts": "data/eval-prompts/prompts.jsonl", "colour": 1,
           "candidate": {"generator": "a", "model": "m", "outputs": "x"},
           "references": [{"model": "m", "max_new_tokens": "many"}],
           "judges": [{"judge": "lima", "backend": "human"}, {"judge": "nope", "temprature": 0}]}
    with pytest.raises(ValueError) as info:
        plan(bad)
    msg = str(info.value)
    assert "unknown top-level key 'colour'" in msg
    bad.pop("colour")
    with pytest.raises(ValueError) as info:
        plan(bad)
    msg = str(info.value)
    for part in ("either 'model' or 'outputs'", "'generator'", "two steps", "unknown key 'temprature'"):
        assert part in msg, part


def test_run_end_to_end_offline(tiny_model_dir, fake_openai, tmp_path, monkeypatch, repo_root):
    _env(monkeypatch, fake_openai)
    alpaca = [{"instruction": json.loads(line)["prompt"], "output": "A reference answer. " * (i % 4 + 1),
               "generator": "alpaca-ref"}
              for i, line in enumerate((repo_root / "data/eval-prompts/prompts.jsonl").read_text().splitlines()[:8])]
    (tmp_path / "alpaca.json").write_text(json.dumps(alpaca))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join((repo_root / "data/eval-prompts/prompts.jsonl").read_text().splitlines()[:8]) + "\n")
    config = {
        "out_dir": str(tmp_path / "out"), "prompts": str(prompts),
        "candidate": {"generator": "tiny", "model": str(tiny_model_dir), "max_new_tokens": 16},
        "references": [{"generator": "alpaca-ref", "outputs": str(tmp_path / "alpaca.json")}],
        "generation": {"batch_size": 4},
        "judges": [{"judge": "lima-three-way", "backend": "transformers", "model": str(tiny_model_dir),
                    "cache_dir": str(tmp_path / "cache")},
                   {"judge": "mtbench-pairwise", "backend": "openai", "cache_dir": str(tmp_path / "cache")}],
        "report": {"title": "offline e2e", "samples": 2},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert cli.main(["run", "--config", str(tmp_path / "run.yaml")]) == 0
    out = tmp_path / "out"
    assert len(read_records(out / "generations" / "tiny.jsonl")) == 8
    assert {p.name for p in (out / "judgments").iterdir()} == {
        "lima-three-way--tiny--vs--alpaca-ref.jsonl", "mtbench-pairwise--tiny--vs--alpaca-ref.jsonl"}
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert len(summary["results"]) == 2 and all(r["n"] == 8 for r in summary["results"])
    html = (out / "report" / "report.html").read_text()
    assert "It is a tiny model" in html and "data:image/png;base64," in html
    assert (out / "run.yaml").is_file()
    requests = fake_openai.requests
    assert requests == 16
    assert cli.main(["run", "--config", str(tmp_path / "run.yaml")]) == 0  # everything resumes
    assert fake_openai.requests == requests


def test_a_judge_folders_backend_settings_hold_unless_a_flag_is_given(fake_openai, tmp_path, monkeypatch, capsys):
    """The judge folder's ``backend:`` block (here max_retries: 0) is not overridden by the CLI's own defaults;
    a flag that is actually given still wins."""
    import shutil

    from judging import JUDGES_DIR

    _env(monkeypatch, fake_openai)
    a, b = _gens(tmp_path, n=1)
    judge = tmp_path / "no-retry-judge"
    shutil.copytree(JUDGES_DIR / "lima-three-way", judge)
    cfg = yaml.safe_load((judge / "config.yaml").read_text())
    cfg.update(name="no-retry-judge", backend={"max_retries": 0}, max_unparseable=1.0)
    (judge / "config.yaml").write_text(yaml.safe_dump(cfg))
    args = ["judge", "--judge", str(judge), "--a", a, "--b", b, "--no-cache", "--no-progress", "--concurrency", "1"]

    fake_openai.reset()
    fake_openai.fail_first = 1  # the first request gets an error status
    cli.main(args + ["--out", str(tmp_path / "j1.jsonl")])
    assert fake_openai.requests == 2  # no retry: the folder's max_retries 0 held

    fake_openai.reset()
    fake_openai.fail_first = 1
    assert cli.main(args + ["--out", str(tmp_path / "j2.jsonl"), "--max-retries", "2"]) == 0
    assert fake_openai.requests == 3  # the flag was given: one retry
    row = read_records(tmp_path / "j2.jsonl")[0]
    assert row["verdict"] in ("win", "tie", "loss")


# ------------------------------------------------------------------ issue 12: exit codes, the unparseable cache, costs


def test_judge_fails_when_too_few_pairs_get_a_verdict(fake_openai, tmp_path, monkeypatch, capsys):
    """A server that answers every request with 400: no pair judged, exit 1, and the summary says failed and why."""
    _env(monkeypatch, fake_openai)
    a, b = _gens(tmp_path, n=2)
    fake_openai.error_rate = 1.0
    fake_openai.error_statuses = (400,)
    out = tmp_path / "j.jsonl"
    args = ["judge", "--judge", "mtbench", "--a", a, "--b", b, "--out", str(out), "--no-cache", "--no-progress",
            "--concurrency", "1"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "0/2 pairs judged" in err and "failed: only 0 of 2 pairs got a verdict" in err and "HTTP 400" in err
    assert [r["status"] for r in read_records(out)] == ["failed", "failed"]
    # a share below the default threshold fails too; a lower --min-verdicts accepts it
    fake_openai.reset()
    fake_openai.error_rate = 0.0
    fake_openai.fail_first = 2  # the first pair's two orders: 400, not retried
    a, b = _gens(tmp_path, n=4)
    assert cli.main(args) == 1
    assert "failed: only 3 of 4 pairs" in capsys.readouterr().err
    fake_openai.reset()
    fake_openai.fail_first = 2
    assert cli.main(args + ["--min-verdicts", "0.7"]) == 0


def test_unparseable_rerun_costs_nothing_unless_asked(fake_openai, tmp_path, monkeypatch, capsys):
    _env(monkeypatch, fake_openai)
    a, b = _gens(tmp_path, n=3)
    fake_openai.malformed_rate = 1.0
    args = ["judge", "--judge", "mtbench", "--a", a, "--b", b, "--out", str(tmp_path / "j.jsonl"),
            "--cache-dir", str(tmp_path / "c"), "--no-progress"]
    assert cli.main(args) == 1 and fake_openai.requests == 3 * 2 * 2
    fake_openai.reset()
    assert cli.main(args) == 1 and fake_openai.requests == 0  # "no verdict" came from the cache
    assert all(r["status"] == "unparseable" for r in read_records(tmp_path / "j.jsonl"))
    fake_openai.malformed_rate = 0.0
    assert cli.main(args + ["--retry-unparseable"]) == 0 and fake_openai.requests == 6
    assert [r["verdict"] for r in read_records(tmp_path / "j.jsonl")] == ["loss", "win", "win"]


def test_cached_rerun_reports_what_the_judgments_cost(fake_openai, tmp_path, monkeypatch, capsys):
    from eval import report
    from eval.config import ReportArgs

    _env(monkeypatch, fake_openai)
    a, b = _gens(tmp_path, n=3)
    fake_openai.usage = (500, 50)  # 0.00055 USD per request at 1 USD / M tokens
    out = tmp_path / "j.jsonl"
    args = ["judge", "--judge", "lima", "--a", a, "--b", b, "--out", str(out), "--cache-dir", str(tmp_path / "c"),
            "--price-input", "1", "--price-output", "1", "--no-progress"]
    assert cli.main(args) == 0
    assert "$0.0033 spent in this run; the judgments cost $0.0033 in all" in capsys.readouterr().err
    assert cli.main(args) == 0 and fake_openai.requests == 6
    assert "$0.0000 spent in this run; the judgments cost $0.0033 in all" in capsys.readouterr().err
    rows = read_records(out)
    assert [r["cost"] for r in rows] == pytest.approx([0.0011] * 3) and [r["spent"] for r in rows] == [0, 0, 0]
    assert all(r["tokens"] == {"prompt": 1000, "completion": 100} for r in rows)
    rep = report.main(ReportArgs(judgments=[str(out)], out=str(tmp_path / "rep")))
    md = (rep / "report.md").read_text()
    assert "The judgments cost $0.0033 in all; $0.0000 of it was spent by the runs that wrote these files" in md
