"""The engine moves data across real storage servers: POSIX → XRootD (streamed),
XRootD → XRootD (third-party copy between two servers), XRootD → S3 (SeaweedFS) and
S3 → POSIX (protocol translation through the worker), each copy verified."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import rses as rse_core
from fedlake.services import transfers as svc
from fedlake.transfers.worker import TransferWorker
from tests.integration.transfers.conftest import SCOPE
from tests.integration.transfers.test_engine import pfn_on, wait_for
from tests.servers.seaweedfs import S3Server, seaweedfs  # noqa: F401 - fixture
from tests.servers.xrootd import XRootDServer, xrootd_server, xrootd_server2  # noqa: F401

_ADMIN = Caller("root", admin=True)  # sees embargoed data too

WAN_ALL = {
    "read": 1,
    "write": 1,
    "delete": 1,
    "third_party_copy_read": 1,
    "third_party_copy_write": 1,
}


def _rse(lake: Lake, name: str, protocol: dict[str, Any]) -> None:
    with lake.db.write() as s:
        row = rse_core.add_rse(s, name, deterministic=True, lfn2pfn_algorithm="identity")
        rse_core.add_protocol(s, row, {**protocol, "domains": {"wan": WAN_ALL}})


def _copy(lake: Lake, root: Caller, name: str, source: str, dest: str) -> dict[str, Any]:
    [rid] = svc.submit(
        lake,
        root,
        {
            "dids": [{"scope": SCOPE, "name": name}],
            "rse": dest,
            "source_rse_expression": source,
        },
    )
    [req] = wait_for(lake, [rid], timeout=60)
    assert req["state"] == "DONE", req
    assert req["source_rse"] == source
    return req


def test_a_file_travels_through_every_protocol(
    lake: Lake,
    root: Caller,
    put: Callable[..., Any],
    worker: TransferWorker,
    xrootd_server: XRootDServer,  # noqa: F811
    xrootd_server2: XRootDServer,  # noqa: F811
    seaweedfs: S3Server,  # noqa: F811
) -> None:
    run = secrets.token_hex(4)
    bucket = seaweedfs.new_bucket("xfer")
    _rse(
        lake,
        "ROOT-A",
        {
            "scheme": "root",
            "hostname": "127.0.0.1",
            "port": xrootd_server.port,
            "prefix": f"/a-{run}",
            "impl": "rucio.rse.protocols.xrootd.Default",
        },
    )
    _rse(
        lake,
        "ROOT-B",
        {
            "scheme": "root",
            "hostname": "127.0.0.1",
            "port": xrootd_server2.port,
            "prefix": f"/b-{run}",
            "impl": "rucio.rse.protocols.xrootd.Default",
        },
    )
    _rse(
        lake,
        "S3-C",
        {
            "scheme": "s3",
            "hostname": "127.0.0.1",
            "port": seaweedfs.port,
            "prefix": f"/{bucket}",
            "impl": "rucio.rse.protocols.s3.Default",
            "extended_attributes": {
                "fedlake_storage_options": {
                    "access_key": seaweedfs.access_key,
                    "secret_key": seaweedfs.secret_key,
                }
            },
        },
    )
    data = bytes(range(256)) * 4099  # ~1 MiB, not a multiple of any block
    name, _ = put(f"travel-{run}.bin", data)

    hops = [
        ("LOCAL-DISK", "ROOT-A"),
        ("ROOT-A", "ROOT-B"),
        ("ROOT-B", "S3-C"),
        ("S3-C", "LOCAL-SAFE"),
    ]
    tpc = {}
    for source, dest in hops:
        req = _copy(lake, root, name, source, dest)
        tpc[(source, dest)] = req["attempts"][-1]["tpc"]
    # the two XRootD servers copied between themselves; the other hops went through us
    assert tpc == {
        ("LOCAL-DISK", "ROOT-A"): False,
        ("ROOT-A", "ROOT-B"): True,
        ("ROOT-B", "S3-C"): False,
        ("S3-C", "LOCAL-SAFE"): False,
    }
    assert pfn_on(lake, "LOCAL-SAFE", name).read_bytes() == data
    on_b = xrootd_server2.root / f"b-{run}" / SCOPE / name
    assert on_b.read_bytes() == data
    got = seaweedfs.client().get_object(Bucket=bucket, Key=f"{SCOPE}/{name}")["Body"].read()
    assert got == data


def test_an_unreachable_destination_is_retried_not_lost(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    """Nothing listens on the destination's port: the attempt fails as recoverable
    (ConnectionError) and the request goes back to the queue with a backoff."""
    from tests.servers import free_port

    _rse(
        lake,
        "ROOT-DOWN",
        {
            "scheme": "root",
            "hostname": "127.0.0.1",
            "port": free_port(),
            "prefix": "/down",
            "impl": "rucio.rse.protocols.xrootd.Default",
        },
    )
    name, _ = put("unreachable.bin")
    [rid] = svc.submit(lake, root, {"dids": [{"scope": SCOPE, "name": name}], "rse": "ROOT-DOWN"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        req = svc.get_request(lake, _ADMIN, rid)
        if req["attempts"]:
            break
        time.sleep(0.1)
    first = req["attempts"][0]
    assert first["state"] == "FAILED" and first["recoverable"] is True, first
    assert "ConnectionError" in first["error"] or "connect" in first["error"].lower(), first
    # back in the queue until its backoff (2 s) is over; a loaded machine may read it only
    # once it was claimed again, never FAILED
    assert req["state"] in ("QUEUED", "SUBMITTED"), req
    if req["state"] == "QUEUED":
        assert req["not_before"] is not None and req["not_before"] > first["finished_at"], req
    svc.cancel(lake, root, rid)


def test_wrong_credentials_at_the_destination_fail_clearly(
    lake: Lake,
    root: Caller,
    put: Callable[..., Any],
    worker: TransferWorker,
    seaweedfs: S3Server,  # noqa: F811
) -> None:
    bucket = seaweedfs.new_bucket("denied")
    _rse(
        lake,
        "S3-DENIED",
        {
            "scheme": "s3",
            "hostname": "127.0.0.1",
            "port": seaweedfs.port,
            "prefix": f"/{bucket}",
            "impl": "rucio.rse.protocols.s3.Default",
            "extended_attributes": {
                "fedlake_storage_options": {
                    "access_key": seaweedfs.access_key,
                    "secret_key": "not-the-secret",
                }
            },
        },
    )
    name, _ = put("denied.bin")
    [rid] = svc.submit(lake, root, {"dids": [{"scope": SCOPE, "name": name}], "rse": "S3-DENIED"})
    [req] = wait_for(lake, [rid], timeout=60)
    assert req["state"] == "FAILED", req
    assert "PermissionError" in req["error"], req["error"]
    assert req["attempts"][-1]["recoverable"] is False
    listed = seaweedfs.client().list_objects_v2(Bucket=bucket)
    assert listed.get("KeyCount", 0) == 0  # nothing was left in the bucket
