"""The reading methods: GET (with ranges), HEAD (with ``Want-Digest``), PROPFIND, OPTIONS.

GET of a whole file bigger than ``SMALL`` is handed to the server by path where it can
send files itself (``http.response.pathsend``: granian). Otherwise, and for ranges, GET
streams the file in big blocks read by a worker thread one block ahead of the socket
(small answers are read at once, in the event loop); a client that goes away stops the
stream. A list of ranges is answered as ``se.ranges`` decides (a ``multipart/byteranges``
body, streamed the same way). ``Want-Digest`` on GET or HEAD adds ``Digest`` (adler32 in
hex, md5 in base64, computed once and kept: ``se.checksums``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Iterator, Sequence
from typing import Any

from fedlake.se.headers import (
    ByteRange,
    Unsatisfiable,
    format_digest,
    parse_depth,
    parse_range,
    parse_ranges,
    parse_want_digest,
)
from fedlake.se.http import HTTPError, Request
from fedlake.se.propfind import etag, http_date, listing, multistatus
from fedlake.se.ranges import CONTENT_TYPE, Multipart, Piece, body_length, choose

__all__ = ["ALLOW", "get", "head", "options", "propfind", "select_range", "select_ranges"]

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
    ]
    digest = await _digest_header(req, target.fs_path, st)
    if digest is not None:
        headers.append(digest)
    status, pieces = select_ranges(req, st.st_size, headers, with_body=with_body)
    if not with_body:
        await req.respond(status, headers)
        return
    if status == 200 and st.st_size > SMALL and req.can_pathsend():
        # the server opens the file and sends it (a file removed meanwhile: its 404)
        await req.start(status, headers)
        await req.pathsend(target.fs_path)
        return
    fd = os.open(target.fs_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if body_length(pieces) <= SMALL:
            data = _read_pieces(fd, pieces)
            await req.start(status, headers)
            await req.body(data)
        else:
            await req.start(status, headers)
            await _stream(req, fd, pieces)
    finally:
        os.close(fd)


def _range_header(req: Request[Any], headers: list[tuple[str, str]]) -> str | None:
    """The ``Range`` to honour: none when ``If-Range`` names another version of the file
    (RFC 9110 §13.1.5: an entity tag compared strongly with ``ETag``, or a date equal to
    ``Last-Modified``); the client then gets the whole file, not pieces of a new one."""
    spec = req.header("range")
    condition = req.header("if-range")
    if spec is None or condition is None:
        return spec
    condition = condition.strip()
    ours = dict(headers)
    if condition.startswith(('"', "W/")):
        tag = ours.get("etag")
        holds = tag is not None and not condition.startswith("W/") and condition == tag
    else:
        holds = condition == ours.get("last-modified")
    return spec if holds else None


def select_range(
    req: Request[Any], size: int, headers: list[tuple[str, str]], *, with_body: bool
) -> tuple[int, int, int]:
    """(status, offset, length) of the answer to a GET/HEAD of ``size`` bytes: the one
    ``Range`` asked for (206; 416 when it lies past the end), else all of it (200: also
    for a list of ranges). Adds ``Content-Range`` and ``Content-Length`` to ``headers``."""
    status, offset, length = 200, 0, size
    spec = _range_header(req, headers)
    if with_body and spec is not None:
        try:
            wanted = parse_range(spec, size)
        except Unsatisfiable as exc:
            raise _unsatisfiable(spec, size, exc) from None
        if wanted is not None:
            status, offset, length = 206, wanted.start, wanted.length
            headers.append(("content-range", wanted.content_range()))
    headers.append(("content-length", str(length)))
    return status, offset, length


def select_ranges(
    req: Request[Any], size: int, headers: list[tuple[str, str]], *, with_body: bool
) -> tuple[int, list[Piece]]:
    """(status, body) of the answer to a GET/HEAD of ``size`` bytes: the ranges asked for
    (206, one range or ``multipart/byteranges`` as ``se.ranges.choose`` decides; 416 when
    none lies within the file), else all of it (200). HEAD ignores ``Range`` (RFC 9110
    §14.2: range handling is defined for GET only). Adds ``Content-Type``,
    ``Content-Range`` and ``Content-Length`` to ``headers``."""
    spec = _range_header(req, headers)
    chosen: ByteRange | Multipart | None = None
    if with_body and spec is not None:
        try:
            chosen = choose(parse_ranges(spec, size))
        except Unsatisfiable as exc:
            raise _unsatisfiable(spec, size, exc) from None
    if isinstance(chosen, Multipart):
        headers += [("content-type", chosen.content_type), ("content-length", str(chosen.length))]
        return 206, chosen.pieces()
    headers.append(("content-type", CONTENT_TYPE))
    if chosen is None:
        headers.append(("content-length", str(size)))
        return 200, [(0, size)]
    headers += [("content-range", chosen.content_range()), ("content-length", str(chosen.length))]
    return 206, [(chosen.start, chosen.length)]


def _unsatisfiable(spec: str, size: int, exc: Unsatisfiable) -> HTTPError:
    return HTTPError(416, f"Range {spec[:100]!r}: {exc}", [("content-range", f"bytes */{size}")])


def _read_exactly(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    while len(data) < length:
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            raise OSError(f"the file shrank while being read ({len(data)} of {length} bytes)")
        data += more
    return data


def _read_pieces(fd: int, pieces: Sequence[Piece]) -> bytes:
    return b"".join(p if isinstance(p, bytes) else _read_exactly(fd, *p) for p in pieces)


def _blocks(pieces: Sequence[Piece]) -> Iterator[list[Piece]]:
    """The pieces in blocks of about ``BLOCK`` bytes (a region of the file is split where
    a block ends), each read in one go."""
    block: list[Piece] = []
    room = BLOCK
    for piece in pieces:
        if isinstance(piece, bytes):
            block.append(piece)
            room -= len(piece)
            continue
        offset, length = piece
        while length > 0:
            if room <= 0:
                yield block
                block, room = [], BLOCK
            n = min(room, length)
            block.append((offset, n))
            offset, length, room = offset + n, length - n, room - n
    if block:
        yield block


async def _stream(req: Request, fd: int, pieces: Sequence[Piece]) -> None:
    """Send the body ``pieces``: the next block is read while one is sent."""
    loop = asyncio.get_running_loop()
    blocks = _blocks(pieces)
    async with req.watch_disconnect() as gone:
        pending = loop.run_in_executor(req.ctx.pool, _read_pieces, fd, next(blocks, []))
        try:
            while True:
                data = await pending
                following = next(blocks, None)
                if following is not None:
                    pending = loop.run_in_executor(req.ctx.pool, _read_pieces, fd, following)
                if gone.is_set():
                    return
                await req.body(data, more=following is not None)
                if following is None:
                    return
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
