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

Two fixes of argilla-server's behaviour, also applied here:

5. A vector with NaN or Infinity passed validation, was stored, and only then failed (a 422 from the JSON
   encoder, after the commit), breaking every later page that includes it. It is now refused by the
   server's own vector validation, before anything is written, with the vector's name and the position.
6. Background jobs enqueued after a committed write (the record-status job of a distribution change, webhook
   events) no longer turn that write into a 500 when Redis is down: the job goes to the workspace's outbox
   (`run/pending-jobs/`) and the serving process enqueues it once Redis answers again (see `children.py`).
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import pickle
import tempfile
import time
import uuid
from pathlib import Path


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


def refuse_non_finite_vectors() -> None:
    from argilla_server.validators.vectors import VectorValidator

    original = VectorValidator.validate.__func__

    def validate(cls, value, vector_settings):
        original(cls, value, vector_settings)
        for i, x in enumerate(value):
            if not math.isfinite(x):
                raise ValueError(f"vector value for vector name={vector_settings.name} must be finite numbers, "
                                 f"got {x} at position {i}")

    VectorValidator.validate = classmethod(validate)


# ---- the job outbox -------------------------------------------------------------------------------------
log = logging.getLogger("curation.server")


class JobOutbox:
    """Jobs that could not be enqueued because Redis was down, one pickle file each (written atomically), until
    the serving process enqueues them. Only the serving process writes and drains it."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def add(self, func_name: str, args: tuple, kwargs: dict) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.job"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".")
        with os.fdopen(fd, "wb") as f:
            pickle.dump({"func": func_name, "args": args, "kwargs": kwargs}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.folder / name)
        return self.folder / name

    def pending(self) -> list[Path]:
        return sorted(self.folder.glob("*.job")) if self.folder.is_dir() else []

    def drain(self) -> int:
        """Enqueue every pending job (oldest first); stops at the first Redis error. Returns jobs enqueued."""
        import redis

        done = 0
        for path in self.pending():
            spec = pickle.loads(path.read_bytes())
            fn = _OUTBOX_JOBS.get(spec["func"])
            if fn is None:  # a job of another argilla-server version: report it, keep the file
                log.error("pending job %s: unknown function %s; left in %s", path.name, spec["func"], self.folder)
                continue
            try:
                fn._curation_enqueue(*spec["args"], **spec["kwargs"])
            except redis.exceptions.RedisError:
                break
            path.unlink()
            done += 1
        return done


_OUTBOX_JOBS: dict = {}
_OUTBOX: JobOutbox | None = None


def queue_jobs_through_outbox(outbox: JobOutbox) -> None:
    """Jobs that follow a committed write: on a Redis error, keep them in `outbox` instead of failing the request.
    (The hub import/export jobs are not among them: nothing is written before they are enqueued, so their error
    is an honest one.)"""
    import redis
    from argilla_server.jobs import dataset_jobs, webhook_jobs

    global _OUTBOX
    _OUTBOX = outbox
    for fn in (dataset_jobs.update_dataset_records_status_job, webhook_jobs.notify_event_job):
        name = f"{fn.__module__}.{fn.__name__}"
        if name in _OUTBOX_JOBS:
            continue
        original = fn.delay

        def delay(*args, _original=original, _name=name, **kwargs):
            try:
                return _original(*args, **kwargs)
            except redis.exceptions.RedisError as err:
                path = _OUTBOX.add(_name, args, kwargs)
                log.warning("Redis is unavailable (%s): job %s kept in %s until it is back", err, _name, path)
                return None

        fn._curation_enqueue = original
        fn.delay = delay
        _OUTBOX_JOBS[name] = fn


def apply() -> None:
    """The patches that do not need the app (apply before the first request)."""
    cache_settings_adapters()
    skip_unsubscribed_record_events()
    remember_workspace_membership()
    refuse_non_finite_vectors()
