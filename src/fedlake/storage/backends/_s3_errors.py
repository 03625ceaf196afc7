"""S3 replies and botocore exceptions mapped onto the storage error classes of base.py.

    NoSuchKey, 404, NoSuchUpload              -> FileNotFoundError
    NoSuchBucket                              -> FileNotFoundError naming the bucket
    AccessDenied, 401/403, InvalidAccessKeyId,
      SignatureDoesNotMatch, no credentials,
      a refused TLS certificate               -> PermissionError
    PreconditionFailed, 412 (If-None-Match)   -> FileExistsError
    EntityTooLarge, QuotaExceeded, 507        -> OSError(ENOSPC)
    5xx, 429, SlowDown, ServiceUnavailable,
      RequestTimeout, BadDigest (bytes changed
      on the wire), a stream cut short        -> TransientStorageError
    endpoint unreachable, connection closed   -> ConnectionError
    connect or read timeout                   -> TimeoutError
    any other 4xx (InvalidBucketName, ...)    -> OSError(EINVAL)

Every message names the URL and what the server said.
"""

from __future__ import annotations

import errno

from botocore import exceptions as bx

from fedlake.storage.base import TransientStorageError

__all__ = ["error_code", "map_error"]

_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchUpload", "NotFound", "404"})
_DENIED = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidSecurity",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "403",
    }
)
_NO_SPACE = frozenset({"EntityTooLarge", "InsufficientStorage", "QuotaExceeded"})
_TRANSIENT = frozenset(
    {
        "BadDigest",
        "ConditionalRequestConflict",
        "InternalError",
        "OperationAborted",
        "RequestTimeout",
        "ServiceUnavailable",
        "SlowDown",
        "ThrottlingException",
        "XAmzContentSHA256Mismatch",
    }
)
_EXISTS = frozenset({"PreconditionFailed", "412"})


def error_code(exc: bx.ClientError) -> tuple[str, int]:
    """The S3 error code and HTTP status of a reply."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return code, status


def map_error(exc: Exception, url: str, bucket: str) -> OSError:
    """The storage error for ``exc``, raised while working on ``url`` in ``bucket``."""
    if isinstance(exc, bx.ClientError):
        return _from_reply(exc, url, bucket)
    said = f"{url}: {exc}"
    if isinstance(exc, bx.ConnectTimeoutError | bx.ReadTimeoutError):
        return TimeoutError(errno.ETIMEDOUT, f"{said} (timed out)")
    if isinstance(exc, bx.SSLError):
        return PermissionError(errno.EACCES, f"{said} (TLS: check the verify option)")
    if isinstance(exc, bx.ConnectionError | bx.ConnectionClosedError):
        return ConnectionError(errno.ECONNREFUSED, said)
    if isinstance(exc, bx.ResponseStreamingError | bx.IncompleteReadError):
        return TransientStorageError(errno.EIO, f"{said} (the stream broke off)")
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return PermissionError(
            errno.EACCES,
            f"{said}: set the access_key/secret_key options or FEDLAKE_S3_ACCESS_KEY and "
            "FEDLAKE_S3_SECRET_KEY (or use anonymous=true)",
        )
    if isinstance(exc, bx.HTTPClientError):
        return ConnectionError(errno.ECONNRESET, said)
    return OSError(errno.EIO, said)


def _from_reply(exc: bx.ClientError, url: str, bucket: str) -> OSError:
    code, status = error_code(exc)
    message = exc.response.get("Error", {}).get("Message") or ""
    said = f"{url}: the server said {code or status}" + (f" ({message})" if message else "")
    if code == "NoSuchBucket":
        return FileNotFoundError(errno.ENOENT, f"bucket {bucket!r} does not exist; {said}")
    if code in _NOT_FOUND or (status == 404 and not code):
        return FileNotFoundError(errno.ENOENT, said)
    if code in _DENIED or status in (401, 403):
        return PermissionError(errno.EACCES, said)
    if code in _EXISTS or status == 412:
        return FileExistsError(errno.EEXIST, said)
    if code in _NO_SPACE or status == 507:
        return OSError(errno.ENOSPC, said)
    if code in _TRANSIENT or status >= 500 or status == 429:
        return TransientStorageError(errno.EAGAIN, said)
    if status == 404:
        return FileNotFoundError(errno.ENOENT, said)
    return OSError(errno.EINVAL, said)
