"""ingest: candidate pools → ``<workspace>/candidates.parquet`` (+ ``rejects.jsonl``, ``ingest.json``).

Each pool is read with the foundation's readers (:mod:`curation.schema`);
invalid records are kept aside with their place and reason, and the same
example in two pools is one candidate (the first pool wins).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from curation.config import CurationConfig
from contract.io import sha256_file
from contract.readers import ReadResult, read_examples, write_rejects
from contract.schema import FILE_SUFFIXES, DataError
from curation.workspace import Workspace, fingerprint, now, write_parquet

CANDIDATE_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("source", pa.string()),
    ("pool", pa.string()),
    ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ("prompt", pa.string()),      # the user turns, joined by blank lines
    ("response", pa.string()),    # the final assistant answer
    ("n_turns", pa.int32()),
    ("meta", pa.string()),        # JSON object
])


def normalize_pools(pools: list) -> list[dict]:
    out = []
    for pool in pools:
        if isinstance(pool, str):
            pool = {"path": pool}
        out.append({"path": str(pool["path"]), "source": pool.get("source"), "format": pool.get("format"),
                    "mapping": pool.get("mapping")})
    return out


def pool_hash(path: str) -> str | None:
    """sha256 of a pool file, or of a folder's files; None for a Hub id (not verifiable offline)."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(str(f.relative_to(p)).encode() + b"\0" + sha256_file(f).encode())
        return h.hexdigest()
    return None


def prompt_and_response(messages: list[dict]) -> tuple[str, str]:
    prompt = "\n\n".join(t["content"] for t in messages if t["role"] == "user")
    return prompt, messages[-1]["content"]


def run(cfg: CurationConfig, ws: Workspace, *, force: bool = False) -> dict:
    pools = normalize_pools(cfg.ingest.pools)
    if not pools:
        raise ValueError("no candidate pools: set ingest.pools in the recipe or pass --pool PATH")
    for pool in pools:
        path = pool["path"]
        looks_local = Path(path).suffix.lower() in FILE_SUFFIXES or path.count("/") != 1 or path.startswith(".")
        if not path.startswith("hf:") and not Path(path).exists() and looks_local:
            raise FileNotFoundError(f"candidate pool not found: {path}")
    hashes = {p["path"]: pool_hash(p["path"]) for p in tqdm(pools, desc="ingest: hashing pools", unit="pool")}
    fp = fingerprint("ingest", cfg.section_dict("ingest"), hashes)
    done = ws.up_to_date("ingest", fp, [ws.candidates])
    if done and not force:
        done["skipped"] = True
        return done

    result = ReadResult()
    seen: set[str] = set()
    per_pool = []
    for pool in tqdm(pools, desc="ingest: reading", unit="pool"):
        n_ex, n_rej, n_dup = len(result.examples), len(result.rejects), result.duplicates
        read_examples(pool["path"], fmt=pool["format"] or cfg.ingest.format, mapping=pool["mapping"],
                      source_name=pool["source"], on_error="skip", result=result, seen=seen)
        for ex in result.examples[n_ex:]:
            ex["_pool"] = pool["path"]
        added, rejected, dups = len(result.examples) - n_ex, len(result.rejects) - n_rej, result.duplicates - n_dup
        total = added + rejected + dups
        if total and rejected / total > cfg.ingest.max_reject_fraction:
            first = result.rejects[n_rej]
            raise DataError(f"{rejected} of {total} records are invalid (more than ingest.max_reject_fraction="
                            f"{cfg.ingest.max_reject_fraction}); first: {first.path}:{first.line or first.record}: "
                            f"{first.error}", path=pool["path"])
        per_pool.append({"path": pool["path"], "sha256": hashes[pool["path"]], "examples": added,
                         "rejects": rejected, "duplicates": dups})
    if not result.examples:
        raise DataError("no valid candidates in any pool", path=", ".join(p["path"] for p in pools))

    columns: dict[str, list] = {name: [] for name in CANDIDATE_SCHEMA.names}
    for ex in tqdm(result.examples, desc="ingest: building table", unit="ex", mininterval=1):
        prompt, response = prompt_and_response(ex["messages"])
        columns["id"].append(ex["id"])
        columns["source"].append(ex["source"])
        columns["pool"].append(ex.pop("_pool"))
        columns["messages"].append(ex["messages"])
        columns["prompt"].append(prompt)
        columns["response"].append(response)
        columns["n_turns"].append(len(ex["messages"]))
        columns["meta"].append(json.dumps(ex["meta"], ensure_ascii=False, sort_keys=True))
    table = pa.table(columns, schema=CANDIDATE_SCHEMA)
    write_parquet(ws.candidates, table)
    write_rejects(ws.rejects, result.rejects)
    report = {
        "step": "ingest", "fingerprint": fp, "finished_at": now(),
        "candidates": len(result.examples), "rejects": len(result.rejects), "duplicates": result.duplicates,
        "counts_by_source": result.counts_by_source(), "pools": per_pool,
        "rejects_file": str(ws.rejects),
    }
    ws.write_report("ingest", report)
    return report


def load_candidates(ws: Workspace, columns: list[str] | None = None) -> pa.Table:
    ws.require(ws.candidates, "ingest")
    return pq.read_table(ws.candidates, columns=columns)


def summary(report: dict) -> str:
    lines = [f"ingest: {report['candidates']} candidates, {report['rejects']} rejects, "
             f"{report['duplicates']} duplicate records" + (" (up to date)" if report.get("skipped") else "")]
    for src, n in report["counts_by_source"].items():
        lines.append(f"  {src:<24} {n:>8}")
    for pool in report["pools"]:
        lines.append(f"  pool {pool['path']}: {pool['examples']} read, {pool['rejects']} rejected, "
                     f"{pool['duplicates']} duplicates")
    if report["rejects"]:
        lines.append(f"  rejects with file:line and reason: {report['rejects_file']}")
    return "\n".join(lines)
