"""The example schema: one record format for every stage, its normalization and its ids.

One example is one JSON object, the convention chat templates and TRL consume::

    {"id": "…", "messages": [{"role": "user", "content": "…"},
                             {"role": "assistant", "content": "…"}],
     "source": "stackexchange", "meta": {}}

``id`` is a content hash of the normalized messages, so the same example read
from two files (or two formats) is one example.

Accepted record formats (auto-detected per record, or forced with ``fmt``):

- ``messages``: OpenAI / Hugging Face ``[{"role", "content"}, …]``
- ``sharegpt``: ``conversations: [{"from": "human"|"gpt"|…, "value": …}, …]``
- ``alpaca``: ``instruction`` (+ optional ``input``) and ``output``
- ``lima``: ``conversations: ["user turn", "assistant turn", …]``
- ``prompt_response``: a prompt and a response field, named by a mapping
  (default ``prompt``/``response``, ``completion`` also recognised)

Containers (files, folders, Hub ids) are read by :mod:`contract.readers`. Every
problem is a :class:`DataError` naming its place (``file:line``, or ``file#n`` counted from 1).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import unicodedata
from typing import Any, Mapping

FORMATS = ("messages", "sharegpt", "alpaca", "lima", "prompt_response")
ROLES = ("system", "user", "assistant")
ROLE_ALIASES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "prompter": "user",
    "question": "user",
    "instruction": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "answer": "assistant",
    "response": "assistant",
}
FILE_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
}


def place(path: str | None, line: int | None = None, record: str | int | None = None) -> str:
    """Where a record is: ``file:line`` (text containers), ``file#n`` (the n-th record of a JSON list,
    Parquet file or dataset, counted from 1), plus ``record ID`` when a line's record has an id.

    >>> place("a.jsonl", 3), place("a.json", record=2), place("a.jsonl", 1, "q-17"), place(None, record=4)
    ('a.jsonl:3', 'a.json#2', 'a.jsonl:1 record q-17', 'record #4')
    """
    parts = []
    if path is not None:
        parts.append(path + (f":{line}" if line is not None else "")
                     + (f"#{record}" if isinstance(record, int) and line is None else ""))
    elif line is not None:
        parts.append(f"line {line}")
    if record is not None and not (isinstance(record, int) and path is not None and line is None):
        parts.append(f"record #{record}" if isinstance(record, int) else f"record {record}")
    return " ".join(parts)


class DataError(ValueError):
    """A problem with input data, naming the place: ``file:line`` or ``file#n`` (1-based), and what is wrong."""

    def __init__(self, problem: str, *, path: str | os.PathLike | None = None, line: int | None = None,
                 record: str | int | None = None):
        self.problem = problem
        self.path = str(path) if path is not None else None
        self.line = line
        self.record = record
        super().__init__(f"{self.where}: {problem}" if self.where else problem)

    @property
    def where(self) -> str:
        return place(self.path, self.line, self.record)


# --------------------------------------------------------------------------- normalization


_TRAILING_WS = re.compile(r"[ \t]+\n")
_MANY_BLANKS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, ``\\n`` newlines, no trailing spaces on lines, at most one blank line in a row, stripped.

    >>> normalize_text("  Hello\\r\\n\\r\\n\\r\\n world  \\t\\n")
    'Hello\\n\\n world'
    """
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_WS.sub("\n", text)
    text = _MANY_BLANKS.sub("\n\n", text)
    return text.strip()


def normalize_role(role: Any, where: dict) -> str:
    if not isinstance(role, str) or role.strip().lower() not in ROLE_ALIASES:
        raise DataError(f"unknown role {role!r} (expected one of {', '.join(ROLES)} or an alias such as "
                        "human/gpt)", **where)
    return ROLE_ALIASES[role.strip().lower()]


def normalize_messages(messages: Any, where: dict | None = None) -> list[dict]:
    """Validate and normalize a list of ``{"role", "content"}`` turns.

    Rules: roles are mapped to system/user/assistant; a system prompt is kept and
    may only come first; the conversation needs a user turn and ends with a
    non-empty assistant answer; content is text.
    """
    where = where or {}
    if not isinstance(messages, list) or not messages:
        raise DataError("no messages (expected a non-empty list of turns)", **where)
    out = []
    for i, turn in enumerate(messages):
        if not isinstance(turn, Mapping):
            raise DataError(f"turn {i} is {type(turn).__name__}, expected an object with role and content", **where)
        role = normalize_role(turn.get("role"), where)
        content = turn.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise DataError(f"turn {i} ({role}) content is {type(content).__name__}, expected text", **where)
        if role == "system" and i != 0:
            raise DataError(f"turn {i} is a system prompt; it may only be the first turn", **where)
        out.append({"role": role, "content": normalize_text(content)})
    roles = [t["role"] for t in out]
    if "user" not in roles:
        raise DataError("no user turn", **where)
    if "assistant" not in roles:
        raise DataError("no assistant answer", **where)
    if roles[-1] != "assistant":
        raise DataError("the conversation does not end with an assistant answer", **where)
    for i, turn in enumerate(out):
        if turn["role"] != "system" and not turn["content"]:
            what = "empty assistant answer" if turn["role"] == "assistant" else "empty user turn"
            raise DataError(f"{what} (turn {i})", **where)
    if out[0]["role"] == "system" and not out[0]["content"]:
        out = out[1:]  # an empty system prompt carries nothing
    return out


def example_id(messages: list[dict]) -> str:
    """A stable content hash of normalized messages (16 hex digits of sha256).

    >>> a = example_id([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    >>> len(a), a == example_id([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    (16, True)
    """
    payload = json.dumps([[t["role"], t["content"]] for t in messages], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def make_example(messages: list[dict], source: str, meta: dict | None = None, where: dict | None = None) -> dict:
    msgs = normalize_messages(messages, where)
    return {"id": example_id(msgs), "messages": msgs, "source": source, "meta": dict(meta or {})}


# --------------------------------------------------------------------------- record formats


def detect_format(record: Mapping, mapping: Mapping[str, str] | None = None) -> str | None:
    """Which record format a record is in, or None.

    >>> detect_format({"messages": []})
    'messages'
    >>> detect_format({"conversations": [{"from": "human", "value": "x"}]})
    'sharegpt'
    >>> detect_format({"conversations": ["q", "a"]})
    'lima'
    >>> detect_format({"instruction": "q", "output": "a"})
    'alpaca'
    >>> detect_format({"question": "q", "answer": "a"}, {"prompt": "question", "response": "answer"})
    'prompt_response'
    >>> detect_format({"text": "x"}) is None
    True
    """
    if "messages" in record:
        return "messages"
    conv = record.get("conversations")
    if isinstance(conv, list):
        if conv and all(isinstance(t, str) for t in conv):
            return "lima"
        return "sharegpt"
    if "instruction" in record and "output" in record:
        return "alpaca"
    m = _prompt_response_mapping(mapping)
    if m["prompt"] in record and m["response"] in record:
        return "prompt_response"
    if mapping is None and "prompt" in record and "completion" in record:
        return "prompt_response"
    return None


def _prompt_response_mapping(mapping: Mapping[str, str] | None) -> dict:
    m = {"prompt": "prompt", "response": "response", "system": "system"}
    if mapping:
        unknown = set(mapping) - set(m)
        if unknown:
            raise ValueError(f"unknown mapping key(s) {sorted(unknown)}: expected prompt, response, system")
        m.update(mapping)
    return m


_REQUIRED = {"messages": ("messages",), "sharegpt": ("conversations",), "lima": ("conversations",),
             "alpaca": ("instruction", "output")}


def _with_system(turns: list, system: Any, where: dict) -> list:
    """Put a record-level system prompt (a ``system`` field) before the turns."""
    if system is None or system == "":
        return turns
    if not isinstance(system, str):
        raise DataError(f"system field is {type(system).__name__}, expected text", **where)
    first = turns[0] if turns and isinstance(turns[0], Mapping) else {}
    if str(first.get("role", "")).strip().lower() == "system":
        raise DataError("both a system field and a system turn: give the system prompt once", **where)
    return [{"role": "system", "content": system}, *turns]


def record_to_messages(record: Mapping, fmt: str, mapping: Mapping[str, str] | None, where: dict) -> list[dict]:
    """Turn one raw record of format ``fmt`` into a list of turns (not yet normalized).

    A ``system`` field (for prompt/response: the mapped system field) becomes the first turn in every format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    m = _prompt_response_mapping(mapping)
    response_key = m["response"]
    if response_key not in record and mapping is None and "completion" in record:
        response_key = "completion"
    missing = [key for key in _REQUIRED.get(fmt, (m["prompt"], response_key)) if key not in record]
    if missing:
        keys = ", ".join(sorted(map(str, record))) or "none"
        raise DataError(f"{fmt} record without field {missing[0]!r} (fields: {keys})", **where)
    if fmt in ("sharegpt", "lima") and not isinstance(record["conversations"], list):
        raise DataError(f"conversations is {type(record['conversations']).__name__}, expected a list", **where)
    if fmt == "messages":
        turns = record["messages"]
        if isinstance(turns, list):
            turns = _with_system(turns, record.get("system"), where)
        return turns
    if fmt == "sharegpt":
        turns = []
        for i, t in enumerate(record["conversations"]):
            if not isinstance(t, Mapping) or "value" not in t:
                raise DataError(f"conversations[{i}] is not a {{from, value}} object", **where)
            turns.append({"role": t.get("from", t.get("role")), "content": t["value"]})
        return _with_system(turns, record.get("system"), where)
    if fmt == "lima":
        turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": t}
                 for i, t in enumerate(record["conversations"])]
        return _with_system(turns, record.get("system"), where)
    if fmt == "alpaca":
        instruction = record.get("instruction") or ""
        extra = record.get("input") or ""
        if not isinstance(instruction, str) or not isinstance(extra, str):
            raise DataError("alpaca instruction/input must be text", **where)
        prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": record.get("output")}]
        return _with_system(turns, record.get("system"), where)
    if fmt == "prompt_response":
        turns = [{"role": "user", "content": record.get(m["prompt"])},
                 {"role": "assistant", "content": record.get(response_key)}]
        turns = _with_system(turns, record.get(m["system"]), where)
        for t in turns:
            if t["content"] is not None and not isinstance(t["content"], str):
                raise DataError(f"{t['role']} field is {type(t['content']).__name__}, expected text", **where)
        return turns


_RESERVED = {"id", "messages", "conversations", "instruction", "input", "output", "source", "meta", "system",
             "prompt", "response", "completion"}


def record_to_example(record: Any, *, fmt: str = "auto", mapping: Mapping[str, str] | None = None,
                      default_source: str = "unknown", where: dict | None = None) -> dict:
    """Convert one raw record into an example, or raise :class:`DataError` naming ``where``."""
    where = dict(where or {})
    if not isinstance(record, Mapping):
        raise DataError(f"record is {type(record).__name__}, expected a JSON object", **where)
    if "id" in record and where.get("record") is None and record["id"] is not None:
        where["record"] = record["id"]
    if fmt == "auto":
        found = detect_format(record, mapping)
        if found is None:
            keys = ", ".join(sorted(map(str, record))) or "none"
            raise DataError(
                f"unknown format (fields: {keys}); expected messages, conversations (ShareGPT or LIMA), "
                "instruction/output (Alpaca) or prompt/response (other names need a field mapping: "
                "`python -m curation ingest --field-map prompt=COLUMN,response=COLUMN`, or a pool's `mapping`)", **where)
        fmt = found
    elif fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: expected auto or one of {', '.join(FORMATS)}")
    turns = record_to_messages(record, fmt, mapping, where)
    meta = _meta_of(record.get("meta"), where)
    used = set(_RESERVED)
    if mapping:
        used |= set(mapping.values())
    for key, value in record.items():
        # columnar containers (Parquet, CSV, datasets) give every row every column: a null is an absent field
        if key not in used and key not in meta and isinstance(value, (str, int, float, bool)):
            meta[key] = value
    source = record.get("source") if isinstance(record.get("source"), str) and record.get("source") else default_source
    return make_example(turns, source, meta, where)


def _meta_of(meta: Any, where: dict) -> dict:
    """A record's ``meta`` as a dict: an object, a JSON object in a string (Parquet, CSV), or absent."""
    if meta is None or meta == "":
        return {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError as err:
            raise DataError(f"meta is text but not a JSON object ({err.msg})", **where) from None
    if not isinstance(meta, Mapping):
        raise DataError(f"meta is {type(meta).__name__}, expected an object", **where)
    return dict(meta)


# --------------------------------------------------------------------------- preference pairs


PREFERENCE_KEYS = ("prompt", "chosen", "rejected")


def _answer_turns(value: Any, key: str, where: dict) -> list[dict]:
    """``chosen``/``rejected``: text, or a list of assistant turns (TRL's conversational format)."""
    if isinstance(value, str):
        value = [{"role": "assistant", "content": value}]
    if not isinstance(value, list) or not value:
        raise DataError(f"{key} is {type(value).__name__}, expected text or a list of assistant turns", **where)
    turns = []
    for turn in value:
        if not isinstance(turn, Mapping) or normalize_role(turn.get("role"), where) != "assistant":
            raise DataError(f"{key} must hold assistant turns only", **where)
        content = turn.get("content")
        if not isinstance(content, str) or not normalize_text(content):
            raise DataError(f"{key}: empty assistant answer", **where)
        turns.append({"role": "assistant", "content": normalize_text(content)})
    return turns


def preference_pair(record: Any, *, default_source: str = "unknown", where: dict | None = None) -> dict:
    """One preference pair in TRL's conversational format, normalized::

        {"id", "prompt": [turns ending with a user turn], "chosen": [assistant turn],
         "rejected": [assistant turn], "source", "meta"}

    ``prompt`` may be text (one user turn) or a list of turns; ``chosen``/``rejected`` text or a list of
    assistant turns. ``id`` hashes the three, so the same pair from two files is one pair.

    >>> p = preference_pair({"prompt": "Hi?", "chosen": "Hello!", "rejected": "No."})
    >>> p["prompt"], p["chosen"], len(p["id"])
    ([{'role': 'user', 'content': 'Hi?'}], [{'role': 'assistant', 'content': 'Hello!'}], 16)
    """
    where = dict(where or {})
    if not isinstance(record, Mapping):
        raise DataError(f"record is {type(record).__name__}, expected a JSON object", **where)
    if record.get("id") is not None and where.get("record") is None:
        where["record"] = record["id"]
    missing = [k for k in PREFERENCE_KEYS if k not in record]
    if missing:
        raise DataError(f"not a preference pair: missing {', '.join(missing)} (expected prompt, chosen, rejected)",
                        **where)
    prompt = record["prompt"]
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt:
        raise DataError("prompt is empty (expected text or a list of turns)", **where)
    turns = []
    for i, turn in enumerate(prompt):
        if not isinstance(turn, Mapping) or not isinstance(turn.get("content"), str):
            raise DataError(f"prompt turn {i} is not an object with role and text content", **where)
        turns.append({"role": normalize_role(turn.get("role"), where), "content": normalize_text(turn["content"])})
    if turns[-1]["role"] != "user" or not turns[-1]["content"]:
        raise DataError("the prompt must end with a non-empty user turn", **where)
    chosen = _answer_turns(record["chosen"], "chosen", where)
    rejected = _answer_turns(record["rejected"], "rejected", where)
    if chosen == rejected:
        raise DataError("chosen and rejected are the same answer", **where)
    payload = json.dumps([[[t["role"], t["content"]] for t in x] for x in (turns, chosen, rejected)],
                         ensure_ascii=False, separators=(",", ":"))
    source = record.get("source") if isinstance(record.get("source"), str) and record.get("source") else default_source
    return {"id": hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16], "prompt": turns, "chosen": chosen,
            "rejected": rejected, "source": source, "meta": _meta_of(record.get("meta"), where)}
