"""DID search with metadata filters: the text syntax and the rucio client's list of dicts."""

from __future__ import annotations

import json
import zlib
from typing import Any

import httpx
from starlette.testclient import TestClient

SCOPE = "user.root"
URL = f"/dids/{SCOPE}/dids/search"

#: name -> (bytes, metadata)
FILES: dict[str, tuple[int, dict[str, Any]]] = {
    "raw_001": (50, {"run_number": 50, "datatype": "raw", "energy": 0.5}),
    "raw_002": (150, {"run_number": 150, "datatype": "raw", "energy": 2.5, "flag": True}),
    "raw_003": (250, {"run_number": "250", "datatype": "raw", "flag": False}),
    "calib_001": (20, {"run_number": 120, "datatype": "calib"}),
    "calib_002": (5, {"datatype": "calib", "taken_at": "2024-05-01T10:00:00"}),
    "sim_001": (
        80,
        {"run_number": 300, "datatype": "simulation", "taken_at": "2023-01-01T00:00:00"},
    ),
}
PARTS = [f"part_{i:02d}" for i in range(12)]


def post(api: TestClient, url: str, body: Any) -> httpx.Response:
    r = api.post(url, content=json.dumps(body))
    assert r.status_code == 201, r.text
    return r


def populate(api: TestClient) -> None:
    files = []
    for name, (nbytes, _) in FILES.items():
        data = b"m" * nbytes
        files.append(
            {"scope": SCOPE, "name": name, "bytes": nbytes, "adler32": f"{zlib.adler32(data):08x}"}
        )
    for name in PARTS:
        files.append({"scope": SCOPE, "name": name, "bytes": 1, "adler32": "00620062"})
    post(api, "/replicas", {"rse": "LOCAL-DISK", "files": files})
    for name, (_, meta) in FILES.items():
        post(api, f"/dids/{SCOPE}/{name}/meta", {"meta": meta, "recursive": False})
    post(
        api,
        "/dids",
        [
            {
                "scope": SCOPE,
                "name": "ds_small",
                "type": "DATASET",
                "meta": {"run_number": 150, "datatype": "raw"},
            },
            {"scope": SCOPE, "name": "ds_big", "type": "DATASET", "meta": {"datatype": "raw"}},
            {"scope": SCOPE, "name": "calib_cont", "type": "CONTAINER"},
        ],
    )
    post(
        api,
        f"/dids/{SCOPE}/ds_small/dids",
        {"dids": [{"scope": SCOPE, "name": n} for n in ("raw_001", "calib_002")]},
    )
    post(api, f"/dids/{SCOPE}/ds_big/dids", {"dids": [{"scope": SCOPE, "name": n} for n in PARTS]})


def search(
    api: TestClient, filters: str | None = None, did_type: str = "all", **params: str
) -> list[str]:
    query: dict[str, str] = {"type": did_type, "long": "False", **params}
    if filters is not None:
        query["filters"] = filters
    r = api.get(URL, params=query)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-json-stream"
    names = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert all(isinstance(n, str) for n in names)
    return sorted(names)


def test_text_syntax(api: TestClient) -> None:
    populate(api)
    assert search(api, "run_number>100,datatype=raw;name=calib*") == [
        "calib_001",
        "calib_002",
        "calib_cont",
        "ds_small",
        "raw_002",
        "raw_003",
    ]
    assert search(api, "run_number>100,datatype=raw", did_type="file") == ["raw_002", "raw_003"]
    assert search(api, "run_number>=150,run_number<=250", did_type="file") == ["raw_002", "raw_003"]
    assert search(api, "run_number==50") == ["raw_001"]
    assert search(api, "datatype!=raw", did_type="file") == ["calib_001", "calib_002", "sim_001"]
    assert search(api, "energy>1.5") == ["raw_002"]
    assert search(api, "flag=true") == ["raw_002"]
    assert search(api, "flag=false") == ["raw_003"]
    # spaces around keys, operators and values are ignored
    assert search(api, " datatype = simulation ") == ["sim_001"]


def test_compound_type_and_columns(api: TestClient) -> None:
    populate(api)
    assert search(api, "10<length<100") == ["ds_big"]
    assert search(api, "10<bytes<100", did_type="file") == ["calib_001", "raw_001", "sim_001"]
    assert search(api, "10<=bytes<=50", did_type="file") == ["calib_001", "raw_001"]
    assert search(api, "type=dataset") == ["ds_big", "ds_small"]
    assert search(api, "type=container") == ["calib_cont"]
    assert search(api, "type=collection,name=ds_*") == ["ds_big", "ds_small"]
    # type in one group overrides the query parameter only for that group
    assert search(api, "type=file,bytes>200;type=container", did_type="dataset") == [
        "calib_cont",
        "raw_003",
    ]
    assert search(api, "100<bytes") == ["raw_002", "raw_003"]
    assert search(api, "length>1", did_type="collection") == ["ds_big", "ds_small"]
    assert search(api, "length=0,type=all") == ["calib_cont"]


def test_wildcards_mixing_and_dates(api: TestClient) -> None:
    populate(api)
    assert search(api, "name=raw_*") == ["raw_001", "raw_002", "raw_003"]
    assert search(api, "name=*_00?") == []  # '?' is literal, not a wildcard
    assert search(api, "name=*_001") == ["calib_001", "raw_001", "sim_001"]
    assert search(api, "datatype=sim*") == ["sim_001"]
    assert search(api, "datatype=*a*,bytes<30", did_type="file") == ["calib_001", "calib_002"]
    assert search(api, "name!=raw_*,datatype=raw") == ["ds_big", "ds_small"]
    # '_' and '%' in patterns are literal characters
    assert search(api, "name=raw%") == []
    assert search(api, "name=ds_*,run_number=150") == ["ds_small"]
    assert search(api, "name=*,bytes>=150,datatype=raw,run_number<200", did_type="file") == [
        "raw_002"
    ]
    assert search(api, "taken_at>2024-01-01") == ["calib_002"]
    assert search(api, "taken_at<2024-01-01T00:00:00Z") == ["sim_001"]
    assert search(api, "taken_at>=2023-01-01,taken_at<2025-01-01") == ["calib_002", "sim_001"]
    everything = search(api, "name=*")
    assert len(everything) == len(FILES) + len(PARTS) + 3
    assert search(api, "created_after=2000-01-01") == everything
    assert search(api, "created_before=2000-01-01") == []
    # the legacy client sends RFC 1123 strings in the dict form
    assert search(api, "[{'name': '*', 'created_after': 'Sat, 01 Jan 2000 00:00:00 UTC'}]") == (
        everything
    )
    assert search(api, "[{'name': '*', 'created_before': 'Sat, 01 Jan 2000 00:00:00 UTC'}]") == []
    assert search(api, "[{'updated_at.gt': '2000-01-01'}]") == everything


def test_dict_form_and_long_output(api: TestClient) -> None:
    populate(api)
    assert search(api, "[{'run_number.gt': '100'}]", did_type="file") == [
        "calib_001",
        "raw_002",
        "raw_003",
        "sim_001",
    ]
    assert search(api, "[{'name': '*', 'run_number.gte': '150', 'run_number.lt': '300'}]") == [
        "ds_small",
        "raw_002",
        "raw_003",
    ]
    assert search(api, "[{'name': 'raw*', 'run_number.ne': '150'}]") == ["raw_001", "raw_003"]
    # OR of AND-groups
    assert search(api, "[{'name': 'sim*'}, {'datatype': 'calib', 'bytes.lte': '10'}]") == [
        "calib_002",
        "sim_001",
    ]
    # the CLI sends values with a leading operator
    assert search(api, "[{'name': '*', 'run_number': '>250'}]") == ["sim_001"]
    # type inside a dict, and the rucio download form
    assert search(
        api, "[{'name': '*', 'type': 'dataset', 'length.gt': '0'}]", did_type="collection"
    ) == ["ds_big", "ds_small"]
    assert search(api, "[{'name': 'raw_002'}]") == ["raw_002"]
    # a single dict and JSON work too
    assert search(api, "{'name': 'calib_00*'}") == ["calib_001", "calib_002"]
    assert search(api, '[{"name": "sim_*", "energy.lt": "1"}]') == []
    assert search(api, '[{"datatype": "raw", "energy.lt": 1}]') == ["raw_001"]
    # jupyterlab: plain query parameters instead of filters
    assert search(api, None, name="raw_00*", datatype="raw", did_type="file") == [
        "raw_001",
        "raw_002",
        "raw_003",
    ]
    r = api.get(
        URL,
        params={"type": "all", "long": "True", "filters": "[{'name': 'ds_*', 'datatype': 'raw'}]"},
    )
    rows = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    assert rows == [
        {"scope": SCOPE, "name": "ds_big", "did_type": "DATASET", "bytes": 12, "length": 12},
        {"scope": SCOPE, "name": "ds_small", "did_type": "DATASET", "bytes": 55, "length": 2},
    ]
    r = api.get(URL, params={"type": "file", "long": "1", "filters": "bytes>200", "limit": "5"})
    assert [json.loads(line) for line in r.text.splitlines() if line.strip()] == [
        {"scope": SCOPE, "name": "raw_003", "did_type": "FILE", "bytes": 250, "length": 1}
    ]


def test_filter_syntax_errors(api: TestClient) -> None:
    populate(api)
    for bad in (
        "run_number>>5",
        "=5",
        "run_number>",
        "a<b<c<d",
        "type=folder",
        "[{'name': 'x', 'run.between': '1'}]",
        "[{'name': ",
        "[1, 2]",
        "100<run_number>5",
        "bad key=1",
        ";",
        # values of the wrong type for DID columns, and numbers too large to compare
        "length>abc",
        "bytes>2020-01-01",
        "created_at>yesterday",
        "[{'name': '*', 'updated_at.lt': 'soon'}]",
        "is_open=maybe",
        "run_number>1" + "0" * 400,
    ):
        r = api.get(URL, params={"type": "all", "filters": bad})
        assert r.status_code == 400, (bad, r.text)
        assert r.headers["ExceptionClass"] == "DIDFilterSyntaxError", bad
        body = json.loads(r.content)
        assert body["ExceptionClass"] == "DIDFilterSyntaxError"
        assert body["ExceptionMessage"]
