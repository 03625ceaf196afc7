"""The SE's body sink: pieces written with writev, checksummed, whatever their number and
however short the kernel's writes."""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import pytest

from fedlake.se import write as se_write


def _sink_into(path: Path) -> tuple[se_write._Sink, int]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return se_write._Sink(fd, md5=True, fsync=False), fd


def _pieces(count: int, size: int) -> list[bytes]:
    return [os.urandom(size) for _ in range(count)]


def _check(path: Path, sink: se_write._Sink, pieces: list[bytes]) -> None:
    whole = b"".join(pieces)
    assert path.read_bytes() == whole
    assert sink.size == len(whole)
    digests = sink.finish()
    assert digests["adler32"] == f"{zlib.adler32(whole) & 0xFFFFFFFF:08x}"
    assert digests["md5"] == hashlib.md5(whole, usedforsecurity=False).hexdigest()


def test_more_pieces_than_one_writev_takes(tmp_path: Path) -> None:
    path = tmp_path / "many"
    sink, fd = _sink_into(path)
    pieces = [*_pieces(3 * se_write._IOV_MAX + 7, 33), b"", *_pieces(2, 100_000)]
    try:
        sink.write_all(pieces[:1500])
        sink.write_all(pieces[1500:])
    finally:
        os.close(fd)
    _check(path, sink, pieces)


def test_short_writes_resume_mid_piece(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel may write less than asked; the rest follows, from inside a piece."""
    calls: list[int] = []
    real_writev = os.writev

    def short_writev(fd: int, buffers: Any) -> int:
        budget, taken = 1000, []
        for b in buffers:
            part = bytes(b)[:budget]
            taken.append(part)
            budget -= len(part)
            if budget == 0:
                break
        written = real_writev(fd, taken)
        calls.append(written)
        return written

    monkeypatch.setattr(se_write.os, "writev", short_writev)
    path = tmp_path / "short"
    sink, fd = _sink_into(path)
    pieces = _pieces(5, 777) + _pieces(1, 4321)
    try:
        sink.write_all(pieces)
    finally:
        os.close(fd)
    assert max(calls) == 1000 and len(calls) == -(-sum(map(len, pieces)) // 1000)
    _check(path, sink, pieces)
