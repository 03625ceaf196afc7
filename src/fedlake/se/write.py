"""The writing methods: PUT (streamed, atomic, verified), DELETE, MKCOL and MOVE.

PUT writes to ``.<name>.fedlake-tmp-<hex>`` in the target's directory (what
``fedlake.storage.backends.posix.is_temporary`` recognises, so the lake's sweeper removes
one a crash left behind), computing adler32 (and md5 when the request sends one to check,
or ``put_md5`` is set) as the bytes arrive: big blocks are written and summed by a worker
thread while the next block is received. Only a complete body whose checksums match the
request's ``Digest`` / ``Content-MD5`` is renamed onto the name; anything else (a client
that goes away, a mismatch, a refusal) leaves no file. The checksums are stored with the
file, so ``Want-Digest`` is answered at once afterwards.

Operations needed (``se.authz``): PUT of a new name and MKCOL ``create``; PUT over a file
and DELETE ``modify``; MOVE ``create`` on both names when the destination does not exist
(the WLCG JWT profile: ``storage.create`` "includes renaming files if the destination file
does not already exist"), ``modify`` on both when it replaces one. A temporary of an
upload may also be deleted with ``create``: that is how clients (ours among them) clean
up after a failed atomic upload over WebDAV.

With ``create_parents`` (``[server]`` of the configuration) a PUT whose parent collection is
missing creates it first, and any missing collection above it, as ``MKCOL`` would (each one
authorised for ``create``), instead of answering 409: what dCache, XrdHttp and EOS do, and
what the rucio client's WebDAV plugin needs (it takes a 409 for "the file exists").
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Sequence
from typing import Any

from fedlake.se.headers import parse_content_md5, parse_destination, parse_digest, parse_overwrite
from fedlake.se.http import HTTPError, Request
from fedlake.se.paths import Resolved
from fedlake.storage.backends.posix import TMP_MARK, is_temporary
from fedlake.storage.checksums import adler32

__all__ = [
    "AtomicFile",
    "DigestMismatch",
    "delete",
    "expected_digests",
    "make_parents",
    "mkcol",
    "move",
    "parent_dir",
    "put",
]

BLOCK = 4 * 1024 * 1024  # bodies are written in blocks of this size (by a worker thread)
_IOV_MAX = 1024  # pieces per writev (Linux's IOV_MAX)


class _Sink:
    """Writes and checksums the body to an open file descriptor."""

    def __init__(self, fd: int, *, md5: bool, fsync: bool) -> None:
        self.fd = fd
        self.size = 0
        self.adler = 1
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.fsync = fsync

    def write_all(self, chunks: Sequence[bytes | bytearray]) -> None:
        """Checksum ``chunks`` and write them with one ``writev`` per ``IOV_MAX`` of them:
        the body's pieces go to the file as received, never joined into one buffer."""
        views = [memoryview(c) for c in chunks if c]
        for view in views:
            self.adler = adler32(view, self.adler)
            if self.md5 is not None:
                self.md5.update(view)
            self.size += len(view)
        first = 0
        while first < len(views):
            written = os.writev(self.fd, views[first : first + _IOV_MAX])
            while written > 0:  # a short write: skip what went, resume mid-chunk
                head = views[first]
                if written >= len(head):
                    written -= len(head)
                    first += 1
                else:
                    views[first] = head[written:]
                    written = 0

    def finish(self) -> dict[str, str]:
        if self.fsync:
            os.fsync(self.fd)
        out = {"adler32": f"{self.adler & 0xFFFFFFFF:08x}"}
        if self.md5 is not None:
            out["md5"] = self.md5.hexdigest()
        return out


def expected_digests(req: Request[Any]) -> dict[str, str]:
    """What the request says the body's checksums are (BadHeader if malformed)."""
    expected: dict[str, str] = {}
    if (value := req.header("digest")) is not None:
        expected.update(parse_digest(value))
    if (value := req.header("content-md5")) is not None:
        md5 = parse_content_md5(value)
        if expected.get("md5", md5) != md5:
            raise HTTPError(400, "Content-MD5 and Digest name different md5 values")
        expected["md5"] = md5
    return expected


def parent_dir(target: Resolved) -> str:
    """The existing directory the target goes in (HTTP 409 when missing)."""
    parent = os.path.dirname(target.entry)
    if not os.path.isdir(parent):
        raise HTTPError(
            409, f"the parent collection of {target.url_path} does not exist; MKCOL it first"
        )
    return parent


def make_parents(req: Request, target: Resolved) -> Resolved:
    """Create the missing collections above ``target``, top down, as MKCOL would: every one
    is authorised for ``create`` before any is made; a file in the way is 409. Returns
    ``target`` resolved again (its parent exists now)."""
    missing: list[Resolved] = []
    path = target.url_path.rsplit("/", 1)[0] or "/"
    while True:
        above = req.resolve(path)
        if above.stat is not None:
            if not stat.S_ISDIR(above.stat.st_mode):
                raise HTTPError(409, f"{above.url_path} is a file, not a collection")
            break
        missing.append(above)
        path = path.rsplit("/", 1)[0] or "/"
    for collection in missing:
        req.authorize("create", collection)
    for collection in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another request
            os.mkdir(collection.entry)
    return req.resolve(target.url_path)


async def _receive_into(req: Request, sink: _Sink) -> bool:
    """Feed the body to ``sink``; False when the client went away before its end."""
    loop = asyncio.get_running_loop()
    pieces: list[bytes] = []  # as received: gathered, not copied into one buffer
    held = 0
    pending: asyncio.Future[None] | None = None
    try:
        while True:
            message = await req.receive()
            if message["type"] == "http.disconnect":
                return False
            if body := message.get("body", b""):
                pieces.append(body)
                held += len(body)
            more = message.get("more_body", False)
            if held >= BLOCK or (not more and pending is not None and pieces):
                if pending is not None:
                    await pending
                block, pieces, held = pieces, [], 0
                pending = loop.run_in_executor(req.ctx.pool, sink.write_all, block)
            if not more:
                if pending is not None:
                    await pending
                    pending = None
                if pieces:
                    sink.write_all(pieces)  # a small body: written at once
                return True
    finally:
        if pending is not None:
            with contextlib.suppress(BaseException):
                await pending


class DigestMismatch(ValueError):
    """The bytes written do not have the checksums they were said to have."""


class AtomicFile:
    """A file written under a temporary name next to ``target`` and renamed onto it only by
    :meth:`commit`; closing it without a commit removes the temporary (nothing is left).

    PUT and the pull of HTTP third-party copy (``se.tpc``) both write through it: adler32
    always (md5 when ``md5``) is computed as the bytes are written, and stored with the
    file, so ``Want-Digest`` is answered at once afterwards.
    """

    def __init__(self, req: Request, target: Resolved, parent: str, *, md5: bool) -> None:
        self.ctx = req.ctx
        self.target = target
        self.tmp = os.path.join(parent, f".{target.name}{TMP_MARK}{secrets.token_hex(6)}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self.fd = os.open(self.tmp, flags, 0o666)
        self.sink = _Sink(self.fd, md5=md5, fsync=req.ctx.fsync)
        self.committed = False

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if not self.committed:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)

    async def finish(self, expected: dict[str, str]) -> dict[str, str]:
        """The checksums of what was written; DigestMismatch when one of ``expected``
        (algorithm -> hex) differs."""
        sink = self.sink
        got = await self.ctx.run(sink.finish) if sink.fsync else sink.finish()
        wrong = [f"{k} is {got[k]}, not {v}" for k, v in expected.items() if got.get(k) != v]
        if wrong:
            raise DigestMismatch("; ".join(wrong))
        return got

    def commit(self, checksums: dict[str, str], *, no_replace: bool = False) -> None:
        """Give the file its name (FileExistsError with ``no_replace`` when it exists)."""
        st = os.fstat(self.fd)
        in_xattr = self.ctx.store.put(self.fd, st, checksums)
        os.close(self.fd)
        self.fd = -1
        entry = self.target.entry
        if no_replace:
            os.link(self.tmp, entry, follow_symlinks=False)
            self.committed = True
            os.unlink(self.tmp)
        else:
            os.replace(self.tmp, entry)
            self.committed = True
        if not in_xattr:
            self.ctx.store.put(entry, st, checksums)


async def put(req: Request) -> None:
    target = req.resolve()
    if target.is_root or req.path.endswith("/"):
        raise HTTPError(405, "PUT needs a file name, not a collection")
    if req.ctx.config.create_parents and not os.path.isdir(os.path.dirname(target.entry)):
        req.authorize("create", target)  # a new name: a caller who may not write it makes nothing
        target = make_parents(req, target)
    parent = parent_dir(target)
    existing = os.path.lexists(target.entry)
    if existing and os.path.isdir(target.entry):
        raise HTTPError(405, f"{target.url_path} is a collection; PUT writes files only")
    req.authorize("modify" if existing else "create", target)
    no_replace = (req.header("if-none-match") or "").strip() == "*"
    if no_replace and existing:
        raise HTTPError(412, f"{target.url_path} exists (If-None-Match: *)")
    expected = expected_digests(req)
    with AtomicFile(req, target, parent, md5=req.ctx.put_md5 or "md5" in expected) as out:
        if not await _receive_into(req, out.sink):
            return  # the client went away: nobody to answer, nothing kept
        try:
            got = await out.finish(expected)
        except DigestMismatch as exc:
            raise HTTPError(
                400,
                f"Digest mismatch for {target.url_path}: the {out.sink.size} bytes received "
                f"have {exc}; nothing was stored",
            ) from None
        try:
            out.commit(got, no_replace=no_replace)
        except FileExistsError:
            raise HTTPError(412, f"{target.url_path} exists (If-None-Match: *)") from None
    await req.respond(204 if existing else 201)


async def mkcol(req: Request) -> None:
    target = req.resolve()
    if req.has_body():
        raise HTTPError(415, "MKCOL takes no request body")
    if os.path.lexists(target.entry):
        raise HTTPError(405, f"{target.url_path} already exists")
    parent_dir(target)
    req.authorize("create", target)
    try:
        os.mkdir(target.entry)
    except FileExistsError:
        raise HTTPError(405, f"{target.url_path} already exists") from None
    await req.respond(201)


def _operation(target: Resolved) -> str:
    """``modify``, or ``create`` for an upload's own temporary (see the module doc)."""
    return "create" if is_temporary(target.name) else "modify"


async def delete(req: Request) -> None:
    target = req.resolve()
    if target.is_root:
        raise HTTPError(403, "the root collection cannot be deleted")
    if not os.path.lexists(target.entry):
        raise FileNotFoundError(errno.ENOENT, f"{target.url_path}: no such file or collection")
    req.authorize(_operation(target), target)
    if os.path.isdir(target.entry) and not os.path.islink(target.entry):
        try:
            os.rmdir(target.entry)
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                raise HTTPError(
                    409, f"{target.url_path} is not empty; delete its members first"
                ) from None
            raise
    else:
        os.unlink(target.entry)
        req.ctx.store.deleted(target.entry)
    await req.respond(204)


async def move(req: Request) -> None:
    source = req.resolve()
    if source.is_root:
        raise HTTPError(403, "the root collection cannot be moved")
    dest = req.resolve(parse_destination(req.header("destination")))
    overwrite = parse_overwrite(req.header("overwrite"))
    if not os.path.lexists(source.entry):
        raise FileNotFoundError(errno.ENOENT, f"{source.url_path}: no such file or collection")
    if dest.is_root or dest.entry == source.entry:
        raise HTTPError(403, "MOVE to the root or onto itself is refused")
    if dest.fs_path.startswith(source.fs_path.rstrip("/") + "/"):
        raise HTTPError(409, "a collection cannot be moved into itself")
    parent_dir(dest)
    replaced = os.path.lexists(dest.entry)
    operation = "modify" if replaced else "create"  # see the module doc
    req.authorize(operation, source)
    req.authorize(operation, dest)
    if replaced and not overwrite:
        raise HTTPError(412, f"{dest.url_path} exists (Overwrite: F)")
    if replaced and os.path.isdir(dest.entry):
        raise HTTPError(409, f"{dest.url_path} is a collection; delete it first")
    is_file = not stat.S_ISDIR(os.lstat(source.entry).st_mode)
    if is_file and not overwrite:  # link + unlink: atomic "only if absent"
        try:
            os.link(source.entry, dest.entry, follow_symlinks=False)
        except FileExistsError:
            raise HTTPError(412, f"{dest.url_path} exists (Overwrite: F)") from None
        os.unlink(source.entry)
    else:
        os.replace(source.entry, dest.entry)
    req.ctx.store.moved(source.entry, dest.entry)
    await req.respond(204 if replaced else 201)
