"""Rule repair and expiry: no rule stays STUCK, REPLICATING or SUSPENDED without a way out.

* **STUCK** (a lock's transfer failed for good): each repair round re-queues the stuck
  copies on the same RSE; from round ``move_after`` on, a copy moves to another RSE of the
  rule's expression when there is one. Rounds back off exponentially. After
  ``suspend_after`` rounds without reaching OK the rule is SUSPENDED, its ``error`` says
  why (the last transfer error).
* **SUSPENDED**: tried again after ``suspended_retry`` (a cause that went away, such as an
  RSE back online, lets it recover by itself); an operator may also update it.
* **REPLICATING**: checked when quiet (no lock changed) for ``check_every`` seconds. A
  lock whose copy has no active transfer request (a request cancelled or lost) gets one; a
  lock whose replica is in fact
  AVAILABLE turns OK; a request waiting longer than ``replicating_timeout`` is cancelled and
  its lock becomes STUCK (then repaired as above).
* **Expiry**: rules past ``expires_at`` are deleted (their locks released, replicas
  tombstoned); locked rules are kept until unlocked.

Every rule is handled in its own transaction with its row locked (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL), so any number of repairers and expirers can run at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from fedlake.catalog import events, placement
from fedlake.catalog import rules as rule_core
from fedlake.catalog.models import DID, Lock, Replica, Rule, TransferRequest
from fedlake.catalog.rules import last_transfer_error, lock_of_request, stick_locks
from fedlake.catalog.transfer_queue import queue_for_rules
from fedlake.catalog.transfers import ACTIVE
from fedlake.domain.errors import LakeError
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import LockState, ReplicaState, RequestState, RuleState

__all__ = [
    "RepairPolicy",
    "due_rules",
    "expire_rule",
    "expired_rules",
    "lock_rule",
    "next_expiry",
    "partition_filter",
    "repair_rule",
]

#: (session, rule) -> the rule's target RSE ids now, in preference order
Targets = Callable[[Session, Rule], list[str]]

_STUCK, _REPL, _SUSP = RuleState.STUCK.value, RuleState.REPLICATING.value, RuleState.SUSPENDED.value


@dataclass(frozen=True, slots=True)
class RepairPolicy:
    base_delay: float = 60.0
    max_delay: float = 6 * 3600.0
    move_after: int = 2
    suspend_after: int = 10
    suspended_retry: float = 86400.0
    check_every: float = 600.0
    replicating_timeout: float = 7 * 86400.0

    def delay(self, rounds: int) -> timedelta:
        return timedelta(seconds=min(self.base_delay * 2 ** max(rounds - 1, 0), self.max_delay))


def partition_filter(bounds: tuple[str | None, str | None]) -> list[ColumnElement[bool]]:
    lo, hi = bounds
    conds: list[ColumnElement[bool]] = []
    if lo is not None:
        conds.append(Rule.id >= lo)
    if hi is not None:
        conds.append(Rule.id < hi)
    return conds


def due_rules(
    session: Session,
    now: datetime,
    policy: RepairPolicy,
    bounds: tuple[str | None, str | None] = (None, None),
    limit: int = 100,
) -> list[str]:
    """Rules that need a repair round or a check now (oldest due first)."""
    due = or_(Rule.next_repair_at.is_(None), Rule.next_repair_at <= now)
    quiet = now - timedelta(seconds=policy.check_every)
    cond = or_(
        and_(Rule.state == _STUCK, due),
        and_(Rule.state == _SUSP, Rule.next_repair_at <= now),
        and_(Rule.state == _REPL, Rule.updated_at <= quiet),
    )
    q = select(Rule.id).where(cond, *partition_filter(bounds)).order_by(Rule.next_repair_at)
    return list(session.scalars(q.limit(limit)))


def expired_rules(
    session: Session,
    now: datetime,
    bounds: tuple[str | None, str | None] = (None, None),
    limit: int = 100,
) -> list[str]:
    q = select(Rule.id).where(
        Rule.expires_at <= now, Rule.locked.is_(False), *partition_filter(bounds)
    )
    return list(session.scalars(q.order_by(Rule.expires_at).limit(limit)))


def next_expiry(
    session: Session, bounds: tuple[str | None, str | None] = (None, None)
) -> datetime | None:
    """When the next unlocked rule of this partition expires."""
    return session.scalar(
        select(func.min(Rule.expires_at)).where(
            Rule.expires_at.is_not(None), Rule.locked.is_(False), *partition_filter(bounds)
        )
    )


def lock_rule(session: Session, rule_id: str) -> Rule | None:
    """The rule's row, locked for this transaction; None if gone or held by another."""
    q = select(Rule).where(Rule.id == rule_id)
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    return session.scalars(q).first()


def expire_rule(session: Session, rule_id: str, now: datetime) -> bool:
    rule_core.hold_copies(session, rule_id)  # requests before the rule, as a worker does
    rule = lock_rule(session, rule_id)
    if rule is None or rule.locked or rule.expires_at is None or rule.expires_at > now:
        return False
    rule_core.delete_rule(session, rule_id)
    events.emit(
        session, "rule-expired", {"rule_id": rule_id, "scope": rule.scope, "name": rule.name}
    )
    return True


def repair_rule(
    session: Session, rule_id: str, now: datetime, policy: RepairPolicy, targets: Targets
) -> str | None:
    """One round for one rule; returns what was done ("repaired", "suspended",
    "checked", ...) or None when the rule was not due (or another repairer has it)."""
    rule = lock_rule(session, rule_id)
    if rule is None:
        return None
    if rule.state == _REPL:
        quiet = now - timedelta(seconds=policy.check_every)
        return _check_replicating(session, rule, now, policy) if rule.updated_at <= quiet else None
    if rule.next_repair_at is not None and rule.next_repair_at > now:
        return None
    if rule.state == _SUSP:
        # the retry of a suspended rule: one more round; failing again suspends it again
        rule.state = _STUCK
        rule.repair_count = policy.suspend_after - 1
    if rule.state != _STUCK:
        return None
    rule_core.recount(session, {rule.id}, history=False)
    if rule.state != _STUCK:  # the counters were behind: nothing stuck any more
        rule.next_repair_at = None
        return "recounted"
    if rule.repair_count >= policy.suspend_after:
        return _suspend(session, rule, now, policy)
    rule.repair_count += 1
    rule.next_repair_at = now + policy.delay(rule.repair_count)
    moved, retried = _repair_locks(session, rule, policy, targets)
    if moved or retried:
        queue_for_rules(session, [rule.id], None)
    rule_core.recount(session, {rule.id})
    events.emit(
        session,
        "rule-repaired",
        {"rule_id": rule.id, "round": rule.repair_count, "moved": moved, "retried": retried},
    )
    return "repaired"


def _suspend(session: Session, rule: Rule, now: datetime, policy: RepairPolicy) -> str:
    reason = last_transfer_error(session, rule.id) or "copies could not be made"
    rule.state = _SUSP
    rule.error = f"suspended after {rule.repair_count} repair rounds: {reason}"[:255]
    rule.next_repair_at = now + timedelta(seconds=policy.suspended_retry)
    rule.updated_at = now
    rule_core.recount(session, {rule.id})
    events.emit(
        session,
        "rule-suspended",
        {"rule_id": rule.id, "reason": rule.error, "retry_at": str(rule.next_repair_at)},
    )
    return "suspended"


def _repair_locks(
    session: Session, rule: Rule, policy: RepairPolicy, targets: Targets
) -> tuple[int, int]:
    """Re-queue or move the rule's STUCK locks; returns (moved, retried)."""
    stuck = list(
        session.execute(
            select(Lock.scope, Lock.name, Lock.rse_id).where(
                Lock.rule_id == rule.id, Lock.state == LockState.STUCK.value
            )
        )
    )
    try:
        allowed = targets(session, rule)
    except LakeError:  # the expression names no (available) RSE right now
        allowed = []
    held: dict[tuple[str, str], set[str]] = {}
    for sc, nm, rid in session.execute(
        select(Lock.scope, Lock.name, Lock.rse_id).where(Lock.rule_id == rule.id)
    ):
        held.setdefault((sc, nm), set()).add(rid)
    retry: list[tuple[str, str, str]] = []
    moves: dict[str, list[tuple[str, str, str]]] = {}
    places = placement.places_of(session, placement.distinct_by(rule.meta), allowed)
    for sc, nm, rid in stuck:
        others = [r for r in held[(sc, nm)] if r != rid]
        alternatives = [
            t for t in placement.choose(allowed, len(allowed), places, taken=others) if t != rid
        ]
        alternatives = [t for t in alternatives if t not in held[(sc, nm)]]
        if alternatives and (rule.repair_count > policy.move_after or rid not in allowed):
            new = alternatives[0]
            held[(sc, nm)].add(new)
            moves.setdefault(new, []).append((sc, nm, rid))
        elif rid in allowed:
            retry.append((sc, nm, rid))
    for sc, nm, rid in retry:
        session.execute(
            update(Lock)
            .where(Lock.rule_id == rule.id, Lock.scope == sc, Lock.name == nm, Lock.rse_id == rid)
            .values(state=LockState.REPLICATING.value, updated_at=utcnow())
        )
    moved = 0
    for new, items in moves.items():
        moved += _move_locks(session, rule, new, items)
    return moved, len(retry)


def _move_locks(
    session: Session, rule: Rule, new_rse: str, items: Sequence[tuple[str, str, str]]
) -> int:
    """Move stuck locks to ``new_rse``: the old ones are released (their unfinished
    replicas become OBSOLETE, their transfers cancelled), new locks are made there."""
    rule_core.hold_copies(session, rule.id)
    for sc, nm, rid in items:
        session.execute(
            delete(Lock).where(
                Lock.rule_id == rule.id, Lock.scope == sc, Lock.name == nm, Lock.rse_id == rid
            )
        )
    rule_core.release_replicas(session, [(rid, sc, nm) for sc, nm, rid in items], purge=False)
    files = []
    for sc, nm, _ in items:
        did = session.get(DID, (sc, nm))
        if did is not None:
            files.append(did)
    rule_core.lock_files(
        session, rule, [(files, [new_rse])], check_limits=not rule.ignore_account_limit
    )
    return len(files)


def _check_replicating(session: Session, rule: Rule, now: datetime, policy: RepairPolicy) -> str:
    """A REPLICATING rule quiet for ``check_every``: give copies without a request one,
    and time out old requests. (``recount`` stamps ``updated_at``: the next check of a
    still quiet rule comes ``check_every`` later.)"""
    replicating = and_(Lock.rule_id == rule.id, Lock.state == LockState.REPLICATING.value)
    available = list(
        session.execute(
            select(Lock.rse_id, Lock.scope, Lock.name)
            .join(
                Replica,
                and_(
                    Replica.rse_id == Lock.rse_id,
                    Replica.scope == Lock.scope,
                    Replica.name == Lock.name,
                ),
            )
            .where(replicating, Replica.state == ReplicaState.AVAILABLE.value)
        )
    )
    by_rse: dict[str, list[tuple[str, str]]] = {}
    for rid, sc, nm in available:
        by_rse.setdefault(rid, []).append((sc, nm))
    for rid, keys in by_rse.items():
        rule_core.locks_available(session, rid, keys)
    old = now - timedelta(seconds=policy.replicating_timeout)
    overdue = list(
        session.execute(
            select(
                TransferRequest.id,
                TransferRequest.dest_rse_id,
                TransferRequest.scope,
                TransferRequest.name,
            )
            .join(Lock, lock_of_request())
            .where(
                replicating,
                TransferRequest.state.in_(ACTIVE),
                TransferRequest.created_at <= old,
            )
        )
    )
    if overdue:
        session.execute(
            update(TransferRequest)
            .where(
                TransferRequest.id.in_([r[0] for r in overdue]), TransferRequest.state.in_(ACTIVE)
            )
            .values(
                state=RequestState.CANCELLED.value,
                lease_owner=None,
                lease_expires=None,
                finished_at=now,
                updated_at=now,
                error=f"timed out: not done within {policy.replicating_timeout:.0f} s",
            )
        )
        stick_locks(session, [(d, s, n) for _, d, s, n in overdue])
    queued = queue_for_rules(session, [rule.id], None)
    rule_core.recount(session, {rule.id})
    rule.updated_at = now
    if available or overdue or queued:
        events.emit(
            session,
            "rule-checked",
            {
                "rule_id": rule.id,
                "locks_ok": len(available),
                "timed_out": len(overdue),
                "requeued": queued,
            },
        )
    return "checked"
