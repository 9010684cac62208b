"""score: candidates → ``signals.parquet`` (+ ``embeddings.npy``, ``prompt_embeddings.npy``, ``score.json``).

The spine: heuristics (with token counts in a thread) → language → exact and
near duplicates → embeddings and clusters → decontamination → optional LLM
rating → quality score → eligibility and AI suggestions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from curation import decontam, dedup, embed, signals
from curation.config import CurationConfig
from curation.ingest import load_candidates
from contract.io import sha256_file
from curation.workspace import Workspace, fingerprint, now, save_npy, write_parquet

SIGNALS_AGENT = "curated-align/signals"


def judge_agent(cfg: CurationConfig) -> str:
    s = cfg.score
    return f"judge:{s.judge}" + (f"/{s.judge_model}" if s.judge_model else "")


def embedding_text(prompt: str, response: str) -> str:
    return f"{prompt}\n\n{response}"


def _inputs_fingerprint(cfg: CurationConfig, ws: Workspace) -> str:
    s = cfg.score
    evals = {p: sha256_file(p) if Path(p).exists() else None for p in s.eval_prompts}
    judge = None
    if s.judge:
        from judging import load_judge

        judge = {"fingerprint": load_judge(s.judge).fingerprint, "base_url": s.judge_base_url,
                 "model": s.judge_model, "limit": s.judge_limit or 3 * cfg.select.budget}
    return fingerprint("score", sha256_file(ws.candidates), cfg.section_dict("score"), evals, judge,
                       cfg.push.keep_threshold)


def run(cfg: CurationConfig, ws: Workspace, *, force: bool = False) -> dict:
    s = cfg.score
    ws.check_fresh([ws.name(ws.candidates)], "score")
    fp = _inputs_fingerprint(cfg, ws)
    outputs = [ws.signals] + ([ws.embeddings] if s.embed else [])
    done = ws.up_to_date("score", fp, outputs)
    if done and not force:
        done["skipped"] = True
        return done

    clock = _Clock()
    table = load_candidates(ws, ["id", "source", "prompt", "response", "n_turns", "meta", "messages"])
    ids = table.column("id").to_pylist()
    prompts = table.column("prompt").to_pylist()
    responses = table.column("response").to_pylist()
    n = len(ids)
    cols: dict[str, object] = {"id": ids, "source": table.column("source").to_pylist()}
    metas = [json.loads(m) for m in table.column("meta").to_pylist()]
    cols["category"] = [str(m.get("category") or "") for m in metas]
    cols["n_turns"] = table.column("n_turns").to_pylist()

    # heuristics, with the tokenizer running beside them
    counter = signals.TokenCounter(s.tokenizer).start({"prompt": prompts, "response": responses})
    with tqdm(total=n, desc="score: heuristics", unit="cand", mininterval=1) as bar:
        heur = signals.heuristics(prompts, responses, progress=bar)
    cols.update(heur)
    clock.lap("heuristics")
    cols["language"] = signals.languages(prompts, responses)
    clock.lap("language")

    # duplicates
    full = [f"{p}\n{r}" for p, r in zip(prompts, responses)]
    norm_p = [dedup.normalize_key(p) for p in prompts]
    norm_r = [dedup.normalize_key(r) for r in responses]
    edges = {"exact": dedup.exact_pairs([dedup.digest(a + b" " + b) for a, b in zip(norm_p, norm_r)])}
    if s.dedup_same_prompt:
        edges["same_prompt"] = dedup.exact_pairs([dedup.digest(a) for a in norm_p])
    edges["same_response"] = dedup.exact_pairs([dedup.digest(b) if w >= 8 else None
                                                for b, w in zip(norm_r, heur["n_words"])])
    del norm_p, norm_r
    clock.lap("exact_duplicates")
    with tqdm(total=n, desc="score: minhash", unit="cand", mininterval=1) as bar:
        sig = dedup.MinHasher(s.num_perm, s.shingle_size).signatures(full, progress=bar)
    clock.lap("minhash")
    edges["near"] = dedup.near_duplicate_pairs(sig, s.near_dup_threshold, full, s.shingle_size)
    del sig
    group, reason = dedup.groups(n, edges)
    cols["dup_group"] = group.tolist()
    cols["dup_reason"] = reason
    clock.lap("near_duplicates")

    tokens = counter.result()
    clock.lap("tokens_wait")
    cols["prompt_tokens"] = tokens["prompt"]
    cols["response_tokens"] = tokens["response"]

    # embeddings and clusters
    vectors = prompt_vecs = None
    if s.embed:
        vectors = embed.embed(ids, [embedding_text(p, r) for p, r in zip(prompts, responses)],
                              model_name=s.embedding_model, cache_root=ws.cache / "embeddings", kind="example",
                              batch_size=s.embedding_batch_size, device=s.embedding_device,
                              desc="score: embeddings", runtime=s.embedding_runtime)
        cols["cluster"] = embed.clusters(vectors, s.n_clusters).tolist()
        clock.lap("embeddings_clusters")
    else:
        cols["cluster"] = [-1] * n

    # decontamination
    evals = decontam.read_eval_prompts(s.eval_prompts) if s.eval_prompts else []
    ov, ov_which = decontam.ngram_overlap(prompts, [e["prompt"] for e in evals], s.decontam_ngram)
    sim = np.zeros(n, dtype=np.float32)
    sim_which = np.full(n, -1)
    if evals and s.embed:
        prompt_vecs = embed.embed(ids, prompts, model_name=s.embedding_model, cache_root=ws.cache / "embeddings",
                                  kind="prompt", batch_size=s.embedding_batch_size, device=s.embedding_device,
                                  desc="score: prompt embeddings", runtime=s.embedding_runtime)
        eval_vecs = embed.embed_texts([e["prompt"] for e in evals], model_name=s.embedding_model,
                                      batch_size=s.embedding_batch_size, device=s.embedding_device,
                                      runtime=s.embedding_runtime)
        sim, sim_which = decontam.embedding_similarity(prompt_vecs, eval_vecs)
    clock.lap("decontamination")
    by_ngram = ov >= s.decontam_ngram_overlap
    by_embed = sim >= s.decontam_embedding_threshold
    cols["contam_ngram"] = ov.round(4).tolist()
    cols["contam_embedding"] = sim.astype(float).round(4).tolist()
    cols["contaminated"] = (by_ngram | by_embed).tolist()
    cols["contam_match"] = [evals[ov_which[i]]["id"] if by_ngram[i] else
                            evals[sim_which[i]]["id"] if by_embed[i] else "" for i in range(n)]

    # eligibility (hard filters), before the judge so it only rates what could be selected
    langs = set(s.languages)
    reasons = []
    for i in range(n):
        if cols["refusal"][i]:
            reasons.append("refusal")
        elif cols["response_chars"][i] < s.min_response_chars:
            reasons.append("too_short")
        elif langs and cols["language"][i] not in langs and cols["language"][i] != signals.UNKNOWN_LANGUAGE:
            reasons.append(f"language:{cols['language'][i]}")
        elif cols["contaminated"][i]:
            reasons.append("contaminated")
        else:
            reasons.append("")
    eligible = np.array([not r for r in reasons])
    q_kw = dict(lo=s.lima_min_chars, hi=s.lima_max_chars, min_chars=s.min_response_chars)
    q_heur, _ = signals.quality(cols, s.weights, s.penalties, **q_kw)

    # optional LLM rating through the project's one judge abstraction (judging)
    rating = np.full(n, np.nan)
    rationale = [""] * n
    rating_error = [""] * n
    judge_report = None
    if s.judge:
        rating, rationale, rating_error, judge_report = _rate(cfg, ws, table, q_heur, eligible, group)
    q, comp = signals.quality(cols, s.weights, s.penalties, rating=rating if s.judge else None, **q_kw)
    cols["rating"] = rating.tolist()
    cols["rating_rationale"] = rationale
    cols["rating_error"] = rating_error
    cols["quality_heuristic"] = q_heur.round(6).tolist()
    cols["quality"] = q.round(6).tolist()
    for k, v in comp.items():
        cols[f"c_{k}"] = np.round(v, 6).tolist()
    cols["eligible"] = eligible.tolist()
    cols["exclude_reason"] = reasons

    # AI suggestions (what unattended curation decides): keep the best eligible member of each duplicate group
    best_of_group = _best_of_groups(group, q, eligible, s.dup_keep_margin)
    keep = eligible & best_of_group & (q >= cfg.push.keep_threshold)
    sugg_rating = np.where(~np.isnan(rating), np.nan_to_num(rating), np.clip(np.rint(1 + 4 * q), 1, 5))
    cols["representative"] = best_of_group.tolist()
    cols["suggested_keep"] = keep.tolist()
    cols["suggested_rating"] = sugg_rating.astype(int).tolist()

    clock.lap("quality_suggestions")
    write_parquet(ws.signals, pa.table(cols))
    if vectors is not None:
        save_npy(ws.embeddings, vectors)
    if prompt_vecs is not None:
        save_npy(ws.prompt_embeddings, prompt_vecs)
    for path, made in ((ws.embeddings, vectors), (ws.prompt_embeddings, prompt_vecs)):
        if made is None and path.exists():
            path.unlink()  # from an earlier run: rows no longer aligned with these signals
    excl: dict[str, int] = {}
    for r in reasons:
        if r:
            excl[r] = excl.get(r, 0) + 1
    n_dup_groups = len({g for g in group.tolist() if g >= 0})
    report = {
        "step": "score", "fingerprint": fp, "finished_at": now(),
        "inputs": {**ws.hashes([ws.candidates]),
                   **{f"file:{Path(p).resolve()}": sha256_file(p) for p in s.eval_prompts if Path(p).is_file()}},
        "outputs": ws.hashes([ws.signals] + ([ws.embeddings] if vectors is not None else [])
                             + ([ws.prompt_embeddings] if prompt_vecs is not None else [])),
        "candidates": n,
        "eligible": int(eligible.sum()), "excluded": dict(sorted(excl.items())),
        "duplicates": {"groups": n_dup_groups, "in_groups": int((group >= 0).sum()),
                       "redundant": int((group >= 0).sum()) - n_dup_groups,
                       "pairs": {k: int(len(v[0])) for k, v in edges.items()}},
        "contaminated": {"total": int(sum(cols["contaminated"])), "by_ngram": int(by_ngram.sum()),
                         "by_embedding": int(by_embed.sum()), "eval_prompts": len(evals)},
        "languages": _counts(cols["language"]),
        "embedding_model": s.embedding_model if s.embed else None,
        "embedding_runtime": embed.runtime_used(s.embedding_runtime, s.embedding_device, s.embedding_model)
        if s.embed else None,
        "embedding_dim": int(vectors.shape[1]) if vectors is not None and vectors.size else None,
        "clusters": int(max(cols["cluster"]) + 1) if n else 0,
        "quality": {"mean": float(np.mean(q)) if n else 0.0, "suggested_keep": int(keep.sum())},
        "judge": judge_report,
        "seconds": clock.laps(),
    }
    ws.write_report("score", report)
    return report


class _Clock:
    def __init__(self):
        import time

        self._time = time.perf_counter
        self._last = self._time()
        self._laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        t = self._time()
        self._laps[name] = round(self._laps.get(name, 0.0) + t - self._last, 3)
        self._last = t

    def laps(self) -> dict[str, float]:
        self.lap("write")
        return dict(self._laps)


def _best_of_groups(group: np.ndarray, q: np.ndarray, eligible: np.ndarray, margin: float) -> np.ndarray:
    """True for candidates without duplicates and for the one kept member of each duplicate group.

    The kept member is the earliest eligible one (pool order: the original, usually) unless a later eligible
    member scores more than ``margin`` higher; in a group with no eligible member, the earliest.
    """
    keep = group < 0
    members: dict[int, list[int]] = {}
    for i in np.flatnonzero(group >= 0):
        members.setdefault(int(group[i]), []).append(int(i))
    for idx in members.values():  # indices ascending: pool order
        ok = [i for i in idx if eligible[i]]
        if not ok:
            keep[idx[0]] = True
            continue
        best = max(q[i] for i in ok)
        keep[next(i for i in ok if q[i] >= best - margin)] = True
    return keep


def _rate(cfg, ws, table, q_heur, eligible, group):
    from judging import FatalBackendError, JudgeRunError, Rating, rate_many

    s = cfg.score
    n = len(q_heur)
    limit = s.judge_limit or 3 * cfg.select.budget
    rep = _best_of_groups(group, q_heur, eligible, s.dup_keep_margin)
    order = [i for i in np.lexsort((np.arange(n), -q_heur)) if eligible[i] and rep[i]][:limit]
    messages = table.column("messages").to_pylist()
    items = [(_render_context(messages[i]), messages[i][-1]["content"]) for i in order]
    overrides = {k: v for k, v in (("base_url", s.judge_base_url), ("model", s.judge_model)) if v}
    try:
        run = rate_many(items, s.judge, cache_dir=ws.cache / "judge", concurrency=s.judge_concurrency,
                        max_cost=s.judge_max_cost or None, progress=True,
                        max_unparseable=s.judge_max_failure_fraction, **overrides)
    except JudgeRunError as err:
        raise RuntimeError(f"score: the LLM rating failed: {err}") from None
    except FatalBackendError as err:
        raise RuntimeError(f"score: the judge endpoint cannot be used: {err}") from None
    rating = np.full(n, np.nan)
    rationale = [""] * n
    errors = [""] * n
    failures = 0
    for i, res in zip(order, run.results):
        if isinstance(res, Rating):
            rating[i] = res.score
            rationale[i] = res.rationale
        else:
            errors[i] = res.error
            failures += 1
    if order and failures / len(order) > s.judge_max_failure_fraction:
        first = next(e for e in errors if e)
        raise RuntimeError(f"score: the judge failed on {failures} of {len(order)} items (more than "
                           f"score.judge_max_failure_fraction={s.judge_max_failure_fraction}); first error: {first}")
    report = {"judge": run.judge, "backend": run.backend, "items": len(order), "rated": len(order) - failures,
              "failed": failures, "fallback": "failed items are scored from the other signals",
              "cost": run.cost, "tokens": run.tokens, "counts": run.counts, "agent": judge_agent(cfg)}
    return rating, rationale, errors, report


def _render_context(messages: list[dict]) -> str:
    turns = messages[:-1]
    if len(turns) == 1 and turns[0]["role"] == "user":
        return turns[0]["content"]
    return "\n\n".join(f"{t['role'].capitalize()}: {t['content']}" for t in turns)


def _counts(values) -> dict:
    out: dict = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def load_signals(ws: Workspace) -> pa.Table:
    import pyarrow.parquet as pq

    ws.require(ws.signals, "score")
    return pq.read_table(ws.signals)


def load_embeddings(ws: Workspace) -> np.ndarray | None:
    return np.load(ws.embeddings) if ws.embeddings.exists() else None


def summary(report: dict) -> str:
    d = report["duplicates"]
    lines = [f"score: {report['candidates']} candidates, {report['eligible']} eligible"
             + (" (up to date)" if report.get("skipped") else "")]
    if report["excluded"]:
        lines.append("  excluded: " + ", ".join(f"{k} {v}" for k, v in report["excluded"].items()))
    lines.append(f"  duplicates: {d['groups']} groups holding {d['in_groups']} candidates "
                 f"({d['redundant']} redundant); pairs " + ", ".join(f"{k} {v}" for k, v in d["pairs"].items()))
    c = report["contaminated"]
    lines.append(f"  contaminated: {c['total']} (n-gram {c['by_ngram']}, embedding {c['by_embedding']}) "
                 f"against {c['eval_prompts']} eval prompts")
    if report.get("embedding_model"):
        lines.append(f"  embeddings: {report['embedding_model']} ({report['embedding_dim']} dims), "
                     f"{report['clusters']} clusters")
    j = report.get("judge")
    if j:
        lines.append(f"  LLM rating ({j['judge']}, {j['backend']}): {j['rated']} of {j['items']} rated, "
                     f"{j['failed']} failed (scored from the other signals), cost ${j['cost']:.4f}")
    lines.append(f"  mean quality {report['quality']['mean']:.3f}; AI suggests keeping "
                 f"{report['quality']['suggested_keep']}")
    return "\n".join(lines)

