"""Per-record signals and MinHash over Parquet shards with Dask: 1 against 2 local worker processes.

    .venv/bin/python bench/bench_shards.py                    # 20,000 synthetic candidates, 8 shards
    .venv/bin/python bench/bench_shards.py --n 100000 --rows 12500

The pool is bench_curation.py's (Python documentation sentences, planted duplicates). Arms, in one run on the
same shards: the same per-record functions in this process without Dask (the baseline), then
``python -m curation shards`` with 1 and with 2 local Dask workers (``curation.shards.run``). The map phase is
what scales with workers; the cluster start and the near-duplicate reduce on one machine are reported apart.
Writes bench/results/shards.json with the load average (the machine is shared: compare ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--rows", type=int, default=2_500, help="records per shard")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "shards.json"))
    args = p.parse_args(argv)
    import pyarrow.parquet as pq

    from bench_curation import make_pool
    from curation import ingest, shards
    from curation.config import CurationConfig
    from curation.workspace import Workspace

    root = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    pool = root / "pool.jsonl"
    make_pool(pool, args.n)
    cfg = CurationConfig()
    cfg.workspace = str(root / "ws")
    cfg.ingest.pools = [str(pool)]
    ws = Workspace(cfg.workspace)
    ingest.run(cfg, ws, force=True)
    loads = [os.getloadavg()[0]]

    t = time.perf_counter()
    table = pq.read_table(ws.candidates, columns=["prompt", "response"])
    shards.signals_of(table.column("prompt").to_pylist(), table.column("response").to_pylist())
    baseline = time.perf_counter() - t
    loads.append(os.getloadavg()[0])
    arms = {}
    for workers in (1, 2):
        rep = shards.run(ws, cfg.score, workers=workers, rows=args.rows, progress=False)
        arms[f"{workers}_worker{'s' if workers > 1 else ''}"] = {"workers": rep["workers"], "shards": rep["shards"],
                                                                 "seconds": rep["seconds"]}
        loads.append(os.getloadavg()[0])
    one, two = arms["1_worker"]["seconds"]["map"], arms["2_workers"]["seconds"]["map"]
    result = {
        "benchmark": "shards", "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python bench/bench_shards.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_during": [round(min(loads), 2), round(max(loads), 2)]},
        "candidates": rep["records"], "rows_per_shard": args.rows,
        "in_process_without_dask_s": round(baseline, 2), "arms": arms,
        "map_speedup_2_vs_1_worker": round(one / two, 2),
        "map_2_workers_vs_in_process": round(baseline / two, 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
