"""Checksums kept with the files: xattrs validated by size and mtime, or sidecar files."""

from __future__ import annotations

import errno
import hashlib
import os
import zlib
from pathlib import Path

import pytest

from fedlake.se import checksums
from fedlake.se.checksums import XATTR, ChecksumStore

DATA = os.urandom(5 * 1024 * 1024 + 3)


def test_kept_and_revalidated(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(DATA)
    store = ChecksumStore(str(tmp_path / ".fedlake-se"))
    st, got = store.checksums(str(path), ["adler32"])
    assert got == {"adler32": f"{zlib.adler32(DATA):08x}"}
    assert st.st_size == len(DATA)
    assert b"adler32=" in os.getxattr(path, XATTR)
    assert store.get(str(path), os.stat(path)) == got
    _, both = store.checksums(str(path), ["adler32", "md5"])
    assert both["md5"] == hashlib.md5(DATA, usedforsecurity=False).hexdigest()
    assert store.get(str(path), os.stat(path)) == both
    path.write_bytes(b"changed")  # another size and mtime: nothing stored counts
    assert store.get(str(path), os.stat(path)) == {}
    assert store.checksums(str(path), ["adler32"])[1] == {
        "adler32": f"{zlib.adler32(b'changed'):08x}"
    }


def test_sidecars_without_xattrs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without user xattrs (as tmpfs before 6.6 or some NFS): sidecar files."""

    def no_xattr(*args: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(checksums.os, "getxattr", no_xattr)
    monkeypatch.setattr(checksums.os, "setxattr", no_xattr)
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    store = ChecksumStore(str(tmp_path / ".fedlake-se"))
    st, got = store.checksums(str(path), ["adler32"])
    assert store.get(str(path), st) == got
    assert len(list((tmp_path / ".fedlake-se" / "checksums").rglob("*"))) == 2  # dir + file
    os.rename(path, tmp_path / "g.bin")
    store.moved(str(path), str(tmp_path / "g.bin"))
    assert store.get(str(tmp_path / "g.bin"), st) == got
    assert store.get(str(path), st) == {}
    store.deleted(str(tmp_path / "g.bin"))
    assert store.get(str(tmp_path / "g.bin"), st) == {}
