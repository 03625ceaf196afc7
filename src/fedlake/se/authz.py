"""Who is calling, and may they do this here: bearer tokens, capability scopes, group policies.

Authentication: ``Authorization: Bearer <JWT>`` from one of the configured issuers,
checked by :func:`fedlake.auth.trust.validate_token` with the issuer's keys from its JWKS
(:class:`fedlake.auth.jwks_cache.JWKSCache`). No header: the anonymous caller. A header
that is not a valid token is refused (401) even where anonymous access would be allowed:
a client that sends a token wants to be known.

Authorization, in this order:

1. ``allow_anonymous``: everyone may do everything (development and tests).
2. A token carrying WLCG storage scopes: the scopes alone decide
   (:mod:`fedlake.auth.capabilities`): ``storage.read`` for reading and listing,
   ``storage.create`` for new files and collections, ``storage.modify`` for overwriting,
   deleting and moving, ``storage.stage`` (which includes read) for staging from tape.
3. Otherwise the storage area with the longest path prefix covering the path decides with
   its ordered policies: the first policy whose ``who`` matches the caller (a group of
   the token's ``wlcg.groups``, ``any-authenticated``, or ``anonymous``, which matches
   everyone) and lists the action (``read`` for read and stage; ``write`` for create and
   modify) allows it,
   or refuses it when marked ``deny``. No area, or no matching policy: refused.

A refusal is :class:`Unauthenticated` (401) for a caller without a token, so clients know
to send one, and :class:`Forbidden` (403) for a caller with a valid token.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from fedlake.auth.capabilities import Capability, allows, normalise_path, parse_scopes
from fedlake.auth.jwks_cache import JWKSCache
from fedlake.auth.trust import IssuerConfig, unverified_issuer, validate_token
from fedlake.domain.errors import AuthenticationFailed
from fedlake.se.config import ANONYMOUS, ANY_AUTHENTICATED, Area, SEConfig

__all__ = ["ANONYMOUS_CALLER", "Authorizer", "Caller", "Forbidden", "Unauthenticated"]

#: how long a validated token is remembered (never past its expiry)
TOKEN_CACHE_SECONDS = 300.0
_TOKEN_CACHE_MAX = 10_000


class Unauthenticated(Exception):
    """No valid token where one is needed (HTTP 401, ``WWW-Authenticate: Bearer``)."""


class Forbidden(PermissionError):
    """The caller is known but may not do this (HTTP 403)."""


@dataclass(frozen=True, slots=True)
class Caller:
    authenticated: bool
    subject: str | None = None
    issuer: str | None = None
    groups: tuple[str, ...] = ()
    capabilities: tuple[Capability, ...] = ()

    def __str__(self) -> str:
        return f"{self.subject} of {self.issuer}" if self.authenticated else "anonymous"


ANONYMOUS_CALLER = Caller(False)

#: the policy action each operation needs (staging from tape is a read: docs/se.md#tape-mode)
_ACTION = {"read": "read", "create": "write", "modify": "write", "stage": "read"}


def _covers(prefix: str, path: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


class Authorizer:
    """Authentication and decisions for one SE configuration (thread-safe)."""

    def __init__(self, config: SEConfig, keys: JWKSCache | None = None) -> None:
        self.config = config
        self.keys = keys or JWKSCache()
        self.issuers = {
            e.issuer: IssuerConfig(
                issuer=e.issuer,
                discovery_url=e.discovery_url,
                audiences=e.audiences,
                algorithms=e.algorithms,
                auto_create_groups=(),
                wlcg_profile=e.wlcg_profile,
                enabled=True,
            )
            for e in config.issuers
        }
        # the longest prefix first, so the first covering area is the most specific
        self.areas: tuple[Area, ...] = tuple(
            sorted(config.areas, key=lambda a: len(a.path), reverse=True)
        )
        self._tokens: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    # --- authentication ----------------------------------------------------------------

    @staticmethod
    def bearer(header: str | None) -> str | None:
        """The token of an ``Authorization`` header (None: no header); Unauthenticated
        for another scheme or an empty token."""
        if header is None:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
        return token.strip()

    def cached(self, token: str) -> Caller | None:
        """The caller of a token validated recently (no I/O), or None."""
        with self._lock:
            hit = self._tokens.get(token)
        if hit is not None and hit[0] > time.time():
            return hit[1]
        return None

    def authenticate(self, token: str) -> Caller:
        """Validate ``token`` (may fetch the issuer's keys: blocking); Unauthenticated."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        issuer = unverified_issuer(token)
        if issuer is None:
            raise Unauthenticated("the bearer token is not a JWT with an iss claim")
        config = self.issuers.get(issuer)
        if config is None:
            raise Unauthenticated(
                f"untrusted issuer {issuer[:200]!r}: this storage element does not accept "
                "its tokens (add it to [[issuers]] in the SE configuration)"
            )
        try:
            claims = validate_token(token, config, self.keys)
            capabilities = parse_scopes(claims.scope)
        except AuthenticationFailed as exc:
            raise Unauthenticated(str(exc)) from None
        caller = Caller(True, claims.subject, claims.issuer, claims.groups, capabilities)
        until = min(float(claims.expires_at), time.time() + TOKEN_CACHE_SECONDS)
        with self._lock:
            if len(self._tokens) >= _TOKEN_CACHE_MAX:
                now = time.time()
                self._tokens = {k: v for k, v in self._tokens.items() if v[0] > now}
                if len(self._tokens) >= _TOKEN_CACHE_MAX:
                    self._tokens.clear()
            self._tokens[token] = (until, caller)
        return caller

    # --- decisions ---------------------------------------------------------------------

    def check(self, caller: Caller, operation: str, path: str) -> None:
        """Return if ``caller`` may do ``operation`` (read, create, modify) on ``path``;
        raise Unauthenticated or Forbidden with the reason otherwise."""
        if self.config.allow_anonymous:
            return
        reason = self._refusal(caller, operation, normalise_path(path))
        if reason is None:
            return
        if not caller.authenticated:
            raise Unauthenticated(f"{reason}; send a bearer token (Authorization: Bearer)")
        raise Forbidden(reason)

    def _refusal(self, caller: Caller, operation: str, path: str) -> str | None:
        if caller.capabilities:
            if allows(caller.capabilities, operation, path):
                return None
            held = " ".join(str(c) for c in caller.capabilities)
            return f"the token's scopes ({held}) do not grant storage.{operation} on {path}"
        action = _ACTION[operation]
        area = next((a for a in self.areas if _covers(a.path, path)), None)
        if area is None:
            return f"no storage area covers {path}, so nobody may {action} it"
        for policy in area.policies:
            if action in policy.actions and self._matches(policy.who, caller):
                if policy.deny:
                    return f"storage area {area.path} denies {action} to {policy.who}"
                return None
        return f"no policy of storage area {area.path} lets {caller} {action} there"

    @staticmethod
    def _matches(who: str, caller: Caller) -> bool:
        if who == ANONYMOUS:
            return True
        if who == ANY_AUTHENTICATED:
            return caller.authenticated
        return caller.authenticated and who in caller.groups
