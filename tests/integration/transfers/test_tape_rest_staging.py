"""The engine stages a source on a tape RSE served over HTTP by ``fedlake se serve --tape``
(WLCG Tape REST API, the plugin's ``tape_rest`` option), then copies it to a POSIX RSE and
verifies it; a file the tape system does not hold is a missing source. Files are uploaded
through the RSE's own protocol: in tape mode they land on tape only. SQLite and
PostgreSQL; the SE is a real subprocess, anonymous, plain HTTP.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import rses as rse_core
from fedlake.domain.paths import build_pfn, lfn2path
from fedlake.storage import get_storage
from tests.integration.transfers.conftest import SCOPE
from tests.integration.transfers.test_engine import pfn_on, replica_state, submit, wait_for
from tests.servers.fedlake_se import SEServer, running_se

TAPE = """
[tape]
recall_latency = 0.5
recall_throughput = 1e9
"""
OPTIONS = {"tape_rest": True, "timeout": 30}
pytestmark = pytest.mark.usefixtures("worker")  # the engine (tests/integration/transfers)


@pytest.fixture(scope="module")
def tape_se() -> Iterator[SEServer]:
    with running_se(anonymous=True, config=TAPE) as server:
        yield server


@pytest.fixture
def tape_rse(lake: Lake, tape_se: SEServer) -> str:
    """SE-TAPE: a TAPE RSE whose http protocol stages through the Tape REST API; returns
    its prefix (one per test: the SE outlives the catalogue)."""
    prefix = f"/archive-{secrets.token_hex(3)}"
    with lake.db.write() as s:
        row = rse_core.add_rse(
            s, "SE-TAPE", deterministic=True, lfn2pfn_algorithm="identity", rse_type="TAPE"
        )
        rse_core.add_protocol(
            s,
            row,
            {
                "scheme": "http",
                "hostname": "127.0.0.1",
                "port": tape_se.port,
                "prefix": prefix,
                "impl": "rucio.rse.protocols.gfal.Default",
                "extended_attributes": {"fedlake_storage_options": OPTIONS},
                "domains": {"wan": {"read": 1, "write": 1, "delete": 1}},
            },
        )
    return prefix


def url_of(se: SEServer, prefix: str, name: str) -> str:
    return build_pfn("http", "127.0.0.1", se.port, prefix, lfn2path("identity", SCOPE, name))


def pinned_until(se: SEServer, url: str) -> float | None:
    path = url.partition("://")[2].partition("/")[2]
    with sqlite3.connect(se.root / "state.sqlite") as con:
        row = con.execute("SELECT pinned_until FROM online WHERE path = ?", (path,)).fetchone()
    return None if row is None else float(row[0])


def test_a_tape_source_over_http_is_staged_copied_and_verified(
    lake: Lake, root: Caller, put: Callable[..., Any], tape_se: SEServer, tape_rse: str
) -> None:
    _, data = put("raw.fits", secrets.token_bytes(200_000), rse="SE-TAPE")  # on tape only
    url = url_of(tape_se, tape_rse, "raw.fits")
    plugin: Any = get_storage("http", **OPTIONS)
    assert not plugin.is_online(url)
    [rid] = submit(lake, root, ["raw.fits"], verify_source=True)
    [req] = wait_for(lake, [rid], timeout=60)
    assert req["state"] == "DONE", req
    assert req["source_rse"] == "SE-TAPE"
    states = [a["state"] for a in req["attempts"]]
    assert states[0] == "WAITING" and states[-1] == "DONE", states
    assert req["attempt"] == 1  # staging polls are not failed attempts
    assert pfn_on(lake, "LOCAL-SAFE", "raw.fits").read_bytes() == data
    assert replica_state(lake, "LOCAL-SAFE", "raw.fits") == "AVAILABLE"
    requests = [p.read_text() for p in (tape_se.root / "stage-requests").glob("*.json")]
    assert sum(f'"{tape_rse}/{SCOPE}/raw.fits"' in r for r in requests) == 1  # staged once
    assert pinned_until(tape_se, url) == 0  # released after the copy, still online
    assert plugin.is_online(url)


def test_a_file_the_tape_does_not_hold_is_a_missing_source(
    lake: Lake, root: Caller, put: Callable[..., Any], tape_se: SEServer, tape_rse: str
) -> None:
    put("lost.fits", rse="SE-TAPE")
    tape_se.local(url_of(tape_se, f"/tape{tape_rse}", "lost.fits")).unlink()  # lost
    [rid] = submit(lake, root, ["lost.fits"])
    [req] = wait_for(lake, [rid], timeout=60)
    assert req["state"] == "NO_SOURCES", req
    (attempt,) = req["attempts"]
    assert "FileNotFoundError" in attempt["error"]
    assert "unknown to the tape system" in attempt["error"]
    assert attempt["recoverable"] is False
    assert replica_state(lake, "SE-TAPE", "lost.fits") == "BAD"
    assert replica_state(lake, "LOCAL-SAFE", "lost.fits") is None
