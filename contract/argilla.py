"""Find and connect to the Argilla server: the local workspace one, or any standard deployment.

The one Argilla connection of the project: curation's push and pull, eval's human A/B judging and the
workspace server's own checks all connect here.

Resolution, per value, first found wins:
  1. explicit `api_url` / `api_key` arguments,
  2. the environment: ARGILLA_API_URL / ARGILLA_API_KEY (a standard Argilla deployment: PostgreSQL,
     Elasticsearch/OpenSearch, Redis — nothing else changes),
  3. `<workspace>/credentials.json`, written by `python -m curation serve`
     (workspace: the argument, else $CURATION_WORKSPACE, else ./workspace).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

CREDENTIALS_FILE = "credentials.json"


def default_workspace() -> Path:
    """`$CURATION_WORKSPACE`, else `./workspace`."""
    return Path(os.environ.get("CURATION_WORKSPACE") or "workspace")


def workspace_root(workspace: str | Path | None = None) -> Path:
    """The workspace folder, absolute: the argument, else :func:`default_workspace`."""
    return Path(workspace or default_workspace()).expanduser().resolve()


def read_credentials(workspace: str | Path | None = None) -> dict:
    """The whole ``<workspace>/credentials.json`` written by ``python -m curation serve``;
    FileNotFoundError naming the path and what to do when it is absent."""
    root = workspace_root(workspace)
    path = root / CREDENTIALS_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"No Argilla credentials in workspace {root} (expected {path}). "
            f"Start a local server with `python -m curation serve --workspace {root}`, "
            "or set ARGILLA_API_URL and ARGILLA_API_KEY to use an existing Argilla."
        ) from None


def workspace_credentials(workspace: str | Path | None = None) -> dict:
    """{api_url, api_key, username, password} of the workspace's owner; FileNotFoundError naming the path if absent."""
    creds = read_credentials(workspace)
    return {k: creds.get(k) for k in ("api_url", "api_key", "username", "password")}


def resolve(workspace: str | Path | None = None, *, api_url: str | None = None, api_key: str | None = None) -> tuple[str, str, str]:
    """(api_url, api_key, where they came from), without connecting."""
    sources = []
    url, key = api_url, api_key
    if url or key:
        sources.append("arguments")
    if not url and os.environ.get("ARGILLA_API_URL"):
        url = os.environ["ARGILLA_API_URL"]
        sources.append("ARGILLA_API_URL")
    if not key and os.environ.get("ARGILLA_API_KEY"):
        key = os.environ["ARGILLA_API_KEY"]
        sources.append("ARGILLA_API_KEY")
    if not (url and key):
        root = workspace_root(workspace)
        try:
            creds = workspace_credentials(root)
        except FileNotFoundError:
            raise ConnectionError(
                "No Argilla server configured: set ARGILLA_API_URL and ARGILLA_API_KEY for an existing Argilla, "
                f"or start the local one with `python -m curation serve --workspace {root}` "
                f"(no {root / CREDENTIALS_FILE})."
            ) from None
        url, key = url or creds["api_url"], key or creds["api_key"]
        sources.append(str(root / CREDENTIALS_FILE))
    return url.rstrip("/"), key, ", ".join(sources)


def connect(
    workspace: str | Path | None = None,
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    retries: int = 3,
    timeout: int = 60,
):
    """An `argilla.Argilla` client, verified: ConnectionError if the server cannot be reached,
    PermissionError if it rejects the API key; both name the URL.

    One retry policy: httpx's transport retries, the same the Argilla client is built with
    (``retries`` further attempts to connect, with exponential backoff), for the version probe here
    and for every request the client makes later."""
    import argilla as rg
    from argilla._exceptions import ArgillaCredentialsError

    url, key, source = resolve(workspace, api_url=api_url, api_key=api_key)
    try:
        with httpx.Client(transport=httpx.HTTPTransport(retries=retries), timeout=10) as probe:
            r = probe.get(f"{url}/api/v1/version")
        ok = r.status_code == 200 and "version" in r.json()
    except (httpx.HTTPError, json.JSONDecodeError, ValueError) as e:
        hint = "check ARGILLA_API_URL"
        if source.endswith("credentials.json"):
            hint = f"start it with `python -m curation serve --workspace {Path(source).parent}`"
        raise ConnectionError(
            f"Argilla server at {url} is not reachable ({type(e).__name__}: {e}; {retries + 1} attempts); "
            f"URL from {source}: {hint}."
        ) from None
    if not ok:
        raise ConnectionError(
            f"{url} answered HTTP {r.status_code} to /api/v1/version: it does not look like an Argilla server "
            f"(URL from {source})."
        )
    try:
        return rg.Argilla(api_url=url, api_key=key, timeout=timeout, retries=retries)
    except ArgillaCredentialsError:
        raise PermissionError(
            f"Argilla server at {url} rejected the API key (HTTP 401); key from {source}. "
            "Check ARGILLA_API_KEY or the workspace's credentials.json."
        ) from None
