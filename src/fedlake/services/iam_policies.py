"""Namespace rules of policy v2 (``fedlake.auth.policy``, docs/policy.md): add, list,
remove. Admin business; every change is audited in its own transaction.

A rule is read from the catalogue on each decision that needs it, so an added or removed
rule applies from the next request on, in every process (no cache to drop).
"""

from __future__ import annotations

from typing import Any

from fedlake.auth.policy import Caller, require_admin
from fedlake.bootstrap import Lake
from fedlake.catalog import audit
from fedlake.catalog import namespace_rules as core
from fedlake.catalog.iam_groups import validate_group
from fedlake.domain.errors import InvalidInput

__all__ = ["add_policy", "list_policies", "remove_policy"]


def add_policy(lake: Lake, caller: Caller, body: Any) -> dict[str, Any]:
    """``{"group", "action", "scope", "name_prefix"?}``: grant ``action`` on the scopes
    matching ``scope`` (fnmatch) to the members of ``group`` and of the groups below it."""
    require_admin(caller, "add namespace rules")
    if not isinstance(body, dict):
        raise InvalidInput(
            'the body must be {"group", "action": read|write|delete|all, "scope", "name_prefix"?}'
        )
    group = validate_group(body.get("group"))
    with lake.db.write() as s:
        row = core.add_rule(
            s,
            group=group,
            action=str(body.get("action") or ""),  # add_rule checks both
            scope=str(body.get("scope") or ""),
            name_prefix=body.get("name_prefix") or None,
            created_by=caller.account,
        )
        out = core.rule_dict(row)
        details = {k: out[k] for k in ("id", "action", "scope", "name_prefix")}
        audit.record(s, caller.account, "policy.add", group, details)
    return out


def list_policies(lake: Lake, caller: Caller, group: str | None = None) -> list[dict[str, Any]]:
    require_admin(caller, "list namespace rules")
    with lake.db.read() as s:
        rows = core.list_rules(s, validate_group(group) if group else None)
        return [core.rule_dict(r) for r in rows]


def remove_policy(lake: Lake, caller: Caller, rule_id: Any) -> None:
    require_admin(caller, "remove namespace rules")
    try:
        ident = int(rule_id)
    except (TypeError, ValueError):
        raise InvalidInput(f"namespace rule id must be a number, not {rule_id!r}") from None
    with lake.db.write() as s:
        row = core.remove_rule(s, ident)
        details = {"id": ident, "action": row.action, "scope": row.scope}
        audit.record(s, caller.account, "policy.remove", row.group, details)
