"""Checksums kept with the files they describe, computed once.

Each file's adler32 (and md5 once computed) is stored in its extended attribute
``user.fedlake.checksums`` together with the file's size and modification time (ns)
when they were computed: a stored value is believed only while size and mtime still
match, so a file changed behind the SE's back is checksummed again. Where the file
system has no user extended attributes, the same record goes to a sidecar file under
the root's ``.fedlake-se/checksums/`` (named by the SHA-256 of the path), which MOVE and
DELETE keep in step.

A PUT stores the checksums it computed while receiving the bytes, so a freshly written
file never needs to be read again to answer ``Want-Digest``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from typing import Final

from fedlake.storage.checksums import adler32

__all__ = ["XATTR", "ChecksumStore", "compute"]

XATTR: Final = "user.fedlake.checksums"
_NO_XATTR = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES})
BLOCK = 4 * 1024 * 1024


def _stamp(st: os.stat_result) -> str:
    return f"{st.st_size} {st.st_mtime_ns}"


def _encode(st: os.stat_result, values: dict[str, str]) -> bytes:
    sums = " ".join(f"{k}={v}" for k, v in sorted(values.items()))
    return f"1 {_stamp(st)} {sums}".encode()


def _decode(raw: bytes, st: os.stat_result) -> dict[str, str]:
    """The values of a record if it still describes the file as ``st`` shows it."""
    try:
        version, size, mtime, *sums = raw.decode("ascii").split()
    except (UnicodeDecodeError, ValueError):
        return {}
    if version != "1" or f"{size} {mtime}" != _stamp(st):
        return {}
    out = {}
    for item in sums:
        name, _, value = item.partition("=")
        if name in ("adler32", "md5") and value:
            out[name] = value
    return out


def compute(fs_path: str, algorithms: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Read the file once and return the asked-for checksums (blocking)."""
    adler = 1
    md5 = hashlib.md5(usedforsecurity=False) if "md5" in algorithms else None
    with open(fs_path, "rb", buffering=0) as fh:
        buf = bytearray(BLOCK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            adler = adler32(view[:n], adler)
            if md5 is not None:
                md5.update(view[:n])
    out = {"adler32": f"{adler & 0xFFFFFFFF:08x}"}
    if md5 is not None:
        out["md5"] = md5.hexdigest()
    return out


class ChecksumStore:
    """Stored checksums of the files below one root (xattrs, or sidecar files)."""

    def __init__(self, state_dir: str) -> None:
        self.sidecars = os.path.join(state_dir, "checksums")

    # --- sidecar files ---------------------------------------------------------------

    def _sidecar(self, fs_path: str) -> str:
        key = hashlib.sha256(fs_path.encode("utf-8", "surrogateescape")).hexdigest()
        return os.path.join(self.sidecars, key[:2], key)

    def _read_sidecar(self, fs_path: str) -> bytes:
        try:
            with open(self._sidecar(fs_path), "rb") as fh:
                return fh.read(4096)
        except OSError:
            return b""

    def _write_sidecar(self, fs_path: str, record: bytes) -> None:
        path = self._sidecar(fs_path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(record)
        os.replace(tmp, path)

    # --- the interface ---------------------------------------------------------------

    def get(self, fs_path: str, st: os.stat_result) -> dict[str, str]:
        """Stored checksums still valid for the file as ``st`` shows it ({} if none)."""
        try:
            raw = os.getxattr(fs_path, XATTR)
        except OSError as exc:
            if exc.errno in _NO_XATTR:
                return _decode(self._read_sidecar(fs_path), st)
            return {}
        return _decode(raw, st)

    def put(self, target: str | int, st: os.stat_result, values: dict[str, str]) -> bool:
        """Store ``values`` for the file (a path, or the descriptor of a file being written),
        merged with what is stored and still valid; False when nothing could be stored in
        an extended attribute (a path then gets a sidecar; a descriptor's caller calls
        again with the path once the file has its name). Other failures are ignored: the
        checksums are then computed again when asked for."""
        record_values = dict(values)
        with contextlib.suppress(OSError):
            record_values = {**_decode(os.getxattr(target, XATTR), st), **values}
        try:
            os.setxattr(target, XATTR, _encode(st, record_values))
        except OSError as exc:
            if exc.errno in _NO_XATTR and isinstance(target, str):
                old = _decode(self._read_sidecar(target), st)
                with contextlib.suppress(OSError):
                    self._write_sidecar(target, _encode(st, {**old, **values}))
            return False
        return True

    def moved(self, old: str, new: str) -> None:
        """A file was renamed (xattrs travel with it; a sidecar is moved)."""
        src = self._sidecar(old)
        if os.path.exists(src):
            with contextlib.suppress(OSError):
                dst = self._sidecar(new)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.replace(src, dst)

    def deleted(self, fs_path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self._sidecar(fs_path))

    def checksums(
        self, fs_path: str, algorithms: list[str] | tuple[str, ...]
    ) -> tuple[os.stat_result, dict[str, str]]:
        """The file's stat and its checksums for ``algorithms``, computed (and stored)
        only when missing or out of date (blocking: call from a worker thread)."""
        st = os.stat(fs_path)
        have = self.get(fs_path, st)
        missing = [a for a in algorithms if a not in have]
        if missing:
            fresh = compute(fs_path, missing)
            after = os.stat(fs_path)
            if _stamp(after) == _stamp(st):  # not changed while being read
                self.put(fs_path, st, fresh)
            have = {**have, **fresh}
            st = after
        return st, have
