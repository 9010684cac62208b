"""Training data: read messages, render them with the chat template, label the assistant tokens, batch.

Labels come from character spans, one per assistant turn: the turn starts where the template's
generation prompt ends (``messages[:i]`` rendered with ``add_generation_prompt=True``) and ends
after the end-of-turn token that follows the answer. Tokens that start inside a span are trained;
everything else (system, user, role headers, padding) is ``-100``. Because the labels never come
from comparing token ids with ``pad_token_id``, the end-of-turn token is learned even when the pad
token is the EOS token.

A pre-flight check tokenizes each inference prompt (the conversation before the answer, with the
generation prompt) exactly as generation will, and requires it to be a token prefix of the training
sequence, with the labels starting right after it.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from contract.readers import read_examples
from contract.schema import DataError

log = logging.getLogger("finetune")

IGNORE = -100

# For base models without a chat template. No added tokens (so the adapter loads onto the
# untouched base model); the EOS token ends each answer. `{% generation %}` marks the assistant
# tokens for `return_assistant_tokens_mask` users.
DEFAULT_CHAT_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### User:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Assistant:\n' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{{ '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
)

_PROBE = [{"role": "user", "content": "PROBE-QUESTION"}, {"role": "assistant", "content": "PROBE-ANSWER"}]


# --------------------------------------------------------------------------- reading


def read_messages(source: str, split: str = "train") -> list[dict]:
    """Every example of ``source``, validated by the curation schema (a bad record raises
    :class:`DataError` naming file, line and record id). Duplicates (same id) are kept once."""
    result = read_examples(source, split=split, on_error="raise")
    if result.duplicates:
        log.warning("%s: %d duplicate examples (same content) kept once", source, result.duplicates)
    return result.examples


def dev_source(cfg) -> tuple[str, str] | None:
    """Where the dev examples come from, as (source, split): ``dev_data`` (its ``data_split``); else, where ``data``
    is a curation export folder with a dev.jsonl, that file; else None (a ``dev_size`` share of the training data)."""
    from contract.readers import is_export_folder

    if cfg.dev_data:
        return cfg.dev_data, cfg.data_split
    if is_export_folder(cfg.data) and (Path(cfg.data) / "dev.jsonl").is_file():
        return cfg.data, "dev"
    return None


def swap_roles(examples: list[dict]) -> list[dict]:
    """Backward examples for instruction backtranslation (Humpback, Li et al. 2023): the answer becomes the
    user turn and the instruction the assistant's answer, so a model trained on them writes the instruction
    a given text answers. A multi-turn example gives its first exchange; a system prompt is dropped (the
    backward model sees the text alone, as it will at generation time).

    >>> swap_roles([{"id": "x", "messages": [{"role": "system", "content": "Be brief."},
    ...     {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}],
    ...     "source": "s", "meta": {}}])[0]["messages"]
    [{'role': 'user', 'content': 'Paris.'}, {'role': 'assistant', 'content': 'Capital of France?'}]
    """
    from contract.schema import example_id

    out = []
    for ex in examples:
        turns = [t for t in ex["messages"] if t["role"] != "system"]
        user = next(t for t in turns if t["role"] == "user")
        answer = next(t for t in turns[turns.index(user):] if t["role"] == "assistant")
        messages = [{"role": "user", "content": answer["content"]}, {"role": "assistant", "content": user["content"]}]
        out.append({**ex, "id": example_id(messages), "messages": messages,
                    "meta": {**ex.get("meta", {}), "swapped_from": ex["id"]}})
    return out


def split_dev(examples: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out ``fraction`` of the examples (at least one) for the dev loss, by a seeded shuffle."""
    if fraction <= 0:
        return examples, []
    if len(examples) < 2:
        raise DataError(f"dev_size {fraction} needs at least 2 examples, got {len(examples)} "
                        "(set dev_size: 0 or give dev_data)")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, round(len(examples) * fraction))
    dev = set(order[:n_dev])
    return [e for i, e in enumerate(examples) if i not in dev], [e for i, e in enumerate(examples) if i in dev]


# --------------------------------------------------------------------------- template


def setup_template(tokenizer, chat_template: str | None, eot_token: str | None) -> str:
    """Install the chat template on ``tokenizer`` and return the end-of-turn token string.

    Never adds tokens. A tokenizer without a pad token gets the EOS token as pad.
    """
    if chat_template:
        path = Path(chat_template)
        if not path.is_file():
            raise ValueError(f"chat_template: file not found: {chat_template}")
        tokenizer.chat_template = path.read_text(encoding="utf-8")
    elif not getattr(tokenizer, "chat_template", None):
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a chat template nor an EOS token; give chat_template "
                             "and eot_token")
        log.info("the tokenizer has no chat template: using the default base-model template "
                 "(### User: / ### Assistant:, answers end with %s)", tokenizer.eos_token)
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    eot = eot_token or find_eot(tokenizer)
    vocab = tokenizer.get_vocab()
    if eot not in vocab:
        raise ValueError(f"eot_token {eot!r} is not one token of the vocabulary")
    return eot


def find_eot(tokenizer) -> str:
    """The special token the chat template puts right after an assistant answer."""
    text = render(tokenizer, _PROBE)
    after = text[text.rindex("PROBE-ANSWER") + len("PROBE-ANSWER"):]
    specials = sorted(set(tokenizer.all_special_tokens) | set(tokenizer.get_added_vocab()), key=len, reverse=True)
    for i in range(len(after)):
        for tok in specials:
            if tok and after.startswith(tok, i):
                return tok
    raise ValueError(
        f"the chat template ends an assistant answer with {after!r}, which holds no special token: the model "
        "could not learn to stop. Give a template that ends answers with an end-of-turn token (chat_template) "
        "or name the token (eot_token)")


def render(tokenizer, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)


def prompt_ids(tokenizer, messages: Sequence[dict]) -> list[int]:
    """Token ids of the inference prompt for the last answer, as generation builds them."""
    enc = tokenizer.apply_chat_template(list(messages[:-1]), tokenize=True, add_generation_prompt=True,
                                        return_dict=True)
    return list(enc["input_ids"])


# --------------------------------------------------------------------------- tokenization


def assistant_spans(tokenizer, messages: Sequence[dict], eot: str) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant answer (end-of-turn token
    included, anything the template adds after it excluded)."""
    full = render(tokenizer, messages)
    spans = []
    for i, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = render(tokenizer, messages[: i + 1]) if i + 1 < len(messages) else full
        if not (full.startswith(prompt) and full.startswith(upto)):
            raise ValueError(
                "the chat template renders a conversation differently from its own beginning (turn "
                f"{i}): labels cannot be placed. Rendered prompt ends {prompt[-60:]!r}; the full text has "
                f"{full[len(prompt) - 60:len(prompt) + 20]!r} there")
        end = upto.find(eot, len(prompt))
        if end < 0:
            raise ValueError(f"the chat template does not end assistant turn {i} with {eot!r} (eot_token)")
        spans.append((len(prompt), end + len(eot)))
    return full, spans


def tokenize(tokenizer, messages: Sequence[dict], eot: str) -> dict:
    """``input_ids`` and ``labels`` (``-100`` outside the assistant answers) for one conversation."""
    full, spans = assistant_spans(tokenizer, messages, eot)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    ids = list(enc["input_ids"])
    labels = [IGNORE] * len(ids)
    k = 0
    for j, (start, _end) in enumerate(enc["offset_mapping"]):
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        if k < len(spans) and spans[k][0] <= start < spans[k][1]:
            labels[j] = ids[j]
    return {"input_ids": ids, "labels": labels}


def check_prompt_prefix(tokenizer, messages: Sequence[dict], row: dict) -> str | None:
    """None when the inference prompt is a token prefix of the training ids and the labels of the last
    answer start right after it; otherwise what is wrong."""
    p = prompt_ids(tokenizer, messages)
    ids, labels = row["input_ids"], row["labels"]
    if ids[: len(p)] != p:
        at = next((i for i, (a, b) in enumerate(zip(ids, p)) if a != b), min(len(ids), len(p)))
        return (f"the inference prompt is not a token prefix of the training sequence (first difference at "
                f"token {at}: prompt {tokenizer.decode(p[at:at + 3])!r} vs training "
                f"{tokenizer.decode(ids[at:at + 3])!r})")
    if len(ids) <= len(p) or labels[len(p)] == IGNORE or any(x != IGNORE for x in labels[len(p) - 1:len(p)]):
        return f"the labels of the last answer do not start right after the {len(p)}-token inference prompt"
    return None


@dataclass
class DataStats:
    examples: int = 0
    kept: int = 0
    truncated: int = 0
    dropped_overlong: int = 0
    tokens: int = 0
    label_tokens: int = 0
    longest: int = 0
    dropped_ids: list = field(default_factory=list)

    def to_json(self) -> dict:
        d = self.__dict__.copy()
        d["dropped_ids"] = d["dropped_ids"][:50]
        return d


def build_rows(tokenizer, examples: list[dict], eot: str, max_length: int, overlong: str,
               label: str = "train") -> tuple[list[dict], DataStats]:
    """Tokenize, check and cut to ``max_length`` every example. Raises ValueError naming the records
    whose inference prompt is not a token prefix of their training sequence."""
    stats = DataStats(examples=len(examples))
    rows, bad = [], []
    for ex in examples:
        row = tokenize(tokenizer, ex["messages"], eot)
        problem = check_prompt_prefix(tokenizer, ex["messages"], row)
        if problem:
            bad.append(f"record {ex['id']}: {problem}")
            continue
        n = len(row["input_ids"])
        stats.longest = max(stats.longest, n)
        if n > max_length:
            if overlong == "drop":
                stats.dropped_overlong += 1
                stats.dropped_ids.append(ex["id"])
                continue
            row = {k: v[:max_length] for k, v in row.items()}
            if all(x == IGNORE for x in row["labels"]):
                stats.dropped_overlong += 1
                stats.dropped_ids.append(ex["id"])
                continue
            stats.truncated += 1
        row["id"] = ex["id"]
        rows.append(row)
        stats.tokens += len(row["input_ids"])
        stats.label_tokens += sum(x != IGNORE for x in row["labels"])
    if bad:
        raise ValueError(f"pre-flight check failed for {len(bad)} of {len(examples)} {label} examples (the model "
                         "would be trained on a different tokenization than it sees at inference):\n  - "
                         + "\n  - ".join(bad[:5]) + ("\n  - ..." if len(bad) > 5 else ""))
    stats.kept = len(rows)
    if not rows:
        raise ValueError(f"no {label} example is left after max_length={max_length} ({overlong})")
    return rows, stats


def pack(rows: list[dict], max_length: int) -> list[dict]:
    """First-fit-decreasing packing of rows into bins of at most ``max_length`` tokens. Each bin keeps the
    per-example lengths so position_ids restart per example."""
    bins: list[dict] = []
    for row in sorted(rows, key=lambda r: len(r["input_ids"]), reverse=True):
        n = len(row["input_ids"])
        for b in bins:
            if b["n"] + n <= max_length:
                break
        else:
            b = {"n": 0, "input_ids": [], "labels": [], "lengths": [], "ids": []}
            bins.append(b)
        b["n"] += n
        b["input_ids"] += row["input_ids"]
        b["labels"] += row["labels"]
        b["lengths"].append(n)
        b["ids"].append(row["id"])
    return [{"input_ids": b["input_ids"], "labels": b["labels"], "lengths": b["lengths"], "id": ",".join(b["ids"])}
            for b in bins]


# --------------------------------------------------------------------------- batching


@dataclass
class PaddingFreeCollator:
    """Concatenate a batch into one row; position_ids restart at 0 for each example. No attention mask, no
    padding, and the cache off (transformers only isolates packed sequences when no cache is passed).

    The sequence boundaries are computed here, once per batch, on the host: ``cu_seq_lens_q``/``cu_seq_lens_k``
    (int32 offsets of each example in the row, ending with the row's length) and ``max_length_q``/``max_length_k``
    (the longest example, a Python int), the keyword arguments transformers' flash-attention integration and
    finetune/attention.py take, so no layer has to find them again from position_ids (a device sync per layer).
    ``extra``: constant inputs added to every batch (finetune/loss.py asks for the hidden states this way)."""

    extra: dict | None = None

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        ids, labels, pos, lens = [], [], [], []
        for row in rows:
            lengths = row.get("lengths") or [len(row["input_ids"])]
            ids += row["input_ids"]
            lab = list(row["labels"])
            start = 0
            for n in lengths:
                lab[start] = IGNORE  # never predict an example's first token from the one before
                pos += range(n)
                start += n
            labels += lab
            lens += lengths
        cu = torch.zeros(len(lens) + 1, dtype=torch.int32)
        cu[1:] = torch.tensor(lens, dtype=torch.int32).cumsum(0)
        return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                "position_ids": torch.tensor([pos]), "use_cache": False,
                "cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": max(lens), "max_length_k": max(lens),
                **(self.extra or {})}


@dataclass
class PaddedCollator:
    """Right padding with an attention mask; labels of padding are -100 by position, never by token id."""

    pad_token_id: int
    extra: dict | None = None

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id)
        labels = torch.full((len(rows), width), IGNORE)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask, "use_cache": False, **(self.extra or {})}


def collator_for(batching: str, pad_token_id: int, extra: dict | None = None):
    """The collator for ``batching``; ``extra``: constant model inputs added to every batch."""
    return PaddedCollator(pad_token_id, extra) if batching == "padded" else PaddingFreeCollator(extra)


def describe(stats: DataStats, label: str, max_length: int) -> str:
    return (f"{label}: {stats.kept}/{stats.examples} examples, {stats.tokens} tokens "
            f"({stats.label_tokens} trained), longest {stats.longest}; over max_length={max_length}: "
            f"{stats.truncated} truncated, {stats.dropped_overlong} dropped")
