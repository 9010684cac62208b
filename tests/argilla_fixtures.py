"""The real Argilla server for tests: started once per session on a free port in a temporary workspace.

    def test_something(argilla_server):
        client = argilla_server.client()                       # owner, argilla.Argilla
        user, api_key = argilla_server.add_user("curator-a")   # annotator in argilla_server.workspace_name
        as_curator = argilla_server.client(api_key)

Imported by tests/conftest.py (`from argilla_fixtures import *`).
"""

from __future__ import annotations

import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["argilla_server", "ArgillaTestServer", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ArgillaTestServer:
    """A running workspace server. `workspace_name` is the Argilla workspace tests put datasets in."""

    handle: object
    workspace: Path
    workspace_name: str
    api_url: str
    api_key: str
    _users: dict = field(default_factory=dict, repr=False)

    def client(self, api_key: str | None = None):
        """An `argilla.Argilla` client: the owner's, or the user's whose API key is given."""
        from contract.argilla import connect

        return connect(api_url=self.api_url, api_key=api_key or self.api_key)

    def add_user(self, username: str, role: str = "annotator"):
        """Create `username` in `workspace_name` (idempotent within a session). Returns (argilla.User, api_key)."""
        if username not in self._users:
            from curation.server.users import add_user

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the SDK warns when looking up a user that does not exist yet
                user, api_key, _ = add_user(self.client(), username, role=role, workspace=self.workspace_name)
            self._users[username] = (user, api_key)
        return self._users[username]


@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory):
    """The real argilla-server 2.8 app (SQLite, embedded Redis, rq worker, SQL search), once per session."""
    from curation.server import DEFAULT_ARGILLA_WORKSPACE, start_server

    workspace = tmp_path_factory.mktemp("argilla-workspace")
    handle = start_server(workspace, port=free_port(), detach=False)
    try:
        yield ArgillaTestServer(
            handle=handle,
            workspace=Path(handle.workspace),
            workspace_name=DEFAULT_ARGILLA_WORKSPACE,
            api_url=handle.api_url,
            api_key=handle.api_key,
        )
    finally:
        handle.stop()
