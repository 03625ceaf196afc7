"""Wake idle workers the moment work is queued: no fixed polling on the hot path.

Queuing code calls :func:`poke` after its commit. That wakes

- workers in the same process (an event each);
- workers in other processes of this host: each binds a Unix datagram socket in the
  lake's run directory (``<data dir>/run/transfers-<pid>.sock``, see :class:`Doorbell`)
  and ``poke`` sends one byte to every socket there;
- on PostgreSQL, workers on other hosts too: queuing sends ``NOTIFY fedlake_transfers``
  in its transaction and each worker LISTENs (:class:`Listener`).

Idle workers also look at the queue every ``idle_poll`` seconds, a fallback only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import weakref
from pathlib import Path
from typing import Any

__all__ = ["Doorbell", "Listener", "poke", "set_run_dir", "subscribe"]

log = logging.getLogger("fedlake.transfers")
_subscribers: weakref.WeakSet[threading.Event] = weakref.WeakSet()
_lock = threading.Lock()
_run_dir: Path | None = None


def set_run_dir(path: Path | None) -> None:
    """Where this lake's worker doorbells live (set once by ``bootstrap``)."""
    global _run_dir
    _run_dir = path


def subscribe(event: threading.Event) -> None:
    with _lock:
        _subscribers.add(event)


def poke() -> None:
    """New work was committed: wake the workers of this process and of this host."""
    with _lock:
        events = list(_subscribers)
        run_dir = _run_dir
    for e in events:
        e.set()
    if run_dir is None:
        return
    try:
        bells = [p for p in run_dir.iterdir() if p.name.startswith("transfers-")]
    except FileNotFoundError:
        return
    if not bells:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for bell in bells:
            try:
                sender.sendto(b"!", str(bell))
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    bell.unlink()  # its worker is gone
            except OSError:
                pass  # its queue is full: that worker is awake anyway


class Doorbell:
    """A worker's Unix datagram socket: any byte sent to it sets ``event``."""

    def __init__(self, run_dir: Path, event: threading.Event) -> None:
        self.path = run_dir / f"transfers-{os.getpid()}-{id(self):x}.sock"
        self.event = event
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        sock.settimeout(1.0)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="transfer-doorbell", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sock = self._sock
        while sock is not None and self._sock is not None:
            try:
                sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return
            self.event.set()

    def stop(self) -> None:
        sock, self._sock = self._sock, None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if sock is not None:
            sock.close()


class Listener:
    """LISTENs on PostgreSQL and sets ``event`` on each notification (a daemon thread)."""

    def __init__(self, database_url: str, event: threading.Event) -> None:
        self.url = database_url
        self.event = event
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        if not self.url.startswith("postgresql"):
            return False
        self._thread = threading.Thread(target=self._run, name="transfer-listen", daemon=True)
        self._thread.start()
        return True

    def _connect(self) -> Any:
        import psycopg
        from sqlalchemy.engine import make_url

        u = make_url(self.url)
        return psycopg.connect(
            host=u.host or "localhost",
            port=u.port or 5432,
            user=u.username,
            password=u.password,
            dbname=u.database,
            autocommit=True,
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    conn.execute("LISTEN fedlake_transfers")
                    self.event.set()  # anything queued while we were not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.event.set()
            except Exception:
                log.warning("LISTEN connection lost; reconnecting", exc_info=True)
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(RuntimeError):
                self._thread.join(3.0)
