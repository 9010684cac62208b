"""Narrow speed-ups of argilla-server 2.8, applied in the serving process only.

Profiling on a 2-core machine showed most of the server's time going to work whose result was already
known or thrown away. Each patch keeps the server's behaviour exactly; it only skips repeated or unused work:

1. `Question.parsed_settings` / `MetadataProperty.parsed_settings` build a pydantic TypeAdapter on
   every access, i.e. for every suggestion and metadata value of every record validated. The adapted
   types never change, so each adapter is built once.
2. After every record upsert the server builds a webhook event per record (loading the dataset with
   five relationships and serializing the record) and only then finds that no webhook is enabled.
   The event is now built only when an enabled webhook subscribes to it.
3. When a curator (annotator) searches, the server checks for every metadata value of every record returned
   whether the curator is a member of the dataset's workspace: one query each, 150 for a page of 50 records
   with three metadata properties. The answer is remembered for the rest of the request (the user object
   lives only as long as its request's database session).
4. Responses to clients on this machine are not Brotli-compressed: on loopback, compressing a page of
   records with vectors costs more CPU than it saves. Remote clients (a non-loopback bind) still get Brotli.
"""

from __future__ import annotations

import importlib


def cache_settings_adapters() -> None:
    import argilla_server.models.database as models
    from pydantic import TypeAdapter

    adapters: dict[int, tuple] = {}

    def cached_type_adapter(tp):
        entry = adapters.get(id(tp))
        if entry is None:
            entry = adapters[id(tp)] = (tp, TypeAdapter(tp))  # keep tp alive so its id stays unique
        return entry[1]

    models.TypeAdapter = cached_type_adapter


def skip_unsubscribed_record_events() -> None:
    from argilla_server.contexts import webhooks
    from argilla_server.webhooks.v1 import records as record_events

    original = record_events.notify_record_event

    async def notify_record_event(db, record_event, record):
        if not any(record_event in webhook.events for webhook in await webhooks.list_enabled_webhooks(db)):
            return []
        return await original(db, record_event, record)

    record_events.notify_record_event = notify_record_event
    for module in ("argilla_server.bulk.records_bulk", "argilla_server.contexts.records",
                   "argilla_server.contexts.datasets", "argilla_server.contexts.distribution"):
        mod = importlib.import_module(module)
        if getattr(mod, "notify_record_event_v1", None) is original:
            mod.notify_record_event_v1 = notify_record_event


def remember_workspace_membership() -> None:
    from argilla_server.models import User

    original = User.is_member

    async def is_member(self, workspace_id) -> bool:
        known = self.__dict__.setdefault("_curation_is_member", {})  # a plain attribute, not a mapped one
        if workspace_id not in known:
            known[workspace_id] = await original(self, workspace_id)
        return known[workspace_id]

    User.is_member = is_member


class _LoopbackWithoutCompression:
    """Brotli for remote clients, plain responses for clients on this machine."""

    def __init__(self, app, **brotli_options):
        from brotli_asgi import BrotliMiddleware

        self.plain = app
        self.compressed = BrotliMiddleware(app, **brotli_options)

    async def __call__(self, scope, receive, send):
        client = scope.get("client") or ("",)
        if scope["type"] == "http" and client[0] in ("127.0.0.1", "::1"):
            return await self.plain(scope, receive, send)
        return await self.compressed(scope, receive, send)


def skip_loopback_compression(app) -> None:
    from brotli_asgi import BrotliMiddleware
    from starlette.middleware import Middleware

    for i, middleware in enumerate(app.user_middleware):
        if middleware.cls is BrotliMiddleware:
            app.user_middleware[i] = Middleware(_LoopbackWithoutCompression, *middleware.args, **middleware.kwargs)


def apply() -> None:
    """The patches that do not need the app (apply before the first request)."""
    cache_settings_adapters()
    skip_unsubscribed_record_events()
    remember_workspace_membership()
