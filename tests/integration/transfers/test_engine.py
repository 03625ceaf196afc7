"""The transfer engine end to end on local POSIX RSEs (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog.models import Event, Replica, TransferRequest
from fedlake.domain.errors import AccessDenied, DIDNotFound, InvalidInput
from fedlake.services import rules as rule_svc
from fedlake.services import transfers as svc
from fedlake.transfers.worker import TransferWorker
from tests.integration.transfers.conftest import SCOPE

_ADMIN = Caller("root", admin=True)  # sees embargoed data too


def wait_for(lake: Lake, ids: list[int], timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        got = [svc.get_request(lake, _ADMIN, i) for i in ids]
        if all(g["state"] not in ("QUEUED", "SUBMITTED", "WAITING") for g in got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"requests still active: {[(g['id'], g['state']) for g in got]}")
        time.sleep(0.05)


def replica_state(lake: Lake, rse: str, name: str) -> str | None:
    with lake.db.read() as s:
        from fedlake.catalog import rses as rse_core

        rse_id = rse_core.get_rse(s, rse).id
        row = s.get(Replica, (rse_id, SCOPE, name))
        return None if row is None else row.state


def pfn_on(lake: Lake, rse: str, name: str) -> Path:
    """Where the replica's bytes are on a local RSE (as the catalogue says)."""
    from fedlake.catalog import rses as rse_core
    from fedlake.catalog.replicas import replica_path

    with lake.db.read() as s:
        info = rse_core.rse_info(s, rse_core.get_rse(s, rse))
        row = s.get(Replica, (info.id, SCOPE, name))
        stored = row.path if row is not None else None
        return Path(info.protocols[0].prefix) / replica_path(info, SCOPE, name, stored)


def submit(
    lake: Lake, root: Caller, names: list[str], rse: str = "LOCAL-SAFE", **kw: Any
) -> list[int]:
    body = {"dids": [{"scope": SCOPE, "name": n} for n in names], "rse": rse, **kw}
    return svc.submit(lake, root, body)


def test_copy_makes_an_available_replica(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    name, data = put("f1")
    [rid] = submit(lake, root, [name])
    [req] = wait_for(lake, [rid])
    assert req["state"] == "DONE", req
    assert req["source_rse"] == "LOCAL-DISK"
    assert [a["state"] for a in req["attempts"]] == ["DONE"]
    assert replica_state(lake, "LOCAL-SAFE", name) == "AVAILABLE"
    assert pfn_on(lake, "LOCAL-SAFE", name).read_bytes() == data
    with lake.db.read() as s:
        kinds = [e.event_type for e in s.scalars(select(Event).order_by(Event.id))]
    for kind in ("transfer-queued", "transfer-submitted", "transfer-done"):
        assert kind in kinds


def test_many_files_and_a_non_deterministic_destination(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    names = [put(f"many-{i}")[0] for i in range(40)]
    ids = submit(lake, root, names, rse="LOCAL-BUFFER")
    done = wait_for(lake, ids)
    assert {r["state"] for r in done} == {"DONE"}
    for n in names[:3]:
        assert replica_state(lake, "LOCAL-BUFFER", n) == "AVAILABLE"
        assert pfn_on(lake, "LOCAL-BUFFER", n).read_bytes().startswith(f"content of {n}".encode())


def test_a_second_request_for_the_same_copy_is_the_same_request(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    name, _ = put("dup")
    first = submit(lake, root, [name])
    assert submit(lake, root, [name]) == first


def test_a_rule_queues_transfers_and_becomes_ok(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    names = [put(f"ruled-{i}")[0] for i in range(5)]
    rule_ids = rule_svc.add_rules(
        lake,
        root,
        {
            "dids": [{"scope": SCOPE, "name": n} for n in names],
            "copies": 1,
            "rse_expression": "LOCAL-SAFE",
        },
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = {rule_svc.get_rule(lake, _ADMIN, r)["state"] for r in rule_ids}
        if states == {"OK"}:
            break
        time.sleep(0.05)
    assert states == {"OK"}
    for n in names:
        assert replica_state(lake, "LOCAL-SAFE", n) == "AVAILABLE"


def test_missing_source_file_marks_it_bad_and_uses_another_source(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    name, data = put("two-sources")
    [rid] = submit(lake, root, [name], rse="LOCAL-BUFFER")
    assert wait_for(lake, [rid])[0]["state"] == "DONE"
    pfn_on(lake, "LOCAL-DISK", name).unlink()  # lost from one source
    with lake.db.write() as s:  # make LOCAL-DISK the nearest source, so it is tried first
        from fedlake.catalog import rses as rse_core
        from fedlake.catalog import transfers as core

        disk = rse_core.get_rse(s, "LOCAL-DISK").id
        buf = rse_core.get_rse(s, "LOCAL-BUFFER").id
        safe = rse_core.get_rse(s, "LOCAL-SAFE").id
        core.set_distance(s, disk, safe, 1)
        core.set_distance(s, buf, safe, 5)
    [rid2] = submit(lake, root, [name])
    [req] = wait_for(lake, [rid2])
    assert req["state"] == "DONE", req
    assert [a["source_rse"] for a in req["attempts"]] == ["LOCAL-DISK", "LOCAL-BUFFER"]
    assert "FileNotFoundError" in req["attempts"][0]["error"]
    assert replica_state(lake, "LOCAL-DISK", name) == "BAD"
    assert pfn_on(lake, "LOCAL-SAFE", name).read_bytes() == data


def test_corrupt_source_fails_verification_and_leaves_nothing(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    name, data = put("corrupt")
    src = pfn_on(lake, "LOCAL-DISK", name)
    src.write_bytes(b"X" + data[1:])  # same size, other bytes
    [rid] = submit(lake, root, [name])
    [req] = wait_for(lake, [rid])
    assert req["state"] == "NO_SOURCES", req
    assert "checksum mismatch" in req["attempts"][0]["error"]
    assert req["attempts"][0]["recoverable"] is False
    assert replica_state(lake, "LOCAL-SAFE", name) is None
    safe_root = Path(lake.settings.data_dir).resolve() / "rses" / "safe"
    assert not [p for p in safe_root.rglob("*") if p.is_file()]


def test_no_sources(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    name, _ = put("lonely")
    pfn_on(lake, "LOCAL-DISK", name)
    with lake.db.write() as s:
        s.execute(
            Replica.__table__.update().values(state="UNAVAILABLE")  # type: ignore[attr-defined]
        )
    [rid] = submit(lake, root, [name])
    [req] = wait_for(lake, [rid])
    assert req["state"] == "NO_SOURCES"
    assert "no available replica" in req["error"]


def test_cancel_and_retry(lake: Lake, root: Caller, put: Callable[..., Any]) -> None:
    name, _ = put("cancel-me")
    [rid] = submit(lake, root, [name])
    svc.cancel(lake, root, rid)
    assert svc.get_request(lake, _ADMIN, rid)["state"] == "CANCELLED"
    with pytest.raises(InvalidInput, match="only active ones cancel"):
        svc.cancel(lake, root, rid)
    new = svc.retry(lake, root, rid)
    assert new != rid
    assert svc.get_request(lake, _ADMIN, new)["state"] == "QUEUED"
    with pytest.raises(InvalidInput, match="only failed or cancelled"):
        svc.retry(lake, root, new)


def test_bad_input(lake: Lake, root: Caller, put: Callable[..., Any]) -> None:
    name, _ = put("input")
    with pytest.raises(DIDNotFound, match="does not exist"):
        submit(lake, root, ["nope"])
    with pytest.raises(Exception, match="NOWHERE"):
        submit(lake, root, [name], rse="NOWHERE")
    with pytest.raises(InvalidInput, match="priority"):
        submit(lake, root, [name], priority=9)
    with pytest.raises(InvalidInput, match="at least one DID"):
        svc.submit(lake, root, {"dids": [], "rse": "LOCAL-SAFE"})
    with pytest.raises(AccessDenied):
        svc.submit(lake, Caller("jdoe"), {"dids": [{"scope": SCOPE, "name": name}], "rse": "X"})
    with lake.db.read() as s:
        assert s.scalars(select(TransferRequest)).all() == []


def test_limits_hold(lake: Lake, root: Caller, put: Callable[..., Any]) -> None:
    """A fixed link limit of 2: the scheduler never hands out more than 2 at once."""
    from fedlake.transfers.worker import TransferWorker, WorkerConfig

    names = [put(f"lim-{i}")[0] for i in range(12)]
    svc.set_link(lake, root, "LOCAL-DISK", "LOCAL-SAFE", {"max_active": 2, "optimizer": False})
    submit(lake, root, names)
    w = TransferWorker(lake.db, WorkerConfig(threads=8, batch=50, lease=30, idle_poll=0.1))
    claimed = w.scheduler.claim(8)
    assert len(claimed) == 2
    assert w.scheduler.claim(8) == []
    assert w.scheduler.blocked > 0
    with lake.db.write() as s:
        from fedlake.catalog import transfers as core

        core.release(s, w.owner)


def test_a_tape_source_is_staged_before_the_copy(
    lake: Lake, root: Caller, worker: TransferWorker, tmp_path: Path
) -> None:
    """The only replica is on the tape emulation, offline: the request WAITs for the
    recall, then copies; the pin is released afterwards."""
    import zlib

    from fedlake.catalog import rses as rse_core
    from fedlake.domain.paths import build_pfn, path_hash
    from fedlake.services import accounts as account_svc
    from fedlake.services import replicas as replica_svc
    from fedlake.storage import get_storage

    options = {"root": str(tmp_path / "tape"), "recall_latency": 0.4}
    with lake.db.write() as s:
        row = rse_core.add_rse(
            s, "EMU-TAPE", deterministic=True, lfn2pfn_algorithm="hash", rse_type="TAPE"
        )
        rse_core.add_protocol(
            s,
            row,
            {
                "scheme": "tape",
                "hostname": "localhost",
                "port": 0,
                "prefix": "/archive",
                "impl": "fedlake.tape",
                "extended_attributes": {"fedlake_storage_options": options},
                "domains": {"wan": {"read": 1, "write": 1, "delete": 1}},
            },
        )
    account_svc.add_scope(lake, root, SCOPE, "root")
    data = b"photons from last night\n" * 100
    url = build_pfn("tape", "localhost", 0, "/archive", path_hash(SCOPE, "night.fits"))
    tape = get_storage("tape", **options)
    tape.write(url, [data])
    tape.evict(url)  # type: ignore[attr-defined]
    assert not tape.is_online(url)  # type: ignore[attr-defined]
    replica_svc.add_replicas(
        lake,
        root,
        {
            "rse": "EMU-TAPE",
            "files": [
                {
                    "scope": SCOPE,
                    "name": "night.fits",
                    "bytes": len(data),
                    "adler32": f"{zlib.adler32(data):08x}",
                }
            ],
        },
    )
    [rid] = submit(lake, root, ["night.fits"])
    [req] = wait_for(lake, [rid])
    assert req["state"] == "DONE", req
    states = [a["state"] for a in req["attempts"]]
    assert states[0] == "WAITING" and states[-1] == "DONE", states
    assert pfn_on(lake, "LOCAL-SAFE", "night.fits").read_bytes() == data
    assert req["attempt"] == 1  # staging polls are not counted as failed attempts
