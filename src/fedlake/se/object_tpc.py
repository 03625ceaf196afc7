"""HTTP third-party copy (``COPY``) for the SE over an S3 bucket (``se.object_app``).

The protocol is ``se.tpc``'s (the WLCG HTTP-TPC spec): the same headers, allow-list,
redirect rule, ``202`` with performance markers and the final ``success:``/``failure:``
line, reused from there. What differs is where the bytes go:

- pull (``Source``): the source is streamed into the S3 plugin's upload; the object
  appears only when all the bytes the source announced arrived and match the checksum
  it offered (``Digest``), else nothing is stored;
- push (``Destination``): the object is read from S3 (one block ahead) and PUT to the
  destination, with ``Digest: adler32=...`` when the SE knows it without reading.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import httpx

from fedlake.domain.checksums import Digest
from fedlake.domain.errors import ChecksumMismatch
from fedlake.se.headers import BadHeader, parse_digest
from fedlake.se.http import HTTPError
from fedlake.se.object_app import BodyFeed, private, storage_errors
from fedlake.se.tpc import (
    Progress,
    TransferFailed,
    copy_headers,
    describe,
    forwarded_headers,
    pull,
    push,
    remote_url,
    report,
)

if TYPE_CHECKING:
    from fedlake.se.object_app import ObjectRequest, ObjectSE
    from fedlake.se.object_store import Entry

__all__ = ["copy"]

BLOCK = 8 * 1024 * 1024


@storage_errors
async def copy(se: ObjectSE, req: ObjectRequest) -> None:
    """``COPY`` with ``Source`` (pull into this path) or ``Destination`` (push it)."""
    source, destination, overwrite = copy_headers(req)
    config = req.ctx.config.tpc
    path = se.path(req)
    if source is not None:
        url = remote_url(source, "Source", config)
        found = await se.file_target(req, path, "COPY with Source")
        if found is not None and not overwrite:
            raise HTTPError(412, f"{path} exists (Overwrite: F)")
        required = (req.header("requirechecksumverification") or "").strip().lower() == "true"
        pull = _Pull(se, req, path, url, overwrite=overwrite, require_checksum=required)
        await report(req, pull.run)
    else:
        url = remote_url(destination, "Destination", config)
        entry = await se.existing(req, path)
        if entry.is_dir:
            raise HTTPError(405, f"{path} is a collection; COPY pushes files only")
        req.authorize("read", path)
        await report(req, _Push(se, req, entry, url, overwrite=overwrite).run)


class _Pull:
    def __init__(
        self,
        se: ObjectSE,
        req: ObjectRequest,
        path: str,
        url: str,
        *,
        overwrite: bool,
        require_checksum: bool,
    ) -> None:
        self.se, self.req, self.path, self.url = se, req, path, url
        self.overwrite = overwrite
        self.require_checksum = require_checksum

    async def run(self, progress: Progress) -> None:
        await pull(self.req, self.url, progress, self._receive)

    def _expected(self, response: httpx.Response) -> Digest | None:
        offered: dict[str, str] = {}
        with contextlib.suppress(BadHeader):
            offered = parse_digest(response.headers.get("digest") or "")
        if self.require_checksum and not offered:
            raise TransferFailed(
                "the source offers no adler32 or md5 checksum and checksum verification "
                "was required (RequireChecksumVerification: true)"
            )
        length = response.headers.get("content-length")
        if length is None or not length.strip().isdigit():
            if offered:
                raise TransferFailed(
                    "the source announced no Content-Length; its checksum cannot be checked"
                )
            return None
        return Digest(int(length), offered.get("adler32", ""), offered.get("md5"))

    async def _receive(self, response: httpx.Response, progress: Progress) -> None:
        expected = self._expected(response)
        feed = BodyFeed(asyncio.get_running_loop())
        store = self.se.store
        upload = asyncio.ensure_future(
            self.req.ctx.run(store.write, self.path, feed, expected, overwrite=self.overwrite)
        )
        try:
            buffer = bytearray()
            async for chunk in response.aiter_bytes():
                buffer += chunk
                progress.bytes += len(chunk)
                if len(buffer) >= BLOCK:
                    block, buffer = bytes(buffer), bytearray()
                    if not await feed.put(block, upload):
                        break
            else:
                if buffer:
                    await feed.put(bytes(buffer), upload)
                await feed.put(None, upload)
        except httpx.HTTPError as exc:
            feed.fail(ConnectionAbortedError("the source broke off"))
            with contextlib.suppress(BaseException):
                await upload
            raise TransferFailed(
                f"reading {self.url} failed after {progress.bytes} bytes: {describe(exc)}; "
                "nothing was stored"
            ) from None
        except BaseException:
            feed.fail(ConnectionAbortedError("the copy was cancelled"))
            with contextlib.suppress(BaseException):
                await upload
            raise
        try:
            await upload
        except ChecksumMismatch as exc:
            raise TransferFailed(
                f"checksum mismatch: the {progress.bytes} bytes received have {private(exc)} "
                f"(the source's Digest); nothing was stored at {self.path}"
            ) from None
        except FileExistsError:
            raise TransferFailed(f"{self.path} was created meanwhile (Overwrite: F)") from None


class _Push:
    def __init__(
        self, se: ObjectSE, req: ObjectRequest, entry: Entry, url: str, *, overwrite: bool
    ) -> None:
        self.se, self.req, self.entry, self.url = se, req, entry, url
        self.overwrite = overwrite

    def _headers(self) -> dict[str, str]:
        headers = forwarded_headers(self.req.headers)
        headers["content-length"] = str(self.entry.size)
        if "adler32" in self.entry.sums:
            headers["digest"] = f"adler32={self.entry.sums['adler32']}"
        if not self.overwrite:
            headers["if-none-match"] = "*"
        return headers

    async def run(self, progress: Progress) -> None:
        run = self.req.ctx.run
        store, entry = self.se.store, self.entry

        async def body() -> AsyncIterator[bytes]:  # called again after a redirect
            progress.bytes = 0
            chunks: Iterator[bytes] = store.read(entry.path, 0, entry.size)
            try:
                while (data := await run(next, chunks, None)) is not None:
                    yield data
                    progress.bytes += len(data)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        await run(close)
            if progress.bytes != entry.size:
                raise TransferFailed(
                    f"{entry.path} changed while being sent ({progress.bytes} of "
                    f"{entry.size} bytes)"
                )

        await push(self.req, self.url, self._headers(), body)
