"""Rule lifecycle fixtures: the transfer engine's (files on LOCAL-DISK, a worker), and RSEs
whose storage fails until a test repairs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fedlake.bootstrap import Lake
from fedlake.catalog import rses as rse_core
from fedlake.services.embedded import POSIX_IMPL
from tests.integration.transfers.conftest import SCOPE, put, worker

__all__ = ["SCOPE", "broken_rse", "put", "worker"]


@pytest.fixture
def broken_rse(lake: Lake, tmp_path: Path) -> Callable[[str], Path]:
    """Add a POSIX RSE whose root is a regular file (every write fails with
    NotADirectoryError, an unrecoverable error); removing the file repairs it."""

    def _add(name: str, **attributes: str) -> Path:
        root = tmp_path / name.lower()
        root.write_text("not a directory\n")
        with lake.db.write() as s:
            row = rse_core.add_rse(s, name, deterministic=True, lfn2pfn_algorithm="hash")
            rse_core.add_protocol(
                s,
                row,
                {
                    "scheme": "file",
                    "hostname": "localhost",
                    "port": 0,
                    "prefix": str(root),
                    "impl": POSIX_IMPL,
                    "domains": {"wan": {"read": 1, "write": 1, "delete": 1}},
                },
            )
            for key, value in attributes.items():
                rse_core.set_attribute(s, row, key, value)
        return root

    return _add
