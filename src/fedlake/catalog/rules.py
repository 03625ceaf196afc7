"""Replication rules and their locks (the bookkeeping; placement comes with the rules issue).

A rule picks ``copies`` RSEs from its expression for each group of files (grouping
ALL/DATASET: one choice per group; NONE: per file), preferring RSEs that already hold
the files. Existing replicas are locked; missing ones get a COPYING replica and a
REPLICATING lock. When a replica becomes AVAILABLE its locks turn OK and the rule's
counters and state follow in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, delete, func, insert, select, update
from sqlalchemy.orm import Session

from fedlake.catalog import events, placement, rule_notify
from fedlake.catalog._util import chunks, insert_rows, pairs_in
from fedlake.catalog.dids import (
    FileRow,
    _collections_below,
    dataset_file_rows,
    file_rows_of,
    get_did,
)
from fedlake.catalog.models import (
    DID,
    RSE,
    AccountLimit,
    Lock,
    Replica,
    Rule,
    RuleHistory,
    TransferRequest,
)
from fedlake.catalog.replica_locks import bump_lock_counts, release_replicas, replica_states
from fedlake.domain.errors import (
    DuplicateRule,
    InsufficientAccountLimit,
    InsufficientTargetRSEs,
    InvalidInput,
    InvalidReplicationRule,
    RuleNotFound,
    UnsupportedOperation,
)
from fedlake.domain.timefmt import parse_datetime, utcnow
from fedlake.domain.types import (
    DIDType,
    LockState,
    ReplicaState,
    RequestState,
    RuleGrouping,
    RuleNotification,
    RuleState,
)

__all__ = [
    "UNPLACED",
    "NewRule",
    "RuleSpec",
    "add_rule",
    "check_account_limits",
    "delete_rule",
    "get_rule",
    "last_transfer_error",
    "list_rules",
    "lock_of_request",
    "locks_available",
    "release_replicas",
    "retire_parents",
    "rule_dict",
    "stick_locks",
    "unlock_detached",
    "update_rule",
]

Key = tuple[str, str]
_ACTIVE = (RequestState.QUEUED.value, RequestState.SUBMITTED.value, RequestState.WAITING.value)
#: rules without locks yet: placed when an admin approves them, or by the rule-injector
UNPLACED = (RuleState.WAITING_APPROVAL, RuleState.INJECT)


@dataclass(slots=True, kw_only=True)
class RuleSpec:
    """What a rule asks for, whatever its DID (one spec, many DIDs: see ``rule_bulk``)."""

    account: str
    copies: int
    rse_expression: str
    target_rse_ids: list[str]  # resolved from the expression, in preference order
    grouping: RuleGrouping = RuleGrouping.DATASET
    lifetime: int | None = None
    weight: str | None = None
    locked: bool = False
    source_replica_expression: str | None = None
    activity: str = "User Subscriptions"
    notification: RuleNotification = RuleNotification.NO
    purge_replicas: bool = False
    ignore_availability: bool = False
    ignore_account_limit: bool = False
    priority: int = 3
    comment: str | None = None
    meta: str | None = None
    ask_approval: bool = False
    eol_after: int | None = None  # seconds until the rule's QoS step ends (see catalog.qos)
    #: INJECT the rule (locks made by the rule-injector daemon, see catalog.rule_inject) if
    #: asked, or when its dataset holds more than ``inject_above`` files
    asynchronous: bool = False
    inject_above: int | None = None


@dataclass(slots=True, kw_only=True)
class NewRule(RuleSpec):
    """A rule on one DID."""

    scope: str
    name: str

    @classmethod
    def of(cls, spec: RuleSpec, scope: str, name: str) -> NewRule:
        return cls(scope=scope, name=name, **{f.name: getattr(spec, f.name) for f in fields(spec)})


def rule_dict(r: Rule, bytes_: int | None = None) -> dict[str, Any]:
    return {
        "id": r.id,
        "subscription_id": r.subscription_id,
        "account": r.account,
        "scope": r.scope,
        "name": r.name,
        "did_type": r.did_type,
        "state": r.state,
        "error": r.error,
        "rse_expression": r.rse_expression,
        "copies": r.copies,
        "expires_at": r.expires_at,
        "weight": r.weight,
        "locked": r.locked,
        "locks_ok_cnt": r.locks_ok_cnt,
        "locks_replicating_cnt": r.locks_replicating_cnt,
        "locks_stuck_cnt": r.locks_stuck_cnt,
        "source_replica_expression": r.source_replica_expression,
        "activity": r.activity,
        "grouping": r.grouping,
        "notification": r.notification,
        "stuck_at": r.stuck_at,
        "purge_replicas": r.purge_replicas,
        "ignore_availability": r.ignore_availability,
        "ignore_account_limit": r.ignore_account_limit,
        "priority": r.priority,
        "comments": r.comments,
        "child_rule_id": r.child_rule_id,
        "eol_at": r.eol_at,
        "split_container": r.split_container,
        "meta": r.meta,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "bytes": bytes_,
    }


def get_rule(session: Session, rule_id: str) -> Rule:
    row = session.get(Rule, rule_id) if isinstance(rule_id, str) and len(rule_id) <= 32 else None
    if row is None:
        raise RuleNotFound(f"rule {rule_id!r} does not exist")
    return row


def _groups(session: Session, did: DID, grouping: RuleGrouping) -> list[list[FileRow]]:
    if did.did_type == DIDType.FILE:
        return [file_rows_of(session, [(did.scope, did.name)])]
    if grouping == RuleGrouping.NONE:
        return [[f] for f in file_rows_of(session, [(did.scope, did.name)])]
    if grouping == RuleGrouping.ALL or did.did_type == DIDType.DATASET:
        return [file_rows_of(session, [(did.scope, did.name)])]
    datasets, _ = _collections_below(session, [(did.scope, did.name)])
    return [dataset_file_rows(session, ds) for ds in datasets]


def check_account_limits(session: Session, account: str, planned: dict[str, int]) -> None:
    """Refuse new locks of ``planned`` bytes per RSE id beyond the account's local limits."""
    limits = {
        r.target: r.bytes
        for r in session.scalars(
            select(AccountLimit).where(
                AccountLimit.account == account, AccountLimit.locality == "local"
            )
        )
    }
    if not limits:
        return
    names = {i: n for i, n in session.execute(select(RSE.id, RSE.rse).where(RSE.id.in_(planned)))}
    for rse_id, nbytes in planned.items():
        limit = limits.get(names[rse_id])
        if limit is None or limit < 0:
            continue
        used = (
            session.execute(
                select(func.coalesce(func.sum(Lock.bytes), 0)).where(
                    Lock.account == account, Lock.rse_id == rse_id
                )
            ).scalar_one()
            or 0
        )
        if used + nbytes > limit:
            raise InsufficientAccountLimit(
                f"account {account} would use {used + nbytes} bytes on {names[rse_id]} but its "
                f"limit there is {limit} bytes (now used: {used}); ask an admin to raise it"
            )


def duplicate_rule(spec: RuleSpec, scope: str, name: str, rule_id: str) -> DuplicateRule:
    return DuplicateRule(
        f"rule {rule_id} already asks for {spec.copies} copies of {scope}:{name} "
        f"on {spec.rse_expression!r} for account {spec.account}"
    )


def enough_targets(session: Session, spec: RuleSpec) -> bool:
    key = placement.distinct_by(spec.meta)
    places = placement.places_of(session, key, spec.target_rse_ids)
    return placement.enough(spec.target_rse_ids, spec.copies, places)


def too_few_targets(spec: RuleSpec) -> InsufficientTargetRSEs:
    key = placement.distinct_by(spec.meta)
    where = f" with distinct {key!r}" if key else ""
    if spec.weight:
        where += f" (only RSEs with a positive {spec.weight!r} weight are used)"
    return InsufficientTargetRSEs(
        f"{spec.rse_expression!r} matches {len(spec.target_rse_ids)} usable RSE(s) "
        f"but {spec.copies} copies{where} were asked for"
    )


def add_rule(session: Session, spec: NewRule) -> str:
    did = get_did(session, spec.scope, spec.name)
    if spec.copies < 1:
        raise InvalidReplicationRule("copies must be at least 1")
    dup = session.scalar(
        select(Rule.id).where(
            Rule.scope == spec.scope,
            Rule.name == spec.name,
            Rule.account == spec.account,
            Rule.rse_expression == spec.rse_expression,
            Rule.copies == spec.copies,
        )
    )
    if dup is not None:
        raise duplicate_rule(spec, spec.scope, spec.name, dup)
    if not enough_targets(session, spec):
        raise too_few_targets(spec)
    now = utcnow()
    big = spec.inject_above is not None and (did.length or 0) > spec.inject_above
    state = RuleState.INJECT if spec.asynchronous or big else RuleState.REPLICATING
    rule = Rule(
        id=uuid.uuid4().hex,
        account=spec.account,
        scope=spec.scope,
        name=spec.name,
        did_type=did.did_type,
        state=(RuleState.WAITING_APPROVAL if spec.ask_approval else state).value,
        rse_expression=spec.rse_expression,
        copies=spec.copies,
        expires_at=now + timedelta(seconds=spec.lifetime) if spec.lifetime else None,
        eol_at=now + timedelta(seconds=spec.eol_after) if spec.eol_after else None,
        weight=spec.weight,
        locked=spec.locked,
        source_replica_expression=spec.source_replica_expression,
        activity=spec.activity,
        grouping=spec.grouping.value,
        notification=spec.notification.value,
        purge_replicas=spec.purge_replicas,
        ignore_availability=spec.ignore_availability,
        ignore_account_limit=spec.ignore_account_limit,
        priority=spec.priority,
        comments=spec.comment,
        meta=spec.meta,
        created_at=now,
        updated_at=now,
    )
    session.add(rule)
    session.flush()
    if rule.state == RuleState.REPLICATING.value:  # else placed when approved or injected
        place(session, rule, did, spec.target_rse_ids, fresh=True)
    _history(session, rule)
    events.emit(
        session,
        "rule-added",
        {"rule_id": rule.id, "scope": rule.scope, "name": rule.name, "state": rule.state},
    )
    return rule.id


def place(
    session: Session, rule: Rule, did: DID, target_rse_ids: Sequence[str], *, fresh: bool
) -> int:
    """Choose ``rule.copies`` RSEs of ``target_rse_ids`` per group of files (those that
    already hold most of the group first) and lock the files there."""
    plan: list[tuple[list[FileRow], list[str]]] = []
    known: list[dict[tuple[str, str, str], str]] = []
    if rule.weight:
        target_rse_ids = placement.weighted(session, target_rse_ids, rule.weight)
    places = placement.places_of(session, placement.distinct_by(rule.meta), target_rse_ids)
    for group in _groups(session, did, RuleGrouping.parse(rule.grouping)):
        if not group:
            continue
        have = replica_states(session, [(f.scope, f.name) for f in group], target_rse_ids)
        known.append(have)
        score = {
            rid: sum(1 for f in group if (rid, f.scope, f.name) in have) for rid in target_rse_ids
        }
        ranked = sorted(target_rse_ids, key=lambda r: -score[r])
        plan.append((group, placement.choose(ranked, rule.copies, places)))
    return lock_files(
        session,
        rule,
        plan,
        check_limits=not rule.ignore_account_limit,
        fresh=fresh,
        known=known,
    )


class _FileLike(Protocol):
    @property
    def scope(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def bytes(self) -> int | None: ...
    @property
    def adler32(self) -> str | None: ...
    @property
    def md5(self) -> str | None: ...


def copying_replica(f: _FileLike, rse_id: str, now: datetime, *, lock_cnt: int) -> dict[str, Any]:
    """The row of a COPYING replica a new lock asks for (the file is not on the RSE yet)."""
    return {
        "rse_id": rse_id,
        "scope": f.scope,
        "name": f.name,
        "bytes": f.bytes or 0,
        "adler32": f.adler32,
        "md5": f.md5,
        "path": None,
        "state": ReplicaState.COPYING.value,
        "lock_cnt": lock_cnt,
        "tombstone": None,
        "created_at": now,
        "updated_at": now,
    }


def lock_files(
    session: Session,
    rule: Rule,
    plan: Sequence[tuple[Sequence[_FileLike], Sequence[str]]],
    *,
    check_limits: bool = True,
    fresh: bool = False,
    known: Sequence[dict[tuple[str, str, str], str]] | None = None,
) -> int:
    """Lock each group's files on its RSEs (creating COPYING replicas where missing).
    ``fresh``: the rule was made in this transaction (it has no locks yet); ``known``: per
    group, the states of the group's replicas on (at least) its RSEs, already read."""
    now = utcnow()
    locks: list[dict[str, Any]] = []
    new_replicas: dict[tuple[str, str, str], dict[str, Any]] = {}
    bump: list[tuple[str, str, str]] = []  # existing replicas that get a lock
    planned: dict[str, int] = {}
    for i, (group, rse_ids) in enumerate(plan):
        if known is not None:
            have = known[i]
        else:
            have = replica_states(session, [(f.scope, f.name) for f in group], rse_ids)
        locked: set[tuple[str, str, str]] = set()
        for batch in [] if fresh else chunks([(f.scope, f.name) for f in group]):
            locked.update(
                (rid, s, n)
                for rid, s, n in session.execute(
                    select(Lock.rse_id, Lock.scope, Lock.name).where(
                        Lock.rule_id == rule.id, pairs_in(Lock.scope, Lock.name, batch)
                    )
                )
            )
        for rid in rse_ids:
            for f in group:
                where = (rid, f.scope, f.name)
                if where in locked:
                    continue
                locked.add(where)
                state = have.get(where)
                if state is None:
                    new = new_replicas.get(where)
                    if new is None:
                        new_replicas[where] = copying_replica(f, rid, now, lock_cnt=1)
                    else:
                        new["lock_cnt"] += 1
                else:
                    bump.append(where)
                ok = state == ReplicaState.AVAILABLE.value
                locks.append(
                    {
                        "rule_id": rule.id,
                        "scope": f.scope,
                        "name": f.name,
                        "rse_id": rid,
                        "account": rule.account,
                        "bytes": f.bytes,
                        "state": (LockState.OK if ok else LockState.REPLICATING).value,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                planned[rid] = planned.get(rid, 0) + (f.bytes or 0)
    if check_limits and planned:
        check_account_limits(session, rule.account, planned)
    insert_rows(session, Replica, list(new_replicas.values()), 5000)
    insert_rows(session, Lock, locks, 5000)
    bump_lock_counts(session, bump, +1)
    session.flush()
    recount(session, {rule.id}, history=False)
    return len(locks)


def rules_covering(session: Session, keys: Sequence[Key], *, key_share: bool = False) -> list[Rule]:
    """Rules whose DID is one of ``keys``.

    ``key_share``: lock the rules found against deletion until the transaction ends
    (PostgreSQL ``FOR KEY SHARE``), for a caller that adds locks to them: a rule deleted
    meanwhile is not returned, and a delete waits for this transaction. Updates of a
    rule's state and counters (a transfer's completion) are not held up."""
    out: list[Rule] = []
    for batch in chunks(keys):
        stmt = select(Rule).where(pairs_in(Rule.scope, Rule.name, batch))
        if key_share:
            stmt = stmt.with_for_update(read=True, key_share=True).execution_options(
                populate_existing=True
            )
        out.extend(session.scalars(stmt))
    return out


def unlock_detached(session: Session, rules: Sequence[Rule], removed: Sequence[Key]) -> None:
    """Files were detached from these rules' DIDs: each rule releases its locks on those
    of them no longer below its DID (a file may still be there through another dataset)."""
    for rule in rules:
        below = {(f.scope, f.name) for f in file_rows_of(session, [(rule.scope, rule.name)])}
        gone = [k for k in dict.fromkeys(removed) if k not in below]
        released: list[tuple[str, str, str]] = []
        for batch in chunks(gone):
            cond = and_(Lock.rule_id == rule.id, pairs_in(Lock.scope, Lock.name, batch))
            released += [
                (rid, sc, nm)
                for rid, sc, nm in session.execute(
                    select(Lock.rse_id, Lock.scope, Lock.name).where(cond)
                )
            ]
            session.execute(delete(Lock).where(cond))
        if released:
            release_replicas(session, released, purge=rule.purge_replicas)
            recount(session, {rule.id})


def lock_rses(session: Session, rule_id: str) -> list[str]:
    return list(session.scalars(select(Lock.rse_id).where(Lock.rule_id == rule_id).distinct()))


def _history(session: Session, rule: Rule) -> None:
    session.execute(
        insert(RuleHistory),
        [
            {
                "rule_id": rule.id,
                "account": rule.account,
                "scope": rule.scope,
                "name": rule.name,
                "rse_expression": rule.rse_expression,
                "state": rule.state,
                "locks_ok_cnt": rule.locks_ok_cnt,
                "locks_replicating_cnt": rule.locks_replicating_cnt,
                "locks_stuck_cnt": rule.locks_stuck_cnt,
                "created_at": rule.created_at,
                "updated_at": utcnow(),
            }
        ],
    )


#: states that locks do not decide: SUSPENDED (the repairer's), and rules without locks yet
_KEEP_STATE = (RuleState.SUSPENDED.value, *(s.value for s in UNPLACED))


def lock_of_request() -> ColumnElement[bool]:
    """Joins a transfer request with the locks of its file on its destination."""
    return and_(
        Lock.scope == TransferRequest.scope,
        Lock.name == TransferRequest.name,
        Lock.rse_id == TransferRequest.dest_rse_id,
    )


def last_transfer_error(session: Session, rule_id: str) -> str | None:
    """The newest error of a transfer for one of the rule's STUCK locks (why it is stuck)."""
    row = session.execute(
        select(TransferRequest.error)
        .join(Lock, lock_of_request())
        .where(
            Lock.rule_id == rule_id,
            Lock.state == LockState.STUCK.value,
            TransferRequest.error.is_not(None),
        )
        .order_by(TransferRequest.id.desc())
        .limit(1)
    ).first()
    return None if row is None else str(row[0])


def recount(session: Session, rule_ids: set[str], *, history: bool = True) -> None:
    """Recompute counters and state of rules from their locks."""
    for rid in rule_ids:
        rule = session.get(Rule, rid)
        if rule is None:
            continue
        counts = {
            st: n
            for st, n in session.execute(
                select(Lock.state, func.count()).where(Lock.rule_id == rid).group_by(Lock.state)
            )
        }
        ok_before = rule.locks_ok_cnt or 0
        rule.locks_ok_cnt = counts.get(LockState.OK.value, 0)
        rule.locks_replicating_cnt = counts.get(LockState.REPLICATING.value, 0)
        rule.locks_stuck_cnt = counts.get(LockState.STUCK.value, 0)
        old = rule.state
        if rule.state not in _KEEP_STATE:
            if rule.locks_stuck_cnt:
                rule.state = RuleState.STUCK.value
            elif rule.locks_replicating_cnt:
                rule.state = RuleState.REPLICATING.value
            else:
                rule.state = RuleState.OK.value
        rule.updated_at = utcnow()
        if rule.state == RuleState.OK.value:
            rule.repair_count = 0
            rule.next_repair_at = None
            rule.error = None
        elif rule.state == RuleState.STUCK.value and old != rule.state:
            rule.stuck_at = rule.updated_at  # the repairer's next round (or back-off) decides
            why = last_transfer_error(session, rid)
            if why is not None:  # what a user asks first: why is it stuck?
                rule.error = f"copies failed: {why}"[:255]
        if rule.notification != "NO":
            became_ok = rule.state == RuleState.OK.value != old
            rule_notify.notify(session, rule, ok_before, sum(counts.values()), became_ok)
        if rule.state != old and history:
            _history(session, rule)
            if rule.state == RuleState.OK.value:
                events.emit(
                    session, "rule-ok", {"rule_id": rid, "scope": rule.scope, "name": rule.name}
                )
                retire_parents(session, rid)


def retire_parents(session: Session, rule_id: str) -> None:
    """A moving rule's child is OK: the parents it replaces go (their data is safe)."""
    child = session.get(Rule, rule_id)
    if child is None or child.state != RuleState.OK.value:
        return
    for parent in session.scalars(select(Rule).where(Rule.child_rule_id == rule_id)):
        parent.locked = False
        events.emit(session, "rule-moved", {"rule_id": parent.id, "child_rule_id": rule_id})
        delete_rule(session, parent.id)


def locks_available(session: Session, rse_id: str, keys: Sequence[Key]) -> None:
    """Replicas became AVAILABLE: their REPLICATING/STUCK locks turn OK."""
    rule_ids: set[str] = set()
    for batch in chunks(keys):
        cond = and_(
            Lock.rse_id == rse_id,
            pairs_in(Lock.scope, Lock.name, batch),
            Lock.state != LockState.OK.value,
        )
        rule_ids.update(session.scalars(select(Lock.rule_id).where(cond).distinct()))
        session.execute(
            update(Lock).where(cond).values(state=LockState.OK.value, updated_at=utcnow())
        )
    recount(session, rule_ids)


def list_rules(session: Session, filters: dict[str, Any]) -> list[Rule]:
    stmt = select(Rule)
    for key, value in filters.items():
        col = getattr(Rule, key, None)
        if col is None or key in ("metadata", "registry"):
            raise UnsupportedOperation(f"cannot filter rules by {key!r}")
        if key == "state":
            value = RuleState.parse(value).value
        elif isinstance(value, str):
            value = _filter_value(key, col, value)
        stmt = stmt.where(col == value)
    return list(session.scalars(stmt.order_by(Rule.created_at)))


def _filter_value(key: str, col: Any, text: str) -> Any:
    """A query-string value as the column's type (a type error in SQL would be a 500)."""
    kind = col.type.python_type
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if kind is int:
            return int(text)
        if kind is datetime:
            return parse_datetime(text)
    except ValueError:
        raise InvalidInput(f"rule filter {key}={text!r}: not a valid {kind.__name__}") from None
    return text


def rules_for_file(session: Session, scope: str, name: str) -> list[Rule]:
    ids = select(Lock.rule_id).where(Lock.scope == scope, Lock.name == name).distinct()
    return list(session.scalars(select(Rule).where(Rule.id.in_(ids))))


def delete_rule(session: Session, rule_id: str, purge_replicas: bool | None = None) -> None:
    get_rule(session, rule_id)
    rule = hold_rule(session, rule_id)
    if rule.locked:
        raise UnsupportedOperation(f"rule {rule_id} is locked; unlock it first")
    purge = rule.purge_replicas if purge_replicas is None else purge_replicas
    locks = [
        (rid, s, n)
        for rid, s, n in session.execute(
            select(Lock.rse_id, Lock.scope, Lock.name).where(Lock.rule_id == rule_id)
        )
    ]
    session.execute(delete(Lock).where(Lock.rule_id == rule_id))
    release_replicas(session, locks, purge=purge)
    rule.updated_at = utcnow()
    _history(session, rule)
    events.emit(session, "rule-deleted", {"rule_id": rule_id})
    session.delete(rule)


def hold_rule(session: Session, rule_id: str) -> Rule:
    """Before a change or delete of a rule: the active transfer requests of its copies,
    then its row, locked until commit (PostgreSQL), in that order wherever a rule is
    changed, so two changes cannot deadlock; RuleNotFound if it was deleted meanwhile
    (not a lock without its rule, or an update that matches no row)."""
    hold_copies(session, rule_id)
    return _locked_rule(session, rule_id)


def _locked_rule(session: Session, rule_id: str) -> Rule:
    """The rule's row, re-read and locked until commit (PostgreSQL): a daemon that
    deleted it meanwhile makes this RuleNotFound, not a DELETE that matches nothing."""
    session.flush()  # pending changes (a parent's unlock) must not be overwritten
    q = select(Rule).where(Rule.id == rule_id).execution_options(populate_existing=True)
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    row = session.scalars(q).first()
    if row is None:
        raise RuleNotFound(f"rule {rule_id!r} does not exist (deleted meanwhile)")
    return row


def hold_copies(session: Session, rule_id: str) -> None:
    """Lock the active transfer requests of the rule's copies first (PostgreSQL), in id
    order: a worker completing one of them locks request, replica, then locks; taking the
    request first here too keeps the two from deadlocking."""
    if session.get_bind().dialect.name != "postgresql":
        return  # one writer at a time
    tr = TransferRequest
    on = and_(Lock.scope == tr.scope, Lock.name == tr.name, Lock.rse_id == tr.dest_rse_id)
    session.execute(
        select(tr.id)
        .join(Lock, on)
        .where(Lock.rule_id == rule_id, tr.state.in_(_ACTIVE))
        .order_by(tr.id)
        .with_for_update(of=tr)
    ).all()


def update_rule(session: Session, rule_id: str, options: dict[str, Any]) -> None:
    rule = get_rule(session, rule_id)
    for key, value in options.items():
        if key == "lifetime":
            rule.expires_at = None if value is None else utcnow() + timedelta(seconds=int(value))
        elif key == "locked":
            rule.locked = bool(value)
        elif key == "comment":
            rule.comments = None if value is None else str(value)[:255]
        elif key == "activity":  # a string (the service refuses null: it is not "None")
            rule.activity = value
        elif key == "priority":
            rule.priority = int(value)
        elif key == "account":
            rule.account = str(value)
        elif key == "source_replica_expression":
            rule.source_replica_expression = value
        elif key == "child_rule_id":
            rule.child_rule_id = value
        elif key == "state":
            st = RuleState.parse(value)
            if st not in (RuleState.STUCK, RuleState.SUSPENDED):
                raise UnsupportedOperation("a rule's state can only be set to STUCK or SUSPENDED")
            rule.state = st.value
        elif key in ("cancel_requests", "boost_rule"):
            continue
        else:
            raise UnsupportedOperation(f"rule option {key!r} cannot be updated")
    rule.updated_at = utcnow()


def rule_history(session: Session, scope: str, name: str) -> list[RuleHistory]:
    return list(
        session.scalars(
            select(RuleHistory)
            .where(RuleHistory.scope == scope, RuleHistory.name == name)
            .order_by(RuleHistory.id)
        )
    )


def stick_locks(session: Session, items: Sequence[tuple[str, str, str]]) -> None:
    """REPLICATING locks of failed copies become STUCK (the rule repairer takes over)."""
    rule_ids: set[str] = set()
    by_rse: dict[str, list[tuple[str, str]]] = {}
    for rse_id, s, n in items:
        by_rse.setdefault(rse_id, []).append((s, n))
    for rse_id, keys in by_rse.items():
        for batch in chunks(keys):
            cond = and_(
                Lock.rse_id == rse_id,
                pairs_in(Lock.scope, Lock.name, batch),
                Lock.state == LockState.REPLICATING.value,
            )
            rule_ids.update(session.scalars(select(Lock.rule_id).where(cond).distinct()))
            session.execute(
                update(Lock).where(cond).values(state=LockState.STUCK.value, updated_at=utcnow())
            )
    recount(session, rule_ids)
