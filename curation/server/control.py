"""Start, inspect and stop a workspace's server from another process (the CLI, tests, the demo)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from curation.server.children import _die_with_parent
from curation.server.workspace import DEFAULT_ARGILLA_WORKSPACE, ServerFiles, WorkspaceBusyError, local_api_url


def ping(api_url: str, timeout: float = 2.0) -> bool:
    """True when an Argilla server answers at api_url."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/api/v1/version", timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class ServerHandle:
    """A running workspace server. `stop()` shuts it down (and its Redis and worker)."""

    workspace: Path
    api_url: str
    api_key: str
    pid: int
    credentials: dict = field(repr=False, default_factory=dict)
    first_start: bool = False
    process: subprocess.Popen | None = field(repr=False, default=None)
    made_private: str = ""  # what start had to make private (see ServerFiles.made_private), for the user

    def stop(self, timeout: float = 30.0) -> bool:
        stopped = stop_server(self.workspace, timeout=timeout)
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return stopped

    def client(self):
        from contract.argilla import connect

        return connect(api_url=self.api_url, api_key=self.api_key)


def _process(pid, parent, marker: str) -> bool:
    """True when `pid` is a live (not zombie) child of `parent` whose command line contains `marker` (Linux /proc;
    elsewhere: the pid exists)."""
    if not pid:
        return False
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
    return fields[0] != "Z" and int(fields[1]) == parent and marker in cmdline


def _queue_counts(socket_path: str) -> dict | None:
    """Jobs in the embedded Redis: {queued, running, failed}, or None when it does not answer."""
    import redis

    from curation.server.children import QUEUES

    try:
        r = redis.Redis(unix_socket_path=socket_path, socket_timeout=2, socket_connect_timeout=2)
        with r.pipeline() as p:
            for q in QUEUES:
                p.llen(f"rq:queue:{q}")
                p.zcard(f"rq:wip:{q}")
                p.zcard(f"rq:failed:{q}")
            counts = p.execute()
        r.close()
    except (redis.exceptions.RedisError, OSError):
        return None
    return {"queued": sum(counts[0::3]), "running": sum(counts[1::3]), "failed": sum(counts[2::3])}


def server_status(workspace: str | Path | None = None) -> dict:
    """Where the workspace's server runs and whether each of its parts works.

    {workspace, running, healthy, pid, api_url, host, port, started_at, api, worker, redis, jobs, restarts,
    problems}: `api` is True when the HTTP API answers; `worker` and `redis` say {pid, running}; `jobs` counts the
    background jobs queued, running, failed and waiting in the outbox for Redis; `healthy` is True only when the
    API, the worker and Redis all work, and `problems` lists what does not, in words."""
    ws = ServerFiles(workspace)
    state = ws.read_state() or {}
    running = ws.is_locked()
    get = (lambda k: state.get(k)) if running else (lambda k: None)
    status = {
        "workspace": str(ws.root),
        "running": running,
        "healthy": False,
        "pid": get("pid"),
        "api_url": get("api_url"),
        "host": get("host"),
        "port": get("port"),
        "started_at": get("started_at"),
        "api": False,
        "worker": {"pid": get("worker_pid"), "running": False},
        "redis": {"pid": get("redis_pid"), "running": False},
        "jobs": None,
        "restarts": {"worker": get("worker_restarts") or 0, "redis": get("redis_restarts") or 0,
                     "requeued_jobs": get("requeued_jobs") or 0, "last_failure": get("last_failure")},
        "problems": [],
    }
    if not running:
        return status
    if not state.get("api_url"):
        status["problems"].append("starting: the server has not answered yet")
        return status
    problems = status["problems"]
    status["api"] = ping(state["api_url"])
    if not status["api"]:
        problems.append(f"the API does not answer at {state['api_url']}")
    status["worker"]["running"] = _process(state.get("worker_pid"), state.get("pid"), "curation.server.worker")
    if not status["worker"]["running"]:
        problems.append(f"the background worker (pid {state.get('worker_pid')}) is not running; "
                        "the server restarts it")
    jobs = _queue_counts(state["redis_socket"]) if state.get("redis_socket") else None
    status["redis"]["running"] = jobs is not None and _process(state.get("redis_pid"), state.get("pid"),
                                                               "redis-server")
    if not status["redis"]["running"]:
        problems.append(f"the embedded Redis (pid {state.get('redis_pid')}) does not answer; the server restarts it")
    waiting = len(list((ws.run_dir / "pending-jobs").glob("*.job")))
    status["jobs"] = {**(jobs or {"queued": None, "running": None, "failed": None}), "waiting_for_redis": waiting}
    status["healthy"] = not problems
    return status


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def start_server(
    workspace: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 6900,
    detach: bool = True,
    timeout: float = 120.0,
) -> ServerHandle:
    """Start the workspace's server in a background process and wait until it answers.

    detach=True: the server outlives this process (stop it with `handle.stop()` or `python -m curation stop`).
    detach=False: the server is stopped when this process exits, even if it is killed.
    Output goes to <workspace>/logs/server.log; credentials are made here (never printed to the log).
    """
    ws = ServerFiles(workspace)
    made_private = ws.made_private()
    ws.create()
    if ws.is_locked():
        state = ws.read_state() or {}
        raise WorkspaceBusyError(
            f"Workspace {ws.root} is already being served"
            + (f" at {state['api_url']} (pid {state.get('pid')})" if state.get("api_url") else "")
            + f"; stop it with `python -m curation stop --workspace {ws.root}`."
        )
    creds, created = ws.ensure_credentials(local_api_url(host, port))
    ws.clear_state()
    cmd = [sys.executable, "-m", "curation", "serve", "--workspace", str(ws.root), "--host", host, "--port", str(port)]
    log = os.fdopen(os.open(ws.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
            preexec_fn=None if detach else _die_with_parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"The Argilla server for {ws.root} exited during start (code {proc.returncode}). "
                f"Last lines of {ws.log_path}:\n{_tail(ws.log_path)}"
            )
        state = ws.read_state()
        if state and state.get("pid") == proc.pid and ping(state["api_url"]):
            return ServerHandle(
                workspace=ws.root,
                api_url=state["api_url"],
                api_key=creds["api_key"],
                pid=proc.pid,
                credentials=ws.read_credentials(),
                first_start=created,
                process=proc,
                made_private=made_private,
            )
        time.sleep(0.1)
    proc.terminate()
    raise TimeoutError(f"The Argilla server for {ws.root} did not answer within {timeout:.0f} s; see {ws.log_path}")


def stop_server(workspace: str | Path | None = None, timeout: float = 30.0) -> bool:
    """Stop the workspace's server (SIGTERM, then SIGKILL after `timeout`). False if none was running."""
    ws = ServerFiles(workspace)
    state = ws.read_state() or {}
    pid = state.get("pid")
    if not ws.is_locked() or not pid:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not ws.is_locked():
            return True
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)  # its Redis and worker die with it (PDEATHSIG)
    except ProcessLookupError:
        pass
    for _ in range(50):
        if not ws.is_locked():
            break
        time.sleep(0.1)
    return True


__all__ = ["ServerHandle", "start_server", "server_status", "stop_server", "ping", "DEFAULT_ARGILLA_WORKSPACE"]
