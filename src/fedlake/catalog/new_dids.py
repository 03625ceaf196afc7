"""The queue of new DIDs that subscriptions are matched against (an outbox).

Every creation of DIDs (``dids.add_collections``, ``replicas.add_replicas``) calls
:func:`record` in its own transaction; the subscription daemon claims rows in id order,
creates the rules and deletes the rows in one transaction (a crash redoes the batch).

Nothing is written while no subscription is live, and new files only while a live
subscription can match files, so bulk registration pays for subscriptions only when
one wants its DIDs. Skipping must never lose a DID created after a subscription became
live: the DID's transaction reads the subscriptions, and a subscription's activation
must not commit between that read and the DID's commit.

- SQLite has one writer at a time (``BEGIN IMMEDIATE``): the DID's transaction and the
  activation are serialized, and the read sees whichever committed first.
- PostgreSQL runs concurrent transactions (READ COMMITTED). DID writers take a shared
  advisory lock for the rest of their transaction and read the subscriptions in a later
  statement (a fresh snapshot); an activation takes the same lock exclusively
  (:func:`hold_creators`) just before it commits. An activation thus waits for every DID
  transaction that read the subscriptions before it, and every DID transaction that
  reads after it waits for its commit and then sees it. A DID whose transaction
  committed before the subscription is older than it and is not matched (unless the
  subscription is retroactive).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from fedlake.catalog._util import ids_in, insert_rows
from fedlake.catalog.models import NewDIDEntry, Subscription
from fedlake.domain.timefmt import utcnow

__all__ = ["LIVE_STATES", "Entry", "claim", "consume", "hold_creators", "pending", "record"]

#: states of subscriptions that are applied to new DIDs
LIVE_STATES = ("ACTIVE", "UPDATED", "NEW")
#: PostgreSQL advisory lock between DID writers (shared) and activations (exclusive)
GATE_KEY = 7351010
_FILE = "FILE"


class Entry(NamedTuple):
    id: int
    scope: str
    name: str
    did_type: str


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def record(session: Session, dids: Sequence[tuple[str, str, str]]) -> int:
    """Queue new DIDs ``(scope, name, did_type)`` if a live subscription may want them;
    call in the transaction that creates them. Returns how many rows were written."""
    if not dids:
        return 0
    if _postgresql(session):
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": GATE_KEY})
    wants_files = list(
        session.scalars(
            select(Subscription.matches_files).where(Subscription.state.in_(LIVE_STATES))
        )
    )
    if not wants_files:
        return 0
    files_too = any(wants_files)
    now = utcnow()
    rows = [
        {"scope": scope, "name": name, "did_type": kind, "created_at": now}
        for scope, name, kind in dids
        if files_too or kind != _FILE
    ]
    insert_rows(session, NewDIDEntry, rows)
    return len(rows)


def hold_creators(session: Session) -> None:
    """Call last before committing a transaction that makes a subscription live or lets
    it match more (see the module docstring): waits for DID transactions in flight."""
    if _postgresql(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": GATE_KEY})


def claim(session: Session, limit: int) -> list[Entry]:
    """The oldest ``limit`` queued DIDs, locked for this transaction; rows another
    transaction holds are skipped (PostgreSQL), so instances never share a row."""
    q = (
        select(NewDIDEntry.id, NewDIDEntry.scope, NewDIDEntry.name, NewDIDEntry.did_type)
        .order_by(NewDIDEntry.id)
        .limit(limit)
    )
    if _postgresql(session):
        q = q.with_for_update(skip_locked=True)
    return [Entry(*row) for row in session.execute(q)]


def consume(session: Session, ids: Sequence[int]) -> None:
    """Remove processed rows (in the transaction that processed them)."""
    if ids:
        session.execute(delete(NewDIDEntry).where(ids_in(NewDIDEntry.id, ids)))


def pending(session: Session) -> int:
    """How many DIDs wait to be matched."""
    return int(session.scalar(select(func.count()).select_from(NewDIDEntry)) or 0)
