"""Embedding throughput: the pipeline's embedder against plain ``SentenceTransformer.encode``, side by side.

    .venv/bin/python bench/bench_embed.py                  # the sample pool (312 texts), writes bench/results/embed.json
    .venv/bin/python bench/bench_embed.py --repeat 3       # best of three per arm

Arms, on the same texts (prompt + response of every example of data/sample-pool, the texts `score` embeds),
in the same process, alternating so that the machine's load hits them alike:

- ``sentence-transformers``: ``SentenceTransformer(all-MiniLM-L6-v2).encode(texts, batch_size=64,
  normalize_embeddings=True)``, the baseline (it sorts by length within the call too);
- ``onnx``: the same model exported to ONNX, run by ONNX Runtime in float32, texts sorted by length and batched
  by a token budget, on every core;
- ``onnx-int8``: the same with int8 weights (what ``score.embedding_runtime: auto`` picks on a CPU).

Each arm's vectors are compared with the baseline's: cosine per text (min, mean). The one-time ONNX build
(export, quantization, verification) is timed separately. Ratios are what to compare: the absolute texts/s
depend on the load of this shared machine (the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def sample_texts() -> list[str]:
    from contract.readers import read_pools
    from curation.ingest import expand_pools, normalize_pools, prompt_and_response
    from curation.score import embedding_text

    pools, _ = expand_pools(normalize_pools([str(REPO / "data" / "sample-pool")]))
    result = read_pools([p["path"] for p in pools], on_error="skip")
    return [embedding_text(*prompt_and_response(ex["messages"])) for ex in result.examples]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=2, help="runs per arm; the best is kept")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "embed.json"))
    args = p.parse_args(argv)
    from curation import embed

    texts = sample_texts()
    t = time.perf_counter()
    int8 = embed.encoder("all-MiniLM-L6-v2", "onnx-int8")
    build_s = time.perf_counter() - t
    arms = {"sentence-transformers": embed.load_model("all-MiniLM-L6-v2"),
            "onnx": embed.encoder("all-MiniLM-L6-v2", "onnx"), "onnx-int8": int8}
    for model in arms.values():  # warm-up
        embed._encode(model, texts[:16], 64)
    best: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    loads = []
    for _ in range(args.repeat):
        for name, model in arms.items():
            t = time.perf_counter()
            vectors[name] = embed._encode(model, texts, 64)
            best[name] = min(best.get(name, 1e9), time.perf_counter() - t)
            loads.append(os.getloadavg()[0])
    base = vectors["sentence-transformers"]
    result = {
        "benchmark": "embed", "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python bench/bench_embed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"cpus": os.cpu_count(), "usable_cpus": len(os.sched_getaffinity(0)),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_during": [round(min(loads), 2), round(max(loads), 2)]},
        "texts": len(texts), "mean_chars": round(float(np.mean([len(x) for x in texts])), 1),
        "onnx_build_or_load_s": round(build_s, 2), "int8_verification": int8.verification, "arms": {}}
    for name in arms:
        cos = (vectors[name] * base).sum(axis=1)
        result["arms"][name] = {"seconds": round(best[name], 2), "texts_per_s": round(len(texts) / best[name], 1),
                                "speedup_vs_sentence_transformers": round(best["sentence-transformers"] / best[name], 2),
                                "cosine_vs_sentence_transformers": {"min": round(float(cos.min()), 5),
                                                                    "mean": round(float(cos.mean()), 5)}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result["arms"], indent=1))
    print(f"load average {result['machine']['load_average_during']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
