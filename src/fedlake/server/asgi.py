"""ASGI entry point for ``uvicorn fedlake.server.asgi:app`` (settings from FEDLAKE_*)."""

from __future__ import annotations

from fedlake.bootstrap import build_lake
from fedlake.server.app import create_app

app = create_app(build_lake(migrate=False))
