"""Identity administration: groups, memberships, users (suspension, token revocation),
registration requests and the audit log.

Each function authorizes with ``fedlake.auth.policy``, changes the catalogue in one
transaction and appends its audit entry in that same transaction. Changes to an account
drop that account's cached tokens in this process (``CallerCache.forget_account``); other
processes see them within ``FEDLAKE_AUTH_CACHE_SECONDS``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from fedlake.auth.policy import (
    Caller,
    require_admin,
    require_group_manager,
    require_self_or_admin,
)
from fedlake.bootstrap import Lake
from fedlake.catalog import accounts as acc_core
from fedlake.catalog import audit, revocations
from fedlake.catalog import iam_groups as core
from fedlake.catalog.models import Account
from fedlake.domain.errors import AccessDenied, Conflict, InvalidInput
from fedlake.domain.names import validate_account
from fedlake.domain.timefmt import parse_datetime, utcnow
from fedlake.domain.types import AccountStatus, AccountType

__all__ = [
    "add_group",
    "add_member",
    "audit_entries",
    "decide_request",
    "get_group",
    "get_request",
    "list_groups",
    "list_members",
    "list_requests",
    "list_users",
    "reinstate",
    "remove_group",
    "remove_member",
    "revoke_token",
    "revoke_tokens",
    "set_manager",
    "show_user",
    "submit_request",
    "suspend",
]

_REASON = 1000


def _text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _REASON:
        raise InvalidInput(f"{what} must be text of at most {_REASON} characters")
    return value


# --- groups ------------------------------------------------------------------------------


def add_group(
    lake: Lake,
    caller: Caller,
    path: str,
    *,
    optional: bool = False,
    description: str | None = None,
) -> dict[str, Any]:
    require_admin(caller, "create groups")
    if not isinstance(optional, bool):
        raise InvalidInput("optional must be true or false")
    description = _text(description, "a description")
    with lake.db.write() as s:
        row = core.add_group(s, path, optional=optional, description=description)
        audit.record(s, caller.account, "group.add", path, {"optional": optional})
        return core.group_dict(row)


def list_groups(lake: Lake, caller: Caller, under: str | None = None) -> list[dict[str, Any]]:
    """Every group (names are no secret: people need them to ask to join)."""
    with lake.db.read() as s:
        return [core.group_dict(r) for r in core.list_groups(s, under)]


def get_group(lake: Lake, caller: Caller, path: str) -> dict[str, Any]:
    """A group with its subgroups; members only for its managers and admins."""
    with lake.db.read() as s:
        out = core.group_dict(core.get_group(s, path))
        out["subgroups"] = core.descendants(s, path)
        if caller.admin or core.is_manager(s, caller.account, path):
            out["members"] = core.members(s, path)
        return out


def remove_group(lake: Lake, caller: Caller, path: str, *, recursive: bool = False) -> list[str]:
    """Remove a group with its memberships and requests; subgroups only if ``recursive``."""
    require_admin(caller, "remove groups")
    with lake.db.write() as s:
        removed = core.remove_group(s, path, recursive=recursive)
        for name in removed:
            audit.record(s, caller.account, "group.remove", name, {"recursive": recursive})
    lake.tokens.callers.clear()  # memberships went with it
    return removed


# --- memberships -------------------------------------------------------------------------


def list_members(lake: Lake, caller: Caller, path: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        core.get_group(s, path)
        require_group_manager(s, caller, path, "list the members")
        return core.members(s, path)


def add_member(
    lake: Lake, caller: Caller, path: str, account: str, *, manager: bool = False
) -> None:
    """Admins and the group's managers add members; only admins make managers."""
    if manager:
        require_admin(caller, "make group managers")
    with lake.db.write() as s:
        core.get_group(s, path)
        require_group_manager(s, caller, path, "add members")
        core.add_member(s, path, validate_account(account), manager=manager)
        audit.record(
            s, caller.account, "member.add", path, {"account": account, "manager": manager}
        )
    lake.tokens.callers.forget_account(account)


def remove_member(lake: Lake, caller: Caller, path: str, account: str) -> None:
    """Admins and the group's managers remove members; anybody may leave a group."""
    with lake.db.write() as s:
        core.get_group(s, path)
        if account != caller.account:
            require_group_manager(s, caller, path, "remove members")
        core.remove_member(s, path, account)
        audit.record(s, caller.account, "member.remove", path, {"account": account})
    lake.tokens.callers.forget_account(account)


def set_manager(lake: Lake, caller: Caller, path: str, account: str, manager: Any) -> None:
    require_admin(caller, "change group managers")
    if not isinstance(manager, bool):
        raise InvalidInput('the body must be {"manager": true} or {"manager": false}')
    with lake.db.write() as s:
        if core.set_manager(s, path, account, manager):
            audit.record(
                s, caller.account, "member.manager", path, {"account": account, "manager": manager}
            )


# --- users -------------------------------------------------------------------------------


def _user_row(row: Account, groups: list[str]) -> dict[str, Any]:
    return {
        "account": row.account,
        "account_type": row.account_type,
        "status": row.status,
        "email": row.email,
        "groups": groups,
        "suspended_at": row.suspended_at,
        "created_at": row.created_at,
    }


def list_users(lake: Lake, caller: Caller, status: str | None = None) -> list[dict[str, Any]]:
    """Accounts of type USER with their status and groups."""
    require_admin(caller, "list users")
    stmt = select(Account).where(
        Account.account_type == AccountType.USER.value,
        Account.status != AccountStatus.DELETED.value,
    )
    if status is not None:
        stmt = stmt.where(Account.status == AccountStatus.parse(status).value)
    with lake.db.read() as s:
        rows = list(s.scalars(stmt.order_by(Account.account)))
        groups = core.groups_by_account(s, [r.account for r in rows])
        return [_user_row(r, groups[r.account]) for r in rows]


def show_user(lake: Lake, caller: Caller, account: str) -> dict[str, Any]:
    """An account with its identities, memberships and registration requests."""
    require_self_or_admin(caller, account, "see the groups and requests")
    with lake.db.read() as s:
        row = acc_core.get_account(s, account)
        out = _user_row(row, core.groups_of(s, account))
        out["memberships"] = core.memberships_of(s, account)
        out["managed_groups"] = core.managed_groups(s, account)
        out["identities"] = [
            {"type": i.identity_type, "identity": i.identity}
            for i in acc_core.list_identities(s, account)
        ]
        out["requests"] = [
            core.registration_dict(r)
            for r in core.list_registrations(s, state=None, account=account)
        ]
        return out


def suspend(lake: Lake, caller: Caller, account: str, reason: str | None = None) -> None:
    """SUSPENDED: its tokens stop working (here at once, elsewhere within the cache time)
    and are revoked, so they stay dead after reinstatement."""
    require_admin(caller, "suspend accounts")
    reason = _text(reason, "a reason")
    if account == "root":
        raise AccessDenied("account root cannot be suspended: it is the lake's last resort")
    if account == caller.account:
        raise Conflict("you cannot suspend your own account; ask another admin")
    with lake.db.write() as s:
        row = acc_core.get_account(s, account)
        if row.status == AccountStatus.SUSPENDED.value:
            raise Conflict(f"account {account} is already suspended")
        row.status = AccountStatus.SUSPENDED.value
        row.suspended_at = utcnow()
        revocations.revoke_account_tokens(s, account, caller.account)
        audit.record(s, caller.account, "account.suspend", account, {"reason": reason})
    lake.tokens.callers.forget_account(account)


def reinstate(lake: Lake, caller: Caller, account: str) -> None:
    """ACTIVE again; tokens from before the suspension stay revoked (log in again)."""
    require_admin(caller, "reinstate accounts")
    with lake.db.write() as s:
        row = acc_core.get_account(s, account)
        if row.status != AccountStatus.SUSPENDED.value:
            raise Conflict(f"account {account} is {row.status.lower()}, not suspended")
        row.status = AccountStatus.ACTIVE.value
        row.suspended_at = None
        audit.record(s, caller.account, "account.reinstate", account)
    lake.tokens.callers.forget_account(account)


def revoke_tokens(lake: Lake, caller: Caller, account: str) -> None:
    """Revoke every token of ``account`` issued until now (the account logs in again)."""
    require_self_or_admin(caller, account, "revoke the tokens")
    with lake.db.write() as s:
        acc_core.get_account(s, account)
        revocations.revoke_account_tokens(s, account, caller.account)
        audit.record(s, caller.account, "tokens.revoke", account)
    lake.tokens.callers.forget_account(account)


def revoke_token(lake: Lake, caller: Caller, jti: Any, expires_at: Any = None) -> None:
    """Revoke one token by its ``jti``. The revocation is kept until ``expires_at`` (the
    token's exp, epoch seconds or a date); by default for the longest token lifetime."""
    require_admin(caller, "revoke tokens by jti")
    if not isinstance(jti, str) or not 1 <= len(jti) <= 64:
        raise InvalidInput("a jti is the token's 'jti' claim: 1-64 characters")
    until = _until(lake, expires_at)
    with lake.db.write() as s:
        revocations.revoke_token(s, jti, until, caller.account)
        audit.record(s, caller.account, "token.revoke", jti, {"until": until.isoformat()})
    lake.tokens.callers.clear()  # the cache is keyed by token, not jti: drop it all


def _until(lake: Lake, value: Any) -> datetime:
    if value is None:
        longest = max(lake.settings.token_lifetime, lake.settings.refresh_token_lifetime)
        return utcnow() + timedelta(seconds=longest)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
    if isinstance(value, str):
        return parse_datetime(value)
    raise InvalidInput("expires_at must be epoch seconds or a date")


# --- registration requests ---------------------------------------------------------------


def submit_request(
    lake: Lake, caller: Caller, group: str, notes: str | None = None
) -> dict[str, Any]:
    """The caller asks to join ``group`` (or to hold a role)."""
    notes = _text(notes, "notes")
    with lake.db.write() as s:
        row = core.add_registration(s, caller.account, group, notes)
        audit.record(s, caller.account, "request.submit", group, {"id": row.id})
        return core.registration_dict(row)


def list_requests(
    lake: Lake,
    caller: Caller,
    *,
    state: str | None = core.PENDING,
    group: str | None = None,
    mine: bool = False,
) -> list[dict[str, Any]]:
    """Admins see every request; others the requests of the groups they manage and
    their own (``mine``: only their own)."""
    with lake.db.read() as s:
        if group is not None:
            core.get_group(s, group)
        if mine:
            rows = core.list_registrations(s, state=state, account=caller.account)
        elif caller.admin:
            rows = core.list_registrations(s, state=state)
        else:
            managed = core.managed_groups(s, caller.account)
            rows = core.list_registrations(s, state=state, groups=managed)
            own = core.list_registrations(s, state=state, account=caller.account)
            seen = {r.id for r in rows}
            rows += [r for r in own if r.id not in seen]
            rows.sort(key=lambda r: (r.created_at, r.id))
        return [core.registration_dict(r) for r in rows if group in (None, r.group)]


def get_request(lake: Lake, caller: Caller, request_id: str) -> dict[str, Any]:
    with lake.db.read() as s:
        row = core.get_registration(s, request_id)
        if row.username != caller.account:
            require_group_manager(s, caller, row.group, "see the registration requests")
        return core.registration_dict(row)


def decide_request(
    lake: Lake, caller: Caller, request_id: str, *, approve: bool, reason: str | None = None
) -> dict[str, Any]:
    """Approve (membership created) or reject a pending request, as a manager or admin."""
    reason = _text(reason, "a reason")
    with lake.db.write() as s:
        row = core.get_registration(s, request_id)
        require_group_manager(s, caller, row.group, "decide the registration requests")
        row = core.decide_registration(
            s, request_id, caller.account, approve=approve, reason=reason
        )
        action = "request.approve" if approve else "request.reject"
        details = {"id": row.id, "account": row.username, "reason": reason}
        audit.record(s, caller.account, action, row.group, details)
        out = core.registration_dict(row)
    lake.tokens.callers.forget_account(out["account"])
    return out


# --- audit -------------------------------------------------------------------------------


def audit_entries(
    lake: Lake,
    caller: Caller,
    *,
    target: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: str | datetime | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    require_admin(caller, "read the audit log")
    when = parse_datetime(since) if isinstance(since, str) else since
    with lake.db.read() as s:
        return audit.entries(s, target=target, actor=actor, action=action, since=when, limit=limit)
