"""fedlake's own byte endpoints: upload and download through the server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio.from_thread
from fastapi import APIRouter, Request
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import Response, StreamingResponse

from fedlake.domain.errors import InvalidInput, RequestTooLarge
from fedlake.server.http import caller, lake, threaded
from fedlake.services import files as svc

router = APIRouter(tags=["files"])


@router.put("/files/{scope}/{name}")
async def put_file(request: Request, scope: str, name: str) -> Response:
    """Store a file's bytes on ``?rse=`` atomically, verified against the declared checksum."""
    c = await caller(request)
    rse = request.query_params.get("rse")
    if not rse:
        raise InvalidInput("give the RSE to write to as ?rse=NAME")
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise InvalidInput("a Content-Length header is required")
    size = int(length)
    stream = request.stream().__aiter__()

    async def _next(it: AsyncIterator[bytes]) -> bytes:
        return await it.__anext__()

    def chunks() -> Iterator[bytes]:
        received = 0
        while True:
            try:
                block: bytes = anyio.from_thread.run(_next, stream)
            except StopAsyncIteration:
                break
            received += len(block)
            if received > size:
                raise RequestTooLarge("the body is longer than its Content-Length")
            if block:
                yield block

    await threaded(
        svc.store_file,
        lake(request),
        c,
        scope,
        name,
        rse,
        chunks(),
        size,
        request.headers.get("x-fedlake-adler32"),
        request.headers.get("x-fedlake-md5"),
    )
    return Response("Created", status_code=201)


def _parse_range(header: str | None) -> tuple[int, int | None] | None:
    """``bytes=START-[END]`` (one range); anything else is a clear 400."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    start_text, sep, end_text = spec.partition("-")
    if (
        unit.strip() != "bytes"
        or not sep
        or not start_text.isdigit()
        or "," in spec
        or (end_text and not end_text.isdigit())
    ):
        raise InvalidInput(f"unsupported Range {header!r}: use one range like bytes=0-1023")
    start, end = int(start_text), int(end_text) if end_text else None
    if end is not None and end < start:
        raise InvalidInput(f"Range {header!r} ends before it starts")
    return start, end


@router.get("/files/{scope}/{name}")
async def get_file(request: Request, scope: str, name: str) -> Response:
    """Stream the best replica's bytes; one ``Range: bytes=a-b`` gives 206."""
    c = await caller(request)
    byte_range = _parse_range(request.headers.get("range"))
    size, data = await threaded(svc.open_file, lake(request), c, scope, name, byte_range)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in iterate_in_threadpool(data):
            yield chunk

    headers = {"Accept-Ranges": "bytes"}
    if byte_range is None:
        headers["Content-Length"] = str(size)
        return StreamingResponse(body(), media_type="application/octet-stream", headers=headers)
    start, end = byte_range
    last = size - 1 if end is None else min(end, size - 1)
    headers["Content-Length"] = str(last - start + 1)
    headers["Content-Range"] = f"bytes {start}-{last}/{size}"
    return StreamingResponse(
        body(), status_code=206, media_type="application/octet-stream", headers=headers
    )
