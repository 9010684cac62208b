"""Curation throughput at 10,000 and 100,000 candidates; writes bench/results/curation.json.

    .venv/bin/python bench/bench_curation.py                 # both sizes (about 4 minutes on 2 cores)
    .venv/bin/python bench/bench_curation.py --sizes 10000   # one size

What is timed (the pipeline's own functions, the default config):

- ingest: the JSONL pool → candidates.parquet (the schema's readers, normalization, hashing);
- score without embeddings: heuristics, token counts (MiniLM WordPiece), language, exact and near
  duplicates (MinHash/LSH), quality, eligibility — "heuristics + near duplicates";
- embedding throughput: all-MiniLM-L6-v2 on a sample of candidates (texts/s), on this machine's device;
- select: 1,000 from n embedded candidates (greedy with a similarity ceiling, k-center, and the random
  and longest baselines), the whole step (reading, hashing the inputs, writing), best of three. The
  embeddings for this step are synthetic (unit vectors around 500 cluster centres, 384 dimensions,
  seeded): embedding 100,000 texts on 2 shared CPU cores takes hours (see the measured throughput), and
  the selection's cost depends only on the vectors' shape and geometry.

The pool is synthetic too, seeded: prompts and answers assembled from sentences of Python's own
documentation (pydoc_data), with lists and code blocks, 2% near duplicates, 1% exact duplicates and
1% refusals planted. Cost growth is reported as time(100k)/time(10k) beside the n log n ratio (12.5).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGETS = {"ingest_heuristics_neardup_100k_s": 120.0, "select_1000_from_100k_s": 30.0}


def sentence_bank() -> list[str]:
    from pydoc_data.topics import topics

    out = []
    for text in topics.values():
        for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())):
            if 40 <= len(s) <= 240 and s[0].isupper() and "::=" not in s:
                out.append(s)
    return sorted(set(out))


def make_pool(path: Path, n: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    bank = sentence_bank()
    openers = ["How do I", "Can you explain", "What is the best way to", "Why does Python", "Show me how to"]
    records = []
    planted = {"near": 0, "exact": 0, "refusal": 0}
    for i in range(n):
        roll = rng.random()
        if records and roll < 0.02:
            src = rng.choice(records)
            words = src["response"].split(" ")
            for _ in range(3):
                words[rng.randrange(len(words))] = rng.choice(["very", "quite", "often", "simply"])
            rec = {"prompt": src["prompt"] + " Please explain.", "response": " ".join(words), "source": "near",
                   "of": src["n"]}
            planted["near"] += 1
        elif records and roll < 0.03:
            src = rng.choice(records)
            rec = {"prompt": src["prompt"].upper(), "response": src["response"].lower(), "source": "exact",
                   "of": src["n"]}
            planted["exact"] += 1
        elif roll < 0.04:
            rec = {"prompt": f"{rng.choice(openers)} {rng.choice(bank)[:-1].lower()}?",
                   "response": "I'm sorry, but I can't help with that request.", "source": "refusal"}
            planted["refusal"] += 1
        else:
            paras = []
            for _ in range(rng.randint(2, 6)):
                kind = rng.random()
                if kind < 0.2:
                    paras.append("\n".join(f"- {rng.choice(bank)}" for _ in range(rng.randint(2, 5))))
                elif kind < 0.3:
                    paras.append("```python\nresult = compute(" + ", ".join(rng.sample("abcdefgh", 3)) + ")\n```")
                else:
                    paras.append(" ".join(rng.choice(bank) for _ in range(rng.randint(2, 5))))
            rec = {"prompt": f"{rng.choice(openers)} {rng.choice(bank)[:-1].lower()}? Context: {rng.choice(bank)}",
                   "response": "\n\n".join(paras), "source": f"pool-{i % 4}"}
        rec["n"] = i
        records.append(rec)
    with open(path, "w", encoding="utf-8") as fh:
        for i, rec in enumerate(records):
            meta = {"n": i, **({"of": rec["of"]} if "of" in rec else {})}
            fh.write(json.dumps({"prompt": rec["prompt"], "response": rec["response"], "source": rec["source"],
                                 "meta": meta}, ensure_ascii=False) + "\n")
    chars = sum(len(r["response"]) for r in records) / n
    return {"planted": planted, "mean_response_chars": round(chars, 1), "bytes": path.stat().st_size}


def synthetic_embeddings(n: int, dim: int = 384, centres: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, dim)).astype(np.float32)
    v = c[rng.integers(0, centres, n)] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def planted_recall(ws) -> dict:
    """How many planted near and exact duplicates ended in the same duplicate group as their source."""
    import pyarrow.parquet as pq

    cand = pq.read_table(ws.candidates, columns=["source", "meta"]).to_pylist()
    group = pq.read_table(ws.signals, columns=["dup_group"]).column("dup_group").to_pylist()
    row_of = {}
    metas = [json.loads(c["meta"]) for c in cand]
    for k, m in enumerate(metas):
        row_of[m["n"]] = k
    out = {}
    for kind in ("near", "exact"):
        pairs = [(k, row_of.get(m["of"])) for k, (c, m) in enumerate(zip(cand, metas)) if c["source"] == kind]
        found = sum(1 for a, b in pairs if b is not None and group[a] >= 0 and group[a] == group[b])
        out[kind] = {"planted": len(pairs), "found": found, "recall": round(found / max(len(pairs), 1), 4)}
    return out


def bench_size(n: int, root: Path, embed_sample: int) -> dict:
    from curation import export, ingest, score, select
    from curation.config import CurationConfig
    from curation.embed import embed_texts, load_model
    from curation.workspace import Workspace, save_npy

    ws_dir = root / f"ws-{n}"
    pool = root / f"pool-{n}.jsonl"
    t = time.perf_counter()
    info = make_pool(pool, n)
    gen_s = time.perf_counter() - t

    cfg = CurationConfig()
    cfg.workspace = str(ws_dir)
    cfg.ingest.pools = [str(pool)]
    cfg.score.embed = False
    cfg.export.output_dir = str(root / "data")
    cfg.validate()
    ws = Workspace(ws_dir)
    res: dict = {"n": n, "pool": info, "generate_s": round(gen_s, 2)}

    t = time.perf_counter()
    rep = ingest.run(cfg, ws, force=True)
    res["ingest_s"] = round(time.perf_counter() - t, 2)
    res["candidates"] = rep["candidates"]

    t = time.perf_counter()
    rep = score.run(cfg, ws, force=True)
    res["heuristics_neardup_s"] = round(time.perf_counter() - t, 2)
    res["duplicates"] = rep["duplicates"]
    res["eligible"] = rep["eligible"]
    res["ingest_heuristics_neardup_s"] = round(res["ingest_s"] + res["heuristics_neardup_s"], 2)
    res["planted_duplicates_found"] = planted_recall(ws)
    res["candidates_per_s"] = round(n / res["ingest_heuristics_neardup_s"], 1)

    # embedding throughput on a sample (real model, real texts)
    import pyarrow.parquet as pq

    cand = pq.read_table(ws.candidates, columns=["prompt", "response"]).slice(0, embed_sample).to_pylist()
    texts = [f"{c['prompt']}\n\n{c['response']}" for c in cand]
    load_model(cfg.score.embedding_model)
    embed_texts(texts[:32], model_name=cfg.score.embedding_model)  # warm-up
    t = time.perf_counter()
    embed_texts(texts, model_name=cfg.score.embedding_model, batch_size=cfg.score.embedding_batch_size)
    emb_s = time.perf_counter() - t
    res["embedding"] = {"sample": len(texts), "seconds": round(emb_s, 2), "texts_per_s": round(len(texts) / emb_s, 1),
                        "estimated_s_for_n": round(n / (len(texts) / emb_s), 1)}

    # selection from n embedded candidates
    save_npy(ws.embeddings, synthetic_embeddings(res["candidates"]))
    sel = {}
    for strategy, diversity in (("signals", "greedy"), ("signals", "kcenter"), ("random", "none"),
                                ("longest", "none")):
        cfg.select.budget = 1000
        cfg.select.diversity = diversity
        cfg.select.strategies = [strategy]
        times = []
        for _ in range(3):  # the best of three: sub-second timings on a shared machine are noisy
            t = time.perf_counter()
            rep = select.run(cfg, ws, strategies=[strategy], force=True)
            times.append(time.perf_counter() - t)
        sel[f"{strategy}-{diversity}"] = {"seconds": round(min(times), 2),
                                          "selected": rep["strategies"][strategy]["selected"]}
    res["select_1000"] = sel
    cfg.select.diversity = "greedy"
    select.run(cfg, ws, strategies=["signals"], force=True)
    t = time.perf_counter()
    cfg.export.strategy = "signals"
    export.run(cfg, ws, force=True)
    res["export_s"] = round(time.perf_counter() - t, 2)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--embed-sample", type=int, default=512, help="texts embedded to measure throughput")
    p.add_argument("--root", default=None, help="scratch folder (default: a temporary one)")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "curation.json"))
    args = p.parse_args(argv)
    import tempfile

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    root = Path(args.root or tempfile.mkdtemp(prefix="bench-curation-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results = []
    for n in args.sizes:
        print(f"== {n:,} candidates", flush=True)
        r = bench_size(n, root, args.embed_sample)
        print(json.dumps(r, indent=1), flush=True)
        results.append(r)
    by_n = {r["n"]: r for r in results}
    out: dict = {
        "benchmark": "curation", "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python bench/bench_curation.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "notes": ["embeddings for the select step are synthetic (see the module docstring); embedding throughput "
                  "is measured on a sample with the real model",
                  "the pool is synthetic, from pydoc_data sentences, seeded"],
        "sizes": results, "targets": {}, "scaling": {},
        "wall_s": round(time.time() - started, 1),
    }
    if 100_000 in by_n:
        big = by_n[100_000]
        out["targets"]["ingest_heuristics_neardup_100k_s"] = {
            "target": TARGETS["ingest_heuristics_neardup_100k_s"], "measured": big["ingest_heuristics_neardup_s"],
            "met": big["ingest_heuristics_neardup_s"] <= TARGETS["ingest_heuristics_neardup_100k_s"]}
        worst = max(v["seconds"] for v in big["select_1000"].values())
        out["targets"]["select_1000_from_100k_s"] = {
            "target": TARGETS["select_1000_from_100k_s"], "measured": worst,
            "met": worst <= TARGETS["select_1000_from_100k_s"], "note": "the slowest strategy"}
    if 10_000 in by_n and 100_000 in by_n:
        small, big = by_n[10_000], by_n[100_000]
        nlogn = (1e5 * math.log(1e5)) / (1e4 * math.log(1e4))
        scaling = {"n_ratio": 10.0, "n_log_n_ratio": round(nlogn, 2)}
        for key in ("ingest_s", "heuristics_neardup_s", "ingest_heuristics_neardup_s"):
            scaling[key] = {"10k": small[key], "100k": big[key], "ratio": round(big[key] / max(small[key], 1e-9), 2)}
        for key in big["select_1000"]:
            a, b = small["select_1000"][key]["seconds"], big["select_1000"][key]["seconds"]
            scaling[f"select_1000 {key}"] = {"10k": a, "100k": b, "ratio": round(b / max(a, 1e-9), 2)}
        scaling["within_n_log_n"] = all(v["ratio"] <= nlogn for k, v in scaling.items() if isinstance(v, dict))
        out["scaling"] = scaling
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"targets": out["targets"], "scaling": out["scaling"]}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
