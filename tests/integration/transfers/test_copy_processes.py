"""Copies in child processes (``WorkerConfig.copy_processes``): copies complete and are
verified as in-process ones; a copy process killed mid-copy is started again and its
copies are retried; a worker killed with SIGKILL takes its copy processes with it."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import rses as rse_core
from fedlake.catalog import transfers as transfer_core
from fedlake.services import transfers as svc
from fedlake.transfers.storage_tokens import StorageTokens
from fedlake.transfers.worker import TransferWorker, WorkerConfig
from tests.integration.transfers.conftest import daemon_env
from tests.integration.transfers.test_engine import (
    _ADMIN,
    pfn_on,
    replica_state,
    submit,
    wait_for,
)

CONFIG = WorkerConfig(
    threads=8, batch=50, lease=30, idle_poll=0.1, stage_poll=0.1, refresh=0, copy_processes=2
)


def _wait(what: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped) is not alive
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def test_copies_run_in_copy_processes(lake: Lake, root: Caller, put: Callable[..., Any]) -> None:
    names = [put(f"cp-{i}")[0] for i in range(40)]
    worker = TransferWorker(lake.db, CONFIG)
    worker.start()
    try:
        pids = worker.copy_pids
        assert len(pids) == 2 and os.getpid() not in pids and all(map(_alive, pids))
        done = wait_for(lake, submit(lake, root, names), timeout=60)
        assert {r["state"] for r in done} == {"DONE"}
        assert all(len(r["attempts"]) == 1 for r in done)
        for n in names:
            assert replica_state(lake, "LOCAL-SAFE", n) == "AVAILABLE"
            assert pfn_on(lake, "LOCAL-SAFE", n).read_bytes().startswith(f"content of {n}".encode())
        assert worker.running == 0
    finally:
        worker.stop(timeout=10)
    _wait(lambda: not any(map(_alive, pids)), 10, "copy processes outlived the worker's stop")


@pytest.fixture
def silent_endpoint() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: copies to it hang."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            held.append(conn)

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield server.getsockname()[1]
    stop.set()
    t.join(5)
    for conn in held:
        conn.close()
    server.close()


def _silent_rse(lake: Lake, port: int) -> None:
    with lake.db.write() as s:
        row = rse_core.add_rse(s, "SILENT-DAV", deterministic=True)
        rse_core.add_protocol(
            s,
            row,
            {
                "scheme": "http",
                "hostname": "127.0.0.1",
                "port": port,
                "prefix": "/data",
                "impl": "rucio.rse.protocols.webdav.Default",
                "domains": {"wan": {"read": 1, "write": 1, "delete": 1}},
            },
        )


def test_a_killed_copy_process_is_restarted_and_its_copies_retried(
    lake: Lake, root: Caller, put: Callable[..., Any], silent_endpoint: int
) -> None:
    _silent_rse(lake, silent_endpoint)
    name, data = put("hangs")
    worker = TransferWorker(lake.db, CONFIG)
    worker.start()
    try:
        [rid] = submit(lake, root, [name], rse="SILENT-DAV")
        victims: list[int] = []

        def copying() -> bool:
            victims[:] = [p for p in worker.copy_pids if _connected_to(p, silent_endpoint)]
            return len(victims) == 1

        _wait(copying, 30, "the copy never reached the endpoint")
        assert worker.running == 1
        [victim] = victims
        os.kill(victim, signal.SIGKILL)
        _wait(
            lambda: bool(svc.get_request(lake, _ADMIN, rid)["attempts"]),
            30,
            "the killed copy was not recorded",
        )
        req = svc.get_request(lake, _ADMIN, rid)
        [attempt] = req["attempts"]
        assert "the copy process running it died" in attempt["error"], attempt
        assert req["state"] == "QUEUED"  # retried after its back-off
        _wait(lambda: len(worker.copy_pids) == 2, 30, "the copy process was not restarted")
        assert victim not in worker.copy_pids
        assert all(map(_alive, worker.copy_pids))
        assert replica_state(lake, "SILENT-DAV", name) is None
        # the source is untouched by the kill
        assert pfn_on(lake, "LOCAL-DISK", name).read_bytes() == data
    finally:
        svc.cancel(lake, root, rid)
        worker.stop(timeout=2)


def _connected_to(pid: int, port: int) -> bool:
    """Does process ``pid`` hold an established TCP connection to 127.0.0.1:``port``?"""
    inodes = set()
    for n in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{n}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if fields[3] == "01" and remote_port == port and fields[9] in inodes:
            return True
    return False


def test_a_killed_worker_takes_its_copy_processes_with_it(lake: Lake, tmp_path: Path) -> None:
    env = daemon_env(lake, FEDLAKE_TRANSFER_COPY_PROCESSES="2")
    with open(tmp_path / "worker.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedlake.cli", "daemon", "transfers"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        children: list[int] = []

        def copy_children() -> bool:
            children[:] = _copy_children(proc.pid)
            return len(children) == 2

        _wait(copy_children, 60, "the worker did not start two copy processes")
        proc.kill()
        proc.wait(10)
        _wait(
            lambda: not any(map(_alive, children)),
            15,
            "copy processes outlived their worker",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _copy_children(pid: int) -> list[int]:
    """Children of ``pid`` that are copy processes (not multiprocessing's helpers)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"spawn_main" in cmd:
                out.append(int(child))
    return out


def _no_tokens() -> StorageTokens:
    """A copy process's set-up that fails (as a broken installation would)."""
    raise RuntimeError("this copy process cannot start")


def test_copy_processes_that_cannot_start_take_no_work(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    """Nothing is claimed while no copy process is ready, so a broken set-up does not use
    up the queue's attempts; the processes are started again after growing pauses."""
    name, _ = put("waits")
    worker = TransferWorker(
        lake.db, dataclasses.replace(CONFIG, copy_processes=1), child_tokens=_no_tokens
    )
    worker.start()
    try:
        [rid] = submit(lake, root, [name])
        _wait(lambda: worker._copies is not None and worker._copies.restarts >= 2, 30, "no restart")
        req = svc.get_request(lake, _ADMIN, rid)
        assert (req["state"], req["attempts"]) == ("QUEUED", [])
        restarts = worker._copies.restarts if worker._copies is not None else 0
        time.sleep(2)  # pauses grow: 1 s, 2 s, 4 s ...
        assert worker._copies is not None and worker._copies.restarts <= restarts + 1
    finally:
        worker.stop(timeout=2)
    assert svc.get_request(lake, _ADMIN, rid)["state"] == "QUEUED"


def test_stop_gives_up_on_a_database_that_stays_away(
    lake: Lake,
    root: Caller,
    put: Callable[..., Any],
    silent_endpoint: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A copy still running at the end of ``stop`` comes back as an outcome after the
    commit thread has ended; with the database away its commit fails, and ``stop`` gives
    up on it instead of retrying for ever (a daemon whose test database was dropped hung
    so). The request is not lost: ``stop`` hands it back to the queue (were that to fail
    too, its lease would expire)."""
    _silent_rse(lake, silent_endpoint)
    name, _ = put("unsaved")
    worker = TransferWorker(lake.db, dataclasses.replace(CONFIG, copy_processes=1))
    worker.start()
    [rid] = submit(lake, root, [name], rse="SILENT-DAV")
    _wait(lambda: worker.running == 1, 30, "the copy never started")

    def database_away(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the database is away")

    monkeypatch.setattr(transfer_core, "complete", database_away)
    t0 = time.monotonic()
    worker.stop(timeout=1)
    assert time.monotonic() - t0 < 20, "stop hung on commits that cannot succeed"
    monkeypatch.undo()
    assert worker.completed == 0
    req = svc.get_request(lake, _ADMIN, rid)
    assert (req["state"], req["attempts"]) == ("QUEUED", []), req


def test_copy_processes_with_tokens_need_a_way_to_mint_them(lake: Lake) -> None:
    """Without ``child_tokens`` the copy processes would present no storage tokens."""
    with pytest.raises(ValueError, match="child_tokens"):
        TransferWorker(lake.db, CONFIG, tokens=StorageTokens(lake.tokens))
