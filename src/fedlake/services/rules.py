"""Replication rules: add, show, list, update, delete, history."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedlake.auth import policy as access
from fedlake.auth.policy import Caller, require_rule_owner
from fedlake.bootstrap import Lake
from fedlake.catalog import dids as did_core
from fedlake.catalog import lock_listing, qos, rule_bulk, transfer_queue
from fedlake.catalog import rses as rse_core
from fedlake.catalog import rule_changes as changes
from fedlake.catalog import rules as core
from fedlake.catalog.accounts import get_account
from fedlake.catalog.models import DID, RSE
from fedlake.domain.errors import (
    AccessDenied,
    InvalidInput,
    InvalidReplicationRule,
    RuleNotFound,
)
from fedlake.domain.names import validate_account, validate_did_name, validate_scope
from fedlake.domain.types import RuleGrouping, RuleNotification
from fedlake.services import embargo
from fedlake.services._validate import (
    MAX_LIFETIME,
    opt_bool,
    opt_int,
    opt_str,
    req_dict,
    req_int,
    req_list,
    req_str,
)
from fedlake.services.rses import resolve

__all__ = [
    "add_rules",
    "add_rules_in",
    "delete_rule",
    "get_rule",
    "list_rules",
    "rule_spec",
    "targets_of",
    "update_rule",
]


def targets_of(s: Session, expression: str, ignore_availability: bool) -> list[str]:
    names = resolve(s, expression)
    rows = s.scalars(select(RSE).where(RSE.rse.in_(names), RSE.deleted_at.is_(None)))
    return [
        r.id
        for r in sorted(rows, key=lambda r: r.rse)
        if ignore_availability or r.availability_write
    ]


#: longest text the rule columns hold (longer text is a clear 400, not a database error)
_TEXT_MAX = {
    "rse_expression": 3000,
    "exclude_expression": 3000,
    "weight": 255,
    "source_replica_expression": 255,
    "activity": 50,
    "comment": 255,
    "child_rule_id": 32,
}


_S = TypeVar("_S", str, str | None)


def _fits(key: str, value: _S, what: str) -> _S:
    if value is not None and len(value) > _TEXT_MAX[key]:
        raise InvalidInput(
            f"{what}: '{key}' is {len(value)} characters long; the maximum is {_TEXT_MAX[key]}"
        )
    return value


def _text(d: dict[str, Any], key: str, what: str) -> str | None:
    return _fits(key, opt_str(d, key, what), what)


def _spec(s: Session, caller: Caller, body: dict[str, Any]) -> core.RuleSpec:
    """The rule ``body`` asks for, checked (everything but its DIDs)."""
    what = "rule"
    copies = req_int(body, "copies", what, minimum=1, maximum=2**31 - 1)
    meta = _meta(body, what)
    policy = _qos_policy(body, meta)
    if policy is not None and body.get("rse_expression") in (None, ""):
        expression = qos.expression_of(policy[0])
    else:
        expression = _fits("rse_expression", req_str(body, "rse_expression", what), what)
    if policy is not None and expression != qos.expression_of(policy[0]):
        raise InvalidInput(
            f"{what}: with a qos_policy the rse_expression is {qos.expression_of(policy[0])!r} "
            "(the first step's class); leave it out"
        )
    account = body.get("account") or caller.account
    validate_account(account)
    if account != caller.account and not caller.admin:
        raise AccessDenied(f"account {caller.account} may not add rules for account {account}")
    get_account(s, account)  # AccountNotFound, not a foreign-key error at insert time
    grouping = RuleGrouping.parse(body.get("grouping") or "DATASET")
    notify = RuleNotification.parse(body.get("notify") or "N")
    lifetime = opt_int(body, "lifetime", what, minimum=1, maximum=MAX_LIFETIME)
    eol_after = None
    if policy is not None:
        _check_steps(s, policy, copies, opt_bool(body, "ignore_availability", what))
        meta = json.dumps(qos.policy_meta(json.loads(meta or "{}"), policy, 0))
        if len(policy) == 1:
            lifetime = lifetime or policy[0].lifetime
        else:
            eol_after = policy[0].lifetime
    priority = opt_int(body, "priority", what, maximum=2**31 - 1)
    ignore_availability = opt_bool(body, "ignore_availability", what)
    ask_approval = opt_bool(body, "ask_approval", what)
    asynchronous = opt_bool(body, "asynchronous", what)
    targets = targets_of(s, expression, ignore_availability)
    if not targets:
        raise InvalidReplicationRule(
            f"no RSE of {expression!r} accepts writes; use ignore_availability to force it"
        )
    return core.RuleSpec(
        account=account,
        copies=copies,
        rse_expression=expression,
        target_rse_ids=targets,
        grouping=grouping,
        lifetime=lifetime,
        weight=_text(body, "weight", what),
        locked=opt_bool(body, "locked", what),
        source_replica_expression=_text(body, "source_replica_expression", what),
        activity=_text(body, "activity", what) or "User Subscriptions",
        notification=notify,
        purge_replicas=opt_bool(body, "purge_replicas", what),
        ignore_availability=ignore_availability,
        ignore_account_limit=caller.admin and opt_bool(body, "ignore_account_limit", what),
        priority=3 if priority is None else priority,
        comment=_text(body, "comment", what),
        meta=meta,
        ask_approval=ask_approval,
        eol_after=eol_after,
        asynchronous=asynchronous,
    )


def _check_steps(s: Session, policy: list[qos.Step], copies: int, anywhere: bool) -> None:
    """Every later step's class must have room for the copies now (it is checked again
    when the step comes)."""
    for i, step in enumerate(policy[1:], start=1):
        try:
            n = len(targets_of(s, qos.expression_of(step), anywhere))
        except InvalidInput:
            n = 0
        if n < copies:
            raise InvalidInput(
                f"qos_policy step {i}: {n} RSE(s) with QOS={step.qos} accept writes but the "
                f"rule asks for {copies} copies; set the QOS attribute of an RSE or change the step"
            )


def _qos_policy(body: dict[str, Any], meta: str | None) -> list[qos.Step] | None:
    """The rule's QoS policy: the ``qos_policy`` field, or a ``qos_policy`` key of ``meta``."""
    value = body.get("qos_policy")
    if value is None and meta:
        try:
            parsed = json.loads(meta)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            value = parsed.get("qos_policy")
    return None if value is None else qos.parse_policy(value)


def _meta(body: dict[str, Any], what: str) -> str | None:
    """The rule's ``meta`` as JSON text; ``distinct_by`` (a body field, or a key of
    ``meta``) names an RSE attribute whose values the copies must not share."""
    meta = body.get("meta")
    distinct = opt_str(body, "distinct_by", what)
    if isinstance(meta, str) and meta and distinct is None:
        return meta
    if isinstance(meta, str) and meta:
        try:
            meta = json.loads(meta)
        except ValueError:
            raise InvalidInput(f"{what}: meta must be a JSON object to add distinct_by") from None
    meta = dict(meta or {}) if isinstance(meta, dict) or not meta else None
    if meta is None:
        raise InvalidInput(f"{what}: meta must be a JSON object (or text)")
    if distinct is not None:
        meta["distinct_by"] = distinct
    key = meta.get("distinct_by")
    if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 100):
        raise InvalidInput(f"{what}: distinct_by must name an RSE attribute (1-100 characters)")
    return json.dumps(meta) if meta else None


def rule_spec(s: Session, caller: Caller, body: dict[str, Any]) -> core.RuleSpec:
    """Check a rule body (everything but its DIDs) as adding it would: subscriptions check
    their rule templates with this when they are created."""
    return _spec(s, caller, body)


def add_rules_in(
    s: Session, caller: Caller, body: dict[str, Any], inject_above: int | None = None
) -> list[str]:
    """Add one rule per DID of ``body`` inside an open transaction; ids in the DIDs' order.
    A rule on a dataset of more than ``inject_above`` files is made asynchronously."""
    dids = req_list(body.get("dids"), "dids")
    if not dids:
        raise InvalidInput("a rule needs at least one DID in 'dids'")
    spec = _spec(s, caller, body)
    spec.inject_above = inject_above or None
    keys = []
    for d in dids:
        d = req_dict(d, "DID")
        keys.append(
            (
                validate_scope(req_str(d, "scope", "DID")),
                validate_did_name(req_str(d, "name", "DID")),
            )
        )
    h = embargo.hidden(s, caller)
    r = access.reader(s, caller)  # a token's capabilities: no rule on what it may not read
    for scope, name in keys:
        embargo.require_visible(h, scope, name)
        access.require_read(r, scope, name)
    ids = rule_bulk.add_rules(s, spec, keys)
    # every REPLICATING lock gets its transfer request in the same transaction
    if transfer_queue.queue_for_rules(s, ids, None):
        from fedlake.services.transfers import poke_after_commit

        poke_after_commit(s)
    return ids


def add_rules(lake: Lake, caller: Caller, body: Any) -> list[str]:
    body = req_dict(body, "the rule")
    with lake.db.write() as s:
        return add_rules_in(s, caller, body, lake.settings.rule_async_files)


def _dict(s: Session, rule: Any) -> dict[str, Any]:
    did = s.get(DID, (rule.scope, rule.name))
    return core.rule_dict(rule, did.bytes if did else None)


def _visible_rule(s: Session, caller: Caller, rule_id: str, read_mode: str = "open") -> Any:
    """The rule, or what an unknown id gives if its DID is hidden from ``caller``; refused
    when the caller may not read its DID (``fedlake.auth.policy``: a token's capabilities,
    read rules)."""
    rule = core.get_rule(s, rule_id)
    h = embargo.hidden(s, caller)
    if h is not None and h.hides(rule.scope, rule.name):
        raise RuleNotFound(f"rule {rule_id!r} does not exist")  # as core.get_rule
    access.require_read(access.reader(s, caller, read_mode), rule.scope, rule.name)
    return rule


def _visible_did(
    s: Session, caller: Caller, scope: str, name: str, read_mode: str
) -> tuple[embargo.Hidden | None, access.Reader | None]:
    h = embargo.hidden(s, caller)
    embargo.require_visible(h, validate_scope(scope), validate_did_name(name))
    r = access.reader(s, caller, read_mode)
    access.require_read(r, scope, name)
    did_core.get_did(s, scope, name)
    return h, r


def _keep_locks(
    s: Session,
    h: embargo.Hidden | None,
    locks: list[dict[str, Any]],
    r: access.Reader | None = None,
) -> list[dict[str, Any]]:
    """Without locks of hidden files, and without locks of rules on hidden DIDs (a visible
    file in a hidden dataset is locked by the dataset's rule: its id is not shown); without
    locks of files the caller may not read."""
    locks = list(access.keep_readable(r, locks, lambda lk: (lk["scope"], lk["name"])))
    if h is None:
        return locks
    hidden_rules = embargo.hidden_rules(s, h, (lk["rule_id"] for lk in locks))
    return [
        lk
        for lk in locks
        if lk["rule_id"] not in hidden_rules and not h.hides(lk["scope"], lk["name"])
    ]


def get_rule(lake: Lake, caller: Caller, rule_id: str) -> dict[str, Any]:
    with lake.db.read() as s:
        return _dict(s, _visible_rule(s, caller, rule_id, lake.settings.policy_read))


def list_rules(lake: Lake, caller: Caller, filters: dict[str, Any]) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        rows = core.list_rules(s, filters)
        rd = access.reader(s, caller, lake.settings.policy_read)
        rows = list(embargo.keep_visible(h, rd, rows, lambda rule: (rule.scope, rule.name)))
        return [_dict(s, r) for r in rows]


def rules_of_did(lake: Lake, caller: Caller, scope: str, name: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        _visible_did(s, caller, scope, name, lake.settings.policy_read)
        return [_dict(s, r) for r in core.list_rules(s, {"scope": scope, "name": name})]


def associated_rules(lake: Lake, caller: Caller, scope: str, name: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        h, rd = _visible_did(s, caller, scope, name, lake.settings.policy_read)
        rows = core.rules_for_file(s, scope, name)
        # (embargo: a rule on a hidden parent of a visible file)
        rows = list(embargo.keep_visible(h, rd, rows, lambda rule: (rule.scope, rule.name)))
        return [_dict(s, r) for r in rows]


def _update_options(given: dict[str, Any]) -> dict[str, Any]:
    """``options`` of a rule update, checked here (not as a database error in the catalogue)."""
    what = "rule option"
    options = dict(given)
    if "lifetime" in options:  # null: never expires
        options["lifetime"] = opt_int(options, "lifetime", what, minimum=1, maximum=MAX_LIFETIME)
    if "priority" in options:
        options["priority"] = req_int(options, "priority", what, maximum=2**31 - 1)
    if "activity" in options:  # every rule has an activity: null is refused, not "None"
        options["activity"] = _fits("activity", req_str(options, "activity", what), what)
    for key in ("comment", "source_replica_expression", "child_rule_id"):
        if key in options:
            options[key] = _text(options, key, what)
    if "locked" in options:
        if options["locked"] is None:
            raise InvalidInput(f"{what}: 'locked' must be true or false")
        options["locked"] = opt_bool(options, "locked", what)
    if "approve" in options and not isinstance(options["approve"], bool):
        raise InvalidInput(f"{what}: 'approve' must be true or false")
    if "copies" in options:
        options["copies"] = req_int(options, "copies", what, minimum=1, maximum=2**31 - 1)
    if "rse_expression" in options:
        options["rse_expression"] = _fits(
            "rse_expression", req_str(options, "rse_expression", what), what
        )
    return options


def update_rule(lake: Lake, caller: Caller, rule_id: str, body: Any) -> None:
    body = req_dict(body, "the update")
    options = _update_options(req_dict(body.get("options"), "options"))
    with lake.db.write() as s:
        rule = _visible_rule(s, caller, rule_id)
        require_rule_owner(s, caller, rule.account, rule.scope, rule.name, "update")
        core.hold_rule(s, rule_id)  # a delete meanwhile: RuleNotFound, nothing half-done
        if "account" in options:
            if not caller.admin:
                raise AccessDenied("only an admin may move a rule to another account")
            get_account(s, validate_account(options["account"]))
        if "approve" in options:
            if not caller.admin:
                raise AccessDenied("only an admin may approve or deny rules")
            if options.pop("approve"):
                changes.approve_rule(s, rule_id, _targets(s, rule))
            else:
                changes.deny_rule(s, rule_id, options.pop("comment", None))
                return
        if "copies" in options:
            changes.change_copies(s, rule_id, options.pop("copies"), _targets(s, rule))
        if "rse_expression" in options:
            expression = options.pop("rse_expression")
            changes.move_rule(
                s, rule_id, expression, targets_of(s, expression, rule.ignore_availability)
            )
        if options:
            core.update_rule(s, rule_id, options)
        _queue(s, [rule_id, *([rule.child_rule_id] if rule.child_rule_id else [])])


def _targets(s: Session, rule: Any) -> list[str]:
    return targets_of(s, rule.rse_expression, rule.ignore_availability)


def _queue(s: Session, rule_ids: list[str]) -> None:
    """Transfers for the rules' new REPLICATING locks, in the same transaction."""
    if transfer_queue.queue_for_rules(s, rule_ids, None):
        from fedlake.services.transfers import poke_after_commit

        poke_after_commit(s)


def reduce_rule(lake: Lake, caller: Caller, rule_id: str, body: Any) -> list[str]:
    """Fewer copies (Rucio's ``reduce``): the same rule keeps ``copies`` of them, those on
    ``exclude_expression`` released first."""
    body = req_dict(body, "the reduction")
    copies = req_int(body, "copies", "the reduction", minimum=1, maximum=2**31 - 1)
    exclude = _text(body, "exclude_expression", "the reduction")
    with lake.db.write() as s:
        rule = _visible_rule(s, caller, rule_id)
        require_rule_owner(s, caller, rule.account, rule.scope, rule.name, "reduce")
        core.hold_rule(s, rule_id)  # a delete meanwhile: RuleNotFound, nothing half-done
        if copies >= rule.copies:
            raise InvalidReplicationRule(
                f"rule {rule_id} has {rule.copies} copies; reduce asks for fewer, not {copies}"
            )
        excluded = [] if exclude is None else targets_of(s, exclude, True)
        changes.change_copies(s, rule_id, copies, _targets(s, rule), excluded)
    return [rule_id]


def move_rule(lake: Lake, caller: Caller, rule_id: str, body: Any) -> str:
    """Move a rule's data to other RSEs: a child rule is made; the rule itself goes when
    the child is OK. Returns the child rule's id."""
    body = req_dict(body, "the move")
    expression = _fits("rse_expression", req_str(body, "rse_expression", "the move"), "the move")
    override = body.get("override") or {}
    override = _update_options(req_dict(override, "override"))
    with lake.db.write() as s:
        rule = _visible_rule(s, caller, rule_id)
        require_rule_owner(s, caller, rule.account, rule.scope, rule.name, "move")
        core.hold_rule(s, rule_id)  # a delete meanwhile: RuleNotFound, nothing half-done
        targets = targets_of(s, expression, rule.ignore_availability)
        if not targets:
            raise InvalidReplicationRule(
                f"no RSE of {expression!r} accepts writes; use ignore_availability to force it"
            )
        child = changes.move_rule(s, rule_id, expression, targets, override)
        _queue(s, [child])
        return child


def delete_rule(lake: Lake, caller: Caller, rule_id: str, body: Any) -> None:
    body = body if isinstance(body, dict) else {}
    purge = body.get("purge_replicas")
    if purge is not None and not isinstance(purge, bool):
        raise InvalidInput("purge_replicas must be true, false or null")
    with lake.db.write() as s:
        rule = _visible_rule(s, caller, rule_id)
        require_rule_owner(s, caller, rule.account, rule.scope, rule.name, "delete")
        core.delete_rule(s, rule_id, purge)


def history(lake: Lake, caller: Caller, scope: str, name: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        if h is not None and h.hides(validate_scope(scope), validate_did_name(name)):
            return []  # what a DID that never had rules gives
        access.require_read(access.reader(s, caller, lake.settings.policy_read), scope, name)
        return [
            {
                "rule_id": h.rule_id,
                "account": h.account,
                "rse_expression": h.rse_expression,
                "created_at": h.created_at,
                "updated_at": h.updated_at,
                "state": h.state,
                "locks_ok_cnt": h.locks_ok_cnt,
                "locks_replicating_cnt": h.locks_replicating_cnt,
                "locks_stuck_cnt": h.locks_stuck_cnt,
            }
            for h in core.rule_history(s, validate_scope(scope), validate_did_name(name))
        ]


def dataset_locks(lake: Lake, caller: Caller, scope: str, name: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        h, r = _visible_did(s, caller, scope, name, lake.settings.policy_read)
        return _keep_locks(s, h, lock_listing.locks_of_dataset(s, scope, name), r)


def rule_locks(lake: Lake, caller: Caller, rule_id: str) -> list[dict[str, Any]]:
    """The locks of one rule (whatever the type of its DID), with their RSE names."""
    with lake.db.read() as s:
        _visible_rule(s, caller, rule_id, lake.settings.policy_read)
        h = embargo.hidden(s, caller)
        r = access.reader(s, caller, lake.settings.policy_read)
        return _keep_locks(s, h, lock_listing.locks_of_rule(s, rule_id), r)


def rse_names(s: Session) -> dict[str, str]:
    return {r.id: r.rse for r in rse_core.all_rses(s)}
