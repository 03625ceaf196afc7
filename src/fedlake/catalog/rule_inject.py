"""Asynchronous rule creation (what Rucio's judge-injector does).

A rule asked for with ``asynchronous`` (or on a dataset with more files than the lake's
threshold, ``FEDLAKE_RULE_ASYNC_FILES``) is stored in state INJECT, with no locks: the call
returns at once. The rule-injector daemon places it later, exactly as a synchronous rule
is placed (locks, COPYING replicas, transfer requests), in one transaction per rule with
the rule's row locked: a killed injector leaves the rule INJECT, never half-placed, and
any number of injectors can run at once.

When the rule cannot be placed now (its RSE expression has too few RSEs accepting writes,
the account's limit is reached), it stays INJECT with the reason in ``error`` and is tried
again after a back-off (``next_repair_at``), so an RSE coming back lets it through.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from fedlake.catalog import events
from fedlake.catalog import rules as rule_core
from fedlake.catalog.dids import get_did
from fedlake.catalog.models import Rule
from fedlake.catalog.rule_repair import lock_rule, partition_filter
from fedlake.domain.errors import LakeError
from fedlake.domain.types import RuleState

__all__ = ["inject_rule", "next_injection", "pending_rules"]

#: (session, rule) -> the rule's target RSE ids now, in preference order
Targets = Callable[[Session, Rule], list[str]]

_INJECT = RuleState.INJECT.value
#: back-off of a rule that could not be placed: 10 s, doubling, at most an hour
BASE_DELAY, MAX_DELAY = 10.0, 3600.0


def pending_rules(
    session: Session,
    now: datetime,
    bounds: tuple[str | None, str | None] = (None, None),
    limit: int = 100,
) -> list[str]:
    """INJECT rules of this partition that are due, oldest first."""
    due = or_(Rule.next_repair_at.is_(None), Rule.next_repair_at <= now)
    q = select(Rule.id).where(Rule.state == _INJECT, due, *partition_filter(bounds))
    return list(session.scalars(q.order_by(Rule.created_at).limit(limit)))


def next_injection(
    session: Session, bounds: tuple[str | None, str | None] = (None, None)
) -> datetime | None:
    """When the next INJECT rule of this partition is due (None: none waits)."""
    rows = session.execute(
        select(Rule.next_repair_at)
        .where(Rule.state == _INJECT, *partition_filter(bounds))
        .order_by(Rule.next_repair_at.is_not(None), Rule.next_repair_at)
        .limit(1)
    ).all()
    if not rows:
        return None
    return rows[0][0] or datetime.min


def inject_rule(session: Session, rule_id: str, now: datetime, targets: Targets) -> str | None:
    """Place one INJECT rule; returns what happened, or None if there was nothing to do
    (gone, already placed, or held by another injector)."""
    rule = lock_rule(session, rule_id)
    if rule is None or rule.state != _INJECT:
        return None
    try:
        with session.begin_nested():
            chosen = targets(session, rule)
            spec = rule_core.RuleSpec(
                account=rule.account,
                copies=rule.copies,
                rse_expression=rule.rse_expression,
                target_rse_ids=chosen,
                meta=rule.meta,
            )
            if not rule_core.enough_targets(session, spec):
                raise rule_core.too_few_targets(spec)
            rule.state = RuleState.REPLICATING.value
            did = get_did(session, rule.scope, rule.name)
            n = rule_core.place(session, rule, did, chosen, fresh=True)
            rule.error = None
            rule.repair_count = 0
            rule.next_repair_at = None
            rule_core.recount(session, {rule.id})
    except LakeError as exc:
        session.refresh(rule)  # the savepoint's changes are gone; read the row again
        rule.repair_count = (rule.repair_count or 0) + 1
        delay = min(BASE_DELAY * 2 ** (rule.repair_count - 1), MAX_DELAY)
        rule.next_repair_at = now + timedelta(seconds=delay)
        rule.error = f"not placed yet: {exc}"[:255]
        return f"waits {delay:.0f} s: {exc}"
    events.emit(session, "rule-injected", {"rule_id": rule.id, "locks": n})
    return f"placed, {n} lock(s)"
