"""`python -m curation <command>`: the curation workspace and the curation pipeline.

Workspace commands: serve, status, stop, add-user.
Pipeline commands: ingest, score, push, pull, select, export, run; generate (new candidates from a teacher), rest (the ReST loop). Every pipeline command takes
``--config RECIPE.yaml`` (without it, the resolved config the workspace saved last, else the defaults),
``--workspace`` (else $CURATION_WORKSPACE, else the config's), ``--force``, dotted overrides of any
config key (``--select.budget 500``, ``--set score.num_perm=64``) and a few short aliases. Each step is
idempotent: it skips when its inputs have not changed, and writes its outputs atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

from contract import config as cc
from curation.config import CurationConfig, GenerateConfig, RestConfig, resolve


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
        from curation.server.workspace import ServerFiles

        if handle.made_private:
            print(handle.made_private)
        print(_banner(ServerFiles(handle.workspace), handle.api_url, args.host, handle.credentials, handle.first_start))
        print(f"Running in the background (pid {handle.pid}); log: {ServerFiles(handle.workspace).log_path}")
        print(f"Stop it with: python -m curation stop --workspace {handle.workspace}")
        return 0

    from curation.server.app import ServeError, Shutdown, serve

    try:
        code = serve(args.workspace, args.host, args.port, announce=lambda m: print(m, flush=True),
                     log_level=args.log_level)
    except (WorkspaceBusyError, ServeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Shutdown):
        code = 0
    if code == 0:  # uvicorn may take Ctrl-C itself and return normally: the same stop, said the same way
        print("Argilla stopped.", flush=True)
    return code


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
    from curation.server.workspace import ServerFiles

    if stop_server(args.workspace, timeout=args.timeout):
        print(f"stopped the server of {ServerFiles(args.workspace).root}")
    else:
        print(f"no server running for {ServerFiles(args.workspace).root}")
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
    from contract.argilla import connect
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


# ====================================================================== the pipeline commands

SECTIONS = {
    "ingest": ["ingest"],
    "score": ["score"],
    "push": ["push"],
    "pull": ["pull", "push"],
    "select": ["select"],
    "export": ["export"],
    "run": ["ingest", "score", "push", "pull", "select", "export"],
    "generate": ["generate"],
    "rest": ["rest"],
}

HELP = {
    "ingest": "read candidate pools into the workspace's candidate store",
    "score": "compute per-candidate signals: lengths, structure, refusals, LIMA markers, language, duplicates, "
             "embeddings, clusters, optional LLM rating, decontamination",
    "push": "push a shortlist to an Argilla dataset made for curation (re-pushing updates, never duplicates)",
    "pull": "pull curator answers: one decision per record, agreement, disputed records",
    "select": "select a budget of examples per strategy (curated, signals, random, longest)",
    "export": "write data/<name>/: train.jsonl (messages), manifest.json, README.md",
    "run": "ingest → score → push → (pull --unattended) → select → export, the steps that need no human",
    "generate": "write a candidate pool with a teacher model: self-instruct (new tasks, ROUGE-L/MiniLM novelty "
                "filter, answered), backtranslate (a backward model writes instructions for documents; "
                "self-curation 1-5) or answers (a teacher's answer to existing prompts); ingest reads the file",
    "rest": "the ReST loop: K rounds of grow (sample answers from base + adapter) → improve (judge, keep above a "
            "rising threshold) → fine-tune (python -m finetune) → evaluate (python -m eval, one leaderboard); "
            "resumable",
}


def _common(p: argparse.ArgumentParser, command: str, aliases: dict[str, str]) -> None:
    p.set_defaults(command_name=command)
    p.add_argument("--config", default=None, help="YAML recipe (default: <workspace>/config.yaml when present)")
    p.add_argument("--workspace", default=None,
                   help="workspace folder (default: $CURATION_WORKSPACE, else the config's, else ./workspace)")
    p.add_argument("--force", action="store_true", help="re-run even when the inputs have not changed")
    p.add_argument("--set", dest="set_pairs", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set score.num_perm=64 (repeatable)")
    cc.add_arguments(p, CurationConfig, only=["name", *SECTIONS[command]], aliases=aliases,
                     groups={s: f"{s} settings (curation/config.py)" for s in SECTIONS[command]})


# Short flags of each command: flag name -> config key (the dotted --section.key flags always work too).
ALIASES = {
    "score": {"decontaminate": "score.eval_prompts", "eval_prompts": "score.eval_prompts",
              "judge_base_url": "score.judge_base_url", "judge_model": "score.judge_model"},
    "ingest": {"recursive": "ingest.recursive"},
    "push": {"budget": "select.budget"},
    "pull": {"unattended": "pull.unattended"},
    "select": {"budget": "select.budget", "strategy": "select.strategies"},
    "export": {"strategy": "export.strategy", "data_dir": "export.output_dir", "dev_fraction": "export.dev_fraction",
               "push_to_hub": "export.push_to_hub"},
}
ALIASES["generate"] = {f.name: f"generate.{f.name}" for f in dataclasses.fields(GenerateConfig)}
ALIASES["rest"] = {f.name: f"rest.{f.name}" for f in dataclasses.fields(RestConfig)}
ALIASES["run"] = {**ALIASES["ingest"], **ALIASES["score"], **ALIASES["push"], **ALIASES["pull"],
                  **{k: v for k, v in ALIASES["export"].items() if k != "strategy"}}


def add_pipeline_commands(subparsers) -> None:
    """Register the pipeline's subcommands on an argparse subparsers object (``func(args) -> int``)."""
    for command in ("ingest", "score", "push", "pull", "select", "export", "run", "generate", "rest"):
        p = subparsers.add_parser(command, help=HELP[command], description=HELP[command] + ". " + _DESC,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p, command, ALIASES.get(command, {}))
        if command in ("ingest", "run"):
            p.add_argument("pools", nargs="*", help="candidate pools (files, folders of files, save_to_disk folders, "
                                                    "Hub ids); same as ingest.pools")
            p.add_argument("--field-map", default=None, metavar="KEY=COLUMN,…",
                           help="field names of prompt/response pools, e.g. prompt=question,response=answer "
                                "(ingest.mapping; a recipe's pool object can give its own mapping)")
        if command in ("score", "run"):
            p.add_argument("--rate", action="store_true",
                           help="add the LLM quality rating with the 'quality-rating' judge (score.judge)")
        if command == "run":
            p.add_argument("--no-argilla", action="store_true",
                           help="skip push/pull (no server): with --unattended the AI suggestions decide for the "
                                "whole shortlist")
        p.set_defaults(func=_dispatch)


_DESC = ("Settings come from the dataclass defaults, then --config (or the workspace's saved config.yaml), then "
         "the flags below.")


# ---------------------------------------------------------------------- resolution


def _workspace_of(args) -> str | None:
    return args.workspace or os.environ.get("CURATION_WORKSPACE") or None


def resolve_config(args) -> CurationConfig:
    overrides: dict[str, Any] = cc.given(args)
    for pair in args.set_pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        k, v = pair.split("=", 1)
        overrides[k.strip()] = yaml.safe_load(v) if v.strip() else ""
    if getattr(args, "pools", None):
        overrides["ingest.pools"] = list(args.pools)
    if getattr(args, "rate", False) and "score.judge" not in overrides:
        overrides["score.judge"] = "quality-rating"
    ws = _workspace_of(args)
    if ws:
        overrides["workspace"] = ws
    if getattr(args, "field_map", None):
        overrides["ingest.mapping"] = parse_field_map(args.field_map)
    cfg = resolve(args.config, overrides, workspace=ws)
    absolute_paths(cfg)
    return cfg


def absolute_paths(cfg: CurationConfig) -> None:
    """Local paths become absolute, so the saved config works from any folder (Hub ids stay as they are)."""
    from curation.ingest import looks_local

    def fix(path: str) -> str:
        return str(Path(path).expanduser().resolve()) if path and looks_local(path) else path

    cfg.ingest.pools = [fix(p) if isinstance(p, str) else {**p, "path": fix(str(p.get("path", "")))}
                        if isinstance(p, dict) and p.get("path") else p for p in cfg.ingest.pools]
    cfg.score.eval_prompts = [fix(str(p)) for p in cfg.score.eval_prompts]
    cfg.export.output_dir = str(Path(cfg.export.output_dir).expanduser().resolve())


def parse_field_map(text: str) -> dict[str, str]:
    """``prompt=question,response=answer`` → ``{"prompt": "question", "response": "answer"}``.

    >>> parse_field_map("prompt=question, response=answer")
    {'prompt': 'question', 'response': 'answer'}
    """
    out = {}
    for part in text.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"--field-map expects KEY=COLUMN[,KEY=COLUMN…] (keys: prompt, response, system), got "
                             f"{text!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


# ---------------------------------------------------------------------- commands


def _dispatch(args) -> int:
    from curation.aggregate import NothingAnswered
    from contract.io import write_text
    from curation.workspace import Workspace, WorkspaceLocked

    try:
        cfg = resolve_config(args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"error: {_msg(err)}", file=sys.stderr)
        return 2
    ws = Workspace(cfg.workspace)
    command = args.command_name
    try:
        with ws.lock(command):
            write_text(ws.root / "config.yaml", cfg.to_yaml("the resolved config of the latest step (see "
                                                            "curation/config.py)"))
            if command == "run":
                return cmd_run(cfg, ws, args)
            return STEPS[command](cfg, ws, args)
    except WorkspaceLocked as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except NothingAnswered as err:
        print(str(err), file=sys.stderr)
        return 3
    except (ValueError, KeyError, FileNotFoundError, ConnectionError, PermissionError, RuntimeError) as err:
        print(f"error: {_msg(err)}", file=sys.stderr)
        return 1


def _msg(err: BaseException) -> str:
    if isinstance(err, cc.ConfigError) or not isinstance(err, KeyError):
        return str(err)
    # a bare KeyError names only a key (an id, a hash): say what it is and what to do
    return (f"{type(err).__name__}: {err.args[0] if err.args else ''!r} is missing: the workspace's files are out of "
            "step with each other; re-run the steps from `ingest` with --force (and report this as a bug)")


def cmd_ingest(cfg, ws, args) -> int:
    from curation import ingest

    print(ingest.summary(ingest.run(cfg, ws, force=args.force)))
    return 0


def cmd_score(cfg, ws, args) -> int:
    from curation import score

    print(score.summary(score.run(cfg, ws, force=args.force)))
    return 0


def cmd_push(cfg, ws, args) -> int:
    from curation import argilla_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        print(argilla_dataset.push_summary(argilla_dataset.push(cfg, ws, force=args.force)))
    return 0


def cmd_pull(cfg, ws, args) -> int:
    from curation import argilla_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = argilla_dataset.pull(cfg, ws, force=args.force)
    print(argilla_dataset.pull_summary(report))
    return 0


def cmd_select(cfg, ws, args) -> int:
    from curation import select

    print(select.summary(select.run(cfg, ws, force=args.force)))
    return 0


def cmd_export(cfg, ws, args) -> int:
    from curation import export

    m = export.run(cfg, ws, force=args.force)
    c = m["counts"]
    state = " (up to date)" if m.get("skipped") else ""
    print(f"export{state}: {c['total']} examples ({c['train']} train, {c['dev']} dev) from strategy "
          f"{m['strategy']} -> {m.get('output_dir', export.out_dir(cfg))}")
    if m.get("decisions"):
        d = m["decisions"]
        print(f"  decisions: {d['human']} human, {d['ai']} AI (unattended), {d['edited']} edited")
    return 0


def cmd_run(cfg, ws, args) -> int:
    from curation import argilla_dataset, export, ingest, score, select

    force = args.force
    print(ingest.summary(ingest.run(cfg, ws, force=force)), flush=True)
    print(score.summary(score.run(cfg, ws, force=force)), flush=True)
    if args.no_argilla:
        if cfg.pull.unattended:
            print(argilla_dataset.pull_summary(argilla_dataset.decide_offline(cfg, ws, force=force)), flush=True)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            print(argilla_dataset.push_summary(argilla_dataset.push(cfg, ws, force=force)), flush=True)
            if cfg.pull.unattended:
                print(argilla_dataset.pull_summary(argilla_dataset.pull(cfg, ws, force=force)), flush=True)
    strategies = list(cfg.select.strategies)
    if not cfg.pull.unattended:
        strategies = [s for s in strategies if s != "curated"]
    print(select.summary(select.run(cfg, ws, strategies=strategies, force=force)), flush=True)
    if not cfg.pull.unattended and not ws.decisions.exists():
        print("\nCurators can now work in the Argilla UI. Then run, in order:\n"
              f"  python -m curation pull --workspace {ws.root}\n"
              f"  python -m curation select --workspace {ws.root}\n"
              f"  python -m curation export --workspace {ws.root}")
        return 0
    m = export.run(cfg, ws, force=force)
    print(f"export: {m['counts']['total']} examples from strategy {m['strategy']} -> {export.out_dir(cfg)}")
    return 0


def cmd_generate(cfg, ws, args) -> int:
    from curation import generate

    print(generate.summary(generate.run(cfg, ws, force=args.force)))
    return 0


def cmd_rest(cfg, ws, args) -> int:
    from curation import rest

    print(rest.summary(rest.run(cfg, ws)))
    return 0


STEPS = {"generate": cmd_generate, "rest": cmd_rest, "ingest": cmd_ingest, "score": cmd_score, "push": cmd_push, "pull": cmd_pull, "select": cmd_select,
         "export": cmd_export}


def add_shards_command(subparsers) -> None:
    from curation import shards

    p = subparsers.add_parser("shards", help="per-record signals and MinHash over Parquet shards, mapped by Dask "
                                             "(for pools that outgrow one machine)",
                              description=shards.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _workspace_arg(p)
    p.add_argument("--workers", type=int, default=2, help="local Dask worker processes (default 2)")
    p.add_argument("--scheduler", default="", help="address of an existing Dask scheduler, e.g. tcp://host:8786 "
                                                   "(default: a local cluster of --workers processes)")
    p.add_argument("--rows", type=int, default=50_000, help="records per shard (default 50,000)")
    p.set_defaults(func=cmd_shards)


def cmd_shards(args) -> int:
    from curation import shards
    from curation.workspace import StaleError, Workspace

    ws_path = _workspace_of(args) or "workspace"
    try:
        cfg = resolve(None, {"workspace": ws_path}, workspace=ws_path)
        ws = Workspace(cfg.workspace)
        with ws.lock("shards"):
            print(shards.summary(shards.run(ws, cfg.score, workers=args.workers, scheduler=args.scheduler,
                                            rows=args.rows)))
    except (ValueError, FileNotFoundError, StaleError, OSError) as err:
        print(f"error: {_msg(err)}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m curation", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="<command>")
    add_server_commands(subparsers)
    add_pipeline_commands(subparsers)
    add_shards_command(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args) or 0


toplevel = main
