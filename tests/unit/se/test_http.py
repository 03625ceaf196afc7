"""A client that goes away mid-download stops the SE sending (Request.watch_disconnect).

The app is driven through the ASGI interface directly, so the moment the client leaves is
exact: after the second body message the server's receive() says ``http.disconnect``.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from fedlake.se.app import create_app
from fedlake.se.config import SEConfig
from fedlake.se.read import BLOCK


def _get(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }


async def _download(root: Path, leave_after: int | None) -> tuple[int, list[int]]:
    """GET /big; the client leaves after ``leave_after`` body messages (None: never).
    Returns the status and the sizes of the body messages sent."""
    app = create_app(root, SEConfig(allow_anonymous=True))
    sent: list[MutableMapping[str, Any]] = []
    left = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        bodies = [m for m in sent if m["type"] == "http.response.body"]
        if leave_after is not None and len(bodies) >= leave_after:
            left.set()
        await asyncio.sleep(0)  # a real socket write yields to the loop

    await asyncio.wait_for(app(_get("/big"), receive, send), timeout=30)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, [len(m["body"]) for m in sent if m["type"] == "http.response.body"]


def test_a_client_that_stays_gets_the_whole_file(tmp_path: Path) -> None:
    size = 6 * BLOCK + 123
    (tmp_path / "big").write_bytes(b"x" * size)
    status, bodies = asyncio.run(_download(tmp_path, None))
    assert status == 200
    assert sum(bodies) == size


def test_a_client_that_leaves_stops_the_download(tmp_path: Path) -> None:
    size = 6 * BLOCK + 123
    (tmp_path / "big").write_bytes(b"x" * size)
    status, bodies = asyncio.run(_download(tmp_path, 2))
    assert status == 200
    assert len(bodies) <= 3  # at most the block already read when the client left
    assert sum(bodies) < size
