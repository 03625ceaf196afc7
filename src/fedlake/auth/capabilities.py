"""WLCG JWT profile capability scopes: ``storage.read:/p``, ``storage.create:/p``,
``storage.modify:/p``, ``storage.stage:/p``.

- A scope grants its operation on its path and everything below it: ``/foo/bar`` covers
  ``/foo/bar`` and ``/foo/bar/x``, never ``/foo/bargain``. ``/`` covers everything.
- As the profile describes them, ``storage.modify`` includes ``storage.create`` (modify
  may write new data as well as change existing data) and ``storage.stage`` includes
  ``storage.read`` (staging reads the data). Nothing else implies anything.
- Paths are normalised: repeated ``/`` collapse, ``.`` segments and a trailing ``/`` go.
- **A token with a malformed storage scope is refused as a whole** (``parse_scopes``
  raises AuthenticationFailed): a path that does not start with ``/``, holds a ``..``
  segment (``storage.read:/escape/../cms`` must not grant ``/cms``, and guessing what
  the issuer meant is not our business), a control character or a backslash, or a
  storage scope without a path. Refusing is safer than dropping only that scope: the
  token's bearer learns at once that the token is wrong.
- Scopes that are not ``storage.*`` (``openid``, ``offline_access``, ``compute.*``, ...)
  and unknown ``storage.*`` operations grant nothing here.
- ``allows`` answers False (never raises) for a requested path that is not a clean
  absolute path.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedlake.domain.errors import AuthenticationFailed

__all__ = [
    "OPERATIONS",
    "Capability",
    "allows",
    "has_storage_scopes",
    "normalise_path",
    "parse_scopes",
]

OPERATIONS = ("read", "create", "modify", "stage")
#: the operations each capability grants
_GRANTS: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "create": frozenset({"create"}),
    "modify": frozenset({"modify", "create"}),
    "stage": frozenset({"stage", "read"}),
}


@dataclass(frozen=True, slots=True)
class Capability:
    operation: str  # one of OPERATIONS
    path: str  # normalised absolute path

    def __str__(self) -> str:
        return f"storage.{self.operation}:{self.path}"


def normalise_path(path: str) -> str:
    """The clean form of an absolute path; ValueError if it is not one."""
    if not path.startswith("/"):
        raise ValueError(f"{path!r} is not an absolute path")
    if "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise ValueError(f"{path!r} holds a backslash or a control character")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{path!r} climbs up with '..'")
    return "/" + "/".join(parts)


def parse_scopes(scope: str) -> tuple[Capability, ...]:
    """The storage capabilities of a token's ``scope`` claim (space-separated)."""
    out: list[Capability] = []
    for item in scope.split():
        if not item.startswith("storage."):
            continue
        name, sep, path = item[len("storage.") :].partition(":")
        if name not in _GRANTS:
            continue
        if not sep:
            raise AuthenticationFailed(f"the token's scope {item!r} names no path; get a new one")
        try:
            clean = normalise_path(path)
        except ValueError as exc:
            raise AuthenticationFailed(
                f"the token's scope {item[:200]!r} is refused: {exc}; get a token with a clean path"
            ) from None
        cap = Capability(name, clean)
        if cap not in out:
            out.append(cap)
    return tuple(out)


def has_storage_scopes(capabilities: tuple[Capability, ...]) -> bool:
    """True when the token carries capabilities: then they, not identity rules, decide."""
    return bool(capabilities)


def _covers(prefix: str, path: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def allows(capabilities: tuple[Capability, ...], operation: str, path: str) -> bool:
    """Whether ``capabilities`` grant ``operation`` (read/create/modify/stage) on ``path``."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; one of {', '.join(OPERATIONS)}")
    try:
        clean = normalise_path(path)
    except ValueError:
        return False
    return any(
        operation in _GRANTS[cap.operation] and _covers(cap.path, clean) for cap in capabilities
    )
