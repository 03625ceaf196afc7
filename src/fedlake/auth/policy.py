"""Authorization policy, version 1: who may do what.

- ``root`` and accounts with attribute ``admin=true`` may do everything.
- Everybody authenticated may read catalogue content.
- Writing DIDs, replicas and metadata in a scope needs ownership of the scope.
- Accounts may add scopes named ``user.<account>`` for themselves; other scopes need admin.
- Rules: anyone may add rules for their own account; only the owner changes or removes them.
- Accounts, identities, RSEs and limits are admin business.
- Identity (``/iam``): admins may do everything. A manager of a group adds and removes its
  members and decides its registration requests; only admins create or remove groups,
  set the manager flag, suspend or reinstate accounts and revoke other accounts' tokens.
  Everybody may list groups, see their own groups and requests, submit requests, leave a
  group and revoke their own tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from fedlake.catalog import accounts, iam_groups
from fedlake.domain.errors import AccessDenied

__all__ = [
    "POLICY_VERSION",
    "Caller",
    "require_admin",
    "require_group_manager",
    "require_rule_owner",
    "require_scope_owner",
    "require_self_or_admin",
]

POLICY_VERSION = 1


@dataclass(frozen=True, slots=True)
class Caller:
    """Who makes a request: the account, whether it is an admin, and its groups (for
    embargoes, ``fedlake.catalog.embargo``)."""

    account: str
    admin: bool = False
    groups: frozenset[str] = frozenset()


def require_admin(caller: Caller, what: str) -> None:
    if not caller.admin:
        raise AccessDenied(f"account {caller.account} may not {what}: an admin account is needed")


def require_scope_owner(session: Session, caller: Caller, scope: str, what: str) -> None:
    if caller.admin:
        return
    row = accounts.get_scope(session, scope)
    if row.account != caller.account:
        raise AccessDenied(
            f"account {caller.account} may not {what} in scope {scope} (owned by {row.account})"
        )


def require_rule_owner(caller: Caller, owner: str, what: str) -> None:
    if not caller.admin and owner != caller.account:
        raise AccessDenied(f"account {caller.account} may not {what} a rule of account {owner}")


def may_add_scope(caller: Caller, scope: str, account: str) -> bool:
    return caller.admin or (account == caller.account and scope == f"user.{caller.account}")


def require_self_or_admin(caller: Caller, account: str, what: str) -> None:
    if not caller.admin and caller.account != account:
        raise AccessDenied(
            f"account {caller.account} may not {what} of account {account}: "
            "only that account or an admin may"
        )


def require_group_manager(session: Session, caller: Caller, group: str, what: str) -> None:
    """Admins, and managers of ``group`` (not of its parent: each group has its own)."""
    if caller.admin or iam_groups.is_manager(session, caller.account, group):
        return
    raise AccessDenied(
        f"account {caller.account} may not {what} of group {group}: "
        "a manager of the group or an admin is needed"
    )
