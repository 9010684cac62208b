"""The workspace folder: where a local Argilla keeps its state, its secrets and its pid.

Layout (all created on first start; the folder is 0700 and the server's files 0600, enforced on every start
whoever created them, and the serving process runs with umask 077 so every file it or its children make is
private too)::

    <workspace>/
      credentials.json      owner's api_url, api_key, username, password   (0600)
      auth_secret           signs UI sessions; stable so restarts keep curators signed in (0600)
      argilla.db            SQLite (WAL) with every dataset, record and response
      argilla/              ARGILLA_HOME_PATH
      logs/server.log       output of a detached server
      run/server.lock       held (flock) by the serving process for its whole life
      run/server.json       pid, host, port and URL of the serving process
      run/redis.sock        the embedded Redis (when the path is short enough for a socket)

This module is light: no argilla_server import, so clients and `status`/`stop` stay fast.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from contract.argilla import CREDENTIALS_FILE, read_credentials, workspace_root

OWNER_USERNAME = "owner"
DEFAULT_ARGILLA_WORKSPACE = "curation"
# the server's files at the top of the workspace (SQLite keeps API keys in plain text in the db and its WAL)
PRIVATE_FILES = (CREDENTIALS_FILE, "auth_secret", "argilla.db", "argilla.db-wal", "argilla.db-shm",
                 "argilla.db-journal")


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically with mode 0600 (never readable by others, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class WorkspaceBusyError(RuntimeError):
    """Another process already serves this workspace."""


@dataclass(frozen=True)
class ServerFiles:
    """The server's part of a workspace folder (credentials, the auth secret, the Argilla database, Redis, run
    and log files). The pipeline's part of the same folder (candidates, signals, selections, stage reports) is
    :class:`curation.workspace.Workspace`, the one class named Workspace."""

    root: Path

    def __init__(self, root: str | Path | None = None):
        object.__setattr__(self, "root", workspace_root(root))

    # ---- paths -------------------------------------------------------------------------
    @property
    def credentials_path(self) -> Path:
        return self.root / CREDENTIALS_FILE

    @property
    def secret_path(self) -> Path:
        return self.root / "auth_secret"

    @property
    def db_path(self) -> Path:
        return self.root / "argilla.db"

    @property
    def home_path(self) -> Path:
        return self.root / "argilla"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_path(self) -> Path:
        return self.root / "logs" / "server.log"

    @property
    def lock_path(self) -> Path:
        return self.run_dir / "server.lock"

    @property
    def state_path(self) -> Path:
        return self.run_dir / "server.json"

    def create(self) -> "ServerFiles":
        """Make the folders if needed and make them, and the server's files, private (see `secure`)."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for d in (self.home_path, self.run_dir, self.log_path.parent):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.secure()
        return self

    def secure(self) -> list[tuple[Path, int, int]]:
        """Take group and other permissions away from the workspace folder, the server's files in it and its
        `argilla/`, `run/` and `logs/` trees, however and by whomever they were made (`curation ingest` makes the
        folder with the default umask, a backup may be restored 0644). Returns (path, old mode, new mode) for
        each change. Symbolic links are left alone (never followed)."""
        changed = []

        def tighten(path: Path) -> None:
            try:
                st = path.lstat()
            except FileNotFoundError:
                return
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode) or not mode & 0o077 or st.st_uid != os.getuid():
                return
            os.chmod(path, mode & 0o700)
            changed.append((path, mode, mode & 0o700))

        tighten(self.root)
        for name in PRIVATE_FILES:
            tighten(self.root / name)
        for tree in (self.home_path, self.run_dir, self.log_path.parent):
            tighten(tree)
            for folder, dirs, files in os.walk(tree):
                for name in dirs + files:
                    tighten(Path(folder) / name)
        return changed

    def made_private(self) -> str:
        """`secure()`, described in one line for the user ('' when nothing had to change)."""
        if not self.root.exists():
            return ""
        changed = self.secure()
        if not changed:
            return ""
        shown = ", ".join(f"{p.relative_to(self.root) if p != self.root else p} {old:o} -> {new:o}"
                          for p, old, new in changed[:8])
        more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
        return f"Made the workspace private (others could read it): {shown}{more}"

    # ---- secrets -----------------------------------------------------------------------
    def read_credentials(self) -> dict:
        return read_credentials(self.root)

    def ensure_credentials(self, api_url: str) -> tuple[dict, bool]:
        """Load the owner's credentials, or make random ones on first start.

        Returns (credentials, created). `api_url` is refreshed on every start since the port may change.
        """
        self.create()
        created = not self.credentials_path.exists()
        if created:
            creds = {
                "api_url": api_url,
                "api_key": "cur." + secrets.token_urlsafe(32),
                "username": OWNER_USERNAME,
                "password": secrets.token_urlsafe(18),
            }
        else:
            creds = self.read_credentials()
            if creds.get("api_url") == api_url and (self.credentials_path.stat().st_mode & 0o077) == 0:
                return creds, False
            creds["api_url"] = api_url
        _write_private(self.credentials_path, json.dumps(creds, indent=2) + "\n")
        return creds, created

    def auth_secret(self) -> str:
        """The key that signs UI session tokens: random once, then stable for this workspace."""
        self.create()
        if not self.secret_path.exists():
            _write_private(self.secret_path, secrets.token_hex(32) + "\n")
        return self.secret_path.read_text().strip()

    # ---- the serving process -------------------------------------------------------------
    def acquire_lock(self) -> int:
        """Take the workspace lock for the life of this process; raise WorkspaceBusyError if held."""
        self.create()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            state = self.read_state() or {}
            where = f" at {state['api_url']} (pid {state.get('pid')})" if state.get("api_url") else ""
            raise WorkspaceBusyError(
                f"Workspace {self.root} is already being served by another process{where}. "
                f"Stop it with `python -m curation stop --workspace {self.root}` or use another --workspace."
            ) from None
        os.set_inheritable(fd, False)
        return fd

    def is_locked(self) -> bool:
        """True while some process serves this workspace."""
        if not self.lock_path.exists():
            return False
        fd = os.open(self.lock_path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    def read_state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def write_state(self, state: dict) -> None:
        _write_private(self.state_path, json.dumps(state, indent=2) + "\n")

    def clear_state(self) -> None:
        self.state_path.unlink(missing_ok=True)


def local_api_url(host: str, port: int) -> str:
    """The URL a client on this machine uses: a wildcard bind is reached through loopback."""
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"
