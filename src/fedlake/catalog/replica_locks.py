"""Replicas' lock counts: locks counted on and off their replicas, and what happens to a
replica no lock needs any more (a tombstone; its unfinished copy cancelled)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, case, select, update
from sqlalchemy.orm import Session

from fedlake.catalog._util import chunks, pairs_in
from fedlake.catalog.models import Replica, TransferRequest
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import ReplicaState, RequestState

__all__ = ["OBSOLETE", "bump_lock_counts", "release_replicas", "replica_states"]

Key = tuple[str, str]
_ACTIVE = (RequestState.QUEUED.value, RequestState.SUBMITTED.value, RequestState.WAITING.value)


def bump_lock_counts(session: Session, replicas: list[tuple[str, str, str]], delta: int) -> None:
    counts: dict[tuple[str, str, str], int] = {}
    for key in replicas:
        counts[key] = counts.get(key, 0) + 1
    by_n: dict[int, list[tuple[str, str, str]]] = {}
    for key, n in counts.items():
        by_n.setdefault(n, []).append(key)
    for n, keys in by_n.items():
        by_rse: dict[str, list[Key]] = {}
        for rid, s, nm in keys:
            by_rse.setdefault(rid, []).append((s, nm))
        for rid, pairs in by_rse.items():
            for batch in chunks(pairs):
                session.execute(
                    update(Replica)
                    .where(Replica.rse_id == rid, pairs_in(Replica.scope, Replica.name, batch))
                    .values(
                        lock_cnt=Replica.lock_cnt + delta * n,
                        tombstone=None if delta > 0 else Replica.tombstone,
                    )
                )


#: the tombstone of a replica nobody needs any more (Rucio's OBSOLETE): deleted first
OBSOLETE = datetime(1970, 1, 1)


def release_replicas(
    session: Session, locks: Sequence[tuple[str, str, str]], *, purge: bool
) -> None:
    """Locks (rse_id, scope, name) were removed: count them off their replicas. A replica
    left without locks gets a tombstone (OBSOLETE when purged or never completed, else
    now: deleted least-recently-used when space is needed), and the transfer still
    copying it is cancelled."""
    bump_lock_counts(session, list(locks), -1)
    now = utcnow()
    by_rse: dict[str, list[Key]] = {}
    for rid, s, n in locks:
        by_rse.setdefault(rid, []).append((s, n))
    unneeded = and_(Replica.lock_cnt == 0, Replica.tombstone.is_(None))
    for rid, pairs in by_rse.items():
        for batch in chunks(sorted(set(pairs))):
            where = and_(Replica.rse_id == rid, pairs_in(Replica.scope, Replica.name, batch))
            copying = [
                (sc, nm)
                for sc, nm in session.execute(
                    select(Replica.scope, Replica.name).where(
                        where, unneeded, Replica.state != ReplicaState.AVAILABLE.value
                    )
                )
            ]
            session.execute(
                update(Replica)
                .where(where, unneeded)
                .values(
                    tombstone=case(
                        (Replica.state != ReplicaState.AVAILABLE.value, OBSOLETE),
                        else_=OBSOLETE if purge else now,
                    )
                )
            )
            if copying:
                _cancel_copies(session, rid, copying, now)


def _cancel_copies(session: Session, rse_id: str, keys: Sequence[Key], now: datetime) -> None:
    active = _ACTIVE
    session.execute(
        update(TransferRequest)
        .where(
            TransferRequest.dest_rse_id == rse_id,
            pairs_in(TransferRequest.scope, TransferRequest.name, keys),
            TransferRequest.state.in_(active),
        )
        .values(
            state=RequestState.CANCELLED.value,
            lease_owner=None,
            lease_expires=None,
            finished_at=now,
            updated_at=now,
            error="cancelled: no rule needs this copy any more",
        )
    )


def replica_states(
    session: Session, keys: Sequence[Key], rse_ids: Sequence[str]
) -> dict[tuple[str, str, str], str]:
    """The states of the replicas of ``keys`` on ``rse_ids``, for a caller about to lock
    them. On PostgreSQL the active transfer requests of those still being copied are
    locked first (in id order) and their states read again: a worker completing one
    locks its request, then the replica; a new lock that took the replica first and then
    queued a request of its own (which waits on the worker's) would deadlock with it."""
    out = _replica_states(session, keys, rse_ids)
    copying = [w for w, st in out.items() if st != ReplicaState.AVAILABLE.value]
    if copying and session.get_bind().dialect.name == "postgresql":
        _hold_requests(session, copying)
        again = _replica_states(
            session, list(dict.fromkeys((s, n) for _, s, n in copying)), rse_ids
        )
        out.update(again)
    return out


def _replica_states(
    session: Session, keys: Sequence[Key], rse_ids: Sequence[str]
) -> dict[tuple[str, str, str], str]:
    out: dict[tuple[str, str, str], str] = {}
    for batch in chunks(keys):
        for rid, s, n, st in session.execute(
            select(Replica.rse_id, Replica.scope, Replica.name, Replica.state).where(
                pairs_in(Replica.scope, Replica.name, batch), Replica.rse_id.in_(rse_ids)
            )
        ):
            out[(rid, s, n)] = st
    return out


def _hold_requests(session: Session, wheres: Sequence[tuple[str, str, str]]) -> None:
    tr = TransferRequest
    by_rse: dict[str, list[Key]] = {}
    for rid, s, n in wheres:
        by_rse.setdefault(rid, []).append((s, n))
    ids: list[int] = []
    for rid, pairs in by_rse.items():
        for batch in chunks(pairs):
            ids += session.scalars(
                select(tr.id).where(
                    tr.dest_rse_id == rid, pairs_in(tr.scope, tr.name, batch), tr.state.in_(_ACTIVE)
                )
            )
    for id_batch in chunks(sorted(ids)):
        session.execute(
            select(tr.id).where(tr.id.in_(id_batch)).order_by(tr.id).with_for_update(of=tr)
        ).all()
