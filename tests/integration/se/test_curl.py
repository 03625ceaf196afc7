"""``fedlake se serve`` with curl: every method, and every kind of bad input.

An anonymous server (read and write for everyone) on plain HTTP; the served directory is
the judge of what was written. Authorization is tested in test_tokens.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import socket
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedlake.storage.backends._dav import parse_multistatus
from fedlake.storage.backends.posix import is_temporary
from tests.servers import require_program, wait_until
from tests.servers.fedlake_se import SEServer, running_se

DATA = random.Random(6).randbytes(200_000)  # fixed: test ids (digests) must not vary


@pytest.fixture(scope="module")
def se() -> Iterator[SEServer]:
    with running_se(anonymous=True) as server:
        yield server


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def curl(se: SEServer, method: str, path: str, *args: str, data: bytes | None = None) -> Reply:
    """One request with curl (path taken as is: no ``..`` folding by curl)."""
    program = require_program("curl", "apt-get install curl")
    argv = [program, "-s", "-S", "--path-as-is", "-X", method, "-D", "-", "-o", "-"]
    if method == "HEAD":
        argv[argv.index("-X") : argv.index("-X") + 2] = ["-I"]
    if data is not None:
        argv += ["--data-binary", "@-", "-H", "Content-Type: application/octet-stream"]
    out = subprocess.run(
        [*argv, *args, se.url(path)], input=data, capture_output=True, check=True, timeout=30
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(lines[0].split()[1]), headers, body)


def put(se: SEServer, path: str, data: bytes = DATA, *headers: str) -> Reply:
    args = [a for h in headers for a in ("-H", h)]
    return curl(se, "PUT", path, *args, data=data)


def temporaries(directory: Path) -> list[str]:
    return [n for n in os.listdir(directory) if is_temporary(n)]


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


# --- PUT ----------------------------------------------------------------------------------


def test_put_creates_then_overwrites(se: SEServer) -> None:
    assert curl(se, "MKCOL", "/put").status == 201
    assert put(se, "/put/a.bin").status == 201
    assert (se.root / "put" / "a.bin").read_bytes() == DATA
    assert put(se, "/put/a.bin", b"second").status == 204
    assert (se.root / "put" / "a.bin").read_bytes() == b"second"
    assert temporaries(se.root / "put") == []


def test_put_into_a_missing_collection_is_409(se: SEServer) -> None:
    r = put(se, "/no/such/dir/a.bin")
    assert r.status == 409
    assert b"MKCOL" in r.body
    assert not (se.root / "no").exists()


@pytest.mark.parametrize(
    "header",
    [
        f"Digest: adler32={zlib.adler32(DATA):08x}",
        f"Digest: ADLER32={zlib.adler32(DATA):08X}",
        f"Digest: md5={b64md5(DATA)}",
        f"Digest: adler32={zlib.adler32(DATA):08x}, md5={b64md5(DATA)}, sha-256=ignored",
        f"Content-MD5: {b64md5(DATA)}",
    ],
)
def test_put_with_the_right_digest(se: SEServer, header: str) -> None:
    curl(se, "MKCOL", "/good")
    assert put(se, "/good/a.bin", DATA, header).status in (201, 204)
    assert (se.root / "good" / "a.bin").read_bytes() == DATA


@pytest.mark.parametrize(
    "header",
    [
        f"Digest: adler32={zlib.adler32(DATA) ^ 1:08x}",
        f"Digest: md5={b64md5(b'other')}",
        f"Content-MD5: {b64md5(b'other')}",
    ],
)
def test_put_with_a_wrong_digest_stores_nothing(se: SEServer, header: str) -> None:
    curl(se, "MKCOL", "/wrong")
    r = put(se, "/wrong/a.bin", DATA, header)
    assert r.status == 400
    assert b"Digest mismatch" in r.body and b"nothing was stored" in r.body
    assert os.listdir(se.root / "wrong") == []


def test_a_wrong_digest_keeps_the_old_file(se: SEServer) -> None:
    curl(se, "MKCOL", "/keep")
    assert put(se, "/keep/a.bin", b"old").status == 201
    assert put(se, "/keep/a.bin", DATA, "Digest: adler32=00000001").status == 400
    assert (se.root / "keep" / "a.bin").read_bytes() == b"old"
    assert os.listdir(se.root / "keep") == ["a.bin"]


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("Digest: adler32=xyz", b"adler32"),
        ("Digest: adler32", b"algorithm=value"),
        ("Digest: md5=not-base64!", b"md5"),
        ("Content-MD5: abc", b"Content-MD5"),
    ],
)
def test_put_with_a_malformed_digest_is_400(se: SEServer, header: str, says: bytes) -> None:
    r = put(se, "/malformed.bin", DATA, header)
    assert r.status == 400
    assert says in r.body
    assert not (se.root / "malformed.bin").exists()
    assert temporaries(se.root) == []


def test_put_if_none_match_refuses_to_replace(se: SEServer) -> None:
    assert put(se, "/once.bin", b"first", "If-None-Match: *").status == 201
    assert put(se, "/once.bin", b"second", "If-None-Match: *").status == 412
    assert (se.root / "once.bin").read_bytes() == b"first"


def test_put_on_a_collection_is_refused(se: SEServer) -> None:
    curl(se, "MKCOL", "/coll")
    assert put(se, "/coll").status == 405
    assert put(se, "/coll/").status == 405
    assert (se.root / "coll").is_dir()


def test_a_put_cut_off_mid_body_leaves_no_file(se: SEServer) -> None:
    curl(se, "MKCOL", "/cut")
    with socket.create_connection(("127.0.0.1", se.port)) as s:
        s.sendall(
            b"PUT /cut/partial.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + DATA
        )
        wait_until(lambda: bool(os.listdir(se.root / "cut")), "the temporary to appear")
    # the client is gone: the server removes the temporary and never creates the file
    wait_until(lambda: os.listdir(se.root / "cut") == [], "the temporary to go", timeout=10)
    assert curl(se, "HEAD", "/cut/partial.bin").status == 404


# --- GET, HEAD ------------------------------------------------------------------------------


def test_get_whole_and_ranges(se: SEServer) -> None:
    put(se, "/r.bin")
    r = curl(se, "GET", "/r.bin")
    assert (r.status, r.body) == (200, DATA)
    assert r.headers["accept-ranges"] == "bytes"
    r = curl(se, "GET", "/r.bin", "-H", "Range: bytes=10-19")
    assert (r.status, r.body) == (206, DATA[10:20])
    assert r.headers["content-range"] == f"bytes 10-19/{len(DATA)}"
    r = curl(se, "GET", "/r.bin", "-H", "Range: bytes=199990-")
    assert (r.status, r.body) == (206, DATA[199990:])
    r = curl(se, "GET", "/r.bin", "-H", "Range: bytes=-5")
    assert (r.status, r.body) == (206, DATA[-5:])
    r = curl(se, "GET", "/r.bin", "-H", "Range: bytes=199995-999999")
    assert (r.status, r.body) == (206, DATA[199995:])
    # several ranges: multipart/byteranges (test_multirange.py checks the parts)
    r = curl(se, "GET", "/r.bin", "-H", "Range: bytes=0-1,5-6")
    assert r.status == 206
    assert r.headers["content-type"].startswith("multipart/byteranges; boundary=")
    assert int(r.headers["content-length"]) == len(r.body)


def test_a_range_past_the_end_is_416(se: SEServer) -> None:
    put(se, "/short.bin", b"0123456789")
    for spec in ("bytes=10-", "bytes=25-30", "bytes=-0"):
        r = curl(se, "GET", "/short.bin", "-H", f"Range: {spec}")
        assert r.status == 416, spec
        assert r.headers["content-range"] == "bytes */10"


@pytest.mark.parametrize("spec", ["bytes=5-2", "bytes=a-b", "items=0-1", "bytes=-", "bytes 0-1"])
def test_a_malformed_range_is_400(se: SEServer, spec: str) -> None:
    put(se, "/ranged.bin", b"0123456789")
    r = curl(se, "GET", "/ranged.bin", "-H", f"Range: {spec}")
    assert r.status == 400
    assert b"Range" in r.body


def test_head_and_want_digest(se: SEServer) -> None:
    put(se, "/h.bin")
    r = curl(se, "HEAD", "/h.bin")
    assert (r.status, r.headers["content-length"]) == (200, str(len(DATA)))
    assert "digest" not in r.headers
    r = curl(se, "HEAD", "/h.bin", "-H", "Want-Digest: ADLER32")  # as gfal2 asks
    assert r.headers["digest"] == f"adler32={zlib.adler32(DATA):08x}"
    r = curl(se, "HEAD", "/h.bin", "-H", "Want-Digest: md5;q=0.5, adler32")
    assert r.headers["digest"] == f"adler32={zlib.adler32(DATA):08x}, md5={b64md5(DATA)}"
    r = curl(se, "GET", "/h.bin", "-H", "Want-Digest: sha-512")
    assert r.status == 200 and "digest" not in r.headers
    r = curl(se, "HEAD", "/h.bin", "-H", "Want-Digest: adler32;q=high")
    assert r.status == 400
    assert curl(se, "HEAD", "/missing.bin").status == 404


def test_get_of_a_collection_lists_it(se: SEServer) -> None:
    curl(se, "MKCOL", "/listed")
    put(se, "/listed/x%20y.bin", b"x")
    r = curl(se, "GET", "/listed/")
    assert r.status == 200
    assert b'href="/listed/x%20y.bin"' in r.body


# --- MKCOL, PROPFIND, DELETE, MOVE -----------------------------------------------------------


def test_mkcol(se: SEServer) -> None:
    assert curl(se, "MKCOL", "/m").status == 201
    assert curl(se, "MKCOL", "/m").status == 405
    assert curl(se, "MKCOL", "/missing/m").status == 409
    assert curl(se, "MKCOL", "/m2", "--data-binary", "body").status == 415
    assert (se.root / "m").is_dir() and not (se.root / "missing").exists()
    assert not (se.root / "m2").exists()


def test_propfind(se: SEServer) -> None:
    curl(se, "MKCOL", "/p")
    put(se, "/p/f;1.bin", b"12345")
    curl(se, "MKCOL", "/p/sub")
    r = curl(se, "PROPFIND", "/p", "-H", "Depth: 1")
    assert r.status == 207
    entries = {e.href: e for e in parse_multistatus([r.body])}
    assert set(entries) == {"/p/", "/p/f%3B1.bin", "/p/sub/"}
    assert entries["/p/"].is_dir and entries["/p/sub/"].is_dir
    assert (entries["/p/f%3B1.bin"].size, entries["/p/f%3B1.bin"].is_dir) == (5, False)
    assert entries["/p/f%3B1.bin"].mtime > 0
    assert b"<D:creationdate>" in r.body
    r = curl(se, "PROPFIND", "/p/f;1.bin", "-H", "Depth: 0")
    assert [e.href for e in parse_multistatus([r.body])] == ["/p/f%3B1.bin"]
    # a request body (the properties asked for) is read and answered with all of them
    body = (
        b'<?xml version="1.0"?><propfind xmlns="DAV:"><prop><getcontentlength/></prop></propfind>'
    )
    r = curl(se, "PROPFIND", "/p", "-H", "Depth: 0", "--data-binary", body.decode())
    assert r.status == 207
    assert curl(se, "PROPFIND", "/p/none", "-H", "Depth: 0").status == 404


def test_propfind_depth(se: SEServer) -> None:
    r = curl(se, "PROPFIND", "/", "-H", "Depth: infinity")
    assert r.status == 403
    assert b"Depth: 1" in r.body
    r = curl(se, "PROPFIND", "/", "-H", "Depth: 2")
    assert r.status == 400
    assert b"Depth" in r.body
    r = curl(se, "PROPFIND", "/")  # no Depth: one level
    assert r.status == 207


def test_delete(se: SEServer) -> None:
    curl(se, "MKCOL", "/d")
    put(se, "/d/f.bin")
    assert curl(se, "DELETE", "/d").status == 409  # not empty
    assert curl(se, "DELETE", "/d/f.bin").status == 204
    assert curl(se, "DELETE", "/d/f.bin").status == 404
    assert curl(se, "DELETE", "/d").status == 204
    assert not (se.root / "d").exists()
    assert curl(se, "DELETE", "/").status == 403


def test_move(se: SEServer) -> None:
    curl(se, "MKCOL", "/mv")
    put(se, "/mv/a.bin", b"a")
    put(se, "/mv/b.bin", b"b")
    dest = se.url("/mv/c%20d.bin")
    assert curl(se, "MOVE", "/mv/a.bin", "-H", f"Destination: {dest}").status == 201
    assert (se.root / "mv" / "c d.bin").read_bytes() == b"a"
    assert not (se.root / "mv" / "a.bin").exists()
    over = ["-H", f"Destination: {se.url('/mv/b.bin')}"]
    assert curl(se, "MOVE", "/mv/c%20d.bin", *over, "-H", "Overwrite: F").status == 412
    assert (se.root / "mv" / "b.bin").read_bytes() == b"b"
    assert curl(se, "MOVE", "/mv/c%20d.bin", *over).status == 204
    assert (se.root / "mv" / "b.bin").read_bytes() == b"a"
    assert sorted(os.listdir(se.root / "mv")) == ["b.bin"]
    # a path as Destination, and a collection
    assert curl(se, "MOVE", "/mv", "-H", "Destination: /mv2").status == 201
    assert (se.root / "mv2" / "b.bin").exists()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([], 400),  # no Destination
        (["Destination: ftp://host/x"], 400),
        (["Destination: /mvbad/../../x"], 400),
        (["Destination: /mvbad/x", "Overwrite: maybe"], 400),
        (["Destination: /missing/x"], 409),
        (["Destination: /mvbad/f.bin"], 403),  # onto itself
        (["Destination: /"], 403),
    ],
)
def test_bad_moves(se: SEServer, headers: list[str], status: int) -> None:
    curl(se, "MKCOL", "/mvbad")
    put(se, "/mvbad/f.bin", b"f")
    args = [a for h in headers for a in ("-H", h)]
    r = curl(se, "MOVE", "/mvbad/f.bin", *args)
    assert r.status == status, r.body
    assert (se.root / "mvbad" / "f.bin").read_bytes() == b"f"
    assert curl(se, "MOVE", "/mvbad/none", "-H", "Destination: /mvbad/x").status == 404


def test_options_and_unknown_methods(se: SEServer) -> None:
    r = curl(se, "OPTIONS", "/")
    assert r.status == 200
    assert "PROPFIND" in r.headers["allow"] and r.headers["dav"] == "1"
    r = curl(se, "LOCK", "/")
    assert r.status == 405
    assert "MOVE" in r.headers["allow"]


# --- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/../etc/passwd",
        "/a/../../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/x/%2E%2E/%2e%2e/etc/passwd",
        "/..%2fetc/passwd",
        "/a%00b",
        "/a%5cb",
    ],
)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "MKCOL", "PROPFIND"])
def test_paths_never_escape_the_root(se: SEServer, path: str, method: str) -> None:
    before = sorted(os.listdir(se.root.parent))
    r = curl(se, method, path, data=b"x" if method == "PUT" else None)
    assert r.status == 400, (method, path, r.body)
    assert sorted(os.listdir(se.root.parent)) == before


def test_symbolic_links_out_of_the_root_are_refused(se: SEServer, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (se.root / "escape").symlink_to(outside)
    (se.root / "secret-link").symlink_to(outside / "secret")
    (se.root / "inside-link").symlink_to(se.root / "once.bin")
    put(se, "/once.bin", b"first", "If-None-Match: *")
    try:
        for method, path in [
            ("GET", "/escape/secret"),
            ("GET", "/secret-link"),
            ("DELETE", "/escape/secret"),
            ("MKCOL", "/escape/new"),
        ]:
            r = curl(se, method, path)
            assert r.status == 403, (method, path)
            assert b"outside" in r.body
        assert put(se, "/escape/new.bin", b"x").status == 403
        r = curl(se, "MOVE", "/once.bin", "-H", "Destination: /escape/moved")
        assert r.status == 403
        assert sorted(os.listdir(outside)) == ["secret"]
        assert (outside / "secret").read_bytes() == b"secret"
        # links that stay inside are followed; listings leave out the ones that leave
        assert curl(se, "GET", "/inside-link").body == b"first"
        listed = curl(se, "PROPFIND", "/", "-H", "Depth: 1").body
        assert b"inside-link" in listed and b"escape" not in listed and b"secret" not in listed
    finally:
        for name in ("escape", "secret-link", "inside-link"):
            (se.root / name).unlink()


def test_the_state_directory_is_not_served(se: SEServer) -> None:
    (se.root / ".fedlake-se").mkdir(exist_ok=True)
    assert curl(se, "GET", "/.fedlake-se/").status == 404
    assert curl(se, "PUT", "/.fedlake-se/x", data=b"x").status == 404
    assert b".fedlake-se" not in curl(se, "PROPFIND", "/", "-H", "Depth: 1").body
