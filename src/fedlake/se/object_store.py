"""An S3 bucket, or a key prefix in one, as the tree ``fedlake se serve --s3`` serves.

URL paths map to keys below the prefix (``/cms/a.root`` -> ``PREFIX/cms/a.root``).
Collections are key prefixes: one exists when some key starts with ``PREFIX/cms/``;
``MKCOL`` writes a zero-byte marker object named like the prefix (``PREFIX/cms/``, as the
S3 consoles do), so an empty collection exists too. Bytes travel through the lake's S3
plugin (``fedlake.storage.backends.s3``: multipart uploads, checksums verified before an
object is completed, nothing left behind by a failed upload); this module adds what a
WebDAV tree needs on top: entries with their dates and ETags, listings, collections,
server-side moves, and checksums kept.

Checksums: an object the lake wrote carries adler32 and md5 as user metadata, and a
plain ETag is an md5; for others (uploaded by another tool, or a large upload without a
``Digest``) the first ``Want-Digest`` streams the object once and keeps the values in a
sidecar object below ``PREFIX/.fedlake-se/sums/``, stamped with the object's ETag, so a
changed object is never answered with old values. That prefix is the SE's own: never
listed, never served. All methods block (the application runs them in worker threads).
"""

from __future__ import annotations

import errno
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore import exceptions as bx

from fedlake.domain.checksums import Digest
from fedlake.storage.backends._s3_errors import error_code, map_error
from fedlake.storage.backends.s3 import S3Storage, etag_md5, parse_url, stored_sums
from fedlake.storage.checksums import checksummer

__all__ = ["STATE_PREFIX", "Entry", "ObjectStore"]

#: the SE's own keys below the served prefix (checksum sidecars); never served
STATE_PREFIX = ".fedlake-se"
SINGLE_COPY_LIMIT = 5 * 1024**3  # CopyObject's limit; bigger objects are copied in parts


@dataclass(frozen=True, slots=True)
class Entry:
    """A file (object) or collection (prefix) at a URL path."""

    path: str
    is_dir: bool
    size: int = 0
    mtime: float = 0.0
    etag: str = ""  # as sent in ETag headers (quoted)
    sums: dict[str, str] = field(default_factory=dict)  # adler32/md5 known without reading


class ObjectStore:
    """The tree below ``url`` (``s3://HOST:PORT/BUCKET[/PREFIX]``) through ``storage``."""

    def __init__(self, url: str, storage: S3Storage) -> None:
        loc = storage.locate(url.rstrip("/") + "/")
        self.storage = storage
        self.bucket = loc.bucket
        self.url = url
        self._base = f"s3://{url[len('s3://') :].partition('/')[0]}/{loc.bucket}/"
        self.prefix = loc.key.strip("/")  # "" or "a/b"
        self._client = storage.client(parse_url(self._base, storage.secure))
        self.started = 0.0

    # --- names -------------------------------------------------------------------------

    def key(self, path: str) -> str:
        """The object key of a clean URL path (the prefix itself for ``/``)."""
        rel = path.strip("/")
        if not self.prefix:
            return rel
        return f"{self.prefix}/{rel}" if rel else self.prefix

    def _dir_key(self, path: str) -> str:
        key = self.key(path)
        return f"{key}/" if key else ""

    def _s3_url(self, path: str) -> str:
        return self._base + self.key(path)

    @staticmethod
    def is_hidden(path: str) -> bool:
        """Whether ``path`` (clean) is the SE's own state, which is never served."""
        return path == f"/{STATE_PREFIX}" or path.startswith(f"/{STATE_PREFIX}/")

    def _call(self, operation: str, key: str, **params: Any) -> Any:
        try:
            return getattr(self._client, operation)(Bucket=self.bucket, **params)
        except (bx.BotoCoreError, bx.ClientError) as exc:
            raise map_error(exc, self._base + key, self.bucket) from exc

    # --- start-up ----------------------------------------------------------------------

    def check(self) -> None:
        """Fail with a clear error unless the bucket exists and the credentials work."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except bx.ClientError as exc:
            code, status = error_code(exc)
            if status == 404 or code == "NoSuchBucket":
                raise FileNotFoundError(
                    errno.ENOENT,
                    f"the bucket {self.bucket!r} does not exist on {self.url}; create it first",
                ) from None
            raise map_error(exc, self.url, self.bucket) from None
        except bx.BotoCoreError as exc:
            raise map_error(exc, self.url, self.bucket) from None
        # listing needs its own permission: ask once now, not at the first request
        self._call("list_objects_v2", self.prefix, Prefix=self._dir_key("/"), MaxKeys=1)

    # --- looking ----------------------------------------------------------------------

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self._client.head_object(Bucket=self.bucket, Key=key))
        except bx.ClientError as exc:
            code, status = error_code(exc)
            if status == 404 and code != "NoSuchBucket":
                return None
            raise map_error(exc, self._base + key, self.bucket) from exc
        except bx.BotoCoreError as exc:
            raise map_error(exc, self._base + key, self.bucket) from exc

    def entry(self, path: str) -> Entry | None:
        """What is at ``path``: a file, a collection, or nothing (None)."""
        if path == "/":
            return Entry(path, is_dir=True, mtime=self.started)
        key = self.key(path)
        head = self._head(key)
        if head is not None:
            adler, md5 = stored_sums(head)
            sums = {k: v for k, v in (("adler32", adler), ("md5", md5)) if v}
            return Entry(
                path,
                is_dir=False,
                size=int(head["ContentLength"]),
                mtime=head["LastModified"].timestamp(),
                etag=str(head.get("ETag") or ""),
                sums=sums,
            )
        reply = self._call("list_objects_v2", key, Prefix=key + "/", MaxKeys=1)
        contents = reply.get("Contents") or []
        if not contents:
            return None
        first = contents[0]  # the marker sorts first when there is one
        mtime = first["LastModified"].timestamp() if first["Key"] == key + "/" else self.started
        return Entry(path, is_dir=True, mtime=mtime)

    def members(self, path: str) -> list[Entry]:
        """The files and collections directly below the collection ``path``."""
        prefix = self._dir_key(path)
        base = path.rstrip("/")
        out: list[Entry] = []
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(prefix) :].rstrip("/")
                    if name and not (path == "/" and name == STATE_PREFIX):
                        out.append(Entry(f"{base}/{name}", is_dir=True, mtime=self.started))
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(prefix) :]
                    if not name:
                        continue  # the collection's own marker
                    md5 = etag_md5(obj)
                    out.append(
                        Entry(
                            f"{base}/{name}",
                            is_dir=False,
                            size=int(obj["Size"]),
                            mtime=obj["LastModified"].timestamp(),
                            etag=str(obj.get("ETag") or ""),
                            sums={"md5": md5} if md5 else {},
                        )
                    )
        except (bx.BotoCoreError, bx.ClientError) as exc:
            raise map_error(exc, self._base + prefix, self.bucket) from exc
        return sorted(out, key=lambda e: e.path)

    def file_above(self, path: str) -> str | None:
        """The first parent of ``path`` (from the top) that is a file, if any."""
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            above = "/" + "/".join(parts[:i])
            if self._head(self.key(above)) is not None:
                return above
        return None

    def has_members(self, path: str) -> bool:
        """Whether the collection ``path`` holds anything besides its own marker."""
        prefix = self._dir_key(path)
        reply = self._call("list_objects_v2", prefix, Prefix=prefix, MaxKeys=2)
        return any(obj["Key"] != prefix for obj in reply.get("Contents") or [])

    # --- bytes -------------------------------------------------------------------------

    def read(self, path: str, offset: int, length: int, *, etag: str = "") -> Iterator[bytes]:
        """Bytes of the object at ``path``; with ``etag``, of that version only (else
        ``ObjectChanged``)."""
        return self.storage.read(self._s3_url(path), offset, length, if_match=etag)

    def write(
        self, path: str, chunks: Iterable[bytes], expected: Digest | None, *, overwrite: bool
    ) -> Digest:
        """Store ``chunks`` as the object at ``path`` (complete and verified, or nothing);
        FileExistsError without ``overwrite`` when the object exists."""
        got = self.storage.write(self._s3_url(path), chunks, expected=expected, overwrite=overwrite)
        stored_adler = got.bytes < self.storage.part_size or bool(expected and expected.adler32)
        if not stored_adler:  # a multipart upload without a known adler32: keep it aside
            head = self._head(self.key(path))
            if head is not None:
                self._save_sums(path, str(head.get("ETag") or ""), _sums_of(got))
        return got

    # --- checksums --------------------------------------------------------------------

    def _sums_key(self, path: str) -> str:
        return self.key(f"/{STATE_PREFIX}/sums{path}")

    def _save_sums(self, path: str, etag: str, sums: dict[str, str]) -> None:
        body = json.dumps({"etag": etag, **sums}).encode()
        self._call("put_object", self._sums_key(path), Key=self._sums_key(path), Body=body)

    def _kept_sums(self, path: str, etag: str) -> dict[str, str]:
        key = self._sums_key(path)
        try:
            reply = self._client.get_object(Bucket=self.bucket, Key=key)
            data = json.loads(reply["Body"].read())
        except bx.ClientError as exc:
            if error_code(exc)[1] == 404:
                return {}
            raise map_error(exc, self._base + key, self.bucket) from exc
        except (bx.BotoCoreError, ValueError):
            return {}  # unreadable: computed again
        if not isinstance(data, dict) or data.get("etag") != etag:
            return {}  # the object changed since
        return {k: v for k, v in data.items() if k in ("adler32", "md5") and isinstance(v, str)}

    def checksums(self, entry: Entry, algorithms: list[str]) -> dict[str, str]:
        """``algorithms`` of the file ``entry`` (adler32 hex, md5 hex): stored with the
        object, kept in a sidecar, or computed now by reading it once (then kept)."""
        values = dict(entry.sums)
        if all(a in values for a in algorithms):
            return values
        values.update(self._kept_sums(entry.path, entry.etag))
        if all(a in values for a in algorithms):
            return values
        summer = checksummer(md5=True)
        for chunk in self.storage.read(self._s3_url(entry.path)):
            summer.update(chunk)
        values.update(_sums_of(summer.digest()))
        self._save_sums(entry.path, entry.etag, values)
        return values

    # --- changing ---------------------------------------------------------------------

    def delete(self, path: str) -> None:
        """Remove the object at ``path`` (and the checksums kept for it)."""
        self._call("delete_object", self.key(path), Key=self.key(path))
        self._call("delete_object", self._sums_key(path), Key=self._sums_key(path))

    def make_collection(self, path: str) -> None:
        key = self._dir_key(path)
        self._call("put_object", key, Key=key, Body=b"")

    def remove_collection(self, path: str) -> None:
        """Remove the (empty) collection's marker."""
        key = self._dir_key(path)
        self._call("delete_object", key, Key=key)

    def move(self, source: Entry, dest: str) -> None:
        """Copy the object server-side (metadata included), then remove the source."""
        src_key, dest_key = self.key(source.path), self.key(dest)
        where = {"Bucket": self.bucket, "Key": src_key}
        if source.size <= SINGLE_COPY_LIMIT:
            self._call("copy_object", dest_key, Key=dest_key, CopySource=where)
        else:
            try:
                self._client.copy(where, self.bucket, dest_key)
            except (bx.BotoCoreError, bx.ClientError) as exc:
                raise map_error(exc, self._base + dest_key, self.bucket) from exc
        kept = self._kept_sums(source.path, source.etag)
        head = self._head(dest_key)
        if kept and head is not None:
            self._save_sums(dest, str(head.get("ETag") or ""), kept)
        self.delete(source.path)


def _sums_of(digest: Digest) -> dict[str, str]:
    out = {"adler32": digest.adler32}
    if digest.md5:
        out["md5"] = digest.md5
    return out
