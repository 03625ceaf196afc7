"""Namespace rules (the catalogue side of policy v2, ``fedlake.auth.policy``): a group's
grant of one action (``read``, ``write``, ``delete`` or ``all``) on the DIDs of the
scopes matching an fnmatch pattern, optionally only on names with a given prefix.

The table is small and read on each decision that needs it (no cache): a rule added or
removed applies from the next request on, in every process.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedlake.catalog.iam_groups import get_group, validate_group
from fedlake.catalog.iam_models import NamespaceRule
from fedlake.domain.errors import InvalidInput, PolicyNotFound

__all__ = [
    "ACTIONS",
    "add_rule",
    "get_rule",
    "list_rules",
    "remove_rule",
    "rule_dict",
    "rules_of_groups",
]

ACTIONS = ("read", "write", "delete", "all")
#: a scope pattern: the characters of scope names plus the fnmatch wildcards * ? [ ] !
_PATTERN = re.compile(r"^[A-Za-z0-9_.\-*?\[\]!]{1,64}$")
_PREFIX = 255


def _check(action: Any, scope: Any, name_prefix: Any) -> None:
    if action not in ACTIONS:
        raise InvalidInput(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    if not isinstance(scope, str) or not _PATTERN.match(scope):
        raise InvalidInput(
            f"scope must be a scope name or an fnmatch pattern such as cms_* or * "
            f"(letters, digits, _ . - * ? [ ] !; at most 64 characters), not {scope!r}"
        )
    if name_prefix is not None and (
        not isinstance(name_prefix, str) or not name_prefix or len(name_prefix) > _PREFIX
    ):
        raise InvalidInput(f"name_prefix must be text of 1 to {_PREFIX} characters, or absent")


def add_rule(
    session: Session,
    *,
    group: str,
    action: str,
    scope: str,
    name_prefix: str | None,
    created_by: str,
) -> NamespaceRule:
    """Store a rule; the group must exist."""
    _check(action, scope, name_prefix)
    get_group(session, validate_group(group))
    row = NamespaceRule(
        group=group, action=action, scope=scope, name_prefix=name_prefix, created_by=created_by
    )
    session.add(row)
    session.flush()
    return row


def get_rule(session: Session, rule_id: int) -> NamespaceRule:
    row = session.get(NamespaceRule, rule_id)
    if row is None:
        raise PolicyNotFound(
            f"namespace rule {rule_id} does not exist; `fedlake iam policy list` shows them"
        )
    return row


def list_rules(session: Session, group: str | None = None) -> list[NamespaceRule]:
    stmt = select(NamespaceRule).order_by(NamespaceRule.id)
    if group is not None:
        stmt = stmt.where(NamespaceRule.group == group)
    return list(session.scalars(stmt))


def remove_rule(session: Session, rule_id: int) -> NamespaceRule:
    row = get_rule(session, rule_id)
    session.delete(row)
    session.flush()
    return row


def rules_of_groups(
    session: Session, groups: Collection[str], actions: Collection[str]
) -> list[NamespaceRule]:
    """The rules naming one of ``groups`` with one of ``actions`` (one indexed query)."""
    if not groups:
        return []
    stmt = select(NamespaceRule).where(
        NamespaceRule.group.in_(sorted(groups)), NamespaceRule.action.in_(sorted(actions))
    )
    return list(session.scalars(stmt))


def rule_dict(row: NamespaceRule) -> dict[str, Any]:
    return {
        "id": row.id,
        "group": row.group,
        "action": row.action,
        "scope": row.scope,
        "name_prefix": row.name_prefix,
        "created_by": row.created_by,
        "created_at": row.created_at,
    }
