"""The storage element as a raw ASGI application: one method table, one error table.

``METHODS`` maps each HTTP method to its handler; another module (HTTP third-party
``COPY``) plugs in with :func:`SEApp.add_method`. Every request is authenticated first
(``se.authz``); the handler authorises what it does once it knows the target. Errors
become responses here only (:func:`error_response`), as text/plain bodies that say what
was wrong.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedlake.se import read, tpc, write
from fedlake.se.authz import Authorizer, Forbidden, Unauthenticated
from fedlake.se.checksums import ChecksumStore
from fedlake.se.config import SEConfig
from fedlake.se.headers import BadHeader, DepthInfinity
from fedlake.se.http import BaseContext, Context, HTTPError, Receive, Request, Scope, Send
from fedlake.se.paths import BadPath, OutsideRoot, Resolver

if TYPE_CHECKING:
    from fedlake.se.serve_metrics import RequestMetrics

__all__ = ["METHODS", "Handler", "SEApp", "create_app", "error_response"]

#: a method's handler (a request of whatever the application serves)
Handler = Callable[[Request[Any]], Awaitable[None]]

METHODS: dict[str, Handler] = {
    "OPTIONS": read.options,
    "GET": read.get,
    "HEAD": read.head,
    "PROPFIND": read.propfind,
    "PUT": write.put,
    "DELETE": write.delete,
    "MKCOL": write.mkcol,
    "MOVE": write.move,
    "COPY": tpc.copy,  # HTTP third-party copy
}

log = logging.getLogger("fedlake.se")


def error_response(exc: BaseException) -> HTTPError | None:
    """The response for an error raised by a handler (None: an unexpected error)."""
    if isinstance(exc, HTTPError):
        return exc
    if isinstance(exc, BadPath | BadHeader):
        return HTTPError(400, str(exc))
    if isinstance(exc, Unauthenticated):
        return HTTPError(401, str(exc), [("www-authenticate", 'Bearer realm="fedlake-se"')])
    if isinstance(exc, OutsideRoot | DepthInfinity | Forbidden):
        return HTTPError(403, str(exc))
    if isinstance(exc, FileNotFoundError):
        return HTTPError(404, _os_message(exc, "no such file or collection"))
    if isinstance(exc, NotADirectoryError):
        return HTTPError(409, _os_message(exc, "a parent in the path is a file"))
    if isinstance(exc, IsADirectoryError):
        return HTTPError(409, _os_message(exc, "is a collection"))
    if isinstance(exc, PermissionError):
        return HTTPError(403, _os_message(exc, "the server's file system refused access"))
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return HTTPError(507, "no space left on the storage element")
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return HTTPError(400, "a name in the path is too long")
    return None


def _os_message(exc: OSError, default: str) -> str:
    text = exc.strerror if exc.filename is None and exc.strerror else None
    if exc.args and isinstance(exc.args[-1], str) and exc.filename is None:
        text = exc.args[-1]
    return text or default


class SEApp:
    """ASGI callable: dispatch by method, authenticate, map errors."""

    def __init__(self, ctx: BaseContext, methods: dict[str, Handler] | None = None) -> None:
        self.ctx = ctx
        self.methods = dict(METHODS if methods is None else methods)
        self.routes: list[tuple[str, Handler]] = []  # path prefixes served whatever the method
        #: counts every request (``--metrics-port``: se.serve_metrics); None: nothing counted
        self.metrics: RequestMetrics | None = None

    def add_method(self, name: str, handler: Handler) -> None:
        """Serve ``name`` with ``handler`` (e.g. ``COPY`` for HTTP third-party copy)."""
        self.methods[name.upper()] = handler

    def add_route(self, prefix: str, handler: Handler) -> None:
        """Serve ``prefix`` and every path below it with ``handler``, for every method
        (the WLCG Tape REST API of tape mode: ``se.tape_rest``)."""
        self.routes.append((prefix.rstrip("/"), handler))

    def _handler(self, req: Request[Any]) -> Handler | None:
        for prefix, handler in self.routes:
            if req.path == prefix or req.path.startswith(prefix + "/"):
                return handler
        return self.methods.get(req.method)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if self.metrics is None:
                await self._http(scope, receive, send)
            else:
                await self.metrics.count(self._http, scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        req: Request[BaseContext] = Request(self.ctx, scope, receive, send)
        handler = self._handler(req)
        try:
            if handler is None:
                allow = ", ".join(self.methods)
                raise HTTPError(405, f"method {req.method} is not served", [("allow", allow)])
            await self._authenticate(req)
            await handler(req)
        except ConnectionAbortedError:
            return
        except Exception as exc:
            answer = error_response(exc)
            if answer is None:
                log.exception("%s %s failed", req.method, req.path)
                answer = HTTPError(500, f"internal error ({type(exc).__name__}); see the SE log")
            if req.started:
                raise  # the response is under way: only closing the connection tells
            await req.respond(
                answer.status,
                answer.headers,
                (answer.message + "\n").encode("utf-8", "replace"),
                content_type="text/plain; charset=utf-8",
            )

    async def _authenticate(self, req: Request[Any]) -> None:
        if self.ctx.config.allow_anonymous:
            return
        authorizer = self.ctx.authorizer
        token = authorizer.bearer(req.header("authorization"))
        if token is None:
            return
        caller = authorizer.cached(token)
        if caller is None:  # validation may fetch the issuer's keys: not in the event loop
            caller = await self.ctx.run(authorizer.authenticate, token)
        req.caller = caller

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.metrics is not None:
                    self.metrics.write()
                if self.ctx._pool is not None:
                    self.ctx._pool.shutdown(wait=False, cancel_futures=True)
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(
    root: str | os.PathLike[str] | None,
    config: SEConfig | None = None,
    *,
    fsync: bool = False,
    metrics: bool = False,
) -> SEApp:
    """The SE application serving ``root`` with ``config`` (defaults: nothing trusted,
    no areas; set ``allow_anonymous`` for an open server), or the S3 bucket of
    ``config.s3``; ``metrics``: count every request (``se.serve_metrics``; in tape mode
    and on S3 too)."""
    config = config or SEConfig()
    if config.s3 is not None:  # an S3 bucket instead of a directory (se.object_app)
        from fedlake.se.object_app import create_object_app

        if config.s3.url is None:
            raise ValueError("the S3 backend needs the bucket's URL (s3://HOST:PORT/BUCKET)")
        app = create_object_app(config.s3.url, config.s3.options, config)
    elif root is None:
        raise ValueError("give the directory to serve (or an S3 backend in the configuration)")
    elif config.tape is not None:  # tape mode: the root is a tape emulation (se.tape_rest)
        from fedlake.se.tape_rest import tape_app

        app = tape_app(root, config, fsync=fsync)
    else:
        resolver = Resolver(Path(root))
        ctx = Context(
            config=config,
            resolver=resolver,
            store=ChecksumStore(resolver.state_dir()),
            authorizer=Authorizer(config),
            put_md5=config.put_md5,
            fsync=fsync,
        )
        app = SEApp(ctx)
    if metrics:
        from fedlake.se.serve_metrics import RequestMetrics

        app.metrics = RequestMetrics()
    return app
