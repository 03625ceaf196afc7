"""The cache's store and fetcher: LRU between watermarks, crash leftovers, single flight."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from fedlake.domain.checksums import Digest
from fedlake.domain.errors import ChecksumMismatch
from fedlake.se.cache_fetch import Fetcher, Origin
from fedlake.se.cache_metrics import Metrics
from fedlake.se.cache_store import CacheStore, FileInfo, adler32_combine, key_of
from fedlake.storage.base import StatResult, Storage


def info(name: str, size: int, block_size: int = 0, adler: str | None = None) -> FileInfo:
    url = f"file:///origin/{name}"
    return FileInfo(key_of(url), url, size, 0.0, adler, block_size)


def fill(store: CacheStore, f: FileInfo, idx: int = 0, data: bytes | None = None) -> None:
    part = store.part(f, idx)
    part.write(data if data is not None else b"x" * f.block_range(idx)[1])
    store.commit(part)


def present(store: CacheStore, f: FileInfo, idx: int = 0) -> bool:
    fd = store.open_block(f.key, idx)
    if fd is None:
        return False
    os.close(fd)
    return True


def test_adler32_combine_matches_zlib() -> None:
    data = os.urandom(300_000)
    for cut in (0, 1, 65_521, 100_000, 299_999, 300_000):
        a, b = zlib.adler32(data[:cut]), zlib.adler32(data[cut:])
        assert adler32_combine(a, b, len(data) - cut) == zlib.adler32(data)


def test_lru_eviction_between_watermarks(tmp_path: Path) -> None:
    store = CacheStore(tmp_path, 1000, high=0.95, low=0.7)
    a, b, c, d = (info(n, 300) for n in "abcd")
    for f in (a, b, c):
        fill(store, f)
        time.sleep(0.01)
    assert store.evict() == []  # 900 bytes: below the high watermark (950)
    assert present(store, a)  # a is now the most recently used
    time.sleep(0.01)
    fill(store, d)  # 1200 bytes: down to 700 or less, least recently used first
    evicted = store.evict()
    assert [(k, i) for k, i, _ in evicted] == [(b.key, 0), (c.key, 0)]
    assert store.used() == 600
    assert present(store, a)
    assert present(store, d)
    assert not present(store, b)
    assert not os.path.exists(store.block_path(b.key, 0))
    assert store.file(b.key) is None  # a file without blocks is forgotten


def test_short_block_is_not_kept(tmp_path: Path) -> None:
    store = CacheStore(tmp_path, 10_000)
    f = info("short", 500)
    part = store.part(f, 0)
    part.write(b"y" * 499)
    with pytest.raises(OSError, match="499 bytes of 500"):
        store.commit(part)
    assert not present(store, f)
    assert store.used() == 0
    assert os.listdir(os.path.dirname(store.block_path(f.key, 0))) == []


def _killed_fill(root: Path, f: FileInfo) -> None:
    store = CacheStore(root, 10_000_000)
    part = store.part(f, 0)
    part.write(b"z" * 1000)  # a part of 1,000 of 1,000,000 bytes when the fill dies
    os.kill(os.getpid(), signal.SIGKILL)


def test_recover_cleans_what_a_crash_leaves(tmp_path: Path) -> None:
    f, g, h = info("killed", 1_000_000), info("orphan", 100), info("lost", 100)
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=_killed_fill, args=(tmp_path, f))
    proc.start()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    store = CacheStore(tmp_path, 10_000_000)
    fill(store, g)
    fill(store, h)
    kept = info("kept", 100)
    fill(store, kept)
    with store._write() as db:  # killed between rename and row: a block without a row
        db.execute("DELETE FROM blocks WHERE key = ?", (g.key,))
    os.unlink(store.block_path(h.key, 0))  # a row whose block is gone
    found = store.recover()
    assert (found.parts, found.orphans, found.lost_rows, found.used) == (1, 1, 1, 100)
    assert store.used() == 100
    assert not present(store, f)
    assert not present(store, g)
    assert present(store, kept)
    leftovers = [p.name for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert leftovers == ["0"]


def test_recover_forgets_files_of_another_block_size(tmp_path: Path) -> None:
    fill(CacheStore(tmp_path, 10_000), info("whole", 300))
    store = CacheStore(tmp_path, 10_000, block_size=100)
    assert store.recover().used == 0
    assert list((tmp_path / "data").rglob("0")) == []


# --- the fetcher, with an origin that counts its reads -----------------------------------


class CountingStorage(Storage):
    """Serves ``data`` for every URL, slowly, and logs each read to a file."""

    def __init__(self, data: bytes, log: Path, delay: float = 0.2) -> None:
        self.data, self.log, self.delay = data, log, delay

    def exists(self, url: str) -> bool:
        return True

    def stat(self, url: str, *, checksums: bool = False) -> StatResult:
        return StatResult(len(self.data), 0.0)

    def read(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        with open(self.log, "a") as fh:
            fh.write(f"{offset}\n")
        time.sleep(self.delay)
        end = len(self.data) if length is None else offset + length
        yield self.data[offset:end]

    def write(
        self,
        url: str,
        chunks: Iterable[bytes],
        *,
        expected: Digest | None = None,
        overwrite: bool = False,
    ) -> Digest:
        raise NotImplementedError

    def delete(self, url: str) -> None:
        raise NotImplementedError

    def listdir(self, url: str) -> list[str]:
        raise NotImplementedError

    def mkdir(self, url: str) -> None:
        raise NotImplementedError


def make_fetcher(root: Path, data: bytes, log: Path, block_size: int = 0) -> Fetcher:
    store = CacheStore(root, 100_000_000, block_size=block_size)
    origin = Origin("file:///origin")
    origin.storage = CountingStorage(data, log)

    async def run(fn: object, *args: object) -> object:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)  # type: ignore[arg-type]

    return Fetcher(origin, store, Metrics(store), run)


async def _read_all(fetcher: Fetcher, path: str, n: int) -> list[bytes]:
    f = await fetcher.info(path)

    async def one() -> bytes:
        out = b""
        for idx in range(f.blocks):
            fd, _ = await fetcher.block(f, idx)
            out += os.pread(fd, f.span, 0)
            os.close(fd)
        return out

    return list(await asyncio.gather(*(one() for _ in range(n))))


def test_concurrent_requests_fetch_each_block_once(tmp_path: Path) -> None:
    data = os.urandom(250_000)
    log = tmp_path / "reads.log"
    fetcher = make_fetcher(tmp_path / "cache", data, log, block_size=100_000)
    got = asyncio.run(_read_all(fetcher, "/f", 10))
    assert got == [data] * 10
    assert sorted(log.read_text().split()) == ["0", "100000", "200000"]


def _read_in_child(root: Path, data: bytes, log: Path, out: Path) -> None:
    fetcher = make_fetcher(root, data, log)
    (got,) = asyncio.run(_read_all(fetcher, "/f", 1))
    out.write_bytes(got)
    sys.exit(0)


def test_processes_sharing_a_directory_fetch_once(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    log = tmp_path / "reads.log"
    CacheStore(tmp_path / "cache", 100_000_000)  # the schema, before the processes race
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_read_in_child, args=(tmp_path / "cache", data, log, tmp_path / f"o{i}"))
        for i in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert log.read_text().split() == ["0"]
    assert all((tmp_path / f"o{i}").read_bytes() == data for i in range(4))


def test_checksum_mismatch_keeps_nothing(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    fetcher = make_fetcher(tmp_path / "cache", data, tmp_path / "reads.log")
    f = info("bad", len(data), adler="00000001")
    with pytest.raises(ChecksumMismatch, match="not served, not kept"):
        asyncio.run(fetcher.block(f, 0))
    assert fetcher.store.used() == 0
    assert fetcher.store.open_block(f.key, 0) is None
    good = info("good", len(data), adler=f"{zlib.adler32(data):08x}")
    fd, hit = asyncio.run(fetcher.block(good, 0))
    os.close(fd)
    assert not hit
    assert fetcher.store.used() == len(data)


def test_block_mode_drops_a_file_whose_blocks_do_not_add_up(tmp_path: Path) -> None:
    data = os.urandom(25_000)
    fetcher = make_fetcher(tmp_path / "cache", data, tmp_path / "reads.log", block_size=10_000)
    f = info("bad", len(data), block_size=10_000, adler="00000001")
    for idx in (0, 1):
        fd, _ = asyncio.run(fetcher.block(f, idx))
        os.close(fd)
    with pytest.raises(ChecksumMismatch, match="dropped"):
        asyncio.run(fetcher.block(f, 2))
    assert fetcher.store.used() == 0
