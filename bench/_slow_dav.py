"""A minimal WebDAV endpoint that answers every request after a fixed delay (a slow WAN
link on loopback): PUT, GET, HEAD, DELETE, MKCOL, MOVE, kept in memory.

Run: ``python _slow_dav.py PORT DELAY_SECONDS``. Benchmark plumbing only: the latency is
the point, not the storage (netem is missing from this kernel, so the delay is here).
"""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import unquote, urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DELAY = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
files: dict[str, bytes] = {}


async def handle(request: Request) -> Response:
    await asyncio.sleep(DELAY)
    path = unquote(request.url.path)
    method = request.method
    if method == "PUT":
        files[path] = await request.body()
        return Response(status_code=201)
    if method in ("GET", "HEAD"):
        data = files.get(path)
        if data is None:
            return Response(status_code=404)
        body = b"" if method == "HEAD" else data
        return Response(body, headers={"Content-Length": str(len(data))})
    if method == "DELETE":
        return Response(status_code=204 if files.pop(path, None) is not None else 404)
    if method == "MKCOL":
        return Response(status_code=201)
    if method == "MOVE":
        dest = unquote(urlsplit(request.headers["destination"]).path)
        data = files.pop(path, None)
        if data is None:
            return Response(status_code=404)
        existed = dest in files
        files[dest] = data
        return Response(status_code=204 if existed else 201)
    return Response(status_code=405)


METHODS = ["GET", "HEAD", "PUT", "DELETE", "MKCOL", "MOVE"]
app = Starlette(routes=[Route("/{path:path}", handle, methods=METHODS)])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_keep_alive=600,  # no idle-close races with the client's pooled connections
        limit_concurrency=10_000,
    )
