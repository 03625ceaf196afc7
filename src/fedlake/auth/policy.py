"""Authorization policy, version 1: who may do what.

- ``root`` and accounts with attribute ``admin=true`` may do everything.
- Everybody authenticated may read catalogue content.
- Writing DIDs, replicas and metadata in a scope needs ownership of the scope.
- Accounts may add scopes named ``user.<account>`` for themselves; other scopes need admin.
- Rules: anyone may add rules for their own account; only the owner changes or removes them.
- Accounts, identities, RSEs and limits are admin business.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from fedlake.catalog import accounts
from fedlake.domain.errors import AccessDenied

__all__ = ["POLICY_VERSION", "Caller", "require_admin", "require_rule_owner", "require_scope_owner"]

POLICY_VERSION = 1


@dataclass(frozen=True, slots=True)
class Caller:
    account: str
    admin: bool = False


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
