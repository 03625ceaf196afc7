"""Accounts, identities, login, scopes, limits and usage."""

from __future__ import annotations

from typing import Any

from fedlake.auth.passwords import hash_password
from fedlake.auth.policy import Caller, capabilities_of, may_add_scope, require_admin
from fedlake.auth.tokens import TokenClaims
from fedlake.auth.trust import unverified_issuer
from fedlake.auth.userpass import authenticate
from fedlake.bootstrap import Lake
from fedlake.catalog import accounts as core
from fedlake.catalog import iam_groups
from fedlake.catalog import rses as rse_core
from fedlake.catalog.embargo import hidden_for, hidden_lock_usage
from fedlake.catalog.models import Account
from fedlake.domain.errors import AccessDenied, AccountNotFound, AuthenticationFailed, InvalidInput
from fedlake.domain.names import validate_account, validate_rse_name, validate_scope
from fedlake.domain.types import AccountType, IdentityType, ScopeStatus
from fedlake.expressions.rse_expression import evaluate
from fedlake.services import trust

__all__ = [
    "add_account",
    "add_identity",
    "add_scope",
    "bootstrap_root",
    "cached_caller",
    "caller_from_token",
    "get_account",
    "list_accounts",
    "login_userpass",
]


def bootstrap_root(lake: Lake, password: str) -> bool:
    """Create account ``root`` with a userpass identity ``root``; False if it exists."""
    with lake.db.write() as s:
        if s.get(Account, "root") is not None:
            return False
        core.add_account(s, "root", AccountType.SERVICE, email=None)
        core.add_identity(
            s,
            "root",
            IdentityType.USERPASS,
            "root",
            password_hash=hash_password(password),
            default=True,
        )
        core.add_scope(s, "user.root", "root")
    return True


def login_userpass(
    lake: Lake, username: str, password: str, account: str | None
) -> tuple[str, int, str]:
    """Return (token, expiry epoch, account)."""
    if not username or not password:
        raise AuthenticationFailed(
            "username and password are required (X-Rucio-Username/-Password)"
        )
    with lake.db.read() as s:
        chosen = authenticate(s, username, password, account or None, lake.throttle)
    token, exp = lake.tokens.issue(chosen, username)
    return token, exp, chosen


def cached_caller(
    lake: Lake, token: str | None, account_header: str | None = None
) -> Caller | None:
    """The Caller of a token checked moments ago, or None: then call ``caller_from_token``.

    Never touches the catalogue, so the server may call it on its event loop.
    """
    if not token:
        return None
    known = lake.tokens.callers.get(token)
    if known is not None:
        _check_account_header(known.account, account_header)
        return known
    return lake.tokens.callers.get(trust.cache_key(token, account_header))  # external issuer


def caller_from_token(lake: Lake, token: str | None, account_header: str | None = None) -> Caller:
    """Validate the token and read its account's state; remember the answer briefly.

    A token of the lake's own issuer is checked by ``lake.tokens``; a token of another
    issuer must come from a trusted issuer and is mapped by ``fedlake.services.trust``.

    See ``fedlake.auth.cache`` for why a remembered answer stays correct.
    """
    if not token:
        raise AuthenticationFailed("no token: log in first (rucio: X-Rucio-Auth-Token header)")
    known = cached_caller(lake, token, account_header)
    if known is not None:
        return known
    issuer = unverified_issuer(token)
    if issuer is not None and issuer != lake.tokens.issuer:
        return trust.caller_from_external(lake, token, issuer, account_header)
    claims: TokenClaims = lake.tokens.validate(token)
    _check_account_header(claims.account, account_header)
    with lake.db.read() as s:
        try:
            acc = core.get_account(s, claims.account)
        except AccountNotFound:
            raise AuthenticationFailed(f"account {claims.account} no longer exists") from None
        if acc.status != "ACTIVE":
            raise AuthenticationFailed(f"account {claims.account} is {acc.status.lower()}")
        found = Caller(
            claims.account,
            core.is_admin(s, claims.account),
            frozenset(iam_groups.groups_of(s, claims.account)),
            capabilities_of(claims.scope),
        )
    lake.tokens.callers.put(token, found, claims.expires_at, lake.settings.auth_cache_seconds)
    return found


def _check_account_header(account: str, account_header: str | None) -> None:
    if account_header and account_header != account:
        raise AccessDenied(
            f"the token is for account {account}, not {account_header}; log in as that account"
        )


def get_account(lake: Lake, account: str) -> dict[str, Any]:
    with lake.db.read() as s:
        return core.account_dict(core.get_account(s, validate_account(account)))


def list_accounts(lake: Lake, filters: dict[str, str] | None = None) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        return [core.account_dict(r) for r in core.list_accounts(s, filters)]


def add_account(
    lake: Lake, caller: Caller, account: str, account_type: str, email: str | None
) -> None:
    require_admin(caller, "add accounts")
    validate_account(account)
    kind = AccountType.parse(account_type or "USER")
    with lake.db.write() as s:
        core.add_account(s, account, kind, email)


def add_identity(
    lake: Lake,
    caller: Caller,
    account: str,
    identity: str,
    kind: str,
    password: str | None = None,
    email: str | None = None,
    default: bool = False,
) -> None:
    require_admin(caller, "add identities")
    itype = IdentityType.parse(kind)
    if not identity or len(identity) > 255:
        raise InvalidInput("an identity must be 1-255 characters")
    if itype == IdentityType.USERPASS and not password:
        raise InvalidInput("a userpass identity needs a password")
    if password is not None and len(password) < 8:
        raise InvalidInput("passwords must be at least 8 characters long")
    with lake.db.write() as s:
        core.add_identity(
            s,
            identity,
            itype,
            validate_account(account),
            password_hash=hash_password(password) if password else None,
            email=email,
            default=default,
        )


def list_identities(lake: Lake, account: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        return [
            {"type": r.identity_type, "identity": r.identity, "email": r.email}
            for r in core.list_identities(s, account)
        ]


def attributes(lake: Lake, account: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        return core.list_account_attributes(s, account)


def set_attribute(lake: Lake, caller: Caller, account: str, key: str, value: Any) -> None:
    require_admin(caller, "set account attributes")
    if not key or len(key) > 100:
        raise InvalidInput("an attribute key must be 1-100 characters")
    with lake.db.write() as s:
        core.add_account_attribute(s, account, key, value)
    lake.tokens.callers.forget_account(account)  # e.g. admin=true: applies at once here


def delete_attribute(lake: Lake, caller: Caller, account: str, key: str) -> None:
    require_admin(caller, "delete account attributes")
    with lake.db.write() as s:
        core.delete_account_attribute(s, account, key)
    lake.tokens.callers.forget_account(account)


# --- scopes ------------------------------------------------------------------------------


def add_scope(lake: Lake, caller: Caller, scope: str, account: str) -> None:
    validate_scope(scope)
    validate_account(account)
    if not may_add_scope(caller, scope, account):
        raise AccessDenied(
            f"account {caller.account} may only add its own scope user.{caller.account}; "
            "ask an admin for other scopes"
        )
    with lake.db.write() as s:
        core.add_scope(s, scope, account)


def set_scope_status(lake: Lake, caller: Caller, scope: str, status: Any) -> None:
    require_admin(caller, "open or close scopes")
    st = ScopeStatus.parse(status)
    with lake.db.write() as s:
        row = core.get_scope(s, validate_scope(scope))
        row.status = st.value


def list_scopes(lake: Lake, caller: Caller, account: str | None = None) -> list[dict[str, str]]:
    """Scopes (of one account); a scope embargoed from ``caller`` as a whole is left out."""
    with lake.db.read() as s:
        if account is not None:
            core.get_account(s, account)
        h = hidden_for(s, admin=caller.admin, groups=caller.groups)
        return [
            {"scope": r.scope, "account": r.account, "status": r.status}
            for r in core.list_scopes(s, account)
            if h is None or r.scope not in h.scopes
        ]


# --- limits and usage --------------------------------------------------------------------


def set_limit(
    lake: Lake, caller: Caller, account: str, locality: str, target: str, nbytes: Any
) -> None:
    require_admin(caller, "set account limits")
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or not -1 <= nbytes < 2**63:
        raise InvalidInput("bytes must be an integer from 0 to 2**63-1, or -1 for unlimited")
    with lake.db.write() as s:
        _check_target(s, locality, target)
        core.set_limit(s, account, locality, target, nbytes)


def _check_target(s: Any, locality: str, target: str) -> None:
    if locality == "local":
        rse_core.get_rse(s, validate_rse_name(target))
    elif locality == "global":
        evaluate(target, _rse_attr_map(s))
    else:
        raise InvalidInput("locality must be local or global")


def _rse_attr_map(s: Any) -> dict[str, dict[str, Any]]:
    from fedlake.services.rses import attribute_map  # one map for every expression

    return attribute_map(s)


def delete_limit(lake: Lake, caller: Caller, account: str, locality: str, target: str) -> None:
    require_admin(caller, "remove account limits")
    with lake.db.write() as s:
        core.delete_limit(s, account, locality, target)


def limits(lake: Lake, account: str, locality: str, target: str | None = None) -> dict[str, Any]:
    with lake.db.read() as s:
        lim = core.get_limits(s, account, locality)
        if locality == "local":
            return {k: v for k, v in lim.items() if target in (None, k)}
        attrs = _rse_attr_map(s)
        out: dict[str, Any] = {}
        for expr, value in lim.items():
            if target not in (None, expr):
                continue
            names = evaluate(expr, attrs, allow_empty=True)
            ids = [rse_core.get_rse(s, n).id for n in names]
            out[expr] = {
                "limit": value if value >= 0 else float("inf"),
                "resolved_rses": names,
                "resolved_rse_ids": ids,
            }
        return out


def _used(s: Any, caller: Caller, account: str) -> dict[str, tuple[int, int]]:
    """(bytes, files) of the account's locks per RSE name; for a caller from whom data is
    embargoed, without the locks of hidden files and of rules on hidden DIDs (an RSE left
    with no lock is left out, as if those locks did not exist)."""
    used = core.local_usage(s, account)
    h = hidden_for(s, admin=caller.admin, groups=caller.groups)
    if h is None:
        return used
    for rse, (nbytes, files) in hidden_lock_usage(s, h, account).items():
        b, n = used.pop(rse, (0, 0))
        if n > files:
            used[rse] = (max(0, b - nbytes), n - files)
    return used


def local_usage(
    lake: Lake, caller: Caller, account: str, rse: str | None = None
) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        core.get_account(s, account)
        used = _used(s, caller, account)
        lim = core.get_limits(s, account, "local")
        names = sorted(set(used) | set(lim))
        out = []
        for name in names:
            if rse is not None and name != rse:
                continue
            b, n = used.get(name, (0, 0))
            limit = lim.get(name)
            out.append(
                {
                    "rse_id": rse_core.get_rse(s, name).id,
                    "rse": name,
                    "bytes": b,
                    "files": n,
                    "bytes_limit": limit if limit is not None and limit >= 0 else float("inf"),
                    "bytes_remaining": (limit - b)
                    if limit is not None and limit >= 0
                    else float("inf"),
                }
            )
        return out


def global_usage(
    lake: Lake, caller: Caller, account: str, expression: str | None = None
) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        core.get_account(s, account)
        used = _used(s, caller, account)
        attrs = _rse_attr_map(s)
        out = []
        for expr, limit in core.get_limits(s, account, "global").items():
            if expression is not None and expr != expression:
                continue
            names = evaluate(expr, attrs, allow_empty=True)
            b = sum(used.get(n, (0, 0))[0] for n in names)
            f = sum(used.get(n, (0, 0))[1] for n in names)
            out.append(
                {
                    "rse_expression": expr,
                    "bytes": b,
                    "files": f,
                    "bytes_limit": limit if limit >= 0 else float("inf"),
                    "bytes_remaining": (limit - b) if limit >= 0 else float("inf"),
                }
            )
        return out
