"""The browser flows of the embedded issuer: device code (RFC 8628) and authorization
code with PKCE (RFC 7636, S256 only), from the first request to the token endpoint.

Device code: a client asks for a device_code + user_code; the user opens the
verification page, types the user_code, logs in and approves (or denies); the client
polls the token endpoint, which answers ``authorization_pending`` / ``slow_down`` /
``expired_token`` / ``access_denied`` until tokens go out (once).

Authorization code: the login form redirects to the client's registered redirect_uri
with ``code`` and ``state``; the code is valid 10 minutes, once, for the same client and
redirect_uri and the PKCE verifier; a code used twice revokes what it issued.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from fedlake.auth.userpass import authenticate
from fedlake.bootstrap import Lake
from fedlake.catalog import oauth_flows as flows
from fedlake.catalog import revocations
from fedlake.domain.errors import OAuthError
from fedlake.domain.timefmt import utcnow
from fedlake.services import oidc_scopes as scopes
from fedlake.services.oidc import housekeeping, issue_tokens
from fedlake.services.oidc_clients import DEVICE_GRANT, ClientInfo, authenticate_client

__all__ = [
    "approve_device",
    "authorize",
    "check_authorize_request",
    "code_grant",
    "device_authorization",
    "device_grant",
]

DEVICE_LIFETIME = 600
CODE_LIFETIME = 600
INTERVAL = 5
_USER_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 6.1: no vowels, no look-alikes


def _user_code() -> str:
    chars = "".join(secrets.choice(_USER_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


def normalise_user_code(text: str) -> str:
    chars = "".join(c for c in text.upper() if c.isalpha())
    return f"{chars[:4]}-{chars[4:8]}" if len(chars) == 8 else chars


# --- device code ------------------------------------------------------------------------


def device_authorization(lake: Lake, client: ClientInfo, scope: str | None) -> dict[str, Any]:
    """RFC 8628 3.2 answer: device_code, user_code, verification URIs, interval."""
    if DEVICE_GRANT not in client.grant_types:
        raise OAuthError(
            "unauthorized_client", f"client {client.client_id} may not use the device code grant"
        )
    granted = scopes.grant(scopes.parse(scope), client.scope)
    housekeeping(lake)  # a login is a good moment to drop expired rows (rate-limited)
    device_code = secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(seconds=DEVICE_LIFETIME)
    with lake.db.write() as s:
        for _ in range(5):
            user_code = _user_code()
            if flows.device_by_user_code(s, user_code) is None:
                break
        flows.add_device_code(
            s, device_code, user_code, client.client_id, " ".join(granted), INTERVAL, expires
        )
    base = lake.tokens.issuer.rstrip("/")
    return {
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": f"{base}/oidc/device",
        "verification_uri_complete": f"{base}/oidc/device?user_code={user_code}",
        "expires_in": DEVICE_LIFETIME,
        "interval": INTERVAL,
    }


def approve_device(lake: Lake, user_code: str, username: str, password: str, approve: bool) -> str:
    """The verification page's form: log the user in and approve or deny the code.
    Return what to show ("approved"/"denied"); AuthenticationFailed or OAuthError."""
    code = normalise_user_code(user_code)
    with lake.db.read() as s:
        account = authenticate(s, username, password, None, lake.throttle)
    with lake.db.write() as s:
        row = flows.device_by_user_code(s, code)
        if row is None or row.expires_at < utcnow():
            raise OAuthError("invalid_request", "unknown or expired code; start the login again")
        if row.state != "PENDING":
            raise OAuthError("invalid_request", "this code was already used")
        row.state = "APPROVED" if approve else "DENIED"
        row.account = account
    return "approved" if approve else "denied"


def device_grant(lake: Lake, client: ClientInfo, form: Mapping[str, str]) -> dict[str, Any]:
    now = utcnow()
    with lake.db.write() as s:
        row = flows.get_device_code(s, form.get("device_code", ""), lock=True)
        if row is None or row.client_id != client.client_id:
            raise OAuthError("invalid_grant", "unknown device_code")
        if row.expires_at < now:
            raise OAuthError("expired_token", "the device code expired; run the login again")
        if row.state == "DENIED":
            raise OAuthError("access_denied", "the user denied the request")
        if row.state == "USED":
            raise OAuthError("invalid_grant", "the device code was already used")
        if row.state == "PENDING":
            too_soon = (
                row.last_poll_at is not None
                and (now - row.last_poll_at).total_seconds() < row.interval
            )
            if too_soon:
                row.interval = min(row.interval + 5, 60)
            row.last_poll_at = now
            pending = ("slow_down" if too_soon else "authorization_pending", row.interval)
        else:
            pending = None
            row.state = "USED"
            account, granted = row.account or "", row.scope.split()
    if pending is not None:
        raise OAuthError(pending[0], f"the user has not approved yet; poll every {pending[1]} s")
    return issue_tokens(lake, client, account, account, granted, refresh=True)


# --- authorization code + PKCE ----------------------------------------------------------


def check_authorize_request(lake: Lake, params: Mapping[str, str]) -> ClientInfo:
    """Validate client_id, redirect_uri, response_type and PKCE parameters of
    ``/oidc/authorize``; errors here are shown, never redirected (RFC 6749 4.1.2.1)."""
    client = (
        authenticate_client(lake, params.get("client_id"), None)
        if params.get("client_id")
        else None
    )
    if client is None:
        raise OAuthError("invalid_request", "client_id is missing")
    if "authorization_code" not in client.grant_types:
        raise OAuthError("unauthorized_client", "the client may not use authorization codes")
    if params.get("redirect_uri") not in client.redirect_uris:
        raise OAuthError("invalid_request", "redirect_uri is not registered for this client")
    if params.get("response_type") != "code":
        raise OAuthError("unsupported_response_type", "response_type must be code")
    if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
        raise OAuthError("invalid_request", "PKCE is required: code_challenge with S256")
    return client


def authorize(lake: Lake, params: Mapping[str, str], username: str, password: str) -> str:
    """Log the user in and return the redirect URL with code and state."""
    client = check_authorize_request(lake, params)
    with lake.db.read() as s:
        account = authenticate(s, username, password, None, lake.throttle)
    granted = scopes.grant(scopes.parse(params.get("scope")), client.scope)
    code = secrets.token_urlsafe(32)
    with lake.db.write() as s:
        flows.add_authorization_code(
            s,
            code,
            client_id=client.client_id,
            account=account,
            redirect_uri=params["redirect_uri"],
            scope=" ".join(granted),
            code_challenge=params["code_challenge"],
            nonce=params.get("nonce"),
            expires_at=utcnow() + timedelta(seconds=CODE_LIFETIME),
        )
    from urllib.parse import urlencode

    query = {"code": code}
    if params.get("state"):
        query["state"] = params["state"]
    sep = "&" if "?" in params["redirect_uri"] else "?"
    return f"{params['redirect_uri']}{sep}{urlencode(query)}"


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def code_grant(lake: Lake, client: ClientInfo, form: Mapping[str, str]) -> dict[str, Any]:
    now = utcnow()
    with lake.db.write() as s:
        row, was_used = flows.take_authorization_code(s, form.get("code", ""))
        if row is None:
            raise OAuthError("invalid_grant", "unknown authorization code")
        if was_used:
            # a replayed code: revoke what it may have given (RFC 6749 4.1.2); the lake
            # does not record which tokens came from which code, so every token of the
            # account issued until now is revoked
            revocations.revoke_account_tokens(s, row.account, "authorization-code-replay")
            replayed = True
        else:
            replayed = False
    if replayed:
        lake.tokens.callers.clear()
        raise OAuthError(
            "invalid_grant", "the authorization code was already used; its tokens are revoked"
        )
    with lake.db.read() as s:
        row, _ = flows.peek_authorization_code(s, form.get("code", ""))
        assert row is not None
        if row.expires_at < now:
            raise OAuthError("invalid_grant", "the authorization code expired")
        if row.client_id != client.client_id:
            raise OAuthError("invalid_grant", "the code was issued to another client")
        if form.get("redirect_uri") != row.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
        verifier = form.get("code_verifier", "")
        if not verifier or not hmac.compare_digest(_s256(verifier), row.code_challenge):
            raise OAuthError("invalid_grant", "the PKCE code_verifier does not match")
        account, granted, nonce = row.account, row.scope.split(), row.nonce
    return issue_tokens(lake, client, account, account, granted, refresh=True, nonce=nonce)
