"""The client's direct copy: atomic, checksummed over the bytes written, refuses a
source that changes while it is copied."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest

from fedlake.client.files import BLOCK, copy_verified
from fedlake.domain.errors import LakeError


def test_copy_returns_adler32_of_stored_bytes_and_leaves_no_temporary(tmp_path: Path) -> None:
    data = os.urandom(3 * BLOCK + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    dest = tmp_path / "rse" / "ab" / "cd" / "src.bin"
    seen: list[int] = []
    adler = copy_verified(src, dest, seen.append)
    assert dest.read_bytes() == data
    assert adler == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    assert sum(seen) == len(data)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["src.bin"]


def test_empty_file(tmp_path: Path) -> None:
    src = tmp_path / "empty"
    src.write_bytes(b"")
    assert copy_verified(src, tmp_path / "out" / "empty", None) == "00000001"
    assert (tmp_path / "out" / "empty").read_bytes() == b""


def test_source_modified_during_copy_is_refused_and_nothing_kept(tmp_path: Path) -> None:
    src = tmp_path / "growing"
    src.write_bytes(os.urandom(4 * BLOCK))
    dest = tmp_path / "rse" / "growing"

    def append_once(n: int) -> None:
        if n and src.stat().st_size == 4 * BLOCK:
            with open(src, "ab") as fh:
                fh.write(b"more")

    with pytest.raises(LakeError, match="changed while it was copied"):
        copy_verified(src, dest, append_once)
    assert list(dest.parent.iterdir()) == []


def test_interrupted_copy_leaves_neither_file_nor_temporary(tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.write_bytes(os.urandom(3 * BLOCK))
    dest = tmp_path / "rse" / "big"

    def interrupt(n: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        copy_verified(src, dest, interrupt)
    assert list(dest.parent.iterdir()) == []
