"""Tape emulated on POSIX directories (``tape://host/abs/path``): files must be staged.

The URL's path is a file's name in the emulated namespace, never a real path. Under
``root`` (an option; default ``~/.fedlake/tape``, created on first use) live the areas
below. The root is not derived from each URL because the buffer's capacity, LRU order
and recall queue need one place shared by all files of the tape.

- ``tape/<path>``: the durable copies. This is the namespace that ``exists``, ``stat``,
  ``listdir`` and ``mkdir`` see; writers' temporaries (``.<name>.fedlake-tmp-<hex>``)
  are hidden.
- ``buffer/<path>``: the online copies. A fresh write is a hard link of its tape copy
  (pinned for ``write_pin`` seconds); a recall copies the tape copy in.
- ``state.sqlite``: per-file checksums, online copies (pin, last access) and recall
  requests, shared by every process using the same root (SQLite does the locking).
- ``locks/NN.lock``: flock stripes held while a recall copies. The kernel releases them
  when a copier dies, so a dead copier's recall is simply done again.

``read`` of a file without an online copy raises :class:`NotOnline`. ``stage`` records a
recall that is due ``recall_latency + size / recall_throughput`` seconds later; nothing
runs in the background: ``is_online``, ``read`` and ``stat`` complete due recalls when
they are called. The disk buffer holds at most ``buffer_bytes``; room is made by evicting
unpinned online copies, least recently used first. A write that cannot get room fails
with ``OSError(ENOSPC)``; a recall that cannot stays pending and completes once pins
expire or are released. A file larger than the whole buffer can be neither written nor
staged (ENOSPC).

A file has one pin: ``stage`` extends it to the longest asked for, ``release`` drops it
(and cancels a recall still pending). ``evict`` drops an online copy at once (an
operator's action, for tests and demos); ``sweep_temporaries`` removes what killed
writers and copiers left.

Crash safety: a copy counts only while the identities (inode, size, mtime) recorded in
the state match the files on disk, so any step a killed process left half-done is
detected and redone; checksums missing or stale for the same reason are recomputed from
the tape copy. The state is not fsynced: it survives killed processes, not power loss
(the tape copies are not fsynced either, as with ``file://``). ``root`` must be on a local
filesystem (SQLite's WAL and flock), shared by all processes using the tape.
"""

from __future__ import annotations

import errno
import fcntl
import glob
import hashlib
import math
import os
import secrets
import shutil
import sqlite3
import stat as stat_mod
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from fedlake.domain.checksums import Digest
from fedlake.domain.errors import ChecksumMismatch
from fedlake.storage.backends.posix import TMP_MARK, is_temporary
from fedlake.storage.backends.posix import sweep_temporaries as _sweep
from fedlake.storage.base import NotOnline, Stageable, StatResult, Storage
from fedlake.storage.checksums import checksummer, file_digest

__all__ = ["NotOnline", "TapeStorage"]

BLOCK = 4 * 1024 * 1024
LOCK_STRIPES = 256
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, ident TEXT NOT NULL, adler32 TEXT NOT NULL, md5 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS online (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, ident TEXT, buf_ident TEXT,
    ready INTEGER NOT NULL, pinned_until REAL NOT NULL, last_access REAL NOT NULL);
CREATE TABLE IF NOT EXISTS recalls (
    path TEXT PRIMARY KEY, id TEXT NOT NULL, requested REAL NOT NULL, due REAL NOT NULL,
    pin_seconds REAL NOT NULL, done INTEGER NOT NULL);
"""


def _copy_bytes(src: Path, dst: Path) -> None:
    """Copy a tape copy into a buffer temporary (a module function: tests interrupt it)."""
    shutil.copyfile(src, dst)


def _ident(path: Path) -> str | None:
    """Identity of a file's version (inode, size, mtime); None when it is missing."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _number(label: str, value: object, unit: str, *, positive: bool = False) -> float:
    """A finite number >= 0 (> 0 if ``positive``), else a ValueError naming ``label``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{label}={value!r} must be a number ({unit})")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{label}={value!r} must be {'above' if positive else 'at least'} 0")
    return float(value)


class TapeStorage(Storage, Stageable):
    """A tape endpoint: durable copies, a disk buffer of online copies, lazy recalls."""

    scheme = "tape"

    def __init__(
        self,
        *,
        root: str | None = None,
        recall_latency: float = 2.0,
        recall_throughput: float = 200e6,
        buffer_bytes: int = 10 * 1024**3,
        migration: str = "immediate",
        write_pin: float = 300.0,
        **unknown: object,
    ) -> None:
        """Options are JSON values (an RSE protocol's ``extended_attributes``).

        ``root``: absolute directory of the emulation; ``recall_latency`` (s) and
        ``recall_throughput`` (bytes/s) set when a recall completes; ``buffer_bytes``:
        disk buffer capacity; ``migration``: only "immediate" (a write is on tape when it
        returns); ``write_pin``: seconds a fresh write stays pinned online.
        """
        if unknown:
            raise ValueError(
                f"unknown tape option(s) {', '.join(sorted(unknown))}; known: root, "
                "recall_latency, recall_throughput, buffer_bytes, migration, write_pin"
            )
        if root is None:
            self.root = Path.home() / ".fedlake" / "tape"
        elif not isinstance(root, str) or not root:
            raise ValueError(f"tape option root={root!r} must be a directory path")
        else:
            self.root = Path(root).expanduser()
            if not self.root.is_absolute():
                raise ValueError(f"tape option root={root!r} must be an absolute path")
        self.recall_latency = _number("tape option recall_latency", recall_latency, "seconds")
        self.recall_throughput = _number(
            "tape option recall_throughput", recall_throughput, "bytes/s", positive=True
        )
        capacity = _number("tape option buffer_bytes", buffer_bytes, "bytes", positive=True)
        if not capacity.is_integer():
            raise ValueError(f"tape option buffer_bytes={buffer_bytes!r} must be whole bytes")
        self.buffer_bytes = int(capacity)
        if migration != "immediate":
            raise ValueError(f"tape option migration={migration!r}: only 'immediate' exists")
        self.migration = migration
        self.write_pin = _number("tape option write_pin", write_pin, "seconds")
        self._areas_made = False
        self._schema_made = False

    # --- paths and state -----------------------------------------------------------------

    def _name(self, url: str) -> str:
        """The name in the namespace ("" for its top), taken literally from the URL."""
        scheme, sep, rest = url.partition("://")
        if scheme != self.scheme or not sep:
            raise ValueError(f"{url!r} is not a tape:// URL")
        _host, slash, path = rest.partition("/")
        if not slash:
            raise ValueError(f"{url!r} has no path (tape://HOST/abs/path)")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"{url!r}: '..' is not allowed in a tape path")
        return "/".join(parts)

    def _tape(self, name: str) -> Path:
        return self.root / "tape" / name

    def _buffer(self, name: str) -> Path:
        return self.root / "buffer" / name

    def _areas(self) -> None:
        """Create the root's areas on first use (never at construction)."""
        if not self._areas_made:
            for area in ("tape", "buffer", "locks"):
                (self.root / area).mkdir(parents=True, exist_ok=True)
            self._areas_made = True

    def _connect(self) -> sqlite3.Connection:
        self._areas()
        con = sqlite3.connect(self.root / "state.sqlite", timeout=30.0, isolation_level=None)
        try:
            if not self._schema_made:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
                self._schema_made = True
            # no fsync: safe against killed processes (the kernel keeps the writes), not
            # against power loss; nor are the tape copies fsynced, as with file://
            con.execute("PRAGMA synchronous=OFF")
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; holds the state's write lock across processes."""
        with closing(self._connect()) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                if con.in_transaction:  # SQLite may have rolled back already
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _one(self, sql: str, *args: object) -> Any:
        """The first row of a query (a tuple), or None."""
        with closing(self._connect()) as con:
            return con.execute(sql, args).fetchone()

    def _file_stat(self, name: str, url: str) -> os.stat_result:
        try:
            st = self._tape(name).stat()
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "no such file on tape", url) from None
        if stat_mod.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", url)
        return st

    @contextmanager
    def _recall_lock(self, name: str) -> Iterator[bool]:
        """Try to become the one process copying ``name`` in; yields whether we are."""
        stripe = hashlib.sha256(name.encode("utf-8", "surrogateescape")).digest()[0]
        lock = self.root / "locks" / f"{stripe % LOCK_STRIPES:02x}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
            except BlockingIOError:
                held = False
            yield held
        finally:
            os.close(fd)  # also drops the lock

    def _online_copy(self, con: sqlite3.Connection, name: str) -> Path | None:
        """The online copy of the current tape copy, if there is one."""
        row = con.execute(
            "SELECT ident, buf_ident FROM online WHERE path = ? AND ready = 1", (name,)
        ).fetchone()
        if row is None:
            return None
        buf = self._buffer(name)
        tape_ident = _ident(self._tape(name))
        if tape_ident is None or row != (tape_ident, _ident(buf)):
            return None
        return buf

    def _make_room(self, con: sqlite3.Connection, name: str, need: int) -> bool:
        """Evict until ``need`` more bytes fit (``name``'s own entry is being replaced)."""
        if need > self.buffer_bytes:
            return False
        (used,) = con.execute(
            "SELECT COALESCE(SUM(size), 0) FROM online WHERE path != ?", (name,)
        ).fetchone()
        if used + need <= self.buffer_bytes:
            return True
        now = time.time()
        rows = con.execute(
            "SELECT path, size, pinned_until, ready FROM online WHERE path != ?"
            " ORDER BY last_access",
            (name,),
        ).fetchall()
        for path, size, pinned_until, ready in rows:
            if ready:
                # unpinned copies, and pinned ones a crash left invalid
                if pinned_until > now and self._online_copy(con, path) is not None:
                    continue
                self._buffer(path).unlink(missing_ok=True)
            else:  # a recall's reservation: drop it only if its copier is dead
                with self._recall_lock(path) as free:
                    if not free:
                        continue
            con.execute("DELETE FROM online WHERE path = ?", (path,))
            used -= size
            if used + need <= self.buffer_bytes:
                return True
        return False

    # --- recalls -------------------------------------------------------------------------

    def _complete_due_recall(self, name: str) -> None:
        row = self._one("SELECT id, due FROM recalls WHERE path = ? AND done = 0", name)
        if row is None or row[1] > time.time():
            return
        with self._recall_lock(name) as held:
            if held:  # else another process or thread is copying it in right now
                self._recall(name, str(row[0]))

    def _recall(self, name: str, request_id: str) -> None:
        tape, buf = self._tape(name), self._buffer(name)
        with self._tx() as con:
            req = con.execute(
                "SELECT pin_seconds FROM recalls WHERE path = ? AND id = ? AND done = 0",
                (name, request_id),
            ).fetchone()
            ident = _ident(tape)
            if req is None or ident is None:
                return
            now = time.time()
            if self._online_copy(con, name) is not None:  # e.g. written again meanwhile
                con.execute("UPDATE recalls SET done = 1 WHERE path = ?", (name,))
                return
            size = tape.stat().st_size
            if not self._make_room(con, name, size):
                return  # the recall waits for room: pins expire or are released
            buf.unlink(missing_ok=True)  # a stale copy of an older version
            con.execute(
                "INSERT OR REPLACE INTO online VALUES (?, ?, ?, NULL, 0, 0, ?)",
                (name, size, ident, now),
            )
        pin_seconds = float(req[0])
        buf.parent.mkdir(parents=True, exist_ok=True)
        for leftover in buf.parent.glob(f".{glob.escape(buf.name)}{TMP_MARK}*"):
            if is_temporary(leftover.name):  # of a killed copier: we hold the name's lock
                leftover.unlink(missing_ok=True)
        tmp = buf.with_name(f".{buf.name}{TMP_MARK}{secrets.token_hex(6)}")
        try:
            _copy_bytes(tape, tmp)
            with self._tx() as con:
                still = con.execute(
                    "SELECT 1 FROM recalls r JOIN online o ON o.path = r.path WHERE r.path = ?"
                    " AND r.id = ? AND r.done = 0 AND o.ready = 0 AND o.ident = ?",
                    (name, request_id, ident),
                ).fetchone()
                if still is None or _ident(tape) != ident:
                    return  # released, deleted or overwritten while copying
                os.replace(tmp, buf)
                now = time.time()
                con.execute(
                    "UPDATE online SET ready = 1, buf_ident = ?, pinned_until = ?,"
                    " last_access = ? WHERE path = ?",
                    (_ident(buf), now + pin_seconds, now, name),
                )
                con.execute("UPDATE recalls SET done = 1 WHERE path = ?", (name,))
        except BaseException:
            with self._tx() as con:
                con.execute("DELETE FROM online WHERE path = ? AND ready = 0", (name,))
            raise
        finally:
            tmp.unlink(missing_ok=True)

    # --- Stageable -----------------------------------------------------------------------

    def stage(self, url: str, *, pin_seconds: float = 3600.0) -> str:
        pin = _number("pin_seconds", pin_seconds, "seconds")
        name = self._name(url)
        size = self._file_stat(name, url).st_size
        if size > self.buffer_bytes:
            raise OSError(errno.ENOSPC, self._no_room(size), url)
        with self._tx() as con:
            now = time.time()
            req = con.execute("SELECT id, done FROM recalls WHERE path = ?", (name,)).fetchone()
            if self._online_copy(con, name) is not None:
                con.execute(
                    "UPDATE online SET pinned_until = MAX(pinned_until, ?), last_access = ?"
                    " WHERE path = ?",
                    (now + pin, now, name),
                )
                con.execute("UPDATE recalls SET done = 1 WHERE path = ?", (name,))
                if req is not None:
                    return str(req[0])
                request_id, due, done = uuid.uuid4().hex, now, 1
            elif req is not None and not req[1]:
                con.execute(
                    "UPDATE recalls SET pin_seconds = MAX(pin_seconds, ?) WHERE path = ?",
                    (pin, name),
                )
                return str(req[0])
            else:
                request_id, done = uuid.uuid4().hex, 0
                due = now + self.recall_latency + size / self.recall_throughput
            con.execute(
                "INSERT OR REPLACE INTO recalls VALUES (?, ?, ?, ?, ?, ?)",
                (name, request_id, now, due, pin, done),
            )
            return request_id

    def is_online(self, url: str) -> bool:
        name = self._name(url)
        self._file_stat(name, url)
        self._complete_due_recall(name)
        with closing(self._connect()) as con:
            return self._online_copy(con, name) is not None

    def release(self, url: str) -> None:
        """Drop the pin (the online copy becomes evictable) and cancel a pending recall."""
        name = self._name(url)
        self._file_stat(name, url)
        with self._tx() as con:
            con.execute("UPDATE online SET pinned_until = 0 WHERE path = ?", (name,))
            con.execute("DELETE FROM online WHERE path = ? AND ready = 0", (name,))
            con.execute("DELETE FROM recalls WHERE path = ? AND done = 0", (name,))

    def evict(self, url: str) -> None:
        """Drop the online copy now, pinned or not (an operator's action; tests, demos)."""
        name = self._name(url)
        self._file_stat(name, url)
        with self._tx() as con:
            self._buffer(name).unlink(missing_ok=True)
            con.execute("DELETE FROM online WHERE path = ? AND ready = 1", (name,))

    def sweep_temporaries(self, older_than: float = 3600.0) -> int:
        """Remove temporaries of killed writers and copiers older than ``older_than`` s."""
        return sum(_sweep(self.root / area, older_than) for area in ("tape", "buffer"))

    # --- Storage -------------------------------------------------------------------------

    def exists(self, url: str) -> bool:
        return self._tape(self._name(url)).is_file()

    def stat(self, url: str, *, checksums: bool = False) -> StatResult:
        name = self._name(url)
        st = self._file_stat(name, url)
        self._complete_due_recall(name)
        if not checksums:
            return StatResult(st.st_size, st.st_mtime)
        adler32, md5 = self._checksums(name, url)
        return StatResult(st.st_size, st.st_mtime, adler32, md5)

    def checksum(self, url: str, algorithm: str) -> str:
        """From the checksums kept at write time: no recall is needed."""
        if algorithm not in ("adler32", "md5"):
            raise ValueError(f"unknown checksum algorithm {algorithm!r}; use adler32 or md5")
        name = self._name(url)
        self._file_stat(name, url)
        adler32, md5 = self._checksums(name, url)
        return adler32 if algorithm == "adler32" else md5

    def _checksums(self, name: str, url: str) -> tuple[str, str]:
        tape = self._tape(name)
        ident = _ident(tape)
        row = self._one("SELECT ident, adler32, md5 FROM files WHERE path = ?", name)
        if row is not None and row[0] == ident:
            return str(row[1]), str(row[2])
        # no or stale metadata (a write killed before its commit): rebuild from the tape copy
        try:
            digest = file_digest(tape)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "no such file on tape", url) from None
        assert digest.md5 is not None
        if _ident(tape) == ident:
            with self._tx() as con:
                con.execute(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                    (name, ident, digest.adler32, digest.md5),
                )
        return digest.adler32, digest.md5

    def read(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream the online copy; :class:`NotOnline` (at the call) when there is none."""
        name = self._name(url)
        self._file_stat(name, url)
        self._complete_due_recall(name)
        with self._tx() as con:
            buf = self._online_copy(con, name)
            if buf is not None:
                con.execute("UPDATE online SET last_access = ? WHERE path = ?", (time.time(), name))
        if buf is None:
            raise NotOnline(errno.EAGAIN, self._offline_reason(name), url)
        return self._stream(buf, url, offset, length)

    def _offline_reason(self, name: str) -> str:
        row = self._one("SELECT due FROM recalls WHERE path = ? AND done = 0", name)
        if row is None:
            return "not online (on tape only): stage it first, then read once it is online"
        wait = row[0] - time.time()
        when = f"due in {wait:.1f} s" if wait > 0 else "due, being copied in or waiting for room"
        return f"not online yet: its recall is pending ({when}); read once it is online"

    def _stream(self, buf: Path, url: str, offset: int, length: int | None) -> Iterator[bytes]:
        try:
            with open(buf, "rb") as fh:
                fh.seek(offset)
                remaining = length
                while remaining is None or remaining > 0:
                    block = fh.read(BLOCK if remaining is None else min(BLOCK, remaining))
                    if not block:
                        break
                    if remaining is not None:
                        remaining -= len(block)
                    yield block
        except FileNotFoundError:  # evicted between the check and the open
            raise NotOnline(errno.EAGAIN, "evicted from the disk buffer: stage it", url) from None

    def write(
        self,
        url: str,
        chunks: Iterable[bytes],
        *,
        expected: Digest | None = None,
        overwrite: bool = False,
    ) -> Digest:
        """Land on tape and in the buffer (online, pinned ``write_pin`` s), or nowhere."""
        name = self._name(url)
        if not name:
            raise IsADirectoryError(errno.EISDIR, "the top of the namespace", url)
        if expected is not None and expected.bytes > self.buffer_bytes:
            raise OSError(errno.ENOSPC, self._no_room(expected.bytes), url)
        tape = self._tape(name)
        self._areas()
        if tape.exists() and not overwrite:
            raise FileExistsError(errno.EEXIST, "already on tape", url)
        tape.parent.mkdir(parents=True, exist_ok=True)
        tmp = tape.with_name(f".{tape.name}{TMP_MARK}{secrets.token_hex(6)}")
        summer = checksummer(md5=True)
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    summer.update(chunk)
                    fh.write(chunk)
            got = summer.digest()
            _check(expected, got, url)
            self._commit_write(name, tmp, got, overwrite=overwrite, url=url)
        finally:
            tmp.unlink(missing_ok=True)
        return got

    def _commit_write(
        self, name: str, tmp: Path, got: Digest, *, overwrite: bool, url: str
    ) -> None:
        tape, buf = self._tape(name), self._buffer(name)
        with self._tx() as con:
            if tape.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory", url)
            if tape.exists() and not overwrite:
                raise FileExistsError(errno.EEXIST, "already on tape", url)
            if not self._make_room(con, name, got.bytes):
                raise OSError(errno.ENOSPC, self._no_room(got.bytes), url)
            buf.unlink(missing_ok=True)
            buf.parent.mkdir(parents=True, exist_ok=True)
            try:
                _place(tmp, buf)
                os.replace(tmp, tape)  # the commit point of the bytes
            except BaseException:
                buf.unlink(missing_ok=True)
                raise
            ident, now = _ident(tape), time.time()
            con.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)",
                (name, ident, got.adler32, got.md5),
            )
            con.execute(
                "INSERT OR REPLACE INTO online VALUES (?, ?, ?, ?, 1, ?, ?)",
                (name, got.bytes, ident, _ident(buf), now + self.write_pin, now),
            )
            con.execute("UPDATE recalls SET done = 1 WHERE path = ?", (name,))

    def _no_room(self, size: int) -> str:
        if size > self.buffer_bytes:
            return f"{size} bytes never fit the {self.buffer_bytes}-byte disk buffer of the tape"
        return (
            f"no room for {size} bytes in the {self.buffer_bytes}-byte disk buffer of the"
            " tape: the online copies are pinned (release them, or wait for the pins to expire)"
        )

    def delete(self, url: str) -> None:
        name = self._name(url)
        with self._tx() as con:
            try:
                self._tape(name).unlink()
            except FileNotFoundError:
                raise FileNotFoundError(errno.ENOENT, "no such file on tape", url) from None
            self._buffer(name).unlink(missing_ok=True)
            for table in ("files", "online", "recalls"):
                con.execute(f"DELETE FROM {table} WHERE path = ?", (name,))

    def listdir(self, url: str) -> list[str]:
        directory = self._tape(self._name(url))
        self._areas()
        return sorted(p.name for p in directory.iterdir() if not is_temporary(p.name))

    def mkdir(self, url: str) -> None:
        directory = self._tape(self._name(url))
        self._areas()
        directory.mkdir(parents=True, exist_ok=True)


def _place(src: Path, dst: Path) -> None:
    """``dst`` becomes a copy of ``src``: a hard link, or a real copy across devices."""
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        shutil.copyfile(src, dst)


def _check(expected: Digest | None, got: Digest, url: str) -> None:
    if expected is None:
        return
    if expected.bytes != got.bytes:
        raise ChecksumMismatch(f"{url}: received {got.bytes} bytes, expected {expected.bytes}")
    if expected.adler32 and expected.adler32 != got.adler32:
        raise ChecksumMismatch(f"{url}: adler32 is {got.adler32}, expected {expected.adler32}")
    if expected.md5 and expected.md5 != got.md5:
        raise ChecksumMismatch(f"{url}: md5 is {got.md5}, expected {expected.md5}")
