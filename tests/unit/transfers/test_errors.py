"""Failure verdicts: retry, try another source, or give up; and the retry backoff."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedlake.domain.errors import ChecksumMismatch, ProtocolNotSupported
from fedlake.storage.base import NotOnline, TransientStorageError
from fedlake.transfers.errors import SourceError, Verdict, backoff, classify


class _StrictErrno(OSError):
    """An OSError subclass keeps its errno without becoming ConnectionResetError & co
    (``OSError(errno.ECONNRESET, ...)`` itself is promoted to ConnectionResetError)."""


def _os(code: int) -> OSError:
    return OSError(code, f"{errno.errorcode[code]} happened", "/some/path")


# (error, at source?, action, recoverable, mark_source_bad)
CASES: list[tuple[BaseException, bool, str, bool, bool]] = [
    (ChecksumMismatch("adler32 is 1, expected 2"), False, "exclude_source", False, False),
    (ChecksumMismatch("adler32 is 1, expected 2"), True, "exclude_source", False, False),
    (FileNotFoundError(errno.ENOENT, "gone", "/src/f"), True, "exclude_source", False, True),
    (FileNotFoundError(errno.ENOENT, "gone", "/dst/dir"), False, "failed", False, False),
    (FileNotFoundError("no errno at all"), False, "failed", False, False),
    (PermissionError(errno.EACCES, "denied"), True, "exclude_source", False, False),
    (PermissionError(errno.EACCES, "denied"), False, "failed", False, False),
    (_os(errno.EPERM), False, "failed", False, False),  # EPERM is a PermissionError too
    (ProtocolNotSupported("no plugin for gsiftp"), True, "exclude_source", False, False),
    (ProtocolNotSupported("no plugin for gsiftp"), False, "failed", False, False),
    (NotImplementedError("no third-party copy"), False, "failed", False, False),
    (NotImplementedError("no third-party copy"), True, "exclude_source", False, False),
    (TransientStorageError("503 Service Unavailable"), False, "retry", True, False),
    (TransientStorageError("503 Service Unavailable"), True, "retry", True, False),
    (NotOnline("on tape only"), True, "retry", True, False),
    (TimeoutError("read timed out"), False, "retry", True, False),
    (TimeoutError("read timed out"), True, "retry", True, False),
    (ConnectionError("closed mid-stream"), True, "retry", True, False),
    (ConnectionRefusedError("refused"), False, "retry", True, False),
    (_os(errno.ENOSPC), False, "failed", False, False),
    (_os(errno.ENOSPC), True, "failed", False, False),
    (_os(errno.EDQUOT), False, "failed", False, False),
    (_os(errno.EROFS), False, "failed", False, False),
    # promoted to ConnectionError / TimeoutError / BlockingIOError subclasses by OSError()
    (_os(errno.ECONNRESET), False, "retry", True, False),
    (_os(errno.ECONNREFUSED), False, "retry", True, False),
    (_os(errno.ETIMEDOUT), False, "retry", True, False),
    (_os(errno.EPIPE), False, "retry", True, False),
    (_os(errno.EAGAIN), False, "retry", True, False),
    (_os(errno.EIO), False, "retry", True, False),
    (_os(errno.EIO), True, "retry", True, False),
    (IsADirectoryError(errno.EISDIR, "a directory"), False, "failed", False, False),
    (NotADirectoryError(errno.ENOTDIR, "not a directory"), False, "failed", False, False),
    # unknown errors: retried a bounded number of times
    (RuntimeError("something odd"), False, "retry", True, False),
    (ValueError("bad URL"), True, "retry", True, False),
    (_os(errno.ENAMETOOLONG), False, "retry", True, False),
]


@pytest.mark.parametrize(
    ("exc", "at_source", "action", "recoverable", "bad"),
    CASES,
    ids=[f"{type(c[0]).__name__}-{'src' if c[1] else 'dst'}-{i}" for i, c in enumerate(CASES)],
)
def test_classify(
    exc: BaseException, at_source: bool, action: str, recoverable: bool, bad: bool
) -> None:
    v = classify(SourceError(exc) if at_source else exc)
    assert isinstance(v, Verdict)
    assert (v.action, v.recoverable, v.mark_source_bad) == (action, recoverable, bad)
    assert v.action in ("retry", "exclude_source", "failed")
    assert v.recoverable == (v.action == "retry")


@pytest.mark.parametrize(
    "code", [errno.ECONNRESET, errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EPIPE, errno.EAGAIN]
)
def test_network_errnos_retry_even_on_a_plain_oserror_subclass(code: int) -> None:
    """The errno branch itself (reached only by OSErrors that were not promoted)."""
    exc = _StrictErrno(code, "network trouble")
    assert type(exc) is _StrictErrno
    v = classify(exc)
    assert (v.action, v.recoverable) == ("retry", True)


def test_messages_say_where_and_what() -> None:
    src = classify(SourceError(FileNotFoundError(errno.ENOENT, "No such file", "/a/b")))
    assert src.message.startswith("source: FileNotFoundError: ")
    assert "/a/b" in src.message
    dst = classify(PermissionError(errno.EACCES, "Permission denied", "/x/y"))
    assert dst.message.startswith("destination: PermissionError: ")
    assert "/x/y" in dst.message
    full = classify(_os(errno.ENOSPC))
    assert full.message.startswith("destination: no space left: ")
    assert "ENOSPC" in full.message
    full_src = classify(SourceError(_os(errno.ENOSPC)))
    assert full_src.message.startswith("source: no space left: ")
    cm = classify(SourceError(ChecksumMismatch("source adler32 is 1, the catalogue says 2")))
    assert cm.message == "checksum mismatch: source adler32 is 1, the catalogue says 2"
    # an error with an empty text is named by its type
    assert classify(TimeoutError()).message == "destination: TimeoutError: TimeoutError"


def test_source_error_keeps_its_cause() -> None:
    cause = TimeoutError("slow")
    wrapped = SourceError(cause)
    assert wrapped.cause is cause
    assert str(wrapped) == "slow"


def test_verdicts_are_immutable() -> None:
    v = classify(TimeoutError("x"))
    with pytest.raises(AttributeError):
        v.action = "failed"  # type: ignore[misc]


def test_backoff_grows_exponentially_then_caps() -> None:
    assert [backoff(a) for a in range(1, 8)] == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]
    assert backoff(0) == backoff(1) == 2.0  # never zero, even before the first attempt
    assert backoff(-3) == 2.0
    assert backoff(9) == 512.0
    assert backoff(10) == 600.0  # 1024 capped
    assert backoff(99) == 600.0  # the largest attempt that can retry (max_attempts <= 100)
    assert backoff(3, base=3.0) == 27.0
    assert backoff(5, cap=10.0) == 10.0
    assert isinstance(backoff(2), float)


@given(st.integers(min_value=0, max_value=99))
def test_backoff_is_monotonic_positive_and_capped(attempt: int) -> None:
    b = backoff(attempt)
    assert 2.0 <= b <= 600.0
    assert backoff(attempt + 1) >= b


def test_backoff_is_capped_for_any_attempt() -> None:
    assert backoff(1024) == 600.0
