"""The real Argilla server (SQL search engine) driven by the real SDK and its HTTP API.

One dataset with text and chat fields, four question kinds, three metadata kinds, a vector and a
two-curator distribution; twelve records with suggestions; responses from two curators. Every
filter kind, text search, sort, paging, per-user order, progress, metrics and similarity is checked
against the answer worked out by hand from the records below.
"""

from __future__ import annotations

import math
import time
import uuid

import httpx
import pytest

N = 12


def record_spec(i: int) -> dict:
    prompts = {3: "a long prompt about many other things with a zebra somewhere in the middle of it all",
               7: "zebra zebra zebra"}
    responses = {5: "the answer mentions a zebra once", 7: "zebra"}
    angle = math.radians(15 * i)
    return {
        "id": f"r{i:02d}",
        "fields": {"prompt": prompts.get(i, f"prompt number {i}"), "response": responses.get(i, f"reply {i}")},
        "chat": [{"role": "user", "content": "tell me about giraffes"},
                 {"role": "assistant", "content": "giraffes are tall"}] if i == 9 else None,
        "metadata": {"source": ["web", "books", "forum"][i % 3], "length": 10 * i, "score": i / 10},
        "vector": [math.cos(angle), math.sin(angle), 0.0, 0.0],
        "quality": (i % 5) + 1,
        "quality_score": i / 20,
        "agent": "judge-a" if i % 2 == 0 else "judge-b",
        "keep": "yes" if i < 6 else "no",
        "topics": ["code", "math"] if i % 4 == 0 else ["writing"],
    }


SPECS = [record_spec(i) for i in range(N)]


def ids_where(pred) -> set[str]:
    return {s["id"] for s in SPECS if pred(s)}


@pytest.fixture(scope="module")
def curated(argilla_server):
    """The dataset, its records and two curators' responses (A: submitted 0,1,2, draft 3; B: submitted 0,4,
    discarded 5)."""
    import argilla as rg

    client = argilla_server.client()
    settings = rg.Settings(
        fields=[rg.TextField(name="prompt"), rg.TextField(name="response"), rg.ChatField(name="chat", required=False)],
        questions=[
            rg.RatingQuestion(name="quality", values=[1, 2, 3, 4, 5]),
            rg.LabelQuestion(name="keep", labels=["yes", "no"]),
            rg.MultiLabelQuestion(name="topics", labels=["code", "math", "writing"], required=False),
            rg.TextQuestion(name="edit", required=False),
        ],
        metadata=[rg.TermsMetadataProperty(name="source"), rg.IntegerMetadataProperty(name="length"),
                  rg.FloatMetadataProperty(name="score")],
        vectors=[rg.VectorField(name="emb", dimensions=4)],
        distribution=rg.TaskDistribution(min_submitted=2),
    )
    name = f"server-test-{uuid.uuid4().hex[:8]}"
    ds = rg.Dataset(name=name, workspace=argilla_server.workspace_name, settings=settings, client=client).create()
    records = []
    for s in SPECS:
        fields = dict(s["fields"])
        if s["chat"]:
            fields["chat"] = s["chat"]
        records.append(rg.Record(
            id=s["id"], fields=fields, metadata=s["metadata"], vectors={"emb": s["vector"]},
            suggestions=[rg.Suggestion("quality", s["quality"], score=s["quality_score"], agent=s["agent"]),
                         rg.Suggestion("keep", s["keep"], agent="heuristics"),
                         rg.Suggestion("topics", s["topics"], agent="heuristics")]))
    ds.records.log(records)
    server_ids = {r.id: str(r._server_id) for r in ds.records}
    assert len(server_ids) == N

    user_a, key_a = argilla_server.add_user("curator-a")
    user_b, key_b = argilla_server.add_user("curator-b")

    def respond(key, rid, values, status="submitted"):
        body = {"values": {q: {"value": v} for q, v in values.items()}, "status": status}
        r = httpx.post(f"{argilla_server.api_url}/api/v1/records/{server_ids[rid]}/responses", json=body,
                       headers={"X-Argilla-Api-Key": key})
        assert r.status_code == 201, r.text

    respond(key_a, "r00", {"quality": 5, "keep": "yes"})
    respond(key_a, "r01", {"quality": 4, "keep": "yes"})
    respond(key_a, "r02", {"quality": 3, "keep": "no", "topics": ["math"]})
    respond(key_a, "r03", {"quality": 1}, status="draft")
    respond(key_b, "r00", {"quality": 2, "keep": "no"})
    respond(key_b, "r04", {"quality": 2, "keep": "yes", "topics": ["code", "writing"]})
    respond(key_b, "r05", {}, status="discarded")

    class Curated:
        pass

    c = Curated()
    c.ds, c.client, c.server_ids = ds, client, server_ids
    c.by_server_id = {v: k for k, v in server_ids.items()}
    c.keys = {"a": key_a, "b": key_b, "owner": argilla_server.api_key}
    c.users = {"a": user_a, "b": user_b}
    c.api_url = argilla_server.api_url
    c.dataset_id = str(ds.id)
    return c


def search(c, body: dict | None = None, *, as_user: str = "owner", me: bool = False, limit: int = 100,
           offset: int = 0) -> tuple[list[str], int, list]:
    """POST a search; returns (external ids in order, total, scores)."""
    path = f"/api/v1/me/datasets/{c.dataset_id}/records/search" if me else \
        f"/api/v1/datasets/{c.dataset_id}/records/search"
    r = httpx.post(f"{c.api_url}{path}", json=body or {}, params={"limit": limit, "offset": offset},
                   headers={"X-Argilla-Api-Key": c.keys[as_user]}, timeout=30)
    assert r.status_code == 200, r.text
    data = r.json()
    ids = [c.by_server_id[item["record"]["id"]] for item in data["items"]]
    return ids, data["total"], [item["query_score"] for item in data["items"]]


def terms(entity: dict, *values) -> dict:
    return {"type": "terms", "scope": entity, "values": list(values)}


def rng(entity: dict, ge=None, le=None) -> dict:
    f = {"type": "range", "scope": entity}
    if ge is not None:
        f["ge"] = ge
    if le is not None:
        f["le"] = le
    return f


def filters(*fs) -> dict:
    return {"filters": {"and": list(fs)}}


META = lambda name: {"entity": "metadata", "metadata_property": name}  # noqa: E731
SUGG = lambda q, prop="value": {"entity": "suggestion", "question": q, "property": prop}  # noqa: E731
RESP = lambda q=None, prop=None: {"entity": "response", **({"question": q} if q else {}),  # noqa: E731
                                  **({"property": prop} if prop else {})}
REC = lambda prop: {"entity": "record", "property": prop}  # noqa: E731


# ---- the SDK ----------------------------------------------------------------------------------------------
def test_sdk_reads_back_records_with_suggestions_and_vectors(curated):
    records = {r.id: r for r in curated.ds.records(with_suggestions=True, with_vectors=True)}
    assert set(records) == {s["id"] for s in SPECS}
    r7 = records["r07"]
    assert r7.fields["prompt"] == "zebra zebra zebra"
    assert r7.metadata["source"] == "books" and r7.metadata["length"] == 70
    assert r7.suggestions["quality"].value == 3 and r7.suggestions["quality"].agent == "judge-b"
    assert r7.vectors["emb"] == pytest.approx(SPECS[7]["vector"], abs=1e-6)


def test_sdk_filters_text_and_similarity(curated):
    import argilla as rg

    def ids(query):
        return {r.id for r in curated.ds.records(query=query)}

    assert ids(rg.Query(filter=rg.Filter(("metadata.source", "==", "books")))) == ids_where(
        lambda s: s["metadata"]["source"] == "books")
    assert ids(rg.Query(filter=rg.Filter([("metadata.length", ">=", 30), ("metadata.length", "<=", 60)]))) == \
        {"r03", "r04", "r05", "r06"}
    assert ids(rg.Query(filter=rg.Filter(("quality.agent", "==", "judge-b")))) == ids_where(lambda s: s["agent"] == "judge-b")
    assert ids(rg.Query(filter=rg.Filter(("quality.score", ">=", 0.5)))) == {"r10", "r11"}
    assert ids(rg.Query(filter=rg.Filter(("response.status", "==", "discarded")))) == {"r05"}
    assert ids(rg.Query(query="zebra")) == {"r03", "r05", "r07"}
    hits = list(curated.ds.records(query=rg.Query(similar=rg.Similar(name="emb", value=SPECS[0]["vector"]))))
    assert [h[0].id for h in hits[:3]] == ["r00", "r01", "r02"]


# ---- filters ----------------------------------------------------------------------------------------------
def test_metadata_terms_range_and_combined(curated):
    assert set(search(curated, filters(terms(META("source"), "books")))[0]) == {"r01", "r04", "r07", "r10"}
    assert search(curated, filters(terms(META("source"), "web", "forum")))[1] == 8
    assert set(search(curated, filters(rng(META("length"), 30, 60)))[0]) == {"r03", "r04", "r05", "r06"}
    assert set(search(curated, filters(rng(META("score"), ge=0.95)))[0]) == {"r10", "r11"}
    assert set(search(curated, filters(terms(META("source"), "web"), rng(META("length"), ge=50)))[0]) == {"r06", "r09"}
    assert search(curated, filters(terms(META("source"), "nowhere"))) == ([], 0, [])


def test_suggestion_value_score_agent_filters(curated):
    assert set(search(curated, filters(terms(SUGG("quality"), "3")))[0]) == ids_where(lambda s: s["quality"] == 3)
    assert set(search(curated, filters(rng(SUGG("quality"), ge=4)))[0]) == ids_where(lambda s: s["quality"] >= 4)
    assert set(search(curated, filters(rng(SUGG("quality", "score"), ge=0.5)))[0]) == {"r10", "r11"}
    assert set(search(curated, filters(terms(SUGG("quality", "agent"), "judge-a")))[0]) == \
        ids_where(lambda s: s["agent"] == "judge-a")
    assert set(search(curated, filters(terms(SUGG("topics"), "math")))[0]) == {"r00", "r04", "r08"}  # multi-label
    assert set(search(curated, filters(terms(SUGG("keep"), "no")))[0]) == ids_where(lambda s: s["keep"] == "no")


def test_record_status_and_id_filters(curated):
    assert search(curated, filters(terms(REC("status"), "completed")))[0] == ["r00"]  # two submissions
    assert search(curated, filters(terms(REC("status"), "pending")))[1] == N - 1
    assert search(curated, filters(terms(REC("id"), curated.server_ids["r08"])))[0] == ["r08"]
    assert search(curated, filters(terms(REC("external_id"), "r09", "r10")))[1] == 2


def test_response_status_filters_without_user(curated):
    assert set(search(curated, filters(terms(RESP(prop="status"), "submitted")))[0]) == {"r00", "r01", "r02", "r04"}
    assert search(curated, filters(terms(RESP(prop="status"), "discarded")))[0] == ["r05"]
    no_response = {s["id"] for s in SPECS} - {"r00", "r01", "r02", "r03", "r04", "r05"}
    assert set(search(curated, filters(terms(RESP(prop="status"), "pending")))[0]) == no_response


def test_the_curators_pending_queue_is_per_user(curated):
    """The UI's queue: /me search with response status 'pending' means 'no response from me yet'."""
    mine_a = {"r00", "r01", "r02", "r03"}
    pending_a = search(curated, filters(terms(RESP(prop="status"), "pending")), as_user="a", me=True)[0]
    assert set(pending_a) == {s["id"] for s in SPECS} - mine_a
    pending_b = search(curated, filters(terms(RESP(prop="status"), "pending")), as_user="b", me=True)[0]
    assert set(pending_b) == {s["id"] for s in SPECS} - {"r00", "r04", "r05"}
    assert search(curated, filters(terms(RESP(prop="status"), "draft")), as_user="a", me=True)[0] == ["r03"]
    both = search(curated, filters(terms(RESP(prop="status"), "pending", "draft")), as_user="a", me=True)[1]
    assert both == N - 3
    # the queue as the UI asks for it: my pending records among the records still needing answers
    queue = search(curated, filters(terms(RESP(prop="status"), "pending"), terms(REC("status"), "pending")),
                   as_user="b", me=True)[0]
    assert "r00" not in queue and len(queue) == N - 3


def test_response_value_filters(curated):
    assert set(search(curated, filters(rng(RESP("quality"), ge=4)))[0]) == {"r00", "r01"}
    assert set(search(curated, filters(rng(RESP("quality"), le=2)), as_user="b", me=True)[0]) == {"r00", "r04"}
    assert set(search(curated, filters(terms(RESP("keep"), "no")))[0]) == {"r00", "r02"}
    assert set(search(curated, filters(terms(RESP("topics"), "code")))[0]) == {"r04"}


# ---- text search --------------------------------------------------------------------------------------------
def test_text_search_relevance_fields_phrases_chat(curated):
    ids, total, scores = search(curated, {"query": {"text": {"q": "zebra"}}})
    assert total == 3 and ids[0] == "r07" and set(ids) == {"r03", "r05", "r07"}
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1] > 0
    assert set(search(curated, {"query": {"text": {"q": "zebra", "field": "response"}}})[0]) == {"r05", "r07"}
    assert search(curated, {"query": {"text": {"q": '"zebra somewhere"'}}})[0] == ["r03"]
    assert search(curated, {"query": {"text": {"q": "giraffes"}}})[0] == ["r09"]  # a chat field
    assert search(curated, {"query": {"text": {"q": "giraffe"}}})[0] == ["r09"]  # stemmed
    assert search(curated, {"query": {"text": {"q": "gira*"}}})[0] == ["r09"]
    assert search(curated, {"query": {"text": {"q": "zebra -middle"}}})[1] == 2
    assert search(curated, {"query": {"text": {"q": "-zebra -giraffes"}}})[1] == N - 4  # only exclusions
    assert search(curated, {"query": {"text": {"q": "zebra answer"}}})[0] == ["r05"]  # all terms, across fields
    assert search(curated, {"query": {"text": {"q": "okapi"}}})[1] == 0
    assert search(curated, {"query": {"text": {"q": "(&*!"}}})[1] == 0  # no syntax error on odd input


def test_text_search_with_filters(curated):
    body = {"query": {"text": {"q": "zebra"}}, **filters(terms(META("source"), "books"))}
    assert search(curated, body)[0] == ["r07"]


# ---- sort, paging, order ------------------------------------------------------------------------------------
def test_sorting(curated):
    by_length = search(curated, {"sort": [{"scope": META("length"), "order": "desc"}]})[0]
    assert by_length == [s["id"] for s in reversed(SPECS)]
    by_score = search(curated, {"sort": [{"scope": SUGG("quality", "score"), "order": "asc"}]})[0]
    assert by_score == [s["id"] for s in SPECS]
    by_source = search(curated, {"sort": [{"scope": META("source"), "order": "asc"},
                                          {"scope": META("length"), "order": "desc"}]})[0]
    assert by_source[:4] == ["r10", "r07", "r04", "r01"]  # books first, longest first
    by_response = search(curated, {"sort": [{"scope": RESP("quality"), "order": "desc"}]}, as_user="a", me=True)[0]
    assert by_response[:3] == ["r00", "r01", "r02"] and by_response[3] == "r03"  # then no response: last
    assert search(curated, {"sort": [{"scope": REC("inserted_at"), "order": "asc"}]})[0] == [s["id"] for s in SPECS]


def test_paging(curated):
    order = search(curated, {"sort": [{"scope": META("length"), "order": "asc"}]})[0]
    page = search(curated, {"sort": [{"scope": META("length"), "order": "asc"}]}, limit=5, offset=10)
    assert page[0] == order[10:] and page[1] == N
    assert search(curated, {}, limit=5, offset=40)[:2] == ([], N)


def test_per_user_order_is_stable_and_differs_between_users(curated):
    a1 = search(curated, {}, as_user="a", me=True)[0]
    a2 = search(curated, {}, as_user="a", me=True)[0]
    b1 = search(curated, {}, as_user="b", me=True)[0]
    assert a1 == a2 and sorted(a1) == sorted(b1) == sorted(s["id"] for s in SPECS)
    assert a1 != b1
    paged = search(curated, {}, as_user="a", me=True, limit=5)[0] + search(curated, {}, as_user="a", me=True,
                                                                            limit=5, offset=5)[0]
    assert paged == a1[:10]


# ---- progress and metrics -----------------------------------------------------------------------------------
def test_dataset_and_user_progress(curated):
    h = {"X-Argilla-Api-Key": curated.keys["owner"]}
    progress = httpx.get(f"{curated.api_url}/api/v1/datasets/{curated.dataset_id}/progress", headers=h).json()
    assert (progress["total"], progress["completed"], progress["pending"]) == (N, 1, N - 1)
    metrics = httpx.get(f"{curated.api_url}/api/v1/me/datasets/{curated.dataset_id}/metrics",
                        headers={"X-Argilla-Api-Key": curated.keys["a"]}).json()
    assert metrics["responses"]["submitted"] == 3 and metrics["responses"]["draft"] == 1
    assert metrics["responses"]["pending"] == N - 4
    users = httpx.get(f"{curated.api_url}/api/v1/datasets/{curated.dataset_id}/users/progress", headers=h).json()
    b = next(u for u in users["users"] if u["username"] == "curator-b")
    assert b["completed"]["submitted"] == 1  # r00, completed by two submissions
    assert (b["pending"]["submitted"], b["pending"]["discarded"]) == (1, 1)  # r04, r05
    assert curated.ds.progress()["completed"] == 1


def test_metadata_metrics(curated):
    h = {"X-Argilla-Api-Key": curated.keys["owner"]}
    props = httpx.get(f"{curated.api_url}/api/v1/me/datasets/{curated.dataset_id}/metadata-properties",
                      headers=h).json()["items"]
    by_name = {p["name"]: p["id"] for p in props}

    def metrics(name):
        return httpx.get(f"{curated.api_url}/api/v1/metadata-properties/{by_name[name]}/metrics", headers=h).json()

    source = metrics("source")
    assert source["total"] == N and {v["term"]: v["count"] for v in source["values"]} == \
        {"web": 4, "books": 4, "forum": 4}
    assert (metrics("length")["min"], metrics("length")["max"]) == (0, 110)
    assert metrics("score")["max"] == pytest.approx(1.1)


# ---- similarity ---------------------------------------------------------------------------------------------
def test_similarity_search(curated):
    def similar(order="most_similar", flt=None, limit=50, **vector):
        body = {"query": {"vector": {"name": "emb", "order": order, **vector}}}
        if flt:
            body.update(flt)
        return search(curated, body, limit=limit)

    ids, _, scores = similar(record_id=curated.server_ids["r00"])
    assert ids[:3] == ["r01", "r02", "r03"] and "r00" not in ids  # the record itself is left out
    assert scores == sorted(scores, reverse=True)
    ids, _, scores = similar(value=[1.0, 0.0, 0.0, 0.0], limit=3)
    assert ids == ["r00", "r01", "r02"] and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert similar(order="least_similar", value=[1.0, 0.0, 0.0, 0.0])[0][0] == "r11"
    ids = similar(value=[1.0, 0.0, 0.0, 0.0], flt=filters(terms(META("source"), "books")))[0]
    assert ids == ["r01", "r04", "r07", "r10"]
    near_y = [0.1, 1.0, 0.0, 0.0]
    ids = similar(flt={"query": {"text": {"q": "zebra"}, "vector": {"name": "emb", "value": near_y}}})[0]
    assert ids == ["r05", "r07", "r03"]  # the zebra records at 75°, 105° and 45°, nearest the y axis first


def test_similarity_cache_sees_new_vectors(curated, argilla_server):
    import argilla as rg

    name = f"sim-cache-{uuid.uuid4().hex[:6]}"
    settings = rg.Settings(fields=[rg.TextField(name="text")], questions=[rg.LabelQuestion(name="ok", labels=["y", "n"])],
                           vectors=[rg.VectorField(name="v", dimensions=2)])
    ds = rg.Dataset(name=name, workspace=argilla_server.workspace_name, settings=settings,
                    client=curated.client).create()
    ds.records.log([rg.Record(id="a", fields={"text": "a"}, vectors={"v": [1.0, 0.0]})])
    first = list(ds.records(query=rg.Query(similar=rg.Similar(name="v", value=[0.0, 1.0]))))
    assert [h[0].id for h in first] == ["a"]
    ds.records.log([rg.Record(id="b", fields={"text": "b"}, vectors={"v": [0.0, 1.0]})])
    second = list(ds.records(query=rg.Query(similar=rg.Similar(name="v", value=[0.0, 1.0]))))
    assert [h[0].id for h in second] == ["b", "a"]
    ds.delete()


# ---- background jobs (the rq worker) ------------------------------------------------------------------------
def test_distribution_change_runs_the_worker_job(argilla_server):
    """Changing the distribution enqueues argilla-server's record-status job; the rq worker runs it
    with the SQL engine."""
    import argilla as rg

    client = argilla_server.client()
    _, key = argilla_server.add_user("curator-a")
    settings = rg.Settings(fields=[rg.TextField(name="text")], questions=[rg.LabelQuestion(name="ok", labels=["y", "n"])],
                           distribution=rg.TaskDistribution(min_submitted=2))
    ds = rg.Dataset(name=f"dist-{uuid.uuid4().hex[:6]}", workspace=argilla_server.workspace_name,
                    settings=settings, client=client).create()
    ds.records.log([rg.Record(id=f"x{i}", fields={"text": f"t{i}"}) for i in range(3)])
    rid = str(next(iter(ds.records))._server_id)
    r = httpx.post(f"{argilla_server.api_url}/api/v1/records/{rid}/responses",
                   json={"values": {"ok": {"value": "y"}}, "status": "submitted"}, headers={"X-Argilla-Api-Key": key})
    assert r.status_code == 201, r.text
    h = {"X-Argilla-Api-Key": argilla_server.api_key}
    url = f"{argilla_server.api_url}/api/v1/datasets/{ds.id}"
    assert httpx.get(f"{url}/progress", headers=h).json()["completed"] == 0
    r = httpx.patch(url, json={"distribution": {"strategy": "overlap", "min_submitted": 1}}, headers=h)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/progress", headers=h).json()["completed"] != 1:
        assert time.monotonic() < deadline, "the worker did not update the record status within 30 s"
        time.sleep(0.2)
    ds.delete()


def test_deleting_a_dataset_removes_its_records_from_search(argilla_server):
    import argilla as rg

    client = argilla_server.client()
    settings = rg.Settings(fields=[rg.TextField(name="text")], questions=[rg.LabelQuestion(name="ok", labels=["y", "n"])])
    ds = rg.Dataset(name=f"gone-{uuid.uuid4().hex[:6]}", workspace=argilla_server.workspace_name,
                    settings=settings, client=client).create()
    ds.records.log([rg.Record(id="g", fields={"text": "wildebeest"})])
    assert [r.id for r in ds.records(query=rg.Query(query="wildebeest"))] == ["g"]
    ds.records.delete([next(iter(ds.records))])
    assert list(ds.records(query=rg.Query(query="wildebeest"))) == []
    ds.delete()
    import sqlite3

    con = sqlite3.connect(argilla_server.workspace / "argilla.db")
    orphans = con.execute("SELECT count(*) FROM curation_fts_docs WHERE record_id NOT IN (SELECT id FROM records)")
    assert orphans.fetchone()[0] == 0
    con.close()


def test_text_query_translation():
    import doctest

    from curation.server import text_query

    assert doctest.testmod(text_query).failed == 0
    # user input never becomes FTS5 syntax
    assert text_query.fts_expression('NEAR("x") AND OR') == '"NEAR x" AND "AND" AND "OR"'
    assert text_query.fts_expression("   ") is None


# ---- bounded search, odd input, what the server shows without a key ----------------------------------------
def test_text_search_caps_repeats_and_punctuation(curated):
    from curation.server.limits import MAX_QUERY_CHARS, MAX_QUERY_WORDS

    def q(text):
        return httpx.post(f"{curated.api_url}/api/v1/me/datasets/{curated.dataset_id}/records/search",
                          json={"query": {"text": {"q": text}}}, headers={"X-Argilla-Api-Key": curated.keys["a"]},
                          timeout=30)

    zebra = {"r03", "r05", "r07"}
    # repeats count once: a long repeated query is as cheap and as right as the word alone
    r = q(" ".join(["zebra"] * 200))
    assert r.status_code == 200 and {curated.by_server_id[i["record"]["id"]] for i in r.json()["items"]} == zebra
    # a stray apostrophe is punctuation, not a term that matches nothing
    assert q("zebra '").json()["total"] == 3 and q("' zebra").json()["total"] == 3
    assert q("'").json()["total"] == 0 and q("''").json()["total"] == 0
    # over the caps: a clear 422, at once
    words = " ".join(f"word{i}" for i in range(MAX_QUERY_WORDS + 1))
    r = q(words)
    assert r.status_code == 422 and f"{MAX_QUERY_WORDS + 1} different words; the limit is {MAX_QUERY_WORDS}" in r.text
    assert q(" ".join(f"word{i}" for i in range(MAX_QUERY_WORDS))).status_code == 200
    r = q(" ".join(f"w{i}" for i in range(2000)))
    assert r.status_code == 422 and f"the limit is {MAX_QUERY_CHARS:,}" in r.json()["detail"]


def test_a_statement_over_the_search_deadline_is_stopped(tmp_path):
    """The deadline aborts SQLite statements from inside (a progress handler), however they were written."""
    import sqlite3

    from curation.server.limits import Deadline, SearchLimitError

    con = sqlite3.connect(tmp_path / "x.db", check_same_thread=False)
    deadline = Deadline()
    deadline.install(con)
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    t = time.monotonic()
    with pytest.raises(SearchLimitError, match="stopped after 0.2 s"):
        deadline.run(0.2, lambda: con.execute(endless).fetchall())
    assert time.monotonic() - t < 2
    assert deadline.run(0.2, lambda: con.execute("SELECT 41 + 1").fetchall()) == [(42,)]  # the connection still works
    assert deadline.run(None, lambda: con.execute("SELECT 1").fetchall()) == [(1,)]


def test_search_slots_per_user():
    from curation.server.limits import SearchSlots, TooManySearches

    slots = SearchSlots(per_user=2)
    with slots.take("alice"), slots.take("alice"):
        with pytest.raises(TooManySearches, match="2 of yours are still running"):
            with slots.take("alice"):
                pass
        with slots.take("bob"):  # others are not held up
            assert slots.running("bob") == 1
    assert slots.running("alice") == 0
    with slots.take("alice"):
        pass


def test_the_unauthenticated_status_shows_no_paths(argilla_server):
    r = httpx.get(f"{argilla_server.api_url}/api/v1/status")
    assert r.status_code == 200 and r.json()["search_engine"]["name"] == "curation-sql"
    assert str(argilla_server.workspace) not in r.text and "argilla.db" not in r.text


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_vectors_are_refused_before_anything_is_stored(curated, bad):
    h = {"X-Argilla-Api-Key": curated.keys["owner"], "content-type": "application/json"}
    url = f"{curated.api_url}/api/v1/datasets/{curated.dataset_id}/records/bulk"
    item = '{"external_id": "bad-%s", "fields": {"prompt": "p", "response": "r"}, "vectors": {"emb": [%s, 0, 0, 0]}}'
    for method in ("POST", "PUT"):
        r = httpx.request(method, url, content='{"items": [%s]}' % (item % (method, bad)), headers=h)
        assert r.status_code == 422 and "emb" in r.text and "finite" in r.text, r.text
    rid = curated.server_ids["r01"]
    r = httpx.patch(f"{curated.api_url}/api/v1/records/{rid}", content='{"vectors": {"emb": [%s, 1, 0, 0]}}' % bad,
                    headers=h)
    assert r.status_code == 422 and "finite" in r.text, r.text
    assert search(curated, filters(terms(REC("external_id"), "bad-POST", "bad-PUT")))[1] == 0  # nothing stored
    # every page and every similarity search still works, with the vectors as they were
    ids, _, _ = search(curated, {"query": {"vector": {"name": "emb", "value": [1.0, 0.0, 0.0, 0.0]}}}, limit=3)
    assert ids == ["r00", "r01", "r02"]
    r = httpx.post(f"{curated.api_url}/api/v1/datasets/{curated.dataset_id}/records/search",
                   params={"include": "vectors"}, content='{"query": {"vector": {"name": "emb", "value": [%s, 1, 0, 0]}}}' % bad, headers=h)
    assert r.status_code == 422 and "finite" in r.text


def test_searches_of_one_key_are_refused_early_queued_and_paced(curated):
    """Before any authentication: oversized or over-the-cap queries are refused, and the /me searches of one key
    run one at a time (a few wait their turn, more get 429) within half of the time."""
    import threading

    url = f"{curated.api_url}/api/v1/me/datasets/{curated.dataset_id}/records/search"
    words = " ".join(f"w{i}" for i in range(2000))
    r = httpx.post(url, json={"query": {"text": {"q": words}}}, headers={"X-Argilla-Api-Key": "cur.not-a-key"})
    assert r.status_code == 422 and "the limit is 2,000" in r.text  # refused before the key was even looked up
    r = httpx.post(url, content=b'{"query": "' + b"x" * 1_100_000 + b'"}',
                   headers={"X-Argilla-Api-Key": curated.keys["a"]})
    assert r.status_code == 413
    body = {"query": {"text": {"q": "zebra | giraffes | prompt"}}}
    barrier, codes = threading.Barrier(8), []

    def one():
        with httpx.Client(timeout=60) as http:
            barrier.wait()
            r = http.post(url, json=body, headers={"X-Argilla-Api-Key": curated.keys["b"]})
            codes.append((r.status_code, r.headers.get("retry-after")))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(c for c, _ in codes).count(200) >= 4 and (429, "1") in codes, codes
    assert {c for c, _ in codes} <= {200, 429}
    # paced: right after a search, the same key's next one waits about as long as the last one took
    with httpx.Client(timeout=60) as http:
        headers = {"X-Argilla-Api-Key": curated.keys["b"]}
        time.sleep(2)

        def server_ms(r) -> float:  # argilla-server's own Server-Timing header: "total;dur=<ms>"
            r.raise_for_status()
            return float(r.headers["server-timing"].split("dur=")[1])

        first = server_ms(http.post(url, json=body, headers=headers))
        t = time.perf_counter()
        second = server_ms(http.post(url, json=body, headers=headers))
        assert (time.perf_counter() - t) * 1000 >= 0.95 * (first + second)  # waited the first one's time, then ran
