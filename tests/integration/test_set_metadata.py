"""Setting DID metadata, one call per DID: the lean statements and group commit.

Each call is all-or-nothing, also when concurrent calls share a transaction; a missing
DID writes nothing; the DID's ``updated_at`` moves; ownership is checked per call.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future
from datetime import datetime

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import meta as meta_core
from fedlake.catalog.models import DID, DIDMeta
from fedlake.domain.errors import AccessDenied, DIDNotFound, InvalidMetadata, InvalidName
from fedlake.services import accounts as account_svc
from fedlake.services import dids as svc

SCOPE = "user.root"
ROOT = Caller("root", admin=True)


def _datasets(lake: Lake, *names: str, scope: str = SCOPE, caller: Caller = ROOT) -> None:
    svc.add_dids(lake, caller, [{"scope": scope, "name": n, "type": "DATASET"} for n in names])


def _meta(lake: Lake, name: str, scope: str = SCOPE) -> dict[str, object]:
    return svc.get_meta(lake, ROOT, scope, name, "JSON")


def _updated_at(lake: Lake, name: str) -> datetime:
    with lake.db.read() as s:
        row = s.get(DID, (SCOPE, name))
        assert row is not None
        return row.updated_at


def _meta_rows(lake: Lake) -> int:
    with lake.db.read() as s:
        return s.execute(select(func.count()).select_from(DIDMeta)).scalar_one()


@pytest.mark.parametrize("submit", [False, True], ids=["set_meta", "submit_set_meta"])
def test_one_and_several_keys(lake: Lake, submit: bool) -> None:
    _datasets(lake, "ds1")
    before = _updated_at(lake, "ds1")
    time.sleep(0.01)

    def put(meta: dict[str, object]) -> None:
        if submit:
            svc.submit_set_meta(lake, ROOT, SCOPE, "ds1", meta).result(30)
        else:
            svc.set_meta(lake, ROOT, SCOPE, "ds1", meta)

    put({"run_number": 7})
    assert _meta(lake, "ds1") == {"run_number": 7}
    put({"run_number": 8, "energy": 1.5, "taken": "2024-05-01T10:00:00", "tags": ["a"]})
    put({"flag": True})
    assert _meta(lake, "ds1") == {
        "run_number": 8,
        "energy": 1.5,
        "taken": "2024-05-01T10:00:00",
        "tags": ["a"],
        "flag": True,
    }
    assert _updated_at(lake, "ds1") > before
    with lake.db.read() as s:  # typed columns are filled for the filters
        row = s.get(DIDMeta, (SCOPE, "ds1", "taken"))
        assert row is not None and row.vtype == "d" and row.date_val == datetime(2024, 5, 1, 10)
        row = s.get(DIDMeta, (SCOPE, "ds1", "run_number"))
        assert row is not None and row.vtype == "i" and row.num_val == 8.0


@pytest.mark.parametrize("meta", [{"k": 1}, {"k": 1, "j": 2}, {}])
def test_missing_did_writes_nothing(lake: Lake, meta: dict[str, object]) -> None:
    with pytest.raises(DIDNotFound, match=r"user\.root:ghost does not exist"):
        svc.submit_set_meta(lake, ROOT, SCOPE, "ghost", meta).result(30)
    with pytest.raises(DIDNotFound):
        svc.set_meta(lake, ROOT, SCOPE, "ghost", meta)
    assert _meta_rows(lake) == 0


def test_missing_did_is_reported_before_a_bad_key(lake: Lake) -> None:
    with pytest.raises(DIDNotFound):
        svc.submit_set_meta(lake, ROOT, SCOPE, "ghost", {"bad.key": 1}).result(30)
    _datasets(lake, "ds2")
    with pytest.raises(InvalidName, match=r"bad\.key"):
        svc.submit_set_meta(lake, ROOT, SCOPE, "ds2", {"good": 1, "bad.key": 1}).result(30)
    with pytest.raises(InvalidMetadata, match="managed by the lake"):
        svc.submit_set_meta(lake, ROOT, SCOPE, "ds2", {"good": 1, "bytes": 1}).result(30)
    assert _meta(lake, "ds2") == {}


def test_special_keys_still_change_the_did(lake: Lake) -> None:
    _datasets(lake, "ds3")
    svc.submit_set_meta(lake, ROOT, SCOPE, "ds3", {"guid": "abc", "events": "12"}).result(30)
    svc.submit_set_meta(lake, ROOT, SCOPE, "ds3", {"lifetime": 3600, "k": "v"}).result(30)
    with lake.db.read() as s:
        row = s.get(DID, (SCOPE, "ds3"))
        assert row is not None
        assert (row.guid, row.events) == ("abc", 12)
        assert row.expired_at is not None
    assert _meta(lake, "ds3") == {"k": "v"}


def test_loaded_did_object_follows_the_row(lake: Lake) -> None:
    _datasets(lake, "ds4")
    with lake.db.write() as s:
        row = s.get(DID, (SCOPE, "ds4"))
        assert row is not None
        old = row.updated_at
        time.sleep(0.01)
        meta_core.set_meta(s, SCOPE, "ds4", {"k": 1})
        assert row.updated_at > old
        stored = s.execute(select(DID.updated_at).where(DID.name == "ds4")).scalar_one()
        assert row.updated_at == stored


def test_did_added_in_the_same_transaction(lake: Lake) -> None:
    svc.add_dids(lake, ROOT, [{"scope": SCOPE, "name": "ds5", "type": "DATASET", "meta": {"a": 1}}])
    assert _meta(lake, "ds5") == {"a": 1}


def test_scope_ownership_is_checked_per_call(lake: Lake) -> None:
    account_svc.add_account(lake, ROOT, "alice", "USER", None)
    account_svc.add_scope(lake, ROOT, "user.alice", "alice")
    alice = Caller("alice")
    _datasets(lake, "mine", scope="user.alice")
    _datasets(lake, "not-mine")
    svc.submit_set_meta(lake, alice, "user.alice", "mine", {"k": 1}).result(30)
    with pytest.raises(AccessDenied, match=r"scope user\.root"):
        svc.submit_set_meta(lake, alice, SCOPE, "not-mine", {"k": 1}).result(30)
    assert _meta(lake, "mine", scope="user.alice") == {"k": 1}
    assert _meta(lake, "not-mine") == {}


def test_concurrent_calls_each_land_once(lake: Lake) -> None:
    """Many threads, one call per DID; some calls fail (missing DIDs) in between."""
    names = [f"c{i:03d}" for i in range(120)]
    _datasets(lake, *names)
    futures: dict[str, Future[None]] = {}
    guard = threading.Lock()

    def client(part: list[str]) -> None:
        for name in part:
            target = name if not name.endswith("7") else f"{name}-missing"
            fut = svc.submit_set_meta(lake, ROOT, SCOPE, target, {"run_number": int(name[1:])})
            with guard:
                futures[name] = fut

    threads = [threading.Thread(target=client, args=(names[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, fut in futures.items():
        if name.endswith("7"):
            with pytest.raises(DIDNotFound):
                fut.result(30)
        else:
            assert fut.result(30) is None
    for name in names:
        expected = {} if name.endswith("7") else {"run_number": int(name[1:])}
        assert _meta(lake, name) == expected
    assert _meta_rows(lake) == len([n for n in names if not n.endswith("7")])


def test_rest_call_as_the_rucio_client_makes_it(api: TestClient) -> None:
    r = api.post(f"/dids/{SCOPE}/api1", content=json.dumps({"type": "DATASET"}))
    assert r.status_code == 201, r.text
    r = api.post(f"/dids/{SCOPE}/api1/meta/run_number", content=json.dumps({"value": 42}))
    assert (r.status_code, r.text) == (201, "Created")
    r = api.post(f"/dids/{SCOPE}/api1/meta", content=json.dumps({"meta": {"a": "b", "c": 1}}))
    assert r.status_code == 201, r.text
    r = api.get(f"/dids/{SCOPE}/api1/meta", params={"plugin": "JSON"})
    assert r.json() == {"run_number": 42, "a": "b", "c": 1}
    r = api.post(f"/dids/{SCOPE}/ghost/meta/run_number", content=json.dumps({"value": 1}))
    assert (r.status_code, r.headers["ExceptionClass"]) == (404, "DataIdentifierNotFound")
    r = api.post(f"/dids/{SCOPE}/api1/meta/run_number", content=json.dumps({"val": 1}))
    assert r.status_code == 400
