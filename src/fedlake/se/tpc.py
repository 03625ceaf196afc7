"""HTTP third-party copy (the WLCG HTTP-TPC protocol): ``COPY`` makes this SE move a file
to or from another server, without the bytes passing through the client.

- Pull: ``COPY /local/path`` with ``Source: https://remote/file``. This SE GETs the
  source and writes it as a PUT does (:class:`fedlake.se.write.AtomicFile`: a temporary
  renamed only once complete), checking the size the source announced and, when the
  source offers one (``Digest`` in answer to ``Want-Digest``), its checksum. The caller
  needs ``create`` on the local path (``modify`` when it replaces a file).
- Push: ``COPY /local/path`` with ``Destination: https://remote/file``. This SE PUTs the
  local file there, with ``Digest: adler32=...`` when it knows the checksum, so a
  destination that checks digests (this SE does) refuses damaged bytes. The caller needs
  ``read`` on the local path.

Headers named ``TransferHeader<Name>`` are sent to the remote server as ``<Name>``: that is
how the remote side's token travels (``TransferHeaderAuthorization: Bearer ...``). The
remote server must be allowed by ``[tpc] allow`` (default: loopback only); redirects are
followed on the same host only.

The answer is ``202 Accepted`` with a ``text/plain`` body streamed while the copy runs: a
performance marker every ``[tpc] marker_interval`` seconds, in the format of XrdHttpTPC,
StoRM and dCache, which gfal2/davix, FTS and the lake's own client read::

    Perf Marker
    Timestamp: 1795317563
    Stripe Index: 0
    Stripe Bytes Transferred: 10000000
    Total Stripe Count: 1
    End

then one final line, ``success: Created`` or ``failure: <reason>``. A failed pull leaves
no file (and an old one untouched); a client that goes away cancels the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import ssl
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urljoin, urlunsplit

import httpx

from fedlake.se.headers import BadHeader, parse_digest, parse_overwrite
from fedlake.se.http import HTTPError, Request
from fedlake.se.tpc_config import TPCConfig, normalise_url
from fedlake.se.write import BLOCK, AtomicFile, DigestMismatch, parent_dir

__all__ = [
    "Progress",
    "TransferFailed",
    "copy",
    "copy_headers",
    "describe",
    "forwarded_headers",
    "http_client",
    "one_line",
    "perf_marker",
    "pull",
    "push",
    "refusal",
    "remote_url",
    "report",
    "send",
]

log = logging.getLogger("fedlake.se")

PREFIX = "transferheader"
#: headers that describe one connection, never forwarded
_NOT_FORWARDED = {
    "connection",
    "content-length",
    "expect",
    "host",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
_REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
PUSH_BLOCK = 1024 * 1024


class TransferFailed(Exception):
    """The copy failed after ``202`` was sent: the reason goes on the ``failure:`` line."""


def forwarded_headers(headers: dict[str, str]) -> dict[str, str]:
    """``TransferHeader<Name>: v`` of the request as ``<name>: v`` (lower-case names)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        if name.startswith(PREFIX) and len(name) > len(PREFIX):
            real = name[len(PREFIX) :]
            if real not in _NOT_FORWARDED:
                out[real] = value
    return out


def perf_marker(transferred: int, now: float | None = None) -> bytes:
    """One performance marker (a single stripe)."""
    stamp = int(time.time() if now is None else now)
    return (
        f"Perf Marker\nTimestamp: {stamp}\nStripe Index: 0\n"
        f"Stripe Bytes Transferred: {transferred}\nTotal Stripe Count: 1\nEnd\n"
    ).encode()


def one_line(text: str, limit: int = 500) -> str:
    return " ".join(text.split())[:limit]


def remote_url(value: str | None, header: str, config: TPCConfig) -> str:
    """The remote URL of ``Source``/``Destination`` as http(s), if it is allowed."""
    try:
        scheme, host, port, path = normalise_url(value or "")
    except ValueError as exc:
        raise BadHeader(f"{header}: {exc}") from None
    reason = config.refusal(value or "")
    if reason is not None:
        raise HTTPError(403, reason)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    query = value.partition("?")[2] if value and "?" in value else ""
    return urlunsplit((scheme, netloc, path, query, ""))


def _origin(url: str) -> tuple[str, str, int]:
    scheme, host, port, _ = normalise_url(url)
    return scheme, host, port


@functools.lru_cache(maxsize=8)
def _ssl_context(ca_file: str | None, ca_dir: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file, capath=ca_dir)


def http_client(config: TPCConfig) -> httpx.AsyncClient:
    verify: ssl.SSLContext | bool = False
    if config.verify_tls:
        verify = _ssl_context(config.ca_file, config.ca_dir)
    return httpx.AsyncClient(
        verify=verify,
        timeout=httpx.Timeout(config.timeout),
        follow_redirects=False,
        trust_env=False,
    )


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    body: Callable[[], AsyncIterator[bytes]] | None = None,
) -> httpx.Response:
    """Send, following redirects to the same scheme, host and port only (streamed)."""
    for _ in range(MAX_REDIRECTS + 1):
        request = client.build_request(
            method, url, headers=headers, content=body() if body is not None else None
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise TransferFailed(f"{method} {url} failed: {describe(exc)}") from None
        location = response.headers.get("location")
        if response.status_code not in _REDIRECTS or not location:
            return response
        await response.aclose()
        target = urljoin(url, location)
        try:
            same = _origin(target) == _origin(url)
        except ValueError:
            same = False
        if not same:
            raise TransferFailed(
                f"{url} redirects to {target[:300]}: redirects are followed on the same host only"
            )
        url = target
    raise TransferFailed(f"{method} {url}: more than {MAX_REDIRECTS} redirects")


def describe(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"Couldn't connect to server ({one_line(str(exc), 200)})"
    if isinstance(exc, httpx.TimeoutException):
        return f"operation timed out ({type(exc).__name__})"
    return one_line(str(exc), 300) or type(exc).__name__


async def refusal(response: httpx.Response, what: str) -> TransferFailed:
    try:
        text = (await response.aread())[:400].decode("utf-8", "replace")
    except httpx.HTTPError:
        text = ""
    finally:
        await response.aclose()
    detail = f": {one_line(text, 300)}" if text.strip() else ""
    return TransferFailed(f"{what} failed with status code {response.status_code}{detail}")


class Progress:
    """Bytes moved so far (what the markers report)."""

    def __init__(self) -> None:
        self.bytes = 0


# --- pull ------------------------------------------------------------------------------


async def pull(
    req: Request[Any],
    url: str,
    progress: Progress,
    receive: Callable[[httpx.Response, Progress], Awaitable[None]],
) -> None:
    """GET the source at ``url`` (its checksum asked for, the request's ``TransferHeader*``
    forwarded) and hand the streamed answer to ``receive``; a refusal is TransferFailed."""
    headers = forwarded_headers(req.headers)
    headers.setdefault("want-digest", "adler32, md5;q=0.5")
    headers["accept-encoding"] = "identity"
    async with http_client(req.ctx.config.tpc) as client:
        response = await send(client, "GET", url, headers)
        try:
            if response.status_code != 200:
                raise await refusal(response, f"GET {url}")
            await receive(response, progress)
        finally:
            await response.aclose()


class _Pull:
    def __init__(self, req: Request, url: str, overwrite: bool) -> None:
        self.req = req
        self.url = url
        self.overwrite = overwrite
        self.target = req.resolve()
        if self.target.is_root or req.path.endswith("/"):
            raise HTTPError(405, "COPY with Source needs a file name, not a collection")
        self.parent = parent_dir(self.target)
        existing = os.path.lexists(self.target.entry)
        if existing and os.path.isdir(self.target.entry):
            raise HTTPError(405, f"{self.target.url_path} is a collection; COPY writes files")
        req.authorize("modify" if existing else "create", self.target)
        if existing and not overwrite:
            raise HTTPError(412, f"{self.target.url_path} exists (Overwrite: F)")
        self.require_checksum = (
            req.header("requirechecksumverification") or ""
        ).strip().lower() == "true"

    async def run(self, progress: Progress) -> None:
        await pull(self.req, self.url, progress, self._receive)

    async def _receive(self, response: httpx.Response, progress: Progress) -> None:
        offered: dict[str, str] = {}
        with contextlib.suppress(BadHeader):
            offered = parse_digest(response.headers.get("digest") or "")
        # one checksum is enough: adler32 (cheap) when offered, else md5
        expected = {"adler32": offered["adler32"]} if "adler32" in offered else offered
        if self.require_checksum and not expected:
            raise TransferFailed(
                "the source offers no adler32 or md5 checksum and checksum verification "
                "was required (RequireChecksumVerification: true)"
            )
        length = response.headers.get("content-length")
        announced = int(length) if length and length.strip().isdigit() else None
        name = self.target.url_path
        with AtomicFile(self.req, self.target, self.parent, md5="md5" in expected) as out:
            await self._stream(response, out, progress)
            size = out.sink.size
            if announced is not None and size != announced:
                raise TransferFailed(
                    f"the source sent {size} of the {announced} bytes it announced; "
                    "nothing was stored"
                )
            try:
                got = await out.finish(expected)
            except DigestMismatch as exc:
                raise TransferFailed(
                    f"checksum mismatch: the {size} bytes received have {exc} (the source's "
                    f"Digest); nothing was stored at {name}"
                ) from None
            try:
                out.commit(got, no_replace=not self.overwrite)
            except FileExistsError:
                raise TransferFailed(f"{name} was created meanwhile (Overwrite: F)") from None

    async def _stream(self, response: httpx.Response, out: AtomicFile, progress: Progress) -> None:
        loop = asyncio.get_running_loop()
        pool = self.req.ctx.pool
        pieces: list[bytes] = []  # as received, written with writev (se.write._Sink)
        held = 0
        pending: asyncio.Future[None] | None = None
        try:
            async for chunk in response.aiter_bytes():
                pieces.append(chunk)
                held += len(chunk)
                progress.bytes += len(chunk)
                if held >= BLOCK:
                    if pending is not None:
                        await pending
                    block, pieces, held = pieces, [], 0
                    pending = loop.run_in_executor(pool, out.sink.write_all, block)
            if pending is not None:
                await pending
                pending = None
            if pieces:
                await loop.run_in_executor(pool, out.sink.write_all, pieces)
        except httpx.HTTPError as exc:
            raise TransferFailed(
                f"reading {self.url} failed after {progress.bytes} bytes: {describe(exc)}; "
                "nothing was stored"
            ) from None
        finally:
            if pending is not None:
                with contextlib.suppress(BaseException):
                    await pending


# --- push ------------------------------------------------------------------------------


async def push(
    req: Request[Any],
    url: str,
    headers: dict[str, str],
    body: Callable[[], AsyncIterator[bytes]],
) -> None:
    """PUT ``body`` (called again after a redirect) to ``url``; a refusal is TransferFailed."""
    async with http_client(req.ctx.config.tpc) as client:
        response = await send(client, "PUT", url, headers, body)
        try:
            if response.status_code not in (200, 201, 204):
                raise await refusal(response, f"PUT {url}")
        finally:
            await response.aclose()


class _Push:
    def __init__(self, req: Request, url: str, overwrite: bool) -> None:
        self.req = req
        self.url = url
        self.overwrite = overwrite
        source = req.resolve()
        if source.stat is None:
            raise FileNotFoundError(2, f"{source.url_path}: no such file")
        if stat.S_ISDIR(source.stat.st_mode):
            raise HTTPError(405, f"{source.url_path} is a collection; COPY pushes files only")
        req.authorize("read", source)
        self.source = source
        self.size = source.stat.st_size
        self.checksums = req.ctx.store.get(source.fs_path, source.stat)

    def _headers(self) -> dict[str, str]:
        headers = forwarded_headers(self.req.headers)
        headers["content-length"] = str(self.size)
        if "adler32" in self.checksums:
            headers["digest"] = f"adler32={self.checksums['adler32']}"
        if not self.overwrite:
            headers["if-none-match"] = "*"
        return headers

    async def run(self, progress: Progress) -> None:
        fd = os.open(self.source.fs_path, os.O_RDONLY | os.O_CLOEXEC)
        try:

            async def body() -> AsyncIterator[bytes]:
                progress.bytes = 0
                offset = 0
                while offset < self.size:
                    n = min(PUSH_BLOCK, self.size - offset)
                    data = await self.req.ctx.run(os.pread, fd, n, offset)
                    if not data:
                        raise TransferFailed(
                            f"{self.source.url_path} shrank while being sent ({offset} bytes)"
                        )
                    offset += len(data)
                    yield data
                    progress.bytes = offset

            await push(self.req, self.url, self._headers(), body)
        finally:
            os.close(fd)


# --- the handler -----------------------------------------------------------------------


async def _until_disconnect(req: Request[Any]) -> None:
    while True:
        message = await req.receive()
        if message["type"] == "http.disconnect":
            return


async def report(req: Request[Any], job: Callable[[Progress], Awaitable[None]]) -> None:
    """Run ``job``, answering 202 with performance markers and the final line."""
    progress = Progress()
    interval = req.ctx.config.tpc.marker_interval
    await req.start(202, [("content-type", "text/plain; charset=utf-8")])
    task = asyncio.ensure_future(job(progress))
    gone = asyncio.ensure_future(_until_disconnect(req))
    try:
        while not task.done():
            await asyncio.wait({task, gone}, timeout=interval, return_when="FIRST_COMPLETED")
            if gone.done() and not task.done():
                log.info("COPY %s: the client went away; copy cancelled", req.path)
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                return
            if not task.done():
                await req.body(perf_marker(progress.bytes), more=True)
        try:
            task.result()
            final = "success: Created"
        except TransferFailed as exc:
            final = f"failure: {one_line(str(exc))}"
        except OSError as exc:
            final = f"failure: {one_line(str(exc))}"
        except Exception as exc:
            log.exception("COPY %s failed", req.path)
            final = f"failure: internal error ({type(exc).__name__}); see the SE log"
        if final.startswith("success"):
            await req.body(perf_marker(progress.bytes), more=True)
        await req.body(f"{final}\n".encode())
    finally:
        for t in (task, gone):
            if not t.done():
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t


def copy_headers(req: Request[Any]) -> tuple[str | None, str | None, bool]:
    """``Source``, ``Destination`` (exactly one of them) and ``Overwrite`` of a COPY."""
    source, destination = req.header("source"), req.header("destination")
    if (source is None) == (destination is None):
        raise HTTPError(
            400,
            "COPY needs either a Source header (pull into this path) or a Destination "
            "header (push this file), not both and not neither",
        )
    return source, destination, parse_overwrite(req.header("overwrite"))


async def copy(req: Request) -> None:
    """``COPY`` with ``Source`` (pull) or ``Destination`` (push)."""
    source, destination, overwrite = copy_headers(req)
    config = req.ctx.config.tpc
    job: _Pull | _Push
    if source is not None:
        job = _Pull(req, remote_url(source, "Source", config), overwrite)
    else:
        job = _Push(req, remote_url(destination, "Destination", config), overwrite)
    await report(req, job.run)
