"""A site's read-through cache first: the RSE attribute ``caches`` makes ``/redirect`` and
``/replicas/list`` give clients of that site the cache's URL before the RSE's own PFNs,
and the cache (a real ``fedlake se cache`` in front of the RSE) serves the file."""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.testclient import TestClient

from fedlake.bootstrap import Lake
from tests.helpers import assert_error, ndjson, one, post
from tests.integration.test_api_replicas import (
    SCOPE,
    file_dict,
    list_body,
    register,
    rse_prefix,
    rucio_hash_path,
)
from tests.servers.fedlake_cache import running_cache

DATA = b"read me through the site's cache\n" * 1000


def _set_caches(api: TestClient, value: object) -> httpx.Response:
    return post(api, "/rses/LOCAL-DISK/attr/caches", {"value": value})


def test_bad_caches_attribute_is_refused(api: TestClient) -> None:
    msg = assert_error(_set_caches(api, "cern.ch=https://x"), 400)
    assert "neither a network" in msg
    assert "caches" not in one(api.get("/rses/LOCAL-DISK/attr/"))


def test_clients_of_a_site_read_through_its_cache(
    api: TestClient, lake: Lake, tmp_path: Path
) -> None:
    rel = rucio_hash_path(SCOPE, "cached1")
    origin = rse_prefix(lake, "disk")
    (Path(origin) / rel).parent.mkdir(parents=True, exist_ok=True)
    (Path(origin) / rel).write_bytes(DATA)
    register(api, "LOCAL-DISK", file_dict("cached1", DATA))
    direct = f"file://localhost{origin}/{rel}"
    with running_cache(f"file://localhost{origin}", tmp_path / "cache") as cache:
        base = f"http://127.0.0.1:{cache.port}"
        r = _set_caches(api, f"10.9.0.0/16=https://other.example;127.0.0.0/8={base};site:B={base}")
        assert r.status_code == 201, r.text

        # redirect: the client's address picks the cache; elsewhere the RSE's own PFN
        r = api.get(
            f"/redirect/{SCOPE}/cached1", params={"ip": "127.0.0.1"}, follow_redirects=False
        )
        assert r.status_code == 303 and r.headers["location"] == f"{base}/{rel}"
        r = api.get(
            f"/redirect/{SCOPE}/cached1", params={"ip": "192.0.2.7"}, follow_redirects=False
        )
        assert r.headers["location"] == direct
        r = api.get(f"/redirect/{SCOPE}/cached1", params={"site": "B"}, follow_redirects=False)
        assert r.headers["location"] == f"{base}/{rel}"  # TestClient's own address is no IP

        # listing (rucio download): the cache's PFN first, the RSE's own after it
        [rec] = ndjson(post(api, "/replicas/list", list_body("cached1")))
        assert list(rec["pfns"]) == [f"{base}/{rel}", direct]
        assert [m["priority"] for m in rec["pfns"].values()] == [1, 2]
        assert rec["pfns"][f"{base}/{rel}"]["rse"] == "LOCAL-DISK"
        assert rec["rses"] == {"LOCAL-DISK": [f"{base}/{rel}", direct]}
        body = list_body("cached1", client_location={"ip": "192.0.2.7", "site": "ROAMING"})
        [rec] = ndjson(post(api, "/replicas/list", body))
        assert list(rec["pfns"]) == [direct]
        [rec] = ndjson(post(api, "/replicas/list", list_body("cached1", schemes=["file"])))
        assert list(rec["pfns"]) == [direct]  # the client asked for schemes the cache lacks
        bad = list_body("cached1", client_location={"ip": 7})
        assert "client_location.ip" in assert_error(post(api, "/replicas/list", bad), 400)

        # the cache really serves the file: fetched from the RSE once, then from its disk
        for _ in range(2):
            got = httpx.get(f"{base}/{rel}", timeout=30)
            assert got.status_code == 200 and got.content == DATA
        counts = cache.metrics()
        assert counts["fedlake_cache_misses"] == 1 and counts["fedlake_cache_hits"] == 1
