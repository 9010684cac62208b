"""`python -m curation <command>`: the curation workspace and the curation pipeline.

Workspace commands (this module): serve, status, stop, add-user.
Pipeline commands (curation/pipeline_cli.py): ingest, score, push, pull, select, export, run.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import warnings


def _workspace_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", default=None,
                   help="workspace folder (default: $CURATION_WORKSPACE or ./workspace)")


def add_server_commands(subparsers) -> None:
    """Register serve, status, stop and add-user on an argparse subparsers object."""
    p = subparsers.add_parser("serve", help="run Argilla on this machine (SQLite, embedded Redis, SQL search)",
                              description="Run the real Argilla server and UI for a workspace. Foreground until "
                                          "Ctrl-C or SIGTERM, unless --detach.")
    _workspace_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=6900, help="port (default 6900)")
    p.add_argument("--detach", action="store_true", help="run in the background; see `status` and `stop`")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"],
                   help="uvicorn log level (default warning)")
    p.set_defaults(func=cmd_serve)

    p = subparsers.add_parser("status", help="is the workspace's server running, where, and does each part work",
                              description="Check the workspace's server: its HTTP API, its background worker and its "
                                          "Redis. Exit code 0: running and healthy; 1: running, but a part does "
                                          "not work; 3: not running.")
    _workspace_arg(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("stop", help="stop the workspace's server (and its Redis and worker)")
    _workspace_arg(p)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait before SIGKILL (default 30)")
    p.set_defaults(func=cmd_stop)

    p = subparsers.add_parser("add-user", help="add a curator (annotator) to an Argilla workspace",
                              description="Create a user with a random password (printed once) and add it to an "
                                          "Argilla workspace. Uses the owner credentials of --workspace, or "
                                          "ARGILLA_API_URL/ARGILLA_API_KEY for a standard deployment. To choose the "
                                          "password, type it at a prompt (--ask-password) or pipe it in "
                                          "(--password-stdin): a password on the command line is visible to every "
                                          "user of the machine in `ps`.")
    p.add_argument("username")
    _workspace_arg(p)
    p.add_argument("--argilla-workspace", default=None,
                   help="Argilla workspace to join (default: curation; created if missing)")
    p.add_argument("--role", default="annotator", choices=["annotator", "admin"], help="default annotator")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--ask-password", action="store_true", help="type the password at a prompt (not echoed)")
    how.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    how.add_argument("--password", default=None, help=argparse.SUPPRESS)  # deprecated: visible in `ps`
    p.set_defaults(func=cmd_add_user)


def cmd_serve(args) -> int:
    from curation.server.workspace import WorkspaceBusyError

    if args.detach:
        from curation.server.control import start_server

        try:
            handle = start_server(args.workspace, host=args.host, port=args.port, detach=True)
        except (WorkspaceBusyError, RuntimeError, TimeoutError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        from curation.server.app import _banner
        from curation.server.workspace import Workspace

        if handle.made_private:
            print(handle.made_private)
        print(_banner(Workspace(handle.workspace), handle.api_url, args.host, handle.credentials, handle.first_start))
        print(f"Running in the background (pid {handle.pid}); log: {Workspace(handle.workspace).log_path}")
        print(f"Stop it with: python -m curation stop --workspace {handle.workspace}")
        return 0

    from curation.server.app import ServeError, Shutdown, serve

    try:
        return serve(args.workspace, args.host, args.port, announce=lambda m: print(m, flush=True),
                     log_level=args.log_level)
    except (WorkspaceBusyError, ServeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Shutdown):
        print("Argilla stopped.", flush=True)
        return 0


def cmd_status(args) -> int:
    from curation.server.control import server_status

    st = server_status(args.workspace)
    if args.json:
        print(json.dumps(st, indent=2))
    elif not st["running"]:
        print(f"not running; workspace {st['workspace']}")
    else:
        print(f"running at {st['api_url']} (pid {st['pid']}, since {st['started_at']}); workspace {st['workspace']}")
        if st["healthy"]:
            jobs = st["jobs"]
            print(f"  healthy: API answers, worker pid {st['worker']['pid']}, Redis pid {st['redis']['pid']}; "
                  f"jobs: {jobs['queued']} queued, {jobs['running']} running, {jobs['failed']} failed")
        else:
            print("  NOT healthy: " + "; ".join(st["problems"]))
        restarts = st["restarts"]
        if restarts["worker"] or restarts["redis"]:
            print(f"  restarted: worker {restarts['worker']}x, Redis {restarts['redis']}x, "
                  f"{restarts['requeued_jobs']} job(s) re-queued; last failure: {restarts['last_failure']}")
        if st["jobs"] and st["jobs"]["waiting_for_redis"]:
            print(f"  {st['jobs']['waiting_for_redis']} job(s) wait for Redis in {st['workspace']}/run/pending-jobs")
    if not st["running"]:
        return 3
    return 0 if st["healthy"] else 1


def cmd_stop(args) -> int:
    from curation.server.control import stop_server
    from curation.server.workspace import Workspace

    if stop_server(args.workspace, timeout=args.timeout):
        print(f"stopped the server of {Workspace(args.workspace).root}")
    else:
        print(f"no server running for {Workspace(args.workspace).root}")
    return 0


def _chosen_password(args) -> str | None:
    """The password the user chose (prompt, stdin, or the deprecated --password), None for a random one."""
    if args.password is not None:
        print("warning: --password puts the password on the command line, where every user of this machine can "
              "read it (`ps`); use --ask-password or --password-stdin. --password will be removed.", file=sys.stderr)
        return args.password
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise ValueError("--password-stdin: stdin held no password (an empty first line)")
        return password
    if args.ask_password:
        password = getpass.getpass(f"Password for {args.username}: ")
        if password != getpass.getpass("Again: "):
            raise ValueError("the two passwords differ")
        return password
    return None


def cmd_add_user(args) -> int:
    from curation.client import connect
    from curation.server.users import add_user
    from curation.server.workspace import DEFAULT_ARGILLA_WORKSPACE

    try:
        chosen = _chosen_password(args)
        client = connect(args.workspace)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            user, api_key, password = add_user(client, args.username, role=args.role, password=chosen,
                                               workspace=args.argilla_workspace or DEFAULT_ARGILLA_WORKSPACE)
    except (ConnectionError, PermissionError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("\nno user added", file=sys.stderr)
        return 1
    print(f"Added {args.role} {user.username!r} to workspace {args.argilla_workspace or DEFAULT_ARGILLA_WORKSPACE!r} "
          f"on {client.api_url}. Give them (shown once):")
    print(f"  sign in at: {client.api_url}")
    print(f"  username:   {user.username}")
    print(f"  password:   {password if chosen is None else '(the one you chose)'}")
    print(f"  API key:    {api_key}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m curation", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    add_server_commands(subparsers)
    try:
        from curation.pipeline_cli import add_pipeline_commands
    except ImportError as e:  # until the pipeline commands exist
        if "pipeline_cli" not in str(e):
            raise
    else:
        add_pipeline_commands(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args) or 0


toplevel = main
