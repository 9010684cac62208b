"""Readers: every container of examples (JSONL, JSON, Parquet, CSV, a ``datasets`` ``save_to_disk``
folder, a Hub dataset id) into the example schema of :mod:`contract.schema`.

Containers: JSONL, JSON (a list, or an object with a list under ``data``/``examples``/``train``),
Parquet, CSV, a ``save_to_disk`` folder, or a Hub dataset id (``hf:owner/name`` or ``owner/name``).

Every problem is reported with its place: ``file:line``, or ``file#n`` for the n-th record (from 1) of a
JSON list, a Parquet file or a dataset. With
``on_error="skip"`` an invalid record is kept aside with its reason in ``ReadResult.rejects``
(and written to a rejects file on request): nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from contract.io import write_jsonl
from contract.schema import FILE_SUFFIXES, DataError, place, record_to_example


@dataclass
class Reject:
    """A record that could not be read, with its place and reason."""

    path: str
    line: int | None
    record: str | int | None
    error: str
    raw: Any = None

    @property
    def place(self) -> str:
        """``file:line``, or ``file#n`` for the n-th record (from 1) of a JSON list, Parquet file or dataset."""
        return place(self.path, self.line, self.record)

    def to_json(self) -> dict:
        raw = self.raw
        if isinstance(raw, (bytes, bytearray)):
            raw = raw.decode("utf-8", errors="replace")
        return {"path": self.path, "line": self.line, "record": self.record, "error": self.error, "raw": raw}


@dataclass
class ReadResult:
    examples: list[dict] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    duplicates: int = 0  # records whose id was already read (same content)

    def counts_by_source(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for ex in self.examples:
            counts[ex["source"]] = counts.get(ex["source"], 0) + 1
        return dict(sorted(counts.items()))


# --------------------------------------------------------------------------- containers


def _iter_jsonl(path: Path) -> Iterator[tuple[dict, Any]]:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = {"path": path, "line": lineno}
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")  # tolerate a byte-order mark
            except UnicodeDecodeError as err:
                yield where, DataError(f"bytes that are not UTF-8 at byte {err.start} of the line "
                                       f"({raw[max(0, err.start - 8):err.start + 8]!r})", **where), raw
                continue
            if not text.strip():
                continue
            try:
                yield where, json.loads(text.rstrip("\r\n")), None  # so that colno counts within this line
            except json.JSONDecodeError as err:
                yield where, DataError(f"malformed JSON at column {err.colno}: {err.msg}", **where), text


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"bytes that are not UTF-8 at byte {err.start} "
                        f"({data[max(0, err.start - 8):err.start + 8]!r})", path=path, line=line) from None


def _iter_json(path: Path) -> Iterator[tuple[dict, Any, Any]]:
    text = _read_text(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"malformed JSON at column {err.colno}: {err.msg}", path=path, line=err.lineno) from None
    if isinstance(obj, Mapping):
        for key in ("data", "examples", "train", "rows"):
            if isinstance(obj.get(key), list):
                obj = obj[key]
                break
        else:
            obj = [obj]
    if not isinstance(obj, list):
        raise DataError("expected a JSON list of records (or an object with a list under 'data')", path=path)
    for i, rec in enumerate(obj, start=1):
        yield {"path": path, "record": i}, rec, None


def _iter_csv(path: Path) -> Iterator[tuple[dict, Any, Any]]:
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text))
    try:
        reader.fieldnames  # reads the header, so line_num below counts from it
    except csv.Error as err:
        raise DataError(f"not readable as CSV: {err}", path=path, line=1) from None
    while True:
        line = reader.line_num + 1  # where the next row starts (a quoted field may span several lines)
        where = {"path": path, "line": line}
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise DataError(f"not readable as CSV: {err}", **where) from None
        if None in row:  # more fields than the header names
            yield where, DataError(f"row has {len(reader.fieldnames) + len(row[None])} fields, the header "
                                   f"names {len(reader.fieldnames)}", **where), row
            continue
        rec = dict(row)
        for key in ("messages", "conversations", "meta"):
            if isinstance(rec.get(key), str) and rec[key].strip().startswith(("[", "{")):
                try:
                    rec[key] = json.loads(rec[key])
                except json.JSONDecodeError as err:
                    yield where, DataError(f"column {key!r} holds malformed JSON: {err.msg}", **where), row
                    break
        else:
            yield where, rec, None


def _iter_dataset(ds, label: str) -> Iterator[tuple[dict, Any, Any]]:
    for i, rec in enumerate(ds, start=1):
        yield {"path": label, "record": i}, rec, None


def _iter_parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a broken file
        raise DataError(f"not a readable Parquet file: {err}", path=path) from None
    for i, rec in enumerate(table.to_pylist(), start=1):
        yield {"path": path, "record": i}, rec, None


def _load_disk_dataset(path: Path, split: str):
    from datasets import DatasetDict, load_from_disk

    ds = load_from_disk(str(path))
    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise DataError(f"split {split!r} not found (splits: {', '.join(ds)})", path=path)
        ds = ds[split]
    return ds


def is_export_folder(path: str | os.PathLike) -> bool:
    """A curation export folder (``data/<name>/``: manifest.json beside train.jsonl, and dev.jsonl where the export
    held some out), read as its splits: ``<split>.jsonl``."""
    path = Path(str(path))
    return path.is_dir() and (path / "manifest.json").is_file() and (path / "train.jsonl").is_file()


def container_kind(source: str | os.PathLike) -> str:
    """``jsonl``/``json``/``parquet``/``csv``/``disk``/``hub`` for a path or Hub id (``jsonl`` for a curation
    export folder: its ``<split>.jsonl``)."""
    s = str(source)
    if s.startswith("hf:"):
        return "hub"
    path = Path(s)
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() \
                or (path / "state.json").exists():
            return "disk"
        if is_export_folder(path):
            return "jsonl"
        raise DataError("folder is neither a curation export (manifest.json and train.jsonl) nor a `datasets` "
                        "save_to_disk folder (dataset_info.json or dataset_dict.json)", path=path)
    if path.exists():
        suffix = "".join(path.suffixes[-1:]).lower()
        if suffix in FILE_SUFFIXES:
            return FILE_SUFFIXES[suffix]
        raise DataError(f"unknown file type {suffix or '(no suffix)'!r}: expected "
                        f"{', '.join(sorted(FILE_SUFFIXES))}, a save_to_disk folder or a Hub id", path=path)
    if re.fullmatch(r"[\w.-]+/[\w.-]+", s) and path.suffix.lower() not in FILE_SUFFIXES:
        return "hub"
    raise DataError("no such file or folder", path=path)


def iter_records(source: str | os.PathLike, *, split: str = "train") -> Iterator[tuple[dict, Any, Any]]:
    """Yield ``(where, record_or_error, raw)`` for every record of a container."""
    kind = container_kind(source)
    path = Path(str(source))
    if is_export_folder(path):
        if not (path / f"{split}.jsonl").is_file():
            splits = sorted(p.stem for p in path.glob("*.jsonl"))
            raise DataError(f"split {split!r} not found in this curation export (splits: {', '.join(splits)})",
                            path=path)
        path = path / f"{split}.jsonl"
    if kind != "hub" and kind != "disk" and path.stat().st_size == 0:
        raise DataError("empty file", path=path)
    if kind == "jsonl":
        yield from _iter_jsonl(path)
    elif kind == "json":
        yield from _iter_json(path)
    elif kind == "csv":
        yield from _iter_csv(path)
    elif kind == "parquet":
        yield from _iter_parquet(path)
    elif kind == "disk":
        yield from _iter_dataset(_load_disk_dataset(path, split), str(path))
    else:
        from datasets import load_dataset

        name = str(source)[3:] if str(source).startswith("hf:") else str(source)
        try:
            ds = load_dataset(name, split=split)
        except Exception as err:  # network, missing dataset, auth: say which
            raise DataError(f"could not load Hub dataset {name!r} (split {split!r}): {err}") from None
        yield from _iter_dataset(ds, f"hf:{name}")


def read_examples(source: str | os.PathLike, *, fmt: str = "auto", mapping: Mapping[str, str] | None = None,
                  source_name: str | None = None, split: str = "train", on_error: str = "raise",
                  result: ReadResult | None = None, seen: set[str] | None = None) -> ReadResult:
    """Read every example of one container into a :class:`ReadResult`.

    ``on_error="raise"`` stops at the first invalid record with a :class:`DataError`
    naming file, line/record and problem; ``on_error="skip"`` keeps going and
    collects each invalid record in ``result.rejects``. An example already read
    (same id) is counted in ``result.duplicates`` and kept once.
    """
    result = result if result is not None else ReadResult()
    seen = seen if seen is not None else {ex["id"] for ex in result.examples}
    default_source = source_name or _default_source_name(source)
    return _read(source, lambda rec, where: record_to_example(rec, fmt=fmt, mapping=mapping,
                                                              default_source=default_source, where=where),
                 split=split, on_error=on_error, result=result, seen=seen)


def _read(source, convert, *, split: str, on_error: str, result: ReadResult, seen: set[str]) -> ReadResult:
    """Every record of ``source`` through ``convert(record, where)`` (a dict with an ``id``) into ``result``:
    a bad record raises or goes to ``result.rejects`` (``on_error``), an id already in ``seen`` is counted in
    ``result.duplicates`` and kept once; a container without records is a DataError."""
    if on_error not in ("raise", "skip"):
        raise ValueError("on_error must be 'raise' or 'skip'")
    n_records = 0
    for where, rec, raw in iter_records(source, split=split):
        n_records += 1
        try:
            if isinstance(rec, DataError):
                raise rec
            ex = convert(rec, where)
        except DataError as err:
            if on_error == "raise":
                raise
            result.rejects.append(Reject(str(where.get("path")), where.get("line"), err.record, err.problem,
                                         raw if raw is not None else rec))
            continue
        if ex["id"] in seen:
            result.duplicates += 1
            continue
        seen.add(ex["id"])
        result.examples.append(ex)
    if n_records == 0:
        raise DataError("empty file (no records)", path=source)
    return result


def read_pools(sources: Iterable[str | os.PathLike], **kwargs) -> ReadResult:
    """Read several containers into one result; the same example in two files is one example."""
    result = ReadResult()
    seen: set[str] = set()
    for src in sources:
        read_examples(src, result=result, seen=seen, **kwargs)
    return result


def _default_source_name(source: str | os.PathLike) -> str:
    s = str(source)
    if s.startswith("hf:") or (not Path(s).exists() and "/" in s):
        return s.removeprefix("hf:")
    name = Path(s).name
    for suffix in FILE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def write_rejects(path: str | os.PathLike, rejects: Iterable[Reject]) -> int:
    return write_jsonl(path, (r.to_json() for r in rejects))


def read_preferences(source: str | os.PathLike, *, split: str = "train", on_error: str = "raise") -> ReadResult:
    """Every preference pair of one container (``{prompt, chosen, rejected}`` records, TRL's conversational or
    standard format) into a :class:`ReadResult` whose ``examples`` are normalized pairs
    (:func:`contract.schema.preference_pair`); bad records raise or are kept aside as with
    :func:`read_examples`, and the same pair twice is kept once."""
    from contract.schema import preference_pair

    default_source = _default_source_name(source)
    return _read(source, lambda rec, where: preference_pair(rec, default_source=default_source, where=where),
                 split=split, on_error=on_error, result=ReadResult(), seen=set())
