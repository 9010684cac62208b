#!/usr/bin/env python
"""Run every benchmark in bench/ one after another (`make bench`).

    .venv/bin/python bench/run_all.py [--only server,curation,embed,shards,minhash,finetune,dpo,eval,generate,adapter] [--quick]

Each benchmark measures its baseline in the same run and writes its figures to
bench/results/<name>.json; bench/README.md says what each one measures and the
figures last measured. Benchmarks are not tests: nothing here fails on a slow
machine, they report ratios.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
QUICK_ARGS = {
    "server": ["--quick"],
    "curation": ["--sizes", "10000"],
    "finetune": ["--quick"],
    "eval": ["--pairs", "40"],
    "generate": ["--shape", "smollm2-135m", "--prompts", "32", "--max-new-tokens", "64"],
    "embed": ["--repeat", "1"],
    "shards": ["--n", "4000", "--rows", "1000"],
    "minhash": ["--n", "1000"],
    "dpo": ["--pairs", "16", "--steps", "4"],
    "adapter": ["--tokens", "16", "--rounds", "1"],
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="server,curation,embed,shards,minhash,finetune,dpo,eval,generate,adapter",
                        help="comma-separated benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    failed = []
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        script = BENCH / f"bench_{name}.py"
        if not script.exists():
            print(f"no benchmark {name!r} ({script} missing)", file=sys.stderr)
            failed.append(name)
            continue
        cmd = [sys.executable, str(script), *(QUICK_ARGS.get(name, []) if args.quick else [])]
        print(f"\n== bench {name}: {' '.join(cmd)}", flush=True)
        started = time.monotonic()
        rc = subprocess.run(cmd, cwd=BENCH.parent).returncode
        print(f"== bench {name}: exit {rc} after {time.monotonic() - started:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
