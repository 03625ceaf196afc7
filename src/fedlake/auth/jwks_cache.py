"""Public keys of trusted external issuers: OIDC discovery + JWKS, fetched and cached.

For each issuer the cache holds the ``jwks_uri`` from the discovery document and the
key set it served. The rules:

- The discovery document is read from ``{issuer}/.well-known/openid-configuration`` (or
  the issuer's configured discovery URL); its ``issuer`` must equal the configured issuer
  exactly, else nothing from it is used.
- URLs must be ``https``, except on loopback hosts (127.0.0.0/8, ::1, localhost), which
  tests and single-host set-ups use. Redirects are not followed; fetches time out after
  ``timeout`` seconds and a document larger than ``MAX_DOCUMENT_BYTES`` is refused.
- A token whose ``kid`` is not in the cached set makes the cache fetch the set again, but
  at most once per issuer every ``min_refresh`` seconds: a flood of tokens with made-up
  key ids costs at most one fetch per interval. Keys are also fetched again when the
  cached set is older than ``max_age`` (same bound). A failed refresh keeps the old keys.
- One lock per issuer: concurrent requests wait for one fetch instead of making many.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from fedlake.domain.errors import AuthenticationFailed, InvalidInput

__all__ = ["MAX_DOCUMENT_BYTES", "JWKSCache", "check_fetch_url", "discovery_url_of"]

MAX_DOCUMENT_BYTES = 256 * 1024
PublicKey = RSAKey | ECKey


def discovery_url_of(issuer: str, discovery_url: str | None = None) -> str:
    """Where the discovery document of ``issuer`` is."""
    return discovery_url or issuer.rstrip("/") + "/.well-known/openid-configuration"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_fetch_url(url: str, what: str) -> str:
    """``url`` if it may be fetched: https, or http on a loopback host; else InvalidInput."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise InvalidInput(f"{what} {url!r} is not an absolute URL")
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname)):
        return url
    raise InvalidInput(f"{what} {url!r} must use https (plain http only on loopback hosts)")


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: KeySet | None = None
    fetched_at: float = float("-inf")  # monotonic: last successful fetch of the key set
    tried_at: float = float("-inf")  # monotonic: last fetch attempt (success or not)
    source: str = ""  # discovery URL the keys came from


class JWKSCache:
    """Thread-safe cache of issuer -> key set, with bounded refreshes."""

    def __init__(
        self, *, min_refresh: float = 30.0, max_age: float = 3600.0, timeout: float = 3.0
    ) -> None:
        self.min_refresh = min_refresh
        self.max_age = max_age
        self.timeout = timeout
        self._entries: dict[tuple[str, str], _Entry] = {}  # (issuer, discovery URL)
        self._lock = threading.Lock()
        #: issuer -> number of key-set fetches attempted (for tests and benchmarks)
        self.fetches: dict[str, int] = {}

    def _entry(self, issuer: str, source: str) -> _Entry:
        with self._lock:
            entry = self._entries.get((issuer, source))
            if entry is None:
                entry = self._entries[(issuer, source)] = _Entry()
            return entry

    def forget(self, issuer: str) -> None:
        """Drop the cached keys of ``issuer`` (its configuration changed or it was removed)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == issuer]:
                del self._entries[key]

    def key(self, issuer: str, discovery_url: str | None, kid: str) -> PublicKey:
        """The public key ``kid`` of ``issuer``; AuthenticationFailed if it has none."""
        source = discovery_url_of(issuer, discovery_url)
        entry = self._entry(issuer, source)
        found = self._cached(entry, kid, source)
        if found is not None:
            return found
        with entry.lock:
            found = self._cached(entry, kid, source)  # another thread may have fetched it
            if found is not None:
                return found
            now = time.monotonic()
            if now - entry.tried_at >= self.min_refresh:
                entry.tried_at = now
                self.fetches[issuer] = self.fetches.get(issuer, 0) + 1
                try:
                    keys = self._fetch(issuer, source)
                except AuthenticationFailed:
                    if entry.keys is None or entry.source != source:
                        raise
                else:
                    entry.keys, entry.fetched_at, entry.source = keys, time.monotonic(), source
            found = self._cached(entry, kid, source, fresh_only=False)
            if found is not None:
                return found
            if entry.keys is None or entry.source != source:
                raise AuthenticationFailed(
                    f"the keys of issuer {issuer} could not be fetched; try again later"
                )
            raise AuthenticationFailed(
                f"issuer {issuer} has no key {kid!r} (its keys are fetched again at most "
                f"every {self.min_refresh:g} s); get a new token"
            )

    def _cached(
        self, entry: _Entry, kid: str, source: str, *, fresh_only: bool = True
    ) -> PublicKey | None:
        keys = entry.keys
        if keys is None or entry.source != source:
            return None
        if fresh_only and time.monotonic() - entry.fetched_at > self.max_age:
            return None
        for key in keys.keys:
            if key.kid == kid and isinstance(key, RSAKey | ECKey):
                return key
        return None

    # --- fetching -------------------------------------------------------------------

    def _get_json(self, client: httpx.Client, url: str, what: str) -> dict[str, Any]:
        check_fetch_url(url, what)
        try:
            with client.stream("GET", url, headers={"Accept": "application/json"}) as r:
                if r.status_code != 200:
                    raise AuthenticationFailed(f"{what} {url} answered HTTP {r.status_code}")
                body = b""
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise AuthenticationFailed(f"{what} {url} is larger than allowed")
        except httpx.HTTPError as exc:
            raise AuthenticationFailed(
                f"cannot fetch {what} {url} ({type(exc).__name__}); try again later"
            ) from None
        try:
            value = json.loads(body)
        except ValueError:
            raise AuthenticationFailed(f"{what} {url} is not JSON") from None
        if not isinstance(value, dict):
            raise AuthenticationFailed(f"{what} {url} is not a JSON object")
        return value

    def _fetch(self, issuer: str, source: str) -> KeySet:
        try:
            check_fetch_url(source, "the discovery URL")
        except InvalidInput as exc:
            raise AuthenticationFailed(str(exc)) from None
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            try:
                doc = self._get_json(client, source, "the discovery document")
                if doc.get("issuer") != issuer:
                    raise AuthenticationFailed(
                        f"the discovery document at {source} names issuer "
                        f"{doc.get('issuer')!r}, not {issuer}; fix the trusted issuer's settings"
                    )
                jwks_uri = doc.get("jwks_uri")
                if not isinstance(jwks_uri, str):
                    raise AuthenticationFailed(f"the discovery document {source} has no jwks_uri")
                jwks = self._get_json(client, jwks_uri, "the JWKS")
            except InvalidInput as exc:
                raise AuthenticationFailed(str(exc)) from None
        return _public_keys(jwks, issuer)


def _public_keys(jwks: dict[str, Any], issuer: str) -> KeySet:
    """The RSA and EC public keys of a JWKS document (others, and private parts, dropped)."""
    raw = jwks.get("keys")
    if not isinstance(raw, list):
        raise AuthenticationFailed(f"the JWKS of {issuer} has no key list")
    keys: list[PublicKey] = []
    for item in raw:
        if not isinstance(item, dict) or item.get("kty") not in ("RSA", "EC"):
            continue
        if item.get("use") not in (None, "sig") or not isinstance(item.get("kid"), str):
            continue
        public = {k: v for k, v in item.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
        try:
            cls = RSAKey if item["kty"] == "RSA" else ECKey
            keys.append(cls.import_key(public))
        except (JoseError, ValueError, TypeError):
            continue
    return KeySet(keys)  # type: ignore[arg-type]
