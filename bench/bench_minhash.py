"""MinHash signatures: curation.dedup.MinHasher (numpy, vectorized over a batch) against datasketch.

    .venv/bin/python bench/bench_minhash.py              # 5,000 synthetic candidates, 128 permutations

Both arms hash the same texts (prompt + response of bench_curation.py's synthetic pool) into 128-permutation
signatures over word 3-shingles, in the same process: ours with ``MinHasher.signatures`` on the whole batch,
datasketch with ``MinHash.bulk`` (its batch API) over the same shingles (``dedup.shingles``). The quality check:
the Jaccard estimate of each planted near-duplicate pair from either signature against the exact Jaccard
similarity of its shingle sets (mean absolute error). Writes bench/results/minhash.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5_000)
    p.add_argument("--num-perm", type=int, default=128)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "minhash.json"))
    args = p.parse_args(argv)
    from datasketch import MinHash

    from bench_curation import make_pool
    from curation import dedup

    path = Path(tempfile.mkdtemp(prefix="bench-minhash-")) / "pool.jsonl"
    make_pool(path, args.n)
    recs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    texts = [f"{r['prompt']}\n{r['response']}" for r in recs]
    loads = [os.getloadavg()[0]]

    t = time.perf_counter()
    ours = dedup.MinHasher(args.num_perm, 3).signatures(texts)
    ours_s = time.perf_counter() - t
    loads.append(os.getloadavg()[0])
    t = time.perf_counter()
    shingle_sets = [[" ".join(s).encode("utf-8") for s in dedup.shingles(x, 3)] for x in texts]
    theirs = MinHash.bulk(shingle_sets, num_perm=args.num_perm)
    theirs_s = time.perf_counter() - t
    loads.append(os.getloadavg()[0])

    row = {r["meta"]["n"]: k for k, r in enumerate(recs)}
    pairs = [(k, row[r["meta"]["of"]]) for k, r in enumerate(recs) if r["source"] == "near"]
    err_ours, err_theirs = [], []
    for a, b in pairs:
        exact = dedup.jaccard(dedup.shingles(texts[a], 3), dedup.shingles(texts[b], 3))
        err_ours.append(abs(float((ours[a] == ours[b]).mean()) - exact))
        err_theirs.append(abs(theirs[a].jaccard(theirs[b]) - exact))
    result = {
        "benchmark": "minhash", "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python bench/bench_minhash.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "load_average_during": [round(min(loads), 2), round(max(loads), 2)],
        "texts": len(texts), "num_perm": args.num_perm,
        "ours": {"seconds": round(ours_s, 3), "texts_per_s": round(len(texts) / ours_s, 1),
                 "near_pair_jaccard_mae": round(float(np.mean(err_ours)), 4)},
        "datasketch_bulk": {"seconds": round(theirs_s, 3), "texts_per_s": round(len(texts) / theirs_s, 1),
                            "near_pair_jaccard_mae": round(float(np.mean(err_theirs)), 4)},
        "speedup_ours_vs_datasketch": round(theirs_s / ours_s, 2), "near_pairs": len(pairs),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
