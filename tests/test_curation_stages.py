"""The stage graph and what ingest tells: results that cannot go stale, and nothing lost quietly.

Each test runs `python -m curation` in process on real files (embeddings off where they play no part, to
keep the suite fast on two cores).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from test_curation_pipeline import POOL, cli, ok, read_jsonl

REPO = Path(__file__).resolve().parent.parent
NO_EMBED = ("--score.embed", "false")
BARE_HASH = re.compile(r"^error: [0-9a-f']{10,}$", re.M)


def other_pool(path: Path, n: int = 6) -> Path:
    """A second, different pool: n good prompt/response pairs about Python's built-in functions."""
    names = ["len", "sorted", "enumerate", "zip", "isinstance", "range", "min", "max"][:n]
    with open(path, "w", encoding="utf-8") as fh:
        for name in names:
            fh.write(json.dumps({
                "prompt": f"What does Python's built-in `{name}` do, and when should I use it?",
                "response": f"`{name}` is one of Python's built-in functions. " + " ".join(
                    f"Sentence {k} explains how `{name}` behaves with lists, tuples and other iterables, and "
                    f"what it returns." for k in range(12)),
                "source": "builtins"}) + "\n")
    return path


@pytest.fixture
def finished(tmp_path) -> Path:
    """A workspace after a finished unattended run (no server, no embeddings) and its export."""
    ws = tmp_path / "ws"
    ok("run", "--workspace", ws, POOL, "--no-argilla", "--unattended", "--budget", 5, "--data-dir", tmp_path / "data",
       "--name", "first", *NO_EMBED)
    return ws


def test_another_pool_after_a_finished_run_is_refused_not_mixed(finished, tmp_path):
    data = tmp_path / "data"
    manifest_before = (data / "first" / "manifest.json").read_text()
    new_pool = other_pool(tmp_path / "builtins.jsonl")
    out = ok("ingest", "--workspace", finished, new_pool)
    assert "ingest: 6 candidates" in out
    # export refuses: its selection was made from signals of the earlier candidates
    rc, _, err = cli("export", "--workspace", finished)
    assert rc == 1 and "stale" in err, err
    assert "candidates.parquet" in err and f"python -m curation score --workspace {finished}" in err
    assert f"python -m curation select --workspace {finished}" in err
    assert not BARE_HASH.search(err)
    assert (data / "first" / "manifest.json").read_text() == manifest_before  # nothing written
    # select refuses the same way (it used to fail with a bare candidate id)
    rc, _, err = cli("select", "--workspace", finished)
    assert rc == 1 and "signals.parquet is stale" in err and "python -m curation score" in err, err
    assert not BARE_HASH.search(err)
    # running the steps it names brings everything up to date, from the new pool only
    ok("score", "--workspace", finished)
    ok("run", "--workspace", finished, "--no-argilla", "--unattended")  # pull (offline), select, export
    manifest = json.loads((data / "first" / "manifest.json").read_text())
    assert [Path(p["path"]).name for p in manifest["source_pools"]] == ["builtins.jsonl"]
    assert {r["source"] for r in read_jsonl(data / "first" / "train.jsonl")} == {"builtins"}
    assert manifest["inputs"]["candidates.parquet"] == json.loads((finished / "ingest.json").read_text())[
        "outputs"]["candidates.parquet"]
    assert manifest["inputs"][f"pool:{new_pool}"] == json.loads((finished / "ingest.json").read_text())[
        "pools"][0]["sha256"]


def test_decisions_from_an_earlier_shortlist_are_not_passed_off_as_fresh(finished):
    ok("score", "--workspace", finished, "--score.min_response_chars", 400)  # new signals, same candidates
    rc, _, err = cli("select", "--workspace", finished, "--strategy", "curated")
    assert rc == 1 and "shortlist.jsonl is stale" in err, err
    assert "python -m curation push" in err and "python -m curation pull" in err
    # the baselines need only the signals, which are current
    assert "select random" in ok("select", "--workspace", finished, "--strategy", "random")


def test_a_pool_that_changed_since_ingest_is_named(finished, tmp_path):
    pool = tmp_path / "pool"
    shutil.copytree(POOL, pool)
    ws = tmp_path / "ws2"
    ok("ingest", "--workspace", ws, pool)
    ok("score", "--workspace", ws, *NO_EMBED)
    with open(pool / "good.messages.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"messages": [{"role": "user", "content": "What is a tuple?"},
                                          {"role": "assistant", "content": "An immutable sequence of values."}]})
                 + "\n")
    rc, _, err = cli("select", "--workspace", ws)
    assert rc == 1 and f"pool {pool / 'good.messages.jsonl'} has changed" in err, err
    assert f"python -m curation ingest --workspace {ws}" in err


def test_an_artifact_changed_by_hand_is_not_trusted(finished):
    table = pq.read_table(finished / "signals.parquet")
    pq.write_table(table.slice(0, table.num_rows - 1), finished / "signals.parquet")
    rc, _, err = cli("select", "--workspace", finished, "--strategy", "random")
    assert rc == 1 and "signals.parquet is not the file `score` last wrote" in err, err
    assert f"python -m curation score --workspace {finished} --force" in err


def test_the_workspace_works_from_another_folder(tmp_path, monkeypatch):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    shutil.copytree(POOL, here / "pool")
    monkeypatch.chdir(here)
    ok("ingest", "--workspace", "ws", "pool")  # relative paths, as a user types them
    saved = (here / "ws" / "config.yaml").read_text()
    assert str(here / "pool") in saved  # stored absolute
    monkeypatch.chdir(elsewhere)
    out = ok("run", "--workspace", here / "ws", "--no-argilla", "--unattended", "--budget", 4, *NO_EMBED)
    assert "ingest: 50 candidates" in out and "(up to date)" in out
    assert "export: 4 examples" in out


# --------------------------------------------------------------------------- nothing lost quietly


def test_ingest_shows_the_first_rejects_with_their_place(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"prompt": "Q?", "response": "A fine answer."}, {"prompt": "Q2?", "response": ""},
                               {"question": "x", "answer": "y"}]), encoding="utf-8")
    lines = tmp_path / "lines.jsonl"
    lines.write_text('{"prompt": "Hi?", "response": "Hello there."}\nnot json\n{"messages": []}\n', encoding="utf-8")
    out = ok("ingest", "--workspace", tmp_path / "ws", bad, lines, "--set", "ingest.max_reject_fraction=1")
    assert f"{bad}#2: empty assistant answer (turn 1)" in out  # the 2nd record of the JSON list, counted from 1
    assert f"{bad}#3: unknown format" in out
    assert f"{lines}:2: malformed JSON" in out and f"{lines}:3: no messages" in out
    assert "4 rejected records" in out and "rejects.jsonl" in out
    # more than max_reject_fraction fails the step, naming the first rejects with their place
    rc, _, err = cli("ingest", "--workspace", tmp_path / "ws2", bad)
    assert rc == 1 and "2 of 3 records are invalid" in err and f"{bad}#2: empty assistant answer" in err
    assert ":0:" not in err


def test_a_folder_lists_what_it_skips_and_recursive_descends(tmp_path):
    folder = tmp_path / "pool"
    (folder / "more").mkdir(parents=True)
    shutil.copy(POOL / "good.messages.jsonl", folder / "a.jsonl")
    other_pool(folder / "more" / "b.jsonl")
    (folder / "notes.txt").write_text("not data\n", encoding="utf-8")
    out = ok("ingest", "--workspace", tmp_path / "ws", folder)
    assert f"skipped {folder / 'more'}: a folder (--recursive reads subfolders too)" in out
    assert f"skipped {folder / 'notes.txt'}: not a data file (.txt" in out
    report = json.loads((tmp_path / "ws" / "ingest.json").read_text())
    assert [Path(p["path"]).name for p in report["pools"]] == ["a.jsonl"]
    assert len(report["skipped_files"]) == 2
    out = ok("ingest", "--workspace", tmp_path / "ws", folder, "--recursive")
    report = json.loads((tmp_path / "ws" / "ingest.json").read_text())
    assert [Path(p["path"]).name for p in report["pools"]] == ["a.jsonl", "b.jsonl"]
    assert "builtins" in report["counts_by_source"] and "more: a folder" not in out
    # a new file in the folder is a changed input: ingest runs again instead of skipping
    other_pool(folder / "c.jsonl", 2)
    assert "up to date" not in ok("ingest", "--workspace", tmp_path / "ws", folder)


def test_field_map_reads_other_column_names(tmp_path):
    csv_path = tmp_path / "forum.csv"
    csv_path.write_text("question,answer\nHow do I sort a list in place?,Call `xs.sort()`; it returns None.\n",
                        encoding="utf-8")
    rc, _, err = cli("ingest", "--workspace", tmp_path / "ws", csv_path)
    assert rc == 1 and "--field-map prompt=COLUMN,response=COLUMN" in err  # the hint names a flag that exists
    out = ok("ingest", "--workspace", tmp_path / "ws", csv_path, "--field-map", "prompt=question,response=answer")
    assert "ingest: 1 candidates, 0 rejects" in out
    rc, _, err = cli("ingest", "--workspace", tmp_path / "ws", csv_path, "--field-map", "promt=question")
    assert rc == 2 and "ingest.mapping: unknown key 'promt'" in err


def test_every_command_a_message_suggests_exists():
    """The hints in curation's and contract's messages name commands and flags that the parser accepts."""
    from curation.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    sources = [p for d in ("curation", "contract") for p in (REPO / d).rglob("*.py") if "server" not in p.parts]
    found = 0
    for path in sources:
        for m in re.finditer(r"python -m curation (\w[\w-]*)([^`\"'\n)]*)", path.read_text(encoding="utf-8")):
            command, rest = m.group(1), m.group(2)
            if command in ("serve", "status", "stop", "add-user") or command not in subparsers and command == "X":
                continue
            assert command in subparsers, f"{path.name}: `python -m curation {command}` does not exist"
            known = {o for a in subparsers[command]._actions for o in a.option_strings}
            for flag in re.findall(r"(?<![\w-])(--[a-z][\w.-]*)", rest):
                assert flag in known, f"{path.name}: `python -m curation {command} … {flag}`: no such flag"
                found += 1
    assert found >= 5


def test_language_detection_loses_no_good_example_of_the_sample_pool(tmp_path):
    """Short or code-heavy answers are judged by their prompt, or not at all ("unknown", never excluded)."""
    ws = tmp_path / "ws"
    ok("ingest", "--workspace", ws, REPO / "data" / "sample-pool")
    ok("score", "--workspace", ws, *NO_EMBED)
    cands = pq.read_table(ws / "candidates.parquet").to_pylist()
    sig = pq.read_table(ws / "signals.parquet").to_pylist()
    notes = [json.loads(c["meta"]).get("quality_note", "") for c in cands]
    by_language = [(n, s["language"], s["exclude_reason"]) for n, s in zip(notes, sig)
                   if s["exclude_reason"].startswith("language:")]
    assert sorted(n.split(":")[0] for n, _, _ in by_language) == ["non-english"] * 3  # every planted one, no other
    assert {lang for _, lang, _ in by_language} == {"de", "es", "fr"}
    translation = next(s for c, s in zip(cands, sig) if "into French" in c["prompt"])
    assert translation["language"] == "en" and translation["eligible"]  # a French answer to an English request
    unknown = [s for s in sig if s["language"] == "unknown"]
    assert unknown and all(s["exclude_reason"] != "language:unknown" for s in unknown)


# --------------------------------------------------------------------------- beyond one machine


def test_shards_mapped_by_dask_equal_the_one_machine_signals(tmp_path):
    """The per-record signals and MinHash over Parquet shards on two local Dask workers: the same rows as
    `score` on one machine, and the same near-duplicate pairs."""
    ws = tmp_path / "ws"
    ok("ingest", "--workspace", ws, POOL)
    ok("score", "--workspace", ws, *NO_EMBED)
    out = ok("shards", "--workspace", ws, "--workers", 2, "--rows", 20)
    assert "50 records in 3 shards on 2 Dask workers (local)" in out
    report = json.loads((ws / "shards.json").read_text())
    assert [s["rows"] for s in report["per_shard"]] == [20, 20, 10]
    one = pq.read_table(ws / "signals.parquet").to_pylist()
    sharded = [r for k in range(3) for r in pq.read_table(ws / "shards" / f"signals-{k:05d}.parquet").to_pylist()]
    assert [r["id"] for r in sharded] == [r["id"] for r in one]
    for column in ("response_chars", "list_items", "refusal", "first_person", "boilerplate", "prompt_tokens",
                   "response_tokens", "language"):
        assert [r[column] for r in sharded] == [r[column] for r in one], column
    assert report["near_pairs"] == json.loads((ws / "score.json").read_text())["duplicates"]["pairs"]["near"]
