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
STUDY_KEYS = {"kind", "out_dir", "workspace", "budget", "strategies", "model", "recipe", "finetune", "prompts", "reference",
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


def load(path: str | Path) -> "Study | FeedbackStudy":
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
    kind = data.get("kind", "selection")
    if kind == "feedback":
        return load_feedback(data, path)
    if kind != "selection":
        raise ValueError(f"{path}: kind: {kind!r} is not a study kind (selection, or feedback)")
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
    if "budget" in data and not (isinstance(budget, int) and not isinstance(budget, bool) and budget > 0):
        problems.append(f"budget: a positive whole number, not {budget!r}")
    problems += _seed_problem(data)
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
    return Study(out_dir=Path(data["out_dir"]), workspace=Path(data["workspace"]), budget=int(budget),
                 strategies=list(strategies), model=str(data["model"]), recipe=str(data["recipe"]), finetune=dict(ft),
                 seed=int(data.get("seed", 0)), run=_eval_half(data))


def _seed_problem(data: dict) -> list[str]:
    seed = data.get("seed", 0)
    return [] if isinstance(seed, int) and not isinstance(seed, bool) else [f"seed: a whole number, not {seed!r}"]


def _eval_half(data: dict) -> dict:
    run = {k: data[k] for k in ("prompts", "generation", "judges", "report") if k in data}
    run["all_pairs"] = bool(data.get("all_pairs", True))
    run["references"] = data.get("references") or [data.get("reference", "base")]
    return run


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
    return cmd + _overrides(study.finetune)


def _overrides(values: dict) -> list[str]:
    out = []
    for key, value in sorted(values.items()):
        out += [f"--{key}", json.dumps(value) if isinstance(value, (list, dict)) else str(value)]
    return out


@dataclasses.dataclass
class TrainJob:
    """One ``python -m finetune`` run of a study: its name, command, data and (for DPO on an SFT adapter) the
    run it starts from; ``system``: the evaluated system whose answers it makes (None for an intermediate run)."""

    name: str
    cmd: list[str]
    data: Path
    run_dir: Path
    init: Path | None = None
    system: str | None = None


def _finished(run_dir: Path, data_sha: str) -> bool:
    try:
        prov = json.loads((run_dir / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return bool(prov.get("finished")) and (prov.get("data") or {}).get("sha256") == data_sha


def _adapter_sha(run_dir: Path) -> str:
    from .generate import adapter_sha256, resolve_adapter

    return adapter_sha256(resolve_adapter(str(run_dir)))


def train(out_dir: Path, jobs: list[TrainJob], state: dict) -> list[str]:
    """Run each job unless its finished run is up to date (same data, same command, same starting adapter);
    resume an unfinished one; train a stale one again after removing what its old adapter produced. Returns the
    jobs trained in this call."""
    trained = []
    for job in jobs:
        data_sha = sha256_file(job.data)
        init_sha = _adapter_sha(job.init) if job.init else None
        cmd = list(job.cmd)
        key = shlex.join(cmd[1:])  # without the interpreter's path
        before = state.get(job.name) or {}
        same = (before.get("data_sha256") == data_sha and before.get("command") == key
                and before.get("init_adapter_sha256") == init_sha)
        if same and _finished(job.run_dir, data_sha):
            print(f"study: {job.name}: the trained adapter is up to date ({job.run_dir})", file=sys.stderr)
            continue
        if same and (job.run_dir / "config.yaml").is_file():
            cmd.append("--resume")  # killed during training: go on from the last checkpoint
        elif job.run_dir.exists():
            why = ("its data changed" if before.get("data_sha256") != data_sha else
                   "the adapter it starts from changed" if before.get("init_adapter_sha256") != init_sha else
                   "its training command changed")
            print(f"study: {job.name}: {why}: training again (the old run, answers and judgments are stale)",
                  file=sys.stderr)
            cmd.append("--overwrite")
            if job.system:
                remove_stale(out_dir, job.system)
        state[job.name] = {"data_sha256": data_sha, "command": key, "init_adapter_sha256": init_sha,
                           "finished": False}
        write_json(out_dir / "state.json", state)
        _run(cmd, f"finetune ({job.name})")
        state[job.name]["finished"] = True
        write_json(out_dir / "state.json", state)
        trained.append(job.name)
    return trained


def remove_stale(out_dir: Path, name: str) -> None:
    """A system's answers and every judgment they are in: made by an adapter that is about to change."""
    stale = [out_dir / "generations" / f"{name}.jsonl"]
    judged = out_dir / "judgments"
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
    systems = [(system_name(s), study.run_dir(s)) for s in study.strategies]
    title = f"LIMA study: {', '.join(study.strategies)} at {study.budget} examples"
    return _eval_mapping(study.out_dir, study.model, systems, study.run, title)


def _eval_mapping(out_dir: Path, model: str, systems: list[tuple[str, Path]], run: dict, title: str) -> dict:
    refs = []
    for ref in run["references"]:
        if ref == "base":  # prompted with the chat template the runs trained with
            refs.append({"generator": "base", "model": model, "tokenizer": str(systems[0][1])})
        elif isinstance(ref, dict):
            refs.append(ref)
        else:
            raise ValueError(f"reference: 'base' or a system mapping (generator with model or outputs), not {ref!r}")
    report = dict(run.get("report") or {})
    report.setdefault("title", title)
    report["selections"] = str(out_dir / "selections.json")
    return {
        "out_dir": str(out_dir),
        "prompts": run["prompts"],
        "candidates": [{"generator": name, "model": model, "adapter": str(run_dir)} for name, run_dir in systems],
        "all_pairs": run["all_pairs"] and len(systems) > 1,
        "references": refs,
        "generation": run.get("generation") or {},
        "judges": run["judges"],
        "report": report,
    }


def _answer_words(train: Path) -> list[int]:
    """Assistant words per example of a messages-format training file."""
    return [sum(len(m["content"].split()) for m in json.loads(x)["messages"] if m["role"] == "assistant")
            for x in train.read_text(encoding="utf-8").splitlines() if x.strip()]


def _example_ids(train: Path) -> frozenset:
    return frozenset(json.loads(x).get("id") for x in train.read_text(encoding="utf-8").splitlines() if x.strip())


def same_examples(files: dict[str, Path]) -> list[list[str]]:
    """Groups of strategies whose exported training sets hold the same examples (by id, in any order)."""
    return [g for g, _ in _same_example_groups(files)]


def _same_example_groups(files: dict[str, Path]) -> list[tuple[list[str], int]]:
    """same_examples' groups, each with its number of examples (every file read once)."""
    groups: dict[frozenset, list[str]] = {}
    for strategy, train in files.items():
        groups.setdefault(_example_ids(train), []).append(strategy)
    return [(g, len(ids)) for ids, g in groups.items() if len(g) > 1]


def say_same_examples(study: Study) -> list[list[str]]:
    """Say which strategies picked the same examples: they train and answer alike, so the judgments between them
    measure only the judge (e.g. curated and signals on a workspace whose decisions are the AI suggestions)."""
    same = _same_example_groups({s: study.train_file(s) for s in study.strategies})
    for group, n in same:
        hint = (" (on a workspace pulled --unattended the curated decisions are the AI suggestions, made from the "
                "same scores; pull human decisions for a real comparison)" if "curated" in group else "")
        print(f"study: {' and '.join(group)} selected the same {n} examples: their runs are alike and their "
              f"comparison says nothing about the selections{hint}", file=sys.stderr)
    return [g for g, _ in same]


def selections(study: Study, same: list[list[str]]) -> dict:
    """Each system's training selection: the strategy's profile from the workspace's select.json, the size and
    answer length of the exported set, the data's sha256, and the strategies that picked the same examples
    (``same``: :func:`say_same_examples`' groups)."""
    try:
        select = json.loads((study.workspace / "select.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        select = {}
    out = {}
    same_as = {s: [o for o in group if o != s] for group in same for s in group}
    for s in study.strategies:
        train = study.train_file(s)
        words = _answer_words(train)
        manifest = train.parent / "manifest.json"
        out[system_name(s)] = {
            "strategy": s,
            "examples": len(words),
            "mean_answer_words": round(sum(words) / len(words), 1) if words else None,
            "profile": ((select.get("strategies") or {}).get(s) or {}).get("profile") or {},
            "data": str(train), "data_sha256": sha256_file(train),
            "manifest_sha256": sha256_file(manifest) if manifest.is_file() else None,
            "run_dir": str(study.run_dir(s)),
            "same_examples_as": same_as.get(s, []),
        }
    return out


def main(config_path: str, dry_run: bool = False) -> int:
    from . import run as eval_run

    study = load(config_path)
    feedback = isinstance(study, FeedbackStudy)
    mapping = feedback_plan(study) if feedback else eval_plan(study)
    steps = eval_run.plan(mapping)  # checks the eval half before anything runs
    if feedback:
        strong = study.strong.get("model") or study.strong.get("outputs") or "(EVAL_GEN_MODEL at the endpoint)"
        print(f"eval study (feedback): the strong teacher {strong} "
              f"and the weak {study.weak.get('model') or study.weak.get('outputs')} answer {study.train_prompts}; "
              f"arms {', '.join(ARMS.values())} on {study.model}; then {len(steps.generate)} systems, "
              f"{len(steps.judge)} judgments, report in {steps.report.out}", file=sys.stderr)
    else:
        print(f"eval study: {len(study.strategies)} strategies ({', '.join(study.strategies)}) at {study.budget} "
              f"examples on {study.workspace}, base {study.model}; then {len(steps.generate)} systems, "
              f"{len(steps.judge)} judgments, report in {steps.report.out}", file=sys.stderr)
    jobs = feedback_jobs(study) if feedback else [
        TrainJob(s, finetune_command(study, s), study.train_file(s), study.run_dir(s), system=system_name(s))
        for s in study.strategies]
    if dry_run:
        if not feedback:
            print(f"  select/export: {', '.join(study.strategies)} -> {study.data_dir()}", file=sys.stderr)
        for job in jobs:
            print(f"  {shlex.join(job.cmd[1:])}", file=sys.stderr)
        return eval_run.main_plan(steps, config_path, dry_run=True)
    study.out_dir.mkdir(parents=True, exist_ok=True)
    state_path = study.out_dir / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    (study.out_dir / "study.yaml").write_text(
        f"# resolved by python -m eval study --config {config_path}\n"
        + yaml.safe_dump({**{k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(study).items()
                             if k != "run"}, "eval": mapping}, sort_keys=False), encoding="utf-8")
    same: list[list[str]] = []  # strategies that picked the same examples
    try:
        if feedback:
            teach(study)
        else:
            select_and_export(study)
            same = say_same_examples(study)
        train(study.out_dir, jobs, state)
    except StageFailed as err:
        print(f"eval study: {err}", file=sys.stderr)
        return 1
    write_json(study.out_dir / "selections.json",
               feedback_selections(study) if feedback else selections(study, same))
    return eval_run.main_plan(steps, config_path)


# --------------------------------------------------------------------------- the feedback study (RLAIF vs a strong teacher)

FEEDBACK_KEYS = {"kind", "out_dir", "model", "seed", "train_prompts", "strong", "weak", "preference_judge", "sft_recipe",
                 "dpo_recipe", "finetune", "dpo", "prompts", "reference", "references", "all_pairs", "generation",
                 "judges", "report"}
ARMS = {"A": "A-strong-sft", "B": "B-weak-sft-dpo", "C": "C-strong-sft-dpo"}
ARM_ABOUT = {"A": "SFT on the strong teacher's answers",
             "B": "SFT on the weak teacher's answers, then DPO on the strong judge's preferences between two of its "
                  "samples",
             "C": "arm A, then DPO on the same preferences"}


@dataclasses.dataclass
class FeedbackStudy:
    """The critical evaluation of AI feedback, on your data: arm A = SFT on a strong teacher's answers; arm B = SFT
    on a weak teacher's answers, then DPO on AI preferences (the strong model judging two weak samples per prompt);
    arm C = arm A + DPO on the same preferences. Same base, prompts, seed and reference for all."""

    out_dir: Path
    model: str
    seed: int
    train_prompts: str
    strong: dict
    weak: dict
    preference_judge: dict
    sft_recipe: str
    dpo_recipe: str
    finetune: dict
    dpo: dict
    run: dict

    def teach(self, name: str) -> Path:
        return self.out_dir / "teachers" / f"{name}.jsonl"

    def data(self, name: str) -> Path:
        return self.out_dir / "data" / name / "train.jsonl"

    def run_dir(self, name: str) -> Path:
        return self.out_dir / "runs" / name


def load_feedback(data: dict, path: Path) -> FeedbackStudy:
    problems = [f"unknown key {k!r} (known: {', '.join(sorted(FEEDBACK_KEYS))})" for k in data if k not in FEEDBACK_KEYS]
    for key in ("out_dir", "model", "train_prompts", "strong", "weak", "preference_judge", "sft_recipe", "dpo_recipe",
                "prompts", "judges"):
        if key not in data:
            problems.append(f"missing {key!r}")
    for key in ("strong", "weak", "preference_judge", "finetune", "dpo"):
        if key in data and not isinstance(data[key] or {}, dict):
            problems.append(f"{key}: a mapping")
    for key in ("strong", "weak"):
        sysdef = data.get(key) or {}
        from_env = sysdef.get("backend") == "openai" and not sysdef.get("outputs") if isinstance(sysdef, dict) else False
        if isinstance(sysdef, dict) and not from_env and bool(sysdef.get("model")) == bool(sysdef.get("outputs")):
            problems.append(f"{key}: give either 'model' or 'outputs' (as for a system of eval run; with backend "
                            "openai the model may come from EVAL_GEN_MODEL)")
    weak = data.get("weak") if isinstance(data.get("weak"), dict) else {}
    if weak.get("outputs"):
        problems.append("weak: the weak teacher is sampled twice per prompt, so it must be a 'model'")
    if float(weak.get("temperature", 0.8)) <= 0:
        problems.append("weak: temperature must be > 0 (two samples per prompt to prefer between)")
    fixed = {"model", "data", "dev_data", "output_dir", "seed", "resume", "overwrite", "method", "init_adapter"}
    for key in ("finetune", "dpo"):
        problems += [f"{key}: {k!r} is set by the study" for k in (data.get(key) or {}) if k in fixed]
    problems += _seed_problem(data)
    for key in ("sft_recipe", "dpo_recipe", "train_prompts"):
        if data.get(key) and not Path(data[key]).is_file():
            problems.append(f"{key}: no such file {data[key]!r}")
    if "reference" in data and "references" in data:
        problems.append("give 'reference' (one) or 'references' (a list), not both")
    if problems:
        raise ValueError(f"{path} has problems:\n  " + "\n  ".join(problems))
    return FeedbackStudy(out_dir=Path(data["out_dir"]), model=str(data["model"]), seed=int(data.get("seed", 0)),
                         train_prompts=str(data["train_prompts"]), strong=dict(data["strong"]),
                         weak={"temperature": 0.8, **data["weak"]}, preference_judge=dict(data["preference_judge"]),
                         sft_recipe=str(data["sft_recipe"]), dpo_recipe=str(data["dpo_recipe"]),
                         finetune=dict(data.get("finetune") or {}), dpo=dict(data.get("dpo") or {}),
                         run=_eval_half(data))


def feedback_plan(study: FeedbackStudy) -> dict:
    systems = [(ARMS[a], study.run_dir(ARMS[a])) for a in "ABC"]
    return _eval_mapping(study.out_dir, study.model, systems, study.run,
                         "RLAIF or a strong teacher? " + "; ".join(f"{ARMS[a]}: {ARM_ABOUT[a]}" for a in "ABC"))


def feedback_jobs(study: FeedbackStudy) -> list[TrainJob]:
    def sft(name: str, data: Path, system: str | None) -> TrainJob:
        cmd = [PY, "-m", "finetune", "--config", study.sft_recipe, "--model", study.model, "--data", str(data),
               "--output_dir", str(study.run_dir(name)), "--seed", str(study.seed)] + _overrides(study.finetune)
        return TrainJob(name, cmd, data, study.run_dir(name), system=system)

    def dpo(name: str, init: str) -> TrainJob:
        pairs = study.out_dir / "data" / "pairs.jsonl"
        cmd = [PY, "-m", "finetune", "--config", study.dpo_recipe, "--method", "dpo", "--model", study.model,
               "--data", str(pairs), "--init_adapter", str(study.run_dir(init)), "--output_dir",
               str(study.run_dir(name)), "--seed", str(study.seed)] + _overrides(study.dpo)
        return TrainJob(name, cmd, pairs, study.run_dir(name), init=study.run_dir(init), system=name)

    return [sft(ARMS["A"], study.data("strong"), ARMS["A"]), sft("B-weak-sft", study.data("weak"), None),
            dpo(ARMS["B"], "B-weak-sft"), dpo(ARMS["C"], ARMS["A"])]


def teach(study: FeedbackStudy) -> None:
    """The teachers answer the training prompts (the weak one twice, sampled), the strong judge prefers between
    the weak samples, and the answers and preferences become training files. Each step resumes."""
    from . import generate, judge, pairs
    from .config import GenerateConfig, JudgeArgs, PairsArgs, from_mapping

    def gen(name: str, sysdef: dict, seed: int | None = None) -> Path:
        out = study.teach(name)
        settings = {**sysdef, "prompts": study.train_prompts, "out": str(out),
                    "generator": sysdef.get("generator") or name, "progress": sys.stderr.isatty()}
        if seed is not None:
            settings["seed"] = seed
        print(f"\nstudy: {name} answers {study.train_prompts} -> {out}", file=sys.stderr)
        try:
            generate.main(from_mapping(GenerateConfig, settings, name))
        except generate.GenerationIncomplete as err:
            raise StageFailed(f"the {name} teacher: {err}") from None
        return out

    strong = gen("strong-teacher", study.strong)
    weak = [gen(f"weak-teacher-{i}", study.weak, study.seed + i) for i in (1, 2)]
    _to_messages(strong, study.data("strong"))
    _to_messages(weak[0], study.data("weak"))
    prefs = study.out_dir / "teachers" / "preferences.jsonl"
    print(f"\nstudy: the preference judge compares the weak teacher's two samples -> {prefs}", file=sys.stderr)
    code = judge.main(from_mapping(JudgeArgs, {**study.preference_judge, "a": str(weak[0]), "b": str(weak[1]),
                                               "out": str(prefs), "progress": sys.stderr.isatty()},
                                   "preference_judge"))
    if code != 0:
        raise StageFailed(f"the preference judge (exit {code})")
    pairs_out = study.out_dir / "data" / "pairs.jsonl"
    if pairs.main(PairsArgs(out=str(pairs_out), judgments=[str(prefs)])) != 0:
        raise StageFailed("preference pairs: no order-consistent preference (see the counts above)")


def _to_messages(generations: Path, out: Path) -> None:
    """A teacher's answers as a training set in the messages schema (empty answers left out, counted)."""
    from contract.io import write_jsonl
    from contract.schema import make_example

    from .files import read_records

    rows, empty = [], 0
    for r in read_records(generations):
        if not (r.get("output") or "").strip():
            empty += 1
            continue
        rows.append(make_example([{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["output"]}],
                                 f"teacher:{r.get('generator')}", {"prompt_id": r["id"], "teacher_model": r.get("model")},
                                 where={"path": str(generations), "record": r["id"]}))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, rows)
    print(f"study: {len(rows)} training examples from {generations.name} -> {out}"
          + (f" ({empty} empty answers left out)" if empty else ""), file=sys.stderr)


def feedback_selections(study: FeedbackStudy) -> dict:
    n_pairs = sum(1 for line in (study.out_dir / "data" / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
                  if line.strip())
    out = {}
    for arm, data in (("A", "strong"), ("B", "weak"), ("C", "strong")):
        train = study.data(data)
        words = _answer_words(train)
        out[ARMS[arm]] = {"strategy": ARM_ABOUT[arm], "examples": len(words),
                          "mean_answer_words": round(sum(words) / len(words), 1) if words else None,
                          "preference_pairs": n_pairs if arm in "BC" else 0, "profile": {},
                          "data": str(train), "data_sha256": sha256_file(train),
                          "run_dir": str(study.run_dir(ARMS[arm]))}
    return out


__all__ = ["main", "load", "eval_plan", "feedback_plan", "selections", "STRATEGIES", "ARMS"]
