"""Conformance of the stock ``rucio.client`` Python API (rucio-clients 41.5.1) against a
live lake: Client calls, UploadClient, DownloadClient and the exception mapping. Each
test checks what the client returns and then the catalogue through the lake's REST API.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote_plus

import httpx
import pytest
from rucio.client import Client as RucioClient
from rucio.client.downloadclient import DownloadClient
from rucio.client.uploadclient import UploadClient
from rucio.common import exception as rex
from rucio.common.config import clean_cached_config
from rucio.rse import rsemanager

from tests.e2e.conftest import RucioLake, adler32_hex, api_json, api_stream, unique
from tests.helpers import ROOT_PASSWORD

SCOPE = "user.root"
ALL_RSES = {"LOCAL-DISK", "LOCAL-SAFE", "LOCAL-BUFFER", "LOCAL-TAPE"}
#: Every field of a rule object (spec 9.2); `rucio rule show` crashes on a missing one.
RULE_FIELDS = {
    "id",
    "subscription_id",
    "account",
    "scope",
    "name",
    "did_type",
    "state",
    "error",
    "rse_expression",
    "copies",
    "expires_at",
    "weight",
    "locked",
    "locks_ok_cnt",
    "locks_replicating_cnt",
    "locks_stuck_cnt",
    "source_replica_expression",
    "activity",
    "grouping",
    "notification",
    "stuck_at",
    "purge_replicas",
    "ignore_availability",
    "ignore_account_limit",
    "priority",
    "comments",
    "child_rule_id",
    "eol_at",
    "split_container",
    "meta",
    "created_at",
    "updated_at",
}


def did_path(scope: str, name: str, suffix: str = "") -> str:
    path = f"/dids/{quote_plus(scope)}/{quote_plus(name)}"
    return f"{path}/{suffix}" if suffix else path


def _reset_rucio_caches() -> None:
    """The rucio library caches its config file and RSE settings per process; each lake
    (one per backend) must start from a clean slate."""
    clean_cached_config()
    rsemanager.RSE_REGION.invalidate(hard=True)


@pytest.fixture(scope="module")
def rucio_env(rucio_lake: RucioLake) -> Iterator[RucioLake]:
    """RUCIO_CONFIG points at this lake's rucio.cfg; the token cache lives in its workdir."""
    token_dir = rucio_lake.workdir / "py-tmp"
    token_dir.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUCIO_CONFIG", str(rucio_lake.config))
        for var in (
            "RUCIO_HOME",
            "RUCIO_ACCOUNT",
            "RUCIO_AUTH_TYPE",
            "RUCIO_VO",
            "X509_CERT_DIR",
            "BEARER_TOKEN",
            "BEARER_TOKEN_FILE",
        ):
            mp.delenv(var, raising=False)
        mp.setattr(tempfile, "tempdir", str(token_dir))
        _reset_rucio_caches()
        try:
            yield rucio_lake
        finally:
            _reset_rucio_caches()


@pytest.fixture(scope="module")
def rclient(rucio_env: RucioLake) -> Iterator[RucioClient]:
    client = RucioClient(
        rucio_host=rucio_env.url,
        auth_host=rucio_env.url,
        auth_type="userpass",
        creds={"username": "root", "password": ROOT_PASSWORD},
        account="root",
    )
    try:
        yield client
    finally:
        client.session.close()


@dataclass
class PyUploaded:
    tag: str
    single: str
    in_dataset: list[str]
    dataset: str
    data: dict[str, bytes]
    status: int


@pytest.fixture(scope="module")
def py_uploaded(rclient: RucioClient, rucio_env: RucioLake) -> PyUploaded:
    """UploadClient.upload of one file alone and two files into a new dataset."""
    tag = unique("py")
    src = rucio_env.workdir / "py-src"
    src.mkdir(exist_ok=True)
    names = [f"{tag}-single.dat", f"{tag}-a.dat", f"{tag}-b.dat"]
    data = {}
    for i, name in enumerate(names):
        data[name] = os.urandom(500 + 311 * i)
        (src / name).write_bytes(data[name])
    dataset = f"{tag}-ds"
    items = [{"path": str(src / names[0]), "rse": "LOCAL-DISK", "did_scope": SCOPE}] + [
        {
            "path": str(src / n),
            "rse": "LOCAL-DISK",
            "did_scope": SCOPE,
            "dataset_scope": SCOPE,
            "dataset_name": dataset,
        }
        for n in names[1:]
    ]
    status = UploadClient(_client=rclient).upload(items)
    return PyUploaded(tag, names[0], names[1:], dataset, data, status)


# --- server, identity, RSEs, scopes ----------------------------------------------------


def test_ping_and_whoami(rclient: RucioClient, lake_api: httpx.Client) -> None:
    assert rclient.ping() == api_json(lake_api, "GET", "/ping")
    me = rclient.whoami()
    assert me["account"] == "root"
    assert me["status"] == "ACTIVE"
    assert isinstance(me["created_at"], datetime)  # the server's dates parse
    assert rclient.get_account("root")["account_type"] == me["account_type"]


def test_list_rses_with_expressions(rclient: RucioClient, lake_api: httpx.Client) -> None:
    assert {r["rse"] for r in rclient.list_rses()} == ALL_RSES
    cases = {
        "istape=true": {"LOCAL-TAPE"},
        "QOS=FAST|site=LOCAL-2": {"LOCAL-DISK", "LOCAL-SAFE", "LOCAL-TAPE"},
        "site=LOCAL&QOS=OPPORTUNISTIC": {"LOCAL-BUFFER"},
        "*\\istape=true": ALL_RSES - {"LOCAL-TAPE"},
    }
    for expression, expected in cases.items():
        assert {r["rse"] for r in rclient.list_rses(expression)} == expected, expression
        api = api_stream(lake_api, "GET", "/rses/", params={"expression": expression})
        assert {r["rse"] for r in api} == expected


def test_rse_settings_and_attributes(rclient: RucioClient) -> None:
    disk = rclient.get_rse("LOCAL-DISK")
    assert disk["rse"] == "LOCAL-DISK"
    assert disk["deterministic"] is True
    assert disk["lfn2pfn_algorithm"] in ("hash", "identity")
    [proto] = disk["protocols"]
    assert (proto["scheme"], proto["port"], proto["impl"]) == (
        "file",
        0,
        "rucio.rse.protocols.posix.Default",
    )
    assert rclient.get_rse("LOCAL-BUFFER")["deterministic"] is False
    attrs = rclient.list_rse_attributes("LOCAL-TAPE")
    assert attrs["istape"] is True
    assert attrs["site"] == "LOCAL-2"


def test_unknown_rse_raises_rse_not_found(rclient: RucioClient) -> None:
    with pytest.raises(rex.RSENotFound):
        rclient.get_rse("NO-SUCH-RSE")
    with pytest.raises(rex.RSENotFound):
        rclient.list_rse_attributes("NO-SUCH-RSE")
    with pytest.raises(rex.InvalidRSEExpression):
        list(rclient.list_rses("NO-SUCH-RSE"))


def test_list_scopes(rclient: RucioClient, lake_api: httpx.Client) -> None:
    scopes = rclient.list_scopes()
    assert SCOPE in scopes
    assert sorted(scopes) == sorted(api_json(lake_api, "GET", "/scopes/"))
    assert SCOPE in rclient.list_scopes_for_account("root")


# --- upload ----------------------------------------------------------------------------


def test_upload_client(py_uploaded: PyUploaded, lake_api: httpx.Client) -> None:
    assert py_uploaded.status == 0
    for name, data in py_uploaded.data.items():
        did = api_json(lake_api, "GET", did_path(SCOPE, name))
        assert (did["type"], did["bytes"], did["adler32"]) == ("FILE", len(data), adler32_hex(data))
    ds = api_json(lake_api, "GET", did_path(SCOPE, py_uploaded.dataset))
    assert (ds["type"], ds["length"]) == ("DATASET", 2)
    content = api_stream(lake_api, "GET", did_path(SCOPE, py_uploaded.dataset, "dids"))
    assert {c["name"] for c in content} == set(py_uploaded.in_dataset)
    records = api_stream(
        lake_api,
        "POST",
        "/replicas/list",
        json={"dids": [{"scope": SCOPE, "name": n} for n in py_uploaded.data]},
    )
    assert len(records) == 3
    for rec in records:
        assert rec["states"] == {"LOCAL-DISK": "AVAILABLE"}
        [pfn] = rec["rses"]["LOCAL-DISK"]
        assert (
            Path(pfn.removeprefix("file://localhost")).read_bytes()
            == (py_uploaded.data[rec["name"]])
        )


def test_upload_to_unknown_rse_fails(
    rclient: RucioClient, rucio_env: RucioLake, lake_api: httpx.Client
) -> None:
    path = rucio_env.workdir / f"{unique('nowhere')}.dat"
    path.write_bytes(b"never stored")
    with pytest.raises((rex.InvalidRSEExpression, rex.RSENotFound)):
        UploadClient(_client=rclient).upload(
            [{"path": str(path), "rse": "NO-SUCH-RSE", "did_scope": SCOPE}]
        )
    r = lake_api.get(did_path(SCOPE, path.name))
    assert r.status_code == 404
    assert r.headers["ExceptionClass"] == "DataIdentifierNotFound"


# --- DIDs, content, metadata -----------------------------------------------------------


def test_missing_did_raises_not_found(rclient: RucioClient) -> None:
    missing = unique("missing")
    with pytest.raises(rex.DataIdentifierNotFound):
        rclient.get_did(SCOPE, missing)
    with pytest.raises(rex.DataIdentifierNotFound):
        rclient.get_metadata(SCOPE, missing)
    with pytest.raises(rex.DataIdentifierNotFound):
        rclient.attach_dids(SCOPE, missing, [{"scope": SCOPE, "name": unique("nofile")}])


def test_add_dataset_attach_list_files(
    rclient: RucioClient, py_uploaded: PyUploaded, lake_api: httpx.Client
) -> None:
    ds = unique("pyds")
    assert rclient.add_dataset(SCOPE, ds) is True
    with pytest.raises(rex.DataIdentifierAlreadyExists):
        rclient.add_dataset(SCOPE, ds)
    info = rclient.get_did(SCOPE, ds)
    assert (info["type"], info["open"], info["length"]) == ("DATASET", True, 0)

    files = [py_uploaded.single, py_uploaded.in_dataset[0]]
    assert rclient.attach_dids(SCOPE, ds, [{"scope": SCOPE, "name": f} for f in files]) is True
    listed = list(rclient.list_files(SCOPE, ds))
    assert {f["name"] for f in listed} == set(files)
    for f in listed:
        assert f["bytes"] == len(py_uploaded.data[f["name"]])
        assert f["adler32"] == adler32_hex(py_uploaded.data[f["name"]])
        assert len(f["guid"].replace("-", "")) == 32
    content = list(rclient.list_content(SCOPE, ds))
    assert {(c["name"], c["type"]) for c in content} == {(f, "FILE") for f in files}
    api = api_stream(lake_api, "GET", did_path(SCOPE, ds, "files"))
    assert sorted(f["name"] for f in api) == sorted(files)
    assert api_json(lake_api, "GET", did_path(SCOPE, ds))["length"] == 2


def test_set_get_metadata_and_filtered_list_dids(
    rclient: RucioClient, py_uploaded: PyUploaded, lake_api: httpx.Client
) -> None:
    high, low = py_uploaded.in_dataset
    assert rclient.set_metadata(SCOPE, high, "run_number", 150) is True
    assert rclient.set_metadata(SCOPE, low, "run_number", 50) is True
    assert rclient.set_metadata(SCOPE, high, "colour", "red") is True

    meta = rclient.get_metadata(SCOPE, high)
    assert int(meta["run_number"]) == 150
    assert meta["name"] == high
    assert meta["bytes"] == len(py_uploaded.data[high])
    assert rclient.get_metadata(SCOPE, high, plugin="JSON")["colour"] == "red"
    merged = rclient.get_metadata(SCOPE, high, plugin="ALL")
    assert merged["colour"] == "red"
    assert int(merged["run_number"]) == 150
    api = api_json(lake_api, "GET", did_path(SCOPE, low, "meta"), params={"plugin": "ALL"})
    assert int(api["run_number"]) == 50

    pattern = f"{py_uploaded.tag}*"
    hits = list(
        rclient.list_dids(SCOPE, [{"name": pattern, "run_number.gt": 100}], did_type="file")
    )
    assert hits == [high]
    hits = list(
        rclient.list_dids(SCOPE, [{"name": pattern, "run_number.lte": 100}], did_type="file")
    )
    assert hits == [low]
    hits = list(rclient.list_dids(SCOPE, [{"name": pattern, "colour": "red"}], did_type="all"))
    assert hits == [high]
    everything = list(rclient.list_dids(SCOPE, {"name": pattern}, did_type="all", long=True))
    assert {(d["name"], d["did_type"]) for d in everything} == {
        *((n, "FILE") for n in py_uploaded.data),
        (py_uploaded.dataset, "DATASET"),
    }
    datasets = list(rclient.list_dids(SCOPE, {"name": pattern}, did_type="dataset"))
    assert datasets == [py_uploaded.dataset]


# --- replicas and download -------------------------------------------------------------


def test_list_replicas(
    rclient: RucioClient, py_uploaded: PyUploaded, lake_api: httpx.Client
) -> None:
    reps = list(rclient.list_replicas([{"scope": SCOPE, "name": py_uploaded.dataset}]))
    assert {r["name"] for r in reps} == set(py_uploaded.in_dataset)
    api = {
        r["name"]: r
        for r in api_stream(
            lake_api,
            "POST",
            "/replicas/list",
            json={"dids": [{"scope": SCOPE, "name": py_uploaded.dataset}]},
        )
    }
    for rep in reps:
        data = py_uploaded.data[rep["name"]]
        assert (rep["bytes"], rep["adler32"]) == (len(data), adler32_hex(data))
        assert rep["states"] == {"LOCAL-DISK": "AVAILABLE"}
        [pfn] = rep["rses"]["LOCAL-DISK"]
        assert rep["pfns"][pfn]["rse"] == "LOCAL-DISK"
        assert rep["rses"] == api[rep["name"]]["rses"]
    with_parents = list(
        rclient.list_replicas([{"scope": SCOPE, "name": py_uploaded.single}], resolve_parents=True)
    )
    assert [r["name"] for r in with_parents] == [py_uploaded.single]
    assert with_parents[0]["parents"] == []


def test_download_client(rclient: RucioClient, py_uploaded: PyUploaded, tmp_path: Path) -> None:
    results = DownloadClient(client=rclient).download_dids(
        [
            {"did": f"{SCOPE}:{py_uploaded.dataset}", "base_dir": str(tmp_path / "ds")},
            {"did": f"{SCOPE}:{py_uploaded.single}", "base_dir": str(tmp_path / "one")},
        ]
    )
    assert sorted((r["name"], r["clientState"]) for r in results) == sorted(
        (n, "DONE") for n in py_uploaded.data
    )
    for name in py_uploaded.in_dataset:
        got = (tmp_path / "ds" / py_uploaded.dataset / name).read_bytes()
        assert got == py_uploaded.data[name]
    single = tmp_path / "one" / SCOPE / py_uploaded.single
    assert single.read_bytes() == py_uploaded.data[py_uploaded.single]


def test_download_client_missing_did(rclient: RucioClient, tmp_path: Path) -> None:
    with pytest.raises((rex.NoFilesDownloaded, rex.DataIdentifierNotFound)):
        DownloadClient(client=rclient).download_dids(
            [{"did": f"{SCOPE}:{unique('absent')}", "base_dir": str(tmp_path)}]
        )
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# --- rules -----------------------------------------------------------------------------


def test_replication_rule_lifecycle(
    rclient: RucioClient, py_uploaded: PyUploaded, lake_api: httpx.Client
) -> None:
    did = {"scope": SCOPE, "name": py_uploaded.dataset}
    before = datetime.now(UTC).replace(tzinfo=None)  # the client decodes dates as naive UTC
    ids = rclient.add_replication_rule(
        [did], 1, "LOCAL-SAFE", lifetime=3600, comment="py conformance"
    )
    assert isinstance(ids, list) and len(ids) == 1
    [rule_id] = ids
    assert len(rule_id) == 32 and int(rule_id, 16) >= 0

    with pytest.raises(rex.DuplicateRule):
        rclient.add_replication_rule([did], 1, "LOCAL-SAFE")

    rule = rclient.get_replication_rule(rule_id)
    assert set(rule) >= RULE_FIELDS, RULE_FIELDS - set(rule)
    assert (rule["id"], rule["scope"], rule["name"]) == (rule_id, SCOPE, py_uploaded.dataset)
    assert (rule["rse_expression"], rule["copies"], rule["account"]) == ("LOCAL-SAFE", 1, "root")
    assert rule["state"] in ("OK", "REPLICATING")
    assert rule["grouping"] == "DATASET"
    assert rule["comments"] == "py conformance"
    expires = rule["expires_at"]
    assert isinstance(expires, datetime)  # RFC 1123 ... UTC, turned into naive UTC
    assert timedelta(minutes=59) < expires - before < timedelta(minutes=61)

    on_did = {r["id"]: r for r in rclient.list_did_rules(SCOPE, py_uploaded.dataset)}
    assert set(on_did) == {
        rule_id,
        *(
            r["id"]
            for r in api_stream(lake_api, "GET", did_path(SCOPE, py_uploaded.dataset, "rules"))
        ),
    }
    assert on_did[rule_id]["rse_expression"] == "LOCAL-SAFE"
    assert RULE_FIELDS | {"bytes"} <= set(on_did[rule_id])
    # The upload's own rule on LOCAL-DISK is there as well.
    assert {r["rse_expression"] for r in on_did.values()} == {"LOCAL-DISK", "LOCAL-SAFE"}

    assert rclient.delete_replication_rule(rule_id) is True
    with pytest.raises(rex.RuleNotFound):
        rclient.get_replication_rule(rule_id)
    r = lake_api.get(f"/rules/{rule_id}")
    assert r.status_code == 404
    assert r.headers["ExceptionClass"] == "RuleNotFound"
    left = {x["id"] for x in rclient.list_did_rules(SCOPE, py_uploaded.dataset)}
    assert rule_id not in left and len(left) == 1


def test_rule_errors(rclient: RucioClient, py_uploaded: PyUploaded) -> None:
    with pytest.raises(rex.InvalidRSEExpression):
        rclient.add_replication_rule(
            [{"scope": SCOPE, "name": py_uploaded.single}], 1, "NO-SUCH-RSE"
        )
    with pytest.raises(rex.DataIdentifierNotFound):
        rclient.add_replication_rule([{"scope": SCOPE, "name": unique("absent")}], 1, "LOCAL-DISK")
    with pytest.raises(rex.RuleNotFound):
        rclient.get_replication_rule("0" * 32)
