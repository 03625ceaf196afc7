"""POSIX directories (``file://host/abs/path``). Writes land via a temporary file.

Temporaries live next to the target as ``.<name>.fedlake-tmp-<random>`` so the rename is
atomic on every filesystem; ``sweep_temporaries`` removes ones left by killed writers.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from fedlake.domain.checksums import Digest
from fedlake.storage.base import StatResult, Storage
from fedlake.storage.checksums import checksummer, file_digest, verify_digest

__all__ = [
    "TMP_MARK",
    "PosixStorage",
    "SourceReadError",
    "is_temporary",
    "local_path",
    "sweep_temporaries",
]

TMP_MARK = ".fedlake-tmp-"
BLOCK = 4 * 1024 * 1024
# exactly what write() creates, so a file whose own name contains TMP_MARK is never swept
_TMP_NAME = re.compile(r"^\..+" + re.escape(TMP_MARK) + r"[0-9a-f]{12}$", re.DOTALL)


def is_temporary(name: str) -> bool:
    """True for a temporary of a writer (ours: ``.<name>.fedlake-tmp-<hex>``, or rucio's)."""
    return bool(_TMP_NAME.match(name)) or name.endswith(".rucio.upload")


def _path_of(url: str) -> str:
    """The absolute path of ``file://host/abs/path`` (or of a bare absolute path).

    Taken literally: no percent-decoding (build_pfn writes names literally, and so does
    the rucio client), and ``?`` or ``#`` are part of the name, not a query or fragment.
    """
    if url.startswith("/"):
        return url
    if not url.startswith("file://"):
        raise ValueError(f"{url!r} is not a file:// URL")
    rest = url[7:]
    slash = rest.find("/")
    if slash < 0:
        raise ValueError(f"{url!r} has no path")
    return rest[slash:]


def local_path(url: str) -> Path:
    return Path(_path_of(url))


class PosixStorage(Storage):
    """``fsync`` (option, default off): flush each stored file and its directory to disk
    before it becomes visible, so a power cut cannot lose a copy the catalogue already
    counts (the embedded SQLite catalogue itself is not power-cut safe either)."""

    scheme = "file"

    def __init__(self, *, fsync: bool = False) -> None:
        if not isinstance(fsync, bool):
            raise ValueError(f"fsync must be true or false, got {fsync!r}")
        self.fsync = fsync

    def exists(self, url: str) -> bool:
        return local_path(url).is_file()

    def stat(self, url: str, *, checksums: bool = False) -> StatResult:
        path = local_path(url)
        st = path.stat()
        if not path.is_file():
            raise IsADirectoryError(f"{path} is a directory")
        if checksums:
            d = file_digest(path)
            return StatResult(st.st_size, st.st_mtime, d.adler32, d.md5)
        return StatResult(st.st_size, st.st_mtime)

    def read(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        with open(_path_of(url), "rb") as fh:
            fh.seek(offset)
            remaining = length
            while remaining is None or remaining > 0:
                block = fh.read(BLOCK if remaining is None else min(BLOCK, remaining))
                if not block:
                    break
                if remaining is not None:
                    remaining -= len(block)
                yield block

    def write(
        self,
        url: str,
        chunks: Iterable[bytes],
        *,
        expected: Digest | None = None,
        overwrite: bool = False,
    ) -> Digest:
        target = _path_of(url)
        if not overwrite and os.path.exists(target):
            raise FileExistsError(f"{target} already exists")
        directory, name = os.path.split(target)
        tmp = os.path.join(directory, f".{name}{TMP_MARK}{secrets.token_hex(6)}")
        summer = checksummer(md5=expected is None or expected.md5 is not None)
        try:
            try:
                fh = open(tmp, "wb")  # noqa: SIM115 - closed by the with below
            except FileNotFoundError:
                os.makedirs(directory, exist_ok=True)
                fh = open(tmp, "wb")  # noqa: SIM115
            with fh:
                for chunk in chunks:
                    summer.update(chunk)
                    fh.write(chunk)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            got = summer.digest()
            verify_digest(expected, got, target)
            if overwrite:
                os.replace(tmp, target)
            else:
                os.link(tmp, target)  # fails if the target appeared meanwhile
                os.unlink(tmp)
            if self.fsync:
                _fsync_dir(directory)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return got

    def copy_local(
        self,
        source_url: str,
        url: str,
        *,
        expected: Digest | None = None,
        overwrite: bool = False,
    ) -> Digest:
        """Copy a file of this host into place: the kernel copies (``copy_file_range``,
        page cache to page cache), the checksums are computed over the stored temporary in
        place (mmap), verified, and only then is it renamed. Same guarantees as ``write``.

        Source errors (missing, unreadable) are raised as :class:`SourceReadError`.
        """
        target = _path_of(url)
        if not overwrite and os.path.exists(target):
            raise FileExistsError(f"{target} already exists")
        directory, name = os.path.split(target)
        tmp = os.path.join(directory, f".{name}{TMP_MARK}{secrets.token_hex(6)}")
        try:
            fin = os.open(_path_of(source_url), os.O_RDONLY)
        except OSError as exc:
            raise SourceReadError(exc) from exc
        try:
            try:
                fout = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:
                os.makedirs(directory, exist_ok=True)
                fout = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                _kernel_copy(fin, fout)
                # The disk writes back while the stored copy is hashed from the page cache.
                flusher = _Flusher(fout) if self.fsync else None
                try:
                    got = _digest_in_place(fout, md5=expected is None or expected.md5 is not None)
                finally:
                    if flusher is not None:
                        flusher.wait()
            finally:
                os.close(fout)
            verify_digest(expected, got, target)
            if overwrite:
                os.replace(tmp, target)
            else:
                os.link(tmp, target)
                os.unlink(tmp)
            if self.fsync:
                _fsync_dir(directory)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        finally:
            os.close(fin)
        return got

    def delete(self, url: str) -> None:
        local_path(url).unlink()

    def listdir(self, url: str) -> list[str]:
        return sorted(p.name for p in local_path(url).iterdir() if not is_temporary(p.name))

    def mkdir(self, url: str) -> None:
        local_path(url).mkdir(parents=True, exist_ok=True)


class _Flusher:
    """``fsync(fd)`` in a thread (the call releases the GIL); ``wait`` re-raises its error."""

    def __init__(self, fd: int) -> None:
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._run, args=(fd,), name="fsync", daemon=True)
        self.thread.start()

    def _run(self, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            self.error = exc

    def wait(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


class SourceReadError(OSError):
    """Reading the source of :meth:`PosixStorage.copy_local` failed (``cause`` says why)."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(cause.errno, str(cause))
        self.cause = cause


_NO_KERNEL_COPY = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}
_SPAN = 64 * 1024 * 1024


def _kernel_copy(fin: int, fout: int) -> None:
    """``copy_file_range`` to the end; a plain read/write loop where the kernel cannot."""
    first = True
    while True:
        try:
            n = os.copy_file_range(fin, fout, _SPAN)
        except OSError as exc:
            if not (first and exc.errno in _NO_KERNEL_COPY):
                raise
            while block := os.read(fin, BLOCK):
                view = memoryview(block)
                while view:  # a short write (disk full) is followed by ENOSPC
                    view = view[os.write(fout, view) :]
            return
        first = False
        if n == 0:
            return


def _digest_in_place(fd: int, *, md5: bool) -> Digest:
    """Size, adler32 (and md5) of an open file, hashed through mmap without copying."""
    size = os.fstat(fd).st_size
    summer = checksummer(md5=md5)
    if size:
        with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
            for start in range(0, size, BLOCK):
                summer.update(view[start : start + BLOCK])
    return summer.digest()


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_temporaries(root: Path, older_than: float = 3600.0) -> int:
    """Remove temporaries (ours and the rucio client's) older than ``older_than`` seconds."""
    removed = 0
    cutoff = time.time() - older_than
    if not root.is_dir():
        return 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if is_temporary(name):
                p = Path(dirpath) / name
                try:
                    if p.stat().st_mtime < cutoff:
                        p.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
    return removed
