"""``python -m eval judge``: judge A against B pairwise, with an LLM (both orders, through the judge engine
of :mod:`judging`) or with humans (a blind A/B dataset in Argilla, :mod:`eval.human`); write judgments.jsonl."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from .config import JudgeArgs


def main(cfg: JudgeArgs, action: str | None = None) -> int:
    from judging import FatalBackendError, JudgeRunError, load_judge

    backend = {"local": "transformers"}.get(cfg.backend, cfg.backend)  # None: the judge folder's, else openai
    if backend == "human":
        return judge_human(cfg, action)
    if action:
        raise ValueError(f"'{action}' is for --backend human only")
    judge_cfg = load_judge(cfg.judge)
    single = judge_cfg.mode == "pointwise"
    needed = ("a", "out") if single else ("a", "b", "out")
    problems = [f"--{k} is required" for k in needed if not getattr(cfg, k)]
    if single and cfg.b:
        problems.append(f"{judge_cfg.name} grades single answers: give the system's answers as --a, without --b "
                        "(run it once per system)")
    if not 0 <= cfg.min_verdicts <= 1:
        problems.append("--min-verdicts must be a share between 0 and 1")
    if problems:
        raise ValueError("; ".join(problems))
    try:
        rows, code = (grade_llm if single else judge_llm)(cfg, backend)
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


def _reference(refs: dict, *rows: dict):
    for r in rows:
        hit = refs.get(r["id"]) or refs.get(" ".join(r["prompt"].split()))
        if hit is not None:
            return hit
    return next((r["reference"] for r in rows if r.get("reference")), None)


def _ref_for(ref, turn: int):
    if isinstance(ref, list):
        return ref[turn - 1] if len(ref) >= turn else None
    return ref if turn == 1 else None


def _turns_of(cfg: JudgeArgs, judge_cfg, rows: list[dict]) -> list[int]:
    """The turns to judge for one prompt: every turn each side answered, unless --turns picks some."""
    n = min(len(r.get("outputs") or [r["output"]]) for r in rows)
    available = list(range(1, n + 1)) if judge_cfg.multi_turn_template else [1]
    wanted = [int(t) for t in cfg.turns] if cfg.turns else available
    return [t for t in wanted if t in available]


def _variants(judge_cfg) -> dict:
    """The judge and the one it routes reference-guided items to (a sibling folder, else a shipped judge)."""
    from judging import load_judge

    out = {judge_cfg.name: judge_cfg}
    if judge_cfg.reference_judge:
        sibling = judge_cfg.path.parent / judge_cfg.reference_judge if judge_cfg.path else None
        out[judge_cfg.reference_judge] = load_judge(sibling if sibling and sibling.is_dir() else judge_cfg.reference_judge)
    return out


def _route(judge_cfg, category: str, ref) -> str:
    """The judge for one item: the reference judge for its categories when a reference exists."""
    if judge_cfg.reference_judge and ref and category in judge_cfg.reference_categories:
        return judge_cfg.reference_judge
    return judge_cfg.name


def _engine(cfg: JudgeArgs, judge_cfg, backend_kind: str | None):
    """The resolved backend settings, the backend (a local judge is loaded once), its description, and the
    settings every judge of this run uses (a routed judge runs on the same backend)."""
    from judging import DEFAULT_CACHE_DIR, make_backend, resolve_backend_config

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
    resolved = {k: v for k, v in dataclasses.asdict(backend_cfg).items() if v is not None}
    cache_dir = None if cfg.no_cache else Path(cfg.cache_dir or DEFAULT_CACHE_DIR)
    common = dict(cache_dir=cache_dir, concurrency=cfg.concurrency, max_cost=cfg.max_cost or None,
                  progress=cfg.progress, backend=backend, max_unparseable=cfg.max_unparseable,
                  retry_unparseable=cfg.retry_unparseable, **resolved)
    return backend_cfg, judge_model, common


def _run_routed(tasks: list, route: list[str], variants: dict, run_fn, common: dict):
    """Run each judge on its share of the tasks; results back in task order. A JudgeRunError is re-raised
    after all judges ran, with every result."""
    from judging import JudgeRunError

    results = [None] * len(tasks)
    runs, failed = [], None
    for name in dict.fromkeys(route):
        idx = [i for i, r in enumerate(route) if r == name]
        try:
            run = run_fn([tasks[i] for i in idx], variants[name], **common)
        except JudgeRunError as err:
            run, failed = err.run, failed or err
        for i, res in zip(idx, run.results):
            results[i] = res
        runs.append(run)
    return results, runs, failed


def _merge_counts(runs) -> dict:
    out: dict = {}
    for run in runs:
        for k, v in run.counts.items():
            out[k] = out.get(k, 0) + v
    return out


def _verdict_share(judged: int, asked: int, cfg: JudgeArgs, what: str, failures: list[str]) -> int:
    """Exit code 1 with a "failed" summary when fewer than --min-verdicts of the items asked got a verdict."""
    if asked and judged / asked < cfg.min_verdicts:
        why = f"; first problem: {failures[0]}" if failures else ""
        print(f"failed: only {judged} of {asked} {what} got a verdict ({judged / asked:.0%}), fewer than "
              f"--min-verdicts {cfg.min_verdicts:.0%}{why}", file=sys.stderr)
        return 1
    return 0


def judge_llm(cfg: JudgeArgs, backend_kind: str | None) -> tuple[list[dict], int]:
    from judging import Pair, judge_pairs, load_judge

    from .files import write_jsonl
    from .generate import load_references

    judge_cfg = load_judge(cfg.judge)
    pairs_rows = _pairs_from_files(cfg)
    refs = load_references(cfg.references) if cfg.references else {}
    tasks, route, sources = [], [], []
    for a, b in pairs_rows:
        ref = _reference(refs, a, b)
        for turn in _turns_of(cfg, judge_cfg, [a, b]):
            if turn == 1:
                pair = Pair(a["id"], a["prompt"], a["output"], b["output"], _ref_for(ref, 1))
            else:
                pair = Pair(a["id"], a["turns"][turn - 1], a["outputs"][turn - 1], b["outputs"][turn - 1],
                            _ref_for(ref, turn), turns=a["turns"], outputs_a=a["outputs"], outputs_b=b["outputs"],
                            references=ref if isinstance(ref, list) else None, turn=turn)
            tasks.append(pair)
            route.append(_route(judge_cfg, a.get("category") or "general", pair.reference))
            sources.append((a, b))
    backend_cfg, judge_model, common = _engine(cfg, judge_cfg, backend_kind)
    routed = sum(r != judge_cfg.name for r in route)
    print(f"judging {len(tasks)} pairs in both orders with {judge_cfg.name} on {backend_cfg.describe()}"
          + (f" ({routed} with {judge_cfg.reference_judge})" if routed else "")
          + (f" (cache: {common['cache_dir']})" if common["cache_dir"] else ""), file=sys.stderr)
    variants = _variants(judge_cfg)
    results, runs, failed = _run_routed(tasks, route, variants, judge_pairs, common)
    rows = []
    for pair, variant, (a, b), result in zip(tasks, route, sources, results):
        used = variants[variant]
        rows.append({
            "id": a["id"], "category": a.get("category") or "general", "prompt": pair.prompt,
            "judge": judge_cfg.name, **({"judge_variant": variant} if variant != judge_cfg.name else {}),
            "judge_kind": "llm", "mode": "pairwise", "backend": backend_cfg.describe(),
            "judge_fingerprint": used.fingerprint, "judge_description": used.description,
            "judge_model": judge_model,
            "a": _side(a), "b": _side(b), "output_a": pair.output_a, "output_b": pair.output_b,
            **({"reference": pair.reference} if used.requires_reference else {}),
            **dataclasses.asdict(result),
        })
    write_jsonl(cfg.out, rows)
    c = _merge_counts(runs)
    spent = sum(run.cost for run in runs)
    total = sum(run.cost_total for run in runs)
    tokens = {k: sum(run.tokens[k] for run in runs) for k in ("prompt", "completion")}
    print(f"{c['judged']}/{c['pairs']} pairs judged: {c['win']} win, {c['tie']} tie, {c['loss']} loss; "
          f"{c['inconsistent']} inconsistent across orders; {c['unparseable_replies']} unparseable replies; "
          f"{c['requests']} requests ({c['cached']} cached); {tokens['prompt']}+{tokens['completion']} tokens and "
          f"${spent:.4f} spent in this run; the judgments cost ${total:.4f} in all -> {cfg.out}", file=sys.stderr)
    if any(run.budget_exhausted for run in runs):
        print(f"stopped: the --max-cost budget (${cfg.max_cost}) is spent; {c['skipped_budget']} pairs not judged. "
              "Run the same command again with a larger budget to finish (judged pairs come from the cache).",
              file=sys.stderr)
    if failed is not None:
        raise failed
    problems = [f"{r.id}: {r.error}" for r in results if r.verdict is None and r.status != "budget"]
    code = _verdict_share(c["judged"], c["pairs"] - c["skipped_budget"], cfg, "pairs", problems)
    return rows, code


def grade_llm(cfg: JudgeArgs, backend_kind: str | None) -> tuple[list[dict], int]:
    """Single-answer grading (MT-Bench): each answer of --a, each turn, scored on the judge's scale."""
    from judging import Item, Rating, load_judge, rate_many

    from .files import load_generations, write_jsonl
    from .generate import load_references

    judge_cfg = load_judge(cfg.judge)
    rows_a = load_generations(cfg.a)
    rows_a = rows_a[: cfg.limit] if cfg.limit else rows_a
    refs = load_references(cfg.references) if cfg.references else {}
    tasks, route, sources = [], [], []
    for a in rows_a:
        ref = _reference(refs, a)
        for turn in _turns_of(cfg, judge_cfg, [a]):
            if turn == 1:
                item = Item(a["prompt"], a["output"], _ref_for(ref, 1))
            else:
                item = Item(a["turns"][turn - 1], a["outputs"][turn - 1], _ref_for(ref, turn), turns=a["turns"],
                            outputs=a["outputs"], references=ref if isinstance(ref, list) else None, turn=turn)
            tasks.append(item)
            route.append(_route(judge_cfg, a.get("category") or "general", item.reference))
            sources.append(a)
    backend_cfg, judge_model, common = _engine(cfg, judge_cfg, backend_kind)
    routed = sum(r != judge_cfg.name for r in route)
    print(f"grading {len(tasks)} answers with {judge_cfg.name} on {backend_cfg.describe()}"
          + (f" ({routed} with {judge_cfg.reference_judge})" if routed else ""), file=sys.stderr)
    variants = _variants(judge_cfg)
    results, runs, failed = _run_routed(tasks, route, variants, rate_many, common)
    rows = []
    for item, variant, a, result in zip(tasks, route, sources, results):
        used = variants[variant]
        ok = isinstance(result, Rating)
        rows.append({
            "id": a["id"], "turn": item.turn, "category": a.get("category") or "general", "prompt": item.prompt,
            "judge": judge_cfg.name, **({"judge_variant": variant} if variant != judge_cfg.name else {}),
            "judge_kind": "llm", "mode": "single", "backend": backend_cfg.describe(),
            "judge_fingerprint": used.fingerprint, "judge_description": used.description,
            "judge_model": judge_model, "scale": list(used.scale),
            "a": _side(a), "output": item.output,
            **({"reference": item.reference} if used.requires_reference else {}),
            "score": result.score if ok else None, "rationale": result.rationale if ok else "",
            "reply": result.reply, "cached": result.cached if ok else False,
            "status": "ok" if ok else result.status.value, "error": None if ok else result.error,
            "tokens": result.tokens, "cost": result.cost, "spent": result.spent, "parse_failures": result.parse_failures,
        })
    write_jsonl(cfg.out, rows)
    c = _merge_counts(runs)
    scores = [r["score"] for r in rows if r["score"] is not None]
    by_turn = {t: [r["score"] for r in rows if r["turn"] == t and r["score"] is not None]
               for t in sorted({r["turn"] for r in rows})}
    mean = f"mean {sum(scores) / len(scores):.2f}" if scores else "no score"
    turns = ", ".join(f"turn {t}: {sum(v) / len(v):.2f}" for t, v in by_turn.items() if v) if len(by_turn) > 1 else ""
    spent = sum(run.cost for run in runs)
    total = sum(run.cost_total for run in runs)
    print(f"{c['rated']}/{c['items']} answers graded, {mean}" + (f" ({turns})" if turns else "")
          + f"; {c['unparseable_replies']} unparseable replies; {c['requests']} requests ({c['cached']} cached); "
          f"${spent:.4f} spent in this run; the grades cost ${total:.4f} in all -> {cfg.out}", file=sys.stderr)
    if any(run.budget_exhausted for run in runs):
        print(f"stopped: the --max-cost budget (${cfg.max_cost}) is spent; {c['skipped_budget']} answers not graded. "
              "Run the same command again with a larger budget to finish.", file=sys.stderr)
    if failed is not None:
        raise failed
    problems = [f"{r['id']} turn {r['turn']}: {r['error']}" for r in rows
                if r["score"] is None and r["status"] != "budget"]
    code = _verdict_share(c["rated"], c["items"] - c["skipped_budget"], cfg, "answers", problems)
    return rows, code


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
