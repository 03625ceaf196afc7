"""DIDs over the Rucio REST API: wire format, content, status, metadata, names never reused."""

from __future__ import annotations

import json
import zlib
from typing import Any
from urllib.parse import quote_plus

import httpx
from sqlalchemy import func, select
from starlette.testclient import TestClient

from fedlake.bootstrap import Lake
from fedlake.catalog.dids import mark_deleted
from fedlake.catalog.models import DID, DIDContent
from tests.helpers import assert_error, ndjson, one, post

SCOPE = "user.root"
JSON = "application/json"
STREAM = "application/x-json-stream"


def add_files(
    api: TestClient,
    names: list[str],
    nbytes: int = 10,
    scope: str = SCOPE,
    rse: str = "LOCAL-DISK",
    **extra: Any,
) -> None:
    files = []
    for n in names:
        data = n.encode().ljust(nbytes, b"x")[:nbytes]
        files.append(
            {
                "scope": scope,
                "name": n,
                "bytes": nbytes,
                "adler32": f"{zlib.adler32(data):08x}",
                **extra,
            }
        )
    r = post(api, "/replicas", {"rse": rse, "files": files})
    assert r.status_code == 201, r.text


def add_dataset(
    api: TestClient, name: str, kind: str = "DATASET", scope: str = SCOPE, **extra: Any
) -> None:
    r = post(api, f"/dids/{scope}/{quote_plus(name)}", {"type": kind, **extra})
    assert r.status_code == 201, r.text


def attach(api: TestClient, parent: str, children: list[str]) -> httpx.Response:
    return post(
        api,
        f"/dids/{SCOPE}/{parent}/dids",
        {"dids": [{"scope": SCOPE, "name": c} for c in children]},
    )


# --- create, show, bulk --------------------------------------------------------------


def test_add_and_show_dataset(api: TestClient) -> None:
    r = post(
        api,
        f"/dids/{SCOPE}/ds1",
        {"type": "DATASET", "statuses": {"monotonic": False}, "meta": {"project": "demo"}},
    )
    assert r.status_code == 201, r.text
    info = one(api.get(f"/dids/{SCOPE}/ds1"))
    assert info["scope"] == SCOPE and info["name"] == "ds1"
    assert info["type"] == "DATASET" and info["account"] == "root"
    assert info["open"] is True and info["monotonic"] is False
    assert info["length"] == 0 and info["bytes"] == 0
    assert "expired_at" in info
    assert one(api.get(f"/dids/{SCOPE}/ds1/meta", params={"plugin": "JSON"})) == {"project": "demo"}
    add_dataset(api, "short", lifetime=3600)
    info = one(api.get(f"/dids/{SCOPE}/short"))
    assert info["expired_at"].endswith(" UTC")
    add_dataset(api, "dup")
    assert_error(
        post(api, f"/dids/{SCOPE}/dup", {"type": "DATASET"}), 409, "DataIdentifierAlreadyExists"
    )
    # the body is JSON whatever the Content-Type says; jupyterlab sends application/json
    for ctype in ("application/x-www-form-urlencoded", "text/plain", "application/json"):
        r = api.post(
            f"/dids/{SCOPE}/ct_{ctype.split('/')[1][:5]}",
            content=b'{"type": "CONTAINER"}',
            headers={"Content-Type": ctype},
        )
        assert r.status_code == 201, r.text
    assert one(api.get(f"/dids/{SCOPE}/ct_x-www"))["type"] == "CONTAINER"
    # a POST without a body creates a dataset (the type defaults to DATASET)
    assert api.post(f"/dids/{SCOPE}/no_body").status_code == 201
    assert one(api.get(f"/dids/{SCOPE}/no_body"))["type"] == "DATASET"


def test_error_message_header_is_cut(api: TestClient) -> None:
    name = "n" * 255
    r = api.get(f"/dids/{SCOPE}/{name}")
    body_msg = assert_error(r, 404, "DataIdentifierNotFound")
    assert name in body_msg
    header = r.headers["ExceptionMessage"]
    assert len(header) == 128 and header.endswith("...")
    assert body_msg.startswith(header[:-3])
    assert r.headers["content-type"] == "application/octet-stream"


def test_bulk_add(api: TestClient, lake: Lake) -> None:
    body = [{"scope": SCOPE, "name": f"bulk{i}", "type": "DATASET"} for i in range(5)]
    body.append({"scope": SCOPE, "name": "bulkc", "type": "CONTAINER"})
    r = post(api, "/dids", body)
    assert r.status_code == 201, r.text
    assert one(api.get(f"/dids/{SCOPE}/bulkc"))["type"] == "CONTAINER"
    # all or nothing: one existing name refuses the whole list
    r = post(
        api,
        "/dids/",
        [
            {"scope": SCOPE, "name": "fresh", "type": "DATASET"},
            {"scope": SCOPE, "name": "bulk0", "type": "DATASET"},
        ],
    )
    assert_error(r, 409, "DataIdentifierAlreadyExists")
    assert_error(api.get(f"/dids/{SCOPE}/fresh"), 404, "DataIdentifierNotFound")
    with lake.db.read() as s:
        assert s.scalar(select(func.count()).select_from(DID)) == 6


def test_show_files_missing_dids_and_encoded_names(api: TestClient) -> None:
    msg = assert_error(api.get(f"/dids/{SCOPE}/nothing"), 404, "DataIdentifierNotFound")
    assert "nothing" in msg
    assert_error(api.get(f"/dids/{SCOPE}/nothing/meta"), 404, "DataIdentifierNotFound")
    assert_error(post(api, "/dids/nosuchscope/ds", {"type": "DATASET"}), 404, "ScopeNotFound")
    assert_error(api.get("/dids/nosuchscope/dids/search"), 404, "ScopeNotFound")
    add_files(api, ["f1"], nbytes=7)
    info = one(api.get(f"/dids/{SCOPE}/f1"))
    assert info["type"] == "FILE" and info["bytes"] == 7 and info["length"] == 1
    assert len(info["adler32"]) == 8 and "md5" in info
    name = "run+1=a@b,c~d.txt"
    assert quote_plus(name) != name
    add_files(api, [name])
    r = api.get(f"/dids/{quote_plus(SCOPE)}/{quote_plus(name)}")
    assert one(r)["name"] == name
    meta = one(api.get(f"/dids/{SCOPE}/{quote_plus(name)}/meta"))
    assert meta["name"] == name and meta["did_type"] == "FILE"
    add_dataset(api, "ds+plus")
    assert one(api.get(f"/dids/{SCOPE}/ds%2Bplus"))["name"] == "ds+plus"
    r = post(api, f"/dids/{SCOPE}/ds%2Bplus/dids", {"dids": [{"scope": SCOPE, "name": name}]})
    assert r.status_code == 201, r.text
    assert [c["name"] for c in ndjson(api.get(f"/dids/{SCOPE}/ds%2bplus/dids"))] == [name]
    # quote_plus turns a space into '+': an unencoded '+' in a path is a space, not a plus
    assert_error(api.get(f"/dids/{SCOPE}/ds+plus"), 400, "InvalidObject")


def test_dynamic_depth(api: TestClient) -> None:
    add_files(api, ["d1", "d2", "d3"], nbytes=5)
    add_dataset(api, "dsA")
    add_dataset(api, "dsB")
    add_dataset(api, "cont", kind="CONTAINER")
    assert attach(api, "dsA", ["d1", "d2"]).status_code == 201
    assert attach(api, "dsB", ["d3"]).status_code == 201
    assert attach(api, "cont", ["dsA", "dsB"]).status_code == 201
    plain = one(api.get(f"/dids/{SCOPE}/cont"))
    assert plain["length"] == 2
    deep = one(api.get(f"/dids/{SCOPE}/cont", params={"dynamic_depth": "FILE"}))
    assert deep["length"] == 3 and deep["bytes"] == 15
    ds = one(api.get(f"/dids/{SCOPE}/dsA", params={"dynamic_depth": "DATASET"}))
    assert ds["length"] == 2 and ds["bytes"] == 10


# --- search ----------------------------------------------------------------------------


def test_search_long_and_short(api: TestClient) -> None:
    add_files(api, ["s_file1", "s_file2"], nbytes=3)
    add_dataset(api, "s_ds")
    add_dataset(api, "s_cont", kind="CONTAINER")
    url = f"/dids/{SCOPE}/dids/search"
    names = ndjson(
        api.get(url, params={"type": "collection", "filters": "[{'name': 's_*'}]", "long": "False"})
    )
    assert names == ["s_cont", "s_ds"]
    assert all(isinstance(n, str) for n in names)
    rows = ndjson(
        api.get(
            url,
            params={
                "type": "all",
                "filters": "[{'name': 's_*'}]",
                "long": "True",
                "recursive": "False",
            },
        )
    )
    assert {r["name"]: r["did_type"] for r in rows} == {
        "s_cont": "CONTAINER",
        "s_ds": "DATASET",
        "s_file1": "FILE",
        "s_file2": "FILE",
    }
    for row in rows:
        assert set(row) == {"scope", "name", "did_type", "bytes", "length"}
    f1 = next(r for r in rows if r["name"] == "s_file1")
    assert f1["bytes"] == 3 and f1["length"] == 1
    # type inside the filter overrides the query parameter
    rows = ndjson(
        api.get(url, params={"type": "collection", "filters": "[{'name': '*', 'type': 'file'}]"})
    )
    assert sorted(rows) == ["s_file1", "s_file2"]
    # jupyterlab style: long=1 and a name parameter
    rows = ndjson(api.get(url, params={"type": "dataset", "long": "1", "name": "s_*"}))
    assert [r["name"] for r in rows] == ["s_ds"]
    # no match: an empty stream
    assert ndjson(api.get(url, params={"filters": "[{'name': 'zzz*'}]"})) == []


def test_search_bad_filters(api: TestClient) -> None:
    url = f"/dids/{SCOPE}/dids/search"
    assert_error(
        api.get(url, params={"filters": "[{'name': 's', 'x.bogus': 1}]"}),
        400,
        "DIDFilterSyntaxError",
    )
    assert_error(api.get(url, params={"filters": "[{'name': "}), 400, "DIDFilterSyntaxError")
    assert_error(api.get(url, params={"type": "nonsense"}), 400, "InvalidObject")


# --- content ---------------------------------------------------------------------------


def test_attach_detach_and_listings(api: TestClient) -> None:
    add_files(api, ["c1", "c2", "c3"], nbytes=4)
    add_dataset(api, "cds")
    add_dataset(api, "ccont", kind="CONTAINER")
    r = attach(api, "cds", ["c1", "c2", "c3"])
    assert r.status_code == 201, r.text
    assert attach(api, "ccont", ["cds"]).status_code == 201
    info = one(api.get(f"/dids/{SCOPE}/cds"))
    assert info["length"] == 3 and info["bytes"] == 12

    content = ndjson(api.get(f"/dids/{SCOPE}/cds/dids"))
    assert [c["name"] for c in content] == ["c1", "c2", "c3"]
    assert set(content[0]) >= {"scope", "name", "type", "bytes", "adler32", "md5"}
    assert content[0]["type"] == "FILE" and content[0]["bytes"] == 4

    files = ndjson(api.get(f"/dids/{SCOPE}/ccont/files"))
    assert sorted(f["name"] for f in files) == ["c1", "c2", "c3"]
    assert set(files[0]) >= {"scope", "name", "bytes", "adler32", "guid", "events"}

    parents = ndjson(api.get(f"/dids/{SCOPE}/c1/parents"))
    assert parents == [{"scope": SCOPE, "name": "cds", "type": "DATASET"}]
    assert ndjson(api.get(f"/dids/{SCOPE}/cds/parents")) == [
        {"scope": SCOPE, "name": "ccont", "type": "CONTAINER"}
    ]

    # detach with a JSON body on DELETE, no Content-Type
    r = api.request(
        "DELETE",
        f"/dids/{SCOPE}/cds/dids",
        content=json.dumps({"dids": [{"scope": SCOPE, "name": "c2"}]}),
    )
    assert r.status_code == 200, r.text
    info = one(api.get(f"/dids/{SCOPE}/cds"))
    assert info["length"] == 2 and info["bytes"] == 8
    assert [c["name"] for c in ndjson(api.get(f"/dids/{SCOPE}/cds/dids"))] == ["c1", "c3"]
    history = ndjson(api.get(f"/dids/{SCOPE}/cds/dids/history"))
    assert [h["name"] for h in history] == ["c2"]
    # detaching something not attached
    r = api.request(
        "DELETE",
        f"/dids/{SCOPE}/cds/dids",
        content=json.dumps({"dids": [{"scope": SCOPE, "name": "c2"}]}),
    )
    assert_error(r, 404, "DataIdentifierNotFound")


def test_attach_duplicate(api: TestClient) -> None:
    add_files(api, ["a1"])
    add_dataset(api, "ads")
    add_dataset(api, "acont", kind="CONTAINER")
    assert attach(api, "ads", ["a1"]).status_code == 201
    assert_error(attach(api, "ads", ["a1"]), 409, "FileAlreadyExists")
    assert attach(api, "acont", ["ads"]).status_code == 201
    assert_error(attach(api, "acont", ["ads"]), 409, "DuplicateContent")
    r = post(
        api,
        f"/dids/{SCOPE}/ads/dids",
        {"dids": [{"scope": SCOPE, "name": "a1"}], "ignore_duplicate": True},
    )
    assert r.status_code == 201, r.text
    assert one(api.get(f"/dids/{SCOPE}/ads"))["length"] == 1


def test_bulk_attachments(api: TestClient) -> None:
    add_files(api, ["b1", "b2"])
    add_dataset(api, "bds1")
    add_dataset(api, "bds2")
    body = {
        "attachments": [
            {"scope": SCOPE, "name": "bds1", "dids": [{"scope": SCOPE, "name": "b1"}]},
            {"scope": SCOPE, "name": "bds2", "dids": [{"scope": SCOPE, "name": "b2"}]},
        ],
        "ignore_duplicate": False,
    }
    r = post(api, "/dids/attachments", body)
    assert r.status_code in (200, 201, 204), r.text
    assert one(api.get(f"/dids/{SCOPE}/bds2"))["length"] == 1


def test_scope_tree(api: TestClient) -> None:
    add_files(api, ["t1"])
    add_dataset(api, "tds")
    add_dataset(api, "tcont", kind="CONTAINER")
    attach(api, "tds", ["t1"])
    attach(api, "tcont", ["tds"])
    rows = ndjson(api.get(f"/dids/{SCOPE}/", params={"name": "tcont", "recursive": "True"}))
    assert [(r["name"], r["level"]) for r in rows] == [("tcont", 0), ("tds", 1), ("t1", 2)]
    assert rows[0]["parent"] is None and rows[1]["parent"] == {"scope": SCOPE, "name": "tcont"}


# --- status ----------------------------------------------------------------------------


def test_close_and_open(api: TestClient) -> None:
    add_files(api, ["o1", "o2"])
    add_dataset(api, "ods")
    r = api.put(f"/dids/{SCOPE}/ods/status", content=json.dumps({"open": False}))
    assert r.status_code == 200, r.text
    assert one(api.get(f"/dids/{SCOPE}/ods"))["open"] is False
    assert one(api.get(f"/dids/{SCOPE}/ods/meta"))["closed_at"] is not None
    msg = assert_error(attach(api, "ods", ["o1"]), 409, "UnsupportedOperation")
    assert "closed" in msg
    r = api.put(f"/dids/{SCOPE}/ods/status", content=json.dumps({"open": True}))
    assert r.status_code == 200, r.text
    assert attach(api, "ods", ["o1"]).status_code == 201
    # monotonic datasets cannot be reopened
    add_dataset(api, "mono", statuses={"monotonic": True})
    api.put(f"/dids/{SCOPE}/mono/status", content=json.dumps({"open": False}))
    r = api.put(f"/dids/{SCOPE}/mono/status", content=json.dumps({"open": True}))
    assert_error(r, 409, "UnsupportedOperation")
    # a file has no status
    assert_error(
        api.put(f"/dids/{SCOPE}/o2/status", content=json.dumps({"open": False})),
        409,
        "UnsupportedOperation",
    )


# --- metadata --------------------------------------------------------------------------

DID_COLUMN_KEYS = {
    "scope",
    "name",
    "account",
    "did_type",
    "is_open",
    "monotonic",
    "hidden",
    "obsolete",
    "complete",
    "is_new",
    "availability",
    "suppressed",
    "bytes",
    "length",
    "md5",
    "adler32",
    "expired_at",
    "purge_replicas",
    "deleted_at",
    "events",
    "guid",
    "project",
    "datatype",
    "run_number",
    "stream_name",
    "prod_step",
    "version",
    "campaign",
    "task_id",
    "panda_id",
    "lumiblocknr",
    "provenance",
    "phys_group",
    "transient",
    "accessed_at",
    "closed_at",
    "eol_at",
    "is_archive",
    "constituent",
    "access_cnt",
    "created_at",
    "updated_at",
}


def test_metadata_plugins(api: TestClient) -> None:
    add_files(api, ["m1"], meta={"guid": "0123456789abcdef0123456789abcdef"})
    r = post(api, f"/dids/{SCOPE}/m1/meta/datatype", {"value": "raw", "recursive": False})
    assert r.status_code == 201, r.text
    r = post(api, f"/dids/{SCOPE}/m1/meta/my_key", {"value": {"nested": [1, 2]}})
    assert r.status_code == 201, r.text
    r = post(api, f"/dids/{SCOPE}/m1/meta/events", {"value": "42"})
    assert r.status_code == 201, r.text

    default = one(api.get(f"/dids/{SCOPE}/m1/meta"))
    assert set(default) == DID_COLUMN_KEYS
    assert default == one(api.get(f"/dids/{SCOPE}/m1/meta", params={"plugin": "DID_COLUMN"}))
    assert default["did_type"] == "FILE" and default["datatype"] == "raw"
    assert default["events"] == 42
    assert default["guid"] == "0123456789abcdef0123456789abcdef"
    assert "my_key" not in default

    assert one(api.get(f"/dids/{SCOPE}/m1/meta", params={"plugin": "JSON"})) == {
        "datatype": "raw",
        "my_key": {"nested": [1, 2]},
    }
    merged = one(api.get(f"/dids/{SCOPE}/m1/meta", params={"plugin": "ALL"}))
    assert merged["my_key"] == {"nested": [1, 2]} and merged["did_type"] == "FILE"
    assert_error(
        api.get(f"/dids/{SCOPE}/m1/meta", params={"plugin": "BOGUS"}),
        400,
        "UnsupportedMetadataPlugin",
    )


def test_metadata_bulk_set_and_delete(api: TestClient) -> None:
    add_dataset(api, "mds")
    r = post(
        api,
        f"/dids/{SCOPE}/mds/meta",
        {"meta": {"run_number": 7, "campaign": "c1", "flag": True}, "recursive": False},
    )
    assert r.status_code == 201, r.text
    assert one(api.get(f"/dids/{SCOPE}/mds/meta", params={"plugin": "JSON"})) == {
        "run_number": 7,
        "campaign": "c1",
        "flag": True,
    }
    r = api.delete(f"/dids/{SCOPE}/mds/meta", params={"key": "flag"})
    assert r.status_code == 200, r.text
    assert "flag" not in one(api.get(f"/dids/{SCOPE}/mds/meta", params={"plugin": "JSON"}))
    msg = assert_error(
        api.delete(f"/dids/{SCOPE}/mds/meta", params={"key": "flag"}), 404, "KeyNotFound"
    )
    assert "flag" in msg
    assert_error(post(api, f"/dids/{SCOPE}/mds/meta/a.b", {"value": "x"}), 400, "InvalidObject")
    # bulk metadata read
    r = post(
        api,
        "/dids/bulkmeta",
        {
            "dids": [{"scope": SCOPE, "name": "mds"}, {"scope": SCOPE, "name": "never-made"}],
            "inherit": False,
            "plugin": "JSON",
        },
    )
    assert ndjson(r) == [{"run_number": 7, "campaign": "c1"}]  # missing DIDs are skipped
    bad = {"dids": [{"scope": SCOPE, "name": "never-made"}], "plugin": "NOPE"}
    assert_error(post(api, "/dids/bulkmeta", bad), 400, "UnsupportedMetadataPlugin")


def test_erase_sets_expired_at_and_undo(api: TestClient) -> None:
    add_dataset(api, "erase_me")
    assert one(api.get(f"/dids/{SCOPE}/erase_me"))["expired_at"] is None
    r = post(api, f"/dids/{SCOPE}/erase_me/meta/lifetime", {"value": 86400})
    assert r.status_code == 201, r.text
    expired = one(api.get(f"/dids/{SCOPE}/erase_me"))["expired_at"]
    assert isinstance(expired, str) and expired.endswith(" UTC")
    assert one(api.get(f"/dids/{SCOPE}/erase_me/meta"))["expired_at"] == expired
    r = post(api, f"/dids/{SCOPE}/erase_me/meta/lifetime", {"value": None})
    assert r.status_code == 201, r.text
    assert one(api.get(f"/dids/{SCOPE}/erase_me"))["expired_at"] is None
    # lifetime is not stored as free metadata
    assert one(api.get(f"/dids/{SCOPE}/erase_me/meta", params={"plugin": "JSON"})) == {}


# --- names are never reused ------------------------------------------------------------


def test_deleted_names_are_never_reused(api: TestClient, lake: Lake) -> None:
    add_dataset(api, "gone_ds")
    add_dataset(api, "gone_file")
    with lake.db.write() as s:
        mark_deleted(s, [(SCOPE, "gone_ds"), (SCOPE, "gone_file")])
    assert_error(api.get(f"/dids/{SCOPE}/gone_ds"), 404, "DataIdentifierNotFound")
    msg = assert_error(
        post(api, f"/dids/{SCOPE}/gone_ds", {"type": "DATASET"}), 409, "DataIdentifierAlreadyExists"
    )
    assert "never reused" in msg
    assert_error(
        post(api, "/dids", [{"scope": SCOPE, "name": "gone_file", "type": "CONTAINER"}]),
        409,
        "DataIdentifierAlreadyExists",
    )
    r = post(
        api,
        "/replicas",
        {
            "rse": "LOCAL-SAFE",
            "files": [{"scope": SCOPE, "name": "gone_file", "bytes": 1, "adler32": "00000001"}],
        },
    )
    assert_error(r, 409, "DataIdentifierAlreadyExists")
    with lake.db.read() as s:
        assert s.get(DID, (SCOPE, "gone_ds")) is None
        assert s.get(DID, (SCOPE, "gone_file")) is None
        assert s.scalar(select(func.count()).select_from(DIDContent)) == 0
