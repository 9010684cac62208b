"""What each user may see through the API: the policy our embedding adds to argilla-server 2.8's routes.

argilla-server lets an annotator read every response and every metadata value of a record through
`GET /api/v1/records/{id}`, and filter or sort the `/me` search on metadata hidden from annotators (so a blind
A/B's `swapped` could be read back one filter at a time). Here every route of the API has a rule (`ROUTES`,
checked against argilla-server's routers by the tests, so a route added by an upgrade cannot go unreviewed):

- `VIEW`: an annotator gets a record as the UI shows it: their own responses only, and only the metadata
  marked visible for annotators; filtering or sorting on hidden metadata is answered exactly as for a
  property that does not exist. Owners and admins get what argilla-server gives them.
- `STAFF`: owners and admins only. Annotators are refused (403) before argilla-server's handler runs, whatever
  its own policy says.
- `OWN`: argilla-server answers with the caller's own data only (their user, responses, datasets).
- `SETTINGS` / `COUNTS`: dataset settings (hidden metadata properties left out by argilla-server) and counts,
  no record values.
- `PUBLIC`: no authentication (version, status without paths, sign-in).

A route missing from `ROUTES` is treated as `STAFF` (fail closed) and logged at start.

Searches are bounded twice. `EarlyRefusal`, in front of the whole app and before any authentication or
database work, answers 413 for an oversized search body and 422 for a text query over the caps, and runs the
`/me` searches of one credential (API key or UI session; the only search route open to annotators) one at a
time and within its share of the time (`limits.SEARCH_SHARE`), letting a few more wait their turn and answering
429 beyond that: a flood of hostile searches costs the server little and takes at most half of one core.
Behind it, the search routes allow each user `SEARCHES_PER_USER` searches at once whatever credentials they use
(`limits.SearchSlots`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
from typing import Any, Callable

from curation.server.limits import (MAX_SEARCH_PAUSE_S, SEARCH_SHARE, SEARCHES_RUNNING_PER_KEY,
                                    SEARCHES_WAITING_PER_KEY, SearchLimitError, SearchSlots, TooManySearches)

VIEW, STAFF, OWN, SETTINGS, COUNTS, PUBLIC = "view", "staff", "own", "settings", "counts", "public"

ROUTES: dict[tuple[str, str], str] = {
    # records and their data
    ("GET", "/records/{record_id}"): VIEW,
    ("POST", "/me/datasets/{dataset_id}/records/search"): VIEW,
    ("GET", "/datasets/{dataset_id}/records"): STAFF,  # every user's responses
    ("POST", "/datasets/{dataset_id}/records/search"): STAFF,  # every user's responses
    ("DELETE", "/datasets/{dataset_id}/records"): STAFF,
    ("POST", "/datasets/{dataset_id}/records/bulk"): STAFF,
    ("PUT", "/datasets/{dataset_id}/records/bulk"): STAFF,
    ("PATCH", "/records/{record_id}"): STAFF,
    ("DELETE", "/records/{record_id}"): STAFF,
    ("GET", "/records/{record_id}/suggestions"): SETTINGS,  # suggestions are shown to annotators in the UI
    ("PUT", "/records/{record_id}/suggestions"): STAFF,
    ("DELETE", "/records/{record_id}/suggestions"): STAFF,
    ("DELETE", "/suggestions/{suggestion_id}"): STAFF,
    ("POST", "/records/{record_id}/responses"): OWN,
    ("POST", "/me/responses/bulk"): OWN,
    ("PUT", "/responses/{response_id}"): OWN,  # argilla-server: the response's author, or staff
    ("DELETE", "/responses/{response_id}"): OWN,
    # datasets and their settings
    ("GET", "/me/datasets"): OWN,
    ("GET", "/datasets/{dataset_id}"): SETTINGS,
    ("GET", "/datasets/{dataset_id}/fields"): SETTINGS,
    ("GET", "/datasets/{dataset_id}/questions"): SETTINGS,
    ("GET", "/datasets/{dataset_id}/vectors-settings"): SETTINGS,
    ("GET", "/me/datasets/{dataset_id}/metadata-properties"): SETTINGS,  # hidden ones left out by argilla-server
    ("GET", "/metadata-properties/{metadata_property_id}/metrics"): COUNTS,  # hidden ones refused by argilla-server
    ("GET", "/datasets/{dataset_id}/records/search/suggestions/options"): COUNTS,  # suggestion agents
    ("GET", "/me/datasets/{dataset_id}/metrics"): OWN,
    ("GET", "/datasets/{dataset_id}/progress"): COUNTS,
    ("GET", "/datasets/{dataset_id}/users/progress"): COUNTS,  # answers counted per user, no values
    ("POST", "/datasets"): STAFF,
    ("POST", "/datasets/{dataset_id}/fields"): STAFF,
    ("POST", "/datasets/{dataset_id}/questions"): STAFF,
    ("POST", "/datasets/{dataset_id}/metadata-properties"): STAFF,
    ("POST", "/datasets/{dataset_id}/vectors-settings"): STAFF,
    ("PUT", "/datasets/{dataset_id}/publish"): STAFF,
    ("PATCH", "/datasets/{dataset_id}"): STAFF,
    ("DELETE", "/datasets/{dataset_id}"): STAFF,
    ("POST", "/datasets/{dataset_id}/import"): STAFF,
    ("POST", "/datasets/{dataset_id}/export"): STAFF,
    ("PATCH", "/fields/{field_id}"): STAFF,
    ("DELETE", "/fields/{field_id}"): STAFF,
    ("PATCH", "/questions/{question_id}"): STAFF,
    ("DELETE", "/questions/{question_id}"): STAFF,
    ("PATCH", "/metadata-properties/{metadata_property_id}"): STAFF,
    ("DELETE", "/metadata-properties/{metadata_property_id}"): STAFF,
    ("PATCH", "/vectors-settings/{vector_settings_id}"): STAFF,
    ("DELETE", "/vectors-settings/{vector_settings_id}"): STAFF,
    ("GET", "/jobs/{job_id}"): STAFF,
    # users and workspaces
    ("GET", "/me"): OWN,
    ("GET", "/me/workspaces"): OWN,
    ("GET", "/workspaces/{workspace_id}"): SETTINGS,
    ("POST", "/workspaces"): STAFF,
    ("DELETE", "/workspaces/{workspace_id}"): STAFF,
    ("GET", "/workspaces/{workspace_id}/users"): STAFF,
    ("POST", "/workspaces/{workspace_id}/users"): STAFF,
    ("DELETE", "/workspaces/{workspace_id}/users/{user_id}"): STAFF,
    ("GET", "/users"): STAFF,  # users carry their API keys
    ("GET", "/users/{user_id}"): STAFF,
    ("POST", "/users"): STAFF,
    ("PATCH", "/users/{user_id}"): STAFF,
    ("DELETE", "/users/{user_id}"): STAFF,
    ("GET", "/users/{user_id}/workspaces"): STAFF,
    ("GET", "/webhooks"): STAFF,
    ("POST", "/webhooks"): STAFF,
    ("PATCH", "/webhooks/{webhook_id}"): STAFF,
    ("DELETE", "/webhooks/{webhook_id}"): STAFF,
    ("POST", "/webhooks/{webhook_id}/ping"): STAFF,
    # no authentication
    ("GET", "/version"): PUBLIC,
    ("GET", "/status"): PUBLIC,  # the search engine's name and version, memory use: no paths (search_engine.info)
    ("POST", "/token"): PUBLIC,
    ("GET", "/settings"): PUBLIC,
    ("GET", "/oauth2/providers"): PUBLIC,
    ("GET", "/oauth2/providers/{provider}/authentication"): PUBLIC,
    ("GET", "/oauth2/providers/{provider}/access-token"): PUBLIC,
}
SEARCHES = {("POST", "/me/datasets/{dataset_id}/records/search"), ("POST", "/datasets/{dataset_id}/records/search")}

log = logging.getLogger("curation.server")
SLOTS = SearchSlots()


def api_routes(api) -> dict[tuple[str, str], Any]:
    """{(method, path): APIRoute} of a FastAPI app (argilla-server's api_v1)."""
    from fastapi.routing import APIRoute

    return {(method, r.path): r for r in api.routes if isinstance(r, APIRoute) for method in sorted(r.methods)}


def install(api) -> list[tuple[str, str]]:
    """Apply the rules to argilla-server's api_v1 (mounted at /api/v1). Returns the routes without a rule."""
    unknown = []
    for key, route in api_routes(api).items():
        rule = ROUTES.get(key)
        if rule is None:
            unknown.append(key)
            rule = STAFF
        if rule == PUBLIC:
            continue
        endpoint = route.endpoint
        if getattr(endpoint, "_curation_guarded", False):
            continue
        if "current_user" not in route.dependant.call.__code__.co_varnames:
            log.error("route %s %s has no current_user: left as argilla-server made it", *key)
            continue
        if key == ("GET", "/records/{record_id}"):
            guarded = _after(endpoint, _record_for_annotator, after=_load_vector_names)
        elif key == ("POST", "/me/datasets/{dataset_id}/records/search"):
            guarded = _after(endpoint, _search_page_for_annotator, before=_refuse_hidden_metadata)
        elif rule == STAFF:
            guarded = _staff_only(endpoint)
        else:
            continue
        if key in SEARCHES:
            guarded = _bounded(guarded)
        _replace_endpoint(route, guarded)
    for key in unknown:
        log.warning("argilla-server route %s %s has no rule in curation.server.guard: refused to annotators", *key)
    return unknown


def _replace_endpoint(route, endpoint: Callable) -> None:
    from fastapi.routing import request_response

    endpoint._curation_guarded = True
    route.endpoint = endpoint
    route.dependant.call = endpoint
    route.app = request_response(route.get_route_handler())


def _staff_only(endpoint: Callable) -> Callable:
    @functools.wraps(endpoint)
    async def guarded(**kwargs):
        from argilla_server.errors import ForbiddenOperationError

        if kwargs["current_user"].is_annotator:
            raise ForbiddenOperationError()
        return await endpoint(**kwargs)

    return guarded


def _bounded(endpoint: Callable) -> Callable:
    @functools.wraps(endpoint)
    async def bounded(**kwargs):
        from fastapi import HTTPException

        try:
            with SLOTS.take(kwargs["current_user"].id):
                return await endpoint(**kwargs)
        except TooManySearches as err:
            raise HTTPException(status_code=429, detail=str(err), headers={"Retry-After": "1"}) from None

    return bounded


def _after(endpoint: Callable, view: Callable, before: Callable | None = None, after: Callable | None = None):
    """Run `before(**kwargs)` (annotators), the endpoint, `after(result)` (everyone); an annotator then gets
    `view(result, **kwargs)`."""

    @functools.wraps(endpoint)
    async def guarded(**kwargs):
        annotator = kwargs["current_user"].is_annotator
        if annotator and before is not None:
            await before(**kwargs)
        result = await endpoint(**kwargs)
        if after is not None:
            await after(result)
        return await view(result, **kwargs) if annotator else result

    return guarded


# ---- early refusal of searches, before authentication ------------------------------------------------------
_SEARCH_PATH = re.compile(r"^/api/v1/(?:me/)?datasets/[^/]+/records/search$")
MAX_SEARCH_BODY = 1024 * 1024  # a query, filters, a sort, a query vector (16,000 floats fit): no more


class EarlyRefusal:
    """ASGI middleware for the search routes (see the module docstring)."""

    def __init__(self, app, running: int = SEARCHES_RUNNING_PER_KEY, waiting: int = SEARCHES_WAITING_PER_KEY):
        self.app = app
        self.limit, self.waiting = running, waiting
        self.keys: dict[bytes, list] = {}  # credential hash -> [semaphore, searches running or waiting]
        self.not_before: dict[bytes, float] = {}  # credential hash -> when its next search may start

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not _SEARCH_PATH.match(scope["path"]):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        credential = headers.get(b"x-argilla-api-key") or headers.get(b"authorization")
        if not credential:  # argilla-server answers 401
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_SEARCH_BODY:
                return await _answer(send, 413, f"The search request is larger than {MAX_SEARCH_BODY // 2**20} MB")
        problem = _text_query_problem(body)
        if problem:
            return await _answer(send, 422, problem)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if not scope["path"].startswith("/api/v1/me/"):  # owners' and admins' route (the SDK pages through it)
            return await self.app(scope, replay, send)
        key = hashlib.sha256(credential).digest()
        entry = self.keys.setdefault(key, [asyncio.Semaphore(self.limit), 0])
        if entry[1] >= self.limit + self.waiting:
            return await _answer(send, 429, f"Too many searches at once: {entry[1]} of yours are running or waiting. "
                                            "Wait for them to finish.", retry_after=True)
        entry[1] += 1
        loop = asyncio.get_running_loop()
        try:
            async with entry[0]:
                pause = self.not_before.get(key, 0.0) - loop.time()
                if pause > 0:
                    await asyncio.sleep(min(pause, MAX_SEARCH_PAUSE_S))
                started = loop.time()
                try:
                    return await self.app(scope, replay, send)
                finally:
                    ended = loop.time()
                    self.not_before[key] = ended + (ended - started) * (1 / SEARCH_SHARE - 1)
        finally:
            entry[1] -= 1
            if entry[1] <= 0:
                del self.keys[key]
            if len(self.not_before) > 10_000:  # forget the credentials that may search again now
                now = loop.time()
                self.not_before = {k: t for k, t in self.not_before.items() if t > now}


def _text_query_problem(body: bytes) -> str | None:
    """The caps of `text_query.fts_expression`, checked on the raw request (anything else: left to the API)."""
    from curation.server.text_query import fts_expression

    try:
        q = json.loads(body)["query"]["text"]["q"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(q, str):
        return None
    try:
        fts_expression(q)
    except SearchLimitError as err:
        return str(err)
    return None


async def _answer(send, status: int, detail: str, retry_after: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---- the annotator's view of a record -------------------------------------------------------------------
async def _metadata_names(db, dataset_id) -> tuple[set[str], set[str]]:
    """(all metadata property names, those visible to annotators) of a dataset."""
    from argilla_server.enums import UserRole
    from argilla_server.models import MetadataProperty
    from sqlalchemy import select

    rows = (await db.execute(select(MetadataProperty.name, MetadataProperty.allowed_roles)
                             .where(MetadataProperty.dataset_id == dataset_id))).all()
    return {name for name, _ in rows}, {name for name, roles in rows if UserRole.annotator in (roles or [])}


def _as_annotator(record, user_id, visible: set[str]):
    """A record schema with only `user_id`'s responses and the metadata in `visible` (a copy)."""
    update = {}
    if "metadata" in record.model_fields_set and record.metadata is not None:
        update["metadata"] = {k: v for k, v in record.metadata.items() if k in visible}
    if "responses" in record.model_fields_set and record.responses is not None:
        update["responses"] = [r for r in record.responses if r.user_id == user_id]
    return record.model_copy(update=update) if update else record


async def _load_vector_names(record) -> None:
    """argilla-server 2.8's `GET /records/{id}` loads a record's vectors but not their settings, whose name the
    response needs: a record with vectors answered 500 (MissingGreenlet), for every user. Load them here."""
    if record.is_relationship_loaded("vectors"):
        for vector in record.vectors:
            await vector.awaitable_attrs.vector_settings


async def _record_for_annotator(record, *, db, current_user, **_):
    from argilla_server.api.schemas.v1.records import Record as RecordSchema

    schema = RecordSchema.model_validate(record)
    _, visible = await _metadata_names(db, schema.dataset_id)
    return _as_annotator(schema, current_user.id, visible)


async def _search_page_for_annotator(result, *, db, current_user, dataset_id, **_):
    _, visible = await _metadata_names(db, dataset_id)
    for item in result.items:
        item.record = _as_annotator(item.record, current_user.id, visible)
    return result


async def _refuse_hidden_metadata(*, db, current_user, dataset_id, body, **_):
    """Filtering or sorting on metadata hidden from annotators is answered as argilla-server answers for a
    property that does not exist, so nothing tells a hidden property from a missing one."""
    from argilla_server.api.policies.v1 import DatasetPolicy, authorize
    from argilla_server.api.schemas.v1.records import MetadataFilterScope
    from argilla_server.errors.future import UnprocessableEntityError
    from argilla_server.models import Dataset

    scopes = [f.scope for f in (body.filters.and_ if body.filters else [])] + [o.scope for o in body.sort or []]
    names = [s.metadata_property for s in scopes if isinstance(s, MetadataFilterScope)]
    if not names:
        return
    dataset = await Dataset.get_or_raise(db, dataset_id)
    await authorize(current_user, DatasetPolicy.search_records(dataset))  # non-members learn nothing either
    existing, visible = await _metadata_names(db, dataset.id)
    for name in names:
        if name in existing and name not in visible:
            raise UnprocessableEntityError(f"MetadataProperty not found filtering by name={name}, "
                                           f"dataset_id={dataset.id}")
