"""The whole token chain, with real processes: login at the lake → the lake's API → the
transfer engine → storage. Two ``fedlake se serve`` processes over TLS (davs) trust only
the lake's embedded issuer, whose discovery document and JWKS a running lake app serves;
anonymous access is refused. The engine copies between them by HTTP third-party copy
(pull) with tokens it mints per copy (``storage.read`` of the source file,
``storage.read/modify`` of the destination file and ``storage.create`` of the RSE's
prefix), each for one SE only; the lake's API refuses those tokens.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake, build_lake, ensure_root
from fedlake.catalog import rses as rse_core
from fedlake.server.app import create_app
from fedlake.services import accounts as account_svc
from fedlake.settings import Settings
from fedlake.transfers.storage_tokens import StorageTokens
from fedlake.transfers.worker import TransferWorker, WorkerConfig
from tests.helpers import ROOT_PASSWORD, free_port, log_in
from tests.integration.transfers.conftest import SCOPE
from tests.servers.fedlake_se import SEServer, running_se
from tests.servers.xrdhttp import make_certificate

DATA = bytes(range(256)) * 12289  # ~3 MiB
ACTIVE = ("QUEUED", "SUBMITTED", "WAITING")


@dataclass
class ServedLake:
    lake: Lake
    url: str


@pytest.fixture
def served_lake(database_url: str, tmp_path: Path) -> Iterator[ServedLake]:
    """A lake (SQLite or PostgreSQL) whose API and issuer listen on a loopback port."""
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        root_password=ROOT_PASSWORD,
        port=port,
    )
    lake = build_lake(settings, migrate=True)
    ensure_root(lake)
    config = uvicorn.Config(
        create_app(lake), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the lake app did not start"
        time.sleep(0.02)
    try:
        assert settings.public_url == f"http://127.0.0.1:{port}"  # the tokens' issuer
        yield ServedLake(lake, settings.public_url)
    finally:
        server.should_exit = True
        thread.join(10)
        lake.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("se-tpc-tls"))


def se_config(issuer: str, port: int, ca: Path) -> str:
    """Trusts the lake's issuer only, for tokens whose audience is this SE; no anonymous
    access and no storage areas: the tokens' scopes alone decide."""
    return (
        f'[[issuers]]\nissuer = "{issuer}"\naudiences = ["https://127.0.0.1:{port}"]\n\n'
        f'[tpc]\nmarker_interval = 0.5\nca_file = "{ca}"\n'
    )


@pytest.fixture
def two_ses(served_lake: ServedLake, tls: tuple[Path, Path]) -> Iterator[tuple[SEServer, ...]]:
    port_a, port_b = free_port(), free_port()
    with (
        running_se(config=se_config(served_lake.url, port_a, tls[0]), tls=tls, port=port_a) as a,
        running_se(config=se_config(served_lake.url, port_b, tls[0]), tls=tls, port=port_b) as b,
    ):
        yield a, b


def add_rse(lake: Lake, name: str, se: SEServer, prefix: str, **options: Any) -> None:
    """An RSE on ``se`` (davs, TPC both ways); ``options`` add to its plugin's options."""
    tpc = {"read": 1, "write": 1, "delete": 1, "third_party_copy_read": 1,
           "third_party_copy_write": 1}  # fmt: skip
    with lake.db.write() as s:
        row = rse_core.add_rse(s, name, deterministic=True, lfn2pfn_algorithm="identity")
        rse_core.add_protocol(
            s,
            row,
            {
                "scheme": "davs",
                "hostname": "127.0.0.1",
                "port": se.port,
                "prefix": prefix,
                "impl": "rucio.rse.protocols.gfal.Default",
                "domains": {"wan": tpc},
                "extended_attributes": {
                    "fedlake_storage_options": {"verify": str(se.ca), **options}
                },
            },
        )


@pytest.fixture
def worker(served_lake: ServedLake) -> Iterator[TransferWorker]:
    """The engine, with the storage tokens of the lake's issuer (as ``fedlake daemon
    transfers`` runs it)."""
    w = TransferWorker(
        served_lake.lake.db,
        WorkerConfig(threads=2, batch=10, lease=30, idle_poll=0.1, stage_poll=0.2, refresh=0),
        tokens=StorageTokens(served_lake.lake.tokens, lifetime=600),
    )
    w.start()
    yield w
    w.stop(timeout=5)


def trust(se: SEServer) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(se.ca))


def login(api: httpx.Client) -> None:
    log_in(api)


def wait_done(api: httpx.Client, rid: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = api.get(f"/transfers/{rid}")
        assert r.status_code == 200, r.text
        req: dict[str, Any] = r.json()
        if req["state"] not in ACTIVE:
            return req
        assert time.monotonic() < deadline, f"transfer {rid} still {req['state']}"
        time.sleep(0.1)


def test_the_engine_copies_se_to_se_by_tpc_with_delegated_tokens(
    served_lake: ServedLake,
    two_ses: tuple[SEServer, SEServer],
    worker: TransferWorker,
) -> None:
    lake = served_lake.lake
    se_a, se_b = two_ses
    run = secrets.token_hex(3)
    add_rse(lake, "SE-A", se_a, f"/a-{run}")
    add_rse(lake, "SE-B", se_b, f"/b-{run}")
    account_svc.add_scope(lake, Caller("root", admin=True), SCOPE, "root")
    name = f"tpc-{run}.bin"
    on_a = se_a.root / f"a-{run}" / SCOPE / name
    on_a.parent.mkdir(parents=True)
    on_a.write_bytes(DATA)  # the source replica, written there before
    on_b = se_b.root / f"b-{run}" / SCOPE / name

    with httpx.Client(base_url=served_lake.url, timeout=30) as api:
        # nobody gets at the SEs without a token of the lake's issuer
        assert (
            httpx.get(se_a.url(f"/a-{run}/{SCOPE}/{name}"), verify=trust(se_a)).status_code == 401
        )

        login(api)  # login → API
        replica = {
            "scope": SCOPE,
            "name": name,
            "bytes": len(DATA),
            "adler32": f"{zlib.adler32(DATA):08x}",
            "md5": hashlib.md5(DATA, usedforsecurity=False).hexdigest(),
        }
        r = api.post("/replicas", content=json.dumps({"rse": "SE-A", "files": [replica]}))
        assert r.status_code == 201, r.text
        body = {
            "dids": [{"scope": SCOPE, "name": name}],
            "rse": "SE-B",
            "source_rse_expression": "SE-A",
            "verify_source": True,
        }
        r = api.post("/transfers/", content=json.dumps(body))
        assert r.status_code == 201, r.text
        [rid] = r.json()["request_ids"]

        req = wait_done(api, rid)  # → transfer → storage
        assert req["state"] == "DONE", req
        assert req["attempts"][-1]["tpc"] is True  # SE-B pulled from SE-A itself
        assert on_b.read_bytes() == DATA
        assert not [p.name for p in on_b.parent.iterdir() if p.name != name]  # no temporaries

        # the tokens the engine minted are good for their SE and path only
        tokens = StorageTokens(lake.tokens, lifetime=60)
        src_url = se_a.url(f"/a-{run}/{SCOPE}/{name}")
        token = tokens.source(src_url.replace("https://", "davs://"))
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(verify=trust(se_a), timeout=30) as se:
            assert se.get(src_url, headers=auth).content == DATA
            assert se.put(src_url, headers=auth, content=b"x").status_code == 403
            other = se_b.url(f"/b-{run}/{SCOPE}/{name}")
            r = se.get(other, headers=auth)
            assert r.status_code == 401 and "audience" in r.text
        r = httpx.get(f"{served_lake.url}/accounts/whoami", headers={"X-Rucio-Auth-Token": token})
        assert r.status_code == 401  # never a token for the lake's API


def test_the_engine_stages_on_a_secured_tape_se_with_a_token_it_mints(
    served_lake: ServedLake, tls: tuple[Path, Path], worker: TransferWorker
) -> None:
    """A tape SE that trusts only the lake: the engine brings the file online through the
    Tape REST API with a minted ``storage.stage`` token, then SE-B pulls it."""
    lake = served_lake.lake
    port_t, port_b = free_port(), free_port()
    tape_config = se_config(served_lake.url, port_t, tls[0]) + (
        "\n[tape]\nrecall_latency = 0.3\nrecall_throughput = 1e9\n"
    )
    with (
        running_se(config=tape_config, tls=tls, port=port_t) as tape,
        running_se(config=se_config(served_lake.url, port_b, tls[0]), tls=tls, port=port_b) as b,
    ):
        run = secrets.token_hex(3)
        add_rse(lake, "SE-TAPE", tape, f"/t-{run}", tape_rest=True)
        add_rse(lake, "SE-B", b, f"/b-{run}")
        account_svc.add_scope(lake, Caller("root", admin=True), SCOPE, "root")
        name = f"raw-{run}.fits"
        on_tape = tape.root / "tape" / f"t-{run}" / SCOPE / name
        on_tape.parent.mkdir(parents=True)
        on_tape.write_bytes(DATA)  # archived before: on tape only
        src_url = tape.url(f"/t-{run}/{SCOPE}/{name}")
        assert httpx.get(src_url, verify=trust(tape)).status_code == 401  # no anonymous
        with httpx.Client(base_url=served_lake.url, timeout=30) as api:
            login(api)
            replica = {"scope": SCOPE, "name": name, "bytes": len(DATA),
                       "adler32": f"{zlib.adler32(DATA):08x}"}  # fmt: skip
            r = api.post("/replicas", content=json.dumps({"rse": "SE-TAPE", "files": [replica]}))
            assert r.status_code == 201, r.text
            body = {"dids": [{"scope": SCOPE, "name": name}], "rse": "SE-B"}
            r = api.post("/transfers/", content=json.dumps(body))
            assert r.status_code == 201, r.text
            [rid] = r.json()["request_ids"]
            req = wait_done(api, rid)
        assert req["state"] == "DONE", req
        states = [a["state"] for a in req["attempts"]]
        assert states[0] == "WAITING" and states[-1] == "DONE", states  # staged first
        assert (b.root / f"b-{run}" / SCOPE / name).read_bytes() == DATA
        stage_requests = list((tape.root / "stage-requests").glob("*.json"))
        assert len(stage_requests) == 1, stage_requests
