"""Tokens the transfer engine presents to token-aware storage (WebDAV/HTTPS endpoints such
as ``fedlake se serve``, StoRM, dCache, XrdHttp with SciTokens).

For each copy the engine mints two short-lived tokens with the lake's own issuer, each
valid at one storage endpoint only (audience: the endpoint's ``https://host:port``) and
for the paths of that copy only (WLCG capability scopes on the URL path):

- the source's: ``storage.read:<file>``;
- the destination's: ``storage.read:<file> storage.modify:<file>`` (check, overwrite and
  verify the file) and ``storage.create:<protocol prefix>`` (make the parent collections
  that are missing; ``create`` never replaces anything).

Neither names a lake account and neither is for the lake's audience, so the lake's API
refuses them. In a third-party copy the destination's token authorises the ``COPY`` (pull)
and the source's travels in ``TransferHeaderAuthorization`` (the other way round for
push). The storage endpoints must trust the lake's issuer (its discovery document and
JWKS at the lake's public URL) and accept their own URL as audience.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import unquote, urlsplit

__all__ = ["TOKEN_SCHEMES", "StorageTokens", "TokenSigner"]

#: schemes whose plugins present bearer tokens
TOKEN_SCHEMES = frozenset({"davs", "https", "http"})
_HTTP = {"davs": "https", "dav": "http"}


class TokenSigner(Protocol):
    """What mints the tokens (``fedlake.auth.tokens.TokenService``)."""

    def issue_storage(
        self, scope: str, audience: str, *, lifetime: int, subject: str = ...
    ) -> str: ...


def audience(url: str) -> str:
    """The endpoint of a storage URL as a token audience: ``https://host:port``."""
    parts = urlsplit(url)
    scheme = _HTTP.get(parts.scheme, parts.scheme)
    port = parts.port or (443 if scheme == "https" else 80)
    return f"{scheme}://{parts.hostname}:{port}"


def _path(url: str) -> str:
    path = unquote(urlsplit(url).path) or "/"
    return path if path == "/" else path.rstrip("/")


class StorageTokens:
    """Mints the per-copy tokens; ``lifetime`` seconds (long enough for one copy)."""

    def __init__(self, signer: TokenSigner, *, lifetime: int = 3600) -> None:
        self.signer = signer
        self.lifetime = lifetime

    def source(self, url: str) -> str:
        return self.signer.issue_storage(
            f"storage.read:{_path(url)}", audience(url), lifetime=self.lifetime
        )

    def stage(self, url: str) -> str:
        """For bringing a file online and releasing it (``storage.stage`` includes read)."""
        return self.signer.issue_storage(
            f"storage.stage:{_path(url)}", audience(url), lifetime=self.lifetime
        )

    def destination(self, url: str, prefix_url: str) -> str:
        file, prefix = _path(url), _path(prefix_url)
        scope = f"storage.read:{file} storage.modify:{file} storage.create:{prefix}"
        return self.signer.issue_storage(scope, audience(url), lifetime=self.lifetime)
