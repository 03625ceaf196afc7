"""Bad input: every request below gets a 4xx with a clear message and writes nothing."""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from fedlake.bootstrap import Lake, build_lake
from fedlake.catalog.dids import mark_deleted
from fedlake.catalog.models import DID, DIDContent, DIDMeta, Lock, Replica, Rule, Scope
from fedlake.server.app import create_app
from fedlake.settings import Settings
from tests.helpers import ROOT_PASSWORD, log_in, post
from tests.helpers import assert_error as api_error

SCOPE = "user.root"

BAD_NAMES = {
    "slash": "a/b",
    "dotdot": "..",
    "dotdot-prefix": "..hidden",
    "nul": "a\x00b",
    "newline": "a\nb",
    "tab": "a\tb",
    "del": "a\x7fb",
    "too-long": "n" * 256,
    "empty": "",
    "padded": " name ",
}


def counts(lake: Lake) -> dict[str, int]:
    """Rows of every table a bad request could have written to."""
    with lake.db.read() as s:
        return {
            m.__tablename__: int(s.scalar(select(func.count()).select_from(m)) or 0)
            for m in (DID, DIDContent, DIDMeta, Replica, Rule, Lock, Scope)
        }


def assert_error(r: httpx.Response, status: int, cls: str | None = None) -> str:
    """The Rucio error format, with a message long enough to say what was wrong."""
    message = api_error(r, status, cls)
    assert len(message) > 10
    return message


def fdict(name: str, nbytes: int = 4, scope: str = SCOPE) -> dict[str, Any]:
    data = b"q" * nbytes
    return {"scope": scope, "name": name, "bytes": nbytes, "adler32": f"{zlib.adler32(data):08x}"}


def register(api: TestClient, *names: str, rse: str = "LOCAL-DISK") -> None:
    r = post(api, "/replicas", {"rse": rse, "files": [fdict(n) for n in names]})
    assert r.status_code == 201, r.text


def dataset(api: TestClient, name: str, kind: str = "DATASET") -> None:
    assert post(api, f"/dids/{SCOPE}/{name}", {"type": kind}).status_code == 201


def attach(api: TestClient, parent: str, *children: str) -> httpx.Response:
    return post(
        api,
        f"/dids/{SCOPE}/{parent}/dids",
        {"dids": [{"scope": SCOPE, "name": c} for c in children]},
    )


# --- names -----------------------------------------------------------------------------


def test_bad_did_names_write_nothing(api: TestClient, lake: Lake) -> None:
    register(api, "f_ok")
    dataset(api, "ds_ok")
    before = counts(lake)
    for kind, bad in BAD_NAMES.items():
        # as a new collection (bulk, after a good one), a replica, a rule target, content
        r = post(
            api,
            "/dids",
            [
                {"scope": SCOPE, "name": "good_ds", "type": "DATASET"},
                {"scope": SCOPE, "name": bad, "type": "DATASET"},
            ],
        )
        msg = assert_error(r, 400, "InvalidObject")
        assert "name" in msg.lower(), kind
        r = post(api, "/replicas", {"rse": "LOCAL-DISK", "files": [fdict("good_file"), fdict(bad)]})
        assert_error(r, 400, "InvalidObject")
        r = post(
            api,
            "/rules/",
            {"dids": [{"scope": SCOPE, "name": bad}], "copies": 1, "rse_expression": "LOCAL-DISK"},
        )
        assert_error(r, 400, "InvalidObject")
        assert_error(attach(api, "ds_ok", "f_ok", bad), 400, "InvalidObject")
        assert counts(lake) == before, kind


def test_bad_names_in_paths(api: TestClient, lake: Lake) -> None:
    before = counts(lake)
    for encoded in ("a%2Fb", "a/b", "%2E%2E", "a%00b", "a%0Ab", "n" * 256, "+x+"):
        r = api.post(f"/dids/{SCOPE}/{encoded}", content=b'{"type": "DATASET"}')
        assert_error(r, 400, "InvalidObject")
        r = api.post(f"/dids/{SCOPE}/{encoded}/meta/key", content=b'{"value": 1}')
        assert_error(r, 400, "InvalidObject")
    assert counts(lake) == before
    before = counts(lake)
    assert_error(post(api, "/dids/bad%20scope/ds", {"type": "DATASET"}), 400, "InvalidObject")
    assert_error(api.post("/accounts/root/scopes/" + quote("x" * 30)), 400, "InvalidObject")
    assert_error(api.post("/accounts/Not-Lower/scopes/user.x"), 400, "InvalidObject")
    assert_error(
        post(api, "/replicas", {"rse": "lower-case", "files": [fdict("f")]}), 400, "InvalidObject"
    )
    assert counts(lake) == before


# --- unknown things ----------------------------------------------------------------------


def test_unknown_scope_account_rse(api: TestClient, lake: Lake) -> None:
    register(api, "known")
    before = counts(lake)
    assert_error(
        post(
            api,
            "/replicas",
            {"rse": "LOCAL-DISK", "files": [fdict("ok1"), fdict("x", scope="nosuch")]},
        ),
        404,
        "ScopeNotFound",
    )
    assert_error(
        post(
            api,
            "/dids",
            [
                {"scope": SCOPE, "name": "d1", "type": "DATASET"},
                {"scope": "nosuch", "name": "d2", "type": "DATASET"},
            ],
        ),
        404,
        "ScopeNotFound",
    )
    assert_error(
        post(api, "/replicas", {"rse": "NO-SUCH", "files": [fdict("ok2")]}), 404, "RSENotFound"
    )
    assert_error(api.post("/accounts/ghost/scopes/user.ghost"), 404, "AccountNotFound")
    r = post(
        api,
        "/rules/",
        {
            "dids": [{"scope": SCOPE, "name": "known"}],
            "copies": 1,
            "rse_expression": "LOCAL-DISK",
            "account": "ghost",
        },
    )
    assert_error(r, 404, "AccountNotFound")
    r = post(
        api,
        "/rules/",
        {"dids": [{"scope": SCOPE, "name": "known"}], "copies": 1, "rse_expression": "NO-SUCH-RSE"},
    )
    assert_error(r, 400, "InvalidRSEExpression")
    assert_error(post(api, "/accounts/ghost/attr/k", {"value": 1}), 404, "AccountNotFound")
    assert_error(post(api, "/accounts/root/limits/local/NO-SUCH", {"bytes": 1}), 404, "RSENotFound")
    assert_error(attach(api, "nods", "known"), 404, "DataIdentifierNotFound")
    assert counts(lake) == before


# --- duplicates and names that were used before ----------------------------------------


def test_duplicates_and_deleted_names(api: TestClient, lake: Lake) -> None:
    register(api, "exists")
    dataset(api, "was_here")
    with lake.db.write() as s:
        mark_deleted(s, [(SCOPE, "was_here")])
    before = counts(lake)
    assert_error(
        post(api, f"/dids/{SCOPE}/exists", {"type": "DATASET"}), 409, "DataIdentifierAlreadyExists"
    )
    msg = assert_error(
        post(api, f"/dids/{SCOPE}/was_here", {"type": "DATASET"}),
        409,
        "DataIdentifierAlreadyExists",
    )
    assert "never reused" in msg
    assert_error(
        post(api, "/replicas", {"rse": "LOCAL-DISK", "files": [fdict("new1"), fdict("was_here")]}),
        409,
        "DataIdentifierAlreadyExists",
    )
    assert_error(
        post(
            api,
            "/dids",
            [
                {"scope": SCOPE, "name": "twice", "type": "DATASET"},
                {"scope": SCOPE, "name": "twice", "type": "CONTAINER"},
            ],
        ),
        409,
        "DataIdentifierAlreadyExists",
    )
    assert_error(
        post(api, "/replicas", {"rse": "LOCAL-SAFE", "files": [fdict("twice"), fdict("twice")]}),
        409,
        "Duplicate",
    )
    assert_error(
        post(api, f"/dids/{SCOPE}/exists_file", {"type": "FILE"}), 409, "UnsupportedOperation"
    )
    assert counts(lake) == before


# --- content ---------------------------------------------------------------------------


def test_attach_cycles_and_wrong_types(api: TestClient, lake: Lake) -> None:
    register(api, "f1", "f2")
    dataset(api, "ds1")
    dataset(api, "ds2")
    dataset(api, "top", "CONTAINER")
    dataset(api, "mid", "CONTAINER")
    dataset(api, "low", "CONTAINER")
    assert attach(api, "top", "mid").status_code == 201
    assert attach(api, "mid", "low").status_code == 201
    assert attach(api, "ds1", "f1").status_code == 201
    before = counts(lake)
    msg = assert_error(attach(api, "top", "top"), 409, "UnsupportedOperation")
    assert "cycle" in msg
    assert "cycle" in assert_error(attach(api, "low", "top"), 409, "UnsupportedOperation")
    assert "cycle" in assert_error(attach(api, "low", "ds2", "mid"), 409, "UnsupportedOperation")
    assert "datasets hold only files" in assert_error(
        attach(api, "ds1", "ds2"), 409, "UnsupportedOperation"
    )
    assert "file" in assert_error(attach(api, "top", "f2"), 409, "UnsupportedOperation")
    assert_error(attach(api, "f1", "f2"), 409, "UnsupportedOperation")
    assert_error(attach(api, "ds1", "f2", "ghost"), 404, "DataIdentifierNotFound")
    assert_error(post(api, f"/dids/{SCOPE}/ds1/dids", {"dids": "f2"}), 400, "InvalidObject")
    assert_error(
        post(api, f"/dids/{SCOPE}/ds1/dids", {"dids": [{"scope": SCOPE}]}), 400, "InvalidObject"
    )
    # closed dataset
    r = api.put(f"/dids/{SCOPE}/ds2/status", content=b'{"open": false}')
    assert r.status_code == 200
    assert "closed" in assert_error(attach(api, "ds2", "f2"), 409, "UnsupportedOperation")
    assert_error(
        api.put(f"/dids/{SCOPE}/ds2/status", content=b'{"open": "perhaps"}'), 400, "InvalidObject"
    )
    assert_error(api.put(f"/dids/{SCOPE}/ds2/status", content=b"{}"), 400, "InvalidObject")
    assert counts(lake) == before
    assert api.get(f"/dids/{SCOPE}/ds1").json()["length"] == 1


def test_attach_into_empty_collections_writes_nothing_on_a_bad_child(
    api: TestClient, lake: Lake
) -> None:
    """A collection with no content takes a set-based path on PostgreSQL (children copied
    from ``dids`` in the database); one bad child among many still writes nothing and is
    named in the error, as on the row-by-row path."""
    files = [f"ef{i}" for i in range(50)]
    register(api, *files)
    dataset(api, "eds")
    dataset(api, "eds2")
    dataset(api, "econ", "CONTAINER")
    before = counts(lake)
    msg = assert_error(attach(api, "eds", *files, "ghost"), 404, "DataIdentifierNotFound")
    assert "ghost" in msg
    msg = assert_error(attach(api, "eds", *files[:10], "eds2"), 409, "UnsupportedOperation")
    assert "datasets hold only files" in msg
    msg = assert_error(attach(api, "econ", "eds2", files[0]), 409, "UnsupportedOperation")
    assert files[0] in msg
    assert counts(lake) == before
    for name in ("eds", "econ"):
        shown = api.get(f"/dids/{SCOPE}/{name}").json()
        assert (shown["length"] or 0, shown["bytes"] or 0) == (0, 0)
    # the same calls without the bad child attach everything, with the derived sizes
    assert attach(api, "eds", *files).status_code == 201
    assert attach(api, "econ", "eds2", "eds").status_code == 201
    shown = api.get(f"/dids/{SCOPE}/eds").json()
    assert (shown["length"], shown["bytes"]) == (50, 50 * 4)  # fdict: 4 bytes each
    listed = api.get(f"/dids/{SCOPE}/eds/dids").text.splitlines()
    assert sorted(json.loads(line)["name"] for line in listed if line) == sorted(files)
    assert api.get(f"/dids/{SCOPE}/econ").json()["length"] == 2


# --- metadata --------------------------------------------------------------------------


BAD_META: list[tuple[str, Any]] = [
    ("events", "abc"),
    ("events", -1),
    ("lifetime", [1]),
    ("lifetime", "soon"),
    ("lifetime", True),
    ("guid", "g" * 40),
    ("hidden", "maybe"),
    ("expired_at", "not a date"),
    ("bytes", 5),
    ("did_type", "FILE"),
    ("bad.key", 1),
    ("", 1),
]


def test_bad_metadata(api: TestClient, lake: Lake) -> None:
    register(api, "mf")
    before = counts(lake)
    meta_before = api.get(f"/dids/{SCOPE}/mf/meta", params={"plugin": "ALL"}).json()
    for key, value in BAD_META:
        r = post(api, f"/dids/{SCOPE}/mf/meta", {"meta": {"good": 1, key: value}})
        assert_error(r, 400)
        if key:
            r = post(api, f"/dids/{SCOPE}/mf/meta/{quote(key)}", {"value": value})
            assert_error(r, 400)
        r = post(
            api,
            "/dids/bulkdidsmeta",
            {
                "dids": [
                    {"scope": SCOPE, "name": "mf", "meta": {"good": 1}},
                    {"scope": SCOPE, "name": "mf", "meta": {key: value}},
                ]
            },
        )
        assert_error(r, 400)
    assert_error(post(api, f"/dids/{SCOPE}/mf/meta", {"meta": [1]}), 400, "InvalidObject")
    assert_error(post(api, f"/dids/{SCOPE}/mf/meta/k", {"val": 1}), 400, "InvalidObject")
    assert counts(lake) == before
    assert api.get(f"/dids/{SCOPE}/mf/meta", params={"plugin": "ALL"}).json() == meta_before


def test_new_dataset_with_bad_meta_or_rule_is_not_created(api: TestClient, lake: Lake) -> None:
    before = counts(lake)
    assert_error(
        post(api, f"/dids/{SCOPE}/nd1", {"type": "DATASET", "meta": {"events": "x"}}),
        400,
        "InvalidMetadata",
    )
    assert_error(
        post(
            api,
            f"/dids/{SCOPE}/nd2",
            {
                "type": "DATASET",
                "rules": [{"copies": 1, "rse_expression": "((", "account": "root"}],
            },
        ),
        400,
        "InvalidRSEExpression",
    )
    assert_error(post(api, f"/dids/{SCOPE}/nd3", {"type": "FOLDER"}), 400, "InvalidObject")
    assert_error(
        post(api, f"/dids/{SCOPE}/nd4", {"type": "DATASET", "lifetime": "long"}),
        400,
        "InvalidObject",
    )
    assert_error(
        post(api, f"/dids/{SCOPE}/nd5", {"type": "DATASET", "meta": [1]}), 400, "InvalidObject"
    )
    assert_error(
        post(
            api,
            f"/dids/{SCOPE}/nd6",
            {"type": "DATASET", "dids": [{"scope": SCOPE, "name": "nope"}]},
        ),
        404,
        "DataIdentifierNotFound",
    )
    assert counts(lake) == before


# --- malformed requests --------------------------------------------------------------------


def test_malformed_json(api: TestClient, lake: Lake) -> None:
    dataset(api, "mj")
    before = counts(lake)
    for body in (b"{bad json", b"\xff\xfe\x00", b"[1, 2", b"", b"   ", b"{'a': 1}", b"NaN]"):
        msg = assert_error(api.post("/replicas", content=body), 400, "InvalidObject")
        assert "JSON" in msg
        assert_error(api.post("/dids", content=body), 400, "InvalidObject")
        assert_error(api.post("/rules/", content=body), 400, "InvalidObject")
        assert_error(api.post(f"/dids/{SCOPE}/mj/dids", content=body), 400, "InvalidObject")
        assert_error(api.put("/replicas", content=body), 400, "InvalidObject")
    assert counts(lake) == before


BAD_REPLICA_BODIES: list[Any] = [
    [],
    {"rse": "LOCAL-DISK"},
    {"rse": "LOCAL-DISK", "files": []},
    {"rse": "LOCAL-DISK", "files": {"scope": SCOPE}},
    {
        "rse": "LOCAL-DISK",
        "files": [{"scope": SCOPE, "name": "x", "bytes": "ten", "adler32": "00000001"}],
    },
    {
        "rse": "LOCAL-DISK",
        "files": [{"scope": SCOPE, "name": "x", "bytes": -1, "adler32": "00000001"}],
    },
    {"rse": "LOCAL-DISK", "files": [{"scope": SCOPE, "name": "x", "bytes": 1}]},
    {"rse": "LOCAL-DISK", "files": [{"scope": SCOPE, "name": "x", "bytes": 1, "adler32": "xyz"}]},
    {
        "rse": "LOCAL-DISK",
        "files": [{"scope": SCOPE, "name": "x", "bytes": 1, "adler32": "00000001", "md5": "123"}],
    },
    {
        "rse": "LOCAL-DISK",
        "files": [
            {"scope": SCOPE, "name": "x", "bytes": 1, "adler32": "00000001", "state": "SHINY"}
        ],
    },
    {
        "rse": "LOCAL-DISK",
        "files": [{"scope": SCOPE, "name": 5, "bytes": 1, "adler32": "00000001"}],
    },
    {"rse": 7, "files": [{"scope": SCOPE, "name": "x", "bytes": 1, "adler32": "00000001"}]},
]


def test_wrong_shapes_for_replicas(api: TestClient, lake: Lake) -> None:
    before = counts(lake)
    for body in BAD_REPLICA_BODIES:
        assert_error(post(api, "/replicas", body), 400, "InvalidObject")
    assert counts(lake) == before


def test_wrong_shapes_for_rules(api: TestClient, lake: Lake) -> None:
    register(api, "rf")
    before = counts(lake)
    base: dict[str, Any] = {
        "dids": [{"scope": SCOPE, "name": "rf"}],
        "copies": 1,
        "rse_expression": "LOCAL-SAFE",
    }
    for change in (
        {"copies": 0},
        {"copies": "two"},
        {"dids": []},
        {"dids": "rf"},
        {"rse_expression": ""},
        {"lifetime": -5},
        {"locked": "perhaps"},
        {"notify": "LOUD"},
        {"grouping": 3},
        {"copies": 2**40},
        {"lifetime": 10**15},
        {"priority": 2**40},
    ):
        assert_error(post(api, "/rules/", base | change), 400)
    assert_error(post(api, "/rules/", [base]), 400, "InvalidObject")
    assert counts(lake) == before
    assert_error(api.get("/rules/", params={"copies": "abc"}), 400, "InvalidObject")
    assert_error(api.get("/rules/", params={"locked": "perhaps"}), 400, "InvalidObject")
    assert_error(api.get("/rules/", params={"state": "WEIRD"}), 400, "InvalidObject")
    assert_error(api.get("/rules/", params={"colour": "red"}), 409, "UnsupportedOperation")


def test_bad_rule_updates(api: TestClient, lake: Lake) -> None:
    register(api, "uf")
    r = post(
        api,
        "/rules/",
        {"dids": [{"scope": SCOPE, "name": "uf"}], "copies": 1, "rse_expression": "LOCAL-DISK"},
    )
    assert r.status_code == 201, r.text
    rid = r.json()[0]
    rule = api.get(f"/rules/{rid}").json()
    for options, status in (
        ({"lifetime": "abc"}, 400),
        ({"lifetime": 10**15}, 400),
        ({"priority": "x"}, 400),
        ({"state": "OK"}, 409),
        ({"state": 5}, 400),
        ({"account": "ghost"}, 404),
        ({"account": "Not Valid"}, 400),
        ({"colour": "red"}, 409),
        ({"locked": True, "lifetime": "abc"}, 400),
    ):
        r = api.put(f"/rules/{rid}", content=json.dumps({"options": options}))
        assert_error(r, status)
    assert_error(api.put(f"/rules/{rid}", content=b'{"options": [1]}'), 400, "InvalidObject")
    assert_error(api.put(f"/rules/{rid}", content=b"{}"), 400, "InvalidObject")
    assert_error(api.put("/rules/" + "0" * 32, content=b'{"options": {}}'), 404, "RuleNotFound")
    after = api.get(f"/rules/{rid}").json()
    assert after == rule


def test_numbers_out_of_range(api: TestClient, lake: Lake) -> None:
    register(api, "nf")
    dataset(api, "nds")
    before = counts(lake)
    meta_before = api.get(f"/dids/{SCOPE}/nf/meta", params={"plugin": "ALL"}).json()
    big = {"scope": SCOPE, "name": "huge", "bytes": 2**63, "adler32": "00000001"}
    assert_error(post(api, "/replicas", {"rse": "LOCAL-DISK", "files": [big]}), 400)
    for key, value in (
        ("events", 2**63),
        ("run", 10**400),
        ("energy", float("nan")),
        ("energy", float("inf")),
        ("lifetime", 10**15),
        ("lifetime", 1e308),
    ):
        assert_error(post(api, f"/dids/{SCOPE}/nf/meta/{key}", {"value": value}), 400)
    assert_error(post(api, f"/dids/{SCOPE}/n2", {"type": "DATASET", "lifetime": 10**15}), 400)
    r = post(api, "/accounts/root/limits/local/LOCAL-DISK", {"bytes": 2**70})
    assert_error(r, 400, "InvalidObject")
    assert api.get("/accounts/root/limits/local").json() == {}
    assert counts(lake) == before
    assert api.get(f"/dids/{SCOPE}/nf/meta", params={"plugin": "ALL"}).json() == meta_before
    # a large number inside a string is kept as text, not refused
    r = post(api, f"/dids/{SCOPE}/nds/meta/serial", {"value": "1" + "0" * 400})
    assert r.status_code == 201, r.text


# --- 100,000 replicas with one bad item --------------------------------------------------


BULK_BAD_ITEMS: list[tuple[dict[str, Any], int]] = [
    ({"scope": SCOPE, "name": "bad/name", "bytes": 1, "adler32": "00000001"}, 400),
    ({"scope": SCOPE, "name": "bulk-99998", "bytes": 1, "adler32": "00000001"}, 409),
    ({"scope": SCOPE, "name": "was_here", "bytes": 1, "adler32": "00000001"}, 409),
]


def test_bulk_100k_with_one_bad_item(api: TestClient, lake: Lake) -> None:
    """The bad item is last: a name with '/', a duplicate, a name deleted before."""
    dataset(api, "was_here")
    with lake.db.write() as s:
        mark_deleted(s, [(SCOPE, "was_here")])
    before = counts(lake)
    assert before["dids"] == 0 and before["replicas"] == 0
    files = [
        {"scope": SCOPE, "name": f"bulk-{i}", "bytes": 1, "adler32": "00000001"}
        for i in range(99_999)
    ]
    for bad, status in BULK_BAD_ITEMS:
        r = post(api, "/replicas", {"rse": "LOCAL-DISK", "files": [*files, bad]})
        msg = assert_error(r, status)
        assert bad["name"] in msg
        assert counts(lake) == before


# --- body size -----------------------------------------------------------------------------


@pytest.fixture
def small_api(database_url: str, tmp_path: Path, lake: Lake) -> Iterator[TestClient]:
    """A second server on the same catalogue whose body limit is 2 KiB."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        root_password=ROOT_PASSWORD,
        port=18999,
        max_body_bytes=2048,
    )
    small = build_lake(settings, migrate=False)
    with TestClient(create_app(small), raise_server_exceptions=False) as client:
        log_in(client)
        yield client
    small.close()


def test_body_over_limit(small_api: TestClient, lake: Lake) -> None:
    before = counts(lake)
    files = [fdict(f"big-{i}") for i in range(100)]
    body = json.dumps({"rse": "LOCAL-DISK", "files": files}).encode()
    assert len(body) > 2048
    msg = assert_error(small_api.post("/replicas", content=body), 413)
    assert "2048" in msg

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        for i in range(0, len(body), 500):
            yield body[i : i + 500]

    assert_error(small_api.post("/replicas", content=chunked()), 413)
    assert_error(small_api.post("/dids", content=b"[" + b" " * 3000 + b"]"), 413)
    assert counts(lake) == before
    # a small body still works on the same server
    r = small_api.post(
        "/replicas", content=json.dumps({"rse": "LOCAL-DISK", "files": [fdict("small")]})
    )
    assert r.status_code == 201, r.text


# --- upload with wrong checksum ----------------------------------------------------------


def files_under(root: Path) -> list[str]:
    return sorted(str(Path(d, f)) for d, _, fs in os.walk(root) for f in fs)


def test_upload_checksum_mismatch_keeps_nothing(api: TestClient, lake: Lake) -> None:
    disk = Path(lake.settings.data_dir).resolve() / "rses" / "disk"
    before = counts(lake)
    data = b"the real bytes of the file"
    wrong = f"{(zlib.adler32(data) + 1) & 0xFFFFFFFF:08x}"
    r = api.put(
        f"/files/{SCOPE}/up1",
        params={"rse": "LOCAL-DISK"},
        content=data,
        headers={"Content-Length": str(len(data)), "X-Fedlake-Adler32": wrong},
    )
    msg = assert_error(r, 409)
    assert "adler32" in msg
    assert files_under(disk) == []
    assert counts(lake) == before
    # size mismatch (fewer bytes than declared) also leaves nothing
    r = api.put(
        f"/files/{SCOPE}/up2",
        params={"rse": "LOCAL-DISK"},
        content=data,
        headers={
            "X-Fedlake-Adler32": f"{zlib.adler32(data + b'x'):08x}",
            "X-Fedlake-Md5": "0" * 32,
        },
    )
    assert_error(r, 409)
    assert files_under(disk) == []
    assert counts(lake) == before
    # the right checksum stores it
    r = api.put(
        f"/files/{SCOPE}/up1",
        params={"rse": "LOCAL-DISK"},
        content=data,
        headers={"X-Fedlake-Adler32": f"{zlib.adler32(data):08x}"},
    )
    assert r.status_code == 201, r.text
    assert len(files_under(disk)) == 1
    assert api.get(f"/files/{SCOPE}/up1").content == data


def test_upload_bad_requests(api: TestClient, lake: Lake) -> None:
    disk = Path(lake.settings.data_dir).resolve() / "rses" / "disk"
    before = counts(lake)
    data = b"abc"
    good = f"{zlib.adler32(data):08x}"
    assert_error(
        api.put(f"/files/{SCOPE}/u1", content=data, headers={"X-Fedlake-Adler32": good}),
        400,
        "InvalidObject",
    )
    assert_error(
        api.put(f"/files/{SCOPE}/u1", params={"rse": "LOCAL-DISK"}, content=data),
        400,
        "InvalidObject",
    )
    assert_error(
        api.put(
            f"/files/{SCOPE}/u1",
            params={"rse": "NO-SUCH"},
            content=data,
            headers={"X-Fedlake-Adler32": good},
        ),
        404,
        "RSENotFound",
    )
    assert_error(
        api.put(
            "/files/nosuch/u1",
            params={"rse": "LOCAL-DISK"},
            content=data,
            headers={"X-Fedlake-Adler32": good},
        ),
        404,
        "ScopeNotFound",
    )
    assert_error(
        api.put(
            f"/files/{SCOPE}/a%0Ab",
            params={"rse": "LOCAL-DISK"},
            content=data,
            headers={"X-Fedlake-Adler32": good},
        ),
        400,
        "InvalidObject",
    )
    assert files_under(disk) == []
    assert counts(lake) == before
