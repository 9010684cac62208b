"""Beyond one machine: the per-record signals and MinHash over Parquet shards, mapped by Dask.

On one machine ``score`` reads ``candidates.parquet`` whole. When a pool outgrows one machine, the records
are cut into Parquet shards and the per-record work, the part that grows with the pool (heuristics, token
counts, language, exact-duplicate keys, MinHash signatures), is mapped over the shards by a Dask cluster:
local worker processes, or any cluster reachable at a scheduler address. What needs every record at once,
the LSH banding of the signatures into near-duplicate pairs and the duplicate groups, runs after the map on
one machine: it holds 512 bytes of signature per record (128 permutations × 4 bytes), 5 GB for ten million.

    python -m curation shards --workspace W --workers 2                 # local worker processes
    python -m curation shards --workspace W --scheduler tcp://host:8786 # an existing Dask cluster

writes ``<workspace>/shards/candidates-NNNNN.parquet`` (``shards.rows`` records each) and
``<workspace>/shards/signals-NNNNN.parquet`` (the same rows: id, the heuristic columns, token counts,
language, exact-duplicate keys and the MinHash signature), then ``shards.json`` with the near-duplicate pairs
found over all shards and the seconds per phase. Each shard is computed by the same functions ``score`` uses
(:func:`signals_of`), so its rows equal those of a one-machine run (tested).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curation import dedup, signals


def signals_of(prompts: list[str], responses: list[str], *, tokenizer: str = "minilm", num_perm: int = 128,
               shingle_size: int = 3) -> dict[str, list]:
    """The per-record columns of ``score`` for one batch of records (no cross-record state)."""
    counter = signals.TokenCounter(tokenizer)
    cols: dict[str, list] = dict(signals.heuristics(prompts, responses))
    cols["prompt_tokens"] = counter.count(prompts)
    cols["response_tokens"] = counter.count(responses)
    cols["language"] = signals.languages(prompts, responses)
    norm_p = [dedup.normalize_key(p) for p in prompts]
    norm_r = [dedup.normalize_key(r) for r in responses]
    cols["key_exact"] = [dedup.digest(a + b" " + b) for a, b in zip(norm_p, norm_r)]
    cols["key_prompt"] = [dedup.digest(a) for a in norm_p]
    cols["key_response"] = [dedup.digest(b) if w >= 8 else None for b, w in zip(norm_r, cols["n_words"])]
    full = [f"{p}\n{r}" for p, r in zip(prompts, responses)]
    cols["minhash"] = list(dedup.MinHasher(num_perm, shingle_size).signatures(full))
    return cols


def score_shard(src: str, dst: str, tokenizer: str, num_perm: int, shingle_size: int) -> dict:
    """Read one candidates shard, write its signals shard; runs on a Dask worker."""
    from contract.io import atomic_path

    t = time.perf_counter()
    table = pq.read_table(src, columns=["id", "prompt", "response"])
    cols = signals_of(table.column("prompt").to_pylist(), table.column("response").to_pylist(),
                      tokenizer=tokenizer, num_perm=num_perm, shingle_size=shingle_size)
    out = {"id": table.column("id"), **{k: v for k, v in cols.items() if k != "minhash"}}
    out["minhash"] = pa.FixedSizeListArray.from_arrays(
        pa.array(np.asarray(cols["minhash"], dtype=np.uint32).reshape(-1)), num_perm)
    with atomic_path(dst) as tmp:
        pq.write_table(pa.table(out), tmp, compression="zstd")
    return {"shard": Path(src).name, "rows": table.num_rows, "seconds": round(time.perf_counter() - t, 3)}


def split(candidates: Path, folder: Path, rows: int) -> list[Path]:
    """Cut candidates.parquet into shards of ``rows`` records (the pool order kept across shard numbers)."""
    from contract.io import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*-*.parquet"):
        old.unlink()
    f = pq.ParquetFile(candidates)
    out = []
    for k, batch in enumerate(f.iter_batches(batch_size=rows)):
        path = folder / f"candidates-{k:05d}.parquet"
        with atomic_path(path) as tmp:
            pq.write_table(pa.Table.from_batches([batch]), tmp, compression="zstd")
        out.append(path)
    return out


def run(ws, score_cfg, *, workers: int = 2, scheduler: str = "", rows: int = 50_000, progress: bool = True) -> dict:
    """Split, map :func:`score_shard` over the shards with Dask, then find near duplicates over all of them."""
    from dask.distributed import Client, LocalCluster, as_completed
    from tqdm.auto import tqdm

    from contract.io import write_json
    from curation.workspace import now

    ws.check_fresh([ws.name(ws.candidates)], "shards")
    folder = ws.root / "shards"
    clock = {}
    t = time.perf_counter()
    shards = split(ws.candidates, folder, rows)
    clock["split"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        import logging

        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
    clock["start_cluster"] = round(time.perf_counter() - t, 3)
    try:
        t = time.perf_counter()
        futures = [client.submit(score_shard, str(s), str(s.with_name(s.name.replace("candidates", "signals"))),
                                 score_cfg.tokenizer, score_cfg.num_perm, score_cfg.shingle_size, pure=False)
                   for s in shards]
        done = [f.result() for f in tqdm(as_completed(futures), total=len(futures), desc="shards: signals",
                                         unit="shard", disable=not progress)]
        clock["map"] = round(time.perf_counter() - t, 3)
        n_workers = len(client.scheduler_info()["workers"])
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    t = time.perf_counter()
    sig = np.concatenate([np.asarray(pq.read_table(s.with_name(s.name.replace("candidates", "signals")),
                                                   columns=["minhash"]).column("minhash").combine_chunks().flatten()
                                     ).reshape(-1, score_cfg.num_perm) for s in shards])
    texts = []
    for s in shards:
        tab = pq.read_table(s, columns=["prompt", "response"])
        texts += [f"{p}\n{r}" for p, r in zip(tab.column("prompt").to_pylist(), tab.column("response").to_pylist())]
    i, j = dedup.near_duplicate_pairs(sig, score_cfg.near_dup_threshold, texts, score_cfg.shingle_size)
    clock["near_duplicates"] = round(time.perf_counter() - t, 3)
    report = {"step": "shards", "finished_at": now(), "folder": str(folder), "workers": n_workers,
              "scheduler": scheduler or "local",
              "shards": len(shards), "rows_per_shard": rows, "records": int(len(sig)), "near_pairs": int(len(i)),
              "per_shard": sorted(done, key=lambda d: d["shard"]), "seconds": clock}
    write_json(ws.report_path("shards"), report)
    return report


def summary(report: dict) -> str:
    c = report["seconds"]
    return (f"shards: {report['records']} records in {report['shards']} shards on {report['workers']} Dask workers "
            f"({report['scheduler']}): signals and MinHash {c['map']:.1f} s, near duplicates {c['near_duplicates']:.1f} "
            f"s ({report['near_pairs']} near-duplicate pairs); signals-*.parquet in {report['folder']}")
