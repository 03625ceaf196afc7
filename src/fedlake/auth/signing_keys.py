"""The embedded issuer's signing keys: the current key, rotation, and the JWKS.

Keys live in the catalogue (``signing_keys``) so every server process signs and accepts
the same tokens. The newest key that is not retired signs; ``rotate`` retires it and
makes a new one. A retired key stays in the JWKS and keeps validating until every token
it signed has expired (``retired_at`` + the longest token lifetime), then drops out.

A process re-reads the table every ``REFRESH`` seconds (so a key rotated by another
process is used for signing soon) and when a token names a kid it does not know; those
unknown-kid reloads are rate-limited by a small token bucket, so a flood of tokens with
made-up kids cannot turn every request into a catalogue read.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import select

from fedlake.catalog.db import Database
from fedlake.catalog.models import SigningKey
from fedlake.domain.errors import InvalidInput
from fedlake.domain.timefmt import utcnow

__all__ = ["ALGORITHMS", "KeyRing", "SigningKeyInfo"]

#: the only algorithms the lake signs with or accepts (never ``none`` or HS*)
ALGORITHMS = ("ES256", "RS256")
REFRESH = 60.0
_BURST = 5.0  # unknown-kid reloads allowed at once
_RATE = 1.0  # ... refilled per second

Key = ECKey | RSAKey


@dataclass(frozen=True, slots=True)
class SigningKeyInfo:
    kid: str
    algorithm: str
    created_at: datetime
    retired_at: datetime | None
    drops_at: datetime | None  # when a retired key leaves the JWKS
    current: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "algorithm": self.algorithm,
            "created_at": self.created_at,
            "retired_at": self.retired_at,
            "drops_at": self.drops_at,
            "current": self.current,
        }


def _generate(algorithm: str) -> Key:
    kid = secrets.token_hex(8)
    if algorithm == "ES256":
        return ECKey.generate_key("P-256", parameters={"kid": kid})
    if algorithm == "RS256":
        return RSAKey.generate_key(2048, parameters={"kid": kid})
    raise InvalidInput(f"signing algorithm {algorithm!r} is not supported; use ES256 or RS256")


def _import(row: SigningKey) -> Key:
    data = json.loads(row.private_jwk)
    return RSAKey.import_key(data) if data.get("kty") == "RSA" else ECKey.import_key(data)


class KeyRing:
    """Thread-safe view of ``signing_keys`` for one process."""

    def __init__(self, db: Database, algorithm: str, keep_seconds: int) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"signing algorithm {algorithm!r} is not one of {ALGORITHMS}")
        self.db = db
        self.algorithm = algorithm
        self.keep_seconds = keep_seconds
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[Key, str]] = {}  # kid -> (key, algorithm)
        self._current: str | None = None
        self._loaded_at = 0.0
        #: unknown-kid reloads allowed per second (the bucket holds at most _BURST)
        self.reload_rate = _RATE
        self._bucket = _BURST
        self._bucket_at = time.monotonic()

    # --- loading ------------------------------------------------------------------------

    def _load(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self.keep_seconds)
        with self.db.write() as session:
            rows = list(session.scalars(select(SigningKey)).all())
            live = [r for r in rows if r.retired_at is None]
            if not live:
                key = _generate(self.algorithm)
                row = SigningKey(
                    kid=key.kid or "",
                    algorithm=self.algorithm,
                    private_jwk=json.dumps(key.as_dict(private=True)),
                    created_at=utcnow(),
                )
                session.add(row)
                rows.append(row)
                live = [row]
            usable = [r for r in rows if r.retired_at is None or r.retired_at > cutoff]
            current = max(live, key=lambda r: r.created_at)
        keys = {r.kid: (_import(r), r.algorithm) for r in usable}
        with self._lock:
            self._keys = keys
            self._current = current.kid
            self._loaded_at = time.monotonic()

    def _fresh(self) -> None:
        if self._current is None or time.monotonic() - self._loaded_at > REFRESH:
            self._load()

    def _may_reload(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._bucket = min(_BURST, self._bucket + (now - self._bucket_at) * self.reload_rate)
            self._bucket_at = now
            if self._bucket < 1.0:
                return False
            self._bucket -= 1.0
            return True

    # --- use ----------------------------------------------------------------------------

    def current(self) -> tuple[Key, str]:
        """(key, algorithm) to sign new tokens with."""
        self._fresh()
        assert self._current is not None
        return self._keys[self._current]

    def find(self, kid: str) -> tuple[Key, str] | None:
        """The validating key ``kid``; an unknown kid reloads the table (rate-limited)."""
        self._fresh()
        found = self._keys.get(kid)
        if found is None and kid and self._may_reload():
            self._load()
            found = self._keys.get(kid)
        return found

    def jwks(self) -> dict[str, Any]:
        """Public keys, as served at the JWKS endpoint (current and not yet dropped)."""
        self._fresh()
        out = []
        for key, algorithm in self._keys.values():
            public = key.as_dict(private=False)
            public.update({"alg": algorithm, "use": "sig"})
            out.append(public)
        return {"keys": out}

    def rotate(self, algorithm: str | None = None) -> str:
        """Retire the current key(s) and make a new current one; return its kid."""
        algorithm = algorithm or self.algorithm
        key = _generate(algorithm)
        now = utcnow()
        with self.db.write() as session:
            for row in session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
                row.retired_at = now
            session.add(
                SigningKey(
                    kid=key.kid or "",
                    algorithm=algorithm,
                    private_jwk=json.dumps(key.as_dict(private=True)),
                    created_at=now + timedelta(microseconds=1),
                )
            )
        self._load()
        return key.kid or ""

    def list(self) -> list[SigningKeyInfo]:
        """Every key still stored, newest first, with when a retired one drops out."""
        keep = timedelta(seconds=self.keep_seconds)
        with self.db.read() as session:
            rows = session.scalars(select(SigningKey).order_by(SigningKey.created_at.desc()))
            live = None
            out = []
            for r in rows:
                is_current = r.retired_at is None and live is None
                if is_current:
                    live = r.kid
                drops = r.retired_at + keep if r.retired_at is not None else None
                out.append(
                    SigningKeyInfo(
                        r.kid, r.algorithm, r.created_at, r.retired_at, drops, is_current
                    )
                )
        return out
