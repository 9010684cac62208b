"""push and pull: the Argilla dataset made for curation.

push: the shortlist (the ``signals`` strategy at ``push.shortlist_factor x
select.budget``, so one record per duplicate group and nothing the hard
filters exclude) becomes records of an Argilla dataset:

- fields ``prompt`` (a text field; a conversation's turns under bold role labels) and ``response``;
- questions ``quality`` (rating 1-5), ``keep`` (keep/discard), ``edited_response``
  (optional text, pre-filled with the answer by a suggestion) and ``category`` (optional label);
- guidelines stating the selection criteria;
- the signals as suggestions (``keep`` and ``quality`` with their agent) and as
  metadata (filterable and sortable in the UI);
- the example embedding as the vector ``embedding`` ("find similar");
- ``TaskDistribution(min_submitted=push.overlap)``.

Records carry the candidate's id, so pushing again updates them (Argilla's
bulk upsert by id); curators' answers are never removed by a re-push.

Argilla creates a dataset as a draft, adds its fields, questions, metadata and
vectors one request at a time, then publishes it; a push killed in between
leaves a draft without records. Its guidelines carry ``PUSH_MARKER`` from the
first request on, so ``push --force`` recognises such a draft as its own,
deletes it and creates the dataset again (and says so).

pull: the submitted answers and the UI's discards → ``decisions.parquet`` (one
decision per record, see :mod:`curation.aggregate`), ``disputed.jsonl`` (prompt,
answer, each curator's vote, a UI link) and ``pull.json`` with the agreement per
question.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from curation.aggregate import Answer, NothingAnswered, Suggestion, same_text, agreement, decide
from curation.config import CurationConfig
from contract.io import sha256_file, write_jsonl
from curation.score import SIGNALS_AGENT, judge_agent
from curation.workspace import Workspace, fingerprint, now, write_parquet

QUESTIONS = ("quality", "keep", "edited_response", "category")

GUIDELINES = """\
# Curating a LIMA-style set

We are choosing about {budget} excellent examples to teach a model how to
answer, following LIMA ("Less Is More for Alignment"): a small set chosen by
hand for quality and diversity. For each record, read the prompt and the
response, then answer:

1. **quality** (1-5): 1 unusable, 2 poor, 3 acceptable, 4 good, 5 a model answer.
2. **keep** or **discard**: keep only what you would be glad to see the model imitate.
3. **edited_response** (optional): it starts with the response; fix a small
   flaw in place (a first-person aside, a stray reference, boilerplate)
   instead of discarding a good answer. Left as it is, it is not an edit.
4. **category** (optional): what kind of request this is.

## Keep an answer when it

- does what the prompt asks, completely and correctly, and gets to the point;
- reads like one helpful AI assistant: clear, well organised (paragraphs,
  lists, code blocks where they help), a consistent tone;
- stands on its own: no first-person anecdotes ("I once…", "my wife…"), no
  references to other answers, comments, edits or votes, no "this article" or
  links in place of content;
- is long enough to be useful (LIMA's answers mostly ran {lo:,}-{hi:,}
  characters) without padding.

## Discard an answer when it

- refuses without need, moralises, or says "As an AI language model…";
- is wrong, off topic, truncated, or mostly boilerplate;
- duplicates another record (near-identical text) or answers an evaluation prompt.

The suggestions (agent `{agent}`) come from automatic signals
(length in the LIMA band, structure, LIMA's filters{judge}); the metadata
lets you filter and sort by them, and "find similar" uses the embedding.
Several curators see each record ({overlap} answers wanted): decisions are
the majority vote, ratings are averaged, and disagreements are listed for
review.
"""
PUSH_MARKER = "<!-- made by curated-align: python -m curation push -->"  # in the guidelines; hidden by the UI


# --------------------------------------------------------------------------- calls


def argilla_call(fn: Callable[[], Any], what: str, cfg: CurationConfig, url: str = "") -> Any:
    """Call ``fn`` once (the Argilla client retries failed connections itself, ``push.retries`` attempts with
    backoff); a server that still does not answer, or answers 5xx, becomes a ConnectionError saying what was
    being done."""
    import httpx
    from argilla._exceptions import ArgillaAPIError

    try:
        return fn()
    except (httpx.TransportError, ConnectionError) as err:
        last: BaseException = err
    except ArgillaAPIError as err:
        if getattr(err, "status_code", 500) < 500:
            raise
        last = err
    raise ConnectionError(f"Argilla {('at ' + url + ' ') if url else ''}did not answer while trying to {what} "
                          f"({cfg.push.retries} attempts with backoff; last error: {type(last).__name__}: {last})")


def connect(cfg: CurationConfig, ws: Workspace):
    from contract.argilla import connect as _connect
    from contract.argilla import resolve

    url, _, _ = resolve(ws.root, api_url=cfg.push.api_url or None)  # no server configured: fails at once
    try:
        return _connect(ws.root, api_url=cfg.push.api_url or None, retries=cfg.push.retries - 1)
    except ConnectionError as err:
        raise ConnectionError(f"Argilla at {url} did not answer while trying to connect ({cfg.push.retries} "
                              f"attempts with backoff; {err})") from None


def argilla_workspace(client, cfg: CurationConfig) -> str:
    if cfg.push.argilla_workspace:
        return cfg.push.argilla_workspace
    try:
        from curation.server.workspace import DEFAULT_ARGILLA_WORKSPACE
    except ImportError:  # pragma: no cover
        DEFAULT_ARGILLA_WORKSPACE = "curation"
    names = [w.name for w in client.workspaces.list()]
    if DEFAULT_ARGILLA_WORKSPACE in names:
        return DEFAULT_ARGILLA_WORKSPACE
    if not names:
        raise RuntimeError("the Argilla server has no workspace: create one or set push.argilla_workspace")
    return names[0]


# --------------------------------------------------------------------------- shortlist


def shortlist(cfg: CurationConfig, ws: Workspace) -> tuple[list[dict], dict]:
    """The records for curators, best first, with their AI suggestions; and how many were asked for and why
    fewer were found (``{"asked", "found", "why"}``)."""
    import copy

    from curation.select import Pool, select_strategy

    size = cfg.push.shortlist_size or int(math.ceil(cfg.push.shortlist_factor * cfg.select.budget))
    c2 = copy.deepcopy(cfg)
    c2.select.budget = size
    c2.select.quota_field = ""
    pool = Pool(ws, c2)
    res = select_strategy("signals", pool, c2)
    sig = pq.read_table(ws.signals, columns=["id", "suggested_keep", "suggested_rating", "rating", "category",
                                             "quality"]).to_pylist()
    out = []
    for i in res["chosen"]:
        s = sig[i]
        cat = s["category"] if s["category"] in cfg.push.categories else None
        has_rating = s["rating"] is not None and not (isinstance(s["rating"], float) and math.isnan(s["rating"]))
        out.append({"id": s["id"], "row": int(i), "suggested_keep": bool(s["suggested_keep"]),
                    "suggested_rating": int(s["suggested_rating"]), "suggested_category": cat,
                    "quality": float(s["quality"]),
                    "rating_agent": judge_agent(cfg) if has_rating else SIGNALS_AGENT})
    return out, {"asked": size, "found": len(out), "why": _why_fewer(pool, c2, res) if len(out) < size else ""}


def _why_fewer(pool, cfg: CurationConfig, res: dict) -> str:
    """Where the candidates went: the hard filters, duplicates, the quality floor and the similarity ceiling."""
    col = pool.col
    excluded: dict[str, int] = {}
    for r in col["exclude_reason"]:
        if r:
            key = "language" if str(r).startswith("language:") else str(r)
            excluded[key] = excluded.get(key, 0) + 1
    eligible = col["eligible"].astype(bool)
    dups = int((eligible & ~col["representative"].astype(bool)).sum())
    low = int((pool.allowed & (col["quality"] < cfg.select.min_quality)).sum())
    parts = [f"{pool.n} candidates"]
    if excluded:
        parts.append("excluded by the hard filters: " + ", ".join(f"{k} {v}" for k, v in sorted(excluded.items())))
    if dups:
        parts.append(f"{dups} other members of duplicate groups")
    if low:
        parts.append(f"{low} below select.min_quality {cfg.select.min_quality}")
    if res["skipped"].get("too_similar"):
        parts.append(f"{res['skipped']['too_similar']} too similar to an earlier pick "
                     f"(select.similarity_ceiling {cfg.select.similarity_ceiling})")
    if res["skipped"].get("quota"):
        parts.append(f"{res['skipped']['quota']} over a quota")
    return f"only {len(res['chosen'])} candidates qualify: " + "; ".join(parts)


# --------------------------------------------------------------------------- push


def _settings(cfg: CurationConfig, chat: bool, dims: int | None):
    import argilla as rg

    s = cfg.score
    # a text field, also for conversations (rendered as Markdown, one bold role label per turn): the UI names a
    # record by its first two fields ("Find similar", the similarity reference), and shows a ChatField there as
    # "[object Object]"
    prompt = rg.TextField(name="prompt", title="Conversation" if chat else "Prompt", use_markdown=True, required=True)
    guidelines = GUIDELINES.format(budget=cfg.select.budget, lo=s.lima_min_chars, hi=s.lima_max_chars,
                                   agent=SIGNALS_AGENT, overlap=cfg.push.overlap,
                                   judge=f" and the LLM judge `{s.judge}`" if s.judge else "")
    guidelines += f"\n{PUSH_MARKER}\n"
    metadata = [
        rg.TermsMetadataProperty(name="source", title="Source"),
        rg.TermsMetadataProperty(name="language", title="Language"),
        rg.TermsMetadataProperty(name="cluster", title="Embedding cluster"),
        rg.TermsMetadataProperty(name="category_hint", title="Category (from the pool)"),
        rg.FloatMetadataProperty(name="signals_quality", title="Signals quality (0-1)"),
        rg.FloatMetadataProperty(name="llm_rating", title="LLM rating (1-5)"),
        rg.IntegerMetadataProperty(name="response_chars", title="Response characters"),
        rg.IntegerMetadataProperty(name="response_tokens", title="Response tokens"),
        rg.IntegerMetadataProperty(name="prompt_chars", title="Prompt characters"),
        rg.IntegerMetadataProperty(name="list_items", title="List items"),
        rg.IntegerMetadataProperty(name="code_blocks", title="Code blocks"),
        rg.IntegerMetadataProperty(name="first_person", title="First-person words"),
        rg.IntegerMetadataProperty(name="boilerplate", title="Boilerplate phrases"),
        rg.IntegerMetadataProperty(name="turns", title="Turns"),
        rg.FloatMetadataProperty(name="eval_similarity", title="Max similarity to an eval prompt"),
    ]
    return rg.Settings(
        guidelines=guidelines,
        fields=[prompt, rg.TextField(name="response", title="Response", use_markdown=True, required=True)],
        questions=[
            rg.RatingQuestion(name="quality", values=[1, 2, 3, 4, 5], title="Quality (1 = unusable, 5 = a model answer)",
                              required=True),
            rg.LabelQuestion(name="keep", labels={"keep": "Keep", "discard": "Discard"},
                             title="Keep this example in the set?", required=True),
            rg.TextQuestion(name="edited_response", title="Edited response (pre-filled with the response: fix small "
                                                          "flaws in place; left as it is, it is not an edit)",
                            use_markdown=True, required=False),
            rg.LabelQuestion(name="category", labels=list(cfg.push.categories), title="Category", required=False),
        ],
        metadata=metadata,
        vectors=[rg.VectorField(name="embedding", dimensions=dims, title="Example embedding")] if dims else [],
        distribution=rg.TaskDistribution(min_submitted=cfg.push.overlap),
    )


ORIGINAL_AGENT = "original-response"
_ROLE_LABEL = {"system": "System", "user": "User", "assistant": "Assistant"}


def render_prompt(turns: list[dict]) -> str:
    """The turns before the answer as the prompt field: the user's text, or, for a conversation (several turns
    or a system prompt), every turn under a bold role label, the way a ChatField would show them.

    >>> render_prompt([{"role": "user", "content": "Hi"}])
    'Hi'
    >>> print(render_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]))
    **System:** Be brief.
    <BLANKLINE>
    **User:** Hi
    """
    if len(turns) == 1 and turns[0]["role"] == "user":
        return turns[0]["content"]
    return "\n\n".join(f"**{_ROLE_LABEL.get(t['role'], t['role'])}:** {t['content']}" for t in turns)


def _num(v) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


def _records(cfg: CurationConfig, ws: Workspace, items: list[dict], chat: bool, with_vectors: bool) -> list:
    import argilla as rg

    cand = pq.read_table(ws.candidates, columns=["id", "messages"]).to_pylist()
    sig = pq.read_table(ws.signals).to_pylist()
    vecs = np.load(ws.embeddings, mmap_mode="r") if with_vectors else None
    out = []
    for it in items:
        i = it["row"]
        c, s = cand[i], sig[i]
        assert c["id"] == it["id"] == s["id"]
        msgs = c["messages"]
        # a dataset made before the prompt became a text field keeps its ChatField
        prompt: Any = ([{"role": t["role"], "content": t["content"]} for t in msgs[:-1]] if chat
                       else render_prompt(msgs[:-1]))
        meta = {"source": s["source"], "language": s["language"], "cluster": str(s["cluster"]),
                "category_hint": s["category"] or None, "signals_quality": round(float(s["quality"]), 4),
                "llm_rating": _num(s["rating"]), "response_chars": int(s["response_chars"]),
                "response_tokens": int(s["response_tokens"]), "prompt_chars": int(s["prompt_chars"]),
                "list_items": int(s["list_items"]), "code_blocks": int(s["code_blocks"]),
                "first_person": int(s["first_person"]), "boilerplate": int(s["boilerplate"]),
                "turns": int(s["n_turns"]), "eval_similarity": round(float(s["contam_embedding"]), 4)}
        meta = {k: v for k, v in meta.items() if v is not None}
        suggestions = [
            rg.Suggestion("keep", "keep" if it["suggested_keep"] else "discard", agent=SIGNALS_AGENT,
                          score=round(min(max(it["quality"], 0.0), 1.0), 4)),
            rg.Suggestion("quality", it["suggested_rating"], agent=it["rating_agent"]),
        ]
        if it["suggested_category"]:
            suggestions.append(rg.Suggestion("category", it["suggested_category"], agent="pool-metadata"))
        # pre-fills the edit box with the answer, so fixing one word is one keystroke, not a retyped answer
        suggestions.append(rg.Suggestion("edited_response", msgs[-1]["content"], agent=ORIGINAL_AGENT))
        vectors = {"embedding": [float(x) for x in vecs[i]]} if vecs is not None else None
        out.append(rg.Record(id=c["id"], fields={"prompt": prompt, "response": msgs[-1]["content"]}, metadata=meta,
                             suggestions=suggestions, **({"vectors": vectors} if vectors else {})))
    return out


def push(cfg: CurationConfig, ws: Workspace, *, force: bool = False) -> dict:
    import argilla as rg
    from argilla._exceptions import ArgillaError

    ws.check_fresh(_push_inputs(ws), "push")
    items, found = shortlist(cfg, ws)
    if not items:
        raise RuntimeError(f"the shortlist is empty: {found['why']}")
    dims = None
    if ws.embeddings.exists():
        dims = int(np.load(ws.embeddings, mmap_mode="r").shape[1])
    chat_wanted = _needs_chat(ws, items)
    fp = fingerprint("push", sha256_file(ws.signals), sha256_file(ws.candidates), cfg.section_dict("push"),
                     cfg.select.budget, cfg.dataset_name, [it["id"] for it in items], cfg.score.judge)
    client = connect(cfg, ws)
    url = client.api_url
    ws_name = argilla_call(lambda: argilla_workspace(client, cfg), "list workspaces", cfg, url)
    dataset = argilla_call(lambda: client.datasets(name=cfg.dataset_name, workspace=ws_name), "look up the dataset",
                           cfg, url)
    prev = ws.read_report("push")
    if (dataset is not None and prev and prev.get("fingerprint") == fp and ws.shortlist.exists() and not force
            and prev.get("dataset_id") == str(dataset.id)):
        return {**prev, "skipped": True}
    created = recovered = False
    if dataset is not None and dataset._model.status == "draft":
        _check_draft(dataset, cfg, ws, force)  # raises unless it is our own unfinished draft and --force
        argilla_call(dataset.delete, "delete the unfinished draft dataset", cfg, url)
        dataset, recovered = None, True
    if dataset is None:
        settings = _settings(cfg, chat_wanted, dims)
        dataset = rg.Dataset(name=cfg.dataset_name, workspace=ws_name, settings=settings, client=client)
        try:
            argilla_call(dataset.create, "create the dataset", cfg, url)
        except ArgillaError as err:
            cause = f" ({err.__cause__})" if err.__cause__ else ""
            raise RuntimeError(f"push: Argilla refused to create dataset {cfg.dataset_name!r}: {err}{cause}") from None
        created = True
    else:
        _check_compatible(dataset, cfg)
    chat = dataset.settings.fields["prompt"].type == "chat"
    has_vectors = bool(dims) and "embedding" in [v.name for v in dataset.settings.vectors]
    records = _records(cfg, ws, items, chat, has_vectors)
    bs = max(1, cfg.push.batch_size)
    for start in tqdm(range(0, len(records), bs), desc="push: records", unit="batch"):
        batch = records[start:start + bs]
        argilla_call(lambda b=batch: dataset.records.log(b, batch_size=len(b)), "log records", cfg, url)
    n_remote = argilla_call(lambda: _count_records(dataset), "count records", cfg, url)
    write_jsonl(ws.shortlist, ({k: v for k, v in it.items() if k != "row"} for it in items))
    report = {
        "step": "push", "fingerprint": fp, "finished_at": now(),
        "inputs": ws.hashes(_push_inputs(ws)), "outputs": ws.hashes([ws.shortlist]),
        "api_url": url, "argilla_workspace": ws_name,
        "dataset": cfg.dataset_name, "dataset_id": str(dataset.id), "created": created, "records": len(items),
        "asked": found["asked"], "why_fewer": found["why"],
        "records_on_server": n_remote, "overlap": cfg.push.overlap, "prompt_field": "chat" if chat else "text",
        "recovered_draft": recovered,
        "vectors": has_vectors, "ui": f"{url}/dataset/{dataset.id}/annotation-mode",
    }
    ws.write_report("push", report)
    return report


def _push_inputs(ws: Workspace) -> list:
    return [p for p in (ws.signals, ws.candidates, ws.embeddings) if p == ws.signals or p.exists()]


def _count_records(dataset) -> int:
    return sum(1 for _ in dataset.records(with_suggestions=False, with_responses=False))


def _needs_chat(ws: Workspace, items: list[dict]) -> bool:
    rows = [it["row"] for it in items]
    n_turns = pq.read_table(ws.signals, columns=["n_turns"]).column("n_turns").to_numpy()
    return bool((n_turns[rows] != 2).any())


def _check_draft(dataset, cfg: CurationConfig, ws: Workspace, force: bool) -> None:
    """A draft (never published, so without records or answers) may be replaced by --force only if push made it."""
    ours = PUSH_MARKER in (dataset.settings.guidelines or "") or (dataset.settings.guidelines or "").startswith(
        GUIDELINES.split("\n", 1)[0])  # drafts left by versions before the marker
    if not ours:
        raise RuntimeError(f"Argilla dataset {cfg.dataset_name!r} is an unpublished draft that `curation push` did "
                           "not make; finish or delete it in Argilla, or choose another name with --push.dataset")
    if not force:
        raise RuntimeError(f"Argilla dataset {cfg.dataset_name!r} is an unfinished draft left by an interrupted "
                           "`curation push` (it has no records yet); run `python -m curation push --force "
                           f"--workspace {ws.root}` to delete it and create the dataset again")


def _check_compatible(dataset, cfg: CurationConfig) -> None:
    have = {q.name for q in dataset.settings.questions}
    fields = {f.name for f in dataset.settings.fields}
    missing = [q for q in QUESTIONS if q not in have] + [f for f in ("prompt", "response") if f not in fields]
    if missing:
        raise RuntimeError(f"Argilla dataset {cfg.dataset_name!r} exists but was not made by `curation push` "
                           f"(missing {', '.join(missing)}); choose another name with --push.dataset")


def push_summary(report: dict) -> str:
    state = "up to date" if report.get("skipped") else ("created" if report["created"] else "updated")
    lines = [("push: found the unfinished draft of an interrupted push (no records): deleted it and created "
              "the dataset again")] if report.get("recovered_draft") else []
    lines += [f"push: {report['records']} records in Argilla dataset {report['dataset']!r} "
              f"(workspace {report['argilla_workspace']}, {state}; {report['records_on_server']} on the server, "
             f"{report['overlap']} answers wanted per record)"]
    if report.get("why_fewer"):
        lines.append(f"  {report['records']} of the {report['asked']} asked for (push.shortlist_factor x "
                     f"select.budget, or push.shortlist_size): {report['why_fewer']}")
    lines.append(f"  curate at {report['ui']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- pull


def _suggestions(ws: Workspace) -> dict[str, Suggestion]:
    out = {}
    for line in ws.shortlist.read_text(encoding="utf-8").splitlines():
        if line.strip():
            it = json.loads(line)
            out[it["id"]] = Suggestion(keep=it["suggested_keep"], rating=it["suggested_rating"],
                                       category=it["suggested_category"], agent=it["rating_agent"])
    return out


def fetch_answers(cfg: CurationConfig, ws: Workspace) -> tuple[dict[str, list[Answer]], dict, str]:
    """Submitted answers per record id from the Argilla dataset."""
    client = connect(cfg, ws)
    url = client.api_url
    push_report = ws.read_report("push") or {}
    ws_name = push_report.get("argilla_workspace") or argilla_call(lambda: argilla_workspace(client, cfg),
                                                                   "list workspaces", cfg, url)
    dataset = argilla_call(lambda: client.datasets(name=cfg.dataset_name, workspace=ws_name), "look up the dataset",
                           cfg, url)
    if dataset is None:
        raise RuntimeError(f"Argilla dataset {cfg.dataset_name!r} not found in workspace {ws_name!r} at {url}: run "
                           f"`python -m curation push --workspace {ws.root}` first")
    names: dict[str, str] = {}

    def username(user_id) -> str:
        key = str(user_id)
        if key not in names:
            user = client.users(id=user_id)
            names[key] = user.username if user is not None else key
        return names[key]

    has_vectors = "embedding" in [v.name for v in dataset.settings.vectors]
    links: dict[str, str] = {}
    drafts = 0

    def collect():
        nonlocal drafts
        answers: dict[str, list[Answer]] = {}
        for record in tqdm(dataset.records(with_responses=True, with_suggestions=False), desc="pull: records",
                           unit="rec"):
            rid = str(record.id)
            links[rid] = record_link(url, str(dataset.id), str(record._server_id), has_vectors)
            got = []
            # the raw responses: the SDK's record.responses drops a response without values, which is what
            # Argilla's own Discard button leaves
            for model in record._model.responses or []:
                status = str(getattr(model.status, "value", model.status))
                if status == "draft":
                    drafts += 1
                    continue
                a = Answer(user=username(model.user_id))
                if status == "discarded":  # the UI's Discard: a discard vote, whatever was pre-filled
                    a.keep, a.discarded_in_ui = "discard", True
                    got.append(a)
                    continue
                if status != "submitted":
                    continue
                values = {k: (v or {}).get("value") for k, v in (model.values or {}).items()}
                a.keep = values.get("keep")
                a.rating = int(values["quality"]) if values.get("quality") is not None else None
                a.edited_response = values.get("edited_response")
                a.category = values.get("category")
                got.append(a)
            answers[rid] = got
        return answers

    answers = argilla_call(collect, "read records and responses", cfg, url)
    info = {"api_url": url, "argilla_workspace": ws_name, "dataset": cfg.dataset_name, "dataset_id": str(dataset.id),
            "links": links, "drafts": drafts}
    return answers, info, url


def record_link(api_url: str, dataset_id: str, record_server_id: str, has_vectors: bool) -> str:
    """A link that opens the record in the Argilla UI: the similarity view with the record as its reference
    (its own answers under "submitted"); the dataset's annotation page where there are no vectors."""
    base = f"{api_url}/dataset/{dataset_id}/annotation-mode"
    if not has_vectors:
        return base
    return f"{base}?similarity=record.{record_server_id}.vector.embedding.limit.10.order.most&status=submitted"


def pull(cfg: CurationConfig, ws: Workspace, *, force: bool = False) -> dict:
    ws.check_fresh([ws.name(ws.shortlist)], "pull")
    answers, info, url = fetch_answers(cfg, ws)
    return _decide_and_write(cfg, ws, answers, info, force=force)


def decide_offline(cfg: CurationConfig, ws: Workspace, *, force: bool = False) -> dict:
    """Unattended decisions without a server: the AI suggestions decide the whole shortlist."""
    ws.check_fresh(_push_inputs(ws), "pull")
    items, found = shortlist(cfg, ws)
    write_jsonl(ws.shortlist, ({k: v for k, v in it.items() if k != "row"} for it in items))
    ws.write_report("push", {"step": "push", "offline": True, "finished_at": now(), "records": len(items),
                             "asked": found["asked"], "why_fewer": found["why"],
                             "inputs": ws.hashes(_push_inputs(ws)), "outputs": ws.hashes([ws.shortlist])})
    return _decide_and_write(cfg, ws, {it["id"]: [] for it in items}, {"api_url": None, "dataset": None},
                             force=force)


def _decide_and_write(cfg: CurationConfig, ws: Workspace, answers: dict[str, list[Answer]], info: dict, *,
                      force: bool) -> dict:
    p = cfg.pull
    suggestions = _suggestions(ws)
    n_answered = sum(1 for a in answers.values() if a)
    if n_answered == 0 and not p.unattended:
        where = f"Argilla dataset {info['dataset']!r} at {info['api_url']}" if info.get("api_url") else "the shortlist"
        raise NothingAnswered(
            f"pull: nobody has answered yet: 0 of the {len(answers)} records of {where} have a submitted answer. "
            "Curators submit answers in the Argilla UI; or run `python -m curation pull --unattended` to let the "
            "AI suggestions decide where no curator answered. Nothing was written.")
    links = info.pop("links", {})
    drafts = info.pop("drafts", 0)
    canon = {rid: sorted([a.__dict__ for a in ans], key=lambda d: d["user"]) for rid, ans in answers.items()}
    fp = fingerprint("pull", canon, cfg.section_dict("pull"), sha256_file(ws.shortlist), cfg.push.categories)
    done = ws.up_to_date("pull", fp, [ws.decisions])
    if done and not force:
        return {**done, "skipped": True}
    originals = _responses(ws, set(answers))
    decisions = []
    for rid in sorted(answers):
        decisions.append(decide(rid, answers[rid], originals.get(rid, ""), suggestions.get(rid),
                                unattended=p.unattended, tie_keep_min_rating=p.tie_keep_min_rating,
                                dispute_rating_spread=p.dispute_rating_spread, categories=list(cfg.push.categories)))
    unknown = [rid for rid in answers if rid not in suggestions]
    rows = [d.to_row() for d in decisions if d.decision is not None]
    schema = pa.schema([("id", pa.string()), ("decision", pa.string()), ("decided_by", pa.string()),
                        ("n_answers", pa.int32()), ("keep_votes", pa.int32()), ("discard_votes", pa.int32()),
                        ("ratings", pa.list_(pa.int32())), ("mean_rating", pa.float64()),
                        ("edited_response", pa.string()), ("edit_by", pa.string()), ("category", pa.string()),
                        ("users", pa.list_(pa.string())), ("tie", pa.bool_()), ("disputed", pa.bool_()),
                        ("dispute_reason", pa.string())])
    table = pa.Table.from_pylist(rows, schema=schema)
    disputed = _disputes([d for d in decisions if d.disputed], answers, ws, links)
    agree = agreement({rid: a for rid, a in answers.items() if a})
    counts = {
        "records": len(decisions), "answered": n_answered,
        "human": sum(d.decided_by == "human" for d in decisions), "ai": sum(d.decided_by == "ai" for d in decisions),
        "pending": sum(d.decided_by == "pending" for d in decisions),
        "keep": sum(d.decision == "keep" for d in decisions), "discard": sum(d.decision == "discard" for d in decisions),
        "edited": sum(bool(d.edited_response) for d in decisions), "disputed": len(disputed),
        "ties": sum(d.tie for d in decisions), "not_in_shortlist": len(unknown),
        "discarded_in_ui": sum(a.discarded_in_ui for ans in answers.values() for a in ans), "drafts": drafts,
    }
    write_parquet(ws.decisions, table)
    write_jsonl(ws.disputed, disputed)
    report = {"step": "pull", "fingerprint": fp, "finished_at": now(),
              "inputs": ws.hashes([ws.shortlist, ws.candidates]), "outputs": ws.hashes([ws.decisions, ws.disputed]),
              **info, "unattended": p.unattended,
              "counts": counts, "agreement": {q: {k: v for k, v in a.items()} for q, a in agree.items()},
              "disputed_file": str(ws.disputed), "top_disputes": [
                  {k: d[k] for k in ("id", "reason", "prompt", "ui")} for d in disputed[:TOP_DISPUTES]]}
    ws.write_report("pull", report)
    return report


#: Disputes printed by pull (all of them are in disputed.jsonl).
TOP_DISPUTES = 5


def _disputes(decisions: list, answers: dict[str, list[Answer]], ws: Workspace, links: dict[str, str]) -> list[dict]:
    """disputed.jsonl: each disputed record with its prompt, answer, every curator's vote and its UI link, the
    sharpest disagreements first (the widest rating spread, then the closest keep/discard split)."""
    if not decisions:
        return []
    t = pq.read_table(ws.candidates, columns=["id", "messages"])
    wanted = {d.id for d in decisions}
    msgs = {i: m for i, m in zip(t.column("id").to_pylist(), t.column("messages").to_pylist()) if i in wanted}

    def sharpness(d) -> tuple:
        spread = max(d.ratings) - min(d.ratings) if d.ratings else 0
        return (-spread, abs(d.keep_votes - d.discard_votes), d.id)

    out = []
    for d in sorted(decisions, key=sharpness):
        m = msgs.get(d.id) or [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]
        votes = [{"user": a.user, "keep": a.keep, "rating": a.rating, "category": a.category,
                  "edited": bool(a.edited_response and not same_text(a.edited_response, m[-1]["content"])),
                  "edited_response": a.edited_response if a.edited_response and not same_text(
                      a.edited_response, m[-1]["content"]) else None,
                  "discarded_in_ui": a.discarded_in_ui} for a in sorted(answers.get(d.id, []), key=lambda a: a.user)]
        out.append({"id": d.id, "reason": d.dispute_reason, "decision": d.decision, "mean_rating": d.mean_rating,
                    "prompt": render_prompt(m[:-1]), "response": m[-1]["content"], "votes": votes,
                    "ui": links.get(d.id, "")})
    return out


def _responses(ws: Workspace, ids: set[str]) -> dict[str, str]:
    t = pq.read_table(ws.candidates, columns=["id", "response"])
    return {i: r for i, r in zip(t.column("id").to_pylist(), t.column("response").to_pylist()) if i in ids}


def pull_summary(report: dict) -> str:
    c = report["counts"]
    state = " (up to date)" if report.get("skipped") else ""
    lines = [f"pull{state}: {c['records']} records: {c['human']} decided by curators, {c['ai']} by AI suggestions"
             + (" (unattended)" if report.get("unattended") else "") + f", {c['pending']} pending; keep {c['keep']}, "
             f"discard {c['discard']}, {c['edited']} edited, {c['disputed']} disputed"]
    for q, a in report["agreement"].items():
        alpha = "n/a" if a["alpha"] is None else f"{a['alpha']:.3f}"
        kappa = "n/a" if a["mean_kappa"] is None else f"{a['mean_kappa']:.3f}"
        lines.append(f"  agreement {q:<9} Krippendorff's alpha ({a['level']}) {alpha} over {a['records']} records; "
                     f"mean pairwise Cohen's kappa {kappa}")
    if not report["agreement"] and c["answered"]:
        lines.append("  agreement: no record has two answers yet")
    if c.get("discarded_in_ui"):
        lines.append(f"  {c['discarded_in_ui']} discarded in the UI (Argilla's Discard button: counted as discard "
                     "votes)")
    if c.get("drafts"):
        lines.append(f"  {c['drafts']} drafts not counted (a draft is not a decision until it is submitted)")
    if c["disputed"]:
        shown = report.get("top_disputes") or []
        lines.append(f"  {c['disputed']} disputed records" + (f", the sharpest {len(shown)}:" if shown else ":"))
        for d in shown:
            prompt = " ".join(d["prompt"].split())
            lines.append(f"    {d['reason']}: \"{prompt[:70]}{'…' if len(prompt) > 70 else ''}\""
                         + (f"\n      {d['ui']}" if d.get("ui") else ""))
        lines.append(f"  all disputes with prompt, answer, votes and UI links: {report['disputed_file']}")
    if c["pending"]:
        lines.append(f"  {c['pending']} records have no answer yet: curators can continue, or pull --unattended")
    return "\n".join(lines)

