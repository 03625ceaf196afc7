"""RSEs, scopes, accounts, limits, usage and authentication over the Rucio REST API."""

from __future__ import annotations

import json
import zlib
from urllib.parse import quote, quote_plus

import httpx
from starlette.testclient import TestClient

from fedlake.bootstrap import Lake
from tests.helpers import assert_error, ndjson, one, post

SCOPE = "user.root"
JSON = "application/json"
STREAM = "application/x-json-stream"
LOCAL = ["LOCAL-BUFFER", "LOCAL-DISK", "LOCAL-SAFE", "LOCAL-TAPE"]


def rses(api: TestClient, expression: str) -> list[str]:
    r = api.get("/rses/", params={"expression": expression})
    return sorted(row["rse"] for row in ndjson(r))


def register(
    api: TestClient, scope: str, name: str, nbytes: int, headers: dict[str, str] | None = None
) -> httpx.Response:
    data = b"z" * nbytes
    return post(
        api,
        "/replicas",
        {
            "rse": "LOCAL-DISK",
            "files": [
                {
                    "scope": scope,
                    "name": name,
                    "bytes": nbytes,
                    "adler32": f"{zlib.adler32(data):08x}",
                }
            ],
        },
        headers=headers,
    )


# --- RSEs ------------------------------------------------------------------------------


def test_list_rses_and_expressions(api: TestClient) -> None:
    full = ndjson(api.get("/rses/"))
    assert sorted(r["rse"] for r in full) == LOCAL
    for row in full:
        assert {
            "id",
            "rse",
            "rse_type",
            "deterministic",
            "volatile",
            "availability",
            "availability_read",
            "availability_write",
            "availability_delete",
        } <= set(row)
    assert sorted(r["rse"] for r in ndjson(api.get("/rses"))) == LOCAL
    assert ndjson(api.get("/rses", params={"expression": "LOCAL-DISK"})) == [{"rse": "LOCAL-DISK"}]
    assert rses(api, "*") == LOCAL
    assert rses(api, "LOCAL-SAFE") == ["LOCAL-SAFE"]
    assert rses(api, "istape=true") == ["LOCAL-TAPE"]
    assert rses(api, "site=LOCAL") == ["LOCAL-BUFFER", "LOCAL-DISK"]
    assert rses(api, "QOS=FAST|QOS=SAFE") == ["LOCAL-DISK", "LOCAL-SAFE"]
    assert rses(api, "site=LOCAL-2&istape=true") == ["LOCAL-TAPE"]
    assert rses(api, "*\\istape=true") == ["LOCAL-BUFFER", "LOCAL-DISK", "LOCAL-SAFE"]
    assert rses(api, "(site=LOCAL|site=LOCAL-2)\\LOCAL-BUFFER") == [
        "LOCAL-DISK",
        "LOCAL-SAFE",
        "LOCAL-TAPE",
    ]
    assert rses(api, "rse_type=TAPE") == ["LOCAL-TAPE"]
    # the client quotes the expression into the query string
    r = api.get("/rses/?expression=" + quote("site=LOCAL&QOS=FAST"))
    assert [row["rse"] for row in ndjson(r)] == ["LOCAL-DISK"]
    for bad in ("(LOCAL-DISK", "LOCAL-DISK|", "a=b=c", "LOCAL-DISK)"):
        assert_error(api.get("/rses/", params={"expression": bad}), 400, "InvalidRSEExpression")


def test_rse_expression_grammar(api: TestClient) -> None:
    """The full grammar over REST with attributes set through the API (docs/rse-expressions.md)."""
    for rse, key, value in [
        ("LOCAL-DISK", "tier", 1),
        ("LOCAL-SAFE", "tier", "2"),  # text, as the rucio CLI sends it
        ("LOCAL-TAPE", "tier", 3.5),
        ("LOCAL-SAFE", "endpoint", "https://se.example.org:8443/data"),
    ]:
        r = post(api, f"/rses/{rse}/attr/{key}", {"value": value})
        assert r.status_code == 201, r.text
    assert rses(api, "tier<2") == ["LOCAL-DISK"]
    assert rses(api, "tier>=2") == ["LOCAL-SAFE", "LOCAL-TAPE"]
    assert rses(api, "tier>1.5&tier<=3") == ["LOCAL-SAFE"]
    assert rses(api, "tier=1.0|tier=2") == ["LOCAL-DISK", "LOCAL-SAFE"]
    assert rses(api, "tier!=1") == ["LOCAL-BUFFER", "LOCAL-SAFE", "LOCAL-TAPE"]
    assert rses(api, "buffer") == ["LOCAL-BUFFER"]
    assert rses(api, "endpoint=https://se.example.org:8443/data") == ["LOCAL-SAFE"]
    assert rses(api, " ( site = LOCAL | site=LOCAL-2 ) & tier >= 1 ") == [
        "LOCAL-DISK",
        "LOCAL-SAFE",
        "LOCAL-TAPE",
    ]
    # left to right, no precedence; parentheses force the order
    assert rses(api, "LOCAL-DISK|LOCAL-SAFE&QOS=SAFE") == ["LOCAL-SAFE"]
    assert rses(api, "LOCAL-DISK|(LOCAL-SAFE&QOS=SAFE)") == ["LOCAL-DISK", "LOCAL-SAFE"]
    assert rses(api, "*\\(site=LOCAL\\(LOCAL-BUFFER))") == [
        "LOCAL-BUFFER",
        "LOCAL-SAFE",
        "LOCAL-TAPE",
    ]
    # long and deeply nested expressions are evaluated, not a server error
    assert rses(api, "(" * 2000 + "LOCAL-DISK" + ")" * 2000) == ["LOCAL-DISK"]
    assert rses(api, "|".join(["LOCAL-SAFE"] * 2000)) == ["LOCAL-SAFE"]

    # syntax errors: 400 InvalidRSEExpression naming the position, in the body and header
    for bad, position in [
        ("LOCAL-DISK LOCAL-SAFE", 11),
        ("tier<abc", 5),
        ("(LOCAL-DISK|LOCAL-SAFE", 0),
        ("LOCAL-DISK|", 10),
        ("LOCAL-DISK&()", 11),
        ("site=LOCAL,LOCAL-2", 10),
    ]:
        r = api.get("/rses/", params={"expression": bad})
        message = assert_error(r, 400, "InvalidRSEExpression")
        assert f"at position {position}" in message and f"RSE expression '{bad}'" in message
        assert f"at position {position}" in r.headers["ExceptionMessage"]

    # syntactically fine but no RSE: Rucio's "resulted in an empty set", same class
    for empty in ("site=NOWHERE", "istape>0", "LOCAL-DISK&LOCAL-SAFE"):
        r = api.get("/rses/", params={"expression": empty})
        message = assert_error(r, 400, "InvalidRSEExpression")
        assert message.startswith(f"RSE expression '{empty}' resulted in an empty set"), message


def test_rse_settings(api: TestClient, lake: Lake) -> None:
    info = one(api.get("/rses/LOCAL-DISK"))
    assert info["rse"] == "LOCAL-DISK" and info["id"]
    assert info["deterministic"] is True and info["lfn2pfn_algorithm"] == "hash"
    for key in ("availability_read", "availability_write", "availability_delete"):
        assert info[key] is True
    assert info["availability"] == 7
    assert isinstance(info["verify_checksum"], bool)
    assert info["sign_url"] is None and info["domain"] == ["lan", "wan"]
    assert info["rse_type"] == "DISK" and info["credentials"] is None
    assert {"volatile", "staging_area", "qos_class"} <= set(info)
    [proto] = info["protocols"]
    assert proto["scheme"] == "file" and proto["hostname"] == "localhost" and proto["port"] == 0
    assert proto["impl"] == "rucio.rse.protocols.posix.Default"
    assert proto["prefix"].endswith("/rses/disk")
    assert proto["domains"]["wan"]["read"] == 1 and proto["domains"]["lan"]["write"] == 1
    assert one(api.get("/rses/LOCAL-BUFFER"))["deterministic"] is False
    assert one(api.get("/rses/LOCAL-TAPE"))["rse_type"] == "TAPE"
    assert_error(api.get("/rses/NO-SUCH"), 404, "RSENotFound")


def test_rse_attributes(api: TestClient) -> None:
    for url in ("/rses/LOCAL-TAPE/attr/", "/rses/LOCAL-TAPE/attr"):
        attrs = one(api.get(url))
        assert attrs["istape"] is True and attrs["site"] == "LOCAL-2"
    r = post(api, "/rses/LOCAL-DISK/attr/color", {"value": "blue"})
    assert r.status_code == 201, r.text
    assert one(api.get("/rses/LOCAL-DISK/attr/"))["color"] == "blue"
    assert rses(api, "color=blue") == ["LOCAL-DISK"]
    r = api.delete("/rses/LOCAL-DISK/attr/color")
    assert r.status_code == 200, r.text
    assert "color" not in one(api.get("/rses/LOCAL-DISK/attr/"))
    assert_error(api.get("/rses/NOPE/attr/"), 404, "RSENotFound")


def test_protocols_and_lfns2pfns(api: TestClient) -> None:
    protos = one(api.get("/rses/LOCAL-DISK/protocols", params={"protocol_domain": "ALL"}))
    assert isinstance(protos, list) and [p["scheme"] for p in protos] == ["file"]
    settings = one(api.get("/rses/LOCAL-DISK/protocols/file"))
    assert settings["rse"] == "LOCAL-DISK" and len(settings["protocols"]) == 1
    r = api.get(
        "/rses/LOCAL-DISK/lfns2pfns",
        params=[("lfn", f"{SCOPE}:a"), ("lfn", "data:b"), ("scheme", "file")],
    )
    pfns = one(r)
    assert set(pfns) == {f"{SCOPE}:a", "data:b"}
    assert pfns[f"{SCOPE}:a"].startswith("file://localhost/")
    assert "/user/root/" in pfns[f"{SCOPE}:a"] and pfns["data:b"].endswith("/b")
    assert_error(
        api.get("/rses/LOCAL-DISK/lfns2pfns", params={"lfn": f"{SCOPE}:a", "scheme": "root"}),
        404,
        "RSEProtocolNotSupported",
    )


def test_rse_usage_and_limits(api: TestClient) -> None:
    assert register(api, SCOPE, "usage1", 100).status_code == 201
    rows = ndjson(api.get("/rses/LOCAL-DISK/usage"))
    rucio = next(r for r in rows if r["source"] == "rucio")
    assert rucio["used"] == 100 and rucio["files"] == 1 and rucio["rse"] == "LOCAL-DISK"
    assert {"rse_id", "free", "total", "updated_at"} <= set(rucio)
    assert one(api.get("/rses/LOCAL-DISK/limits")) == {}
    r = api.put("/rses/LOCAL-DISK/limits", content=json.dumps({"MinFreeSpace": 1000}))
    assert r.status_code == 200, r.text
    assert one(api.get("/rses/LOCAL-DISK/limits")) == {"MinFreeSpace": 1000}


# --- scopes ----------------------------------------------------------------------------


def test_scopes_listings(api: TestClient) -> None:
    for url in ("/scopes/", "/scopes"):
        assert one(api.get(url)) == [SCOPE]
    for url in ("/scopes/owner", "/scopes/owner/"):
        assert one(api.get(url)) == [{"scope": SCOPE, "account": "root"}]
    assert one(api.get("/accounts/root/scopes/")) == [SCOPE]
    assert one(api.get("/accounts/root/scopes")) == [SCOPE]
    r = post(api, "/accounts/root/scopes/data")
    assert r.status_code == 201, r.text
    assert sorted(one(api.get("/scopes/"))) == ["data", SCOPE]
    assert_error(post(api, "/accounts/root/scopes/data"), 409, "Duplicate")
    assert_error(api.get("/accounts/ghost/scopes/"), 404, "AccountNotFound")


# --- accounts --------------------------------------------------------------------------


def make_user(api: TestClient, account: str, password: str = "alice-password") -> TestClient:
    """Create an account with a userpass identity; return ``api`` logged in as it."""
    r = post(api, f"/accounts/{account}", {"type": "USER", "email": f"{account}@example.org"})
    assert r.status_code == 201, r.text
    r = post(
        api,
        f"/accounts/{account}/identities",
        {
            "identity": account,
            "authtype": "USERPASS",
            "password": password,
            "email": f"{account}@example.org",
        },
    )
    assert r.status_code == 201, r.text
    r = api.get(
        "/auth/userpass",
        headers={
            "X-Rucio-Username": account,
            "X-Rucio-Password": password,
            "X-Rucio-Auth-Token": "",
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["X-Rucio-Auth-Account"] == account
    assert r.headers["X-Rucio-Auth-Token-Expires"].endswith(" UTC")
    return TestClient(
        api.app,
        raise_server_exceptions=False,
        headers={"X-Rucio-Auth-Token": r.headers["X-Rucio-Auth-Token"]},
    )


def test_accounts(api: TestClient) -> None:
    make_user(api, "alice")
    acc = one(api.get("/accounts/alice"))
    assert acc["account"] == "alice" and acc["account_type"] == "USER"
    assert acc["status"] == "ACTIVE" and acc["email"] == "alice@example.org"
    assert {"suspended_at", "deleted_at", "created_at", "updated_at"} <= set(acc)
    names = sorted(a["account"] for a in ndjson(api.get("/accounts")))
    assert names == ["alice", "root"]
    assert_error(post(api, "/accounts/alice", {"type": "USER"}), 409, "Duplicate")
    assert_error(api.get("/accounts/ghost"), 404, "AccountNotFound")
    assert_error(api.get("/accounts/ghost/attr/"), 404, "AccountNotFound")
    # attributes
    assert one(api.get("/accounts/alice/attr/")) == []
    r = post(api, "/accounts/alice/attr/admin", {"value": False})
    assert r.status_code == 201, r.text
    assert one(api.get("/accounts/alice/attr")) == [{"key": "admin", "value": False}]
    identities = ndjson(api.get("/accounts/alice/identities"))
    assert [(i["identity"], i["type"]) for i in identities] == [("alice", "USERPASS")]


def test_whoami_and_tokens(api: TestClient, lake: Lake) -> None:
    token = api.headers["X-Rucio-Auth-Token"]
    assert token.count(".") == 2
    assert one(api.get("/accounts/whoami"))["account"] == "root"
    bearer = TestClient(
        api.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {token}"}
    )
    assert one(bearer.get("/accounts/whoami"))["account"] == "root"
    bad = TestClient(
        api.app, raise_server_exceptions=False, headers={"X-Rucio-Auth-Token": token[:-4] + "AAAA"}
    )
    assert_error(bad.get("/accounts/whoami"), 401, "CannotAuthenticate")
    garbage = TestClient(
        api.app, raise_server_exceptions=False, headers={"X-Rucio-Auth-Token": "not-a-token"}
    )
    assert_error(garbage.get("/scopes/"), 401, "CannotAuthenticate")
    expired, _ = lake.tokens.issue("root", "root", lifetime=-600)
    old = TestClient(
        api.app, raise_server_exceptions=False, headers={"X-Rucio-Auth-Token": expired}
    )
    msg = assert_error(old.get("/accounts/whoami"), 401, "CannotAuthenticate")
    assert "expired" in msg
    anonymous = TestClient(api.app, raise_server_exceptions=False)
    assert_error(anonymous.get("/rses/"), 401, "CannotAuthenticate")
    # /auth/* ignores a stale token header; a wrong password is CannotAuthenticate
    r = anonymous.get(
        "/auth/userpass",
        headers={
            "X-Rucio-Auth-Token": "stale",
            "X-Rucio-Username": "root",
            "X-Rucio-Password": "wrong-password",
        },
    )
    assert_error(r, 401, "CannotAuthenticate")
    assert one(api.get("/ping"))["version"]


def test_account_limits_and_usage(api: TestClient) -> None:
    make_user(api, "bob")
    r = post(api, "/accounts/bob/limits/local/LOCAL-DISK", {"bytes": 1000})
    assert r.status_code == 201, r.text
    expr = "site=LOCAL|site=LOCAL-2"
    r = post(api, f"/accounts/bob/limits/global/{quote_plus(expr)}", {"bytes": 5000})
    assert r.status_code == 201, r.text
    assert one(api.get("/accounts/bob/limits/local")) == {"LOCAL-DISK": 1000}
    assert one(api.get("/accounts/bob/limits/local/LOCAL-DISK")) == {"LOCAL-DISK": 1000}
    glob = one(api.get("/accounts/bob/limits/global"))
    assert glob[expr]["limit"] == 5000
    assert sorted(glob[expr]["resolved_rses"]) == LOCAL
    assert len(glob[expr]["resolved_rse_ids"]) == 4
    assert one(api.get(f"/accounts/bob/limits/global/{quote_plus(expr)}")) == glob

    local = ndjson(api.get("/accounts/bob/usage/local"))
    assert local == [
        {
            "rse_id": local[0]["rse_id"],
            "rse": "LOCAL-DISK",
            "bytes": 0,
            "files": 0,
            "bytes_limit": 1000,
            "bytes_remaining": 1000,
        }
    ]
    assert ndjson(api.get("/accounts/bob/usage/local/LOCAL-DISK")) == local
    usage = ndjson(api.get("/accounts/bob/usage/global"))
    assert usage == [
        {
            "rse_expression": expr,
            "bytes": 0,
            "files": 0,
            "bytes_limit": 5000,
            "bytes_remaining": 5000,
        }
    ]
    assert ndjson(api.get(f"/accounts/bob/usage/global/{quote_plus(expr)}")) == usage

    r = api.delete("/accounts/bob/limits/local/LOCAL-DISK")
    assert r.status_code == 200, r.text
    assert one(api.get("/accounts/bob/limits/local")) == {}
    assert_error(post(api, "/accounts/bob/limits/local/NO-RSE", {"bytes": 1}), 404, "RSENotFound")
    assert_error(
        post(api, "/accounts/bob/limits/local/LOCAL-DISK", {"bytes": "lots"}), 400, "InvalidObject"
    )


def test_non_admin_scope_rights(api: TestClient, lake: Lake) -> None:
    alice = make_user(api, "carol", "carol-password")
    assert one(alice.get("/accounts/whoami"))["account"] == "carol"
    # reading is allowed, writing in root's scope is not
    assert one(alice.get("/scopes/")) == [SCOPE]
    assert_error(register(alice, SCOPE, "intrude", 5), 401, "AccessDenied")
    assert_error(post(alice, f"/dids/{SCOPE}/intrude_ds", {"type": "DATASET"}), 401, "AccessDenied")
    assert_error(post(alice, "/accounts/root/scopes/carolscope"), 401, "AccessDenied")
    assert_error(post(alice, "/accounts/dave", {"type": "USER"}), 401, "AccessDenied")
    assert_error(
        post(alice, "/accounts/carol/limits/local/LOCAL-DISK", {"bytes": 10**12}),
        401,
        "AccessDenied",
    )
    assert_error(alice.get("/accounts/carol/scopes/"), 404, "ScopeNotFound")
    # its own user scope it may create and use
    r = post(alice, "/accounts/carol/scopes/user.carol")
    assert r.status_code == 201, r.text
    assert one(alice.get("/accounts/carol/scopes/")) == ["user.carol"]
    assert register(alice, "user.carol", "mine", 5).status_code == 201
    r = post(alice, "/dids/user.carol/myds", {"type": "DATASET"})
    assert r.status_code == 201, r.text
    r = post(
        alice, "/dids/user.carol/myds/dids", {"dids": [{"scope": "user.carol", "name": "mine"}]}
    )
    assert r.status_code == 201, r.text
    assert one(alice.get("/dids/user.carol/myds"))["account"] == "carol"
    # root's DIDs stay untouched
    assert_error(api.get(f"/dids/{SCOPE}/intrude"), 404, "DataIdentifierNotFound")
    assert_error(api.get(f"/dids/{SCOPE}/intrude_ds"), 404, "DataIdentifierNotFound")
    # the token is bound to its account
    r = alice.get("/accounts/whoami", headers={"X-Rucio-Account": "root"})
    assert_error(r, 401, "AccessDenied")
