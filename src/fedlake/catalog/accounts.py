"""Accounts, identities, attributes, scopes, limits and usage."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fedlake.catalog._util import dumps, loads
from fedlake.catalog.models import (
    RSE,
    Account,
    AccountAttribute,
    AccountLimit,
    Identity,
    Lock,
    Scope,
)
from fedlake.domain.errors import (
    AccountNotFound,
    Duplicate,
    KeyNotFound,
    ScopeNotFound,
)
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import AccountStatus, AccountType, IdentityType, ScopeStatus

__all__ = [
    "account_dict",
    "add_account",
    "add_account_attribute",
    "add_identity",
    "add_scope",
    "delete_account_attribute",
    "delete_limit",
    "get_account",
    "get_limits",
    "get_scope",
    "is_admin",
    "list_account_attributes",
    "list_accounts",
    "list_identities",
    "list_scopes",
    "local_usage",
    "set_limit",
    "userpass_identities",
]


def account_dict(row: Account) -> dict[str, Any]:
    return {
        "account": row.account,
        "account_type": row.account_type,
        "status": row.status,
        "email": row.email,
        "suspended_at": row.suspended_at,
        "deleted_at": row.deleted_at,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def get_account(session: Session, account: str) -> Account:
    row = session.get(Account, account)
    if row is None or row.status == AccountStatus.DELETED:
        raise AccountNotFound(
            f"account {account!r} does not exist; list them with `fedlake account list`"
        )
    return row


def add_account(
    session: Session, account: str, account_type: AccountType, email: str | None = None
) -> Account:
    if session.get(Account, account) is not None:
        raise Duplicate(f"account {account!r} already exists")
    row = Account(account=account, account_type=account_type.value, status="ACTIVE", email=email)
    session.add(row)
    session.flush()
    return row


def list_accounts(session: Session, filters: dict[str, str] | None = None) -> list[Account]:
    stmt = select(Account).where(Account.status != AccountStatus.DELETED.value)
    filters = filters or {}
    if "account_type" in filters:
        stmt = stmt.where(Account.account_type == AccountType.parse(filters["account_type"]).value)
    if "account" in filters:
        stmt = stmt.where(Account.account.like(filters["account"].replace("*", "%")))
    return list(session.scalars(stmt.order_by(Account.account)))


def add_identity(
    session: Session,
    identity: str,
    identity_type: IdentityType,
    account: str,
    *,
    password_hash: str | None = None,
    email: str | None = None,
    default: bool = False,
) -> None:
    get_account(session, account)
    if session.get(Identity, (identity_type.value, identity, account)) is not None:
        raise Duplicate(f"identity {identity!r} is already mapped to account {account!r}")
    session.add(
        Identity(
            identity_type=identity_type.value,
            identity=identity,
            account=account,
            password_hash=password_hash,
            email=email,
            is_default=default,
        )
    )
    session.flush()


def list_identities(session: Session, account: str) -> list[Identity]:
    get_account(session, account)
    return list(session.scalars(select(Identity).where(Identity.account == account)))


def userpass_identities(session: Session, username: str) -> list[Identity]:
    return list(
        session.scalars(
            select(Identity).where(
                Identity.identity_type == IdentityType.USERPASS.value,
                Identity.identity == username,
            )
        )
    )


def is_admin(session: Session, account: str) -> bool:
    if account == "root":
        return True
    row = session.get(AccountAttribute, (account, "admin"))
    return row is not None and loads(row.value) in (True, "true", "True", "1", 1)


def list_account_attributes(session: Session, account: str) -> list[dict[str, Any]]:
    get_account(session, account)
    rows = session.scalars(select(AccountAttribute).where(AccountAttribute.account == account))
    return [{"key": r.key, "value": loads(r.value)} for r in rows]


def add_account_attribute(session: Session, account: str, key: str, value: Any) -> None:
    get_account(session, account)
    row = session.get(AccountAttribute, (account, key))
    if row is None:
        session.add(AccountAttribute(account=account, key=key, value=dumps(value)))
    else:
        row.value = dumps(value)
    session.flush()


def delete_account_attribute(session: Session, account: str, key: str) -> None:
    res = session.execute(
        delete(AccountAttribute).where(
            AccountAttribute.account == account, AccountAttribute.key == key
        )
    )
    if res.rowcount == 0:  # type: ignore[attr-defined]
        raise KeyNotFound(f"account {account!r} has no attribute {key!r}")


# --- scopes -----------------------------------------------------------------------------


def add_scope(session: Session, scope: str, account: str) -> None:
    get_account(session, account)
    if session.get(Scope, scope) is not None:
        raise Duplicate(f"scope {scope!r} already exists")
    session.add(Scope(scope=scope, account=account, status=ScopeStatus.OPEN.value))
    try:
        session.flush()
    except IntegrityError:
        raise Duplicate(f"scope {scope!r} already exists") from None


def get_scope(session: Session, scope: str) -> Scope:
    row = session.get(Scope, scope)
    if row is None:
        raise ScopeNotFound(f"scope {scope!r} does not exist; create it with `fedlake scope add`")
    return row


def list_scopes(session: Session, account: str | None = None) -> list[Scope]:
    stmt = select(Scope).order_by(Scope.scope)
    if account is not None:
        stmt = stmt.where(Scope.account == account)
    return list(session.scalars(stmt))


# --- limits and usage -------------------------------------------------------------------


def set_limit(session: Session, account: str, locality: str, target: str, nbytes: int) -> None:
    get_account(session, account)
    row = session.get(AccountLimit, (account, locality, target))
    if row is None:
        session.add(AccountLimit(account=account, locality=locality, target=target, bytes=nbytes))
    else:
        row.bytes = nbytes
    session.flush()


def delete_limit(session: Session, account: str, locality: str, target: str) -> None:
    res = session.execute(
        delete(AccountLimit).where(
            AccountLimit.account == account,
            AccountLimit.locality == locality,
            AccountLimit.target == target,
        )
    )
    if res.rowcount == 0:  # type: ignore[attr-defined]
        raise KeyNotFound(f"account {account!r} has no {locality} limit on {target!r}")


def get_limits(session: Session, account: str, locality: str) -> dict[str, int]:
    get_account(session, account)
    rows = session.scalars(
        select(AccountLimit).where(
            AccountLimit.account == account, AccountLimit.locality == locality
        )
    )
    return {r.target: r.bytes for r in rows}


def local_usage(session: Session, account: str) -> dict[str, tuple[int, int]]:
    """Bytes and files an account's locks occupy per RSE name (locks count, like Rucio)."""
    rows = session.execute(
        select(RSE.rse, func.coalesce(func.sum(Lock.bytes), 0), func.count())
        .join(RSE, RSE.id == Lock.rse_id)
        .where(Lock.account == account)
        .group_by(RSE.rse)
    )
    return {rse: (int(b or 0), int(n)) for rse, b, n in rows}


def touch(row: Any) -> None:
    row.updated_at = utcnow()
