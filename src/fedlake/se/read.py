"""The reading methods: GET (with one Range), HEAD (with ``Want-Digest``), PROPFIND, OPTIONS.

GET of a whole file bigger than ``SMALL`` is handed to the server by path where it can
send files itself (``http.response.pathsend``: granian). Otherwise, and for ranges, GET
streams the file in big blocks read by a worker thread one block ahead of the socket
(small files are read at once, in the event loop); a client that goes away stops the
stream. ``Want-Digest`` on GET or HEAD adds ``Digest`` (adler32 in hex, md5 in base64,
computed once and kept: ``se.checksums``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat

from fedlake.se.headers import (
    ByteRange,
    Unsatisfiable,
    format_digest,
    parse_depth,
    parse_range,
    parse_want_digest,
)
from fedlake.se.http import HTTPError, Request
from fedlake.se.propfind import etag, http_date, listing, multistatus

__all__ = ["ALLOW", "get", "head", "options", "propfind", "select_range"]

ALLOW = "OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, MOVE, PROPFIND"
SMALL = 256 * 1024  # files up to this size are read at once
BLOCK = 2 * 1024 * 1024  # bigger ones stream in blocks of this size
PROPFIND_BODY_LIMIT = 1024 * 1024


async def options(req: Request) -> None:
    await req.respond(200, [("allow", ALLOW), ("dav", "1"), ("accept-ranges", "bytes")])


async def get(req: Request) -> None:
    await _serve(req, with_body=True)


async def head(req: Request) -> None:
    await _serve(req, with_body=False)


async def _digest_header(req: Request, fs_path: str, st: os.stat_result) -> tuple[str, str] | None:
    want = req.header("want-digest")
    if want is None:
        return None
    algorithms = parse_want_digest(want)
    if not algorithms:
        return None
    values = req.ctx.store.get(fs_path, st)
    if any(a not in values for a in algorithms):
        _, values = await req.ctx.run(req.ctx.store.checksums, fs_path, algorithms)
    return ("digest", format_digest(values, algorithms))


async def _serve(req: Request, *, with_body: bool) -> None:
    target = req.resolve()
    req.authorize("read", target)
    st = target.stat
    if st is None:
        raise FileNotFoundError(2, f"{target.url_path}: no such file or collection")
    if stat.S_ISDIR(st.st_mode):
        page = await req.ctx.run(listing, target.url_path, target.fs_path)
        await req.respond(200, body=page, content_type="text/html; charset=utf-8")
        return
    if not stat.S_ISREG(st.st_mode):
        raise HTTPError(403, f"{target.url_path} is not a regular file")
    headers = [
        ("last-modified", http_date(st.st_mtime)),
        ("etag", etag(st)),
        ("accept-ranges", "bytes"),
        ("content-type", "application/octet-stream"),
    ]
    digest = await _digest_header(req, target.fs_path, st)
    if digest is not None:
        headers.append(digest)
    status, offset, length = select_range(req, st.st_size, headers, with_body=with_body)
    if not with_body:
        await req.respond(status, headers)
        return
    if status == 200 and length > SMALL and req.can_pathsend():
        # the server opens the file and sends it (a file removed meanwhile: its 404)
        await req.start(status, headers)
        await req.pathsend(target.fs_path)
        return
    fd = os.open(target.fs_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if length <= SMALL:
            data = _read_exactly(fd, offset, length)
            await req.start(status, headers)
            await req.body(data)
        else:
            await req.start(status, headers)
            await _stream(req, fd, offset, length)
    finally:
        os.close(fd)


def select_range(
    req: Request, size: int, headers: list[tuple[str, str]], *, with_body: bool
) -> tuple[int, int, int]:
    """(status, offset, length) of the answer to a GET/HEAD of ``size`` bytes: the one
    ``Range`` asked for (206; 416 when it lies past the end), else all of it (200). Adds
    ``Content-Range`` and ``Content-Length`` to ``headers``."""
    status, offset, length = 200, 0, size
    spec = req.header("range")
    if with_body and spec is not None:
        try:
            wanted: ByteRange | None = parse_range(spec, size)
        except Unsatisfiable as exc:
            raise HTTPError(
                416, f"Range {spec!r}: {exc}", [("content-range", f"bytes */{size}")]
            ) from None
        if wanted is not None:
            status, offset, length = 206, wanted.start, wanted.length
            headers.append(("content-range", wanted.content_range()))
    headers.append(("content-length", str(length)))
    return status, offset, length


def _read_exactly(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    while len(data) < length:
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            raise OSError(f"the file shrank while being read ({len(data)} of {length} bytes)")
        data += more
    return data


async def _stream(req: Request, fd: int, offset: int, length: int) -> None:
    """Send ``length`` bytes from ``offset``: the next block is read while one is sent."""
    loop = asyncio.get_running_loop()
    async with req.watch_disconnect() as gone:
        pending = loop.run_in_executor(req.ctx.pool, os.pread, fd, min(BLOCK, length), offset)
        try:
            left = length
            while left > 0:
                data = await pending
                if not data:
                    raise OSError(f"the file shrank while being sent ({length - left} of {length})")
                left -= len(data)
                offset += len(data)
                if left > 0:
                    pending = loop.run_in_executor(
                        req.ctx.pool, os.pread, fd, min(BLOCK, left), offset
                    )
                if gone.is_set():
                    return
                await req.body(data, more=left > 0)
        finally:
            with contextlib.suppress(BaseException):
                await pending  # never close the descriptor under a running read


async def propfind(req: Request) -> None:
    target = req.resolve()
    depth = parse_depth(req.header("depth"))
    req.authorize("read", target)
    await req.discard_body(PROPFIND_BODY_LIMIT)  # the properties asked for: all are sent
    inside = req.ctx.resolver.inside
    body = await req.ctx.run(multistatus, target.url_path, target.fs_path, depth, inside)
    await req.respond(207, body=body, content_type='application/xml; charset="utf-8"')
