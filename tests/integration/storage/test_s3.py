"""The s3 plugin against two real S3 servers, SeaweedFS and moto_server.

Both run the conformance suite plus S3-specific checks (multipart aborts, ETag md5,
conditional writes, virtual-host addressing). Credentials are checked by SeaweedFS only
(moto accepts any). A private moto server is stopped or paused to provoke connection
errors and timeouts. Error replies no server here can be made to send (5xx, SlowDown,
EntityTooLarge) are checked on the mapping table itself, at the end.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import socket
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore import exceptions as bx

from fedlake.domain.checksums import Digest
from fedlake.domain.errors import ChecksumMismatch
from fedlake.storage import get_storage
from fedlake.storage.backends._s3_errors import map_error
from fedlake.storage.backends.s3 import (
    ENV_ACCESS_KEY,
    ENV_SECRET_KEY,
    S3Storage,
    _clip,
    _Parts,
    parse_url,
)
from fedlake.storage.base import Storage, TransientStorageError
from fedlake.storage.testing import StorageConformance
from tests.servers.moto import moto, start_moto
from tests.servers.seaweedfs import S3Server, seaweedfs

__all__ = ["moto", "seaweedfs"]  # session fixtures, imported so pytest finds them

MiB = 1 << 20


def digest_of(data: bytes) -> Digest:
    return Digest(
        len(data), f"{zlib.adler32(data):08x}", hashlib.md5(data, usedforsecurity=False).hexdigest()
    )


_storages: dict[tuple[int, str], S3Storage] = {}


def storage_for(server: S3Server, **options: Any) -> S3Storage:
    """The plugin with ``server``'s credentials (one instance per options: clients are reused)."""
    options.setdefault("max_attempts", 1)
    key = (server.port, repr(sorted(options.items())))
    if key not in _storages:
        _storages[key] = S3Storage(
            access_key=server.access_key, secret_key=server.secret_key, **options
        )
    return _storages[key]


def pending_uploads(server: S3Server, bucket: str, prefix: str = "") -> list[str]:
    reply = server.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return [u["Key"] for u in reply.get("Uploads", [])]


def blocks(data: bytes, size: int = 4 * MiB) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


# One bucket per server (each test works below a prefix of its own): SeaweedFS gives every
# bucket volumes of its own.
@pytest.fixture(scope="module")
def seaweedfs_bucket(seaweedfs: S3Server) -> str:
    return seaweedfs.new_bucket()


@pytest.fixture(scope="module")
def moto_bucket(moto: S3Server) -> str:
    return moto.new_bucket()


class _S3Suite(StorageConformance):
    """The suite and the S3 checks; subclasses name the server."""

    @pytest.fixture
    def server(self) -> S3Server:
        raise NotImplementedError

    @pytest.fixture
    def bucket(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    def storage(self, server: S3Server) -> Storage:
        # 5 MiB parts: the suite's > 4 MiB file goes up in two parts
        return storage_for(server, part_size=5 * MiB)

    @pytest.fixture
    def base_url(self, server: S3Server, bucket: str) -> str:
        return server.url(bucket)

    def raw_listdir(self, storage: Storage, dir_url: str) -> list[str]:
        """The listing plus keys of unfinished multipart uploads (S3's only temporaries)."""
        assert isinstance(storage, S3Storage)
        loc = storage.locate(dir_url)
        prefix = loc.key.rstrip("/") + "/"
        reply = storage.client(loc).list_multipart_uploads(Bucket=loc.bucket, Prefix=prefix)
        pending = [u["Key"][len(prefix) :].split("/")[0] for u in reply.get("Uploads", [])]
        return storage.listdir(dir_url) + pending

    # --- multipart -------------------------------------------------------------------------

    def test_multipart_failing_source_leaves_no_object_and_no_upload(
        self, server: S3Server, bucket: str
    ) -> None:
        storage = storage_for(server)  # the default 8 MiB parts
        url = server.url(bucket, "mp/broken.bin")
        data = os.urandom(12 * MiB)
        during: list[str] = []

        def chunks() -> Iterator[bytes]:
            yield from blocks(data)
            during.extend(pending_uploads(server, bucket, "mp/"))
            raise RuntimeError("the source broke off")

        with pytest.raises(RuntimeError, match="broke off"):
            storage.write(url, chunks())
        assert during == ["mp/broken.bin"]  # it really was a multipart upload
        assert not storage.exists(url)
        assert pending_uploads(server, bucket) == []

    def test_multipart_checksum_mismatch_aborts(self, server: S3Server, bucket: str) -> None:
        storage = storage_for(server)
        url = server.url(bucket, "mp/bad.bin")
        data = os.urandom(9 * MiB + 7)
        good = digest_of(data)
        with pytest.raises(ChecksumMismatch, match="adler32"):
            storage.write(url, blocks(data), expected=Digest(good.bytes, "00000001", None))
        assert not storage.exists(url)
        assert pending_uploads(server, bucket) == []

    def test_multipart_stores_the_expected_checksums(self, server: S3Server, bucket: str) -> None:
        storage = storage_for(server, part_size=5 * MiB, max_concurrency=2)
        url = server.url(bucket, "mp/good.bin")
        data = os.urandom(17 * MiB + 3)  # four parts, the last one short
        want = digest_of(data)
        assert storage.write(url, blocks(data, 3 * MiB), expected=want) == want
        head = server.client().head_object(Bucket=bucket, Key="mp/good.bin")
        assert head["ETag"].strip('"').endswith("-4")
        assert head["Metadata"] == {"adler32": want.adler32, "md5": want.md5}
        assert storage.stat(url) == storage.stat(url, checksums=True)
        st = storage.stat(url)
        assert (st.size, st.adler32, st.md5) == (len(data), want.adler32, want.md5)
        assert b"".join(storage.read(url)) == data

    def test_put_file_of_a_large_file_stores_its_adler32(
        self, server: S3Server, bucket: str, tmp_path: Path
    ) -> None:
        storage = storage_for(server, part_size=5 * MiB)
        local = tmp_path / "big.bin"
        data = os.urandom(11 * MiB)
        local.write_bytes(data)
        url = server.url(bucket, "mp/put.bin")
        assert storage.put_file(str(local), url) == digest_of(data)
        head = server.client().head_object(Bucket=bucket, Key="mp/put.bin")
        assert head["Metadata"] == {"adler32": digest_of(data).adler32}
        assert storage.stat(url).adler32 == digest_of(data).adler32
        assert storage.stat(url).md5 is None  # multipart ETag, and no md5 known up front
        assert storage.checksum(url, "md5") == digest_of(data).md5  # streamed

    # --- checksums from the server ---------------------------------------------------------

    def test_stat_takes_md5_from_a_plain_etag(self, server: S3Server, bucket: str) -> None:
        storage = storage_for(server)
        data = b"written by another client, no metadata"
        server.client().put_object(Bucket=bucket, Key="raw/plain", Body=data)
        url = server.url(bucket, "raw/plain")
        st = storage.stat(url)  # no streaming without checksums=True: md5 is the ETag
        assert (st.size, st.md5, st.adler32) == (len(data), digest_of(data).md5, None)
        full = storage.stat(url, checksums=True)
        assert (full.adler32, full.md5) == (digest_of(data).adler32, digest_of(data).md5)
        assert storage.checksum(url, "adler32") == digest_of(data).adler32

    def test_multipart_etag_is_not_an_md5(self, server: S3Server, bucket: str) -> None:
        storage = storage_for(server)
        data = os.urandom(6 * MiB)
        c = server.client()
        up = c.create_multipart_upload(Bucket=bucket, Key="raw/mp")["UploadId"]
        etags = [
            c.upload_part(Bucket=bucket, Key="raw/mp", UploadId=up, PartNumber=n, Body=body)["ETag"]
            for n, body in ((1, data[: 5 * MiB]), (2, data[5 * MiB :]))
        ]
        parts = [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
        c.complete_multipart_upload(
            Bucket=bucket, Key="raw/mp", UploadId=up, MultipartUpload={"Parts": parts}
        )
        url = server.url(bucket, "raw/mp")
        assert storage.stat(url).md5 is None
        assert storage.checksum(url, "md5") == digest_of(data).md5

    # --- conditional writes ----------------------------------------------------------------

    @pytest.mark.parametrize("size", [1000, 7 * MiB], ids=["single-put", "multipart"])
    def test_target_appearing_during_the_write_is_kept(
        self, server: S3Server, bucket: str, size: int
    ) -> None:
        """overwrite=False holds even when the key appears after the first check."""
        storage = storage_for(server, part_size=5 * MiB)
        url = server.url(bucket, f"race/{size}")
        data = os.urandom(size)

        def chunks() -> Iterator[bytes]:
            yield data[:500]
            storage.write(url, [b"the other writer"])
            yield data[500:]

        with pytest.raises(FileExistsError):
            storage.write(url, chunks())
        assert b"".join(storage.read(url)) == b"the other writer"
        assert pending_uploads(server, bucket) == []

    def test_without_conditional_writes_only_the_first_check_guards(
        self, server: S3Server, bucket: str
    ) -> None:
        """The refusal above comes from If-None-Match: without it the late writer wins."""
        storage = storage_for(server, conditional_writes=False)
        url = server.url(bucket, "race/unguarded")

        def chunks() -> Iterator[bytes]:
            yield b"mine, "
            storage.write(url, [b"the other writer"])
            yield b"written last"

        storage.write(url, chunks())
        assert b"".join(storage.read(url)) == b"mine, written last"

    # --- buckets and prefixes --------------------------------------------------------------

    def test_missing_bucket_is_named(self, server: S3Server) -> None:
        storage = storage_for(server)
        url = server.url("no-such-bucket-here", "f.dat")
        for call in (
            lambda: storage.stat(url),
            lambda: b"".join(storage.read(url)),
            lambda: storage.listdir(server.url("no-such-bucket-here")),
            lambda: storage.write(url, [b"x"]),
        ):
            with pytest.raises(FileNotFoundError, match="no-such-bucket-here"):
                call()
        assert not storage.exists(url)

    def test_mkdir_creates_a_missing_bucket(self, server: S3Server) -> None:
        storage = storage_for(server)
        name = f"made-{os.urandom(4).hex()}"
        with pytest.raises(FileNotFoundError):
            storage.listdir(server.url(name))
        storage.mkdir(server.url(name, "some/dir"))
        assert storage.listdir(server.url(name)) == []
        storage.mkdir(server.url(name))  # again: fine
        assert name in [b["Name"] for b in server.client().list_buckets()["Buckets"]]

    def test_a_prefix_is_not_an_object(self, server: S3Server, bucket: str) -> None:
        storage = storage_for(server)
        storage.write(server.url(bucket, "d/e/f.dat"), [b"x"])
        assert not storage.exists(server.url(bucket, "d/e"))
        with pytest.raises(IsADirectoryError):
            storage.stat(server.url(bucket, "d/e"))
        with pytest.raises(IsADirectoryError):
            storage.delete(server.url(bucket, "d"))
        assert storage.listdir(server.url(bucket, "d")) == ["e"]

    def test_listdir_pages(self, server: S3Server, bucket: str) -> None:
        storage = S3Storage(access_key=server.access_key, secret_key=server.secret_key)
        storage.list_page_size = 4  # S3 pages hold up to 1,000 keys; 4 makes many pages
        for name in ("a", "b", "c", "d", "e", "f/1", "g/2", "h", "i/3/4"):
            storage.write(server.url(bucket, f"paged/{name}"), [b""])
        sent: list[str] = []
        storage.client(storage.locate(server.url(bucket))).meta.events.register(
            "before-send.s3.ListObjectsV2", lambda request, **_: sent.append(request.url)
        )
        got = storage.listdir(server.url(bucket, "paged"))
        assert got == ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
        assert len(sent) == 3  # 4 + 4 + 1 entries

    # --- addressing ------------------------------------------------------------------------

    def test_virtual_host_addressing(
        self, server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """``bucket.localhost:PORT``: *.localhost resolves to loopback (RFC 6761), which
        glibc here does not do, so the test resolves those names itself."""
        real = socket.getaddrinfo

        def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(host, str) and host.endswith(".localhost"):
                host = "127.0.0.1"
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", resolve)
        storage = S3Storage(
            access_key=server.access_key, secret_key=server.secret_key, addressing_style="virtual"
        )
        base = f"s3://localhost:{server.port}/{bucket}"
        sent: list[str] = []
        loc = storage.locate(base)
        storage.client(loc).meta.events.register(
            "before-send.s3", lambda request, **_: sent.append(request.url)
        )
        storage.write(f"{base}/v/a b.dat", [b"virtual"])
        assert b"".join(storage.read(f"{base}/v/a b.dat")) == b"virtual"
        assert storage.listdir(f"{base}/v") == ["a b.dat"]
        storage.delete(f"{base}/v/a b.dat")
        assert sent
        assert all(u.startswith(f"http://{bucket}.localhost:{server.port}/") for u in sent)


class TestSeaweedFS(_S3Suite):
    __test__ = True

    @pytest.fixture
    def server(self, seaweedfs: S3Server) -> S3Server:
        return seaweedfs

    @pytest.fixture
    def bucket(self, seaweedfs_bucket: str) -> str:
        return seaweedfs_bucket

    def test_wrong_secret_is_permission_denied(self, seaweedfs: S3Server, bucket: str) -> None:
        good = storage_for(seaweedfs)
        url = seaweedfs.url(bucket, "secret.dat")
        good.write(url, [b"x"])
        bad = S3Storage(access_key=seaweedfs.access_key, secret_key="wrong", max_attempts=1)
        for call in (
            lambda: bad.stat(url),
            lambda: bad.exists(url),
            lambda: b"".join(bad.read(url)),
            lambda: bad.listdir(seaweedfs.url(bucket)),
            lambda: bad.write(seaweedfs.url(bucket, "new.dat"), [b"y"]),
            lambda: bad.delete(url),
        ):
            with pytest.raises(PermissionError, match=str(seaweedfs.port)):
                call()
        assert good.exists(url)
        assert not good.exists(seaweedfs.url(bucket, "new.dat"))

    def test_unknown_key_and_anonymous_are_denied(self, seaweedfs: S3Server, bucket: str) -> None:
        url = seaweedfs.url(bucket, "x.dat")
        for storage in (
            S3Storage(access_key="nobody", secret_key="nothing", max_attempts=1),
            S3Storage(anonymous=True, max_attempts=1),
        ):
            with pytest.raises(PermissionError):
                storage.write(url, [b"x"])

    def test_credentials_from_the_environment(
        self, seaweedfs: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        storage = S3Storage(max_attempts=1)  # as get_storage("s3") builds it: no options
        url = seaweedfs.url(bucket, "env.dat")
        monkeypatch.setenv(ENV_ACCESS_KEY, seaweedfs.access_key)
        monkeypatch.setenv(ENV_SECRET_KEY, "not-the-secret")
        with pytest.raises(PermissionError):
            storage.write(url, [b"env"])
        monkeypatch.setenv(ENV_SECRET_KEY, seaweedfs.secret_key)
        storage.write(url, [b"env"])
        assert b"".join(storage.read(url)) == b"env"


class TestMoto(_S3Suite):
    __test__ = True

    @pytest.fixture
    def server(self, moto: S3Server) -> S3Server:
        return moto

    @pytest.fixture
    def bucket(self, moto_bucket: str) -> str:
        return moto_bucket


# --- a server that goes away ---------------------------------------------------------------


@pytest.fixture
def own_moto(tmp_path: Path) -> Iterator[S3Server]:
    """A moto server of one test's own, which the test may pause or stop."""
    server = start_moto(tmp_path / "moto")
    yield server
    if server.process.proc.poll() is None:
        os.killpg(server.process.proc.pid, signal.SIGCONT)
    server.stop()


def test_stopped_server_is_a_connection_error(own_moto: S3Server) -> None:
    storage = storage_for(own_moto, connect_timeout=2, read_timeout=5)
    bucket = own_moto.new_bucket()
    url = own_moto.url(bucket, "f.dat")
    storage.write(url, [b"before"])
    own_moto.stop()
    for call in (
        lambda: storage.stat(url),
        lambda: storage.exists(url),
        lambda: b"".join(storage.read(url)),
        lambda: storage.write(own_moto.url(bucket, "g.dat"), [b"after"]),
        lambda: storage.listdir(own_moto.url(bucket)),
    ):
        with pytest.raises(ConnectionError, match=str(own_moto.port)):
            call()


def test_paused_server_is_a_timeout(own_moto: S3Server) -> None:
    storage = storage_for(own_moto, connect_timeout=2, read_timeout=0.5)
    bucket = own_moto.new_bucket()
    url = own_moto.url(bucket, "f.dat")
    storage.write(url, [b"x"])
    os.killpg(own_moto.process.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(TimeoutError, match="timed out"):
            storage.stat(url)
    finally:
        os.killpg(own_moto.process.proc.pid, signal.SIGCONT)
    assert storage.exists(url)


def test_server_dying_mid_stream_is_not_a_short_read(own_moto: S3Server) -> None:
    storage = storage_for(own_moto)
    bucket = own_moto.new_bucket()
    url = own_moto.url(bucket, "big.bin")
    storage.write(url, [os.urandom(32 * MiB)])
    stream = storage.read(url)
    first = next(stream)
    assert first
    own_moto.process.proc.kill()
    own_moto.process.proc.wait()
    with pytest.raises((ConnectionError, TransientStorageError)):
        for _ in stream:
            pass


# --- URLs, options, clients ----------------------------------------------------------------


def test_urls() -> None:
    loc = parse_url("s3://127.0.0.1:9000/lake/a/b?c#d e")
    assert (loc.endpoint, loc.bucket, loc.key) == ("http://127.0.0.1:9000", "lake", "a/b?c#d e")
    assert parse_url("s3://s3.example.org/b/k").endpoint == "https://s3.example.org"
    assert parse_url("s3://s3.example.org:8443/b/k", secure=False).endpoint == (
        "http://s3.example.org:8443"
    )
    assert parse_url("s3://[::1]:9000/b").endpoint == "http://[::1]:9000"
    assert parse_url("s3://lake.localhost:9000/b/").key == ""
    for bad in ("file:///x", "s3://host", "s3:///bucket/k", "s3://user:pw@host/b/k"):
        with pytest.raises(ValueError, match="s3"):
            parse_url(bad)


def test_default_instance_needs_no_network() -> None:
    storage = get_storage("s3")
    assert isinstance(storage, S3Storage)
    assert get_storage("s3", region="eu-west-1", addressing_style="virtual") is not storage
    with pytest.raises(ValueError, match="addressing_style"):
        S3Storage(addressing_style="dns")
    with pytest.raises(ValueError, match="part_size"):
        S3Storage(part_size=MiB)
    with pytest.raises(ValueError, match="secret_key"):
        S3Storage(access_key="only-one")


def test_one_client_per_endpoint_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_ACCESS_KEY, raising=False)
    storage = S3Storage(access_key="k", secret_key="s")
    a = storage.locate("s3://127.0.0.1:1/b/k")
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: storage.client(a), range(16)))
    assert len({id(c) for c in got}) == 1
    assert storage.client(storage.locate("s3://127.0.0.1:2/b/k")) is not got[0]
    env = S3Storage()
    monkeypatch.setenv(ENV_ACCESS_KEY, "k1")
    monkeypatch.setenv(ENV_SECRET_KEY, "s1")
    first = env.client(a)
    monkeypatch.setenv(ENV_SECRET_KEY, "s2")
    assert env.client(a) is not first


def test_parts_and_clipping() -> None:
    """Cutting a stream into parts, and a range cut client-side (a server ignoring Range)."""
    parts = _Parts(4)
    got = [parts.add(c) for c in (b"ab", b"cdefghijk", b"", b"lmn")]
    assert got == [[], [b"abcd", b"efgh"], [], [b"ijkl"]]
    assert parts.rest() == b"mn"
    chunks = [b"0123", b"4567", b"89"]
    assert b"".join(_clip(chunks, 3, 4)) == b"3456"
    assert b"".join(_clip(chunks, 8, None)) == b"89"
    assert b"".join(_clip(chunks, 0, 0)) == b""
    assert b"".join(_clip(chunks, 20, 5)) == b""


def _reply(code: str, status: int) -> bx.ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "said so"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return bx.ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        (_reply("NoSuchKey", 404), FileNotFoundError, errno.ENOENT),
        (_reply("AccessDenied", 403), PermissionError, errno.EACCES),
        (_reply("InvalidAccessKeyId", 403), PermissionError, errno.EACCES),
        (_reply("InternalError", 500), TransientStorageError, errno.EAGAIN),
        (_reply("ServiceUnavailable", 503), TransientStorageError, errno.EAGAIN),
        (_reply("SlowDown", 503), TransientStorageError, errno.EAGAIN),
        (_reply("", 502), TransientStorageError, errno.EAGAIN),
        (_reply("BadDigest", 400), TransientStorageError, errno.EAGAIN),
        (_reply("EntityTooLarge", 400), OSError, errno.ENOSPC),
        (_reply("PreconditionFailed", 412), FileExistsError, errno.EEXIST),
        (_reply("InvalidBucketName", 400), OSError, errno.EINVAL),
        (bx.ReadTimeoutError(endpoint_url="http://h"), TimeoutError, errno.ETIMEDOUT),
        (bx.ConnectTimeoutError(endpoint_url="http://h"), TimeoutError, errno.ETIMEDOUT),
        (bx.EndpointConnectionError(endpoint_url="http://h"), ConnectionError, None),
        (bx.ResponseStreamingError(error="reset"), TransientStorageError, errno.EIO),
        (bx.NoCredentialsError(), PermissionError, errno.EACCES),
    ],
)
def test_error_mapping(exc: Exception, kind: type[OSError], code: int | None) -> None:
    """Replies no local server sends on demand; the others are provoked above."""
    got = map_error(exc, "s3://h/b/k", "b")
    assert type(got) is kind
    assert code is None or got.errno == code
    assert "s3://h/b/k" in str(got)
