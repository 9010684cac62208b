"""Two narrow speed-ups of argilla-server 2.8, applied in the serving process only.

Logging records through the API spent most of its CPU time on work whose result was thrown away.
Both patches keep the server's behaviour exactly; they only skip repeated or unused work:

1. `Question.parsed_settings` / `MetadataProperty.parsed_settings` build a pydantic TypeAdapter on
   every access, i.e. for every suggestion and metadata value of every record validated. The adapted
   types never change, so each adapter is built once.
2. After every record upsert the server builds a webhook event per record (loading the dataset with
   five relationships and serializing the record) and only then finds that no webhook is enabled.
   The event is now built only when an enabled webhook subscribes to it.
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


def apply() -> None:
    cache_settings_adapters()
    skip_unsubscribed_record_events()
