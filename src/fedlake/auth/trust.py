"""Tokens of trusted external issuers: which issuer, and is the token genuine and current.

The unverified ``iss`` claim is read only to pick the issuer's configuration; nothing
else is believed before the signature verifies. A token is accepted when:

- its issuer is configured in ``trusted_issuers`` and enabled (else "untrusted issuer");
- its header names an algorithm in the issuer's allow-list (only RS*, PS* and ES*
  algorithms can be allowed: never ``none`` nor HMAC), and a ``kid``;
- the key ``kid`` from the issuer's JWKS (``fedlake.auth.jwks_cache``) has the key type the
  algorithm needs (an RSA key for RS/PS, an EC key on the matching curve for ES: an HS256
  token "signed" with a public key can never verify) and the signature verifies;
- ``iss`` equals the issuer; ``sub`` is a non-empty string; ``exp`` is present and not
  past (``LEEWAY`` seconds of clock skew); ``nbf`` and ``iat``, when present, are not in
  the future (same skew); ``aud`` names one of the issuer's audiences;
- for issuers following the WLCG JWT profile, ``wlcg.ver`` is ``"1.0"``.

Issuer configurations are remembered for ``config_ttl`` seconds per process (the
``FEDLAKE_AUTH_CACHE_SECONDS`` of the lake); changes made through the services apply at
once in the process that made them (``forget``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from fedlake.auth.jwks_cache import JWKSCache
from fedlake.domain.errors import AuthenticationFailed

if TYPE_CHECKING:  # the catalogue only for Trust: validate_token works without a database
    from fedlake.catalog.db import Database
    from fedlake.catalog.iam_models import TrustedIssuer

__all__ = [
    "ALLOWED_ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "LEEWAY",
    "WLCG_ANY_AUDIENCE",
    "ExternalClaims",
    "IssuerConfig",
    "Trust",
    "unverified_issuer",
    "validate_token",
]

LEEWAY = 60
MAX_TOKEN_CHARS = 16384
WLCG_ANY_AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"
DEFAULT_ALGORITHMS = ("RS256", "ES256")
#: asymmetric algorithms an issuer may be allowed, with the key type (and curve) each needs
ALLOWED_ALGORITHMS: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
}


@dataclass(frozen=True, slots=True)
class IssuerConfig:
    issuer: str
    discovery_url: str | None
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    auto_create_groups: tuple[str, ...]
    wlcg_profile: bool
    enabled: bool

    @classmethod
    def of(cls, row: TrustedIssuer) -> IssuerConfig:
        return cls(
            issuer=row.issuer,
            discovery_url=row.discovery_url,
            audiences=tuple(row.audiences.split()),
            algorithms=tuple(row.algorithms.split()),
            auto_create_groups=tuple(row.auto_create_groups.split()),
            wlcg_profile=bool(row.wlcg_profile),
            enabled=bool(row.enabled),
        )


@dataclass(frozen=True, slots=True)
class ExternalClaims:
    issuer: str
    subject: str
    expires_at: int
    groups: tuple[str, ...]
    scope: str
    jti: str
    preferred_username: str | None
    email: str | None


def _b64json(part: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, TypeError):
        raise AuthenticationFailed("the token is not a JWT (undecodable part)") from None
    if not isinstance(value, dict):
        raise AuthenticationFailed("the token is not a JWT (a part is not a JSON object)")
    return value


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` claim of a JWT without checking anything, or None if it has none.

    Only for choosing which issuer's keys verify the token."""
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        return None
    try:
        iss = _b64json(token.split(".")[1]).get("iss")
    except AuthenticationFailed:
        return None
    return iss if isinstance(iss, str) else None


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthenticationFailed(f"the token's {name} claim is not a number")
    return float(value)


def _check_key(alg: str, key: RSAKey | ECKey) -> None:
    kty, curve = ALLOWED_ALGORITHMS[alg]
    if key.key_type != kty or (curve is not None and key.as_dict().get("crv") != curve):
        raise AuthenticationFailed(f"the token's algorithm {alg} does not fit the issuer's key")


def _str_list(claims: dict[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name) or []
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise AuthenticationFailed(f"the token's {name} claim is not a list of names")
    return tuple(value)


def validate_token(
    token: str, config: IssuerConfig, keys: JWKSCache, now: float | None = None
) -> ExternalClaims:
    """Check ``token`` against ``config``; AuthenticationFailed says what is wrong."""
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise AuthenticationFailed("the token is not a JWT")
    header = _b64json(token.split(".")[0])
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in config.algorithms or alg not in ALLOWED_ALGORITHMS:
        raise AuthenticationFailed(
            f"the token's algorithm {alg!r} is not allowed for issuer {config.issuer} "
            f"(allowed: {', '.join(a for a in config.algorithms if a in ALLOWED_ALGORITHMS)})"
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AuthenticationFailed("the token's header names no key (kid)")
    key = keys.key(config.issuer, config.discovery_url, kid)
    _check_key(alg, key)
    try:
        claims = jwt.decode(token, key, algorithms=[alg]).claims
    except (JoseError, ValueError):
        raise AuthenticationFailed("the token's signature does not verify") from None
    now = time.time() if now is None else now
    if claims.get("iss") != config.issuer:
        raise AuthenticationFailed("the token's iss claim does not name its issuer")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 200:
        raise AuthenticationFailed("the token has no sub claim (subject)")
    exp = _number(claims, "exp")
    if exp is None:
        raise AuthenticationFailed("the token has no exp claim; tokens must expire")
    if exp + LEEWAY < now:
        raise AuthenticationFailed("the token has expired; get a new one")
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf - LEEWAY > now:
        raise AuthenticationFailed("the token is not valid yet (nbf in the future)")
    iat = _number(claims, "iat")
    if iat is not None and iat - LEEWAY > now:
        raise AuthenticationFailed("the token was issued in the future (iat); check clocks")
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(a, str) and a in config.audiences for a in auds):
        raise AuthenticationFailed(
            f"the token's audience {aud!r} is not one this lake accepts from {config.issuer} "
            f"({', '.join(config.audiences)}); request a token for one of them"
        )
    if config.wlcg_profile and claims.get("wlcg.ver") != "1.0":
        raise AuthenticationFailed(
            "the token lacks wlcg.ver 1.0, which the WLCG JWT profile requires of this issuer"
        )
    groups = _str_list(claims, "wlcg.groups")
    if not groups and not config.wlcg_profile:
        groups = _str_list(claims, "groups")
    scope = claims.get("scope", "")
    username, email = claims.get("preferred_username"), claims.get("email")
    return ExternalClaims(
        issuer=config.issuer,
        subject=subject,
        expires_at=int(exp),
        groups=groups,
        scope=scope if isinstance(scope, str) else "",
        jti=str(claims.get("jti", "")),
        preferred_username=username if isinstance(username, str) else None,
        email=email if isinstance(email, str) and len(email) <= 255 else None,
    )


class Trust:
    """Issuer configurations (briefly remembered) and their keys (``JWKSCache``)."""

    def __init__(
        self, db: Database, *, config_ttl: float = 5.0, keys: JWKSCache | None = None
    ) -> None:
        self.db = db
        self.config_ttl = config_ttl
        self.keys = keys or JWKSCache()
        self._configs: dict[str, tuple[float, IssuerConfig | None]] = {}
        self._lock = threading.Lock()
        self.clock: Callable[[], float] = time.monotonic

    def config(self, issuer: str) -> IssuerConfig:
        """The enabled configuration of ``issuer``; AuthenticationFailed if untrusted."""
        with self._lock:
            hit = self._configs.get(issuer)
        if hit is not None and hit[0] > self.clock():
            found = hit[1]
        else:
            from fedlake.catalog.trusted_issuers import find_issuer

            with self.db.read() as s:
                row = find_issuer(s, issuer)
                found = IssuerConfig.of(row) if row is not None else None
            if self.config_ttl > 0:
                with self._lock:
                    if len(self._configs) > 1000:  # made-up issuers must not grow memory
                        self._configs.clear()
                    self._configs[issuer] = (self.clock() + self.config_ttl, found)
        if found is None or not found.enabled:
            raise AuthenticationFailed(
                f"untrusted issuer {issuer[:200]!r}: this lake does not accept its tokens "
                "(an admin can add it with fedlake iam issuer add)"
            )
        return found

    def validate(self, token: str, issuer: str) -> tuple[IssuerConfig, ExternalClaims]:
        config = self.config(issuer)
        return config, validate_token(token, config, self.keys)

    def forget(self, issuer: str) -> None:
        """The configuration of ``issuer`` changed: read it (and its keys) again."""
        with self._lock:
            self._configs.pop(issuer, None)
        self.keys.forget(issuer)
