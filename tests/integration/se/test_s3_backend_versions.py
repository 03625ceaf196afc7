"""The S3-backed SE serves one version of an object per GET.

The SE looks at an object (size, ETag) before it answers, and reads several ranges with
several requests; an object replaced in between must not give headers of one version and
bytes of another, or ranges of two versions. Every read names the ETag it began with
(``If-Match``): a replaced object ends the read with ``ObjectChanged`` (a 503 before the
answer starts), never with mixed bytes. Against SeaweedFS, which checks ``If-Match``.
"""

from __future__ import annotations

import pytest

from fedlake.se.object_app import _pieces
from fedlake.se.object_store import ObjectStore
from fedlake.storage.backends.s3 import ObjectChanged, S3Storage
from tests.servers.seaweedfs import S3Server, seaweedfs

__all__ = ["seaweedfs"]  # the session fixture, imported so pytest finds it

OLD = b"old version " * 100
NEW = b"NEW VERSION " * 100  # the same size: a look at the length cannot tell them apart


@pytest.fixture
def store(seaweedfs: S3Server) -> ObjectStore:
    bucket = seaweedfs.new_bucket("versions")
    storage = S3Storage(access_key=seaweedfs.access_key, secret_key=seaweedfs.secret_key)
    return ObjectStore(seaweedfs.url(bucket, "se"), storage)


def _etag(store: ObjectStore, path: str) -> str:
    reply = store.storage.client(store.storage.locate(store.url)).head_object(
        Bucket=store.bucket, Key=store.key(path)
    )
    return str(reply["ETag"])


def _put(store: ObjectStore, path: str, data: bytes) -> None:
    client = store.storage.client(store.storage.locate(store.url))
    client.put_object(Bucket=store.bucket, Key=store.key(path), Body=data)


def test_a_read_of_the_version_it_began_with(store: ObjectStore) -> None:
    _put(store, "/f.bin", OLD)
    etag = _etag(store, "/f.bin")
    assert b"".join(store.read("/f.bin", 0, len(OLD), etag=etag)) == OLD
    assert b"".join(store.read("/f.bin", 4, 7, etag=etag)) == OLD[4:11]
    _put(store, "/f.bin", NEW)
    assert _etag(store, "/f.bin") != etag
    with pytest.raises(ObjectChanged, match="replaced while being read"):
        b"".join(store.read("/f.bin", 0, len(OLD), etag=etag))
    with pytest.raises(ObjectChanged):
        b"".join(store.read("/f.bin", 4, 7, etag=etag))
    # without an ETag (nothing known of the object yet) the current version is read
    assert b"".join(store.read("/f.bin", 0, len(NEW))) == NEW


def test_ranges_of_a_replaced_object_are_never_mixed(store: ObjectStore) -> None:
    """What a multi-range GET reads: the object is replaced after the first range."""
    _put(store, "/r.bin", OLD)
    etag = _etag(store, "/r.bin")
    body = _pieces(store, "/r.bin", [b"--sep\r\n", (0, 10), b"\r\n--sep\r\n", (100, 10)], etag)
    got = [next(body), next(body)]
    assert got == [b"--sep\r\n", OLD[:10]]
    _put(store, "/r.bin", NEW)
    assert next(body) == b"\r\n--sep\r\n"
    with pytest.raises(ObjectChanged):
        next(body)
