"""QoS policies: a rule that changes its storage class on schedule.

A policy is a list of steps, each a QoS class (the RSE attribute ``QOS``) and how long the
copy stays there; the last step may last for ever. ``[{"qos": "FAST", "lifetime": 604800},
{"qos": "SAFE"}]`` keeps a copy on FAST storage for 7 days, then on SAFE storage.

The rule made for the first step targets ``QOS=FAST``; its ``meta`` holds the policy and
the step, its ``eol_at`` the end of the step. When a step ends, the rule is moved (a child
rule for the next step's class: see ``rule_changes.move_rule``); the copies of the old step
stay until the new ones exist. A last step with a lifetime gives the rule that lifetime
(it expires). A parallel temporary copy ("CHEAP-ANALYSIS for 1 day") is a second rule with
a one-step policy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fedlake.catalog import events
from fedlake.catalog import rule_changes as changes
from fedlake.catalog.models import Rule
from fedlake.catalog.rule_repair import lock_rule
from fedlake.domain.errors import InvalidInput, LakeError

__all__ = [
    "Step",
    "due_transitions",
    "expression_of",
    "next_step_at",
    "parse_policy",
    "policy_meta",
    "step_of",
    "transition",
]

MAX_STEPS = 20
MAX_LIFETIME = 100 * 365 * 86400


@dataclass(frozen=True, slots=True)
class Step:
    qos: str
    lifetime: int | None  # seconds; None: for ever (last step only)

    def as_dict(self) -> dict[str, Any]:
        return {"qos": self.qos} | ({} if self.lifetime is None else {"lifetime": self.lifetime})


def expression_of(step: Step) -> str:
    return f"QOS={step.qos}"


def parse_policy(value: Any) -> list[Step]:
    """Check a policy given by a client; errors say what is wrong and what to send."""
    what = 'qos_policy (a list like [{"qos": "FAST", "lifetime": 604800}, {"qos": "SAFE"}])'
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"{what} must be a non-empty list")
    if len(value) > MAX_STEPS:
        raise InvalidInput(f"{what}: at most {MAX_STEPS} steps")
    steps: list[Step] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) - {"qos", "lifetime"}:
            raise InvalidInput(f"{what}: step {i} must be an object with 'qos' and 'lifetime'")
        qos = item.get("qos")
        if (
            not isinstance(qos, str)
            or not qos
            or len(qos) > 100
            or not qos.replace("-", "").replace("_", "").isalnum()
        ):
            raise InvalidInput(
                f"{what}: step {i}: 'qos' must name a QoS class (letters, digits, - and _)"
            )
        lifetime = item.get("lifetime")
        if lifetime is not None and (
            not isinstance(lifetime, int)
            or isinstance(lifetime, bool)
            or not 1 <= lifetime <= MAX_LIFETIME
        ):
            raise InvalidInput(f"{what}: step {i}: 'lifetime' must be seconds (1 to 100 years)")
        if lifetime is None and i < len(value) - 1:
            raise InvalidInput(
                f"{what}: step {i} needs a lifetime (only the last may last for ever)"
            )
        steps.append(Step(qos, lifetime))
    return steps


def policy_meta(meta: dict[str, Any], steps: list[Step], step: int) -> dict[str, Any]:
    return {**meta, "qos_policy": [s.as_dict() for s in steps], "qos_step": step}


def step_of(rule: Rule) -> tuple[list[Step], int] | None:
    """The rule's policy and current step (None: the rule has no policy)."""
    try:
        meta = json.loads(rule.meta) if rule.meta else None
    except ValueError:
        return None
    if not isinstance(meta, dict) or "qos_policy" not in meta:
        return None
    steps = [Step(s["qos"], s.get("lifetime")) for s in meta["qos_policy"]]
    return steps, int(meta.get("qos_step", 0))


def due_transitions(session: Session, now: datetime, limit: int = 100) -> list[str]:
    """Rules whose QoS step is over and that are not already moving."""
    q = (
        select(Rule.id)
        .where(Rule.eol_at <= now, Rule.child_rule_id.is_(None))
        .order_by(Rule.eol_at)
        .limit(limit)
    )
    return list(session.scalars(q))


def next_step_at(session: Session) -> datetime | None:
    return session.scalar(select(func.min(Rule.eol_at)).where(Rule.child_rule_id.is_(None)))


def transition(
    session: Session,
    rule_id: str,
    now: datetime,
    targets: Callable[[Session, str, bool], list[str]],
) -> str | None:
    """Move one rule to its next QoS step; returns the child rule's id (None: not due,
    held by another instance, or nothing to do)."""
    rule = lock_rule(session, rule_id)
    if rule is None or rule.eol_at is None or rule.eol_at > now or rule.child_rule_id:
        return None
    found = step_of(rule)
    if found is None or found[1] + 1 >= len(found[0]):
        rule.eol_at = None  # nothing after this step (its end is the rule's expiry)
        return None
    steps, step = found
    nxt = steps[step + 1]
    expression = expression_of(nxt)
    ids = targets(session, expression, rule.ignore_availability)
    if len(ids) < rule.copies:
        # no room for the next class now: try again later, the current copies stay
        rule.eol_at = now + timedelta(minutes=10)
        rule.error = f"QoS step {step + 1} ({nxt.qos}) has no RSE accepting writes; retrying"
        events.emit(session, "qos-waiting", {"rule_id": rule.id, "qos": nxt.qos})
        return None
    last = step + 1 == len(steps) - 1
    override: dict[str, Any] = {"lifetime": nxt.lifetime if last else None}
    meta = json.loads(rule.meta or "{}")
    try:
        child = changes.move_rule(session, rule.id, expression, ids, override)
    except LakeError as exc:  # e.g. the account already has such a rule: retry later
        rule.eol_at = now + timedelta(minutes=10)
        rule.error = f"QoS step {step + 1} ({nxt.qos}) failed: {exc}"[:255]
        events.emit(session, "qos-waiting", {"rule_id": rule.id, "error": str(exc)})
        return None
    child_rule = session.get(Rule, child)
    assert child_rule is not None
    child_rule.meta = json.dumps(policy_meta(meta, steps, step + 1))
    if not last and nxt.lifetime is not None:
        child_rule.eol_at = now + timedelta(seconds=nxt.lifetime)
    rule.eol_at = None
    events.emit(
        session,
        "qos-transition",
        {"rule_id": rule.id, "child_rule_id": child, "from": steps[step].qos, "to": nxt.qos},
    )
    return child
