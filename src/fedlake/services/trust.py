"""Trusted external issuers: their administration, and the account a token of theirs acts as.

Mapping a validated token (iss, sub, wlcg.groups) to accounts, in this order:

1. identities of type OIDC ``SUB=<sub>, ISS=<iss>`` (Rucio's format), the default first;
2. group mappings of the issuer whose group is in the token's groups, highest priority
   first;
3. when nothing maps and the token holds one of the issuer's ``auto_create_groups`` (or a
   subgroup of one), a USER account named after ``preferred_username`` (else ``sub``) and
   its OIDC identity are created in one transaction.

The ``X-Rucio-Account`` header picks one of the mapped accounts (as in Rucio); without it
the first is used. The answer is cached like the lake's own tokens (``fedlake.auth.cache``),
keyed by the token and the header.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any

from sqlalchemy.exc import IntegrityError

from fedlake.auth.jwks_cache import check_fetch_url
from fedlake.auth.policy import Caller, capabilities_of, require_admin
from fedlake.auth.trust import ALLOWED_ALGORITHMS, DEFAULT_ALGORITHMS, ExternalClaims
from fedlake.bootstrap import Lake
from fedlake.catalog import accounts as core
from fedlake.catalog import audit, iam_groups
from fedlake.catalog import trusted_issuers as cat
from fedlake.catalog.models import Account
from fedlake.domain.errors import (
    AccessDenied,
    AccountNotFound,
    AuthenticationFailed,
    InvalidInput,
    InvalidName,
)
from fedlake.domain.names import validate_account
from fedlake.domain.types import AccountType, IdentityType

__all__ = [
    "add_issuer",
    "add_mapping",
    "cache_key",
    "caller_from_external",
    "get_issuer",
    "list_issuers",
    "list_mappings",
    "remove_issuer",
    "remove_mapping",
    "update_issuer",
]

_FIELDS = ("discovery_url", "audiences", "algorithms", "auto_create_groups", "wlcg_profile")


# --- administration ----------------------------------------------------------------------


def _issuer_name(lake: Lake, issuer: Any) -> str:
    if not isinstance(issuer, str) or not 8 <= len(issuer) <= 255 or issuer != issuer.strip():
        raise InvalidInput("an issuer is its URL (the iss claim of its tokens), 8-255 characters")
    check_fetch_url(issuer, "the issuer")
    if issuer.rstrip("/") == lake.tokens.issuer.rstrip("/"):
        raise InvalidInput(f"{issuer} is this lake's own issuer; its tokens are always accepted")
    return issuer


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v and len(v) <= 255 and not any(c.isspace() for c in v)
        for v in value
    ):
        raise InvalidInput(f"{what} must be a list of names without spaces")
    return list(dict.fromkeys(value))


def _changes(lake: Lake, body: dict[str, Any], *, adding: bool) -> dict[str, Any]:
    unknown = sorted(set(body) - set(_FIELDS) - {"issuer", "enabled"})
    if unknown:
        raise InvalidInput(f"unknown issuer field(s) {', '.join(unknown)}; known: {_FIELDS}")
    out: dict[str, Any] = {}
    if body.get("discovery_url") is not None:
        url = body["discovery_url"]
        if not isinstance(url, str) or len(url) > 2000:
            raise InvalidInput("discovery_url must be a URL")
        out["discovery_url"] = check_fetch_url(url, "the discovery URL")
    if body.get("audiences") is not None or adding:
        given = body.get("audiences")
        audiences = _names([lake.settings.public_url] if given is None else given, "audiences")
        if not audiences:
            raise InvalidInput("an issuer needs at least one accepted audience")
        out["audiences"] = audiences
    if body.get("algorithms") is not None or adding:
        given = body.get("algorithms")
        algorithms = _names(list(DEFAULT_ALGORITHMS) if given is None else given, "algorithms")
        bad = [a for a in algorithms if a not in ALLOWED_ALGORITHMS]
        if bad or not algorithms:
            raise InvalidInput(
                f"algorithm(s) {', '.join(bad) or 'none'} cannot be trusted; allowed: "
                f"{', '.join(ALLOWED_ALGORITHMS)} (never none or HMAC)"
            )
        out["algorithms"] = algorithms
    if body.get("auto_create_groups") is not None or adding:
        out["auto_create_groups"] = _names(body.get("auto_create_groups") or [], "groups")
    for flag in ("wlcg_profile", "enabled"):
        if body.get(flag) is not None or adding:
            value = body.get(flag, True)
            if not isinstance(value, bool):
                raise InvalidInput(f"{flag} must be true or false")
            out[flag] = value
    return out


def _changed(lake: Lake, issuer: str) -> None:
    lake.trust.forget(issuer)
    lake.tokens.callers.clear()  # tokens of this issuer may now map elsewhere, or not at all


def add_issuer(lake: Lake, caller: Caller, body: dict[str, Any]) -> dict[str, Any]:
    require_admin(caller, "trust token issuers")
    issuer = _issuer_name(lake, body.get("issuer"))
    fields = _changes(lake, body, adding=True)
    with lake.db.write() as s:
        row = cat.add_issuer(
            s,
            issuer,
            discovery_url=fields.get("discovery_url"),
            audiences=fields["audiences"],
            algorithms=fields["algorithms"],
            auto_create_groups=fields["auto_create_groups"],
        )
        row.wlcg_profile, row.enabled = fields["wlcg_profile"], fields["enabled"]
        s.flush()
        audit.record(s, caller.account, "issuer.add", issuer, _loggable(fields))
        out = cat.issuer_dict(row)
    _changed(lake, issuer)
    return out


def _loggable(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def update_issuer(lake: Lake, caller: Caller, issuer: str, body: dict[str, Any]) -> dict[str, Any]:
    require_admin(caller, "change trusted issuers")
    fields = _changes(lake, body, adding=False)
    with lake.db.write() as s:
        row = cat.update_issuer(s, issuer, fields)
        audit.record(s, caller.account, "issuer.update", issuer, _loggable(fields))
        out = cat.issuer_dict(row)
    _changed(lake, issuer)
    return out


def remove_issuer(lake: Lake, caller: Caller, issuer: str) -> None:
    require_admin(caller, "remove trusted issuers")
    with lake.db.write() as s:
        cat.delete_issuer(s, issuer)
        audit.record(s, caller.account, "issuer.remove", issuer)
    _changed(lake, issuer)


def get_issuer(lake: Lake, caller: Caller, issuer: str) -> dict[str, Any]:
    require_admin(caller, "read trusted issuers")
    with lake.db.read() as s:
        return cat.issuer_dict(cat.get_issuer(s, issuer))


def list_issuers(lake: Lake, caller: Caller) -> list[dict[str, Any]]:
    require_admin(caller, "list trusted issuers")
    with lake.db.read() as s:
        return [cat.issuer_dict(r) for r in cat.list_issuers(s)]


def add_mapping(lake: Lake, caller: Caller, body: dict[str, Any]) -> None:
    require_admin(caller, "map groups to accounts")
    issuer, group, account = body.get("issuer"), body.get("group"), body.get("account")
    priority = body.get("priority", 0)
    if not isinstance(issuer, str) or not isinstance(group, str) or not group.strip():
        raise InvalidInput('the body must be {"issuer": URL, "group": "/a/b", "account": NAME}')
    if len(group) > 255 or any(c.isspace() for c in group):
        raise InvalidInput("a group is 1-255 characters without spaces, e.g. /escape/cms")
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 10**6:
        raise InvalidInput("priority must be an integer (higher wins)")
    with lake.db.write() as s:
        cat.add_mapping(s, issuer, group, validate_account(account), priority)
        audit.record(
            s, caller.account, "issuer.group_map", issuer, {"group": group, "account": account}
        )
    lake.tokens.callers.clear()


def list_mappings(lake: Lake, caller: Caller, issuer: str | None = None) -> list[dict[str, Any]]:
    require_admin(caller, "list group mappings")
    with lake.db.read() as s:
        return [cat.mapping_dict(r) for r in cat.list_mappings(s, issuer)]


def remove_mapping(lake: Lake, caller: Caller, issuer: str, group: str) -> None:
    require_admin(caller, "remove group mappings")
    with lake.db.write() as s:
        cat.delete_mapping(s, issuer, group)
        audit.record(s, caller.account, "issuer.group_unmap", issuer, {"group": group})
    lake.tokens.callers.clear()


# --- tokens -> callers -------------------------------------------------------------------


def cache_key(token: str, account_header: str | None) -> str:
    """Key of an external token's Caller: the chosen account depends on the header."""
    return f"{token}\n{account_header or ''}"


def caller_from_external(lake: Lake, token: str, issuer: str, account_header: str | None) -> Caller:
    """Validate a token of the trusted ``issuer`` and map it to an active account."""
    config, claims = lake.trust.validate(token, issuer)
    caps = capabilities_of(claims.scope)  # a malformed storage scope refuses the token
    with lake.db.read() as s:  # one read for the usual case: mapped, and the account's state
        mapped = _mapped(s, claims)
        chosen = _choose(mapped, account_header) if mapped else None
        found = _active_caller(s, chosen) if chosen else None
    if found is None:
        if not _auto_create_applies(config.auto_create_groups, claims.groups):
            raise AuthenticationFailed(
                f"the token of {claims.issuer} for subject {claims.subject} maps to no "
                f"account: an admin must add the OIDC identity "
                f"'{cat.oidc_identity(issuer, claims.subject)}' to an account (rucio-admin "
                "identity add --type OIDC), or map one of its groups (fedlake iam group-map add)"
            )
        chosen = _choose([_auto_create(lake, claims)], account_header)
        with lake.db.read() as s:
            found = _active_caller(s, chosen)
    found = dataclasses.replace(found, capabilities=caps)
    lake.tokens.callers.put(
        cache_key(token, account_header),
        found,
        claims.expires_at,
        lake.settings.auth_cache_seconds,
    )
    return found


def _choose(mapped: list[str], account_header: str | None) -> str:
    """The X-Rucio-Account header picks among the mapped accounts; else the first."""
    if not account_header:
        return mapped[0]
    if account_header not in mapped:
        raise AccessDenied(
            f"the token's subject may act as {', '.join(mapped)}, not {account_header}"
        )
    return account_header


def _active_caller(s: Any, account: str) -> Caller:
    try:
        acc = core.get_account(s, account)
    except AccountNotFound:
        raise AuthenticationFailed(f"account {account} no longer exists") from None
    if acc.status != "ACTIVE":
        raise AuthenticationFailed(f"account {account} is {acc.status.lower()}")
    return Caller(account, core.is_admin(s, account), frozenset(iam_groups.groups_of(s, account)))


def _mapped(s: Any, claims: ExternalClaims) -> list[str]:
    out = cat.identity_accounts(s, claims.issuer, claims.subject)
    for account in cat.group_accounts(s, claims.issuer, claims.groups):
        if account not in out:
            out.append(account)
    return out


def _auto_create_applies(auto_groups: tuple[str, ...], groups: tuple[str, ...]) -> bool:
    return any(g == a or g.startswith(a.rstrip("/") + "/") for a in auto_groups for g in groups)


_BAD = re.compile(r"[^a-z0-9_\-.]+")


def _base_name(claims: ExternalClaims) -> str:
    raw = (claims.preferred_username or claims.subject).lower()
    name = _BAD.sub("_", raw).strip("_.-")[:20]
    try:
        return validate_account(name)
    except InvalidName:
        return "u" + hashlib.sha256(claims.subject.encode()).hexdigest()[:12]


def _auto_create(lake: Lake, claims: ExternalClaims) -> str:
    """Create a USER account and the OIDC identity of (iss, sub); return its name."""
    identity = cat.oidc_identity(claims.issuer, claims.subject)
    base = _base_name(claims)
    for attempt in range(2):  # a concurrent first request may create it first
        try:
            with lake.db.write() as s:
                existing = cat.identity_accounts(s, claims.issuer, claims.subject)
                if existing:
                    return existing[0]
                name = _free_name(s, base)
                core.add_account(s, name, AccountType.USER, claims.email)
                core.add_identity(s, identity, IdentityType.OIDC, name, default=True)
                audit.record(s, name, "account.auto_create", name, {"issuer": claims.issuer})
                return name
        except IntegrityError:
            if attempt:
                raise
    raise AssertionError("unreachable")


def _free_name(s: Any, base: str) -> str:
    if s.get(Account, base) is None:
        return base
    for n in range(2, 1000):
        name = f"{base}-{n}"
        if s.get(Account, name) is None:
            return name
    raise AuthenticationFailed(f"no free account name like {base}; an admin must add one")
