"""A transfer worker: claims batches, runs them in a thread pool, commits results in batches.

Threads:
- the claimer fills free slots as soon as there are any (woken by finished transfers, by
  new work, or by the fallback timer when idle);
- the pool runs :class:`~fedlake.transfers.copier.Copier` per request (threads of this
  process, or of ``copy_processes`` child processes: ``transfers.copy_processes``);
- the completer commits finished attempts in batches (one transaction per batch);
- the renewer extends the leases of running requests;
- the optimizer thread runs a round of the per-link optimizer every few seconds.

Killed at any line, the worker leaves requests SUBMITTED with a lease that expires; the
next claim (by any worker) runs them again. Destination writes are atomic, so no partial
file ever becomes a replica, and completions are fenced by lease owner.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fedlake.catalog import transfers as core
from fedlake.catalog.db import Database
from fedlake.domain.errors import DatabaseBusy
from fedlake.transfers import wakeup
from fedlake.transfers.copier import Copier
from fedlake.transfers.copy_processes import CopyProcesses, CopySetup, lost_outcome
from fedlake.transfers.endpoints import Endpoints
from fedlake.transfers.optimizer import Optimizer
from fedlake.transfers.scheduler import Scheduler
from fedlake.transfers.storage_tokens import StorageTokens

__all__ = ["TransferWorker", "WorkerConfig"]

log = logging.getLogger("fedlake.transfers")


def log_retry(message: str, exc: Exception) -> None:
    """Log a catalogue write the worker will try again: one warning line when the database
    refused it because of a conflicting write (``DatabaseBusy``), else with the traceback."""
    if isinstance(exc, DatabaseBusy):
        log.warning("%s: %s", message, exc)
    else:
        log.error("%s", message, exc_info=exc)


@dataclass(frozen=True)
class WorkerConfig:
    threads: int = 64
    batch: int = 200
    lease: float = 60.0
    idle_poll: float = 1.0  # fallback look at the queue when idle (SQLite across processes)
    global_max: int | None = None
    optimizer_interval: float = 5.0
    stage_poll: float = 2.0
    refresh: float = 5.0  # seconds the worker reuses what it read about RSEs and links
    run_dir: str | None = None  # where its doorbell socket lives (see transfers.wakeup)
    copy_processes: int = 0  # 0: copies run in this process's threads; N: in N children


class TransferWorker:
    def __init__(
        self,
        db: Database,
        config: WorkerConfig | None = None,
        *,
        tokens: StorageTokens | None = None,
        child_tokens: Callable[[], StorageTokens] | None = None,
    ) -> None:
        """``child_tokens``: how copy processes (``config.copy_processes``) build their
        ``tokens`` (it is sent to them, so it must pickle)."""
        self.db = db
        self.config = config or WorkerConfig()
        if self.config.copy_processes and tokens is not None and child_tokens is None:
            raise ValueError("copy processes mint storage tokens only with child_tokens")
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.endpoints = Endpoints(db, ttl=self.config.refresh, global_max=self.config.global_max)
        self.scheduler = Scheduler(db, self.endpoints, self.owner, lease=self.config.lease)
        self.copier = Copier(self.endpoints, stage_poll=self.config.stage_poll, tokens=tokens)
        self.optimizer = Optimizer(
            db, interval=self.config.optimizer_interval, ceiling=self.config.global_max or 1000
        )
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._results: queue.Queue[core.Outcome] = queue.Queue()
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(self.config.threads, thread_name_prefix="transfer")
        self._copies = (
            CopyProcesses(
                CopySetup(
                    db.url,
                    self.config.threads,
                    self.config.refresh,
                    self.config.global_max,
                    self.config.stage_poll,
                    child_tokens,
                ),
                self.config.copy_processes,
                self._finished_copy,
            )
            if self.config.copy_processes > 0
            else None
        )
        self._threads: list[threading.Thread] = []
        self._listener = wakeup.Listener(db.url, self.wake)
        self._doorbell = (
            wakeup.Doorbell(Path(self.config.run_dir), self.wake) if self.config.run_dir else None
        )
        self.completed = 0  # attempts committed by this worker (all outcomes)
        self._running = 0  # copies running in this process's threads
        self._finished = 0  # copies done whose outcome is not committed yet
        self._finished_links: Counter[tuple[str, str]] = Counter()
        self.peak_inflight = 0
        self._give_up_at = math.inf  # set by stop()
        wakeup.subscribe(self.wake)

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        if self._copies is not None:
            self._copies.start()
        self._listener.start()
        if self._doorbell is not None:
            try:
                self._doorbell.start()
            except OSError as exc:  # other processes cannot wake this one: it polls instead
                log.warning("no transfer doorbell (%s); new work is seen by polling", exc)
                self._doorbell = None
        for target, name in (
            (self._claim_loop, "transfer-claim"),
            (self._complete_loop, "transfer-complete"),
            (self._renew_loop, "transfer-renew"),
            (self._optimize_loop, "transfer-optimize"),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, let running transfers finish (up to ``timeout``), then hand
        back what is left to the queue."""
        self._stop.set()
        self.wake.set()
        deadline = time.monotonic() + timeout
        self._give_up_at = deadline + 5.0  # commits failing past it are abandoned
        while self.inflight and time.monotonic() < deadline:
            time.sleep(0.05)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._copies is not None:
            self._copies.stop(timeout=max(0.1, deadline - time.monotonic()))
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self._flush()
        try:
            with self.db.write() as s:
                core.release(s, self.owner)
        except Exception:  # the database is away: the leases expire instead
            log.exception("handing back the transfers this worker holds failed")
        self._listener.stop()
        if self._doorbell is not None:
            self._doorbell.stop()

    @property
    def running(self) -> int:
        """Copies running right now (claimed ones not started yet excluded)."""
        return self._copies.running if self._copies is not None else self._running

    @property
    def copy_pids(self) -> list[int]:
        """The copy processes' pids (none when copies run in this process)."""
        return self._copies.pids() if self._copies is not None else []

    @property
    def inflight(self) -> int:
        """Claimed requests not committed yet (queued in the pool, running, or finished)."""
        with self._inflight_lock:
            return self._inflight

    @property
    def busy(self) -> int:
        """Pool slots taken: claimed requests not finished yet (finished ones wait only for
        their commit and do not hold a thread)."""
        with self._inflight_lock:
            return self._inflight - self._finished

    # --- threads -------------------------------------------------------------------------

    def _claim_loop(self) -> None:
        # claim in batches: when only a few slots are free, wait a moment for more (a claim
        # costs the same few statements whether it takes 1 request or 200)
        gather = max(1, min(self.config.batch, self.config.threads // 16))
        while not self._stop.is_set():
            if self._copies is not None and not self._copies.ready:
                self._stop.wait(0.2)  # its copy processes are being started again
                continue
            free = self.config.threads - self.busy
            if free < gather and self.busy:
                self.wake.wait(0.01)
                self.wake.clear()
                free = self.config.threads - self.busy
                if free <= 0:
                    continue
            try:
                with self._inflight_lock:
                    finished = dict(self._finished_links)
                claimed = self.scheduler.claim(min(free, self.config.batch), finished)
            except Exception as exc:  # noqa: BLE001 - the database may be briefly away: retry
                log_retry("claiming transfers failed; retrying", exc)
                self._stop.wait(1.0)
                continue
            if claimed:
                with self._inflight_lock:
                    self._inflight += len(claimed)
                    self.peak_inflight = max(self.peak_inflight, self._inflight)
                if self._copies is not None:
                    self._copies.submit(claimed)
                else:
                    for c in claimed:
                        self._pool.submit(self._run, c)
                continue  # more slots may be free: claim again at once
            # nothing runnable now: wait for new work, a free slot, or the fallback timer
            self.wake.wait(0.2 if self.scheduler.blocked else self.config.idle_poll)
            self.wake.clear()

    def _run(self, c: core.Claimed) -> None:
        with self._inflight_lock:
            self._running += 1
        try:
            outcome = self.copier.run(c)
        except Exception as exc:  # the copier records every failure
            # itself; this is a bug: the attempt fails as recoverable and is retried
            log.exception("transfer %s crashed the copier", c.id)
            outcome = lost_outcome(c, f"the copier crashed: {exc!r}")
        finally:
            with self._inflight_lock:
                self._running -= 1
        self._finished_copy(outcome)

    def _finished_copy(self, outcome: core.Outcome) -> None:
        """A copy is over (here or in a copy process): its slot is free, its outcome
        waits for the next commit."""
        with self._inflight_lock:
            self._finished += 1
            self._finished_links[(outcome.source_rse_id or "", outcome.dest_rse_id)] += 1
        self._results.put(outcome)
        self.wake.set()  # a thread is free

    def _complete_loop(self) -> None:
        while not self._stop.is_set() or not self._results.empty():
            try:
                first = self._results.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < 1000:
                try:
                    batch.append(self._results.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[core.Outcome]) -> None:
        committed = False
        while not committed:
            try:
                with self.db.write() as s:
                    core.complete(s, self.owner, batch)
                committed = True
            except Exception as exc:
                if self._stop.is_set() and time.monotonic() > self._give_up_at:
                    # stopping, and the database is still away: the requests stay with
                    # this worker's leases, which expire, and run again (copies are
                    # atomic; a finished one is redone or found in place)
                    log.exception("committing %d transfer results failed; giving up", len(batch))
                    break
                log_retry(f"committing {len(batch)} transfer results failed; retrying", exc)
                if self._stop.wait(1.0) and self._stop.is_set():
                    time.sleep(0.5)
        with self._inflight_lock:
            self._inflight -= len(batch)
            self._finished -= len(batch)
            for o in batch:
                link = (o.source_rse_id or "", o.dest_rse_id)
                self._finished_links[link] -= 1
                if self._finished_links[link] <= 0:
                    del self._finished_links[link]
        if committed:
            self.completed += len(batch)
        self.wake.set()  # slots are free

    def _flush(self) -> None:
        batch: list[core.Outcome] = []
        while True:
            try:
                batch.append(self._results.get_nowait())
            except queue.Empty:
                break
        if batch:
            self._commit(batch)

    def _renew_loop(self) -> None:
        every = max(0.5, self.config.lease / 3)
        while not self._stop.wait(every):
            try:
                with self.db.write() as s:
                    core.renew(s, self.owner, self.config.lease)
            except Exception as exc:  # noqa: BLE001 - logged; renewed again next time
                log_retry("renewing transfer leases failed", exc)

    def _optimize_loop(self) -> None:
        while not self._stop.wait(self.config.optimizer_interval):
            try:
                self.optimizer.run_once()
            except Exception:
                log.exception("optimizer round failed")
