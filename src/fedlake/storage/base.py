"""The storage interface every protocol plugin implements.

Errors are built-in OSErrors (FileNotFoundError, FileExistsError, PermissionError) or
fedlake's ChecksumMismatch, as fsspec does; callers translate them for users.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from fedlake.domain.checksums import Digest

__all__ = ["StatResult", "Storage"]


@dataclass(frozen=True, slots=True)
class StatResult:
    size: int
    mtime: float
    adler32: str | None = None
    md5: str | None = None


class Storage(abc.ABC):
    """One protocol. URLs are full PFNs (``file://host/abs/path``, ``https://...``)."""

    scheme: str = ""

    @abc.abstractmethod
    def exists(self, url: str) -> bool: ...

    @abc.abstractmethod
    def stat(self, url: str, *, checksums: bool = False) -> StatResult: ...

    @abc.abstractmethod
    def read(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream the bytes (or a byte range)."""

    @abc.abstractmethod
    def write(
        self,
        url: str,
        chunks: Iterable[bytes],
        *,
        expected: Digest | None = None,
        overwrite: bool = False,
    ) -> Digest:
        """Atomically store ``chunks`` at ``url``: temporary name, verify, rename.

        Raises ChecksumMismatch (and keeps nothing) if ``expected`` does not match.
        """

    @abc.abstractmethod
    def delete(self, url: str) -> None: ...

    @abc.abstractmethod
    def listdir(self, url: str) -> list[str]: ...

    def put_file(
        self, local_path: str, url: str, *, expected: Digest | None = None, overwrite: bool = False
    ) -> Digest:
        def chunks() -> Iterator[bytes]:
            with open(local_path, "rb") as fh:
                while block := fh.read(4 * 1024 * 1024):
                    yield block

        return self.write(url, chunks(), expected=expected, overwrite=overwrite)
