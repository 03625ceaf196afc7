"""Checksums: adler32 as 8 lower-case hex digits, md5, one streaming pass."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedlake.domain import checksums
from fedlake.domain.checksums import (
    Checksummer,
    Digest,
    file_digest,
    normalize_adler32,
    normalize_md5,
)
from fedlake.domain.errors import InvalidChecksum


@pytest.mark.parametrize(
    ("data", "adler"),
    [
        (b"", "00000001"),
        (b"a", "00620062"),
        (b"abc", "024d0127"),
        (b"Wikipedia", "11e60398"),
        (b"message digest", "29750586"),
        (b"\x00" * 10, "000a0001"),
    ],
)
def test_adler32_known_vectors(data: bytes, adler: str) -> None:
    summer = Checksummer()
    summer.update(data)
    digest = summer.digest()
    assert digest.adler32 == adler
    assert digest.adler32 == f"{zlib.adler32(data):08x}"
    assert digest.md5 == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert digest.bytes == len(data)


def test_md5_known_vector() -> None:
    summer = Checksummer()
    summer.update(b"abc")
    assert summer.digest().md5 == "900150983cd24fb0d6963f7d28e17f72"


@given(st.lists(st.binary(max_size=300), max_size=8))
def test_streaming_equals_one_shot(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    summer = Checksummer()
    for chunk in chunks:
        summer.update(memoryview(chunk))
    assert summer.digest() == Digest(
        len(data), f"{zlib.adler32(data):08x}", hashlib.md5(data, usedforsecurity=False).hexdigest()
    )


def test_adler32_large_input_wraps_to_8_digits() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: both adler halves overflow 16 bits
    summer = Checksummer(md5=False)
    for i in range(0, len(data), 1000):
        summer.update(data[i : i + 1000])
    digest = summer.digest()
    assert digest.adler32 == f"{zlib.adler32(data):08x}"
    assert len(digest.adler32) == 8
    assert digest.md5 is None


def test_file_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checksums, "CHUNK", 7)  # several reads
    data = b"fedlake " * 100
    path = tmp_path / "f"
    path.write_bytes(data)
    got = file_digest(path)
    assert got == Digest(
        len(data), f"{zlib.adler32(data):08x}", hashlib.md5(data, usedforsecurity=False).hexdigest()
    )
    assert file_digest(str(path), md5=False) == Digest(len(data), got.adler32, None)


def test_file_digest_of_chunks_ignores_path(tmp_path: Path) -> None:
    got = file_digest(tmp_path / "does-not-exist", [b"ab", b"c"])
    assert got.adler32 == "024d0127"
    assert got.bytes == 3


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("024d0127", "024d0127"),
        ("24d0127", "024d0127"),
        ("1", "00000001"),
        ("ABCDEF01", "abcdef01"),
        ("aB", "000000ab"),
        (None, None),
        ("", None),
    ],
)
def test_normalize_adler32(raw: str | None, normal: str | None) -> None:
    assert normalize_adler32(raw) == normal


@pytest.mark.parametrize("raw", ["123456789", "xyz", "12 34", "0x1234", 0x1234, "-1"])
def test_normalize_adler32_rejects(raw: object) -> None:
    with pytest.raises(InvalidChecksum, match="1-8 hexadecimal digits"):
        normalize_adler32(raw)


def test_normalize_md5() -> None:
    assert normalize_md5("900150983CD24FB0D6963F7D28E17F72") == "900150983cd24fb0d6963f7d28e17f72"
    assert normalize_md5(None) is None
    assert normalize_md5("") is None


@pytest.mark.parametrize("raw", ["9001", "g" * 32, "9" * 33, 5])
def test_normalize_md5_rejects(raw: object) -> None:
    with pytest.raises(InvalidChecksum, match="32 hexadecimal digits"):
        normalize_md5(raw)


def test_invalid_checksum_status() -> None:
    assert InvalidChecksum("x").status == 400
