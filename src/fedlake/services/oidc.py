"""The embedded OAuth 2.0 / OpenID Connect issuer (the INDIGO IAM role): discovery, the
token endpoint's grants, revocation (RFC 7009), introspection (RFC 7662), userinfo.

Grants: ``client_credentials`` (the token acts as the client's account),
``refresh_token`` (rotation: a used refresh token is replaced; using a replaced one again
revokes its chain), ``password`` (only with FEDLAKE_OIDC_PASSWORD_GRANT=true),
``urn:ietf:params:oauth:grant-type:token-exchange`` (RFC 8693: a narrower token for the
same account), and the device-code and authorization-code grants of
``fedlake.services.oidc_flows``. Errors are ``OAuthError`` (RFC 6749 5.2).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from fedlake.auth.tokens import LEEWAY, TokenClaims, epoch_to_utc
from fedlake.auth.userpass import authenticate
from fedlake.bootstrap import Lake
from fedlake.catalog import accounts as acc_core
from fedlake.catalog import audit, revocations
from fedlake.catalog import oauth_flows as flows
from fedlake.catalog.iam_groups import token_groups
from fedlake.domain.errors import AccountNotFound, AuthenticationFailed, OAuthError
from fedlake.domain.timefmt import utcnow
from fedlake.services import oidc_scopes as scopes
from fedlake.services.oidc_clients import DEVICE_GRANT, EXCHANGE_GRANT, GRANTS, ClientInfo

__all__ = [
    "discovery",
    "housekeeping",
    "introspect",
    "issue_tokens",
    "revoke",
    "token",
    "userinfo",
]

ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"
REFRESH_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"


def discovery(lake: Lake) -> dict[str, Any]:
    """OpenID provider metadata (``/.well-known/openid-configuration``)."""
    base = lake.tokens.issuer.rstrip("/")
    return {
        "issuer": lake.tokens.issuer,
        "authorization_endpoint": f"{base}/oidc/authorize",
        "token_endpoint": f"{base}/oidc/token",
        "device_authorization_endpoint": f"{base}/oidc/device_authorization",
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "revocation_endpoint": f"{base}/oidc/revoke",
        "introspection_endpoint": f"{base}/oidc/introspect",
        "jwks_uri": f"{base}/auth/jwks",
        "grant_types_supported": [
            g for g in GRANTS if g != "password" or lake.settings.oidc_password_grant
        ],
        "response_types_supported": ["code"],
        "scopes_supported": [*scopes.KNOWN, *scopes.CAPABILITIES],
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "nbf",
            "jti",
            "scope",
            "wlcg.ver",
            "wlcg.groups",
            "preferred_username",
            "groups",
        ],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
    }


PURGE_EVERY = 600.0


def housekeeping(lake: Lake, *, force: bool = False) -> int:
    """Delete what expired (revocations of expired tokens, refresh tokens, device and
    authorization codes; account revocations older than the longest token lifetime), at
    most every ``PURGE_EVERY`` seconds per process; return the rows deleted."""
    memo, lock = lake.tokens.client_memo, lake.tokens.client_memo_lock
    now_mono = time.monotonic()
    with lock:
        last = memo.get("purged_at")
        if not force and last is not None and now_mono - last < PURGE_EVERY:
            return 0
        memo["purged_at"] = now_mono
    now = utcnow()
    with lake.db.write() as s:
        return revocations.purge_expired(
            s, now, accounts_before=now - timedelta(seconds=lake.tokens.max_lifetime + LEEWAY)
        )


def _active_account(lake: Lake, account: str) -> None:
    with lake.db.read() as s:
        try:
            row = acc_core.get_account(s, account)
        except AccountNotFound:
            raise OAuthError("invalid_grant", f"account {account} no longer exists") from None
    if row.status != "ACTIVE":
        raise OAuthError("invalid_grant", f"account {account} is {row.status.lower()}")


def issue_tokens(
    lake: Lake,
    client: ClientInfo,
    account: str,
    subject: str,
    granted: list[str],
    *,
    refresh: bool,
    nonce: str | None = None,
) -> dict[str, Any]:
    """The token response: an access token (groups per ``wlcg.groups`` scopes), a
    refresh token (stored) when ``refresh`` and ``offline_access`` was granted, and an
    ID token when a user logged in (``refresh``) and ``openid`` was granted."""
    wanted = scopes.groups_requested(granted)
    groups: list[str] = []
    give_refresh = refresh and "offline_access" in granted
    scope_text = " ".join(granted)
    if wanted is not None:
        with lake.db.read() as s:
            groups = token_groups(s, account, wanted)
    with lake.db.write() if give_refresh else contextlib.nullcontext() as s:
        access, exp = lake.tokens.issue(
            account, subject, scope=scope_text, groups=tuple(groups), client_id=client.client_id
        )
        out: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": max(0, exp - int(time.time())),
            "scope": scope_text,
        }
        if give_refresh:
            token, jti, rexp = lake.tokens.issue_refresh(
                account, subject, scope=scope_text, client_id=client.client_id
            )
            assert s is not None
            flows.add_refresh_token(
                s,
                jti,
                account=account,
                subject=subject,
                client_id=client.client_id,
                scope=scope_text,
                expires_at=epoch_to_utc(rexp),
            )
            out["refresh_token"] = token
            out["_refresh_jti"] = jti
    out.pop("_refresh_jti", None)
    if refresh and "openid" in granted:
        out["id_token"] = lake.tokens.issue_id_token(
            subject, client.client_id, username=account, groups=tuple(groups), nonce=nonce
        )
    return out


def _require_grant(client: ClientInfo, grant: str) -> None:
    if grant not in client.grant_types:
        raise OAuthError(
            "unauthorized_client", f"client {client.client_id} may not use the {grant} grant"
        )


def _requested(form: Mapping[str, str]) -> list[str]:
    return scopes.parse(form.get("scope"))


def _client_credentials(lake: Lake, client: ClientInfo, form: Mapping[str, str]) -> dict[str, Any]:
    if client.public or not client.account:
        raise OAuthError(
            "unauthorized_client", "client_credentials needs a confidential client with an account"
        )
    if client.account_status != "ACTIVE":
        raise OAuthError(
            "invalid_grant",
            f"account {client.account} is {(client.account_status or 'deleted').lower()}",
        )
    granted = [g for g in scopes.grant(_requested(form), client.scope) if g != "offline_access"]
    return issue_tokens(lake, client, client.account, client.client_id, granted, refresh=False)


def _password(lake: Lake, client: ClientInfo, form: Mapping[str, str]) -> dict[str, Any]:
    if not lake.settings.oidc_password_grant:
        raise OAuthError(
            "unsupported_grant_type",
            "the password grant is disabled on this lake (FEDLAKE_OIDC_PASSWORD_GRANT=true "
            "enables it, for development); use the device code flow (`fedlake login`)",
        )
    username, password = form.get("username", ""), form.get("password", "")
    if not username or not password:
        raise OAuthError("invalid_request", "username and password are required")
    try:
        with lake.db.read() as s:
            account = authenticate(s, username, password, None, lake.throttle)
    except AuthenticationFailed as exc:
        raise OAuthError("invalid_grant", exc.message) from None
    granted = scopes.grant(_requested(form), client.scope)
    return issue_tokens(lake, client, account, username, granted, refresh=True)


def _refresh(lake: Lake, client: ClientInfo, form: Mapping[str, str]) -> dict[str, Any]:
    raw = form.get("refresh_token", "")
    try:
        claims = lake.tokens.validate_refresh(raw)
    except AuthenticationFailed as exc:
        raise OAuthError("invalid_grant", exc.message) from None
    now = utcnow()
    with lake.db.write() as s:
        row = flows.get_refresh_token(s, claims.jti, lock=True)
        if row is None or row.client_id != client.client_id:
            raise OAuthError("invalid_grant", "unknown refresh token, or of another client")
        if row.replaced_by is not None:
            flows.revoke_refresh_chain(s, row.jti, now)
            reused = True
        elif row.revoked_at is not None or row.expires_at < now:
            raise OAuthError("invalid_grant", "the refresh token is revoked or expired; log in")
        else:
            reused = False
            held = row.scope.split()
            requested = _requested(form)
            if requested and not scopes.is_narrower(requested, held):
                raise OAuthError("invalid_scope", "a refresh may not widen the scopes")
            row.revoked_at = now
            account, subject = row.account, row.subject
    if reused:
        raise OAuthError(
            "invalid_grant",
            "the refresh token was already used; every token of its chain is revoked, log in",
        )
    _active_account(lake, account)
    granted = requested or held
    out = issue_tokens(lake, client, account, subject, granted, refresh=True)
    new = lake.tokens.peek(out["refresh_token"]) if "refresh_token" in out else None
    with lake.db.write() as s:
        row = flows.get_refresh_token(s, claims.jti, lock=True)
        if row is not None:
            row.replaced_by = new.jti if new else "-"
    return out


def _exchange(lake: Lake, client: ClientInfo, form: Mapping[str, str]) -> dict[str, Any]:
    kind = form.get("subject_token_type", ACCESS_TYPE)
    if kind != ACCESS_TYPE:
        raise OAuthError("invalid_request", f"subject_token_type must be {ACCESS_TYPE}")
    if form.get("requested_token_type", ACCESS_TYPE) != ACCESS_TYPE:
        raise OAuthError("invalid_request", "only access tokens can be requested")
    try:
        subject: TokenClaims = lake.tokens.validate(form.get("subject_token", ""))
    except AuthenticationFailed as exc:
        raise OAuthError("invalid_grant", f"subject_token: {exc.message}") from None
    _active_account(lake, subject.account)
    held = subject.scope.split()
    requested = _requested(form) or held
    if not scopes.is_narrower(requested, held):
        raise OAuthError("invalid_scope", "the requested scopes are wider than the subject token's")
    granted = [g for g in requested if g != "offline_access"]
    with lake.db.read() as s:
        groups = [
            g for g in token_groups(s, subject.account, list(subject.groups)) if g in subject.groups
        ]
    if scopes.groups_requested(granted) is not None:
        named = [g for g in (scopes.groups_requested(granted) or []) if g in groups]
        groups = named + [g for g in groups if g not in named] if named else groups
    token, exp = lake.tokens.issue(
        subject.account,
        subject.subject,
        scope=" ".join(granted),
        groups=tuple(groups),
        client_id=client.client_id,
        lifetime=min(lake.tokens.lifetime, max(60, subject.expires_at - int(time.time()))),
    )
    return {
        "access_token": token,
        "issued_token_type": ACCESS_TYPE,
        "token_type": "Bearer",
        "expires_in": exp - int(time.time()),
        "scope": " ".join(granted),
    }


def token(lake: Lake, client: ClientInfo, form: Mapping[str, str]) -> dict[str, Any]:
    """The token endpoint (RFC 6749 3.2) once the client is authenticated."""
    from fedlake.services import oidc_flows

    grant = form.get("grant_type", "")
    if not grant:
        raise OAuthError("invalid_request", "grant_type is missing")
    handlers = {
        "client_credentials": _client_credentials,
        "password": _password,
        "refresh_token": _refresh,
        EXCHANGE_GRANT: _exchange,
        DEVICE_GRANT: oidc_flows.device_grant,
        "authorization_code": oidc_flows.code_grant,
    }
    handler = handlers.get(grant)
    if handler is None:
        raise OAuthError("unsupported_grant_type", f"unknown grant_type {grant[:80]!r}")
    if grant == "password" and not lake.settings.oidc_password_grant:
        return _password(lake, client, form)  # explains how to enable it
    _require_grant(client, grant)
    return handler(lake, client, form)


def revoke(lake: Lake, client: ClientInfo, raw: str, by: str | None = None) -> None:
    """RFC 7009: revoke an access or refresh token of this client (or of no client);
    unknown or invalid tokens are ignored, as the RFC says."""
    claims = lake.tokens.peek(raw)
    if claims is None or not claims.jti:
        return
    if claims.client_id not in (None, client.client_id):
        raise OAuthError("unauthorized_client", "the token was issued to another client")
    with lake.db.write() as s:
        revocations.revoke_token(
            s, claims.jti, epoch_to_utc(claims.expires_at), by or client.client_id
        )
        audit.record(s, by or client.client_id, "token.revoke", claims.account, {"jti": claims.jti})
    lake.tokens.callers.forget_token(raw)


def introspect(lake: Lake, raw: str) -> dict[str, Any]:
    """RFC 7662 for an authenticated client: ``active`` and the claims."""
    try:
        if lake.tokens.is_refresh(raw):
            claims = lake.tokens.validate_refresh(raw)
            with lake.db.read() as s:
                row = flows.get_refresh_token(s, claims.jti)
            if row is None or row.revoked_at is not None:
                return {"active": False}
            kind = "refresh_token"
        else:
            claims = lake.tokens.validate(raw)
            kind = "access_token"
    except AuthenticationFailed:
        return {"active": False}
    return {
        "active": True,
        "token_type": kind,
        "scope": claims.scope,
        "client_id": claims.client_id,
        "username": claims.account,
        "sub": claims.subject,
        "iss": claims.issuer,
        "exp": claims.expires_at,
        "iat": claims.issued_at,
        "jti": claims.jti,
        "wlcg.groups": list(claims.groups),
    }


def userinfo(lake: Lake, raw: str) -> dict[str, Any]:
    """OIDC userinfo for a valid access token of this lake."""
    claims = lake.tokens.validate(raw)
    with lake.db.read() as s:
        row = acc_core.get_account(s, claims.account)
        groups = list(claims.groups) or token_groups(s, claims.account, None)
    return {
        "sub": claims.subject,
        "preferred_username": claims.account,
        "email": row.email,
        "groups": groups,
        "wlcg.groups": groups,
    }
