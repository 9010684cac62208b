"""The workspace server as an operator meets it: security defaults, clear errors, the CLI, a SIGKILL in the
middle of logging, restarts that keep everything, and shutdowns that leave no process behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from argilla_fixtures import free_port

REPO = Path(__file__).resolve().parent.parent


def cli(*args, timeout=120, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curation", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in state  # a zombie has exited; only its parent has not reaped it yet


def wait_dead(pids, timeout=10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


def token(api_url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(f"{api_url}/api/v1/token", data={"username": username, "password": password})


# ---- security defaults (the session server) ------------------------------------------------------------------
def test_secrets_are_private_and_default_credentials_do_not_exist(argilla_server):
    ws = argilla_server.workspace
    assert stat.S_IMODE(ws.stat().st_mode) == 0o700
    for name in ("credentials.json", "auth_secret"):
        assert stat.S_IMODE((ws / name).stat().st_mode) == 0o600, name
    creds = json.loads((ws / "credentials.json").read_text())
    assert set(creds) == {"api_url", "api_key", "username", "password"}
    assert len(creds["password"]) >= 16 and len(creds["api_key"]) >= 32
    assert token(argilla_server.api_url, creds["username"], creds["password"]).status_code == 201
    # the well-known defaults of the Argilla images never exist
    assert token(argilla_server.api_url, "argilla", "1234").status_code == 401
    assert httpx.get(f"{argilla_server.api_url}/api/v1/me", headers={"X-Argilla-Api-Key": "argilla.apikey"}).status_code == 401
    assert argilla_server.client().users(username="argilla") is None
    # bound to loopback; keys never written to the logs
    assert json.loads((ws / "run" / "server.json").read_text())["host"] == "127.0.0.1"
    for log in (ws / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        assert creds["api_key"] not in text and creds["password"] not in text, log


def test_connect_errors_name_the_url(argilla_server, tmp_path, monkeypatch):
    from contract.argilla import connect, workspace_credentials

    monkeypatch.delenv("ARGILLA_API_URL", raising=False)
    monkeypatch.delenv("ARGILLA_API_KEY", raising=False)
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionError, match="not reachable") as e:
        connect(api_url=dead, api_key="whatever", retries=0)
    assert dead in str(e.value)
    with pytest.raises(PermissionError, match="rejected the API key") as e:
        connect(api_url=argilla_server.api_url, api_key="cur.wrong-key")
    assert argilla_server.api_url in str(e.value)
    with pytest.raises(ConnectionError, match="ARGILLA_API_URL") as e:
        connect(tmp_path / "no-such-workspace")
    assert "credentials.json" in str(e.value)
    # the workspace's credentials file, then the environment, which wins
    assert connect(argilla_server.workspace).me.username == "owner"
    assert workspace_credentials(argilla_server.workspace)["api_key"] == argilla_server.api_key
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server.api_url)
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    assert connect(tmp_path / "no-such-workspace").me.username == "owner"
    monkeypatch.setenv("ARGILLA_API_KEY", "cur.wrong-key")
    with pytest.raises(PermissionError, match="ARGILLA_API_KEY"):
        connect(argilla_server.workspace)


# ---- the CLI ---------------------------------------------------------------------------------------------------
def test_cli_status_port_in_use_workspace_busy_and_add_user(argilla_server, tmp_path):
    st = cli("status", "--workspace", argilla_server.workspace, "--json")
    assert st.returncode == 0, st.stderr
    status = json.loads(st.stdout)
    assert status["running"] and status["healthy"] and status["api_url"] == argilla_server.api_url

    port = int(argilla_server.api_url.rsplit(":", 1)[1])
    busy_port = cli("serve", "--workspace", tmp_path / "other", "--port", port, timeout=60)
    assert busy_port.returncode == 1 and f"Port {port} on 127.0.0.1 is already in use" in busy_port.stderr
    busy_ws = cli("serve", "--workspace", argilla_server.workspace, "--port", free_port(), timeout=60)
    assert busy_ws.returncode == 1 and "already being served" in busy_ws.stderr
    assert argilla_server.api_url in busy_ws.stderr

    assert cli("status", "--workspace", tmp_path / "nothing-here").returncode == 3

    added = cli("add-user", "cli-curator", "--workspace", argilla_server.workspace)
    assert added.returncode == 0, added.stderr
    password = next(line.split()[-1] for line in added.stdout.splitlines() if "password:" in line)
    assert token(argilla_server.api_url, "cli-curator", password).status_code == 201
    client = argilla_server.client()
    assert str(client.users(username="cli-curator").role).endswith("annotator")
    assert "cli-curator" in [u.username for u in client.workspaces(argilla_server.workspace_name).users]
    again = cli("add-user", "cli-curator", "--workspace", argilla_server.workspace)
    assert again.returncode == 1 and "already exists" in again.stderr


# ---- crashes, restarts, shutdowns (a workspace of their own) ----------------------------------------------------
def test_sigkill_while_logging_then_restart_keeps_everything(tmp_path):
    import argilla as rg

    from contract.argilla import connect
    from curation.server import start_server
    from curation.server.users import add_user

    ws, port = tmp_path / "ws", free_port()
    handle = start_server(ws, port=port, detach=False)
    state = json.loads((ws / "run" / "server.json").read_text())
    client = connect(ws)
    settings = rg.Settings(fields=[rg.TextField(name="text")],
                           questions=[rg.RatingQuestion(name="quality", values=[1, 2, 3])])
    ds = rg.Dataset(name="crash", workspace="curation", settings=settings, client=client).create()
    ds.records.log([rg.Record(id="first", fields={"text": "common first"})])
    _, curator_key, _ = add_user(client, "crash-curator")
    first_id = str(next(iter(ds.records))._server_id)
    r = httpx.post(f"{handle.api_url}/api/v1/records/{first_id}/responses", headers={"X-Argilla-Api-Key": curator_key},
                   json={"values": {"quality": {"value": 3}}, "status": "submitted"})
    assert r.status_code == 201, r.text
    ui_token = token(handle.api_url, "owner", handle.credentials["password"]).json()["access_token"]

    stop_logging = threading.Event()

    def keep_logging():
        for b in range(200):
            if stop_logging.is_set():
                return
            try:
                ds.records.log([rg.Record(id=f"b{b}-{i}", fields={"text": f"common batch {b} item {i}"})
                                for i in range(50)])
            except Exception:
                return

    logger = threading.Thread(target=keep_logging, daemon=True)
    logger.start()
    db = ws / "argilla.db"
    deadline = time.monotonic() + 60
    while True:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as con:
            if con.execute("SELECT count(*) FROM records").fetchone()[0] >= 150:
                break
        assert time.monotonic() < deadline, "records did not arrive"
        time.sleep(0.05)
    os.kill(state["pid"], signal.SIGKILL)  # mid-logging, no chance to clean up
    stop_logging.set()
    handle.process.wait(10)
    assert wait_dead([state["redis_pid"], state["worker_pid"]]) == [], "Redis or the worker outlived the server"
    logger.join(60)
    with pytest.raises(ConnectionError, match=f"python -m curation serve --workspace {ws}"):
        connect(ws, retries=0)

    started = cli("serve", "--detach", "--workspace", ws, "--port", port)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "password" not in started.stdout  # not a first start: credentials are not shown again
    try:
        with sqlite3.connect(db, timeout=30) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            con.execute("INSERT INTO curation_fts(curation_fts) VALUES ('integrity-check')")  # raises if corrupt
            in_db = con.execute("SELECT count(*) FROM records").fetchone()[0]
        client = connect(ws)
        ds = client.datasets("crash", workspace="curation")
        assert ds is not None and in_db >= 150
        assert len(list(ds.records)) == in_db
        assert len(list(ds.records(query=rg.Query(query="common")))) == in_db  # the text index matches the table
        first = next(r for r in ds.records(with_responses=True) if r.id == "first")
        assert [resp.value for resp in first.responses["quality"]] == [3]
        # the auth secret is stable: a UI session from before the crash is still valid
        me = httpx.get(f"{handle.api_url}/api/v1/me", headers={"Authorization": f"Bearer {ui_token}"})
        assert me.status_code == 200 and me.json()["username"] == "owner"
        st = json.loads(cli("status", "--workspace", ws, "--json").stdout)
        assert st["running"] and st["healthy"]
        state = json.loads((ws / "run" / "server.json").read_text())
    finally:
        stopped = cli("stop", "--workspace", ws)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert wait_dead([state["pid"], state["redis_pid"], state["worker_pid"]]) == []
    assert cli("status", "--workspace", ws).returncode == 3
    assert not (ws / "run" / "redis.sock").exists() and not (ws / "run" / "tmp").exists()


def test_a_non_loopback_bind_warns_before_it_listens(tmp_path):
    """The warning for a bind other than loopback, checked without ever listening on the network: 192.0.2.1
    (TEST-NET-1, RFC 5737) is no address of this machine, so the bind fails after the warning."""
    port = free_port()
    out = cli("serve", "--workspace", tmp_path / "net", "--host", "192.0.2.1", "--port", port, timeout=60)
    assert out.returncode == 1
    assert f"WARNING: binding 192.0.2.1, not 127.0.0.1: anyone who can reach this machine on port {port}" in out.stdout
    assert f"Cannot listen on 192.0.2.1:{port}" in out.stderr


def test_foreground_ctrl_c_stops_everything(tmp_path):
    ws, port = tmp_path / "fg", free_port()
    proc = subprocess.Popen([sys.executable, "-m", "curation", "serve", "--workspace", str(ws), "--port", str(port)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 90
        while not any(line.startswith("Add a curator") for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        out = "".join(lines)
        assert "WARNING" not in out
        assert f"Argilla is running at http://127.0.0.1:{port}" in out
        creds = json.loads((ws / "credentials.json").read_text())
        assert f"password: {creds['password']}" in out and f"API key:  {creds['api_key']}" in out  # first start
        state = json.loads((ws / "run" / "server.json").read_text())
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Argilla stopped." in proc.stdout.read()
    assert wait_dead([state["redis_pid"], state["worker_pid"]]) == []
    assert not (ws / "run" / "server.json").exists()


# ---- private files, whoever made the folder ----------------------------------------------------------------
def loose(root: Path) -> list[str]:
    """Everything under root (root included) that its group or others may use."""
    out = []
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        mode = stat.S_IMODE(p.lstat().st_mode)
        if mode & 0o077:
            out.append(f"{p.relative_to(root.parent)} {mode:o}")
    return out


def test_a_workspace_folder_made_0755_by_someone_else_is_made_private(tmp_path):
    import argilla as rg

    ws, port = tmp_path / "shared", free_port()
    ws.mkdir(mode=0o755)
    os.chmod(ws, 0o755)  # whatever the umask
    (ws / "notes.txt").write_text("the team's own file\n")
    started = cli("serve", "--detach", "--workspace", ws, "--port", port)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        assert f"Made the workspace private (others could read it): {ws} 755 -> 700" in started.stdout
        assert stat.S_IMODE(ws.stat().st_mode) == 0o700
        client = connect_ws(ws)
        settings = rg.Settings(fields=[rg.TextField(name="text")], vectors=[rg.VectorField(name="v", dimensions=2)],
                               questions=[rg.LabelQuestion(name="ok", labels=["y", "n"])])
        ds = rg.Dataset(name="private", workspace="curation", settings=settings, client=client).create()
        ds.records.log([rg.Record(id=f"p{i}", fields={"text": f"t{i}"}, vectors={"v": [1.0, float(i)]})
                        for i in range(3)])
        for name in ("argilla.db", "argilla.db-wal", "argilla.db-shm", "credentials.json", "auth_secret"):
            assert stat.S_IMODE((ws / name).stat().st_mode) == 0o600, name
        server_files = [p for p in loose(ws) if not p.startswith("shared/notes.txt")]
        assert server_files == [], server_files  # every file and folder the server made, its UI copy included
    finally:
        assert cli("stop", "--workspace", ws).returncode == 0

    # a backup restored with lax modes, and a vector with NaN stored by an older version: both fixed at start
    for name in ("argilla.db", "credentials.json"):
        os.chmod(ws / name, 0o644)
    os.chmod(ws, 0o755)
    with sqlite3.connect(ws / "argilla.db") as con:
        con.execute("UPDATE vectors SET value = '[NaN, 1.0]' WHERE rowid = (SELECT min(rowid) FROM vectors)")
    started = cli("serve", "--detach", "--workspace", ws, "--port", port)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        log = (ws / "logs" / "server.log").read_text()
        assert "argilla.db 644 -> 600" in started.stdout + log and "credentials.json 644 -> 600" in started.stdout + log
        assert "deleted 1 stored vector(s) holding NaN or Infinity" in log
        assert stat.S_IMODE(ws.stat().st_mode) == 0o700
        assert [p for p in loose(ws) if not p.startswith("shared/notes.txt")] == []
        ds = connect_ws(ws).datasets("private", workspace="curation")
        hits = list(ds.records(query=rg.Query(similar=rg.Similar(name="v", value=[1.0, 2.0]))))
        assert len(hits) == 2  # the record whose vector was NaN has no vector now; the others are found
        assert len(list(ds.records(with_vectors=True))) == 3
    finally:
        assert cli("stop", "--workspace", ws).returncode == 0


def test_a_workspace_made_by_ingest_is_made_private_by_serve(tmp_path):
    ws = tmp_path / "made-by-ingest"
    ingested = cli("ingest", "--workspace", ws, REPO / "tests" / "data" / "curation_pool", timeout=300)
    assert ingested.returncode == 0, ingested.stderr
    assert stat.S_IMODE(ws.stat().st_mode) & 0o077  # the pipeline made it with the default umask
    from curation.server import start_server

    handle = start_server(ws, port=free_port(), detach=False)
    try:
        assert stat.S_IMODE(ws.stat().st_mode) == 0o700
        for name in ("argilla.db", "argilla.db-wal", "argilla.db-shm", "credentials.json", "auth_secret"):
            assert stat.S_IMODE((ws / name).stat().st_mode) == 0o600, name
        assert not [p for p in loose(ws / "run")] and not [p for p in loose(ws / "logs")]
    finally:
        handle.stop()


def connect_ws(ws: Path):
    from contract.argilla import connect

    return connect(ws)


# ---- add-user keeps the password off the command line ------------------------------------------------------
def test_add_user_reads_the_password_from_stdin_and_warns_about_the_flag(argilla_server):
    chosen = "correct horse battery staple"
    added = subprocess.run([sys.executable, "-m", "curation", "add-user", "stdin-curator", "--workspace",
                            str(argilla_server.workspace), "--password-stdin"], cwd=REPO, input=chosen + "\n",
                           capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    assert chosen not in added.stdout and "(the one you chose)" in added.stdout
    assert token(argilla_server.api_url, "stdin-curator", chosen).status_code == 201

    old = cli("add-user", "flag-curator", "--workspace", argilla_server.workspace, "--password", "old-style-pass")
    assert old.returncode == 0 and "--password puts the password on the command line" in old.stderr
    assert token(argilla_server.api_url, "flag-curator", "old-style-pass").status_code == 201
    short = subprocess.run([sys.executable, "-m", "curation", "add-user", "short-curator", "--workspace",
                            str(argilla_server.workspace), "--password-stdin"], cwd=REPO, input="abc\n",
                           capture_output=True, text=True, timeout=120)
    assert short.returncode == 1 and "8 to 100" in short.stderr and "Traceback" not in short.stderr
    assert "--password " not in cli("add-user", "--help").stdout  # no longer offered


def test_add_user_asks_for_the_password_at_a_terminal_prompt(argilla_server):
    """--ask-password reads from the terminal, twice, without echo (a real pseudo-terminal here)."""
    import pty

    chosen = "typed at the prompt, never echoed"
    cmd = [sys.executable, "-m", "curation", "add-user", "tty-curator", "--workspace", str(argilla_server.workspace),
           "--ask-password"]
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.chdir(REPO)
        os.execv(sys.executable, cmd)
    output = b""

    def read_until(marker: bytes, timeout: float = 120) -> None:
        nonlocal output
        deadline = time.monotonic() + timeout
        while marker not in output:
            assert time.monotonic() < deadline, output
            try:
                chunk = os.read(fd, 1024)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk

    read_until(b"Password for tty-curator: ")
    os.write(fd, chosen.encode() + b"\n")
    read_until(b"Again: ")
    os.write(fd, chosen.encode() + b"\n")
    read_until(b"API key:")
    read_until(b"\n" * 100, timeout=30)  # to the end
    _, code = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(code) == 0, output
    assert chosen.encode() not in output and b"(the one you chose)" in output
    assert token(argilla_server.api_url, "tty-curator", chosen).status_code == 201


# ---- dead children are seen, replaced, and lose no job -----------------------------------------------------
def test_jobs_a_dead_worker_held_are_requeued_and_a_killed_redis_keeps_its_queue(tmp_path):
    """With the real embedded Redis and rq: a job the worker had started, and one it had popped without
    registering it yet (rq pops with BLPOP), both go back to the queue; a SIGKILLed Redis restarts with its queue."""
    import redis as redis_py
    from rq import Queue
    from rq.registry import StartedJobRegistry

    from curation.server.children import EmbeddedRedis, requeue_started_jobs

    embedded = EmbeddedRedis(tmp_path).start()
    try:
        conn = redis_py.Redis(unix_socket_path=str(embedded.socket_path))
        queue = Queue("default", connection=conn)
        started, popped, waiting = (queue.enqueue("builtins.print", i) for i in range(3))
        for job in (started, popped):  # what a worker does: pop the id, then (for `started`) register it
            assert conn.lpop(queue.key).decode() == job.id
        StartedJobRegistry("default", connection=conn).add(started, -1)
        assert queue.job_ids == [waiting.id]
        assert sorted(requeue_started_jobs(conn)) == sorted([started.id, popped.id])
        assert sorted(queue.job_ids) == sorted([started.id, popped.id, waiting.id])
        assert requeue_started_jobs(conn) == []  # nothing left to recover
        os.kill(embedded.proc.pid, signal.SIGKILL)
        embedded.proc.wait(10)
        embedded.start()
        assert sorted(Queue("default", connection=redis_py.Redis(unix_socket_path=str(embedded.socket_path))).job_ids) \
            == sorted([started.id, popped.id, waiting.id])
    finally:
        embedded.stop()


def _completed(api_url, key, dataset_id) -> int:
    return httpx.get(f"{api_url}/api/v1/datasets/{dataset_id}/progress", headers={"X-Argilla-Api-Key": key}).json()[
        "completed"]


def _until(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout:.0f} s"
        time.sleep(0.2)


def test_status_sees_a_dead_worker_or_redis_which_are_replaced_and_no_job_is_lost(tmp_path):
    import argilla as rg

    from curation.server import server_status, start_server
    from curation.server.users import add_user

    ws = tmp_path / "faults"
    handle = start_server(ws, port=free_port(), detach=False)
    try:
        client = handle.client()
        settings = rg.Settings(fields=[rg.TextField(name="text")], distribution=rg.TaskDistribution(min_submitted=3),
                               questions=[rg.LabelQuestion(name="ok", labels=["y", "n"])])
        ds = rg.Dataset(name="faults", workspace="curation", settings=settings, client=client).create()
        ds.records.log([rg.Record(id=f"f{i}", fields={"text": f"t{i}"}) for i in range(4)])
        _, curator, _ = add_user(client, "fault-curator")
        for record in ds.records:
            r = httpx.post(f"{handle.api_url}/api/v1/records/{record._server_id}/responses",
                           json={"values": {"ok": {"value": "y"}}, "status": "submitted"},
                           headers={"X-Argilla-Api-Key": curator})
            assert r.status_code == 201
        url, owner = f"{handle.api_url}/api/v1/datasets/{ds.id}", handle.api_key

        def distribution(n: int) -> int:
            return httpx.patch(url, json={"distribution": {"strategy": "overlap", "min_submitted": n}},
                               headers={"X-Argilla-Api-Key": owner}).status_code

        def check_status(killed: int, part: str):
            """After `killed` is gone: status never calls it running; then it is replaced and status is healthy."""
            st = server_status(ws)
            assert not (st[part]["pid"] == killed and st[part]["running"])
            assert st["healthy"] == (st[part]["running"] and st["api"] and st["worker"]["running"]
                                     and st["redis"]["running"])
            if st[part]["pid"] == killed:
                assert not st["healthy"] and st["problems"]
            _until(lambda: server_status(ws)["healthy"], what=f"a new {part}")
            st = server_status(ws)
            assert st[part]["pid"] != killed and alive(st[part]["pid"])
            assert cli("status", "--workspace", ws).returncode == 0
            return st

        # 1. the worker, SIGKILLed while a job waits for it: status sees it, it is replaced, the job is run
        state = json.loads((ws / "run" / "server.json").read_text())
        os.kill(state["worker_pid"], signal.SIGSTOP)  # holds the job it pops
        assert distribution(1) == 200
        time.sleep(0.5)
        os.kill(state["worker_pid"], signal.SIGKILL)
        assert wait_dead([state["worker_pid"]]) == []
        st = check_status(state["worker_pid"], "worker")
        assert st["restarts"]["worker"] == 1
        _until(lambda: _completed(handle.api_url, owner, ds.id) == 4, what="the re-queued status job")

        # 2. Redis, SIGKILLed: a write during the outage is acknowledged, kept, and its job runs once Redis is back
        state = json.loads((ws / "run" / "server.json").read_text())
        os.kill(state["redis_pid"], signal.SIGKILL)
        assert wait_dead([state["redis_pid"]]) == []
        assert distribution(3) == 200  # saved, and answered as saved
        assert httpx.get(url, headers={"X-Argilla-Api-Key": owner}).json()["distribution"]["min_submitted"] == 3
        st = check_status(state["redis_pid"], "redis")
        assert st["restarts"]["redis"] == 1
        _until(lambda: _completed(handle.api_url, owner, ds.id) == 0, what="the job kept while Redis was down")
        assert server_status(ws)["jobs"]["waiting_for_redis"] == 0
        state = json.loads((ws / "run" / "server.json").read_text())
        pids = [state["pid"], state["worker_pid"], state["redis_pid"]]
    finally:
        handle.stop()
    assert wait_dead(pids) == []


def test_a_redis_that_cannot_come_back_stops_the_server_with_the_reason(tmp_path):
    from curation.server import server_status, start_server

    ws = tmp_path / "no-redis"
    handle = start_server(ws, port=free_port(), detach=False)
    state = json.loads((ws / "run" / "server.json").read_text())
    shutil.rmtree(ws / "run" / "redis")
    (ws / "run" / "redis").write_text("not a folder: Redis cannot keep its queue here\n")
    os.kill(state["redis_pid"], signal.SIGKILL)
    assert handle.process.wait(60) == 1
    log = (ws / "logs" / "server.log").read_text()
    assert "The embedded Redis exited (code -9) and could not be restarted; the server stops." in log
    assert "Traceback" not in log.split("could not be restarted")[-1]
    assert wait_dead([state["worker_pid"], state["redis_pid"]]) == []
    assert not server_status(ws)["running"]
