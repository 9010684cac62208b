"""rest: the ReST loop (Gulcehre et al. 2023; ReST-EM, Singh et al. 2024) over K rounds, each one

1. **grow**: sample ``samples`` answers per prompt from the base model plus the previous round's adapter
   (temperature > 0), through the judge engine's local backend and its reply cache;
2. **improve**: score every sample with a pointwise judge (or a reward function) and keep those at the round's
   threshold or above (``threshold + (k-1) * threshold_step``: thresholds rise per round);
3. **fine-tune**: ``python -m finetune`` (a subprocess) trains the round's adapter from the base on the kept
   pairs plus the curated data (``curated``: the curator pass);
4. **evaluate**: ``python -m eval generate`` answers ``eval_prompts`` with the round's adapter and ``python -m eval
   judge`` compares them with the reference; ``python -m eval report`` puts every round on one leaderboard.

Each stage of each round writes its outputs, then a stamp (``round-<k>/<stage>.done.json``) holding the hash of
its inputs and settings: a re-run skips stamped stages whose inputs are unchanged, and a stage killed half way
runs again from the caches (grow and improve: the reply caches; fine-tune: its newest checkpoint; eval generate:
the answers already written). ``report.json`` / ``report.md`` show per round: kept share, score distribution,
answer lengths, and the win rate against the reference with its interval — so an adapter that got longer, not
better, is visible.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from contract.io import sha256_file, write_json, write_jsonl, write_text
from contract.schema import make_example
from curation.config import CurationConfig, RestConfig
from curation.teacher import Teacher, Template
from curation.workspace import Workspace


def out_dir(cfg: CurationConfig) -> Path:
    return Path(cfg.rest.out) if cfg.rest.out else Path(cfg.workspace) / "rest"


def threshold(r: RestConfig, k: int) -> float:
    """The keep threshold of round ``k`` (1-based).

    >>> threshold(RestConfig(threshold=3, threshold_step=0.5), 3)
    4.0
    """
    return r.threshold + (k - 1) * r.threshold_step


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            h.update(sha256_file(p).encode() if p.is_file() else str(p).encode())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class Stage:
    """A stage's stamp: done when its stamp holds the current fingerprint of its inputs."""

    def __init__(self, folder: Path, name: str, fp: str):
        self.path, self.fp = folder / f"{name}.done.json", fp

    def done(self) -> bool:
        return self.path.exists() and json.loads(self.path.read_text()).get("fingerprint") == self.fp

    def finish(self, **info) -> None:
        write_json(self.path, {"fingerprint": self.fp, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                     time.gmtime()), **info})


# --------------------------------------------------------------------------- inputs


def load_prompts(cfg: CurationConfig, ws: Workspace) -> list[tuple[str, list[dict]]]:
    from curation.generate import prompts_to_answer

    shim = CurationConfig(workspace=cfg.workspace)
    shim.generate.prompts, shim.generate.limit = cfg.rest.prompts, cfg.rest.limit
    return prompts_to_answer(shim, ws)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n{tail}")


def _reward_fn(spec: str) -> Callable[[str, str], float]:
    module, name = spec.split(":", 1)
    return getattr(importlib.import_module(module), name)


# --------------------------------------------------------------------------- the stages


def grow(cfg: CurationConfig, ws: Workspace, k: int, adapter: str, prompts, folder: Path) -> Path:
    r = cfg.rest
    out = folder / "samples.jsonl"
    stage = Stage(folder, "grow", _digest(r.model, adapter and Path(adapter) / "adapter_model.safetensors",
                                          prompts, r.samples, r.temperature, r.top_p, r.max_tokens, r.seed, k))
    if stage.done() and out.exists():
        return out
    policy = Teacher(kind="transformers", model=r.model, adapter=adapter, cache_dir=ws.cache / "rest-policy",
                     seed=r.seed)
    template = Template.load("answers-v1")
    rows = []
    for j in range(r.samples):
        policy.seed = (r.seed * 1000 + k) * 1000 + j  # a different, reproducible stream per sample
        outcomes = policy.ask("rest-grow", [m for _, m in prompts], temperature=r.temperature, top_p=r.top_p,
                              max_tokens=r.max_tokens, fingerprint={"template": template.version},
                              desc=f"rest round {k}: grow, sample {j + 1}/{r.samples}")
        for (pid, msgs), o in zip(prompts, outcomes):
            if o.ok:
                rows.append({"prompt_id": pid, "sample": j, "messages": msgs, "answer": o.value,
                             "finish_reason": o.finish_reason})
    write_jsonl(out, rows)
    stage.finish(samples=len(rows), policy=policy.describe)
    return out


def improve(cfg: CurationConfig, ws: Workspace, k: int, samples: Path, folder: Path, policy: str) -> Path:
    from judging import JudgeRunError, Rating, rate_many

    r = cfg.rest
    kept_path = folder / "kept.jsonl"
    th = threshold(r, k)
    stage = Stage(folder, "improve", _digest(samples, r.judge, r.reward, r.judge_backend, r.judge_model,
                                             r.judge_base_url, th, r.best_per_prompt))
    if stage.done() and kept_path.exists():
        return kept_path
    rows = _read_jsonl(samples)
    prompt_of = [next(m["content"] for m in reversed(row["messages"]) if m["role"] == "user") for row in rows]
    if r.reward:
        fn = _reward_fn(r.reward)
        scores = [float(fn(p, row["answer"])) for p, row in zip(prompt_of, rows)]
    else:
        kw = {"kind": r.judge_backend, "model": r.judge_model or r.model}
        if r.judge_backend == "openai":
            kw["base_url"] = r.judge_base_url or None
        try:
            results = rate_many([(p, row["answer"]) for p, row in zip(prompt_of, rows)], r.judge,
                                cache_dir=ws.cache / "judge", progress=True, **kw).results
        except JudgeRunError as err:
            print(f"rest: {err}", file=sys.stderr)
            results = err.run.results
        scores = [x.score if isinstance(x, Rating) else None for x in results]
    for row, s in zip(rows, scores):
        row["score"] = s
    write_jsonl(folder / "scored.jsonl", rows)
    by_prompt: dict[str, list[dict]] = {}
    for row in rows:
        if row["score"] is not None and row["score"] >= th:
            by_prompt.setdefault(row["prompt_id"], []).append(row)
    kept = []
    for pid, group in by_prompt.items():
        group.sort(key=lambda x: (-x["score"], x["sample"]))
        for row in group[:r.best_per_prompt or None]:
            meta = {"generate": {"method": "rest", "teacher": policy, "template": [Template.load("answers-v1").version],
                                 "seed_ids": [pid], "round": k, "sample": row["sample"], "score": row["score"],
                                 "threshold": th, "judge": r.reward or r.judge}}
            kept.append(make_example(row["messages"] + [{"role": "assistant", "content": row["answer"]}],
                                     f"rest:round-{k}", meta))
    write_jsonl(kept_path, kept)
    stage.finish(kept=len(kept), scored=sum(s is not None for s in scores), samples=len(rows))
    return kept_path


def finetune(cfg: CurationConfig, ws: Workspace, k: int, kept: Path, folder: Path) -> str:
    from curation.generate import _resolve_examples

    r = cfg.rest
    train = folder / "train.jsonl"
    rows = _read_jsonl(kept)
    if r.curated:
        from contract.readers import read_examples

        rows += read_examples(_resolve_examples(r.curated, ws), on_error="skip").examples
    if not rows:
        raise ValueError(f"rest round {k}: no sample reached the threshold {threshold(r, k)} and no curated data: "
                         "lower rest.threshold, raise rest.samples, or give rest.curated")
    run_dir = folder / "adapter"
    stage = Stage(folder, "finetune", _digest(rows, r.model, r.finetune_recipe, r.finetune_overrides))
    if stage.done() and (run_dir / "adapter_config.json").exists():
        return str(run_dir)
    write_jsonl(train, rows)
    cmd = [sys.executable, "-m", "finetune"]
    if r.finetune_recipe:
        cmd += ["--config", r.finetune_recipe]
    cmd += ["--model", r.model, "--data", train, "--output_dir", run_dir]
    for key, v in r.finetune_overrides.items():
        cmd += [f"--{key}", v if isinstance(v, str) else json.dumps(v)]
    ckpts = run_dir / "checkpoints"
    resumable = ckpts.is_dir() and any(ckpts.glob("checkpoint-*")) and (run_dir / "config.yaml").exists()
    cmd += ["--resume", "true"] if resumable else ["--overwrite", "true"]
    print(f"rest round {k}: fine-tuning on {len(rows)} examples -> {run_dir}"
          + (" (resuming)" if resumable else ""), file=sys.stderr, flush=True)
    _run(cmd, f"rest round {k}: python -m finetune")
    stage.finish(examples=len(rows))
    return str(run_dir)


def _judge_args(r: RestConfig) -> list[str]:
    args = ["--judge", r.eval_judge, "--backend", r.judge_backend, "--model", r.judge_model or r.model]
    if r.judge_backend == "openai" and r.judge_base_url:
        args += ["--base_url", r.judge_base_url]
    return args


def reference(cfg: CurationConfig, root: Path) -> Path:
    r = cfg.rest
    if r.reference:
        return Path(r.reference)
    out = root / "reference" / "generations.jsonl"
    stage = Stage(out.parent, "generate", _digest(r.model, Path(r.eval_prompts), r.eval_max_tokens))
    if not stage.done():
        out.parent.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "eval", "generate", "--model", r.model, "--prompts", r.eval_prompts, "--out", out,
              "--generator", "base", "--max_new_tokens", r.eval_max_tokens, "--progress", "false"],
             "rest: the reference answers (python -m eval generate)")
        stage.finish()
    return out


def evaluate(cfg: CurationConfig, k: int, adapter: str, ref: Path, folder: Path, cache: Path) -> Path:
    r = cfg.rest
    ev = folder / "eval"
    ev.mkdir(parents=True, exist_ok=True)
    gens, judgments = ev / "generations.jsonl", ev / "judgments.jsonl"
    weights = _digest(Path(adapter) / "adapter_model.safetensors")
    stage = Stage(folder, "evaluate", _digest(weights, ref, r.eval_prompts, r.eval_judge, r.judge_backend,
                                              r.judge_model, r.eval_max_tokens))
    if stage.done() and judgments.exists():
        return judgments
    made_by = folder / "evaluate.adapter.json"
    if gens.exists() and (not made_by.exists() or json.loads(made_by.read_text()).get("weights") != weights):
        gens.unlink()  # answers of another adapter: never passed off as this one's (same weights: resumed)
    write_json(made_by, {"adapter": adapter, "weights": weights})
    _run([sys.executable, "-m", "eval", "generate", "--model", r.model, "--adapter", adapter, "--prompts",
          r.eval_prompts, "--out", gens, "--generator", f"rest-round-{k}", "--max_new_tokens", r.eval_max_tokens,
          "--progress", "false"], f"rest round {k}: python -m eval generate")
    if judgments.exists():
        judgments.unlink()
    _run([sys.executable, "-m", "eval", "judge", "--a", gens, "--b", ref, "--out", judgments, *_judge_args(r),
          "--cache_dir", cache, "--progress", "false"], f"rest round {k}: python -m eval judge")
    stage.finish()
    return judgments


# --------------------------------------------------------------------------- the loop


def _lengths(texts: list[str]) -> dict:
    words = [len(t.split()) for t in texts]
    return {"mean_words": round(statistics.fmean(words), 1) if words else None,
            "median_words": statistics.median(words) if words else None}


def round_summary(cfg: CurationConfig, k: int, folder: Path) -> dict:
    r = cfg.rest
    scored = _read_jsonl(folder / "scored.jsonl")
    kept = _read_jsonl(folder / "kept.jsonl")
    scores = [x["score"] for x in scored if x["score"] is not None]
    dist: dict[str, int] = {}
    for s in scores:
        key = f"{s:g}"
        dist[key] = dist.get(key, 0) + 1
    return {"round": k, "threshold": threshold(r, k), "samples": len(scored), "scored": len(scores),
            "kept": len(kept), "kept_share": round(len(kept) / len(scored), 3) if scored else None,
            "score_mean": round(statistics.fmean(scores), 3) if scores else None,
            "scores": dict(sorted(dist.items(), key=lambda kv: float(kv[0]))),
            "sample_length": _lengths([x["answer"] for x in scored]),
            "kept_length": _lengths([x["messages"][-1]["content"] for x in kept]),
            "adapter": str(folder / "adapter")}


def run(cfg: CurationConfig, ws: Workspace) -> dict:
    r = cfg.rest
    if not r.model:
        raise ValueError("rest.model is not set: the base policy (--model PATH, a Hub id or smollm2-135m-instruct)")
    root = out_dir(cfg)
    root.mkdir(parents=True, exist_ok=True)
    from curation.generate import cpu_seconds

    started, cpu_started = time.time(), cpu_seconds()
    prompts = load_prompts(cfg, ws)
    if not prompts:
        raise ValueError("rest: no prompts (rest.prompts, or the workspace's candidates)")
    ref = reference(cfg, root) if r.eval_prompts else None
    adapter, rounds, judgment_files = "", [], []
    for k in range(1, r.rounds + 1):
        folder = root / f"round-{k}"
        folder.mkdir(parents=True, exist_ok=True)
        policy = f"transformers:{r.model}" + (f"+{adapter}" if adapter else "")
        samples = grow(cfg, ws, k, adapter, prompts, folder)
        kept = improve(cfg, ws, k, samples, folder, policy)
        adapter = finetune(cfg, ws, k, kept, folder)
        summary = round_summary(cfg, k, folder)
        if ref is not None:
            judgment_files.append(evaluate(cfg, k, adapter, ref, folder, ws.cache / "judge"))
        rounds.append(summary)
        print(f"rest round {k}: kept {summary['kept']}/{summary['samples']} samples at >= {summary['threshold']:g} "
              f"(mean score {summary['score_mean']}), adapter {adapter}", file=sys.stderr, flush=True)
    if judgment_files:
        _run([sys.executable, "-m", "eval", "report", "--judgments", *judgment_files, "--out", root / "report",
              "--title", "ReST rounds against the reference"], "rest: python -m eval report")
        results = json.loads((root / "report" / "summary.json").read_text())["results"]
        for summary in rounds:
            res = next((x for x in results if x["a"] == f"rest-round-{summary['round']}"), None)
            if res:
                summary["eval"] = {"against": res["b"], "judge": res["judge"], "n": res["n"],
                                   "win_rate": res["win_rate"], "wilson": res["wilson"],
                                   "mean_length": (res.get("lengths") or {}).get("mean_a"),
                                   "reference_length": (res.get("lengths") or {}).get("mean_b"),
                                   "headline": res.get("headline")}
    report = {"rounds": rounds, "prompts": len(prompts), "model": r.model, "seconds": round(time.time() - started, 1),
              "cpu_seconds": round(cpu_seconds() - cpu_started, 1),
              "config": cfg.section_dict("rest"), "out": str(root)}
    write_json(root / "report.json", report)
    write_text(root / "report.md", markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = [f"# ReST: {len(report['rounds'])} rounds on {report['prompts']} prompts ({report['model']})", "",
             "| round | threshold | kept / samples | kept share | mean score | scores | answer words (all / kept) "
             "| win rate vs reference [95% CI] | eval answer chars (round / reference) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in report["rounds"]:
        e = s.get("eval")
        win = f"{e['win_rate']:.2f} [{e['wilson'][0]:.2f}, {e['wilson'][1]:.2f}] (n={e['n']})" if e and \
            e.get("win_rate") is not None else "-"
        elen = f"{e['mean_length']:.0f} / {e['reference_length']:.0f}" if e and e.get("mean_length") else "-"
        lines.append(f"| {s['round']} | {s['threshold']:g} | {s['kept']} / {s['samples']} | {s['kept_share']} | "
                     f"{s['score_mean']} | {', '.join(f'{k}: {v}' for k, v in s['scores'].items())} | "
                     f"{s['sample_length']['mean_words']} / {s['kept_length']['mean_words'] or '-'} | {win} | {elen} |")
    lines += ["", "A win rate that does not rise while answers grow longer is reward hacking (longer, not better).",
              f"Took {report['seconds']} s ({report.get('cpu_seconds')} CPU s; a resumed run counts only its own "
              f"work). Per-round files: {report['out']}/round-<k>/; the leaderboard: "
              f"{report['out']}/report/report.html.", ""]
    return "\n".join(lines)


def summary(report: dict) -> str:
    return markdown(report)
