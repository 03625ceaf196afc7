"""``fsspec.open("fedlake://scope/name")`` against a live lake."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import fsspec
import httpx
import pytest

from fedlake.client import Client, ClientConfig
from fedlake.client.files import upload
from tests.helpers import ROOT_PASSWORD, LiveLake, start_lake


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveLake]:
    lake = start_lake(tmp_path_factory.mktemp("fs") / "data")
    try:
        yield lake
    finally:
        lake.stop()


def test_read_list_and_seek(live: LiveLake, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    table = b"run,energy\n" + b"".join(f"{i},{i * 1.5}\n".encode() for i in range(20000))
    (src / "events.csv").write_bytes(table)
    blob = os.urandom(3_000_000)
    (src / "blob.bin").write_bytes(blob)
    with Client(ClientConfig(url=live.url, username="root", password=ROOT_PASSWORD)) as c:
        upload(c, [src], rse="LOCAL-DISK", dataset=("user.root", "fsdata"))
    opts = {"url": live.url, "username": "root", "password": ROOT_PASSWORD}
    with fsspec.open("fedlake://user.root/events.csv", "rb", **opts) as fh:
        assert fh.read() == table
    fs = fsspec.filesystem("fedlake", **opts)
    assert sorted(fs.ls("user.root/fsdata", detail=False)) == [
        "user.root/blob.bin",
        "user.root/events.csv",
    ]
    info = fs.info("user.root/blob.bin")
    assert info["size"] == len(blob) and info["type"] == "file"
    assert fs.info("user.root/fsdata")["type"] == "directory"
    with fs.open("user.root/blob.bin", block_size=65536) as fh:
        fh.seek(2_500_000)
        assert fh.read(1000) == blob[2_500_000:2_501_000]
        fh.seek(10)
        assert fh.read(20) == blob[10:30]
    with pytest.raises(FileNotFoundError):
        fs.info("user.root/missing.bin")
    with pytest.raises(NotImplementedError):
        fs.open("user.root/new.bin", "wb")
    fs.client.close()


def test_range_requests(live: LiveLake) -> None:
    with Client(ClientConfig(url=live.url, username="root", password=ROOT_PASSWORD)) as c:
        token = c.login()
    h = {"X-Rucio-Auth-Token": token}
    r = httpx.get(f"{live.url}/files/user.root/events.csv", headers=h | {"Range": "bytes=0-9"})
    assert r.status_code == 206 and r.content == b"run,energy"
    assert r.headers["Content-Range"].startswith("bytes 0-9/")
    r = httpx.get(
        f"{live.url}/files/user.root/events.csv", headers=h | {"Range": "bytes=999999999-"}
    )
    assert r.status_code == 416
    r = httpx.get(f"{live.url}/files/user.root/events.csv", headers=h | {"Range": "lines=1-2"})
    assert r.status_code == 400 and "Range" in r.headers["ExceptionMessage"]
