"""Protocol plugins by scheme, imported lazily; a missing extra names what to install."""

from __future__ import annotations

import importlib
import json
import threading
from types import MappingProxyType
from typing import Any

from fedlake.domain.errors import ProtocolNotSupported
from fedlake.storage.base import Storage

__all__ = ["OPTIONS_KEY", "get_storage", "known_schemes", "protocol_options", "register"]

# scheme -> (dotted class path, install hint); keep sorted
_known: dict[str, dict[str, str]] = {
    "davs": {"class": "fedlake.storage.backends.webdav.WebDAVStorage", "err": ""},
    "file": {"class": "fedlake.storage.backends.posix.PosixStorage", "err": ""},
    "http": {"class": "fedlake.storage.backends.webdav.HttpStorage", "err": ""},
    "https": {"class": "fedlake.storage.backends.webdav.HttpsStorage", "err": ""},
    "root": {
        "class": "fedlake.storage.backends.xrootd.XRootDStorage",
        "err": "pip install 'fedlake[xrootd]'",
    },
    "s3": {"class": "fedlake.storage.backends.s3.S3Storage", "err": "pip install 'fedlake[s3]'"},
    "tape": {"class": "fedlake.storage.backends.tape.TapeStorage", "err": ""},
}
assert list(_known) == sorted(_known)
known_implementations = MappingProxyType(_known)
_cache: dict[tuple[str, str], Storage] = {}
_lock = threading.Lock()
OPTIONS_KEY = "fedlake_storage_options"


def register(scheme: str, dotted: str, err: str = "", *, clobber: bool = False) -> None:
    if scheme in _known and not clobber:
        raise ValueError(f"storage scheme {scheme!r} is already registered")
    _known[scheme] = {"class": dotted, "err": err}
    with _lock:
        for key in [k for k in _cache if k[0] == scheme]:
            del _cache[key]


def known_schemes() -> list[str]:
    return sorted(_known)


def protocol_options(extended_attributes: Any) -> dict[str, Any]:
    """Plugin options kept in an RSE protocol's ``extended_attributes`` (JSON text or dict)
    under ``fedlake_storage_options``: e.g. ``{"fedlake_storage_options": {"verify": false}}``."""
    value = extended_attributes
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, dict):
        return {}
    opts = value.get(OPTIONS_KEY)
    return dict(opts) if isinstance(opts, dict) else {}


def get_storage(scheme: str, **options: Any) -> Storage:
    """The plugin for ``scheme`` built with ``options``; one shared instance per distinct
    options (plugins are thread-safe and keep connection pools)."""
    key = (scheme, json.dumps(options, sort_keys=True, default=str))
    with _lock:
        found = _cache.get(key)
    if found is not None:
        return found
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
    with _lock:
        return _cache.setdefault(key, storage)
