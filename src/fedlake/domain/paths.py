"""Deterministic path algorithms, exactly as Rucio computes them (``hash`` and ``identity``)."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from fedlake.domain.errors import InvalidInput

__all__ = ["ALGORITHMS", "build_pfn", "lfn2path", "path_hash", "path_identity", "split_pfn"]


@lru_cache(maxsize=4096)
def _scope_dir(scope: str) -> str:
    # Rucio tests startswith('user') / startswith('group') (no dot): 'userdata.x' -> 'userdata/x'
    if scope.startswith(("user", "group")):
        return scope.replace(".", "/")
    return scope


def path_hash(scope: str, name: str) -> str:
    """``scope/ab/cd/name`` where ab, cd are the first hex digits of md5("scope:name")."""
    digest = hashlib.md5(f"{scope}:{name}".encode(), usedforsecurity=False).hexdigest()
    return f"{_scope_dir(scope)}/{digest[0:2]}/{digest[2:4]}/{name}"


def path_identity(scope: str, name: str) -> str:
    return f"{_scope_dir(scope)}/{name}"


ALGORITHMS = {"hash": path_hash, "identity": path_identity}


def lfn2path(algorithm: str, scope: str, name: str) -> str:
    try:
        fn = ALGORITHMS[algorithm]
    except KeyError:
        raise InvalidInput(
            f"unknown path algorithm {algorithm!r}; use one of {sorted(ALGORITHMS)}"
        ) from None
    return fn(scope, name)


def _norm_prefix(prefix: str) -> str:
    """Rucio's rule: add a leading and a trailing '/' if missing (XRootD's ``//eos/`` stays)."""
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    if not prefix.endswith("/"):
        prefix += "/"
    return prefix


def build_pfn(scheme: str, hostname: str, port: int, prefix: str, path: str) -> str:
    """The one place PFNs are built, as the Rucio client builds them.

    ``file`` omits the port (``file://host/prefix/path``); every other scheme writes it.
    """
    base = f"{scheme}://{hostname}" if scheme == "file" else f"{scheme}://{hostname}:{port}"
    return base + _norm_prefix(prefix) + (path[1:] if path.startswith("/") else path)


def split_pfn(pfn: str, scheme: str, hostname: str, port: int, prefix: str) -> str | None:
    """The path of ``pfn`` below a protocol's prefix, or None if it is not under it."""
    head = build_pfn(scheme, hostname, port, prefix, "")
    if pfn.startswith(head):
        return pfn[len(head) :]
    if scheme == "file" and pfn.startswith("file://"):
        # the rucio posix client accepts any host when the protocol host is localhost
        rest = pfn[len("file://") :]
        path = "/" + rest.split("/", 1)[1] if "/" in rest else ""
        pre = _norm_prefix(prefix)
        if hostname == "localhost" and path.startswith(pre):
            return path[len(pre) :]
    return None
