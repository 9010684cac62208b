"""Curator accounts, through the API (so it works for the local server and for any standard deployment)."""

from __future__ import annotations

import re
import secrets

from curation.server.workspace import DEFAULT_ARGILLA_WORKSPACE

_USERNAME = re.compile(r"^(?!-|_)[a-z0-9-_]+$")


def add_user(client, username: str, *, role: str = "annotator", workspace: str = DEFAULT_ARGILLA_WORKSPACE,
             password: str | None = None, first_name: str | None = None):
    """Create `username` with a random password (unless given) and add it to the Argilla `workspace`
    (created if missing). Returns (argilla.User, api_key, password). Needs an owner or admin client."""
    import argilla as rg

    if not _USERNAME.match(username):
        raise ValueError(f"Invalid username {username!r}: use lowercase letters, digits, '-' and '_'")
    if role not in ("annotator", "admin", "owner"):
        raise ValueError(f"Invalid role {role!r}: annotator, admin or owner")
    if password is not None and not 8 <= len(password) <= 100:
        raise ValueError(f"The password has {len(password)} characters; Argilla wants 8 to 100")
    if client.users(username=username) is not None:
        raise ValueError(f"User {username!r} already exists on {client.api_url}")
    ws = client.workspaces(workspace)
    if ws is None:
        ws = rg.Workspace(name=workspace, client=client).create()
    password = password or secrets.token_urlsafe(12)
    user = rg.User(username=username, password=password, role=role, first_name=first_name or username,
                   client=client).create()
    ws.add_user(user)
    response = client.api.http_client.get(f"/api/v1/users/{user.id}")
    response.raise_for_status()
    return user, response.json()["api_key"], password
