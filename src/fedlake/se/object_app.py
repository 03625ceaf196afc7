"""The storage element over an S3 bucket (``fedlake se serve --s3``): the same WebDAV
methods, answers and permissions as over a local directory, on ``se.object_store``.

It is the SE's application (``se.app.SEApp``: authentication, the one error table,
lifespan) with a method table of its own. What differs from a local directory:

- PUT streams the body into the S3 plugin's upload from a worker thread; the object
  appears only once complete and verified (``Digest``/``Content-MD5``), so a refused or
  cut-off upload leaves nothing, without temporaries. Parent collections need not exist
  (an object store has none to create), as with ``create_parents``.
- MKCOL writes a marker (an empty collection exists); its parent must exist (RFC 4918).
- MOVE moves files (a server-side copy, then the source is removed: not atomic, unlike
  a rename); moving a collection, which would mean copying every object below it, is
  refused with 409.
- GET and HEAD answer from the object's HEAD; ranges become ranged GETs on S3.

Errors of the S3 server reach the client as 502 (it refused the SE, or failed) or 504
(it did not answer in time); a missing object is 404 as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from fedlake.domain.checksums import Digest
from fedlake.domain.errors import ChecksumMismatch
from fedlake.se.app import SEApp
from fedlake.se.authz import Authorizer, Forbidden
from fedlake.se.config import SEConfig
from fedlake.se.headers import (
    DepthInfinity,
    format_digest,
    parse_depth,
    parse_destination,
    parse_overwrite,
    parse_want_digest,
)
from fedlake.se.http import BaseContext, HTTPError, Request
from fedlake.se.object_store import Entry, ObjectStore
from fedlake.se.paths import clean_path
from fedlake.se.propfind import entry_xml, http_date, listing_page, multistatus_body
from fedlake.se.ranges import Piece
from fedlake.se.read import PROPFIND_BODY_LIMIT, select_ranges
from fedlake.se.write import expected_digests
from fedlake.storage.backends.posix import is_temporary
from fedlake.storage.backends.s3 import ObjectChanged
from fedlake.storage.base import TransientStorageError

__all__ = [
    "BodyFeed",
    "ObjectRequest",
    "ObjectSE",
    "create_object_app",
    "private",
    "storage_errors",
]

log = logging.getLogger("fedlake.se")

ObjectRequest = Request[BaseContext]
ALLOW = "OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, MOVE, PROPFIND, COPY"
BLOCK = 8 * 1024 * 1024  # the body goes to the uploading thread in blocks of this size
Handler = Callable[["ObjectSE", ObjectRequest], Awaitable[None]]


_S3_URL = re.compile(r"s3://\S*?(: |$)")


def private(exc: BaseException) -> str:
    """The error's text without the S3 URLs in it: clients are not told where the bytes
    live (the SE's log has the whole text)."""
    return _S3_URL.sub("", str(exc)).strip() or type(exc).__name__


def storage_errors(handler: Handler) -> Handler:
    """Errors of the S3 server as HTTP answers: 502 (refused or failed), 504 (timeout);
    a missing object stays a 404 (``se.app`` maps FileNotFoundError). The S3 server's
    address and bucket stay in the SE's log."""

    @functools.wraps(handler)
    async def wrapped(self: ObjectSE, req: ObjectRequest) -> None:
        try:
            await handler(self, req)
        except (HTTPError, ConnectionAbortedError, Forbidden, DepthInfinity):
            raise
        except FileNotFoundError as exc:
            raise FileNotFoundError(2, f"{req.path}: no such file or collection") from exc
        except ObjectChanged:
            raise HTTPError(
                503, f"{req.path} was replaced while being read; read it again"
            ) from None
        except (PermissionError, TimeoutError, TransientStorageError, ConnectionError) as exc:
            log.warning("%s %s: the S3 server: %s", req.method, req.path, exc)
            if isinstance(exc, TimeoutError):
                raise HTTPError(504, "the S3 server did not answer in time") from None
            if isinstance(exc, PermissionError):
                raise HTTPError(
                    502, f"the S3 server refused the storage element: {private(exc)}"
                ) from None
            raise HTTPError(502, f"the S3 server failed: {private(exc)}") from None

    return wrapped


class BodyFeed:
    """A request body handed from the event loop to a thread that consumes it as an
    iterator (the S3 upload): blocks wait in a queue of two, so a slow upload slows the
    client down; :meth:`fail` makes the iterator raise (the upload is then aborted)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=2)
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        while True:
            future = asyncio.run_coroutine_threadsafe(self.queue.get(), self.loop)
            item = future.result()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def put(self, item: bytes | None, consumer: asyncio.Future[Any]) -> bool:
        """Queue ``item`` (None: the end); False when the consumer stopped first."""
        waiting = asyncio.ensure_future(self.queue.put(item))
        await asyncio.wait({waiting, consumer}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            return False
        return True

    def fail(self, exc: BaseException) -> None:
        """Make the consumer raise ``exc`` at its next block (whatever is queued)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(exc)

    async def fill(self, req: ObjectRequest, consumer: asyncio.Future[Any]) -> bool:
        """Pass the whole body on; False when the client went away before its end."""
        buffer = bytearray()
        while True:
            message = await req.receive()
            if message["type"] == "http.disconnect":
                self.fail(ConnectionAbortedError("the client went away mid-body"))
                return False
            chunk = message.get("body", b"")
            buffer += chunk
            self.size += len(chunk)
            more = message.get("more_body", False)
            if (len(buffer) >= BLOCK or not more) and buffer:
                block, buffer = bytes(buffer), bytearray()
                if not await self.put(block, consumer):
                    return True  # the upload ended early (its error is the answer)
            if not more:
                await self.put(None, consumer)
                return True


class ObjectSE:
    """The method handlers over one :class:`ObjectStore`."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def methods(self) -> dict[str, Callable[[ObjectRequest], Awaitable[None]]]:
        from fedlake.se.object_tpc import copy

        table = {
            "OPTIONS": self.options,
            "GET": self.get,
            "HEAD": self.head,
            "PROPFIND": self.propfind,
            "PUT": self.put,
            "DELETE": self.delete,
            "MKCOL": self.mkcol,
            "MOVE": self.move,
        }
        table["COPY"] = functools.partial(copy, self)
        return table

    # --- helpers -----------------------------------------------------------------------

    def path(self, req: ObjectRequest, raw: str | None = None) -> str:
        """The clean URL path of the request (or of ``raw``); the SE's own keys: 404."""
        path = clean_path(req.path if raw is None else raw)
        if self.store.is_hidden(path):
            raise FileNotFoundError(2, f"{path}: no such file or collection")
        return path

    async def entry(self, req: ObjectRequest, path: str) -> Entry | None:
        return await req.ctx.run(self.store.entry, path)

    async def file_target(self, req: ObjectRequest, path: str, method: str) -> Entry | None:
        """The file ``path`` that ``method`` writes (None: a new one), after the checks
        every write makes: a file name, not a collection nor below a file, and the
        caller may create it (``modify`` when it exists)."""
        if path == "/" or req.path.endswith("/"):
            raise HTTPError(405, f"{method} needs a file name, not a collection")
        found = await self.entry(req, path)
        if found is not None and found.is_dir:
            raise HTTPError(405, f"{path} is a collection; {method} writes files only")
        if found is None:
            await self.no_file_above(req, path)
        req.authorize("modify" if found is not None else "create", path)
        return found

    async def no_file_above(self, req: ObjectRequest, path: str) -> None:
        """HTTP 409 when a parent of ``path`` is a file (as in a directory: a name is a
        file or a collection, never both)."""
        above = await req.ctx.run(self.store.file_above, path)
        if above is not None:
            raise HTTPError(409, f"{above} is a file, not a collection: {path} cannot be made")

    async def existing(self, req: ObjectRequest, path: str) -> Entry:
        found = await self.entry(req, path)
        if found is None:
            raise FileNotFoundError(2, f"{path}: no such file or collection")
        return found

    # --- reading -----------------------------------------------------------------------

    async def options(self, req: ObjectRequest) -> None:
        await req.respond(200, [("allow", ALLOW), ("dav", "1"), ("accept-ranges", "bytes")])

    @storage_errors
    async def get(self, req: ObjectRequest) -> None:
        await self._serve(req, with_body=True)

    @storage_errors
    async def head(self, req: ObjectRequest) -> None:
        await self._serve(req, with_body=False)

    async def _serve(self, req: ObjectRequest, *, with_body: bool) -> None:
        path = self.path(req)
        req.authorize("read", path)
        found = await self.existing(req, path)
        if found.is_dir:
            members = await req.ctx.run(self.store.members, path)
            names = [m.path.rsplit("/", 1)[-1] + ("/" if m.is_dir else "") for m in members]
            await req.respond(
                200, body=listing_page(path, names), content_type="text/html; charset=utf-8"
            )
            return
        headers = [
            ("last-modified", http_date(found.mtime)),
            ("etag", found.etag),
            ("accept-ranges", "bytes"),
        ]
        want = req.header("want-digest")
        algorithms = parse_want_digest(want) if want is not None else []
        if algorithms:
            values = await req.ctx.run(self.store.checksums, found, algorithms)
            headers.append(("digest", format_digest(values, algorithms)))
        status, pieces = select_ranges(req, found.size, headers, with_body=with_body)
        if not with_body:
            await req.respond(status, headers)
            return
        # every range is read from the version whose size and ETag the headers give
        chunks = _pieces(self.store, path, pieces, found.etag)
        run = req.ctx.run
        try:
            data = await run(next, chunks, None)  # a vanished object: 404, before answering
            await req.start(status, headers)
            async with req.watch_disconnect() as gone:
                while data is not None:
                    # the next chunk is read from S3 while this one is sent
                    following = asyncio.ensure_future(run(next, chunks, None))
                    try:
                        if gone.is_set():
                            return
                        await req.body(data, more=True)
                    finally:
                        if gone.is_set() or not following.done():
                            with contextlib.suppress(BaseException):
                                await asyncio.wait({following})
                    data = following.result()
                if not gone.is_set():
                    await req.body(b"")
        finally:
            with contextlib.suppress(Exception):
                await run(_close, chunks)

    @storage_errors
    async def propfind(self, req: ObjectRequest) -> None:
        path = self.path(req)
        depth = parse_depth(req.header("depth"))
        req.authorize("read", path)
        await req.discard_body(PROPFIND_BODY_LIMIT)
        found = await self.existing(req, path)
        entries = [found]
        if depth == 1 and found.is_dir:
            entries += await req.ctx.run(self.store.members, path)
        parts = [
            entry_xml(e.path, e.is_dir, e.size, e.mtime, e.etag or f'"{int(e.mtime):x}"')
            for e in entries
        ]
        await req.respond(
            207, body=multistatus_body(parts), content_type='application/xml; charset="utf-8"'
        )

    # --- writing -----------------------------------------------------------------------

    @storage_errors
    async def put(self, req: ObjectRequest) -> None:
        path = self.path(req)
        existing = await self.file_target(req, path, "PUT") is not None
        no_replace = (req.header("if-none-match") or "").strip() == "*"
        if no_replace and existing:
            raise HTTPError(412, f"{path} exists (If-None-Match: *)")
        expected = _expected(req)
        feed = BodyFeed(asyncio.get_running_loop())
        upload = asyncio.ensure_future(
            req.ctx.run(self.store.write, path, feed, expected, overwrite=not no_replace)
        )
        try:
            whole = await feed.fill(req, upload)
        except BaseException:
            feed.fail(ConnectionAbortedError("the request was cancelled"))
            with contextlib.suppress(BaseException):
                await upload
            raise
        try:
            await upload
        except ConnectionAbortedError:
            return  # the client went away: nobody to answer, nothing stored
        except ChecksumMismatch as exc:
            raise HTTPError(
                400,
                f"Digest mismatch for {path}: the {feed.size} bytes received have "
                f"{private(exc)}; nothing was stored",
            ) from None
        except FileExistsError:
            raise HTTPError(412, f"{path} exists (If-None-Match: *)") from None
        if not whole:
            return
        await req.respond(204 if existing else 201)

    @storage_errors
    async def mkcol(self, req: ObjectRequest) -> None:
        path = self.path(req)
        if req.has_body():
            raise HTTPError(415, "MKCOL takes no request body")
        if await self.entry(req, path) is not None:
            raise HTTPError(405, f"{path} already exists")
        parent = await self.entry(req, path.rsplit("/", 1)[0] or "/")
        if parent is None or not parent.is_dir:
            raise HTTPError(409, f"the parent collection of {path} does not exist; MKCOL it first")
        req.authorize("create", path)
        await req.ctx.run(self.store.make_collection, path)
        await req.respond(201)

    @storage_errors
    async def delete(self, req: ObjectRequest) -> None:
        path = self.path(req)
        if path == "/":
            raise HTTPError(403, "the root collection cannot be deleted")
        found = await self.existing(req, path)
        name = path.rsplit("/", 1)[-1]
        req.authorize("create" if is_temporary(name) else "modify", path)
        if found.is_dir:
            if await req.ctx.run(self.store.has_members, path):
                raise HTTPError(409, f"{path} is not empty; delete its members first")
            await req.ctx.run(self.store.remove_collection, path)
        else:
            await req.ctx.run(self.store.delete, path)
        await req.respond(204)

    @storage_errors
    async def move(self, req: ObjectRequest) -> None:
        source_path = self.path(req)
        if source_path == "/":
            raise HTTPError(403, "the root collection cannot be moved")
        dest_path = self.path(req, parse_destination(req.header("destination")))
        overwrite = parse_overwrite(req.header("overwrite"))
        source = await self.existing(req, source_path)
        if dest_path == "/" or dest_path == source_path:
            raise HTTPError(403, "MOVE to the root or onto itself is refused")
        if source.is_dir:
            raise HTTPError(
                409,
                f"{source_path} is a collection: collections cannot be moved on an S3 "
                "backend (it would copy every object below it); move its files",
            )
        if dest_path.startswith(source_path + "/"):
            raise HTTPError(409, "a file cannot be moved below itself")
        dest = await self.entry(req, dest_path)
        if dest is None:
            await self.no_file_above(req, dest_path)
        replaced = dest is not None
        operation = "modify" if replaced else "create"
        req.authorize(operation, source_path)
        req.authorize(operation, dest_path)
        if dest is not None and dest.is_dir:
            raise HTTPError(409, f"{dest_path} is a collection; delete it first")
        if replaced and not overwrite:
            raise HTTPError(412, f"{dest_path} exists (Overwrite: F)")
        await req.ctx.run(self.store.move, source, dest_path)
        await req.respond(204 if replaced else 201)


def _expected(req: ObjectRequest) -> Digest | None:
    """What the request says the body is (its length and the checksums it names)."""
    values = expected_digests(req)
    if not values:
        return None
    length = req.header("content-length")
    if length is None or not length.strip().isdigit():
        raise HTTPError(411, "a PUT with Digest or Content-MD5 needs a Content-Length")
    return Digest(int(length), values.get("adler32", ""), values.get("md5"))


def _pieces(store: ObjectStore, path: str, pieces: Iterable[Piece], etag: str) -> Iterator[bytes]:
    """The body: the bytes of each range read from S3 (of the version ``etag`` only),
    separators as they are."""
    for piece in pieces:
        if isinstance(piece, bytes):
            yield piece
            continue
        offset, length = piece
        if length == 0:
            continue
        got = 0
        for chunk in store.read(path, offset, length, etag=etag):
            got += len(chunk)
            yield chunk
        if got != length:
            raise OSError(f"{path} changed while being read ({got} of {length} bytes)")


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def create_object_app(url: str, options: dict[str, Any], config: SEConfig) -> SEApp:
    """The SE application serving the bucket (and prefix) of ``url`` (one per worker)."""
    import time

    from fedlake.storage.backends.s3 import S3Storage

    store = ObjectStore(url, S3Storage(**options))
    store.started = time.time()
    ctx = BaseContext(config=config, authorizer=Authorizer(config), threads=32)
    return SEApp(ctx, ObjectSE(store).methods())
