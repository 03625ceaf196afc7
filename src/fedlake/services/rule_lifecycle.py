"""Rule injection, repair and expiry rounds (the daemons' work), one transaction per rule."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from fedlake.bootstrap import Lake
from fedlake.catalog import qos, rule_inject, rule_repair
from fedlake.catalog.models import Rule
from fedlake.domain.timefmt import utcnow
from fedlake.services.rules import targets_of
from fedlake.services.transfers import poke_after_commit

__all__ = [
    "expire_round",
    "inject_round",
    "policy_of",
    "qos_round",
    "repair_round",
    "seconds_to_next_expiry",
    "seconds_to_next_injection",
    "seconds_to_next_qos_step",
]

log = logging.getLogger("fedlake.rules")

Bounds = tuple[str | None, str | None]


def policy_of(lake: Lake) -> rule_repair.RepairPolicy:
    s = lake.settings
    return rule_repair.RepairPolicy(
        base_delay=float(s.rule_repair_delay),
        suspend_after=s.rule_suspend_after,
        suspended_retry=float(s.rule_suspended_retry),
        replicating_timeout=float(s.rule_replicating_timeout),
    )


def _targets(s: Session, rule: Rule) -> list[str]:
    return targets_of(s, rule.rse_expression, rule.ignore_availability)


def repair_round(
    lake: Lake,
    policy: rule_repair.RepairPolicy | None = None,
    bounds: Bounds = (None, None),
    limit: int = 100,
) -> int:
    """Repair or check every due rule of this partition (up to ``limit``)."""
    policy = policy or policy_of(lake)
    now = utcnow()
    with lake.db.read() as s:
        due = rule_repair.due_rules(s, now, policy, bounds, limit)
    done = 0
    for rule_id in due:
        with lake.db.write() as s:
            outcome = rule_repair.repair_rule(s, rule_id, now, policy, _targets)
            if outcome is not None:
                poke_after_commit(s)
        if outcome is not None:
            log.info("rule %s: %s", rule_id, outcome)
            done += 1
    return done


def inject_round(lake: Lake, bounds: Bounds = (None, None), limit: int = 100) -> int:
    """Place the INJECT rules of this partition (asynchronous creation)."""
    now = utcnow()
    with lake.db.read() as s:
        pending = rule_inject.pending_rules(s, now, bounds, limit)
    done = 0
    for rule_id in pending:
        with lake.db.write() as s:
            outcome = rule_inject.inject_rule(s, rule_id, now, _targets)
            if outcome is not None and outcome.startswith("placed"):
                _queue(s, rule_id)
                poke_after_commit(s)
        if outcome is not None:
            log.info("rule %s: %s", rule_id, outcome)
            done += 1
    return done


def seconds_to_next_injection(lake: Lake, bounds: Bounds, default: float) -> float:
    """Seconds until the next INJECT rule of this partition is due (``default`` if none)."""
    with lake.db.read() as s:
        when = rule_inject.next_injection(s, bounds)
    if when is None:
        return default
    return (when - utcnow()).total_seconds()


def expire_round(lake: Lake, bounds: Bounds = (None, None), limit: int = 100) -> int:
    """Delete the rules of this partition whose lifetime is over (locked ones stay)."""
    now = utcnow()
    with lake.db.read() as s:
        expired = rule_repair.expired_rules(s, now, bounds, limit)
    done = 0
    for rule_id in expired:
        with lake.db.write() as s:
            if rule_repair.expire_rule(s, rule_id, now):
                done += 1
                log.info("rule %s expired and was removed", rule_id)
    return done


def seconds_to_next_expiry(lake: Lake, bounds: Bounds, default: float) -> float:
    """Seconds until the next unlocked rule of this partition expires (``default`` if none)."""
    with lake.db.read() as s:
        when = rule_repair.next_expiry(s, bounds)
    if when is None:
        return default
    return (when - utcnow()).total_seconds()


def qos_round(lake: Lake, limit: int = 100) -> int:
    """Move the rules whose QoS step is over to their next step."""
    now = utcnow()
    with lake.db.read() as s:
        due = qos.due_transitions(s, now, limit)
    done = 0
    for rule_id in due:
        with lake.db.write() as s:
            child = qos.transition(s, rule_id, now, targets_of)
            if child is not None:
                poke_after_commit(s)
                _queue(s, child)
        if child is not None:
            log.info("rule %s: next QoS step in rule %s", rule_id, child)
            done += 1
    return done


def _queue(s: Session, rule_id: str) -> None:
    from fedlake.catalog import transfer_queue

    transfer_queue.queue_for_rules(s, [rule_id], None)


def seconds_to_next_qos_step(lake: Lake, default: float) -> float:
    with lake.db.read() as s:
        when = qos.next_step_at(s)
    return default if when is None else (when - utcnow()).total_seconds()
