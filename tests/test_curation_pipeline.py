"""The curation pipeline end to end through `python -m curation` (in process), on the small planted test pool.

The pool (tests/data/curation_pool, built by its build.py) holds 38 good examples from Python's docs and
planted problems marked ``meta.planted``: an exact and a near duplicate, a refusal, an AI disclaimer, a
verbatim and a paraphrased copy of an evaluation prompt, a French answer, a first-person anecdote, a
reference to other answers, and an empty answer. The Argilla tests use the real embedded server
(``argilla_server``) and submit answers as two curators through the SDK, each with their own API key.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import socket
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.cli import main
from contract.io import sha256_file
from contract.readers import read_examples

DATA = Path(__file__).resolve().parent / "data"
POOL = DATA / "curation_pool"
EVAL = DATA / "curation_eval_prompts.jsonl"


def cli(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    """Run `python -m curation ARGS` in this process; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main([str(a) for a in args])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return rc, out.getvalue(), err.getvalue()


def ok(*args: str, env: dict | None = None) -> str:
    rc, out, err = cli(*args, env=env)
    assert rc == 0, f"`python -m curation {' '.join(map(str, args))}` exited {rc}\n{out}\n{err[-3000:]}"
    return out


def signals_by_planted(ws: Path) -> dict[str, list[dict]]:
    cands = pq.read_table(ws / "candidates.parquet").to_pylist()
    sig = pq.read_table(ws / "signals.parquet").to_pylist()
    out: dict[str, list[dict]] = {}
    for c, s in zip(cands, sig):
        kind = json.loads(c["meta"]).get("planted", "")
        out.setdefault(kind, []).append({**s, "meta": json.loads(c["meta"]), "response": c["response"]})
    return out


def tree_digest(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the roots (the lock file aside)."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.name != ".pipeline.lock":
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    """A workspace with the test pool ingested and scored (decontaminated against the test eval prompts)."""
    ws = tmp_path_factory.mktemp("curation") / "ws"
    ok("ingest", "--workspace", ws, POOL)
    ok("score", "--workspace", ws, "--decontaminate", EVAL)
    return ws


@pytest.fixture
def ws_copy(scored, tmp_path) -> Path:
    """A private copy of the scored workspace, for tests that change it."""
    dst = tmp_path / "ws"
    shutil.copytree(scored, dst)
    return dst


# --------------------------------------------------------------------------- ingest and score


def test_ingest_counts_sources_and_keeps_rejects_with_their_place(scored):
    report = json.loads((scored / "ingest.json").read_text())
    assert report["candidates"] == 38 + 9 + 2 + 1
    assert report["counts_by_source"] == {"chat": 2, "csv": 1, "forum": 9, "pydoc": 38}
    rejects = read_jsonl(scored / "rejects.jsonl")
    assert len(rejects) == 1 and rejects[0]["path"].endswith("extra.csv") and rejects[0]["line"] == 2
    assert "empty assistant answer" in rejects[0]["error"]
    assert {p["path"].split("/")[-1] for p in report["pools"]} == {
        "chats.sharegpt.json", "extra.csv", "good.messages.jsonl", "planted.alpaca.json"}
    assert all(len(p["sha256"]) == 64 for p in report["pools"])


def test_score_flags_every_planted_problem(scored):
    by = signals_by_planted(scored)
    assert by["refusal"][0]["exclude_reason"] == "refusal"
    assert by["ai-disclaimer"][0]["exclude_reason"] == "refusal"
    assert by["ai-disclaimer"][0]["refusal_phrase"] == "as an ai language model"
    assert by["non-english"][0]["exclude_reason"] == "language:fr"
    verbatim, paraphrase = sorted(by["contaminated"], key=lambda s: s["meta"]["how"] != "verbatim")
    assert verbatim["contaminated"] and verbatim["contam_ngram"] >= 0.5 and verbatim["contam_match"] == "ev-intervals"
    assert paraphrase["contaminated"] and paraphrase["contam_ngram"] < 0.5 <= 0.9 <= paraphrase["contam_embedding"]
    assert paraphrase["contam_match"] == "ev-lru"
    good = {s["meta"]["topic"]: s for s in by[""] if "topic" in s["meta"]}
    exact, near = by["exact-duplicate"][0], by["near-duplicate"][0]
    assert exact["dup_group"] >= 0 and exact["dup_group"] == good[exact["meta"]["of"]]["dup_group"]
    assert "exact" in exact["dup_reason"]
    assert near["dup_group"] >= 0 and near["dup_group"] == good[near["meta"]["of"]]["dup_group"]
    assert "near" in near["dup_reason"]
    # the originals are the representatives the AI would keep; the copies are not
    assert good[exact["meta"]["of"]]["representative"] and not exact["representative"]
    assert not near["suggested_keep"] and not exact["suggested_keep"]
    # LIMA's markers: first person and references to other answers sink the score
    fp, ref = by["first-person"][0], by["other-answers"][0]
    assert fp["first_person"] >= 5 and ref["other_answers"] >= 3
    assert max(fp["quality"], ref["quality"]) < 0.4 < min(s["quality"] for s in good.values())
    # a real tokenizer and real embeddings
    assert all(s["response_tokens"] > 0 for s in by[""])
    report = json.loads((scored / "score.json").read_text())
    assert report["embedding_model"] == "all-MiniLM-L6-v2" and report["embedding_dim"] == 384
    assert pq.read_table(scored / "signals.parquet").num_rows == 50


# --------------------------------------------------------------------------- select and export (no server)


def test_strategies_never_pick_duplicates_or_contaminated_prompts(ws_copy, tmp_path):
    out = ok("select", "--workspace", ws_copy, "--budget", 12, "--strategy", "signals", "random", "longest")
    assert "select signals: 12 of budget 12" in out
    by = signals_by_planted(ws_copy)
    sig = {s["id"]: s for group in by.values() for s in group}
    planted_ids = {s["id"] for k, group in by.items() if k for s in group}
    for strategy in ("signals", "random", "longest"):
        chosen = read_jsonl(ws_copy / "selection" / f"{strategy}.jsonl")
        assert len(chosen) == 12
        ids = [e["meta"]["candidate_id"] for e in chosen]
        groups = [sig[i]["dup_group"] for i in ids if sig[i]["dup_group"] >= 0]
        assert len(groups) == len(set(groups)), f"{strategy} picked two members of a duplicate group"
        assert not any(sig[i]["contaminated"] for i in ids), f"{strategy} picked a contaminated prompt"
        assert all(e["meta"]["why"]["strategy"] == strategy and e["meta"]["why"]["reason"] for e in chosen)
        # no strategy, baselines included, picks a refusal, a duplicate copy, a contaminated or non-English example
        hard = {"refusal", "ai-disclaimer", "exact-duplicate", "near-duplicate", "contaminated", "non-english"}
        assert not {e["meta"].get("planted") for e in chosen} & hard, strategy
    signals_ids = {e["meta"]["candidate_id"] for e in read_jsonl(ws_copy / "selection" / "signals.jsonl")}
    assert not signals_ids & planted_ids  # nor LIMA's markers (first person, other answers) with the signals
    longest = read_jsonl(ws_copy / "selection" / "longest.jsonl")
    lengths = [len(e["messages"][-1]["content"]) for e in longest]
    assert lengths == sorted(lengths, reverse=True)

    data = tmp_path / "data"
    out = ok("export", "--workspace", ws_copy, "--data-dir", data, "--name", "unit-set", "--strategy", "signals",
             "--export.dev_fraction", "0.25")
    folder = data / "unit-set"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"]["train"] == 9 and manifest["counts"]["dev"] == 3
    for name, info in manifest["files"].items():
        assert sha256_file(folder / name) == info["sha256"]
    assert {p["path"].split("/")[-1] for p in manifest["source_pools"]} >= {"good.messages.jsonl"}
    assert manifest["config"]["select"]["budget"] == 12 and manifest["strategy"] == "signals"
    assert "unit-set" in (folder / "README.md").read_text()
    # a valid training file: the schema's reader accepts every line, ids and why included
    train = read_examples(folder / "train.jsonl", fmt="messages", on_error="raise")
    assert len(train.examples) == 9
    rows = read_jsonl(folder / "train.jsonl")
    assert all(set(r) == {"id", "messages", "source", "meta"} and r["meta"]["why"] for r in rows)
    # --push-to-hub goes through `datasets`; with no Hub here it fails clearly, after a complete local export
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    rc, _, err = cli("export", "--workspace", ws_copy, "--push-to-hub", "someone/unit-set")
    assert rc == 1 and "push to the Hub (someone/unit-set) failed" in err and "local export" in err
    assert read_examples(folder / "train.jsonl").examples


def test_diversity_and_quotas(ws_copy):
    ok("select", "--workspace", ws_copy, "--budget", 20, "--strategy", "signals",
       "--select.similarity_ceiling", "0.5")
    report = json.loads((ws_copy / "select.json").read_text())["strategies"]["signals"]
    assert report["skipped"]["too_similar"] > 0
    vecs = __import__("numpy").load(ws_copy / "embeddings.npy")
    ids = pq.read_table(ws_copy / "signals.parquet", columns=["id"]).column("id").to_pylist()
    row = {i: k for k, i in enumerate(ids)}
    chosen = [row[e["meta"]["candidate_id"]] for e in read_jsonl(ws_copy / "selection" / "signals.jsonl")]
    sims = vecs[chosen] @ vecs[chosen].T
    assert (sims[~__import__("numpy").eye(len(chosen), dtype=bool)] < 0.5).all()

    ok("select", "--workspace", ws_copy, "--budget", 10, "--strategy", "signals", "--select.quota_field", "source",
       "--set", "select.quotas={pydoc: 3}", "--select.diversity", "kcenter")
    chosen = read_jsonl(ws_copy / "selection" / "signals.jsonl")
    sources = [e["source"] for e in chosen]
    assert sources.count("pydoc") == 3 and 3 <= len(chosen) - 3 < 7  # the other sources hold few good examples
    report = json.loads((ws_copy / "select.json").read_text())["strategies"]["signals"]
    assert report["diversity"] == "kcenter" and report["skipped"]["quota"] > 0
    assert any(f"budget 10 but only {len(chosen)}" in w for w in report["warnings"])


def test_rerunning_every_step_changes_nothing(ws_copy, tmp_path):
    data = tmp_path / "data"
    ok("select", "--workspace", ws_copy, "--budget", 8, "--strategy", "signals", "random", "longest")
    ok("export", "--workspace", ws_copy, "--data-dir", data, "--strategy", "signals")
    before = tree_digest(ws_copy, data)
    for step in (("ingest", POOL), ("score",), ("select", "--strategy", "signals", "random", "longest"),
                 ("export",)):
        out = ok(step[0], "--workspace", ws_copy, *step[1:])
        assert "up to date" in out, out
    assert tree_digest(ws_copy, data) == before
    # a changed input re-runs the step, and only the steps it feeds
    out = ok("select", "--workspace", ws_copy, "--budget", 6, "--strategy", "signals")
    assert "select signals: 6 of budget 6" in out and "up to date" not in out


def test_run_unattended_without_a_server(ws_copy, tmp_path):
    data = tmp_path / "data"
    out = ok("run", "--workspace", ws_copy, "--no-argilla", "--unattended", "--budget", 5, "--data-dir", data,
             "--name", "auto-set")
    assert "ingest: 50 candidates" in out and "(up to date)" in out  # ingest and score were already done
    assert "0 decided by curators, 15 by AI suggestions (unattended)" in out
    manifest = json.loads((data / "auto-set" / "manifest.json").read_text())
    assert manifest["strategy"] == "curated" and manifest["counts"]["total"] == 5
    assert manifest["decisions"]["human"] == 0 and manifest["decisions"]["ai"] == 5
    assert all(r["meta"]["why"]["decided_by"] == "ai" for r in read_jsonl(data / "auto-set" / "train.jsonl"))
    for strategy in ("signals", "random", "longest"):
        assert len(read_jsonl(ws_copy / "selection" / f"{strategy}.jsonl")) == 5


def test_bad_input_is_reported_clearly(ws_copy, tmp_path):
    rc, _, err = cli("ingest", "--workspace", tmp_path / "w2", tmp_path / "missing.jsonl")
    assert rc == 1 and "candidate pool not found" in err and "missing.jsonl" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi"}\n{"text": 1}\nnot json\n', encoding="utf-8")
    rc, _, err = cli("ingest", "--workspace", tmp_path / "w2", bad)
    assert rc == 1 and "3 of 3 records are invalid" in err and f"{bad}:1" in err
    rc, _, err = cli("select", "--workspace", tmp_path / "w3")
    assert rc == 1 and "run `python -m curation score" in err
    rc, _, err = cli("select", "--workspace", ws_copy, "--set", "select.budgt=3")
    assert rc == 2 and "did you mean 'select.budget'" in err
    rc, _, err = cli("select", "--workspace", ws_copy, "--strategy", "curated")
    assert rc == 1 and "needs curator decisions" in err and "pull" in err
    from curation.workspace import Workspace

    with Workspace(ws_copy).lock("score"):
        rc, _, err = cli("select", "--workspace", ws_copy)
    assert rc == 1 and "busy" in err and "score" in err


def test_llm_rating_failures_are_counted_and_fall_back(ws_copy, fake_openai, monkeypatch):
    """The optional LLM rating goes through judging (the one judge abstraction) to a real HTTP server."""
    for k, v in fake_openai.env().items():
        monkeypatch.setenv(k, v)

    def reply(messages):
        text = messages[-1]["content"]
        if "attribute" in text.lower().split("[the start of the response]")[0]:
            return "I cannot decide."  # no verdict: unparseable, even when asked again
        return "Clear and correct.\nRating: [[5]]" if "```" in text else "Thin.\nRating: [[2]]"

    fake_openai.reply = reply
    out = ok("score", "--workspace", ws_copy, "--rate", "--score.judge_limit", "100")
    sig = pq.read_table(ws_copy / "signals.parquet").to_pylist()
    report = json.loads((ws_copy / "score.json").read_text())["judge"]
    failed = [s for s in sig if s["rating_error"]]
    rated = [s for s in sig if s["rating"] == s["rating"]]  # not NaN
    assert report["failed"] == len(failed) > 0 and report["rated"] == len(rated) > 0
    assert report["items"] == len(failed) + len(rated) and report["agent"] == "judge:quality-rating"
    assert f"{len(failed)} failed (scored from the other signals)" in out
    for s in failed:
        assert s["quality"] == pytest.approx(s["quality_heuristic"])
    assert {s["rating"] for s in rated} == {2.0, 5.0}
    assert all(s["rating_rationale"] for s in rated)
    five = [s for s in rated if s["rating"] == 5.0]
    assert all(s["suggested_rating"] == 5 for s in five)
    # rerun: the judge's cache answers for every rated item (only the failed ones are asked again)
    n = fake_openai.requests
    ok("score", "--workspace", ws_copy, "--rate", "--score.judge_limit", "100", "--force")
    assert fake_openai.requests - n <= 2 * len(failed) < len(rated)


# --------------------------------------------------------------------------- with curators (real Argilla)


def _argilla_env(server) -> dict:
    return {"ARGILLA_API_URL": server.api_url, "ARGILLA_API_KEY": server.api_key}


def _answer(server, username: str, server_ids: dict, plan: dict, status: str = "submitted") -> None:
    """Submit (or save as draft) one curator's answers with their own client and API key, through the SDK."""
    import argilla as rg
    from argilla.responses import UserResponse

    _, key = server.add_user(username)
    client = server.client(key)
    me = client.me.id
    for rid, values in plan.items():
        responses = [rg.Response(q, v, user_id=me, status=status) for q, v in values.items()]
        client.api.records.create_record_response(record_id=server_ids[rid],
                                                  user_response=UserResponse(responses, client=client)._model)


def test_push_force_recovers_the_draft_an_interrupted_push_left(ws_copy, argilla_server):
    """Argilla creates a dataset as a draft and publishes it after its fields, questions, metadata and vectors: a push
    killed in between leaves a draft (the state below, made with the same requests). A later push says what it is;
    --force deletes it and creates the dataset, and says so. A draft push did not make is never touched."""
    import httpx

    from curation.argilla_dataset import PUSH_MARKER

    env = _argilla_env(argilla_server)
    h = {"X-Argilla-Api-Key": argilla_server.api_key}
    workspace_id = str(argilla_server.client().workspaces(argilla_server.workspace_name).id)

    def draft(name: str, guidelines: str) -> str:
        r = httpx.post(f"{argilla_server.api_url}/api/v1/datasets", headers=h,
                       json={"name": name, "workspace_id": workspace_id, "guidelines": guidelines})
        assert r.status_code == 201, r.text
        r = httpx.post(f"{argilla_server.api_url}/api/v1/datasets/{r.json()['id']}/fields", headers=h,
                       json={"name": "prompt", "title": "Prompt", "settings": {"type": "text"}})
        assert r.status_code == 201, r.text
        return name

    common = ("--workspace", ws_copy, "--budget", 4)
    name = draft("curation-test-draft", f"# Curating a LIMA-style set\n\n...\n{PUSH_MARKER}\n")
    rc, out, err = cli("push", *common, "--push.dataset", name, env=env)
    assert rc == 1 and "is an unfinished draft left by an interrupted `curation push`" in err and "--force" in err
    assert "was not made by" not in err
    out = ok("push", *common, "--push.dataset", name, "--force", env=env)
    assert "found the unfinished draft of an interrupted push (no records): deleted it and created the dataset again" \
        in out and "12 records" in out and "created" in out
    ds = argilla_server.client().datasets(name=name, workspace=argilla_server.workspace_name)
    assert ds._model.status == "ready" and PUSH_MARKER in ds.settings.guidelines
    assert sum(1 for _ in ds.records(with_responses=False, with_suggestions=False)) == 12
    assert "found the unfinished draft" not in ok("push", *common, "--push.dataset", name, "--force", env=env)

    other = draft("someone-elses-draft", "Our own dataset, being set up by hand")
    rc, out, err = cli("push", *common, "--push.dataset", other, "--force", env=env)
    assert rc == 1 and "unpublished draft that `curation push` did not make" in err
    assert argilla_server.client().datasets(name=other, workspace=argilla_server.workspace_name) is not None


def test_curators_in_the_loop(ws_copy, argilla_server, tmp_path):
    env = _argilla_env(argilla_server)
    dataset = "curation-test-loop"
    common = ("--workspace", ws_copy, "--push.dataset", dataset)
    out = ok("push", *common, "--budget", 4, env=env)
    assert "12 records" in out and "created" in out
    push = json.loads((ws_copy / "push.json").read_text())
    client = argilla_server.client()
    ds = client.datasets(name=dataset, workspace=argilla_server.workspace_name)
    records = list(ds.records(with_suggestions=True, with_responses=True, with_vectors=True))
    shortlist = read_jsonl(ws_copy / "shortlist.jsonl")
    assert sorted(r.id for r in records) == sorted(s["id"] for s in shortlist) and len(records) == 12
    # the dataset made for curation
    s = ds.settings
    assert [q.name for q in s.questions] == ["quality", "keep", "edited_response", "category"]
    assert s.questions["edited_response"].required is False and s.distribution.min_submitted == 2
    assert {m.name for m in s.metadata} >= {"source", "language", "signals_quality", "response_chars", "first_person"}
    assert s.vectors["embedding"].dimensions == 384
    assert "LIMA" in s.guidelines and "first-person" in s.guidelines
    assert s.fields["prompt"].type == push["prompt_field"]
    rec = records[0]
    assert {sg.question_name: sg.agent for sg in rec.suggestions}["keep"] == "curated-align/signals"
    assert len(rec.vectors["embedding"]) == 384 and "signals_quality" in rec.metadata
    # planted problems never reach curators: the hard filters and duplicate groups run before the shortlist
    by = signals_by_planted(ws_copy)
    planted_ids = {x["id"] for k, group in by.items() if k for x in group}
    assert not {r.id for r in records} & planted_ids

    # pushing again updates, never duplicates
    assert "up to date" in ok("push", *common, "--budget", 4, env=env)
    ok("push", *common, "--budget", 4, "--force", env=env)
    assert sum(1 for _ in ds.records(with_responses=False, with_suggestions=False)) == 12

    # nobody answered yet: pull says so and writes nothing
    rc, _, err = cli("pull", *common, env=env)
    assert rc == 3 and "nobody has answered yet" in err and "0 of the 12 records" in err
    assert not (ws_copy / "decisions.parquet").exists()

    # two curators answer through the SDK, each with their own API key
    server_ids = {r.id: r._server_id for r in records}
    r1, r2, r3, r4, r5, r6 = [s["id"] for s in shortlist[:6]]
    _answer(argilla_server, "curator-ann", server_ids, {
        r1: {"keep": "keep", "quality": 5, "edited_response": "Ann's improved answer.", "category": "coding"},
        r2: {"keep": "keep", "quality": 4},
        r3: {"keep": "discard", "quality": 1},
        r4: {"keep": "keep", "quality": 4, "edited_response": "Ann's edit of four."},
        r5: {"keep": "keep", "quality": 5},
    })
    _answer(argilla_server, "curator-bob", server_ids, {
        r1: {"keep": "keep", "quality": 4, "category": "coding"},
        r2: {"keep": "discard", "quality": 2},
        r3: {"keep": "discard", "quality": 2},
        r4: {"keep": "keep", "quality": 4, "edited_response": "Bob's edit of four."},
    })
    _answer(argilla_server, "curator-bob", server_ids, {r6: {"keep": "discard", "quality": 1}}, status="draft")
    out = ok("pull", *common, env=env)
    pull = json.loads((ws_copy / "pull.json").read_text())
    c = pull["counts"]
    assert (c["human"], c["ai"], c["pending"], c["disputed"]) == (5, 0, 7, 1)
    # hand-computed: keep votes (k,k) (k,d) (d,d) (k,k): alpha = 8/15, Cohen's kappa = 1/2 (see the unit test)
    assert pull["agreement"]["keep"]["alpha"] == pytest.approx(8 / 15)
    assert pull["agreement"]["keep"]["pairwise_kappa"]["curator-ann|curator-bob"]["kappa"] == pytest.approx(0.5)
    assert "Krippendorff's alpha (nominal) 0.533" in out
    decisions = {d["id"]: d for d in pq.read_table(ws_copy / "decisions.parquet").to_pylist()}
    assert decisions[r1]["decision"] == "keep" and decisions[r1]["edited_response"] == "Ann's improved answer."
    assert decisions[r2]["decision"] == "discard" and decisions[r2]["tie"] and decisions[r2]["disputed"]
    assert decisions[r4]["edit_by"] == "curator-ann"  # equal ratings, equal support: username order
    assert decisions[r5]["n_answers"] == 1 and decisions[r5]["decision"] == "keep"
    assert r6 not in decisions  # a draft is not an answer
    assert [d["id"] for d in read_jsonl(ws_copy / "disputed.jsonl")] == [r2]

    # a budget larger than what was kept warns with the numbers
    out = ok("select", "--workspace", ws_copy, "--strategy", "curated", "--budget", 50)
    assert "budget 50 is larger than what was kept: 3 records kept" in out

    # unattended: the AI suggestions decide where no curator answered, labelled as such
    out = ok("pull", *common, "--unattended", env=env)
    c = json.loads((ws_copy / "pull.json").read_text())["counts"]
    assert (c["human"], c["ai"], c["pending"]) == (5, 7, 0)
    ok("select", "--workspace", ws_copy, "--strategy", "curated", "--budget", 4)
    data = tmp_path / "data"
    ok("export", "--workspace", ws_copy, "--data-dir", data, "--name", "loop-set", env=env)
    manifest = json.loads((data / "loop-set" / "manifest.json").read_text())
    assert manifest["strategy"] == "curated"
    assert manifest["decisions"]["human"] == 3 and manifest["decisions"]["ai"] == 1
    assert manifest["decisions"]["edited"] == 2
    assert manifest["argilla"]["dataset"] == dataset and manifest["argilla"]["api_url"] == argilla_server.api_url
    rows = read_jsonl(data / "loop-set" / "train.jsonl")
    by_cand = {r["meta"]["candidate_id"]: r for r in rows}
    assert by_cand[r1]["messages"][-1]["content"] == "Ann's improved answer."
    assert by_cand[r1]["meta"]["why"]["votes"]["ratings"] == [5, 4]
    assert by_cand[r1]["meta"]["why"]["decided_by"] == "human"
    assert [r["meta"]["why"]["decided_by"] for r in rows] == ["human", "human", "human", "ai"]
    assert not set(by_cand) & planted_ids

    # every step again: nothing changes, the server included
    before = tree_digest(ws_copy, data)
    for step in ("push", "pull"):
        assert "up to date" in ok(step, *common, *(["--unattended"] if step == "pull" else []), env=env)
    assert "up to date" in ok("select", "--workspace", ws_copy, "--strategy", "curated")
    assert "up to date" in ok("export", "--workspace", ws_copy, env=env)
    assert tree_digest(ws_copy, data) == before
    assert sum(1 for _ in ds.records(with_responses=False, with_suggestions=False)) == 12


def test_argilla_unreachable_fails_clearly_and_writes_nothing(ws_copy):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    env = {"ARGILLA_API_URL": f"http://127.0.0.1:{port}", "ARGILLA_API_KEY": "nobody"}
    before = tree_digest(ws_copy)
    rc, _, err = cli("push", "--workspace", ws_copy, "--push.retries", 3, "--push.backoff", 0.01, env=env)
    assert rc == 1 and "did not answer" in err and f"127.0.0.1:{port}" in err and "3 attempts" in err
    assert not (ws_copy / "push.json").exists() and not (ws_copy / "shortlist.jsonl").exists()
    after = tree_digest(ws_copy)
    assert {k: v for k, v in after.items() if not k.endswith("config.yaml")} == \
        {k: v for k, v in before.items() if not k.endswith("config.yaml")}


def test_curator_actions_mean_what_the_ui_shows(ws_copy, argilla_server):
    """Argilla's Discard is a discard vote, the edit box starts with the answer (an unchanged edit is no edit),
    and disputes carry what a reviewer needs: prompt, answer, each curator's vote and a link into the UI."""
    env = _argilla_env(argilla_server)
    dataset = "curation-test-actions"
    common = ("--workspace", ws_copy, "--push.dataset", dataset)
    out = ok("push", *common, "--budget", 20, env=env)
    push = json.loads((ws_copy / "push.json").read_text())
    assert push["asked"] == 60 and push["records"] < 60
    assert f"{push['records']} of the 60 asked for" in out and "only" in out and "excluded by the hard filters" in out
    assert "duplicate groups" in out
    client = argilla_server.client()
    ds = client.datasets(name=dataset, workspace=argilla_server.workspace_name)
    records = list(ds.records(with_suggestions=True))
    # the prompt is a text field, so the UI's "Find similar" names the record by its text
    assert [f.type for f in ds.settings.fields] == ["text", "text"]
    for rec in records:
        sugg = {s.question_name: s for s in rec.suggestions}
        assert sugg["edited_response"].value == rec.fields["response"]  # pre-filled with the answer
        assert sugg["edited_response"].agent == "original-response"
    server_ids = {r.id: r._server_id for r in records}
    original = {r.id: r.fields["response"] for r in records}
    r1, r2, r3 = [r.id for r in records[:3]]
    # ann submits r1 with the pre-filled edit untouched (the editor trimmed a trailing newline): not an edit
    _answer(argilla_server, "curator-cat", server_ids, {
        r1: {"keep": "keep", "quality": 5, "edited_response": original[r1].rstrip() + "  \n"},
        r2: {"keep": "keep", "quality": 5},
        r3: {"keep": "keep", "quality": 4},
    })
    # dan presses Discard on r1 and r2: the UI sends the pre-filled suggestion (keep!) with status discarded,
    # or nothing at all
    _answer(argilla_server, "curator-dan", server_ids, {r1: {"keep": "keep", "quality": 4}}, status="discarded")
    from argilla._models._record._response import UserResponseModel

    _, key = argilla_server.add_user("curator-dan")
    dan = argilla_server.client(key)
    dan.api.records.create_record_response(record_id=server_ids[r2], user_response=UserResponseModel(
        values={}, status="discarded", user_id=dan.me.id))
    out = ok("pull", *common, env=env)
    c = json.loads((ws_copy / "pull.json").read_text())["counts"]
    assert c["discarded_in_ui"] == 2 and "2 discarded in the UI" in out
    decisions = {d["id"]: d for d in pq.read_table(ws_copy / "decisions.parquet").to_pylist()}
    assert decisions[r1]["discard_votes"] == 1 and decisions[r1]["keep_votes"] == 1  # not the pre-filled keep
    assert decisions[r1]["ratings"] == [5]  # a discard in the UI carries no rating
    assert decisions[r1]["edited_response"] == "" and c["edited"] == 0
    assert decisions[r2]["discard_votes"] == 1
    disputed = read_jsonl(ws_copy / "disputed.jsonl")
    assert {d["id"] for d in disputed} == {r1, r2}
    d1 = next(d for d in disputed if d["id"] == r1)
    assert d1["response"] == original[r1] and d1["prompt"]
    assert {v["user"]: (v["keep"], v["rating"], v["discarded_in_ui"]) for v in d1["votes"]} == {
        "curator-cat": ("keep", 5, False), "curator-dan": ("discard", None, True)}
    assert d1["ui"].startswith(f"{argilla_server.api_url}/dataset/{ds.id}/annotation-mode?similarity=record."
                               f"{server_ids[r1]}.vector.embedding")
    assert "2 disputed records, the sharpest 2:" in out and d1["ui"] in out
    assert " ".join(d1["prompt"].split())[:40] in out
