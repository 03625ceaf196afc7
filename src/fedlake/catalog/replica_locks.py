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

__all__ = ["OBSOLETE", "bump_lock_counts", "release_replicas"]

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
