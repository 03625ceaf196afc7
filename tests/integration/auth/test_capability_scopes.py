"""Capability scopes on API calls (policy v2, docs/policy.md): a token carrying WLCG
``storage.*`` scopes may do to a DID ``scope:name`` only what a capability on its path
``/scope/name`` (or a path above it) grants, on top of the identity policy, for tokens of
the lake's own issuer and of a trusted external issuer.

alice owns scope ``foo`` (DIDs ``bar``, ``bargain``, ``other``); root owns ``atlas``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.services import accounts
from fedlake.services import dids as did_svc
from tests.helpers import ndjson, post
from tests.issuer_app import WLCG_ANY, TestIssuer, run_issuer


@pytest.fixture(scope="module")
def issuer() -> Iterator[TestIssuer]:
    with run_issuer() as iss:
        yield iss


@pytest.fixture
def world(lake: Lake, root: Caller) -> None:
    accounts.add_account(lake, root, "alice", "USER", "alice@example.org")
    accounts.add_scope(lake, root, "foo", "alice")
    accounts.add_scope(lake, root, "atlas", "root")
    alice = Caller("alice")
    did_svc.add_dids(lake, alice, [{"scope": "foo", "name": n} for n in ("bar", "bargain")])
    did_svc.add_dids(lake, alice, [{"scope": "foo", "name": "other"}])
    did_svc.add_dids(lake, root, [{"scope": "atlas", "name": "ds"}])


def as_alice(api: TestClient, scope: str, account: str = "alice") -> TestClient:
    """A client holding a token of the lake for alice (or ``account``) with exactly
    ``scope``."""
    r = api.post("/iam/tokens", json={"account": account, "scope": scope})
    assert r.status_code == 201, r.text
    headers = {"X-Rucio-Auth-Token": r.json()["access_token"]}
    return TestClient(api.app, raise_server_exceptions=False, headers=headers)


def refused(r: Any, needed: str) -> None:
    assert (r.status_code, r.headers.get("ExceptionClass")) == (401, "AccessDenied"), r.text
    assert needed in r.json()["ExceptionMessage"], r.text


def test_reading_needs_storage_read_on_the_did_path(api: TestClient, world: None) -> None:
    client = as_alice(api, "openid storage.read:/foo/bar")
    assert client.get("/dids/foo/bar").status_code == 200
    assert client.get("/dids/foo/bar/meta").status_code == 200
    # /foo/bar does not cover /foo/bargain, nor anything outside /foo/bar
    refused(client.get("/dids/foo/bargain"), "storage.read:/foo/bargain")
    refused(client.get("/dids/foo/other/meta"), "storage.read:/foo/other")
    refused(client.get("/dids/atlas/ds"), "storage.read:/atlas/ds")
    r = post(client, "/replicas/list", {"dids": [{"scope": "foo", "name": "bargain"}]})
    refused(r, "storage.read:/foo/bargain")
    # a listing of the scope shows only what the token may read; another scope is refused
    r = client.get("/dids/foo/dids/search?name=*")
    assert r.status_code == 200, r.text
    assert ndjson(r) == ["bar"]
    refused(client.get("/dids/atlas/dids/search?name=*"), "storage.read:/atlas")


def test_a_capability_on_the_scope_covers_all_its_dids(api: TestClient, world: None) -> None:
    client = as_alice(api, "storage.read:/foo")
    r = client.get("/dids/foo/dids/search?name=*")
    assert sorted(ndjson(r)) == ["bar", "bargain", "other"]
    refused(client.get("/dids/atlas/ds"), "storage.read:/atlas/ds")


def test_writing_needs_create_or_modify(api: TestClient, world: None) -> None:
    reader = as_alice(api, "storage.read:/foo")
    refused(post(reader, "/dids/foo/new", {"type": "DATASET"}), "storage.create:/foo/new")
    creator = as_alice(api, "storage.create:/foo")
    assert post(creator, "/dids/foo/new", {"type": "DATASET"}).status_code == 201
    file = {"scope": "foo", "name": "f1", "bytes": 1, "adler32": "00000001"}
    r = post(creator, "/replicas", {"rse": "LOCAL-DISK", "files": [file]})
    assert r.status_code == 201, r.text
    r = post(creator, "/dids/foo/new/dids", {"dids": [{"scope": "foo", "name": "f1"}]})
    assert r.status_code == 201, r.text
    # creating is not modifying: metadata, detaching and closing need storage.modify
    refused(post(creator, "/dids/foo/new/meta/k", {"value": "v"}), "storage.modify:/foo/new")
    body = json.dumps({"dids": [{"scope": "foo", "name": "f1"}]})
    refused(creator.request("DELETE", "/dids/foo/new/dids", content=body), "storage.modify")
    modifier = as_alice(api, "storage.modify:/foo/new")
    assert post(modifier, "/dids/foo/new/meta/k", {"value": "v"}).status_code == 201
    assert modifier.request("DELETE", "/dids/foo/new/dids", content=body).status_code == 200
    refused(post(modifier, "/dids/foo/bar/meta/k", {"value": "v"}), "storage.modify:/foo/bar")


def test_a_capability_never_widens_what_the_account_may_do(api: TestClient, world: None) -> None:
    client = as_alice(api, "storage.modify:/ storage.read:/")
    r = post(client, "/dids/atlas/mine", {"type": "DATASET"})
    assert r.status_code == 401 and "owned by root" in r.json()["ExceptionMessage"]
    assert post(client, "/dids/foo/mine", {"type": "DATASET"}).status_code == 201


def test_tokens_without_storage_scopes_are_not_limited(api: TestClient, world: None) -> None:
    client = as_alice(api, "openid")
    assert client.get("/dids/atlas/ds").status_code == 200
    assert post(client, "/dids/foo/plain", {"type": "DATASET"}).status_code == 201


def test_capabilities_of_an_external_issuer_apply(
    api: TestClient, world: None, issuer: TestIssuer
) -> None:
    r = post(api, "/iam/issuers", {"issuer": issuer.url, "audiences": [WLCG_ANY]})
    assert r.status_code == 201, r.text
    identity = {"identity": f"SUB=alice-sub, ISS={issuer.url}", "authtype": "OIDC"}
    r = post(api, "/accounts/alice/identities", identity | {"email": "a@example.org"})
    assert r.status_code == 201, r.text
    token = issuer.mint("alice-sub", scope="openid storage.read:/foo/bar")
    client = TestClient(
        api.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {token}"}
    )
    assert client.get("/dids/foo/bar").status_code == 200
    refused(client.get("/dids/foo/bargain"), "storage.read:/foo/bargain")
    refused(post(client, "/dids/foo/x", {"type": "DATASET"}), "storage.create:/foo/x")


def test_rules_follow_the_capabilities_of_the_token(
    api: TestClient, lake: Lake, world: None
) -> None:
    full = as_alice(api, "openid")  # no storage scopes: not limited
    ids = {}
    for scope, name in (("foo", "bar"), ("foo", "other")):
        body = {
            "dids": [{"scope": scope, "name": name}],
            "rse_expression": "LOCAL-DISK",
            "copies": 1,
            "account": "alice",
        }
        r = post(full, "/rules", body)
        assert r.status_code == 201, r.text
        ids[name] = r.json()[0]
    client = as_alice(api, "storage.read:/foo/bar storage.create:/foo/bar")
    # listings show only the rules on DIDs the token may read
    r = client.get("/rules/", params={"account": "alice"})
    assert r.status_code == 200, r.text
    assert [x["id"] for x in ndjson(r)] == [ids["bar"]]
    assert client.get(f"/rules/{ids['bar']}").status_code == 200
    refused(client.get(f"/rules/{ids['other']}"), "storage.read:/foo/other")
    refused(client.get(f"/rules/{ids['other']}/locks"), "storage.read:/foo/other")
    refused(client.get("/dids/foo/other/rules"), "storage.read:/foo/other")
    # no new rule on what the token may not read
    body = {
        "dids": [{"scope": "foo", "name": "bargain"}],
        "rse_expression": "LOCAL-DISK",
        "copies": 1,
        "account": "alice",
    }
    refused(post(client, "/rules", body), "storage.read:/foo/bargain")
    r = full.get("/rules/", params={"account": "alice"})
    assert sorted(x["id"] for x in ndjson(r)) == sorted(ids.values())


def test_only_what_the_token_may_read_or_create_can_be_attached(
    api: TestClient, world: None
) -> None:
    full = as_alice(api, "openid")
    assert post(full, "/dids/foo/ds", {"type": "DATASET"}).status_code == 201
    file = {"scope": "foo", "name": "f2", "bytes": 1, "adler32": "00000001"}
    assert post(full, "/replicas", {"rse": "LOCAL-DISK", "files": [file]}).status_code == 201
    # may add to foo:ds, may neither read nor create foo:f2: attaching it would show it
    narrow = as_alice(api, "storage.create:/foo/ds")
    body = {"dids": [{"scope": "foo", "name": "f2"}]}
    refused(post(narrow, "/dids/foo/ds/dids", body), "storage.read:/foo/f2")
    bulk = {"attachments": [{"scope": "foo", "name": "ds", "dids": body["dids"]}]}
    refused(post(narrow, "/dids/attachments", bulk), "storage.read:/foo/f2")
    assert ndjson(full.get("/dids/foo/ds/dids")) == []
    # what the token may create (an upload: register, then attach) or read, it attaches
    creator = as_alice(api, "storage.create:/foo/ds storage.create:/foo/f2")
    assert post(creator, "/dids/foo/ds/dids", body).status_code == 201
    assert [d["name"] for d in ndjson(full.get("/dids/foo/ds/dids"))] == ["f2"]


def test_transfers_follow_the_capabilities_of_the_token(api: TestClient, world: None) -> None:
    files = [{"scope": "foo", "name": n, "bytes": 1, "adler32": "00000001"} for n in ("f1", "f2")]
    assert post(api, "/replicas", {"rse": "LOCAL-DISK", "files": files}).status_code == 201
    narrow = as_alice(api, "storage.read:/foo/f1", account="root")  # an admin's token

    def submit(client: TestClient, *names: str) -> Any:
        dids = [{"scope": "foo", "name": n} for n in names]
        return post(client, "/transfers/", {"dids": dids, "rse": "LOCAL-SAFE"})

    refused(submit(narrow, "f1", "f2"), "storage.read:/foo/f2")
    assert ndjson(api.get("/transfers/")) == []  # nothing queued by the refused call
    r = submit(narrow, "f1")
    assert r.status_code == 201, r.text
    [mine] = r.json()["request_ids"]
    r = submit(api, "f2")
    assert r.status_code == 201, r.text
    [other] = r.json()["request_ids"]
    assert [t["id"] for t in ndjson(narrow.get("/transfers/"))] == [mine]
    assert narrow.get(f"/transfers/{mine}").status_code == 200
    refused(narrow.get(f"/transfers/{other}"), "storage.read:/foo/f2")
    assert sorted(t["id"] for t in ndjson(api.get("/transfers/"))) == sorted([mine, other])


def test_subscriptions_need_read_on_the_whole_namespace(api: TestClient, world: None) -> None:
    sub = {
        "options": {
            "filter": {"scope": ["foo"]},
            "replication_rules": [{"copies": 1, "rse_expression": "LOCAL-SAFE"}],
            "lifetime": False,
        }
    }
    narrow = as_alice(api, "storage.read:/foo storage.modify:/foo")
    refused(post(narrow, "/subscriptions/alice/raw", sub), "storage.read:/")
    assert ndjson(api.get("/subscriptions/alice")) == []
    wide = as_alice(api, "storage.read:/")
    assert post(wide, "/subscriptions/alice/raw", sub).status_code == 201
    change = json.dumps({"options": {"comments": "changed"}})
    refused(narrow.put("/subscriptions/alice/raw", content=change), "storage.read:/")
    assert wide.put("/subscriptions/alice/raw", content=change).status_code == 201
    [found] = ndjson(api.get("/subscriptions/alice/raw"))
    assert found["comments"] == "changed"
