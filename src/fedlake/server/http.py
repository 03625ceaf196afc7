"""Request/response helpers: JSON bodies with a size limit, exact content types, streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote_plus

import orjson
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.domain.errors import InvalidInput, RequestTooLarge
from fedlake.domain.timefmt import rfc1123

__all__ = [
    "JSON",
    "STREAM",
    "body_json",
    "body_object",
    "body_value",
    "caller",
    "dumps",
    "json_response",
    "lake",
    "path_segments",
    "stream_response",
    "threaded",
]

JSON = "application/json"
STREAM = "application/x-json-stream"
P = ParamSpec("P")
T = TypeVar("T")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc1123(value)
    if isinstance(value, set | tuple):
        return list(value)
    return str(value)


_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """JSON as UTF-8 (orjson: the listings' hot path); datetimes in RFC 1123 as Rucio's."""
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(dumps(value), status_code=status, media_type=JSON)


def stream_response(items: Iterable[Any], batch: int = 500) -> StreamingResponse:
    """NDJSON, produced in batches of lines so large listings stream at full speed."""

    def lines() -> Iterator[bytes]:
        buf: list[bytes] = []
        for item in items:
            buf.append(dumps(item))
            if len(buf) >= batch:
                buf.append(b"")
                yield b"\n".join(buf)
                buf = []
        if buf:
            buf.append(b"")
            yield b"\n".join(buf)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in iterate_in_threadpool(lines()):
            yield chunk

    return StreamingResponse(body(), media_type=STREAM)


def lake(request: Request) -> Lake:
    value: Lake = request.app.state.lake
    return value


async def body_json(request: Request, *, required: bool = True) -> Any:
    """Parse the body as JSON whatever the Content-Type says (rucio sends none)."""
    limit = lake(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(
            f"request body of {declared} bytes exceeds the limit of {limit} bytes; "
            "split it into smaller requests"
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body exceeds the limit of {limit} bytes; split it")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if required:
            raise InvalidInput("the request needs a JSON body")
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON body: {exc}") from None


async def body_object(request: Request, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object (``{}`` when optional and empty)."""
    body = await body_json(request, required=required) or {}
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


async def body_value(request: Request) -> Any:
    """The ``value`` of a ``{"value": ...}`` body (attributes, one metadata key)."""
    body = await body_json(request)
    if not isinstance(body, dict) or "value" not in body:
        raise InvalidInput('the body must be {"value": ...}')
    return body["value"]


async def threaded(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await run_in_threadpool(fn, *args, **kwargs)


def token_of(request: Request) -> str | None:
    token = request.headers.get("x-rucio-auth-token")
    if token:
        return token.strip()
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


async def caller(request: Request) -> Caller:
    """Who is asking. A token checked moments ago is answered from memory, on the event
    loop; otherwise it is validated and its account read in a worker thread."""
    from fedlake.services.accounts import cached_caller, caller_from_token

    lk, token, account = lake(request), token_of(request), request.headers.get("x-rucio-account")
    known = cached_caller(lk, token, account)
    if known is not None:
        return known
    return await run_in_threadpool(caller_from_token, lk, token, account)


def path_segments(request: Request, prefix: str) -> list[str]:
    """Raw path segments after ``prefix``, each percent-decoded ('%2F' stays inside one)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    rest = path[len(prefix) :] if path.startswith(prefix) else path
    parts = rest.split("/")
    return [unquote_plus(p) for p in parts]
