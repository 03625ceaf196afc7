"""Small helpers for bulk statements shared by the catalogue modules."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import orjson
from sqlalchemy import ColumnElement, Text, and_, bindparam, insert, text, tuple_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import NullType, TypeDecorator

__all__ = ["chunks", "dumps", "ids_in", "insert_rows", "loads", "pairs_in"]

T = TypeVar("T")
CHUNK = 2000  # pairs_in sends a chunk as one parameter; plain in_() lists stay well below limits


def chunks(items: Sequence[T] | Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _PairsJSON(TypeDecorator[Any]):
    """A list of (a, b) pairs sent as one JSON text parameter."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        # orjson writes tuples as arrays: no per-pair Python work
        return None if value is None else orjson.dumps(value).decode()


class _PairsIn(ColumnElement[bool]):
    """``(a, b) IN (pairs from one JSON parameter)``.

    One bound parameter whatever the number of pairs: the statement is compiled once and
    cached, and no per-pair parameter expansion happens on each execution (that expansion
    dominated bulk registration). Both databases use the (a, b) index for the lookup.
    """

    __visit_name__ = "fedlake_pairs_in"
    inherit_cache = True
    # not Boolean: SQLite would render "(...) IN (...) = 1" and scan the whole table
    type = NullType()  # type: ignore[assignment]
    _traverse_internals = [
        ("col_a", InternalTraversal.dp_clauseelement),
        ("col_b", InternalTraversal.dp_clauseelement),
        ("param", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, col_a: Any, col_b: Any, pairs: Sequence[tuple[str, str]]) -> None:
        self.col_a = col_a
        self.col_b = col_b
        self.param = bindparam(None, list(pairs), type_=_PairsJSON())


@compiles(_PairsIn)
def _pairs_in_default(element: _PairsIn, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = compiler.process(element.col_a, **kw), compiler.process(element.col_b, **kw)
    p = compiler.process(element.param, **kw)
    return (
        f"({a}, {b}) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
        f"FROM json_each({p}))"
    )


@compiles(_PairsIn, "postgresql")
def _pairs_in_pg(element: _PairsIn, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = compiler.process(element.col_a, **kw), compiler.process(element.col_b, **kw)
    p = compiler.process(element.param, **kw)
    return (
        f"({a}, {b}) IN (SELECT fl_p.v ->> 0, fl_p.v ->> 1 "
        f"FROM json_array_elements(CAST({p} AS JSON)) AS fl_p(v))"
    )


def pairs_in(col_a: Any, col_b: Any, pairs: Sequence[tuple[str, str]]) -> ColumnElement[bool]:
    """``(a, b) IN (...)``; many pairs travel as one JSON parameter (see ``_PairsIn``)."""
    if not pairs:
        return and_(col_a.is_(None), col_a.is_not(None))
    if len(pairs) == 1:
        return and_(col_a == pairs[0][0], col_b == pairs[0][1])
    if len(pairs) <= 4:
        return tuple_(col_a, col_b).in_(pairs)
    return _PairsIn(col_a, col_b, pairs)


class _IdsIn(ColumnElement[bool]):
    """``col IN (integers from one JSON parameter)``: compiled once, whatever the count."""

    __visit_name__ = "fedlake_ids_in"
    inherit_cache = True
    type = NullType()  # type: ignore[assignment]
    _traverse_internals = [
        ("col", InternalTraversal.dp_clauseelement),
        ("param", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, col: Any, ids: Sequence[int]) -> None:
        self.col = col
        self.param = bindparam(None, list(ids), type_=_PairsJSON())


@compiles(_IdsIn)
def _ids_in_default(element: _IdsIn, compiler: SQLCompiler, **kw: Any) -> str:
    c, p = compiler.process(element.col, **kw), compiler.process(element.param, **kw)
    return f"{c} IN (SELECT value FROM json_each({p}))"


@compiles(_IdsIn, "postgresql")
def _ids_in_pg(element: _IdsIn, compiler: SQLCompiler, **kw: Any) -> str:
    c, p = compiler.process(element.col, **kw), compiler.process(element.param, **kw)
    return (
        f"{c} IN (SELECT CAST(fl_i.v AS BIGINT) "
        f"FROM json_array_elements_text(CAST({p} AS JSON)) AS fl_i(v))"
    )


def ids_in(col: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """``col IN (...)`` for many integer ids as one JSON parameter (see ``_IdsIn``)."""
    if not ids:
        return and_(col.is_(None), col.is_not(None))
    if len(ids) <= 4:
        return col.in_(list(ids))  # type: ignore[no-any-return]
    return _IdsIn(col, ids)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def insert_rows(
    session: Session, model: Any, rows: Sequence[dict[str, Any]], size: int = 5000
) -> None:
    """Insert many rows in one transaction with the session: COPY on PostgreSQL, a plain
    driver ``executemany`` on SQLite, Core ``insert`` otherwise (no ORM bookkeeping per row).

    Rows with the same keys take the fast paths; mixed keys fall back to Core inserts.
    """
    if not rows:
        return
    table = model.__table__
    conn = session.connection()
    keys = rows[0].keys()
    uniform = all(r.keys() == keys for r in rows)
    name = conn.dialect.name
    if uniform and name == "postgresql":
        _copy_rows(conn, table, list(keys), rows)
        return
    if uniform and name == "sqlite":
        _executemany_rows(conn, table, list(keys), rows, size)
        return
    for start in range(0, len(rows), size):
        conn.execute(insert(table), list(rows[start : start + size]))


def _executemany_rows(
    conn: Any, table: Any, cols: list[str], rows: Sequence[dict[str, Any]], size: int
) -> None:
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
        f"({', '.join(quote(c) for c in cols)}) VALUES ({', '.join('?' for _ in cols)})"
    )
    procs = [table.c[c].type._cached_bind_processor(dialect) for c in cols]
    columns = [[r[c] for r in rows] for c in cols]
    for i, proc in enumerate(procs):
        if proc is None:
            continue
        values = columns[i]
        try:  # the same few values (one timestamp, True/False) repeat in every row
            done = {v: None if v is None else proc(v) for v in set(values)}
            columns[i] = [done[v] for v in values]
        except TypeError:  # unhashable values
            columns[i] = [None if v is None else proc(v) for v in values]
    params = list(zip(*columns, strict=True))
    for start in range(0, len(params), size):
        conn.exec_driver_sql(sql, params[start : start + size])


def _copy_rows(conn: Any, table: Any, cols: list[str], rows: Sequence[dict[str, Any]]) -> None:
    prep = conn.dialect.identifier_preparer
    sql = f"COPY {prep.format_table(table)} ({', '.join(prep.quote(c) for c in cols)}) FROM STDIN"
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(sql) as copy:
        for r in rows:
            copy.write_row([r[c] for c in cols])


def insert_json_returning(
    session: Session,
    table: Any,
    rows: Sequence[dict[str, Any]],
    returning: Sequence[str],
    size: int = 5000,
) -> list[tuple[Any, ...]]:
    """PostgreSQL: ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` with the rows as one
    JSON parameter (``json_to_recordset``), ``size`` rows a statement. A multi-row VALUES
    statement costs psycopg a parse of every placeholder in Python (20 columns of 10,000
    rows: two thirds of queueing 10,000 transfers). Every row has the same keys, table
    columns; values are JSON numbers, strings, booleans or null (datetimes as text)."""
    if not rows:
        return []
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    cols = list(rows[0])
    names = ", ".join(quote(c) for c in cols)
    spec = ", ".join(f"{quote(c)} {table.c[c].type.compile(dialect=dialect)}" for c in cols)
    stmt = text(
        f"INSERT INTO {quote(table.name)} ({names}) SELECT {names} "
        f"FROM json_to_recordset(CAST(:rows AS JSON)) AS fl_r({spec}) "
        f"ON CONFLICT DO NOTHING RETURNING {', '.join(quote(c) for c in returning)}"
    )
    out: list[tuple[Any, ...]] = []
    for batch in chunks(rows, size):
        payload = orjson.dumps(batch).decode()  # naive datetimes as ISO text
        out.extend(tuple(r) for r in session.execute(stmt, {"rows": payload}))
    return out
