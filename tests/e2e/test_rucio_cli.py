"""Conformance of the stock ``rucio`` CLI (rucio-clients 41.5.1) against a live lake.

Every workflow is driven twice where the CLI offers both spellings: with the current
command names (``rucio did list``, ``rucio replica list file``, ...) and with the legacy
ones it still accepts (``rucio list-dids``, ``rucio list-file-replicas``, ...). Each test
checks the CLI's output and then the catalogue itself through the lake's REST API.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote_plus

import httpx
import pytest

from tests.e2e.conftest import RucioLake, adler32_hex, api_json, api_stream, unique

SCOPE = "user.root"
ALL_RSES = {"LOCAL-DISK", "LOCAL-SAFE", "LOCAL-BUFFER", "LOCAL-TAPE"}
RFC1123 = "%a, %d %b %Y %H:%M:%S UTC"
_DID_ROW = re.compile(r"^\|\s*([\w.\-]+):([\w.\-]+)\s*\|\s*([A-Z]+)\s*\|\s*$")


def did_path(scope: str, name: str, suffix: str = "") -> str:
    path = f"/dids/{quote_plus(scope)}/{quote_plus(name)}"
    return f"{path}/{suffix}" if suffix else path


def did_rows(stdout: str) -> dict[str, str]:
    """``{scope:name: TYPE}`` from the ``| SCOPE:NAME | [DID TYPE] |`` table the CLI prints."""
    rows = {}
    for line in stdout.splitlines():
        m = _DID_ROW.match(line.strip())
        if m:
            rows[f"{m.group(1)}:{m.group(2)}"] = m.group(3)
    return rows


def plain_lines(stdout: str) -> set[str]:
    return {line.strip() for line in stdout.splitlines() if line.strip()}


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def parse_date(value: str) -> datetime:
    return datetime.strptime(value, RFC1123).replace(tzinfo=UTC)


@dataclass
class Uploaded:
    """What the module's ``rucio upload`` runs put into the lake."""

    tag: str
    single: str  # uploaded alone
    in_dataset: list[str]  # uploaded together into ``dataset``
    dataset: str
    data: dict[str, bytes]
    single_proc: subprocess.CompletedProcess[str]
    dataset_proc: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def uploaded(rucio_lake: RucioLake) -> Uploaded:
    """``rucio upload`` of one file, and of two files into a new dataset (run concurrently)."""
    tag = unique("cli")
    src = rucio_lake.workdir / "src"
    src.mkdir(exist_ok=True)
    names = [f"{tag}-single.dat", f"{tag}-a.dat", f"{tag}-b.dat"]
    data = {}
    for i, name in enumerate(names):
        data[name] = os.urandom(1000 + 777 * i)
        (src / name).write_bytes(data[name])
    dataset = f"{tag}-dsX"
    single_proc, dataset_proc = rucio_lake.cli_many(
        ("upload", "--rse", "LOCAL-DISK", str(src / names[0])),
        (
            "upload",
            "--rse",
            "LOCAL-DISK",
            str(src / names[1]),
            str(src / names[2]),
            f"{SCOPE}:{dataset}",
        ),
    )
    return Uploaded(tag, names[0], names[1:], dataset, data, single_proc, dataset_proc)


# --- server, identity, RSEs, scopes ----------------------------------------------------


def test_ping_and_whoami(rucio_lake: RucioLake, lake_api: httpx.Client) -> None:
    ping, whoami = rucio_lake.cli_many(("ping",), ("whoami",))
    assert ping.returncode == 0, output(ping)
    version = api_json(lake_api, "GET", "/ping")["version"]
    assert ping.stdout.strip() == version

    assert whoami.returncode == 0, output(whoami)
    fields = {}
    for line in whoami.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    account = api_json(lake_api, "GET", "/accounts/root")
    assert fields["account"] == "root" == account["account"]
    assert fields["account_type"] == account["account_type"]
    assert fields["status"] == "ACTIVE"


def test_rse_list_with_expressions(rucio_lake: RucioLake, lake_api: httpx.Client) -> None:
    cases: list[tuple[tuple[str, ...], str, set[str]]] = [
        (("rse", "list", "--rses", "istape=true"), "istape=true", {"LOCAL-TAPE"}),
        (("list-rses", "--rses", "istape=true"), "istape=true", {"LOCAL-TAPE"}),
        (
            ("list-rses", "--rses", "QOS=FAST|site=LOCAL-2"),
            "QOS=FAST|site=LOCAL-2",
            {"LOCAL-DISK", "LOCAL-SAFE", "LOCAL-TAPE"},
        ),
        (("rse", "list"), "*", ALL_RSES),
    ]
    procs = rucio_lake.cli_many(*(args for args, _, _ in cases))
    for (args, expression, expected), proc in zip(cases, procs, strict=True):
        assert proc.returncode == 0, f"rucio {' '.join(args)}:\n{output(proc)}"
        assert plain_lines(proc.stdout) == expected, args
        api = api_stream(lake_api, "GET", "/rses/", params={"expression": expression})
        assert {r["rse"] for r in api} == expected


def test_scope_list_new_and_legacy(rucio_lake: RucioLake, lake_api: httpx.Client) -> None:
    owners = api_json(lake_api, "GET", "/scopes/owner")
    assert {"scope": SCOPE, "account": "root"} in owners
    for proc in rucio_lake.cli_many(("scope", "list"), ("list-scopes",)):
        assert proc.returncode == 0, output(proc)
        rows = re.findall(r"^\|\s*(\S+)\s*\|\s*(\S+)\s*\|$", proc.stdout, re.MULTILINE)
        listed = {(s, a) for s, a in rows if s != "SCOPE"}
        assert listed == {(o["scope"], o["account"]) for o in owners}


# --- upload ----------------------------------------------------------------------------


def test_upload_file(uploaded: Uploaded, lake_api: httpx.Client) -> None:
    proc = uploaded.single_proc
    assert proc.returncode == 0, output(proc)
    assert f"Successfully uploaded file {uploaded.single}" in output(proc)

    data = uploaded.data[uploaded.single]
    did = api_json(lake_api, "GET", did_path(SCOPE, uploaded.single))
    assert did["type"] == "FILE"
    assert did["bytes"] == len(data)
    assert did["adler32"] == adler32_hex(data)
    # The replica is AVAILABLE at LOCAL-DISK and the PFN holds exactly the uploaded bytes.
    [rep] = api_stream(
        lake_api,
        "POST",
        "/replicas/list",
        json={"dids": [{"scope": SCOPE, "name": uploaded.single}]},
    )
    assert rep["states"] == {"LOCAL-DISK": "AVAILABLE"}
    [pfn] = rep["rses"]["LOCAL-DISK"]
    assert pfn.startswith("file://")
    assert Path(pfn.removeprefix("file://localhost")).read_bytes() == data
    # The upload's rule protects the file on LOCAL-DISK.
    rules = api_stream(lake_api, "GET", did_path(SCOPE, uploaded.single, "rules"))
    assert [(r["rse_expression"], r["copies"], r["account"]) for r in rules] == [
        ("LOCAL-DISK", 1, "root")
    ]


def test_upload_into_new_dataset(uploaded: Uploaded, lake_api: httpx.Client) -> None:
    proc = uploaded.dataset_proc
    assert proc.returncode == 0, output(proc)
    assert f"Successfully created dataset {SCOPE}:{uploaded.dataset}" in output(proc)

    ds = api_json(lake_api, "GET", did_path(SCOPE, uploaded.dataset))
    assert ds["type"] == "DATASET"
    assert ds["length"] == 2
    assert ds["bytes"] == sum(len(uploaded.data[n]) for n in uploaded.in_dataset)
    content = api_stream(lake_api, "GET", did_path(SCOPE, uploaded.dataset, "dids"))
    assert {(c["scope"], c["name"], c["type"]) for c in content} == {
        (SCOPE, n, "FILE") for n in uploaded.in_dataset
    }
    for c in content:
        assert c["adler32"] == adler32_hex(uploaded.data[c["name"]])
    # With a dataset, the rule is on the dataset rather than on each file.
    rules = api_stream(lake_api, "GET", did_path(SCOPE, uploaded.dataset, "rules"))
    assert [(r["rse_expression"], r["grouping"]) for r in rules] == [("LOCAL-DISK", "DATASET")]


# --- DIDs and metadata -----------------------------------------------------------------


def test_did_list_with_metadata_filter(
    rucio_lake: RucioLake, uploaded: Uploaded, lake_api: httpx.Client
) -> None:
    high, low = uploaded.in_dataset
    set_new, set_legacy = rucio_lake.cli_many(
        ("did", "metadata", "set", "--key", "run_number", "--value", "150", f"{SCOPE}:{high}"),
        ("set-metadata", "--did", f"{SCOPE}:{low}", "--key", "run_number", "--value", "50"),
    )
    assert set_new.returncode == 0, output(set_new)
    assert set_legacy.returncode == 0, output(set_legacy)
    for name, value in ((high, 150), (low, 50)):
        meta = api_json(
            lake_api, "GET", did_path(SCOPE, name, "meta"), params={"plugin": "DID_COLUMN"}
        )
        assert int(meta["run_number"]) == value

    pattern = f"{SCOPE}:{uploaded.tag}*"
    new, legacy, unfiltered = rucio_lake.cli_many(
        ("did", "list", "--filter", "type=file,run_number>100", pattern),
        ("list-dids", "--filter", "type=file,run_number>100", pattern),
        ("did", "list", "--filter", "type=all", pattern),
    )
    for proc in (new, legacy):
        assert proc.returncode == 0, output(proc)
        assert did_rows(proc.stdout) == {f"{SCOPE}:{high}": "FILE"}
    assert unfiltered.returncode == 0, output(unfiltered)
    assert did_rows(unfiltered.stdout) == {
        f"{SCOPE}:{uploaded.single}": "FILE",
        f"{SCOPE}:{high}": "FILE",
        f"{SCOPE}:{low}": "FILE",
        f"{SCOPE}:{uploaded.dataset}": "DATASET",
    }
    # The same query straight on the API (the filter is a Python-literal list).
    found = api_stream(
        lake_api,
        "GET",
        f"/dids/{SCOPE}/dids/search",
        params={
            "type": "file",
            "long": "True",
            "filters": repr([{"name": f"{uploaded.tag}*", "run_number.gt": "100"}]),
        },
    )
    assert [(f["name"], f["did_type"]) for f in found] == [(high, "FILE")]


def test_metadata_set_and_list_new_and_legacy(
    rucio_lake: RucioLake, uploaded: Uploaded, lake_api: httpx.Client
) -> None:
    single, legacy = uploaded.single, uploaded.in_dataset[0]
    custom = uploaded.in_dataset[1]
    sets = rucio_lake.cli_many(
        ("did", "metadata", "set", "--key", "campaign", "--value", "camp-new", f"{SCOPE}:{single}"),
        ("did", "metadata", "set", "--key", "colour", "--value", "blue", f"{SCOPE}:{custom}"),
        (
            "set-metadata",
            "--did",
            f"{SCOPE}:{legacy}",
            "--key",
            "datatype",
            "--value",
            "legacy-type",
        ),
    )
    for proc in sets:
        assert proc.returncode == 0, output(proc)
    columns, json_plugin, legacy_get = rucio_lake.cli_many(
        ("did", "metadata", "list", f"{SCOPE}:{single}"),
        ("did", "metadata", "list", "--plugin", "JSON", f"{SCOPE}:{custom}"),
        ("get-metadata", f"{SCOPE}:{legacy}"),
    )
    assert columns.returncode == 0, output(columns)
    assert re.search(r"^campaign:\s+camp-new$", columns.stdout, re.MULTILINE)
    assert re.search(rf"^name:\s+{re.escape(single)}$", columns.stdout, re.MULTILINE)
    assert re.search(r"^did_type:\s+FILE$", columns.stdout, re.MULTILINE)
    assert json_plugin.returncode == 0, output(json_plugin)
    assert re.search(r"^colour:\s+blue$", json_plugin.stdout, re.MULTILINE)
    assert legacy_get.returncode == 0, output(legacy_get)
    assert re.search(r"^datatype:\s+legacy-type$", legacy_get.stdout, re.MULTILINE)
    assert re.search(rf"^bytes:\s+{len(uploaded.data[legacy])}$", legacy_get.stdout, re.MULTILINE)

    meta = api_json(lake_api, "GET", did_path(SCOPE, single, "meta"), params={"plugin": "ALL"})
    assert meta["campaign"] == "camp-new"
    assert meta["adler32"] == adler32_hex(uploaded.data[single])
    meta = api_json(lake_api, "GET", did_path(SCOPE, custom, "meta"), params={"plugin": "JSON"})
    assert meta["colour"] == "blue"
    meta = api_json(lake_api, "GET", did_path(SCOPE, legacy, "meta"))
    assert (meta["datatype"], meta["did_type"]) == ("legacy-type", "FILE")


def test_metadata_of_missing_did_fails(rucio_lake: RucioLake) -> None:
    proc = rucio_lake.cli("did", "metadata", "list", f"{SCOPE}:{unique('missing')}")
    assert proc.returncode != 0
    assert "Data identifier not found" in output(proc)


def test_dataset_add_attach_list_new_and_legacy(
    rucio_lake: RucioLake, uploaded: Uploaded, lake_api: httpx.Client
) -> None:
    new_ds, legacy_ds = unique("ds-new"), unique("ds-legacy")
    new_files = [uploaded.single, uploaded.in_dataset[0]]
    legacy_files = [uploaded.single, uploaded.in_dataset[1]]

    added_new, added_legacy = rucio_lake.cli_many(
        ("did", "add", "--type", "dataset", f"{SCOPE}:{new_ds}"),
        ("add-dataset", f"{SCOPE}:{legacy_ds}"),
    )
    for proc, ds in ((added_new, new_ds), (added_legacy, legacy_ds)):
        assert proc.returncode == 0, output(proc)
        assert f"Added {SCOPE}:{ds}" in proc.stdout
        created = api_json(lake_api, "GET", did_path(SCOPE, ds))
        assert (created["type"], created["open"], created["length"]) == ("DATASET", True, 0)

    again, attach_new, attach_legacy = rucio_lake.cli_many(
        ("did", "add", "--type", "dataset", f"{SCOPE}:{new_ds}"),
        (
            "did",
            "content",
            "add",
            "--to-did",
            f"{SCOPE}:{new_ds}",
            *(f"{SCOPE}:{f}" for f in new_files),
        ),
        ("attach", f"{SCOPE}:{legacy_ds}", *(f"{SCOPE}:{f}" for f in legacy_files)),
    )
    assert again.returncode != 0
    assert "Data Identifier Already Exists" in output(again)
    for proc, ds, files in (
        (attach_new, new_ds, new_files),
        (attach_legacy, legacy_ds, legacy_files),
    ):
        assert proc.returncode == 0, output(proc)
        assert f"DIDs successfully attached to {SCOPE}:{ds}" in proc.stdout
        content = api_stream(lake_api, "GET", did_path(SCOPE, ds, "dids"))
        assert {(c["name"], c["type"]) for c in content} == {(f, "FILE") for f in files}

    content_list, list_files = rucio_lake.cli_many(
        ("did", "content", "list", f"{SCOPE}:{new_ds}"),
        ("list-files", f"{SCOPE}:{legacy_ds}"),
    )
    assert content_list.returncode == 0, output(content_list)
    assert did_rows(content_list.stdout) == {f"{SCOPE}:{f}": "FILE" for f in new_files}

    assert list_files.returncode == 0, output(list_files)
    listed = api_stream(lake_api, "GET", did_path(SCOPE, legacy_ds, "files"))
    assert {f["name"] for f in listed} == set(legacy_files)
    for f in listed:
        guid = f["guid"].replace("-", "")
        dashed = f"{guid[:8]}-{guid[8:12]}-{guid[12:16]}-{guid[16:20]}-{guid[20:]}"
        row = next(
            line for line in list_files.stdout.splitlines() if f"{SCOPE}:{f['name']} " in line
        )
        assert dashed in row
        assert f"ad:{f['adler32']}" in row
    assert re.search(r"^Total files : 2$", list_files.stdout, re.MULTILINE)


# --- replicas and download -------------------------------------------------------------


def test_replica_list_file_new_and_legacy(
    rucio_lake: RucioLake, uploaded: Uploaded, lake_api: httpx.Client
) -> None:
    records = api_stream(
        lake_api,
        "POST",
        "/replicas/list",
        json={
            "dids": [{"scope": SCOPE, "name": n} for n in [uploaded.single, *uploaded.in_dataset]]
        },
    )
    pfn_of = {r["name"]: r["rses"]["LOCAL-DISK"][0] for r in records}
    new, legacy = rucio_lake.cli_many(
        ("replica", "list", "file", f"{SCOPE}:{uploaded.single}"),
        ("list-file-replicas", f"{SCOPE}:{uploaded.dataset}"),
    )
    for proc, names in ((new, [uploaded.single]), (legacy, uploaded.in_dataset)):
        assert proc.returncode == 0, output(proc)
        rows = [line for line in proc.stdout.splitlines() if "LOCAL-DISK: " in line]
        assert len(rows) == len(names)
        for name in names:
            row = next(r for r in rows if f" {name} " in r)
            assert f"LOCAL-DISK: {pfn_of[name]}" in row
            assert adler32_hex(uploaded.data[name]) in row


def test_download_file_and_dataset(
    rucio_lake: RucioLake, uploaded: Uploaded, tmp_path: Path
) -> None:
    file_dir, ds_dir = tmp_path / "file", tmp_path / "dataset"
    one, many = rucio_lake.cli_many(
        ("download", "--dir", str(file_dir), f"{SCOPE}:{uploaded.single}"),
        ("download", "--dir", str(ds_dir), f"{SCOPE}:{uploaded.dataset}"),
    )
    assert one.returncode == 0, output(one)
    assert re.search(r"Downloaded files:\s+1$", one.stdout, re.MULTILINE)
    assert (file_dir / SCOPE / uploaded.single).read_bytes() == uploaded.data[uploaded.single]

    assert many.returncode == 0, output(many)
    assert re.search(r"Downloaded files:\s+2$", many.stdout, re.MULTILINE)
    got = {p.name: p.read_bytes() for p in (ds_dir / uploaded.dataset).iterdir()}
    assert got == {n: uploaded.data[n] for n in uploaded.in_dataset}


def test_download_missing_did_fails(rucio_lake: RucioLake, tmp_path: Path) -> None:
    missing = f"{SCOPE}:{unique('absent')}"
    proc = rucio_lake.cli("download", "--dir", str(tmp_path), missing)
    # rucio-clients 41.5.1's `rucio download` logs the error but discards the exit status of
    # its inner (legacy) implementation, so only the message tells the failure apart.
    assert "Data identifier not found" in output(proc)
    assert missing in output(proc)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# --- erase and rules -------------------------------------------------------------------


def test_erase_new_and_legacy(rucio_lake: RucioLake, lake_api: httpx.Client) -> None:
    new_ds, legacy_ds = unique("erase-new"), unique("erase-legacy")
    for ds in (new_ds, legacy_ds):
        r = lake_api.post(did_path(SCOPE, ds), content='{"type": "DATASET"}')
        assert r.status_code == 201, r.text
    before = datetime.now(UTC)
    new, legacy = rucio_lake.cli_many(
        ("did", "remove", f"{SCOPE}:{new_ds}"), ("erase", f"{SCOPE}:{legacy_ds}")
    )
    after = datetime.now(UTC)
    for proc, ds in ((new, new_ds), (legacy, legacy_ds)):
        assert proc.returncode == 0, output(proc)
        assert f"rucio erase --undo {SCOPE}:{ds}" in output(proc)
        meta = api_json(lake_api, "GET", did_path(SCOPE, ds, "meta"))
        expires = parse_date(meta["expired_at"])
        slack = timedelta(seconds=5)
        assert before + timedelta(hours=24) - slack <= expires <= after + timedelta(hours=24)
        assert meta["did_type"] == "DATASET"  # still there during the grace period

    rucio_lake.cli_ok("did", "remove", "--undo", f"{SCOPE}:{new_ds}")
    assert api_json(lake_api, "GET", did_path(SCOPE, new_ds, "meta"))["expired_at"] is None


def test_rule_list(rucio_lake: RucioLake, uploaded: Uploaded, lake_api: httpx.Client) -> None:
    [file_rule] = api_stream(lake_api, "GET", did_path(SCOPE, uploaded.single, "rules"))
    [ds_rule] = api_stream(lake_api, "GET", did_path(SCOPE, uploaded.dataset, "rules"))
    by_did, by_account = rucio_lake.cli_many(
        ("rule", "list", "--did", f"{SCOPE}:{uploaded.single}"),
        ("rule", "list", "--account", "root"),
    )
    assert by_did.returncode == 0, output(by_did)
    [row] = [line for line in by_did.stdout.splitlines() if line.startswith(file_rule["id"])]
    assert re.match(
        rf"^{file_rule['id']}\s+root\s+{re.escape(SCOPE)}:{re.escape(uploaded.single)}\s+"
        r"OK\[1/0/0\]\s+LOCAL-DISK\s+1\s",
        row,
    ), row
    assert by_account.returncode == 0, output(by_account)
    ids = {line.split()[0] for line in by_account.stdout.splitlines() if line.strip()}
    assert {file_rule["id"], ds_rule["id"]} <= ids
    ds_row = next(line for line in by_account.stdout.splitlines() if line.startswith(ds_rule["id"]))
    assert "OK[2/0/0]" in ds_row
