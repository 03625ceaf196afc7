"""Deleting replicas (the reaper's bookkeeping): pick, claim, finish, record failures.

A replica with no locks and a tombstone in the past may be deleted. Work on one RSE goes
in three phases (see ``Phase``): claims a killed reaper left behind, then OBSOLETE replicas
(tombstone at the epoch: always deleted), then least recently used ones (only when the RSE
is greedy or short of free space; ``Target``). A replica of a file with an active transfer
request is never taken: it may be the copy's source, or a copy is being written here.

Claiming sets ``state = BEING_DELETED`` and ``updated_at = now``: that is the lease. A
claim older than the lease is taken again by the next reaper (the holder died). On
PostgreSQL claims read with ``FOR UPDATE SKIP LOCKED`` so concurrent reapers never take the
same rows; SQLite has one writer. ``finish`` removes the rows whose files are gone and
records everything about it in one transaction; ``fail`` keeps the others for a retry after
the lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, text, update
from sqlalchemy.orm import Session

from fedlake.catalog import events
from fedlake.catalog._util import chunks, loads, pairs_in
from fedlake.catalog.models import DID, RSE, Lock, Replica, RSEAttribute, RSELimit, RSEUsage
from fedlake.catalog.models import TransferRequest as _TR
from fedlake.catalog.replica_locks import OBSOLETE
from fedlake.catalog.transfer_queue import queue_for_rules
from fedlake.catalog.transfers import ACTIVE
from fedlake.domain.errors import RSENotFound
from fedlake.domain.types import ReplicaState

__all__ = [
    "DEFAULT_LEASE",
    "GREEDY",
    "LOST",
    "MIN_FREE_SPACE",
    "OBSOLETE",
    "Candidate",
    "Failure",
    "Finished",
    "Phase",
    "Target",
    "claim",
    "deletion_targets",
    "fail",
    "finish",
    "release_locked",
    "reported_free",
]

#: seconds a claim holds replicas; older BEING_DELETED rows are claimed again
DEFAULT_LEASE = 600.0
#: RSE attribute: delete every unlocked, tombstoned replica now (Rucio's name)
GREEDY = "greedyDeletion"
#: RSE limit: bytes that must stay free (Rucio's name)
MIN_FREE_SPACE = "MinFreeSpace"
#: RSE attributes naming the usage source of total and used space (Rucio's names)
TOTAL_SOURCE, USED_SOURCE = "source_for_total_space", "source_for_used_space"
#: availability of a file DID whose last replica was deleted (Rucio's DIDAvailability)
LOST = "LOST"

_BEING_DELETED = ReplicaState.BEING_DELETED.value
_COPYING = ReplicaState.COPYING.value
_LIVE_SOURCE = "rucio"  # computed from the replicas table, never stored
_STATIC_SOURCE = "static"  # a configured capacity, not a measurement
_FINISH_LOCK = 7351101  # PostgreSQL advisory lock taken by every finish


class Phase(StrEnum):
    """What a claim looks for, in the order a reaper works through an RSE."""

    RESUME = "resume"  # BEING_DELETED past the lease: a reaper died holding them
    OBSOLETE = "obsolete"  # tombstone at the epoch
    LRU = "lru"  # tombstone in the past, least recently used first


@dataclass(frozen=True, slots=True)
class Target:
    """An RSE open for deletion and what decides how much to delete there."""

    id: str
    rse: str
    greedy: bool
    min_free: int | None  # MinFreeSpace limit, bytes
    reported: bool  # a space source is configured: use the catalogue's usage numbers
    total_source: str
    used_source: str


@dataclass(frozen=True, slots=True)
class Candidate:
    scope: str
    name: str
    bytes: int
    path: str | None  # stored path (non-deterministic RSEs)


@dataclass(frozen=True, slots=True)
class Failure:
    candidate: Candidate
    error: str
    permanent: bool


@dataclass(frozen=True, slots=True)
class Finished:
    deleted: int  # rows removed
    bytes: int  # their bytes
    relocked: int  # locked meanwhile: back to COPYING for a transfer to restore
    lost: int  # files whose last replica this was


def _flag(value: Any) -> bool:
    """An attribute's truth, whether stored as JSON true or as the text "true"/"1"."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def deletion_targets(session: Session, names: Sequence[str] | None = None) -> list[Target]:
    """RSEs available for deletion (``availability_delete``), by name; ``names`` restricts
    them (an unknown name is an error, so a typo does not silently do nothing)."""
    q = select(RSE.id, RSE.rse).where(RSE.deleted_at.is_(None), RSE.availability_delete.is_(True))
    if names is not None:
        known = set(session.scalars(select(RSE.rse).where(RSE.deleted_at.is_(None))))
        unknown = sorted(set(names) - known)
        if unknown:
            raise RSENotFound(
                f"RSE(s) {', '.join(unknown)} do not exist; list them with `fedlake rse list`"
            )
        q = q.where(RSE.rse.in_(list(names)))
    rows = session.execute(q.order_by(RSE.rse)).all()
    ids = [r[0] for r in rows]
    attrs: dict[str, dict[str, Any]] = {}
    for rse_id, key, value in session.execute(
        select(RSEAttribute.rse_id, RSEAttribute.key, RSEAttribute.value).where(
            RSEAttribute.rse_id.in_(ids),
            RSEAttribute.key.in_([GREEDY, TOTAL_SOURCE, USED_SOURCE]),
        )
    ):
        attrs.setdefault(rse_id, {})[key] = loads(value)
    limits = dict(
        session.execute(
            select(RSELimit.rse_id, RSELimit.value).where(
                RSELimit.rse_id.in_(ids), RSELimit.name == MIN_FREE_SPACE
            )
        ).all()
    )
    out = []
    for rse_id, name in rows:
        a = attrs.get(rse_id, {})
        out.append(
            Target(
                id=rse_id,
                rse=name,
                greedy=_flag(a.get(GREEDY)),
                min_free=int(limits[rse_id]) if rse_id in limits else None,
                reported=TOTAL_SOURCE in a or USED_SOURCE in a,
                total_source=str(a.get(TOTAL_SOURCE) or "storage"),
                used_source=str(a.get(USED_SOURCE) or "storage"),
            )
        )
    return out


def reported_free(session: Session, target: Target) -> int | None:
    """Free bytes from the catalogue's usage numbers, as Rucio computes them; None if
    unknown. The total source's own ``free`` is used when it reports one and also
    reports the used space; otherwise free = total (total source) - used (used source,
    ``rucio`` = the sum of the replicas registered there)."""
    rows = {
        u.source: u for u in session.scalars(select(RSEUsage).where(RSEUsage.rse_id == target.id))
    }
    total_row = rows.get(target.total_source)
    if total_row is None:
        return None
    if target.used_source == target.total_source and total_row.free is not None:
        return int(total_row.free)
    if total_row.total is None:
        return None
    used: int | None
    if target.used_source == _LIVE_SOURCE:
        used = int(
            session.execute(
                select(func.coalesce(func.sum(Replica.bytes), 0)).where(Replica.rse_id == target.id)
            ).scalar_one()
        )
    else:
        used_row = rows.get(target.used_source)
        used = None if used_row is None else used_row.used
    if used is None:
        return None
    return int(total_row.total) - int(used)


# --- claiming ----------------------------------------------------------------------------


def _no_active_request() -> Any:
    return ~exists().where(
        _TR.scope == Replica.scope, _TR.name == Replica.name, _TR.state.in_(ACTIVE)
    )


def _phase_filter(phase: Phase, now: datetime, lease: float) -> list[Any]:
    stale = now - timedelta(seconds=lease)
    if phase is Phase.RESUME:
        return [Replica.state == _BEING_DELETED, Replica.updated_at < stale]
    conds = [Replica.state != _BEING_DELETED, Replica.tombstone.is_not(None)]
    if phase is Phase.OBSOLETE:
        return [*conds, Replica.tombstone <= OBSOLETE]
    return [*conds, Replica.tombstone > OBSOLETE, Replica.tombstone <= now]


def claim(
    session: Session,
    rse_id: str,
    phase: Phase,
    *,
    limit: int,
    now: datetime,
    lease: float = DEFAULT_LEASE,
    max_bytes: int | None = None,
) -> list[Candidate]:
    """Take up to ``limit`` replicas of ``phase`` on one RSE (for LRU: oldest access first,
    no more than needed to reach ``max_bytes``) and mark them BEING_DELETED."""
    q = select(Replica.scope, Replica.name, Replica.bytes, Replica.path).where(
        Replica.rse_id == rse_id,
        Replica.lock_cnt == 0,
        *_phase_filter(phase, now, lease),
        _no_active_request(),
    )
    if phase is Phase.LRU:
        q = q.order_by(
            func.coalesce(Replica.accessed_at, Replica.created_at), Replica.scope, Replica.name
        )
    q = q.limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True, of=Replica.__table__)
    taken: list[Candidate] = []
    freed = 0
    for scope, name, nbytes, path in session.execute(q):
        if max_bytes is not None and freed >= max_bytes:
            break
        taken.append(Candidate(scope, name, int(nbytes or 0), path))
        freed += int(nbytes or 0)
    for batch in chunks([(c.scope, c.name) for c in taken]):
        session.execute(
            update(Replica)
            .where(Replica.rse_id == rse_id, pairs_in(Replica.scope, Replica.name, batch))
            .values(state=_BEING_DELETED, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return taken


def release_locked(session: Session, rse_id: str, *, now: datetime, lease: float) -> int:
    """Claims past their lease on replicas that got a lock meanwhile (their reaper died)
    go back to COPYING: the new lock's transfer restores the file."""
    keys = list(
        session.execute(
            update(Replica)
            .where(
                Replica.rse_id == rse_id,
                Replica.state == _BEING_DELETED,
                Replica.updated_at < now - timedelta(seconds=lease),
                Replica.lock_cnt > 0,
            )
            .values(state=_COPYING, updated_at=now)
            .returning(Replica.scope, Replica.name)
            .execution_options(synchronize_session=False)
        )
    )
    _queue_copies(session, rse_id, [(s, n) for s, n in keys])
    return len(keys)


def _queue_copies(session: Session, rse_id: str, keys: Sequence[tuple[str, str]]) -> None:
    """Replicas locked while being deleted are COPYING again: their rules' transfers (held
    back while the deletion ran, see ``transfer_queue.queue_for_rules``) are queued now."""
    rule_ids: set[str] = set()
    for batch in chunks(list(keys)):
        rule_ids.update(
            session.scalars(
                select(Lock.rule_id)
                .where(Lock.rse_id == rse_id, pairs_in(Lock.scope, Lock.name, batch))
                .distinct()
            )
        )
    if rule_ids:
        queue_for_rules(session, sorted(rule_ids), None)


# --- finishing ---------------------------------------------------------------------------


def finish(
    session: Session, rse_id: str, rse_name: str, done: Sequence[Candidate], now: datetime
) -> Finished:
    """The files of ``done`` are gone from storage: remove their rows (only those still
    BEING_DELETED without locks), mark files left with no replica LOST, lower the RSE's
    stored usage and emit ``deletion-done``, all in this transaction. Rows locked meanwhile
    go back to COPYING. Safe to call twice for the same replicas (the second does nothing).
    """
    if not done:
        return Finished(0, 0, 0, 0)
    keys = sorted({(c.scope, c.name) for c in done})
    rt: Any = Replica.__table__
    if session.get_bind().dialect.name == "postgresql":
        # reapers finishing the last two copies of a file on two RSEs at once must each
        # see the other's deletion to tell that the file is gone: finishes take turns
        # (each statement after the lock sees what the previous finish committed)
        session.execute(text(f"SELECT pg_advisory_xact_lock({_FINISH_LOCK})"))
    removed: list[tuple[str, str, int]] = []
    relocked = 0
    for batch in chunks(keys):
        mine = and_(rt.c.rse_id == rse_id, pairs_in(rt.c.scope, rt.c.name, batch))
        gone = [
            (s, n, int(b or 0))
            for s, n, b in session.execute(
                delete(rt)
                .where(mine, rt.c.state == _BEING_DELETED, rt.c.lock_cnt == 0)
                .returning(rt.c.scope, rt.c.name, rt.c.bytes)
            )
        ]
        removed.extend(gone)
        if len(gone) < len(batch):
            back = list(
                session.execute(
                    update(rt)
                    .where(mine, rt.c.state == _BEING_DELETED, rt.c.lock_cnt > 0)
                    .values(state=_COPYING, updated_at=now)
                    .returning(rt.c.scope, rt.c.name)
                )
            )
            _queue_copies(session, rse_id, [(s, n) for s, n in back])
            relocked += len(back)
    lost = _mark_lost(session, [(s, n) for s, n, _ in removed], now)
    nbytes = sum(b for _, _, b in removed)
    _lower_usage(session, rse_id, len(removed), nbytes)
    events.emit_many(
        session,
        "deletion-done",
        [{"rse": rse_name, "scope": s, "name": n, "bytes": b} for s, n, b in removed],
    )
    return Finished(len(removed), nbytes, relocked, lost)


def _mark_lost(session: Session, keys: list[tuple[str, str]], now: datetime) -> int:
    """Files among ``keys`` that have no replica left anywhere become LOST."""
    lost = 0
    for batch in chunks(sorted(set(keys))):
        result = session.execute(
            update(DID)
            .where(
                pairs_in(DID.scope, DID.name, batch),
                ~exists().where(Replica.scope == DID.scope, Replica.name == DID.name),
            )
            .values(availability=LOST, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        lost += int(getattr(result, "rowcount", 0) or 0)
    return lost


def _lower_usage(session: Session, rse_id: str, files: int, nbytes: int) -> None:
    """Stored usage reports of the RSE (a storage probe's, an operator's) follow the
    deletion until the next report; ``static`` is a capacity and stays."""
    if not files:
        return
    for u in session.scalars(
        select(RSEUsage).where(RSEUsage.rse_id == rse_id, RSEUsage.source != _STATIC_SOURCE)
    ):
        if u.used is not None:
            u.used = max(0, u.used - nbytes)
        if u.free is not None:
            u.free = u.free + nbytes
        if u.files is not None:
            u.files = max(0, u.files - files)
    session.flush()


def fail(
    session: Session, rse_id: str, rse_name: str, failures: Sequence[Failure], now: datetime
) -> int:
    """Storage refused to delete these: they stay BEING_DELETED and the lease restarts now,
    so they are tried again one lease later (never in a tight loop); ``deletion-failed``
    says why. Returns how many rows are still held."""
    if not failures:
        return 0
    held = 0
    for batch in chunks(sorted({(f.candidate.scope, f.candidate.name) for f in failures})):
        result = session.execute(
            update(Replica)
            .where(
                Replica.rse_id == rse_id,
                pairs_in(Replica.scope, Replica.name, batch),
                Replica.state == _BEING_DELETED,
            )
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
        held += int(getattr(result, "rowcount", 0) or 0)
    events.emit_many(
        session,
        "deletion-failed",
        [
            {
                "rse": rse_name,
                "scope": f.candidate.scope,
                "name": f.candidate.name,
                "bytes": f.candidate.bytes,
                "error": f.error,
                "permanent": f.permanent,
            }
            for f in failures
        ],
    )
    return held
