"""``python -m eval study``: select and export each strategy's set from a real curation workspace, fine-tune each
(tiny model, a few steps), generate, judge against the base and each other, one report with the leaderboard and
the selections; a second run repeats nothing; a changed training command retrains and drops the stale answers."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from contract.io import write_jsonl

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The test pool ingested and scored by the curation commands (no Argilla: the baselines need no curators)."""
    from curation.cli import main as curation

    ws = tmp_path_factory.mktemp("study") / "ws"
    assert curation(["ingest", "--workspace", str(ws), str(DATA / "curation_pool")]) == 0
    assert curation(["score", "--workspace", str(ws), "--decontaminate", str(DATA / "curation_eval_prompts.jsonl")]) == 0
    return ws


def study_file(tmp_path: Path, ws: Path, model: Path, **over) -> Path:
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"id": f"q{i}", "prompt": p, "category": c} for i, (p, c) in enumerate(
        [("Give two tips for sleeping well.", "advice"), ("Write a haiku about rain.", "writing"),
         ("What is 7 times 8?", "math"), ("Name a prime number above 10.", "math")])])
    study = {
        "out_dir": str(tmp_path / "study"),
        "workspace": str(ws),
        "budget": 12,
        "strategies": ["signals", "random", "longest"],
        "model": str(model),
        "recipe": str(REPO / "finetune" / "recipes" / "tiny-cpu.yaml"),
        "finetune": {"max_steps": 2, "batch_size": 4, "max_length": 128, "eval_steps": 2, "save_steps": 2},
        "prompts": str(prompts),
        "generation": {"max_new_tokens": 4, "batch_size": 4},
        "judges": [{"judge": "lima-three-way", "backend": "transformers", "model": str(model),
                    "decoding": "constrained", "cache_dir": str(tmp_path / "judge-cache")}],
        "report": {"title": "study on the tiny model", "bootstrap": 200},
        **over,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study), encoding="utf-8")
    return path


def study(path: Path, capfd) -> tuple[int, str]:
    from eval.cli import main

    code = main(["study", "--config", str(path)])
    return code, capfd.readouterr().err


def test_study_runs_every_strategy_into_one_leaderboard_and_resumes(workspace, tiny_model_dir, tmp_path, capfd,
                                                                   monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = study_file(tmp_path, workspace, tiny_model_dir)
    code, err = study(path, capfd)
    assert code == 0, err[-4000:]
    out = tmp_path / "study"
    # each strategy: its exported set, a finished run trained on exactly that set
    state = json.loads((out / "state.json").read_text())
    for s in ("signals", "random", "longest"):
        train = out / "data" / f"study-{s}" / "train.jsonl"
        prov = json.loads((out / "runs" / s / "provenance.json").read_text())
        assert prov["finished"] and prov["global_step"] == 2
        assert prov["data"]["sha256"] == state[s]["data_sha256"] and state[s]["finished"]
        dev = train.parent / "dev.jsonl"
        assert sum(1 for _ in train.open()) + (sum(1 for _ in dev.open()) if dev.exists() else 0) == 12
    # one leaderboard: every strategy against the base, with intervals; the strategies against each other too
    board = json.loads((out / "report" / "leaderboard.json").read_text())["leaderboards"][0]
    assert board["reference"] == "base"
    systems = {s["system"]: s for s in board["systems"]}
    assert set(systems) >= {"signals", "random", "longest"}
    for name in ("signals", "random", "longest"):
        assert systems[name]["bootstrap"] and systems[name]["wilson"]
        assert systems[name]["rating_interval"][0] <= systems[name]["rating"] <= systems[name]["rating_interval"][1]
    assert board["pairs_between_systems"] > 0
    judged = sorted(p.name for p in (out / "judgments").glob("*.jsonl"))
    assert len(judged) == 3 + 3  # each against the base, and the three pairs between them
    # the selections beside the outcomes, in the report and summary
    md = (out / "report" / "report.md").read_text()
    assert "## Training selections" in md and all(f"| {s} |" in md for s in ("signals", "random", "longest"))
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert {r["strategy"] for r in summary["selections"]} == {"signals", "random", "longest"}
    assert all(r["examples"] and r["data_sha256"] for r in summary["selections"])

    # a second run repeats no finished stage
    mtimes = {s: (out / "runs" / s / "provenance.json").stat().st_mtime_ns for s in state}
    code, err = study(path, capfd)
    assert code == 0, err[-4000:]
    assert err.count("the trained adapter is up to date") == 3
    assert " -m finetune " not in err  # no training command ran
    assert {s: (out / "runs" / s / "provenance.json").stat().st_mtime_ns for s in state} == mtimes
    assert "0 new answers" in err and "resuming" in err

    # a changed training command trains again, and the old answers and judgments go first (never passed as fresh)
    path = study_file(tmp_path, workspace, tiny_model_dir,
                      finetune={"max_steps": 3, "batch_size": 4, "max_length": 128, "eval_steps": 3, "save_steps": 3},
                      strategies=["longest"])
    code, err = study(path, capfd)
    assert code == 0, err[-4000:]
    assert "longest: its training command changed: training again" in err
    assert "removed stale" in err and "longest.jsonl" in err
    assert json.loads((out / "runs" / "longest" / "provenance.json").read_text())["global_step"] == 3


def test_strategies_that_picked_the_same_examples_are_named(tmp_path, capsys):
    """Two strategies with the same examples (any order, other metadata) train and answer alike: the study says
    so, and selections.json records it; different sets are not grouped."""
    from eval.study import same_examples, say_same_examples

    def train(name, ids):
        path = tmp_path / name / "train.jsonl"
        path.parent.mkdir()
        path.write_text("".join(json.dumps({"id": i, "messages": [], "meta": {"strategy": name}}) + "\n"
                                for i in ids))
        return path

    files = {"curated": train("curated", ["a", "b", "c"]), "signals": train("signals", ["c", "a", "b"]),
             "longest": train("longest", ["a", "b", "d"]), "random": train("random", ["e", "f", "g"])}
    assert same_examples(files) == [["curated", "signals"]]
    assert same_examples({k: files[k] for k in ("longest", "random")}) == []
    study = SimpleNamespace(strategies=list(files), train_file=files.get)
    assert say_same_examples(study) == [["curated", "signals"]]
    err = capsys.readouterr().err
    assert "curated and signals selected the same 3 examples" in err and "--unattended" in err
    assert "longest" not in err and "random" not in err


def test_a_bad_study_file_names_every_problem(tmp_path, capsys):
    from eval.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"out_dir": str(tmp_path), "budget": True, "strategies": ["curated", "best"],
                                    "seed": "forty-two",
                                    "finetune": {"seed": 3}, "recipe": "nope.yaml", "colour": "red"}))
    assert main(["study", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    for part in ("unknown key 'colour'", "missing 'workspace'", "missing 'model'", "strategies: unknown 'best'",
                 "budget: a positive whole number", "seed: a whole number", "finetune: 'seed' is set by the study",
                 "recipe: no such file"):
        assert part in err, part
    assert "Traceback" not in err


def test_feedback_study_trains_the_three_arms_into_one_leaderboard(tiny_model_dir, tmp_path, capfd, fake_openai,
                                                                   monkeypatch):
    """The RLAIF-vs-strong-teacher preset: an API model (the fake endpoint) teaches and judges, the tiny model is
    the weak teacher (sampled twice) and the student; arms A (SFT strong), B (SFT weak + DPO), C (A + DPO)."""
    from eval.cli import main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for k, v in fake_openai.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("EVAL_GEN_API_KEY", fake_openai.api_key)
    train_prompts = tmp_path / "train-prompts.jsonl"
    write_jsonl(train_prompts, [{"id": f"t{i}", "prompt": f"Explain idea number {i} in a few words."} for i in range(12)])
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"id": f"q{i}", "prompt": p, "category": "misc"} for i, p in
                          enumerate(["Say hello.", "Name a colour.", "Count to three."])])
    spec = {
        "kind": "feedback", "out_dir": str(tmp_path / "fb"), "model": str(tiny_model_dir), "seed": 0,
        "train_prompts": str(train_prompts),
        "strong": {"generator": "api-teacher", "backend": "openai", "model": fake_openai.model,
                   "base_url": fake_openai.base_url, "max_new_tokens": 64},
        "weak": {"model": str(tiny_model_dir), "temperature": 1.0, "max_new_tokens": 12, "batch_size": 6},
        "preference_judge": {"judge": "lima-three-way", "backend": "openai", "cache_dir": str(tmp_path / "cache")},
        "sft_recipe": str(REPO / "finetune" / "recipes" / "tiny-cpu.yaml"),
        "dpo_recipe": str(REPO / "finetune" / "recipes" / "dpo-tiny-cpu.yaml"),
        "finetune": {"max_steps": 2, "batch_size": 4, "max_length": 128, "eval_steps": 2, "save_steps": 2},
        "dpo": {"max_steps": 2, "batch_size": 2, "max_length": 128, "eval_steps": 2, "save_steps": 2},
        "prompts": str(prompts),
        "generation": {"max_new_tokens": 4},
        "judges": [{"judge": "lima-three-way", "backend": "openai", "cache_dir": str(tmp_path / "cache")}],
        "report": {"bootstrap": 200},
    }
    path = tmp_path / "feedback.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    assert main(["study", "--config", str(path)]) == 0, capfd.readouterr().err[-4000:]
    err = capfd.readouterr().err
    out = tmp_path / "fb"
    # the strong teacher's answers and the weak teacher's first sample are the SFT sets; the judge's consistent
    # preferences between the two weak samples are the DPO pairs
    strong = [json.loads(x) for x in (out / "data" / "strong" / "train.jsonl").read_text().splitlines()]
    assert len(strong) == 12 and all(r["source"] == "teacher:api-teacher" for r in strong)
    pairs = [json.loads(x) for x in (out / "data" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen"][-1]["content"] != p["rejected"][-1]["content"] for p in pairs)
    # B and C are DPO runs that started from their SFT adapters
    for arm, init in (("B-weak-sft-dpo", "B-weak-sft"), ("C-strong-sft-dpo", "A-strong-sft")):
        cfg = yaml.safe_load((out / "runs" / arm / "config.yaml").read_text())
        assert cfg["method"] == "dpo" and cfg["init_adapter"] == str(out / "runs" / init)
    board = json.loads((out / "report" / "leaderboard.json").read_text())["leaderboards"][0]
    assert {s["system"] for s in board["systems"]} >= {"A-strong-sft", "B-weak-sft-dpo", "C-strong-sft-dpo"}
    md = (out / "report" / "report.md").read_text()
    assert "SFT on the strong teacher's answers" in md and "DPO on the strong judge's preferences" in md

    # a re-run repeats nothing: no request to the teacher or judge, no training
    before = fake_openai.requests
    assert main(["study", "--config", str(path)]) == 0
    err = capfd.readouterr().err
    assert err.count("the trained adapter is up to date") == 4 and " -m finetune " not in err
    assert fake_openai.requests == before
