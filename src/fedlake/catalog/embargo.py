"""Embargoes: a scope, or a DID and everything below it, readable only by one group until
a date (LOFAR's proprietary period), and the one place that decides what a caller may see.

Rules (docs/embargo.md):

- An embargo names ``scope`` (``name`` None: the whole scope) or a DID ``scope:name``, a
  group and ``until`` (naive UTC). Before ``until`` the object is hidden from everybody
  who is neither an admin nor a member of the group; from ``until`` on nothing is hidden.
  No daemon runs: every request compares ``until`` with the time of the request.
- Several active embargoes on one object: it is hidden if ANY of them names a group the
  caller is not in (the stricter reading; a second embargo never opens an object).
- A DID embargo covers the DID and every DID below it (content of a container, files of
  a dataset, recursively), whether attached before or after the embargo was set: the set
  of covered DIDs is worked out from ``did_content`` on each request that needs it, never
  recorded. A DID attached below an embargoed DID is therefore hidden at once, and one
  detached from it is visible again at once. A file that is also in a public dataset stays
  hidden (by name too) as long as one embargoed parent covers it.
- Cost: ``hidden_for`` runs one indexed query on ``embargoes`` (``until > now``), whose
  answer each process reuses for ACTIVE_CACHE_SECONDS (an embargo added by another
  process applies within that time; the end of an embargo is exact); with
  no active embargo, or when the caller is an admin or a member of every embargoed group,
  it returns None and the callers skip filtering altogether. Only a non-member with an
  active DID embargo pays more: a question about one DID walks up from it (one indexed
  query per level of nesting); a listing works out once the set below the embargoed DIDs
  (one query per level of nesting and per 500 parents).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.orm import Session

from fedlake.catalog._util import pairs_in
from fedlake.catalog.dids import levels
from fedlake.catalog.iam_models import Embargo, IamGroup
from fedlake.catalog.models import RSE, Lock, Replica, Rule
from fedlake.domain.errors import EmbargoNotFound, GroupNotFound, InvalidInput
from fedlake.domain.timefmt import utcnow

__all__ = [
    "Hidden",
    "add_embargo",
    "embargo_dict",
    "forget_cached",
    "get_embargo",
    "hidden_for",
    "hidden_lock_usage",
    "hidden_replica_usage",
    "hides_did",
    "hides_row",
    "list_embargoes",
    "remove_embargo",
    "unknown",
]

Key = tuple[str, str]
T = TypeVar("T")


#: questions about single DIDs answered by walking up before ``Hidden`` works out the set
_WALKS = 16


class Hidden:
    """What one caller may not see at one moment: whole ``scopes``, and the embargoed DIDs
    ``roots`` with everything below them.

    Asking about ONE DID (``hides``) walks up from it through ``did_content`` (a few
    indexed queries, whatever the size of the embargoed datasets); filtering a listing
    (``keep``) works out, once, the set of every DID below the roots. Both read in the
    transaction that made the ``Hidden`` while it is open (a write transaction included:
    SQLite has one writer), and in a short session of their own once it has ended
    (streamed listings use the ``Hidden`` after it).
    """

    __slots__ = ("_below", "_session", "_verdicts", "roots", "scopes")

    def __init__(self, scopes: frozenset[str], roots: frozenset[Key], session: Session) -> None:
        self.scopes = scopes
        self.roots = roots
        self._session = session
        self._below: frozenset[Key] | None = None if roots else frozenset()
        self._verdicts: dict[Key, bool] = {}

    def hides(self, scope: str, name: str) -> bool:
        if scope in self.scopes:
            return True
        key = (scope, name)
        if self._below is not None:
            return key in self._below
        verdict = self._verdicts.get(key)
        if verdict is None and len(self._verdicts) >= _WALKS:
            return key in self.below()  # many questions: one set is cheaper than walks
        if verdict is None:
            with self._reading() as s:
                verdict = _under_roots(s, key, self.roots)
            self._verdicts[key] = verdict
        return verdict

    def below(self) -> frozenset[Key]:
        """The roots and every DID below them (worked out once)."""
        if self._below is None:
            with self._reading() as s:
                self._below = frozenset(_below(s, sorted(self.roots)))
        return self._below

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        if self._session.in_transaction():
            yield self._session
            return
        with Session(self._session.get_bind()) as s:
            yield s

    def keep(self, items: Iterable[T], key: Any) -> Iterator[T]:
        """``items`` without the hidden ones; ``key(item)`` gives (scope, name)."""
        scopes, below = self.scopes, self.below()
        for item in items:
            scope, name = key(item)
            if scope not in scopes and (scope, name) not in below:
                yield item


def hidden_for(
    session: Session,
    *,
    admin: bool,
    groups: Collection[str],
    now: datetime | None = None,
) -> Hidden | None:
    """What a caller (admin flag, groups) may not see now; None when nothing is hidden."""
    if admin:
        return None
    if now is None:
        now = utcnow()
        rows = _active_rows(session, now)
    else:
        rows = _query_active(session, now)
    applying = [(s, n) for s, n, g, until in rows if until > now and g not in groups]
    if not applying:
        return None
    scopes = frozenset(s for s, n in applying if n is None)
    roots = frozenset((s, n) for s, n in applying if n is not None and s not in scopes)
    return Hidden(scopes, roots, session)


#: how long one process reuses its read of the active embargoes (see ``forget_cached``)
ACTIVE_CACHE_SECONDS = 1.0
_Row = tuple[str, str | None, str, datetime]
_active: weakref.WeakKeyDictionary[Any, tuple[float, list[_Row]]] = weakref.WeakKeyDictionary()
_active_lock = threading.Lock()


def _query_active(session: Session, now: datetime) -> list[_Row]:
    stmt = select(Embargo.scope, Embargo.name, Embargo.group, Embargo.until).where(
        Embargo.until > now
    )
    return [(s, n, g, u) for s, n, g, u in session.execute(stmt)]


def _active_rows(session: Session, now: datetime) -> list[_Row]:
    """The embargoes active at ``now``, read at most every ACTIVE_CACHE_SECONDS per
    catalogue: an embargo added by another process applies within that time here; one
    added or removed through this process applies at once (``forget_cached``); the end
    of an embargo is exact (``until`` is compared with the time of each request)."""
    key = session.get_bind()  # one entry per catalogue (engine), gone with it
    tick = time.monotonic()
    with _active_lock:
        cached = _active.get(key)
    if cached is not None and tick - cached[0] < ACTIVE_CACHE_SECONDS:
        return cached[1]
    rows = _query_active(session, now)
    with _active_lock:
        _active[key] = (tick, rows)
    return rows


def forget_cached() -> None:
    """Read the active embargoes again on the next request (after adding or removing one;
    call it once the change is committed)."""
    with _active_lock:
        _active.clear()


def _under_roots(session: Session, key: Key, roots: frozenset[Key]) -> bool:
    """Is ``key`` one of ``roots`` or below one of them? Walks up, each ancestor once."""
    return any(k in roots for level in levels(session, [key], up=True) for k in level)


def _below(session: Session, roots: Sequence[Key]) -> set[Key]:
    """``roots`` and every DID below them (whether or not the roots exist)."""
    return {k for level in levels(session, roots, up=False) for k in level}


# --- SQL forms, for counts worked out in the database ------------------------------------


def hides_did(h: Hidden, scope: Any, name: Any) -> ColumnElement[bool]:
    """SQL: the DID in columns ``scope``, ``name`` is hidden by ``h`` (in a hidden scope, or
    at or below an embargoed DID; works out ``h.below()``). False, never NULL."""
    below = sorted(k for k in h.below() if k[0] not in h.scopes)
    if not h.scopes:
        return pairs_in(scope, name, below)
    return or_(scope.in_(sorted(h.scopes)), pairs_in(scope, name, below))


def hides_row(h: Hidden, scope: Any, name: Any, rule_id: Any) -> ColumnElement[bool]:
    """SQL: a row (a lock, a transfer request) of a hidden DID, or made for a rule on one
    (a visible file locked or copied for a hidden dataset's rule shows that rule).
    False, never NULL, so ``~`` keeps exactly the other rows."""
    on_hidden = select(Rule.id).where(hides_did(h, Rule.scope, Rule.name))
    return or_(hides_did(h, scope, name), and_(rule_id.is_not(None), rule_id.in_(on_hidden)))


def hidden_replica_usage(session: Session, h: Hidden, rse_id: str) -> tuple[int, int]:
    """(bytes, files) of the replicas of hidden DIDs on one RSE."""
    used, files = session.execute(
        select(func.coalesce(func.sum(Replica.bytes), 0), func.count()).where(
            Replica.rse_id == rse_id, hides_did(h, Replica.scope, Replica.name)
        )
    ).one()
    return int(used), int(files)


def hidden_lock_usage(session: Session, h: Hidden, account: str) -> dict[str, tuple[int, int]]:
    """(bytes, files) per RSE name of the account's locks that ``h`` hides (see
    ``hides_row``), counted as ``catalog.accounts.local_usage`` counts locks."""
    rows = session.execute(
        select(RSE.rse, func.coalesce(func.sum(Lock.bytes), 0), func.count())
        .join(RSE, RSE.id == Lock.rse_id)
        .where(Lock.account == account, hides_row(h, Lock.scope, Lock.name, Lock.rule_id))
        .group_by(RSE.rse)
    )
    return {rse: (int(b or 0), int(n)) for rse, b, n in rows}


# --- administration ---------------------------------------------------------------------


def add_embargo(
    session: Session,
    *,
    scope: str,
    name: str | None,
    group: str,
    until: datetime,
    reason: str | None,
    created_by: str,
) -> Embargo:
    if session.get(IamGroup, group) is None:
        raise GroupNotFound(f"group {group} does not exist; create it with `fedlake iam group add`")
    if until.tzinfo is not None:
        raise InvalidInput("until must be a naive UTC time")
    row = Embargo(
        scope=scope, name=name, group=group, until=until, reason=reason, created_by=created_by
    )
    session.add(row)
    session.flush()
    return row


def unknown(embargo_id: int) -> EmbargoNotFound:
    return EmbargoNotFound(
        f"embargo {embargo_id} does not exist; list them with `fedlake iam embargo list`"
    )


def get_embargo(session: Session, embargo_id: int) -> Embargo:
    row = session.get(Embargo, embargo_id)
    if row is None:
        raise unknown(embargo_id)
    return row


def list_embargoes(
    session: Session, *, scope: str | None = None, active_at: datetime | None = None
) -> list[Embargo]:
    stmt = select(Embargo).order_by(Embargo.id)
    if scope is not None:
        stmt = stmt.where(Embargo.scope == scope)
    if active_at is not None:
        stmt = stmt.where(Embargo.until > active_at)
    return list(session.scalars(stmt))


def remove_embargo(session: Session, embargo_id: int) -> None:
    get_embargo(session, embargo_id)
    session.execute(delete(Embargo).where(Embargo.id == embargo_id))


def embargo_dict(row: Embargo, now: datetime | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "scope": row.scope,
        "name": row.name,
        "group": row.group,
        "until": row.until,
        "reason": row.reason,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "active": row.until > (now or utcnow()),
    }
