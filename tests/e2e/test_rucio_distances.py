"""RSE distances through the stock rucio Python client (rucio-clients 41.5.1):
``add_distance``, ``get_distance``, ``update_distance``, ``delete_distance`` against a live
lake, checked through the lake's REST API, and the exceptions the client raises."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import httpx
import pytest
from rucio.client import Client as RucioClient
from rucio.common import exception as rex
from rucio.common.config import clean_cached_config
from rucio.rse import rsemanager

from tests.e2e.conftest import RucioLake, api_json
from tests.helpers import ROOT_PASSWORD


def _reset_rucio_caches() -> None:
    clean_cached_config()
    rsemanager.RSE_REGION.invalidate(hard=True)


@pytest.fixture(scope="module")
def rclient(rucio_lake: RucioLake) -> Iterator[RucioClient]:
    token_dir = rucio_lake.workdir / "dist-tmp"
    token_dir.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUCIO_CONFIG", str(rucio_lake.config))
        for var in ("RUCIO_HOME", "RUCIO_ACCOUNT", "RUCIO_AUTH_TYPE", "RUCIO_VO"):
            mp.delenv(var, raising=False)
        mp.setattr(tempfile, "tempdir", str(token_dir))
        _reset_rucio_caches()
        client = RucioClient(
            rucio_host=rucio_lake.url,
            auth_host=rucio_lake.url,
            auth_type="userpass",
            creds={"username": "root", "password": ROOT_PASSWORD},
            account="root",
        )
        try:
            yield client
        finally:
            client.session.close()
            _reset_rucio_caches()


def test_add_get_update_delete(rclient: RucioClient, lake_api: httpx.Client) -> None:
    disk = api_json(lake_api, "GET", "/rses/LOCAL-DISK")["id"]
    safe = api_json(lake_api, "GET", "/rses/LOCAL-SAFE")["id"]
    assert rclient.get_distance("LOCAL-DISK", "LOCAL-SAFE") == []
    assert rclient.add_distance("LOCAL-DISK", "LOCAL-SAFE", {"distance": 3}) is True
    [d] = rclient.get_distance("LOCAL-DISK", "LOCAL-SAFE")
    assert d["src_rse_id"] == disk and d["dest_rse_id"] == safe
    assert d["src_rse"] == "LOCAL-DISK" and d["dest_rse"] == "LOCAL-SAFE"
    assert d["distance"] == 3 and d["ranking"] == 3
    assert api_json(lake_api, "GET", "/rses/LOCAL-DISK/distances/LOCAL-SAFE") == [d]
    assert rclient.get_distance("LOCAL-SAFE", "LOCAL-DISK") == []

    assert rclient.update_distance("LOCAL-DISK", "LOCAL-SAFE", {"distance": 8}) is True
    assert rclient.get_distance("LOCAL-DISK", "LOCAL-SAFE")[0]["distance"] == 8
    # as in Rucio, updating a missing distance does not create it
    assert rclient.update_distance("LOCAL-SAFE", "LOCAL-DISK", {"distance": 1}) is True
    assert rclient.get_distance("LOCAL-SAFE", "LOCAL-DISK") == []

    assert rclient.add_distance("LOCAL-DISK", "LOCAL-TAPE", {"distance": 2}, True) is True
    assert rclient.get_distance("LOCAL-TAPE", "LOCAL-DISK")[0]["distance"] == 2
    assert rclient.update_distance("LOCAL-DISK", "LOCAL-TAPE", {"distance": 5}, True) is True
    assert rclient.get_distance("LOCAL-TAPE", "LOCAL-DISK")[0]["distance"] == 5
    assert rclient.get_distance("LOCAL-DISK", "LOCAL-TAPE")[0]["distance"] == 5

    assert rclient.delete_distance("LOCAL-DISK", "LOCAL-TAPE") is True
    assert rclient.get_distance("LOCAL-DISK", "LOCAL-TAPE") == []
    assert rclient.get_distance("LOCAL-TAPE", "LOCAL-DISK")[0]["distance"] == 5
    assert rclient.delete_distance("LOCAL-TAPE", "LOCAL-DISK", bidirectional=True) is True
    assert rclient.get_distance("LOCAL-TAPE", "LOCAL-DISK") == []
    assert api_json(lake_api, "GET", "/rses/LOCAL-DISK/distances/LOCAL-SAFE")[0]["distance"] == 8


def test_errors_keep_their_rucio_class(rclient: RucioClient) -> None:
    rclient.add_distance("LOCAL-BUFFER", "LOCAL-SAFE", {"distance": 4})
    with pytest.raises(rex.Duplicate):
        rclient.add_distance("LOCAL-BUFFER", "LOCAL-SAFE", {"distance": 4})
    with pytest.raises(rex.RSENotFound):
        rclient.get_distance("LOCAL-BUFFER", "NOWHERE")
    with pytest.raises(rex.RSENotFound):
        rclient.add_distance("NOWHERE", "LOCAL-SAFE", {"distance": 1})
    with pytest.raises(rex.InvalidObject):
        rclient.add_distance("LOCAL-BUFFER", "LOCAL-TAPE", {"distance": -1})
    with pytest.raises(rex.InvalidObject):
        rclient.add_distance("LOCAL-BUFFER", "LOCAL-BUFFER", {"distance": 1})
    assert rclient.get_distance("LOCAL-BUFFER", "LOCAL-SAFE")[0]["distance"] == 4
    assert rclient.get_distance("LOCAL-BUFFER", "LOCAL-TAPE") == []


def test_the_rucio_cli_sets_shows_and_unsets(rucio_lake: RucioLake, rclient: RucioClient) -> None:
    out = rucio_lake.cli_ok(
        "rse", "distance", "set", "LOCAL-SAFE", "LOCAL-TAPE", "--distance", "6", "--bidirectional"
    ).stdout
    assert "LOCAL-SAFE <-> LOCAL-TAPE to 6" in out
    assert rclient.get_distance("LOCAL-TAPE", "LOCAL-SAFE")[0]["distance"] == 6
    out = rucio_lake.cli_ok("rse", "distance", "show", "LOCAL-SAFE", "LOCAL-TAPE").stdout
    assert "LOCAL-SAFE" in out and "LOCAL-TAPE" in out and "6" in out
    rucio_lake.cli_ok("rse", "distance", "unset", "LOCAL-SAFE", "LOCAL-TAPE", "--bidirectional")
    assert rclient.get_distance("LOCAL-SAFE", "LOCAL-TAPE") == []
    assert rclient.get_distance("LOCAL-TAPE", "LOCAL-SAFE") == []
