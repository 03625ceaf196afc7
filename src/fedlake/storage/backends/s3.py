"""S3 object stores (``s3://HOST[:PORT]/BUCKET/KEY``) through boto3.

Constructor options (plain JSON values, as an RSE protocol's ``extended_attributes``):

- ``secure``: https (true) or http (false); default http for loopback hosts
  (127.0.0.1, ::1, localhost, ``*.localhost``), https for every other host;
- ``addressing_style``: ``"path"`` (``host/bucket/key``, the default) or ``"virtual"``
  (``bucket.host/key``);
- ``region``: the signing region (``us-east-1``);
- ``access_key`` and ``secret_key``; else the environment variables
  ``FEDLAKE_S3_ACCESS_KEY`` and ``FEDLAKE_S3_SECRET_KEY``; else boto3's own chain
  (``AWS_*`` variables, ``~/.aws``, instance roles); ``anonymous=true`` signs nothing;
- ``verify``: a CA bundle path, or false to accept any certificate (default true);
- ``part_size`` (bytes, >= 5 MiB, default 8 MiB): objects of at least this size are
  uploaded in parts, ``max_concurrency`` (4) of them at a time;
- ``conditional_writes`` (true): send ``If-None-Match: *`` when ``overwrite`` is false;
  set it false for a server that refuses the header (then only check-then-put guards);
- ``connect_timeout``, ``read_timeout`` (seconds); ``max_attempts`` (3): tries per request,
  the first included (botocore's standard retry mode, for 5xx, throttling, resets).

How the interface maps onto S3:

- writes need no temporary: an object appears only when its PUT or
  CompleteMultipartUpload succeeds. Size, adler32 and md5 are checked against
  ``expected`` before that request; any failure aborts the multipart upload. Every PUT
  and part carries Content-MD5, and part ETags are compared with the md5 sent.
- adler32 and md5 are stored as ``x-amz-meta-adler32`` / ``x-amz-meta-md5``. Metadata of a
  multipart upload is fixed when it starts, so a large object carries the values of
  ``expected`` (verified before completion); ``put_file`` works a missing adler32 out in
  a first pass over the local file; ``write`` of a large stream without ``expected``
  stores none, and ``checksum``/``stat(checksums=True)`` then stream the object.
- ``overwrite=False``: a HEAD refuses an existing key before any byte is sent, and
  ``If-None-Match: *`` on the final request refuses one that appeared meanwhile.
- directories are key prefixes: ``listdir`` lists with the delimiter ``/``, and a prefix
  holding no object does not exist. ``mkdir`` creates the bucket when it is missing (the
  parent of every key) and nothing else.
- ``delete`` of a missing key raises FileNotFoundError (S3 itself answers 204): a HEAD
  checks first.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import boto3.session
from botocore import UNSIGNED
from botocore import exceptions as bx
from botocore.config import Config

from fedlake.domain.checksums import Digest, normalize_adler32, normalize_md5
from fedlake.domain.errors import InvalidChecksum
from fedlake.storage.backends._s3_errors import error_code, map_error
from fedlake.storage.base import StatResult, Storage, TransientStorageError
from fedlake.storage.checksums import checksummer, file_digest, verify_digest

__all__ = [
    "ENV_ACCESS_KEY",
    "ENV_SECRET_KEY",
    "S3Location",
    "S3Storage",
    "etag_md5",
    "parse_url",
    "stored_sums",
]

log = logging.getLogger(__name__)

ENV_ACCESS_KEY = "FEDLAKE_S3_ACCESS_KEY"
ENV_SECRET_KEY = "FEDLAKE_S3_SECRET_KEY"  # noqa: S105 - a variable name
MiB = 1 << 20
MIN_PART = 5 * MiB  # S3's smallest part (all but the last)
READ_BLOCK = 1 * MiB
_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
_Head = dict[str, Any]

# One boto3 session for every instance: it loads the S3 service model once (a new
# session costs ~80 ms per client, a shared one ~10 ms). Sessions are not thread-safe,
# so clients are created under this lock; the clients themselves are.
_session: boto3.session.Session | None = None
_session_lock = threading.Lock()


class ObjectChanged(TransientStorageError):
    """The object is no longer the version a read began with (``read(if_match=...)``)."""


@dataclass(frozen=True, slots=True)
class S3Location:
    """One URL taken apart: the endpoint it talks to, the bucket and the key (may be "")."""

    url: str
    endpoint: str
    bucket: str
    key: str


def _is_loopback(host: str) -> bool:
    host = host.lower()
    return host in ("127.0.0.1", "::1", "localhost") or host.endswith(".localhost")


def parse_url(url: str, secure: bool | None = None) -> S3Location:
    """``s3://HOST[:PORT]/BUCKET[/KEY]``; names are literal (no percent-decoding)."""
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an s3:// URL")
    netloc, _, path = url[len("s3://") :].partition("/")
    bucket, _, key = path.partition("/")
    if not netloc or not bucket or "@" in netloc:
        raise ValueError(
            f"{url!r}: expected s3://HOST:PORT/BUCKET/KEY (credentials go in options, not URLs)"
        )
    host = netloc[1:].partition("]")[0] if netloc.startswith("[") else netloc.partition(":")[0]
    if secure is None:
        secure = not _is_loopback(host)
    return S3Location(url, f"{'https' if secure else 'http'}://{netloc}", bucket, key)


def etag_md5(head: _Head) -> str | None:
    """The md5 of an object whose ETag is one: not multipart (``-N``), not KMS/SSE-C."""
    etag = str(head.get("ETag") or "").strip('"').lower()
    if not _PLAIN_MD5.match(etag):
        return None
    if head.get("ServerSideEncryption") == "aws:kms" or head.get("SSECustomerAlgorithm"):
        return None
    return etag


def stored_sums(head: _Head) -> tuple[str | None, str | None]:
    """(adler32, md5) known without reading: user metadata, and the ETag for md5."""
    meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
    try:
        adler = normalize_adler32(meta.get("adler32"))
    except InvalidChecksum:
        adler = None
    try:
        md5 = etag_md5(head) or normalize_md5(meta.get("md5"))
    except InvalidChecksum:
        md5 = None
    return adler, md5


def _b64md5(hexdigest: str) -> str:
    return base64.b64encode(bytes.fromhex(hexdigest)).decode("ascii")


class _Parts:
    """Cuts a byte stream into parts of exactly ``size`` bytes (one copy per byte at most)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pending: list[bytes] = []
        self._n = 0

    def add(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        self._pending.append(chunk)
        self._n += len(chunk)
        if self._n < self.size:
            return []
        data = b"".join(self._pending)  # no copy for one chunk of exactly the part size
        if len(data) == self.size:
            self._pending, self._n = [], 0
            return [data]
        view = memoryview(data)
        cut = len(data) - len(data) % self.size
        parts = [bytes(view[i : i + self.size]) for i in range(0, cut, self.size)]
        rest = bytes(view[cut:])
        self._pending, self._n = ([rest] if rest else []), len(rest)
        return parts

    def rest(self) -> bytes:
        data = b"".join(self._pending)
        self._pending, self._n = [], 0
        return data


def _clip(chunks: Iterable[bytes], skip: int, limit: int | None) -> Iterator[bytes]:
    """Drop ``skip`` bytes, then yield at most ``limit`` (for servers that ignore Range)."""
    for chunk in chunks:
        if skip:
            if skip >= len(chunk):
                skip -= len(chunk)
                continue
            chunk, skip = chunk[skip:], 0
        if limit is not None:
            chunk = chunk[:limit]
            limit -= len(chunk)
        if chunk:
            yield chunk
        if limit == 0:
            return


class S3Storage(Storage):
    """S3 through boto3; one client per endpoint and credentials, shared by threads."""

    scheme = "s3"
    #: keys asked for per listing request (S3 answers at most 1,000)
    list_page_size = 1000

    def __init__(
        self,
        *,
        secure: bool | None = None,
        addressing_style: str = "path",
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        anonymous: bool = False,
        verify: bool | str = True,
        part_size: int = 8 * MiB,
        max_concurrency: int = 4,
        conditional_writes: bool = True,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
    ) -> None:
        if addressing_style not in ("path", "virtual"):
            raise ValueError(f"addressing_style {addressing_style!r}: use 'path' or 'virtual'")
        if part_size < MIN_PART:
            raise ValueError(f"part_size {part_size} is below S3's minimum of {MIN_PART} bytes")
        if max_concurrency < 1 or max_attempts < 1:
            raise ValueError("max_concurrency and max_attempts must be at least 1")
        if (access_key is None) != (secret_key is None):
            raise ValueError("give both access_key and secret_key, or neither")
        self.secure = secure
        self.addressing_style = addressing_style
        self.region = region
        self.anonymous = anonymous
        self.verify = verify
        self.part_size = part_size
        self.max_concurrency = max_concurrency
        self.conditional_writes = conditional_writes
        self._access_key = access_key
        self._secret_key = secret_key
        self._timeouts = (connect_timeout, read_timeout)
        self._max_attempts = max_attempts
        self._clients: dict[tuple[str, str | None, str | None], Any] = {}
        self._buckets: set[tuple[str, str]] = set()

    # --- plumbing --------------------------------------------------------------------------

    def locate(self, url: str) -> S3Location:
        return parse_url(url, self.secure)

    def client(self, loc: S3Location) -> Any:
        """The boto3 client for ``loc``'s endpoint (created on first use, then cached)."""
        if self._access_key is not None:
            creds: tuple[str | None, str | None] = (self._access_key, self._secret_key)
        else:
            creds = (os.environ.get(ENV_ACCESS_KEY), os.environ.get(ENV_SECRET_KEY))
            if not (creds[0] and creds[1]):
                creds = (None, None)  # boto3's own chain
        key = (loc.endpoint, *creds)
        found = self._clients.get(key)
        if found is None:
            with _session_lock:
                found = self._clients.get(key)
                if found is None:
                    found = self._new_client(loc.endpoint, *creds)
                    self._clients[key] = found
        return found

    def _new_client(self, endpoint: str, access: str | None, secret: str | None) -> Any:
        """A client for ``endpoint``; the caller holds ``_session_lock``."""
        global _session
        if _session is None:
            _session = boto3.session.Session()
        config = Config(
            region_name=self.region,
            signature_version=UNSIGNED if self.anonymous else None,
            s3={"addressing_style": self.addressing_style},
            retries={"total_max_attempts": self._max_attempts, "mode": "standard"},
            connect_timeout=self._timeouts[0],
            read_timeout=self._timeouts[1],
            max_pool_connections=max(10, 2 * self.max_concurrency),
            # we send Content-MD5 ourselves; skip botocore's extra CRC32 pass over every byte
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return _session.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            verify=self.verify,
            config=config,
        )

    def _call(self, loc: S3Location, operation: str, **params: Any) -> _Head:
        try:
            reply = getattr(self.client(loc), operation)(Bucket=loc.bucket, **params)
        except (bx.BotoCoreError, bx.ClientError) as exc:
            raise map_error(exc, loc.url, loc.bucket) from exc
        return cast(_Head, reply)

    @staticmethod
    def _object(loc: S3Location) -> S3Location:
        if not loc.key or loc.key.endswith("/"):
            raise IsADirectoryError(errno.EISDIR, f"{loc.url} names a bucket or a prefix")
        return loc

    def _head(self, loc: S3Location) -> _Head | None:
        """The object's HEAD reply, or None when there is no such object."""
        try:
            return cast(_Head, self.client(loc).head_object(Bucket=loc.bucket, Key=loc.key))
        except bx.ClientError as exc:
            code, status = error_code(exc)
            if status == 404 and code != "NoSuchBucket":
                return None
            raise map_error(exc, loc.url, loc.bucket) from exc
        except bx.BotoCoreError as exc:
            raise map_error(exc, loc.url, loc.bucket) from exc

    def _missing(self, loc: S3Location) -> OSError:
        """Why there is no object: no bucket, a prefix ("directory"), or no such key."""
        prefix = loc.key.rstrip("/") + "/"
        reply = self._call(loc, "list_objects_v2", Prefix=prefix, MaxKeys=1)
        if reply.get("KeyCount") or reply.get("Contents") or reply.get("CommonPrefixes"):
            return IsADirectoryError(errno.EISDIR, f"{loc.url} is a prefix, not an object")
        return FileNotFoundError(errno.ENOENT, f"{loc.url}: no such object")

    def _existing(self, loc: S3Location) -> _Head:
        head = self._head(self._object(loc))
        if head is None:
            raise self._missing(loc)
        return head

    # --- the interface ---------------------------------------------------------------------

    def exists(self, url: str) -> bool:
        loc = self.locate(url)
        if not loc.key or loc.key.endswith("/"):
            return False
        return self._head(loc) is not None

    def stat(self, url: str, *, checksums: bool = False) -> StatResult:
        loc = self.locate(url)
        head = self._existing(loc)
        size, mtime = int(head["ContentLength"]), head["LastModified"].timestamp()
        adler, md5 = stored_sums(head)
        if checksums and adler is None:
            summer = checksummer(md5=md5 is None)
            for chunk in self._read(loc, 0, None):
                summer.update(chunk)
            got = summer.digest()
            adler, md5 = got.adler32, md5 or got.md5
        return StatResult(size, mtime, adler, md5)

    def checksum(self, url: str, algorithm: str) -> str:
        if algorithm not in ("adler32", "md5"):
            raise ValueError(f"unknown checksum algorithm {algorithm!r}; use adler32 or md5")
        adler, md5 = stored_sums(self._existing(self.locate(url)))
        known = adler if algorithm == "adler32" else md5
        return known or super().checksum(url, algorithm)

    def read(
        self, url: str, offset: int = 0, length: int | None = None, *, if_match: str = ""
    ) -> Iterator[bytes]:
        """Stream an object or a byte range; a negative ``offset`` counts from the end.

        ``if_match``: the ETag the object must still have (``ObjectChanged`` otherwise), so
        bytes read in several requests, or after a look at its size, are of one version."""
        if length is not None and length < 0:
            raise ValueError(f"length {length} is negative")
        return self._read(self._object(self.locate(url)), offset, length, if_match)

    def _read(
        self, loc: S3Location, offset: int, length: int | None, if_match: str = ""
    ) -> Iterator[bytes]:
        if length == 0:
            self._existing(loc)
            return
        if offset < 0:
            wanted: str | None = f"bytes={offset}"
        elif offset == 0 and length is None:
            wanted = None
        else:
            wanted = f"bytes={offset}-" + ("" if length is None else str(offset + length - 1))
        try:
            reply = self.client(loc).get_object(
                Bucket=loc.bucket,
                Key=loc.key,
                **({"Range": wanted} if wanted else {}),
                **({"IfMatch": if_match} if if_match else {}),
            )
        except bx.ClientError as exc:
            code, status = error_code(exc)
            if code == "PreconditionFailed" or status == 412:
                raise ObjectChanged(
                    errno.EAGAIN, f"{loc.url} was replaced while being read; read it again"
                ) from exc
            if code == "InvalidRange" or status == 416:
                return  # the range starts at or past the end
            if code in ("NoSuchKey", "404"):
                raise self._missing(loc) from exc
            raise map_error(exc, loc.url, loc.bucket) from exc
        except bx.BotoCoreError as exc:
            raise map_error(exc, loc.url, loc.bucket) from exc
        body = reply["Body"]
        skip, limit = 0, length
        if wanted and reply["ResponseMetadata"]["HTTPStatusCode"] == 200:  # Range ignored
            size = int(reply["ContentLength"])
            skip = max(0, size + offset) if offset < 0 else offset
        elif offset >= 0:
            limit = None  # the server cut the range
        try:
            yield from _clip(body.iter_chunks(READ_BLOCK), skip, limit)
        except (bx.BotoCoreError, bx.ClientError) as exc:
            raise map_error(exc, loc.url, loc.bucket) from exc
        finally:
            body.close()

    def write(
        self,
        url: str,
        chunks: Iterable[bytes],
        *,
        expected: Digest | None = None,
        overwrite: bool = False,
    ) -> Digest:
        want_md5 = expected is None or expected.md5 is not None
        return self._write(url, chunks, expected, overwrite=overwrite, want_md5=want_md5)

    def put_file(
        self, local_path: str, url: str, *, expected: Digest | None = None, overwrite: bool = False
    ) -> Digest:
        """Upload a local file; a large one without ``expected`` is checksummed first, so
        its adler32 is stored with it (multipart metadata is fixed when the upload starts).
        """
        want_md5 = expected is None or expected.md5 is not None
        if expected is None and os.path.getsize(local_path) >= self.part_size:
            pre = file_digest(local_path, md5=False)
            expected = Digest(pre.bytes, pre.adler32, None)

        def chunks() -> Iterator[bytes]:
            with open(local_path, "rb") as fh:
                while block := fh.read(self.part_size):
                    yield block

        return self._write(url, chunks(), expected, overwrite=overwrite, want_md5=want_md5)

    def _write(
        self,
        url: str,
        chunks: Iterable[bytes],
        expected: Digest | None,
        *,
        overwrite: bool,
        want_md5: bool,
    ) -> Digest:
        loc = self._object(self.locate(url))
        if not overwrite and self._head(loc) is not None:
            raise FileExistsError(errno.EEXIST, f"{url} already exists")
        summer = checksummer(md5=want_md5)
        parts = _Parts(self.part_size)
        source = iter(chunks)
        first: list[bytes] = []
        for chunk in source:
            summer.update(chunk)
            first = parts.add(chunk)
            if first:
                break
        if not first:
            return self._put_single(loc, parts.rest(), summer.digest(), expected, overwrite)
        upload = _MultipartUpload(self, loc, expected)
        try:
            for part in first:
                upload.add(part)
            for chunk in source:
                summer.update(chunk)
                for part in parts.add(chunk):
                    upload.add(part)
            upload.add(parts.rest())
            upload.wait()
            got = summer.digest()
            verify_digest(expected, got, url)
            upload.complete(if_none_match=not overwrite and self.conditional_writes)
        except BaseException:
            upload.abort()
            raise
        return got

    def _put_single(
        self,
        loc: S3Location,
        body: bytes,
        got: Digest,
        expected: Digest | None,
        overwrite: bool,
    ) -> Digest:
        md5 = got.md5 or hashlib.md5(body, usedforsecurity=False).hexdigest()
        got = Digest(got.bytes, got.adler32, md5)
        verify_digest(expected, got, loc.url)
        extra = {"IfNoneMatch": "*"} if not overwrite and self.conditional_writes else {}
        self._call(
            loc,
            "put_object",
            Key=loc.key,
            Body=body,
            ContentMD5=_b64md5(md5),
            Metadata={"adler32": got.adler32, "md5": md5},
            **extra,
        )
        return got

    def delete(self, url: str) -> None:
        loc = self.locate(url)
        self._existing(loc)
        self._call(loc, "delete_object", Key=loc.key)

    def listdir(self, url: str) -> list[str]:
        loc = self.locate(url)
        prefix = loc.key.rstrip("/")
        prefix = prefix + "/" if prefix else ""
        names: set[str] = set()
        seen = False
        try:
            pages = self.client(loc).get_paginator("list_objects_v2")
            for page in pages.paginate(
                Bucket=loc.bucket,
                Prefix=prefix,
                Delimiter="/",
                PaginationConfig={"PageSize": self.list_page_size},
            ):
                for common in page.get("CommonPrefixes", []):
                    seen = True
                    names.add(common["Prefix"][len(prefix) :].removesuffix("/"))
                for obj in page.get("Contents", []):
                    seen = True
                    names.add(obj["Key"][len(prefix) :])
        except (bx.BotoCoreError, bx.ClientError) as exc:
            raise map_error(exc, loc.url, loc.bucket) from exc
        if prefix and not seen:
            raise FileNotFoundError(errno.ENOENT, f"{url}: no object has this prefix")
        names.discard("")  # a "directory marker" object named like the prefix itself
        return sorted(names)

    def mkdir(self, url: str) -> None:
        """Create the bucket if it is missing; key prefixes need no creating."""
        loc = self.locate(url)
        if (loc.endpoint, loc.bucket) in self._buckets:
            return
        try:
            self.client(loc).head_bucket(Bucket=loc.bucket)
        except bx.ClientError as exc:
            if error_code(exc)[1] != 404:
                raise map_error(exc, loc.url, loc.bucket) from exc
            self._create_bucket(loc)
        except bx.BotoCoreError as exc:
            raise map_error(exc, loc.url, loc.bucket) from exc
        self._buckets.add((loc.endpoint, loc.bucket))

    def _create_bucket(self, loc: S3Location) -> None:
        where: dict[str, Any] = {}
        if self.region != "us-east-1":
            where = {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        try:
            self.client(loc).create_bucket(Bucket=loc.bucket, **where)
        except bx.ClientError as exc:
            if error_code(exc)[0] != "BucketAlreadyOwnedByYou":
                raise map_error(exc, loc.url, loc.bucket) from exc
        except bx.BotoCoreError as exc:
            raise map_error(exc, loc.url, loc.bucket) from exc


class _MultipartUpload:
    """One multipart upload: parts go up ``max_concurrency`` at a time, in order."""

    def __init__(self, storage: S3Storage, loc: S3Location, expected: Digest | None) -> None:
        meta = {}
        if expected is not None and expected.adler32:
            meta["adler32"] = expected.adler32
        if expected is not None and expected.md5:
            meta["md5"] = expected.md5
        self._storage, self._loc = storage, loc
        reply = storage._call(loc, "create_multipart_upload", Key=loc.key, Metadata=meta)
        self._upload_id: str = reply["UploadId"]
        self._pool = ThreadPoolExecutor(storage.max_concurrency, thread_name_prefix="s3-part")
        self._inflight: deque[Future[dict[str, Any]]] = deque()
        self._done: list[dict[str, Any]] = []

    def add(self, part: bytes) -> None:
        if not part:
            return  # the stream ended on a part boundary (there is always a first part)
        while len(self._inflight) >= self._storage.max_concurrency:
            self._done.append(self._inflight.popleft().result())
        number = len(self._done) + len(self._inflight) + 1
        self._inflight.append(self._pool.submit(self._upload, number, part))

    def _upload(self, number: int, part: bytes) -> dict[str, Any]:
        md5 = hashlib.md5(part, usedforsecurity=False).hexdigest()
        reply = self._storage._call(
            self._loc,
            "upload_part",
            Key=self._loc.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=part,
            ContentMD5=_b64md5(md5),
        )
        etag = str(reply["ETag"])
        stored = etag.strip('"').lower()
        if _PLAIN_MD5.match(stored) and stored != md5:
            raise TransientStorageError(
                errno.EIO, f"{self._loc.url}: part {number} arrived with md5 {stored}, not {md5}"
            )
        return {"PartNumber": number, "ETag": etag}

    def wait(self) -> None:
        while self._inflight:
            self._done.append(self._inflight.popleft().result())
        self._pool.shutdown()

    def complete(self, *, if_none_match: bool) -> None:
        extra = {"IfNoneMatch": "*"} if if_none_match else {}
        self._storage._call(
            self._loc,
            "complete_multipart_upload",
            Key=self._loc.key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._done},
            **extra,
        )

    def abort(self) -> None:
        """Stop the parts still queued, wait for running ones, and drop the upload."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            self._storage.client(self._loc).abort_multipart_upload(
                Bucket=self._loc.bucket, Key=self._loc.key, UploadId=self._upload_id
            )
        except (bx.BotoCoreError, bx.ClientError) as exc:
            log.warning(
                "could not abort multipart upload %s of %s (the server keeps its parts until a "
                "lifecycle rule drops them): %s",
                self._upload_id,
                self._loc.url,
                exc,
            )
