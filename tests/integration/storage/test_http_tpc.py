"""WLCG HTTP third-party copy (``COPY``) between two real XrdHttp servers over TLS.

Pull (the destination fetches) and push (the source sends), each checked afterwards by
both servers' own adler32 (``Want-Digest``) and by the bytes on the destination's disk;
failures leave no destination. What the client puts on the wire (``Source``,
``Destination``, ``TransferHeaderAuthorization``) and its reading of the marker stream
are checked against a scripted loopback server.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator

import pytest

from fedlake.storage.backends.http_tpc import TransferOutcome, failure_error, read_markers
from fedlake.storage.backends.webdav import WebDAVStorage
from fedlake.storage.base import TransientStorageError
from tests.integration.storage import test_webdav as webdav_tests
from tests.integration.storage.test_webdav import Answer, StubServer, digest_of, reply
from tests.servers import wsgidav as wsgidav_servers
from tests.servers import xrdhttp as xrdhttp_servers
from tests.servers.wsgidav import WsgiDAVServer
from tests.servers.xrdhttp import XrdHttpServer

wsgidav_server = wsgidav_servers.wsgidav_server  # session fixtures
xrdhttp_ca = xrdhttp_servers.xrdhttp_ca
xrdhttp_server = xrdhttp_servers.xrdhttp_server
xrdhttp_server2 = xrdhttp_servers.xrdhttp_server2
stub = webdav_tests.stub  # the scripted loopback server

DATA = os.urandom(3_000_000)


@pytest.fixture(scope="module")
def xrd(xrdhttp_server: XrdHttpServer) -> Iterator[WebDAVStorage]:
    storage = WebDAVStorage(verify=str(xrdhttp_server.ca), timeout=30)
    yield storage
    storage.close()


def unique(server: XrdHttpServer, what: str) -> str:
    return server.url(f"/tpc-{os.urandom(4).hex()}/{what}")


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_copy_between_two_servers_then_verify(
    xrd: WebDAVStorage,
    xrdhttp_server: XrdHttpServer,
    xrdhttp_server2: XrdHttpServer,
    mode: str,
) -> None:
    src = unique(xrdhttp_server, "src.dat")
    dst = unique(xrdhttp_server2, "deep/er/dst.dat")  # parents made first
    want = digest_of(DATA)
    xrd.write(src, [DATA])
    xrd.third_party_copy(src, dst, mode=mode, source_token="s-tok", dest_token="d-tok")
    assert xrd.server_digests(dst, "adler32") == {"adler32": want.adler32}
    assert xrd.checksum(dst, "adler32") == xrd.checksum(src, "adler32") == want.adler32
    assert xrd.checksum(dst, "md5") == want.md5
    assert xrdhttp_server2.local(dst).read_bytes() == DATA


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_missing_source_fails_and_leaves_no_destination(
    xrd: WebDAVStorage,
    xrdhttp_server: XrdHttpServer,
    xrdhttp_server2: XrdHttpServer,
    mode: str,
) -> None:
    src = unique(xrdhttp_server, "missing.dat")
    dst = unique(xrdhttp_server2, "never.dat")
    with pytest.raises(FileNotFoundError, match="no such file"):
        xrd.third_party_copy(src, dst, mode=mode)
    assert not xrd.exists(dst)
    assert not xrdhttp_server2.local(dst).exists()


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_existing_destination_is_kept_without_overwrite(
    xrd: WebDAVStorage,
    xrdhttp_server: XrdHttpServer,
    xrdhttp_server2: XrdHttpServer,
    mode: str,
) -> None:
    src, dst = unique(xrdhttp_server, "new.dat"), unique(xrdhttp_server2, "old.dat")
    xrd.write(src, [DATA])
    xrd.write(dst, [b"old content"])
    with pytest.raises(FileExistsError):
        xrd.third_party_copy(src, dst, mode=mode)
    assert b"".join(xrd.read(dst)) == b"old content"
    xrd.third_party_copy(src, dst, mode=mode, overwrite=True)
    assert xrdhttp_server2.local(dst).read_bytes() == DATA
    assert xrd.checksum(dst, "adler32") == digest_of(DATA).adler32


def test_pull_from_a_plain_webdav_server(
    xrd: WebDAVStorage, wsgidav_server: WsgiDAVServer, xrdhttp_server2: XrdHttpServer
) -> None:
    """XrdHttp (TLS) pulls from WsgiDAV (http), which has no HTTP-TPC of its own."""
    src = wsgidav_server.url(f"/tpc-{os.urandom(4).hex()}/src.dat")
    with WebDAVStorage() as plain:
        plain.write(src, [DATA])
    dst = unique(xrdhttp_server2, "from-wsgidav.dat")
    xrd.third_party_copy(src, dst, mode="pull")
    assert xrd.checksum(dst, "adler32") == digest_of(DATA).adler32


def test_unreachable_source_is_a_connection_error(
    xrd: WebDAVStorage, xrdhttp_server2: XrdHttpServer
) -> None:
    dst = unique(xrdhttp_server2, "nowhere.dat")
    with pytest.raises(ConnectionError):
        xrd.third_party_copy("https://127.0.0.1:1/x.dat", dst, mode="pull")
    assert not xrdhttp_server2.local(dst).exists()


def test_unknown_mode(xrd: WebDAVStorage) -> None:
    with pytest.raises(ValueError, match="mode 'stream'"):
        xrd.third_party_copy("davs://h/a", "davs://h/b", mode="stream")


# --- the wire format, against a scripted server -------------------------------------------

MARKERS = (
    b"Perf Marker\n\tTimestamp: 1795317563\n\tStripe Index: 0\n"
    b"\tStripe Bytes Transferred: 4096\n\tTotal Stripe Count: 1\nEnd\n"
)


def copy_answer(final: bytes) -> Answer:
    def answer(method: str, path: str, headers: dict[str, str]) -> bytes:
        if method == "HEAD":
            return reply(404)
        if method == "MKCOL":
            return reply(405)
        if method == "COPY":
            return reply(201, MARKERS + final, Content_Type="text/plain")
        return reply(204)

    return answer


def test_pull_headers(stub: Callable[[Answer], StubServer]) -> None:
    server = stub(copy_answer(b"success: Created\n"))
    with WebDAVStorage(token="own") as storage:
        storage.third_party_copy(
            "davs://source.example:8443/a b.dat", server.url("/d/x.dat"), source_token="src-tok"
        )
    method, path, headers = server.requests[-1]
    assert (method, path) == ("COPY", "/d/x.dat")
    assert headers["source"] == "https://source.example:8443/a%20b.dat"
    assert headers["transferheaderauthorization"] == "Bearer src-tok"
    assert headers["authorization"] == "Bearer own"  # no dest_token: the instance's own
    assert headers["overwrite"] == "F"
    assert "destination" not in headers


def test_push_headers(stub: Callable[[Answer], StubServer]) -> None:
    server = stub(copy_answer(b"success: Created\n"))
    with WebDAVStorage() as storage:
        storage.third_party_copy(
            server.url("/s/x.dat"),
            server.url("/d/y.dat"),
            mode="push",
            source_token="src-tok",
            dest_token="dst-tok",
            overwrite=True,
        )
    method, path, headers = server.requests[-1]
    assert (method, path) == ("COPY", "/s/x.dat")
    assert headers["destination"] == server.url("/d/y.dat")
    assert headers["authorization"] == "Bearer src-tok"
    assert headers["transferheaderauthorization"] == "Bearer dst-tok"
    assert headers["overwrite"] == "T"


def test_a_failure_line_deletes_the_destination(stub: Callable[[Answer], StubServer]) -> None:
    server = stub(copy_answer(b"failure: Remote side failed with status code 403\n"))
    with WebDAVStorage() as storage, pytest.raises(PermissionError, match="after 4096 bytes"):
        storage.third_party_copy("https://s.example/a", server.url("/d/x.dat"))
    assert server.requests[-1][:2] == ("DELETE", "/d/x.dat")


def test_a_stream_without_a_final_line_is_transient(
    stub: Callable[[Answer], StubServer],
) -> None:
    server = stub(copy_answer(b""))
    with WebDAVStorage() as storage, pytest.raises(TransientStorageError, match="without a"):
        storage.third_party_copy("https://s.example/a", server.url("/d/x.dat"))
    assert server.requests[-1][:2] == ("DELETE", "/d/x.dat")


def test_read_markers() -> None:
    lines = ["Perf Marker", "Stripe Bytes Transferred: 10", "End", "", "success: Created"]
    assert read_markers(iter(lines)) == TransferOutcome(True, "Created", 10)
    assert read_markers(iter(["failure: Couldn't connect to server"])) == TransferOutcome(
        False, "Couldn't connect to server", 0
    )


@pytest.mark.parametrize(
    ("reason", "error", "code"),
    [
        ("Remote side failed with status code 404; no such file", FileNotFoundError, errno.ENOENT),
        ("Remote side failed with status code 401", PermissionError, errno.EACCES),
        ("Remote side failed with status code 503", TransientStorageError, errno.EAGAIN),
        ("Couldn't connect to server", ConnectionError, errno.ECONNREFUSED),
        ("Operation timed out after 30000 ms", TimeoutError, errno.ETIMEDOUT),
        ("No space left on device", OSError, errno.ENOSPC),
        ("Unable to create /f; file exists", FileExistsError, errno.EEXIST),
        ("something else", TransientStorageError, errno.EIO),
    ],
)
def test_failure_mapping(reason: str, error: type[OSError], code: int) -> None:
    exc = failure_error(reason, "COPY x")
    assert type(exc) is error
    assert exc.errno == code
    assert reason in str(exc)
