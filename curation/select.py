"""select: a budget of N examples per strategy → ``selection/<strategy>.jsonl`` (+ ``select.json``).

Strategies, all at the same budget on the same pool:

- ``curated``: the records the curators (or, unattended, the AI suggestions)
  kept: those kept by curators first, then those kept by AI suggestions, each
  ranked by ``curator_weight * (mean rating - 1)/4 + (1 - curator_weight) *
  quality``, then diversified;
- ``signals``: every eligible candidate ranked by the signals quality score,
  then diversified (what unattended curation falls back to);
- ``random``: a seeded random sample of the pool;
- ``longest``: the longest responses of the pool first.

Rules for every strategy, baselines included, so that all compete on the same
pool: the hard filters (no refusal, no response shorter than
``score.min_response_chars``, only ``score.languages``, no contaminated
prompt) and only the kept member of each duplicate group (exact, near, same
prompt or same response; see ``score.dup_keep_margin``). ``curated`` and
``signals`` also require ``select.min_quality`` and apply the diversity step;
the baselines deliberately do not. Quotas (``select.quota_field``) apply to
all strategies.

Diversity: ``greedy`` walks candidates in rank order and skips one whose
cosine similarity to an already selected example reaches
``similarity_ceiling``; ``kcenter`` picks, among the top ``budget x
kcenter_pool_factor`` candidates, the one maximising ``quality x distance to
the nearest selected`` at each step.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from curation.config import STRATEGIES, CurationConfig
from contract.io import sha256_file, write_json, write_jsonl
from contract.schema import example_id
from curation.workspace import Workspace, fingerprint, now


class Pool:
    """What selection needs, as numpy columns aligned with signals.parquet."""

    def __init__(self, ws: Workspace, cfg: CurationConfig):
        ws.require(ws.signals, "score")
        names = ("quality", "response_chars", "dup_group", "eligible", "contaminated", "exclude_reason", "source",
                 "category", "c_length", "c_structure", "c_prompt", "rating", "first_person", "refusal", "language",
                 "cluster", "quality_heuristic", "representative", "boilerplate", "other_answers", "this_article")
        sig = pq.read_table(ws.signals, columns=["id", *names])
        self.ids = sig.column("id").to_pylist()
        self.n = len(self.ids)
        # ids are content hashes: their order is a stable pseudo-random tie-break
        self.id_rank = np.argsort(np.argsort(np.asarray(self.ids, dtype=object).astype(str), kind="stable"))
        self.col = {name: sig.column(name).to_numpy(zero_copy_only=False) for name in names}
        self.vectors = np.load(ws.embeddings, mmap_mode="r") if ws.embeddings.exists() else None
        if self.vectors is not None and len(self.vectors) != self.n:
            raise ValueError(f"{ws.embeddings} has {len(self.vectors)} rows but signals.parquet has {self.n}: "
                             "re-run score")
        # every strategy: the hard filters (refusal, too short, language, contaminated prompt) and one member per
        # duplicate group
        self.allowed = self.col["eligible"].astype(bool) & self.col["representative"].astype(bool)
        self.decisions = None
        if ws.decisions.exists():
            dec = pq.read_table(ws.decisions).to_pylist()
            self.decisions = {d["id"]: d for d in dec}


def choose(order: np.ndarray, budget: int, pool: Pool, cfg: CurationConfig, *, diversity: str,
           quality: np.ndarray, categories: np.ndarray) -> tuple[list[int], dict, dict[int, float]]:
    """Walk candidates in rank order; keep one per duplicate group, respect quotas and diversity."""
    sel = cfg.select
    groups = pool.col["dup_group"]
    quota_of = None
    if sel.quota_field:
        quota_of = pool.col["source"] if sel.quota_field == "source" else categories
    used: dict[str, int] = {}
    taken_groups: set[int] = set()
    skipped = {"duplicate": 0, "quota": 0, "too_similar": 0}
    chosen: list[int] = []
    max_sim: dict[int, float] = {}

    def quota_ok(i: int) -> bool:
        if quota_of is None:
            return True
        v = str(quota_of[i])
        cap = sel.quotas.get(v, sel.quota_default or None)
        return cap is None or used.get(v, 0) < cap

    def take(i: int) -> None:
        chosen.append(i)
        if groups[i] >= 0:
            taken_groups.add(int(groups[i]))
        if quota_of is not None:
            used[str(quota_of[i])] = used.get(str(quota_of[i]), 0) + 1

    vecs = pool.vectors
    if diversity == "kcenter" and vecs is not None:
        cands = []
        seen_groups: set[int] = set()
        limit = int(max(budget, round(budget * sel.kcenter_pool_factor)))
        in_pool: dict[str, int] = {}
        for i in order:
            g = int(groups[i])
            if g >= 0 and g in seen_groups:
                skipped["duplicate"] += 1
                continue
            if g >= 0:
                seen_groups.add(g)
            if quota_of is not None:  # a value's share of the pool stays within its quota x the pool factor
                v = str(quota_of[i])
                cap = sel.quotas.get(v, sel.quota_default or None)
                if cap is not None and in_pool.get(v, 0) >= max(cap, round(cap * sel.kcenter_pool_factor)):
                    skipped["quota"] += 1
                    continue
                in_pool[v] = in_pool.get(v, 0) + 1
            cands.append(int(i))
            if len(cands) >= limit:
                break
        cands_arr = np.asarray(cands, dtype=np.int64)
        if len(cands_arr) == 0:
            return chosen, skipped, max_sim
        V = np.asarray(vecs[cands_arr], dtype=np.float32)
        qv = np.maximum(quality[cands_arr], 1e-6)
        dist = np.full(len(cands), np.inf)
        alive = np.ones(len(cands), dtype=bool)
        first = True
        while len(chosen) < budget and alive.any():
            score = np.where(alive, qv * (np.minimum(dist, 2.0) if not first else 1.0), -np.inf)
            k = int(np.argmax(score))  # first-time: the highest quality (order breaks ties)
            first = False
            i = cands[k]
            alive[k] = False
            if not quota_ok(i):
                skipped["quota"] += 1
                continue
            max_sim[i] = float(1 - dist[k]) if np.isfinite(dist[k]) else 0.0
            take(i)
            d = 1 - V @ V[k]
            dist = np.minimum(dist, d)
        return chosen, skipped, max_sim

    S = np.empty((budget, vecs.shape[1]), dtype=np.float32) if (vecs is not None and diversity == "greedy") else None
    for i in order:
        if len(chosen) >= budget:
            break
        g = int(groups[i])
        if g >= 0 and g in taken_groups:
            skipped["duplicate"] += 1
            continue
        if g >= 0:
            taken_groups.add(g)  # the group's first member in rank order decides for the whole group
        if not quota_ok(int(i)):
            skipped["quota"] += 1
            continue
        if S is not None:
            v = np.asarray(vecs[i], dtype=np.float32)
            m = float((S[:len(chosen)] @ v).max()) if chosen else 0.0
            if m >= sel.similarity_ceiling:
                skipped["too_similar"] += 1
                continue
            S[len(chosen)] = v
            max_sim[int(i)] = m
        take(int(i))
    return chosen, skipped, max_sim


def _rank(values: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Indices by value descending; ties by ``tiebreak`` (the candidate ids' hash: stable, no pool-order bias)."""
    return np.lexsort((tiebreak, -values))


def select_strategy(strategy: str, pool: Pool, cfg: CurationConfig) -> dict:
    sel = cfg.select
    n = pool.n
    pos = pool.id_rank
    q = pool.col["quality"].astype(float)
    categories = pool.col["category"].copy()
    warnings: list[str] = []
    quality = q.copy()
    decisions = pool.decisions or {}
    if strategy == "curated":
        if not pool.decisions:
            raise FileNotFoundError("strategy curated needs curator decisions: run `python -m curation pull` first "
                                    "(with --unattended to let AI suggestions decide where no curator answered)")
        kept = np.array([decisions.get(i, {}).get("decision") == "keep" for i in pool.ids])
        mean_rating = np.array([decisions[i]["mean_rating"] if i in decisions and decisions[i]["mean_rating"]
                                is not None else np.nan for i in pool.ids], dtype=float)
        rating_norm = np.where(np.isnan(mean_rating), q, (np.nan_to_num(mean_rating, nan=1) - 1) / 4)
        quality = sel.curator_weight * rating_norm + (1 - sel.curator_weight) * q
        for k, cid in enumerate(pool.ids):
            c = decisions.get(cid, {}).get("category")
            if c:
                categories[k] = c
        hard = pool.allowed
        blocked = kept & ~hard
        if blocked.any():
            reasons = {}
            for k in np.flatnonzero(blocked):
                r = pool.col["exclude_reason"][k] or "duplicate"
                reasons[r] = reasons.get(r, 0) + 1
            warnings.append(f"{int(blocked.sum())} kept records were still excluded by the hard filters: "
                            + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
        mask = kept & hard & (quality >= sel.min_quality)
        by_ai = np.array([decisions.get(i, {}).get("decided_by") == "ai" for i in pool.ids])
        r = np.lexsort((pos, -quality, by_ai))  # curators' keeps first, then AI-decided ones; each by score
        order = r[mask[r]]
        available = int(mask.sum())
        if available < sel.budget:
            n_keep = int(kept.sum())
            warnings.append(f"budget {sel.budget} is larger than what was kept: {n_keep} records kept "
                            f"({available} selectable after the hard filters); selecting at most {available}")
        diversity = sel.diversity
    elif strategy == "signals":
        mask = pool.allowed & (q >= sel.min_quality)
        r = _rank(q, pos)
        order = r[mask[r]]
        diversity = sel.diversity
    elif strategy == "random":
        rng = np.random.default_rng(sel.seed)
        r = rng.permutation(n)
        order = r[pool.allowed[r]]
        diversity = "none"
    elif strategy == "longest":
        r = _rank(pool.col["response_chars"].astype(float), pos)
        order = r[pool.allowed[r]]
        diversity = "none"
    else:
        raise ValueError(f"unknown strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    chosen, skipped, max_sim = choose(order, sel.budget, pool, cfg, diversity=diversity, quality=quality,
                                      categories=categories)
    if len(chosen) < sel.budget and strategy != "curated":
        warnings.append(f"budget {sel.budget} but only {len(chosen)} candidates could be selected "
                        f"({len(order)} passed the filters; skipped: "
                        + ", ".join(f"{k} {v}" for k, v in skipped.items()) + ")")
    return {"strategy": strategy, "chosen": chosen, "skipped": skipped, "max_sim": max_sim, "quality": quality,
            "categories": categories, "warnings": warnings, "diversity": diversity, "considered": int(len(order))}


def _why(strategy: str, rank: int, i: int, pool: Pool, res: dict, cfg: CurationConfig) -> dict:
    c = pool.col
    rating = float(c["rating"][i]) if not np.isnan(c["rating"][i]) else None
    why: dict = {
        "strategy": strategy, "rank": rank, "score": round(float(res["quality"][i]), 4),
        "signals": {"quality": round(float(c["quality"][i]), 4), "length": round(float(c["c_length"][i]), 3),
                    "structure": round(float(c["c_structure"][i]), 3), "prompt": round(float(c["c_prompt"][i]), 3),
                    "llm_rating": rating, "response_chars": int(c["response_chars"][i]),
                    "language": str(c["language"][i]), "cluster": int(c["cluster"][i])},
    }
    if i in res["max_sim"]:
        why["max_similarity_to_selected"] = round(res["max_sim"][i], 4)
    d = (pool.decisions or {}).get(pool.ids[i])
    if strategy == "curated" and d:
        why["decided_by"] = d["decided_by"]
        why["votes"] = {"keep": d["keep_votes"], "discard": d["discard_votes"], "ratings": d["ratings"],
                        "mean_rating": d["mean_rating"], "curators": d["users"]}
        why["edited"] = bool(d.get("edited_response"))
        who = "curators" if d["decided_by"] == "human" else "AI suggestion (no curator answered)"
        text = (f"kept by {who}: keep {d['keep_votes']}/{d['keep_votes'] + d['discard_votes']}"
                + (f", mean rating {d['mean_rating']:.2f}" if d["mean_rating"] is not None else ""))
        if why["edited"]:
            text += f"; response edited by {d['edit_by']}"
    elif strategy == "signals":
        text = (f"signals quality {c['quality'][i]:.3f} (length {c['c_length'][i]:.2f}, structure "
                f"{c['c_structure'][i]:.2f}, prompt {c['c_prompt'][i]:.2f}"
                + (f", LLM rating {rating:.0f}" if rating is not None else "") + ")")
    elif strategy == "random":
        text = f"random sample (seed {cfg.select.seed})"
    else:
        text = f"longest responses first ({int(c['response_chars'][i])} characters)"
    if "max_similarity_to_selected" in why and res["diversity"] != "none":
        text += f"; max similarity to earlier picks {why['max_similarity_to_selected']:.2f}"
    why["reason"] = text
    return why


def write_selection(strategy: str, res: dict, pool: Pool, ws: Workspace, cfg: CurationConfig) -> int:
    chosen = res["chosen"]
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = [pool.ids[i] for i in chosen]
    cand = pq.read_table(ws.candidates, columns=["id", "messages", "source", "meta"])
    cand = cand.filter(pc.is_in(cand.column("id"), value_set=pa.array(wanted, pa.string())))
    rows = {rec["id"]: rec for rec in cand.to_pylist()}
    out = []
    for rank, i in enumerate(chosen, start=1):
        cid = pool.ids[i]
        rec = rows[cid]
        meta = json.loads(rec["meta"])
        messages = [dict(t) for t in rec["messages"]]
        d = (pool.decisions or {}).get(cid)
        ex_id = cid
        if strategy == "curated" and d and d.get("edited_response"):
            messages[-1]["content"] = d["edited_response"]
            ex_id = example_id(messages)
            meta["original_response"] = rec["messages"][-1]["content"]
            meta["edited_by"] = d.get("edit_by")
        meta["candidate_id"] = cid
        if str(res["categories"][i]):
            meta["category"] = str(res["categories"][i])
        meta["why"] = _why(strategy, rank, i, pool, res, cfg)
        out.append({"id": ex_id, "messages": messages, "source": rec["source"], "meta": meta})
    return write_jsonl(ws.selection(strategy), out)


def run(cfg: CurationConfig, ws: Workspace, *, strategies: list[str] | None = None, force: bool = False) -> dict:
    strategies = list(strategies or cfg.select.strategies)
    ws.require(ws.signals, "score")
    base = [p for p in (ws.signals, ws.candidates, ws.embeddings) if p == ws.signals or p.exists()]
    ws.check_fresh([ws.name(p) for p in base], "select")
    has_decisions = ws.decisions.exists()
    if "curated" in strategies and not has_decisions:
        if strategies == ["curated"]:
            raise FileNotFoundError("strategy curated needs curator decisions: run `python -m curation pull` "
                                    "first (with --unattended to let AI suggestions decide where no curator "
                                    "answered)")
        print("select: no decisions yet (run pull): skipping the curated strategy", file=sys.stderr)
        strategies = [s for s in strategies if s != "curated"]
    if "curated" in strategies:
        ws.check_fresh([ws.name(ws.decisions)], "select")
    inputs = {
        "signals": sha256_file(ws.signals),
        "embeddings": sha256_file(ws.embeddings) if ws.embeddings.exists() else None,
        "decisions": sha256_file(ws.decisions) if has_decisions and "curated" in strategies else None,
        "candidates": sha256_file(ws.candidates),
    }
    report = ws.read_report("select") or {"step": "select", "strategies": {}}
    todo = []
    for st in strategies:
        fp = fingerprint("select", st, cfg.section_dict("select"), cfg.score.min_response_chars,
                         {k: v for k, v in inputs.items() if k != "decisions" or st == "curated"})
        prev = report["strategies"].get(st)
        if not force and prev and prev.get("fingerprint") == fp and ws.selection(st).exists():
            continue
        todo.append((st, fp))
    if todo:
        pool = Pool(ws, cfg)
        if pool.vectors is None and cfg.select.diversity != "none":
            print("select: no embeddings (score.embed is off): no diversity step", file=sys.stderr)
        for st, fp in tqdm(todo, desc="select", unit="strategy"):
            res = select_strategy(st, pool, cfg)
            n = write_selection(st, res, pool, ws, cfg)
            chosen = res["chosen"]
            report["strategies"][st] = {
                "fingerprint": fp, "finished_at": now(),
                "inputs": ws.hashes(base + ([ws.decisions] if st == "curated" else [])),
                "outputs": ws.hashes([ws.selection(st)]),
                "budget": cfg.select.budget, "selected": n,
                "considered": res["considered"], "skipped": res["skipped"], "diversity": res["diversity"],
                "by_source": _counts(pool.col["source"][chosen]),
                "by_category": _counts(res["categories"][chosen]),
                "mean_quality": round(float(pool.col["quality"][chosen].mean()), 4) if chosen else None,
                "mean_response_chars": round(float(pool.col["response_chars"][chosen].mean()), 1) if chosen else None,
                "file": str(ws.selection(st)), "warnings": res["warnings"],
                "profile": profile(chosen, pool, cfg),
            }
        report["finished_at"] = now()
        write_json(ws.report_path("select"), report)
    done = {st for st, _ in todo}
    return {**report, "requested": strategies, "up_to_date": [s for s in strategies if s not in done]}


def profile(chosen, pool: Pool, cfg: CurationConfig) -> dict:
    """What a selection looks like, so strategies can be compared at the same budget on the same pool.

    ``lima_markers``: share of examples with any marker LIMA filtered by hand (first person, references to
    other answers, "this article", boilerplate); ``in_lima_band``: share of responses inside
    [score.lima_min_chars, score.lima_max_chars]; ``clusters``: embedding clusters covered; ``mean_similarity``:
    mean pairwise cosine similarity of the selected embeddings (lower is more diverse).
    """
    idx = np.asarray(chosen, dtype=int)
    if not len(idx):
        return {}
    col = pool.col
    markers = ((col["first_person"][idx] > 0) | (col["other_answers"][idx] > 0) | (col["this_article"][idx] > 0)
               | (col["boilerplate"][idx] > 0))
    chars = col["response_chars"][idx]
    band = (chars >= cfg.score.lima_min_chars) & (chars <= cfg.score.lima_max_chars)
    out = {
        "mean_quality": round(float(col["quality"][idx].mean()), 4),
        "lima_markers": round(float(markers.mean()), 4),
        "in_lima_band": round(float(band.mean()), 4),
        "sources": int(len(set(col["source"][idx].tolist()))),
        "clusters": int(len(set(col["cluster"][idx].tolist()))),
        "mean_similarity": None,
    }
    if pool.vectors is not None and len(idx) > 1:
        v = np.asarray(pool.vectors[np.sort(idx)], dtype=np.float32)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        # mean of v_i·v_j over i != j, without the n×n matrix: (|Σv|² − Σ|v_i|²) / (n(n − 1)), |v_i| = 1
        n, total = len(v), v.sum(axis=0, dtype=np.float64)
        out["mean_similarity"] = round(float((total @ total - n) / (n * (n - 1))), 4)
    return out


def comparison(report: dict) -> str:
    """A table of the strategies' profiles side by side (empty with fewer than two)."""
    rows = [(st, report["strategies"][st].get("profile") or {}) for st in report.get("requested", report["strategies"])
            if st in report["strategies"]]
    rows = [(st, p) for st, p in rows if p]
    if len(rows) < 2:
        return ""
    head = (f"{'strategy':<10} {'quality':>8} {'LIMA markers':>13} {'in LIMA band':>13} {'clusters':>9} "
            f"{'sources':>8} {'mean sim':>9}")
    lines = ["same budget, same pool (quality higher, markers lower, band higher, clusters more, "
             "mean sim lower is better):", head]
    for st, p in rows:
        sim = "n/a" if p.get("mean_similarity") is None else f"{p['mean_similarity']:.3f}"
        lines.append(f"{st:<10} {p['mean_quality']:>8.3f} {p['lima_markers']:>12.1%} {p['in_lima_band']:>12.1%} "
                     f"{p['clusters']:>9} {p['sources']:>8} {sim:>9}")
    return "\n".join(lines)


def _counts(values) -> dict:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def summary(report: dict) -> str:
    lines = []
    for st in report.get("requested", report["strategies"]):
        r = report["strategies"].get(st)
        if not r:
            continue
        lines.append(f"select {st}: {r['selected']} of budget {r['budget']} (considered {r['considered']}; skipped "
                     + ", ".join(f"{k} {v}" for k, v in r["skipped"].items()) + f"; mean quality {r['mean_quality']}, "
                     f"mean length {r['mean_response_chars']} chars)"
                     + (" (up to date)" if st in report.get("up_to_date", ()) else "") + f" -> {r['file']}")
        for w in r["warnings"]:
            lines.append(f"  WARNING: {w}")
    table = comparison(report)
    if table:
        lines.append(table)
    return "\n".join(lines)

