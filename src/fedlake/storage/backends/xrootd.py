# mypy: disable-error-code="no-untyped-call"
# (the XRootD bindings ship py.typed but no annotations: their results are Any here)
"""XRootD (``root://host:port//abs/path``) through the official Python bindings.

URLs name the server and an absolute path; ``root://host:port/abs/path`` (one slash) is
accepted too, the port defaults to 1094, and anything after ``?`` is XRootD CGI (opaque
data such as ``authz=...``) passed on as is. One ``client.FileSystem`` is kept per server.

Writes stream into a hidden temporary next to the target (``.<name>.fedlake-tmp-<hex>``,
created exclusively and persist-on-successful-close, so the server drops the temporary
of a killed writer after its ``ofs.persist hold`` time). The bytes are checked against
``expected``, the stored size (and, by default, the server's adler32) against what was
sent, then the temporary is renamed onto the target. XRootD's rename replaces an
existing target, so ``overwrite=False`` first reserves the name with an exclusive create
(``kXR_new``) and renames over that empty placeholder: two writers racing for one name
never clobber each other (the loser gets FileExistsError), at the price of a zero-length
file visible for one round trip, left behind if the writer dies between the two requests.

Credentials are the XRootD client's own: ``X509_USER_PROXY`` (gsi), ``BEARER_TOKEN`` /
``BEARER_TOKEN_FILE`` (ztn), or unix identity. Third-party copy passes tokens as
``authz`` CGI. The client is tuned once per process to give up on an unreachable server
at once and to retry it on the next call (``ConnectionRetry=1``, ``ConnectionWindow=10``,
``StreamErrorWindow=0``; XrdCl's defaults wait 8 minutes and then refuse the host for 30);
``XRD_CONNECTIONRETRY`` and friends in the environment take precedence.
"""

from __future__ import annotations

import errno
import functools
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from XRootD.client.copyprocess import CopyProcess
from XRootD.client.env import EnvPutInt
from XRootD.client.file import File
from XRootD.client.filesystem import FileSystem
from XRootD.client.flags import DirListFlags, MkDirFlags, OpenFlags, QueryCode, StatInfoFlags

from fedlake.domain.checksums import Digest, normalize_adler32, normalize_md5
from fedlake.domain.errors import ChecksumMismatch
from fedlake.storage.backends.posix import TMP_MARK, is_temporary
from fedlake.storage.base import StatResult, Storage, TransientStorageError
from fedlake.storage.checksums import checksummer, verify_digest

__all__ = ["XRootDStorage", "map_status", "parse_url"]

BLOCK = 4 * 1024 * 1024
FILE_MODE = 0o644
DIR_MODE = 0o755
_CLIENT_DEFAULTS = {"ConnectionRetry": 1, "ConnectionWindow": 10, "StreamErrorWindow": 0}


@functools.cache
def _configure_client() -> None:
    """Apply the fail-fast connection settings once (the environment's XRD_* win)."""
    for key, value in _CLIENT_DEFAULTS.items():
        EnvPutInt(key, value)


# --- URLs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Location:
    """A parsed ``root://`` URL: the server, the absolute path and the CGI (or "")."""

    server: str
    path: str
    cgi: str = ""

    @property
    def opaque_path(self) -> str:
        """The path with its CGI, as FileSystem calls take it."""
        return f"{self.path}?{self.cgi}" if self.cgi else self.path

    def url(self) -> str:
        return f"root://{self.server}/{self.opaque_path}"

    def sibling(self, name: str) -> Location:
        parent = self.path.rsplit("/", 1)[0]
        return Location(self.server, f"{parent}/{name}", self.cgi)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


def parse_url(url: str) -> Location:
    """``root://host[:port]//abs/path[?cgi]`` (or one slash) -> Location."""
    scheme, sep, rest = url.partition("://")
    if scheme != "root" or not sep:
        raise ValueError(f"{url!r} is not a root:// URL (root://host:port//abs/path)")
    server, slash, path = rest.partition("/")
    if not server or not slash:
        raise ValueError(f"{url!r} names no server and path (root://host:port//abs/path)")
    path, _, cgi = path.partition("?")
    path = "/" + path.lstrip("/")
    if path != "/":
        path = path.rstrip("/")
    if ":" not in server.rsplit("]", 1)[-1]:
        server = f"{server}:1094"
    return Location(server.lower(), path, cgi)


def _with_token(url: str, token: str | None) -> str:
    if not token:
        return url
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}authz={quote('Bearer ' + token, safe='')}"


# --- errors ---------------------------------------------------------------------------

# XRootD protocol error numbers (XProtocol.hh, kXR_*), carried by "error response" statuses
_SERVER_ERRNO: dict[int, tuple[type[OSError], int]] = {
    3011: (FileNotFoundError, errno.ENOENT),  # kXR_NotFound
    3029: (FileNotFoundError, errno.ENOENT),  # kXR_noReplicas
    3010: (PermissionError, errno.EACCES),  # kXR_NotAuthorized
    3030: (PermissionError, errno.EACCES),  # kXR_AuthFailed
    3025: (PermissionError, errno.EROFS),  # kXR_fsReadOnly
    3028: (PermissionError, errno.EACCES),  # kXR_TLSRequired
    3018: (FileExistsError, errno.EEXIST),  # kXR_ItExists
    3009: (OSError, errno.ENOSPC),  # kXR_NoSpace
    3021: (OSError, errno.ENOSPC),  # kXR_overQuota
    3016: (IsADirectoryError, errno.EISDIR),  # kXR_isDirectory
    3015: (IsADirectoryError, errno.EISDIR),  # kXR_NotFile
    3034: (TimeoutError, errno.ETIMEDOUT),  # kXR_ReqTimedOut
    3035: (TimeoutError, errno.ETIMEDOUT),  # kXR_TimerExpired
    3000: (OSError, errno.EINVAL),  # kXR_ArgInvalid
    3001: (OSError, errno.EINVAL),  # kXR_ArgMissing
    3002: (OSError, errno.ENAMETOOLONG),  # kXR_ArgTooLong
    3006: (OSError, errno.EINVAL),  # kXR_InvalidRequest
    3013: (OSError, errno.EOPNOTSUPP),  # kXR_Unsupported
    3031: (OSError, errno.EINVAL),  # kXR_Impossible
}
_CHECKSUM_ERRNO = 3019  # kXR_ChkSumErr
_FS_ERRNO = 3005  # kXR_FSError: a POSIX error named only in the message

# XrdCl status codes (client side)
_ERROR_RESPONSE = 400
_CLIENT_CODE: dict[int, tuple[type[OSError], int]] = {
    304: (FileNotFoundError, errno.ENOENT),  # errNotFound
    203: (PermissionError, errno.EACCES),  # errLoginFailed
    204: (PermissionError, errno.EACCES),  # errAuthFailed
    110: (PermissionError, errno.EACCES),  # errTlsError
    103: (TimeoutError, errno.ETIMEDOUT),  # errSocketTimeout
    206: (TimeoutError, errno.ETIMEDOUT),  # errOperationExpired
    101: (ConnectionError, errno.EHOSTUNREACH),  # errInvalidAddr (host does not resolve)
    102: (ConnectionError, errno.ECONNREFUSED),  # errSocketError
    104: (ConnectionError, errno.ECONNRESET),  # errSocketDisconnected
    107: (ConnectionError, errno.ECONNRESET),  # errStreamDisconnect
    108: (ConnectionError, errno.ECONNREFUSED),  # errConnectionError
    109: (ConnectionError, errno.ECONNRESET),  # errInvalidSession
    202: (ConnectionError, errno.ECONNREFUSED),  # errHandShakeFailed
    3: (OSError, errno.EINVAL),  # errInvalidOp
    9: (OSError, errno.EINVAL),  # errInvalidArgs
    13: (OSError, errno.EOPNOTSUPP),  # errNotSupported
    15: (OSError, errno.EOPNOTSUPP),  # errNotImplemented
}
_FINAL_FOR_QUERIES = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    ConnectionError,
    TimeoutError,
)
_CLIENT_CHECKSUM = 305  # errCheckSumError
_CLIENT_OS_ERROR = 12  # errOSError: errno is a local errno


def map_status(status: Any, url: str, action: str) -> Exception:
    """The storage error (base.py's classes) for a failed XRootD status."""
    message = " ".join(str(getattr(status, "message", status)).split())
    said = f"{url}: {action} failed: {message}"
    code = int(getattr(status, "code", 0) or 0)
    number = int(getattr(status, "errno", 0) or 0)
    if code == _ERROR_RESPONSE:
        if number == _CHECKSUM_ERRNO:
            return ChecksumMismatch(said)
        if number in _SERVER_ERRNO:
            cls, err = _SERVER_ERRNO[number]
            return cls(err, said)
        if number == _FS_ERRNO and "not a directory" in message.lower():
            return NotADirectoryError(errno.ENOTDIR, said)
        return TransientStorageError(errno.EIO, said)
    if code == _CLIENT_CHECKSUM:
        return ChecksumMismatch(said)
    if code == _CLIENT_OS_ERROR and number:
        return OSError(number, said)  # OSError picks the subclass from the errno
    if code in _CLIENT_CODE:
        cls, err = _CLIENT_CODE[code]
        return cls(err, said)
    return TransientStorageError(errno.EIO, said)


# --- the plugin -----------------------------------------------------------------------


class XRootDStorage(Storage):
    """``root://`` storage.

    Options: ``timeout`` (seconds per request, 0 = the client's default), ``tpc_timeout``
    (seconds a third-party copy may take), ``verify_stored`` (ask the server for the
    adler32 of what it stored before a write is renamed into place; the size is always
    checked, because XRootD 5.5 acknowledges a write the disk took only part of).
    """

    scheme = "root"
    tpc_modes = frozenset({"pull"})

    def __init__(
        self, *, timeout: int = 300, tpc_timeout: int = 3600, verify_stored: bool = True
    ) -> None:
        self.timeout = int(timeout)
        self.tpc_timeout = int(tpc_timeout)
        self.verify_stored = bool(verify_stored)
        self._filesystems: dict[str, Any] = {}
        self._lock = threading.Lock()
        _configure_client()  # before any File(): its first open must fail fast too

    def _fs(self, loc: Location) -> Any:
        with self._lock:
            fs = self._filesystems.get(loc.server)
            if fs is None:
                _configure_client()
                fs = self._filesystems[loc.server] = FileSystem(f"root://{loc.server}")
            return fs

    def _call(self, loc: Location, url: str, action: str, method: str, *args: Any) -> Any:
        status, response = getattr(self._fs(loc), method)(*args, timeout=self.timeout)
        if not status.ok:
            raise map_status(status, url, action)
        return response

    # --- metadata ---------------------------------------------------------------------

    def _stat_info(self, url: str) -> Any:
        loc = parse_url(url)
        return self._call(loc, url, "stat", "stat", loc.opaque_path)

    def exists(self, url: str) -> bool:
        try:
            info = self._stat_info(url)
        except FileNotFoundError:
            return False
        return not info.flags & StatInfoFlags.IS_DIR

    def stat(self, url: str, *, checksums: bool = False) -> StatResult:
        info = self._stat_info(url)
        if info.flags & StatInfoFlags.IS_DIR:
            raise IsADirectoryError(errno.EISDIR, f"{url} is a directory")
        size, mtime = int(info.size), float(info.mtime)
        if not checksums:
            return StatResult(size, mtime)
        md5 = self.server_checksum(url, "md5")
        return StatResult(size, mtime, self.checksum(url, "adler32"), md5)

    def checksum(self, url: str, algorithm: str) -> str:
        """The server's checksum query, else the bytes streamed through the checksummer."""
        if algorithm not in ("adler32", "md5"):
            raise ValueError(f"unknown checksum algorithm {algorithm!r}; use adler32 or md5")
        value = self.server_checksum(url, algorithm)
        return value if value is not None else super().checksum(url, algorithm)

    def server_checksum(self, url: str, algorithm: str) -> str | None:
        """What the server answers for ``algorithm``; None if it does not compute that one.

        A server configured without ``algorithm`` may answer with its default one
        (XRootD 5.5 does), so the name in the answer is checked.
        """
        loc = parse_url(url)
        arg = loc.path + "?" + "&".join(filter(None, [loc.cgi, f"cks.type={algorithm}"]))
        fs = self._fs(loc)
        status, response = fs.query(QueryCode.CHECKSUM, arg, timeout=self.timeout)
        if not status.ok:
            error = map_status(status, url, f"{algorithm} checksum query")
            if isinstance(error, _FINAL_FOR_QUERIES):
                raise error
            return None  # the server cannot compute it: stream the bytes instead
        text = bytes(response or b"").split(b"\0", 1)[0].decode("ascii", "replace").split()
        if len(text) != 2 or text[0].lower() != algorithm:
            return None
        normalize = normalize_adler32 if algorithm == "adler32" else normalize_md5
        return normalize(text[1])

    def listdir(self, url: str) -> list[str]:
        loc = parse_url(url)
        listing = self._call(loc, url, "listing", "dirlist", loc.opaque_path, DirListFlags.NONE)
        return sorted(
            e.name for e in listing if e.name not in (".", "..") and not is_temporary(e.name)
        )

    def mkdir(self, url: str) -> None:
        loc = parse_url(url)
        try:
            self._call(loc, url, "mkdir", "mkdir", loc.opaque_path, MkDirFlags.MAKEPATH, DIR_MODE)
        except FileExistsError:
            info = self._stat_info(url)  # XRootD refuses an existing directory too
            if not info.flags & StatInfoFlags.IS_DIR:
                raise

    def delete(self, url: str) -> None:
        loc = parse_url(url)
        self._call(loc, url, "delete", "rm", loc.opaque_path)

    # --- data -------------------------------------------------------------------------

    def read(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream ``length`` bytes from ``offset`` (negative: counted from the end)."""
        loc = parse_url(url)
        fh = File()
        status, _ = fh.open(loc.url(), OpenFlags.READ, timeout=self.timeout)
        if not status.ok:
            raise map_status(status, url, "open for reading")
        try:
            status, info = fh.stat(timeout=self.timeout)
            if not status.ok:
                raise map_status(status, url, "stat")
            size = int(info.size)
            start = max(0, size + offset) if offset < 0 else offset
            end = size if length is None else min(size, start + max(0, length))
            while start < end:
                status, data = fh.read(start, min(BLOCK, end - start), timeout=self.timeout)
                if not status.ok:
                    raise map_status(status, url, f"read at byte {start}")
                if not data:
                    raise TransientStorageError(
                        errno.EIO, f"{url}: the file ended at byte {start}, expected {end}"
                    )
                start += len(data)
                yield bytes(data)
        finally:
            if fh.is_open():
                fh.close(timeout=self.timeout)

    def write(
        self,
        url: str,
        chunks: Iterable[bytes],
        *,
        expected: Digest | None = None,
        overwrite: bool = False,
    ) -> Digest:
        loc = parse_url(url)
        if not overwrite and self.exists(url):
            raise FileExistsError(errno.EEXIST, f"{url} already exists")
        tmp = loc.sibling(f".{loc.name}{TMP_MARK}{secrets.token_hex(6)}")
        summer = checksummer(md5=expected is None or expected.md5 is not None)
        try:
            self._upload(tmp, url, chunks, summer.update)
            got = summer.digest()
            verify_digest(expected, got, url)
            self._check_stored(tmp, url, got)
            self._commit(tmp, loc, url, overwrite)
        except BaseException:
            self._discard(tmp)
            raise
        return got

    def _upload(self, tmp: Location, url: str, chunks: Iterable[bytes], seen: Any) -> None:
        fh = File()
        flags = OpenFlags.NEW | OpenFlags.MAKEPATH | OpenFlags.POSC
        status, _ = fh.open(tmp.url(), flags, FILE_MODE, timeout=self.timeout)
        if not status.ok:
            raise map_status(status, url, "create")
        try:
            offset = 0
            pending = bytearray()
            for chunk in chunks:
                seen(chunk)
                if not pending and len(chunk) >= BLOCK:
                    offset = self._put(fh, url, chunk, offset)  # no copy of big chunks
                    continue
                pending += chunk
                if len(pending) >= BLOCK:
                    offset = self._put(fh, url, bytes(pending), offset)
                    pending.clear()
            if pending:
                self._put(fh, url, bytes(pending), offset)
            status, _ = fh.close(timeout=self.timeout)
            if not status.ok:
                raise map_status(status, url, "close")
        finally:
            if fh.is_open():
                fh.close(timeout=self.timeout)

    def _put(self, fh: Any, url: str, data: bytes, offset: int) -> int:
        status, _ = fh.write(data, offset, len(data), timeout=self.timeout)
        if not status.ok:
            raise map_status(status, url, f"write at byte {offset}")
        return offset + len(data)

    def _check_stored(self, tmp: Location, url: str, sent: Digest) -> None:
        """The server holds what was sent: its size, and its adler32 if asked to."""
        self._check_size(tmp, url, sent.bytes, "sent")
        if self.verify_stored:
            stored = self.server_checksum(tmp.url(), "adler32")
            if stored is not None and stored != sent.adler32:
                raise TransientStorageError(
                    errno.EIO,
                    f"{url}: the server computes adler32 {stored} for the upload, "
                    f"the bytes sent have {sent.adler32}",
                )

    def _check_size(self, tmp: Location, url: str, size: int, what: str) -> None:
        info = self._call(tmp, url, "stat of the new copy", "stat", tmp.opaque_path)
        if int(info.size) != size:
            raise TransientStorageError(
                errno.EIO,
                f"{url}: the server stored {info.size} of the {size} bytes {what} (a full disk?)",
            )

    def _commit(self, tmp: Location, loc: Location, url: str, overwrite: bool) -> None:
        """Rename the verified temporary onto ``loc``; without overwrite, reserve it first."""
        if not overwrite:
            fh = File()
            status, _ = fh.open(loc.url(), OpenFlags.NEW, FILE_MODE, timeout=self.timeout)
            if not status.ok:
                error = map_status(status, url, "reserve the name")
                if isinstance(error, FileExistsError):
                    raise FileExistsError(errno.EEXIST, f"{url} already exists") from error
                raise error
            fh.close(timeout=self.timeout)
        try:
            self._call(loc, url, "rename into place", "mv", tmp.path, loc.path)
        except BaseException:
            if not overwrite:
                self._fs(loc).rm(loc.path, timeout=self.timeout)  # our empty placeholder
            raise

    def _discard(self, tmp: Location) -> None:
        """Remove a temporary (best effort: it may not exist, the server may be gone)."""
        self._fs(tmp).rm(tmp.path, timeout=self.timeout)

    # --- third-party copy -------------------------------------------------------------

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
        """root:// TPC: the destination server pulls into a temporary, renamed when done.

        Tokens travel as ``authz`` CGI on the source and destination URLs.
        """
        if mode not in self.tpc_modes:
            raise ValueError(f"XRootD third-party copy is pull only, not {mode!r}")
        src = parse_url(source_url)
        dst = parse_url(dest_url)
        if not overwrite and self.exists(dest_url):
            raise FileExistsError(errno.EEXIST, f"{dest_url} already exists")
        tmp = dst.sibling(f".{dst.name}{TMP_MARK}{secrets.token_hex(6)}")
        said = f"{source_url} -> {dest_url}"
        _configure_client()
        process = CopyProcess()
        process.add_job(
            _with_token(src.url(), source_token),
            _with_token(tmp.url(), dest_token),
            force=False,
            mkdir=True,
            thirdparty="only",
            tpctimeout=self.tpc_timeout,
        )
        try:
            status = process.prepare()
            if not status.ok:
                raise map_status(status, said, "third-party copy setup")
            status, results = process.run()
            job = results[0].get("status") if results else None
            if job is not None and not job.ok:
                raise map_status(job, said, "third-party copy")
            if not status.ok:
                raise map_status(status, said, "third-party copy")
            source_size = int(self._stat_info(source_url).size)
            self._check_size(tmp, dest_url, source_size, f"of {source_url}")
            self._commit(tmp, dst, dest_url, overwrite)
        except BaseException:
            self._discard(tmp)
            raise
