"""Moves data: runs a transfer worker (claims, copies, verifies, commits) until stopped."""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from fedlake.bootstrap import Lake, build_lake, run_dir
from fedlake.daemons.runner import Daemon
from fedlake.settings import Settings
from fedlake.transfers.storage_tokens import StorageTokens
from fedlake.transfers.worker import TransferWorker, WorkerConfig

__all__ = ["TransferDaemon", "TransferProcess", "worker_config"]

log = logging.getLogger("fedlake.daemons")


def worker_config(lake: Lake, threads: int | None = None) -> WorkerConfig:
    s = lake.settings
    return WorkerConfig(
        threads=threads or s.transfer_threads,
        lease=float(s.transfer_lease_seconds),
        global_max=s.transfer_max_active,
        run_dir=str(run_dir(s)),
        copy_processes=s.transfer_copy_processes,
    )


def storage_tokens(settings: Settings) -> StorageTokens:
    """The storage tokens of a lake (for copy processes, which build their own)."""
    return StorageTokens(build_lake(settings, migrate=False).tokens)


class TransferDaemon(Daemon):
    """The worker runs its own threads; this daemon starts it and stops it cleanly."""

    name = "transfers"

    def __init__(self, lake: Lake, threads: int | None = None) -> None:
        super().__init__(lake)
        # storage that needs tokens gets ones minted for each copy by the lake's issuer
        tokens = StorageTokens(lake.tokens)
        self.worker = TransferWorker(
            lake.db,
            worker_config(lake, threads),
            tokens=tokens,
            child_tokens=functools.partial(storage_tokens, lake.settings),
        )

    def run_once(self) -> int:  # the worker is event-driven; nothing to do per round
        return 0

    def run(self) -> None:
        self.worker.start()
        while not self.stop_event.is_set():
            try:
                self.beat(force=True)
            except Exception:
                log.exception("transfers: recording the heartbeat failed")
            self.stop_event.wait(self.beat_every)
        self.worker.stop(timeout=min(30.0, self.lake.settings.transfer_lease_seconds / 2))
        self._leave()


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (even by SIGKILL)."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


class TransferProcess(Daemon):
    """Runs the transfer worker as a child process (``fedlake daemon transfers``) and
    restarts it if it dies: the embedded lake then uses a second core for moving data,
    and the API stays responsive under a heavy transfer load."""

    name = "transfers"
    heartbeats = False  # the child process beats
    restart_delay = 1.0

    def __init__(self, lake: Lake) -> None:
        super().__init__(lake)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def run_once(self) -> int:
        return 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        s = self.lake.settings
        env = dict(os.environ)
        env["FEDLAKE_DATA_DIR"] = str(s.data_dir)
        env["FEDLAKE_DATABASE_URL"] = s.database_url
        env["FEDLAKE_PUBLIC_URL"] = s.public_url  # the issuer of the storage tokens it mints
        log_path = Path(s.data_dir) / "transfers.log"
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fedlake.cli", "daemon", "transfers"],
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.starts += 1
        return proc

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.process = self._spawn()
            while self.process.poll() is None and not self.stop_event.is_set():
                self.stop_event.wait(0.5)
            if not self.stop_event.is_set():
                log.warning(
                    "the transfer worker exited with %s; restarting it (log: %s)",
                    self.process.returncode,
                    Path(self.lake.settings.data_dir) / "transfers.log",
                )
                self.stop_event.wait(self.restart_delay)
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.lake.settings.transfer_lease_seconds / 2 + 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
