"""The serving process: the argilla-server 2.8 app under uvicorn, on one machine.

`serve()` reads top to bottom: private umask, lock the workspace (made private) → bind the port →
credentials → embedded Redis → environment → patches, migrations, FTS schema, owner user → the API's access
rules (`guard.py`) → rq worker, supervisor → uvicorn until Ctrl-C/SIGTERM → stop the supervisor, the worker
and Redis. argilla_server reads its settings from the environment at import time, so every argilla_server
import happens after the environment is set.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Callable

from curation.server.children import EmbeddedRedis, Supervisor, requeue_started_jobs, start_worker
from curation.server.workspace import DEFAULT_ARGILLA_WORKSPACE, ServerFiles, local_api_url

ENGINE_NAME = "curation-sql"  # same as search_engine.ENGINE_NAME, without importing argilla_server here


class Shutdown(BaseException):
    """Raised by the SIGTERM handler so that cleanup runs exactly as for Ctrl-C."""


class ServeError(RuntimeError):
    """A clear, user-facing reason why the server cannot start."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind now (before anything slow) so a busy port fails fast; uvicorn then serves on this socket."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == 98:  # EADDRINUSE
            raise ServeError(
                f"Port {port} on {host} is already in use (another Argilla or another program). "
                "Stop it, or choose another port with --port."
            ) from None
        raise ServeError(f"Cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


def server_environment(ws: ServerFiles, redis_url: str, secret: str, api_url: str) -> dict:
    """The ARGILLA_* settings for a workspace server (read by argilla_server at import time)."""
    origins = sorted({api_url, api_url.replace("127.0.0.1", "localhost")})
    return {
        "ARGILLA_HOME_PATH": str(ws.home_path),
        "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{ws.db_path}?check_same_thread=False",
        "ARGILLA_DATABASE_SQLITE_TIMEOUT": "30",
        "ARGILLA_REDIS_URL": redis_url,
        "ARGILLA_SEARCH_ENGINE": ENGINE_NAME,
        "ARGILLA_AUTH_SECRET_KEY": secret,
        "ARGILLA_AUTH_OAUTH_CFG": str(ws.home_path / ".oauth.yaml"),  # never a stray ./.oauth.yaml
        "ARGILLA_CORS_ORIGINS": json.dumps(origins),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def _configure_sqlite() -> None:
    """WAL and a busy timeout on every connection: readers never block the writer, concurrent writers wait
    instead of failing, and a SIGKILL mid-write leaves the last committed state, never a corrupt file."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA mmap_size = 2147418112")
        cursor.close()


def _migrate(ws: ServerFiles) -> None:
    """argilla-server's alembic migrations; skipped when this argilla-server version already migrated the DB."""
    import sqlite3
    from importlib.metadata import version

    import argilla_server
    from alembic import command
    from alembic.config import Config

    marker = ws.home_path / "migrated.json"

    def revision() -> str | None:
        try:
            with sqlite3.connect(ws.db_path) as con:
                return con.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        except sqlite3.Error:
            return None

    done = json.loads(marker.read_text()) if marker.exists() else {}
    current = {"argilla_server": version("argilla-server"), "revision": revision()}
    if done and done == current:
        return
    cfg = Config()  # no ini file: alembic must not reconfigure our logging
    cfg.set_main_option("script_location", str(Path(argilla_server.__file__).parent / "alembic"))
    command.upgrade(cfg, "head")
    marker.write_text(json.dumps({"argilla_server": current["argilla_server"], "revision": revision()}) + "\n")


async def _ensure_owner(creds: dict, reset: bool, workspace_name: str) -> None:
    """The owner account from credentials.json (the file is the source of truth) and the default workspace."""
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import UserRole, Workspace as ArgillaWorkspace

    async with AsyncSessionLocal() as db:
        user = await accounts.get_user_by_username(db, creds["username"])
        if user is None:
            user = await accounts.create_user(
                db,
                {
                    "first_name": "Owner",
                    "last_name": None,
                    "username": creds["username"],
                    "role": UserRole.owner,
                    "password": creds["password"],
                },
            )
            await user.update(db, api_key=creds["api_key"])
        elif reset or user.api_key != creds["api_key"]:
            await user.update(db, api_key=creds["api_key"], password_hash=accounts.hash_password(creds["password"]))
        if await ArgillaWorkspace.get_by(db, name=workspace_name) is None:
            await accounts.create_workspace(db, {"name": workspace_name})


def _banner(ws: ServerFiles, api_url: str, host: str, creds: dict, show_credentials: bool) -> str:
    lines = [f"Argilla is running at {api_url}  (workspace {ws.root})"]
    if not is_loopback(host):
        lines.append(f"  listening on {host}: reachable from other machines")
    if show_credentials:
        lines += [
            "First start: the owner account (shown once; kept in "
            f"{ws.credentials_path}, mode 0600):",
            f"  username: {creds['username']}",
            f"  password: {creds['password']}",
            f"  API key:  {creds['api_key']}",
        ]
    else:
        lines.append(f"Owner credentials: {ws.credentials_path}")
    lines.append(f"Add a curator: python -m curation add-user NAME --workspace {ws.root}")
    return "\n".join(lines)


def serve(
    workspace: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 6900,
    *,
    announce: Callable[[str], None] = print,
    show_credentials: bool | None = None,
    log_level: str = "warning",
) -> int:
    """Run the workspace's Argilla in this process until Ctrl-C or SIGTERM. Returns an exit code."""
    previous_umask = os.umask(0o077)  # every file this process and its children make is private
    ws = ServerFiles(workspace)
    made_private = ws.made_private()
    ws.create()
    try:
        lock_fd = ws.acquire_lock()  # WorkspaceBusyError when another process serves it
    except BaseException:
        os.umask(previous_umask)
        raise
    if made_private:
        announce(made_private)
    _log_to_stderr()
    previous_term = signal.signal(signal.SIGTERM, _raise_shutdown)
    redis = sock = None
    tmp_dir = ws.run_dir / "tmp"
    try:
        if not is_loopback(host):
            announce(
                f"WARNING: binding {host}, not 127.0.0.1: anyone who can reach this machine on port {port} "
                "can reach the Argilla sign-in page. Use a firewall or a TLS reverse proxy."
            )
        sock = bind_socket(host, port)
        port = sock.getsockname()[1]
        api_url = local_api_url(host, port)
        creds, created = ws.ensure_credentials(api_url)
        if show_credentials is None:
            show_credentials = created

        shutil.rmtree(tmp_dir, ignore_errors=True)  # the UI's static copy from a killed run
        tmp_dir.mkdir(parents=True)
        tempfile.tempdir = str(tmp_dir)

        redis = EmbeddedRedis(ws.run_dir).start()
        env = server_environment(ws, redis.url, ws.auth_secret(), api_url)
        os.environ.update(env)

        _configure_sqlite()
        from curation.server import patches

        patches.apply()
        outbox = patches.JobOutbox(ws.run_dir / "pending-jobs")
        patches.queue_jobs_through_outbox(outbox)
        _migrate(ws)
        from curation.server.search_engine import drop_non_finite_vectors, ensure_schema

        ensure_schema(str(ws.db_path))
        dropped = drop_non_finite_vectors(str(ws.db_path))
        if dropped:
            logging.getLogger("curation.server").warning(
                "deleted %d stored vector(s) holding NaN or Infinity (accepted by an earlier version; they broke "
                "every page and similarity search that included them)", dropped)
        return asyncio.run(
            _serve(ws, sock, host, port, api_url, creds, created, show_credentials, announce, log_level, redis, outbox)
        )
    finally:
        if redis is not None:
            redis.stop()
        if sock is not None:
            sock.close()
        ws.clear_state()
        shutil.rmtree(tmp_dir, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous_term)
        os.close(lock_fd)
        os.umask(previous_umask)


async def _serve(ws, sock, host, port, api_url, creds, created, show_credentials, announce, log_level, redis, outbox):
    import uvicorn

    await _ensure_owner(creds, reset=created, workspace_name=DEFAULT_ARGILLA_WORKSPACE)
    import curation.server.search_engine  # noqa: F401  (registers the engine before the app pings it)
    from argilla_server._app import app  # importing builds the app (and copies the UI into run/tmp)
    from argilla_server.api.routes import api_v1
    from argilla_server.jobs.queues import REDIS_CONNECTION

    from curation.server import guard, patches

    patches.skip_loopback_compression(app)
    guard.install(api_v1)
    ws.secure()  # the UI's static files, just copied into run/tmp with their package's modes
    from argilla_server.database import async_engine

    await async_engine.dispose()
    supervisor = None
    fatal: list[str] = []
    config = uvicorn.Config(guard.EarlyRefusal(app), log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started and not task.done():
            await asyncio.sleep(0.05)
        if server.started:
            # jobs a killed worker or server had started, and jobs kept while Redis was down, go first
            requeued = requeue_started_jobs(REDIS_CONNECTION)
            pending = outbox.drain()
            if requeued or pending:
                logging.getLogger("curation.server").warning(
                    "re-queued %d job(s) left unfinished by the last run, enqueued %d kept while Redis was down",
                    len(requeued), pending)

            def spawn_worker():
                # the worker imports argilla_server too: start it once the app answers, not alongside
                with open(ws.log_path.parent / "worker.log", "ab") as log:
                    # argilla_server copies its UI into a temporary folder on import: keep the worker's in run/tmp
                    return start_worker({**os.environ, "TMPDIR": tempfile.gettempdir()}, log)

            state = {
                "pid": os.getpid(),
                "host": host,
                "port": port,
                "api_url": api_url,
                "redis_socket": str(redis.socket_path),
                "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            }

            def on_fatal(message: str) -> None:
                fatal.append(message)
                server.should_exit = True

            supervisor = Supervisor(redis, spawn_worker(), spawn_worker, REDIS_CONNECTION, outbox,
                                    on_change=lambda health: ws.write_state({**state, **health}), on_fatal=on_fatal)
            ws.write_state({**state, **supervisor.state})
            supervisor.start()
            announce(_banner(ws, api_url, host, creds, show_credentials))
        await task
        if fatal:
            raise ServeError(fatal[0])
        if not server.started:
            raise ServeError("The Argilla app failed to start; see the messages above.")
        return 0
    finally:
        if supervisor is not None:
            supervisor.stop()


def _log_to_stderr() -> None:
    """The supervisor's and the patches' messages (logger `curation.server`) go where the server's output goes."""
    logger = logging.getLogger("curation.server")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _raise_shutdown(signum, frame):
    raise Shutdown()
