"""Protocol plugins by scheme, imported lazily; a missing extra names what to install."""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Any

from fedlake.domain.errors import ProtocolNotSupported
from fedlake.storage.base import Storage

__all__ = ["get_storage", "known_schemes", "register"]

# scheme -> (dotted class path, install hint); keep sorted
_known: dict[str, dict[str, str]] = {
    "file": {"class": "fedlake.storage.backends.posix.PosixStorage", "err": ""},
    "root": {
        "class": "fedlake.storage.backends.xrootd.XRootDStorage",
        "err": "pip install 'fedlake[xrootd]'",
    },
    "s3": {"class": "fedlake.storage.backends.s3.S3Storage", "err": "pip install 'fedlake[s3]'"},
    "tape": {"class": "fedlake.storage.backends.tape.TapeStorage", "err": ""},
}
assert list(_known) == sorted(_known)
known_implementations = MappingProxyType(_known)
_cache: dict[str, Storage] = {}


def register(scheme: str, dotted: str, err: str = "", *, clobber: bool = False) -> None:
    if scheme in _known and not clobber:
        raise ValueError(f"storage scheme {scheme!r} is already registered")
    _known[scheme] = {"class": dotted, "err": err}
    _cache.pop(scheme, None)


def known_schemes() -> list[str]:
    return sorted(_known)


def get_storage(scheme: str, **options: Any) -> Storage:
    if not options and scheme in _cache:
        return _cache[scheme]
    entry = _known.get(scheme)
    if entry is None:
        raise ProtocolNotSupported(
            f"no storage plugin for scheme {scheme!r}; known: {', '.join(known_schemes())}"
        )
    module_name, cls_name = entry["class"].rsplit(".", 1)
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except ImportError as exc:
        hint = entry["err"] or f"the {scheme} plugin failed to import"
        raise ProtocolNotSupported(f"{hint} ({exc})") from exc
    storage: Storage = cls(**options)
    if not options:
        _cache[scheme] = storage
    return storage
