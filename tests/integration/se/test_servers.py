"""``fedlake se serve`` and ``fedlake se cache`` on each HTTP server (``--server``).

The rest of the SE's tests run on the default server (or ``FEDLAKE_SE_SERVER``); these
run on both, with what differs between them: a whole file bigger than 256 KiB is sent by
granian itself (``http.response.pathsend``) and streamed from Python on uvicorn, for the
SE and for a whole-file cache hit; TLS with several workers; clients that go away.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.servers import require_program, wait_until
from tests.servers.fedlake_cache import CacheServer, running_cache
from tests.servers.fedlake_se import SEServer, running_se
from tests.servers.xrdhttp import make_certificate

SERVERS = ["granian", "uvicorn"]
BIG = os.urandom(3_000_000 + 7)  # well past the 256 KiB read at once


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("se-servers-tls"))


@pytest.fixture(scope="module")
def se(server: str, tls: tuple[Path, Path]) -> Iterator[SEServer]:
    with running_se(anonymous=True, tls=tls, workers=2, server=server) as running:
        yield running


def curl(se: SEServer, *args: str, data: bytes | None = None) -> tuple[int, bytes]:
    program = require_program("curl", "apt-get install curl")
    argv = [program, "-s", "-S", "--cacert", str(se.ca), "-o", "-", "-w", "\n%{http_code}"]
    out = subprocess.run(
        [*argv, *args], input=data, capture_output=True, check=True, timeout=60
    ).stdout
    body, _, status = out.rpartition(b"\n")
    return int(status), body


def verify(se: SEServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(se.ca))


def test_the_chosen_server_answers(se: SEServer, server: str) -> None:
    r = httpx.options(se.url("/"), verify=verify(se))
    assert r.status_code == 200
    # granian names itself; uvicorn is told not to
    assert r.headers.get("server") == ("granian" if server == "granian" else None)


def test_big_file_put_get_range_head(se: SEServer) -> None:
    url = se.url("/big/a.bin")
    assert curl(se, "-X", "MKCOL", se.url("/big/"))[0] == 201
    # curl sends "Expect: 100-continue" for a body this big: the server must answer it
    digest = f"Digest: adler32={zlib.adler32(BIG):08x}"
    status, _ = curl(se, "-T", "-", "-H", "Expect: 100-continue", "-H", digest, url, data=BIG)
    assert status == 201
    status, body = curl(se, url)
    assert (status, len(body), body == BIG) == (200, len(BIG), True)
    status, body = curl(se, "-H", "Range: bytes=1000000-2000000", url)
    assert (status, body == BIG[1000000:2000001]) == (206, True)
    status, body = curl(se, "-H", "Range: bytes=-300000", url)
    assert (status, body == BIG[-300000:]) == (206, True)
    r = httpx.head(url, verify=verify(se), headers={"Want-Digest": "adler32"})
    assert r.headers["content-length"] == str(len(BIG))
    assert r.headers["digest"] == f"adler32={zlib.adler32(BIG):08x}"
    assert r.content == b""


def test_webdav_methods(se: SEServer, server: str) -> None:
    assert curl(se, "-X", "MKCOL", se.url("/dav/"))[0] == 201
    assert curl(se, "-T", "-", se.url("/dav/x.bin"), data=b"x" * 1000)[0] == 201
    move = ["-X", "MOVE", "-H", f"Destination: {se.url('/dav/y.bin')}", se.url("/dav/x.bin")]
    assert curl(se, *move)[0] == 201
    status, body = curl(se, "-X", "PROPFIND", "-H", "Depth: 1", se.url("/dav/"))
    assert status == 207
    assert b"<D:href>/dav/y.bin</D:href>" in body and b"x.bin" not in body
    assert curl(se, "-X", "DELETE", se.url("/dav/y.bin"))[0] == 204
    assert curl(se, "-X", "PATCH", se.url("/dav/"))[0] == 405
    # a method token HTTP does not define: httptools refuses it before the application
    assert curl(se, "-X", "FOO", se.url("/dav/"))[0] == (405 if server == "granian" else 400)


@contextmanager
def connection(se: SEServer) -> Iterator[ssl.SSLSocket]:
    """A TLS connection to ``se`` (closed, abruptly for the server, on leaving)."""
    raw = socket.create_connection(("127.0.0.1", se.port))
    with verify(se).wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        yield conn


def _half_read(se: SEServer, path: str) -> None:
    """GET ``path`` over TLS, read a little of the body, and go away."""
    with connection(se) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")


def test_clients_that_go_away(se: SEServer) -> None:
    (se.root / "gone").mkdir()
    (se.root / "gone" / "b.bin").write_bytes(BIG * 20)  # 60 MB: not sent before the close
    for _ in range(8):
        _half_read(se, "/gone/b.bin")
    # an upload cut off mid-body leaves nothing, and the workers still serve
    with connection(se) as conn:
        head = "PUT /gone/cut.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 9000000\r\n"
        conn.sendall(head.encode() + b"\r\n" + BIG[:500_000])
        wait_until(lambda: len(os.listdir(se.root / "gone")) == 2, "the temporary")
    wait_until(lambda: os.listdir(se.root / "gone") == ["b.bin"], "the temporary to go", 10)
    for _ in range(4):  # both workers, whichever gets the connection
        status, body = curl(se, se.url("/gone/b.bin"))
        assert (status, len(body)) == (200, len(BIG) * 20)


@pytest.fixture(scope="module")
def whole_file_cache(
    se: SEServer, server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CacheServer]:
    """A whole-file cache in front of ``se`` (https, its certificate trusted)."""
    directory = tmp_path_factory.mktemp(f"cache-{server}") / "files"
    args = ["--block-size", "0", "--size", "100M", "--workers", "2", "--server", server]
    args += ["--origin-option", f"verify={se.ca}"]
    with running_cache(se.url("/"), directory, *args) as running:
        yield running


def test_whole_file_cache_hit(se: SEServer, whole_file_cache: CacheServer) -> None:
    cache = whole_file_cache
    (se.root / "cached").mkdir()
    (se.root / "cached" / "c.bin").write_bytes(BIG)
    first = httpx.get(cache.url("/cached/c.bin"), timeout=30)
    assert (first.status_code, first.content == BIG) == (200, True)
    before = cache.metrics()
    second = httpx.get(cache.url("/cached/c.bin"), timeout=30)  # a hit: one file on disk
    assert (second.status_code, second.content == BIG) == (200, True)
    assert second.headers["content-length"] == str(len(BIG))
    after = cache.metrics()
    assert after["fedlake_cache_hits"] == before["fedlake_cache_hits"] + 1
    assert after["fedlake_cache_hit_bytes"] == before["fedlake_cache_hit_bytes"] + len(BIG)
    assert after["fedlake_cache_origin_fetches"] == before["fedlake_cache_origin_fetches"]
    r = httpx.get(cache.url("/cached/c.bin"), headers={"Range": "bytes=5-2999999"}, timeout=30)
    assert (r.status_code, r.content == BIG[5:3000000]) == (206, True)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_tls_server_stops_at_once_with_idle_clients(
    server: str, tls: tuple[Path, Path], workers: int
) -> None:
    """An idle keep-alive client over TLS never sends close_notify: uvicorn waited up to 30 s
    for it when stopping (the SE drops idle connections)."""
    with running_se(anonymous=True, tls=tls, workers=workers, server=server) as se:
        (se.root / "f").write_bytes(b"data")
        with httpx.Client(verify=verify(se)) as client:  # keeps its connection in the pool
            assert client.get(se.url("/f")).content == b"data"
            started = time.monotonic()
            se.process.stop(timeout=20)  # SIGTERM; SIGKILL after 20 s
            took = time.monotonic() - started
            assert se.process.proc.returncode in (0, -15, 143), se.process.proc.returncode
    assert took < 5, f"stopping took {took:.1f} s"
