"""The one daemon loop: ``run_once`` repeatedly, with heartbeats, a stop event and error
isolation.

Each round of a daemon records a heartbeat (at most every ``beat_every`` seconds): the
lake's API lists live instances (``GET /daemons``, ``fedlake daemon status``), and a daemon
that splits its work among instances reads its share from ``self.partition``. Work itself is
claimed in the catalogue (row locks with ``SKIP LOCKED`` on PostgreSQL, conditional updates,
expiring claims), so two instances never do the same item even while they disagree about
the partition during a change of membership.
"""

from __future__ import annotations

import abc
import logging
import os
import socket
import threading
import time
import uuid

from fedlake.bootstrap import Lake
from fedlake.catalog import heartbeats
from fedlake.domain.errors import DatabaseBusy

__all__ = ["Daemon", "DaemonGroup"]

log = logging.getLogger("fedlake.daemons")


class Daemon(abc.ABC):
    """A job: ``run_once`` does one bounded round of work and returns how much it did.

    A round that did work is followed at once by the next; an idle round waits
    ``interval`` seconds (or until :meth:`wake`).
    """

    name: str = "daemon"
    interval: float = 10.0
    #: heartbeats are written at most this often (seconds)
    beat_every: float = 10.0
    #: whether this daemon records heartbeats (a supervisor of child processes does not)
    heartbeats: bool = True

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.stop_event = threading.Event()
        self.wake_event = threading.Event()
        host = socket.gethostname()
        self.instance = f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.partition = heartbeats.Partition(0, 1)
        self._last_beat = float("-inf")
        self._done_since_beat = 0

    @property
    def ttl(self) -> float:
        """An instance silent for longer than this is dead."""
        return max(3 * max(self.interval, self.beat_every), 30.0)

    @abc.abstractmethod
    def run_once(self) -> int: ...

    def idle_seconds(self) -> float:
        """How long to wait after a round without work (default ``interval``); a daemon
        that knows when its next work is due returns less."""
        return self.interval

    def _idle_seconds(self) -> float:
        try:
            return min(max(self.idle_seconds(), 0.05), self.interval)
        except Exception:
            log.exception("%s: computing the next round failed", self.name)
            return self.interval

    def beat(self, error: str | None = None, *, force: bool = False) -> None:
        if not self.heartbeats:
            return
        now = time.monotonic()
        if not force and error is None and now - self._last_beat < self.beat_every:
            return
        with self.lake.db.write() as s:
            self.partition = heartbeats.beat(
                s,
                self.name,
                self.instance,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                ttl=self.ttl,
                work_done=self._done_since_beat,
                error=error,
            )
        self._last_beat = now
        self._done_since_beat = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            error: str | None = None
            try:
                self.beat(force=self._last_beat == float("-inf"))
                done = self.run_once()
                self._done_since_beat += done
            except Exception as exc:
                if isinstance(exc, DatabaseBusy):  # expected now and then: one line
                    log.warning("%s: %s; next round in %.0f s", self.name, exc, self.interval)
                else:
                    log.exception("%s failed; retrying in %.0f s", self.name, self.interval)
                error = f"{type(exc).__name__}: {exc}"[:2000]
                done = 0
            if error is not None:
                try:
                    self.beat(error)
                except Exception:
                    log.exception("%s: recording the heartbeat failed", self.name)
            if not done:
                self.wake_event.wait(self._idle_seconds())
                self.wake_event.clear()
        self._leave()

    def _leave(self) -> None:
        if not self.heartbeats or self._last_beat == float("-inf"):
            return
        try:
            with self.lake.db.write() as s:
                heartbeats.forget(s, self.name, self.instance)
        except Exception:
            log.exception("%s: removing the heartbeat failed", self.name)

    def wake(self) -> None:
        """Start the next round now (new work arrived)."""
        self.wake_event.set()

    def stop(self) -> None:
        self.stop_event.set()
        self.wake_event.set()


class DaemonGroup:
    """Runs several daemons in threads of one process (``fedlake up``)."""

    def __init__(self, daemons: list[Daemon]) -> None:
        self.daemons = daemons
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for d in self.daemons:
            t = threading.Thread(target=d.run, name=d.name, daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        for d in self.daemons:
            d.stop()
        for t in self.threads:
            t.join(timeout)
