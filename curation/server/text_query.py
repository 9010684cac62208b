"""Text queries: Elasticsearch simple_query_string syntax (AND by default, "phrases", prefix*,
-negation, a | b) translated to an SQLite FTS5 expression with every term quoted, so no user input is
ever an FTS5 syntax error. Repeated terms count once; a query longer than `MAX_QUERY_CHARS` or with more
than `MAX_QUERY_WORDS` distinct words is refused with `SearchLimitError` (see `limits.py`). Light on purpose
(no argilla_server import) so its doctests run anywhere.
"""

from __future__ import annotations

import re
from typing import Optional

from curation.server.limits import MAX_QUERY_CHARS, MAX_QUERY_WORDS, SearchLimitError

_TOKEN = re.compile(r'(-?)"([^"]*)"|(\|)|(\S+)')
_WORD = re.compile(r"\w+")


def fts_expression(text: str, anchor: Optional[str] = None) -> Optional[str]:
    """Translate a user query into an FTS5 MATCH expression; None when it can match nothing.

    `anchor` (an FTS5 expression every candidate matches, e.g. the dataset's token) is AND-ed in front; it
    also lets a query made only of exclusions match everything else, as in Elasticsearch.

    >>> fts_expression('good answer')
    '"good" AND "answer"'
    >>> fts_expression('"exact phrase" -spam pyth*')
    '"exact phrase" AND "pyth"* NOT "spam"'
    >>> fts_expression('cats | dogs')
    '("cats" OR "dogs")'
    >>> fts_expression('-spam -ham', anchor='d : "d1"')
    'd : "d1" NOT ("spam" OR "ham")'
    >>> fts_expression('-spam') is None and fts_expression('?!') is None
    True

    Repeats count once, and what holds no letter or digit (a lone apostrophe) is no term at all, like the
    punctuation the tokenizer drops:

    >>> fts_expression('apples ' * 200)
    '"apples"'
    >>> fts_expression("don't stop '")
    '"don\\'t" AND "stop"'
    >>> fts_expression("'") is None
    True
    """
    if len(text) > MAX_QUERY_CHARS:
        raise SearchLimitError(
            f"The text query is {len(text):,} characters long; the limit is {MAX_QUERY_CHARS:,}. "
            "Search for a few distinctive words or a short phrase.")
    groups: list[list[str]] = [[]]  # OR-groups of AND-ed positive terms
    negative: list[str] = []
    words: set[str] = set()
    for neg, phrase, bar, word in _TOKEN.findall(text):
        if bar:
            groups.append([])
            continue
        if phrase:
            term, prefix = phrase, False
        else:
            neg = "-" if word.startswith("-") else ""
            word = word.lstrip("-+")
            prefix = word.endswith("*")
            term = word.rstrip("*")
        term = re.sub(r"[^\w\s']+", " ", term).strip()
        if not _WORD.search(term):
            continue
        quoted = '"' + " ".join(term.split()) + '"' + ("*" if prefix else "")
        target = negative if neg else groups[-1]
        if quoted not in target:
            target.append(quoted)
            words.update(w.lower() for w in _WORD.findall(term))
    if len(words) > MAX_QUERY_WORDS:
        raise SearchLimitError(
            f"The text query has {len(words):,} different words; the limit is {MAX_QUERY_WORDS}. "
            "Search for a few distinctive words or a short phrase.")
    ands: list[str] = []
    for g in groups:
        a = " AND ".join(g)
        if a and a not in ands:
            ands.append(a)
    if ands:
        positive = ands[0] if len(ands) == 1 else "(" + " OR ".join(f"({a})" if " AND " in a else a for a in ands) + ")"
        expr = f"{anchor} AND {positive}" if anchor else positive
    elif negative and anchor:
        expr = anchor
    else:
        return None
    if negative:
        expr += " NOT " + (negative[0] if len(negative) == 1 else "(" + " OR ".join(negative) + ")")
    return expr
