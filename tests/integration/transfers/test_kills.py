"""Crash safety: transfer workers killed with SIGKILL at random moments, over and over.

After every kill a new worker starts (every other one runs its copies in copy processes,
which die with it); at the end one runs until the queue is empty. Then
every request is DONE exactly once, every destination replica is AVAILABLE with the right
bytes, and no partial file is visible on the destination.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import rses as rse_core
from fedlake.catalog.models import Replica, TransferAttempt, TransferRequest
from fedlake.services import transfers as svc
from fedlake.storage.backends.posix import is_temporary
from tests.integration.transfers.conftest import SCOPE, daemon_env

KILLS = 20  # issue 3: ">= 20 kills in one test run"
FILES = 400


def _start_worker(lake: Lake, log: Path, copy_processes: int = 0) -> subprocess.Popen[bytes]:
    env = daemon_env(
        lake,
        FEDLAKE_TRANSFER_LEASE_SECONDS="2",
        # few threads: a worker lives through several kills' worth of work, so the kills
        # land while transfers run however fast the copies are
        FEDLAKE_TRANSFER_THREADS="2",
        # copies in child processes (which must die with their worker) or in its threads
        FEDLAKE_TRANSFER_COPY_PROCESSES=str(copy_processes),
    )
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "fedlake.cli", "daemon", "transfers"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


def _held_by(lake: Lake, pid: int) -> int:
    """Requests the worker process ``pid`` holds right now (its owner id names the pid)."""
    with lake.db.read() as s:
        return int(
            s.scalar(
                select(func.count()).where(
                    TransferRequest.state == "SUBMITTED",
                    TransferRequest.lease_owner.like(f"%:{pid}:%"),
                )
            )
            or 0
        )


def _counts(lake: Lake) -> dict[str, int]:
    with lake.db.read() as s:
        return {
            st: n
            for st, n in s.execute(
                select(TransferRequest.state, func.count()).group_by(TransferRequest.state)
            )
        }


def test_workers_killed_twenty_times_converge(
    lake: Lake, root: Caller, put: Callable[..., Any], tmp_path: Path
) -> None:
    rng = random.Random(7)
    datas = {}
    for i in range(FILES):
        data = rng.randbytes(8 * 1024 + i)
        datas[put(f"k-{i}", data)[0]] = data
    ids = svc.submit(
        lake,
        root,
        {"dids": [{"scope": SCOPE, "name": n} for n in datas], "rse": "LOCAL-SAFE"},
    )
    assert len(ids) == FILES
    log = tmp_path / "workers.log"
    killed_mid_work = 0
    for round_ in range(3 * KILLS):
        if killed_mid_work >= KILLS or set(_counts(lake)) == {"DONE"}:
            break  # enough kills, or nothing left to kill a worker in (fails below)
        proc = _start_worker(lake, log, copy_processes=round_ % 2)
        deadline = time.monotonic() + 15
        while _held_by(lake, proc.pid) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # wait until it holds work, then kill it at a random moment
        time.sleep(rng.uniform(0.0, 0.08))
        before = _held_by(lake, proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_mid_work += before > 0
    # a last worker runs until everything converged (expired leases included)
    proc = _start_worker(lake, log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            counts = _counts(lake)
            if set(counts) == {"DONE"}:
                break
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert counts == {"DONE": FILES}, (counts, log.read_text()[-3000:])
    assert killed_mid_work >= KILLS, "the kills should land while transfers run"

    with lake.db.read() as s:
        done_attempts = s.execute(
            select(TransferAttempt.request_id, func.count())
            .where(TransferAttempt.state == "DONE")
            .group_by(TransferAttempt.request_id)
        ).all()
        assert sorted(r for r, _ in done_attempts) == sorted(ids)
        assert {n for _, n in done_attempts} == {1}, "a request was recorded done twice"
        info = rse_core.rse_info(s, rse_core.get_rse(s, "LOCAL-SAFE"))
        reps = s.execute(
            select(Replica.name, Replica.state).where(
                Replica.rse_id == info.id, Replica.scope == SCOPE
            )
        ).all()
    assert {n: st for n, st in reps} == {n: "AVAILABLE" for n in datas}
    # every visible file on the destination is a complete, verified copy
    prefix = Path(info.protocols[0].prefix)
    visible = [p for p in prefix.rglob("*") if p.is_file() and not is_temporary(p.name)]
    assert len(visible) == FILES
    for p in visible:
        data = datas[p.name]
        assert zlib.adler32(p.read_bytes()) == zlib.adler32(data)
