"""Learning from feedback: votes become preference pairs (eval pairs), and QLoRA-DPO trains on them
(python -m finetune --method dpo, TRL's DPOTrainer on a real 4-bit tiny model)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from contract.io import write_jsonl
from contract.readers import read_preferences
from contract.schema import DataError
from eval import cli as eval_cli
from eval.pairs import build
from finetune.config import load as load_config

from test_finetune_train import TINY_RECIPE, write_curated

REPO = Path(__file__).resolve().parent.parent
WORDS = "the a river stone model data light sound cloud tree answer question simple careful build test".split()
GOOD = "The river runs to the sea."


# --------------------------------------------------------------------------- pairs from votes


def _llm_row(i, verdict, consistent, a="Answer A.", b="Answer B."):
    return {"id": f"q{i}", "prompt": f"Question {i}?", "category": "x", "judge": "lima-three-way",
            "judge_kind": "llm", "judge_model": {"model": "fake-judge"}, "a": {"generator": "cand"},
            "b": {"generator": "ref"}, "output_a": a, "output_b": b, "verdict": verdict, "consistent": consistent}


def _human_row(i, votes):
    verdicts = [v for v in votes]
    majority = max(set(verdicts), key=verdicts.count) if verdicts else None
    if verdicts and verdicts.count(majority) * 2 <= len(verdicts):
        majority = "tie"
    return {"id": f"h{i}", "prompt": f"Human question {i}?", "judge": "human", "judge_kind": "human",
            "a": {"generator": "cand"}, "b": {"generator": "ref"}, "output_a": f"Cand answer {i}.",
            "output_b": f"Ref answer {i}.", "verdict": majority, "consistent": None,
            "votes": [{"annotator": f"u{k}", "verdict": v} for k, v in enumerate(votes)]}


def test_pairs_from_every_source_with_counts(tmp_path):
    llm = [_llm_row(0, "win", True), _llm_row(1, "loss", True), _llm_row(2, "tie", True),
           _llm_row(3, "tie", False), _llm_row(4, None, None), _llm_row(5, "win", True)]
    human = [_human_row(0, ["win", "win", "loss"]), _human_row(1, ["tie", "tie"]), _human_row(2, [])]
    write_jsonl(tmp_path / "llm.jsonl", llm)
    write_jsonl(tmp_path / "human.jsonl", human)
    edited = {"id": "e1", "messages": [{"role": "user", "content": "Fix me?"},
                                       {"role": "assistant", "content": "A careful, corrected answer."}],
              "source": "pool", "meta": {"original_response": "a sloppy answer", "edited_by": "alice"}}
    plain = {"id": "e2", "messages": [{"role": "user", "content": "Keep me?"},
                                      {"role": "assistant", "content": "Kept as it was."}], "source": "pool", "meta": {}}
    write_jsonl(tmp_path / "train.jsonl", [edited, plain])
    write_jsonl(tmp_path / "scored.jsonl", [
        {"id": "s1", "prompt": "Score me?", "judge": "quality-rating",
         "candidates": [{"output": "Great answer.", "score": 5, "generator": "teacher"},
                        {"output": "Weak answer.", "score": 2, "generator": "student"}]},
        {"id": "s2", "prompt": "Close call?", "candidates": [{"output": "One.", "score": 4}, {"output": "Two.", "score": 4}]}])

    report = build(judgments=[tmp_path / "llm.jsonl", tmp_path / "human.jsonl"], edits=[tmp_path / "train.jsonl"],
                   scored=[tmp_path / "scored.jsonl"], min_margin=1)
    pairs = {"e1" if p["source"] == "curator-edit" else p["meta"].get("judgment_id") or p["meta"].get("prompt_id"): p
             for p in report.pairs}
    # every order-consistent LLM verdict (3), the human majority (1), the edit and the scored pair; no tie, no flip
    assert set(pairs) == {"q0", "q1", "q5", "h0", "e1", "s1"} and len(report.pairs) == 6
    assert pairs["q0"]["chosen"][0]["content"] == "Answer A." and pairs["q0"]["rejected"][0]["content"] == "Answer B."
    assert pairs["q1"]["chosen"][0]["content"] == "Answer B."  # a loss for A: B's answer is chosen
    assert pairs["q0"]["meta"]["consistent"] is True and pairs["q0"]["meta"]["judge"] == "lima-three-way"
    assert pairs["h0"]["meta"]["agreement"] == pytest.approx(2 / 3, abs=1e-4) and pairs["h0"]["meta"]["voters"] == ["u0", "u1", "u2"]
    assert pairs["e1"]["chosen"][0]["content"] == "A careful, corrected answer."
    assert pairs["e1"]["rejected"][0]["content"] == "a sloppy answer" and pairs["e1"]["meta"]["edited_by"] == "alice"
    assert pairs["s1"]["meta"]["chosen_score"] == 5 and pairs["s1"]["chosen"][0]["content"] == "Great answer."
    c = report.counts
    assert c["llm: tie (dropped)"] == 1 and c["llm: inconsistent (dropped)"] == 1 and c["llm: no verdict"] == 1
    assert c["human: tie (dropped)"] == 1 and c["human: no verdict"] == 1
    assert c["scored: margin below --min-margin (dropped)"] == 1
    # the file is TRL's conversational preference format, read back by the shared reader
    assert eval_cli.main(["pairs", "--judgments", str(tmp_path / "llm.jsonl"), "--out", str(tmp_path / "p.jsonl")]) == 0
    back = read_preferences(tmp_path / "p.jsonl").examples
    assert len(back) == 3 and all(p["prompt"][-1]["role"] == "user" for p in back)
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(tmp_path / "p.jsonl"), split="train")
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names)


def test_no_pair_from_only_ties_fails(tmp_path, capsys):
    write_jsonl(tmp_path / "llm.jsonl", [_llm_row(0, "tie", False), _llm_row(1, "tie", True)])
    assert eval_cli.main(["pairs", "--judgments", str(tmp_path / "llm.jsonl"), "--out", str(tmp_path / "p.jsonl")]) == 1
    assert "no pair was made" in capsys.readouterr().err


def test_bad_preference_records_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "Q?", "chosen": "A."}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:1: not a preference pair: missing rejected"):
        read_preferences(path)
    path.write_text(json.dumps({"prompt": "Q?", "chosen": "Same.", "rejected": "Same."}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="chosen and rejected are the same answer"):
        read_preferences(path)


# --------------------------------------------------------------------------- DPO with QLoRA


def write_pairs(path: Path, n: int = 40, seed: int = 0) -> Path:
    """Pairs where the chosen answer is always the same sentence and the rejected one is word salad."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))).capitalize() + "?"
        rows.append({"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": GOOD}],
                     "rejected": [{"role": "assistant", "content": " ".join(rng.choice(WORDS) for _ in range(6))}]})
    write_jsonl(path, rows)
    return path


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_dpo_raises_the_margin_on_the_training_pairs(tmp_path, tiny_model_dir, compute_dtype):
    from finetune.train import run

    data = write_pairs(tmp_path / "pairs.jsonl")
    cfg = load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(data), output_dir=str(tmp_path / "dpo"),
                      method="dpo", max_steps=30, learning_rate=5e-3, logging_steps=1, eval_steps=10, save_steps=100)
    run_dir = run(cfg)
    m = _metrics(run_dir)
    margins = [x["rewards/margins"] for x in m if "rewards/margins" in x]
    assert len(margins) == 30
    assert abs(margins[0]) < 1e-3  # step 1: the policy is the reference (new LoRA weights are zero)
    assert sum(margins[-5:]) / 5 > 0.5, margins
    evals = [x for x in m if "eval_rewards/margins" in x]
    assert evals[0]["step"] == 0 and evals[-1]["eval_rewards/margins"] > evals[0]["eval_rewards/margins"] + 0.3
    assert evals[-1]["eval_rewards/accuracies"] > 0.5
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["global_step"] == 30 and prov["compute_dtype"] == compute_dtype
    assert (run_dir / "adapter_model.safetensors").is_file()
    assert load_config(run_dir / "config.yaml") == cfg


def test_dpo_on_top_of_an_sft_adapter_keeps_it_as_the_reference(tmp_path, tiny_model_dir):
    from safetensors.torch import load_file

    from finetune.train import run

    sft = run(load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(write_curated(tmp_path / "sft-data")),
                          output_dir=str(tmp_path / "sft"), max_steps=8, dev_size=0.0, save_steps=100))
    cfg = load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(write_pairs(tmp_path / "pairs.jsonl")),
                      output_dir=str(tmp_path / "dpo"), method="dpo", init_adapter=str(sft), max_steps=6,
                      learning_rate=5e-3, logging_steps=1, dev_size=0.0, save_steps=100)
    run_dir = run(cfg)
    margins = [x["rewards/margins"] for x in _metrics(run_dir) if "rewards/margins" in x]
    assert abs(margins[0]) < 1e-3  # the reference is the SFT adapter itself, not the bare base
    before, after = load_file(str(sft / "adapter_model.safetensors")), load_file(str(run_dir / "adapter_model.safetensors"))
    assert before.keys() == after.keys() and any((before[k] - after[k]).abs().max() > 0 for k in before)


def test_dpo_resumes_after_sigterm_to_the_same_step_count(tmp_path, tiny_model_dir):
    from finetune.train import latest_checkpoint

    data = write_pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "dpo"
    cmd = [sys.executable, "-m", "finetune", "--config", str(TINY_RECIPE), "--model", str(tiny_model_dir),
           "--data", str(data), "--output_dir", str(out), "--method", "dpo", "--max_steps", "24", "--save_steps", "4",
           "--logging_steps", "1", "--dev_size", "0"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import time

    deadline = time.monotonic() + 300
    while latest_checkpoint(out / "checkpoints") is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-3000:]
    stopped = int(latest_checkpoint(out / "checkpoints").name.split("-")[1])
    assert stopped < 24
    done = subprocess.run(cmd + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "provenance.json").read_text())["global_step"] == 24
    steps = [x["step"] for x in _metrics(out) if "rewards/margins" in x]
    assert steps == list(range(1, 25))


def test_dpo_preflight_and_config_errors(tmp_path, tiny_model_dir):
    from finetune.config import parse_args
    from finetune.train import run

    with pytest.raises(ValueError, match="dpo_beta: must be > 0"):
        parse_args(["--model", "m/x", "--data", "d.jsonl", "--method", "dpo", "--dpo_beta", "0"])
    with pytest.raises(ValueError, match="batching: packing does not apply to dpo"):
        parse_args(["--model", "m/x", "--data", "d.jsonl", "--method", "dpo", "--batching", "packing"])
    # SFT data given to DPO: the record is named
    sft_data = write_curated(tmp_path / "sft-data")
    cfg = load_config(TINY_RECIPE, model=str(tiny_model_dir), data=str(sft_data), output_dir=str(tmp_path / "x"),
                      method="dpo", max_steps=2)
    with pytest.raises(DataError, match=r"train.jsonl:1 record ex000: not a preference pair"):
        run(cfg)
    assert not (tmp_path / "x" / "config.yaml").exists()
