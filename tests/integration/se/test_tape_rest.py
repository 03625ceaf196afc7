"""Tape mode of ``fedlake se serve`` and its WLCG Tape REST API, against real subprocesses.

Three servers: ``fast`` (anonymous, 2 workers, recalls due after 0.1 s, a 3000-byte disk
buffer so that a pin can be seen holding room), ``slow`` (anonymous, recalls due after
60 s: cancel and delete always land before the recall), and ``secured`` (a real token
issuer, capability scopes and area policies). Stage requests are polled, never waited on
with fixed sleeps.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.issuer_app import WLCG_ANY, TestIssuer, run_issuer
from tests.servers import require_program
from tests.servers.fedlake_se import SEServer, running_se

FAST = """
[tape]
recall_latency = 0.1
recall_throughput = 1e9
buffer_bytes = 3000
sitename = "FEDLAKE-TEST"
description = "tape mode under test"
"""

SLOW = """
[tape]
recall_latency = 60
"""

SECURED = """
[[issuers]]
issuer = "{issuer}"
audiences = ["{aud}"]

[[areas]]
path = "/cms"
policies = [ {{ who = "/cms", actions = ["read"] }} ]

[tape]
recall_latency = 60
"""


@pytest.fixture(scope="module")
def fast() -> Iterator[SEServer]:
    with running_se(anonymous=True, config=FAST, workers=2) as server:
        yield server


@pytest.fixture(scope="module")
def slow() -> Iterator[SEServer]:
    with running_se(anonymous=True, config=SLOW) as server:
        yield server


@pytest.fixture(scope="module")
def issuer() -> Iterator[TestIssuer]:
    with run_issuer() as iss:
        yield iss


@pytest.fixture(scope="module")
def secured(issuer: TestIssuer) -> Iterator[SEServer]:
    config = SECURED.format(issuer=issuer.url, aud=WLCG_ANY)
    with running_se(config=config) as server:
        namespace = server.root / "tape" / "cms"  # files archived before: on tape only
        namespace.mkdir(parents=True)
        (namespace / "a.root").write_bytes(b"cms data")
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def put(http: httpx.Client, se: SEServer, path: str, data: bytes) -> None:
    """Upload through the SE (MKCOL of the parent first): the file is on tape only."""
    parent = path.rsplit("/", 1)[0]
    if parent:
        assert http.request("MKCOL", se.url(parent)).status_code in (201, 405)
    assert http.put(se.url(path), content=data).status_code == 201


def stage(http: httpx.Client, se: SEServer, *files: dict[str, Any]) -> str:
    r = http.post(se.url("/api/v1/stage"), json={"files": list(files)})
    assert r.status_code == 201, r.text
    request_id: str = r.json()["requestId"]
    assert r.headers["location"] == se.url(f"/api/v1/stage/{request_id}")
    return request_id


def status(http: httpx.Client, se: SEServer, request_id: str) -> dict[str, Any]:
    r = http.get(se.url(f"/api/v1/stage/{request_id}"))
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    assert doc["id"] == request_id
    return doc


def poll(http: httpx.Client, se: SEServer, request_id: str, timeout: float = 20) -> dict[str, Any]:
    """The request once it has completed (every file final)."""
    deadline = time.monotonic() + timeout
    while True:
        doc = status(http, se, request_id)
        if "completedAt" in doc or time.monotonic() > deadline:
            return doc
        time.sleep(0.05)


def states(doc: dict[str, Any]) -> dict[str, str]:
    return {f["path"]: f["state"] for f in doc["files"]}


def locality(http: httpx.Client, se: SEServer, *paths: str) -> list[dict[str, str]]:
    r = http.post(se.url("/api/v1/archiveinfo"), json={"paths": list(paths)})
    assert r.status_code == 200, r.text
    out: list[dict[str, str]] = r.json()
    return out


# --- discovery and the happy path -----------------------------------------------------------


def test_discovery(fast: SEServer, http: httpx.Client) -> None:
    r = http.get(fast.url("/.well-known/wlcg-tape-rest-api"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "sitename": "FEDLAKE-TEST",
        "description": "tape mode under test",
        "endpoints": [{"uri": fast.url("/api/v1"), "version": "v1", "metadata": {}}],
    }
    assert http.post(fast.url("/.well-known/wlcg-tape-rest-api")).status_code == 405


def test_stage_poll_then_read(fast: SEServer, http: httpx.Client) -> None:
    data = os.urandom(100)
    put(http, fast, "/run1/f.raw", data)
    r = http.get(fast.url("/run1/f.raw"))
    assert r.status_code == 503 and "not online" in r.text and "/api/v1/stage" in r.text
    assert http.head(fast.url("/run1/f.raw")).headers["content-length"] == "100"  # metadata
    assert locality(http, fast, "/run1/f.raw") == [{"path": "/run1/f.raw", "locality": "TAPE"}]
    request_id = stage(http, fast, {"path": "/run1/f.raw", "diskLifetime": "PT1H"})
    doc = poll(http, fast, request_id)  # the polls land on either of the two workers
    (entry,) = doc["files"]
    assert entry["state"] == "COMPLETED" and entry["onDisk"] is True
    assert doc["createdAt"] <= entry["startedAt"] <= entry["finishedAt"] == doc["completedAt"]
    assert abs(doc["createdAt"] - time.time()) < 60
    r = http.get(fast.url("/run1/f.raw"))
    assert (r.status_code, r.content) == (200, data)
    assert locality(http, fast, "/run1/f.raw", "/run1", "/run1/none") == [
        {"path": "/run1/f.raw", "locality": "DISK_AND_TAPE"},
        {"path": "/run1", "error": "is a directory, not a file"},
        {"path": "/run1/none", "error": "file not found"},
    ]
    assert status(http, fast, request_id) == doc  # the final states stay as they were


def test_missing_files_fail_alone(fast: SEServer, http: httpx.Client) -> None:
    put(http, fast, "/run2/ok.raw", b"x" * 50)
    request_id = stage(http, fast, {"path": "/run2/ok.raw"}, {"path": "/run2/missing.raw"})
    doc = poll(http, fast, request_id)
    assert states(doc) == {"/run2/ok.raw": "COMPLETED", "/run2/missing.raw": "FAILED"}
    assert doc["files"][1]["error"] == "file not found"


def test_release_lets_the_pinned_copy_go(fast: SEServer, http: httpx.Client) -> None:
    """Two 2000-byte files in a 3000-byte buffer: the second recall waits for room
    until the first file is released."""
    put(http, fast, "/big/a.raw", os.urandom(2000))
    put(http, fast, "/big/b.raw", os.urandom(2000))
    first = stage(http, fast, {"path": "/big/a.raw"})
    assert states(poll(http, fast, first)) == {"/big/a.raw": "COMPLETED"}
    second = stage(http, fast, {"path": "/big/b.raw"})
    deadline = time.monotonic() + 0.5  # five times the recall latency: b stays waiting
    while time.monotonic() < deadline:
        assert states(status(http, fast, second)) == {"/big/b.raw": "STARTED"}
        time.sleep(0.05)
    assert http.get(fast.url("/big/b.raw")).status_code == 503
    r = http.post(fast.url(f"/api/v1/release/{first}"), json={"paths": ["/big/a.raw"]})
    assert r.status_code == 200
    assert states(poll(http, fast, second)) == {"/big/b.raw": "COMPLETED"}
    assert locality(http, fast, "/big/a.raw", "/big/b.raw") == [
        {"path": "/big/a.raw", "locality": "TAPE"},  # evicted to make room for b
        {"path": "/big/b.raw", "locality": "DISK_AND_TAPE"},
    ]
    doc = status(http, fast, first)
    assert doc["files"][0]["state"] == "COMPLETED" and doc["files"][0]["onDisk"] is False
    r = http.post(fast.url(f"/api/v1/release/{second}"), json={"paths": ["/big/b.raw"]})
    assert r.status_code == 200


def gfal(*args: str) -> str:
    """A gfal2 command (scripts/components.d/gfal.sh installs them); its stdout."""
    program = require_program(f"gfal-{args[0]}", "bash scripts/components.d/gfal.sh")
    env = {**os.environ, "GFAL_PYTHONBIN": "/usr/bin/python3"}
    result = subprocess.run(
        [program, *args[1:]], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_gfal2_stages_reads_and_evicts(fast: SEServer, http: httpx.Client) -> None:
    """gfal2's own Tape REST API client: discovery, archiveinfo (user.status), stage and
    poll (bringonline), GET, release (evict with the request id)."""
    put(http, fast, "/gfal/t.raw", b"from tape")
    url = fast.url("/gfal/t.raw")
    assert gfal("xattr", url, "taperestapi.uri").strip() == fast.url("/api/v1")
    assert gfal("xattr", url, "user.status").strip() == "NEARLINE"
    out = gfal("bringonline", "--pin-lifetime", "600", "--polling-timeout", "30", url)
    assert f"{url} READY" in out
    assert gfal("xattr", url, "user.status").strip() == "ONLINE_AND_NEARLINE"
    assert gfal("cat", url) == "from tape"
    (stored,) = [
        p for p in (fast.root / "stage-requests").glob("*.json") if '"/gfal/t.raw"' in p.read_text()
    ]
    gfal("evict", url, stored.stem)
    doc = status(http, fast, stored.stem)
    assert doc["files"][0]["state"] == "COMPLETED"
    assert doc["files"][0]["onDisk"] is True  # unpinned, not evicted: the buffer has room


# --- cancel and delete (recalls never due during the test) ----------------------------------


def test_cancel(slow: SEServer, http: httpx.Client) -> None:
    for name in ("a", "b"):
        put(http, slow, f"/c/{name}", b"data")
    request_id = stage(http, slow, {"path": "/c/a"}, {"path": "/c/b"})
    assert states(status(http, slow, request_id)) == {"/c/a": "STARTED", "/c/b": "STARTED"}
    url = slow.url(f"/api/v1/stage/{request_id}/cancel")
    r = http.post(url, json={"paths": ["/c/a", "/c/other"]})
    assert r.status_code == 400 and "/c/other" in r.json()["detail"]
    assert http.post(url, json={"paths": ["/c/a"]}).status_code == 200
    doc = status(http, slow, request_id)
    assert states(doc) == {"/c/a": "CANCELLED", "/c/b": "STARTED"}
    assert "finishedAt" in doc["files"][0] and "completedAt" not in doc
    assert http.post(url, json={"paths": ["/c/b"]}).status_code == 200
    doc = status(http, slow, request_id)
    assert states(doc) == {"/c/a": "CANCELLED", "/c/b": "CANCELLED"}
    assert "completedAt" in doc


def test_delete(slow: SEServer, http: httpx.Client) -> None:
    put(http, slow, "/d/a", b"data")
    request_id = stage(http, slow, {"path": "/d/a"})
    assert http.delete(slow.url(f"/api/v1/stage/{request_id}")).status_code == 200
    r = http.get(slow.url(f"/api/v1/stage/{request_id}"))
    assert r.status_code == 404
    assert http.delete(slow.url(f"/api/v1/stage/{request_id}")).status_code == 404
    assert not (slow.root / "stage-requests" / f"{request_id}.json").exists()


# --- bad requests ---------------------------------------------------------------------------


def test_unknown_requests_are_404(slow: SEServer, http: httpx.Client) -> None:
    for method, path in [
        ("GET", "/api/v1/stage/3f1c2a5e-0000-4000-8000-000000000000"),
        ("GET", "/api/v1/stage/not-an-id"),
        ("POST", "/api/v1/stage/not-an-id/cancel"),
        ("POST", "/api/v1/release/not-an-id"),
        ("GET", "/api/v1/nothing"),
    ]:
        r = http.request(method, slow.url(path), json={"paths": ["/x"]})
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["status"] == 404 and problem["title"] == "Not Found"
        assert problem["detail"]


def test_bad_bodies_are_400_with_a_reason(slow: SEServer, http: httpx.Client) -> None:
    cases = [
        ("/api/v1/stage", b"{not json", "not valid JSON"),
        ("/api/v1/stage", b'{"paths": ["/x"]}', "'files' must be a non-empty list"),
        ("/api/v1/stage", b'{"files": [{"path": "/x", "diskLifetime": "soon"}]}', "ISO 8601"),
        ("/api/v1/stage", b'{"files": [{"path": "/c/../../etc/passwd"}]}', "climbs up"),
        ("/api/v1/archiveinfo", b'{"paths": ["/../../etc/passwd"]}', "climbs up"),
        ("/api/v1/archiveinfo", b"", "empty"),
    ]
    stored = set((slow.root / "stage-requests").glob("*.json"))
    for path, body, says in cases:
        r = http.post(slow.url(path), content=body)
        assert r.status_code == 400, (path, body)
        assert says in r.json()["detail"], r.text
    assert set((slow.root / "stage-requests").glob("*.json")) == stored  # none was added
    r = http.get(slow.url("/api/v1/stage"))
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def _recalls(state: Path, name: str) -> int:
    """Recalls the tape emulation has recorded for ``name``, read without creating its
    state: it makes its tables on first use, and a refused request may come before any
    (this test alone on a fresh server: the PUT writes the file, not the emulation)."""
    if not state.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"{state.as_uri()}?mode=ro", uri=True)) as con:
        if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'recalls'").fetchone() is None:
            return 0
        (count,) = con.execute("SELECT COUNT(*) FROM recalls WHERE path = ?", (name,)).fetchone()
        return int(count)


def test_a_symbolic_link_out_of_the_root_is_refused(slow: SEServer, http: httpx.Client) -> None:
    (slow.root / "tape" / "escape").symlink_to("/etc/passwd")
    put(http, slow, "/s/first", b"data")
    files = [{"path": "/s/first"}, {"path": "/escape"}]
    r = http.post(slow.url("/api/v1/stage"), json={"files": files})
    assert r.status_code == 403
    assert "outside" in r.json()["detail"]
    assert _recalls(slow.root / "state.sqlite", "s/first") == 0
    r = http.post(slow.url("/api/v1/archiveinfo"), json={"paths": ["/escape"]})
    assert r.status_code == 403


# --- who may stage --------------------------------------------------------------------------


def _bearer(issuer: TestIssuer, **claims: Any) -> dict[str, str]:
    token = issuer.mint("user-" + os.urandom(3).hex(), **claims)
    return {"Authorization": f"Bearer {token}"}


def test_who_may_stage(secured: SEServer, http: httpx.Client, issuer: TestIssuer) -> None:
    body = {"files": [{"path": "/cms/a.root"}]}
    url = secured.url("/api/v1/stage")
    r = http.post(url, json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    reader = _bearer(issuer, scope="storage.read:/cms")
    r = http.post(url, json=body, headers=reader)
    assert r.status_code == 403
    assert "storage.stage on /cms/a.root" in r.json()["detail"]
    r = http.post(
        secured.url("/api/v1/archiveinfo"), json={"paths": ["/cms/a.root"]}, headers=reader
    )
    assert r.json() == [{"path": "/cms/a.root", "locality": "TAPE"}]
    outsider = _bearer(issuer, scope="openid", **{"wlcg.groups": ["/atlas"]})
    assert http.post(url, json=body, headers=outsider).status_code == 403
    stager = _bearer(issuer, scope="storage.stage:/cms")
    r = http.post(url, json=body, headers=stager)
    assert r.status_code == 201
    request_id = r.json()["requestId"]
    member = _bearer(issuer, scope="openid", **{"wlcg.groups": ["/cms"]})  # area policy: read
    assert http.post(url, json=body, headers=member).status_code == 201
    status_url = secured.url(f"/api/v1/stage/{request_id}")
    assert http.get(status_url).status_code == 401
    assert http.get(status_url, headers=reader).status_code == 200
    cancel = secured.url(f"/api/v1/stage/{request_id}/cancel")
    assert http.post(cancel, json={"paths": ["/cms/a.root"]}, headers=reader).status_code == 403
    assert http.post(cancel, json={"paths": ["/cms/a.root"]}, headers=stager).status_code == 200
    assert http.get(secured.url("/cms/a.root"), headers=stager).status_code == 503
