"""`python -m curation generate` (in process): self-instruct, answers and backtranslate, each writing a pool file
that `ingest` reads, every record with its provenance.

The teacher is the fake OpenAI-compatible server over a real socket (tests/openai_fixtures.py); backtranslate
trains its backward model on the tiny random Llama with `python -m finetune --swap_roles true` (a subprocess).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from test_curation_pipeline import cli, ok, read_jsonl

POOL_PROMPT = "Explain how the Python garbage collector finds reference cycles in container objects."
NEAR_COPY = "Explain how the Python garbage collector finds reference cycles in the container objects."
TOPICS = ["volcanoes", "tax forms", "sourdough bread", "chess openings", "solar panels", "jazz history",
          "bicycle gears", "tide pools", "compound interest", "glaciers", "typewriters", "lighthouses",
          "beekeeping", "origami cranes", "railway signals", "coral reefs", "spreadsheets", "kites"]
WORDS = ("river stone cloud engine garden ladder window candle harbor meadow rocket violin compass lantern "
         "market orchard pepper saddle thunder valley wagon anchor basket canyon desert falcon glove hammer island "
         "jacket kettle lemon magnet needle ocean pillow quartz ribbon shovel tunnel umbrella vessel walnut "
         "yogurt zipper").split()
VERBS = ["Describe", "Summarize the main facts about", "Give three tips about", "Compare two kinds of",
         "Write a short poem about", "List common mistakes with"]


def teacher_reply(messages: list[dict]) -> str:
    """A teacher: new tasks for a self-instruct prompt (the first one a near-copy of a pool prompt), else an
    answer that quotes the question."""
    text = messages[-1]["content"]
    if "Examples of tasks" in text:
        start = int(re.search(r"continuing from (\d+)", text).group(1))
        # a different task list per prompt (seeded by it), in words drawn from a wide vocabulary
        rng = random.Random(hashlib.sha256(text.encode()).hexdigest())
        tasks = [NEAR_COPY] + [f"{rng.choice(VERBS)} {' '.join(rng.sample(WORDS, 5))} and {rng.choice(TOPICS)}."
                               for _ in range(4)]
        return "\n".join(f"{start + i}. {t}" for i, t in enumerate(tasks))
    return f"Here is a careful answer to: {text[:80]}. It has two sentences."


@pytest.fixture
def teacher(fake_openai, monkeypatch):
    monkeypatch.setenv("CURATION_TEACHER_API_KEY", fake_openai.api_key)
    fake_openai.reply = teacher_reply
    return fake_openai


def write_seeds(path: Path, n: int = 8) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            q = f"Seed task {i}: explain the idea of {TOPICS[i]} to a child in plain words."
            fh.write(json.dumps({"id": f"seed{i}", "messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": f"An answer about {TOPICS[i]}, written simply and clearly."}]}) + "\n")
    return path


def pool_with(path: Path, prompt: str) -> Path:
    path.write_text(json.dumps({"messages": [{"role": "user", "content": prompt},
                                             {"role": "assistant", "content": "Through the cycle detector."}]})
                    + "\n", encoding="utf-8")
    return path


def test_self_instruct_keeps_novel_tasks_with_provenance_and_rejects_a_near_copy(teacher, tmp_path):
    ws = tmp_path / "ws"
    ok("ingest", pool_with(tmp_path / "pool.jsonl", POOL_PROMPT), "--workspace", ws)
    seeds = write_seeds(tmp_path / "seeds.jsonl")
    args = ["generate", "--workspace", ws, "--method", "self-instruct", "--teacher_model", teacher.model,
            "--teacher_base_url", teacher.base_url, "--seeds", seeds, "--num_instructions", "6",
            "--requests_per_batch", "2", "--tasks_per_request", "5", "--round", "1"]
    out = ok(*args, "--embedding_threshold", "1")
    assert "self-instruct" in out
    path = ws / "generated" / "self-instruct.jsonl"
    records = read_jsonl(path)
    assert len(records) == 6
    tasks = [r["messages"][0]["content"] for r in records]
    assert NEAR_COPY not in tasks
    for r in records:
        g = r["meta"]["generate"]
        assert g["method"] == "self-instruct" and g["teacher"] == f"openai:{teacher.model}" and g["round"] == 1
        assert g["template"][0].startswith("self-instruct-v1@") and set(g["seed_ids"]) <= {f"seed{i}" for i in range(8)}
        assert len(g["seed_ids"]) == 6 and g["novelty"]["rouge_l"] < 0.7
        assert r["source"] == f"self-instruct:{teacher.model}"
        assert r["messages"][1]["role"] == "assistant" and "careful answer" in r["messages"][1]["content"]
    rejected = read_jsonl(Path(f"{path}.rejected.jsonl"))
    near = [r for r in rejected if r["task"] == NEAR_COPY]
    assert near and all(r["reason"] == "rouge" and r["novelty"]["rouge_l"] >= 0.7 for r in near)
    report = json.loads(Path(f"{path}.report.json").read_text())
    assert report["counts"]["max_rouge_l"]["within"] < 0.7 and report["counts"]["max_rouge_l"]["to_pool"] < 0.7

    # a re-run asks nothing (the reply cache) and rewrites the same file: no duplicates
    before, n = path.read_bytes(), teacher.requests
    ok(*args, "--embedding_threshold", "1")
    assert teacher.requests == n and path.read_bytes() == before

    # ingest reads it; provenance survives into the candidates
    ok("ingest", tmp_path / "pool.jsonl", path, "--workspace", ws)
    cands = pq.read_table(ws / "candidates.parquet").to_pylist()
    gen = [c for c in cands if c["source"].startswith("self-instruct:")]
    assert len(gen) == 6 and all(json.loads(c["meta"])["generate"]["method"] == "self-instruct" for c in gen)


def test_self_instruct_embedding_filter_and_resume_after_a_budget_stop(teacher, tmp_path):
    """The MiniLM filter rejects a paraphrase ROUGE-L lets through; a run stopped by its budget finishes from
    the cache without asking its answered requests again."""
    from curation.novelty import NoveltyFilter
    from curation.embed import embed_texts

    nf = NoveltyFilter(rouge_threshold=0.7, embedding_threshold=0.75,
                       embed=lambda t: embed_texts(t, model_name="all-MiniLM-L6-v2", runtime="torch"))
    nf.add("a", "How do I bake sourdough bread at home?")
    v = nf.check("What is the way to make sourdough loaves in my own kitchen?")
    assert v.reason == "embedding" and v.rouge < 0.7 and v.similarity >= 0.75
    assert nf.check("Which chess opening suits a beginner?").novel

    ws = tmp_path / "ws"
    seeds = write_seeds(tmp_path / "seeds.jsonl")
    teacher.usage = (1000, 1000)
    args = ["generate", "--workspace", ws, "--method", "self-instruct", "--teacher_model", teacher.model,
            "--teacher_base_url", teacher.base_url, "--seeds", seeds, "--num_instructions", "8",
            "--requests_per_batch", "1", "--tasks_per_request", "5", "--embedding_threshold", "1",
            "--price_input", "1", "--price_output", "1", "--concurrency", "1"]
    out = ok(*args, "--max_cost", "0.005")  # 0.002 USD a request: stops after 3
    assert "$0.005 cap, generate.max_cost, was reached" in out and "--max_cost 0 lifts it" in out
    first = teacher.requests
    assert 0 < first < 8
    ok(*args, "--max_cost", "0")  # (the workspace keeps the last config: the cap is lifted explicitly)
    records = read_jsonl(ws / "generated" / "self-instruct.jsonl")
    assert len(records) == 8
    report = json.loads((ws / "generated" / "self-instruct.jsonl.report.json").read_text())
    assert report["teacher_stats"]["cached"] >= first - 1  # the first run's replies came from the cache


def test_answers_for_pool_prompts(teacher, tmp_path):
    ws = tmp_path / "ws"
    pool = tmp_path / "pool.jsonl"
    with open(pool, "w") as fh:
        for i in range(3):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"Question {i} about {TOPICS[i]}?"},
                                              {"role": "assistant", "content": "The pool's answer."}]}) + "\n")
    ok("ingest", pool, "--workspace", ws)
    ok("generate", "--workspace", ws, "--method", "answers", "--teacher_model", teacher.model,
       "--teacher_base_url", teacher.base_url, "--temperature", "0")
    records = read_jsonl(ws / "generated" / "answers.jsonl")
    cands = {c["id"]: c for c in pq.read_table(ws / "candidates.parquet").to_pylist()}
    assert len(records) == 3
    for r in records:
        g = r["meta"]["generate"]
        orig = cands[g["answer_of"]]
        assert g["method"] == "answers" and g["seed_ids"] == [g["answer_of"]]
        assert r["messages"][0] == {"role": "user", "content": orig["prompt"]}
        assert r["messages"][1]["content"].startswith("Here is a careful answer") and r["id"] != orig["id"]


def test_missing_inputs_are_clear_errors(teacher, tmp_path):
    rc, out, err = cli("generate", "--workspace", tmp_path / "ws", "--method", "self-instruct", "--teacher_model",
                       teacher.model, "--teacher_base_url", teacher.base_url)
    assert rc == 1 and "generate.seeds is not set" in err and "Traceback" not in err
    rc, out, err = cli("generate", "--workspace", tmp_path / "ws", "--method", "backtranslate", "--seeds",
                       tmp_path / "nope.jsonl", "--documents", tmp_path)
    assert rc == 1 and "error:" in err and "Traceback" not in err


@pytest.mark.slow
def test_backtranslate_trains_a_backward_model_and_self_curates(tiny_model_dir, teacher, monkeypatch, tmp_path):
    monkeypatch.setenv("EVAL_JUDGE_API_KEY", teacher.api_key)
    # the self-curation judge: 5 for the long documents, 2 for the short ones
    teacher.reply = lambda m: ("Focused and complete.\nRating: [[5]]" if m[-1]["content"].count("Paragraph") > 8
                               else "Too thin.\nRating: [[2]]")
    seeds = write_seeds(tmp_path / "seeds.jsonl", n=12)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        body = " ".join([f"Paragraph about {TOPICS[i]}."] * (4 if i % 2 else 14))
        (docs / f"doc{i}.txt").write_text(body)
    ws = tmp_path / "ws"
    args = ["generate", "--workspace", ws, "--method", "backtranslate", "--seeds", seeds, "--documents", docs,
            "--backward_base", tiny_model_dir, "--min_doc_chars", "20", "--backward_max_tokens", "12",
            "--judge_backend", "openai", "--judge_model", teacher.model, "--judge_base_url", teacher.base_url,
            "--min_score", "4", "--temperature", "0", "--set",
            "generate.backward_overrides={max_steps: 2, quantization: none, dev_size: 0, save_steps: 100, "
            "batch_size: 4, max_length: 256}"]
    ok(*args)
    run = ws / "generated" / "backtranslate.backward" / "run"
    assert (run / "adapter_config.json").exists()
    import yaml

    assert yaml.safe_load((run / "config.yaml").read_text())["swap_roles"] is True
    out = ws / "generated" / "backtranslate.jsonl"
    kept, rejected = read_jsonl(out), read_jsonl(Path(f"{out}.rejected.jsonl"))
    assert len(kept) + len(rejected) == 4 and len(kept) == 2
    for r in kept + rejected:
        g = r["meta"]["generate"]
        # roles: the backward model's instruction is the user turn, the document the answer
        assert r["messages"][0]["role"] == "user" and r["messages"][1]["role"] == "assistant"
        assert r["messages"][1]["content"] == (docs / g["document_id"]).read_text()
        assert g["method"] == "backtranslate" and g["backward_adapter"] == str(run) and g["judge"] == "self-curation"
        assert g["teacher"].startswith("transformers:") and g["score"] in range(1, 6)
    assert all(r["meta"]["generate"]["score"] >= 4 for r in kept)
    # a re-run reuses the backward model and the caches
    mtime, n = (run / "adapter_model.safetensors").stat().st_mtime_ns, teacher.requests
    ok(*args)
    assert (run / "adapter_model.safetensors").stat().st_mtime_ns == mtime and teacher.requests == n
    assert read_jsonl(out) == kept


# --------------------------------------------------------------------------- the ReST loop


def rest_judge(messages: list[dict]) -> str:
    """Pointwise: a score of 3-5 from a hash of the answer; pairwise: the fake's default judge."""
    from openai_fixtures import default_reply

    text = "\n".join(str(m["content"]) for m in messages)
    if "Assistant A" in text:
        return default_reply(messages)
    digest = int(hashlib.sha256(text.encode()).hexdigest(), 16)
    return f"Fine.\nRating: [[{3 + digest % 3}]]"


@pytest.mark.slow
def test_rest_two_rounds_and_resume(tiny_model_dir, fake_openai, monkeypatch, tmp_path):
    monkeypatch.setenv("EVAL_JUDGE_API_KEY", fake_openai.api_key)
    fake_openai.reply = rest_judge
    prompts = tmp_path / "prompts.jsonl"
    with open(prompts, "w") as fh:
        for i in range(4):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"Tell me about {TOPICS[i]}."}]}) + "\n")
    eval_prompts = tmp_path / "eval.jsonl"
    with open(eval_prompts, "w") as fh:
        for i in range(3):
            fh.write(json.dumps({"id": f"e{i}", "prompt": f"Say something about {TOPICS[10 + i]}."}) + "\n")
    curated = write_seeds(tmp_path / "curated.jsonl", n=4)
    ws = tmp_path / "ws"
    args = ["rest", "--workspace", ws, "--model", tiny_model_dir, "--prompts", prompts, "--rounds", "2",
            "--samples", "2", "--max_tokens", "12", "--threshold", "3", "--threshold_step", "1",
            "--judge_backend", "openai", "--judge_model", fake_openai.model, "--judge_base_url", fake_openai.base_url,
            "--curated", curated, "--eval_prompts", eval_prompts, "--eval_max_tokens", "8", "--set",
            "rest.finetune_overrides={max_steps: 2, quantization: none, dev_size: 0, save_steps: 100, batch_size: 4, "
            "max_length: 256}"]
    # killed (the whole process group, as Ctrl-C would) once round 2 has its samples: in improve or fine-tune
    root = ws / "rest"
    proc = subprocess.Popen([sys.executable, "-m", "curation", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while not (root / "round-2" / "grow.done.json").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (root / "round-1" / "finetune.done.json").exists() and not (root / "report.json").exists()
    at_kill = {p: p.stat().st_mtime_ns for p in root.glob("round-*/*.done.json")}
    out = ok(*args)
    for p, t in at_kill.items():  # what was finished before the kill is not done again
        assert p.stat().st_mtime_ns == t, p
    report = json.loads((root / "report.json").read_text())
    r1, r2 = report["rounds"]
    assert r1["threshold"] == 3 and r2["threshold"] == 4
    assert r1["samples"] == r2["samples"] == 8 and r1["kept"] == 8  # every score is 3-5
    assert r2["kept"] == sum(v for k, v in r2["scores"].items() if float(k) >= 4)
    for r in (r1, r2):
        assert r["eval"]["n"] == 3 and 0 <= r["eval"]["win_rate"] <= 1 and len(r["eval"]["wilson"]) == 2
        assert r["eval"]["mean_length"] is not None and r["eval"]["reference_length"] is not None
        assert r["sample_length"]["mean_words"] is not None
    assert "| 2 | 4 |" in out and (root / "report" / "leaderboard.json").exists()
    # round 2 sampled from round 1's adapter, at temperature > 0: two samples of a prompt differ
    samples2 = read_jsonl(root / "round-2" / "samples.jsonl")
    kept2 = read_jsonl(root / "round-2" / "kept.jsonl")
    assert all(k["meta"]["generate"]["teacher"].endswith("round-1/adapter") for k in kept2)
    assert all(k["meta"]["generate"]["round"] == 2 and k["meta"]["generate"]["score"] >= 4 for k in kept2)
    by_prompt: dict = {}
    for s in samples2:
        by_prompt.setdefault(s["prompt_id"], []).append(s["answer"])
    assert any(len(set(v)) > 1 for v in by_prompt.values())
    train2 = read_jsonl(root / "round-2" / "train.jsonl")
    assert len(train2) == len(kept2) + 4  # kept + curated

    # a kill during round 2's improve: its outputs and stamp are gone; the re-run redoes only what is missing
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("round-*/*.done.json")}
    (root / "round-2" / "improve.done.json").unlink()
    (root / "round-2" / "kept.jsonl").unlink()
    n = fake_openai.requests
    ok(*args)
    for p, t in stamps.items():
        if p.parent.name == "round-1" or p.name == "grow.done.json":
            assert p.stat().st_mtime_ns == t, p
    assert read_jsonl(root / "round-2" / "kept.jsonl") == kept2
    # the scores came from the judge's cache; the round-2 adapter is the same, so its evaluation is kept
    assert fake_openai.requests == n
    assert json.loads((root / "report.json").read_text())["rounds"] == report["rounds"]
