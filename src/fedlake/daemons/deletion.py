"""Deletes replicas nobody needs any more (Rucio's reaper): claim, delete on storage, finish.

Per RSE open for deletion, each round works through the phases of
``fedlake.catalog.deletion.Phase``: claims a killed reaper left behind, OBSOLETE replicas
(always), then least recently used ones while the RSE is greedy (attribute
``greedyDeletion``) or has less free space than its ``MinFreeSpace`` limit. Free space of a
``file://`` RSE whose directory is on this host is ``statvfs`` of that directory; other
RSEs (and any RSE with a ``source_for_total_space``/``source_for_used_space`` attribute)
use the catalogue's usage numbers (``catalog.deletion.reported_free``).

A batch is claimed in one transaction, deleted on storage by a thread pool (outside any
transaction), and finished in one transaction. A file already missing counts as deleted,
so a batch whose reaper was killed anywhere is simply done again after the lease.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fedlake.bootstrap import Lake
from fedlake.catalog import deletion as core
from fedlake.daemons.runner import Daemon
from fedlake.domain.errors import ProtocolNotSupported
from fedlake.domain.timefmt import utcnow
from fedlake.storage.backends.posix import local_path
from fedlake.transfers.endpoints import Endpoint, Endpoints
from fedlake.transfers.errors import classify

__all__ = ["DeletionDaemon", "delete_files"]

log = logging.getLogger("fedlake.daemons")

BATCH = 2000
THREADS = 16

_Outcome = tuple[core.Candidate, BaseException | None]


def delete_files(endpoint: Endpoint, items: Sequence[tuple[core.Candidate, str]]) -> list[_Outcome]:
    """Delete each URL; a file that is already gone counts as deleted (None)."""
    out: list[_Outcome] = []
    for candidate, url in items:
        try:
            endpoint.storage.delete(url)
        except FileNotFoundError:
            out.append((candidate, None))
        except Exception as exc:  # noqa: BLE001 - reported as deletion-failed
            out.append((candidate, exc))
        else:
            out.append((candidate, None))
    return out


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class DeletionDaemon(Daemon):
    """``DeletionDaemon(lake, *, batch=2000, threads=16, lease=None, rses=None)``.

    ``lease``: seconds a claim holds replicas (default ``lake.settings.deletion_lease_seconds``
    when that setting exists, else 600); ``rses``: work only on these RSE names.
    """

    name = "deletion"
    interval = 10.0  # a round on idle RSEs is a few indexed queries and a statvfs

    def __init__(
        self,
        lake: Lake,
        *,
        batch: int = BATCH,
        threads: int = THREADS,
        lease: float | None = None,
        rses: Sequence[str] | None = None,
    ) -> None:
        super().__init__(lake)
        if not 1 <= batch <= 100_000:
            raise ValueError(f"deletion batch must be from 1 to 100000 replicas, got {batch}")
        if not 1 <= threads <= 1000:
            raise ValueError(f"deletion threads must be from 1 to 1000, got {threads}")
        if lease is None:
            lease = float(getattr(lake.settings, "deletion_lease_seconds", core.DEFAULT_LEASE))
        if lease <= 0:
            raise ValueError(f"deletion lease must be a positive number of seconds, got {lease}")
        self.batch = batch
        self.threads = threads
        self.lease = float(lease)
        self.rses = list(rses) if rses is not None else None
        if self.rses is not None:
            with lake.db.read() as s:
                core.deletion_targets(s, self.rses)  # unknown names fail now, not later
        self.endpoints = Endpoints(lake.db, ttl=30.0)
        self._warned: set[str] = set()

    def run_once(self) -> int:
        with self.lake.db.read() as s:
            targets = core.deletion_targets(s, self.rses)
        self.endpoints.refresh(force=True)
        deleted = 0
        with ThreadPoolExecutor(self.threads, thread_name_prefix="deletion") as pool:
            for target in targets:
                if self.stop_event.is_set():
                    break
                try:
                    deleted += self._work_on(target, pool)
                except Exception:
                    log.exception("deletion on %s failed; the next round retries", target.rse)
        return deleted

    # --- one RSE -----------------------------------------------------------------------

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    def _work_on(self, target: core.Target, pool: ThreadPoolExecutor) -> int:
        try:
            endpoint = self.endpoints.endpoints(target.id, "delete")[0]
        except ProtocolNotSupported as exc:
            self._warn_once(f"proto:{target.id}", "not deleting on %s: %s", target.rse, exc)
            return 0
        with self.lake.db.write() as s:
            released = core.release_locked(s, target.id, now=utcnow(), lease=self.lease)
        if released:
            log.info("%s: %d claimed replicas were locked meanwhile: COPYING", target.rse, released)
        deleted = 0
        for phase in core.Phase:
            removed, stalled = self._run_phase(target, endpoint, phase, pool)
            deleted += removed
            if stalled or self.stop_event.is_set():
                break
        return deleted

    def _run_phase(
        self, target: core.Target, endpoint: Endpoint, phase: core.Phase, pool: ThreadPoolExecutor
    ) -> tuple[int, bool]:
        """Claim and delete batches until none is left: (deleted, stalled).

        A pipeline: while one batch is deleted on storage, the next one is claimed and the
        previous one recorded. Stalled: a batch deleted nothing (the storage refuses, or all
        were locked meanwhile), so no new claims are made on this RSE in this round.
        """
        deleted = 0
        stalled = False
        pending: _InFlight | None = None
        while True:
            batch: list[core.Candidate] = []
            if not stalled and not self.stop_event.is_set():
                batch = self._claim(target, endpoint, phase, pending)
            following = self._submit(target, endpoint, batch, pool) if batch else None
            if pending is not None:
                removed = self._record(target, pending)
                deleted += removed
                stalled = stalled or not removed
            pending = following
            if pending is None:
                return deleted, stalled

    def _claim(
        self,
        target: core.Target,
        endpoint: Endpoint,
        phase: core.Phase,
        pending: _InFlight | None,
    ) -> list[core.Candidate]:
        max_bytes: int | None = None
        if phase is core.Phase.LRU and not target.greedy:
            needed = self._needed(target, endpoint)
            if needed is None:
                return []
            max_bytes = needed - (pending.bytes if pending is not None else 0)
            if max_bytes <= 0:
                return []
        with self.lake.db.write() as s:
            return core.claim(
                s,
                target.id,
                phase,
                limit=self.batch,
                now=utcnow(),
                lease=self.lease,
                max_bytes=max_bytes,
            )

    def _needed(self, target: core.Target, endpoint: Endpoint) -> int | None:
        """Bytes to free to reach MinFreeSpace; None when there is no limit or no way to
        tell the free space."""
        if not target.min_free or target.min_free <= 0:
            return None
        free = self._free(target, endpoint)
        if free is None:
            self._warn_once(
                f"space:{target.id}",
                "%s has MinFreeSpace but no known free space: only OBSOLETE replicas are "
                "deleted (report usage, or set source_for_total_space)",
                target.rse,
            )
            return None
        return target.min_free - free

    def _free(self, target: core.Target, endpoint: Endpoint) -> int | None:
        if not target.reported:
            root = _local_root(endpoint)
            if root is not None:
                st = os.statvfs(root)
                return st.f_bavail * st.f_frsize
        with self.lake.db.read() as s:
            return core.reported_free(s, target)

    def _submit(
        self,
        target: core.Target,
        endpoint: Endpoint,
        batch: list[core.Candidate],
        pool: ThreadPoolExecutor,
    ) -> _InFlight:
        """Start deleting a claimed batch on storage (split over the threads)."""
        items: list[tuple[core.Candidate, str]] = []
        refused: list[_Outcome] = []
        for c in batch:
            try:
                items.append(
                    (c, endpoint.url(self.endpoints.path(target.id, c.scope, c.name, c.path)))
                )
            except Exception as exc:  # noqa: BLE001 - no URL (bad stored path): a failure
                refused.append((c, exc))
        size = max(1, -(-len(items) // self.threads))
        futures = [
            pool.submit(delete_files, endpoint, items[i : i + size])
            for i in range(0, len(items), size)
        ]
        return _InFlight(batch, refused, futures, sum(c.bytes for c in batch))

    def _record(self, target: core.Target, flight: _InFlight) -> int:
        """Wait for a batch's storage deletes and record them; returns rows removed."""
        outcomes = list(flight.refused)
        for future in flight.futures:
            outcomes.extend(future.result())
        done: list[core.Candidate] = []
        failures: list[core.Failure] = []
        for candidate, error in outcomes:
            if error is None:
                done.append(candidate)
            else:
                permanent = not classify(error).recoverable
                failures.append(core.Failure(candidate, _describe(error), permanent))
        now = utcnow()
        with self.lake.db.write() as s:
            finished = core.finish(s, target.id, target.rse, done, now)
            core.fail(s, target.id, target.rse, failures, now)
        if failures:
            log.warning(
                "%s: %d of %d deletions failed (first: %s); retried after %g s",
                target.rse,
                len(failures),
                len(flight.batch),
                failures[0].error,
                self.lease,
            )
        if finished.relocked:
            log.info(
                "%s: %d replicas were locked meanwhile: COPYING", target.rse, finished.relocked
            )
        return finished.deleted


@dataclass(slots=True)
class _InFlight:
    """A claimed batch whose storage deletes run."""

    batch: list[core.Candidate]
    refused: list[_Outcome]  # no URL could be built: failed before storage
    futures: list[Future[list[_Outcome]]]
    bytes: int


def _local_root(endpoint: Endpoint) -> Path | None:
    """The directory of a ``file://`` RSE when it exists on this host."""
    if endpoint.scheme != "file":
        return None
    try:
        root = local_path(endpoint.url(""))
    except ValueError:
        return None
    return root if root.is_dir() else None
