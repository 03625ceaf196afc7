"""The transfer API (fedlake paths) and RSE distances (Rucio paths) over HTTP: every route,
its bad input, and who may call it. One test runs a real worker to see attempts."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from fedlake.bootstrap import Lake
from fedlake.catalog.models import RSEDistance, TransferLink, TransferRequest, TransferShare
from fedlake.transfers.worker import TransferWorker, WorkerConfig
from tests.helpers import JSON, STREAM, assert_error, log_in, ndjson, one, post

SCOPE = "user.root"
REQUEST_KEYS = {
    "id",
    "scope",
    "name",
    "dest_rse",
    "source_rse",
    "rule_id",
    "account",
    "activity",
    "priority",
    "state",
    "bytes",
    "adler32",
    "md5",
    "attempt",
    "max_attempts",
    "error",
    "not_before",
    "lease_owner",
    "lease_expires",
    "created_at",
    "updated_at",
    "submitted_at",
    "finished_at",
}


def register(api: TestClient, name: str, nbytes: int = 10) -> None:
    """A file in the catalogue with an AVAILABLE replica on LOCAL-DISK (no bytes stored)."""
    data = b"t" * nbytes
    r = post(
        api,
        "/replicas",
        {
            "rse": "LOCAL-DISK",
            "files": [
                {
                    "scope": SCOPE,
                    "name": name,
                    "bytes": nbytes,
                    "adler32": f"{zlib.adler32(data):08x}",
                }
            ],
        },
    )
    assert r.status_code == 201, r.text


def store(api: TestClient, name: str, data: bytes) -> None:
    """A file with real bytes on LOCAL-DISK (through PUT /files)."""
    r = api.put(
        f"/files/{SCOPE}/{name}",
        params={"rse": "LOCAL-DISK"},
        content=data,
        headers={"X-Fedlake-Adler32": f"{zlib.adler32(data):08x}"},
    )
    assert r.status_code == 201, r.text


def submit(api: TestClient, names: list[str], rse: str = "LOCAL-SAFE", **kw: Any) -> list[int]:
    body = {"dids": [{"scope": SCOPE, "name": n} for n in names], "rse": rse, **kw}
    r = post(api, "/transfers/", body)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == JSON
    ids = r.json()["request_ids"]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    return list(ids)


def make_user(api: TestClient, account: str) -> TestClient:
    """A non-admin account with a userpass identity; a client logged in as it."""
    password = f"{account}-password"
    assert post(api, f"/accounts/{account}", {"type": "USER"}).status_code == 201
    r = post(
        api,
        f"/accounts/{account}/identities",
        {"identity": account, "authtype": "USERPASS", "password": password},
    )
    assert r.status_code == 201, r.text
    user = TestClient(api.app, raise_server_exceptions=False)
    log_in(user, account, password)
    return user


def count(lake: Lake, model: Any) -> int:
    with lake.db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# --- submit, list, show ------------------------------------------------------------------


def test_submit_list_and_show(api: TestClient) -> None:
    for n in ("a1", "a2", "a3"):
        register(api, n, 10)
    assert post(api, f"/dids/{SCOPE}/ds", {"type": "DATASET"}).status_code == 201
    r = post(api, f"/dids/{SCOPE}/ds/dids", {"dids": [{"scope": SCOPE, "name": "a3"}]})
    assert r.status_code == 201, r.text
    first, second = submit(api, ["a1", "a2"], activity="express", priority=5, max_attempts=2)
    # a dataset is its files; a file already queued to the same RSE is the same request
    [third] = submit(api, ["ds"])
    assert submit(api, ["a1"]) == [first]
    listed = ndjson(api.get("/transfers/"))
    assert [r["id"] for r in listed] == [third, second, first]  # newest first
    assert set(listed[0]) >= REQUEST_KEYS
    assert {r["state"] for r in listed} == {"QUEUED"}
    assert listed[2]["activity"] == "express" and listed[2]["priority"] == 5
    assert listed[2]["max_attempts"] == 2 and listed[2]["dest_rse"] == "LOCAL-SAFE"
    assert listed[2]["account"] == "root" and listed[2]["bytes"] == 10
    assert listed[0]["activity"] == "default" and listed[0]["priority"] == 3
    # filters
    assert ndjson(api.get("/transfers", params={"state": "DONE"})) == []
    assert len(ndjson(api.get("/transfers/", params={"state": "QUEUED,FAILED"}))) == 3
    two = api.get("/transfers/?state=done&state=q")  # repeated, case and letter codes
    assert len(ndjson(two)) == 3
    by_name = ndjson(api.get("/transfers/", params={"scope": SCOPE, "name": "a2"}))
    assert [r["id"] for r in by_name] == [second]
    assert len(ndjson(api.get("/transfers/", params={"rse": "LOCAL-SAFE"}))) == 3
    assert ndjson(api.get("/transfers/", params={"rse": "LOCAL-BUFFER"})) == []
    assert [r["id"] for r in ndjson(api.get("/transfers/", params={"limit": "1"}))] == [third]
    # one request
    req = one(api.get(f"/transfers/{first}"))
    assert set(req) >= REQUEST_KEYS | {"attempts"}
    assert req["id"] == first and req["attempts"] == [] and req["name"] == "a1"
    assert req["created_at"].endswith(" UTC")


def test_submit_bad_input(api: TestClient, lake: Lake) -> None:
    register(api, "b1")
    good = {"dids": [{"scope": SCOPE, "name": "b1"}], "rse": "LOCAL-SAFE"}
    cases: list[tuple[Any, int, str, str]] = [
        (None, 400, "InvalidObject", "JSON body"),
        ("{not json", 400, "InvalidObject", "malformed JSON"),
        ([good], 400, "InvalidObject", "JSON object"),
        ({"rse": "LOCAL-SAFE"}, 400, "InvalidObject", "dids"),
        ({**good, "dids": []}, 400, "InvalidObject", "at least one DID"),
        ({**good, "dids": "user.root:b1"}, 400, "InvalidObject", "dids"),
        ({**good, "dids": [{"scope": SCOPE}]}, 400, "InvalidObject", "'name'"),
        ({**good, "dids": [{"scope": SCOPE, "name": "a/b"}]}, 400, "InvalidObject", "a/b"),
        ({**good, "rse": None}, 400, "InvalidObject", "'rse'"),
        ({**good, "rse": "not an rse"}, 400, "InvalidObject", "not an rse"),
        ({**good, "rse": "NOWHERE"}, 404, "RSENotFound", "NOWHERE"),
        ({**good, "priority": 9}, 400, "InvalidObject", "priority"),
        ({**good, "priority": "high"}, 400, "InvalidObject", "priority"),
        ({**good, "max_attempts": 0}, 400, "InvalidObject", "max_attempts"),
        ({**good, "activity": "x" * 51}, 400, "InvalidObject", "activity"),
        ({**good, "verify_source": "yes"}, 400, "InvalidObject", "verify_source"),
        ({**good, "priorty": 4}, 400, "InvalidObject", "priorty"),
        ({**good, "source_rse_expression": "LOCAL-DISK|("}, 400, "InvalidRSEExpression", ""),
        (
            {**good, "dids": [{"scope": SCOPE, "name": "ghost"}]},
            404,
            "DataIdentifierNotFound",
            "ghost",
        ),
    ]
    for body, status, cls, words in cases:
        content = body if isinstance(body, str) else (b"" if body is None else json.dumps(body))
        r = api.post("/transfers/", content=content)
        msg = assert_error(r, status, cls)
        assert words in msg, (body, msg)
    assert count(lake, TransferRequest) == 0


def test_list_bad_filters(api: TestClient) -> None:
    cases = [
        ("state=RUNNING", "RUNNING"),
        ("state=QUEUED,NOPE", "NOPE"),
        ("colour=blue", "colour"),
        ("limit=many", "limit"),
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("scope=bad%20scope", "bad scope"),
        ("name=a%2Fb", "a/b"),
        ("rule_id=42", "rule_id"),
        ("rse=LOCAL-SAFE&rse=LOCAL-DISK", "once"),
        ("rse=lower%20case", "lower case"),
    ]
    for query, words in cases:
        msg = assert_error(api.get(f"/transfers/?{query}"), 400)
        assert words in msg, (query, msg)
    assert_error(api.get("/transfers/?rse=NOWHERE"), 404, "RSENotFound")


# --- one request: show, cancel, retry ------------------------------------------------------


def test_bad_and_unknown_ids(api: TestClient) -> None:
    for bad in ("abc", "0", "-1", "1.5", "1e3", str(2**63), "%201", "0x1F"):
        for method, path in (
            ("GET", f"/transfers/{bad}"),
            ("DELETE", f"/transfers/{bad}"),
            ("POST", f"/transfers/{bad}/retry"),
        ):
            msg = assert_error(api.request(method, path), 400, "InvalidObject")
            assert "positive integer" in msg, (method, path, msg)
    assert_error(api.get("/transfers/4242"), 404, "RequestNotFound")
    assert_error(api.delete("/transfers/4242"), 404, "RequestNotFound")
    assert_error(api.post("/transfers/4242/retry"), 404, "RequestNotFound")


def test_cancel_and_retry(api: TestClient, lake: Lake) -> None:
    register(api, "c1")
    [rid] = submit(api, ["c1"])
    msg = assert_error(api.post(f"/transfers/{rid}/retry"), 400, "InvalidObject")
    assert "QUEUED" in msg
    r = api.delete(f"/transfers/{rid}")
    assert r.status_code == 200, r.text
    req = one(api.get(f"/transfers/{rid}"))
    assert req["state"] == "CANCELLED" and req["finished_at"].endswith(" UTC")
    assert "cancelled" in req["error"]
    msg = assert_error(api.delete(f"/transfers/{rid}"), 400, "InvalidObject")
    assert "CANCELLED" in msg
    r = api.post(f"/transfers/{rid}/retry")
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == JSON
    new = r.json()["request_id"]
    assert isinstance(new, int) and new != rid
    assert one(api.get(f"/transfers/{new}"))["state"] == "QUEUED"
    assert one(api.get(f"/transfers/{rid}"))["state"] == "CANCELLED"
    states = one(api.get("/transfers/summary"))["states"]
    assert states == {"CANCELLED": 1, "QUEUED": 1}
    assert count(lake, TransferRequest) == 2


# --- summary, links, shares ------------------------------------------------------------------


def test_summary_and_links(api: TestClient, lake: Lake) -> None:
    assert one(api.get("/transfers/summary")) == {"states": {}, "links": []}
    assert one(api.get("/transfers/links")) == []
    r = api.put(
        "/transfers/links/LOCAL-DISK/LOCAL-SAFE",
        content=json.dumps({"max_active": 5, "optimizer": False}),
    )
    assert r.status_code == 200, r.text
    r = api.put("/transfers/links/LOCAL-DISK/LOCAL-TAPE", content=json.dumps({"initial": 3}))
    assert r.status_code == 200, r.text
    links = one(api.get("/transfers/links/"))
    assert [(lk["source_rse"], lk["dest_rse"]) for lk in links] == [
        ("LOCAL-DISK", "LOCAL-SAFE"),
        ("LOCAL-DISK", "LOCAL-TAPE"),
    ]
    fixed, tuned = links
    assert (fixed["max_active"], fixed["optimizer"], fixed["optimal_active"]) == (5, False, 5)
    assert (tuned["max_active"], tuned["optimizer"], tuned["optimal_active"]) == (None, True, 3)
    assert fixed["active"] == 0 and fixed["success_rate"] == 1.0
    register(api, "s1")
    submit(api, ["s1"])
    summary = one(api.get("/transfers/summary"))
    assert summary == {"states": {"QUEUED": 1}, "links": links}
    # bad link settings
    url = "/transfers/links/LOCAL-DISK/LOCAL-SAFE"
    cases: list[tuple[str, Any, int, str]] = [
        (url, None, 400, "JSON body"),
        (url, "[1]", 400, "JSON object"),
        (url, {"max_active": 0}, 400, "max_active"),
        (url, {"max_active": "ten"}, 400, "max_active"),
        (url, {"optimizer": "yes"}, 400, "optimizer"),
        (url, {"optimizer": False}, 400, "fixed max_active"),
        (url, {"initial": 0}, 400, "initial"),
        (url, {"max_active": 5, "speed": 1}, 400, "speed"),
        ("/transfers/links/LOCAL-DISK/LOCAL-DISK", {"max_active": 5}, 400, "different"),
        ("/transfers/links/LOCAL-DISK/NOWHERE", {"max_active": 5}, 404, "NOWHERE"),
        ("/transfers/links/bad%20rse/LOCAL-SAFE", {"max_active": 5}, 400, "bad rse"),
    ]
    for path, body, status, words in cases:
        content = body if isinstance(body, str) else (b"" if body is None else json.dumps(body))
        msg = assert_error(api.put(path, content=content), status)
        assert words in msg, (path, body, msg)
    assert one(api.get("/transfers/links"))[0]["max_active"] == 5
    assert count(lake, TransferLink) == 2


def test_shares(api: TestClient, lake: Lake) -> None:
    assert one(api.get("/transfers/shares")) == {}
    for activity, weight in (("express", 3), ("User Subscriptions", 0.5), ("a/b", 1)):
        path = "/transfers/shares/" + activity.replace(" ", "%20").replace("/", "%2F")
        r = api.put(path, content=json.dumps({"weight": weight}))
        assert r.status_code == 200, r.text
    assert one(api.get("/transfers/shares/")) == {
        "express": 3.0,
        "User Subscriptions": 0.5,
        "a/b": 1.0,
    }
    r = api.put("/transfers/shares/express", content=json.dumps({"weight": None}))
    assert r.status_code == 200, r.text
    assert "express" not in one(api.get("/transfers/shares"))
    cases: list[tuple[str, Any, str]] = [
        ("express", {"weight": 0}, "positive"),
        ("express", {"weight": -2}, "positive"),
        ("express", {"weight": "3"}, "positive"),
        ("express", {"weight": True}, "positive"),
        ("express", {}, "weight"),
        ("express", {"weight": 1, "extra": 2}, "weight"),
        ("express", None, "JSON body"),
        ("x" * 51, {"weight": 1}, "activity"),
        ("a/b", {"weight": 1}, "activity"),
        ("", {"weight": 1}, "activity"),
    ]
    for activity, body, words in cases:
        content = b"" if body is None else json.dumps(body)
        msg = assert_error(api.put(f"/transfers/shares/{activity}", content=content), 400)
        assert words in msg, (activity, body, msg)
    assert count(lake, TransferShare) == 2


# --- distances (Rucio paths) ---------------------------------------------------------------


def test_distances(api: TestClient, lake: Lake) -> None:
    path = "/rses/LOCAL-DISK/distances/LOCAL-SAFE"
    back = "/rses/LOCAL-SAFE/distances/LOCAL-DISK"
    assert one(api.get(path)) == []
    r = post(api, path, {"distance": 3, "bidirectional": False})
    assert r.status_code == 201, r.text
    [d] = one(api.get(path))
    disk, safe = one(api.get("/rses/LOCAL-DISK"))["id"], one(api.get("/rses/LOCAL-SAFE"))["id"]
    assert d == {
        "src_rse_id": disk,
        "src_rse": "LOCAL-DISK",
        "dest_rse_id": safe,
        "dest_rse": "LOCAL-SAFE",
        "distance": 3,
        "ranking": 3,
    }
    assert one(api.get(back)) == []
    msg = assert_error(post(api, path, {"distance": 4}), 409, "Duplicate")
    assert "PUT" in msg
    r = api.put(path, content=json.dumps({"distance": 7, "bidirectional": False}))
    assert r.status_code == 200, r.text
    assert one(api.get(path))[0]["distance"] == 7
    # as in Rucio, an update does not create a missing distance
    r = api.put(back, content=json.dumps({"distance": 9}))
    assert r.status_code == 200, r.text
    assert one(api.get(back)) == []
    # bidirectional: both ways, refused as a whole when one exists
    r = post(api, "/rses/LOCAL-DISK/distances/LOCAL-TAPE", {"distance": 1, "bidirectional": True})
    assert r.status_code == 201, r.text
    assert one(api.get("/rses/LOCAL-TAPE/distances/LOCAL-DISK"))[0]["distance"] == 1
    assert_error(post(api, back, {"distance": 2, "bidirectional": True}), 409, "Duplicate")
    assert one(api.get(back)) == []
    r = api.put(path, content=json.dumps({"distance": 5, "bidirectional": True}))
    assert r.status_code == 200, r.text
    assert one(api.get(path))[0]["distance"] == 5 and one(api.get(back)) == []
    # the legacy name
    r = post(api, back, {"ranking": 6})
    assert r.status_code == 201, r.text
    assert one(api.get(back))[0]["distance"] == 6
    # delete (the rucio client sends bidirectional=False as a query parameter)
    r = api.delete(back, params={"bidirectional": "False"})
    assert r.status_code == 200, r.text
    assert one(api.get(back)) == [] and one(api.get(path))[0]["distance"] == 5
    r = api.delete("/rses/LOCAL-DISK/distances/LOCAL-TAPE", params={"bidirectional": "True"})
    assert r.status_code == 200, r.text
    assert one(api.get("/rses/LOCAL-TAPE/distances/LOCAL-DISK")) == []
    assert count(lake, RSEDistance) == 1
    # bad input
    cases: list[tuple[str, str, Any, int, str]] = [
        ("POST", back, {"distance": -1}, 400, "distance"),
        ("POST", back, {"distance": "3"}, 400, "distance"),
        ("POST", back, {"distance": 2.5}, 400, "distance"),
        ("POST", back, {"distance": True}, 400, "distance"),
        ("POST", back, {}, 400, "distance"),
        ("POST", back, {"distance": 1, "bidirectional": "no"}, 400, "bidirectional"),
        ("POST", back, {"distance": 1, "hops": 2}, 400, "hops"),
        ("POST", back, None, 400, "JSON body"),
        ("PUT", back, {"distance": None}, 400, "distance"),
        ("POST", "/rses/LOCAL-DISK/distances/LOCAL-DISK", {"distance": 1}, 400, "different"),
        ("POST", "/rses/LOCAL-DISK/distances/NOWHERE", {"distance": 1}, 404, "NOWHERE"),
        ("GET", "/rses/NOWHERE/distances/LOCAL-DISK", None, 404, "NOWHERE"),
        ("GET", "/rses/bad%20rse/distances/LOCAL-DISK", None, 400, "bad rse"),
        ("DELETE", back + "?bidirectional=maybe", None, 400, "bidirectional"),
    ]
    for method, url, body, status, words in cases:
        content = b"" if body is None else json.dumps(body)
        msg = assert_error(api.request(method, url, content=content), status)
        assert words in msg, (method, url, body, msg)
    assert count(lake, RSEDistance) == 1


# --- who may call what ---------------------------------------------------------------------

READS = [
    ("GET", "/transfers/"),
    ("GET", "/transfers/summary"),
    ("GET", "/transfers/links"),
    ("GET", "/transfers/shares"),
    ("GET", "/transfers/1"),
    ("GET", "/rses/LOCAL-DISK/distances/LOCAL-SAFE"),
]
WRITES: list[tuple[str, str, Any]] = [
    ("POST", "/transfers/", {"dids": [{"scope": SCOPE, "name": "p1"}], "rse": "LOCAL-SAFE"}),
    ("DELETE", "/transfers/1", None),
    ("POST", "/transfers/1/retry", None),
    ("PUT", "/transfers/links/LOCAL-DISK/LOCAL-SAFE", {"max_active": 3}),
    ("PUT", "/transfers/shares/express", {"weight": 2}),
    ("POST", "/rses/LOCAL-DISK/distances/LOCAL-SAFE", {"distance": 1}),
    ("PUT", "/rses/LOCAL-DISK/distances/LOCAL-SAFE", {"distance": 1}),
    ("DELETE", "/rses/LOCAL-DISK/distances/LOCAL-SAFE", None),
]


def test_anonymous_callers_are_refused(api: TestClient) -> None:
    anonymous = TestClient(api.app, raise_server_exceptions=False)
    for method, path in READS:
        assert_error(anonymous.request(method, path), 401, "CannotAuthenticate")
    for method, path, body in WRITES:
        content = b"" if body is None else json.dumps(body)
        assert_error(anonymous.request(method, path, content=content), 401, "CannotAuthenticate")


def test_non_admins_read_but_do_not_change(api: TestClient, lake: Lake) -> None:
    register(api, "p1")
    [rid] = submit(api, ["p1"])
    assert rid == 1
    alice = make_user(api, "alice")
    for method, path in READS:
        r = alice.request(method, path)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-type"] in (JSON, STREAM)
    for method, path, body in WRITES:
        content = b"" if body is None else json.dumps(body)
        # the project's error table sends AccessDenied as 401 (as Rucio does), not 403
        msg = assert_error(alice.request(method, path, content=content), 401, "AccessDenied")
        assert "alice" in msg and "admin" in msg, (path, msg)
    assert one(api.get(f"/transfers/{rid}"))["state"] == "QUEUED"
    assert count(lake, TransferRequest) == 1
    assert count(lake, TransferLink) == count(lake, TransferShare) == 0
    assert count(lake, RSEDistance) == 0


# --- with a worker: attempts as the API shows them -----------------------------------------


@pytest.fixture
def worker(lake: Lake) -> Iterator[TransferWorker]:
    w = TransferWorker(
        lake.db,
        WorkerConfig(threads=4, batch=10, lease=30, idle_poll=0.1, stage_poll=0.1, refresh=0),
    )
    w.start()
    yield w
    w.stop(timeout=5)


def wait_finished(api: TestClient, ids: list[int], timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        got = [one(api.get(f"/transfers/{i}")) for i in ids]
        if all(g["state"] not in ("QUEUED", "SUBMITTED", "WAITING") for g in got):
            return got
        assert time.monotonic() < deadline, [(g["id"], g["state"]) for g in got]
        time.sleep(0.05)


def test_attempts_of_a_copy_and_of_a_lost_source(api: TestClient, worker: TransferWorker) -> None:
    data = b"real bytes\n" * 100
    store(api, "w1", data)
    register(api, "lost")  # catalogued on LOCAL-DISK, but no bytes there
    ok, lost = submit(api, ["w1", "lost"])
    done, failed = wait_finished(api, [ok, lost])
    assert done["state"] == "DONE" and done["source_rse"] == "LOCAL-DISK"
    [attempt] = done["attempts"]
    assert attempt["state"] == "DONE" and attempt["bytes"] == len(data)
    assert attempt["source_rse"] == "LOCAL-DISK" and attempt["worker"] == worker.owner
    assert attempt["finished_at"].endswith(" UTC") and attempt["error"] is None
    assert failed["state"] == "NO_SOURCES", failed
    [attempt] = failed["attempts"]
    assert attempt["state"] == "FAILED" and "FileNotFoundError" in attempt["error"]
    assert attempt["recoverable"] is False
    # the copy is there, and listed as a replica of LOCAL-SAFE
    r = api.get(f"/replicas/{SCOPE}/w1")
    assert "LOCAL-SAFE" in json.dumps(ndjson(r))
    # a retry runs again (and finds no source: the lost replica was marked BAD)
    r = api.post(f"/transfers/{lost}/retry")
    assert r.status_code == 201, r.text
    [again] = wait_finished(api, [r.json()["request_id"]])
    assert again["state"] == "NO_SOURCES" and again["attempts"] == []
    states = one(api.get("/transfers/summary"))["states"]
    assert states == {"DONE": 1, "NO_SOURCES": 2}
    listed = ndjson(api.get("/transfers/", params={"state": "NO_SOURCES"}))
    assert [r["id"] for r in listed] == [again["id"], lost]


def test_unknown_methods_and_paths(api: TestClient) -> None:
    assert_error(api.patch("/transfers/1"), 405, "MethodNotAllowed")
    msg = assert_error(api.get("/transfers/1/attempts"), 404)
    assert "/transfers/1/attempts" in msg
