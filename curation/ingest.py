"""ingest: candidate pools → ``<workspace>/candidates.parquet`` (+ ``rejects.jsonl``, ``ingest.json``).

Each pool is read with the shared readers (:mod:`contract.readers`); a folder stands for its data
files (every other entry is listed as skipped, with the reason);
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


def normalize_pools(pools: list, default_mapping: dict | None = None) -> list[dict]:
    out = []
    for pool in pools:
        if isinstance(pool, str):
            pool = {"path": pool}
        out.append({"path": str(pool["path"]), "source": pool.get("source"), "format": pool.get("format"),
                    "mapping": pool.get("mapping") or default_mapping or None})
    return out


def looks_local(path: str) -> bool:
    """A path on this machine rather than a Hub id (``owner/name``)."""
    p = Path(path)
    return (p.exists() or p.suffix.lower() in FILE_SUFFIXES or path.count("/") != 1 or path.startswith((".", "/", "~"))
            ) and not path.startswith("hf:")


def _is_dataset_dir(p: Path) -> bool:
    return any((p / f).exists() for f in ("dataset_info.json", "dataset_dict.json", "state.json"))


def expand_pools(pools: list[dict], recursive: bool = False) -> tuple[list[dict], list[dict]]:
    """Folders become their data files (sorted; subfolders only with ``recursive``); returns the pools to read
    and every entry of a pool folder that was not read, with the reason."""
    out: list[dict] = []
    skipped: list[dict] = []
    for pool in pools:
        p = Path(pool["path"])
        if not (p.is_dir() and not _is_dataset_dir(p)):
            out.append(pool)
            continue
        found = []
        entries = sorted(p.rglob("*") if recursive else p.iterdir())
        for f in entries:
            parts = f.relative_to(p).parts
            if any(part.startswith(".") for part in parts):
                if len(parts) == 1:  # a hidden folder's own files are not listed one by one
                    skipped.append({"path": str(f), "reason": "hidden"})
                continue
            if recursive and any(_is_dataset_dir(p.joinpath(*parts[:k])) for k in range(1, len(parts))):
                continue  # inside a save_to_disk folder, which is read as one pool
            if f.is_dir():
                if recursive and _is_dataset_dir(f):
                    found.append(f)
                elif not recursive:
                    skipped.append({"path": str(f), "reason": "a folder (--recursive reads subfolders too)"})
                continue
            if f.suffix.lower() in FILE_SUFFIXES:
                found.append(f)
            else:
                skipped.append({"path": str(f), "reason": f"not a data file ({f.suffix or 'no suffix'}; read: "
                                                          f"{' '.join(sorted(FILE_SUFFIXES))})"})
        if not found:
            raise FileNotFoundError(f"pool folder {p} holds no {' '.join(sorted(FILE_SUFFIXES))} files"
                                    + ("" if recursive else " at its top level (--recursive reads subfolders)"))
        out += [{**pool, "path": str(f)} for f in found]
    return out, skipped


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
    given = normalize_pools(cfg.ingest.pools, cfg.ingest.mapping)
    if not given:
        raise ValueError(f"no candidate pools: give them as arguments (`python -m curation ingest PATH… --workspace "
                         f"{ws.root}`) or set ingest.pools in a recipe (--config)")
    for pool in given:
        path = pool["path"]
        if looks_local(path) and not Path(path).exists():
            raise FileNotFoundError(f"candidate pool not found: {path}"
                                    + ("" if Path(path).is_absolute() else f" (relative to {Path.cwd()})"))
    pools, skipped = expand_pools(given, cfg.ingest.recursive)
    hashes = {p["path"]: pool_hash(p["path"]) for p in tqdm(pools, desc="ingest: hashing pools", unit="pool")}
    fp = fingerprint("ingest", cfg.section_dict("ingest"), hashes, [p["path"] for p in pools])
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
            first = result.rejects[n_rej:n_rej + MAX_SHOWN]
            raise DataError(f"{rejected} of {total} records are invalid (more than ingest.max_reject_fraction="
                            f"{cfg.ingest.max_reject_fraction}; `--set ingest.max_reject_fraction=1` keeps the valid "
                            "ones); first:\n" + "\n".join(f"  {r.place}: {r.error}" for r in first),
                            path=pool["path"])
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
        "inputs": {f"pool:{p}": h for p, h in hashes.items() if h is not None},
        "outputs": ws.hashes([ws.candidates, ws.rejects]),
        "candidates": len(result.examples), "rejects": len(result.rejects), "duplicates": result.duplicates,
        "counts_by_source": result.counts_by_source(), "pools": per_pool, "skipped_files": skipped,
        "first_rejects": [f"{r.place}: {r.error}" for r in result.rejects[:MAX_SHOWN]],
        "rejects_file": str(ws.rejects),
    }
    ws.write_report("ingest", report)
    return report


#: Rejects and skipped files shown on the terminal (all of them are in rejects.jsonl / ingest.json).
MAX_SHOWN = 5


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
    skipped = report.get("skipped_files") or []
    for sk in skipped[:MAX_SHOWN]:
        lines.append(f"  skipped {sk['path']}: {sk['reason']}")
    if len(skipped) > MAX_SHOWN:
        lines.append(f"  … and {len(skipped) - MAX_SHOWN} more skipped files (ingest.json: skipped_files)")
    if report["rejects"]:
        lines.append(f"  {report['rejects']} rejected records" + (f", the first {MAX_SHOWN}:" if report["rejects"]
                                                                     > MAX_SHOWN else ":"))
        for r in report.get("first_rejects", []):
            lines.append(f"    {r}")
        lines.append(f"  all rejects with their place and reason: {report['rejects_file']}")
    return "\n".join(lines)
