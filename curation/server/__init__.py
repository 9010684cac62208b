"""The curation workspace: the real Argilla server on one machine (SQLite, embedded Redis, SQL search).

    from curation.server import start_server, server_status
    handle = start_server("workspace", port=6900)     # background process, waits until healthy
    handle.api_url, handle.api_key
    handle.stop()

This package's top level stays light (no argilla_server import); the serving process lives in
`curation.server.app`, the search engine in `curation.server.search_engine`.
"""

from curation.server.control import ServerHandle, server_status, start_server, stop_server
from curation.server.workspace import DEFAULT_ARGILLA_WORKSPACE, OWNER_USERNAME, ServerFiles, WorkspaceBusyError

__all__ = [
    "DEFAULT_ARGILLA_WORKSPACE",
    "OWNER_USERNAME",
    "ServerHandle",
    "ServerFiles",
    "WorkspaceBusyError",
    "server_status",
    "start_server",
    "stop_server",
]
