"""File bytes through the server: atomic, verified upload and streamed download."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from urllib.parse import urlsplit

from fedlake.auth.policy import Caller, require_capability, require_scope_write
from fedlake.bootstrap import Lake
from fedlake.catalog import dids as did_core
from fedlake.catalog import replicas as core
from fedlake.catalog import rses as rse_core
from fedlake.catalog import rules as rule_core
from fedlake.catalog.models import DID, Replica, RSEProtocol
from fedlake.domain.checksums import Digest, normalize_adler32, normalize_md5
from fedlake.domain.errors import (
    DIDAlreadyExists,
    Duplicate,
    InvalidInput,
    ProtocolNotSupported,
    RangeNotSatisfiable,
    ReplicaNotFound,
    StorageError,
)
from fedlake.domain.names import validate_did_name, validate_rse_name, validate_scope
from fedlake.domain.paths import build_pfn
from fedlake.domain.types import ReplicaState
from fedlake.services import embargo
from fedlake.services.replicas import best_pfn
from fedlake.storage import Storage, get_storage
from fedlake.storage.registry import protocol_options

__all__ = ["open_file", "store_file"]


def _storage(p: RSEProtocol) -> Storage:
    return get_storage(p.scheme, **protocol_options(p.extended_attributes))


def _write_pfn(
    info: rse_core.RSEInfo, scope: str, name: str
) -> tuple[str, str | None, RSEProtocol]:
    protos = sorted(
        (p for p in info.protocols if p.write_wan is not None), key=lambda p: p.write_wan or 0
    )
    if not protos:
        raise ProtocolNotSupported(f"RSE {info.rse} offers no protocol for writing")
    p = protos[0]
    path = core.replica_path(info, scope, name, None) if info.deterministic else f"{scope}/{name}"
    pfn = build_pfn(p.scheme, p.hostname, p.port, p.prefix, path)
    return pfn, None if info.deterministic else pfn, p


def store_file(
    lake: Lake,
    caller: Caller,
    scope: str,
    name: str,
    rse: str,
    chunks: Iterable[bytes],
    size: int | None,
    adler32: str | None,
    md5: str | None,
) -> None:
    """Write the bytes to the RSE (temporary name, verify, rename), then register them.

    If registration fails the stored file is removed again: nothing half-done remains.
    """
    validate_scope(scope)
    validate_did_name(name)
    adler = normalize_adler32(adler32)
    md5n = normalize_md5(md5)
    if adler is None and md5n is None:
        raise InvalidInput("declare the checksum: X-Fedlake-Adler32 (or X-Fedlake-Md5) header")
    if size is None:
        raise InvalidInput("declare the size with a Content-Length header")
    with lake.db.read() as s:
        h = embargo.hidden(s, caller)
        embargo.require_visible_scope(h, scope)
        require_scope_write(s, caller, scope, "upload files", name=name)
        require_capability(caller, "create", scope, name, "upload")
        embargo.require_not_hidden_name(h, scope, name)
        info = rse_core.rse_info(s, rse_core.get_rse(s, validate_rse_name(rse)))
        existing = s.get(DID, (scope, name))
        if existing is not None:
            if existing.adler32 != adler and existing.md5 != md5n:
                raise DIDAlreadyExists(f"{scope}:{name} exists with other content")
            if s.get(Replica, (info.id, scope, name)) is not None:
                raise Duplicate(f"{scope}:{name} already has a replica on {rse}")
        else:
            did_core.check_new_names(s, [(scope, name)])
    pfn, stored_pfn, proto = _write_pfn(info, scope, name)
    storage = _storage(proto)
    try:
        storage.write(pfn, chunks, expected=Digest(size, adler or "", md5n))
    except FileExistsError:
        raise Duplicate(f"{pfn} already exists on storage; it is not registered") from None
    except OSError as exc:
        raise StorageError(f"writing {pfn} failed: {exc}") from None
    try:
        with lake.db.write() as s:
            f = core.FileReplica(scope, name, size, adler, md5n, ReplicaState.AVAILABLE, stored_pfn)
            core.add_replicas(s, info, [f], caller.account)
            rule_core.locks_available(s, info.id, [(scope, name)])
    except BaseException:
        storage.delete(pfn)
        raise


def open_file(
    lake: Lake,
    caller: Caller,
    scope: str,
    name: str,
    byte_range: tuple[int, int | None] | None = None,
) -> tuple[int, Iterator[bytes]]:
    """(size, byte stream) of the best available replica, optionally of bytes [start, end]."""
    pfn = best_pfn(lake, caller, scope, name)
    storage = _storage_of_pfn(lake, pfn)
    try:
        st = storage.stat(pfn)
    except FileNotFoundError:
        raise ReplicaNotFound(f"the replica {pfn} is missing on storage") from None
    if byte_range is None:
        return st.size, storage.read(pfn)
    start, end = byte_range
    if start >= st.size:
        raise RangeNotSatisfiable(f"range starts at {start} but {scope}:{name} has {st.size} bytes")
    last = st.size - 1 if end is None else min(end, st.size - 1)
    return st.size, storage.read(pfn, start, last - start + 1)


def _storage_of_pfn(lake: Lake, pfn: str) -> Storage:
    """The plugin (with the protocol's options) of the RSE protocol ``pfn`` belongs to."""
    with lake.db.read() as s:
        for row in rse_core.all_rses(s):
            for p in rse_core.protocols(s, row.id):
                head = build_pfn(p.scheme, p.hostname, p.port, p.prefix, "")
                if pfn.startswith(head):
                    return _storage(p)
    return get_storage(urlsplit(pfn).scheme)
