"""``python -m eval study --config FILE``: the LIMA experiment in one command.

    python -m eval study --config eval/studies/lima.yaml

On one curation workspace and one budget, for each selection strategy (``curated``, ``longest``, ``random``,
``signals``): select and export the set (``python -m curation select`` / ``export``), fine-tune the same base with
the same recipe and seed (``python -m finetune``), then generate answers to the same prompts, judge every system
against the reference (the base model by default, or any system ``eval run`` takes: a file of an API model's
answers, an endpoint) and, with ``all_pairs`` (default), against each other, and write one report: the leaderboard
(Bradley–Terry with intervals), per-category results, and each system's training selection (its profile from
``select.json``: quality, LIMA markers, length, clusters, similarity) beside its outcome. Outputs under
``out_dir``::

    study.yaml                      the resolved study (what ran)
    state.json                      per strategy: the data's sha256, the training command, finished or not
    data/study-<strategy>/          the exported sets (train.jsonl, dev.jsonl, manifest.json)
    runs/<strategy>/                the finetune runs
    selections.json                 each system's selection profile (shown in the report)
    generations/, judgments/, report/   as ``eval run`` writes them

Every stage resumes after a kill: curation's stages are up to date or re-run, a finished training whose data and
command are unchanged is reused (an unfinished one resumes from its checkpoint), generation skips answered
prompts and judging reads its cache. A strategy whose data or training command changed is trained again, and its
answers and judgments, now stale, are removed first (and the study says so).

Every stage runs as the command a user would type (printed before it runs), in its own process: the stages'
packages do not import each other.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from contract.io import sha256_file, write_json

STRATEGIES = ("curated", "signals", "random", "longest")
STUDY_KEYS = {"out_dir", "workspace", "budget", "strategies", "model", "recipe", "finetune", "prompts", "reference",
              "references", "all_pairs", "generation", "judges", "report", "seed"}
PY = sys.executable


class StageFailed(RuntimeError):
    """A stage's command exited non-zero (its own error is above in the output)."""


@dataclasses.dataclass
class Study:
    out_dir: Path
    workspace: Path
    budget: int
    strategies: list[str]
    model: str
    recipe: str
    finetune: dict
    seed: int
    run: dict  # the eval run mapping (candidates filled in by ``eval_plan``)

    def data_dir(self) -> Path:
        return self.out_dir / "data"

    def export_name(self, strategy: str) -> str:
        return f"study-{strategy}"

    def train_file(self, strategy: str) -> Path:
        return self.data_dir() / self.export_name(strategy) / "train.jsonl"

    def run_dir(self, strategy: str) -> Path:
        return self.out_dir / "runs" / strategy


def load(path: str | Path) -> Study:
    """Read and check the study file: every problem at once, naming the key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"--config {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the study file must be a YAML mapping")
    problems = [f"unknown key {k!r} (known: {', '.join(sorted(STUDY_KEYS))})" for k in data if k not in STUDY_KEYS]
    for key in ("out_dir", "workspace", "budget", "model", "recipe", "prompts", "judges"):
        if key not in data:
            problems.append(f"missing {key!r}")
    strategies = data.get("strategies") or list(STRATEGIES)
    if not isinstance(strategies, list) or not strategies:
        problems.append("strategies: a list of selection strategies")
        strategies = []
    problems += [f"strategies: unknown {s!r} (choose from {', '.join(STRATEGIES)})" for s in strategies
                 if s not in STRATEGIES]
    if len(set(strategies)) != len(strategies):
        problems.append("strategies: a strategy is listed twice")
    budget = data.get("budget")
    if "budget" in data and not (isinstance(budget, int) and budget > 0):
        problems.append(f"budget: a positive whole number, not {budget!r}")
    ft = data.get("finetune") or {}
    if not isinstance(ft, dict):
        problems.append("finetune: a mapping of finetune config keys (the same for every strategy)")
        ft = {}
    fixed = {"model", "data", "dev_data", "output_dir", "seed", "resume", "overwrite"}
    problems += [f"finetune: {k!r} is set by the study (use the study's own keys)" for k in ft if k in fixed]
    if data.get("recipe") and not Path(data["recipe"]).is_file():
        problems.append(f"recipe: no such file {data['recipe']!r}")
    if data.get("workspace") and not Path(data["workspace"]).is_dir():
        problems.append(f"workspace: no such folder {data['workspace']!r} (a curation workspace: run `python -m "
                        "curation ingest` and `score` first, and `pull` for the curated strategy)")
    if "reference" in data and "references" in data:
        problems.append("give 'reference' (one) or 'references' (a list), not both")
    if problems:
        raise ValueError(f"{path} has problems:\n  " + "\n  ".join(problems))
    run = {k: data[k] for k in ("prompts", "generation", "judges", "report") if k in data}
    run["all_pairs"] = bool(data.get("all_pairs", True))
    refs = data.get("references") or [data.get("reference", "base")]
    run["references"] = refs
    return Study(out_dir=Path(data["out_dir"]), workspace=Path(data["workspace"]), budget=int(budget),
                 strategies=list(strategies), model=str(data["model"]), recipe=str(data["recipe"]), finetune=dict(ft),
                 seed=int(data.get("seed", 0)), run=run)


# --------------------------------------------------------------------------- stages


def _env() -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1")


def _run(cmd: list[str], what: str) -> None:
    print(f"\n$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    code = subprocess.run(cmd, env=_env()).returncode
    if code != 0:
        raise StageFailed(f"{what} failed (exit {code}); fix what it says above and run the study again: finished "
                          "stages are reused")


def select_and_export(study: Study) -> None:
    ws = str(study.workspace)
    _run([PY, "-m", "curation", "select", "--workspace", ws, "--budget", str(study.budget), "--strategy",
          *study.strategies], "curation select")
    for s in study.strategies:
        _run([PY, "-m", "curation", "export", "--workspace", ws, "--name", study.export_name(s), "--strategy", s,
              "--data-dir", str(study.data_dir())], f"curation export ({s})")


def finetune_command(study: Study, strategy: str) -> list[str]:
    data = study.train_file(strategy)
    cmd = [PY, "-m", "finetune", "--config", study.recipe, "--model", study.model, "--data", str(data),
           "--output_dir", str(study.run_dir(strategy)), "--seed", str(study.seed)]
    dev = data.parent / "dev.jsonl"
    if dev.is_file():
        cmd += ["--dev_data", str(dev)]
    for key, value in sorted(study.finetune.items()):
        cmd += [f"--{key}", json.dumps(value) if isinstance(value, (list, dict)) else str(value)]
    return cmd


def _finished(run_dir: Path, data_sha: str) -> bool:
    try:
        prov = json.loads((run_dir / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return bool(prov.get("finished")) and (prov.get("data") or {}).get("sha256") == data_sha


def train(study: Study, state: dict) -> list[str]:
    """Fine-tune each strategy's set; returns the strategies trained (again) in this call."""
    trained = []
    for s in study.strategies:
        data_sha = sha256_file(study.train_file(s))
        cmd = finetune_command(study, s)
        key = shlex.join(cmd[1:])  # without the interpreter's path
        before = state.get(s) or {}
        run_dir = study.run_dir(s)
        same = before.get("data_sha256") == data_sha and before.get("command") == key
        if same and _finished(run_dir, data_sha):
            print(f"study: {s}: the trained adapter is up to date ({run_dir})", file=sys.stderr)
            continue
        if same and (run_dir / "config.yaml").is_file():
            cmd.append("--resume")  # killed during training: go on from the last checkpoint
        elif run_dir.exists():
            why = "its data changed" if before.get("data_sha256") != data_sha else "its training command changed"
            print(f"study: {s}: {why}: training again (the old run, answers and judgments are stale)",
                  file=sys.stderr)
            cmd.append("--overwrite")
            remove_stale(study, s)
        state[s] = {"data_sha256": data_sha, "command": key, "finished": False}
        write_json(study.out_dir / "state.json", state)
        _run(cmd, f"finetune ({s})")
        state[s]["finished"] = True
        write_json(study.out_dir / "state.json", state)
        trained.append(s)
    return trained


def remove_stale(study: Study, strategy: str) -> None:
    """A strategy's answers and every judgment they are in: made by an adapter that is about to change."""
    name = system_name(strategy)
    stale = [study.out_dir / "generations" / f"{name}.jsonl"]
    judged = study.out_dir / "judgments"
    if judged.is_dir():
        stale += [p for p in judged.glob("*.jsonl") if f"--{name}--" in p.name or p.name.endswith(f"--{name}.jsonl")]
    for p in stale:
        if p.is_file():
            p.unlink()
            print(f"study: removed stale {p}", file=sys.stderr)


def system_name(strategy: str) -> str:
    return strategy


def eval_plan(study: Study) -> dict:
    """The ``eval run`` mapping: every strategy's adapter a candidate, the base (prompted with the runs' chat
    template) or the given systems as references."""
    first = study.run_dir(study.strategies[0])
    refs = []
    for ref in study.run["references"]:
        if ref == "base":
            refs.append({"generator": "base", "model": study.model, "tokenizer": str(first)})
        elif isinstance(ref, dict):
            refs.append(ref)
        else:
            raise ValueError(f"reference: 'base' or a system mapping (generator with model or outputs), not {ref!r}")
    report = dict(study.run.get("report") or {})
    report.setdefault("title", f"LIMA study: {', '.join(study.strategies)} at {study.budget} examples")
    report["selections"] = str(study.out_dir / "selections.json")
    return {
        "out_dir": str(study.out_dir),
        "prompts": study.run["prompts"],
        "candidates": [{"generator": system_name(s), "model": study.model, "adapter": str(study.run_dir(s))}
                       for s in study.strategies],
        "all_pairs": study.run["all_pairs"] and len(study.strategies) > 1,
        "references": refs,
        "generation": study.run.get("generation") or {},
        "judges": study.run["judges"],
        "report": report,
    }


def selections(study: Study) -> dict:
    """Each system's training selection: the strategy's profile from the workspace's select.json, the size and
    answer length of the exported set, and the data's sha256."""
    try:
        select = json.loads((study.workspace / "select.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        select = {}
    out = {}
    for s in study.strategies:
        train = study.train_file(s)
        words = []
        for line in train.read_text(encoding="utf-8").splitlines():
            if line.strip():
                msgs = json.loads(line)["messages"]
                words.append(sum(len(m["content"].split()) for m in msgs if m["role"] == "assistant"))
        manifest = train.parent / "manifest.json"
        out[system_name(s)] = {
            "strategy": s,
            "examples": len(words),
            "mean_answer_words": round(sum(words) / len(words), 1) if words else None,
            "profile": ((select.get("strategies") or {}).get(s) or {}).get("profile") or {},
            "data": str(train), "data_sha256": sha256_file(train),
            "manifest_sha256": sha256_file(manifest) if manifest.is_file() else None,
            "run_dir": str(study.run_dir(s)),
        }
    return out


def main(config_path: str, dry_run: bool = False) -> int:
    from . import run as eval_run

    study = load(config_path)
    mapping = eval_plan(study)
    steps = eval_run.plan(mapping)  # checks the eval half before anything runs
    print(f"eval study: {len(study.strategies)} strategies ({', '.join(study.strategies)}) at {study.budget} "
          f"examples on {study.workspace}, base {study.model}; then {len(steps.generate)} systems, "
          f"{len(steps.judge)} judgments, report in {steps.report.out}", file=sys.stderr)
    if dry_run:
        print(f"  select/export: {', '.join(study.strategies)} -> {study.data_dir()}", file=sys.stderr)
        for s in study.strategies:
            print(f"  {shlex.join(finetune_command(study, s)[1:])}", file=sys.stderr)
        return eval_run.main_plan(steps, config_path, dry_run=True)
    study.out_dir.mkdir(parents=True, exist_ok=True)
    state_path = study.out_dir / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    (study.out_dir / "study.yaml").write_text(
        f"# resolved by python -m eval study --config {config_path}\n"
        + yaml.safe_dump({"strategies": study.strategies, "budget": study.budget, "workspace": str(study.workspace),
                          "model": study.model, "recipe": study.recipe, "finetune": study.finetune, "seed": study.seed,
                          "eval": mapping}, sort_keys=False), encoding="utf-8")
    try:
        select_and_export(study)
        train(study, state)
    except StageFailed as err:
        print(f"eval study: {err}", file=sys.stderr)
        return 1
    write_json(study.out_dir / "selections.json", selections(study))
    return eval_run.main_plan(steps, config_path)


__all__ = ["main", "load", "eval_plan", "selections", "STRATEGIES"]
