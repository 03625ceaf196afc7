"""OAuth scopes of the embedded issuer: parse, normalise, grant (requested ∩ allowed),
and compare (is one set of scopes narrower than another, for token exchange).

Scopes the lake knows: ``openid``, ``profile``, ``offline_access`` (a refresh token),
``wlcg``, ``wlcg.groups`` and ``wlcg.groups:/path`` (fill the ``wlcg.groups`` claim),
and the WLCG capability scopes ``storage.read|create|modify|stage:/path``. A client's
``storage.read:/a`` allows requests for ``storage.read:/a`` and below (``/a/b``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fedlake.domain.errors import OAuthError

__all__ = [
    "CAPABILITIES",
    "KNOWN",
    "grant",
    "groups_requested",
    "is_narrower",
    "normalise",
    "parse",
]

CAPABILITIES = ("storage.read", "storage.create", "storage.modify", "storage.stage")
KNOWN = ("openid", "profile", "email", "offline_access", "wlcg", "wlcg.groups")


def _path(scope: str, path: str) -> str:
    if not path.startswith("/"):
        raise OAuthError("invalid_scope", f"scope {scope!r}: the path must start with '/'")
    parts = [p for p in path.split("/") if p]
    if any(p in ("..", ".") for p in parts):
        raise OAuthError("invalid_scope", f"scope {scope!r}: '..' and '.' are not allowed")
    if any(ord(c) < 32 for c in path):
        raise OAuthError("invalid_scope", f"scope {scope!r}: control characters in the path")
    return "/" + "/".join(parts)


def normalise(scope: str) -> str:
    """One scope in its canonical form; capability/group paths normalised, '..' refused."""
    name, sep, path = scope.partition(":")
    if name in CAPABILITIES:
        return f"{name}:{_path(scope, path if sep else '/')}"
    if name == "wlcg.groups" and sep:
        return f"{name}:{_path(scope, path)}"
    return scope


def parse(text: str | None) -> list[str]:
    """Space-separated scopes, normalised, duplicates dropped, order kept."""
    out: list[str] = []
    for raw in (text or "").split():
        scope = normalise(raw)
        if scope not in out:
            out.append(scope)
    return out


def _under(path: str, parent: str) -> bool:
    return parent == "/" or path == parent or path.startswith(parent + "/")


def _covered(scope: str, allowed: Iterable[str]) -> bool:
    name, sep, path = scope.partition(":")
    for a in allowed:
        if a == scope:
            return True
        a_name, _, a_path = a.partition(":")
        if name in CAPABILITIES and a_name == name and _under(path, a_path or "/"):
            return True
        if name == "wlcg.groups" and sep and a == "wlcg.groups":
            return True
    return False


def grant(requested: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """The requested scopes the client may have (unknown or not allowed ones are left
    out, as RFC 6749 3.3 permits); nothing requested → everything the client allows."""
    allowed_n = [normalise(a) for a in allowed]
    if not requested:
        return list(allowed_n)
    out: list[str] = []
    for scope in requested:
        name = scope.partition(":")[0]
        known = scope in KNOWN or name in CAPABILITIES or name == "wlcg.groups"
        if known and _covered(scope, allowed_n) and scope not in out:
            out.append(scope)
    return out


def groups_requested(scopes: Sequence[str]) -> list[str] | None:
    """Groups named by ``wlcg.groups:/x`` (in order), [] for bare ``wlcg.groups``, or None
    when the token should carry no ``wlcg.groups`` claim."""
    named = [s.partition(":")[2] for s in scopes if s.startswith("wlcg.groups:")]
    if named or "wlcg.groups" in scopes:
        return named
    return None


def is_narrower(requested: Sequence[str], held: Sequence[str]) -> bool:
    """Whether every requested scope is covered by the held ones (token exchange)."""
    return all(_covered(s, held) for s in requested)
