"""Fetching from the origin into the cache: once per block, however many ask.

The origin is a storage URL prefix (``https://``, ``davs://``, ``s3://``, ``root://``,
``file://``) read through the lake's storage plugins (``fedlake.storage``), so whatever the
origin speaks is served as HTTP. The client's path is appended to the prefix.

Single flight, at two levels: within a worker, concurrent requests for a block share one
asyncio task; across workers (and cache processes sharing the directory), the fetching
thread holds ``CacheStore.fill_lock`` and looks again for the block once it has the
lock, so a block another process filled meanwhile is read from disk, not fetched again.

Checks: the origin's stat (and the catalogue, ``se.cache_lake``) give the size and the
adler32 the bytes must have. In whole-file mode the file's adler32 is checked before the
block is kept: a mismatch keeps nothing and serves nothing. In block mode each block is
kept as it arrives; once all blocks of a file are there, their adler32s are combined and
compared, and a mismatch drops the file (the blocks already sent could not be checked
before they were sent: use whole-file mode where that matters).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any

from fedlake.domain.errors import ChecksumMismatch
from fedlake.se.cache_lake import LakeCatalogue, did_of_path
from fedlake.se.cache_metrics import Metrics
from fedlake.se.cache_store import CacheStore, FileInfo, adler32_combine, key_of
from fedlake.storage.base import Storage
from fedlake.storage.registry import get_storage

__all__ = ["Fetcher", "Origin"]

Runner = Callable[..., Awaitable[Any]]


class Origin:
    """The origin: a URL prefix and the storage plugin for its scheme."""

    def __init__(self, prefix: str, options: dict[str, Any] | None = None) -> None:
        scheme, sep, rest = prefix.partition("://")
        if not sep or not rest:
            raise ValueError(f"origin {prefix!r}: expected scheme://host/path (or file:///path)")
        self.prefix = prefix.rstrip("/")
        self.storage: Storage = get_storage(scheme.lower(), **(options or {}))

    def url(self, path: str) -> str:
        """The origin URL of a clean request path (``/a/b``)."""
        return self.prefix + path


class Fetcher:
    """Finds files at the origin and fills their blocks into the store."""

    def __init__(
        self,
        origin: Origin,
        store: CacheStore,
        metrics: Metrics,
        run: Runner,
        catalogue: LakeCatalogue | None = None,
    ) -> None:
        self.origin = origin
        self.store = store
        self.metrics = metrics
        self.run = run  # runs a blocking call in a worker thread
        self.catalogue = catalogue
        self._infos: dict[str, asyncio.Future[FileInfo]] = {}
        self._fills: dict[tuple[str, int], asyncio.Future[int]] = {}

    # --- files -----------------------------------------------------------------------------

    async def info(self, path: str, token: str | None = None) -> FileInfo:
        """What the cache knows of the file behind ``path``, asking the origin (and the
        lake) the first time. FileNotFoundError when the origin has no such file."""
        url = self.origin.url(path)
        key = key_of(url)
        known = self.store.file(key)
        if known is not None:
            return known
        pending = self._infos.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self.run(self._look_up, key, url, path, token))
            self._infos[key] = pending
            pending.add_done_callback(lambda _: self._infos.pop(key, None))
        return await asyncio.shield(pending)

    def _look_up(self, key: str, url: str, path: str, token: str | None) -> FileInfo:
        st = self.origin.storage.stat(url)
        expected = st.adler32
        did = did_of_path(path) if self.catalogue is not None else None
        if self.catalogue is not None and did is not None:
            entry = self.catalogue.entry(*did, client_token=token)
            if entry.bytes is not None and entry.bytes != st.size:
                self.metrics.checksum_failures.inc()
                raise ChecksumMismatch(
                    f"{did[0]}:{did[1]}: the origin has {st.size} bytes, the catalogue "
                    f"says {entry.bytes}; not served"
                )
            expected = entry.adler32 or expected
        info = FileInfo(key, url, st.size, st.mtime, expected, self.store.block_size)
        if expected is None:
            self.metrics.unverified.inc()
        self.store.remember(info)
        return info

    # --- blocks ----------------------------------------------------------------------------

    async def block(self, info: FileInfo, idx: int) -> tuple[int, bool]:
        """A descriptor of block ``idx`` (the caller closes it) and whether it was on disk
        already (a hit) rather than waited for."""
        fd = await self.run(self.store.open_block, info.key, idx)
        if fd is not None:
            return fd, True
        k = (info.key, idx)
        while True:
            pending = self._fills.get(k)
            if pending is None:  # this request fetches; the descriptor is its own
                task = asyncio.ensure_future(self.run(self._fill, info, idx))
                self._fills[k] = task
                task.add_done_callback(lambda _: self._fills.pop(k, None))
                try:
                    return await asyncio.shield(task), False
                except asyncio.CancelledError:
                    task.add_done_callback(_close_result)
                    raise
            await asyncio.shield(pending)  # the fetcher's descriptor is its own; a failure ours too
            fd = await self.run(self.store.open_block, info.key, idx)
            if fd is not None:
                return fd, False
            # evicted again at once (a block bigger than the room): fetch it ourselves

    def _fill(self, info: FileInfo, idx: int) -> int:
        """Fetch block ``idx`` unless another process did while we waited for the lock;
        return a descriptor opened before any eviction (blocking)."""
        with self.store.fill_lock(info.key, idx):
            fd = self.store.open_block(info.key, idx)
            if fd is not None:
                return fd
            self._fetch(info, idx)
            fd = os.open(self.store.block_path(info.key, idx), os.O_RDONLY | os.O_CLOEXEC)
        if self.store.block_size and info.adler32:
            try:
                self._check_whole(info)
            except BaseException:
                os.close(fd)
                raise
        evicted = self.store.evict()
        if evicted:
            self.metrics.evictions.inc(len(evicted))
            self.metrics.evicted_bytes.inc(sum(v[2] for v in evicted))
        return fd

    def _fetch(self, info: FileInfo, idx: int) -> None:
        offset, length = info.block_range(idx)
        part = self.store.part(info, idx)
        self.metrics.origin_fetches.inc()
        try:
            if length:
                for chunk in self.origin.storage.read(info.url, offset, length):
                    part.write(chunk)
                    self.metrics.origin_bytes.inc(len(chunk))
            whole = not self.store.block_size and part.written == info.size
            if whole and info.adler32 and part.adler32 != info.adler32:
                self.metrics.checksum_failures.inc()
                raise ChecksumMismatch(
                    f"{info.url}: adler32 of the fetched file is {part.adler32}, expected "
                    f"{info.adler32}; not served, not kept"
                )
            self.store.commit(part)
        except BaseException:
            part.discard()
            raise

    def _check_whole(self, info: FileInfo) -> None:
        """Block mode: once every block is there, their combined adler32 must match."""
        blocks = self.store.blocks(info.key)
        if len(blocks) != info.blocks:
            return
        total = 1
        for b in blocks:
            total = adler32_combine(total, int(b.adler32, 16), b.bytes)
        got = f"{total:08x}"
        if got != info.adler32:
            self.metrics.checksum_failures.inc()
            self.store.drop_file(info.key)
            raise ChecksumMismatch(
                f"{info.url}: adler32 of the cached blocks is {got}, expected {info.adler32}; "
                "the file was dropped from the cache"
            )


def _close_result(task: asyncio.Future[int]) -> None:
    if not task.cancelled() and task.exception() is None:
        with contextlib.suppress(OSError):
            os.close(task.result())
