"""The report: built from real judgments (the fake chat-completions server) plus human votes, checked as
Markdown and JSON, and rendered in headless Chromium with a screenshot
(copied to docs/images/report.png when UPDATE_DOCS_IMAGES=1)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from eval import cli, report
from eval.config import ReportArgs
from eval.files import read_records, write_jsonl

N = 12


def _judgments(tmp_path, monkeypatch, fake):
    for k, v in fake.env().items():
        monkeypatch.setenv(k, v)
    a, b = [], []
    for i in range(N):
        long = f"Here is a complete answer to question {i}:\n\n1. First point.\n2. Second point with detail."
        short = f"Answer {i}."
        ao, bo = (long, short) if i < 8 else (short, long)
        base = {"id": f"q{i:02d}", "prompt": f"Question {i}: how does <b>this</b> work?", "category": ["coding", "writing", "advice"][i % 3]}
        a.append({**base, "output": ao, "generator": "lima-7b", "model": "base-7b", "adapter": "runs/lima", "config": {"max_new_tokens": 256, "seed": 0,
                  "training": {"run_dir": "runs/lima", "data_manifest_sha256": "ab12" * 16}}})
        b.append({**base, "output": bo, "generator": "base-7b", "model": "base-7b", "adapter": None, "config": {"max_new_tokens": 256, "seed": 0}})
    write_jsonl(tmp_path / "a.jsonl", a)
    write_jsonl(tmp_path / "b.jsonl", b)
    fake.position_bias = 0.2
    llm = tmp_path / "llm.jsonl"
    assert cli.main(["judge", "--judge", "lima", "--a", str(tmp_path / "a.jsonl"), "--b", str(tmp_path / "b.jsonl"),
                     "--out", str(llm), "--no-cache", "--no-progress", "--price-input", "2.5", "--price-output", "10"]) == 0
    # human votes as `eval judge --backend human pull` writes them (that path is tested against Argilla)
    rows = []
    for r in read_records(llm)[:10]:
        truth = "win" if int(r["id"][1:]) < 8 else "loss"
        votes = [{"annotator": "alice", "raw": "1", "verdict": truth, "rationale": "clearer"},
                 {"annotator": "bob", "raw": "tie", "verdict": "tie" if r["id"] == "q00" else truth, "rationale": ""}]
        rows.append({**{k: r[k] for k in ("id", "category", "prompt", "a", "b", "output_a", "output_b")},
                     "judge": "human", "judge_kind": "human", "backend": "argilla:curation/eval-ab", "swapped": False,
                     "verdict": "tie" if r["id"] == "q00" else truth, "votes": votes, "consistent": None,
                     "rationale": "clearer", "tokens": {"prompt": 0, "completion": 0}, "cost": 0.0,
                     "parse_failures": 0, "error": None})
    write_jsonl(tmp_path / "human.jsonl", rows)
    return llm, tmp_path / "human.jsonl"


def test_report_files_and_numbers(fake_openai, tmp_path, monkeypatch):
    llm, hum = _judgments(tmp_path, monkeypatch, fake_openai)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"name": "lima-demo", "counts": {"train": 1000}}))
    out = report.main(ReportArgs(judgments=[str(llm), str(hum)], out=str(tmp_path / "rep"), manifest=str(manifest)))
    for name in ("report.html", "report.md", "summary.json", "bars.png", "win_rates.png", "lengths.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    llm_r, hum_r = summary["results"]
    assert llm_r["kind"] == "llm" and hum_r["kind"] == "human"
    assert llm_r["n"] == N and llm_r["win"] + llm_r["tie"] + llm_r["loss"] == N
    assert 0 < llm_r["inconsistent"] == llm_r["prefers_first"]  # the fake's bias always favours the first shown
    assert llm_r["consistency"] == pytest.approx(1 - llm_r["inconsistent"] / N)
    assert llm_r["cost"] > 0 and llm_r["lc_length_coef"] > 0  # the fake prefers longer answers
    assert hum_r["win_rate"] == pytest.approx((7 + 0.5) / 10)
    assert set(llm_r["categories"]) == {"coding", "writing", "advice"}
    (agree,) = summary["agreements"]
    assert agree["n"] == 10 and agree["first"] == "human"
    prov = summary["provenance"]
    assert prov["data_manifest"]["summary"] == {"name": "lima-demo", "counts": {"train": 1000}}
    assert prov["systems"]["lima-7b"]["adapter"] == "runs/lima"
    assert prov["training_data"]["lima-7b"]["data_manifest_sha256"] == "ab12" * 16
    md = (out / "report.md").read_text()
    assert "![win / tie / loss](bars.png)" in md and "| lima-7b vs base-7b |" in md
    assert report.pct(llm_r["win_rate"]) in md
    html = (out / "report.html").read_text()
    assert "<b>this</b>" not in html and "&lt;b&gt;this&lt;/b&gt;" in html  # outputs are escaped
    assert "src=\"http" not in html and "<script" not in html  # self-contained
    assert "ab12" * 16 in html and prov["data_manifest"]["sha256"] in html


@pytest.mark.browser
def test_report_renders_in_chromium(fake_openai, tmp_path, monkeypatch, repo_root):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Chromium not installed: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    llm, hum = _judgments(tmp_path, monkeypatch, fake_openai)
    out = report.main(ReportArgs(judgments=[str(llm), str(hum)], out=str(tmp_path / "rep"), title="LIMA-7B vs its base"))
    summary = json.loads((out / "summary.json").read_text())
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                                     "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1200, "height": 1500})
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto((out / "report.html").as_uri())
        page.wait_for_load_state("load")
        for chart in ("#chart-bars", "#chart-win-rates", "#chart-lengths"):
            width = page.eval_on_selector(chart, "img => img.complete ? img.naturalWidth : 0")
            assert width > 300, f"{chart} did not render"
        table = page.inner_text("#results-table")
        for r in summary["results"]:
            row = page.inner_text(f"tr[data-key='{r['key']}']")
            assert report.pct(r["win_rate"]) in row
            assert f"{report.pct(r['wilson'][0])} – {report.pct(r['wilson'][1])}" in row
            assert report.pct(r["lc_win_rate"]) in row
        assert "LIMA-7B vs its base" in page.title()
        kappa = page.inner_text("#agreement-table .kappa")
        assert kappa == report.num(summary["agreements"][0]["kappa"])
        assert "lima-7b vs base-7b" in table
        assert all(u.startswith(("file:", "data:")) for u in requests), requests  # nothing fetched from the network
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=False)
        browser.close()
    assert shot.stat().st_size > 20_000
    # the README's picture: refreshed on request, so test runs leave the working tree clean
    docs_image = repo_root / "docs" / "images" / "report.png"
    if os.environ.get("UPDATE_DOCS_IMAGES") or not docs_image.exists():
        docs_image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, docs_image)


def test_report_says_what_each_system_is_and_flags_empty_and_cut_answers(tmp_path):
    """Each side's model, adapter and size are stated; empty answers and answers cut at max_new_tokens are counted."""
    rows = []
    for i in range(4):
        a_cfg = {"max_new_tokens": 64, "parameters": 134_515_008, "hit_max_new_tokens": i == 1}
        b_cfg = {"max_new_tokens": 64, "parameters": 134_515_008, "quantization": "nf4", "hit_max_new_tokens": False}
        rows.append({"id": f"q{i}", "category": "general", "prompt": f"Q{i}?", "judge": "lima-three-way",
                     "judge_kind": "llm", "backend": "transformers:smollm2-135m-instruct (constrained)",
                     "judge_model": {"kind": "transformers", "model": "smollm2-135m-instruct",
                                     "decoding": "constrained", "parameters": 134_515_008},
                     "a": {"generator": "lima-demo", "model": "smollm2-135m-instruct", "adapter": "runs/lima-demo",
                           "config": a_cfg},
                     "b": {"generator": "base", "model": "smollm2-135m-instruct", "adapter": None, "config": b_cfg},
                     "output_a": "" if i == 0 else f"A real answer {i}.", "output_b": f"Base answer {i}.",
                     "verdict": "win", "consistent": True, "orders": [], "tokens": {}, "cost": 0.0,
                     "parse_failures": 0, "error": None})
    write_jsonl(tmp_path / "j.jsonl", rows)
    out = report.main(ReportArgs(judgments=[str(tmp_path / "j.jsonl")], out=str(tmp_path / "rep")))
    (result,) = json.loads((out / "summary.json").read_text())["results"]
    a_note, b_note = result["system_notes"]
    assert "A = lima-demo: smollm2-135m-instruct + the adapter runs/lima-demo" in a_note and "134.5 M" in a_note
    assert "1 of 4 answers are EMPTY" in a_note and "1 of 4 answers stopped at max_new_tokens (64)" in a_note
    assert "B = base" in b_note and "NF4" in b_note and "EMPTY" not in b_note and "cut short" not in b_note
    judge = " ".join(result["judge_notes"])
    assert "134.5 M parameters" in judge and "close to noise" in judge  # the judge's size, and what it means
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "1 of 4 answers are EMPTY" in md and "1 of 4 answers are EMPTY" in html


@pytest.mark.parametrize("judged", [0, 1])
def test_report_with_fewer_than_two_verdicts(fake_openai, tmp_path, monkeypatch, judged):
    """One judged pair (or none) is a report with what there is, not a template crash (issue 12)."""
    llm, _ = _judgments(tmp_path, monkeypatch, fake_openai)
    rows = read_records(llm)[:2]
    rows[1].update(verdict=None, consistent=None, status="failed", error="ab: HTTP 400: bad request")
    if judged == 0:
        rows[0].update(verdict=None, consistent=None, status="failed", error="ab: HTTP 400: bad request")
    write_jsonl(tmp_path / "few.jsonl", rows)
    out = report.main(ReportArgs(judgments=[str(tmp_path / "few.jsonl")], out=str(tmp_path / "rep")))
    (r,) = json.loads((out / "summary.json").read_text())["results"]
    assert r["n"] == judged and r["lc_win_rate"] is None and r["lc_problem"]
    md = (out / "report.md").read_text()
    assert "2 pairs have no verdict" in md or "1 of 2 pairs have no verdict" in md
    assert (out / "report.html").is_file()


def _systems(tmp_path, names_lengths: dict, n: int = 40, empty: int = 0, truncated: int = 0, seed: int = 0):
    """generations.jsonl per system: answer lengths vary by prompt (so length can be controlled)."""
    import random

    rng = random.Random(seed)
    paths = {}
    for k, (name, base) in enumerate(names_lengths.items()):
        rows = []
        for i in range(n):
            words = max(1, base + rng.randint(-base // 2, base // 2))
            out = "" if (k == 0 and i < empty) else " ".join(f"w{i}" for _ in range(words))
            rows.append({"id": f"q{i:02d}", "prompt": f"Question {i}?", "category": ["a", "b"][i % 2], "output": out,
                         "generator": name, "model": name, "adapter": None,
                         "config": {"hit_max_new_tokens": k == 0 and empty <= i < empty + truncated}})
        paths[name] = tmp_path / f"{name}.jsonl"
        write_jsonl(paths[name], rows)
    return paths


def test_headline_sentence_and_its_warnings(fake_openai, tmp_path, monkeypatch):
    for k, v in fake_openai.env().items():
        monkeypatch.setenv(k, v)
    paths = _systems(tmp_path, {"cand": 12, "ref": 12}, n=20, empty=1, truncated=2)
    out = tmp_path / "j.jsonl"
    assert cli.main(["judge", "--judge", "mtbench", "--a", str(paths["cand"]), "--b", str(paths["ref"]),
                     "--out", str(out), "--no-cache", "--no-progress"]) == 0
    rep = report.main(ReportArgs(judgments=[str(out)], out=str(tmp_path / "rep")))
    (r,) = json.loads((rep / "summary.json").read_text())["results"]
    md = (rep / "report.md").read_text()
    head = md.split("## Headline", 1)[1].split("##", 1)[0]
    lo, hi = r["bootstrap"]
    assert (f"**cand vs ref (judge mtbench-pairwise (openai:fake-judge), 20 prompts): cand wins "
            f"{100 * r['win_rate']:.0f} % [{100 * lo:.0f}–{100 * hi:.0f}]") in head
    assert "position-consistent on 100 %" in head and ("significant (sign test p = " in head)
    if r["lc_win_rate"] is not None:
        assert f"length-controlled {100 * r['lc_win_rate']:.0f} %" in head
    else:
        assert "length cannot be controlled" in head
    for warning in ("cand gave 1 empty answer(s) out of 20", "cut at the token limit on 2 of 20 prompts",
                    "Only 20 prompts"):
        assert warning in head
    assert "paired-bootstrap intervals over prompts: the primary intervals" in head
    html = (rep / "report.html").read_text()
    assert 'class="sentence"' in html and "cand gave 1 empty answer(s)" in html


def test_no_winner_from_a_judge_that_cannot_be_trusted(fake_openai, tmp_path, monkeypatch):
    for k, v in fake_openai.env().items():
        monkeypatch.setenv(k, v)
    paths = _systems(tmp_path, {"cand": 30, "ref": 10}, n=12)
    fake_openai.position_bias = 1.0  # always picks the answer shown first
    out = tmp_path / "j.jsonl"
    assert cli.main(["judge", "--judge", "mtbench", "--a", str(paths["cand"]), "--b", str(paths["ref"]),
                     "--out", str(out), "--no-cache", "--no-progress"]) == 0
    rep = report.main(ReportArgs(judgments=[str(out)], out=str(tmp_path / "rep")))
    (r,) = json.loads((rep / "summary.json").read_text())["results"]
    assert r["trust"]["trusted"] is False and r["consistency"] == 0
    head = (rep / "report.md").read_text().split("## Headline", 1)[1].split("##", 1)[0]
    assert "no winner is named: this judge cannot be trusted here" in head
    assert "same verdict in both orders on only 0 % of the pairs and picked a position rather than an answer on 12" in head
    assert "cand wins" not in head


def test_headline_reports_the_judges_agreement_with_humans(fake_openai, tmp_path, monkeypatch):
    llm, hum = _judgments(tmp_path, monkeypatch, fake_openai)
    out = report.main(ReportArgs(judgments=[str(llm), str(hum)], out=str(tmp_path / "rep")))
    summary = json.loads((out / "summary.json").read_text())
    llm_r, hum_r = summary["results"]
    (agree,) = summary["agreements"]
    assert llm_r["human_agreement"]["kappa"] == agree["kappa"]
    head = (out / "report.md").read_text().split("## Headline", 1)[1].split("##", 1)[0]
    assert f"agrees with humans at kappa {agree['kappa']:.2f} on 10 pairs" in head
    assert "human vs" not in head and "2 human annotators, blind A/B" in head


def test_report_modules_doctests():
    import doctest

    from eval import grades, headline, leaderboard

    for mod in (headline, grades, leaderboard):
        result = doctest.testmod(mod)
        assert result.attempted > 0 and result.failed == 0, mod.__name__
