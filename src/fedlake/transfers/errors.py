"""Which failures are worth retrying, and whose fault they are.

The storage layer raises built-in OSErrors (see ``fedlake.storage.base``); here they become
a verdict: retry later (recoverable), try another source, or give up on the request.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from fedlake.domain.errors import ChecksumMismatch, ProtocolNotSupported
from fedlake.storage.base import TransientStorageError

__all__ = ["SourceError", "Verdict", "backoff", "classify"]


class SourceError(Exception):
    """Wraps an error raised while reading the source (as opposed to writing the copy)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True, slots=True)
class Verdict:
    """``action``: retry (same request later), exclude_source (another source now),
    failed (no point retrying)."""

    action: str
    recoverable: bool
    message: str
    mark_source_bad: bool = False


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


def classify(exc: BaseException) -> Verdict:
    at_source = isinstance(exc, SourceError)
    cause = exc.cause if isinstance(exc, SourceError) else exc
    where = "source" if at_source else "destination"
    msg = f"{where}: {_describe(cause)}"
    if isinstance(cause, ChecksumMismatch):
        # the bytes differ from the catalogue: this source's copy cannot be trusted
        return Verdict("exclude_source", False, f"checksum mismatch: {cause}")
    if isinstance(cause, FileNotFoundError) and at_source:
        return Verdict("exclude_source", False, msg, mark_source_bad=True)
    if isinstance(cause, PermissionError):
        return Verdict("exclude_source" if at_source else "failed", False, msg)
    if isinstance(cause, ProtocolNotSupported | NotImplementedError):
        return Verdict("exclude_source" if at_source else "failed", False, msg)
    if isinstance(cause, TransientStorageError | TimeoutError | ConnectionError):
        return Verdict("retry", True, msg)
    if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
        return Verdict("failed", False, f"{where}: no space left: {cause}")
    if isinstance(cause, OSError) and cause.errno in (errno.EDQUOT, errno.EROFS):
        return Verdict("failed", False, msg)
    if isinstance(cause, OSError) and cause.errno in (
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.EAGAIN,
        errno.EIO,
    ):
        return Verdict("retry", True, msg)
    if isinstance(cause, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return Verdict("failed", False, msg)
    # unknown errors: retry a bounded number of times rather than lose the request
    return Verdict("retry", True, msg)


def backoff(attempt: int, base: float = 2.0, cap: float = 600.0) -> float:
    """Seconds before attempt ``attempt + 1``: exponential, capped."""
    return float(min(cap, base ** min(max(1, attempt), 64)))
