"""The one daemon loop: ``run_once`` repeatedly, with a stop event and error isolation."""

from __future__ import annotations

import abc
import logging
import threading

from fedlake.bootstrap import Lake

__all__ = ["Daemon", "DaemonGroup"]

log = logging.getLogger("fedlake.daemons")


class Daemon(abc.ABC):
    """A job: ``run_once`` does one bounded round of work and returns how much it did."""

    name: str = "daemon"
    interval: float = 10.0

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.stop_event = threading.Event()

    @abc.abstractmethod
    def run_once(self) -> int: ...

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                done = self.run_once()
            except Exception:
                log.exception("%s failed; retrying in %.0f s", self.name, self.interval)
                done = 0
            if not done:
                self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()


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
