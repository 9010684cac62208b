"""export: a selection → ``<output_dir>/<name>/`` with train.jsonl (+ dev.jsonl), manifest.json and README.md.

The folder is written beside its final place and swapped in whole, so a
reader never sees a train.jsonl that does not match its manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
from pathlib import Path

from curation.config import CurationConfig
from contract.io import sha256_file, write_json, write_jsonl, write_text
from curation.workspace import Workspace, fingerprint, now


def resolve_strategy(cfg: CurationConfig, ws: Workspace) -> str:
    st = cfg.export.strategy
    if st == "auto":
        st = "curated" if ws.decisions.exists() and ws.selection("curated").exists() else "signals"
    return st


def out_dir(cfg: CurationConfig) -> Path:
    return Path(cfg.export.output_dir) / cfg.name


def _split(examples: list[dict], dev_fraction: float) -> tuple[list[dict], list[dict]]:
    """A deterministic dev split: the examples whose id hashes lowest."""
    if dev_fraction <= 0 or len(examples) < 2:
        return examples, []
    n_dev = max(1, int(round(len(examples) * dev_fraction)))
    ranked = sorted(range(len(examples)), key=lambda i: hashlib.sha256(examples[i]["id"].encode()).hexdigest())
    dev_idx = set(ranked[:n_dev])
    return ([e for i, e in enumerate(examples) if i not in dev_idx], [e for i, e in enumerate(examples) if i in dev_idx])


def run(cfg: CurationConfig, ws: Workspace, *, force: bool = False) -> dict:
    strategy = resolve_strategy(cfg, ws)
    sel_path = ws.selection(strategy)
    if not sel_path.exists():
        raise FileNotFoundError(f"{sel_path} not found: run `python -m curation select --workspace {ws.root} "
                                f"--strategy {strategy}` first")
    # the selection, and everything it was made from back to the pools, must be current: the manifest's
    # provenance (pools, Argilla dataset, decisions) is read from the same chain
    ws.check_fresh([ws.name(sel_path)], "export")
    chain = _provenance(ws, strategy)
    target = out_dir(cfg)
    ingest = ws.read_report("ingest") or {}
    push = ws.read_report("push")
    pull = ws.read_report("pull")
    if strategy != "curated":
        push = pull = None  # the Argilla dataset and the curators' agreement did not shape this selection
    elif push and push.get("offline"):
        push = None
    fp = fingerprint("export", sha256_file(sel_path), cfg.section_dict("export"), cfg.name, strategy, chain,
                     (push or {}).get("dataset"))
    manifest_path = target / "manifest.json"
    if manifest_path.exists() and not force:
        try:
            old = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            old = {}
        if old.get("fingerprint") == fp and all((target / f).exists() for f in old.get("files", {})):
            old["skipped"] = True
            return old

    examples = [json.loads(line) for line in sel_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not examples:
        raise ValueError(f"{sel_path} is empty: nothing to export (see the select summary for why)")
    train, dev = _split(examples, cfg.export.dev_fraction)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        write_jsonl(staging / "train.jsonl", train)
        if dev:
            write_jsonl(staging / "dev.jsonl", dev)
        files = {name: {"sha256": sha256_file(staging / name), "examples": len(rows)}
                 for name, rows in (("train.jsonl", train), ("dev.jsonl", dev)) if rows}
        decided = {"human": 0, "ai": 0}
        edited = 0
        for e in examples:
            why = e["meta"].get("why", {})
            if why.get("decided_by") in decided:
                decided[why["decided_by"]] += 1
            edited += bool(why.get("edited"))
        lengths = [len(e["messages"][-1]["content"]) for e in examples]
        sel_report = (ws.read_report("select") or {}).get("strategies", {}).get(strategy, {})
        manifest = {
            "name": cfg.name,
            "created_at": now(),
            "fingerprint": fp,
            "strategy": strategy,
            "format": "messages JSONL: {id, messages, source, meta}; meta.why says why each example was kept",
            "counts": {"total": len(examples), "train": len(train), "dev": len(dev),
                       "by_source": _counts(e["source"] for e in examples),
                       "by_category": _counts(e["meta"].get("category") or "(none)" for e in examples)},
            "decisions": {**decided, "edited": edited,
                          "note": "human: decided by curators' submitted answers; ai: the AI suggestion decided "
                                  "where no curator answered (unattended mode)"} if strategy == "curated" else None,
            "response_chars": {"mean": round(statistics.fmean(lengths), 1), "median": statistics.median(lengths),
                               "min": min(lengths), "max": max(lengths)},
            "files": files,
            "source_pools": [{"path": p["path"], "sha256": p.get("sha256"), "examples": p.get("examples")}
                             for p in ingest.get("pools", [])],
            "inputs": chain,
            "argilla": ({"api_url": push.get("api_url"), "workspace": push.get("argilla_workspace"),
                         "dataset": push.get("dataset"), "dataset_id": push.get("dataset_id"),
                         "records": push.get("records")} if push else None),
            "agreement": (pull or {}).get("agreement"),
            "selection": {k: sel_report.get(k) for k in ("budget", "selected", "diversity", "skipped", "warnings",
                                                         "mean_quality", "profile")},
            "workspace": str(ws.root.resolve()),
            "config": cfg.to_dict(),
        }
        write_text(staging / "README.md", dataset_card(manifest, train, dev))
        write_json(staging / "manifest.json", manifest)
        _swap_in(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    if cfg.export.push_to_hub:
        push_to_hub(cfg.export.push_to_hub, target, train, dev)
        manifest["pushed_to_hub"] = cfg.export.push_to_hub
    manifest["output_dir"] = str(target)
    return manifest


def _provenance(ws: Workspace, strategy: str) -> dict:
    """sha256 of every artifact the selection was made from, back to the pools (checked fresh by the caller)."""
    out: dict[str, str] = {}
    todo = [ws.name(ws.selection(strategy))]
    while todo:
        name = todo.pop()
        rep = ws.step_report(name) or {}
        out[name] = rep.get("outputs", {}).get(name)
        for inp, sha in (rep.get("inputs") or {}).items():
            if inp not in out:
                out[inp] = sha
                if ":" not in inp:
                    todo.append(inp)
    return dict(sorted(out.items()))


def _swap_in(staging: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    if old.exists():
        shutil.rmtree(old)


def push_to_hub(repo_id: str, target: Path, train: list[dict], dev: list[dict]) -> None:
    from datasets import Dataset, DatasetDict

    def rows(exs):
        return [{"id": e["id"], "messages": e["messages"], "source": e["source"],
                 "meta": json.dumps(e["meta"], ensure_ascii=False)} for e in exs]

    dd = DatasetDict({"train": Dataset.from_list(rows(train)), **({"dev": Dataset.from_list(rows(dev))} if dev else {})})
    try:
        dd.push_to_hub(repo_id)
    except Exception as err:
        raise RuntimeError(f"export: push to the Hub ({repo_id}) failed: {err}; the local export in {target} is "
                           "complete") from None


def _counts(values) -> dict:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def dataset_card(m: dict, train: list[dict], dev: list[dict]) -> str:
    c = m["counts"]
    rows = "\n".join(f"| {k} | {v} |" for k, v in c["by_source"].items())
    cats = "\n".join(f"| {k} | {v} |" for k, v in c["by_category"].items())
    rc = m["response_chars"]
    n = max(c["total"], 1)
    size = "n<1K" if n < 1000 else "1K<n<10K" if n < 10000 else "10K<n<100K"
    dec = m.get("decisions")
    decided = (f"- Decisions: {dec['human']} by curators, {dec['ai']} by AI suggestions where no curator answered; "
               f"{dec['edited']} responses edited by curators.\n") if dec else ""
    argilla = m.get("argilla")
    arg = (f"- Argilla dataset: `{argilla['dataset']}` (workspace `{argilla['workspace']}`) at {argilla['api_url']}\n"
           if argilla else "")
    agree = m.get("agreement") or {}
    ag = ""
    if agree:
        ag = "\n## Curator agreement\n\n| question | Krippendorff's alpha | mean pairwise Cohen's kappa |\n|---|---|---|\n"
        for q, a in agree.items():
            alpha = a.get("alpha")
            kappa = a.get("mean_kappa")
            ag += f"| {q} | {'' if alpha is None else f'{alpha:.3f}'} | {'' if kappa is None else f'{kappa:.3f}'} |\n"
    pools = "\n".join(f"- `{p['path']}` (sha256 {str(p['sha256'])[:12]}…, {p['examples']} candidates)"
                      for p in m["source_pools"])
    return f"""---
task_categories:
- text-generation
language:
- en
size_categories:
- {size}
configs:
- config_name: default
  data_files:
  - split: train
    path: train.jsonl{chr(10) + '  - split: dev' + chr(10) + '    path: dev.jsonl' if dev else ''}
---

# {m['name']}

A LIMA-style curated instruction dataset made with curated-align's curation
pipeline (`python -m curation`), strategy **{m['strategy']}**: {c['total']} examples
({c['train']} train{f", {c['dev']} dev" if dev else ""}).

Each line of `train.jsonl` is `{{"id", "messages", "source", "meta"}}`; `meta.why`
records why the example was kept (signals, curator votes, edits).
`manifest.json` holds the sha256 of every file, the resolved config and the
hashes of the source pools.

## Statistics

- Response length (characters): mean {rc['mean']}, median {rc['median']}, min {rc['min']}, max {rc['max']}
{decided}{arg}
| source | examples |
|---|---|
{rows}

| category | examples |
|---|---|
{cats}
{ag}
## Provenance

Source pools:

{pools}

Created {m['created_at']}. Selection and quality score: see curation/README.md in curated-align.
"""

