"""Changing a rule after it was made: approval, copies, moving to other RSEs.

* ``approve_rule`` / ``deny_rule``: a rule asked with ``ask_approval`` waits in
  WAITING_APPROVAL, without locks, until an admin approves it (placed then) or denies it
  (removed, the reason kept in the history and the event).
* ``change_copies``: more copies lock the files on further RSEs of the expression; fewer
  copies release the locks on the RSEs that hold the least (``exclude`` RSEs first).
* ``move_rule``: a child rule with the new expression is made; the parent stays, and its
  copies with it, until the child is OK, and is then removed (``recount`` does it), so no
  data is released before the new copies exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, case, delete, func, select
from sqlalchemy.orm import Session

from fedlake.catalog import events, placement
from fedlake.catalog import rules as core
from fedlake.catalog._util import chunks, pairs_in
from fedlake.catalog.dids import get_did
from fedlake.catalog.models import Lock, Rule
from fedlake.domain.errors import InvalidReplicationRule, UnsupportedOperation
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import LockState, RuleGrouping, RuleState

__all__ = ["approve_rule", "change_copies", "deny_rule", "move_rule"]

_UNPLACED = {state.value for state in core.UNPLACED}


def _waiting(session: Session, rule_id: str) -> Rule:
    rule = core.get_rule(session, rule_id)
    if rule.state != RuleState.WAITING_APPROVAL.value:
        raise UnsupportedOperation(
            f"rule {rule_id} is {rule.state}; only rules WAITING_APPROVAL are approved or denied"
        )
    return rule


def approve_rule(session: Session, rule_id: str, target_rse_ids: Sequence[str]) -> None:
    rule = _waiting(session, rule_id)
    if len(target_rse_ids) < rule.copies:
        raise InvalidReplicationRule(
            f"rule {rule_id} asks for {rule.copies} copies on {rule.rse_expression!r}, which "
            f"has {len(target_rse_ids)} RSE(s) accepting writes now; approve it later"
        )
    rule.state = RuleState.REPLICATING.value
    core.place(session, rule, get_did(session, rule.scope, rule.name), target_rse_ids, fresh=True)
    core.recount(session, {rule.id})
    events.emit(session, "rule-approved", {"rule_id": rule.id})


def deny_rule(session: Session, rule_id: str, reason: str | None) -> None:
    rule = _waiting(session, rule_id)
    rule.error = f"denied: {reason}"[:255] if reason else "denied"
    rule.locked = False
    events.emit(session, "rule-denied", {"rule_id": rule.id, "reason": reason})
    core.delete_rule(session, rule_id)


def _groups_with_rses(session: Session, rule: Rule) -> list[tuple[list[Any], list[str]]]:
    """The rule's groups of files, each with the RSEs holding its locks (most OK first)."""
    did = get_did(session, rule.scope, rule.name)
    out: list[tuple[list[Any], list[str]]] = []
    for group in core._groups(session, did, RuleGrouping.parse(rule.grouping)):
        if not group:
            continue
        ok: dict[str, int] = {}
        for batch in chunks([(f.scope, f.name) for f in group]):
            for rid, n_ok in session.execute(
                select(
                    Lock.rse_id,
                    func.sum(case((Lock.state == LockState.OK.value, 1), else_=0)),
                )
                .where(Lock.rule_id == rule.id, pairs_in(Lock.scope, Lock.name, batch))
                .group_by(Lock.rse_id)
            ):
                ok[rid] = ok.get(rid, 0) + int(n_ok or 0)
        out.append((group, sorted(ok, key=lambda r: (-ok[r], r))))
    return out


def change_copies(
    session: Session,
    rule_id: str,
    copies: int,
    target_rse_ids: Sequence[str],
    exclude_rse_ids: Sequence[str] = (),
) -> None:
    """Set the number of copies of a rule (locks added or released now)."""
    rule = core.get_rule(session, rule_id)
    if copies < 1:
        raise InvalidReplicationRule("copies must be at least 1")
    if copies > len(target_rse_ids):
        raise InvalidReplicationRule(
            f"{copies} copies need {copies} RSEs; {rule.rse_expression!r} has "
            f"{len(target_rse_ids)} accepting writes"
        )
    if rule.state in _UNPLACED:  # placed with its new copies when approved or injected
        rule.copies = copies
        return
    places = placement.places_of(session, placement.distinct_by(rule.meta), target_rse_ids)
    if not placement.enough(target_rse_ids, copies, places):
        raise InvalidReplicationRule(
            f"{copies} copies on distinct {placement.distinct_by(rule.meta)!r} need more "
            f"places than {rule.rse_expression!r} has"
        )
    groups = _groups_with_rses(session, rule)
    if copies > rule.copies:
        plan = []
        for group, rses in groups:
            extra = [t for t in target_rse_ids if t not in exclude_rse_ids]
            more = placement.choose(extra, copies - len(rses), places, taken=rses)
            plan.append((group, rses + more))
        core.lock_files(session, rule, plan, check_limits=not rule.ignore_account_limit)
    elif copies < rule.copies:
        core.hold_copies(session, rule.id)
        excluded = set(exclude_rse_ids)
        released: list[tuple[str, str, str]] = []
        for group, rses in groups:
            keep = sorted(rses, key=lambda r: r in excluded)[:copies]  # stable: most OK first
            for rid in rses:
                if rid in keep:
                    continue
                for batch in chunks([(f.scope, f.name) for f in group]):
                    cond = and_(
                        Lock.rule_id == rule.id,
                        Lock.rse_id == rid,
                        pairs_in(Lock.scope, Lock.name, batch),
                    )
                    released += [
                        (rid, sc, nm)
                        for sc, nm in session.execute(select(Lock.scope, Lock.name).where(cond))
                    ]
                    session.execute(delete(Lock).where(cond))
        core.release_replicas(session, released, purge=rule.purge_replicas)
    rule.copies = copies
    rule.updated_at = utcnow()
    core.recount(session, {rule.id})
    events.emit(session, "rule-updated", {"rule_id": rule.id, "copies": copies})


def move_rule(
    session: Session,
    rule_id: str,
    rse_expression: str,
    target_rse_ids: list[str],
    override: dict[str, Any] | None = None,
) -> str:
    """Make the child rule that moves ``rule_id``'s data to ``rse_expression``."""
    parent = core.get_rule(session, rule_id)
    if parent.child_rule_id is not None and session.get(Rule, parent.child_rule_id) is not None:
        raise UnsupportedOperation(
            f"rule {rule_id} is already moving (child rule {parent.child_rule_id})"
        )
    if parent.state == RuleState.WAITING_APPROVAL.value:
        raise UnsupportedOperation(f"rule {rule_id} waits for approval; approve it first")
    if parent.state == RuleState.INJECT.value:
        raise UnsupportedOperation(
            f"rule {rule_id} is being created (INJECT); move it once it has its locks"
        )
    override = dict(override or {})
    spec = core.NewRule(
        scope=parent.scope,
        name=parent.name,
        account=parent.account,
        copies=int(override.pop("copies", parent.copies)),
        rse_expression=rse_expression,
        target_rse_ids=target_rse_ids,
        grouping=RuleGrouping.parse(override.pop("grouping", parent.grouping)),
        lifetime=override.pop("lifetime", None),
        weight=parent.weight,
        locked=parent.locked,
        source_replica_expression=override.pop(
            "source_replica_expression", parent.source_replica_expression
        ),
        activity=override.pop("activity", parent.activity),
        purge_replicas=parent.purge_replicas,
        ignore_availability=parent.ignore_availability,
        ignore_account_limit=parent.ignore_account_limit,
        priority=int(override.pop("priority", parent.priority)),
        comment=override.pop("comment", parent.comments),
        meta=parent.meta,
    )
    if override:
        raise UnsupportedOperation(
            f"cannot override {', '.join(sorted(override))} when moving a rule; "
            "use copies, grouping, lifetime, activity, priority, comment or "
            "source_replica_expression"
        )
    if parent.expires_at is not None and spec.lifetime is None:
        spec.lifetime = max(1, int((parent.expires_at - utcnow()).total_seconds()))
    child = core.add_rule(session, spec)
    parent.child_rule_id = child
    parent.updated_at = utcnow()
    events.emit(session, "rule-moving", {"rule_id": rule_id, "child_rule_id": child})
    session.flush()  # autoflush is off: retire_parents must see parent.child_rule_id
    core.retire_parents(session, child)  # the child may be OK at once
    return child
