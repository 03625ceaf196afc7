"""Tokens of the embedded issuer: ES256-signed JWTs following the WLCG JWT profile.

Signing keys live in the catalogue (``signing_keys``) so every server process of a
lake issues and accepts the same tokens. The account a token acts for is in the
``fedlake.account`` claim; ``sub`` is the identity that logged in.

Tokens cannot be revoked: a valid token stays valid until ``exp`` (plus ``LEEWAY``).
``TokenService.callers`` remembers what a checked token resolved to for a few seconds;
``fedlake.auth.cache`` states the rules that keep that memory correct.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet
from sqlalchemy import select

from fedlake.auth.cache import CallerCache
from fedlake.catalog.db import Database
from fedlake.catalog.models import SigningKey
from fedlake.domain.errors import AuthenticationFailed

__all__ = ["TokenClaims", "TokenService"]

ALGORITHM = "ES256"
LEEWAY = 60


@dataclass(frozen=True, slots=True)
class TokenClaims:
    account: str
    subject: str
    issuer: str
    expires_at: int
    jti: str
    scope: str
    groups: tuple[str, ...]


class TokenService:
    """Issue and validate the lake's own tokens."""

    def __init__(self, db: Database, issuer: str, lifetime: int) -> None:
        self.db = db
        self.issuer = issuer
        self.lifetime = lifetime
        self._keys: KeySet | None = None
        self._current: ECKey | None = None
        #: token -> Caller of recently checked tokens (filled by the accounts service)
        self.callers = CallerCache()

    def _load_keys(self) -> None:
        with self.db.write() as session:
            rows = session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))).all()
            if not rows:
                key = ECKey.generate_key("P-256", parameters={"kid": secrets.token_hex(8)})
                row = SigningKey(
                    kid=key.kid or "",
                    algorithm=ALGORITHM,
                    private_jwk=json.dumps(key.as_dict(private=True)),
                )
                session.add(row)
                rows = [row]
        keys = [ECKey.import_key(json.loads(r.private_jwk)) for r in rows]
        self._keys = KeySet(keys)  # type: ignore[arg-type]
        newest = max(rows, key=lambda r: r.created_at)
        self._current = next(k for k in keys if k.kid == newest.kid)

    def _keyset(self) -> KeySet:
        if self._keys is None:
            self._load_keys()
        assert self._keys is not None
        return self._keys

    def jwks(self) -> dict[str, Any]:
        """Public keys, as served at the JWKS endpoint."""
        return {"keys": [k.as_dict(private=False) for k in self._keyset().keys]}

    def issue(
        self,
        account: str,
        subject: str,
        *,
        lifetime: int | None = None,
        scope: str = "openid",
        groups: tuple[str, ...] = (),
    ) -> tuple[str, int]:
        """Return (token, expiry epoch seconds)."""
        self._keyset()
        assert self._current is not None
        now = int(time.time())
        exp = now + (lifetime or self.lifetime)
        claims: dict[str, Any] = {
            "wlcg.ver": "1.0",
            "iss": self.issuer,
            "sub": subject,
            "aud": "https://wlcg.cern.ch/jwt/v1/any",
            "iat": now,
            "nbf": now,
            "exp": exp,
            "jti": uuid.uuid4().hex,
            "scope": scope,
            "fedlake.account": account,
        }
        if groups:
            claims["wlcg.groups"] = list(groups)
        header = {"alg": ALGORITHM, "kid": self._current.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self._current, algorithms=[ALGORITHM]), exp

    def validate(self, token: str) -> TokenClaims:
        """Check signature, issuer, expiry; raise AuthenticationFailed with the reason."""
        if not token or token.count(".") != 2:
            raise AuthenticationFailed("the token is not a JWT; log in again to get a new one")
        try:
            decoded = jwt.decode(token, self._keyset(), algorithms=[ALGORITHM])
        except (JoseError, ValueError) as exc:
            # an unknown kid may be a key created by another server process
            self._keys = None
            try:
                decoded = jwt.decode(token, self._keyset(), algorithms=[ALGORITHM])
            except (JoseError, ValueError):
                raise AuthenticationFailed(
                    f"the token cannot be verified ({type(exc).__name__}); log in again"
                ) from None
        claims = decoded.claims
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
        return TokenClaims(
            account=account,
            subject=str(claims.get("sub", "")),
            issuer=str(claims["iss"]),
            expires_at=int(claims["exp"]),
            jti=str(claims.get("jti", "")),
            scope=str(claims.get("scope", "")),
            groups=tuple(groups),
        )
