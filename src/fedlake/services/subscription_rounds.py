"""Applying subscriptions: the daemon's rounds.

- :func:`process_new_dids`: claim a batch of queued new DIDs, make the rules of every
  live subscription that matches each of them, and remove the batch from the queue, all
  in one transaction: a crash (even SIGKILL) redoes the whole batch, never half of it.
- :func:`process_retroactive`: one step of a retroactive subscription's walk over the
  DIDs that existed before it (a keyset cursor on the subscription row, moved in the
  transaction that makes the step's rules).
- :func:`expire_round`: deactivate subscriptions whose lifetime is over.

Rules are made by ``services.rules.add_rules_in``, the code behind ``POST /rules``, so
locks and transfer requests are the same as for a rule a user adds; each gets the
subscription's id. A subscription never makes a second rule for the same DID, account
and RSE expression. A rule that cannot be made (account limit, too few RSEs ...) is
recorded as a ``subscription-failed`` event with the reason, and the batch goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import events, new_dids
from fedlake.catalog import subscriptions as core
from fedlake.catalog.meta import meta_for
from fedlake.catalog.models import Subscription
from fedlake.domain.errors import LakeError
from fedlake.domain.timefmt import utcnow
from fedlake.expressions.subscription_filters import SubscriptionFilter, parse_filter
from fedlake.services import embargo
from fedlake.services import rules as rule_svc
from fedlake.services.subscriptions import owner_caller, template_body

__all__ = ["expire_round", "process_new_dids", "process_retroactive"]

log = logging.getLogger("fedlake.subscriptions")

Key = tuple[str, str]
#: errors that concern the rules of some DIDs only; any other error fails the whole batch
#: (it is retried: a database that went away must not mark DIDs as processed)
_RULE_ERRORS = (LakeError, IntegrityError, DataError)


@dataclass(slots=True)
class _Live:
    row: Subscription
    filter: SubscriptionFilter
    templates: list[dict[str, Any]]


def _compile(rows: Sequence[Subscription]) -> list[_Live]:
    out = []
    for row in rows:
        try:
            flt, _ = parse_filter(core.filter_json(row))
        except LakeError as exc:  # stored filters were checked; only a code change gets here
            log.error(
                "subscription %s (%s) has a filter that no longer parses: %s", row.id, row.name, exc
            )
            continue
        out.append(_Live(row, flt, core.rules_json(row)))
    return out


def process_new_dids(lake: Lake, limit: int = 500) -> int:
    """Apply the live subscriptions to the next ``limit`` queued DIDs; how many were
    taken from the queue (0: the queue is empty)."""
    now = utcnow()
    with lake.db.write() as s:
        entries = new_dids.claim(s, limit)
        if not entries:
            return 0
        # read after the claim: a DID queued after a subscription's activation is seen
        # together with that subscription (see catalog.new_dids)
        subs = _compile(core.live(s, now, lock=True))
        matched: list[str] = []
        if subs:
            found = core.dids_of(s, [(e.scope, e.name) for e in entries])
            dids = [
                found[k] for k in dict.fromkeys((e.scope, e.name) for e in entries) if k in found
            ]
            matched = _apply(s, subs, dids)
        new_dids.consume(s, [e.id for e in entries])
    if matched:
        with lake.db.write() as s:
            core.touch(s, matched, now)
    return len(entries)


def process_retroactive(lake: Lake, limit: int = 500) -> int:
    """One step (up to ``limit`` DIDs) of the walk of one retroactive subscription over
    the existing DIDs; 0 when no walk is pending."""
    now = utcnow()
    with lake.db.read() as s:
        pending = core.retroactive_pending(s, now)
    for subscription_id in pending:
        with lake.db.write() as s:
            row = core.claim_retroactive(s, subscription_id)
            if row is None:
                continue  # finished or deactivated meanwhile
            subs = _compile([row])
            after = None if row.retro_scope is None else (row.retro_scope, row.retro_name or "")
            types = sorted(subs[0].filter.did_types) if subs else []
            dids = core.dids_after(s, after, types, limit) if subs else []
            if dids:
                _apply(s, subs, dids)
                row.retro_scope, row.retro_name = dids[-1]["scope"], dids[-1]["name"]
            if len(dids) < limit:
                row.retro_done = True
                row.state = "ACTIVE" if row.state == "NEW" else row.state
                events.emit(
                    s,
                    "subscription-retroactive-done",
                    {"subscription_id": row.id, "account": row.account, "name": row.name},
                )
            row.last_processed = now
        return max(len(dids), 1)
    return 0


def expire_round(lake: Lake) -> int:
    """Deactivate the subscriptions whose lifetime is over; how many."""
    with lake.db.write() as s:
        return core.expire(s, utcnow())


def _match(
    s: Session, subs: Sequence[_Live], dids: Sequence[dict[str, Any]]
) -> list[tuple[_Live, list[Key]]]:
    """Each subscription with the DIDs (in order) it matches. Metadata is read once,
    and only for DIDs that passed the other conditions of a subscription that needs it."""
    candidates = [[d for d in dids if sub.filter.matches_did(d)] for sub in subs]
    need = {
        (d["scope"], d["name"])
        for sub, found in zip(subs, candidates, strict=True)
        if sub.filter.needs_meta
        for d in found
    }
    meta = meta_for(s, sorted(need)) if need else {}
    out = []
    for sub, found in zip(subs, candidates, strict=True):
        keys = [
            (d["scope"], d["name"])
            for d in found
            if sub.filter.matches(d, meta.get((d["scope"], d["name"]), {}))
        ]
        if keys:
            out.append((sub, keys))
    return out


def _apply(s: Session, subs: Sequence[_Live], dids: Sequence[dict[str, Any]]) -> list[str]:
    """Make the rules of ``subs`` for the ``dids`` they match; ids of those that matched."""
    callers: dict[str, Caller] = {}
    matched = []
    for sub, found in _match(s, subs, dids):
        account = sub.row.account
        caller = callers.get(account) or callers.setdefault(account, owner_caller(s, account))
        hidden = embargo.hidden(s, caller)  # DIDs embargoed from the owner do not match
        keys = found if hidden is None else [k for k in found if not hidden.hides(*k)]
        if not keys:
            continue
        matched.append(sub.row.id)
        have = core.ruled(s, sub.row.id, keys)
        made = sum(_rules_of_template(s, caller, sub.row, t, keys, have) for t in sub.templates)
        log.info(
            "subscription %s/%s: %d DID(s) matched, %d rule(s) made",
            account,
            sub.row.name,
            len(keys),
            made,
        )
    return matched


def _rules_of_template(
    s: Session,
    caller: Caller,
    sub: Subscription,
    template: dict[str, Any],
    keys: Sequence[Key],
    have: set[tuple[str, str, str, str]],
) -> int:
    account = template.get("account") or sub.account
    expression = str(template.get("rse_expression"))
    todo = [k for k in keys if (k[0], k[1], account, expression) not in have]
    if not todo:
        return 0
    try:
        body = template_body(s, template, sub.comments)
    except LakeError as exc:
        _failed(s, sub, expression, todo, exc)
        return 0
    return len(_create(s, caller, sub, body, todo))


def _attempt(
    s: Session, caller: Caller, body: dict[str, Any], keys: Sequence[Key]
) -> list[str] | Exception:
    """Add the rules in a savepoint: all of them, or none and the error."""
    dids = [{"scope": scope, "name": name} for scope, name in keys]
    try:
        with s.begin_nested():
            return rule_svc.add_rules_in(s, caller, {**body, "dids": dids})
    except _RULE_ERRORS as exc:
        return exc


def _create(
    s: Session, caller: Caller, sub: Subscription, body: dict[str, Any], keys: Sequence[Key]
) -> list[str]:
    """Rules for ``keys``, all at once if possible; when that fails, halves are tried
    until each failing DID is alone, and its error is recorded."""
    result = _attempt(s, caller, body, keys)
    if isinstance(result, Exception):
        if len(keys) == 1:
            _failed(s, sub, str(body.get("rse_expression")), keys, result)
            return []
        mid = len(keys) // 2
        return _create(s, caller, sub, body, keys[:mid]) + _create(s, caller, sub, body, keys[mid:])
    core.tag_rules(s, result, sub.id)
    return result


def _failed(
    s: Session, sub: Subscription, expression: str, keys: Sequence[Key], exc: Exception
) -> None:
    reason = f"{type(exc).__name__}: {exc}"[:1000]
    for scope, name in keys:
        log.warning(
            "subscription %s/%s: no rule on %s for %s:%s: %s",
            sub.account,
            sub.name,
            expression,
            scope,
            name,
            reason,
        )
    events.emit_many(
        s,
        "subscription-failed",
        [
            {
                "subscription_id": sub.id,
                "account": sub.account,
                "subscription": sub.name,
                "scope": scope,
                "name": name,
                "rse_expression": expression,
                "reason": reason,
            }
            for scope, name in keys
        ],
    )
