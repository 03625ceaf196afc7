"""The davs/https/http plugin against real WebDAV servers: WsgiDAV (http) and XrdHttp (TLS).

The conformance suite runs against both; the judge of what is on disk is the server's
directory itself. The rest checks what the suite cannot: the server's ``Want-Digest``
answer (XrdHttp), TLS trust, the error mapping for faults provoked on a real server
(permission denied, no server listening) and, with a tiny scripted socket server, the
faults real servers do not make on demand (a body cut short, 5xx, 507, no MOVE).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fedlake.domain.checksums import Digest
from fedlake.domain.errors import ChecksumMismatch
from fedlake.storage import get_storage
from fedlake.storage.backends.posix import TMP_MARK, is_temporary
from fedlake.storage.backends.webdav import (
    ENV_TOKEN,
    HttpsStorage,
    HttpStorage,
    WebDAVStorage,
    http_url,
    parse_digest,
)
from fedlake.storage.base import Storage, TransientStorageError
from fedlake.storage.testing import StorageConformance
from tests.servers import free_port
from tests.servers import wsgidav as wsgidav_servers
from tests.servers import xrdhttp as xrdhttp_servers
from tests.servers.wsgidav import WsgiDAVServer
from tests.servers.xrdhttp import XrdHttpServer

wsgidav_server = wsgidav_servers.wsgidav_server  # session fixtures
xrdhttp_ca = xrdhttp_servers.xrdhttp_ca
xrdhttp_server = xrdhttp_servers.xrdhttp_server

DATA = os.urandom(300_000)


def digest_of(data: bytes) -> Digest:
    return Digest(
        len(data), f"{zlib.adler32(data):08x}", hashlib.md5(data, usedforsecurity=False).hexdigest()
    )


@pytest.fixture(scope="module")
def dav() -> Iterator[WebDAVStorage]:
    storage = HttpStorage(timeout=30)
    yield storage
    storage.close()


@pytest.fixture(scope="module")
def xrd(xrdhttp_server: XrdHttpServer) -> Iterator[WebDAVStorage]:
    storage = WebDAVStorage(verify=str(xrdhttp_server.ca), timeout=30)
    yield storage
    storage.close()


class TestWsgiDAVConformance(StorageConformance):
    __test__ = True

    @pytest.fixture
    def storage(self, dav: WebDAVStorage) -> Storage:
        return dav

    @pytest.fixture
    def base_url(self, wsgidav_server: WsgiDAVServer) -> str:
        self.server = wsgidav_server
        return wsgidav_server.url("/conformance")

    def raw_listdir(self, storage: Storage, dir_url: str) -> list[str]:
        return os.listdir(self.server.local(dir_url))


class TestXrdHttpConformance(StorageConformance):
    __test__ = True

    @pytest.fixture
    def storage(self, xrd: WebDAVStorage) -> Storage:
        return xrd

    @pytest.fixture
    def base_url(self, xrdhttp_server: XrdHttpServer) -> str:
        self.server = xrdhttp_server
        return xrdhttp_server.url("/conformance")

    def raw_listdir(self, storage: Storage, dir_url: str) -> list[str]:
        return os.listdir(self.server.local(dir_url))


# --- a scripted loopback server for faults on demand -----------------------------------

Answer = Callable[[str, str, dict[str, str]], bytes]


def reply(status: int, body: bytes = b"", **headers: str) -> bytes:
    """A whole response; ``Content_Length="5"`` overrides the body's length (for HEAD)."""
    length = headers.pop("Content_Length", str(len(body)))
    head = [f"HTTP/1.1 {status} Scripted", f"Content-Length: {length}", "Connection: close"]
    head += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class StubServer:
    """Answers each request (one per connection) with the bytes ``answer`` returns."""

    answer: Answer
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    method, path, headers = self._read_request(conn)
                except (OSError, ValueError):
                    continue
                self.requests.append((method, path, headers))
                try:
                    conn.sendall(self.answer(method, path, headers))
                except OSError:
                    continue

    @staticmethod
    def _read_request(conn: socket.socket) -> tuple[str, str, dict[str, str]]:
        buf = b""
        while b"\r\n\r\n" not in buf:
            block = conn.recv(65536)
            if not block:
                raise ValueError("closed")
            buf += block
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        if "content-length" in headers:
            want = int(headers["content-length"]) - len(rest)
            while want > 0:
                block = conn.recv(min(want, 65536))
                if not block:
                    break
                want -= len(block)
        elif headers.get("transfer-encoding") == "chunked":
            while not rest.endswith(b"0\r\n\r\n"):
                block = conn.recv(65536)
                if not block:
                    break
                rest += block
        return method, path, headers

    def stop(self) -> None:
        self._sock.close()


@pytest.fixture
def stub() -> Iterator[Callable[[Answer], StubServer]]:
    started: list[StubServer] = []

    def start(answer: Answer) -> StubServer:
        server = StubServer(answer)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- URLs, registry, options ------------------------------------------------------------


def test_wire_urls_are_encoded_and_davs_is_https() -> None:
    assert http_url("davs://h:8443/d/a b%41;c") == "https://h:8443/d/a%20b%2541%3Bc"
    assert http_url("dav://h/x") == "http://h/x"
    assert http_url("https://h/ünï") == "https://h/%C3%BCn%C3%AF"
    with pytest.raises(ValueError, match="not a davs"):
        http_url("s3://bucket/key")


def test_registry_gives_the_plugin_for_each_scheme_without_network() -> None:
    for scheme, cls in (("davs", WebDAVStorage), ("https", HttpsStorage), ("http", HttpStorage)):
        assert type(get_storage(scheme)) is cls  # no options: a usable default
        storage = get_storage(scheme, verify="false", timeout=7.25)  # options as JSON gives
        assert type(storage) is cls
        assert storage.scheme == scheme
        assert storage.tpc_modes == {"pull", "push"}
        assert isinstance(storage, WebDAVStorage)
        assert (storage.verify, storage.timeout) == (False, 7.25)
        assert storage._client is None  # nothing connected yet


def test_token_comes_from_the_option_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, stub: Callable[[Answer], StubServer]
) -> None:
    monkeypatch.setenv(ENV_TOKEN, "from-env")
    assert WebDAVStorage().token == "from-env"
    assert WebDAVStorage(token="explicit").token == "explicit"
    monkeypatch.delenv(ENV_TOKEN)
    assert WebDAVStorage().token is None
    server = stub(lambda m, p, h: reply(404))
    assert not WebDAVStorage(token="t0k").exists(server.url("/f"))
    assert server.requests[0][2]["authorization"] == "Bearer t0k"
    assert not WebDAVStorage().exists(server.url("/f"))
    assert "authorization" not in server.requests[1][2]


# --- Want-Digest --------------------------------------------------------------------------


def test_parse_digest_forms() -> None:
    md5_hex = "5eb63bbbe01eeed093cb22bb8f5acdc3"  # md5("hello world")
    md5_b64 = "XrY7u+Ae7tCTyyK7j1rNww=="
    assert parse_digest([f"adler32=1a0b045d, md5={md5_b64}"]) == {
        "adler32": "1a0b045d",
        "md5": md5_hex,
    }
    assert parse_digest(["ADLER32=A0B045D", f"MD5={md5_hex.upper()}"]) == {
        "adler32": "0a0b045d",
        "md5": md5_hex,
    }
    assert parse_digest(["adler32=GgsEXQ=="]) == {"adler32": "1a0b045d"}  # base64 adler32
    assert parse_digest(["crc32c=KGBQXQ==", "UNIXcksum=123", "md5=not-a-digest"]) == {}
    assert parse_digest([]) == {}


def test_want_digest_against_xrdhttp(xrd: WebDAVStorage, xrdhttp_server: XrdHttpServer) -> None:
    url = xrdhttp_server.url(f"/digest/{os.urandom(4).hex()}.dat")
    want = digest_of(DATA)
    xrd.write(url, [DATA])
    assert xrd.server_digests(url, "adler32") == {"adler32": want.adler32}
    assert xrd.server_digests(url, "md5") == {"md5": want.md5}  # base64 on the wire
    assert xrd.checksum(url, "adler32") == want.adler32
    assert xrd.checksum(url, "md5") == want.md5
    st = xrd.stat(url, checksums=True)
    assert (st.size, st.adler32) == (len(DATA), want.adler32)


def test_wsgidav_gives_no_digest_so_checksums_are_streamed(
    dav: WebDAVStorage, wsgidav_server: WsgiDAVServer
) -> None:
    url = wsgidav_server.url(f"/digest/{os.urandom(4).hex()}.dat")
    want = digest_of(DATA)
    dav.write(url, [DATA])
    assert dav.server_digests(url, "adler32, md5") == {}
    assert dav.checksum(url, "adler32") == want.adler32
    assert dav.checksum(url, "md5") == want.md5
    st = dav.stat(url, checksums=True)
    assert (st.adler32, st.md5) == (want.adler32, want.md5)


# --- writes ---------------------------------------------------------------------------------


BIG = os.urandom(9 * 1024 * 1024 + 17)  # past the plugin's 8 MiB read-ahead: sent chunked


def _big_chunks(fail: bool = False) -> Iterator[bytes]:
    for i in range(0, len(BIG), 1 << 20):
        yield BIG[i : i + (1 << 20)]
        if fail and i >= 8 << 20:
            raise RuntimeError("the source broke off")


@pytest.fixture(params=["wsgidav", "xrdhttp"])
def anywhere(
    request: pytest.FixtureRequest, dav: WebDAVStorage, wsgidav_server: WsgiDAVServer
) -> tuple[WebDAVStorage, WsgiDAVServer | XrdHttpServer]:
    if request.param == "wsgidav":
        return dav, wsgidav_server
    return request.getfixturevalue("xrd"), request.getfixturevalue("xrdhttp_server")


def test_large_source_of_unknown_length_is_sent_chunked(
    anywhere: tuple[WebDAVStorage, WsgiDAVServer | XrdHttpServer],
) -> None:
    storage, server = anywhere
    url = server.url(f"/chunked-{os.urandom(4).hex()}/big.bin")
    assert storage.write(url, _big_chunks()) == digest_of(BIG)
    assert server.local(url).read_bytes() == BIG
    assert storage.checksum(url, "adler32") == digest_of(BIG).adler32


def test_temporary_is_a_hidden_sibling_while_writing(
    anywhere: tuple[WebDAVStorage, WsgiDAVServer | XrdHttpServer],
) -> None:
    storage, server = anywhere
    url = server.url(f"/tmpname-{os.urandom(4).hex()}/obs.ms")
    storage.mkdir(url.rsplit("/", 1)[0])
    directory = server.local(url).parent
    during: list[str] = []

    def chunks() -> Iterator[bytes]:
        yield from _big_chunks()
        time.sleep(0.3)  # the PUT is under way: the server has 9 MiB on disk by now
        during.extend(os.listdir(directory))
        yield b"end"

    storage.write(url, chunks())
    assert len(during) == 1, during
    assert during[0].startswith(".obs.ms" + TMP_MARK)
    assert is_temporary(during[0])
    assert os.listdir(directory) == ["obs.ms"]


def test_source_breaking_off_mid_upload_leaves_nothing(
    anywhere: tuple[WebDAVStorage, WsgiDAVServer | XrdHttpServer],
) -> None:
    """The PUT is under way (chunked, 8 MiB sent) when the source fails."""
    storage, server = anywhere
    url = server.url(f"/broken-{os.urandom(4).hex()}/big.bin")
    storage.write(url.rsplit("/", 1)[0] + "/sibling", [b"x"])
    with pytest.raises(RuntimeError, match="broke off"):
        storage.write(url, _big_chunks(fail=True))
    assert os.listdir(server.local(url).parent) == ["sibling"]
    assert not storage.exists(url)


@pytest.mark.parametrize("given", [len(DATA) - 1, len(DATA) + 1])
def test_a_source_of_another_length_than_expected_keeps_nothing(
    anywhere: tuple[WebDAVStorage, WsgiDAVServer | XrdHttpServer], given: int
) -> None:
    """With ``expected`` the length is sent up front; the source must match it."""
    storage, server = anywhere
    url = server.url(f"/length-{os.urandom(4).hex()}/f.bin")
    storage.write(url.rsplit("/", 1)[0] + "/sibling", [b"x"])
    wrong = Digest(given, digest_of(DATA).adler32, None)
    with pytest.raises(ChecksumMismatch, match="expected"):
        storage.write(url, iter([DATA[:1000], DATA[1000:]]), expected=wrong)
    assert os.listdir(server.local(url).parent) == ["sibling"]


def test_more_names_are_literal(
    anywhere: tuple[WebDAVStorage, WsgiDAVServer | XrdHttpServer],
) -> None:
    """Beyond the suite's names: '#', '&', '<' (XML), '%2F', a leading dot, trailing blanks."""
    storage, server = anywhere
    base = server.url(f"/names-{os.urandom(4).hex()}")
    names = ["h#x", "a&b<c>", "pct%2Fslash", ".hidden", "ä ö", "trailing ", "ends in ä"]
    for name in names:
        storage.write(f"{base}/{name}", [name.encode()])
    assert storage.listdir(base) == sorted(names)
    assert sorted(os.listdir(server.local(base))) == sorted(names)
    for name in names:
        assert b"".join(storage.read(f"{base}/{name}")) == name.encode()


def test_a_question_mark_in_a_name_is_refused_cleanly(
    anywhere: tuple[WebDAVStorage, WsgiDAVServer | XrdHttpServer],
) -> None:
    """Neither server can MOVE onto a name with '?': a clear error, nothing left behind."""
    storage, server = anywhere
    base = server.url(f"/qmark-{os.urandom(4).hex()}")
    storage.write(f"{base}/sibling", [b"x"])
    with pytest.raises(OSError, match="cannot MOVE to a name containing '\\?'") as info:
        storage.write(f"{base}/what?.dat", [b"data"])
    assert info.value.errno == errno.EINVAL
    assert os.listdir(server.local(base)) == ["sibling"]


def test_put_file_sends_a_content_length(
    tmp_path: Path, stub: Callable[[Answer], StubServer]
) -> None:
    local = tmp_path / "f.bin"
    local.write_bytes(DATA)

    def answer(method: str, path: str, headers: dict[str, str]) -> bytes:
        if method == "PROPFIND":
            return reply(404)
        if method == "HEAD":
            return reply(200, Content_Length=str(len(DATA)))
        return reply(201)

    server = stub(answer)
    got = WebDAVStorage().put_file(str(local), server.url("/d/f.bin"))
    assert got == digest_of(DATA)
    puts = [h for m, _, h in server.requests if m == "PUT"]
    assert puts[0]["content-length"] == str(len(DATA))
    assert "transfer-encoding" not in puts[0]
    assert [m for m, _, _ in server.requests] == [
        "PROPFIND",
        "MKCOL",
        "PUT",
        "HEAD",
        "MOVE",
    ]
    move = server.requests[-1]
    assert move[2]["destination"] == server.url("/d/f.bin")
    assert move[2]["overwrite"] == "F"


def test_a_server_without_move_is_reported_and_keeps_nothing(
    stub: Callable[[Answer], StubServer],
) -> None:
    def answer(method: str, path: str, headers: dict[str, str]) -> bytes:
        if method in ("PROPFIND",):
            return reply(404)
        if method == "HEAD":
            return reply(200, Content_Length="5")
        if method == "MOVE":
            return reply(405, b"Method Not Allowed")
        return reply(201)

    server = stub(answer)
    with pytest.raises(OSError, match="does not support MOVE") as info:
        WebDAVStorage().write(server.url("/d/f.bin"), [b"12345"])
    assert info.value.errno == errno.EOPNOTSUPP
    deleted = [p for m, p, _ in server.requests if m == "DELETE"]
    assert len(deleted) == 1 and is_temporary(deleted[0].rsplit("/", 1)[1])


def test_permission_denied_on_xrdhttp(xrd: WebDAVStorage, xrdhttp_server: XrdHttpServer) -> None:
    """A directory the server's user cannot write: 403 from the real server."""
    locked = xrdhttp_server.root / f"locked-{os.urandom(4).hex()}"
    locked.mkdir(mode=0o755)  # owned by root; xrootd runs as user xrootd
    try:
        url = xrdhttp_server.url(f"/{locked.name}/f.dat")
        with pytest.raises(PermissionError, match="403"):
            xrd.write(url, [DATA])
        assert os.listdir(locked) == []
    finally:
        shutil.rmtree(locked)


def test_checksum_mismatch_reported_by_the_server_keeps_nothing(
    stub: Callable[[Answer], StubServer],
) -> None:
    """The server stored other bytes than were sent (its adler32 says so)."""

    def answer(method: str, path: str, headers: dict[str, str]) -> bytes:
        if method == "PROPFIND":
            return reply(404)
        if method == "HEAD":
            return reply(200, Content_Length="5", Digest="adler32=00000001")
        return reply(201)

    server = stub(answer)
    with pytest.raises(ChecksumMismatch, match="server's adler32 is 00000001"):
        WebDAVStorage().write(server.url("/d/f.bin"), [b"12345"])
    assert [m for m, _, _ in server.requests][-1] == "DELETE"


# --- error mapping ------------------------------------------------------------------------


def test_no_server_listening_is_a_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/d/f.dat"
    storage = WebDAVStorage(timeout=5)
    with pytest.raises(ConnectionError, match="cannot connect"):
        storage.exists(url)
    with pytest.raises(ConnectionError):
        b"".join(storage.read(url))
    with pytest.raises(ConnectionError):
        storage.write(url, [b"x"])


def test_untrusted_certificate_is_a_permission_error(xrdhttp_server: XrdHttpServer) -> None:
    url = xrdhttp_server.url("/anything")
    with WebDAVStorage() as storage, pytest.raises(PermissionError, match="not trusted"):
        storage.exists(url)  # the system's CAs do not know the self-signed one
    with WebDAVStorage(verify=False) as storage:
        assert storage.exists(url) is False


def test_a_body_cut_short_is_transient(stub: Callable[[Answer], StubServer]) -> None:
    """The server announces 100,000 bytes, sends 1,000 and closes the connection."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n"
    server = stub(lambda m, p, h: head + b"x" * 1000)
    with WebDAVStorage(timeout=5) as storage, pytest.raises(TransientStorageError, match="broke"):
        b"".join(storage.read(server.url("/f.dat")))


def test_a_silent_server_is_a_timeout(stub: Callable[[Answer], StubServer]) -> None:
    def answer(method: str, path: str, headers: dict[str, str]) -> bytes:
        time.sleep(1.5)
        return reply(404)

    server = stub(answer)
    with pytest.raises(TimeoutError, match="timed out"):
        WebDAVStorage(timeout=0.5).exists(server.url("/f.dat"))


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (401, PermissionError, errno.EACCES),
        (403, PermissionError, errno.EACCES),
        (404, FileNotFoundError, errno.ENOENT),
        (429, TransientStorageError, errno.EAGAIN),
        (500, TransientStorageError, errno.EAGAIN),
        (503, TransientStorageError, errno.EAGAIN),
        (507, OSError, errno.ENOSPC),
    ],
)
def test_status_mapping(
    stub: Callable[[Answer], StubServer], status: int, error: type[OSError], code: int
) -> None:
    server = stub(lambda m, p, h: reply(status, b"the server's own words"))
    with pytest.raises(error) as info:
        b"".join(WebDAVStorage().read(server.url("/f.dat")))
    assert info.value.errno == code
    assert server.url("/f.dat") in str(info.value)
    assert "the server's own words" in str(info.value)
    if status not in (404,):
        assert type(info.value) is not FileNotFoundError


def test_existing_name_on_move_is_file_exists(stub: Callable[[Answer], StubServer]) -> None:
    """A target that appears during the upload: the server's 412 to MOVE Overwrite: F."""

    def answer(method: str, path: str, headers: dict[str, str]) -> bytes:
        if method == "PROPFIND":
            return reply(404)
        if method == "HEAD":
            return reply(200, Content_Length="1")
        if method == "MOVE":
            return reply(412)
        return reply(201)

    server = stub(answer)
    with pytest.raises(FileExistsError):
        WebDAVStorage().write(server.url("/d/f.bin"), [b"x"])
    assert [m for m, _, _ in server.requests][-1] == "DELETE"


def test_delete_refuses_a_directory(dav: WebDAVStorage, wsgidav_server: WsgiDAVServer) -> None:
    url = wsgidav_server.url(f"/keep-{os.urandom(4).hex()}")
    dav.write(url + "/inside.dat", [b"x"])
    with pytest.raises(IsADirectoryError):
        dav.delete(url)
    assert dav.exists(url + "/inside.dat")
    with pytest.raises(IsADirectoryError):
        dav.stat(url)
    with pytest.raises(NotADirectoryError):
        dav.listdir(url + "/inside.dat")


def test_mkdir_over_a_file_is_file_exists(
    xrd: WebDAVStorage, xrdhttp_server: XrdHttpServer
) -> None:
    url = xrdhttp_server.url(f"/plain-{os.urandom(4).hex()}.dat")
    xrd.write(url, [b"x"])
    with pytest.raises(FileExistsError):
        xrd.mkdir(url)


def test_negative_offset_reads_from_the_end(
    dav: WebDAVStorage,
    xrd: WebDAVStorage,
    wsgidav_server: WsgiDAVServer,
    xrdhttp_server: XrdHttpServer,
) -> None:
    for storage, server in ((dav, wsgidav_server), (xrd, xrdhttp_server)):
        url = server.url(f"/neg-{os.urandom(4).hex()}.dat")
        storage.write(url, [b"0123456789"])
        assert b"".join(storage.read(url, -3)) == b"789"
        assert b"".join(storage.read(url, -3, 2)) == b"78"
        assert b"".join(storage.read(url, -30)) == b"0123456789"
