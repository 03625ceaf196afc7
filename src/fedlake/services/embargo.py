"""Embargoes for the services: administration (add, list, remove; audited) and the
helpers every read and write path uses to behave, for a caller who may not see an
embargoed scope or DID, exactly as if it did not exist.

The decision itself is ``fedlake.catalog.embargo.hidden_for``; this module turns it into
the errors a nonexistent object gives (``DIDNotFound`` with the catalogue's own message,
``ScopeNotFound``, ``RuleNotFound``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedlake.auth.policy import (
    WRITE,
    Caller,
    Reader,
    keep_readable,
    require_group_manager,
    require_scope_write,
)
from fedlake.bootstrap import Lake
from fedlake.catalog import audit
from fedlake.catalog import embargo as core
from fedlake.catalog._util import chunks
from fedlake.catalog.embargo import Hidden
from fedlake.catalog.models import Rule
from fedlake.domain.errors import DIDAlreadyExists, DIDNotFound, InvalidInput, ScopeNotFound
from fedlake.domain.names import validate_did_name, validate_scope
from fedlake.domain.timefmt import parse_datetime, utcnow

__all__ = [
    "Hidden",
    "add_embargo",
    "hidden",
    "hidden_rules",
    "keep_visible",
    "list_embargoes",
    "remove_embargo",
    "require_not_hidden_name",
    "require_owner_and_visible",
    "require_visible",
    "require_visible_scope",
]

T = TypeVar("T")


def hidden(s: Session, caller: Caller) -> Hidden | None:
    """What ``caller`` may not see now (None: nothing; the common, cheap case)."""
    return core.hidden_for(s, admin=caller.admin, groups=caller.groups)


def not_found(scope: str, name: str) -> DIDNotFound:
    """The error of a DID that does not exist (same text as ``catalog.dids.get_did``)."""
    return DIDNotFound(f"data identifier {scope}:{name} does not exist")


def require_visible(h: Hidden | None, scope: str, name: str) -> None:
    """Raise what a nonexistent DID gives if ``scope:name`` is hidden."""
    if h is not None and h.hides(scope, name):
        raise not_found(scope, name)


def keep_visible(
    h: Hidden | None,
    r: Reader | None,
    items: Iterable[T],
    key: Callable[[T], tuple[str, str]],
) -> Iterator[T]:
    """``items`` without those embargoed from the caller (``h``) and those it may not read
    (``r``: a token's capabilities, read rules); ``key(item)`` gives (scope, name)."""
    if h is not None:
        items = h.keep(items, key)
    return keep_readable(r, items, key)


def require_not_hidden_name(h: Hidden | None, scope: str, name: str) -> None:
    """For paths that create ``scope:name`` (register a replica, upload): a hidden name is
    taken, and fails as a taken name does (``DIDAlreadyExists``, the catalogue's text);
    see docs/embargo.md, "Creating a DID whose name is embargoed"."""
    require_visible_scope(h, scope)
    if h is not None and h.hides(scope, name):
        raise DIDAlreadyExists(f"data identifier {scope}:{name} already exists")


def require_owner_and_visible(
    s: Session,
    caller: Caller,
    scope: str,
    keys: list[tuple[str, str]],
    what: str,
    *,
    name: str | None = None,
    action: str = WRITE,
) -> Hidden | None:
    """Write paths: a hidden scope fails as a missing one, then the policy's write check
    (``require_scope_write``: owner, admin or namespace rule for ``action`` on
    ``scope:name``) runs as it always does (a refused caller is refused whether the DID
    exists or not), then a hidden DID of ``keys`` fails as a missing one (as the catalogue
    would for an owner)."""
    h = hidden(s, caller)
    require_visible_scope(h, scope)
    require_scope_write(s, caller, scope, what, name=name, action=action)
    for key_scope, key_name in keys:
        require_visible(h, key_scope, key_name)
    return h


def hidden_rules(s: Session, h: Hidden, rule_ids: Iterable[str | None]) -> set[str]:
    """Those of ``rule_ids`` whose rule is on a hidden DID (a visible file locked or copied
    for the rule of a hidden dataset must not show that rule's id)."""
    ids = sorted({r for r in rule_ids if r})
    found: set[str] = set()
    for batch in chunks(ids):
        stmt = select(Rule.id, Rule.scope, Rule.name).where(Rule.id.in_(batch))
        found.update(rid for rid, scope, name in s.execute(stmt) if h.hides(scope, name))
    return found


def require_visible_scope(h: Hidden | None, scope: str) -> None:
    """Raise what a nonexistent scope gives (``catalog.accounts.get_scope``)."""
    if h is not None and scope in h.scopes:
        raise ScopeNotFound(f"scope {scope!r} does not exist; create it with `fedlake scope add`")


# --- administration ---------------------------------------------------------------------


def _until(value: Any) -> datetime:
    if not isinstance(value, str) or not value:
        raise InvalidInput("until must be a date such as 2027-06-30T00:00:00 (UTC)")
    try:
        return parse_datetime(value)
    except ValueError:
        raise InvalidInput(
            f"until {value!r} is not a date: use ISO 8601 such as 2027-06-30T00:00:00 (UTC)"
        ) from None


def _reason(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 1000:
        raise InvalidInput("reason must be text of at most 1000 characters")
    return value


def add_embargo(lake: Lake, caller: Caller, body: Any) -> dict[str, Any]:
    """Embargo a scope (no ``name``) or a DID for ``group`` until ``until``: admins, or a
    manager of the group. The scope need not exist yet (an embargo may come first)."""
    if not isinstance(body, dict):
        raise InvalidInput('the body must be {"scope", "name"?, "group", "until", "reason"?}')
    scope = validate_scope(str(body.get("scope") or ""))
    name = body.get("name")
    name = validate_did_name(str(name)) if name else None
    group = body.get("group")
    if not isinstance(group, str) or not group:
        raise InvalidInput("give the group whose members may read the embargoed data")
    until = _until(body.get("until"))
    reason = _reason(body.get("reason"))
    with lake.db.write() as s:
        require_group_manager(s, caller, group, "embargo data for the members")
        row = core.add_embargo(
            s,
            scope=scope,
            name=name,
            group=group,
            until=until,
            reason=reason,
            created_by=caller.account,
        )
        target = f"{scope}:{name}" if name else scope
        audit.record(
            s,
            caller.account,
            "embargo.add",
            target,
            {"id": row.id, "group": group, "until": until.isoformat()},
        )
        out = core.embargo_dict(row)
    core.forget_cached()  # committed: this process applies it from the next request on
    return out


def list_embargoes(
    lake: Lake, caller: Caller, scope: str | None = None, active: bool = False
) -> list[dict[str, Any]]:
    """Admins see every embargo; others those of their own groups (whose data they see)."""
    now = utcnow()
    with lake.db.read() as s:
        rows = core.list_embargoes(
            s,
            scope=validate_scope(scope) if scope else None,
            active_at=now if active else None,
        )
        return [core.embargo_dict(r, now) for r in rows if caller.admin or r.group in caller.groups]


def remove_embargo(lake: Lake, caller: Caller, embargo_id: Any) -> None:
    """Lift an embargo before its date: admins, or a manager of its group."""
    try:
        ident = int(embargo_id)
    except (TypeError, ValueError):
        raise InvalidInput(f"embargo id must be a number, not {embargo_id!r}") from None
    with lake.db.write() as s:
        row = core.get_embargo(s, ident)
        if not caller.admin and row.group not in caller.groups:
            raise core.unknown(ident)  # other groups' embargoes are not even listed
        require_group_manager(s, caller, row.group, "lift embargoes")
        target = f"{row.scope}:{row.name}" if row.name else row.scope
        core.remove_embargo(s, ident)
        audit.record(s, caller.account, "embargo.remove", target, {"id": ident})
    core.forget_cached()
