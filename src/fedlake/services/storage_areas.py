"""Where the lake's local (``file``) RSEs keep their bytes."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from fedlake.bootstrap import Lake
from fedlake.catalog.models import RSEProtocol

__all__ = ["local_rse_roots"]


def local_rse_roots(lake: Lake) -> list[Path]:
    with lake.db.read() as s:
        prefixes = s.scalars(select(RSEProtocol.prefix).where(RSEProtocol.scheme == "file"))
        return sorted({Path(p) for p in prefixes if p})
