"""Subscriptions (Rucio's): check, store, change and list them.

A subscription is an account's filter (``expressions.subscription_filters``) plus one or
more rule templates. The daemon (``services.subscription_rounds``) makes the rules for
every new DID that matches. Bodies have Rucio's shape, ``{"options": {...}}``; a flat
object is accepted as well. Everything is checked before anything is stored: unknown
keys, bad regular expressions, RSE expressions that select no writable RSE, too few
RSEs for the copies asked for, ...
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedlake.auth import policy
from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import subscriptions as core
from fedlake.catalog.accounts import get_account, is_admin
from fedlake.catalog.iam_groups import groups_of
from fedlake.catalog.meta import COLUMN_VIEW_KEYS
from fedlake.catalog.models import DIDMeta
from fedlake.catalog.rules import too_few_targets
from fedlake.domain.errors import (
    AccessDenied,
    InvalidInput,
    InvalidReplicationRule,
    LakeError,
)
from fedlake.domain.names import validate_account
from fedlake.domain.timefmt import utcnow
from fedlake.expressions.subscription_filters import SubscriptionFilter, parse_filter
from fedlake.services import embargo
from fedlake.services import rules as rule_svc
from fedlake.services._validate import opt_bool, req_dict, req_int, req_list

__all__ = [
    "TEMPLATE_KEYS",
    "add_subscription",
    "get_by_id",
    "get_subscription",
    "list_rules",
    "list_subscriptions",
    "rule_states",
    "template_body",
    "update_subscription",
]

#: keys a rule template may have (those of a rule, without its DIDs)
TEMPLATE_KEYS = frozenset(
    {
        "copies",
        "rse_expression",
        "weight",
        "lifetime",
        "activity",
        "grouping",
        "source_replica_expression",
        "locked",
        "comment",
        "comments",
        "purge_replicas",
        "ignore_availability",
        "ignore_account_limit",
        "account",
        "priority",
        "notify",
        "meta",
        "ask_approval",
        "asynchronous",
    }
)
#: Rucio template keys fedlake does not implement, and why
_UNSUPPORTED_KEYS = {
    "chained_idx": "chained subscriptions are not supported",
    "algorithm": "chained subscriptions are not supported",
    "associated_site_idx": "chained subscriptions are not supported",
    "delay_injection": "delayed injection is not supported",
    "split_container": "split_container is not supported",
}
_ADD_OPTIONS = frozenset(
    {"filter", "replication_rules", "comments", "lifetime", "retroactive", "dry_run", "priority"}
)
_UPDATE_OPTIONS = _ADD_OPTIONS | {"state"}
_NAME = re.compile(r"[^/\x00-\x1f\x7f]{1,64}")
_MAX_TEMPLATES = 20
_MAX_LIFETIME_DAYS = 100 * 366
_COMMENTS_MAX = 4000


def _name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value) or not value.strip():
        raise InvalidInput(
            f"invalid subscription name {value!r}: use 1-64 characters, no '/' and no "
            "control characters"
        )
    return value


def _options(body: Any, allowed: frozenset[str]) -> dict[str, Any]:
    body = req_dict(body, "the subscription")
    options = body.get("options", body) if set(body) <= {"options"} else body
    options = req_dict(options, "options")
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidInput(
            f"unknown subscription option(s) {', '.join(unknown)}; use {', '.join(sorted(allowed))}"
        )
    if opt_bool(options, "dry_run", "subscription"):
        raise InvalidInput(
            "dry_run is not supported: a subscription makes its rules for real; "
            "send dry_run false (or leave it out)"
        )
    return options


def _lifetime(value: Any, now: datetime) -> datetime | None:
    """Rucio's lifetime: days from now; null, false or 0: for ever."""
    if value is None or value is False or value == 0:
        return None
    days = value
    if isinstance(days, str):
        try:
            days = float(days)
        except ValueError:
            days = None
    if isinstance(days, bool) or not isinstance(days, int | float) or not days > 0:
        raise InvalidInput(
            f"subscription lifetime {value!r} must be a positive number of days, "
            "or null/false for no end"
        )
    if days > _MAX_LIFETIME_DAYS:
        raise InvalidInput(f"subscription lifetime is at most {_MAX_LIFETIME_DAYS} days")
    return now + timedelta(days=float(days))


def _priority(options: dict[str, Any]) -> int:
    if options.get("priority") in (None, False):
        return 3
    return req_int(options, "priority", "subscription", minimum=0, maximum=2**31 - 1)


def _comments(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _COMMENTS_MAX:
        raise InvalidInput(f"comments must be a string of at most {_COMMENTS_MAX} characters")
    return value or None


def _meta_key_known(s: Session) -> Any:
    """``known_key`` for filters: Rucio's metadata names, and keys some DID has."""
    known = set(COLUMN_VIEW_KEYS) | {"events", "guid", "availability", "bytes", "length"}

    def check(key: str) -> bool:
        if key in known:
            return True
        return s.scalar(select(DIDMeta.key).where(DIDMeta.key == key).limit(1)) is not None

    return check


def _check_filter(s: Session, value: Any) -> tuple[SubscriptionFilter, dict[str, Any]]:
    flt, stored = parse_filter(value, _meta_key_known(s))
    for account in flt.accounts:
        get_account(s, account)  # an unknown account would never match: say so now
    return flt, stored


def owner_caller(s: Session, account: str) -> Caller:
    """Who a subscription's rules are made as: its account, an admin or not, with its
    groups (DIDs embargoed from them do not match its subscriptions)."""
    return Caller(account, is_admin(s, account), frozenset(groups_of(s, account)))


def template_body(
    s: Session, template: dict[str, Any], comments: str | None = None
) -> dict[str, Any]:
    """The rule body (without DIDs) a template asks for now: copies "*" is the number of
    writable RSEs of its expression; the comment defaults to the subscription's."""
    body = {k: v for k, v in template.items() if k != "comments"}
    comment = template.get("comment", template.get("comments"))
    if comment is None and comments:
        comment = comments[:255]
    body["comment"] = comment
    if body.get("copies") == "*":
        expression = body.get("rse_expression")
        if not isinstance(expression, str) or not expression:
            raise InvalidInput("'rse_expression' is required and must be a non-empty string")
        ignore = opt_bool(body, "ignore_availability", "rule template")
        body["copies"] = len(rule_svc.targets_of(s, expression, ignore))
        if not body["copies"]:
            raise InvalidReplicationRule(
                f"no RSE of {expression!r} accepts writes; use ignore_availability to force it"
            )
    return body


def _check_template(s: Session, owner: Caller, template: Any, what: str) -> tuple[str, str]:
    """Check one template as a rule; return (account, rse_expression) it asks for."""
    template = req_dict(template, what)
    unsupported = sorted(k for k in template if k in _UNSUPPORTED_KEYS)
    if unsupported:
        key = unsupported[0]
        raise InvalidInput(f"{what}: {key!r} is not supported ({_UNSUPPORTED_KEYS[key]})")
    unknown = sorted(set(template) - TEMPLATE_KEYS)
    if unknown:
        raise InvalidInput(
            f"{what}: unknown key(s) {', '.join(unknown)}; a template takes "
            f"{', '.join(sorted(TEMPLATE_KEYS))} (its DIDs are the subscription's)"
        )
    try:
        spec = rule_svc.rule_spec(s, owner, template_body(s, template))
        if len(spec.target_rse_ids) < spec.copies:
            raise too_few_targets(spec)
    except LakeError as exc:
        raise type(exc)(f"{what}: {exc}") from None
    return spec.account, spec.rse_expression


def _check_rules(s: Session, owner: Caller, value: Any) -> list[dict[str, Any]]:
    templates = req_list(value, "replication_rules")
    if not templates:
        raise InvalidInput(
            "replication_rules is empty: give at least one rule template like "
            '{"copies": 1, "rse_expression": "QOS=SAFE"}'
        )
    if len(templates) > _MAX_TEMPLATES:
        raise InvalidInput(f"a subscription has at most {_MAX_TEMPLATES} rule templates")
    seen: dict[tuple[str, str], int] = {}
    for i, template in enumerate(templates, 1):
        what = f"rule template {i}"
        key = _check_template(s, owner, template, what)
        if key in seen:
            raise InvalidReplicationRule(
                f"{what} asks for RSE expression {key[1]!r} for account {key[0]} like "
                f"template {seen[key]}: a DID gets one rule per account and expression; "
                "merge the two templates"
            )
        seen[key] = i
    return [dict(t) for t in templates]


def _require_owner(caller: Caller, account: str, what: str) -> None:
    if not caller.admin and caller.account != account:
        raise AccessDenied(
            f"account {caller.account} may not {what} subscriptions of account {account}: "
            "only the account itself or an admin may"
        )


def add_subscription(lake: Lake, caller: Caller, account: str, name: str, body: Any) -> str:
    """Create a subscription; returns its id. Rules follow for new matching DIDs (and,
    if retroactive, for the existing ones)."""
    account, name = validate_account(account), _name(name)
    _require_owner(caller, account, "add")
    policy.require_whole_namespace(caller, "read", "add subscriptions")
    options = _options(body, _ADD_OPTIONS)
    now = utcnow()
    with lake.db.write() as s:
        get_account(s, account)
        flt, stored = _check_filter(s, options.get("filter"))
        if options.get("replication_rules") is None:
            raise InvalidInput("replication_rules is required: a list of rule templates")
        rules = _check_rules(s, owner_caller(s, account), options["replication_rules"])
        new = core.NewSubscription(
            name=name,
            account=account,
            filter=stored,
            rules=rules,
            matches_files="FILE" in flt.did_types,
            comments=_comments(options.get("comments")),
            lifetime=_lifetime(options.get("lifetime"), now),
            retroactive=opt_bool(options, "retroactive", "subscription"),
            policyid=_priority(options),
        )
        return core.add_subscription(s, new, now)


def update_subscription(lake: Lake, caller: Caller, account: str, name: str, body: Any) -> None:
    """Change a subscription. Options left out or null stay as they are (Rucio);
    ``state`` I/INACTIVE deactivates it and A/ACTIVE activates it again."""
    account, name = validate_account(account), _name(name)
    _require_owner(caller, account, "change")
    policy.require_whole_namespace(caller, "read", "change subscriptions")
    options = _options(body, _UPDATE_OPTIONS)
    now = utcnow()
    with lake.db.write() as s:
        row = core.get_subscription(s, account, name)
        changes: dict[str, Any] = {}
        if options.get("filter") is not None:
            flt, changes["filter"] = _check_filter(s, options["filter"])
            changes["matches_files"] = "FILE" in flt.did_types
        if options.get("replication_rules") is not None:
            changes["rules"] = _check_rules(
                s, owner_caller(s, account), options["replication_rules"]
            )
        if options.get("comments") is not None:
            changes["comments"] = _comments(options["comments"])
        if options.get("lifetime") is not None:
            changes["lifetime"] = _lifetime(options["lifetime"], now)
        if options.get("priority") is not None:
            changes["policyid"] = _priority(options)
        if opt_bool(options, "retroactive", "subscription"):
            changes["retroactive"] = True  # false: no change (the rucio CLI always sends it)
        if options.get("state") is not None:
            state = core.parse_state(options["state"])
            if state not in ("ACTIVE", "INACTIVE"):
                raise InvalidInput(
                    f"a subscription can be set ACTIVE (A) or INACTIVE (I), not {state}"
                )
            changes["state"] = state
        core.update_subscription(s, row, changes, now)


def get_subscription(lake: Lake, account: str, name: str) -> dict[str, Any]:
    with lake.db.read() as s:
        return core.subscription_dict(
            core.get_subscription(s, validate_account(account), _name(name))
        )


def get_by_id(lake: Lake, subscription_id: str) -> dict[str, Any]:
    with lake.db.read() as s:
        return core.subscription_dict(core.get_by_id(s, subscription_id))


def list_subscriptions(
    lake: Lake, account: str | None = None, name: str | None = None, state: str | None = None
) -> list[dict[str, Any]]:
    account = None if account is None else validate_account(account)
    name = None if name is None else _name(name)
    state = None if state is None else core.parse_state(state)
    with lake.db.read() as s:
        return [core.subscription_dict(r) for r in core.list_subscriptions(s, account, name, state)]


def list_rules(
    lake: Lake, caller: Caller, account: str, name: str, state: str | None = None
) -> list[dict[str, Any]]:
    """The rules a subscription made (optionally in one state), oldest first; rules on
    DIDs embargoed from ``caller`` are left out."""
    with lake.db.read() as s:
        sub = core.get_subscription(s, validate_account(account), _name(name))
    filters = {"subscription_id": sub.id} | ({"state": state} if state else {})
    return rule_svc.list_rules(lake, caller, filters)


def rule_states(
    lake: Lake, caller: Caller, account: str, name: str | None = None
) -> list[list[Any]]:
    """[account, name, rule state, count] rows: Rucio sends these tuples as JSON arrays.
    Rules on DIDs embargoed from ``caller`` are not counted (as ``list_rules``)."""
    account = validate_account(account)
    with lake.db.read() as s:
        if name is not None:
            core.get_subscription(s, account, _name(name))
        h = embargo.hidden(s, caller)
        return [list(row) for row in core.rule_states(s, account, name, h)]
