"""``python -m eval judge``: judge A against B pairwise, with an LLM (both orders, through the judge engine
of :mod:`judging`) or with humans (a blind A/B dataset in Argilla, :mod:`eval.human`); write judgments.jsonl."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from .config import JudgeArgs


def main(cfg: JudgeArgs, action: str | None = None) -> int:
    from judging import FatalBackendError, JudgeRunError

    backend = {"local": "transformers"}.get(cfg.backend, cfg.backend)  # None: the judge folder's, else openai
    if backend == "human":
        return judge_human(cfg, action)
    if action:
        raise ValueError(f"'{action}' is for --backend human only")
    problems = [f"--{k} is required" for k in ("a", "b", "out") if not getattr(cfg, k)]
    if problems:
        raise ValueError("; ".join(problems))
    try:
        rows, code = judge_llm(cfg, backend)
    except FatalBackendError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except JudgeRunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return code


def _pairs_from_files(cfg: JudgeArgs):
    from .files import join_generations, load_generations

    a_rows, b_rows = load_generations(cfg.a), load_generations(cfg.b)
    joined = join_generations(a_rows, b_rows)
    if not joined.pairs:
        raise ValueError(f"no prompt in {cfg.a} matches one in {cfg.b} (by id or by prompt text)")
    if joined.only_a or joined.only_b:
        print(f"warning: {len(joined.only_a)} prompts only in --a, {len(joined.only_b)} only in --b; "
              f"judging the {len(joined.pairs)} in both", file=sys.stderr)
    pairs = joined.pairs[: cfg.limit] if cfg.limit else joined.pairs
    return pairs


def _side(row: dict) -> dict:
    return {k: row.get(k) for k in ("generator", "model", "adapter", "config")}


def judge_llm(cfg: JudgeArgs, backend_kind: str) -> tuple[list[dict], int]:
    from .files import write_jsonl
    from .generate import load_references
    from judging import (DEFAULT_CACHE_DIR, JudgeRunError, Pair, judge_pairs, load_judge, make_backend,
                         resolve_backend_config)

    judge_cfg = load_judge(cfg.judge)
    pairs_rows = _pairs_from_files(cfg)
    refs = load_references(cfg.references) if cfg.references else {}
    pairs = []
    for a, b in pairs_rows:
        ref = refs.get(a["id"]) or refs.get(" ".join(a["prompt"].split())) or a.get("reference") or b.get("reference")
        pairs.append(Pair(a["id"], a["prompt"], a["output"], b["output"], ref))
    # None = not given: the judge folder's backend block (then the environment, then the engine's defaults) decides
    overrides = dict(kind=backend_kind, model=cfg.model or None, base_url=cfg.base_url or None,
                     adapter=cfg.judge_adapter or None, decoding=cfg.decoding, timeout=cfg.timeout,
                     max_retries=cfg.max_retries, price_input=cfg.price_input, price_output=cfg.price_output)
    overrides = {k: v for k, v in overrides.items() if v is not None and v != ""}
    backend_cfg = resolve_backend_config(judge_cfg.backend, **overrides)
    backend = make_backend(backend_cfg)
    judge_model = backend_cfg.identity()
    if backend_cfg.kind == "transformers":
        judge_model["parameters"] = int(sum(p.numel() for p in backend.model.parameters()))
    cache_dir = None if cfg.no_cache else Path(cfg.cache_dir or DEFAULT_CACHE_DIR)
    print(f"judging {len(pairs)} pairs in both orders with {judge_cfg.name} on {backend_cfg.describe()}"
          + (f" (cache: {cache_dir})" if cache_dir else ""), file=sys.stderr)
    failed = None
    try:
        run = judge_pairs(pairs, judge_cfg, cache_dir=cache_dir, concurrency=cfg.concurrency,
                          max_cost=cfg.max_cost or None, progress=cfg.progress, backend=backend,
                          max_unparseable=cfg.max_unparseable,
                          **overrides)
    except JudgeRunError as err:
        run, failed = err.run, err
    rows = []
    for (a, b), result in zip(pairs_rows, run.results):
        rows.append({
            "id": a["id"], "category": a.get("category") or "general", "prompt": a["prompt"],
            "judge": judge_cfg.name, "judge_kind": "llm", "backend": backend_cfg.describe(),
            "judge_fingerprint": judge_cfg.fingerprint, "judge_description": judge_cfg.description,
            "judge_model": judge_model,
            "a": _side(a), "b": _side(b), "output_a": a["output"], "output_b": b["output"],
            **({"reference": pairs[len(rows)].reference} if judge_cfg.requires_reference else {}),
            **dataclasses.asdict(result),
        })
    write_jsonl(cfg.out, rows)
    c = run.counts
    print(f"{c['judged']}/{c['pairs']} pairs judged: {c['win']} win, {c['tie']} tie, {c['loss']} loss; "
          f"{c['inconsistent']} inconsistent across orders; {c['unparseable_replies']} unparseable replies; "
          f"{c['requests']} requests ({c['cached']} cached); {run.tokens['prompt']}+{run.tokens['completion']} tokens, "
          f"${run.cost:.4f} -> {cfg.out}", file=sys.stderr)
    if run.budget_exhausted:
        print(f"stopped: the --max-cost budget (${cfg.max_cost}) is spent; {c['skipped_budget']} pairs not judged. "
              "Run the same command again with a larger budget to finish (judged pairs come from the cache).",
              file=sys.stderr)
    if failed is not None:
        raise failed
    return rows, 0


def _argilla_client(cfg: JudgeArgs):
    from contract.argilla import connect

    return connect(cfg.workspace or None)


def judge_human(cfg: JudgeArgs, action: str | None) -> int:
    from . import human
    from .files import load_generations, write_jsonl

    if action not in ("push", "pull"):
        raise ValueError("--backend human needs an action: push (create the A/B dataset) or pull (collect the votes)")
    client = _argilla_client(cfg)
    if action == "push":
        if not (cfg.a and cfg.b):
            raise ValueError("push needs --a and --b")
        pairs = _pairs_from_files(cfg)
        name = cfg.dataset or human.default_dataset_name(load_generations(cfg.a), load_generations(cfg.b))
        info = human.push(pairs, client=client, dataset=name, workspace=cfg.argilla_workspace,
                          overlap=cfg.overlap, seed=cfg.seed)
        print(f"pushed {info['records']} blind A/B pairs to Argilla dataset {info['dataset']!r} "
              f"(workspace {info['workspace']!r}, {info['swapped']} shown B-first, {info['overlap']} votes per pair wanted). "
              f"Pull the votes with: python -m eval judge --backend human pull --dataset {info['dataset']} --out FILE",
              file=sys.stderr)
        return 0
    if not cfg.dataset or not cfg.out:
        raise ValueError("pull needs --dataset and --out")
    rows = human.pull(client=client, dataset=cfg.dataset, workspace=cfg.argilla_workspace)
    write_jsonl(cfg.out, rows)
    voted = sum(1 for r in rows if r["votes"])
    votes = sum(len(r["votes"]) for r in rows)
    print(f"{votes} votes on {voted}/{len(rows)} pairs from Argilla dataset {cfg.dataset!r} -> {cfg.out}", file=sys.stderr)
    return 0
