"""Moves data: runs a transfer worker (claims, copies, verifies, commits) until stopped."""

from __future__ import annotations

from fedlake.bootstrap import Lake
from fedlake.daemons.runner import Daemon
from fedlake.transfers.worker import TransferWorker, WorkerConfig

__all__ = ["TransferDaemon", "worker_config"]


def worker_config(lake: Lake, threads: int | None = None) -> WorkerConfig:
    s = lake.settings
    return WorkerConfig(
        threads=threads or s.transfer_threads,
        lease=float(s.transfer_lease_seconds),
        global_max=s.transfer_max_active,
    )


class TransferDaemon(Daemon):
    """The worker runs its own threads; this daemon starts it and stops it cleanly."""

    name = "transfers"

    def __init__(self, lake: Lake, threads: int | None = None) -> None:
        super().__init__(lake)
        self.worker = TransferWorker(lake.db, worker_config(lake, threads))

    def run_once(self) -> int:  # the worker is event-driven; nothing to do per round
        return 0

    def run(self) -> None:
        self.worker.start()
        self.stop_event.wait()
        self.worker.stop(timeout=min(30.0, self.lake.settings.transfer_lease_seconds / 2))
