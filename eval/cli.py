"""``python -m eval {generate,judge,report,pairs,run,study}``: one parser, one function per command."""

from __future__ import annotations

import argparse
import sys

from contract import config as cc

from .config import GenerateConfig, JudgeArgs, PairsArgs, ReportArgs, add_arguments, from_namespace

DESCRIPTION = """\
Pairwise evaluation: generate answers, judge them against a reference (LLM judges in both orders,
or humans in a blind A/B Argilla dataset), and write a report. Files and schemas: eval/README.md.

  python -m eval generate --model M [--adapter DIR] --prompts P.jsonl --out cand.jsonl
  python -m eval generate --backend openai --model gpt-4o --prompts mt-bench --out ref.jsonl
  python -m eval judge --judge lima-three-way --a cand.jsonl --b ref.jsonl --out judgments.jsonl
  python -m eval judge --judge mtbench-single --a cand.jsonl --out grades.jsonl
  python -m eval judge --backend human push --a cand.jsonl --b ref.jsonl --dataset eval-ab
  python -m eval judge --backend human pull --dataset eval-ab --out judgments-human.jsonl
  python -m eval report --judgments judgments*.jsonl --out report/
  python -m eval pairs --judgments judgments*.jsonl --edits data/NAME/train.jsonl --out pairs.jsonl
  python -m eval run --config eval/runs/example.yaml
  python -m eval study --config eval/studies/lima.yaml
"""

JUDGE_EPILOG = """\
LLM backends read the endpoint from the environment: EVAL_JUDGE_BASE_URL (or OPENAI_BASE_URL),
EVAL_JUDGE_MODEL, and the key from EVAL_JUDGE_API_KEY (or OPENAI_API_KEY) — keys are never taken
from flags, written to files or logged. vLLM, llama.cpp and Ollama servers work (base URL …/v1).
Every pair is judged twice with the answers swapped; a verdict that flips is a tie (inconsistent).
Single-answer judges (mtbench-single) grade --a alone. Two-turn prompts are judged turn by turn.
Replies are cached (--cache-dir), "no verdict" too: an interrupted run resumes and a re-run makes no
requests (--retry-unparseable asks the unparseable ones again).

Human backend:  --backend human push  creates/extends the blind A/B dataset in Argilla;
                --backend human pull  writes the un-blinded votes as judgments.
Argilla is found through --workspace (the curation workspace's credentials) or
ARGILLA_API_URL / ARGILLA_API_KEY.

Exit codes: 0 done (also when --max-cost stopped the run: what was judged is written),
1 failed: too many unparseable verdicts, or fewer than --min-verdicts of the pairs asked got a verdict
(the judgments are still written), 2 bad setup (key, model, files).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{generate,judge,report,pairs,run,study}")

    p = sub.add_parser("generate", help="answers from a model, an OpenAI-compatible endpoint or an outputs file "
                                        "to generations.jsonl")
    add_arguments(p, GenerateConfig)

    p = sub.add_parser("judge", help="judge A against B pairwise (LLM in both orders, or humans via Argilla), "
                                     "or grade A's answers alone (mtbench-single)",
                       epilog=JUDGE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", nargs="?", choices=["push", "pull"],
                   help="human backend only: push the blind A/B dataset, or pull the votes")
    add_arguments(p, JudgeArgs)

    p = sub.add_parser("report", help="judgments to report.html + report.md")
    add_arguments(p, ReportArgs)

    p = sub.add_parser("pairs", help="judgments, human votes and curator edits to preference pairs (for DPO)")
    add_arguments(p, PairsArgs)

    p = sub.add_parser("run", help="generate, judge and report in one command from a YAML file")
    p.add_argument("--config", required=True, help="the run's YAML file (see eval/README.md and eval/runs/)")
    p.add_argument("--dry-run", action="store_true", help="validate the file and print the steps, run nothing")

    p = sub.add_parser("study", help="the LIMA experiment: select and export each strategy's set from a curation "
                                     "workspace, fine-tune each, then generate, judge and report (one leaderboard)")
    p.add_argument("--config", required=True, help="the study's YAML file (see eval/README.md and eval/studies/)")
    p.add_argument("--dry-run", action="store_true", help="validate the file and print the steps, run nothing")
    return parser


COMMAND_CONFIG = {"generate": GenerateConfig, "judge": JudgeArgs, "report": ReportArgs, "pairs": PairsArgs}


def main(argv: list[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        known = [leaf.key for leaf in cc.leaves(COMMAND_CONFIG[args.command])] if args.command in COMMAND_CONFIG \
            else ["config", "dry_run"]
        print("error: " + "; ".join(cc.unknown_flags(unknown, known)), file=sys.stderr)
        return 2
    try:
        if args.command == "generate":
            from judging import FatalBackendError

            from . import generate

            try:
                generate.main(from_namespace(GenerateConfig, args))
            except generate.GenerationIncomplete as err:
                print(f"failed: {err}", file=sys.stderr)
                return 1
            except FatalBackendError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            return 0
        if args.command == "judge":
            from .judge import main as judge

            return judge(from_namespace(JudgeArgs, args), args.action)
        if args.command == "report":
            from . import report

            report.main(from_namespace(ReportArgs, args))
            return 0
        if args.command == "pairs":
            from . import pairs

            return pairs.main(from_namespace(PairsArgs, args))
        if args.command == "run":
            from . import run

            return run.main(args.config, dry_run=args.dry_run)
        if args.command == "study":
            from . import study

            return study.main(args.config, dry_run=args.dry_run)
    except (ValueError, FileNotFoundError, ConnectionError, PermissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 2
