"""HTTP third-party copy (``COPY``) at ``fedlake se serve``: pull and push between two real
SE processes, tokens forwarded with ``TransferHeaderAuthorization`` to an SE that requires
them, the lake's own HTTP-TPC client (``WebDAVStorage.third_party_copy``) against them, and
the failures: missing source, wrong checksum, cut-off source, disallowed hosts and
redirects, each leaving no file. A scripted source (a thread on loopback) throttles, cuts
off, lies about its checksum and records what it was sent.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fedlake.storage.backends.webdav import HttpStorage
from tests.issuer_app import WLCG_ANY, TestIssuer, run_issuer
from tests.servers import free_port
from tests.servers.fedlake_se import SEServer, running_se

DATA = os.urandom(2 * 1024 * 1024 + 123)
SLOW = os.urandom(64 * 1024)
OPEN = "[tpc]\nmarker_interval = 0.2\n"


# --- a scripted source ------------------------------------------------------------------


class Source(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.other = ""  # where /away redirects to

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Source

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self, body: bytes = b"") -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append((self.command, self.path, headers, body))

    def _head(self, status: int, length: int, **extra: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        for name, value in extra.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()

    def do_GET(self) -> None:
        self._record()
        path = self.path
        if path == "/good":
            self._head(200, len(DATA), Digest=f"adler32={zlib.adler32(DATA):08x}")
            self.wfile.write(DATA)
        elif path == "/wrong-digest":
            self._head(200, len(DATA), Digest=f"adler32={zlib.adler32(DATA) ^ 1:08x}")
            self.wfile.write(DATA)
        elif path == "/cut":  # announces all, sends a third, hangs up
            self._head(200, len(DATA))
            self.wfile.write(DATA[: len(DATA) // 3])
            self.wfile.flush()
            self.close_connection = True
        elif path == "/slow":  # about 1.2 s: several markers at 0.2 s
            self._head(200, len(SLOW))
            for i in range(0, len(SLOW), 4096):
                self.wfile.write(SLOW[i : i + 4096])
                self.wfile.flush()
                time.sleep(0.075)
        elif path == "/hop":  # same host: followed
            self._head(307, 0, Location="/good")
        elif path == "/away":  # another host: refused
            self._head(302, 0, Location=self.server.other)
        else:
            self._head(404, 9)
            self.wfile.write(b"not found")

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._record(body)
        self._head(201, 0)


@contextlib.contextmanager
def running_source() -> Iterator[Source]:
    """The scripted source server, serving from a thread until the block ends."""
    server = Source()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    with running_source() as server:
        yield server


# --- the SEs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def se_a() -> Iterator[SEServer]:
    with running_se(anonymous=True, config=OPEN) as server:
        yield server


@pytest.fixture(scope="module")
def se_b() -> Iterator[SEServer]:
    with running_se(anonymous=True, config=OPEN) as server:
        yield server


@pytest.fixture(scope="module")
def issuer() -> Iterator[TestIssuer]:
    with run_issuer() as iss:
        yield iss


@pytest.fixture(scope="module")
def se_tok(issuer: TestIssuer) -> Iterator[SEServer]:
    """An SE where only tokens with storage scopes may do anything."""
    config = f'[[issuers]]\nissuer = "{issuer.url}"\naudiences = ["{WLCG_ANY}"]\n\n{OPEN}'
    with running_se(config=config) as server:
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=60) as client:
        yield client


def put_file(se: SEServer, path: str, data: bytes = DATA) -> str:
    local = se.root / path.lstrip("/")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    return se.url(path)


def fresh(what: str) -> str:
    return f"/tpc-{os.urandom(4).hex()}/{what}"


def copy(http: httpx.Client, url: str, **headers: str) -> tuple[int, list[str], float]:
    """COPY; the status, the body's lines, and the seconds until the first marker."""
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    t0 = time.monotonic()
    first = -1.0
    lines: list[str] = []
    with http.stream("COPY", url, headers=sent) as r:
        for line in r.iter_lines():
            if first < 0 and line == "Perf Marker":
                first = time.monotonic() - t0
            lines.append(line)
        return r.status_code, lines, first


def markers(lines: list[str]) -> list[int]:
    """The byte counts of the performance markers, checking each block's format."""
    out = []
    for i, line in enumerate(lines):
        if line == "Perf Marker":
            block = lines[i + 1 : i + 6]
            assert block[0].startswith("Timestamp: ") and block[0][11:].isdigit()
            assert block[1] == "Stripe Index: 0"
            assert block[2].startswith("Stripe Bytes Transferred: ")
            assert block[3] == "Total Stripe Count: 1"
            assert block[4] == "End"
            out.append(int(block[2].rpartition(" ")[2]))
    return out


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data):08x}"


# --- pull and push ----------------------------------------------------------------------


def test_pull(se_a: SEServer, se_b: SEServer, http: httpx.Client) -> None:
    src = put_file(se_a, fresh("src.bin"))
    dst = se_b.url(fresh("dst.bin"))
    (se_b.local(dst).parent).mkdir(parents=True)
    status, lines, _ = copy(http, dst, Source=src)
    assert status == 202
    assert lines[-1] == "success: Created"
    assert markers(lines)[-1] == len(DATA)
    assert se_b.local(dst).read_bytes() == DATA
    assert leftovers(se_b.local(dst).parent) == ["dst.bin"]
    head = http.head(dst, headers={"Want-Digest": "adler32"})
    assert head.headers["digest"] == f"adler32={adler(DATA)}"  # stored by the copy


def test_push(se_a: SEServer, se_b: SEServer, http: httpx.Client) -> None:
    src = put_file(se_a, fresh("src.bin"))
    dst = se_b.url(fresh("dst.bin"))
    se_b.local(dst).parent.mkdir(parents=True)
    status, lines, _ = copy(http, src, Destination=dst.replace("http://", "dav://"))
    assert (status, lines[-1]) == (202, "success: Created")
    assert markers(lines)[-1] == len(DATA)
    assert se_b.local(dst).read_bytes() == DATA


def test_push_sends_the_stored_checksum(se_a: SEServer, source: Source, http: httpx.Client) -> None:
    src = se_a.url(fresh("up.bin"))
    http.request("MKCOL", src.rpartition("/")[0])
    assert http.put(src, content=DATA).status_code == 201  # the SE stores its adler32
    status, lines, _ = copy(http, src, Destination=source.url("/upload/x"), Overwrite="F")
    assert (status, lines[-1]) == (202, "success: Created")
    method, path, headers, body = source.seen[-1]
    assert (method, path, body) == ("PUT", "/upload/x", DATA)
    assert headers["digest"] == f"adler32={adler(DATA)}"
    assert headers["if-none-match"] == "*"  # Overwrite: F


def test_pull_follows_a_redirect_on_the_same_host(
    se_b: SEServer, source: Source, http: httpx.Client
) -> None:
    dst = se_b.url(fresh("hop.bin"))
    se_b.local(dst).parent.mkdir(parents=True)
    status, lines, _ = copy(http, dst, Source=source.url("/hop"))
    assert (status, lines[-1]) == (202, "success: Created")
    assert se_b.local(dst).read_bytes() == DATA


def test_existing_destination_and_overwrite(
    se_a: SEServer, se_b: SEServer, http: httpx.Client
) -> None:
    src = put_file(se_a, fresh("src.bin"))
    dst = put_file(se_b, fresh("old.bin"), b"old")
    r = http.request("COPY", dst, headers={"Source": src, "Overwrite": "F"})
    assert r.status_code == 412
    assert se_b.local(dst).read_bytes() == b"old"
    status, lines, _ = copy(http, dst, Source=src, Overwrite="T")
    assert (status, lines[-1]) == (202, "success: Created")
    assert se_b.local(dst).read_bytes() == DATA


# --- forwarded headers and tokens --------------------------------------------------------


def test_transfer_headers_are_forwarded_without_their_prefix(
    se_b: SEServer, source: Source, http: httpx.Client
) -> None:
    dst = se_b.url(fresh("fwd.bin"))
    se_b.local(dst).parent.mkdir(parents=True)
    status, lines, _ = copy(
        http,
        dst,
        Source=source.url("/good"),
        TransferHeaderAuthorization="Bearer remote-token",
        TransferHeaderX_Custom="yes",
        TransferHeaderHost="evil.example",  # connection headers are not forwarded
        Authorization_Ignored="x",
    )
    assert (status, lines[-1]) == (202, "success: Created")
    method, path, headers, _ = source.seen[-1]
    assert (method, path) == ("GET", "/good")
    assert headers["authorization"] == "Bearer remote-token"
    assert headers["x-custom"] == "yes"
    assert headers["host"].startswith("127.0.0.1:")
    assert not [h for h in headers if h.startswith("transferheader") or h.endswith("ignored")]
    assert "adler32" in headers["want-digest"]


def test_pull_from_an_se_that_needs_a_token(
    se_tok: SEServer, se_b: SEServer, issuer: TestIssuer, http: httpx.Client
) -> None:
    path = fresh("secret.bin")
    src = put_file(se_tok, path)
    dst = se_b.url(fresh("got.bin"))
    se_b.local(dst).parent.mkdir(parents=True)
    status, lines, _ = copy(http, dst, Source=src)
    assert status == 202
    assert lines[-1].startswith("failure:") and "status code 401" in lines[-1]
    assert leftovers(se_b.local(dst).parent) == []
    wrong = issuer.mint(scope="storage.read:/elsewhere")
    _, lines, _ = copy(http, dst, Source=src, TransferHeaderAuthorization=f"Bearer {wrong}")
    assert "status code 403" in lines[-1]
    token = issuer.mint(scope=f"storage.read:{path}")
    _, lines, _ = copy(http, dst, Source=src, TransferHeaderAuthorization=f"Bearer {token}")
    assert lines[-1] == "success: Created"
    assert se_b.local(dst).read_bytes() == DATA


def test_copy_into_an_se_that_needs_a_token(
    se_a: SEServer, se_tok: SEServer, issuer: TestIssuer, http: httpx.Client
) -> None:
    src = put_file(se_a, fresh("src.bin"))
    path = fresh("in.bin")
    (se_tok.root / path.strip("/")).parent.mkdir(parents=True)
    dst = se_tok.url(path)
    r = http.request("COPY", dst, headers={"Source": src})
    assert r.status_code == 401  # anonymous: refused before anything moves
    reader = issuer.mint(scope=f"storage.read:{path}")
    r = http.request("COPY", dst, headers={"Source": src, "Authorization": f"Bearer {reader}"})
    assert r.status_code == 403
    assert "storage.create" in r.text
    writer = issuer.mint(scope=f"storage.create:{path}")
    status, lines, _ = copy(http, dst, Source=src, Authorization=f"Bearer {writer}")
    assert lines[-1] == "success: Created"
    assert se_tok.local(dst).read_bytes() == DATA
    # push needs storage.read on the local file
    back = se_a.url(fresh("back.bin"))
    se_a.local(back).parent.mkdir(parents=True)
    r = http.request(
        "COPY", dst, headers={"Destination": back, "Authorization": f"Bearer {writer}"}
    )
    assert r.status_code == 403
    status, lines, _ = copy(http, dst, Destination=back, Authorization=f"Bearer {reader}")
    assert (status, lines[-1]) == (202, "success: Created")
    assert se_a.local(back).read_bytes() == DATA


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_the_lakes_tpc_client_with_tokens(
    se_tok: SEServer, se_a: SEServer, issuer: TestIssuer, mode: str
) -> None:
    """fedlake.storage's HTTP-TPC client, as the transfer engine runs it, between a token SE
    and an open one (both directions), parents made first."""
    path = fresh("client.bin")
    src = put_file(se_tok, path)
    dst = se_a.url(fresh("deep/er/dst.bin"))
    token = issuer.mint(scope=f"storage.read:{path}")
    with HttpStorage(timeout=30) as storage:
        storage.third_party_copy(src, dst, mode=mode, source_token=token, dest_token=None)
        assert storage.checksum(dst, "adler32") == adler(DATA)
    assert se_a.local(dst).read_bytes() == DATA
    # and back into the token SE, which needs storage.create there
    back = fresh("deep/back.bin")
    top = "/" + back.split("/")[1]  # the client HEADs the target, then makes its parents
    writer = issuer.mint(scope=f"storage.read:{top} storage.create:{top}")
    with HttpStorage(timeout=30) as storage:
        storage.third_party_copy(dst, se_tok.url(back), mode=mode, dest_token=writer)
    assert (se_tok.root / back.strip("/")).read_bytes() == DATA


# --- failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["pull", "push"])
def test_missing_source(se_a: SEServer, se_b: SEServer, http: httpx.Client, mode: str) -> None:
    src = se_a.url(fresh("missing.bin"))
    dst = se_b.url(fresh("never.bin"))
    se_b.local(dst).parent.mkdir(parents=True)
    if mode == "pull":
        status, lines, _ = copy(http, dst, Source=src)
        assert status == 202
        assert lines[-1].startswith("failure: GET ")
        assert "status code 404" in lines[-1]
    else:
        r = http.request("COPY", src, headers={"Destination": dst})
        assert r.status_code == 404
    assert leftovers(se_b.local(dst).parent) == []


def test_a_checksum_mismatch_leaves_no_file(
    se_b: SEServer, source: Source, http: httpx.Client
) -> None:
    dst = se_b.url(fresh("bad.bin"))
    se_b.local(dst).parent.mkdir(parents=True)
    status, lines, _ = copy(http, dst, Source=source.url("/wrong-digest"))
    assert status == 202
    assert lines[-1].startswith("failure: checksum mismatch")
    assert f"adler32 is {adler(DATA)}" in lines[-1]
    assert leftovers(se_b.local(dst).parent) == []


def test_a_cut_off_source_leaves_no_file(
    se_b: SEServer, source: Source, http: httpx.Client
) -> None:
    dst = put_file(se_b, fresh("kept.bin"), b"previous")
    status, lines, _ = copy(http, dst, Source=source.url("/cut"))
    assert status == 202
    assert lines[-1].startswith("failure: ")
    assert "nothing was stored" in lines[-1]
    assert se_b.local(dst).read_bytes() == b"previous"  # the old file is untouched
    assert leftovers(se_b.local(dst).parent) == ["kept.bin"]


def test_performance_markers_while_a_slow_source_sends(
    se_b: SEServer, source: Source, http: httpx.Client
) -> None:
    dst = se_b.url(fresh("slow.bin"))
    se_b.local(dst).parent.mkdir(parents=True)
    status, lines, first = copy(http, dst, Source=source.url("/slow"))
    assert (status, lines[-1]) == (202, "success: Created")
    counts = markers(lines)
    assert len(counts) >= 3, lines
    assert counts == sorted(counts)
    assert 0 < counts[0] < len(SLOW)  # reported while the bytes were still arriving
    assert counts[-1] == len(SLOW)
    assert first < 1.0  # the first marker came before the end of the copy
    assert se_b.local(dst).read_bytes() == SLOW


@pytest.mark.parametrize(
    ("header", "url"),
    [
        ("Source", "https://192.0.2.7/data/f.bin"),
        ("Destination", "davs://se.example.org:8443/f.bin"),
        ("Source", "http://127.0.0.2.nip.example/f"),
    ],
)
def test_disallowed_hosts_are_refused(
    se_a: SEServer, se_b: SEServer, http: httpx.Client, header: str, url: str
) -> None:
    local = put_file(se_a, fresh("f.bin")) if header == "Destination" else se_b.url(fresh("x"))
    r = http.request("COPY", local, headers={header: url})
    assert r.status_code == 403
    assert "not allowed by this storage element's configuration" in r.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Source": "http://127.0.0.1:1/a", "Destination": "http://127.0.0.1:1/b"},
        {"Source": "ftp://127.0.0.1/a"},
        {"Source": "https://user:pw@127.0.0.1/a"},
    ],
)
def test_bad_copy_requests(se_b: SEServer, http: httpx.Client, headers: dict[str, str]) -> None:
    r = http.request("COPY", se_b.url(fresh("x")), headers=headers)
    assert r.status_code == 400, r.text


def test_a_redirect_to_another_host_is_not_followed(
    se_b: SEServer, source: Source, http: httpx.Client
) -> None:
    source.other = "http://localhost:1/elsewhere"
    dst = se_b.url(fresh("away.bin"))
    se_b.local(dst).parent.mkdir(parents=True)
    status, lines, _ = copy(http, dst, Source=source.url("/away"))
    assert status == 202
    assert "redirects are followed on the same host only" in lines[-1]
    assert leftovers(se_b.local(dst).parent) == []


def test_an_unreachable_source(se_b: SEServer, http: httpx.Client) -> None:
    dst = se_b.url(fresh("nowhere.bin"))
    se_b.local(dst).parent.mkdir(parents=True)
    status, lines, _ = copy(http, dst, Source="http://127.0.0.1:1/x")
    assert status == 202
    assert lines[-1].startswith("failure: GET http://127.0.0.1:1/x failed: Couldn't connect")


def test_a_client_that_goes_away_cancels_the_pull(
    se_b: SEServer, source: Source, http: httpx.Client
) -> None:
    dst = se_b.url(fresh("gone.bin"))
    directory = se_b.local(dst).parent
    directory.mkdir(parents=True)
    with http.stream("COPY", dst, headers={"Source": source.url("/slow")}) as r:
        lines = r.iter_lines()
        assert next(lines) == "Perf Marker"  # under way: a temporary is being written
        assert [p for p in directory.iterdir() if p.name.startswith(".gone.bin")]
    deadline = time.monotonic() + 10  # closed: the SE notices, stops and cleans up
    while leftovers(directory) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers(directory) == []
