"""Wake idle workers the moment work is queued: no fixed polling on the hot path.

In one process (``fedlake up``) queuing code calls :func:`poke`. Across processes on
PostgreSQL, queuing sends ``NOTIFY fedlake_transfers`` in its transaction and each
worker LISTENs. Across processes on SQLite (no notifications) idle workers look again
every ``fallback`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from typing import Any

__all__ = ["Listener", "poke", "subscribe"]

log = logging.getLogger("fedlake.transfers")
_subscribers: weakref.WeakSet[threading.Event] = weakref.WeakSet()
_lock = threading.Lock()


def subscribe(event: threading.Event) -> None:
    with _lock:
        _subscribers.add(event)


def poke() -> None:
    """New work was committed in this process."""
    with _lock:
        events = list(_subscribers)
    for e in events:
        e.set()


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
