"""A write that meets a conflicting one is refused with 503 ``DatabaseException`` and
nothing changed; the stock rucio client and fedlake's own client send it again by
themselves.

A live lake on PostgreSQL whose database has the operator's ``lock_timeout`` set (300 ms).
The test holds the ``dids`` table locked from its own transaction, so the lake's write
waits that long and is refused (SQLSTATE 55P03). Holding it longer than the lock timeout
means a call that succeeds must have been sent again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

import httpx
import psycopg
import pytest
from rucio.client import Client as RucioClient
from rucio.common.config import clean_cached_config

from fedlake.client.http import BUSY_RETRIES, Client, ClientConfig
from fedlake.domain.errors import DatabaseBusy, DIDNotFound
from tests.e2e.conftest import unique, write_rucio_cfg
from tests.helpers import (
    ROOT_PASSWORD,
    LiveLake,
    create_pg_database,
    drop_pg_database,
    log_in,
    pg_base_url,
    running_lake,
)

SCOPE = "user.root"
LOCK_TIMEOUT = 0.3


@dataclass
class BusyLake:
    live: LiveLake
    dsn: str  # the lake's database, for psycopg
    config: Path  # rucio.cfg


@pytest.fixture(scope="module")
def busy_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BusyLake]:
    base = pg_base_url()
    if base is None:
        pytest.skip("no PostgreSQL (FEDLAKE_TEST_DATABASE_URL); CI always has one")
    url = create_pg_database(base)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    name = url.rpartition("/")[2]
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '{LOCK_TIMEOUT}s'")
        workdir = tmp_path_factory.mktemp("busy")
        with running_lake(workdir / "data", url) as live:
            yield BusyLake(live, dsn, write_rucio_cfg(workdir / "rucio.cfg", live.url))
    finally:
        drop_pg_database(url)


@contextmanager
def dids_locked(lake: BusyLake, seconds: float | None = None) -> Iterator[None]:
    """Hold the ``dids`` table against writes: for ``seconds`` (from a thread, returning at
    once once it is held), or until the block ends (``None``)."""
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with psycopg.connect(lake.dsn) as conn:
            conn.execute("SET lock_timeout = 0")
            conn.execute("LOCK TABLE dids IN EXCLUSIVE MODE")
            held.set()
            done.wait(seconds if seconds is not None else 60)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(10), "could not lock the dids table"
        yield
    finally:
        if seconds is None:
            done.set()
        t.join(70)


@contextmanager
def root_http(lake: BusyLake) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lake.live.url, timeout=30) as http:
        log_in(http)
        yield http


def test_a_write_that_cannot_get_its_lock_is_503_and_changes_nothing(busy_lake: BusyLake) -> None:
    name = unique("busy")
    path = f"/dids/{quote_plus(SCOPE)}/{quote_plus(name)}"
    with root_http(busy_lake) as http:
        with dids_locked(busy_lake):
            r = http.post(path, json={"type": "DATASET"})
        assert r.status_code == 503, r.text
        assert r.headers["ExceptionClass"] == "DatabaseException"
        assert r.headers["Retry-After"] == "1"
        message = r.json()["ExceptionMessage"]
        assert "lock timeout" in message and "nothing was changed" in message
        assert http.get(path).status_code == 404  # nothing of it was written
        assert http.post(path, json={"type": "DATASET"}).status_code == 201  # sent again
        assert http.get("/ping").status_code == 200


def test_the_stock_rucio_client_sends_a_refused_write_again(
    busy_lake: BusyLake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUCIO_CONFIG", str(busy_lake.config))
    clean_cached_config()
    client = RucioClient(
        rucio_host=busy_lake.live.url,
        auth_host=busy_lake.live.url,
        auth_type="userpass",
        creds={"username": "root", "password": ROOT_PASSWORD},
        account="root",
    )
    try:
        assert client.whoami()["account"] == "root"  # logged in before the lock
        name = unique("rucio-busy")
        hold = 3 * LOCK_TIMEOUT  # longer than the lake waits: the first try is refused
        t0 = time.monotonic()
        with dids_locked(busy_lake, seconds=hold):
            assert client.add_dataset(SCOPE, name)
        assert time.monotonic() - t0 >= hold
        assert client.get_did(SCOPE, name)["type"] == "DATASET"
    finally:
        client.session.close()
        clean_cached_config()


def test_fedlake_client_sends_a_refused_write_again_and_then_gives_up(
    busy_lake: BusyLake,
) -> None:
    client = Client(ClientConfig(url=busy_lake.live.url, username="root", password=ROOT_PASSWORD))
    try:
        client.whoami()
        name = unique("fl-busy")
        hold = 3 * LOCK_TIMEOUT
        t0 = time.monotonic()
        with dids_locked(busy_lake, seconds=hold):
            client.add_did(SCOPE, name)
        assert time.monotonic() - t0 >= hold
        assert client.get_did(SCOPE, name)["type"] == "DATASET"

        # held for good: each of the BUSY_RETRIES + 1 tries waits for Retry-After (1 s)
        other = unique("fl-given-up")
        t0 = time.monotonic()
        with dids_locked(busy_lake), pytest.raises(DatabaseBusy, match="nothing was changed"):
            client.add_did(SCOPE, other)
        assert time.monotonic() - t0 >= BUSY_RETRIES * 1.0
        with pytest.raises(DIDNotFound):
            client.get_did(SCOPE, other)
    finally:
        client.close()
