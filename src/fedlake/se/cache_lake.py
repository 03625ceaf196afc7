"""What the lake's catalogue says a cached file must hold (``fedlake se cache --lake``).

The mapping: the cache stands in front of a deterministic RSE (its ``--origin`` is the
PFN head of one of the RSE's protocols), so a client asks for the path the RSE stores a
file at, ``/<scope dir>/<ab>/<cd>/<name>`` (``fedlake.domain.paths.path_hash``). Such a
path names the DID ``scope:name`` when ``ab``/``cd`` are the first hex digits of
md5("scope:name"); the cache then asks the lake ``GET /replicas/<scope>/<name>`` and
takes the file's ``bytes`` and ``adler32``. A path of another form names no DID: it is
served without a catalogue check (``fedlake_cache_unverified_total`` counts those).

The lake is asked with the cache's own token (``--lake-token-file``), else with the
client's bearer token, else without one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from urllib.parse import quote

import httpx

__all__ = ["CatalogueEntry", "LakeCatalogue", "did_of_path"]


def did_of_path(path: str) -> tuple[str, str] | None:
    """``(scope, name)`` of a deterministic (hash) path, or None when it is not one."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 4:
        return None
    *scope_dir, ab, cd, name = parts
    candidates = {".".join(scope_dir)} if scope_dir[0].startswith(("user", "group")) else set()
    if len(scope_dir) == 1:
        candidates.add(scope_dir[0])
    for scope in sorted(candidates):
        digest = hashlib.md5(f"{scope}:{name}".encode(), usedforsecurity=False).hexdigest()
        if digest[0:2] == ab and digest[2:4] == cd:
            return scope, name
    return None


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    scope: str
    name: str
    bytes: int | None
    adler32: str | None


class LakeCatalogue:
    """Asks one lake's REST API for files' sizes and checksums (blocking; thread-safe)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._client = httpx.Client(timeout=timeout)

    def entry(self, scope: str, name: str, client_token: str | None = None) -> CatalogueEntry:
        """The catalogue's record of ``scope:name``: FileNotFoundError when the lake does
        not know it (or hides it from us), PermissionError when it refuses, OSError when
        it cannot be asked."""
        token = self.token or client_token
        headers = {"authorization": f"Bearer {token}"} if token else {}
        url = f"{self.url}/replicas/{quote(scope, safe='')}/{quote(name, safe='')}"
        try:
            r = self._client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise ConnectionError(f"the lake at {self.url} did not answer: {exc}") from exc
        if r.status_code == 404:
            raise FileNotFoundError(f"{scope}:{name} is not in the lake's catalogue")
        if r.status_code in (401, 403):
            raise PermissionError(f"the lake refused to show {scope}:{name} ({r.status_code})")
        if r.status_code != 200:
            raise ConnectionError(f"the lake answered {r.status_code} for {scope}:{name}")
        for line in r.text.splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec.get("scope") == scope and rec.get("name") == name:
                size = rec.get("bytes")
                adler = rec.get("adler32")
                return CatalogueEntry(
                    scope,
                    name,
                    int(size) if size is not None else None,
                    str(adler).lower().zfill(8) if adler else None,
                )
        raise FileNotFoundError(f"{scope}:{name}: the lake listed no replica record")

    def close(self) -> None:
        self._client.close()
