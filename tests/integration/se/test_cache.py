"""``fedlake se cache`` as a real process in front of a real origin: our SE (``fedlake se
serve``, whose access log counts the origin's requests) and an S3 server (moto).

The catalogue check talks to a stand-in for the lake's ``GET /replicas/<scope>/<name>``
(a small HTTP server in this process answering the NDJSON record the lake answers).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from fedlake.domain.paths import path_hash
from tests.servers import ServerProcess, free_port
from tests.servers.fedlake_cache import CacheServer, running_cache
from tests.servers.moto import moto  # noqa: F401 - the fixture
from tests.servers.seaweedfs import S3Server


class Origin:
    """``fedlake se serve --access-log`` over ``root``; counts GETs per path."""

    def __init__(self, root: Path, process: ServerProcess, port: int) -> None:
        self.root, self.process, self.port = root, process, port
        self.prefix = f"http://127.0.0.1:{port}"

    def put(self, path: str, data: bytes) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def gets(self, path: str) -> int:
        return self.process.log.read_text().count(f'"GET {path} HTTP')


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origin]:
    base = tmp_path_factory.mktemp("origin")
    (base / "root").mkdir()
    port = free_port()
    argv = [sys.executable, "-m", "fedlake.cli", "se", "serve", "--root", str(base / "root")]
    argv += ["--port", str(port), "--allow-anonymous", "--access-log"]
    process = ServerProcess(argv, base / "origin.log")
    try:
        process.wait_for_port(port, timeout=30)
        yield Origin(base / "root", process, port)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def cache(origin: Origin, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CacheServer]:
    """Block mode (64 KiB blocks), two workers."""
    directory = tmp_path_factory.mktemp("cache") / "blocks"
    args = ["--block-size", "64K", "--size", "100M", "--workers", "2"]
    with running_cache(origin.prefix, directory, *args) as server:
        yield server


def test_first_read_misses_second_hits(origin: Origin, cache: CacheServer) -> None:
    data = os.urandom(200_000)  # 4 blocks
    origin.put("/hits/a.bin", data)
    before = cache.metrics()
    first = httpx.get(cache.url("/hits/a.bin"), timeout=30)
    assert first.status_code == 200
    assert first.content == data
    middle = cache.metrics()
    assert middle["fedlake_cache_misses"] == before["fedlake_cache_misses"] + 1
    assert middle["fedlake_cache_origin_bytes"] == before["fedlake_cache_origin_bytes"] + 200_000
    second = httpx.get(cache.url("/hits/a.bin"), timeout=30)
    assert second.content == data
    after = cache.metrics()
    assert after["fedlake_cache_hits"] == middle["fedlake_cache_hits"] + 1
    assert after["fedlake_cache_hit_bytes"] == middle["fedlake_cache_hit_bytes"] + 200_000
    assert after["fedlake_cache_origin_fetches"] == middle["fedlake_cache_origin_fetches"]
    assert origin.gets("/hits/a.bin") == 4  # one range request per block, once


def test_ranges(origin: Origin, cache: CacheServer) -> None:
    data = os.urandom(300_000)
    origin.put("/ranges/r.bin", data)
    r = httpx.get(cache.url("/ranges/r.bin"), headers={"Range": "bytes=60000-140000"})
    assert r.status_code == 206
    assert r.headers["content-range"] == "bytes 60000-140000/300000"
    assert r.content == data[60000:140001]  # across three blocks
    assert origin.gets("/ranges/r.bin") == 3  # only the blocks the range covers
    r = httpx.get(cache.url("/ranges/r.bin"), headers={"Range": "bytes=-1000"})
    assert (r.status_code, r.content) == (206, data[-1000:])
    r = httpx.get(cache.url("/ranges/r.bin"), headers={"Range": "bytes=300000-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */300000"
    r = httpx.head(cache.url("/ranges/r.bin"))
    assert (r.status_code, r.headers["content-length"]) == (200, "300000")
    assert httpx.get(cache.url("/ranges/r.bin")).content == data


def test_concurrent_reads_fetch_once_across_workers(origin: Origin, cache: CacheServer) -> None:
    data = os.urandom(3_000_000)  # 46 blocks
    origin.put("/many/c.bin", data)
    with ThreadPoolExecutor(12) as pool:
        bodies = list(
            pool.map(lambda _: httpx.get(cache.url("/many/c.bin"), timeout=60), range(12))
        )
    assert all(b.status_code == 200 and b.content == data for b in bodies)
    assert origin.gets("/many/c.bin") == 46


def test_missing_file_is_404(origin: Origin, cache: CacheServer) -> None:
    r = httpx.get(cache.url("/nowhere/x.bin"))
    assert r.status_code == 404
    assert "no such file" in r.text
    assert httpx.get(cache.url("/a/%2e%2e/b")).status_code == 400  # no way out of the origin


def test_eviction_keeps_the_size_bound(origin: Origin, tmp_path: Path) -> None:
    files = {f"/evict/{i}.bin": os.urandom(300_000) for i in range(4)}
    for path, data in files.items():
        origin.put(path, data)
    args = ["--size", "1000000", "--high", "0.9", "--low", "0.5"]  # whole files
    with running_cache(origin.prefix, tmp_path / "cache", *args) as small:
        for path, data in files.items():
            assert httpx.get(small.url(path), timeout=30).content == data
            time.sleep(0.01)
        m = small.metrics()
        assert m["fedlake_cache_evictions"] == 3  # 1.2 MB > 0.9 MB: down to 0.5 MB, oldest first
        assert m["fedlake_cache_used_bytes"] == 300_000
        assert httpx.get(small.url("/evict/3.bin")).content == files["/evict/3.bin"]
        assert small.metrics()["fedlake_cache_hits"] == 1
        assert httpx.get(small.url("/evict/0.bin")).content == files["/evict/0.bin"]
        assert origin.gets("/evict/0.bin") == 2  # evicted, so fetched again
        assert origin.gets("/evict/3.bin") == 1
    blocks = [p for p in (tmp_path / "cache" / "data").rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in blocks) <= 1_000_000


# --- the catalogue check ------------------------------------------------------------------


class FakeLake:
    """Answers ``GET /replicas/<scope>/<name>`` with the lake's NDJSON record."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, object]] = {}
        self.tokens: list[str | None] = []
        lake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                lake.tokens.append(self.headers.get("authorization"))
                rec = lake.records.get(self.path)
                body = (json.dumps(rec) + "\n").encode() if rec else b"{}"
                self.send_response(200 if rec else 404)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, scope: str, name: str, data: bytes, adler32: str | None = None) -> str:
        adler = adler32 or f"{zlib.adler32(data):08x}"
        self.records[f"/replicas/{scope}/{name}"] = {
            "scope": scope,
            "name": name,
            "bytes": len(data),
            "adler32": adler,
            "md5": None,
            "pfns": {},
            "rses": {},
            "states": {},
        }
        return "/" + path_hash(scope, name)


@pytest.fixture(scope="module")
def lake() -> Iterator[FakeLake]:
    fake = FakeLake()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_catalogue_checksum(origin: Origin, lake: FakeLake, tmp_path: Path) -> None:
    good, bad = os.urandom(100_000), os.urandom(100_000)
    good_path = lake.add("data23", "good.bin", good)
    bad_path = lake.add("user.alice", "bad.bin", bad, adler32="deadbeef")
    origin.put(good_path, good)
    origin.put(bad_path, bad)
    token = tmp_path / "token"
    token.write_text("cache-token\n")
    args = ["--lake", lake.url, "--lake-token-file", str(token)]
    with running_cache(origin.prefix, tmp_path / "cache", *args) as checked:
        r = httpx.get(checked.url(good_path), headers={"Want-Digest": "adler32"})
        assert r.status_code == 200
        assert r.content == good
        assert r.headers["digest"] == f"adler32={zlib.adler32(good):08x}"
        for _ in range(2):  # refused, and not kept: the origin is asked again
            r = httpx.get(checked.url(bad_path))
            assert r.status_code == 502
            assert "expected deadbeef" in r.text
        m = checked.metrics()
        assert m["fedlake_cache_checksum_failures"] == 2
        assert m["fedlake_cache_used_bytes"] == 100_000
        assert origin.gets(bad_path) == 2
    assert lake.tokens == ["Bearer cache-token"] * 2


# --- an S3 origin -------------------------------------------------------------------------


def test_s3_origin_served_as_http(moto: S3Server, tmp_path: Path) -> None:  # noqa: F811
    bucket = moto.new_bucket("cache")
    data = os.urandom(500_000)
    moto.client().put_object(Bucket=bucket, Key="run1/events.root", Body=data)
    env = {"FEDLAKE_S3_ACCESS_KEY": moto.access_key, "FEDLAKE_S3_SECRET_KEY": moto.secret_key}
    args = ["--block-size", "128K", "--origin-option", "secure=false"]
    with running_cache(moto.url(bucket), tmp_path / "cache", *args, env=env) as s3cache:
        first = httpx.get(s3cache.url("/run1/events.root"), timeout=30)
        assert (first.status_code, first.content) == (200, data)
        r = httpx.get(s3cache.url("/run1/events.root"), headers={"Range": "bytes=100-299999"})
        assert (r.status_code, r.content) == (206, data[100:300000])
        m = s3cache.metrics()
        assert (m["fedlake_cache_misses"], m["fedlake_cache_hits"]) == (1, 1)
        assert m["fedlake_cache_origin_bytes"] == 500_000
        assert httpx.get(s3cache.url("/run1/missing.root")).status_code == 404
