"""What an annotator can read through every route of the API (curation/server/guard.py).

The dataset is eval's real blind A/B dataset (eval/human.py): `swapped`, `a_generator`, `b_generator` and
`prompt_id` are metadata hidden from annotators. Two annotators answer; one of them then calls every route of
argilla-server's API with her key. Nothing hidden and nothing of the other annotator's may come back, from any
route; owners and admins still see everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from curation.server import guard

REPO = Path(__file__).resolve().parent.parent
HIDDEN_GENERATORS = ("gen-HIDDEN-alpha", "gen-HIDDEN-beta")
BOB_SECRET = "bob-SECRET-rationale"
N = 6


def argilla_routes(tmp_path) -> list[tuple[str, str]]:
    """(method, path) of every route argilla-server's API v1 declares, read from its routers in a fresh process."""
    code = ("import json; from argilla_server.api.routes import api_v1; from curation.server.guard import api_routes; "
            "print(json.dumps(sorted(api_routes(api_v1))))")
    env = {**os.environ, "ARGILLA_HOME_PATH": str(tmp_path),
           "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/routes.db"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [tuple(r) for r in json.loads(out.stdout.splitlines()[-1])]


def test_every_argilla_route_has_a_rule(tmp_path):
    """A route added by an argilla-server upgrade fails here until someone decides what annotators may see."""
    routes = argilla_routes(tmp_path)
    assert len(routes) > 60
    unhandled = sorted(set(routes) - set(guard.ROUTES))
    assert not unhandled, f"routes without an access rule in curation/server/guard.py: {unhandled}"
    assert not sorted(set(guard.ROUTES) - set(routes)), "rules for routes argilla-server no longer has"
    # record data (records, responses, metadata values) reaches annotators only through the filtered routes
    record_routes = {r for r in routes if "/records" in r[1] or "/responses" in r[1] or r[1].startswith("/suggestions")}
    annotator_readable = {r for r in record_routes if guard.ROUTES[r] not in (guard.STAFF,)}
    assert annotator_readable == {
        ("GET", "/records/{record_id}"), ("POST", "/me/datasets/{dataset_id}/records/search"),  # VIEW
        ("GET", "/records/{record_id}/suggestions"),  # shown in the UI
        ("GET", "/datasets/{dataset_id}/records/search/suggestions/options"),  # agent names
        ("POST", "/records/{record_id}/responses"), ("POST", "/me/responses/bulk"),  # the caller's own
        ("PUT", "/responses/{response_id}"), ("DELETE", "/responses/{response_id}"),
    }


@pytest.fixture(scope="module")
def blind(argilla_server, tmp_path_factory):
    """eval's blind A/B dataset with answers from two annotators (alice and bob), and an admin."""
    from eval import human

    owner = argilla_server.client()
    name = f"blind-ab-{uuid.uuid4().hex[:6]}"
    pairs = [({"id": f"p{i}", "prompt": f"Question {i}?", "output": f"first answer {i}",
                "generator": HIDDEN_GENERATORS[0], "category": "general"},
              {"id": f"p{i}", "prompt": f"Question {i}?", "output": f"second answer {i}",
               "generator": HIDDEN_GENERATORS[1]})
             for i in range(N)]
    human.push(pairs, client=owner, dataset=name, workspace=argilla_server.workspace_name, overlap=2, seed=1)
    ds = owner.datasets(name=name, workspace=argilla_server.workspace_name)
    records = list(ds.records(with_responses=False))
    swapped = {str(r._server_id): r.metadata["swapped"] for r in records}
    assert set(swapped.values()) == {"yes", "no"}

    alice, alice_key = argilla_server.add_user("alice-blind")
    bob, bob_key = argilla_server.add_user("bob-blind")
    admin, admin_key = argilla_server.add_user("admin-blind", role="admin")
    rids = [str(r._server_id) for r in records]
    api = argilla_server.api_url

    def answer(key, rid, rationale):
        r = httpx.post(f"{api}/api/v1/records/{rid}/responses", headers={"X-Argilla-Api-Key": key}, json={
            "values": {human.QUESTION: {"value": "1"}, "rationale": {"value": rationale}}, "status": "submitted"})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    alice_responses = [answer(alice_key, rid, "alice's own reason") for rid in rids[:3]]
    bob_responses = [answer(bob_key, rid, BOB_SECRET) for rid in rids[:3]]
    props = httpx.get(f"{api}/api/v1/me/datasets/{ds.id}/metadata-properties",
                      headers={"X-Argilla-Api-Key": argilla_server.api_key}).json()["items"]

    class Blind:
        pass

    b = Blind()
    b.api, b.ds, b.rids, b.swapped = api, ds, rids, swapped
    b.keys = {"alice": alice_key, "bob": bob_key, "admin": admin_key, "owner": argilla_server.api_key}
    b.users = {"alice": alice, "bob": bob}
    b.alice_responses, b.bob_responses = alice_responses, bob_responses
    b.props = {p["name"]: p["id"] for p in props}
    b.workspace_id = str(owner.workspaces(argilla_server.workspace_name).id)
    return b


def call(b, who: str, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{b.api}/api/v1{path}", headers={"X-Argilla-Api-Key": b.keys[who]}, timeout=60,
                         **kwargs)


def leaks(b, text: str) -> list[str]:
    """What of the hidden data or of bob's answers appears in a response body."""
    found = [g for g in HIDDEN_GENERATORS if g in text]
    found += [k for k in ('"swapped"', '"a_generator"', '"b_generator"', '"prompt_id"') if k in text]
    found += [s for s in (BOB_SECRET, *b.bob_responses, str(b.users["bob"].id)) if s in text]
    return found


def test_an_annotator_reads_nothing_hidden_through_any_route(blind):
    b = blind
    ds, rid, other = str(b.ds.id), b.rids[0], b.rids[5]
    settings = {k: call(b, "owner", "GET", f"/datasets/{ds}/{k}").json()["items"] for k in
                ("fields", "questions", "vectors-settings")}
    suggestion = str(uuid.uuid4())
    field_id, question_id = settings["fields"][0]["id"], settings["questions"][0]["id"]
    hidden_prop = b.props["swapped"]
    bob_id, bob_response = str(b.users["bob"].id), b.bob_responses[0]
    question = {"values": {"preference": {"value": "2"}}, "status": "submitted"}
    ids = dict(dataset_id=ds, record_id=rid, response_id=bob_response, suggestion_id=suggestion, field_id=field_id,
               question_id=question_id, metadata_property_id=hidden_prop, vector_settings_id=str(uuid.uuid4()),
               workspace_id=b.workspace_id, user_id=bob_id, webhook_id=str(uuid.uuid4()), job_id="no-such-job",
               provider="huggingface")
    # what alice sends to each route, and what she may get back
    requests = {
        ("GET", "/records/{record_id}"): ({}, {200}),
        ("POST", "/me/datasets/{dataset_id}/records/search"): (
            {"json": {}, "params": {"include": "responses,suggestions,vectors", "limit": 50}}, {200}),
        ("POST", "/records/{record_id}/responses"): ({"json": question, "_path": {"record_id": other}}, {201}),
        ("POST", "/me/responses/bulk"): ({"json": {"items": [{**question, "record_id": b.rids[4]}]}}, {200}),
        ("PUT", "/responses/{response_id}"): ({"json": question}, {403}),  # bob's response
        ("DELETE", "/responses/{response_id}"): ({}, {403}),
        ("GET", "/metadata-properties/{metadata_property_id}/metrics"): ({}, {403}),  # the hidden `swapped`
        ("GET", "/records/{record_id}/suggestions"): ({}, {200}),
        ("POST", "/datasets"): ({"json": {"name": "x", "workspace_id": b.workspace_id}}, {403}),
        ("POST", "/datasets/{dataset_id}/fields"): (
            {"json": {"name": "f2", "title": "F", "settings": {"type": "text"}}}, {403}),
        ("POST", "/datasets/{dataset_id}/questions"): (
            {"json": {"name": "q2", "title": "Q", "settings": {"type": "text"}}}, {403}),
        ("POST", "/datasets/{dataset_id}/metadata-properties"): (
            {"json": {"name": "m2", "title": "M", "settings": {"type": "terms"}}}, {403}),
        ("POST", "/datasets/{dataset_id}/vectors-settings"): (
            {"json": {"name": "v2", "title": "V", "dimensions": 2}}, {403}),
        ("PATCH", "/datasets/{dataset_id}"): ({"json": {"name": "renamed"}}, {403}),
        ("POST", "/datasets/{dataset_id}/import"): (
            {"json": {"name": "x/y", "subset": "default", "split": "train",
                      "mapping": {"fields": [{"source": "a", "target": "prompt"}]}}}, {403}),
        ("POST", "/datasets/{dataset_id}/export"): (
            {"json": {"name": "x/y", "subset": "default", "split": "train", "token": "t"}}, {403}),
        ("POST", "/datasets/{dataset_id}/records/bulk"): ({"json": {"items": [{"fields": {"prompt": "x"}}]}}, {403}),
        ("PUT", "/datasets/{dataset_id}/records/bulk"): ({"json": {"items": [{"fields": {"prompt": "x"}}]}}, {403}),
        ("POST", "/datasets/{dataset_id}/records/search"): ({"json": {}}, {403}),
        ("DELETE", "/datasets/{dataset_id}/records"): ({"params": {"ids": rid}}, {403}),
        ("PATCH", "/records/{record_id}"): ({"json": {"metadata": {"category": "x"}}}, {403}),
        ("PUT", "/records/{record_id}/suggestions"): ({"json": {"question_id": question_id, "value": "1"}}, {403}),
        ("DELETE", "/records/{record_id}/suggestions"): ({"params": {"ids": suggestion}}, {403}),
        ("PATCH", "/fields/{field_id}"): ({"json": {"title": "t"}}, {403}),
        ("PATCH", "/questions/{question_id}"): ({"json": {"title": "t"}}, {403}),
        ("PATCH", "/metadata-properties/{metadata_property_id}"): ({"json": {"title": "t"}}, {403}),
        ("PATCH", "/vectors-settings/{vector_settings_id}"): ({"json": {"title": "t"}}, {403, 404}),  # no vectors
        ("DELETE", "/vectors-settings/{vector_settings_id}"): ({}, {403, 404}),
        ("POST", "/workspaces"): ({"json": {"name": "w2"}}, {403}),
        ("POST", "/workspaces/{workspace_id}/users"): ({"json": {"user_id": bob_id}}, {403}),
        ("POST", "/users"): ({"json": {"first_name": "e", "username": "eve-x", "password": "12345678"}}, {403}),
        ("PATCH", "/users/{user_id}"): ({"json": {"first_name": "x"}}, {403}),
        ("POST", "/webhooks"): ({"json": {"url": "http://127.0.0.1:9/x", "events": ["record.created"]}}, {403}),
        ("PATCH", "/webhooks/{webhook_id}"): ({"json": {"enabled": False}}, {403}),
        ("POST", "/token"): (
            {"data": {"username": "alice-blind", "password": "wrong-password"}, "_no_key": True}, {401}),
        ("GET", "/oauth2/providers/{provider}/authentication"): ({}, {400, 404, 422, 500}),
        ("GET", "/oauth2/providers/{provider}/access-token"): ({}, {400, 404, 422, 500}),
        ("GET", "/jobs/{job_id}"): ({}, {403}),
    }
    expected_by_rule = {guard.STAFF: {403}, guard.OWN: {200}, guard.SETTINGS: {200}, guard.COUNTS: {200},
                        guard.PUBLIC: {200}, guard.VIEW: {200}}
    seen = []
    # the destructive owner-only routes last, so that a failure of the guard would show on the routes before them
    order = sorted(guard.ROUTES, key=lambda k: (k[0] == "DELETE", k))
    for method, path in order:
        spec, expected = requests.get((method, path), ({}, expected_by_rule[guard.ROUTES[(method, path)]]))
        spec = dict(spec)
        url = path.format(**{**ids, **spec.pop("_path", {})})
        headers = {} if spec.pop("_no_key", False) else {"X-Argilla-Api-Key": b.keys["alice"]}
        r = httpx.request(method, f"{b.api}/api/v1{url}", headers=headers, timeout=60, **spec)
        assert r.status_code in expected, (method, path, r.status_code, r.text[:300])
        assert not leaks(b, r.text), (method, path, leaks(b, r.text), r.text[:500])
        seen.append((method, path))
    assert sorted(seen) == sorted(guard.ROUTES)
    # the owner-only calls changed nothing
    assert call(b, "owner", "GET", f"/datasets/{ds}").json()["name"] == b.ds.name
    assert len(call(b, "owner", "POST", f"/datasets/{ds}/records/search", json={}).json()["items"]) == N
    assert call(b, "owner", "GET", f"/users/{bob_id}").status_code == 200


def test_the_annotator_view_of_a_record(blind):
    b = blind
    rid = b.rids[0]
    mine = call(b, "alice", "GET", f"/records/{rid}").json()
    assert set(mine["metadata"]) == {"category"}
    assert [r["user_id"] for r in mine["responses"]] == [str(b.users["alice"].id)]
    assert mine["responses"][0]["values"]["rationale"]["value"] == "alice's own reason"
    page = call(b, "alice", "POST", f"/me/datasets/{b.ds.id}/records/search", json={},
                params={"include": "responses"}).json()
    assert page["total"] == N
    for item in page["items"]:
        assert set(item["record"]["metadata"]) == {"category"}
        assert all(r["user_id"] == str(b.users["alice"].id) for r in item["record"].get("responses") or [])
    # owners and admins: unchanged, everything
    for who in ("owner", "admin"):
        full = call(b, who, "GET", f"/records/{rid}").json()
        assert {"swapped", "a_generator", "b_generator", "prompt_id"} <= set(full["metadata"]), who
        assert len(full["responses"]) == 2 and BOB_SECRET in json.dumps(full), who
        hits = call(b, who, "POST", f"/me/datasets/{b.ds.id}/records/search", json={"filters": {"and": [
            {"type": "terms", "scope": {"entity": "metadata", "metadata_property": "swapped"}, "values": ["yes"]}]}})
        assert hits.status_code == 200, hits.text
        assert {i["record"]["id"] for i in hits.json()["items"]} == {k for k, v in b.swapped.items() if v == "yes"}


@pytest.mark.parametrize("name", ["swapped", "a_generator"])
def test_filtering_or_sorting_on_hidden_metadata_tells_nothing(blind, name):
    """The answer for a hidden property is the answer for a property that does not exist."""
    b = blind

    def as_alice(prop, kind):
        scope = {"entity": "metadata", "metadata_property": prop}
        body = ({"filters": {"and": [{"type": "terms", "scope": scope, "values": ["yes"]}]}} if kind == "filter"
                else {"sort": [{"scope": scope, "order": "asc"}]})
        r = call(b, "alice", "POST", f"/me/datasets/{b.ds.id}/records/search", json=body)
        return r.status_code, r.text.replace(prop, "<name>")

    for kind in ("filter", "sort"):
        hidden, missing = as_alice(name, kind), as_alice("no_such_property", kind)
        assert hidden == missing and hidden[0] == 422, (kind, hidden, missing)
    # a visible property filters as before
    r = call(b, "alice", "POST", f"/me/datasets/{b.ds.id}/records/search", json={"filters": {"and": [
        {"type": "terms", "scope": {"entity": "metadata", "metadata_property": "category"}, "values": ["general"]}]}})
    assert r.status_code == 200 and r.json()["total"] == N
    names = [p["name"] for p in call(b, "alice", "GET", f"/me/datasets/{b.ds.id}/metadata-properties").json()["items"]]
    assert names == ["category"]


def test_the_sdk_as_an_annotator_reads_the_filtered_record(blind, argilla_server):
    client = argilla_server.client(blind.keys["alice"])
    record = client.api.records.get(blind.rids[0])
    assert {m.name for m in record.metadata} == {"category"}
    assert {str(r.user_id) for r in record.responses} == {str(blind.users["alice"].id)}
