"""The workspace folder: paths, atomic writes, step reports and the lock.

Layout (see curation/README.md)::

    <workspace>/
      config.yaml               resolved config of the latest step
      .pipeline.lock            held while a pipeline step runs
      candidates.parquet        ingest: one row per candidate
      rejects.jsonl             ingest: records that could not be read, with file:line and reason
      signals.parquet           score: one row per candidate, same order as candidates.parquet
      embeddings.npy            score: float32 (n, d), L2-normalized, rows aligned with signals.parquet
      prompt_embeddings.npy     score: prompt-only embeddings (when decontaminating against eval prompts)
      cache/embeddings/…        score: embedding chunks by model and text kind, so an interrupted run resumes
      cache/judge/…             score: the judge's cache (judging.py)
      shortlist.jsonl           push: the shortlisted candidate ids with their AI suggestions
      decisions.parquet         pull: one decision per shortlisted record (human or AI)
      disputed.jsonl            pull: records the curators disagree on
      selection/<strategy>.jsonl  select: the chosen examples with meta.why
      <step>.json               each step's report: its fingerprint, counts and summary

A step writes its outputs to temporary files renamed into place, then its
report; a report whose fingerprint matches the step's inputs means the step
is up to date and is skipped (``--force`` re-runs it).

The stage graph: every report records the sha256 of each file it read
(``inputs``: workspace artifacts by name, pools as ``pool:<absolute path>``,
other files as ``file:<absolute path>``) and of each file it wrote
(``outputs``). Before a step reads an artifact, :meth:`Workspace.check_fresh`
walks that chain back to the pools: a file that is not what its step last
wrote, or that was made from inputs that have changed since, stops the step
with the stale stage and the commands that bring it up to date.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from contract.io import atomic_path, write_json


class WorkspaceLocked(RuntimeError):
    pass


class StaleError(RuntimeError):
    """An artifact was made from inputs that have changed since (or is not what its step wrote)."""


#: The steps in order; each artifact's producing step.
ORDER = ("ingest", "score", "push", "pull", "select", "export")
PRODUCER = {"candidates.parquet": "ingest", "rejects.jsonl": "ingest", "signals.parquet": "score",
            "embeddings.npy": "score", "prompt_embeddings.npy": "score", "shortlist.jsonl": "push",
            "decisions.parquet": "pull", "disputed.jsonl": "pull"}


def producer(name: str) -> str:
    if name.startswith("selection/"):
        return "select"
    return PRODUCER[name]


class Workspace:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # paths
    @property
    def candidates(self) -> Path:
        return self.root / "candidates.parquet"

    @property
    def rejects(self) -> Path:
        return self.root / "rejects.jsonl"

    @property
    def signals(self) -> Path:
        return self.root / "signals.parquet"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings.npy"

    @property
    def prompt_embeddings(self) -> Path:
        return self.root / "prompt_embeddings.npy"

    @property
    def shortlist(self) -> Path:
        return self.root / "shortlist.jsonl"

    @property
    def decisions(self) -> Path:
        return self.root / "decisions.parquet"

    @property
    def disputed(self) -> Path:
        return self.root / "disputed.jsonl"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def selection(self, strategy: str) -> Path:
        return self.root / "selection" / f"{strategy}.jsonl"

    def report_path(self, step: str) -> Path:
        return self.root / f"{step}.json"

    # reports
    def read_report(self, step: str) -> dict | None:
        path = self.report_path(step)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None

    def write_report(self, step: str, report: dict) -> None:
        write_json(self.report_path(step), report)

    def up_to_date(self, step: str, fp: str, outputs: list[Path]) -> dict | None:
        """The step's report when it was made from the same inputs and its outputs still exist."""
        report = self.read_report(step)
        if report and report.get("fingerprint") == fp and all(p.exists() for p in outputs):
            return report
        return None

    # the stage graph

    def name(self, path: Path) -> str:
        """An artifact's name: its path relative to the workspace (``selection/signals.jsonl``)."""
        return Path(path).relative_to(self.root).as_posix()

    def hashes(self, paths) -> dict[str, str]:
        """``{artifact name: sha256}`` of the workspace files among ``paths`` that exist."""
        return {self.name(p): self.sha256(p) for p in paths if Path(p).exists()}

    def sha256(self, path: str | os.PathLike) -> str:
        """sha256 of a file, remembered while its size and mtime stay the same (one step hashes a file once)."""
        from contract.io import sha256_file

        st = os.stat(path)
        key = (str(path), st.st_size, st.st_mtime_ns)
        cache = self.__dict__.setdefault("_sha_cache", {})
        if key not in cache:
            cache[key] = sha256_file(path)
        return cache[key]

    def step_report(self, name: str) -> dict | None:
        """The report of the step that produced artifact ``name`` (a strategy's entry for a selection)."""
        step = producer(name)
        report = self.read_report(step)
        if report and step == "select":
            return report.get("strategies", {}).get(Path(name).stem)
        return report

    def command(self, step: str) -> str:
        return f"python -m curation {step} --workspace {self.root}"

    def _refresh(self, chain: list[str], wanted_by: str) -> str:
        """The commands that remake each artifact of ``chain`` (the stale one first), then ``wanted_by``."""
        steps = list(dict.fromkeys(producer(n) for n in reversed(chain)))
        text = "; then ".join(f"`{self.command(s)}`" for s in steps)
        return f"{text}; then `{wanted_by}` again" if wanted_by not in steps else text

    def check_fresh(self, names: list, wanted_by: str) -> None:
        """Raise :class:`StaleError` (or FileNotFoundError) unless every artifact in ``names`` is what its step
        last wrote, from inputs that are still the same, all the way back to the pools."""
        seen: set[str] = set()

        def verify(name: str, chain: list[str]) -> None:
            if name in seen:
                return
            seen.add(name)
            chain = [*chain, name]
            path = self.root / name
            step = producer(name)
            if not path.exists():
                raise FileNotFoundError(f"{path} not found: run `{self.command(step)}` first")
            report = self.step_report(name)
            made = (report or {}).get("outputs", {}).get(name)
            if made != self.sha256(path):
                why = ("has no record of the step that wrote it" if report is None or made is None else
                       f"is not the file `{step}` last wrote at {report.get('finished_at', '?')}")
                raise StaleError(f"{name} {why}. To bring {wanted_by} up to date run "
                                 + self._refresh(chain, wanted_by).replace(f"{self.command(step)}`",
                                                                           f"{self.command(step)} --force`", 1))
            for inp, sha in (report.get("inputs") or {}).items():
                kind, _, where = inp.partition(":")
                if kind in ("pool", "file"):
                    if Path(where).is_file() and self.sha256(where) != sha:
                        what = "pool" if kind == "pool" else "input file"
                        raise StaleError(f"{name} is stale: {what} {where} has changed since `{step}` read it at "
                                         f"{report.get('finished_at', '?')}. To bring {wanted_by} up to date run "
                                         + self._refresh(chain, wanted_by))
                    continue
                current = self.root / inp
                if not current.exists() or self.sha256(current) != sha:
                    up = producer(inp)
                    when = (self.read_report(up) or {}).get("finished_at") if up != "select" else None
                    raise StaleError(f"{name} is stale: `{step}` made it from an earlier {inp} (`{up}` ran again"
                                     + (f" at {when}" if when else "") + f"). To bring {wanted_by} up to date run "
                                     + self._refresh(chain, wanted_by))
                verify(inp, chain)

        for n in names:
            verify(self.name(n) if isinstance(n, Path) else n, [])

    def require(self, path: Path, step: str) -> Path:
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `python -m curation {step} --workspace {self.root}` first")
        return path

    @contextlib.contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Hold ``<workspace>/.lock`` for the duration of a step (one step at a time per workspace)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".pipeline.lock"
        fh = open(path, "a+", encoding="utf-8")
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                raise WorkspaceLocked(f"workspace {self.root} is busy: {holder}; wait for it to finish") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} running `{command}` since {time.strftime('%Y-%m-%d %H:%M:%S')}")
            fh.flush()
            yield
        finally:
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
            fh.close()  # closing releases the flock


# ---------------------------------------------------------------------- atomic writes


def write_parquet(path: str | os.PathLike, table) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def save_npy(path: str | os.PathLike, array) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


#: Bumped when a step's output for the same inputs changes, so old workspaces re-run instead of skipping.
PIPELINE_VERSION = 3


def fingerprint(*parts: Any) -> str:
    """sha256 of a JSON rendering of ``parts`` (dicts with sorted keys) and the pipeline version."""
    buf = io.StringIO()
    json.dump([PIPELINE_VERSION, *parts], buf, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(buf.getvalue().encode("utf-8")).hexdigest()


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
