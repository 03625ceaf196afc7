"""Wake idle workers the moment work is queued: no fixed polling on the hot path.

Queuing code calls :func:`poke` after its commit. That wakes

- workers in the same process (an event each);
- workers in other processes of this host: each binds a Unix datagram socket in the
  lake's run directory (``<data dir>/run/transfers-<pid>.sock``, see :class:`Doorbell`)
  and ``poke`` sends one byte to every socket there (a Unix socket's path is limited to
  107 bytes: when the run directory is too deep, the sockets live in a private directory
  ``<tmp>/fedlake-bells-<hash of the run directory>`` instead, see :func:`bell_dir`);
- on PostgreSQL, workers on other hosts too: queuing sends ``NOTIFY fedlake_transfers``
  in its transaction and each worker LISTENs (:class:`Listener`).

Idle workers also look at the queue every ``idle_poll`` seconds, a fallback only.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import stat
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

__all__ = ["Doorbell", "Listener", "bell_dir", "poke", "set_run_dir", "subscribe"]

log = logging.getLogger("fedlake.transfers")
_subscribers: weakref.WeakSet[threading.Event] = weakref.WeakSet()
_lock = threading.Lock()
_run_dir: Path | None = None


#: room for "/transfers-<pid>-<id>.sock" below the directory within sun_path's 107 bytes
_MAX_DIR_BYTES = 107 - len("/transfers-4194304-7fffffffffff.sock")


def bell_dir(run_dir: Path) -> Path:
    """Where the doorbells of the lake whose run directory is ``run_dir`` are bound: the
    run directory itself, or, when its path is too long for a Unix socket, a directory of
    this user's own below the system's temporary directory named after it (every process
    of the lake works it out the same way)."""
    if len(os.fsencode(run_dir)) <= _MAX_DIR_BYTES:
        return run_dir
    digest = hashlib.sha256(os.fsencode(run_dir.resolve())).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"fedlake-bells-{os.getuid()}-{digest}"


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
        bells = [p for p in bell_dir(run_dir).iterdir() if p.name.startswith("transfers-")]
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
        self.path = bell_dir(run_dir) / f"transfers-{os.getpid()}-{id(self):x}.sock"
        self.event = event
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(self.path.parent)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise PermissionError(
                f"{self.path.parent} is not a directory of this user: remove it (the transfer "
                "doorbells live there)"
            )
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
