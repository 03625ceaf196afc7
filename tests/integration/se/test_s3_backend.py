"""``fedlake se serve --s3``: the storage element in front of an S3 bucket (SeaweedFS, which
checks signatures), below a key prefix of it.

The judge of what was stored is the bucket itself, read with a plain boto3 client: the
conformance suite through our WebDAV client lists it for ``raw_listdir``; curl checks every
method and every refusal against the keys. Third-party copy, tokens, gfal2 (over TLS) and
the command line: test_s3_backend_tpc.py.
"""

from __future__ import annotations

import base64
import hashlib
import random
import socket
import subprocess
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

from fedlake.storage.backends._dav import parse_multistatus
from fedlake.storage.backends.webdav import HttpStorage, WebDAVStorage
from fedlake.storage.base import Storage
from fedlake.storage.testing import StorageConformance
from tests.servers import require_program, wait_until
from tests.servers.fedlake_se import SEServer, running_se
from tests.servers.seaweedfs import S3Server, seaweedfs

__all__ = ["seaweedfs"]  # the session fixture, imported so pytest finds it

DATA = random.Random(11).randbytes(200_000)  # fixed: test ids (digests) must not vary
PREFIX = "se-root"  # the served key prefix; keys beside it must never be touched
HIDDEN = ".fedlake-se"
MiB = 1 << 20


def adler(data: bytes) -> str:
    return f"{zlib.adler32(data):08x}"


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


@dataclass
class Bucket:
    """The bucket as boto3 sees it; ``path`` arguments are paths below the served prefix."""

    s3: S3Server
    name: str
    prefix: str  # "" (the whole bucket) or "<prefix>/"

    @property
    def client(self) -> Any:
        return self.s3.client()

    def key(self, path: str) -> str:
        return self.prefix + path.lstrip("/")

    def everything(self) -> dict[str, str]:
        """Every key of the whole bucket and its ETag."""
        out: dict[str, str] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name):
            out.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
        return out

    def keys(self, path: str = "") -> list[str]:
        """The keys starting with ``path``'s key, relative to the served prefix."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=self.key(path)
        )
        return sorted(
            o["Key"][len(self.prefix) :] for page in pages for o in page.get("Contents", [])
        )

    def listdir(self, path: str) -> list[str]:
        """Names directly below a collection: objects and key prefixes, no marker. From a
        flat listing: SeaweedFS keeps emptied "directories" as common prefixes of its own."""
        under = self.key(path).rstrip("/") + "/" if path.strip("/") else self.prefix
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=under
        )
        names = {
            o["Key"][len(under) :].partition("/")[0] for p in pages for o in p.get("Contents", [])
        }
        return sorted(names - {""})

    def get(self, path: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.name, Key=self.key(path))["Body"].read()
        return body

    def put(self, path: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=self.key(path), Body=data)

    def pending_uploads(self) -> list[str]:
        reply = self.client.list_multipart_uploads(Bucket=self.name, Prefix=self.prefix)
        return [u["Key"] for u in reply.get("Uploads", [])]


@pytest.fixture(scope="module")
def bucket(seaweedfs: S3Server) -> Bucket:
    name = seaweedfs.new_bucket("se")
    found = Bucket(seaweedfs, name, "")
    for outside in ("etc/passwd", f"{PREFIX}x/leak.bin", f"{PREFIX}.bak"):  # beside the prefix
        found.put(outside, b"outside")
    return Bucket(seaweedfs, name, f"{PREFIX}/")


@pytest.fixture(scope="module")
def se(seaweedfs: S3Server, bucket: Bucket) -> Iterator[SEServer]:
    with running_se(anonymous=True, s3=(seaweedfs, seaweedfs.url(bucket.name, PREFIX))) as server:
        yield server


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def curl(se: SEServer, method: str, path: str, *args: str, data: bytes | None = None) -> Reply:
    """One request with curl (path taken as is: no ``..`` folding by curl). No answer
    discloses the S3 server behind the SE (as the POSIX SE never shows its directory)."""
    program = require_program("curl", "apt-get install curl")
    argv = [program, "-s", "-S", "--path-as-is", "-X", method, "-D", "-", "-o", "-"]
    if method == "HEAD":
        argv[argv.index("-X") : argv.index("-X") + 2] = ["-I"]
    if data is not None:
        argv += ["--data-binary", "@-", "-H", "Content-Type: application/octet-stream"]
    out = subprocess.run(
        [*argv, *args, se.url(path)], input=data, capture_output=True, check=True, timeout=60
    ).stdout
    while out.startswith(b"HTTP/1.1 1"):  # an interim answer (100 Continue to a large PUT)
        out = out.partition(b"\r\n\r\n")[2]
    assert se.s3 is not None
    bucket_name = se.s3[1].split("/")[3].encode()
    assert b"s3://" not in out and bucket_name not in out, out[-500:]
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


# --- the conformance suite through our WebDAV client ----------------------------------------


class TestS3BackedSE(StorageConformance):
    __test__ = True

    @pytest.fixture
    def storage(self, http_storage: WebDAVStorage) -> Storage:
        return http_storage

    @pytest.fixture
    def base_url(self, se: SEServer, bucket: Bucket) -> str:
        self.bucket = bucket
        return se.url("/conformance")

    def raw_listdir(self, storage: Storage, dir_url: str) -> list[str]:
        return self.bucket.listdir(dir_url.partition("://")[2].partition("/")[2])


@pytest.fixture(scope="module")
def http_storage() -> Iterator[WebDAVStorage]:
    storage = HttpStorage(timeout=30)
    yield storage
    storage.close()


# --- keys -------------------------------------------------------------------------------


def test_paths_are_keys_below_the_prefix(se: SEServer, bucket: Bucket) -> None:
    assert curl(se, "MKCOL", "/keys").status == 201
    assert curl(se, "MKCOL", "/keys/a").status == 201
    assert put(se, "/keys/a/b%20c.dat", b"b c").status == 201
    assert bucket.keys("keys/") == ["keys/", "keys/a/", "keys/a/b c.dat"]
    assert bucket.get("keys/a/b c.dat") == b"b c"
    assert (
        bucket.client.head_object(Bucket=bucket.name, Key=bucket.key("keys/a/"))["ContentLength"]
        == 0
    )


def test_the_root_lists_exactly_the_names_below_the_prefix(se: SEServer, bucket: Bucket) -> None:
    put(se, "/top-level.bin", b"t")
    r = curl(se, "PROPFIND", "/", "-H", "Depth: 1")
    assert r.status == 207
    listed = {e.href.strip("/") for e in parse_multistatus([r.body])} - {""}
    below = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix=f"{PREFIX}/", Delimiter="/")
    names = [o["Key"] for o in below.get("Contents", [])]
    names += [c["Prefix"] for c in below.get("CommonPrefixes", [])]
    assert listed == {quote(n[len(PREFIX) + 1 :].rstrip("/")) for n in names} - {HIDDEN}
    assert "top-level.bin" in listed
    assert b"leak.bin" not in r.body and b"passwd" not in r.body and b".bak" not in r.body
    assert curl(se, "GET", "/x/leak.bin").status == 404
    assert curl(se, "GET", "/etc/passwd").status == 404


def test_a_collection_is_any_key_prefix(se: SEServer, bucket: Bucket) -> None:
    bucket.put("implicit/deep/f.bin", b"written by boto3")  # no markers at all
    r = curl(se, "PROPFIND", "/implicit", "-H", "Depth: 1")
    assert r.status == 207
    entries = {e.href: e for e in parse_multistatus([r.body])}
    assert set(entries) == {"/implicit/", "/implicit/deep/"}
    assert entries["/implicit/"].is_dir and entries["/implicit/deep/"].is_dir
    assert b"<D:collection/>" in r.body
    assert curl(se, "GET", "/implicit/deep/f.bin").body == b"written by boto3"
    assert curl(se, "MKCOL", "/implicit").status == 405
    assert put(se, "/implicit/new.bin", b"n").status == 201
    assert bucket.keys("implicit/") == ["implicit/deep/f.bin", "implicit/new.bin"]


# --- PUT ----------------------------------------------------------------------------------


def test_put_creates_then_replaces(se: SEServer, bucket: Bucket) -> None:
    curl(se, "MKCOL", "/put")
    assert put(se, "/put/a.bin").status == 201
    assert bucket.get("put/a.bin") == DATA
    assert put(se, "/put/a.bin", b"second").status == 204
    assert bucket.get("put/a.bin") == b"second"
    assert bucket.keys("put/") == ["put/", "put/a.bin"]


def test_put_and_move_need_no_parent_collection(se: SEServer, bucket: Bucket) -> None:
    """Unlike a directory (409): an object store has no parents to make (docs/se.md)."""
    assert put(se, "/no/such/dir/a.bin", b"a").status == 201
    assert bucket.keys("no/") == ["no/such/dir/a.bin"]
    r = curl(se, "PROPFIND", "/no/such", "-H", "Depth: 1")
    assert [(e.href, e.is_dir) for e in parse_multistatus([r.body])] == [
        ("/no/such/", True),
        ("/no/such/dir/", True),
    ]
    dest = "Destination: /none/here/b.bin"
    assert curl(se, "MOVE", "/no/such/dir/a.bin", "-H", dest).status == 201
    assert bucket.keys("no/") == [] and bucket.keys("none/") == ["none/here/b.bin"]
    # no key starts with no/ any more: the collection is gone (SeaweedFS keeps an empty
    # "directory" it still lists as a common prefix for a while: that is not a key)
    assert curl(se, "PROPFIND", "/no", "-H", "Depth: 0").status == 404
    assert b"<D:href>/none/</D:href>" in curl(se, "PROPFIND", "/", "-H", "Depth: 1").body
    assert curl(se, "MKCOL", "/nowhere/m").status == 409  # MKCOL's parent must exist


@pytest.mark.parametrize("framing", ["Content-Length", "chunked"])
def test_a_large_put_is_streamed_in_parts(se: SEServer, bucket: Bucket, framing: str) -> None:
    """Several parts of any part size >= 5 MiB; chunked and without a Digest: the checksums
    are worked out when first asked for."""
    big = random.Random(3).randbytes(21 * MiB + 5)
    curl(se, "MKCOL", "/big")
    path = f"/big/{framing}.bin"
    if framing == "chunked":
        r = put(se, path, big, "Transfer-Encoding: chunked")
    else:
        r = put(se, path, big, f"Digest: adler32={adler(big)}")
    assert r.status == 201, r.body
    assert bucket.get(path) == big
    assert bucket.pending_uploads() == []
    r = curl(se, "HEAD", path, "-H", "Want-Digest: adler32,md5")
    assert r.headers["digest"] == f"adler32={adler(big)}, md5={b64md5(big)}"
    r = curl(se, "GET", path, "-H", "Range: bytes=10485750-10485769")
    assert (r.status, r.body) == (206, big[10485750:10485770])


@pytest.mark.parametrize(
    "header",
    [
        f"Digest: adler32={adler(DATA)}",
        f"Digest: ADLER32={adler(DATA).upper()}",
        f"Digest: md5={b64md5(DATA)}",
        f"Digest: adler32={adler(DATA)}, md5={b64md5(DATA)}, sha-256=ignored",
        f"Content-MD5: {b64md5(DATA)}",
    ],
)
def test_put_with_the_right_digest(se: SEServer, bucket: Bucket, header: str) -> None:
    curl(se, "MKCOL", "/good")
    assert put(se, "/good/a.bin", DATA, header).status in (201, 204)
    assert bucket.get("good/a.bin") == DATA


@pytest.mark.parametrize(
    "header",
    [
        f"Digest: adler32={zlib.adler32(DATA) ^ 1:08x}",
        f"Digest: md5={b64md5(b'other')}",
        f"Content-MD5: {b64md5(b'other')}",
    ],
)
def test_put_with_a_wrong_digest_stores_nothing(se: SEServer, bucket: Bucket, header: str) -> None:
    curl(se, "MKCOL", "/wrong")
    r = put(se, "/wrong/a.bin", DATA, header)
    assert r.status == 400
    assert b"Digest mismatch" in r.body and b"nothing was stored" in r.body
    assert bucket.keys("wrong/") == ["wrong/"]
    assert bucket.pending_uploads() == []


def test_a_wrong_digest_keeps_the_old_object(se: SEServer, bucket: Bucket) -> None:
    curl(se, "MKCOL", "/keep")
    assert put(se, "/keep/a.bin", b"old").status == 201
    assert put(se, "/keep/a.bin", DATA, "Digest: adler32=00000001").status == 400
    assert bucket.get("keep/a.bin") == b"old"
    assert bucket.keys("keep/") == ["keep/", "keep/a.bin"]


def test_a_file_is_no_parent_collection(se: SEServer, bucket: Bucket) -> None:
    """As in a directory (409): nothing may make a file a collection as well."""
    assert put(se, "/fp.bin", b"f").status == 201
    for path in ("/fp.bin/x", "/fp.bin/deep/x"):
        r = put(se, path, b"x")
        assert r.status == 409, (path, r.status, r.body)
    assert curl(se, "MKCOL", "/fp.bin/sub").status == 409
    r = curl(se, "MOVE", "/fp.bin", "-H", "Destination: /fp.bin/y")
    assert r.status == 409, (r.status, r.body)
    assert bucket.keys("fp.bin") == ["fp.bin"]
    assert bucket.get("fp.bin") == b"f"
    listed = [e.href for e in parse_multistatus([curl(se, "PROPFIND", "/", "-H", "Depth: 1").body])]
    assert "/fp.bin" in listed and "/fp.bin/" not in listed


def test_put_if_none_match_refuses_to_replace(se: SEServer, bucket: Bucket) -> None:
    assert put(se, "/once.bin", b"first", "If-None-Match: *").status == 201
    assert put(se, "/once.bin", b"second", "If-None-Match: *").status == 412
    assert bucket.get("once.bin") == b"first"


def test_put_on_a_collection_is_refused(se: SEServer, bucket: Bucket) -> None:
    curl(se, "MKCOL", "/coll")
    bucket.put("implied/f.bin", b"f")
    for path in ("/coll", "/coll/", "/implied", "/new-dir/"):
        assert put(se, path).status == 405, path
    assert bucket.keys("coll") == ["coll/"]
    assert bucket.keys("implied") == ["implied/f.bin"]
    assert bucket.keys("new-dir") == []


def test_a_put_cut_off_mid_body_stores_nothing(se: SEServer, bucket: Bucket) -> None:
    curl(se, "MKCOL", "/cut")
    head = b"PUT /cut/partial.bin HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % MiB
    with socket.create_connection(("127.0.0.1", se.port)) as s:
        s.sendall(head + DATA[: 100 * 1024])
        time.sleep(0.5)  # the server is reading the body
    # the client is gone: the server gives up, and no object (nor upload) is left
    wait_until(lambda: bucket.pending_uploads() == [], "the upload to be aborted", timeout=10)
    time.sleep(1)
    assert bucket.keys("cut/") == ["cut/"]
    assert curl(se, "HEAD", "/cut/partial.bin").status == 404
    assert put(se, "/cut/partial.bin", b"whole").status == 201  # new: nothing was there


def test_a_large_put_cut_off_leaves_no_upload(se: SEServer, bucket: Bucket) -> None:
    """Cut after more than a part: a multipart upload was begun and must be aborted."""
    curl(se, "MKCOL", "/cutbig")
    chunk = random.Random(5).randbytes(MiB)
    head = b"PUT /cutbig/p.bin HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (64 * MiB)
    with socket.create_connection(("127.0.0.1", se.port)) as s:
        s.sendall(head)
        for _ in range(20):
            s.sendall(chunk)
        time.sleep(1)
    wait_until(lambda: bucket.pending_uploads() == [], "the upload to be aborted", timeout=15)
    time.sleep(1)
    assert bucket.keys("cutbig/") == ["cutbig/"]
    assert bucket.pending_uploads() == []


# --- GET, HEAD, digests --------------------------------------------------------------------


def test_get_whole_and_ranges(se: SEServer) -> None:
    put(se, "/r.bin")
    r = curl(se, "GET", "/r.bin")
    assert (r.status, r.body) == (200, DATA)
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(len(DATA))
    r = curl(se, "GET", "/r.bin", "-H", "Range: bytes=10-19")
    assert (r.status, r.body) == (206, DATA[10:20])
    assert r.headers["content-range"] == f"bytes 10-19/{len(DATA)}"
    r = curl(se, "GET", "/r.bin", "-H", "Range: bytes=199990-")
    assert (r.status, r.body) == (206, DATA[199990:])
    r = curl(se, "GET", "/r.bin", "-H", "Range: bytes=-5")
    assert (r.status, r.body) == (206, DATA[-5:])
    r = curl(se, "GET", "/r.bin", "-H", "Range: bytes=199995-999999")
    assert (r.status, r.body) == (206, DATA[199995:])
    assert r.headers["content-range"] == f"bytes 199995-199999/{len(DATA)}"


def test_several_ranges_are_multipart(se: SEServer) -> None:
    put(se, "/multi.bin")
    r = curl(se, "GET", "/multi.bin", "-H", "Range: bytes=0-1,5-6,-3")
    assert r.status == 206
    ctype = r.headers["content-type"]
    assert ctype.startswith("multipart/byteranges; boundary=")
    assert int(r.headers["content-length"]) == len(r.body)
    boundary = ctype.partition("boundary=")[2].strip('"').encode()
    parts = [p for p in r.body.split(b"--" + boundary) if p.strip() not in (b"", b"--")]
    got = []
    for part in parts:
        head, _, body = part.partition(b"\r\n\r\n")
        assert b"content-range: bytes " in head.lower()
        got.append(body.removesuffix(b"\r\n"))
    assert got == [DATA[0:2], DATA[5:7], DATA[-3:]]


def test_a_range_past_the_end_is_416(se: SEServer) -> None:
    put(se, "/short.bin", b"0123456789")
    for spec in ("bytes=10-", "bytes=25-30", "bytes=-0"):
        r = curl(se, "GET", "/short.bin", "-H", f"Range: {spec}")
        assert r.status == 416, spec
        assert r.headers["content-range"] == "bytes */10"


def test_if_range(se: SEServer, bucket: Bucket) -> None:
    put(se, "/ifr.bin")
    etag = curl(se, "HEAD", "/ifr.bin").headers["etag"]
    r = curl(se, "GET", "/ifr.bin", "-H", "Range: bytes=0-9", "-H", f"If-Range: {etag}")
    assert (r.status, r.body) == (206, DATA[:10])
    bucket.put("ifr.bin", b"changed behind the server's back")
    r = curl(se, "GET", "/ifr.bin", "-H", "Range: bytes=0-9", "-H", f"If-Range: {etag}")
    assert (r.status, r.body) == (200, b"changed behind the server's back")  # the whole


def test_head_and_want_digest(se: SEServer) -> None:
    put(se, "/h.bin")
    r = curl(se, "HEAD", "/h.bin")
    assert (r.status, r.headers["content-length"]) == (200, str(len(DATA)))
    assert "digest" not in r.headers
    r = curl(se, "HEAD", "/h.bin", "-H", "Want-Digest: ADLER32")  # as gfal2 asks
    assert r.headers["digest"] == f"adler32={adler(DATA)}"
    r = curl(se, "GET", "/h.bin", "-H", "Want-Digest: md5;q=0.5, adler32")
    assert r.headers["digest"] == f"adler32={adler(DATA)}, md5={b64md5(DATA)}"
    assert r.body == DATA
    r = curl(se, "HEAD", "/h.bin", "-H", "Want-Digest: adler32;q=high")
    assert r.status == 400
    assert curl(se, "HEAD", "/missing.bin").status == 404


def test_digests_of_an_object_written_behind_the_servers_back(se: SEServer, bucket: Bucket) -> None:
    """Computed once and kept in a hidden sidecar; a changed object (new ETag) is summed again."""
    data = random.Random(8).randbytes(300_000)
    bucket.put("direct/d.bin", data)  # no metadata
    r = curl(se, "HEAD", "/direct/d.bin", "-H", "Want-Digest: adler32, md5")
    assert r.headers["digest"] == f"adler32={adler(data)}, md5={b64md5(data)}"
    sidecars = bucket.keys(f"{HIDDEN}/")
    assert sidecars, bucket.keys()
    assert any(adler(data).encode() in bucket.get(k) for k in sidecars)
    r = curl(se, "GET", "/direct/d.bin", "-H", "Want-Digest: adler32")
    assert (r.headers["digest"], r.body) == (f"adler32={adler(data)}", data)
    changed = data[:-1] + b"!"
    bucket.put("direct/d.bin", changed)
    r = curl(se, "HEAD", "/direct/d.bin", "-H", "Want-Digest: adler32,md5")
    assert r.headers["digest"] == f"adler32={adler(changed)}, md5={b64md5(changed)}"
    assert adler(changed) != adler(data)


def test_the_hidden_prefix_is_neither_listed_nor_served(se: SEServer, bucket: Bucket) -> None:
    bucket.put("sidecar-me.bin", b"s")
    curl(se, "HEAD", "/sidecar-me.bin", "-H", "Want-Digest: md5")
    bucket.put(f"{HIDDEN}/planted", b"planted")
    before = bucket.everything()
    hidden = bucket.keys(f"{HIDDEN}/")
    assert len(hidden) >= 2  # a sidecar of sidecar-me.bin, and the planted one
    for key in hidden:
        for method in ("GET", "HEAD", "PROPFIND"):
            assert curl(se, method, f"/{quote(key)}").status == 404, (method, key)
        assert curl(se, "DELETE", f"/{quote(key)}").status in (403, 404), key
    assert curl(se, "GET", f"/{HIDDEN}/").status == 404
    assert put(se, f"/{HIDDEN}/x", b"x").status == 404
    assert curl(se, "MKCOL", f"/{HIDDEN}/new").status in (403, 404)
    r = curl(se, "MOVE", "/sidecar-me.bin", "-H", f"Destination: /{HIDDEN}/moved")
    assert r.status in (403, 404), r.body
    r = curl(se, "MOVE", f"/{HIDDEN}/planted", "-H", "Destination: /unhidden")
    assert r.status == 404, r.body
    assert bucket.everything() == before
    assert HIDDEN.encode() not in curl(se, "PROPFIND", "/", "-H", "Depth: 1").body
    assert HIDDEN.encode() not in curl(se, "GET", "/").body
    assert curl(se, "DELETE", "/sidecar-me.bin").status == 204


def test_get_of_a_collection_lists_it(se: SEServer) -> None:
    curl(se, "MKCOL", "/listed")
    put(se, "/listed/x%20y.bin", b"x")
    curl(se, "MKCOL", "/listed/sub")
    r = curl(se, "GET", "/listed/")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/html")
    assert b'href="/listed/x%20y.bin"' in r.body
    assert b'href="/listed/sub/"' in r.body


# --- MKCOL, PROPFIND, DELETE, MOVE, OPTIONS ------------------------------------------------


def test_mkcol(se: SEServer, bucket: Bucket) -> None:
    assert curl(se, "MKCOL", "/m").status == 201
    assert bucket.keys("m/") == ["m/"]
    assert curl(se, "MKCOL", "/m").status == 405
    assert curl(se, "MKCOL", "/missing/m").status == 409
    assert curl(se, "MKCOL", "/m2", "--data-binary", "body").status == 415
    put(se, "/m-file", b"f")
    assert curl(se, "MKCOL", "/m-file").status == 405
    assert bucket.keys("missing") == [] and bucket.keys("m2") == []
    assert bucket.keys("m-file") == ["m-file"]


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
    assert b"<D:getcontentlength>5</D:getcontentlength>" in r.body
    r = curl(se, "PROPFIND", "/p/f;1.bin", "-H", "Depth: 0")
    assert r.status == 207
    assert [e.href for e in parse_multistatus([r.body])] == ["/p/f%3B1.bin"]
    r = curl(se, "PROPFIND", "/p", "-H", "Depth: 0")
    assert [(e.href, e.is_dir) for e in parse_multistatus([r.body])] == [("/p/", True)]
    assert curl(se, "PROPFIND", "/p/none", "-H", "Depth: 0").status == 404


def test_propfind_depth(se: SEServer) -> None:
    r = curl(se, "PROPFIND", "/", "-H", "Depth: infinity")
    assert r.status == 403
    assert b"Depth: 1" in r.body
    assert curl(se, "PROPFIND", "/", "-H", "Depth: 2").status == 400
    r = curl(se, "PROPFIND", "/")  # no Depth: one level
    assert r.status == 207
    assert "/" in [e.href for e in parse_multistatus([r.body])]


def test_delete(se: SEServer, bucket: Bucket) -> None:
    curl(se, "MKCOL", "/d")
    put(se, "/d/f.bin")
    assert curl(se, "DELETE", "/d").status == 409  # not empty
    assert bucket.keys("d/") == ["d/", "d/f.bin"]
    assert curl(se, "DELETE", "/d/f.bin").status == 204
    assert bucket.keys("d/") == ["d/"]
    assert curl(se, "DELETE", "/d/f.bin").status == 404
    assert curl(se, "DELETE", "/d").status == 204
    assert bucket.keys("d/") == []
    assert curl(se, "DELETE", "/d").status == 404
    assert curl(se, "DELETE", "/").status == 403
    bucket.put("dimplicit/f.bin", b"f")
    assert curl(se, "DELETE", "/dimplicit").status == 409
    assert bucket.keys("dimplicit/") == ["dimplicit/f.bin"]


def test_move(se: SEServer, bucket: Bucket) -> None:
    curl(se, "MKCOL", "/mv")
    put(se, "/mv/a.bin", b"a")
    put(se, "/mv/b.bin", b"b")
    dest = se.url("/mv/c%20d.bin")
    assert curl(se, "MOVE", "/mv/a.bin", "-H", f"Destination: {dest}").status == 201
    assert bucket.keys("mv/") == ["mv/", "mv/b.bin", "mv/c d.bin"]
    assert bucket.get("mv/c d.bin") == b"a"
    over = ["-H", f"Destination: {se.url('/mv/b.bin')}"]
    assert curl(se, "MOVE", "/mv/c%20d.bin", *over, "-H", "Overwrite: F").status == 412
    assert bucket.get("mv/b.bin") == b"b"
    assert curl(se, "MOVE", "/mv/c%20d.bin", *over).status == 204
    assert bucket.keys("mv/") == ["mv/", "mv/b.bin"]
    assert bucket.get("mv/b.bin") == b"a"
    assert curl(se, "MOVE", "/mv/b.bin", "-H", "Destination: /mv-b.bin").status == 201
    assert bucket.get("mv-b.bin") == b"a"  # a path as Destination
    # the moved object keeps answering its digests
    r = curl(se, "HEAD", "/mv-b.bin", "-H", "Want-Digest: adler32")
    assert r.headers["digest"] == f"adler32={adler(b'a')}"


def test_a_collection_cannot_be_moved(se: SEServer, bucket: Bucket) -> None:
    curl(se, "MKCOL", "/mvc")
    put(se, "/mvc/f.bin", b"f")
    before = bucket.everything()
    r = curl(se, "MOVE", "/mvc", "-H", "Destination: /mvc2")
    assert r.status == 409
    said = r.body.lower()
    assert b"collection" in said and b"cannot be moved" in said and b"s3" in said, r.body
    assert bucket.everything() == before


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ([], 400),  # no Destination
        (["Destination: ftp://host/x"], 400),
        (["Destination: /mvbad/../../x"], 400),
        (["Destination: /mvbad/x", "Overwrite: maybe"], 400),
        (["Destination: /mvbad/f.bin"], 403),  # onto itself
        (["Destination: /"], 403),
    ],
)
def test_bad_moves(se: SEServer, bucket: Bucket, headers: list[str], status: int) -> None:
    curl(se, "MKCOL", "/mvbad")
    put(se, "/mvbad/f.bin", b"f")
    before = bucket.everything()
    args = [a for h in headers for a in ("-H", h)]
    r = curl(se, "MOVE", "/mvbad/f.bin", *args)
    assert r.status == status, r.body
    assert bucket.everything() == before
    assert curl(se, "MOVE", "/mvbad/none", "-H", "Destination: /mvbad/x").status == 404


def test_options_and_unknown_methods(se: SEServer) -> None:
    r = curl(se, "OPTIONS", "/")
    assert r.status == 200
    assert "PROPFIND" in r.headers["allow"] and r.headers["dav"] == "1"
    r = curl(se, "LOCK", "/")
    assert r.status == 405
    assert "MOVE" in r.headers["allow"]


@pytest.mark.parametrize(
    "path",
    [
        "/../etc/passwd",
        f"/../{PREFIX}x/leak.bin",
        "/a/../../etc/passwd",
        "/%2e%2e/etc/passwd",
        "/x/%2E%2E/%2e%2e/etc/passwd",
        "/..%2fetc/passwd",
        "/a%00b",
        "/a%5cb",
    ],
)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "MKCOL", "PROPFIND"])
def test_paths_never_leave_the_prefix(se: SEServer, bucket: Bucket, path: str, method: str) -> None:
    before = bucket.everything()
    r = curl(se, method, path, data=b"x" if method == "PUT" else None)
    assert r.status == 400, (method, path, r.body)
    assert b"outside" not in r.body
    assert bucket.everything() == before


# --- a whole bucket ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whole(seaweedfs: S3Server) -> Bucket:
    return Bucket(seaweedfs, seaweedfs.new_bucket("se-whole"), "")


@pytest.fixture(scope="module")
def se_whole(seaweedfs: S3Server, whole: Bucket) -> Iterator[SEServer]:
    url = f"s3://127.0.0.1:{seaweedfs.port}/{whole.name}"
    with running_se(anonymous=True, s3=(seaweedfs, url)) as server:
        yield server


def test_a_whole_bucket(se_whole: SEServer, whole: Bucket) -> None:
    se = se_whole
    assert curl(se, "MKCOL", "/top").status == 201
    assert put(se, "/top/f.bin", b"f").status == 201
    assert whole.keys("top") == ["top/", "top/f.bin"]
    r = curl(se, "PROPFIND", "/", "-H", "Depth: 1")
    assert {e.href for e in parse_multistatus([r.body])} >= {"/", "/top/"}
    assert curl(se, "DELETE", "/").status == 403
    assert curl(se, "DELETE", "/top/f.bin").status == 204
    assert whole.keys("top") == ["top/"]
    whole.put("top/g.bin", b"by boto3")  # its checksums go to a sidecar
    r = curl(se, "HEAD", "/top/g.bin", "-H", "Want-Digest: adler32")
    assert r.headers["digest"] == f"adler32={adler(b'by boto3')}"
    assert whole.keys(f"{HIDDEN}/")
    r = curl(se, "PROPFIND", "/", "-H", "Depth: 1")
    assert HIDDEN not in {e.href.strip("/") for e in parse_multistatus([r.body])}
    assert curl(se, "GET", f"/{HIDDEN}/").status == 404


def test_listings_of_more_than_one_page(se_whole: SEServer, whole: Bucket) -> None:
    """S3 lists 1000 keys a page: every page counts, for files and for collections (in a
    bucket of their own: listing all of the other one would take longer)."""
    se, bucket = se_whole, whole
    names = [f"f{i:04d}" for i in range(1010)] + [f"d{i:04d}/x" for i in range(1010)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: bucket.put(f"many/{n}", b"m"), names))
    r = curl(se, "PROPFIND", "/many", "-H", "Depth: 1")
    assert r.status == 207
    entries = list(parse_multistatus([r.body]))
    assert len(entries) == 1 + 2020
    assert {e.href for e in entries if e.is_dir} == {"/many/"} | {
        f"/many/d{i:04d}/" for i in range(1010)
    }
    assert b'href="/many/f1009"' in curl(se, "GET", "/many/").body
    assert b'href="/many/d1009/"' in curl(se, "GET", "/many/").body
