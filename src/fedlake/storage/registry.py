"""Protocol plugins by scheme, imported lazily; a missing extra names what to install.

A scheme may also name a ``Stageable`` variant of its plugin, built instead when the
options say ``"tape_rest": true`` (davs/https/http: staging through the WLCG Tape REST
API, ``fedlake.storage.backends.tape_rest_client``).
"""

from __future__ import annotations

import importlib
import json
import threading
from types import MappingProxyType
from typing import Any

from fedlake.domain.errors import ProtocolNotSupported
from fedlake.storage.base import Storage

__all__ = [
    "OPTIONS_KEY",
    "TAPE_REST",
    "get_storage",
    "known_schemes",
    "protocol_options",
    "register",
]

_TAPE_REST = "fedlake.storage.backends.tape_rest_client"
# scheme -> (dotted class path, install hint[, dotted class with tape_rest]); keep sorted
_known: dict[str, dict[str, str]] = {
    "davs": {
        "class": "fedlake.storage.backends.webdav.WebDAVStorage",
        "err": "",
        "tape_rest": f"{_TAPE_REST}.WebDAVTapeStorage",
    },
    "file": {"class": "fedlake.storage.backends.posix.PosixStorage", "err": ""},
    "http": {
        "class": "fedlake.storage.backends.webdav.HttpStorage",
        "err": "",
        "tape_rest": f"{_TAPE_REST}.HttpTapeStorage",
    },
    "https": {
        "class": "fedlake.storage.backends.webdav.HttpsStorage",
        "err": "",
        "tape_rest": f"{_TAPE_REST}.HttpsTapeStorage",
    },
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
#: the option that asks for the scheme's Stageable variant (a tape endpoint)
TAPE_REST = "tape_rest"


def register(
    scheme: str, dotted: str, err: str = "", *, clobber: bool = False, tape_rest: str = ""
) -> None:
    """Add a plugin class for ``scheme``; ``tape_rest``: the dotted path of its
    ``Stageable`` variant, built when the options say ``"tape_rest": true``."""
    if scheme in _known and not clobber:
        raise ValueError(f"storage scheme {scheme!r} is already registered")
    _known[scheme] = {"class": dotted, "err": err}
    if tape_rest:
        _known[scheme][TAPE_REST] = tape_rest
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
    options (plugins are thread-safe and keep connection pools). ``tape_rest=True`` gives
    the scheme's ``Stageable`` variant (a different instance from the plain plugin's)."""
    tape_rest = options.pop(TAPE_REST, False)
    if not isinstance(tape_rest, bool):
        raise ValueError(f"storage option {TAPE_REST} must be true or false, not {tape_rest!r}")
    # tape_rest=false is the plain plugin: the same instance as without the option
    keyed = {**options, TAPE_REST: True} if tape_rest else options
    key = (scheme, json.dumps(keyed, sort_keys=True, default=str))
    with _lock:
        found = _cache.get(key)
    if found is not None:
        return found
    entry = _known.get(scheme)
    if entry is None:
        raise ProtocolNotSupported(
            f"no storage plugin for scheme {scheme!r}; known: {', '.join(known_schemes())}"
        )
    dotted = entry["class"]
    if tape_rest:
        dotted = entry.get(TAPE_REST, "")
        if not dotted:
            with_it = sorted(s for s, e in _known.items() if e.get(TAPE_REST))
            raise ProtocolNotSupported(
                f"the {scheme} storage plugin cannot stage through the WLCG Tape REST API "
                f"(option {TAPE_REST}); schemes that can: {', '.join(with_it) or 'none'}"
            )
    module_name, cls_name = dotted.rsplit(".", 1)
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except ImportError as exc:
        hint = entry["err"] or f"the {scheme} plugin failed to import"
        raise ProtocolNotSupported(f"{hint} ({exc})") from exc
    storage: Storage = cls(**options)
    with _lock:
        return _cache.setdefault(key, storage)
