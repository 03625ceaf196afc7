"""The storage interface every protocol plugin implements.

Errors are built-in OSErrors, as fsspec does, so that callers (the transfer engine, the
CLI) can classify them without knowing the protocol:

- ``FileNotFoundError``, ``FileExistsError``, ``PermissionError``, ``IsADirectoryError``,
  ``OSError(errno.ENOSPC)`` and fedlake's ``ChecksumMismatch``: the request cannot succeed
  by retrying it (unrecoverable);
- :class:`TransientStorageError` (a 5xx, a throttling reply), ``TimeoutError`` and
  ``ConnectionError`` (refused, reset, closed mid-stream): worth retrying later.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from fedlake.domain.checksums import Digest

__all__ = ["NotOnline", "Stageable", "StatResult", "Storage", "TransientStorageError"]


class TransientStorageError(OSError):
    """The server failed in a way that may pass (5xx, throttling, a broken stream)."""


class NotOnline(TransientStorageError):
    """The file is on tape only: ``stage`` it, wait until ``is_online``, then read."""


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
    def listdir(self, url: str) -> list[str]:
        """Names (not URLs) in a directory, sorted, temporaries hidden.

        FileNotFoundError when the directory does not exist.
        """

    @abc.abstractmethod
    def mkdir(self, url: str) -> None:
        """Create a directory and its parents; an existing directory is fine.

        Object stores without directories accept it and do nothing.
        """

    def checksum(self, url: str, algorithm: str) -> str:
        """``adler32`` (8 hex digits) or ``md5`` (32) of a stored file.

        Plugins ask the server when it can answer (WebDAV ``Want-Digest``, XRootD's
        checksum query, an S3 ETag that is an MD5) and fall back to this: stream the
        bytes through the checksummer.
        """
        from fedlake.storage.checksums import checksummer

        if algorithm not in ("adler32", "md5"):
            raise ValueError(f"unknown checksum algorithm {algorithm!r}; use adler32 or md5")
        summer = checksummer(md5=algorithm == "md5")
        for chunk in self.read(url):
            summer.update(chunk)
        got = summer.digest()
        value = got.md5 if algorithm == "md5" else got.adler32
        assert value is not None
        return value

    # --- third-party copy (override where the protocol has one) ---------------------------

    #: the modes of :meth:`third_party_copy` this plugin speaks: "pull" (the destination
    #: fetches from the source) and/or "push" (the source sends to the destination)
    tpc_modes: frozenset[str] = frozenset()

    def third_party_copy(
        self,
        source_url: str,
        dest_url: str,
        *,
        mode: str = "pull",
        source_token: str | None = None,
        dest_token: str | None = None,
        overwrite: bool = False,
    ) -> None:
        """Let the servers move the bytes between themselves (WLCG HTTP-TPC, xrootd TPC).

        The caller verifies checksums afterwards; a failed copy leaves no destination.
        """
        raise NotImplementedError(f"{type(self).__name__} has no third-party copy")

    def put_file(
        self, local_path: str, url: str, *, expected: Digest | None = None, overwrite: bool = False
    ) -> Digest:
        def chunks() -> Iterator[bytes]:
            with open(local_path, "rb") as fh:
                while block := fh.read(4 * 1024 * 1024):
                    yield block

        return self.write(url, chunks(), expected=expected, overwrite=overwrite)


class Stageable(abc.ABC):
    """Storage whose files must be brought online before they can be read (tape).

    Mixed into a :class:`Storage`. ``stage`` asks for a recall and returns at once;
    ``is_online`` tells when the file can be read; ``release`` drops the pin.
    """

    @abc.abstractmethod
    def stage(self, url: str, *, pin_seconds: float = 3600.0) -> str:
        """Request a recall; returns a request id (idempotent for a file already staged)."""

    @abc.abstractmethod
    def is_online(self, url: str) -> bool: ...

    @abc.abstractmethod
    def release(self, url: str) -> None:
        """Drop the pin; the disk copy may then be evicted (the tape copy stays)."""
