"""Upload and download of file bytes, as the rucio client does it.

When an RSE offers a ``file`` protocol whose directory this machine can see, bytes are
copied directly (temporary name, adler32 verified by re-reading, rename) and then
registered in bulk; otherwise they stream through the server (``PUT/GET /files``).
A run that stops half-way is resumed by running it again: files that are already
registered with the same checksum, or already on storage verified, are not copied again.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedlake.domain.checksums import CHUNK
from fedlake.domain.errors import DIDAlreadyExists, InvalidInput, LakeError
from fedlake.domain.names import validate_did_name
from fedlake.domain.paths import build_pfn, lfn2path
from fedlake.storage.backends.posix import TMP_MARK
from fedlake.storage.checksums import adler32, checksummer, file_digest

if TYPE_CHECKING:
    from fedlake.client.http import Client

__all__ = ["DownloadResult", "UploadResult", "copy_verified", "download", "upload"]

ProgressFn = Callable[[int], None]
BATCH = 500


@dataclass
class UploadResult:
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    registered_only: list[str] = field(default_factory=list)
    total_bytes: int = 0


@dataclass
class DownloadResult:
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    total_bytes: int = 0


def expand(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            raise InvalidInput(f"{p} does not exist")
    names: dict[str, Path] = {}
    for f in files:
        validate_did_name(f.name)
        if f.name in names:
            raise InvalidInput(
                f"{f} and {names[f.name]} would both be named {f.name!r} in the lake; "
                "DID names must be unique in a scope"
            )
        names[f.name] = f
    return files


def _local_protocol(settings: dict[str, Any], op: str) -> dict[str, Any] | None:
    best = None
    for p in settings.get("protocols", []):
        prio = (p.get("domains") or {}).get("wan", {}).get(op)
        if (
            p["scheme"] == "file"
            and prio is not None
            and Path(p["prefix"] or "/").is_dir()
            and (best is None or prio < best[0])
        ):
            best = (prio, p)
    return best[1] if best else None


_local = threading.local()
BLOCK = 256 * 1024  # small enough to stay in the CPU cache between checksum and write
SPAN = 8 * 1024 * 1024  # kernel copies are asked for in spans of this size (progress)
_NO_KERNEL_COPY = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF}


def _buffer() -> memoryview:
    """A per-thread reusable block, so copying allocates nothing per chunk."""
    buf: memoryview | None = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = memoryview(bytearray(BLOCK))
    return buf


def _kernel_copy(fin: int, fout: int, progress: ProgressFn | None) -> bool:
    """Copy with ``copy_file_range`` (page cache to page cache, no user-space copy).

    False if the kernel cannot do it for these files (nothing was written then).
    """
    first = True
    while True:
        try:
            n = os.copy_file_range(fin, fout, SPAN)
        except OSError as exc:
            if first and exc.errno in _NO_KERNEL_COPY:
                return False
            raise
        first = False
        if n == 0:
            return True
        if progress:
            progress(n)


def _user_copy(fin: Any, fout: Any, progress: ProgressFn | None) -> None:
    view = _buffer()
    while n := fin.readinto(view):
        chunk = view[:n]
        done = 0
        while done < n:
            done += fout.write(chunk[done:]) or 0
        if progress:
            progress(n)


def _adler_of(fd: int, size: int) -> str:
    """adler32 of a file's first ``size`` bytes, hashed in place (mmap, no copy)."""
    if size == 0:
        return "00000001"
    with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
        return f"{adler32(view, 1) & 0xFFFFFFFF:08x}"


def copy_verified(src: Path, dest: Path, progress: ProgressFn | None) -> str:
    """Copy src to dest atomically; returns the adler32 of the stored bytes.

    The bytes are copied by the kernel where it can (``copy_file_range``; else through a
    small buffer), then the adler32 is computed over the temporary copy itself, so the
    checksum registered is that of exactly what is stored. The source must be unchanged
    (size and mtime) from before the copy to after it, and the copy must have the
    source's size: a file modified while it was copied is refused, nothing is kept.
    Temporaries are named like the storage plugin's (``.<name>.fedlake-tmp-<hex>``) so
    the sweeper removes those of killed uploads.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}{TMP_MARK}{secrets.token_hex(6)}")
    try:
        with open(src, "rb", buffering=0) as fin, open(tmp, "xb+", buffering=0) as fout:
            before = os.fstat(fin.fileno())
            if not _kernel_copy(fin.fileno(), fout.fileno(), progress):
                _user_copy(fin, fout, progress)
            written = os.fstat(fout.fileno()).st_size
            after = os.fstat(fin.fileno())
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise LakeError(f"{src} changed while it was copied; nothing was kept, try again")
            if written != before.st_size:
                raise LakeError(
                    f"{dest}: {written} bytes were stored but the source has "
                    f"{before.st_size}; nothing was kept"
                )
            adler = _adler_of(fout.fileno(), written)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return adler


class _Uploader:
    """One ``upload`` run: plan (what is already there), copy, register, protect by rules."""

    def __init__(self, client: Client, rse: str, scope: str, progress: ProgressFn | None) -> None:
        self.client = client
        self.rse = rse
        self.scope = scope
        self.progress = progress
        self.settings = client.get_rse(rse)
        if not self.settings.get("availability_write", True):
            raise LakeError(f"RSE {rse} does not accept writes now")
        self.proto = _local_protocol(self.settings, "write")
        self.existing: dict[tuple[str, str], dict[str, Any]] = {}

    def _advance(self, n: int) -> None:
        if self.progress:
            self.progress(n)

    def plan(self, files: list[Path], result: UploadResult) -> list[Path]:
        """Files still to copy; verified ones already on the RSE are skipped."""
        keys = [(self.scope, f.name) for f in files]
        self.existing = {(m["scope"], m["name"]): m for m in _bulk_meta(self.client, keys)}
        on_rse: set[tuple[str, str]] = set()
        if self.existing:
            for rec in self.client.list_replicas(list(self.existing), all_states=True):
                if self.rse in rec["states"]:
                    on_rse.add((rec["scope"], rec["name"]))
        todo: list[Path] = []
        for f in files:
            meta = self.existing.get((self.scope, f.name))
            if meta is None:
                todo.append(f)
                continue
            local = file_digest(f, md5=False)
            if meta.get("adler32") != local.adler32 or meta.get("bytes") != local.bytes:
                raise DIDAlreadyExists(
                    f"{self.scope}:{f.name} exists with other content (adler32 "
                    f"{meta.get('adler32')}, local {local.adler32}); rename the file"
                )
            if (self.scope, f.name) in on_rse:
                result.skipped.append(f.name)
                self._advance(local.bytes)
            else:
                todo.append(f)
        return todo

    def copy_direct(self, f: Path, proto: dict[str, Any]) -> dict[str, Any]:
        deterministic = self.settings["deterministic"]
        algorithm = self.settings["lfn2pfn_algorithm"] if deterministic else "identity"
        path = lfn2path(algorithm, self.scope, f.name)
        dest = Path(proto["prefix"]) / path
        if dest.exists():  # left by a run that stopped before registering
            have = file_digest(dest, md5=False)
            local = file_digest(f, md5=False)
            if have.adler32 != local.adler32 or have.bytes != local.bytes:
                raise DIDAlreadyExists(f"{dest} exists on {self.rse} with other content")
            self._advance(local.bytes)
            adler = local.adler32
        else:
            adler = copy_verified(f, dest, self.progress)
        rec: dict[str, Any] = {
            "scope": self.scope,
            "name": f.name,
            "bytes": f.stat().st_size,
            "adler32": adler,
            "state": "A",
        }
        if not deterministic:
            rec["pfn"] = build_pfn("file", proto["hostname"], proto["port"], proto["prefix"], path)
        return rec

    def send_through_server(self, f: Path) -> dict[str, Any]:
        digest = file_digest(f, md5=False)
        with open(f, "rb") as fh:
            self.client.upload_bytes(
                self.scope,
                f.name,
                self.rse,
                _reader(fh, self.progress),
                size=digest.bytes,
                adler32=digest.adler32,
            )
        return {
            "scope": self.scope,
            "name": f.name,
            "bytes": digest.bytes,
            "adler32": digest.adler32,
            "registered": True,
        }

    def one(self, f: Path) -> dict[str, Any]:
        if self.proto is not None:
            return self.copy_direct(f, self.proto)
        return self.send_through_server(f)

    def protect(
        self, done: list[tuple[str, str]], dataset: tuple[str, str] | None, lifetime: int | None
    ) -> None:
        """Attach to the dataset and make sure a rule keeps the data on the RSE."""
        if not done:
            return
        if dataset is not None:
            attached = {(c["scope"], c["name"]) for c in self.client.list_content(*dataset)}
            new = [k for k in done if k not in attached]
            if new:
                self.client.attach(dataset[0], dataset[1], new)
            if not self.client.list_did_rules(*dataset):
                self.client.add_rule([dataset], 1, self.rse, lifetime=lifetime)
            return
        ruled = {k for k in done if k in self.existing and self.client.list_did_rules(*k)}
        need = [k for k in done if k not in ruled]
        for i in range(0, len(need), 2000):
            self.client.add_rule(need[i : i + 2000], 1, self.rse, lifetime=lifetime)


def upload(
    client: Client,
    paths: Sequence[Path],
    *,
    rse: str,
    scope: str | None = None,
    dataset: tuple[str, str] | None = None,
    jobs: int = 8,
    lifetime: int | None = None,
    progress: ProgressFn | None = None,
    on_file: Callable[[str], None] | None = None,
) -> UploadResult:
    files = expand(paths)
    scope = scope or f"user.{client.whoami()['account']}"
    up = _Uploader(client, rse, scope, progress)
    result = UploadResult()
    todo = up.plan(files, result)
    if dataset is not None:
        with contextlib.suppress(DIDAlreadyExists):
            client.add_did(dataset[0], dataset[1], "DATASET")
    pending: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for fut in as_completed([pool.submit(up.one, f) for f in todo]):
            rec = fut.result()
            result.total_bytes += rec["bytes"]
            result.uploaded.append(rec["name"])
            if on_file:
                on_file(rec["name"])
            if not rec.pop("registered", False):
                pending.append(rec)
            if len(pending) >= BATCH:
                client.add_replicas(rse, pending)
                pending = []
    if pending:
        client.add_replicas(rse, pending)
    up.protect([(scope, n) for n in result.uploaded + result.skipped], dataset, lifetime)
    return result


def _reader(fh: Any, progress: ProgressFn | None) -> Iterator[bytes]:
    while block := fh.read(CHUNK):
        if progress:
            progress(len(block))
        yield block


def _bulk_meta(client: Client, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(keys), 2000):
        body = {
            "dids": [{"scope": s, "name": n} for s, n in keys[i : i + 2000]],
            "plugin": "DID_COLUMN",
        }
        out.extend(client._stream("POST", "/dids/bulkmeta", body=body))
    return out


def _local_source(pfns: dict[str, Any]) -> Path | None:
    """The first ``file://`` replica this machine can read directly, if any."""
    for pfn in pfns:
        if pfn.startswith("file://"):
            path = Path("/" + pfn[len("file://") :].split("/", 1)[1])
            if path.is_file():
                return path
    return None


def _verified_copy_exists(target: Path, rec: dict[str, Any]) -> bool:
    if not target.exists():
        return False
    have = file_digest(target, md5=False)
    return bool(have.adler32 == rec["adler32"] and have.bytes == rec["bytes"])


def _fetch(client: Client, rec: dict[str, Any], part: Path, progress: ProgressFn | None) -> str:
    """Bring a file's bytes to ``part``: directly from a visible replica, else via the server."""
    src = _local_source(rec["pfns"])
    if src is not None:
        return copy_verified(src, part, progress)
    summer = checksummer(md5=False)
    r = client.open_bytes(rec["scope"], rec["name"])
    try:
        with open(part, "wb") as fh:
            for chunk in r.iter_bytes(CHUNK):
                summer.update(chunk)
                fh.write(chunk)
                if progress:
                    progress(len(chunk))
    finally:
        r.close()
    return summer.digest().adler32


def download(
    client: Client,
    dids: Sequence[tuple[str, str]],
    *,
    dest: Path,
    jobs: int = 8,
    progress: ProgressFn | None = None,
    on_file: Callable[[str], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> DownloadResult:
    plan: list[tuple[dict[str, Any], Path]] = []
    for scope, name in dids:
        info = client.get_did(scope, name)
        for rec in client.list_replicas([(scope, name)]):
            sub = scope if info["type"] == "FILE" else name
            plan.append((rec, dest / sub / rec["name"]))
    if on_total:
        on_total(sum(r["bytes"] or 0 for r, _ in plan))
    result = DownloadResult()

    def one(rec: dict[str, Any], target: Path) -> tuple[str, bool]:
        if _verified_copy_exists(target, rec):
            if progress:
                progress(rec["bytes"] or 0)
            return rec["name"], False
        if not rec["pfns"]:
            raise LakeError(f"{rec['scope']}:{rec['name']} has no available replica")
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        adler = _fetch(client, rec, part, progress)
        if adler != rec["adler32"]:
            part.unlink(missing_ok=True)
            raise LakeError(
                f"{rec['scope']}:{rec['name']}: downloaded adler32 {adler} does not "
                f"match the catalogue's {rec['adler32']}; nothing was kept"
            )
        os.replace(part, target)
        return rec["name"], True

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(one, rec, t): rec for rec, t in plan}
        for fut in as_completed(futures):
            name, copied = fut.result()
            (result.downloaded if copied else result.skipped).append(name)
            if copied:
                result.total_bytes += futures[fut]["bytes"] or 0
            if on_file:
                on_file(name)
    return result
