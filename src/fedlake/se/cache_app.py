"""The read-through cache as an ASGI application: GET and HEAD (one ``Range``) served from
the cache's blocks, ``GET /metrics`` for Prometheus.

It is the SE's application (``se.app.SEApp``: authentication, the one error table,
lifespan) with a method table of its own, and the SE's header parsing (``se.headers``)
and request helpers (``se.http``). Who may read what is decided as by ``fedlake se
serve`` (``--allow-anonymous`` or the issuers and storage areas of ``--config``);
``/metrics`` is open to all.

A GET needs the blocks its range covers: the first is there (or fetched) before the
response starts, so a missing origin file is a clean ``404``; while one block is sent,
the next is looked up (and fetched on a miss), and each block file is read one chunk
ahead of the socket by a worker thread. A hit on a whole file that is one block on disk
is handed to the server by path where it can send files itself (``http.response.pathsend``:
granian), so Python touches none of its bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedlake.domain.errors import ChecksumMismatch, ProtocolNotSupported
from fedlake.se.app import SEApp
from fedlake.se.authz import Authorizer
from fedlake.se.cache_fetch import Fetcher, Origin
from fedlake.se.cache_lake import LakeCatalogue
from fedlake.se.cache_metrics import CONTENT_TYPE, Metrics
from fedlake.se.cache_store import CacheStore, FileInfo
from fedlake.se.config import SEConfig
from fedlake.se.headers import parse_want_digest
from fedlake.se.http import BaseContext, HTTPError, Request
from fedlake.se.paths import clean_path
from fedlake.se.propfind import http_date
from fedlake.se.read import select_range
from fedlake.storage.base import TransientStorageError

__all__ = ["METHODS", "CacheContext", "CacheOptions", "create_cache_app"]

ALLOW = "OPTIONS, GET, HEAD"
CHUNK = 4 * 1024 * 1024  # bytes per read of a block file while sending
PATHSEND = 256 * 1024  # a whole-file hit bigger than this is sent by the server by path


@dataclass(frozen=True, slots=True)
class CacheOptions:
    """What ``fedlake se cache`` was asked to do (docs/se.md, "Read-through cache")."""

    origin: str
    directory: Path
    size: int
    high: float = 0.95
    low: float = 0.85
    block_size: int = 0
    origin_options: dict[str, Any] = field(default_factory=dict)
    lake: str | None = None
    lake_token: str | None = None
    config: SEConfig = field(default_factory=SEConfig)
    fsync: bool = False


@dataclass(kw_only=True)
class CacheContext(BaseContext):
    """The SE's shared context plus the cache's parts (it serves no local tree)."""

    fetcher: Fetcher | None = None
    metrics: Metrics | None = None


CacheRequest = Request[CacheContext]


def _parts(req: CacheRequest) -> tuple[Fetcher, Metrics]:
    ctx = req.ctx
    assert ctx.fetcher is not None
    assert ctx.metrics is not None
    return ctx.fetcher, ctx.metrics


@contextlib.contextmanager
def _origin_errors(path: str) -> Any:
    """Errors of the origin and the lake as HTTP answers (not found stays 404)."""
    try:
        yield
    except ChecksumMismatch as exc:
        raise HTTPError(502, f"{path}: {exc}") from None
    except IsADirectoryError:
        raise HTTPError(404, f"{path} is a directory at the origin; it serves files") from None
    except FileNotFoundError:
        raise
    except PermissionError as exc:
        raise HTTPError(502, f"{path}: the origin or the lake refused the cache: {exc}") from None
    except TimeoutError as exc:
        raise HTTPError(504, f"{path}: the origin did not answer in time: {exc}") from None
    except (TransientStorageError, ConnectionError, ProtocolNotSupported) as exc:
        raise HTTPError(502, f"{path}: the origin failed: {exc}") from None


async def options(req: CacheRequest) -> None:
    await req.respond(200, [("allow", ALLOW), ("accept-ranges", "bytes")])


async def get(req: CacheRequest) -> None:
    await _serve(req, with_body=True)


async def head(req: CacheRequest) -> None:
    await _serve(req, with_body=False)


async def _serve(req: CacheRequest, *, with_body: bool) -> None:
    fetcher, metrics = _parts(req)
    if req.path == "/metrics":
        body = await req.ctx.run(metrics.scrape)
        await req.respond(200, body=body, content_type=CONTENT_TYPE)
        return
    path = clean_path(req.path)
    req.ctx.authorizer.check(req.caller, "read", path)
    token = Authorizer.bearer(req.header("authorization"))
    with _origin_errors(path):
        info = await fetcher.info(path, token)
    headers = [
        ("last-modified", http_date(info.mtime)),
        ("etag", f'"{info.key[:16]}-{info.size:x}"'),
        ("accept-ranges", "bytes"),
        ("content-type", "application/octet-stream"),
    ]
    want = req.header("want-digest")
    if want is not None and "adler32" in parse_want_digest(want) and info.adler32:
        headers.append(("digest", f"adler32={info.adler32}"))
    status, offset, length = select_range(req, info.size, headers, with_body=with_body)
    if not with_body or length == 0:
        await req.respond(status, headers)
        return
    with _origin_errors(path):
        fd, hit = await fetcher.block(info, offset // info.span)
    if hit and status == 200 and info.blocks == 1 and length > PATHSEND and req.can_pathsend():
        # the block was just found and marked as used: the last one eviction would take
        os.close(fd)
        await req.start(status, headers)
        await req.pathsend(fetcher.store.block_path(info.key, 0))
        metrics.block_hits.inc()
        metrics.hit_bytes.inc(length)
        metrics.hits.inc()
        return
    try:
        await req.start(status, headers)
    except BaseException:
        os.close(fd)
        raise
    await _send(req, fetcher, metrics, info, (fd, hit), offset, length)


async def _send(
    req: CacheRequest,
    fetcher: Fetcher,
    metrics: Metrics,
    info: FileInfo,
    first: tuple[int, bool],
    offset: int,
    length: int,
) -> None:
    """Send ``length`` bytes from ``offset``, block after block (the next one looked up
    while this one is sent); ``first`` is the first block, already opened."""
    fd, hit = first
    idx = offset // info.span
    following: asyncio.Future[tuple[int, bool]] | None = None
    all_hits = True
    try:
        async with req.watch_disconnect() as gone:
            while True:
                start, size = info.block_range(idx)
                n = min(length, start + size - offset)
                if n < length:
                    following = asyncio.ensure_future(fetcher.block(info, idx + 1))
                metrics.block_hits.inc() if hit else metrics.block_misses.inc()
                all_hits = all_hits and hit
                await _pump(req, fd, offset - start, n, gone, more=n < length)
                (metrics.hit_bytes if hit else metrics.miss_bytes).inc(n)
                os.close(fd)
                fd = -1
                offset, length = offset + n, length - n
                if length == 0 or gone.is_set() or following is None:
                    return
                fd, hit = await following
                following = None
                idx += 1
    finally:
        (metrics.hits if all_hits else metrics.misses).inc()
        if fd >= 0:
            os.close(fd)
        if following is not None:
            following.cancel()
            following.add_done_callback(_close_block)


def _close_block(task: asyncio.Future[tuple[int, bool]]) -> None:
    if not task.cancelled() and task.exception() is None:
        with contextlib.suppress(OSError):
            os.close(task.result()[0])


async def _pump(
    req: CacheRequest, fd: int, offset: int, length: int, gone: asyncio.Event, *, more: bool
) -> None:
    """Send ``length`` bytes of a block file from ``offset``, one read ahead."""
    loop = asyncio.get_running_loop()
    pool = req.ctx.pool
    pending = loop.run_in_executor(pool, os.pread, fd, min(CHUNK, length), offset)
    try:
        left = length
        while left > 0:
            data = await pending
            if not data:
                raise OSError(f"a block shrank while being sent ({length - left} of {length})")
            left -= len(data)
            offset += len(data)
            if left > 0:
                pending = loop.run_in_executor(pool, os.pread, fd, min(CHUNK, left), offset)
            if gone.is_set():
                return
            await req.body(data, more=more or left > 0)
    finally:
        with contextlib.suppress(BaseException):
            await pending  # never close the descriptor under a running read


METHODS = {"OPTIONS": options, "GET": get, "HEAD": head}


def create_cache_app(options: CacheOptions) -> SEApp:
    """The cache application (one per worker process: thread pool, index connections)."""
    store = CacheStore(
        options.directory,
        options.size,
        high=options.high,
        low=options.low,
        block_size=options.block_size,
        fsync=options.fsync,
    )
    metrics = Metrics(store)
    catalogue = (
        LakeCatalogue(options.lake, token=options.lake_token) if options.lake is not None else None
    )
    ctx = CacheContext(
        config=options.config,
        authorizer=Authorizer(options.config),
        threads=32,
    )
    ctx.metrics = metrics
    ctx.fetcher = Fetcher(
        Origin(options.origin, options.origin_options), store, metrics, ctx.run, catalogue
    )
    return SEApp(ctx, dict(METHODS))
