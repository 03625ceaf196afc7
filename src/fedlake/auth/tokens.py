"""Tokens of the embedded issuer: signed JWTs following the WLCG JWT profile.

Signing keys live in the catalogue (``signing_keys``, see ``fedlake.auth.signing_keys``)
so every server process of a lake issues and accepts the same tokens; the algorithm is
ES256 (default) or RS256 (``FEDLAKE_TOKEN_ALGORITHM``), and the validator accepts only
those two (never ``none`` or HS*). The account a token acts for is in the
``fedlake.account`` claim; ``sub`` is the identity that logged in.

Two kinds of token are signed:

- access tokens (header ``typ: JWT``), which ``validate`` accepts;
- refresh tokens (header ``typ: refresh+jwt``, claim ``fedlake.token_use: refresh``,
  audience the issuer itself), which only ``validate_refresh`` accepts: a refresh token
  can never be used as an access token, nor the other way round.

Revocation: ``validate`` refuses a token whose ``jti`` was revoked, or whose account had
every token revoked after it was issued (``fedlake.catalog.revocations``). Validation
costs a signature check and one catalogue read; ``TokenService.callers`` remembers what
a checked token resolved to for a few seconds (``fedlake.auth.cache`` states the rules).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from fedlake.auth.cache import CallerCache
from fedlake.auth.signing_keys import ALGORITHMS, KeyRing
from fedlake.catalog.db import Database
from fedlake.catalog.revocations import is_revoked
from fedlake.domain.errors import AuthenticationFailed

__all__ = ["ALGORITHM", "AUDIENCE", "LEEWAY", "REFRESH_TYP", "TokenClaims", "TokenService"]

ALGORITHM = "ES256"  # the default
AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"
LEEWAY = 60
REFRESH_TYP = "refresh+jwt"
_USE = "fedlake.token_use"
_ACCESS_TYPS = (None, "JWT", "at+jwt")


@dataclass(frozen=True, slots=True)
class TokenClaims:
    account: str
    subject: str
    issuer: str
    expires_at: int
    jti: str
    scope: str
    groups: tuple[str, ...]
    issued_at: int = 0
    client_id: str | None = None


def epoch_to_utc(value: int | float) -> datetime:
    """Epoch seconds as the catalogue's naive UTC datetime."""
    return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)


def _header(token: str) -> dict[str, Any]:
    try:
        raw = token.split(".")[0]
        header = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise AuthenticationFailed(
            "the token cannot be verified (bad header); log in again"
        ) from None
    if not isinstance(header, dict):
        raise AuthenticationFailed("the token cannot be verified (bad header); log in again")
    return header


class TokenService:
    """Issue and validate the lake's own tokens."""

    def __init__(
        self,
        db: Database,
        issuer: str,
        lifetime: int,
        *,
        algorithm: str = ALGORITHM,
        refresh_lifetime: int = 30 * 86400,
    ) -> None:
        self.db = db
        self.issuer = issuer
        self.lifetime = lifetime
        self.refresh_lifetime = refresh_lifetime
        #: the longest lifetime a token may be issued with (admin minting included)
        self.max_lifetime = max(lifetime, refresh_lifetime)
        self.keys = KeyRing(db, algorithm, self.max_lifetime)
        #: token -> Caller of recently checked tokens (filled by the accounts service)
        self.callers = CallerCache()
        #: this lake's short memory of OAuth clients (kept by fedlake.services.oidc_clients)
        self.client_memo: dict[str, Any] = {}
        self.client_memo_lock = threading.Lock()

    @property
    def algorithm(self) -> str:
        return self.keys.algorithm

    def jwks(self) -> dict[str, Any]:
        """Public keys, as served at the JWKS endpoint."""
        return self.keys.jwks()

    # --- issuing ------------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any], typ: str) -> str:
        key, algorithm = self.keys.current()
        header = {"alg": algorithm, "kid": key.kid, "typ": typ}
        return jwt.encode(header, claims, key, algorithms=[algorithm])

    def issue(
        self,
        account: str,
        subject: str,
        *,
        lifetime: int | None = None,
        scope: str = "openid",
        groups: tuple[str, ...] = (),
        client_id: str | None = None,
    ) -> tuple[str, int]:
        """Return (access token, expiry epoch seconds)."""
        now = int(time.time())
        exp = now + (lifetime if lifetime is not None else self.lifetime)
        claims: dict[str, Any] = {
            "wlcg.ver": "1.0",
            "iss": self.issuer,
            "sub": subject,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": uuid.uuid4().hex,
            "scope": scope,
            "fedlake.account": account,
        }
        if groups:
            claims["wlcg.groups"] = list(groups)
        if client_id:
            claims["client_id"] = client_id
        return self._sign(claims, "JWT"), exp

    def issue_storage(
        self, scope: str, audience: str, *, lifetime: int, subject: str = "fedlake-transfers"
    ) -> str:
        """A token for a storage endpoint only: WLCG storage scopes (``storage.read:/p``...),
        the endpoint as audience and no ``fedlake.account``, so the lake's own API refuses
        it (another audience, no account). The transfer engine presents such tokens to the
        storage it copies from and to."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "wlcg.ver": "1.0",
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex,
            "scope": scope,
        }
        return self._sign(claims, "JWT")

    def issue_id_token(
        self,
        subject: str,
        client_id: str,
        *,
        username: str,
        groups: tuple[str, ...] = (),
        nonce: str | None = None,
    ) -> str:
        """An OpenID Connect ID token for ``client_id`` (never usable as an access token:
        it names no account and says ``fedlake.token_use: id``)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": client_id,
            "azp": client_id,
            "iat": now,
            "exp": now + self.lifetime,
            "auth_time": now,
            "jti": uuid.uuid4().hex,
            "preferred_username": username,
            _USE: "id",
        }
        if groups:
            claims["groups"] = list(groups)
        if nonce:
            claims["nonce"] = nonce
        return self._sign(claims, "JWT")

    def issue_refresh(
        self,
        account: str,
        subject: str,
        *,
        scope: str,
        client_id: str | None,
        lifetime: int | None = None,
    ) -> tuple[str, str, int]:
        """Return (refresh token, its jti, expiry epoch seconds). The caller stores it."""
        now = int(time.time())
        exp = now + (lifetime if lifetime is not None else self.refresh_lifetime)
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": jti,
            "scope": scope,
            "fedlake.account": account,
            _USE: "refresh",
        }
        if client_id:
            claims["client_id"] = client_id
        return self._sign(claims, REFRESH_TYP), jti, exp

    # --- validating ---------------------------------------------------------------------

    def _decode(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        if not token or token.count(".") != 2:
            raise AuthenticationFailed("the token is not a JWT; log in again to get a new one")
        header = _header(token)
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise AuthenticationFailed(
                f"the token cannot be verified (algorithm {str(alg)[:20]!r} is not accepted)"
            )
        kid = header.get("kid")
        found = self.keys.find(kid) if isinstance(kid, str) else None
        if found is None:
            raise AuthenticationFailed("the token cannot be verified (unknown key); log in again")
        key, key_alg = found
        if key_alg != alg:
            raise AuthenticationFailed("the token cannot be verified (wrong algorithm for its key)")
        try:
            decoded = jwt.decode(token, key, algorithms=[alg])
        except (JoseError, ValueError) as exc:
            raise AuthenticationFailed(
                f"the token cannot be verified ({type(exc).__name__}); log in again"
            ) from None
        return header, decoded.claims

    def _claims(self, claims: dict[str, Any]) -> TokenClaims:
        now = time.time()
        if claims.get("iss") != self.issuer:
            raise AuthenticationFailed("the token was issued by another issuer; log in again")
        if not isinstance(claims.get("exp"), int) or claims["exp"] + LEEWAY < now:
            raise AuthenticationFailed("the token has expired; log in again")
        if isinstance(claims.get("nbf"), int) and claims["nbf"] - LEEWAY > now:
            raise AuthenticationFailed("the token is not valid yet (nbf in the future)")
        account = claims.get("fedlake.account")
        if not isinstance(account, str):
            raise AuthenticationFailed("the token names no account; log in again")
        groups = claims.get("wlcg.groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise AuthenticationFailed("the token's wlcg.groups claim is not a list of names")
        iat = claims.get("iat")
        client = claims.get("client_id")
        return TokenClaims(
            account=account,
            subject=str(claims.get("sub", "")),
            issuer=str(claims["iss"]),
            expires_at=int(claims["exp"]),
            jti=str(claims.get("jti", "")),
            scope=str(claims.get("scope", "")),
            groups=tuple(groups),
            issued_at=int(iat) if isinstance(iat, int | float) else 0,
            client_id=client if isinstance(client, str) else None,
        )

    def _check_revoked(self, claims: TokenClaims) -> None:
        with self.db.read() as session:
            if is_revoked(session, claims.jti, claims.account, epoch_to_utc(claims.issued_at)):
                raise AuthenticationFailed("the token has been revoked; log in again")

    def validate(self, token: str, *, check_revoked: bool = True) -> TokenClaims:
        """Check an ACCESS token: signature, algorithm, type, issuer, expiry, revocation;
        raise AuthenticationFailed with the reason."""
        header, raw = self._decode(token)
        if header.get("typ") not in _ACCESS_TYPS or raw.get(_USE, "access") != "access":
            kind = "refresh" if header.get("typ") == REFRESH_TYP else str(raw.get(_USE))[:10]
            raise AuthenticationFailed(
                f"a {kind} token is not an access token; use the access token of the login"
            )
        if raw.get("wlcg.ver") != "1.0":
            raise AuthenticationFailed("the token is not a WLCG profile token (wlcg.ver 1.0)")
        aud = raw.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if AUDIENCE not in audiences and self.issuer not in audiences:
            raise AuthenticationFailed(
                f"the token is for another audience ({aud!r}); ask for one for this lake"
            )
        claims = self._claims(raw)
        if check_revoked:
            self._check_revoked(claims)
        return claims

    def validate_refresh(self, token: str) -> TokenClaims:
        """Check a REFRESH token's signature, type and expiry (its row in
        ``oauth_refresh_tokens`` decides whether it is still usable)."""
        header, raw = self._decode(token)
        if header.get("typ") != REFRESH_TYP or raw.get(_USE) != "refresh":
            raise AuthenticationFailed("the token is not a refresh token of this lake")
        if raw.get("aud") != self.issuer:
            raise AuthenticationFailed("the refresh token is for another audience")
        return self._claims(raw)

    def peek(self, token: str) -> TokenClaims | None:
        """The verified claims of an access or refresh token whatever its state (expired
        or revoked tokens included), or None: for revocation and introspection."""
        try:
            _, raw = self._decode(token)
        except AuthenticationFailed:
            return None
        if raw.get("iss") != self.issuer or not isinstance(raw.get("fedlake.account"), str):
            return None
        if not isinstance(raw.get("exp"), int):
            return None
        groups = raw.get("wlcg.groups")
        return TokenClaims(
            account=raw["fedlake.account"],
            subject=str(raw.get("sub", "")),
            issuer=str(raw["iss"]),
            expires_at=raw["exp"],
            jti=str(raw.get("jti", "")),
            scope=str(raw.get("scope", "")),
            groups=tuple(g for g in groups if isinstance(g, str))
            if isinstance(groups, list)
            else (),
            issued_at=int(raw.get("iat") or 0) if isinstance(raw.get("iat"), int) else 0,
            client_id=raw.get("client_id") if isinstance(raw.get("client_id"), str) else None,
        )

    @staticmethod
    def is_refresh(token: str) -> bool:
        """Whether the token's (unverified) header says it is a refresh token."""
        try:
            return _header(token).get("typ") == REFRESH_TYP
        except AuthenticationFailed:
            return False
