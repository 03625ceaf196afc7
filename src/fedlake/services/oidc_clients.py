"""OAuth clients and signing keys of the embedded issuer (administration), client
authentication at the OAuth endpoints, and admin-minted tokens.

Client secrets are random (32 bytes), shown once at creation and stored hashed with
``fedlake.auth.passwords`` (scrypt). Checking scrypt on every client-credentials request
would cap a server at a few dozen tokens per second, so a process remembers the SHA-256
of a secret it verified against the stored hash, and compares with that (constant time)
as long as the stored hash has not changed. It also remembers a client's row and its
account's status for ``FEDLAKE_AUTH_CACHE_SECONDS`` (as it does a checked token):
removing a client applies at once in the process that removes it and within that time
elsewhere; a token issued meanwhile for a just-suspended account is refused where it is
used, since every request checks the account's status.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from fedlake.auth.passwords import hash_password, verify_password
from fedlake.auth.policy import Caller, require_admin
from fedlake.bootstrap import Lake
from fedlake.catalog import accounts as acc_core
from fedlake.catalog import audit
from fedlake.catalog import oauth_clients as core
from fedlake.catalog.iam_groups import token_groups
from fedlake.catalog.iam_models import OAuthClient
from fedlake.catalog.models import Account
from fedlake.domain.errors import ClientNotFound, Duplicate, InvalidInput, OAuthError
from fedlake.services import oidc_scopes as scopes

__all__ = [
    "CLI_CLIENT",
    "GRANTS",
    "ClientInfo",
    "add_client",
    "authenticate_client",
    "ensure_cli_client",
    "forget_client",
    "list_clients",
    "list_keys",
    "mint_token",
    "remove_client",
    "rotate_keys",
]

CLI_CLIENT = "fedlake-cli"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
GRANTS = (
    "client_credentials",
    "refresh_token",
    "password",
    "authorization_code",
    DEVICE_GRANT,
    EXCHANGE_GRANT,
)
_SHORT = {"device_code": DEVICE_GRANT, "token_exchange": EXCHANGE_GRANT}
_CLIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A snapshot of an authenticated client."""

    client_id: str
    public: bool
    account: str | None
    grant_types: tuple[str, ...]
    scope: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    #: status of ``account`` when the client was authenticated (None: no account)
    account_status: str | None = None

    @classmethod
    def of(cls, row: OAuthClient, account_status: str | None = None) -> ClientInfo:
        return cls(
            row.client_id,
            row.secret_hash is None,
            row.account,
            tuple(row.grant_types.split()),
            tuple(row.scope.split()),
            tuple(row.redirect_uris.split()),
            account_status,
        )


def _grants(names: list[str]) -> list[str]:
    out = []
    for name in names:
        full = _SHORT.get(name, name)
        if full not in GRANTS:
            raise InvalidInput(f"unknown grant type {name!r}; use {', '.join(GRANTS)}")
        out.append(full)
    return out


def add_client(
    lake: Lake,
    caller: Caller,
    client_id: str,
    *,
    name: str | None = None,
    grant_types: list[str],
    scope: list[str],
    account: str | None = None,
    public: bool = False,
    redirect_uris: list[str] | None = None,
) -> dict[str, Any]:
    """Register a client; the answer holds ``client_secret`` (shown once) unless public."""
    require_admin(caller, "register OAuth clients")
    if not _CLIENT_ID.match(client_id or ""):
        raise InvalidInput(f"client id {client_id!r}: use letters, digits, '.', '_', '-' (<=64)")
    grants = _grants(grant_types)
    if not grants:
        raise InvalidInput("a client needs at least one grant type (--grant)")
    if "client_credentials" in grants and (public or not account):
        raise InvalidInput("client_credentials needs a confidential client with --account")
    uris = redirect_uris or []
    if "authorization_code" in grants and not uris:
        raise InvalidInput("authorization_code needs at least one --redirect-uri")
    for uri in uris:
        if not re.match(r"^(https://|http://(localhost|127\.0\.0\.1)(:\d+)?/)", uri + "/"):
            raise InvalidInput(f"redirect URI {uri!r}: use https://, or http://localhost")
    normalised = [scopes.normalise(s) for s in scope]
    secret = None if public else secrets.token_urlsafe(32)
    with lake.db.write() as s:
        if account:
            acc_core.get_account(s, account)
        row = core.add_client(
            s,
            client_id,
            name=name or client_id,
            owner=caller.account,
            grant_types=grants,
            scope=normalised,
            secret_hash=hash_password(secret) if secret else None,
            account=account,
            redirect_uris=uris,
        )
        out = core.client_dict(row)
        audit.record(s, caller.account, "client.add", client_id, {"grants": grants})
    if secret:
        out["client_secret"] = secret
    return out


def list_clients(lake: Lake, caller: Caller) -> list[dict[str, Any]]:
    require_admin(caller, "list OAuth clients")
    with lake.db.read() as s:
        return [core.client_dict(r) for r in core.list_clients(s)]


def remove_client(lake: Lake, caller: Caller, client_id: str) -> None:
    require_admin(caller, "remove OAuth clients")
    with lake.db.write() as s:
        core.remove_client(s, client_id)
        audit.record(s, caller.account, "client.remove", client_id)
    forget_client(lake, client_id)


def ensure_cli_client(lake: Lake) -> bool:
    """The public client the CLI logs in with (device code); True if it was created."""
    with lake.db.write() as s:
        try:
            core.get_client(s, CLI_CLIENT)
            return False
        except ClientNotFound:
            pass
        try:
            core.add_client(
                s,
                CLI_CLIENT,
                name="fedlake command line",
                owner="root",
                grant_types=[DEVICE_GRANT, "refresh_token", EXCHANGE_GRANT],
                scope=["openid", "offline_access", "wlcg.groups", *scopes.CAPABILITIES],
                secret_hash=None,
            )
        except Duplicate:
            return False
    return True


def _secret_ok(lake: Lake, client_id: str, secret_hash: str, secret: str) -> bool:
    memo, lock = lake.tokens.client_memo, lake.tokens.client_memo_lock
    digest = hashlib.sha256(secret.encode()).digest()
    with lock:
        known = memo.get(f"secret:{client_id}")
    if known is not None and known[0] == secret_hash:
        return hmac.compare_digest(known[1], digest)
    if not verify_password(secret, secret_hash):
        return False
    with lock:
        if len(memo) > 10000:
            memo.clear()
        memo[f"secret:{client_id}"] = (secret_hash, digest)
    return True


def _client_row(lake: Lake, client_id: str) -> tuple[ClientInfo, str | None] | None:
    """(the client, its secret hash), remembered for FEDLAKE_AUTH_CACHE_SECONDS like a
    checked token (removing a client here forgets it at once; elsewhere within that)."""
    memo, lock = lake.tokens.client_memo, lake.tokens.client_memo_lock
    ttl = lake.settings.auth_cache_seconds
    now = time.monotonic()
    with lock:
        hit = memo.get(f"row:{client_id}")
    if hit is not None and hit[0] > now:
        return hit[1], hit[2]
    with lake.db.read() as s:  # one query: the client and its account's status
        found = s.execute(
            select(OAuthClient, Account.status)
            .outerjoin(Account, Account.account == OAuthClient.account)
            .where(OAuthClient.client_id == client_id)
        ).first()
    if found is None or not found[0].enabled:
        return None
    info = ClientInfo.of(found[0], found[1])
    if ttl > 0:
        with lock:
            if len(memo) > 10000:
                memo.clear()
            memo[f"row:{client_id}"] = (now + ttl, info, found[0].secret_hash)
    return info, found[0].secret_hash


def forget_client(lake: Lake, client_id: str) -> None:
    with lake.tokens.client_memo_lock:
        lake.tokens.client_memo.pop(f"row:{client_id}", None)
        lake.tokens.client_memo.pop(f"secret:{client_id}", None)


def authenticate_client(lake: Lake, client_id: str | None, secret: str | None) -> ClientInfo:
    """The client of an OAuth request (HTTP Basic or client_secret_post), or
    OAuthError(invalid_client, 401)."""
    if not client_id:
        raise OAuthError("invalid_client", "no client_id: authenticate the client", 401)
    found = _client_row(lake, client_id)
    if found is None:
        raise OAuthError("invalid_client", f"unknown or disabled client {client_id!r}", 401)
    info, secret_hash = found
    if secret_hash is None:
        if secret:
            raise OAuthError("invalid_client", "a public client has no secret", 401)
    elif not secret or not _secret_ok(lake, client_id, secret_hash, secret):
        raise OAuthError("invalid_client", "wrong client secret", 401)
    return info


def rotate_keys(lake: Lake, caller: Caller, algorithm: str | None = None) -> dict[str, Any]:
    require_admin(caller, "rotate signing keys")
    kid = lake.tokens.keys.rotate(algorithm)
    with lake.db.write() as s:
        audit.record(s, caller.account, "keys.rotate", kid, {"algorithm": algorithm or ""})
    return {"kid": kid, "keys": list_keys(lake, caller)}


def list_keys(lake: Lake, caller: Caller) -> list[dict[str, Any]]:
    require_admin(caller, "list signing keys")
    return [k.as_dict() for k in lake.tokens.keys.list()]


def mint_token(
    lake: Lake,
    caller: Caller,
    account: str,
    *,
    groups: list[str] | None = None,
    scope: str | None = None,
    lifetime: int | None = None,
) -> dict[str, Any]:
    """An access token for ``account`` minted by an admin (groups must be the account's)."""
    require_admin(caller, "issue tokens for other accounts")
    if lifetime is not None and not 60 <= lifetime <= lake.tokens.max_lifetime:
        raise InvalidInput(
            f"lifetime must be from 60 to {lake.tokens.max_lifetime} seconds "
            "(FEDLAKE_REFRESH_TOKEN_LIFETIME is the longest)"
        )
    try:
        granted = scopes.parse(scope)
    except OAuthError as exc:
        raise InvalidInput(exc.message) from None
    with lake.db.write() as s:
        row = acc_core.get_account(s, account)
        if row.status != "ACTIVE":
            raise InvalidInput(f"account {account} is {row.status.lower()}")
        held = token_groups(s, account, groups or [])
        missing = [g for g in groups or [] if g not in held]
        if missing:
            raise InvalidInput(f"account {account} is not in group(s) {', '.join(missing)}")
        chosen = [g for g in held if g in (groups or [])] if groups else held
        token, exp = lake.tokens.issue(
            account, account, lifetime=lifetime, scope=" ".join(granted), groups=tuple(chosen)
        )
        claims = lake.tokens.peek(token)
        assert claims is not None
        audit.record(s, caller.account, "token.issue", account, {"jti": claims.jti})
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_at": exp,
        "scope": " ".join(granted),
        "groups": chosen,
    }
