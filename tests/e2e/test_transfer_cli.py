"""``fedlake transfer`` against a live ``fedlake up`` (which runs a transfer worker):
submit, list, show, cancel, retry, links, link set and watch, with real copies."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fedlake.client import Client, ClientConfig
from tests.e2e.cli import fedlake, spawn_fedlake
from tests.helpers import (
    ROOT_PASSWORD,
    LiveLake,
    lake_on,
    pg_base_url,
)

BACKENDS = ["sqlite"] + (["postgresql"] if pg_base_url() else [])
ACTIVE = ("QUEUED", "SUBMITTED", "WAITING")
#: the worker rereads RSE limits this often (WorkerConfig.refresh), plus a margin
LIMITS_SEEN_AFTER = 6.0


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveLake]:
    """One live lake per backend for the module (its worker copies for real)."""
    with lake_on(request.param, tmp_path_factory.mktemp(f"xfer-{request.param}") / "data") as lake:
        yield lake


@pytest.fixture
def client(live: LiveLake) -> Iterator[Client]:
    config = ClientConfig(url=live.url, username="root", password=ROOT_PASSWORD, account="root")
    with Client(config) as c:
        yield c


def as_json(live: LiveLake, *args: str) -> Any:
    return json.loads(fedlake(live, *args, "--json").stdout)


def wait_finished(client: Client, ids: list[int], timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        got = [client.get_transfer(i) for i in ids]
        if all(g["state"] not in ACTIVE for g in got):
            return got
        assert time.monotonic() < deadline, [(g["id"], g["state"]) for g in got]
        time.sleep(0.1)


def test_transfer_commands(live: LiveLake, client: Client, tmp_path: Path) -> None:
    # nothing may enter LOCAL-BUFFER for now: requests to it stay QUEUED (for cancel)
    client.request("PUT", "/rses/LOCAL-BUFFER/limits", body={"transfers_inbound": 0})
    limited_at = time.monotonic()
    src = tmp_path / "night"
    src.mkdir()
    data = {f"x{i}.dat": os.urandom(20_000 + i) for i in range(3)}
    for name, blob in data.items():
        (src / name).write_bytes(blob)
    fedlake(live, "upload", "--rse", "LOCAL-DISK", "--dataset", "user.root:night", str(src))

    # submit a dataset: one request per file, copied and verified by the lake's worker
    ids = as_json(live, "transfer", "submit", "user.root:night", "--rse", "LOCAL-SAFE")[
        "request_ids"
    ]
    assert len(ids) == 3
    done = wait_finished(client, ids)
    assert {r["state"] for r in done} == {"DONE"}, done
    [rep] = client.list_replicas([("user.root", "x0.dat")], all_states=True)
    assert rep["states"] == {"LOCAL-DISK": "AVAILABLE", "LOCAL-SAFE": "AVAILABLE"}
    safe = live.data_dir / "rses" / "safe"
    copies = {p.name: p.read_bytes() for p in safe.rglob("*.dat")}
    assert copies == data

    listed = as_json(live, "transfer", "list", "--state", "DONE", "--rse", "LOCAL-SAFE")
    assert sorted(r["id"] for r in listed) == sorted(ids)
    table = fedlake(live, "transfer", "list", "--state", "QUEUED,DONE", "--limit", "2").stdout
    assert "user.root:x" in table and "DONE" in table and "LOCAL-DISK" in table
    assert sum("user.root:x" in line for line in table.splitlines()) == 2
    one = as_json(live, "transfer", "list", "--did", "user.root:x1.dat")
    assert [r["name"] for r in one] == ["x1.dat"]

    shown = as_json(live, "transfer", "show", str(ids[0]))
    assert shown["state"] == "DONE" and [a["state"] for a in shown["attempts"]] == ["DONE"]
    text = fedlake(live, "transfer", "show", str(ids[0])).stdout
    assert f"transfer request {ids[0]}" in text and "attempts" in text
    assert "LOCAL-DISK" in text and "LOCAL-SAFE" in text and "DONE" in text

    # no source at all: NO_SOURCES; retry queues a new request (which finds none either)
    [lost] = as_json(
        live,
        "transfer",
        "submit",
        "user.root:x0.dat",
        "--rse",
        "LOCAL-TAPE",
        "--source",
        "LOCAL-TAPE|LOCAL-BUFFER",
        "--activity",
        "staging",
        "--priority",
        "5",
    )["request_ids"]
    [gone] = wait_finished(client, [lost])
    assert gone["state"] == "NO_SOURCES" and gone["activity"] == "staging"
    again = as_json(live, "transfer", "retry", str(lost))["request_id"]
    assert again != lost
    assert wait_finished(client, [again])[0]["state"] == "NO_SOURCES"

    # cancel a request the limit holds back, retry it, lift the limit: it completes
    time.sleep(max(0.0, LIMITS_SEEN_AFTER - (time.monotonic() - limited_at)))
    [held] = as_json(live, "transfer", "submit", "user.root:x2.dat", "--rse", "LOCAL-BUFFER")[
        "request_ids"
    ]
    time.sleep(1.5)
    assert client.get_transfer(held)["state"] == "QUEUED"
    out = fedlake(live, "transfer", "cancel", str(held)).stdout
    assert f"cancelled transfer request {held}" in out
    assert client.get_transfer(held)["state"] == "CANCELLED"
    err = fedlake(live, "transfer", "cancel", str(held), code=1).stderr
    assert "CANCELLED" in err and "only active ones cancel" in err
    out = fedlake(live, "transfer", "retry", str(held)).stdout
    requeued = int(out.split()[-1])
    assert f"transfer request {held} queued again as {requeued}" in " ".join(out.split())
    assert client.get_transfer(requeued)["state"] == "QUEUED"
    client.request("PUT", "/rses/LOCAL-BUFFER/limits", body={"transfers_inbound": 100})
    assert wait_finished(client, [requeued])[0]["state"] == "DONE"

    # links: configure one, see it in the table, the JSON and the live view
    args = ["link", "set", "LOCAL-DISK", "LOCAL-SAFE", "--max-active", "4", "--no-optimizer"]
    out = fedlake(live, "transfer", *args).stdout
    assert "LOCAL-DISK -> LOCAL-SAFE: at most 4, optimizer off" in out
    links = as_json(live, "transfer", "links")
    [link] = [lk for lk in links if (lk["source_rse"], lk["dest_rse"]) == tuple(args[2:4])]
    assert (link["max_active"], link["optimal_active"], link["optimizer"]) == (4, 4, False)
    table = fedlake(live, "transfer", "links").stdout
    assert "4/4" in table and "(optimizer off)" in table
    frame = fedlake(live, "transfer", "watch", "--once").stdout
    assert "transfer requests" in frame and "links" in frame and "4/4" in frame
    counts = {
        line.split()[1]: line.split()[3]
        for line in frame.splitlines()
        if len(line.split()) >= 4 and line.split()[1] in ("DONE", "NO_SOURCES", "CANCELLED")
    }
    assert counts == {"DONE": "4", "NO_SOURCES": "2", "CANCELLED": "1"}

    # bad input is a clear error, not a traceback
    err = fedlake(live, "transfer", "show", "987654", code=1).stderr
    assert "RequestNotFound" in err and "987654" in err
    err = fedlake(live, "transfer", "submit", "user.root:x0.dat", "--rse", "NOWHERE", code=1).stderr
    assert "NOWHERE" in err
    err = fedlake(live, "transfer", "list", "--state", "RUNNING", code=1).stderr
    assert "RUNNING" in err and "QUEUED" in err
    fedlake(live, "transfer", "show", "not-a-number", code=2)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("started_ignoring_sigint", [False, True])
def test_watch_runs_until_interrupted(live: LiveLake, started_ignoring_sigint: bool) -> None:
    """Ctrl-C stops it; so does SIGINT when it was started as a script's background job
    (which starts with SIGINT ignored)."""
    proc = spawn_fedlake(
        live.url,
        "transfer",
        "watch",
        "--interval",
        "0.2",
        data_dir=live.data_dir,
        preexec_fn=_ignore_sigint if started_ignoring_sigint else None,
    )
    try:
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "transfer requests" in out and "QUEUED" in out and "links" in out
    assert "Traceback" not in err
