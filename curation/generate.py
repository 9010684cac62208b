"""generate: new candidates from a teacher model, written as a pool file that ``ingest`` reads.

Three methods (``generate.method``), each writing ``<out>`` (JSONL, the example schema), ``<out>.rejected.jsonl``
(what was made and not kept, with the reason) and ``<out>.report.json``:

- ``self-instruct`` (Wang et al. 2023; Alpaca): few-shot prompts mixing seed tasks and tasks generated earlier
  ask the teacher for new tasks; a task is kept only when its ROUGE-L with every known task (the workspace's
  candidates, ``novelty_against``, the seeds, the tasks kept so far) is below 0.7 and its MiniLM similarity
  below ``embedding_threshold``; the teacher then answers the kept tasks.
- ``backtranslate`` (Humpback, Li et al. 2024): a backward model — trained with ``python -m finetune
  --swap_roles true`` on the seed pairs, or given — writes the instruction each unlabeled document answers;
  a pointwise judge (``self-curation``, 1-5) scores each pair and the pairs at ``min_score`` or above are kept.
- ``answers``: the teacher's answer to existing prompts (a file, or the workspace's candidates), so curators and
  ``select`` can choose between the pool's answer and the teacher's.

Every record's ``meta.generate`` holds its provenance: method, teacher, template version, seed ids, round (and
the novelty or self-curation figures); its ``source`` is ``<method>:<teacher>``, which Argilla shows as
metadata. Requests go through the judge engine (:mod:`curation.teacher`): concurrency, retries, cost, budget
and a reply cache, so a killed run resumes from the cache and a re-run rewrites the same file (no duplicates).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

from contract.io import sha256_file, write_json, write_jsonl
from contract.readers import iter_records, read_examples
from contract.schema import DataError, example_id, make_example, record_to_example
from curation.config import CurationConfig, GenerateConfig
from curation.novelty import NoveltyFilter, max_pairwise_rouge
from curation.teacher import Teacher, Template
from curation.workspace import Workspace

# Self-Instruct's filter of tasks a text model cannot do (its `blacklist`, trimmed to whole words).
UNSUITABLE = re.compile(r"\b(images?|graphs?|pictures?|files?|maps?|draw|plot|go to|videos?|audio|music|"
                        r"flowcharts?|diagrams?)\b", re.I)
# a task that talks about the request itself (a small teacher echoes the template)
ECHO = re.compile(r"numbered list|continuing from \d+|one task per line|new tasks?\b|examples of tasks", re.I)
_NUMBERED = re.compile(r"^\s*(?:task\s*)?(\d{1,3})\s*[.):]\s*(?:instruction\s*:\s*)?(.+?)\s*$", re.I)


def out_path(cfg: CurationConfig) -> Path:
    g = cfg.generate
    return Path(g.out) if g.out else Path(cfg.workspace) / "generated" / f"{g.method}.jsonl"


def parse_tasks(reply: str) -> list[str]:
    """The tasks of a numbered list, in order (continuation lines join their task).

    >>> parse_tasks("Here you go:\\n7. Name three rivers.\\n8) Explain\\n   why the sky is blue.\\n")
    ['Name three rivers.', 'Explain why the sky is blue.']
    >>> parse_tasks("no list here")
    Traceback (most recent call last):
    ...
    judging.parsers.Unparseable: no numbered tasks in the reply
    """
    from judging.parsers import Unparseable

    tasks: list[str] = []
    for line in (reply or "").splitlines():
        m = _NUMBERED.match(line)
        if m:
            tasks.append(m.group(2).strip())
        elif tasks and line.strip() and not line.lstrip().startswith(("#", "---")):
            tasks[-1] += " " + line.strip()
    tasks = [t.strip(" *\"'") for t in tasks if t.strip(" *\"'")]
    if not tasks:
        raise Unparseable("no numbered tasks in the reply")
    return tasks


def task_problem(task: str, g: GenerateConfig) -> str | None:
    """Why a generated task is unusable, before the novelty filter (None: usable).

    >>> g = GenerateConfig()
    >>> task_problem("Draw a map of your town.", g), task_problem("Hi", g), task_problem("Name two rivers.", g)
    ('unsuitable', 'too_short', None)
    >>> task_problem("Why is the sky blue? Here is the numbered list continuing from 7:", g)
    'echoes_prompt'

    """
    words = len(task.split())
    if words < g.min_words:
        return "too_short"
    if words > g.max_words:
        return "too_long"
    if UNSUITABLE.search(task):
        return "unsuitable"
    if ECHO.search(task):
        return "echoes_prompt"
    if not task[0].isascii() or not any(c.isalpha() for c in task):
        return "not_text"
    return None


# --------------------------------------------------------------------------- inputs


def _user_text(rec: dict) -> str | None:
    msgs = rec.get("messages") or rec.get("conversations")
    if isinstance(msgs, list):
        if msgs and isinstance(msgs[0], str):  # LIMA: alternating turns, the user's first
            return msgs[0].strip() or None
        for m in msgs:
            if isinstance(m, dict) and (m.get("role") or m.get("from")) in ("user", "human"):
                return str(m.get("content") or m.get("value") or "").strip() or None
    for key in ("instruction", "prompt", "question"):
        if rec.get(key):
            extra = rec.get("input") if key == "instruction" else None
            return (str(rec[key]).strip() + (f"\n\n{str(extra).strip()}" if extra else "")) or None
    return None


def _resolve_examples(spec: str, ws: Workspace) -> Path:
    """A file, or the name of a workspace selection (``curated``, ``signals``, …)."""
    if Path(spec).expanduser().exists():
        return Path(spec).expanduser()
    if re.fullmatch(r"[\w-]+", spec) and ws.selection(spec).exists():
        return ws.selection(spec)
    raise FileNotFoundError(f"generate: {spec!r} is neither a file nor a selection of the workspace {ws.root} "
                            f"(run `python -m curation select` first, or give a file)")


def seed_tasks(spec: str, ws: Workspace) -> list[tuple[str, str]]:
    """(id, instruction) of every seed; a record needs only a user turn or an instruction/prompt field."""
    path = _resolve_examples(spec, ws)
    out, bad = [], []
    for where, rec, _raw in iter_records(path):
        text = _user_text(rec) if isinstance(rec, dict) else None
        if not text:
            bad.append(f"{where.get('path')}:{where.get('line') or where.get('record')}")
            continue
        sid = str(rec.get("id") or hashlib.sha256(text.encode()).hexdigest()[:16])
        out.append((sid, text))
    if not out:
        raise DataError("no seed tasks (records need a user message or an instruction/prompt field)", path=path)
    if bad:
        print(f"generate: skipped {len(bad)} seed records without a task (first: {bad[0]})", file=sys.stderr)
    return out


def seed_pairs(spec: str, ws: Workspace) -> list[dict]:
    path = _resolve_examples(spec, ws)
    return read_examples(path, on_error="skip").examples


def pool_prompts(cfg: CurationConfig, ws: Workspace) -> list[tuple[str, str]]:
    """(id, prompt) of the workspace's candidates and the ``novelty_against`` files."""
    out = []
    if ws.candidates.exists():
        import pyarrow.parquet as pq

        t = pq.read_table(ws.candidates, columns=["id", "prompt"])
        out += list(zip(t.column("id").to_pylist(), t.column("prompt").to_pylist()))
    for spec in cfg.generate.novelty_against:
        for where, rec, _raw in iter_records(spec):
            text = _user_text(rec) if isinstance(rec, dict) else None
            if text:
                out.append((str(rec.get("id") or f"{spec}:{where.get('line') or where.get('record')}"), text))
    return out


def documents(g: GenerateConfig) -> list[tuple[str, str]]:
    """(id, text) of the unlabeled documents within the length bounds."""
    src = g.documents
    if not src:
        raise ValueError("generate.documents is not set: backtranslate needs unlabeled documents (--documents)")
    p = Path(src).expanduser()
    texts: list[tuple[str, str]] = []
    if p.is_file() and p.suffix.lower() in (".txt", ".md"):
        texts = [(f"{p.name}", p.read_text(encoding="utf-8"))]
    elif p.is_dir() and not any((p / f).exists() for f in ("dataset_info.json", "dataset_dict.json", "state.json")):
        texts = [(f.name, f.read_text(encoding="utf-8")) for f in sorted(p.iterdir())
                 if f.is_file() and f.suffix.lower() in (".txt", ".md")]
        if not texts:
            raise FileNotFoundError(f"generate.documents: no .txt or .md files in {p}")
    else:
        for where, rec, _raw in iter_records(src.removeprefix("hf:") if src.startswith("hf:") else src,
                                             split=g.documents_split):
            if not isinstance(rec, dict) or g.text_field not in rec:
                raise DataError(f"no column {g.text_field!r} (generate.text_field)", path=src,
                                line=where.get("line"))
            texts.append((str(rec.get("id") or f"{Path(src).name}:{where.get('line') or where.get('record')}"),
                          str(rec[g.text_field] or "")))
    out = [(i, t.strip()) for i, t in texts if g.min_doc_chars <= len(t.strip()) <= g.max_doc_chars]
    cap = g.max_documents or g.limit
    return out[:cap] if cap else out


def prompts_to_answer(cfg: CurationConfig, ws: Workspace) -> list[tuple[str, list[dict]]]:
    """(id, conversation up to the last answer) of each prompt to answer."""
    g, out = cfg.generate, []
    if g.prompts:
        rows = []
        for where, rec, _raw in iter_records(_resolve_examples(g.prompts, ws)):
            try:  # a whole example (its last answer is dropped below), or a prompt alone
                ex = record_to_example(rec, where=where)
                rows.append((ex["id"], ex["messages"]))
            except DataError:
                text = _user_text(rec) if isinstance(rec, dict) else None
                if text:
                    msgs = [{"role": "user", "content": text}]
                    rows.append((str(rec.get("id") or example_id(msgs)), msgs))
    else:
        if not ws.candidates.exists():
            raise FileNotFoundError(f"answers: no prompts: give --prompts FILE or run `python -m curation ingest` "
                                    f"into {ws.root} first")
        import pyarrow.parquet as pq

        t = pq.read_table(ws.candidates, columns=["id", "messages"])
        rows = list(zip(t.column("id").to_pylist(), t.column("messages").to_pylist()))
    for rid, msgs in rows:
        msgs = [{"role": m["role"], "content": m["content"]} for m in msgs]
        while msgs and msgs[-1]["role"] == "assistant":
            msgs = msgs[:-1]
        if msgs and msgs[-1]["role"] == "user":
            out.append((rid, msgs))
    return out[:g.limit] if g.limit else out


# --------------------------------------------------------------------------- the teacher


def make_teacher(cfg: CurationConfig, ws: Workspace, *, model: str | None = None, adapter: str | None = None,
                 kind: str | None = None, role: str = "teacher") -> Teacher:
    g = cfg.generate
    cache = Path(g.cache_dir) if g.cache_dir else ws.cache / "teacher"
    return Teacher(kind=kind or g.teacher_backend, model=model if model is not None else g.teacher_model,
                   base_url=g.teacher_base_url if (kind or g.teacher_backend) == "openai" else "",
                   adapter=adapter if adapter is not None else g.teacher_adapter, cache_dir=cache,
                   concurrency=g.concurrency, max_cost=g.max_cost, price_input=g.price_input,
                   price_output=g.price_output, timeout=g.timeout, seed=g.seed, role=role)


def _system(g: GenerateConfig) -> list[dict]:
    return [{"role": "system", "content": g.system_prompt}] if g.system_prompt else []


def _source(method: str, teacher: Teacher) -> str:
    """``<method>:<teacher>``, with a local model named by its folder (not its whole path)."""
    cfg = teacher.cfg
    name = Path(cfg.model).name if cfg.kind == "transformers" and os.sep in str(cfg.model) else cfg.model
    if cfg.kind == "transformers" and cfg.adapter:
        name += "+" + Path(cfg.adapter).name
    return f"{method}:{name}"


def _answer(teacher: Teacher, g: GenerateConfig, convs: list[list[dict]], template: Template) -> list:
    return teacher.ask("answer", convs, temperature=g.temperature, top_p=g.top_p, max_tokens=g.max_tokens,
                       fingerprint={"template": template.version}, desc="teacher: answers")


# --------------------------------------------------------------------------- self-instruct


def self_instruct(cfg: CurationConfig, ws: Workspace, teacher: Teacher) -> tuple[list[dict], list[dict], dict]:
    g = cfg.generate
    template = Template.load("self-instruct-v1")
    answers_template = Template.load("answers-v1")
    if not g.seeds:
        raise ValueError("generate.seeds is not set: self-instruct needs seed tasks (--seeds FILE or a selection "
                         "name such as curated)")
    seeds = seed_tasks(g.seeds, ws)
    embed = None
    if g.embedding_threshold < 1:
        from curation.embed import embed_texts

        sc = cfg.score

        def embed(texts: list[str]):
            return embed_texts(texts, model_name=sc.embedding_model, runtime=sc.embedding_runtime)
    nf = NoveltyFilter(rouge_threshold=g.rouge_threshold, embedding_threshold=g.embedding_threshold, embed=embed)
    pool = pool_prompts(cfg, ws)
    known = pool + seeds
    if known:
        vectors = None
        if embed is not None:
            from curation.embed import embed as cached_embed

            ids = [hashlib.sha256(t.encode()).hexdigest()[:16] for _, t in known]
            vectors = cached_embed(ids, [t for _, t in known], model_name=cfg.score.embedding_model,
                                   cache_root=ws.cache / "embeddings", kind="generate-known",
                                   runtime=cfg.score.embedding_runtime, desc="generate: embedding the pool")
        nf.add_many([i for i, _ in known], [t for _, t in known], vectors)

    rng = random.Random(g.seed)
    t0, cpu0 = time.time(), cpu_seconds()
    kept: list[dict] = []  # {"task", "seed_ids", "novelty"}
    rejected: list[dict] = []
    max_requests = g.max_requests or 4 * g.num_instructions
    requests = proposed = 0
    while len(kept) < g.num_instructions and requests < max_requests and not teacher.stats.budget_exhausted:
        batch, shots_of = [], []
        for _ in range(min(g.requests_per_batch, max_requests - requests)):
            shots = rng.sample(seeds, min(g.seed_shots, len(seeds)))
            mine = rng.sample(kept, min(g.generated_shots, len(kept)))
            examples = [t for _, t in shots] + [k["task"] for k in mine]
            listing = "\n".join(f"{n}. {' '.join(t.split())}" for n, t in enumerate(examples, 1))
            batch.append([{"role": "user", "content": template.render(
                num_tasks=g.tasks_per_request, examples=listing, start=len(examples) + 1)}])
            shots_of.append([sid for sid, _ in shots])
        requests += len(batch)
        outcomes = teacher.ask("instructions", batch, parse=parse_tasks, temperature=g.temperature, top_p=g.top_p,
                               max_tokens=g.instruction_max_tokens, fingerprint={"template": template.version},
                               desc=f"teacher: new tasks ({len(kept)}/{g.num_instructions} kept)")
        for outcome, seed_ids in zip(outcomes, shots_of):
            if not outcome.ok:
                continue
            tasks = list(outcome.value)
            if outcome.finish_reason == "length" and len(tasks) > 1:
                rejected.append({"task": tasks.pop(), "reason": "cut_off", "seed_ids": seed_ids})
            for task in tasks[:g.tasks_per_request]:
                proposed += 1
                task = " ".join(task.split())
                problem = task_problem(task, g)
                verdict = None if problem else nf.check(task)
                if problem or not verdict.novel:
                    rejected.append({"task": task, "reason": problem or verdict.reason, "seed_ids": seed_ids,
                                     **({"novelty": verdict.to_json()} if verdict else {})})
                    continue
                tid = hashlib.sha256(task.encode()).hexdigest()[:16]
                nf.add(tid, task)
                kept.append({"task": task, "seed_ids": seed_ids, "novelty": verdict.to_json()})
                if len(kept) >= g.num_instructions:
                    break
            if len(kept) >= g.num_instructions:
                break

    phase = {"seconds": round(time.time() - t0, 1), "cpu_seconds": round(cpu_seconds() - cpu0, 1)}
    phase["novel_per_cpu_hour"] = round(len(kept) * 3600 / phase["cpu_seconds"], 1) if phase["cpu_seconds"] else None
    outcomes = _answer(teacher, g, [_system(g) + [{"role": "user", "content": k["task"]}] for k in kept],
                       answers_template)
    records = []
    source = _source("self-instruct", teacher)
    for k, outcome in zip(kept, outcomes):
        if not outcome.ok:
            rejected.append({"task": k["task"], "reason": f"no answer ({outcome.status.value})",
                             "seed_ids": k["seed_ids"]})
            continue
        meta = _provenance("self-instruct", teacher, cfg, [template.version, answers_template.version],
                           k["seed_ids"], novelty=k["novelty"], finish_reason=outcome.finish_reason)
        records.append(make_example(_system(g) + [{"role": "user", "content": k["task"]},
                                                  {"role": "assistant", "content": outcome.value}], source,
                                    {"generate": meta}))
    novel = max_pairwise_rouge([r["messages"][-2]["content"] for r in records], [t for _, t in known])
    counts = {"instruction_requests": requests, "tasks_proposed": proposed, "tasks_kept": len(kept),
              "answered": len(records), "seeds": len(seeds), "pool_prompts": len(pool),
              "rejected_by_reason": _by_reason(rejected), "max_rouge_l": novel, "instruction_phase": phase}
    return records, rejected, counts


# --------------------------------------------------------------------------- backtranslate


def backward_model(cfg: CurationConfig, ws: Workspace, out: Path) -> tuple[str, str]:
    """(base model, adapter) of the backward model: the one given, or one trained now with ``python -m finetune
    --swap_roles true`` on the seed pairs (reused while the seeds, base and settings are the same)."""
    g = cfg.generate
    if g.backward_model:
        p = Path(g.backward_model).expanduser()
        if (p / "adapter_config.json").exists():
            import yaml

            base = (yaml.safe_load((p / "config.yaml").read_text()) or {}).get("model") if (
                p / "config.yaml").exists() else None
            return str(g.backward_base or base or g.teacher_model), str(p)
        return g.backward_model, ""
    if not g.seeds:
        raise ValueError("backtranslate needs generate.backward_model (a finetune run folder) or generate.seeds "
                         "(seed pairs to train a backward model on)")
    base = g.backward_base or g.teacher_model
    if not base:
        raise ValueError("backtranslate: no base for the backward model: set generate.backward_base or "
                         "generate.teacher_model")
    pairs = seed_pairs(g.seeds, ws)
    if not pairs:
        raise DataError("no seed pairs (user + assistant) to train the backward model on", path=g.seeds)
    folder = out.parent / f"{out.stem}.backward"
    data = folder / "seeds.jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(data, pairs)
    identity = {"base": base, "recipe": g.backward_recipe, "overrides": g.backward_overrides,
                "seeds_sha256": sha256_file(data)}
    run_dir = folder / "run"
    stamp = folder / "backward.json"
    if (run_dir / "adapter_config.json").exists() and stamp.exists() and \
            json.loads(stamp.read_text()) == identity:
        return base, str(run_dir)
    cmd = [sys.executable, "-m", "finetune"]
    if g.backward_recipe:
        cmd += ["--config", g.backward_recipe]
    cmd += ["--model", base, "--data", str(data), "--swap_roles", "true", "--output_dir", str(run_dir),
            "--overwrite", "true"]
    for k, v in g.backward_overrides.items():
        cmd += [f"--{k}", v if isinstance(v, str) else json.dumps(v)]
    print(f"generate: training the backward model ({len(pairs)} seed pairs, roles swapped) -> {run_dir}",
          file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"training the backward model failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    write_json(stamp, identity)
    return base, str(run_dir)


def backtranslate(cfg: CurationConfig, ws: Workspace, out: Path) -> tuple[list[dict], list[dict], dict, Teacher]:
    from judging import JudgeRunError, Rating, rate_many

    g = cfg.generate
    template = Template.load("backtranslate-v1")
    docs = documents(g)
    if not docs:
        raise ValueError(f"generate.documents: no document of {g.min_doc_chars}-{g.max_doc_chars} characters in "
                         f"{g.documents}")
    base, adapter = backward_model(cfg, ws, out)
    backward = make_teacher(cfg, ws, model=base, adapter=adapter, kind="transformers")
    outcomes = backward.ask("backtranslate", [[{"role": "user", "content": d}] for _, d in docs],
                            temperature=g.temperature, top_p=g.top_p, max_tokens=g.backward_max_tokens,
                            fingerprint={"template": template.version}, desc="backward model: instructions")
    pairs, rejected = [], []
    for (did, doc), o in zip(docs, outcomes):
        instruction = " ".join((o.value or "").split()) if o.ok else ""
        if not instruction:
            rejected.append({"document_id": did, "reason": f"no instruction ({o.status.value})"})
            continue
        pairs.append((did, instruction, doc))
    judge_kind = g.judge_backend or g.teacher_backend
    judge_model = g.judge_model or g.teacher_model or base
    overrides = {"kind": judge_kind, "model": judge_model}
    if judge_kind == "openai":
        overrides["base_url"] = g.judge_base_url or g.teacher_base_url or None
    api_key = None
    if judge_kind == "openai":  # the judge's own key, else the teacher's (the same endpoint, often)
        from judging.config import api_key_env

        names = [*api_key_env("judge"), *api_key_env("teacher")]
        api_key = next((os.environ[n] for n in names if os.environ.get(n)), None)
    try:
        run = rate_many([(i, d) for _, i, d in pairs], g.judge, cache_dir=ws.cache / "judge",
                        concurrency=g.concurrency, max_cost=g.max_cost or None, progress=True, api_key=api_key,
                        **overrides)
        results = run.results
    except JudgeRunError as err:
        results = err.run.results
        print(f"generate: {err}", file=sys.stderr)
    records, scores = [], []
    source = _source("backtranslate", backward)
    for (did, instruction, doc), r in zip(pairs, results):
        score = r.score if isinstance(r, Rating) else None
        scores.append(score)
        meta = _provenance("backtranslate", backward, cfg, [template.version], [], document_id=did,
                           backward_base=base, backward_adapter=adapter, judge=g.judge,
                           judge_model=f"{judge_kind}:{judge_model}", score=score,
                           rationale=r.rationale if isinstance(r, Rating) else None)
        ex = make_example([{"role": "user", "content": instruction}, {"role": "assistant", "content": doc}], source,
                          {"generate": meta})
        if score is not None and score >= g.min_score:
            records.append(ex)
        else:
            rejected.append({**ex, "reason": "low_score" if score is not None else
                             f"not scored ({getattr(r, 'status', None) and r.status.value})"})
    hist = {str(s): scores.count(s) for s in range(1, 6)}
    counts = {"documents": len(docs), "instructions": len(pairs), "kept": len(records), "scores": hist,
              "unscored": scores.count(None), "backward_model": {"base": base, "adapter": adapter},
              "seed_ids": [], "rejected_by_reason": _by_reason(rejected)}
    return records, rejected, counts, backward


# --------------------------------------------------------------------------- answers


def answers(cfg: CurationConfig, ws: Workspace, teacher: Teacher) -> tuple[list[dict], list[dict], dict]:
    g = cfg.generate
    template = Template.load("answers-v1")
    todo = prompts_to_answer(cfg, ws)
    if not todo:
        raise ValueError("answers: no prompts that end with a user turn")
    convs = [(_system(g) if msgs[0]["role"] != "system" else []) + msgs for _, msgs in todo]
    outcomes = _answer(teacher, g, convs, template)
    records, rejected = [], []
    source = _source("answers", teacher)
    for (pid, _), conv, o in zip(todo, convs, outcomes):
        if not o.ok:
            rejected.append({"prompt_id": pid, "reason": f"no answer ({o.status.value})", "error": o.error})
            continue
        meta = _provenance("answers", teacher, cfg, [template.version], [pid], answer_of=pid,
                           finish_reason=o.finish_reason)
        records.append(make_example(conv + [{"role": "assistant", "content": o.value}], source, {"generate": meta}))
    return records, rejected, {"prompts": len(todo), "answered": len(records),
                               "rejected_by_reason": _by_reason(rejected)}


# --------------------------------------------------------------------------- the step


def _provenance(method: str, teacher: Teacher, cfg: CurationConfig, templates: list[str], seed_ids: list[str],
                **extra) -> dict:
    g = cfg.generate
    return {"method": method, "teacher": teacher.describe, "template": templates, "seed_ids": list(seed_ids),
            "round": g.round, "temperature": g.temperature, "seed": g.seed,
            **{k: v for k, v in extra.items() if v is not None}}


def _by_reason(rejected: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rejected:
        key = str(r.get("reason")).split(" (")[0]
        out[key] = out.get(key, 0) + 1
    return out


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system), in seconds."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(cfg: CurationConfig, ws: Workspace, *, force: bool = False) -> dict:
    """Write the method's pool file; returns the report (also written beside it)."""
    g = cfg.generate
    out = out_path(cfg)
    started, cpu_started = time.time(), cpu_seconds()
    teacher = None
    if g.method != "backtranslate":  # backtranslate's model is the backward model, its judge the judge
        if not g.teacher_model and not os.environ.get("CURATION_TEACHER_MODEL"):
            raise ValueError("no teacher: set generate.teacher_model (--teacher_model, an endpoint's model name or "
                             "a local model: path, Hub id or smollm2-135m-instruct) or CURATION_TEACHER_MODEL")
        teacher = make_teacher(cfg, ws)
    if g.method == "self-instruct":
        records, rejected, counts = self_instruct(cfg, ws, teacher)
        worker = teacher
    elif g.method == "answers":
        records, rejected, counts = answers(cfg, ws, teacher)
        worker = teacher
    else:
        records, rejected, counts, worker = backtranslate(cfg, ws, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, records)
    write_jsonl(Path(f"{out}.rejected.jsonl"), rejected)
    seconds, cpu = time.time() - started, cpu_seconds() - cpu_started
    stats = worker.stats.to_json() if worker else {}
    report = {"method": g.method, "out": str(out), "records": len(records), "rejected": len(rejected),
              "teacher": worker.describe if worker else None, "round": g.round, "seconds": round(seconds, 1),
              "per_hour": round(len(records) * 3600 / seconds, 1) if seconds > 0 else None,
              "cpu_seconds": round(cpu, 1), "per_cpu_hour": round(len(records) * 3600 / cpu, 1) if cpu > 0 else None,
              "counts": counts, "teacher_stats": stats, "config": cfg.section_dict("generate"),
              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(Path(f"{out}.report.json"), report)
    return report


def summary(report: dict) -> str:
    c, s = report["counts"], report.get("teacher_stats") or {}
    lines = [f"generate {report['method']}: {report['records']} candidates -> {report['out']} "
             f"({report['rejected']} rejected, see {report['out']}.rejected.jsonl)"]
    if report["method"] == "self-instruct":
        r = c["max_rouge_l"]
        lines.append(f"  {c['tasks_proposed']} tasks proposed in {c['instruction_requests']} requests, "
                     f"{c['tasks_kept']} novel ({c['instruction_phase']['novel_per_cpu_hour']} per CPU-hour); "
                     f"highest ROUGE-L among them {r['within']}, to the pool {r['to_pool']}")
    elif report["method"] == "backtranslate":
        lines.append(f"  {c['documents']} documents, {c['instructions']} instructions, self-curation scores "
                     + ", ".join(f"{k}: {v}" for k, v in c["scores"].items()) + f"; kept {c['kept']}")
    if c.get("rejected_by_reason"):
        lines.append("  rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(c["rejected_by_reason"].items())))
    if s:
        lines.append(f"  teacher {report['teacher']}: {s.get('requests', 0)} requests, {s.get('cached', 0)} from "
                     f"the cache, {s.get('failed', 0)} failed, ${s.get('cost', 0):.4f} spent"
                     + (f" (its ${report['config']['max_cost']:g} cap, generate.max_cost, was reached: "
                        "a re-run continues from the cache with the same cap, which the workspace's config.yaml "
                        "keeps; --max_cost 0 lifts it)" if s.get("budget_exhausted") else ""))
    lines.append(f"  {report['seconds']}s, {report['per_hour']} per hour ({report['cpu_seconds']} CPU s, "
                 f"{report['per_cpu_hour']} per CPU-hour); ingest it: python -m curation ingest "
                 f"{report['out']}")
    return "\n".join(lines)
