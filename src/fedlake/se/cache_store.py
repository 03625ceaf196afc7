"""The read-through cache's disk: blocks of origin files, their index, LRU eviction between
watermarks, atomic fills.

Below the cache directory::

    data/<k[:2]>/<k>/<i>                     block i of the origin file whose key is k
                                             (sha256 of its URL); whole-file mode: block 0
    data/<k[:2]>/<k>/.<i>.part-<pid>-<hex>   a block being filled
    index.sqlite                             files (URL, size, mtime, the adler32 expected)
                                             and blocks (bytes, adler32, last use)
    locks/<n>                                4096 lock files: a fill holds flock on its
                                             block's stripe, so one process fetches it

A fill writes a part, checks its length (and the caller's checksum), renames it onto
its name and only then adds its row: the rename is the commit point. Readers open the
block file itself, so a block is served only once it is whole. :meth:`CacheStore.recover`
(run once, before any worker serves) deletes parts left by a killed fill, blocks without
a row (killed between rename and row) and rows without a block: what a crash leaves is
never counted, never served.

Eviction: after a fill, when the blocks' bytes pass ``high`` x capacity, the least
recently used blocks go until they are at or below ``low`` x capacity. The rows go in one
SQLite write transaction (which serialises workers), the files after the commit; a
reader that already opened a block keeps reading it (POSIX unlink semantics).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fedlake.storage.checksums import adler32

__all__ = ["Block", "CacheStore", "FileInfo", "Part", "Recovery", "adler32_combine", "key_of"]

_STRIPES = 4096
_PART = ".part-"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    key TEXT PRIMARY KEY, url TEXT NOT NULL, size INTEGER NOT NULL, mtime REAL NOT NULL,
    adler32 TEXT, block_size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    key TEXT NOT NULL, idx INTEGER NOT NULL, bytes INTEGER NOT NULL, adler32 TEXT NOT NULL,
    used REAL NOT NULL, PRIMARY KEY (key, idx));
CREATE INDEX IF NOT EXISTS blocks_used ON blocks (used);
CREATE TABLE IF NOT EXISTS totals (one INTEGER PRIMARY KEY CHECK (one = 1), used INTEGER);
INSERT OR IGNORE INTO totals VALUES (1, 0);
"""
_BASE = 65521


def key_of(url: str) -> str:
    """The cache key of an origin URL."""
    return hashlib.sha256(url.encode("utf-8", "surrogateescape")).hexdigest()


def adler32_combine(first: int, second: int, second_length: int) -> int:
    """adler32 of A+B from adler32(A), adler32(B) and len(B) (zlib's adler32_combine)."""
    rem = second_length % _BASE
    sum1 = first & 0xFFFF
    sum2 = (rem * sum1) % _BASE
    sum1 += (second & 0xFFFF) + _BASE - 1
    sum2 += ((first >> 16) & 0xFFFF) + ((second >> 16) & 0xFFFF) + _BASE - rem
    if sum1 >= _BASE:
        sum1 -= _BASE
    if sum1 >= _BASE:
        sum1 -= _BASE
    if sum2 >= _BASE << 1:
        sum2 -= _BASE << 1
    if sum2 >= _BASE:
        sum2 -= _BASE
    return sum1 | (sum2 << 16)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """An origin file as the cache knows it. ``block_size`` 0: one block, the whole file.
    ``adler32``: what the bytes must sum to (the catalogue's or the origin's), if known."""

    key: str
    url: str
    size: int
    mtime: float
    adler32: str | None
    block_size: int

    @property
    def span(self) -> int:
        """Bytes per block (the whole file in whole-file mode)."""
        return self.block_size or max(self.size, 1)

    @property
    def blocks(self) -> int:
        return -(-self.size // self.span) if self.size else (0 if self.block_size else 1)

    def block_range(self, idx: int) -> tuple[int, int]:
        """(offset, length) of block ``idx`` in the file."""
        start = idx * self.span
        return start, max(0, min(self.span, self.size - start))


@dataclass(frozen=True, slots=True)
class Block:
    idx: int
    bytes: int
    adler32: str


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :meth:`CacheStore.recover` cleaned up."""

    parts: int
    orphans: int
    lost_rows: int
    used: int


class Part:
    """A block being filled: ``write`` the bytes, then :meth:`CacheStore.commit`."""

    def __init__(self, info: FileInfo, idx: int, path: str, final: str) -> None:
        self.info = info
        self.idx = idx
        self.path = path
        self.final = final
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self.written = 0
        self.sum = 1

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self.sum = adler32(view, self.sum)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.written += n

    @property
    def adler32(self) -> str:
        return f"{self.sum & 0xFFFFFFFF:08x}"

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class CacheStore:
    """Blocks on disk plus their index; thread-safe, and shared by worker processes."""

    def __init__(
        self,
        root: Path,
        capacity: int,
        *,
        high: float = 0.95,
        low: float = 0.85,
        block_size: int = 0,
        fsync: bool = False,
    ) -> None:
        if capacity <= 0:
            raise ValueError(f"the cache size must be positive, not {capacity}")
        if not 0 < low < high <= 1:
            raise ValueError(f"watermarks: need 0 < low < high <= 1, got low={low} high={high}")
        if block_size < 0:
            raise ValueError(f"the block size must be 0 (whole files) or positive: {block_size}")
        self.root = root
        self.capacity = capacity
        self.high = int(capacity * high)
        self.low = int(capacity * low)
        self.block_size = block_size
        self.fsync = fsync
        self.data = root / "data"
        self.locks = root / "locks"
        self._local = threading.local()
        for d in (self.data, self.locks):
            d.mkdir(parents=True, exist_ok=True)
        self._db()

    # --- index plumbing ------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        """This thread's connection (made after a worker's fork, on first use)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "pid", None) != os.getpid():
            db = sqlite3.connect(self.root / "index.sqlite", timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._local.db, self._local.pid = db, os.getpid()
        return db

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def block_path(self, key: str, idx: int) -> str:
        return os.path.join(self.data, key[:2], key, str(idx))

    # --- files -----------------------------------------------------------------------------

    def file(self, key: str) -> FileInfo | None:
        row = (
            self._db()
            .execute(
                "SELECT url, size, mtime, adler32, block_size FROM files WHERE key = ?", (key,)
            )
            .fetchone()
        )
        if row is None or row[4] != self.block_size:
            return None
        return FileInfo(key, row[0], row[1], row[2], row[3], row[4])

    def remember(self, info: FileInfo) -> None:
        with self._write() as db:
            self._remember(db, info)

    @staticmethod
    def _remember(db: sqlite3.Connection, info: FileInfo) -> None:
        db.execute(
            "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
            (info.key, info.url, info.size, info.mtime, info.adler32, info.block_size),
        )

    def blocks(self, key: str) -> list[Block]:
        rows = self._db().execute(
            "SELECT idx, bytes, adler32 FROM blocks WHERE key = ? ORDER BY idx", (key,)
        )
        return [Block(*r) for r in rows]

    def used(self) -> int:
        row = self._db().execute("SELECT used FROM totals").fetchone()
        return int(row[0])

    # --- reading ---------------------------------------------------------------------------

    def open_block(self, key: str, idx: int) -> int | None:
        """A descriptor of the whole block (its last use recorded), or None if absent."""
        try:
            fd = os.open(self.block_path(key, idx), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        with contextlib.suppress(sqlite3.OperationalError):  # a busy index: LRU off by one
            self._db().execute(
                "UPDATE blocks SET used = ? WHERE key = ? AND idx = ?", (time.time(), key, idx)
            )
        return fd

    # --- filling ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def fill_lock(self, key: str, idx: int) -> Iterator[None]:
        """Held while block ``idx`` of ``key`` is fetched: the same block is fetched once
        by all the processes sharing this directory (blocking; call from a thread)."""
        stripe = int(hashlib.blake2b(f"{key}/{idx}".encode(), digest_size=4).hexdigest(), 16)
        fd = os.open(self.locks / str(stripe % _STRIPES), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def part(self, info: FileInfo, idx: int) -> Part:
        final = self.block_path(info.key, idx)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = os.path.join(
            os.path.dirname(final), f".{idx}{_PART}{os.getpid()}-{secrets.token_hex(4)}"
        )
        return Part(info, idx, tmp, final)

    def commit(self, part: Part) -> None:
        """Make a complete part the block (rename, then row); OSError if it is short."""
        _, expected = part.info.block_range(part.idx)
        if part.written != expected:
            part.discard()
            raise OSError(
                errno.EIO,
                f"{part.info.url}: block {part.idx} got {part.written} bytes of {expected}",
            )
        if self.fsync:
            os.fsync(part.fd)
        part.close()
        os.rename(part.path, part.final)
        with self._write() as db:
            self._remember(db, part.info)
            old = db.execute(
                "SELECT bytes FROM blocks WHERE key = ? AND idx = ?", (part.info.key, part.idx)
            ).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?)",
                (part.info.key, part.idx, part.written, part.adler32, time.time()),
            )
            db.execute(
                "UPDATE totals SET used = used + ?", (part.written - (old[0] if old else 0),)
            )

    def drop_file(self, key: str) -> int:
        """Forget a file and delete its blocks (a checksum mismatch); bytes freed."""
        with self._write() as db:
            rows = db.execute("SELECT idx, bytes FROM blocks WHERE key = ?", (key,)).fetchall()
            freed = sum(r[1] for r in rows)
            db.execute("DELETE FROM blocks WHERE key = ?", (key,))
            db.execute("DELETE FROM files WHERE key = ?", (key,))
            db.execute("UPDATE totals SET used = used - ?", (freed,))
        for idx, _ in rows:
            self._unlink(key, idx)
        return int(freed)

    def evict(self) -> list[tuple[str, int, int]]:
        """Above the high watermark: drop least recently used blocks down to the low one.
        Returns the (key, index, bytes) evicted."""
        if self.used() <= self.high:
            return []
        victims: list[tuple[str, int, int]] = []
        with self._write() as db:
            used = int(db.execute("SELECT used FROM totals").fetchone()[0])
            if used <= self.high:
                return []
            for key, idx, size in db.execute(
                "SELECT key, idx, bytes FROM blocks ORDER BY used, rowid"
            ):
                if used <= self.low:
                    break
                victims.append((key, idx, size))
                used -= size
            db.executemany("DELETE FROM blocks WHERE key = ? AND idx = ?", [v[:2] for v in victims])
            db.execute("UPDATE totals SET used = ?", (used,))
            keys = sorted({v[0] for v in victims})
            db.executemany(
                "DELETE FROM files WHERE key = ? AND NOT EXISTS "
                "(SELECT 1 FROM blocks WHERE blocks.key = files.key)",
                [(k,) for k in keys],
            )
        for key, idx, _ in victims:
            self._unlink(key, idx)
        return victims

    def _unlink(self, key: str, idx: int) -> None:
        path = self.block_path(key, idx)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        with contextlib.suppress(OSError):  # the file's directory, once empty
            os.rmdir(os.path.dirname(path))

    # --- start-up --------------------------------------------------------------------------

    def recover(self) -> Recovery:
        """Make disk and index agree after a crash (run once, before serving): parts and
        blocks without a row are deleted, rows without a block dropped, files cached with
        another block size forgotten, and the bytes in use counted again."""
        parts = orphans = 0
        with self._write() as db:
            db.execute("DELETE FROM files WHERE block_size != ?", (self.block_size,))
            db.execute("DELETE FROM blocks WHERE key NOT IN (SELECT key FROM files)")
            rows = {(k, i): b for k, i, b in db.execute("SELECT key, idx, bytes FROM blocks")}
            seen: set[tuple[str, int]] = set()
            for top in os.scandir(self.data):
                for fdir in os.scandir(top.path) if top.is_dir() else ():
                    for entry in os.scandir(fdir.path):
                        if _PART in entry.name:
                            os.unlink(entry.path)
                            parts += 1
                            continue
                        try:
                            k = (fdir.name, int(entry.name))
                        except ValueError:
                            continue
                        if k in rows and entry.stat().st_size == rows[k]:
                            seen.add(k)
                        else:
                            os.unlink(entry.path)
                            orphans += 1
                    with contextlib.suppress(OSError):
                        os.rmdir(fdir.path)
            lost = [k for k in rows if k not in seen]
            db.executemany("DELETE FROM blocks WHERE key = ? AND idx = ?", lost)
            db.execute("DELETE FROM files WHERE key NOT IN (SELECT key FROM blocks)")
            used = sum(rows[k] for k in seen)
            db.execute("UPDATE totals SET used = ?", (used,))
        return Recovery(parts, orphans, len(lost), used)
