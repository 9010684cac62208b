"""The human path: a blind A/B dataset in the real embedded Argilla, votes from two annotators
submitted through the SDK, pulled and un-blinded, then compared with an LLM judge in the report."""

from __future__ import annotations

import json

import pytest

from eval import cli, human
from eval.files import read_records, write_jsonl

pytestmark = pytest.mark.slow

N = 8


def _write_generations(tmp_path):
    a_rows, b_rows = [], []
    for i in range(N):
        long, short = f"A long and careful answer to question {i}, with detail and examples.", f"Brief {i}."
        a_out, b_out = (long, short) if i % 2 == 0 else (short, long)
        base = {"id": f"q{i}", "prompt": f"Question {i}?", "category": "even" if i % 2 == 0 else "odd"}
        a_rows.append({**base, "output": a_out, "generator": "cand", "model": "m", "adapter": "runs/x", "config": {}})
        b_rows.append({**base, "output": b_out, "generator": "base", "model": "m", "adapter": None, "config": {}})
    write_jsonl(tmp_path / "a.jsonl", a_rows)
    write_jsonl(tmp_path / "b.jsonl", b_rows)
    return tmp_path / "a.jsonl", tmp_path / "b.jsonl"


def _submit(client, record_id, user_id, value: str, rationale: str = ""):
    """What the Argilla UI does when an annotator clicks Submit, through the SDK's records API."""
    from argilla._models import UserResponseModel

    values = {human.QUESTION: {"value": value}}
    if rationale:
        values["rationale"] = {"value": rationale}
    client.api.records.create_record_response(
        record_id, UserResponseModel(values=values, status="submitted", user_id=user_id)
    )


def _my_records(client, dataset) -> list[dict]:
    """The records as the annotator's UI sees them (the /me search endpoint: hidden metadata removed)."""
    resp = client.api.http_client.post(f"/api/v1/me/datasets/{dataset.id}/records/search", json={},
                                       params={"limit": 100})
    resp.raise_for_status()
    return [item["record"] for item in resp.json()["items"]]


def test_blind_ab_push_vote_pull_and_agreement(argilla_server, fake_openai, tmp_path, monkeypatch):
    a_file, b_file = _write_generations(tmp_path)
    ws = str(argilla_server.workspace)
    dataset = "eval-ab-test"
    push = ["judge", "--backend", "human", "push", "--a", str(a_file), "--b", str(b_file), "--dataset", dataset,
            "--workspace", ws, "--argilla-workspace", argilla_server.workspace_name, "--overlap", "2", "--seed", "3"]
    assert cli.main(push) == 0
    assert cli.main(push) == 0  # re-pushing does not duplicate

    owner = argilla_server.client()
    ds = owner.datasets(name=dataset, workspace=argilla_server.workspace_name)
    records = list(ds.records(with_responses=False))
    assert len(records) == N
    assert ds.settings.distribution.min_submitted == 2
    assert "Which response best satisfies your needs" in ds.settings.guidelines
    assert ds.settings.metadata["swapped"].visible_for_annotators is False
    swapped = {r.metadata["prompt_id"]: r.metadata["swapped"] == "yes" for r in records}
    assert 0 < sum(swapped.values()) < N, "the order must be randomized per pair"
    # blind: the fields never say which system wrote which response
    for r in records:
        assert set(r.fields) == {"prompt", "response_1", "response_2"}
        shown_first = r.fields["response_1"]
        a_long = int(r.metadata["prompt_id"][1:]) % 2 == 0
        expected_first_is_long = a_long != swapped[r.metadata["prompt_id"]]
        assert ("long and careful" in shown_first) == expected_first_is_long

    # two annotators vote for the longer response; bob calls the last pair a tie
    for name in ("alice", "bob"):
        user, key = argilla_server.add_user(f"{name}-ab")
        client = argilla_server.client(key)
        mine = client.datasets(name=dataset, workspace=argilla_server.workspace_name)
        seen = _my_records(client, mine)
        assert len(seen) == N
        for r in seen:
            meta = r.get("metadata") or {}
            assert "swapped" not in meta and "a_generator" not in meta  # hidden from annotators
            fields = r["fields"]
            longer = "1" if len(fields["response_1"]) > len(fields["response_2"]) else "2"
            last = fields["prompt"] == f"Question {N - 1}?"
            vote = "tie" if (name == "bob" and last) else longer
            _submit(client, r["id"], user.id, vote, rationale=f"{name}: more complete")

    out = tmp_path / "human.jsonl"
    assert cli.main(["judge", "--backend", "human", "pull", "--dataset", dataset, "--out", str(out), "--workspace", ws,
                     "--argilla-workspace", argilla_server.workspace_name]) == 0
    rows = {r["id"]: r for r in read_records(out)}
    assert len(rows) == N
    for i in range(N):
        row = rows[f"q{i}"]
        expected = "win" if i % 2 == 0 else "loss"  # A was the longer answer on even questions
        assert sorted(v["annotator"] for v in row["votes"]) == ["alice-ab", "bob-ab"]
        alice = next(v for v in row["votes"] if v["annotator"] == "alice-ab")
        assert alice["verdict"] == expected, f"un-blinding failed on q{i} (swapped={row['swapped']})"
        assert row["swapped"] == swapped[f"q{i}"]
        assert row["verdict"] == ("tie" if i == N - 1 else expected)
        assert "long and careful" in (row["output_a"] if i % 2 == 0 else row["output_b"])
        assert row["a"]["generator"] == "cand" and row["b"]["generator"] == "base"

    # an LLM judge on the same pairs (the fake prefers the longer answer), then the report
    for k, v in fake_openai.env().items():
        monkeypatch.setenv(k, v)
    llm = tmp_path / "llm.jsonl"
    assert cli.main(["judge", "--judge", "lima-three-way", "--a", str(a_file), "--b", str(b_file), "--out", str(llm),
                     "--no-cache", "--no-progress"]) == 0
    report_dir = tmp_path / "report"
    assert cli.main(["report", "--judgments", str(llm), str(out), "--out", str(report_dir)]) == 0
    summary = json.loads((report_dir / "summary.json").read_text())
    (agree,) = [g for g in summary["agreements"] if g["human_llm"]]
    # human majority: win/loss alternating except a tie on the last (a loss for the LLM)
    # observed 7/8; expected (4/8*4/8 + 3/8*4/8) = 7/16; kappa = (7/8 - 7/16) / (1 - 7/16) = 7/9
    assert agree["n"] == N
    assert agree["kappa"] == pytest.approx(7 / 9)
    assert agree["tie_discounted_accuracy"] == pytest.approx((7 + 0.5) / 8)
    (hum,) = [r for r in summary["results"] if r["kind"] == "human"]
    assert hum["inter_annotator"]["n"] == N
    assert hum["inter_annotator"]["tie_discounted_accuracy"] == pytest.approx((7 + 0.5) / 8)
    html = (report_dir / "report.html").read_text()
    assert "Human–LLM agreement" in html and "0.778" in html
