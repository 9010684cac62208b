"""``python -m eval report``: judgments → report.html (self-contained), report.md, summary.json, charts.

    python -m eval report --judgments judgments-llm.jsonl judgments-human.jsonl --out report/ \\
        --manifest data/lima/manifest.json --run-dir runs/lima

One comparison = one judge on one (A, B) pair of systems. For each: LIMA's
win/tie/loss bars, the win rate (ties half) with Wilson and paired-bootstrap
95 % intervals, a sign-test p-value, a length-controlled win rate fitted on
these prompts, the judge's position consistency, per-category results,
length statistics and sample pairs. Then human–LLM agreement on the pairs
both judged, and provenance.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import random
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, median

from . import stats
from .config import ReportArgs
from .files import read_records, sha256_file

COLORS = {"win": "#2e7d32", "tie": "#9e9e9e", "loss": "#c62828"}


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
    out: dict[tuple, Comparison] = {}
    for r in rows:
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


def _len(text: str | None) -> int:
    return len(text or "")


def analyse(c: Comparison, n_boot: int, seed: int) -> dict:
    judged = c.judged
    verdicts = [r["verdict"] for r in judged]
    la = [_len(r.get("output_a")) for r in judged]
    lb = [_len(r.get("output_b")) for r in judged]
    s = stats.summarize(verdicts, la, lb, n_boot=n_boot, seed=seed)
    s.update(judge=c.judge, kind=c.kind, a=c.a, b=c.b, key=c.key, pairs=len(c.rows))
    s["not_judged"] = len(c.rows) - len(judged)
    s["budget_skipped"] = sum(1 for r in c.rows if r.get("verdict") is None and "budget" in (r.get("error") or ""))
    s["unparseable_pairs"] = sum(1 for r in c.rows if r.get("verdict") is None and (r.get("error") or "").startswith("unparseable"))
    s["parse_failures"] = sum(int(r.get("parse_failures") or 0) for r in c.rows)
    s["cost"] = sum(float(r.get("cost") or 0) for r in c.rows)
    s["tokens"] = sum(sum((r.get("tokens") or {}).values()) for r in c.rows)
    if c.kind == "llm" and judged:
        consistent = [r for r in judged if r.get("consistent")]
        inconsistent = [r for r in judged if r.get("consistent") is False]
        first = sum(1 for r in inconsistent if [o.get("raw") for o in r.get("orders", [])] == ["A", "A"])
        second = sum(1 for r in inconsistent if [o.get("raw") for o in r.get("orders", [])] == ["B", "B"])
        s["consistency"] = len(consistent) / len(judged)
        s["inconsistent"] = len(inconsistent)
        s["prefers_first"] = first
        s["prefers_second"] = second
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
    by_cat: dict[str, list[str]] = defaultdict(list)
    for r in judged:
        by_cat[r.get("category") or "general"].append(r["verdict"])
    s["categories"] = {
        cat: {"n": len(v), "win": v.count("win"), "tie": v.count("tie"), "loss": v.count("loss"),
              "win_rate": stats.win_rate(v)}
        for cat, v in sorted(by_cat.items())
    }
    if judged:
        diffs = [x - y for x, y in zip(la, lb)]
        longer_wins = [r for r, d in zip(judged, diffs) if d != 0]
        s["lengths"] = {
            "mean_a": mean(la), "mean_b": mean(lb), "median_a": median(la), "median_b": median(lb),
            "a_longer": sum(d > 0 for d in diffs) / len(diffs),
            "longer_preferred": (
                sum(1 for r, d in zip(judged, diffs) if d != 0 and (r["verdict"] == "win") == (d > 0) and r["verdict"] != "tie")
                / max(1, sum(1 for r in longer_wins if r["verdict"] != "tie"))
            ),
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
            vx = {r["id"]: r["verdict"] for r in x.judged}
            vy = {r["id"]: r["verdict"] for r in y.judged}
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


# ---------------------------------------------------------------------------------------------- charts


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def chart_bars(results: list[dict]) -> bytes:
    """LIMA's figure 1: one horizontal bar per comparison, win / tie / loss shares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['a']} vs {r['b']}\n{r['judge']}" for r in results]
    fig, ax = plt.subplots(figsize=(8.5, 0.75 * len(results) + 1.2))
    for i, r in enumerate(results):
        n = max(1, r["n"])
        left = 0.0
        for k in ("win", "tie", "loss"):
            share = r[k] / n
            ax.barh(i, share, left=left, color=COLORS[k], edgecolor="white",
                    label={"win": "A wins", "tie": "Tie", "loss": "B wins"}[k] if i == 0 else None)
            if share >= 0.06:
                ax.text(left + share / 2, i, f"{share:.0%}", ha="center", va="center", color="white", fontsize=9)
            left += share
    ax.set_yticks(range(len(results)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of prompts")
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    ax.set_title("Preference of A over B (LIMA figure 1 style)", pad=28)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def chart_win_rates(results: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 0.6 * len(results) + 1.2))
    for i, r in enumerate(results):
        lo, hi = r["wilson"]
        ax.errorbar(r["win_rate"], i, xerr=[[r["win_rate"] - lo], [hi - r["win_rate"]]], fmt="o", color="#1565c0",
                    capsize=4, label="win rate (Wilson 95 %)" if i == 0 else None)
        if r.get("lc_win_rate") is not None:
            ax.plot(r["lc_win_rate"], i, "D", color="#ef6c00", label="length-controlled" if i == 0 else None)
    ax.axvline(0.5, color="#666", lw=0.8, ls="--")
    ax.set_yticks(range(len(results)), [f"{r['a']} vs {r['b']} — {r['judge']}" for r in results], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel("win rate of A (ties count half)")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def chart_lengths(comparisons: list[Comparison]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems: dict[str, list[int]] = {}
    for c in comparisons:
        for r in c.rows:
            systems.setdefault(c.a, [])
            systems.setdefault(c.b, [])
        seen_a = {r["id"] for r in c.rows}
        if len(systems[c.a]) < len(seen_a):
            systems[c.a] = [_len(r.get("output_a")) for r in c.rows]
            systems[c.b] = [_len(r.get("output_b")) for r in c.rows]
    fig, ax = plt.subplots(figsize=(8.5, 2.8))
    names = list(systems)
    ax.boxplot([systems[n] or [0] for n in names], orientation="horizontal", tick_labels=names)
    ax.set_xlabel("answer length (characters)")
    ax.set_title("Answer lengths")
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


# ---------------------------------------------------------------------------------------------- provenance


def provenance(comparisons: list[Comparison], args: ReportArgs) -> dict:
    systems: dict[str, dict] = {}
    judges: dict[str, dict] = {}
    for c in comparisons:
        for r in c.rows[:1]:
            for side, name in (("a", c.a), ("b", c.b)):
                info = r.get(side) or {}
                systems.setdefault(name, {k: info.get(k) for k in ("model", "adapter", "config") if info.get(k)})
            judges[c.judge] = {
                "kind": c.kind, "backend": c.backend,
                **({k: r.get(k) for k in ("judge_description", "judge_fingerprint", "judge_model") if r.get(k)}),
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
        out.append({"id": r["id"], "category": r.get("category"), "prompt": r.get("prompt", ""),
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


def main(args: ReportArgs) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = load_judgments(args.judgments)
    comparisons = group(rows)
    results = [analyse(c, args.bootstrap, args.seed) for c in comparisons]
    shown = [r for r in results if r["n"] > 0]
    agree = agreements(comparisons)
    prov = provenance(comparisons, args)
    charts = {}
    if shown:
        charts["bars"] = chart_bars(shown)
        charts["win_rates"] = chart_win_rates(shown)
        charts["lengths"] = chart_lengths(comparisons)
    for name, data in charts.items():
        (out / f"{name}.png").write_bytes(data)
    sample_sets = {c.key: samples(c, args.samples, args.seed) for c in comparisons}
    context = dict(title=args.title, results=results, agreements=agree, provenance=prov, samples=sample_sets,
                   charts={k: base64.b64encode(v).decode() for k, v in charts.items()}, pct=pct, num=num,
                   has_human=any(c.kind == "human" for c in comparisons),
                   provenance_json=json.dumps({k: v for k, v in prov.items() if k not in ("systems", "judges")},
                                              indent=2, default=str))
    (out / "report.html").write_text(render_html(context), encoding="utf-8")
    (out / "report.md").write_text(render_md(context), encoding="utf-8")
    summary = {"results": results, "agreements": agree, "provenance": prov}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"report: {out / 'report.html'} and {out / 'report.md'}", file=sys.stderr)
    return out


def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).resolve().parent / "templates")),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True, lstrip_blocks=True,
    )
    return env


def render_html(context: dict) -> str:
    return _env().get_template("report.html.j2").render(**context)


def render_md(context: dict) -> str:
    pct_, num_ = context["pct"], context["num"]
    lines = [f"# {context['title']}", ""]
    lines += [f"_Generated {context['provenance']['date']} by `python -m eval report`._", ""]
    if context["charts"]:
        lines += ["![win / tie / loss](bars.png)", "", "![win rates](win_rates.png)", ""]
    lines += ["## Results", "",
              "| A vs B | judge | n | win | tie | loss | win rate | Wilson 95 % | bootstrap 95 % | sign test p | LC win rate | consistency |",
              "|---|---|--:|--:|--:|--:|--:|---|---|--:|--:|--:|"]
    for r in context["results"]:
        lines.append(
            f"| {r['a']} vs {r['b']} | {r['judge']} | {r['n']} | {r['win']} | {r['tie']} | {r['loss']} | "
            f"{pct_(r['win_rate'])} | {pct_(r['wilson'][0])} – {pct_(r['wilson'][1])} | "
            f"{pct_(r['bootstrap'][0])} – {pct_(r['bootstrap'][1])} | {num_(r['sign_test_p'])} | "
            f"{pct_(r.get('lc_win_rate'))} | {pct_(r.get('consistency')) if r['kind'] == 'llm' else 'n/a'} |")
    lines.append("")
    for r in context["results"]:
        extra = []
        if r["not_judged"]:
            extra.append(f"{r['not_judged']} of {r['pairs']} pairs not judged ({r['unparseable_pairs']} unparseable, "
                         f"{r['budget_skipped']} skipped by the budget)")
        if r["parse_failures"]:
            extra.append(f"{r['parse_failures']} unparseable replies")
        if r["kind"] == "llm":
            extra.append(f"cost ${r['cost']:.4f}, {r['tokens']} tokens")
        for note in r.get("system_notes", []) + r["judge_notes"] + extra:
            lines.append(f"- **{r['judge']}** ({r['a']} vs {r['b']}): {note}")
    lines += ["", "## Human–LLM agreement", ""]
    if context["agreements"]:
        lines += ["| A vs B | judge 1 | judge 2 | shared pairs | Cohen's kappa | tie-discounted accuracy | exact agreement |",
                  "|---|---|---|--:|--:|--:|--:|"]
        for g in context["agreements"]:
            lines.append(f"| {g['a']} vs {g['b']} | {g['first']} | {g['second']} | {g['n']} | {num_(g['kappa'])} | "
                         f"{pct_(g['tie_discounted_accuracy'])} | {pct_(g['raw_agreement'])} |")
    else:
        lines.append("No two judges share pairs (judge the same pairs with humans and an LLM to measure agreement).")
    for r in context["results"]:
        if r.get("inter_annotator"):
            ia = r["inter_annotator"]
            lines.append(f"\nBetween annotators ({r['a']} vs {r['b']}): kappa {num_(ia['kappa'])}, tie-discounted "
                         f"accuracy {pct_(ia['tie_discounted_accuracy'])} on {ia['n']} pairs with two or more votes.")
    lines += ["", "## Per category", ""]
    for r in context["results"]:
        lines += [f"**{r['a']} vs {r['b']} — {r['judge']}**", "", "| category | n | win | tie | loss | win rate |",
                  "|---|--:|--:|--:|--:|--:|"]
        for cat, v in r["categories"].items():
            lines.append(f"| {cat} | {v['n']} | {v['win']} | {v['tie']} | {v['loss']} | {pct_(v['win_rate'])} |")
        lines.append("")
    lines += ["## Lengths", "", "| A vs B | judge | mean A | mean B | median A | median B | A longer | longer preferred | length coef |",
              "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for r in context["results"]:
        L = r.get("lengths")
        if L:
            lines.append(f"| {r['a']} vs {r['b']} | {r['judge']} | {L['mean_a']:.0f} | {L['mean_b']:.0f} | {L['median_a']:.0f} | "
                         f"{L['median_b']:.0f} | {pct_(L['a_longer'])} | {pct_(L['longer_preferred'])} | {num_(r.get('lc_length_coef'))} |")
    lines += ["", "## Sample pairs", ""]
    for key, items in context["samples"].items():
        lines += [f"### {key}", ""]
        for s in items:
            lines += [f"**{s['id']}** ({s['category']}) — verdict: **{s['verdict']}**"
                      + (" (inconsistent across orders)" if s["consistent"] is False else ""), "",
                      "> " + _clip(s["prompt"], 400).replace("\n", "\n> "), "",
                      "A: " + _clip(s["output_a"], 400).replace("\n", " "), "",
                      "B: " + _clip(s["output_b"], 400).replace("\n", " "), ""]
            lines += [f"- {w.replace(chr(10), ' ')}" for w in s["why"]] + [""]
    lines += ["## Provenance", "", "```json", json.dumps(context["provenance"], indent=2, default=str), "```", ""]
    return "\n".join(lines)


__all__ = ["main", "analyse", "group", "agreements"]
