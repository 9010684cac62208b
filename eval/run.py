"""``python -m eval run --config FILE``: generate, judge and report in one command.

    python -m eval run --config eval/runs/example.yaml

The YAML file names the prompts, one candidate (``candidate``) or several
(``candidates``: every one is judged against every reference, and with
``all_pairs: true`` against each other too, for a Bradley–Terry leaderboard),
one or more references (B: a model, an endpoint, or a file of existing
outputs), the generation settings, the judges, and the report options. Keys are the flags of ``generate``,
``judge`` and ``report`` in snake_case; unknown keys are errors, and every
problem is reported before anything runs. Outputs under ``out_dir``::

    run.yaml                         the resolved configuration
    generations/<generator>.jsonl    one per system
    judgments/<judge>--<A>--vs--<B>.jsonl
    report/report.html, report.md, summary.json, *.png

Each step resumes: generation skips answered prompts, judging reads its cache.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import GenerateConfig, JudgeArgs, ReportArgs, from_mapping
from .files import resolve_prompts

SYSTEM_KEYS = {"generator", "model", "adapter", "outputs", "tokenizer", "backend", "base_url"}
GENERATION_KEYS = {f.name for f in dataclasses.fields(GenerateConfig)} - SYSTEM_KEYS - {"prompts", "out"}
JUDGE_KEYS = {f.name for f in dataclasses.fields(JudgeArgs)} - {"a", "b", "out", "dataset", "workspace",
                                                                   "argilla_workspace", "overlap"}
REPORT_KEYS = {f.name for f in dataclasses.fields(ReportArgs)} - {"judgments", "out"}
TOP_KEYS = {"out_dir", "prompts", "candidate", "candidates", "all_pairs", "references", "generation", "judges", "report"}


@dataclass
class RunPlan:
    out_dir: Path
    generate: list[GenerateConfig] = field(default_factory=list)
    judge: list[JudgeArgs] = field(default_factory=list)
    report: ReportArgs | None = None


def plan(data: dict, base: Path | None = None) -> RunPlan:
    """Validate the YAML mapping and turn it into the commands to run. All problems in one ValueError."""
    from judging import load_judge

    problems: list[str] = []
    if not isinstance(data, dict):
        raise ValueError("the run file must be a YAML mapping")
    problems += [f"unknown top-level key {k!r} (known: {', '.join(sorted(TOP_KEYS))})" for k in data if k not in TOP_KEYS]
    for key in ("out_dir", "prompts", "references", "judges"):
        if key not in data:
            problems.append(f"missing {key!r}")
    if ("candidate" in data) == ("candidates" in data):
        problems.append("give 'candidate' (one system) or 'candidates' (a list), not both or neither")
    elif "candidates" in data and not (isinstance(data["candidates"], list) and data["candidates"]):
        problems.append("candidates: a list of systems")
    if problems:
        raise ValueError("\n".join(problems))
    out_dir = Path(data["out_dir"])
    gen_common = data.get("generation") or {}
    problems += [f"generation: unknown key {k!r}" for k in gen_common if k not in GENERATION_KEYS]
    candidates = ([("candidate", data["candidate"])] if "candidate" in data
                  else [(f"candidates[{i}]", c) for i, c in enumerate(data["candidates"])])
    references = [(f"references[{i}]", r) for i, r in enumerate(data["references"] or [])]
    systems = candidates + references
    if not references:
        problems.append("references: at least one reference is needed")
    result = RunPlan(out_dir)
    files: dict[str, Path] = {}
    for where, sysdef in systems:
        if not isinstance(sysdef, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        bad = [k for k in sysdef if k not in SYSTEM_KEYS | GENERATION_KEYS]
        problems += [f"{where}: unknown key {k!r} (known: {', '.join(sorted(SYSTEM_KEYS))} and the generation keys)" for k in bad]
        if not sysdef.get("generator"):
            problems.append(f"{where}: 'generator' (the system's name in the report) is required")
            continue
        if bool(sysdef.get("model")) == bool(sysdef.get("outputs")):
            problems.append(f"{where}: give either 'model' or 'outputs'")
        name = str(sysdef["generator"])
        if name in files:
            problems.append(f"{where}: generator name {name!r} used twice")
        files[name] = out_dir / "generations" / f"{name}.jsonl"
        try:
            cfg = from_mapping(GenerateConfig, {**gen_common, **{k: v for k, v in sysdef.items() if k not in bad},
                                                "prompts": data["prompts"], "out": str(files[name])}, where)
            cfg.progress = cfg.progress and sys.stderr.isatty()
            result.generate.append(cfg)
        except ValueError as err:
            problems.append(str(err))
    judges = data["judges"] or []
    if not judges:
        problems.append("judges: at least one judge is needed")
    names = list(files)
    cand_names = names[:len(candidates)]
    matchups = [(c, r) for c in cand_names for r in names[len(candidates):]]
    if data.get("all_pairs"):
        matchups += [(x, y) for i, x in enumerate(cand_names) for y in cand_names[i + 1:]]
    for i, jdef in enumerate(judges):
        where = f"judges[{i}]"
        if not isinstance(jdef, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        problems += [f"{where}: unknown key {k!r} (known: {', '.join(sorted(JUDGE_KEYS))})" for k in jdef if k not in JUDGE_KEYS]
        if jdef.get("backend") == "human":
            problems.append(f"{where}: human judging takes two steps (push, then pull once people voted): "
                            "use python -m eval judge --backend human push/pull and pass the pulled file to report")
        name = str(jdef.get("judge", "lima-three-way"))
        try:
            single = load_judge(name).mode == "pointwise"
        except ValueError as err:
            problems.append(f"{where}: {err}")
            continue
        # a single-answer judge grades every system alone; a pairwise one judges each matchup
        jobs = [(s_, None) for s_ in names] if single else matchups
        for cand, ref in jobs:
            label = (f"{name}--{cand}" if ref is None else f"{name}--{cand}--vs--{ref}").replace("/", "_")
            try:
                cfg = from_mapping(JudgeArgs, {**{k: v for k, v in jdef.items() if k in JUDGE_KEYS},
                                               "a": str(files[cand]), "b": str(files[ref]) if ref else "",
                                               "out": str(out_dir / "judgments" / f"{label}.jsonl")}, where)
                cfg.progress = cfg.progress and sys.stderr.isatty()
                result.judge.append(cfg)
            except ValueError as err:
                problems.append(str(err))
    rep = data.get("report") or {}
    problems += [f"report: unknown key {k!r} (known: {', '.join(sorted(REPORT_KEYS))})" for k in rep if k not in REPORT_KEYS]
    if not problems:
        result.report = from_mapping(ReportArgs, {**rep, "judgments": [str(j.out) for j in result.judge],
                                                  "out": str(out_dir / "report")}, "report")
        if not resolve_prompts(data["prompts"]).is_file():
            problems.append(f"prompts: {data['prompts']}: no such file")
    if problems:
        raise ValueError("the run file has problems:\n  " + "\n  ".join(dict.fromkeys(problems)))
    return result


def main(config_path: str, dry_run: bool = False) -> int:
    data = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    steps = plan(data)
    print(f"eval run: {len(steps.generate)} systems, {len(steps.judge)} judgments, report in {steps.report.out}",
          file=sys.stderr)
    return main_plan(steps, config_path, dry_run)


def main_plan(steps: RunPlan, config_path: str, dry_run: bool = False) -> int:
    """Run (or, with ``dry_run``, print) the steps of a checked plan: generate, judge, report."""
    from . import generate, judge, report

    if dry_run:
        for g in steps.generate:
            print(f"  generate {g.generator}: {g.model or g.outputs} -> {g.out}", file=sys.stderr)
        for j in steps.judge:
            print(f"  judge {j.judge} ({j.backend or 'its default backend'}): {j.a}" + (f" vs {j.b}" if j.b else " (single answers)")
                  + f" -> {j.out}", file=sys.stderr)
        return 0
    steps.out_dir.mkdir(parents=True, exist_ok=True)
    (steps.out_dir / "run.yaml").write_text(
        "# resolved by python -m eval run --config " + str(config_path) + "\n"
        + yaml.safe_dump({"generate": [dataclasses.asdict(g) for g in steps.generate],
                          "judge": [dataclasses.asdict(j) for j in steps.judge],
                          "report": dataclasses.asdict(steps.report)}, sort_keys=False),
        encoding="utf-8")
    for g in steps.generate:
        generate.main(g)
    for j in steps.judge:
        code = judge.main(j)
        if code != 0:
            print(f"eval run: judging {j.out} failed (exit {code}); stopping before the report", file=sys.stderr)
            return code
    report.main(steps.report)
    return 0
