"""WLCG HTTP third-party copy: a ``COPY`` that makes one server move the bytes to another.

Pull: ``COPY <dest>`` sent to the destination with ``Source: <src>``; the destination
GETs the source. Push: ``COPY <src>`` sent to the source with ``Destination: <dest>``; the
source PUTs to the destination. Headers named ``TransferHeader<Name>`` are passed on by
the active server to the passive one as ``<Name>``: that is how the passive side's bearer
token travels (``TransferHeaderAuthorization: Bearer ...``).

The active server answers ``201``/``202`` with a chunked ``text/plain`` body of
performance markers, then one final line::

    Perf Marker
        Timestamp: 1795317563
        Stripe Index: 0
        Stripe Bytes Transferred: 10000000
        Total Stripe Count: 1
    End
    success: Created            (or: failure: <reason>)

A failed copy leaves no destination file: it is deleted (unless it was there before and
the copy refused to overwrite it). Checksums are the caller's job afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import httpx

from fedlake.storage.backends._dav import http_url, parent_url, raise_for_status, status_error
from fedlake.storage.base import TransientStorageError

if TYPE_CHECKING:
    from fedlake.storage.backends.webdav import WebDAVStorage

__all__ = ["TransferOutcome", "copy", "failure_error", "read_markers"]

_STATUS_CODE = re.compile(r"status(?: code)?[ :=]+(\d{3})\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """What the active server said at the end: ``ok``, its final text, bytes reported."""

    ok: bool
    message: str
    bytes_transferred: int


def read_markers(lines: Iterator[str]) -> TransferOutcome:
    """Follow the performance markers to the final ``success:``/``failure:`` line.

    Raises TransientStorageError when the stream ends without a final line.
    """
    done = 0
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if key == "success" and sep:
            return TransferOutcome(True, value.strip(), done)
        if key in ("failure", "failed", "aborted") and sep:
            return TransferOutcome(False, value.strip(), done)
        if key == "stripe bytes transferred" and value.strip().isdigit():
            done = int(value.strip())
    raise TransientStorageError(
        errno.EPIPE,
        f"the copy's progress stream ended without a success or failure line "
        f"({done} bytes reported)",
    )


def failure_error(reason: str, what: str) -> OSError:
    """The base.py error class for a ``failure: <reason>`` line."""
    msg = f"{what}: {reason}"
    low = reason.lower()
    if m := _STATUS_CODE.search(reason):
        return status_error(int(m.group(1)), msg)
    if "no such file" in low or "not found" in low:
        return FileNotFoundError(errno.ENOENT, msg)
    if "permission denied" in low or "forbidden" in low or "unauthoriz" in low:
        return PermissionError(errno.EACCES, msg)
    if "file exists" in low or "already exists" in low:
        return FileExistsError(errno.EEXIST, msg)
    if "no space" in low or "quota" in low:
        return OSError(errno.ENOSPC, msg)
    if "timeout" in low or "timed out" in low:
        return TimeoutError(errno.ETIMEDOUT, msg)
    if "connect" in low or "resolve" in low:
        return ConnectionError(errno.ECONNREFUSED, msg)
    return TransientStorageError(errno.EIO, msg)


def _refuse(response: httpx.Response, target: str, what: str) -> NoReturn:
    """Raise for a COPY the active server refused; its words refine a vague status."""
    try:
        raise_for_status(response, "COPY", target)
    except OSError as exc:
        if exc.errno == errno.EIO:  # e.g. XrdHttp's 400 "Unable to open ...; no such file"
            raise failure_error(str(exc.strerror), what) from exc
        raise
    raise OSError(errno.EIO, f"{what}: unexpected HTTP {response.status_code}")


def copy(
    storage: WebDAVStorage,
    source_url: str,
    dest_url: str,
    *,
    mode: str = "pull",
    source_token: str | None = None,
    dest_token: str | None = None,
    overwrite: bool = False,
) -> TransferOutcome:
    """Run one HTTP-TPC transfer; raise the mapped error when it fails."""
    if mode not in ("pull", "push"):
        raise ValueError(f"third-party copy mode {mode!r}: use 'pull' or 'push'")
    src, dst = http_url(source_url), http_url(dest_url)
    src_auth = source_token if source_token is not None else storage.token
    dst_auth = dest_token if dest_token is not None else storage.token
    what = f"COPY ({mode}) {source_url} -> {dest_url}"

    head = storage.request("HEAD", dst, token=dst_auth)
    if head.status_code < 300:
        if not overwrite:
            raise FileExistsError(errno.EEXIST, f"{what}: the destination already exists")
        # remove it first: no mix of old and new bytes, no checksum the server cached for
        # the old content (XrdHttp keeps one per mtime second) outliving it
        raise_for_status(storage.request("DELETE", dst, token=dst_auth), "DELETE", dst)
    elif head.status_code != 404:
        raise_for_status(head, "HEAD", dst)
    parent = parent_url(dst)
    if parent:
        storage.ensure_collection(parent, token=dst_auth)

    headers = {
        "Overwrite": "T" if overwrite else "F",
        "Credential": "none",  # no proxy delegation: tokens or anonymous
        "X-Number-Of-Streams": "1",
        "RequireChecksumVerification": "false",  # the caller verifies afterwards
    }
    if mode == "pull":
        target, token, passive_token = dst, dst_auth, source_token
        headers["Source"] = src
    else:
        target, token, passive_token = src, src_auth, dest_token
        headers["Destination"] = dst
    if passive_token:
        headers["TransferHeaderAuthorization"] = f"Bearer {passive_token}"

    try:
        with storage.stream("COPY", target, headers=headers, token=token) as r:
            if r.status_code not in (200, 201, 202):
                _refuse(r, target, what)
            outcome = read_markers(r.iter_lines())
        if not outcome.ok:
            raise failure_error(
                outcome.message or "no reason given",
                f"{what} failed after {outcome.bytes_transferred} bytes",
            )
    except FileExistsError:
        raise  # the destination was not ours to remove
    except BaseException:
        with contextlib.suppress(Exception):
            storage.request("DELETE", dst, token=dst_auth)
        raise
    return outcome
