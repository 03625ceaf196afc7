"""Trusted external issuers through the API: administration, and token -> account mapping
(by OIDC identity, by group mapping, by automatic account creation), against a real
second issuer (tests/issuer_app.py) on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from fedlake.bootstrap import Lake
from fedlake.catalog import audit
from tests.helpers import assert_error, ndjson, one, post
from tests.issuer_app import WLCG_ANY, TestIssuer, run_issuer


@pytest.fixture(scope="module")
def issuer() -> Iterator[TestIssuer]:
    with run_issuer() as iss:
        yield iss


def trust(api: TestClient, issuer: TestIssuer, **fields: Any) -> dict[str, Any]:
    body = {"issuer": issuer.url, "audiences": [WLCG_ANY]} | fields
    r = post(api, "/iam/issuers", body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def as_token(api: TestClient, token: str, account: str | None = None) -> TestClient:
    headers = {"Authorization": f"Bearer {token}"}
    if account:
        headers["X-Rucio-Account"] = account
    return TestClient(api.app, raise_server_exceptions=False, headers=headers)


def add_account(api: TestClient, name: str) -> None:
    assert post(api, f"/accounts/{name}", {"type": "USER"}).status_code == 201


def add_oidc_identity(api: TestClient, account: str, issuer: TestIssuer, sub: str) -> None:
    r = post(
        api,
        f"/accounts/{account}/identities",
        {"identity": f"SUB={sub}, ISS={issuer.url}", "authtype": "OIDC", "email": "x@y.org"},
    )
    assert r.status_code == 201, r.text


def whoami(client: TestClient) -> str:
    return str(one(client.get("/accounts/whoami"))["account"])


# --- administration ----------------------------------------------------------------------


def test_issuers_are_added_listed_changed_and_removed(
    api: TestClient, issuer: TestIssuer, lake: Lake
) -> None:
    added = trust(api, issuer, auto_create_groups="/escape")
    assert added["algorithms"] == ["RS256", "ES256"]
    assert added["audiences"] == [WLCG_ANY]
    assert added["auto_create_groups"] == ["/escape"]
    assert added["enabled"] is True and added["wlcg_profile"] is True
    assert [i["issuer"] for i in ndjson(api.get("/iam/issuers"))] == [issuer.url]
    path = f"/iam/issuers/{quote(issuer.url, safe='')}"
    r = api.patch(path, content=b'{"enabled": false, "algorithms": ["ES256"]}')
    assert r.status_code == 200, r.text
    got = one(api.get(path))
    assert got["enabled"] is False and got["algorithms"] == ["ES256"]
    assert_error(post(api, "/iam/issuers", {"issuer": issuer.url}), 409, "Duplicate")
    assert api.delete(path).status_code == 200
    assert ndjson(api.get("/iam/issuers")) == []
    assert_error(api.get(path), 404)
    with lake.db.read() as s:
        actions = [e["action"] for e in audit.entries(s, target=issuer.url)]
    assert {"issuer.add", "issuer.update", "issuer.remove"} <= set(actions)


@pytest.mark.parametrize(
    "body",
    [
        {"algorithms": ["HS256"]},
        {"algorithms": ["none"]},
        {"algorithms": []},
        {"issuer": "http://iam.example.org"},  # plain http off loopback
        {"issuer": "not a url"},
        {"discovery_url": "http://evil.example.org/.well-known/openid-configuration"},
        {"audiences": ["has space"]},
        {"colour": "blue"},
    ],
)
def test_bad_issuer_settings_are_refused(
    api: TestClient, issuer: TestIssuer, body: dict[str, Any]
) -> None:
    r = post(api, "/iam/issuers", {"issuer": issuer.url} | body)
    assert_error(r, 400)
    assert ndjson(api.get("/iam/issuers")) == []


def test_the_lakes_own_issuer_cannot_be_added(api: TestClient, lake: Lake) -> None:
    assert "own issuer" in assert_error(
        post(api, "/iam/issuers", {"issuer": lake.tokens.issuer}), 400
    )


def test_only_admins_manage_issuers(api: TestClient, issuer: TestIssuer) -> None:
    trust(api, issuer)
    add_account(api, "alice")
    add_oidc_identity(api, "alice", issuer, "alice-sub")
    alice = as_token(api, issuer.mint("alice-sub"))
    assert_error(alice.get("/iam/issuers"), 401, "AccessDenied")
    assert_error(post(alice, "/iam/issuers", {"issuer": "https://x.example.org"}), 401)
    body = {"issuer": issuer.url, "group": "/g", "account": "alice"}
    assert_error(post(alice, "/iam/group-mappings", body), 401, "AccessDenied")


# --- mapping -------------------------------------------------------------------------------


def test_a_token_maps_by_its_oidc_identity(api: TestClient, issuer: TestIssuer) -> None:
    trust(api, issuer)
    add_account(api, "alice")
    add_oidc_identity(api, "alice", issuer, "alice-sub")
    assert whoami(as_token(api, issuer.mint("alice-sub"))) == "alice"
    assert whoami(as_token(api, issuer.mint("alice-sub", alg="ES256"))) == "alice"
    # the same JWT in the Rucio header works too
    rucio = TestClient(
        api.app,
        raise_server_exceptions=False,
        headers={"X-Rucio-Auth-Token": issuer.mint("alice-sub")},
    )
    assert whoami(rucio) == "alice"


def test_a_token_without_mapping_is_refused_with_what_to_add(
    api: TestClient, issuer: TestIssuer
) -> None:
    trust(api, issuer)
    msg = assert_error(as_token(api, issuer.mint("nobody")).get("/accounts/whoami"), 401)
    assert f"SUB=nobody, ISS={issuer.url}" in msg and "group-map" in msg


def test_group_mappings_and_the_account_header(api: TestClient, issuer: TestIssuer) -> None:
    trust(api, issuer)
    for name in ("cms", "cmsprod", "atlas"):
        add_account(api, name)
    for group, account, priority in (("/escape/cms", "cms", 0), ("/escape/prod", "cmsprod", 5)):
        body = {"issuer": issuer.url, "group": group, "account": account, "priority": priority}
        assert post(api, "/iam/group-mappings", body).status_code == 201
    maps = ndjson(api.get("/iam/group-mappings", params={"issuer": issuer.url}))
    assert [(m["group"], m["account"]) for m in maps] == [
        ("/escape/prod", "cmsprod"),
        ("/escape/cms", "cms"),
    ]
    token = issuer.mint("bob-sub", **{"wlcg.groups": ["/escape", "/escape/cms", "/escape/prod"]})
    assert whoami(as_token(api, token)) == "cmsprod"  # highest priority first
    assert whoami(as_token(api, token, "cms")) == "cms"  # the header picks among mapped
    r = as_token(api, token, "atlas").get("/accounts/whoami")
    assert "cms" in assert_error(r, 401, "AccessDenied")
    only_cms = issuer.mint("bob-sub", **{"wlcg.groups": ["/escape/cms"]})
    assert whoami(as_token(api, only_cms)) == "cms"
    # an OIDC identity comes before group mappings
    add_oidc_identity(api, "atlas", issuer, "bob-sub")
    assert whoami(as_token(api, issuer.mint("bob-sub", **{"wlcg.groups": ["/escape/cms"]}))) == (
        "atlas"
    )
    q = {"issuer": issuer.url, "group": "/escape/prod"}
    assert api.delete("/iam/group-mappings", params=q).status_code == 200
    assert_error(api.delete("/iam/group-mappings", params=q), 404)
    still = issuer.mint("carl-sub", **{"wlcg.groups": ["/escape/prod"]})
    assert_error(as_token(api, still).get("/accounts/whoami"), 401, "CannotAuthenticate")


def test_members_of_auto_create_groups_get_an_account(api: TestClient, issuer: TestIssuer) -> None:
    trust(api, issuer, auto_create_groups=["/escape/lofar"])
    add_account(api, "carol")  # taken: the new one is carol-2
    groups = {"wlcg.groups": ["/escape", "/escape/lofar/radio"]}
    t1 = issuer.mint("sub-1", preferred_username="Bob Smith", email="bob@example.org", **groups)
    assert whoami(as_token(api, t1)) == "bob_smith"
    again = issuer.mint("sub-1", preferred_username="Bob Smith", **groups)
    assert whoami(as_token(api, again)) == "bob_smith"
    identities = ndjson(api.get("/accounts/bob_smith/identities"))
    assert [(i["type"], i["identity"]) for i in identities] == [
        ("OIDC", f"SUB=sub-1, ISS={issuer.url}")
    ]
    assert one(api.get("/accounts/bob_smith"))["account_type"] == "USER"
    t2 = issuer.mint("sub-2", preferred_username="carol", **groups)
    assert whoami(as_token(api, t2)) == "carol-2"
    outsider = issuer.mint("sub-3", preferred_username="eve", **{"wlcg.groups": ["/escape"]})
    assert_error(as_token(api, outsider).get("/accounts/whoami"), 401)
    assert_error(api.get("/accounts/eve"), 404)


def test_disabled_and_removed_issuers_are_untrusted(api: TestClient, issuer: TestIssuer) -> None:
    trust(api, issuer)
    add_account(api, "alice")
    add_oidc_identity(api, "alice", issuer, "alice-sub")
    assert whoami(as_token(api, issuer.mint("alice-sub"))) == "alice"
    path = f"/iam/issuers/{quote(issuer.url, safe='')}"
    assert api.patch(path, content=b'{"enabled": false}').status_code == 200
    msg = assert_error(as_token(api, issuer.mint("alice-sub")).get("/accounts/whoami"), 401)
    assert "untrusted issuer" in msg
    assert api.patch(path, content=b'{"enabled": true}').status_code == 200
    assert whoami(as_token(api, issuer.mint("alice-sub"))) == "alice"
    assert api.delete(path).status_code == 200
    msg = assert_error(as_token(api, issuer.mint("alice-sub")).get("/accounts/whoami"), 401)
    assert "untrusted issuer" in msg


def test_a_discovery_document_naming_another_issuer_is_refused(
    api: TestClient, issuer: TestIssuer
) -> None:
    trust(api, issuer)
    add_account(api, "alice")
    add_oidc_identity(api, "alice", issuer, "alice-sub")
    issuer.served_issuer = "https://impostor.example.org"
    try:
        r = as_token(api, issuer.mint("alice-sub")).get("/accounts/whoami")
        assert "impostor" in assert_error(r, 401, "CannotAuthenticate")
    finally:
        issuer.served_issuer = None


def test_suspended_accounts_are_refused(api: TestClient, issuer: TestIssuer, lake: Lake) -> None:
    from fedlake.catalog.models import Account

    trust(api, issuer)
    add_account(api, "alice")
    add_oidc_identity(api, "alice", issuer, "alice-sub")
    with lake.db.write() as s:
        row = s.get(Account, "alice")
        assert row is not None
        row.status = "SUSPENDED"
    r = as_token(api, issuer.mint("alice-sub")).get("/accounts/whoami")
    assert "suspended" in assert_error(r, 401)
