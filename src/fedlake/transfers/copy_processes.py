"""Copies in child processes, so that claiming and committing keep an interpreter of their own.

One Python process runs one thread at a time (the GIL). With hundreds of copies on a
high-latency link, the copy threads of a worker hold the GIL nearly all the time, and the
two threads that claim new work and commit finished work get a sliver of it: a claim of
100 requests took 0.4 s instead of 20 ms, and copy slots stayed empty meanwhile. With
``copy_processes = N`` a worker runs its copies in N child processes (``threads / N``
copy threads each): the worker sends each claimed batch down a pipe to the child with
the fewest copies in hand and receives the outcomes back; the operating system spreads
the processes over the cores.

Crash safety: a child that dies (killed, crashed) is started again, and each copy it held
comes back as a recoverable failure ("the copy process running it died"), retried with
back-off like any other; destination writes are atomic, so nothing half-written becomes a
replica. A child whose worker dies exits at once (its pipe closes), so no copy outlives
the worker that claimed it by more than a moment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Connection
from typing import Any

from fedlake.catalog.db import Database
from fedlake.catalog.transfers import Claimed, Outcome
from fedlake.domain.timefmt import utcnow
from fedlake.transfers.copier import Copier
from fedlake.transfers.endpoints import Endpoints
from fedlake.transfers.errors import backoff
from fedlake.transfers.storage_tokens import StorageTokens

__all__ = ["CopyProcesses", "CopySetup", "lost_outcome"]

log = logging.getLogger("fedlake.transfers")

QUICK_DEATH = 10.0  # seconds: a copy process that dies sooner is restarted after a pause
MAX_RESTART_DELAY = 30.0


@dataclass(frozen=True)
class CopySetup:
    """What a copy process needs to build its copier (sent to it, so picklable)."""

    database_url: str
    threads: int
    refresh: float
    global_max: int | None
    stage_poll: float
    #: builds the storage tokens in the child (the lake's issuer); None: no tokens
    tokens: Callable[[], StorageTokens] | None = None


def _ended(c: Claimed, kind: str, error: str, after: float | None, **kw: Any) -> Outcome:
    """An outcome the copier did not give: ``kind`` now, run again ``after`` seconds."""
    now = utcnow()
    not_before = None if after is None else now + timedelta(seconds=after)
    return Outcome.of(c, kind, now, error=error, not_before=not_before, **kw)


def lost_outcome(c: Claimed, why: str) -> Outcome:
    """A copy that ended without an outcome of its own: a recoverable failure."""
    if c.attempt >= c.max_attempts:
        why = f"{why} (gave up after {c.attempt} attempts)"
        return _ended(c, "failed", why, None, recoverable=True)
    return _ended(c, "retry", why, backoff(c.attempt), recoverable=True)


def _not_started(c: Claimed) -> Outcome:
    """A claimed request no copy process could take: back to the queue in a moment,
    without using up an attempt."""
    return _ended(c, "waiting", "no copy process was running (one is being started)", 2.0)


def _child(setup: CopySetup, tasks: Connection, results: Connection, running: Any) -> None:
    """A copy process: runs what arrives on ``tasks``, sends each outcome on ``results``."""
    copier = Copier(
        Endpoints(Database(setup.database_url), ttl=setup.refresh, global_max=setup.global_max),
        stage_poll=setup.stage_poll,
        tokens=setup.tokens() if setup.tokens is not None else None,
    )
    results.send([])  # ready: the worker may send work
    count_lock = threading.Lock()
    # copy threads never write to the pipe themselves: a lock held across the write
    # (which lets go of the GIL) queued hundreds of them behind one another; one sender
    # thread sends whatever outcomes have gathered, as one message
    done: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()

    def run(c: Claimed) -> None:
        with count_lock:
            running.value += 1
        try:
            outcome = copier.run(c)
        except Exception as exc:  # a bug in the copier (it records storage errors itself)
            log.exception("transfer %s crashed the copier", c.id)
            outcome = lost_outcome(c, f"the copier crashed: {exc!r}")
        finally:
            with count_lock:
                running.value -= 1
        done.put(outcome)

    def send() -> None:
        while True:
            first = done.get()
            batch = [first]
            while not done.empty() and len(batch) < 1000:
                batch.append(done.get())
            outcomes = [o for o in batch if o is not None]
            if outcomes:
                results.send(outcomes)
            if first is None or len(outcomes) < len(batch):
                return

    sender = threading.Thread(target=send, name="transfer-send", daemon=True)
    sender.start()
    pool = ThreadPoolExecutor(setup.threads, thread_name_prefix="transfer")
    while True:
        try:
            batch = tasks.recv()
        except (EOFError, OSError):  # the worker is gone: so are its claims
            os._exit(0)
        if batch is None:
            break
        for c in batch:
            pool.submit(run, c)
    pool.shutdown(wait=True)
    done.put(None)
    sender.join()
    results.close()


@dataclass
class _Child:
    process: multiprocessing.process.BaseProcess
    tasks: Connection
    results: Connection
    running: Any
    pending: dict[int, Claimed]
    started: float = 0.0
    ready: bool = False  # it has built its copier (said so with an empty message)


class CopyProcesses:
    """N copy processes; ``on_outcome`` is called (from a receiver thread) per copy."""

    def __init__(
        self, setup: CopySetup, processes: int, on_outcome: Callable[[Outcome], None]
    ) -> None:
        self.setup = setup
        self.processes = processes
        self.on_outcome = on_outcome
        self._ctx = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self._children: list[_Child | None] = [None] * processes
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._receivers: list[threading.Thread] = []
        self.restarts = 0
        self._quick_deaths = 0  # children in a row that died soon after starting

    @property
    def ready(self) -> bool:
        """Is any copy process running (to take claimed work)?"""
        return any(c is not None and c.ready for c in self._children)

    @property
    def running(self) -> int:
        """Copies running right now in all children."""
        return sum(c.running.value for c in self._children if c is not None)

    def pids(self) -> list[int]:
        return [c.process.pid or 0 for c in self._children if c is not None]

    def start(self) -> None:
        for slot in range(self.processes):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        # the worker's threads shared among its copy processes
        setup = dataclasses.replace(
            self.setup, threads=max(1, -(-self.setup.threads // self.processes))
        )
        task_get, task_put = self._ctx.Pipe(duplex=False)
        result_get, result_put = self._ctx.Pipe(duplex=False)
        running = self._ctx.RawValue("i", 0)
        proc = self._ctx.Process(
            target=_child,
            args=(setup, task_get, result_put, running),
            name=f"fedlake-copy-{slot}",
            daemon=True,
        )
        proc.start()
        task_get.close()  # the child's ends: only the child holds them now
        result_put.close()
        child = _Child(proc, task_put, result_get, running, {}, time.monotonic())
        with self._lock:
            self._children[slot] = child
        t = threading.Thread(
            target=self._receive, args=(slot, child), name=f"transfer-receive-{slot}", daemon=True
        )
        t.start()
        # receivers of children that died have ended (or are ending: this call is theirs)
        self._receivers = [r for r in self._receivers if r.is_alive()] + [t]

    def submit(self, batch: list[Claimed]) -> None:
        """Hand ``batch`` to the child with the fewest copies in hand."""
        with self._lock:
            live = [c for c in self._children if c is not None and c.ready]
            if live:
                child = min(live, key=lambda c: len(c.pending))
                for c in batch:
                    child.pending[c.id] = c
                with contextlib.suppress(OSError):  # it died: its receiver returns the batch
                    child.tasks.send(batch)
                return
        for c in batch:  # every child is being started again right now: not an attempt
            self.on_outcome(_not_started(c))

    def _receive(self, slot: int, child: _Child) -> None:
        while True:
            try:
                outcomes: list[Outcome] = child.results.recv()
            except (EOFError, OSError):
                break
            child.ready = True  # its first message (empty) says it is ready
            with self._lock:
                for o in outcomes:
                    child.pending.pop(o.request_id, None)
            for o in outcomes:
                self.on_outcome(o)
        child.process.join(5)
        with self._lock:
            lost = list(child.pending.values())
            child.pending.clear()
            if self._children[slot] is child:
                self._children[slot] = None
        code = child.process.exitcode
        for c in lost:
            self.on_outcome(lost_outcome(c, f"the copy process running it died (exit {code})"))
        if self._stopping.is_set():
            return
        # one that cannot even start (a broken installation) is not restarted in a loop
        quick = time.monotonic() - child.started < QUICK_DEATH
        self._quick_deaths = self._quick_deaths + 1 if quick else 0
        delay = min(MAX_RESTART_DELAY, 0.5 * 2**self._quick_deaths) if quick else 0.0
        log.warning(
            "copy process %s exited with %s; starting it again in %.1f s", slot, code, delay
        )
        if self._stopping.wait(delay):
            return
        self.restarts += 1
        self._spawn(slot)

    def stop(self, timeout: float) -> None:
        """Let the children finish what they hold (up to ``timeout``), then end them."""
        self._stopping.set()
        with self._lock:
            children = [c for c in self._children if c is not None]
        for c in children:
            with contextlib.suppress(OSError):
                c.tasks.send(None)
        for c in children:
            c.process.join(timeout)
            if c.process.is_alive():
                c.process.kill()
                c.process.join(5)
        for t in list(self._receivers):
            t.join(5)
