"""A SQL search engine for argilla-server, over the server's own SQLite database.

Argilla keeps records, responses, suggestions, metadata and vectors in its SQL database and
mirrors them into Elasticsearch for search. On one machine the mirror is not needed: this engine
answers every search straight from the SQL tables, so the `index_*`/`update_*` hooks are no-ops
and nothing can drift out of sync. Full-text search uses an SQLite FTS5 index kept up to date by
triggers on the `records` table, inside the same transactions that write the records.

Registered as ``curation-sql`` through ``SearchEngine.register``; the server picks it with
``ARGILLA_SEARCH_ENGINE=curation-sql``. Query semantics follow argilla-server's Elasticsearch
engine (``search_engine/commons.py``): the same filter scopes, the "pending" response status
meaning "no response from this user", relevance order for text queries, a per-user stable order
when the UI asks for a user's queue, cosine similarity scored as ``(1 + cos) / 2``.

Every search is bounded (``limits.py``): text queries are capped in length and distinct words, and each SQL
statement runs under a deadline; what exceeds a limit is answered 422 with what to change.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import sqlite3
import threading
from typing import Iterable, List, Optional, Union
from uuid import UUID

import numpy as np
from argilla_server.enums import MetadataPropertyType, ResponseStatusFilter, SimilarityOrder, SortOrder
from argilla_server.models import Dataset, MetadataProperty, Record, Response, Suggestion, User, VectorSettings
from argilla_server.search_engine.base import (
    AndFilter,
    Filter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    MetadataMetrics,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)
from argilla_server.errors.future import UnprocessableEntityError
from argilla_server.settings import settings
from sqlalchemy import make_url

from curation.server.limits import SEARCH_TIMEOUT_S, Deadline, SearchLimitError
from curation.server.text_query import fts_expression

ENGINE_NAME = "curation-sql"

# ---------------------------------------------------------------------------------------------
# Schema: an FTS5 index maintained by triggers. Each record gets a docid; its FTS rows have
# rowid = docid * 256 + n, n = 0 for "all fields" and 1.. for each searchable field, so deleting
# a record deletes a rowid range. Columns: d = dataset token, f = field token, body = text.
# ---------------------------------------------------------------------------------------------
_FIELD_TEXT = """CASE
    WHEN j.type = 'array' THEN (SELECT group_concat(json_extract(m.value, '$.content'), ' ') FROM json_each(j.value) m)
    ELSE CAST(j.value AS TEXT) END"""

_SEARCHABLE = """FROM json_each(new.fields) j
    JOIN fields fl ON fl.dataset_id = new.dataset_id AND fl.name = j.key
    WHERE json_extract(fl.settings, '$.type') IN ('text', 'chat', 'custom') AND j.value IS NOT NULL"""

_INDEX = f"""
  INSERT OR IGNORE INTO curation_fts_docs(record_id) VALUES (new.id);
  INSERT INTO curation_fts(rowid, d, f, body)
    SELECT (SELECT docid FROM curation_fts_docs WHERE record_id = new.id) * 256 + t.n, 'd' || new.dataset_id, t.f, t.body
    FROM (SELECT row_number() OVER (ORDER BY j.key) AS n, 'f' || hex(j.key) AS f, {_FIELD_TEXT} AS body {_SEARCHABLE}) t
    WHERE t.n < 256;
  INSERT INTO curation_fts(rowid, d, f, body)
    SELECT (SELECT docid FROM curation_fts_docs WHERE record_id = new.id) * 256, 'd' || new.dataset_id, 'fxall',
           group_concat({_FIELD_TEXT}, ' ') {_SEARCHABLE};
"""

_UNINDEX = """
  DELETE FROM curation_fts WHERE rowid BETWEEN
    (SELECT docid * 256 FROM curation_fts_docs WHERE record_id = old.id) AND
    (SELECT docid * 256 + 255 FROM curation_fts_docs WHERE record_id = old.id);
"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS curation_fts_docs (docid INTEGER PRIMARY KEY, record_id CHAR(32) NOT NULL UNIQUE);
CREATE INDEX IF NOT EXISTS curation_records_dataset_status ON records (dataset_id, status, id, inserted_at);
CREATE VIRTUAL TABLE IF NOT EXISTS curation_fts USING fts5(d, f, body, tokenize = 'porter unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS curation_fts_ai AFTER INSERT ON records BEGIN {_INDEX} END;
CREATE TRIGGER IF NOT EXISTS curation_fts_au AFTER UPDATE OF fields ON records BEGIN {_UNINDEX} {_INDEX} END;
CREATE TRIGGER IF NOT EXISTS curation_fts_ad AFTER DELETE ON records BEGIN
  {_UNINDEX}
  DELETE FROM curation_fts_docs WHERE record_id = old.id;
END;
"""


def ensure_schema(db_path: str) -> int:
    """Create the FTS index and its triggers; index records that predate them. Returns records (re)indexed.

    Run by the serving process at start, while it holds the workspace lock and before the app takes requests.
    """
    con = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("BEGIN IMMEDIATE")
        for statement in _split_sql(SCHEMA):
            con.execute(statement)
        # records written before the triggers existed (or by a tool that bypassed them)
        missing = con.execute(
            "SELECT count(*) FROM records WHERE id NOT IN (SELECT record_id FROM curation_fts_docs)"
        ).fetchone()[0]
        if missing:
            con.execute("UPDATE records SET fields = fields WHERE id NOT IN (SELECT record_id FROM curation_fts_docs)")
        orphans = con.execute(
            "SELECT docid FROM curation_fts_docs WHERE record_id NOT IN (SELECT id FROM records)"
        ).fetchall()
        for (docid,) in orphans:
            con.execute("DELETE FROM curation_fts WHERE rowid BETWEEN ? AND ?", (docid * 256, docid * 256 + 255))
            con.execute("DELETE FROM curation_fts_docs WHERE docid = ?", (docid,))
        con.execute("COMMIT")
        return missing
    finally:
        con.close()


def drop_non_finite_vectors(db_path: str) -> int:
    """Delete vectors holding NaN or Infinity (argilla-server stored them before `patches.py` refused them): they
    break every page that includes them and every similarity search. Returns how many were deleted."""
    con = sqlite3.connect(db_path, timeout=60, isolation_level=None)
    try:
        # JSON text of finite floats never contains these letters; Python's encoder writes NaN and Infinity
        where = "value LIKE '%NaN%' OR value LIKE '%Infinity%'"
        n = con.execute(f"SELECT count(*) FROM vectors WHERE {where}").fetchone()[0]
        if n:
            con.execute(f"DELETE FROM vectors WHERE {where}")
        return n
    finally:
        con.close()


def _split_sql(script: str) -> list[str]:
    """Split a script into statements (sqlite3.complete_statement knows trigger bodies)."""
    statements, current = [], ""
    for line in script.strip().splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


# ---------------------------------------------------------------------------------------------
# Reading: one sqlite3 connection per worker thread, queries run off the event loop.
# ---------------------------------------------------------------------------------------------
def _database_path() -> str:
    url = make_url(settings.database_url)
    if not url.drivername.startswith("sqlite") or not url.database:
        raise RuntimeError(
            f"The {ENGINE_NAME} search engine needs an SQLite database file; "
            f"ARGILLA_DATABASE_URL is {settings.database_url!r}. Use elasticsearch or opensearch instead."
        )
    return url.database


def user_order_key(user_id: Union[UUID, str]) -> tuple[int, int]:
    """(multiplier, offset) of a user's own record order: records sort by (rowid * multiplier + offset) mod 2^31.

    The multiplier is odd, so the map is a bijection; each user gets a different, stable order (Argilla's
    Elasticsearch engine gets the same effect from a random_score seeded with the user id)."""
    digest = hashlib.blake2b(str(user_id).encode(), digest_size=8).digest()
    return (int.from_bytes(digest[:4], "big") | 1) & 0x7FFFFFFF, int.from_bytes(digest[4:], "big") & 0x7FFFFFFF


class _Reader:
    """Read-only connections, one per worker thread; every statement runs under the search deadline unless told."""

    def __init__(self, path: str, timeout: Optional[float] = SEARCH_TIMEOUT_S):
        self.path = path
        self.timeout = timeout
        self._local = threading.local()
        self._deadline = Deadline()

    def connection(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            con.execute("PRAGMA query_only = 1")
            con.execute("PRAGMA mmap_size = 2147418112")  # read pages through the OS cache, no copies
            self._deadline.install(con)
            self._local.con = con
        return con

    def all(self, sql: str, params: Iterable = (), *, bounded: bool = True) -> list:
        con = self.connection()
        return self._deadline.run(self.timeout if bounded else None,
                                  lambda: con.execute(sql, tuple(params)).fetchall())

    def snapshot(self, *queries: tuple[str, list]) -> list[list]:
        """Run several queries on one consistent snapshot of the database."""
        con = self.connection()

        def run() -> list[list]:
            con.execute("BEGIN")
            try:
                return [con.execute(sql, tuple(params)).fetchall() for sql, params in queries]
            finally:
                if con.in_transaction:
                    con.execute("COMMIT")

        return self._deadline.run(self.timeout, run)

    async def run(self, sql: str, params: Iterable = ()) -> list:
        return await asyncio.to_thread(self.all, sql, list(params))


_READER: Optional[_Reader] = None
_READER_LOCK = threading.Lock()


def _reader() -> _Reader:
    global _READER
    with _READER_LOCK:
        if _READER is None:
            _READER = _Reader(_database_path())
        return _READER


def _hex(value: Union[UUID, str]) -> str:
    return value.hex if isinstance(value, UUID) else UUID(str(value)).hex


def _json_path(name: str) -> str:
    if '"' in name or "\\" in name:
        raise ValueError(f"Unsupported name {name!r}")
    return f'$."{name}"'


# ---------------------------------------------------------------------------------------------
# Filters and sorts → SQL over `records r`
# ---------------------------------------------------------------------------------------------
class _Sql:
    """A WHERE clause under construction with its positional parameters."""

    def __init__(self, dataset_id: str):
        self.dataset_id = dataset_id
        self.params: list = []
        self._questions: dict[str, str] = {}

    def question_id(self, name: str) -> str:
        if name not in self._questions:
            rows = _reader().all("SELECT id FROM questions WHERE dataset_id = ? AND name = ?", (self.dataset_id, name))
            if not rows:
                raise ValueError(f"Question {name!r} not found in dataset {self.dataset_id}")
            self._questions[name] = rows[0][0]
        return self._questions[name]

    def add(self, *params) -> None:
        self.params.extend(params)

    # -- filters --
    def filter(self, f: Filter) -> str:
        if isinstance(f, AndFilter):
            # cheapest first: SQLite tests the conditions in order, and parsing metadata JSON costs the most
            parts = [self.filter(inner) for inner in sorted(f.filters, key=_filter_cost)]
            return "(" + " AND ".join(parts) + ")" if parts else "1"
        scope = f.scope
        if isinstance(scope, ResponseFilterScope):
            return self._response_filter(f, scope)
        if isinstance(scope, MetadataFilterScope):
            name = scope.metadata_property
            name = name.name if isinstance(name, MetadataProperty) else name
            path = _json_path(name)
            if isinstance(f, RangeFilter):  # integer and float properties hold one number
                cond, params = self._scalar_condition(f, "json_extract(r.metadata, ?)")
                self.add(*[x for p in params for x in (path, p)] or [path])
                return cond
            cond, params = self._each_condition(f)  # terms: one value or a list of values
            if not params:
                return "0"
            self.add(path, *params, path, path, *params)
            return (f"(CAST(json_extract(r.metadata, ?) AS TEXT) IN ({', '.join('?' * len(params))}) OR "
                    f"(json_type(r.metadata, ?) = 'array' AND EXISTS (SELECT 1 FROM json_each(r.metadata, ?) j WHERE {cond})))")
        if isinstance(scope, SuggestionFilterScope):
            # driven from the suggestions of one question: much cheaper than a probe per record
            qid = self.question_id(scope.question)
            prop = scope.property
            if prop in ("agent", "type"):
                cond, params = self._scalar_condition(f, f"s.{prop}")
            elif prop in ("value", "score"):
                cond, params = self._json_value_condition(f, f"s.{prop}")
            else:
                raise ValueError(f"Unsupported suggestion property {prop!r}")
            return self._in(f"SELECT s.record_id FROM suggestions s WHERE s.question_id = ? AND {cond}", [qid] + params)
        if isinstance(scope, RecordFilterScope):
            prop = str(scope.property)
            if prop not in ("id", "external_id", "inserted_at", "updated_at", "status"):
                raise ValueError(f"Unsupported record property {prop!r}")
            values = f
            if prop == "id" and isinstance(f, TermsFilter):
                values = TermsFilter(scope=scope, values=[_hex(v) for v in f.values])
            if prop in ("inserted_at", "updated_at") and isinstance(f, RangeFilter):
                values = RangeFilter(scope=scope, ge=_as_db_time(f.ge), le=_as_db_time(f.le))
            sql, params = self._scalar_condition(values, f"r.{prop}")
            self.add(*params)
            return sql
        raise ValueError(f"Unsupported filter scope {scope!r}")

    def _in(self, subquery: str, params: list) -> str:
        self.add(*params)
        return f"r.id IN ({subquery})"

    @classmethod
    def _json_value_condition(cls, f: Filter, column: str) -> tuple[str, list]:
        """A condition on a JSON column holding one value or a list (any element matches). Numbers are stored
        as SQL numbers (the column has numeric affinity), strings and lists as JSON text."""
        cond, params = cls._each_condition(f)
        if not params and isinstance(f, TermsFilter):
            return "0", []
        scalar, scalar_params = cls._scalar_condition(f, f"CAST({column} AS TEXT)" if isinstance(f, TermsFilter)
                                                      else column)
        return (f"(CASE WHEN typeof({column}) IN ('integer', 'real') THEN {scalar} "
                f"ELSE EXISTS (SELECT 1 FROM json_each({column}) j WHERE {cond}) END)"), scalar_params + params

    def _exists(self, subquery: str, params: list, negate: bool = False) -> str:
        self.add(*params)
        return f"{'NOT ' if negate else ''}EXISTS ({subquery})"

    @staticmethod
    def _scalar_condition(f: Filter, column: str) -> tuple[str, list]:
        if isinstance(f, TermsFilter):
            values = [str(v) for v in f.values]
            if not values:
                return "0", []
            return f"{column} IN ({', '.join('?' * len(values))})", values
        conds, params = [], []
        if f.ge is not None:
            conds.append(f"{column} >= ?")
            params.append(f.ge)
        if f.le is not None:
            conds.append(f"{column} <= ?")
            params.append(f.le)
        return (" AND ".join(conds) or f"{column} IS NOT NULL"), params

    @classmethod
    def _each_condition(cls, f: Filter) -> tuple[str, list]:
        """A condition on `j.value`, a json_each row: terms compare as text, ranges as numbers."""
        if isinstance(f, TermsFilter):
            return cls._scalar_condition(f, "CAST(j.value AS TEXT)")
        return cls._scalar_condition(f, "j.value")

    def _response_filter(self, f: Filter, scope: ResponseFilterScope) -> str:
        user_sql, user_params = ("", [])
        if scope.user is not None:
            user_sql, user_params = " AND x.user_id = ?", [_hex(scope.user.id)]
        if scope.question:
            cond, params = self._each_condition(f)
            where = "x.user_id = ? AND " if scope.user is not None else ""
            return self._in(
                f"SELECT x.record_id FROM responses x, json_each(x.\"values\", ?) j WHERE {where}{cond}",
                [_json_path(scope.question) + ".value"] + user_params + params,
            )
        if scope.property != "status" or not isinstance(f, TermsFilter):
            raise ValueError(f"Cannot process response filter {f!r}")
        values = [str(v) for v in f.values]
        parts = []
        if ResponseStatusFilter.pending.value in values:
            parts.append(self._exists(f"SELECT 1 FROM responses x WHERE x.record_id = r.id{user_sql}", user_params, negate=True))
        others = [v for v in values if v != ResponseStatusFilter.pending.value]
        if others:
            where = "x.user_id = ? AND " if scope.user is not None else ""
            parts.append(self._in(
                f"SELECT x.record_id FROM responses x WHERE {where}x.status IN ({', '.join('?' * len(others))})",
                user_params + others,
            ))
        if not parts:
            return "0"
        return "(" + " OR ".join(parts) + ")"

    # -- sorting --
    def order(self, o: Order) -> str:
        direction = "DESC" if o.order == SortOrder.desc else "ASC"
        scope = o.scope
        if isinstance(scope, MetadataFilterScope):
            name = scope.metadata_property
            name = name.name if isinstance(name, MetadataProperty) else name
            self.add(_json_path(name))
            expr = "json_extract(r.metadata, ?)"
        elif isinstance(scope, RecordFilterScope):
            prop = str(scope.property)
            if prop not in ("id", "external_id", "inserted_at", "updated_at", "status"):
                raise ValueError(f"Unsupported record sort {prop!r}")
            expr = f"r.{prop}"
        elif isinstance(scope, SuggestionFilterScope):
            qid = self.question_id(scope.question)
            if scope.property in ("agent", "type"):
                expr = f"(SELECT min(s.{scope.property}) FROM suggestions s WHERE s.record_id = r.id AND s.question_id = ?)"
            elif scope.property in ("value", "score"):
                expr = f"(SELECT avg(j.value) FROM suggestions s, json_each(s.{scope.property}) j WHERE s.record_id = r.id AND s.question_id = ?)"
            else:
                raise ValueError(f"Unsupported suggestion sort {scope.property!r}")
            self.add(qid)
        elif isinstance(scope, ResponseFilterScope):
            user_sql = ""
            if scope.question:
                self.add(_json_path(scope.question) + ".value")
                expr_from = "FROM responses x, json_each(x.\"values\", ?) j WHERE x.record_id = r.id"
                agg = "avg(j.value)"
            else:
                expr_from = "FROM responses x WHERE x.record_id = r.id"
                agg = "min(x.status)"
            if scope.user is not None:
                user_sql = " AND x.user_id = ?"
                self.add(_hex(scope.user.id))
            expr = f"(SELECT {agg} {expr_from}{user_sql})"
        else:
            raise ValueError(f"Unsupported sort scope {scope!r}")
        return f"{expr} {direction} NULLS LAST"


def _filter_cost(f: Filter) -> int:
    """A rank of how much a condition costs per record: columns, then sets of ids, then JSON parsing."""
    scope = getattr(f, "scope", None)
    if isinstance(f, AndFilter):
        return 5
    if isinstance(scope, RecordFilterScope):
        return 0
    if isinstance(scope, (SuggestionFilterScope, ResponseFilterScope)):
        return 1
    return 2 if isinstance(f, RangeFilter) else 3


def _as_db_time(value: Optional[float]) -> Optional[str]:
    """Elasticsearch compares dates with numbers as epoch milliseconds; the DB stores ISO text."""
    if value is None:
        return None
    return dt.datetime.fromtimestamp(value / 1000, tz=dt.timezone.utc).replace(tzinfo=None).isoformat(sep=" ")


# ---------------------------------------------------------------------------------------------
# Vectors: loaded once per vector settings, kept normalized in memory, refreshed when they change.
# ---------------------------------------------------------------------------------------------
class _VectorCache:
    def __init__(self):
        self._entries: dict[str, tuple] = {}
        self._generation: dict[str, int] = {}
        self._lock = threading.Lock()

    def invalidate(self, dataset_id: str) -> None:
        self._generation[dataset_id] = self._generation.get(dataset_id, 0) + 1

    def get(self, reader: _Reader, dataset_id: str, vector_settings_id: str) -> tuple[np.ndarray, np.ndarray, dict]:
        count, last = reader.all(
            "SELECT count(*), max(rowid) FROM vectors WHERE vector_settings_id = ?", (vector_settings_id,)
        )[0]
        key = (count, last, self._generation.get(dataset_id, 0))
        with self._lock:
            entry = self._entries.get(vector_settings_id)
            if entry is not None and entry[0] == key:
                return entry[1], entry[2], entry[3]
            # loading costs what the dataset's size makes it cost, whoever asks: no search deadline
            rows = reader.all("SELECT record_id, value FROM vectors WHERE vector_settings_id = ?",
                              (vector_settings_id,), bounded=False)
            if rows:
                matrix = np.array(json.loads("[" + ",".join(r[1] for r in rows) + "]"), dtype=np.float32)
                finite = np.isfinite(matrix).all(axis=1)  # NaN/Infinity stored by an older version: no vector
                if not finite.all():
                    rows = [r for r, ok in zip(rows, finite) if ok]
                    matrix = np.ascontiguousarray(matrix[finite])
                norms = np.linalg.norm(matrix, axis=1, keepdims=True)
                matrix /= np.where(norms == 0, 1, norms)
            else:
                matrix = np.zeros((0, 0), dtype=np.float32)
            ids = np.array([r[0] for r in rows], dtype=object)
            position = {record_id: i for i, record_id in enumerate(ids)}
            self._entries[vector_settings_id] = (key, ids, matrix, position)
            return ids, matrix, position


_VECTORS = _VectorCache()


@SearchEngine.register(engine_name=ENGINE_NAME)
class SQLSearchEngine(SearchEngine):
    """Search straight from argilla-server's SQLite tables (see the module docstring)."""

    @classmethod
    async def new_instance(cls) -> "SQLSearchEngine":
        return cls()

    def __init__(self):
        self.reader = _reader()

    async def close(self):
        pass

    async def ping(self) -> bool:
        try:
            await self.reader.run("SELECT 1 FROM curation_fts_docs LIMIT 1")
            return True
        except sqlite3.Error:
            return False

    async def info(self) -> dict:
        # shown by the unauthenticated /api/v1/status: no paths
        return {"name": ENGINE_NAME, "version": sqlite3.sqlite_version}

    # -- index maintenance: the SQL tables are the index; FTS is kept by triggers --
    async def create_index(self, dataset: Dataset):
        pass

    async def delete_index(self, dataset: Dataset):
        _VECTORS.invalidate(_hex(dataset.id))

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty):
        pass

    async def configure_index_vectors(self, vector_settings: VectorSettings):
        pass

    async def index_records(self, dataset: Dataset, records: Iterable[Record]):
        _VECTORS.invalidate(_hex(dataset.id))

    async def partial_record_update(self, record: Record, **update):
        pass

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]):
        _VECTORS.invalidate(_hex(dataset.id))

    async def update_record_response(self, response: Response):
        pass

    async def delete_record_response(self, response: Response):
        pass

    async def update_record_suggestion(self, suggestion: Suggestion):
        pass

    async def delete_record_suggestion(self, suggestion: Suggestion):
        pass

    # -- progress and metrics --
    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        rows = await self.reader.run(
            "SELECT status, count(*) FROM records WHERE dataset_id = ? GROUP BY status", [_hex(dataset.id)]
        )
        return {"total": sum(n for _, n in rows), **{status: n for status, n in rows}}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        rows = await self.reader.run(
            "SELECT x.status, count(*) FROM responses x JOIN records r ON r.id = x.record_id "
            "WHERE r.dataset_id = ? AND x.user_id = ? GROUP BY x.status",
            [_hex(dataset.id), _hex(user.id)],
        )
        return {"total": sum(n for _, n in rows), **{status: n for status, n in rows}}

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        params = [_json_path(metadata_property.name), _hex(metadata_property.dataset_id)]
        if metadata_property.type == MetadataPropertyType.terms:
            rows = await self.reader.run(
                "SELECT CAST(j.value AS TEXT) AS term, count(*) AS n FROM records r, json_each(r.metadata, ?) j "
                "WHERE r.dataset_id = ? AND j.value IS NOT NULL GROUP BY term ORDER BY n DESC, term",
                params,
            )
            return TermsMetrics(
                total=sum(n for _, n in rows), values=[TermsMetrics.TermCount(term=t, count=n) for t, n in rows]
            )
        rows = await self.reader.run(
            "SELECT min(v), max(v) FROM (SELECT json_extract(r.metadata, ?) AS v FROM records r WHERE r.dataset_id = ?) "
            "WHERE typeof(v) IN ('integer', 'real')",
            params,
        )
        low, high = rows[0]
        if metadata_property.type == MetadataPropertyType.integer:
            return IntegerMetadataMetrics(min=low, max=high)
        return FloatMetadataMetrics(min=low, max=high)

    # -- search --
    def _text_join(self, dataset_id: str, query, sql: _Sql) -> Optional[str]:
        """A join producing (id, score) for the text query; None when there is no query; '' when nothing can match."""
        if query is None:
            return None
        if isinstance(query, str):
            query = TextQuery(q=query)
        field_token = "fxall" if not query.field else "f" + query.field.encode().hex().upper()
        try:
            expr = fts_expression(query.q, anchor=f'd : "d{dataset_id}" AND f : "{field_token}"')
        except SearchLimitError as err:
            raise UnprocessableEntityError(str(err)) from None
        if expr is None:
            return ""
        sql.add(expr)
        return (
            "JOIN (SELECT docs.record_id AS id, -bm25(curation_fts, 0.0, 0.0, 1.0) AS score FROM curation_fts "
            "JOIN curation_fts_docs docs ON docs.docid = (curation_fts.rowid >> 8) WHERE curation_fts MATCH ?) hits "
            "ON hits.id = r.id"
        )

    def _matching(self, dataset_id: str, query, filter: Optional[Filter]) -> Optional[tuple[str, str, list]]:
        """(join, where, params) selecting the dataset's records that match; None when nothing can match."""
        sql = _Sql(dataset_id)
        join = self._text_join(dataset_id, query, sql)
        if join == "":
            return None
        where = ["r.dataset_id = ?"]
        sql.add(dataset_id)
        if filter is not None:
            where.append(sql.filter(filter))
        return join or "", " AND ".join(where), sql.params

    async def search(
        self,
        dataset: Dataset,
        query: Optional[Union[TextQuery, str]] = None,
        filter: Optional[Filter] = None,
        sort: Optional[List[Order]] = None,
        offset: int = 0,
        limit: int = 100,
        user_id: Optional[Union[UUID, str]] = None,
    ) -> SearchResponses:
        try:
            return await self._search(dataset, query, filter, sort, offset, limit, user_id)
        except SearchLimitError as err:
            raise UnprocessableEntityError(str(err)) from None

    async def _search(self, dataset, query, filter, sort, offset, limit, user_id) -> SearchResponses:
        dataset_id = _hex(dataset.id)
        matching = self._matching(dataset_id, query, filter)
        if matching is None:
            return SearchResponses(items=[], total=0)
        join, where, params = matching

        ordering = _Sql(dataset_id)
        order = [ordering.order(o) for o in sort or []]
        if join:
            order.append("hits.score DESC")  # relevance
        if user_id is not None:
            order.append("((r.rowid * ? + ?) & 2147483647)")  # a stable order of its own for each user
            ordering.add(*user_order_key(user_id))
        order += ["r.inserted_at ASC", "r.id ASC"]

        page = [limit, offset]
        if join:  # text: match once, count with a window (the full-text match costs more than the sort)
            (rows,) = await asyncio.to_thread(self.reader.snapshot, (
                f"SELECT r.id, hits.score, count(*) OVER () FROM records r {join} WHERE {where} "
                f"ORDER BY {', '.join(order)} LIMIT ? OFFSET ?", params + ordering.params + page))
            total = rows[0][2] if rows else None
        else:  # a count, then a top-N sort (cheaper than sorting every match)
            counted, rows = await asyncio.to_thread(
                self.reader.snapshot,
                (f"SELECT count(*) FROM records r WHERE {where}", params),
                (f"SELECT r.id, NULL, NULL FROM records r WHERE {where} ORDER BY {', '.join(order)} LIMIT ? OFFSET ?",
                 params + ordering.params + page),
            )
            total = counted[0][0]
        if total is None:  # a page past the end of a text search
            total = (await self.reader.run(f"SELECT count(*) FROM records r {join} WHERE {where}", params))[0][0]
        return SearchResponses(items=[SearchResponseItem(record_id=UUID(rid), score=s) for rid, s, _ in rows],
                               total=total)

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: Optional[List[float]] = None,
        record: Optional[Record] = None,
        query: Optional[Union[TextQuery, str]] = None,
        filter: Optional[Filter] = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: Optional[float] = None,
    ) -> SearchResponses:
        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")
        excluded = None
        if not value:
            excluded = _hex(record.id)
            value = record.vector_value_by_vector_settings(vector_settings)
        if not value:
            raise ValueError("Cannot find a vector value to apply with provided info")
        q = np.asarray(value, dtype=np.float32)
        if not np.isfinite(q).all():
            raise UnprocessableEntityError(f"The query vector for `{vector_settings.name}` must hold finite numbers "
                                           "(no NaN or Infinity)")
        try:
            return await self._similar(dataset, vector_settings, q, excluded, query, filter, max_results, order,
                                       threshold)
        except SearchLimitError as err:
            raise UnprocessableEntityError(str(err)) from None

    async def _similar(self, dataset, vector_settings, q, excluded, query, filter, max_results, order,
                       threshold) -> SearchResponses:
        dataset_id = _hex(dataset.id)
        ids, matrix, position = await asyncio.to_thread(_VECTORS.get, self.reader, dataset_id, _hex(vector_settings.id))
        if len(ids) == 0:
            return SearchResponses(items=[], total=0)
        q = q / (np.linalg.norm(q) or 1.0)
        cos = matrix @ q
        if order == SimilarityOrder.least_similar:
            cos = -cos
        scores = (1.0 + cos) / 2.0
        if filter is not None or query is not None:
            mask = np.zeros(len(ids), dtype=bool)
            allowed = [position[i] for i in await self._matching_ids(dataset_id, query, filter) if i in position]
            mask[allowed] = True
        else:
            mask = np.ones(len(ids), dtype=bool)
        if excluded is not None and excluded in position:
            mask[position[excluded]] = False
        if threshold is not None:
            mask &= scores >= threshold
        candidates = np.flatnonzero(mask)
        top = candidates[np.argsort(-scores[candidates], kind="stable")[:max_results]]
        items = [SearchResponseItem(record_id=UUID(ids[i]), score=float(scores[i])) for i in top]
        return SearchResponses(items=items, total=len(items))

    async def _matching_ids(self, dataset_id: str, query, filter: Optional[Filter]) -> set:
        matching = self._matching(dataset_id, query, filter)
        if matching is None:
            return set()
        join, where, params = matching
        return {r[0] for r in await self.reader.run(f"SELECT r.id FROM records r {join} WHERE {where}", params)}
