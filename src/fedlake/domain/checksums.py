"""Checksums: adler32 (8 lower-case hex digits) and md5, computed in one streaming pass."""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from fedlake.domain.errors import InvalidChecksum

AdlerFn = Callable[[bytes | bytearray | memoryview, int], int]

__all__ = [
    "AdlerFn",
    "Checksummer",
    "Digest",
    "file_digest",
    "normalize_adler32",
    "normalize_md5",
]

_HEX = re.compile(r"^[0-9a-fA-F]+$")
CHUNK = 4 * 1024 * 1024


def normalize_adler32(value: object) -> str | None:
    """Return adler32 as 8 lower-case hex digits (leading zeros restored), or None."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _HEX.match(value) or len(value) > 8:
        raise InvalidChecksum(f"adler32 {value!r} is not 1-8 hexadecimal digits")
    return value.lower().zfill(8)


def normalize_md5(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _HEX.match(value) or len(value) != 32:
        raise InvalidChecksum(f"md5 {value!r} is not 32 hexadecimal digits")
    return value.lower()


@dataclass(frozen=True, slots=True)
class Digest:
    bytes: int
    adler32: str
    md5: str | None = None


class Checksummer:
    """Feed bytes, then read size, adler32 and md5."""

    __slots__ = ("_adler", "_adler_fn", "_md5", "_size")

    def __init__(self, *, md5: bool = True, adler: AdlerFn = zlib.adler32) -> None:
        """``adler`` computes adler32 (zlib's by default; storage passes a faster one)."""
        self._adler = 1
        self._adler_fn = adler
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self._size = 0

    def update(self, data: bytes | memoryview) -> None:
        self._adler = self._adler_fn(data, self._adler)
        if self._md5 is not None:
            self._md5.update(data)
        self._size += len(data)

    def digest(self) -> Digest:
        md5 = self._md5.hexdigest() if self._md5 is not None else None
        return Digest(self._size, f"{self._adler & 0xFFFFFFFF:08x}", md5)


def file_digest(
    path: str | Path,
    chunks: Iterable[bytes] | None = None,
    *,
    md5: bool = True,
    adler: AdlerFn = zlib.adler32,
) -> Digest:
    """Checksum a local file (or given chunks) in one pass."""
    summer = Checksummer(md5=md5, adler=adler)
    if chunks is not None:
        for chunk in chunks:
            summer.update(chunk)
        return summer.digest()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            summer.update(block)
    return summer.digest()
