"""DID metadata: typed key/values in ``did_meta``, DID-column views, and filtered search."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    delete,
    false,
    insert,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from fedlake.catalog._util import chunks, dumps, insert_rows, pairs_in
from fedlake.catalog.dids import existing_dids, get_did, set_expiry
from fedlake.catalog.models import DID, DIDMeta
from fedlake.domain.errors import (
    DIDNotFound,
    InvalidFilter,
    InvalidInput,
    InvalidMetadata,
    KeyNotFound,
    UnsupportedMetadataPlugin,
)
from fedlake.domain.names import validate_meta_key
from fedlake.domain.timefmt import parse_datetime, utcnow
from fedlake.domain.types import DIDType
from fedlake.expressions.did_filters import Cond, Filter, coerce_value

__all__ = [
    "COLUMN_VIEW_KEYS",
    "PLUGINS",
    "delete_meta",
    "get_meta",
    "get_meta_bulk",
    "search",
    "set_meta",
    "typed",
]

PLUGINS = ("DID_COLUMN", "JSON", "ALL")
#: keys Rucio keeps as DID columns; we keep the extra ones as typed metadata
COLUMN_VIEW_KEYS = (
    "project",
    "datatype",
    "run_number",
    "stream_name",
    "prod_step",
    "version",
    "campaign",
    "task_id",
    "panda_id",
    "lumiblocknr",
    "provenance",
    "phys_group",
    "transient",
)
#: keys that change DID columns instead of free metadata, with their value checks
_COLUMN_SETTERS = {"guid": str, "events": int, "hidden": bool}
_READ_ONLY = {
    "account",
    "availability",
    "complete",
    "created_at",
    "did_type",
    "is_open",
    "monotonic",
    "obsolete",
    "scope",
    "suppressed",
    "updated_at",
    "name",
    "bytes",
    "length",
    "adler32",
    "md5",
    "type",
}
_COLUMNS: dict[str, Any] = {
    "name": DID.name,
    "scope": DID.scope,
    "bytes": DID.bytes,
    "length": DID.length,
    "account": DID.account,
    "guid": DID.guid,
    "events": DID.events,
    "adler32": DID.adler32,
    "md5": DID.md5,
    "is_open": DID.is_open,
    "monotonic": DID.monotonic,
    "created_at": DID.created_at,
    "updated_at": DID.updated_at,
    "expired_at": DID.expired_at,
    "availability": DID.availability,
    "hidden": DID.hidden,
}
MAX_STR = 255


def typed(value: Any) -> dict[str, Any]:
    """Columns of a ``did_meta`` row for ``value`` (strings that look typed are indexed so)."""
    out: dict[str, Any] = {
        "value": dumps(value),
        "str_val": None,
        "num_val": None,
        "date_val": None,
    }
    if isinstance(value, bool):
        out.update(vtype="b", num_val=1.0 if value else 0.0)
    elif isinstance(value, int):
        if abs(value) > 1e300:
            raise InvalidMetadata(f"metadata value {value} is too large for a number")
        out.update(vtype="i", num_val=float(value))
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidMetadata(f"metadata value {value} is not a finite number")
        out.update(vtype="f", num_val=value)
    elif isinstance(value, str):
        out.update(vtype="s", str_val=value[:MAX_STR])
        inferred = coerce_value(value)
        if isinstance(inferred, bool):
            out["num_val"] = 1.0 if inferred else 0.0
        elif isinstance(inferred, int | float) and abs(inferred) <= 1e300:
            out["num_val"] = float(inferred)
        elif isinstance(inferred, datetime):
            out.update(vtype="d", date_val=inferred)
    elif isinstance(value, list | dict) or value is None:
        out.update(vtype="j")
    else:
        raise InvalidMetadata(f"metadata value {value!r} is not JSON")
    return out


def _column_value(key: str, value: Any) -> Any:
    kind = _COLUMN_SETTERS[key]
    if kind is int:
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise InvalidMetadata(f"metadata {key} must be an integer, got {value!r}") from None
        if not 0 <= number < 2**63:
            raise InvalidMetadata(f"metadata {key} must be from 0 to 2**63-1, got {number}")
        return number
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise InvalidMetadata(f"metadata {key} must be true or false, got {value!r}")
    if not isinstance(value, str) or len(value) > 36:
        raise InvalidMetadata(f"metadata {key} must be a string of at most 36 characters")
    return value


def _lifetime(value: Any) -> float | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float | str)):
        raise InvalidMetadata(f"lifetime must be a number of seconds or null, got {value!r}")
    try:
        seconds = None if value in (None, "", "None", "null") else float(value)
    except ValueError:
        raise InvalidMetadata(f"lifetime must be a number of seconds, got {value!r}") from None
    if seconds is not None and not abs(seconds) <= 1e10:  # also refuses NaN
        raise InvalidMetadata(f"lifetime must be at most 1e10 seconds, got {value!r}")
    return seconds


def _plan_key(key: str, value: Any) -> tuple[str, Any]:
    """Validate one key/value and say what to store (raises before anything is written)."""
    if key == "lifetime":
        return key, _lifetime(value)
    if key in ("expired_at", "eol_at"):
        try:
            return key, None if value is None else parse_datetime(str(value))
        except ValueError:
            raise InvalidMetadata(f"{key} must be a date, got {value!r}") from None
    validate_meta_key(key)
    if key in _READ_ONLY:
        raise InvalidMetadata(f"metadata key {key!r} is managed by the lake and cannot be set")
    if key in _COLUMN_SETTERS:
        return key, _column_value(key, value)
    return key, typed(value)


_SPECIAL_KEYS = frozenset({"lifetime", "expired_at", "eol_at", *_COLUMN_SETTERS})
_META_VALUE_COLUMNS = ("vtype", "value", "str_val", "num_val", "date_val")
_DIDS = cast(Table, DID.__table__)
#: statements of the plain-metadata path, built once: per call only parameters change
_TOUCH_DID = (
    update(_DIDS)
    .where(_DIDS.c.scope == bindparam("t_scope"), _DIDS.c.name == bindparam("t_name"))
    .values(updated_at=bindparam("t_now"))
)
_upserts: dict[str, Any] = {}


def _meta_upsert(dialect: str) -> Any:
    """``INSERT INTO did_meta ... ON CONFLICT (scope, name, key) DO UPDATE``, built once."""
    stmt = _upserts.get(dialect)
    if stmt is None:
        table = cast(Table, DIDMeta.__table__)
        base = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
        stmt = _upserts[dialect] = base.on_conflict_do_update(
            index_elements=["scope", "name", "key"],
            set_={col: base.excluded[col] for col in _META_VALUE_COLUMNS},
        )
    return stmt


def _pg_touch_and_upsert_one() -> Any:
    """PostgreSQL, one key: touch the DID and upsert the key in one statement (one round
    trip instead of two). No row is written when the DID does not exist (rowcount 0)."""
    stmt = _upserts.get("postgresql-one")
    if stmt is None:
        table = cast(Table, DIDMeta.__table__)
        touched = _TOUCH_DID.returning(_DIDS.c.scope, _DIDS.c.name).cte("touched")
        source = select(
            touched.c.scope,
            touched.c.name,
            bindparam("m_key", type_=table.c.key.type),
            bindparam("m_vtype", type_=table.c.vtype.type),
            bindparam("m_value", type_=table.c.value.type),
            sql_cast(bindparam("m_str_val"), table.c.str_val.type),
            sql_cast(bindparam("m_num_val"), table.c.num_val.type),
            sql_cast(bindparam("m_date_val"), table.c.date_val.type),
        )
        base = pg_insert(table).from_select(["scope", "name", "key", *_META_VALUE_COLUMNS], source)
        stmt = _upserts["postgresql-one"] = base.on_conflict_do_update(
            index_elements=["scope", "name", "key"],
            set_={col: base.excluded[col] for col in _META_VALUE_COLUMNS},
        ).execution_options(preserve_rowcount=True)  # an INSERT's rowcount is not kept else
    return stmt


def set_meta(session: Session, scope: str, name: str, meta: dict[str, Any]) -> None:
    """Set several keys on one DID; validates every key and value before writing."""
    try:
        plan = [_plan_key(key, value) for key, value in meta.items()]
    except InvalidInput:
        get_did(session, scope, name)  # a missing DID is the first thing to report
        raise
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql") and not any(k in _SPECIAL_KEYS for k, _ in plan):
        _set_plain_meta(session, dialect, scope, name, plan)
        return
    row = get_did(session, scope, name)
    for key, value in plan:
        if key == "lifetime":
            set_expiry(session, scope, name, value)
        elif key == "expired_at":
            row.expired_at = value
        elif key == "eol_at":
            continue
        elif key in _COLUMN_SETTERS:
            setattr(row, key, value)
        else:
            existing = session.get(DIDMeta, (scope, name, key))
            if existing is None:
                session.execute(
                    insert(DIDMeta), [{"scope": scope, "name": name, "key": key, **value}]
                )
            else:
                for col, v in value.items():
                    setattr(existing, col, v)
    row.updated_at = utcnow()
    session.flush()


def _set_plain_meta(
    session: Session, dialect: str, scope: str, name: str, plan: list[tuple[str, Any]]
) -> None:
    """Only ``did_meta`` keys: two Core statements whatever the number of keys (one on
    PostgreSQL for a single key).

    The UPDATE of ``updated_at`` doubles as the existence check (and takes the DID's row
    lock on PostgreSQL, as the ORM update did); the upsert writes every key at once. Core,
    not ORM: the ORM's per-statement bookkeeping cost more than the database work.
    """
    session.flush()  # DIDs added earlier in this transaction must be visible to the UPDATE
    conn = session.connection()
    now = utcnow()
    touch = {"t_scope": scope, "t_name": name, "t_now": now}
    if dialect == "postgresql" and len(plan) == 1:
        key, value = plan[0]
        params = touch | {"m_key": key} | {f"m_{col}": value[col] for col in _META_VALUE_COLUMNS}
        found = conn.execute(_pg_touch_and_upsert_one(), params).rowcount == 1
    else:
        found = conn.execute(_TOUCH_DID, touch).rowcount == 1
        if found and plan:
            rows = [{"scope": scope, "name": name, "key": key, **value} for key, value in plan]
            conn.execute(_meta_upsert(dialect), rows[0] if len(rows) == 1 else rows)
    if not found:
        raise DIDNotFound(f"data identifier {scope}:{name} does not exist")
    loaded = session.identity_map.get(session.identity_key(DID, (scope, name)))
    if loaded is not None:  # keep an already loaded DID object in step with the row
        set_committed_value(loaded, "updated_at", now)


def delete_meta(session: Session, scope: str, name: str, key: str) -> None:
    get_did(session, scope, name)
    res = session.execute(
        delete(DIDMeta).where(DIDMeta.scope == scope, DIDMeta.name == name, DIDMeta.key == key)
    )
    if res.rowcount == 0:  # type: ignore[attr-defined]
        raise KeyNotFound(f"{scope}:{name} has no metadata key {key!r}")


def _json_meta(session: Session, scope: str, name: str) -> dict[str, Any]:
    rows = session.execute(
        select(DIDMeta.key, DIDMeta.value).where(DIDMeta.scope == scope, DIDMeta.name == name)
    )
    return {k: json.loads(v) for k, v in rows}


def column_view(row: DID, json_meta: dict[str, Any]) -> dict[str, Any]:
    """Rucio's DID_COLUMN metadata: the DID row, with every column Rucio has."""
    out: dict[str, Any] = {
        "scope": row.scope,
        "name": row.name,
        "account": row.account,
        "did_type": row.did_type,
        "is_open": row.is_open,
        "monotonic": row.monotonic,
        "hidden": row.hidden,
        "obsolete": False,
        "complete": None,
        "is_new": False,
        "availability": row.availability,
        "suppressed": False,
        "bytes": row.bytes,
        "length": row.length if row.did_type != DIDType.FILE else 1,
        "md5": row.md5,
        "adler32": row.adler32,
        "expired_at": row.expired_at,
        "purge_replicas": True,
        "deleted_at": None,
        "events": row.events,
        "guid": row.guid,
        "accessed_at": row.accessed_at,
        "closed_at": row.closed_at,
        "eol_at": None,
        "is_archive": None,
        "constituent": None,
        "access_cnt": None,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    for key in COLUMN_VIEW_KEYS:
        out[key] = json_meta.get(key)
    return out


def get_meta(session: Session, scope: str, name: str, plugin: str = "DID_COLUMN") -> dict[str, Any]:
    plugin = (plugin or "DID_COLUMN").upper()
    if plugin not in PLUGINS:
        raise UnsupportedMetadataPlugin(f"metadata plugin {plugin!r} does not exist; use {PLUGINS}")
    row = get_did(session, scope, name)
    meta = _json_meta(session, scope, name)
    if plugin == "JSON":
        return meta
    view = column_view(row, meta)
    if plugin == "ALL":
        view.update(meta)
    return view


def get_meta_bulk(
    session: Session, keys: Sequence[tuple[str, str]], plugin: str = "DID_COLUMN"
) -> Iterator[dict[str, Any]]:
    """Metadata of the DIDs of ``keys`` that exist (missing ones are skipped, as Rucio)."""
    if (plugin or "DID_COLUMN").upper() not in PLUGINS:
        raise UnsupportedMetadataPlugin(f"metadata plugin {plugin!r} does not exist; use {PLUGINS}")
    found = existing_dids(session, keys)  # one query per batch, not one per missing name
    for scope, name in keys:
        if (scope, name) in found:
            yield get_meta(session, scope, name, plugin)


# --- search ------------------------------------------------------------------------------


def _like(pattern: str) -> str:
    return pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")


def _compare(col: Any, op: str, value: Any) -> ColumnElement[bool]:
    if isinstance(value, str) and "*" in value and op in ("=", "!="):
        cond: ColumnElement[bool] = col.like(_like(value), escape="\\")
        return cond if op == "=" else ~cond
    ops: dict[str, ColumnElement[bool]] = {
        "=": col == value,
        "!=": col != value,
        "<": col < value,
        "<=": col <= value,
        ">": col > value,
        ">=": col >= value,
    }
    return ops[op]


def _meta_condition(cond: Cond) -> ColumnElement[bool]:
    value = cond.value
    if isinstance(value, bool):
        inner = _compare(DIDMeta.num_val, cond.op, 1.0 if value else 0.0)
    elif isinstance(value, int | float):
        if not abs(value) <= 1e300:
            raise InvalidFilter(f"filter value {value} of {cond.key!r} is too large a number")
        inner = _compare(DIDMeta.num_val, cond.op, float(value))
    elif isinstance(value, datetime):
        inner = _compare(DIDMeta.date_val, cond.op, value)
    else:
        inner = _compare(DIDMeta.str_val, cond.op, str(value))
    # (scope, name) IN (...), not a correlated EXISTS: SQLite then starts from the
    # (key, value) index instead of probing every DID of the scope (2.5 s -> ms at 1M DIDs)
    return tuple_(DID.scope, DID.name).in_(
        select(DIDMeta.scope, DIDMeta.name).where(DIDMeta.key == cond.key, inner)
    )


def _condition(cond: Cond) -> ColumnElement[bool]:
    col = _COLUMNS.get(cond.key)
    if col is None:
        return _meta_condition(cond)
    value = cond.value
    if cond.key in ("name", "scope", "account", "guid", "adler32", "md5", "availability"):
        value = str(value)
    else:  # checked here: a type error from the database would end a stream already sent
        _check_column_value(cond)
    return _compare(col, cond.op, value)


_NUMBER_COLUMNS = ("bytes", "length", "events")
_DATE_COLUMNS = ("created_at", "updated_at", "expired_at")


def _check_column_value(cond: Cond) -> None:
    value = cond.value
    if cond.key in _NUMBER_COLUMNS:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < 2**63
        kind = "a number"
    elif cond.key in _DATE_COLUMNS:
        ok, kind = isinstance(value, datetime), "a date like 2024-01-31 or 2024-01-31T12:00:00"
    else:
        ok, kind = isinstance(value, bool), "true or false"
    if not ok:
        raise InvalidFilter(f"filter {cond.key}{cond.op}{value!r}: {cond.key} needs {kind}")


_TYPE_SETS = {
    "all": None,
    "collection": (DIDType.DATASET.value, DIDType.CONTAINER.value),
    "dataset": (DIDType.DATASET.value,),
    "container": (DIDType.CONTAINER.value,),
    "file": (DIDType.FILE.value,),
}


def search(
    session: Session, scope: str, flt: Filter, default_type: str, limit: int | None = None
) -> Iterator[DID]:
    """DIDs of ``scope`` matching ``flt`` (OR of AND-groups), streamed in name order."""
    yield from session.scalars(search_statement(scope, flt, default_type, limit))


def search_statement(
    scope: str, flt: Filter, default_type: str, limit: int | None = None
) -> Select[DID]:
    """The query of :func:`search`; raises InvalidFilter for values of the wrong type."""
    ors = []
    for group, gtype in zip(flt.groups, flt.types, strict=True):
        types = _TYPE_SETS[gtype or default_type]
        parts: list[ColumnElement[bool]] = [_condition(c) for c in group]
        if types is not None:
            parts.append(DID.did_type.in_(types))
        ors.append(and_(true(), *parts))
    stmt = (
        select(DID)
        .where(DID.scope == scope, DID.hidden == false(), or_(*ors))
        .order_by(DID.name)
        .execution_options(yield_per=2000)
    )
    if limit:
        stmt = stmt.limit(limit)
    return stmt


def copy_meta_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    insert_rows(session, DIDMeta, rows, 2000)


def meta_for(
    session: Session, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for batch in chunks(keys):
        for s, n, k, v in session.execute(
            select(DIDMeta.scope, DIDMeta.name, DIDMeta.key, DIDMeta.value).where(
                pairs_in(DIDMeta.scope, DIDMeta.name, batch)
            )
        ):
            out.setdefault((s, n), {})[k] = json.loads(v)
    return out
