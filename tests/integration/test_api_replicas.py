"""Replicas over the Rucio REST API: registration, states, NDJSON and metalink listings, PFNs."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from sqlalchemy import func, select
from starlette.testclient import TestClient

from fedlake.bootstrap import Lake
from fedlake.catalog.models import DID, Replica
from tests.helpers import assert_error, ndjson, post

SCOPE = "user.root"
STREAM = "application/x-json-stream"
METALINK = "application/metalink4+xml"
NS = "{urn:ietf:params:xml:ns:metalink}"


def file_dict(name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "scope": SCOPE,
        "name": name,
        "bytes": len(data),
        "adler32": f"{zlib.adler32(data):08x}",
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        **extra,
    }


def register(api: TestClient, rse: str, *files: dict[str, Any]) -> None:
    r = post(api, "/replicas", {"rse": rse, "files": list(files), "ignore_availability": True})
    assert r.status_code == 201, r.text


def rucio_hash_path(scope: str, name: str) -> str:
    digest = hashlib.md5(f"{scope}:{name}".encode(), usedforsecurity=False).hexdigest()
    return f"{scope.replace('.', '/')}/{digest[0:2]}/{digest[2:4]}/{name}"


def rse_prefix(lake: Lake, directory: str) -> str:
    return str(Path(lake.settings.data_dir).resolve() / "rses" / directory)


def list_body(*names: str, **extra: Any) -> dict[str, Any]:
    return {
        "dids": [{"scope": SCOPE, "name": n} for n in names],
        "domain": None,
        "ignore_availability": True,
        "all_states": False,
        "client_location": {"ip": "127.0.0.1", "fqdn": "localhost", "site": "ROAMING"},
        "resolve_archives": True,
        "resolve_parents": False,
        **extra,
    }


def test_add_and_list_replica(api: TestClient, lake: Lake) -> None:
    data = b"hello world"
    register(api, "LOCAL-DISK", file_dict("r1", data, meta={"guid": "a" * 32}, state="A"))
    recs = ndjson(post(api, "/replicas/list", list_body("r1")))
    assert len(recs) == 1
    rec = recs[0]
    pfn = f"file://localhost{rse_prefix(lake, 'disk')}/{rucio_hash_path(SCOPE, 'r1')}"
    assert pfn.startswith("file://localhost/") and "/user/root/" in pfn
    assert rec["scope"] == SCOPE and rec["name"] == "r1" and rec["bytes"] == len(data)
    assert rec["adler32"] == f"{zlib.adler32(data):08x}"
    assert rec["md5"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert rec["rses"] == {"LOCAL-DISK": [pfn]}
    assert rec["states"] == {"LOCAL-DISK": "AVAILABLE"}
    meta = rec["pfns"][pfn]
    assert meta["rse"] == "LOCAL-DISK" and meta["type"] == "DISK"
    assert meta["domain"] == "wan" and isinstance(meta["priority"], int)
    assert meta["volatile"] is False and meta["client_extract"] is False
    assert meta["rse_id"]


def test_pfn_matches_lfns2pfns(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-SAFE", file_dict("p1", b"x"))
    rec = ndjson(post(api, "/replicas/list", list_body("p1")))[0]
    r = api.get("/rses/LOCAL-SAFE/lfns2pfns", params={"lfn": f"{SCOPE}:p1", "scheme": "file"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    expected = f"file://localhost{rse_prefix(lake, 'safe')}/{rucio_hash_path(SCOPE, 'p1')}"
    assert r.json() == {f"{SCOPE}:p1": expected}
    assert rec["rses"]["LOCAL-SAFE"] == [expected]


def test_states_and_update(api: TestClient) -> None:
    register(
        api, "LOCAL-DISK", file_dict("u1", b"one", state="C"), file_dict("u2", b"two", state="A")
    )
    # without all_states only AVAILABLE replicas are listed; u1 keeps an empty record
    recs = {r["name"]: r for r in ndjson(post(api, "/replicas/list", list_body("u1", "u2")))}
    assert recs["u1"]["rses"] == {} and recs["u1"]["pfns"] == {}
    assert recs["u2"]["states"] == {"LOCAL-DISK": "AVAILABLE"}
    recs = {
        r["name"]: r
        for r in ndjson(post(api, "/replicas/list", list_body("u1", "u2", all_states=True)))
    }
    assert recs["u1"]["states"] == {"LOCAL-DISK": "COPYING"}
    # PUT /replicas (no content type) → 200
    r = api.put(
        "/replicas",
        content=json.dumps(
            {"rse": "LOCAL-DISK", "files": [{"scope": SCOPE, "name": "u1", "state": "A"}]}
        ),
    )
    assert r.status_code == 200, r.text
    recs = {r["name"]: r for r in ndjson(post(api, "/replicas/list", list_body("u1")))}
    assert recs["u1"]["states"] == {"LOCAL-DISK": "AVAILABLE"}
    r = api.put(
        "/replicas/",
        content=json.dumps(
            {"rse": "LOCAL-DISK", "files": [{"scope": SCOPE, "name": "u2", "state": "UNAVAILABLE"}]}
        ),
    )
    assert r.status_code == 200, r.text
    rec = ndjson(post(api, "/replicas/list", list_body("u2", all_states=True)))[0]
    assert rec["states"] == {"LOCAL-DISK": "UNAVAILABLE"}
    # state of a replica that is not there
    r = api.put(
        "/replicas",
        content=json.dumps(
            {"rse": "LOCAL-SAFE", "files": [{"scope": SCOPE, "name": "u2", "state": "A"}]}
        ),
    )
    assert_error(r, 404, "ReplicaNotFound")
    r = api.put(
        "/replicas",
        content=json.dumps(
            {"rse": "LOCAL-DISK", "files": [{"scope": SCOPE, "name": "u2", "state": "SHINY"}]}
        ),
    )
    assert_error(r, 400, "InvalidObject")


def test_rse_expression_and_schemes(api: TestClient) -> None:
    register(api, "LOCAL-DISK", file_dict("e1", b"e"))
    register(api, "LOCAL-TAPE", file_dict("e1", b"e"))
    rec = ndjson(post(api, "/replicas/list", list_body("e1")))[0]
    assert list(rec["rses"]) == ["LOCAL-DISK", "LOCAL-TAPE"]  # disk before tape
    tape_pfn = rec["rses"]["LOCAL-TAPE"][0]
    assert rec["pfns"][tape_pfn]["type"] == "TAPE"
    rec = ndjson(post(api, "/replicas/list", list_body("e1", rse_expression="istape=true")))[0]
    assert list(rec["rses"]) == ["LOCAL-TAPE"]
    rec = ndjson(post(api, "/replicas/list", list_body("e1", rse_expression="LOCAL-SAFE")))[0]
    assert rec["rses"] == {} and rec["pfns"] == {}
    rec = ndjson(post(api, "/replicas/list", list_body("e1", schemes=["root"])))[0]
    assert rec["pfns"] == {}
    assert rec["states"] == {"LOCAL-DISK": "AVAILABLE", "LOCAL-TAPE": "AVAILABLE"}
    rec = ndjson(post(api, "/replicas/list", list_body("e1", schemes=["file"])))[0]
    assert len(rec["pfns"]) == 2
    assert_error(
        post(api, "/replicas/list", list_body("e1", rse_expression="(((")),
        400,
        "InvalidRSEExpression",
    )


def test_dataset_listing_and_parents(api: TestClient) -> None:
    register(api, "LOCAL-DISK", file_dict("df1", b"1"), file_dict("df2", b"22"))
    assert post(api, f"/dids/{SCOPE}/rds", {"type": "DATASET"}).status_code == 201
    r = post(
        api,
        f"/dids/{SCOPE}/rds/dids",
        {"dids": [{"scope": SCOPE, "name": "df1"}, {"scope": SCOPE, "name": "df2"}]},
    )
    assert r.status_code == 201, r.text
    recs = ndjson(post(api, "/replicas/list", list_body("rds", resolve_parents=True)))
    assert sorted(r["name"] for r in recs) == ["df1", "df2"]
    assert all(r["parents"] == [f"{SCOPE}:rds"] for r in recs)
    # dataset replicas
    rows = ndjson(api.get(f"/replicas/{SCOPE}/rds/datasets"))
    assert len(rows) == 1
    row = rows[0]
    assert row["rse"] == "LOCAL-DISK" and row["length"] == 2 and row["bytes"] == 3
    assert row["available_length"] == 2 and row["available_bytes"] == 3
    assert row["state"] == "AVAILABLE"
    bulk = ndjson(post(api, "/replicas/datasets_bulk", {"dids": [{"scope": SCOPE, "name": "rds"}]}))
    assert [b["available_length"] for b in bulk] == [2]
    at_rse = ndjson(api.get("/replicas/rse/LOCAL-DISK"))
    assert [(d["name"], d["available_length"]) for d in at_rse] == [("rds", 2)]


def test_metalink(api: TestClient, lake: Lake) -> None:
    data = b"metalink bytes"
    register(api, "LOCAL-DISK", file_dict("ml1", data))
    assert post(api, f"/dids/{SCOPE}/mlds", {"type": "DATASET"}).status_code == 201
    post(api, f"/dids/{SCOPE}/mlds/dids", {"dids": [{"scope": SCOPE, "name": "ml1"}]})
    r = post(
        api, "/replicas/list", list_body("mlds", resolve_parents=True), headers={"Accept": METALINK}
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == METALINK
    root = ET.fromstring(r.text)
    assert root.tag == f"{NS}metalink"
    files = root.findall(f"{NS}file")
    assert len(files) == 1
    f = files[0]
    assert f.get("name") == "ml1"
    assert f.findtext(f"{NS}identity") == f"{SCOPE}:ml1"
    assert [d.text for d in f.findall(f"{NS}parents/{NS}did")] == [f"{SCOPE}:mlds"]
    hashes = {h.get("type"): h.text for h in f.findall(f"{NS}hash")}
    assert hashes["adler32"] == f"{zlib.adler32(data):08x}"
    assert hashes["md5"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
    assert f.findtext(f"{NS}size") == str(len(data))
    urls = f.findall(f"{NS}url")
    assert len(urls) == 1
    assert urls[0].get("location") == "LOCAL-DISK"
    assert urls[0].get("priority") == "1" and urls[0].get("client_extract") == "false"
    assert urls[0].text == (
        f"file://localhost{rse_prefix(lake, 'disk')}/{rucio_hash_path(SCOPE, 'ml1')}"
    )
    # GET /replicas/{s}/{n} negotiates metalink too
    r = api.get(f"/replicas/{SCOPE}/ml1", headers={"Accept": METALINK})
    assert ET.fromstring(r.text).find(f"{NS}file/{NS}identity") is not None
    register(api, "LOCAL-DISK", file_dict("ml2", b"2", state="C"))
    r = post(api, "/replicas/list", list_body("ml2"), headers={"Accept": METALINK})
    f = ET.fromstring(r.text).find(f"{NS}file")
    assert f is not None and f.findall(f"{NS}url") == []


def test_get_replicas_of_did(api: TestClient) -> None:
    name = "g+1=x@y.root"
    register(api, "LOCAL-DISK", file_dict(name, b"abc", state="C"))
    recs = ndjson(api.get(f"/replicas/{SCOPE}/{quote_plus(name)}"))
    assert len(recs) == 1
    assert recs[0]["name"] == name and recs[0]["bytes"] == 3
    assert recs[0]["states"] == {"LOCAL-DISK": "COPYING"}
    assert_error(api.get(f"/replicas/{SCOPE}/missing"), 404, "DataIdentifierNotFound")


def test_non_deterministic_rse_needs_pfn(api: TestClient, lake: Lake) -> None:
    r = post(api, "/replicas", {"rse": "LOCAL-BUFFER", "files": [file_dict("nd1", b"n")]})
    msg = assert_error(r, 400, "InvalidObject")
    assert "pfn" in msg
    with lake.db.read() as s:
        assert s.get(DID, (SCOPE, "nd1")) is None
    prefix = rse_prefix(lake, "buffer")
    pfn = f"file://localhost{prefix}/some/where/nd1"
    register(api, "LOCAL-BUFFER", file_dict("nd1", b"n", pfn=pfn))
    rec = ndjson(post(api, "/replicas/list", list_body("nd1")))[0]
    assert rec["rses"] == {"LOCAL-BUFFER": [pfn]}
    r = api.get("/rses/LOCAL-BUFFER/lfns2pfns", params={"lfn": f"{SCOPE}:nd1"})
    assert r.json() == {f"{SCOPE}:nd1": pfn}
    # a PFN outside the RSE's protocols is refused
    r = post(
        api,
        "/replicas",
        {
            "rse": "LOCAL-BUFFER",
            "files": [file_dict("nd2", b"m", pfn="file://localhost/elsewhere/nd2")],
        },
    )
    assert_error(r, 400, "InvalidObject")


def test_redirect(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-TAPE", file_dict("rd1", b"r"))
    register(api, "LOCAL-DISK", file_dict("rd1", b"r"))
    r = api.get(f"/redirect/{SCOPE}/rd1", follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == (
        f"file://localhost{rse_prefix(lake, 'disk')}/{rucio_hash_path(SCOPE, 'rd1')}"
    )
    assert_error(
        api.get(f"/redirect/{SCOPE}/nope", follow_redirects=False), 404, "DataIdentifierNotFound"
    )
    register(api, "LOCAL-DISK", file_dict("rd2", b"q", state="C"))
    assert_error(api.get(f"/redirect/{SCOPE}/rd2", follow_redirects=False), 404, "ReplicaNotFound")
    assert_error(post(api, "/replicas/list", list_body("ghost")), 404, "DataIdentifierNotFound")


def test_duplicate_replica_and_mismatch(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-DISK", file_dict("dup1", b"d"))
    assert_error(
        post(api, "/replicas", {"rse": "LOCAL-DISK", "files": [file_dict("dup1", b"d")]}),
        409,
        "Duplicate",
    )
    assert_error(
        post(api, "/replicas", {"rse": "LOCAL-SAFE", "files": [file_dict("dup1", b"other")]}),
        409,
        "FileConsistencyMismatch",
    )
    assert_error(
        post(api, "/replicas", {"rse": "NO-SUCH-RSE", "files": [file_dict("dup2", b"d")]}),
        404,
        "RSENotFound",
    )
    with lake.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Replica)) == 1
        assert s.get(DID, (SCOPE, "dup2")) is None
    register(api, "LOCAL-DISK", file_dict("del1", b"d"))
    r = api.request(
        "DELETE",
        "/replicas",
        content=json.dumps(
            {
                "rse": "LOCAL-DISK",
                "files": [{"scope": SCOPE, "name": "del1"}],
                "ignore_availability": True,
            }
        ),
    )
    assert r.status_code == 200, r.text
    with lake.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Replica)) == 1
        assert s.scalars(select(Replica.name)).all() == ["dup1"]
