"""Fixtures for the transfer engine: a lake with files on LOCAL-DISK and a worker."""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable, Iterator

import pytest

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.services import accounts as account_svc
from fedlake.services import files as file_svc
from fedlake.transfers.worker import TransferWorker, WorkerConfig

SCOPE = "xfer"


@pytest.fixture
def put(lake: Lake, root: Caller) -> Callable[..., tuple[str, bytes]]:
    """Store a file on an RSE (default LOCAL-DISK); returns (name, data)."""
    account_svc.add_scope(lake, root, SCOPE, "root")

    def _put(name: str, data: bytes | None = None, rse: str = "LOCAL-DISK") -> tuple[str, bytes]:
        data = data if data is not None else f"content of {name}\n".encode() * 10
        file_svc.store_file(
            lake,
            root,
            SCOPE,
            name,
            rse,
            iter([data]),
            len(data),
            f"{zlib.adler32(data):08x}",
            hashlib.md5(data, usedforsecurity=False).hexdigest(),
        )
        return name, data

    return _put


def daemon_env(lake: Lake, **settings: str) -> dict[str, str]:
    """The environment of a ``fedlake daemon transfers`` process of ``lake`` (none of this
    process's own ``FEDLAKE_*`` settings leak in), plus ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FEDLAKE_") or k == "FEDLAKE_TEST_DATABASE_URL"
    }
    env.update(
        FEDLAKE_DATA_DIR=str(lake.settings.data_dir),
        FEDLAKE_DATABASE_URL=lake.settings.database_url,
        **settings,
    )
    return env


@pytest.fixture
def worker(lake: Lake) -> Iterator[TransferWorker]:
    w = TransferWorker(
        lake.db,
        WorkerConfig(threads=8, batch=50, lease=30, idle_poll=0.1, stage_poll=0.1, refresh=0),
    )
    w.start()
    yield w
    w.stop(timeout=5)
