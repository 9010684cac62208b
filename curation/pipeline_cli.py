"""The pipeline's subcommands: ingest, score, push, pull, select, export and run.

Every command takes ``--config RECIPE.yaml`` (without it, the resolved
config the workspace saved last, else the defaults), ``--workspace`` (else
$CURATION_WORKSPACE, else the config's), ``--force``, dotted overrides of any
config key (``--select.budget 500``, ``--set score.num_perm=64``) and a few
short aliases. Each step is idempotent: it skips when its inputs have not
changed, and writes its outputs atomically.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

from curation.aggregate import NothingAnswered
from curation.config import CurationConfig, all_keys, resolve
from curation.workspace import Workspace, WorkspaceLocked, write_text

SECTIONS = {
    "ingest": ["ingest"],
    "score": ["score"],
    "push": ["push"],
    "pull": ["pull", "push"],
    "select": ["select"],
    "export": ["export"],
    "run": ["ingest", "score", "push", "pull", "select", "export"],
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
}


class _Set(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        getattr(namespace, "cfg_overrides").append((self.dest_key, values))


def _add_override(parser, flag: str, key: str, typ: Any, help: str, **kw) -> None:
    action = type(f"Set_{key}", (_Set,), {"dest_key": key})
    if typ is bool:
        parser.add_argument(flag, action=action, nargs="?", const=True, metavar="BOOL", help=help, **kw)
    elif typ is list:
        parser.add_argument(flag, action=action, nargs="+", metavar="VALUE", help=help, **kw)
    else:
        parser.add_argument(flag, action=action, metavar=typ.__name__.upper(), help=help, **kw)


def _common(p: argparse.ArgumentParser, command: str) -> None:
    p.set_defaults(cfg_overrides=[], command_name=command)
    p.add_argument("--config", default=None, help="YAML recipe (default: <workspace>/config.yaml when present)")
    p.add_argument("--workspace", default=None,
                   help="workspace folder (default: $CURATION_WORKSPACE, else the config's, else ./workspace)")
    p.add_argument("--force", action="store_true", help="re-run even when the inputs have not changed")
    p.add_argument("--set", dest="set_pairs", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set score.num_perm=64 (repeatable)")
    keys = {k: (t, h) for k, t, h in all_keys()}
    _add_override(p, "--name", "name", str, keys["name"][1])
    for section in SECTIONS[command]:
        g = p.add_argument_group(f"{section} settings (curation/config.py)")
        for key, (typ, help) in keys.items():
            if key.startswith(section + "."):
                _add_override(g, f"--{key}", key, typ, help)


def add_pipeline_commands(subparsers) -> None:
    """Register the pipeline's subcommands on an argparse subparsers object (``func(args) -> int``)."""
    for command in ("ingest", "score", "push", "pull", "select", "export", "run"):
        p = subparsers.add_parser(command, help=HELP[command], description=HELP[command] + ". " + _DESC,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        _common(p, command)
        if command in ("ingest", "run"):
            p.add_argument("pools", nargs="*", help="candidate pools (files, folders of files, save_to_disk folders, "
                                                    "Hub ids); same as ingest.pools")
        if command in ("score", "run"):
            _add_override(p, "--decontaminate", "score.eval_prompts", list,
                          "evaluation prompt files to decontaminate against (score.eval_prompts)")
            _add_override(p, "--eval-prompts", "score.eval_prompts", list, argparse.SUPPRESS)
            p.add_argument("--rate", action="store_true",
                           help="add the LLM quality rating with the 'quality-rating' judge (score.judge)")
            _add_override(p, "--judge-base-url", "score.judge_base_url", str, "judge endpoint (score.judge_base_url)")
            _add_override(p, "--judge-model", "score.judge_model", str, "judge model (score.judge_model)")
        if command in ("push", "select", "run"):
            _add_override(p, "--budget", "select.budget", int, "examples to select (select.budget)")
        if command in ("pull", "run"):
            _add_override(p, "--unattended", "pull.unattended", bool,
                          "AI suggestions decide where no curator answered (pull.unattended)")
        if command == "select":
            _add_override(p, "--strategy", "select.strategies", list, "strategies to compute (select.strategies)")
        if command == "export":
            _add_override(p, "--strategy", "export.strategy", str, "selection to export (export.strategy)")
        if command in ("export", "run"):
            _add_override(p, "--data-dir", "export.output_dir", str, "folder receiving <name>/ (export.output_dir)")
            _add_override(p, "--dev-fraction", "export.dev_fraction", float, "held-out fraction (export.dev_fraction)")
            _add_override(p, "--push-to-hub", "export.push_to_hub", str,
                          "also push the dataset to this Hub id with `datasets` (export.push_to_hub)")
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
    overrides: dict[str, Any] = {}
    for key, value in args.cfg_overrides:
        overrides[key] = value
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
    cfg = resolve(args.config, overrides, workspace=ws)
    if cfg.ingest.pools:
        cfg.ingest.pools = expand_pools(cfg.ingest.pools)
    return cfg


def expand_pools(pools: list) -> list:
    """A plain folder of data files stands for its .jsonl/.json/.parquet/.csv files (sorted, not recursive)."""
    out: list = []
    for pool in pools:
        path = pool if isinstance(pool, str) else pool.get("path")
        p = Path(str(path))
        is_dataset = p.is_dir() and any((p / f).exists() for f in ("dataset_info.json", "dataset_dict.json",
                                                                   "state.json"))
        if p.is_dir() and not is_dataset:
            files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in
                           (".jsonl", ".json", ".parquet", ".csv", ".ndjson"))
            if not files:
                raise FileNotFoundError(f"pool folder {p} holds no .jsonl/.json/.parquet/.csv files")
            for f in files:
                out.append(str(f) if isinstance(pool, str) else {**pool, "path": str(f)})
        else:
            out.append(pool)
    return out


# ---------------------------------------------------------------------- commands


def _dispatch(args) -> int:
    try:
        cfg = resolve_config(args)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"error: {_msg(err)}", file=sys.stderr)
        return 2
    ws = Workspace(cfg.workspace)
    command = args.command_name
    try:
        with ws.lock(command):
            write_text(ws.root / "config.yaml", "# the resolved config of the latest step (see curation/config.py)\n"
                       + cfg.to_yaml())
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
    return str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)


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


STEPS = {"ingest": cmd_ingest, "score": cmd_score, "push": cmd_push, "pull": cmd_pull, "select": cmd_select,
         "export": cmd_export}
