"""A curator in the real Argilla UI (headless Chromium).

- A dataset made by hand: sign in, rate a record, submit; the SDK then reads that response. The UI's queue,
  its counts and its record order come from the SQL engine.
- The dataset `python -m curation push` makes from the sample pool: the edit box starts with the answer,
  "Find similar" names the record by its text, and Argilla's own Discard button is a discard vote in `pull`.
  Its screenshot is the README's (set CURATION_UPDATE_SCREENSHOT=1 to refresh docs/images/curator-ui.png).
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / "curator-ui.png"

PAIRS = [
    ("How do I reverse a list in Python?",
     "Use `xs[::-1]` for a reversed copy, `xs.reverse()` to reverse in place, or `reversed(xs)` for an iterator."),
    ("What is the capital of Australia?", "Canberra. Sydney is the largest city, but the capital is Canberra."),
    ("Explain what a hash table is in one sentence.",
     "A hash table stores key-value pairs in an array, using a hash of each key to find its slot in constant "
     "average time."),
]


@pytest.fixture
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian: `apt-get install -y chromium`); the browser test needs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu",
                                                               "--disable-background-networking"])
        try:
            yield b
        finally:
            b.close()


def test_curator_rates_a_record_in_the_ui_and_the_sdk_reads_it(argilla_server, browser, tmp_path):
    import argilla as rg

    from curation.server.users import add_user

    owner = argilla_server.client()
    username = f"ui-{uuid.uuid4().hex[:6]}"
    curator, _, password = add_user(owner, username, workspace=argilla_server.workspace_name)
    name = f"curate-{uuid.uuid4().hex[:6]}"
    settings = rg.Settings(
        guidelines="Rate how good the response is as a training example; keep only excellent ones.",
        fields=[rg.TextField(name="prompt"), rg.TextField(name="response", use_markdown=True)],
        questions=[rg.RatingQuestion(name="quality", title="Quality of the response", values=[1, 2, 3, 4, 5]),
                   rg.LabelQuestion(name="keep", title="Keep for training?", labels=["yes", "no"])],
        metadata=[rg.TermsMetadataProperty(name="source"), rg.IntegerMetadataProperty(name="length")],
        vectors=[rg.VectorField(name="emb", dimensions=2)],
    )
    ds = rg.Dataset(name=name, workspace=argilla_server.workspace_name, settings=settings, client=owner).create()
    ds.records.log([
        rg.Record(id=f"p{i}", fields={"prompt": p, "response": r}, metadata={"source": "forum", "length": len(r)},
                  vectors={"emb": [1.0, i / 10]},
                  suggestions=[rg.Suggestion("quality", 4, score=0.8, agent="judge-v1")])
        for i, (p, r) in enumerate(PAIRS)
    ])

    page = browser.new_page(viewport={"width": 1400, "height": 860})
    page.set_default_timeout(30_000)
    page.goto(argilla_server.api_url)
    page.wait_for_url("**/sign-in**")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(name).first.click()
    page.wait_for_url("**/annotation-mode**")
    page.get_by_text(f"1 of {len(PAIRS)}").wait_for()  # the pending queue, counted by the SQL engine

    shown = next(p for p, _ in PAIRS if page.get_by_text(p).count() > 0)
    page.locator("label[for=quality_5]").click()
    page.locator("label[for=keep_yes]").click()
    submit = page.locator("button.button--submit")
    assert submit.is_enabled()
    submit.click()
    page.get_by_text(shown).wait_for(state="hidden")  # the queue moved on to the next pending record

    def answered():
        found = {}
        for record in ds.records(with_responses=True):
            for question in ("quality", "keep"):
                for response in record.responses[question] or []:
                    if response.user_id == curator.id:
                        found.setdefault(record.fields["prompt"], {})[question] = (response.value,
                                                                                   getattr(response.status, "value", response.status))
        return found

    deadline = time.monotonic() + 15
    while not answered() and time.monotonic() < deadline:
        time.sleep(0.3)
    assert answered() == {shown: {"quality": (5, "submitted"), "keep": ("yes", "submitted")}}
    pending = ds.records(query=rg.Query(filter=rg.Filter(("response.status", "==", "submitted"))))
    assert [r.fields["prompt"] for r in pending] == [shown]
    ds.delete()


def _visible(markdown: str) -> str:
    """The start of a Markdown text's first line as the UI shows it (markup dropped)."""
    line = next(x for x in markdown.splitlines() if x.strip())
    return " ".join(line.replace("**", "").replace("*", "").replace("`", "").lstrip("#- ").split())[:50]


def test_curator_in_the_dataset_push_made(argilla_server, browser, tmp_path):
    """The real pipeline's dataset: ingest and score two files of the sample pool, push, curate in the UI."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_curation_pipeline import ok

    from curation.server.users import add_user

    pool = Path(__file__).resolve().parent.parent / "data" / "sample-pool"
    ws = tmp_path / "ws"
    env = {"ARGILLA_API_URL": argilla_server.api_url, "ARGILLA_API_KEY": argilla_server.api_key}
    name = f"lima-curated-{uuid.uuid4().hex[:6]}"
    ok("ingest", "--workspace", ws, pool / "handwritten.lima.jsonl", pool / "forum-answers.parquet")
    ok("score", "--workspace", ws)
    ok("push", "--workspace", ws, "--budget", 4, "--push.dataset", name, env=env)
    owner = argilla_server.client()
    ds = owner.datasets(name=name, workspace=argilla_server.workspace_name)
    by_prompt = {r.fields["prompt"]: r for r in ds.records()}
    username = f"ui-{uuid.uuid4().hex[:6]}"
    _, _, password = add_user(owner, username, workspace=argilla_server.workspace_name)

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(30_000)
    page.goto(argilla_server.api_url)
    page.wait_for_url("**/sign-in**")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(name).first.click()
    page.wait_for_url("**/annotation-mode**")
    page.get_by_text(f"1 of {len(by_prompt)}").wait_for()
    shown = next(p for p in by_prompt if page.get_by_text(_visible(p)).count() > 0)
    record = by_prompt[shown]
    # the edit box is pre-filled with the answer: its first sentence shows twice, in the field and in the box
    sentence = _visible(next(x for x in record.fields["response"].splitlines() if len(x) > 40))[:40]
    page.get_by_text(sentence).nth(1).wait_for()
    page.screenshot(path=str(tmp_path / "curator-ui.png"))
    if os.environ.get("CURATION_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "curator-ui.png", SCREENSHOT)

    # "Find similar" names the record by its text
    page.get_by_text("Find similar").first.click()
    chips = page.locator(".similarity-reference__preview__text")
    chips.first.wait_for()
    names = chips.all_inner_texts()
    assert not any("[object Object]" in n for n in names), names
    assert names[0].startswith(("Prompt: ", "Conversation: ")) and " ".join(shown.split())[:30] in names[0], names
    page.locator(".similarity-reference__preview__button-close").click()
    page.get_by_text(f"1 of {len(by_prompt)}").wait_for()

    # Argilla's own Discard button, on a record whose pre-filled suggestion says keep
    shown = next(p for p in by_prompt if page.get_by_text(_visible(p)).count() > 0)
    page.locator("button.button--discard").click()
    page.get_by_text(_visible(shown)).first.wait_for(state="hidden")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        statuses = [str(getattr(m.status, "value", m.status)) for r in ds.records(with_responses=True)
                    for m in r._model.responses or []]
        if "discarded" in statuses:
            break
        time.sleep(0.3)
    out = ok("pull", "--workspace", ws, "--push.dataset", name, env=env)
    assert "1 discarded in the UI" in out
    pulled = json.loads((ws / "pull.json").read_text())["counts"]
    assert pulled["discarded_in_ui"] == 1 and pulled["discard"] == 1 and pulled["keep"] == 0
    ds.delete()
