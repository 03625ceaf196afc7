"""Transfer requests in the catalogue: claim with leases, complete, inspect (queueing:
``catalog.transfer_queue``).

Claiming and completing are set-based (a few statements per batch, whatever its size) so a
worker keeps thousands of small files per second moving. Completions are fenced: a worker
may only finish the requests it still holds (``lease_owner``), so a request taken over
after its lease expired is never finished twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    bindparam,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from fedlake.catalog import events
from fedlake.catalog import rules as rule_core
from fedlake.catalog._util import chunks, ids_in, insert_rows, pairs_in
from fedlake.catalog.models import (
    DID,
    Replica,
    TransferAttempt,
    TransferRequest,
)
from fedlake.catalog.transfer_links import (
    distances,
    get_link,
    link_window,
    links,
    rse_names,
    set_distance,
    set_link,
    set_share,
    shares,
)
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import ReplicaState, RequestState

__all__ = [
    "ACTIVE",
    "Claimed",
    "Outcome",
    "active_counts",
    "candidates",
    "complete",
    "distances",
    "expired",
    "get_link",
    "link_window",
    "links",
    "mark_no_sources",
    "mark_submitted",
    "queued_activities",
    "release",
    "renew",
    "rse_names",
    "serialize_claims",
    "set_distance",
    "set_link",
    "set_share",
    "shares",
    "sources_of",
]

ACTIVE = (RequestState.QUEUED.value, RequestState.SUBMITTED.value, RequestState.WAITING.value)
_Q, _S, _W = ACTIVE
_DONE, _FAILED = RequestState.DONE.value, RequestState.FAILED.value
_ATTEMPT_STATE = {"done": "DONE", "waiting": "WAITING"}
_AVAILABLE = ReplicaState.AVAILABLE.value
#: SQL literal, so the planner can match the partial index on SUBMITTED rows
_IS_SUBMITTED = TransferRequest.state == literal_column("'SUBMITTED'")


@dataclass(slots=True)
class Claimed:
    """A request a worker holds, with what it needs to run it."""

    id: int
    scope: str
    name: str
    dest_rse_id: str
    bytes: int
    adler32: str | None
    md5: str | None
    attempt: int
    max_attempts: int
    activity: str
    priority: int
    verify_source: bool
    state: str  # the state it was claimed from (QUEUED, WAITING or an expired SUBMITTED)
    excluded: list[str] = field(default_factory=list)
    source_rse_id: str | None = None
    source_rse_expression: str | None = None
    source_path: str | None = None  # stored path of the source replica (non-deterministic)
    leases_lost: int = 0  # times a worker died (or hung) while holding it


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended. ``kind``: done, retry, exclude_source, failed, waiting."""

    request_id: int
    kind: str
    source_rse_id: str | None
    dest_rse_id: str
    scope: str
    name: str
    attempt: int
    started_at: datetime
    finished_at: datetime
    error: str | None = None
    recoverable: bool | None = None
    bytes: int = 0
    seconds: float = 0.0
    tpc: bool = False
    not_before: datetime | None = None
    dest_path: str | None = None  # stored for non-deterministic destinations
    mark_source_bad: bool = False
    digest: tuple[int, str | None, str | None] | None = None  # bytes, adler32, md5 seen

    @classmethod
    def of(cls, c: Claimed, kind: str, started_at: datetime, **kw: Any) -> Outcome:
        """How this attempt of ``c`` ended, now."""
        return cls(
            request_id=c.id,
            kind=kind,
            source_rse_id=c.source_rse_id,
            dest_rse_id=c.dest_rse_id,
            scope=c.scope,
            name=c.name,
            attempt=c.attempt,
            started_at=started_at,
            finished_at=utcnow(),
            **kw,
        )


# --- claiming ----------------------------------------------------------------------------


def serialize_claims(session: Session) -> None:
    """Claims of all workers run one at a time (limits stay exact); cheap and short."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7351001)"))


def active_counts(session: Session, now: datetime) -> dict[tuple[str, str], int]:
    """Requests running now per (source, destination) link."""
    rows = session.execute(
        select(TransferRequest.source_rse_id, TransferRequest.dest_rse_id, func.count())
        .where(_IS_SUBMITTED, TransferRequest.lease_expires >= now)
        .group_by(TransferRequest.source_rse_id, TransferRequest.dest_rse_id)
    )
    return {(s or "", d): n for s, d, n in rows}


_CLAIM_COLS = (
    TransferRequest.id,
    TransferRequest.scope,
    TransferRequest.name,
    TransferRequest.dest_rse_id,
    TransferRequest.bytes,
    TransferRequest.adler32,
    TransferRequest.md5,
    TransferRequest.attempt,
    TransferRequest.max_attempts,
    TransferRequest.activity,
    TransferRequest.priority,
    TransferRequest.verify_source,
    TransferRequest.state,
    TransferRequest.excluded_sources,
    TransferRequest.source_rse_expression,
    TransferRequest.leases_lost,
)


def _claimed(row: Any) -> Claimed:
    return Claimed(
        id=row[0],
        scope=row[1],
        name=row[2],
        dest_rse_id=row[3],
        bytes=row[4],
        adler32=row[5],
        md5=row[6],
        attempt=row[7],
        max_attempts=row[8],
        activity=row[9],
        priority=row[10],
        verify_source=bool(row[11]),
        state=row[12],
        excluded=json.loads(row[13]) if row[13] else [],
        source_rse_expression=row[14],
        leases_lost=row[15],
    )


def _lock_rows(session: Session, q: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return q.with_for_update(skip_locked=True)
    return q


def expired(session: Session, now: datetime, limit: int) -> list[Claimed]:
    """SUBMITTED requests whose worker's lease ran out (the worker died or hung)."""
    q = select(*_CLAIM_COLS).where(_IS_SUBMITTED, TransferRequest.lease_expires < now).limit(limit)
    return [_claimed(r) for r in session.execute(_lock_rows(session, q))]


def candidates(
    session: Session,
    now: datetime,
    limit: int,
    activity: str | None = None,
    *,
    after: tuple[int, int] | None = None,
) -> list[Claimed]:
    """Runnable requests, most urgent first: due WAITING (staging), then due QUEUED.

    ``after`` = (priority, id) of the last QUEUED request already looked at: the next page
    of the queue in index order (a bounded read, however long the queue), so the requests
    behind ones blocked by a full link are reached (no head-of-line blocking)."""
    out: list[Claimed] = []
    for state in (_W, _Q) if after is None else (_Q,):
        if len(out) >= limit:
            break
        q = (
            select(*_CLAIM_COLS)
            .where(TransferRequest.state == state, TransferRequest.not_before <= now)
            .order_by(TransferRequest.priority.desc(), TransferRequest.id)
            .limit(limit - len(out))
        )
        if activity is not None:
            q = q.where(TransferRequest.activity == activity)
        if after is not None:
            prio, last = after
            q = q.where(
                (TransferRequest.priority < prio)
                | ((TransferRequest.priority == prio) & (TransferRequest.id > last))
            )
        out.extend(_claimed(r) for r in session.execute(_lock_rows(session, q)))
    return out


def queued_activities(session: Session, now: datetime) -> list[str]:
    return list(
        session.scalars(
            select(TransferRequest.activity)
            .where(TransferRequest.state == _Q, TransferRequest.not_before <= now)
            .distinct()
        )
    )


def sources_of(
    session: Session, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], list[tuple[str, str | None]]]:
    """AVAILABLE replicas of these files: (RSE id, stored path) per file."""
    out: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
    for batch in chunks(sorted(set(keys))):
        # the state is checked here, not in SQL: with it in the WHERE clause SQLite may
        # serve the query from replicas_state_idx and read every AVAILABLE replica
        for rse_id, s, n, path, state in session.execute(
            select(Replica.rse_id, Replica.scope, Replica.name, Replica.path, Replica.state).where(
                pairs_in(Replica.scope, Replica.name, batch)
            )
        ):
            if state == _AVAILABLE:
                out.setdefault((s, n), []).append((rse_id, path))
    return out


def mark_submitted(
    session: Session, owner: str, claimed: Sequence[Claimed], now: datetime, lease: float
) -> None:
    if not claimed:
        return
    expires = now + timedelta(seconds=lease)
    session.connection().execute(
        update(TransferRequest.__table__)  # type: ignore[arg-type]
        .where(TransferRequest.__table__.c.id == bindparam("rid"))
        .values(
            state=_S,
            source_rse_id=bindparam("src"),
            attempt=bindparam("att"),
            leases_lost=bindparam("lost"),
            lease_owner=owner,
            lease_expires=expires,
            submitted_at=now,
            updated_at=now,
        ),
        [
            {"rid": c.id, "src": c.source_rse_id, "att": c.attempt, "lost": c.leases_lost}
            for c in claimed
        ],
    )
    events.emit(
        session,
        "transfer-submitted",
        {"worker": owner, "requests": [[c.id, c.attempt, c.source_rse_id] for c in claimed]},
    )


def mark_no_sources(
    session: Session,
    claimed: Sequence[Claimed],
    now: datetime,
    *,
    state: str = RequestState.NO_SOURCES.value,
    reason: str = "no available replica can serve as source",
) -> None:
    """Requests that cannot run at all: terminal (NO_SOURCES or FAILED); locks get STUCK."""
    if not claimed:
        return
    ids = [c.id for c in claimed]
    session.execute(
        update(TransferRequest)
        .where(TransferRequest.id.in_(ids))
        .values(
            state=state,
            error=reason,
            finished_at=now,
            updated_at=now,
            lease_owner=None,
            lease_expires=None,
        )
    )
    rule_core.stick_locks(session, [(c.dest_rse_id, c.scope, c.name) for c in claimed])
    events.emit_many(
        session,
        "transfer-failed",
        [{"request_id": c.id, "scope": c.scope, "name": c.name, "reason": reason} for c in claimed],
    )


# --- leases ------------------------------------------------------------------------------


def renew(session: Session, owner: str, lease: float) -> int:
    now = utcnow()
    result = session.execute(
        update(TransferRequest)
        .where(TransferRequest.lease_owner == owner, TransferRequest.state == _S)
        .values(lease_expires=now + timedelta(seconds=lease))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def release(session: Session, owner: str, ids: Sequence[int] | None = None) -> int:
    """Give requests back to the queue (a worker stopping cleanly)."""
    cond = [TransferRequest.lease_owner == owner, TransferRequest.state == _S]
    if ids is not None:
        cond.append(TransferRequest.id.in_(list(ids)))
    result = session.execute(
        update(TransferRequest)
        .where(*cond)
        .values(
            state=_Q,
            lease_owner=None,
            lease_expires=None,
            attempt=TransferRequest.attempt - 1,
            updated_at=utcnow(),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- completion --------------------------------------------------------------------------


def _owned(session: Session, owner: str, ids: list[int]) -> set[int]:
    q = select(TransferRequest.id).where(
        ids_in(TransferRequest.id, ids),
        TransferRequest.lease_owner == owner,
        TransferRequest.state == _S,
    )
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    return set(session.scalars(q))


def complete(session: Session, owner: str, outcomes: Sequence[Outcome]) -> list[int]:
    """Record attempts and move requests on; returns the ids this worker still held
    (the others were taken over after an expired lease: their outcome is dropped)."""
    if not outcomes:
        return []
    owned = _owned(session, owner, [o.request_id for o in outcomes])
    mine = sorted((o for o in outcomes if o.request_id in owned), key=lambda o: o.request_id)
    if not mine:
        return []
    now = utcnow()
    conn = session.connection()
    t = TransferRequest.__table__
    insert_rows(
        session,
        TransferAttempt,
        [
            {
                "request_id": o.request_id,
                "attempt": o.attempt,
                "source_rse_id": o.source_rse_id,
                "dest_rse_id": o.dest_rse_id,
                "worker": owner,
                "state": "DONE"
                if o.kind == "done"
                else ("WAITING" if o.kind == "waiting" else "FAILED"),
                "error": o.error,
                "recoverable": o.recoverable,
                "bytes": o.bytes,
                "seconds": o.seconds,
                "tpc": o.tpc,
                "started_at": o.started_at,
                "finished_at": o.finished_at,
            }
            for o in mine
        ],
    )
    by_kind: dict[str, list[Outcome]] = {}
    for o in mine:
        by_kind.setdefault(o.kind, []).append(o)
    done = by_kind.get("done", [])
    if done:
        conn.execute(
            update(t)  # type: ignore[arg-type]
            .where(t.c.id == bindparam("rid"))
            .values(
                state=_DONE,
                lease_owner=None,
                lease_expires=None,
                error=None,
                bytes_done=bindparam("b"),
                finished_at=now,
                updated_at=now,
            ),
            [{"rid": o.request_id, "b": o.bytes} for o in done],
        )
        _replicas_available(session, done, now)
        events.emit_many(
            session,
            "transfer-done",
            [
                {
                    "request_id": o.request_id,
                    "scope": o.scope,
                    "name": o.name,
                    "bytes": o.bytes,
                    "seconds": round(o.seconds, 6),
                }
                for o in done
            ],
        )
    again = (
        by_kind.get("retry", []) + by_kind.get("exclude_source", []) + by_kind.get("waiting", [])
    )
    if again:
        excluded = _excluded_after(session, by_kind.get("exclude_source", []))
        conn.execute(
            update(t)  # type: ignore[arg-type]
            .where(t.c.id == bindparam("rid"))
            .values(
                state=bindparam("st"),
                lease_owner=None,
                lease_expires=None,
                error=bindparam("err"),
                not_before=bindparam("nb"),
                attempt=bindparam("att"),
                excluded_sources=bindparam("ex"),
                updated_at=now,
            ),
            [
                {
                    "rid": o.request_id,
                    "st": _W if o.kind == "waiting" else _Q,
                    "err": o.error,
                    "nb": o.not_before or now,
                    # staging polls are not failed attempts
                    "att": o.attempt - 1 if o.kind == "waiting" else o.attempt,
                    "ex": excluded.get(o.request_id),
                }
                for o in again
            ],
        )
    # a source found missing is BAD, also when this was the request's last attempt
    for o in mine:
        if o.mark_source_bad and o.source_rse_id:
            session.execute(
                update(Replica)
                .where(
                    Replica.rse_id == o.source_rse_id,
                    Replica.scope == o.scope,
                    Replica.name == o.name,
                )
                .values(state=ReplicaState.BAD.value, updated_at=now)
            )
    failed = by_kind.get("failed", [])
    if failed:
        conn.execute(
            update(t)  # type: ignore[arg-type]
            .where(t.c.id == bindparam("rid"))
            .values(
                state=_FAILED,
                lease_owner=None,
                lease_expires=None,
                error=bindparam("err"),
                finished_at=now,
                updated_at=now,
            ),
            [{"rid": o.request_id, "err": o.error} for o in failed],
        )
        rule_core.stick_locks(session, [(o.dest_rse_id, o.scope, o.name) for o in failed])
        events.emit_many(
            session,
            "transfer-failed",
            [
                {"request_id": o.request_id, "scope": o.scope, "name": o.name, "reason": o.error}
                for o in failed
            ],
        )
    return [o.request_id for o in mine]


def _excluded_after(session: Session, outcomes: Sequence[Outcome]) -> dict[int, str | None]:
    """The excluded-sources JSON of requests after adding this attempt's source."""
    if not outcomes:
        return {}
    rows = session.execute(
        select(TransferRequest.id, TransferRequest.excluded_sources).where(
            TransferRequest.id.in_([o.request_id for o in outcomes])
        )
    )
    current = {rid: (json.loads(ex) if ex else []) for rid, ex in rows}
    out: dict[int, str | None] = {}
    for o in outcomes:
        lst = current.get(o.request_id, [])
        if o.source_rse_id and o.source_rse_id not in lst:
            lst.append(o.source_rse_id)
        out[o.request_id] = json.dumps(lst)
    return out


def _replicas_available(session: Session, done: Sequence[Outcome], now: datetime) -> None:
    """The destination replicas become AVAILABLE (created when no rule made them); files
    marked LOST by the deletion of their last replica are available again."""
    by_rse: dict[str, list[Outcome]] = {}
    for o in done:
        by_rse.setdefault(o.dest_rse_id, []).append(o)
    conn = session.connection()
    rt = Replica.__table__
    for rse_id, items in by_rse.items():
        keys = [(o.scope, o.name) for o in items]
        existing: set[tuple[str, str]] = set()
        for batch in chunks(keys):
            existing.update(
                (a, b)
                for a, b in session.execute(
                    select(Replica.scope, Replica.name).where(
                        Replica.rse_id == rse_id, pairs_in(Replica.scope, Replica.name, batch)
                    )
                )
            )
        have = [o for o in items if (o.scope, o.name) in existing]
        if have:
            conn.execute(
                update(rt)  # type: ignore[arg-type]
                .where(
                    rt.c.rse_id == rse_id,
                    rt.c.scope == bindparam("s"),
                    rt.c.name == bindparam("n"),
                )
                .values(
                    state=ReplicaState.AVAILABLE.value,
                    path=func.coalesce(rt.c.path, bindparam("p")),
                    accessed_at=now,
                    updated_at=now,
                    tombstone=None,
                ),
                [{"s": o.scope, "n": o.name, "p": o.dest_path} for o in have],
            )
        new = [o for o in items if (o.scope, o.name) not in existing]
        if new:
            sizes = {
                (s, n): (b, a, m)
                for s, n, b, a, m in session.execute(
                    select(DID.scope, DID.name, DID.bytes, DID.adler32, DID.md5).where(
                        pairs_in(DID.scope, DID.name, [(o.scope, o.name) for o in new])
                    )
                )
            }
            insert_rows(
                session,
                Replica,
                [
                    {
                        "rse_id": rse_id,
                        "scope": o.scope,
                        "name": o.name,
                        "bytes": sizes[(o.scope, o.name)][0],
                        "adler32": sizes[(o.scope, o.name)][1],
                        "md5": sizes[(o.scope, o.name)][2],
                        "path": o.dest_path,
                        "state": ReplicaState.AVAILABLE.value,
                        "lock_cnt": 0,
                        "accessed_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for o in new
                ],
            )
        rule_core.locks_available(session, rse_id, keys)
        for batch in chunks(keys):
            session.execute(
                update(DID)
                .where(pairs_in(DID.scope, DID.name, batch), DID.availability == "LOST")
                .values(availability="AVAILABLE")
            )
