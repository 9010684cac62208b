"""The main job end to end: `scripts/demo.py --quick` on the sample pool, as `make demo` runs it.

One real run of every stage (embedded Argilla, ingest, score, push, unattended
pull, select, export, QLoRA fine-tuning of the real SmolLM2-135M-Instruct,
generation, local judging, report), then checks on the files each stage hands
to the next and on the answers: real text, changed by the adapter.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# the first test sets up the module's one demo run (and, if no test did before, the model conversion)
pytestmark = pytest.mark.timeout(2700)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, smollm2_dir):  # smollm2_dir: the session's model cache, converted once
    out = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    for key in ("ARGILLA_API_URL", "ARGILLA_API_KEY", "JUDGE_BASE_URL", "EVAL_JUDGE_BASE_URL"):
        env.pop(key, None)
    cmd = [sys.executable, "scripts/demo.py", "--quick", "--out", str(out), "--budget", "40",
           "--port", str(_free_port()), "--no-keep-server"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=2400)
    log = proc.stdout + proc.stderr
    (out / "demo.log").write_text(log, encoding="utf-8")
    assert proc.returncode == 0, f"demo failed (exit {proc.returncode}); end of its output:\n{log[-6000:]}"
    return out, log


def test_demo_runs_the_real_model_and_states_model_and_judge_sizes(demo_run):
    out, log = demo_run
    summary = json.loads((out / "demo-summary.json").read_text())
    assert summary["model"]["name"] == "smollm2-135m-instruct"
    assert 130e6 < summary["model"]["parameters"] < 140e6
    assert "134.5 M parameters" in log and "plan:" in log and "threads:" in log
    report = (out / "report" / "report.md").read_text(encoding="utf-8")
    assert "smollm2-135m-instruct + the adapter" in report and "134.5 M parameters" in report
    assert "in 4-bit NF4 weights" in report  # the reference is the base the adapter started from
    assert "close to noise" in report, "the report must say a judge this small is noise"


def test_the_finetuned_model_answers_with_real_text_changed_by_the_adapter(demo_run):
    out, log = demo_run
    answers = json.loads((out / "demo-summary.json").read_text())["answers"]
    assert answers["answers"] == 6  # --quick: six prompts
    assert answers["non_empty"] / answers["answers"] >= 0.95
    assert answers["mean_words"] >= 10  # sentences, not a token or two
    assert answers["changed_by_adapter"] >= 1, "the adapter must change the answers"
    assert "answers:" in log and "differ from the base's" in log
    rows = [json.loads(x) for x in (out / "eval" / "generations-finetuned.jsonl").read_text().splitlines()]
    assert all(r["config"]["parameters"] > 130e6 for r in rows)
    text = " ".join(r["output"] for r in rows)
    assert len(set(text.split())) >= 30  # varied words: real text, not a loop


def test_demo_prints_ui_address_and_where_things_are(demo_run):
    out, log = demo_run
    assert "http://127.0.0.1:" in log
    assert str(out / "report" / "report.html") in log


def test_demo_compares_strategies_at_the_same_budget(demo_run):
    out, log = demo_run
    table = log[log.index("same budget, same pool"):].splitlines()[2:6]
    assert [row.split()[0] for row in table] == ["curated", "signals", "random", "longest"]
    select = json.loads((out / "workspace" / "select.json").read_text(encoding="utf-8"))
    prof = {st: r["profile"] for st, r in select["strategies"].items()}
    assert prof["curated"]["mean_quality"] > prof["random"]["mean_quality"]
    assert prof["curated"]["lima_markers"] <= prof["longest"]["lima_markers"]


def test_exported_set_is_clean_and_labelled(demo_run):
    out, _ = demo_run
    data = out / "data" / "lima-demo"
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert 0 < len(rows) <= 40
    manifest = json.loads((data / "manifest.json").read_text(encoding="utf-8"))
    # nobody answered in Argilla: every decision was the AI's, and the manifest and each example say so
    assert manifest["decisions"]["human"] == 0
    assert manifest["decisions"]["ai"] == len(rows)
    assert {r["meta"]["why"]["decided_by"] for r in rows} == {"ai"}
    assert manifest["counts"]["train"] == len(rows)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    # planted problems of the sample pool never reach the export
    for r in rows:
        note = str(r.get("meta", {}).get("quality_note", ""))
        assert not note.startswith(("refusal", "exact duplicate", "contaminated", "boilerplate")), (r["id"], note)
        answer = r["messages"][-1]["content"]
        assert "as an ai language model" not in answer.lower()
    eval_prompts = {json.loads(line)["prompt"].strip().lower()
                    for line in (REPO / "data/eval-prompts/prompts.jsonl").read_text(encoding="utf-8").splitlines()}
    for r in rows:
        user = " ".join(m["content"] for m in r["messages"] if m["role"] == "user").strip().lower()
        assert user not in eval_prompts, f"contaminated prompt exported: {r['id']}"


def test_adapter_trained_and_report_written(demo_run):
    out, _ = demo_run
    run_dir = out / "runs" / "lima-demo"
    assert (run_dir / "adapter_model.safetensors").exists()
    assert (run_dir / "adapter_config.json").exists()
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    dev = [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m]
    assert [step for step, _ in dev] == [0, 6], "the dev loss at step 0 and once at the end (no duplicate)"
    assert dev[-1][1] < dev[0][1], "the dev loss must go down from the base's"
    cand = (out / "eval" / "generations-finetuned.jsonl").read_text().splitlines()
    ref = (out / "eval" / "generations-base.jsonl").read_text().splitlines()
    assert len(cand) == len(ref) == 6
    judgments = [json.loads(x) for x in (out / "eval" / "judgments.jsonl").read_text().splitlines()]
    assert len(judgments) == 4  # --quick judges four pairs
    assert all(j["verdict"] and not j["error"] for j in judgments), [j["error"] for j in judgments]
    html = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html  # the chart is embedded
