"""Text queries: Elasticsearch simple_query_string syntax (AND by default, "phrases", prefix*,
-negation, a | b) translated to an SQLite FTS5 expression with every term quoted, so no user input is
ever an FTS5 syntax error. Light on purpose (no argilla_server import) so its doctests run anywhere.
"""

from __future__ import annotations

import re
from typing import Optional

_TOKEN = re.compile(r'(-?)"([^"]*)"|(\|)|(\S+)')


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
    """
    groups: list[list[str]] = [[]]  # OR-groups of AND-ed positive terms
    negative: list[str] = []
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
        if not term:
            continue
        quoted = '"' + term.replace('"', "") + '"' + ("*" if prefix else "")
        (negative if neg else groups[-1]).append(quoted)
    ands = [" AND ".join(g) for g in groups if g]
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
