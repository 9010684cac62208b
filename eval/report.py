"""``python -m eval report``: judgments → report.html (self-contained), report.md, summary.json, charts.

    python -m eval report --judgments judgments-llm.jsonl judgments-human.jsonl --out report/ \\
        --manifest data/lima/manifest.json --run-dir runs/lima

One comparison = one judge on one (A, B) pair of systems. The report opens with one sentence per
comparison (who won, by how much, how sure, by which judge — or that the judge cannot be trusted), with
its warnings. Then for each: LIMA's win/tie/loss bars, the win rate (ties half; scores and weights for
logprob and five-point judges) with paired-bootstrap (primary) and Wilson 95 % intervals, a sign-test
p-value, a length-controlled win rate with its bootstrap interval (or why length cannot be controlled),
the judge's position consistency, per-category and per-turn results, length statistics and sample
pairs; human–LLM agreement on the pairs both judged; single-answer grades (MT-Bench) per system, turn
and category; and provenance.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, median

from . import charts, grades, headline, leaderboard, stats
from .config import ReportArgs
from .files import read_records, sha256_file


@dataclass
class Comparison:
    judge: str
    kind: str  # llm | human
    backend: str
    a: str
    b: str
    rows: list[dict] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.a} vs {self.b} — {self.judge}"

    @property
    def judged(self) -> list[dict]:
        return [r for r in self.rows if r.get("verdict") in stats.SCORE]


def load_judgments(paths: list[str]) -> list[dict]:
    rows = []
    for path in paths:
        for r in read_records(path):
            r["_file"] = str(path)
            rows.append(r)
    if not rows:
        raise ValueError("no judgments in " + ", ".join(paths))
    return rows


def group(rows: list[dict]) -> list[Comparison]:
    """Pairwise rows into comparisons (single-answer grades are :mod:`eval.grades`')."""
    out: dict[tuple, Comparison] = {}
    for r in rows:
        if r.get("mode") == "single":
            continue
        kind = r.get("judge_kind") or ("human" if r.get("judge") == "human" else "llm")
        judge = r.get("judge") or "?"
        label = "human" if kind == "human" else f"{judge} ({r.get('backend', '?')})"
        a = (r.get("a") or {}).get("generator") or "A"
        b = (r.get("b") or {}).get("generator") or "B"
        key = (label, a, b)
        if key not in out:
            out[key] = Comparison(label, kind, r.get("backend", ""), a, b)
        out[key].rows.append(r)
    # humans last, in file order otherwise
    return sorted(out.values(), key=lambda c: c.kind == "human")


def row_key(r: dict) -> tuple[str, int]:
    """A judgment's identity: the prompt and the turn (1 for single-turn prompts)."""
    return (r["id"], int(r.get("turn") or 1))


def status(r: dict) -> str:
    """ok, unparseable, failed, budget or error (files written before statuses existed: from the verdict)."""
    if r.get("status"):
        return r["status"]
    if r.get("verdict") in stats.SCORE:
        return "ok"
    error = r.get("error") or ""
    return "budget" if error.startswith("not judged") else "unparseable" if error.startswith("unparseable") else "failed"


def _len(text: str | None) -> int:
    return len(text or "")


def _quality(rows: list[dict]) -> dict:
    """Empty and truncated answers on each side."""
    out = {}
    for side in ("a", "b"):
        out[f"empty_{side}"] = sum(1 for r in rows if not (r.get(f"output_{side}") or "").strip())
        out[f"truncated_{side}"] = sum(1 for r in rows if ((r.get(side) or {}).get("config") or {}).get("hit_max_new_tokens"))
    return out


def analyse(c: Comparison, n_boot: int, seed: int, difficulty: dict | None = None) -> dict:
    """Every number of one comparison; every key is present (None where it cannot be computed)."""
    judged = c.judged
    verdicts = [r["verdict"] for r in judged]
    la = [_len(r.get("output_a")) for r in judged]
    lb = [_len(r.get("output_b")) for r in judged]
    scores = [r["score"] if r.get("score") is not None else stats.SCORE[r["verdict"]] for r in judged]
    weights = [float(r.get("weight") or 1.0) for r in judged]
    has_scores = any(r.get("score") is not None and r["score"] != stats.SCORE[r["verdict"]] for r in judged)
    turns = sorted({int(r.get("turn") or 1) for r in c.rows})
    clusters = [r["id"] for r in judged] if len(turns) > 1 else None
    diff = [difficulty.get(row_key(r), 0.0) for r in judged] if difficulty else None
    s = stats.summarize(verdicts, la, lb, n_boot=n_boot, seed=seed, scores=scores if has_scores else None,
                        weights=weights if any(w != 1 for w in weights) else None, clusters=clusters, difficulty=diff)
    s.update(judge=c.judge, kind=c.kind, a=c.a, b=c.b, key=c.key, pairs=len(c.rows),
             prompts=len({r["id"] for r in c.rows}), turns=len(turns), difficulty_term=diff is not None)
    statuses = [status(r) for r in c.rows]
    s["not_judged"] = len(c.rows) - len(judged)
    s["budget_skipped"] = statuses.count("budget")
    s["unparseable_pairs"] = statuses.count("unparseable")
    s["failed_pairs"] = statuses.count("failed") + statuses.count("error")
    s["parse_failures"] = sum(int(r.get("parse_failures") or 0) for r in c.rows)
    s["cost"] = sum(float(r.get("cost") or 0) for r in c.rows)
    # humans cost nothing; LLM rows written before costs were split have no "spent": unknown
    s["spent"] = (sum(float(r.get("spent") or 0) for r in c.rows)
                  if c.kind == "human" or all("spent" in r for r in c.rows) else None)
    s["tokens"] = sum(sum((r.get("tokens") or {}).values()) for r in c.rows)
    s["quality"] = _quality(c.rows)
    info = next((r.get("judge_model") for r in c.rows if r.get("judge_model")), None) or {}
    s["judge_parameters"] = info.get("parameters") if info.get("kind") == "transformers" else None
    s.update(consistency=None, inconsistent=None, prefers_first=None, prefers_second=None, votes=None,
             annotators=None, inter_annotator=None)
    if c.kind == "llm" and judged:
        inconsistent = [r for r in judged if r.get("consistent") is False]
        # the same position preferred in both orders: A's verdict flips from win (A first) to loss (B first)
        views = [[o.get("verdict") for o in r.get("orders", [])] for r in inconsistent]
        s["consistency"] = sum(1 for r in judged if r.get("consistent")) / len(judged)
        s["inconsistent"] = len(inconsistent)
        s["prefers_first"] = sum(1 for v in views if v == ["win", "loss"])
        s["prefers_second"] = sum(1 for v in views if v == ["loss", "win"])
    if c.kind == "human":
        votes = [r.get("votes") or [] for r in c.rows]
        s["votes"] = sum(len(v) for v in votes)
        s["annotators"] = sorted({v["annotator"] for vs in votes for v in vs})
        overlap = [vs for vs in votes if len(vs) >= 2]
        if overlap:
            v1 = [vs[0]["verdict"] for vs in overlap]
            v2 = [vs[1]["verdict"] for vs in overlap]
            s["inter_annotator"] = {"n": len(overlap), "kappa": stats.cohen_kappa(v1, v2),
                                    "tie_discounted_accuracy": stats.tie_discounted_accuracy(v1, v2)}
    s["categories"] = _breakdown(judged, lambda r: r.get("category") or "general")
    s["per_turn"] = _breakdown(judged, lambda r: int(r.get("turn") or 1)) if len(turns) > 1 else {}
    s["lengths"] = None
    if judged:
        diffs = [x - y for x, y in zip(la, lb)]
        decisive = [(r, d) for r, d in zip(judged, diffs) if d != 0 and r["verdict"] != "tie"]
        s["lengths"] = {
            "mean_a": mean(la), "mean_b": mean(lb), "median_a": median(la), "median_b": median(lb),
            "a_longer": sum(d > 0 for d in diffs) / len(diffs),
            "longer_preferred": sum(1 for r, d in decisive if (r["verdict"] == "win") == (d > 0)) / max(1, len(decisive)),
        }
    s["judge_notes"] = _judge_notes(c)
    s["system_notes"] = _system_notes(c)
    return s


def _system_notes(c: Comparison) -> list[str]:
    """What each side is (model, size, adapter) and how many of its answers are empty or cut short."""
    notes = []
    n = len(c.rows)
    for side, name in (("a", c.a), ("b", c.b)):
        info = (c.rows[0].get(side) or {}) if c.rows else {}
        cfg = info.get("config") or {}
        what = info.get("model") or "answers from a file"
        if info.get("adapter"):
            what += f" + the adapter {info['adapter']} (merged into the base it trained on)"
        elif cfg.get("quantization") == "nf4":
            what += " in 4-bit NF4 weights (dequantized), as a QLoRA run starts from"
        if cfg.get("parameters"):
            what += f", {cfg['parameters'] / 1e6:.1f} M parameters"
        line = f"{side.upper()} = {name}: {what}."
        empty = sum(1 for r in c.rows if not (r.get(f"output_{side}") or "").strip())
        cut = sum(1 for r in c.rows if ((r.get(side) or {}).get("config") or {}).get("hit_max_new_tokens"))
        if empty:
            line += f" {empty} of {n} answers are EMPTY."
        if cut:
            line += f" {cut} of {n} answers stopped at max_new_tokens ({cfg.get('max_new_tokens')}) and are cut short."
        notes.append(line)
    return notes


def _breakdown(rows: list[dict], key) -> dict:
    by: dict = defaultdict(list)
    for r in rows:
        by[key(r)].append(r["verdict"])
    return {k: {"n": len(v), "win": v.count("win"), "tie": v.count("tie"), "loss": v.count("loss"),
                "win_rate": stats.win_rate(v)} for k, v in sorted(by.items())}


def difficulty_terms(comparisons: list[Comparison]) -> dict[str, dict]:
    """AlpacaEval 2's instruction-difficulty term where one judge compared several systems with the same
    reference: for each such comparison, each prompt's difficulty from the other systems' scores on it."""
    families: dict[tuple, list[Comparison]] = defaultdict(list)
    for c in comparisons:
        if c.kind == "llm":
            families[(c.judge, c.b)].append(c)
    out = {}
    for fam in families.values():
        if len({c.a for c in fam}) < 2:
            continue
        by_system = {c.a: {"\x00".join(map(str, row_key(r))): (r["score"] if r.get("score") is not None
                                                               else stats.SCORE[r["verdict"]]) for r in c.judged}
                     for c in fam}
        for c in fam:
            d = stats.instruction_difficulty(by_system, c.a)
            out[c.key] = {row_key(r): d.get("\x00".join(map(str, row_key(r))), 0.0) for r in c.judged}
    return out


def _judge_notes(c: Comparison) -> list[str]:
    notes = []
    first = c.rows[0] if c.rows else {}
    info = first.get("judge_model") or {}
    if info.get("kind") == "transformers":
        params = info.get("parameters")
        size = f"{params / 1e6:.1f} M parameters" if params else "unknown size"
        how = ("picks the verdict string with the highest log-probability (constrained decoding)"
               if info.get("decoding") == "constrained" else "generates its verdict locally")
        notes.append(f"This judge is a local transformers model ({info.get('model')}, {size}) that {how}.")
        if params is not None and params < 1e9:
            notes.append(f"It is a {'tiny' if params < 100e6 else 'small'} model (under 1 B parameters): its verdicts "
                         "are close to noise and say nothing about answer quality (a 135 M judge picks the answer "
                         "shown first). Use a strong judge (an OpenAI-compatible endpoint) for real conclusions.")
    if c.kind == "human":
        notes.append("Human votes from a blind A/B Argilla dataset (order randomized per pair, un-blinded at pull).")
    return notes


def agreements(comparisons: list[Comparison]) -> list[dict]:
    """Every two judges of the same (A, B) systems, on the pairs both judged (humans: majority verdict)."""
    out = []
    for i, x in enumerate(comparisons):
        for y in comparisons[i + 1:]:
            if (x.a, x.b) != (y.a, y.b):
                continue
            vx = {row_key(r): r["verdict"] for r in x.judged}
            vy = {row_key(r): r["verdict"] for r in y.judged}
            shared = sorted(set(vx) & set(vy))
            if not shared:
                continue
            a, b = [vx[k] for k in shared], [vy[k] for k in shared]
            # the human side first when there is one
            if y.kind == "human" and x.kind != "human":
                x_, y_ = y, x
            else:
                x_, y_ = x, y
            out.append({
                "first": x_.judge, "second": y_.judge, "a": x.a, "b": x.b, "n": len(shared),
                "human_llm": (x.kind == "human") != (y.kind == "human"),
                "kappa": stats.cohen_kappa(a, b), "tie_discounted_accuracy": stats.tie_discounted_accuracy(a, b),
                "raw_agreement": sum(p == q for p, q in zip(a, b)) / len(shared),
            })
    return out


# ---------------------------------------------------------------------------------------------- provenance


def provenance(comparisons: list[Comparison], args: ReportArgs, single: dict | None = None) -> dict:
    systems: dict[str, dict] = {}
    judges: dict[str, dict] = {}
    firsts = [(c.judge, c.kind, c.backend, c.rows[0], (("a", c.a), ("b", c.b))) for c in comparisons if c.rows]
    firsts += [(judge, "llm", rows[0].get("backend", ""), rows[0], (("a", system),))
               for (judge, system), rows in (single or {}).items()]
    for judge, kind, backend, r, sides in firsts:
        for side, name in sides:
            info = r.get(side) or {}
            systems.setdefault(name, {k: info.get(k) or None for k in ("model", "adapter", "config")})
        judges[judge] = {
            "kind": kind, "backend": backend,
            **{k: r.get(k) for k in ("judge_description", "judge_fingerprint", "judge_model")},
        }
    prov = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "systems": systems,
        "judges": judges,
        "judgment_files": {p: sha256_file(p)[:16] for p in args.judgments},
        "code_version": _git_version(),
    }
    trained = {name: s["config"]["training"] for name, s in systems.items()
               if isinstance(s.get("config"), dict) and s["config"].get("training")}
    if trained:
        prov["training_data"] = trained  # recorded by `generate` from each adapter's finetune run
    if args.manifest:
        m = Path(args.manifest)
        prov["data_manifest"] = {"path": str(m), "sha256": sha256_file(m)}
        try:
            manifest = json.loads(m.read_text(encoding="utf-8"))
            prov["data_manifest"]["summary"] = {k: manifest[k] for k in ("name", "counts", "count", "n", "budget", "created")
                                                if k in manifest}
        except (json.JSONDecodeError, OSError):
            pass
    if args.run_dir:
        prov["training_run"] = _run_dir_info(Path(args.run_dir))
    return prov


def _run_dir_info(run_dir: Path) -> dict:
    info: dict = {"path": str(run_dir)}
    prov = run_dir / "provenance.json"
    if prov.is_file():
        try:
            data = json.loads(prov.read_text(encoding="utf-8"))
            info["provenance"] = {k: data.get(k) for k in ("base_model", "data", "manifest", "global_step",
                                                            "last_train_loss", "last_dev_loss", "finished") if k in data}
        except (json.JSONDecodeError, OSError):
            info["provenance"] = "unreadable provenance.json"
    for name in ("resolved_config.yaml", "config.yaml", "hyperparameters.yaml", "resolved_config.json", "config.json"):
        p = run_dir / name
        if p.is_file():
            info["config_file"] = name
            info["config_sha256"] = sha256_file(p)
            try:
                import yaml

                cfg = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
                flat = {k: v for k, v in cfg.items() if isinstance(v, (str, int, float, bool))} if isinstance(cfg, dict) else {}
                info["config"] = dict(list(flat.items())[:30])
            except Exception:  # a config we cannot read is still hashed
                pass
            break
    return info


def _git_version() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------------------------------------- samples


def samples(c: Comparison, k: int, seed: int) -> list[dict]:
    """Up to k pairs, spread over wins, ties, losses, inconsistent and failed ones."""
    rng = random.Random(f"{seed}:{c.key}")
    buckets: dict[str, list[dict]] = defaultdict(list)
    for r in c.rows:
        tag = r.get("verdict") or "not judged"
        if r.get("consistent") is False:
            tag = "inconsistent"
        buckets[tag].append(r)
    for b in buckets.values():
        rng.shuffle(b)
    picked: list[dict] = []
    while len(picked) < k and any(buckets.values()):
        for tag in ("win", "tie", "loss", "inconsistent", "not judged"):
            if buckets.get(tag) and len(picked) < k:
                picked.append(buckets[tag].pop())
    out = []
    for r in picked:
        if r.get("judge_kind") == "human":
            why = [f"{v['annotator']}: {v['verdict']}" + (f" — {v['rationale']}" if v.get("rationale") else "")
                   for v in r.get("votes", [])]
        else:
            why = [f"order {o['order'].upper()} → {o.get('raw') or 'none'} ({o.get('verdict') or o.get('error')}): "
                   f"{_clip(o.get('reply') or '', 600)}" for o in r.get("orders", [])]
        out.append({"id": r["id"] + (f" (turn {r['turn']})" if int(r.get("turn") or 1) > 1 else ""),
                    "category": r.get("category"), "prompt": r.get("prompt", ""),
                    "output_a": r.get("output_a", ""), "output_b": r.get("output_b", ""),
                    "verdict": r.get("verdict") or "not judged", "consistent": r.get("consistent"),
                    "error": r.get("error"), "why": why})
    return out


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------------------------------- output


def pct(x) -> str:
    return "–" if x is None or x != x else f"{100 * x:.1f} %"


def num(x, digits=3) -> str:
    if x is None or x != x:
        return "–"
    return f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"


def _human_agreement(result: dict, agree: list[dict]) -> dict | None:
    return next((g for g in agree if g["human_llm"] and (g["a"], g["b"]) == (result["a"], result["b"])
                 and result["judge"] in (g["first"], g["second"])), None)


def lengths_by_system(comparisons: list[Comparison]) -> dict[str, list[int]]:
    out: dict[str, dict] = {}
    for c in comparisons:
        for r in c.rows:
            out.setdefault(c.a, {})[row_key(r)] = _len(r.get("output_a"))
            out.setdefault(c.b, {})[row_key(r)] = _len(r.get("output_b"))
    return {name: list(v.values()) for name, v in out.items()}


def main(args: ReportArgs) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_judgments(args.judgments)
    comparisons = group(rows)
    difficulty = difficulty_terms(comparisons)
    results = [analyse(c, args.bootstrap, args.seed, difficulty.get(c.key)) for c in comparisons]
    agree = agreements(comparisons)
    for r in results:
        r["human_agreement"] = _human_agreement(r, agree) if r["kind"] == "llm" else None
        r["trust"] = headline.trust(r, r["human_agreement"]) if r["kind"] == "llm" else \
            {"trusted": True, "reasons": [], "facts": []}
        r["headline"] = headline.sentence(r)
        r["warnings"] = headline.warnings(r)
    single = grades.group([r for r in rows if r.get("mode") == "single"])
    graded = [grades.analyse(judge, system, g, args.bootstrap, args.seed) for (judge, system), g in single.items()]
    for g in graded:
        g["headline"] = grades.sentence(g)
    boards = leaderboard.build(comparisons, results, n_boot=min(args.bootstrap, 1000), seed=args.seed)
    for i, board in enumerate(boards, 1):
        board["chart_file"] = "leaderboard.png" if i == 1 else f"leaderboard-{i}.png"
        data = charts.chart_leaderboard(board["systems"])
        (out / board["chart_file"]).write_bytes(data)
        board["chart"] = base64.b64encode(data).decode()
    shown = [r for r in results if r["n"] > 0]
    prov = provenance(comparisons, args, single)
    images = {}
    if shown:
        images["bars"] = charts.chart_bars(shown)
        images["win_rates"] = charts.chart_win_rates(shown)
        images["lengths"] = charts.chart_lengths(lengths_by_system(comparisons))
    if any(g["graded"] for g in graded):
        images["grades"] = charts.chart_grades([g for g in graded if g["graded"]])
    for name, data in images.items():
        (out / f"{name}.png").write_bytes(data)
    sample_sets = {c.key: samples(c, args.samples, args.seed) for c in comparisons}
    spent = [x["spent"] for x in results + graded if x.get("spent") is not None]
    cost = {"total": sum(x["cost"] for x in results + graded),
            "spent": sum(spent) if len(spent) == len(results) + len(graded) else None}
    chosen = selection_rows(args.selections, boards)
    context = dict(title=args.title, selections=chosen, results=results, grades=graded, agreements=agree, provenance=prov, boards=boards,
                   samples=sample_sets, primary=headline.PRIMARY, cost=cost,
                   grade_categories=sorted({c for g in graded for c in g["categories"]}),
                   charts={k: base64.b64encode(images[k]).decode() if k in images else ""
                           for k in ("bars", "win_rates", "lengths", "grades", "leaderboard")}, pct=pct, num=num,
                   has_human=any(c.kind == "human" for c in comparisons),
                   provenance_json=json.dumps({k: v for k, v in prov.items() if k not in ("systems", "judges")},
                                              indent=2, default=str),
                   provenance_full_json=json.dumps(prov, indent=2, default=str))
    (out / "report.html").write_text(render_html(context), encoding="utf-8")
    (out / "report.md").write_text(render_md(context), encoding="utf-8")
    public_boards = [{k: v for k, v in b.items() if k != "chart"} for b in boards]
    summary = {"results": results, "grades": graded, "leaderboards": public_boards, "agreements": agree, "cost": cost,
               "selections": chosen, "provenance": prov}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    if boards:
        (out / "leaderboard.json").write_text(json.dumps({"leaderboards": public_boards, "date": prov["date"]},
                                                         indent=2, default=str) + "\n", encoding="utf-8")
    print(f"report: {out / 'report.html'} and {out / 'report.md'}", file=sys.stderr)
    for r in results:
        print("  " + r["headline"], file=sys.stderr)
    for g in graded:
        print("  " + g["headline"], file=sys.stderr)
    return out


def selection_rows(path: str, boards: list[dict]) -> list[dict]:
    """The systems' training selections (``eval study``'s selections.json), each with its outcome on the first
    leaderboard (rank, rating, win rate against the reference), in leaderboard order."""
    if not path:
        return []
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"--selections {path}: cannot read it ({err})") from None
    board = boards[0] if boards else {"systems": []}
    rank = {s["system"]: (i, s) for i, s in enumerate(board["systems"], 1)}
    rows = []
    for system, sel in data.items():
        i, s = rank.get(system, (None, {}))
        p = sel.get("profile") or {}
        rows.append({"system": system, "strategy": sel.get("strategy"), "examples": sel.get("examples"),
                     "mean_answer_words": sel.get("mean_answer_words"), "mean_quality": p.get("mean_quality"),
                     "lima_markers": p.get("lima_markers"), "in_lima_band": p.get("in_lima_band"),
                     "clusters": p.get("clusters"), "mean_similarity": p.get("mean_similarity"),
                     "data_sha256": sel.get("data_sha256"), "rank": i, "rating": s.get("rating"),
                     "win_rate": s.get("win_rate"), "reference": board.get("reference")})
    return sorted(rows, key=lambda r: (r["rank"] is None, r["rank"] or 0))


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).resolve().parent / "templates")),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "html.j2"), default=False),
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
    )
    env.filters.update(clip=_clip, oneline=lambda text: str(text).replace("\n", " "),
                       quote=lambda text: "> " + str(text).replace("\n", "\n> "))
    return env


def render_html(context: dict) -> str:
    return _env().get_template("report.html.j2").render(**context)


def render_md(context: dict) -> str:
    return _env().get_template("report.md.j2").render(**context)


__all__ = ["main", "analyse", "group", "agreements"]
