"""The request the SE's method handlers work on, and the ASGI plumbing to answer it.

Handlers raise :class:`HTTPError` (or the path, header and permission errors of
``se.paths``, ``se.headers`` and ``se.authz``) before they start a response; ``se.app``
turns every error into a response in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec

from typing_extensions import TypeVar

from fedlake.se.authz import ANONYMOUS_CALLER, Authorizer, Caller
from fedlake.se.checksums import ChecksumStore
from fedlake.se.config import SEConfig
from fedlake.se.paths import Resolved, Resolver

__all__ = [
    "BaseContext",
    "Context",
    "HTTPError",
    "Message",
    "Receive",
    "Request",
    "Scope",
    "Send",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
P = ParamSpec("P")
T = TypeVar("T")


class HTTPError(Exception):
    """Answer with ``status`` and ``message`` (text/plain) and extra ``headers``."""

    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


@dataclass(kw_only=True)
class BaseContext:
    """What every request of one SE process shares, whatever it serves."""

    config: SEConfig
    authorizer: Authorizer
    threads: int = 16
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    @property
    def pool(self) -> ThreadPoolExecutor:
        """Threads for blocking file work (made on first use: after a worker's fork)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="se-io")
        return self._pool

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args)`` in a worker thread."""
        loop = asyncio.get_running_loop()
        if kwargs:
            return await loop.run_in_executor(self.pool, lambda: fn(*args, **kwargs))
        return await loop.run_in_executor(self.pool, fn, *args)


@dataclass(kw_only=True)
class Context(BaseContext):
    """The context of an SE serving a local directory (``fedlake se serve --root``)."""

    resolver: Resolver
    store: ChecksumStore
    put_md5: bool = False
    fsync: bool = False


#: the context a request's handlers see (a local directory unless said otherwise)
C = TypeVar("C", bound=BaseContext, default=Context)


class Request(Generic[C]):
    """One HTTP request: decoded headers, the caller, and helpers to answer it.

    ``Request`` alone is a request of an SE serving a local directory; other applications
    (the cache, the S3 backend) name their context: ``Request[BaseContext]``.
    """

    __slots__ = (
        "caller",
        "ctx",
        "headers",
        "method",
        "path",
        "receive",
        "scope",
        "send",
        "started",
    )

    def __init__(self, ctx: C, scope: Scope, receive: Receive, send: Send) -> None:
        self.ctx = ctx
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            value = raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers = headers
        self.caller: Caller = ANONYMOUS_CALLER
        self.started = False

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def resolve(self: Request[Context], path: str | None = None) -> Resolved:
        return self.ctx.resolver.resolve(self.path if path is None else path)

    def authorize(self, operation: str, target: Resolved | str) -> None:
        """Refuse (``se.authz``) unless the caller may ``operation`` on ``target`` (a
        resolved path, or a clean URL path)."""
        path = target if isinstance(target, str) else target.url_path
        self.ctx.authorizer.check(self.caller, operation, path)

    def has_body(self) -> bool:
        length = self.headers.get("content-length")
        if length is not None:
            return length.strip() not in ("", "0")
        return "transfer-encoding" in self.headers

    async def start(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        self.started = True
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            }
        )

    def can_pathsend(self) -> bool:
        """Whether the server sends a file named by path (the ASGI ``http.response.pathsend``
        extension: granian announces it, uvicorn does not)."""
        return "http.response.pathsend" in (self.scope.get("extensions") or {})

    async def pathsend(self, path: str) -> None:
        """The whole body is the file at ``path``, sent by the server (after :meth:`start`;
        only where :meth:`can_pathsend`). The server opens the file after this returns."""
        await self.send({"type": "http.response.pathsend", "path": path})

    @contextlib.asynccontextmanager
    async def watch_disconnect(self) -> AsyncIterator[asyncio.Event]:
        """An event set when the client goes away (while a long body is sent: the only way
        an ASGI app learns it); watched until the block ends."""
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.ensure_future(watch())
        try:
            yield gone
        finally:
            watcher.cancel()

    async def body(self, data: bytes | memoryview, *, more: bool = False) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def respond(
        self,
        status: int,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        content_type: str | None = None,
    ) -> None:
        """A whole response; Content-Length is the body's unless ``headers`` give one."""
        out = list(headers)
        if content_type is not None:
            out.append(("content-type", content_type))
        if not any(k.lower() == "content-length" for k, _ in out):
            out.append(("content-length", str(len(body))))
        await self.start(status, out)
        await self.body(b"" if self.method == "HEAD" else body)

    async def discard_body(self, limit: int) -> bytes:
        """Read the request body (at most ``limit`` bytes kept; more is HTTP 413)."""
        data = bytearray()
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ConnectionAbortedError("the client went away")
            data += message.get("body", b"")
            if len(data) > limit:
                raise HTTPError(413, f"the request body is larger than {limit} bytes")
            if not message.get("more_body", False):
                return bytes(data)
