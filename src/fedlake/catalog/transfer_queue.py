"""Queueing transfer requests: copies of files asked for by an admin (``queue_requests``)
and the copies the locks of replication rules need (``queue_for_rules``). A file already
having an active request to an RSE keeps it; PostgreSQL workers on other hosts are woken
with ``NOTIFY`` (``transfers.wakeup``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import DateTime, and_, exists, func, literal, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from fedlake.catalog import events
from fedlake.catalog._util import chunks, insert_json_returning, pairs_in
from fedlake.catalog.dids import did_facts
from fedlake.catalog.models import DID, Lock, Replica, TransferRequest
from fedlake.catalog.transfers import ACTIVE
from fedlake.domain.errors import InvalidInput
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import DIDType, LockState, ReplicaState

__all__ = ["NewRequest", "queue_for_rules", "queue_requests"]

_Q = ACTIVE[0]
_NOTIFY = "fedlake_transfers"


@dataclass(frozen=True, slots=True)
class NewRequest:
    scope: str
    name: str
    dest_rse_id: str
    account: str
    activity: str = "default"
    priority: int = 3
    rule_id: str | None = None
    source_rse_expression: str | None = None
    verify_source: bool = False
    max_attempts: int = 5


# --- queueing ----------------------------------------------------------------------------


def _insert_ignoring_active(session: Session) -> Any:
    """INSERT that skips a file already having an active request to the same RSE."""
    table: Any = TransferRequest.__table__
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).prefix_with("OR IGNORE")


def _notify(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"NOTIFY {_NOTIFY}"))


def queue_requests(session: Session, items: Sequence[NewRequest]) -> list[int]:
    """Queue copies of files; returns each item's request id (an existing active one
    is reused). Unknown files and collections are refused."""
    if not items:
        return []
    keys = sorted({(i.scope, i.name) for i in items})
    found = did_facts(session, keys)
    for i in items:
        got = found.get((i.scope, i.name))
        if got is None:
            raise InvalidInput(f"{i.scope}:{i.name} does not exist; register it first")
        if got.did_type != DIDType.FILE.value:
            raise InvalidInput(f"{i.scope}:{i.name} is a {got.did_type}; transfers copy files")
        if got.bytes is None:
            raise InvalidInput(f"{i.scope}:{i.name} has no size; it cannot be transferred")
    now = utcnow()
    rows = [
        {
            "scope": i.scope,
            "name": i.name,
            "dest_rse_id": i.dest_rse_id,
            "rule_id": i.rule_id,
            "account": i.account,
            "activity": i.activity,
            "priority": i.priority,
            "state": _Q,
            "bytes": found[(i.scope, i.name)].bytes,
            "adler32": found[(i.scope, i.name)].adler32,
            "md5": found[(i.scope, i.name)].md5,
            "source_rse_expression": i.source_rse_expression,
            "verify_source": i.verify_source,
            "attempt": 0,
            "max_attempts": i.max_attempts,
            "leases_lost": 0,
            "not_before": now,
            "bytes_done": 0,
            "created_at": now,
            "updated_at": now,
        }
        for i in items
    ]
    tr: Any = TransferRequest.__table__
    found_ids: dict[tuple[str, str, str], int] = {}
    if session.get_bind().dialect.name == "postgresql":
        inserted = insert_json_returning(session, tr, rows, ("id", "scope", "name", "dest_rse_id"))
    else:
        stmt = _insert_ignoring_active(session).returning(
            tr.c.id, tr.c.scope, tr.c.name, tr.c.dest_rse_id
        )
        inserted = [tuple(r) for r in session.connection().execute(stmt, rows)]
    for rid, sc, nm, dest in inserted:
        found_ids[(sc, nm, dest)] = rid
    # files that already had an active request to that RSE: that request is theirs
    known = [i for i in items if (i.scope, i.name, i.dest_rse_id) not in found_ids]
    dests = sorted({i.dest_rse_id for i in known})
    for batch in chunks(sorted({(i.scope, i.name) for i in known})):
        for rid, sc, nm, dest in session.execute(
            select(
                TransferRequest.id,
                TransferRequest.scope,
                TransferRequest.name,
                TransferRequest.dest_rse_id,
            ).where(
                pairs_in(TransferRequest.scope, TransferRequest.name, batch),
                TransferRequest.dest_rse_id.in_(dests),
                TransferRequest.state.in_(ACTIVE),
            )
        ):
            found_ids[(sc, nm, dest)] = rid
    ids = [found_ids[(i.scope, i.name, i.dest_rse_id)] for i in items]
    # one event per call: the ids say which requests (monitoring expands them if it wants)
    events.emit(session, "transfer-queued", {"request_ids": ids})
    _notify(session)
    return ids


def _is_being_deleted(lock: Any) -> Any:
    return and_(
        Replica.rse_id == lock.rse_id,
        Replica.scope == lock.scope,
        Replica.name == lock.name,
        Replica.state == ReplicaState.BEING_DELETED.value,
    )


def queue_for_rules(session: Session, rule_ids: Sequence[str], activity: str | None) -> int:
    """Queue a request for every REPLICATING lock of these rules that has none yet."""
    if not rule_ids:
        return 0
    now = utcnow()
    from fedlake.catalog.models import Rule

    sel = (
        select(
            Lock.scope,
            Lock.name,
            Lock.rse_id,
            Lock.rule_id,
            Rule.account,
            func.coalesce(activity, Rule.activity),
            Rule.priority,
            literal(_Q),
            DID.bytes,
            DID.adler32,
            DID.md5,
            Rule.source_replica_expression,
            literal(now, DateTime),
            literal(now, DateTime),
            literal(now, DateTime),
        )
        .join(Rule, Rule.id == Lock.rule_id)
        .join(DID, and_(DID.scope == Lock.scope, DID.name == Lock.name))
        .where(Lock.rule_id.in_(rule_ids), Lock.state == LockState.REPLICATING.value)
        # a replica still being deleted is queued when its deletion ends (catalog.deletion)
        .where(~exists().where(_is_being_deleted(Lock)))
    )
    cols = [
        "scope",
        "name",
        "dest_rse_id",
        "rule_id",
        "account",
        "activity",
        "priority",
        "state",
        "bytes",
        "adler32",
        "md5",
        "source_rse_expression",
        "not_before",
        "created_at",
        "updated_at",
    ]
    stmt = _insert_ignoring_active(session).from_select(cols, sel)
    result = session.execute(stmt)
    n = int(getattr(result, "rowcount", 0) or 0)
    if n:
        events.emit(session, "transfer-queued", {"rule_ids": list(rule_ids), "requests": n})
        _notify(session)
    return n
