"""Subscriptions: rows, look-ups, state changes, and the rules they made.

A subscription belongs to an account and has a unique name in it. Its ``filter`` and
``replication_rules`` are JSON text, checked by the service before they get here. State
changes that let a subscription match DIDs it did not match before (creation,
re-activation, a new filter) end with ``new_dids.hold_creators`` so that no DID created
afterwards escapes the queue.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fedlake.catalog import events, new_dids
from fedlake.catalog._util import chunks, dumps, loads, pairs_in
from fedlake.catalog.embargo import Hidden, hides_did
from fedlake.catalog.models import DID, Rule, Subscription
from fedlake.catalog.new_dids import LIVE_STATES
from fedlake.domain.errors import InvalidInput, SubscriptionDuplicate, SubscriptionNotFound

__all__ = [
    "LIVE_STATES",
    "STATES",
    "NewSubscription",
    "add_subscription",
    "claim_retroactive",
    "dids_after",
    "dids_of",
    "expire",
    "filter_json",
    "get_by_id",
    "get_subscription",
    "list_subscriptions",
    "live",
    "parse_state",
    "retroactive_pending",
    "rule_states",
    "ruled",
    "rules_json",
    "subscription_dict",
    "tag_rules",
    "touch",
    "update_subscription",
]

STATES = ("ACTIVE", "INACTIVE", "NEW", "UPDATED", "BROKEN")
#: Rucio's one-letter codes (the rucio client deactivates with {"state": "I"})
_LETTERS = {s[0]: s for s in STATES}

Key = tuple[str, str]


def parse_state(value: Any) -> str:
    text = value.strip().upper() if isinstance(value, str) else None
    state = _LETTERS.get(text or "", text)
    if state not in STATES:
        raise InvalidInput(
            f"subscription state {value!r} is not one of {', '.join(STATES)} (or A, I, N, U, B)"
        )
    return state


@dataclass(slots=True, kw_only=True)
class NewSubscription:
    """A checked subscription, ready to store (``filter`` and ``rules`` in stored form)."""

    name: str
    account: str
    filter: dict[str, Any]
    rules: list[dict[str, Any]]
    matches_files: bool
    comments: str | None = None
    lifetime: datetime | None = None
    retroactive: bool = False
    policyid: int = 3


def subscription_dict(row: Subscription) -> dict[str, Any]:
    """The shape Rucio's API returns (filter and rules as JSON text), plus how far a
    retroactive subscription got."""
    return {
        "id": row.id,
        "name": row.name,
        "account": row.account,
        "filter": row.filter,
        "replication_rules": row.replication_rules,
        "policyid": row.policyid,
        "state": row.state,
        "last_processed": row.last_processed,
        "lifetime": row.lifetime,
        "comments": row.comments,
        "retroactive": row.retroactive,
        "retroactive_done": row.retro_done if row.retroactive else None,
        "expired_at": row.expired_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _duplicate(account: str, name: str) -> SubscriptionDuplicate:
    return SubscriptionDuplicate(
        f"account {account} already has a subscription named {name!r}; choose another "
        "name, or change that one (PUT /subscriptions/{account}/{name}, "
        "`fedlake subscription update`)"
    )


def add_subscription(session: Session, new: NewSubscription, now: datetime) -> str:
    existing = session.scalar(
        select(Subscription.id).where(
            Subscription.account == new.account, Subscription.name == new.name
        )
    )
    if existing is not None:
        raise _duplicate(new.account, new.name)
    row = Subscription(
        id=uuid.uuid4().hex,
        name=new.name,
        account=new.account,
        filter=dumps(new.filter),
        replication_rules=dumps(new.rules),
        state="NEW" if new.retroactive else "ACTIVE",
        policyid=new.policyid,
        lifetime=new.lifetime,
        comments=new.comments,
        retroactive=new.retroactive,
        retro_done=not new.retroactive,
        matches_files=new.matches_files,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # the same name added concurrently
        raise _duplicate(new.account, new.name) from None
    events.emit(
        session,
        "subscription-added",
        {"subscription_id": row.id, "account": row.account, "name": row.name},
    )
    new_dids.hold_creators(session)
    return row.id


def get_subscription(session: Session, account: str, name: str) -> Subscription:
    row = session.scalar(
        select(Subscription).where(Subscription.account == account, Subscription.name == name)
    )
    if row is None:
        raise SubscriptionNotFound(
            f"account {account} has no subscription named {name!r}; "
            f"list them with GET /subscriptions/{account}"
        )
    return row


def get_by_id(session: Session, subscription_id: str) -> Subscription:
    row = None
    if isinstance(subscription_id, str) and len(subscription_id) <= 32:
        row = session.get(Subscription, subscription_id)
    if row is None:
        raise SubscriptionNotFound(f"no subscription has the id {subscription_id!r}")
    return row


def list_subscriptions(
    session: Session,
    account: str | None = None,
    name: str | None = None,
    state: str | None = None,
) -> list[Subscription]:
    q = select(Subscription)
    if account is not None:
        q = q.where(Subscription.account == account)
    if name is not None:
        q = q.where(Subscription.name == name)
    if state is not None:
        q = q.where(Subscription.state == state)
    return list(session.scalars(q.order_by(Subscription.account, Subscription.name)))


def update_subscription(
    session: Session, row: Subscription, changes: dict[str, Any], now: datetime
) -> None:
    """Apply checked changes: ``filter``/``rules`` (stored form), ``matches_files``,
    ``comments``, ``lifetime``, ``policyid``, ``retroactive``, ``state``.

    A live subscription that changes becomes UPDATED (as in Rucio); INACTIVE ones stay
    inactive unless the change sets ``state``. ``retroactive=True`` (re)starts the walk
    over existing DIDs (rules already made are not made twice).
    """
    was_live = row.state in LIVE_STATES
    widens = False
    if "filter" in changes:
        row.filter = dumps(changes["filter"])
        widens = True
    if "rules" in changes:
        row.replication_rules = dumps(changes["rules"])
    for key in ("matches_files", "comments", "lifetime", "policyid"):
        if key in changes:
            setattr(row, key, changes[key])
    if "retroactive" in changes:
        row.retroactive = bool(changes["retroactive"])
        row.retro_done = not row.retroactive
        row.retro_scope = row.retro_name = None
    state = changes.get("state")
    if state == "INACTIVE":
        row.state, row.expired_at = "INACTIVE", now
    elif state is not None:
        row.state, row.expired_at = state, None
        widens = widens or not was_live
    elif was_live:
        row.state = "NEW" if row.retroactive and not row.retro_done else "UPDATED"
    row.updated_at = now
    session.flush()
    events.emit(
        session,
        "subscription-updated",
        {"subscription_id": row.id, "account": row.account, "name": row.name, "state": row.state},
    )
    if widens and row.state in LIVE_STATES:
        new_dids.hold_creators(session)


def live(session: Session, now: datetime, *, lock: bool = False) -> list[Subscription]:
    """Subscriptions applied now, by priority (``policyid``: lower first), then age.

    ``lock``: share-lock them for the transaction (PostgreSQL): a retroactive walk of one
    of them (which locks it exclusively) then never runs at the same time as this
    transaction, so the two cannot both make a rule for the same DID.
    """
    q = (
        select(Subscription)
        .where(
            Subscription.state.in_(LIVE_STATES),
            or_(Subscription.lifetime.is_(None), Subscription.lifetime > now),
        )
        .order_by(Subscription.policyid, Subscription.created_at, Subscription.id)
    )
    if lock and session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(read=True)
    return list(session.scalars(q))


def expire(session: Session, now: datetime) -> int:
    """Deactivate live subscriptions whose lifetime is over."""
    result = session.execute(
        update(Subscription)
        .where(Subscription.state.in_(LIVE_STATES), Subscription.lifetime <= now)
        .values(state="INACTIVE", expired_at=now, updated_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def touch(session: Session, ids: Sequence[str], now: datetime, every: float = 10.0) -> None:
    """Record that subscriptions were applied (``last_processed``), at most every
    ``every`` seconds per subscription."""
    if not ids:
        return
    before = now - timedelta(seconds=every)
    session.execute(
        update(Subscription)
        .where(
            Subscription.id.in_(list(ids)),
            or_(Subscription.last_processed.is_(None), Subscription.last_processed < before),
        )
        .values(last_processed=now)
    )


def retroactive_pending(session: Session, now: datetime) -> list[str]:
    """Ids of live retroactive subscriptions that have not walked every DID yet."""
    return list(
        session.scalars(
            select(Subscription.id)
            .where(
                Subscription.retroactive.is_(True),
                Subscription.retro_done.is_(False),
                Subscription.state.in_(LIVE_STATES),
                or_(Subscription.lifetime.is_(None), Subscription.lifetime > now),
            )
            .order_by(Subscription.policyid, Subscription.created_at)
        )
    )


def claim_retroactive(session: Session, subscription_id: str) -> Subscription | None:
    """Lock a subscription for one step of its retroactive walk (waits for the batches of
    new DIDs that use it); None if its walk is over or it is no longer live."""
    q = select(Subscription).where(
        Subscription.id == subscription_id,
        Subscription.retroactive.is_(True),
        Subscription.retro_done.is_(False),
        Subscription.state.in_(LIVE_STATES),
    )
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    return session.scalar(q.execution_options(populate_existing=True))


def dids_after(
    session: Session, after: Key | None, types: Sequence[str], limit: int
) -> list[dict[str, Any]]:
    """The next ``limit`` DIDs of ``types`` after ``after`` in (scope, name) order, as the
    mappings subscription filters read."""
    q = select(*_DID_COLUMNS).where(DID.did_type.in_(list(types)))
    if after is not None:
        scope, name = after
        q = q.where(or_(DID.scope > scope, and_(DID.scope == scope, DID.name > name)))
    rows = session.execute(q.order_by(DID.scope, DID.name).limit(limit))
    return [dict(r._mapping) for r in rows]


_DID_COLUMNS = (
    DID.scope,
    DID.name,
    DID.did_type,
    DID.account,
    DID.bytes,
    DID.length,
    DID.hidden,
    DID.events,
    DID.guid,
    DID.availability,
    DID.is_open,
    DID.created_at,
)


def dids_of(session: Session, keys: Sequence[Key]) -> dict[Key, dict[str, Any]]:
    """The DIDs of ``keys`` that exist, as the mappings subscription filters read."""
    out: dict[Key, dict[str, Any]] = {}
    for batch in chunks(list(dict.fromkeys(keys))):
        for r in session.execute(select(*_DID_COLUMNS).where(pairs_in(DID.scope, DID.name, batch))):
            out[(r.scope, r.name)] = dict(r._mapping)
    return out


def ruled(
    session: Session, subscription_id: str, keys: Sequence[Key]
) -> set[tuple[str, str, str, str]]:
    """(scope, name, account, rse_expression) of the rules the subscription already made
    on ``keys`` (looked up by DID: the rules' DID index)."""
    out: set[tuple[str, str, str, str]] = set()
    for batch in chunks(list(dict.fromkeys(keys))):
        rows = session.execute(
            select(
                Rule.scope, Rule.name, Rule.account, Rule.rse_expression, Rule.subscription_id
            ).where(pairs_in(Rule.scope, Rule.name, batch))
        )
        out.update((s, n, a, e) for s, n, a, e, sub in rows if sub == subscription_id)
    return out


def tag_rules(session: Session, rule_ids: Sequence[str], subscription_id: str) -> None:
    """Mark new rules as made by a subscription."""
    for batch in chunks(list(rule_ids)):
        session.execute(
            update(Rule).where(Rule.id.in_(batch)).values(subscription_id=subscription_id)
        )


def rule_states(
    session: Session, account: str, name: str | None = None, hidden: Hidden | None = None
) -> list[tuple[str, str, str, int]]:
    """(account, name, rule state, count) of the rules of an account's subscriptions;
    without the rules on DIDs ``hidden`` hides (docs/embargo.md)."""
    q = (
        select(Subscription.account, Subscription.name, Rule.state, func.count())
        .join(Rule, Rule.subscription_id == Subscription.id)
        .where(Subscription.account == account)
    )
    if name is not None:
        q = q.where(Subscription.name == name)
    if hidden is not None:
        q = q.where(~hides_did(hidden, Rule.scope, Rule.name))
    q = q.group_by(Subscription.account, Subscription.name, Rule.state).order_by(
        Subscription.name, Rule.state
    )
    return [(a, n, st, int(c)) for a, n, st, c in session.execute(q)]


def rules_json(row: Subscription) -> list[dict[str, Any]]:
    value = loads(row.replication_rules)
    return list(value) if isinstance(value, list) else []


def filter_json(row: Subscription) -> dict[str, Any]:
    value = loads(row.filter)
    return dict(value) if isinstance(value, dict) else {}
