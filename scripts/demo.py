#!/usr/bin/env python
"""The main job end to end, on the sample in data/: `make demo`.

Each stage is run as the very command a user would type, printed before it
runs, so the output doubles as a walkthrough:

  1. start the embedded Argilla workspace           python -m curation serve --detach
  2. ingest and score the sample pool                python -m curation ingest / score
  3. push the shortlist for curators (UI address)    python -m curation push
  4. take AI suggestions where no curator answered   python -m curation pull --unattended
  5. select (and the baselines) and export the set  python -m curation select / export
  6. fine-tune with QLoRA                            python -m finetune
  7. generate from the fine-tuned model and its base python -m eval generate
  8. judge pairwise                                  python -m eval judge
  9. write the report                                python -m eval report

Offline (no Hugging Face Hub, as on the project's CPU machines) it builds a tiny
random model locally and says so; given `--model <hub id>` and a judge endpoint
(`--judge-base-url`, `--judge-model`, key in $OPENAI_API_KEY) it runs the same
pipeline for real.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def banner(step: str, text: str) -> None:
    print(f"\n\033[1m== {step}. {text}\033[0m", flush=True)


def run(cmd: list[str], *, env: dict | None = None) -> None:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"demo: the step above failed with exit code {proc.returncode}")
    print(f"   ({time.monotonic() - started:.1f} s)", flush=True)


def hub_reachable(timeout: float = 3.0) -> bool:
    import socket

    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/demo.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=".demo", help="where the demo writes everything (default: .demo)")
    p.add_argument("--pool", nargs="+", default=["data/sample-pool"], help="candidate pool files or folders")
    p.add_argument("--eval-prompts", default="data/eval-prompts/prompts.jsonl")
    p.add_argument("--budget", type=int, default=100, help="examples to select (LIMA used 1,000; the sample is small)")
    p.add_argument("--model", default=None,
                   help="base model (Hub id or path). Default: a tiny model built locally when the Hub is unreachable, "
                        "else HuggingFaceTB/SmolLM2-135M-Instruct")
    p.add_argument("--max-steps", type=int, default=60, help="fine-tuning steps")
    p.add_argument("--judge-base-url", default=os.environ.get("JUDGE_BASE_URL"),
                   help="OpenAI-compatible endpoint for the judge (default $JUDGE_BASE_URL); "
                        "without one a local model judges, labelled as such")
    p.add_argument("--judge-model", default=os.environ.get("JUDGE_MODEL", "gpt-4o-mini"))
    p.add_argument("--port", type=int, default=int(os.environ.get("CURATION_PORT", "6900")))
    p.add_argument("--keep-server", action=argparse.BooleanOptionalAction, default=None,
                   help="leave the Argilla workspace running at the end (default: yes on a terminal, no otherwise)")
    p.add_argument("--quick", action="store_true", help="fewer steps and prompts (used by the end-to-end test)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    out = (REPO / args.out).resolve() if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workspace = out / "workspace"
    env = dict(os.environ, CURATION_WORKSPACE=str(workspace), PYTHONUNBUFFERED="1")
    env.pop("ARGILLA_API_URL", None)  # the demo always uses its own workspace
    env.pop("ARGILLA_API_KEY", None)
    keep_server = sys.stdin.isatty() if args.keep_server is None else args.keep_server

    # -- the model -----------------------------------------------------------------------------
    offline_model = False
    model = args.model
    if model is None:
        if hub_reachable():
            model = "HuggingFaceTB/SmolLM2-135M-Instruct"
        else:
            offline_model = True
            model = str(out / "models" / "tiny-llama")
            banner(0, "No Hugging Face Hub here: building a tiny random model locally")
            print("NOTE: the Hub cannot be reached, so this demo fine-tunes a tiny RANDOM 2-layer Llama built\n"
                  "      on this machine. Every stage runs for real, but the model's answers (and a local judge's\n"
                  "      verdicts) are noise. Pass --model <hub id> and --judge-base-url to run it for real.")
            if not (Path(model) / "config.json").exists():
                run([PY, "-m", "finetune.tiny", model, "--corpus", *map(str, _pool_files(args.pool))], env=env)

    # -- curation ------------------------------------------------------------------------------
    banner(1, "Start the embedded Argilla workspace")
    run([PY, "-m", "curation", "serve", "--workspace", str(workspace), "--port", str(args.port), "--detach"], env=env)
    try:
        banner(2, "Ingest and score the sample pool")
        run([PY, "-m", "curation", "ingest", "--workspace", str(workspace), *args.pool], env=env)
        score = [PY, "-m", "curation", "score", "--workspace", str(workspace),
                 "--decontaminate", args.eval_prompts]
        if args.judge_base_url:
            score += ["--rate", "--judge-base-url", args.judge_base_url, "--judge-model", args.judge_model]
        run(score, env=env)

        banner(3, "Push the shortlist to Argilla for curators")
        run([PY, "-m", "curation", "push", "--workspace", str(workspace), "--budget", str(args.budget)], env=env)
        run([PY, "-m", "curation", "status", "--workspace", str(workspace)], env=env)

        banner(4, "Pull curator answers; AI suggestions decide where no curator answered (labelled)")
        run([PY, "-m", "curation", "pull", "--workspace", str(workspace), "--unattended"], env=env)

        banner(5, "Select (curated, and the signals / random / longest baselines at the same budget) and export")
        data_dir = out / "data"
        run([PY, "-m", "curation", "select", "--workspace", str(workspace), "--budget", str(args.budget),
             "--strategy", "curated", "signals", "random", "longest"], env=env)
        run([PY, "-m", "curation", "export", "--workspace", str(workspace), "--name", "lima-demo",
             "--strategy", "curated", "--data-dir", str(data_dir)], env=env)
    finally:
        if not keep_server:
            subprocess.run([PY, "-m", "curation", "stop", "--workspace", str(workspace)], cwd=REPO, env=env)

    # -- fine-tuning ---------------------------------------------------------------------------
    banner(6, "Fine-tune with QLoRA (4-bit NF4 base, LoRA adapter)")
    run_dir = out / "runs" / "lima-demo"
    recipe = "finetune/recipes/tiny-cpu.yaml" if offline_model else "finetune/recipes/lima-qwen2.5-0.5b.yaml"
    run([PY, "-m", "finetune", "--config", recipe, "--model", model,
         "--data", str(data_dir / "lima-demo" / "train.jsonl"), "--output_dir", str(run_dir),
         "--max_steps", str(20 if args.quick else args.max_steps), "--overwrite"], env=env)

    # -- evaluation ----------------------------------------------------------------------------
    banner(7, "Generate answers from the fine-tuned model and from its base (the reference)")
    gen_dir = out / "eval"
    # generation resumes into existing files: after a new adapter, earlier answers are stale
    shutil.rmtree(gen_dir, ignore_errors=True)
    candidate = gen_dir / "generations-finetuned.jsonl"
    reference = gen_dir / "generations-base.jsonl"
    gen_common = ["--prompts", args.eval_prompts, "--max-new-tokens", "64" if args.quick else "128", "--seed", "0"]
    run([PY, "-m", "eval", "generate", "--model", model, "--adapter", str(run_dir), "--out", str(candidate),
         *gen_common], env=env)
    # the base is prompted with the chat template it was fine-tuned with (saved in the run folder)
    run([PY, "-m", "eval", "generate", "--model", model, "--tokenizer", str(run_dir), "--out", str(reference),
         *gen_common], env=env)

    banner(8, "Judge pairwise, both orders")
    judgments = gen_dir / "judgments.jsonl"
    if args.judge_base_url:
        judge = ["--judge", "lima-three-way", "--backend", "openai", "--base-url", args.judge_base_url,
                 "--model", args.judge_model]
    else:
        print("NOTE: no judge endpoint given: the base model judges locally by scoring the verdict strings.\n"
              "      With a tiny random model those verdicts are noise; the report says so.")
        judge = ["--judge", "lima-three-way", "--backend", "local", "--model", model]
    run([PY, "-m", "eval", "judge", *judge, "--a", str(candidate), "--b", str(reference), "--out", str(judgments)],
        env=env)

    banner(9, "Write the report")
    report_dir = out / "report"
    run([PY, "-m", "eval", "report", "--judgments", str(judgments), "--out", str(report_dir),
         "--manifest", str(data_dir / "lima-demo" / "manifest.json"), "--run-dir", str(run_dir)], env=env)

    elapsed = time.monotonic() - started
    print(f"\n\033[1mDone in {elapsed / 60:.1f} min.\033[0m Everything is under {out}:")
    creds = workspace / "credentials.json"
    print(f"  curation workspace  {workspace}  (owner credentials: {creds})")
    print(f"  curated dataset     {data_dir / 'lima-demo'}  (train.jsonl, manifest.json, README.md)")
    print(f"  QLoRA adapter       {run_dir}")
    print(f"  generations         {candidate}, {reference}")
    print(f"  judgments           {judgments}")
    print(f"  report              {report_dir / 'report.html'}  and  report.md")
    if keep_server:
        print(f"\nThe Argilla workspace is still running. Stop it with:\n"
              f"  .venv/bin/python -m curation stop --workspace {workspace}")
    else:
        print(f"\nOpen the curation UI again with:  .venv/bin/python -m curation serve --workspace {workspace}")
    if offline_model:
        print("\nReminder: the model was a tiny random one built locally (no Hub here); the numbers in the "
              "report are not a result.")
    summary = {"seconds": round(elapsed, 1), "offline_model": offline_model, "model": model,
               "report": str(report_dir / "report.html")}
    (out / "demo-summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


def _pool_files(pool: list[str]) -> list[Path]:
    files: list[Path] = []
    for entry in pool:
        p = REPO / entry
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix in (".jsonl", ".json"))
        elif p.exists():
            files.append(p)
    return files


if __name__ == "__main__":
    sys.exit(main())
