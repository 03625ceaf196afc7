"""The embedded OAuth/OIDC issuer over HTTP (in-process): discovery, keys, the token
endpoint's grants, revocation, device code, token exchange, authorization code + PKCE."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog.iam_models import AuditEntry
from fedlake.services import accounts as acc_svc
from fedlake.services.oidc_clients import CLI_CLIENT, ensure_cli_client

ROOT = Caller("root", admin=True)


def _claims(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return out


def _header(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return out


def _add_client(api: TestClient, **body: Any) -> dict[str, Any]:
    r = api.post("/iam/clients", json=body)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


@pytest.fixture
def service_client(api: TestClient, lake: Lake) -> tuple[str, str]:
    acc_svc.add_account(lake, ROOT, "robot", "SERVICE", None)
    out = _add_client(
        api,
        client_id="robot-daemon",
        grant_types=["client_credentials", "token_exchange"],
        scope=["openid", "storage.read:/data", "storage.create:/data/out", "wlcg.groups"],
        account="robot",
    )
    assert out["public"] is False and out["client_secret"]
    return "robot-daemon", out["client_secret"]


def _cc(api: TestClient, cid: str, secret: str, scope: str | None = None) -> Any:
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    return api.post("/oidc/token", data=form, auth=(cid, secret))


def test_discovery_and_jwks(api: TestClient, lake: Lake) -> None:
    conf = api.get("/.well-known/openid-configuration").json()
    assert conf["issuer"] == lake.settings.public_url
    for key in (
        "token_endpoint",
        "device_authorization_endpoint",
        "authorization_endpoint",
        "userinfo_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
    ):
        assert conf[key].startswith(lake.settings.public_url + "/oidc/")
    assert conf["jwks_uri"].endswith("/auth/jwks")
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert "password" not in conf["grant_types_supported"]
    assert "client_credentials" in conf["grant_types_supported"]
    keys = api.get("/auth/jwks").json()["keys"]
    assert keys and all("d" not in k for k in keys)


def test_key_rotation_keeps_old_tokens_valid(api: TestClient, lake: Lake) -> None:
    old = api.headers["X-Rucio-Auth-Token"]
    old_kid = _header(old)["kid"]
    r = api.post("/iam/keys/rotate", json={"algorithm": "RS256"})
    assert r.status_code == 200, r.text
    new_kid = r.json()["kid"]
    assert new_kid != old_kid
    kids = {k["kid"]: k for k in api.get("/auth/jwks").json()["keys"]}
    assert set(kids) >= {old_kid, new_kid}
    assert kids[new_kid]["kty"] == "RSA" and kids[new_kid]["alg"] == "RS256"
    # the old token still works; new tokens are signed with the new key
    assert api.get("/accounts/root").status_code == 200
    token, _ = lake.tokens.issue("root", "root")
    assert _header(token) == {"alg": "RS256", "kid": new_kid, "typ": "JWT"}
    assert lake.tokens.validate(token).account == "root"
    listing = {k["kid"]: k for k in api.get("/iam/keys").json()}
    assert listing[new_kid]["current"] and not listing[old_kid]["current"]
    assert listing[old_kid]["retired_at"] is not None


def test_key_rotation_needs_admin(api: TestClient, lake: Lake) -> None:
    acc_svc.add_account(lake, ROOT, "alice", "USER", None)
    token, _ = lake.tokens.issue("alice", "alice")
    r = api.post("/iam/keys/rotate", headers={"X-Rucio-Auth-Token": token})
    assert r.status_code == 401


def test_client_credentials(api: TestClient, lake: Lake, service_client: tuple[str, str]) -> None:
    cid, secret = service_client
    r = _cc(api, cid, secret, "openid storage.read:/data/x/../y storage.modify:/data")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = _cc(api, cid, secret, "openid storage.read:/data//sub/ storage.modify:/data offline_access")
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["cache-control"] == "no-store"
    assert body["token_type"] == "Bearer" and "refresh_token" not in body
    assert body["scope"] == "openid storage.read:/data/sub"  # modify is not allowed
    claims = _claims(body["access_token"])
    assert claims["fedlake.account"] == "robot" and claims["sub"] == cid
    assert claims["wlcg.ver"] == "1.0" and claims["scope"] == body["scope"]
    for key in ("iss", "aud", "exp", "iat", "nbf", "jti"):
        assert key in claims
    assert lake.tokens.validate(body["access_token"]).account == "robot"
    # the token acts as the account
    r = api.get("/accounts/whoami", headers={"X-Rucio-Auth-Token": body["access_token"]})
    assert r.status_code == 200 and r.json()["account"] == "robot"
    # client_secret_post works too; wrong secrets do not
    r = api.post(
        "/oidc/token",
        data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret},
    )
    assert r.status_code == 200
    r = _cc(api, cid, secret + "x")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    r = api.post("/oidc/token", data={"grant_type": "client_credentials"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = api.post("/oidc/token", data={"grant_type": "magic"}, auth=(cid, secret))
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = api.post("/oidc/token", data={"grant_type": "authorization_code"}, auth=(cid, secret))
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    # the listing never shows a secret
    listed = api.get("/iam/clients").json()
    assert [c["client_id"] for c in listed] == [cid]
    assert "client_secret" not in listed[0] and "secret_hash" not in listed[0]


def test_password_grant_is_off_unless_enabled(api: TestClient) -> None:
    out = _add_client(
        api,
        client_id="dev",
        grant_types=["password", "refresh_token"],
        scope=["openid", "offline_access"],
    )
    r = api.post(
        "/oidc/token",
        data={"grant_type": "password", "username": "root", "password": "x"},
        auth=("dev", out["client_secret"]),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "unsupported_grant_type"
    assert "FEDLAKE_OIDC_PASSWORD_GRANT" in r.json()["error_description"]


def _password_lake(lake: Lake) -> None:
    object.__setattr__(lake.settings, "oidc_password_grant", True)


def test_refresh_rotation_and_reuse(api: TestClient, lake: Lake) -> None:
    from tests.helpers import ROOT_PASSWORD

    _password_lake(lake)
    out = _add_client(
        api,
        client_id="dev",
        grant_types=["password", "refresh_token"],
        scope=["openid", "offline_access", "storage.read:/"],
    )
    auth = ("dev", out["client_secret"])
    r = api.post(
        "/oidc/token",
        data={"grant_type": "password", "username": "root", "password": "wrong"},
        auth=auth,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = api.post(
        "/oidc/token",
        data={
            "grant_type": "password",
            "username": "root",
            "password": ROOT_PASSWORD,
            "scope": "openid offline_access storage.read:/a",
        },
        auth=auth,
    )
    assert r.status_code == 200, r.text
    first = r.json()
    refresh1 = first["refresh_token"]
    # a refresh token is never an access token
    r = api.get("/accounts/whoami", headers={"X-Rucio-Auth-Token": refresh1})
    assert r.status_code == 401
    # refresh: a new pair; the old refresh token is replaced
    r = api.post(
        "/oidc/token", data={"grant_type": "refresh_token", "refresh_token": refresh1}, auth=auth
    )
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != refresh1
    assert second["scope"] == "openid offline_access storage.read:/a"
    # widening at refresh is refused
    r = api.post(
        "/oidc/token",
        data={
            "grant_type": "refresh_token",
            "scope": "storage.read:/",
            "refresh_token": second["refresh_token"],
        },
        auth=auth,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    # reuse of the replaced one revokes the chain: the second refresh token dies too
    r = api.post(
        "/oidc/token", data={"grant_type": "refresh_token", "refresh_token": refresh1}, auth=auth
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = api.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]},
        auth=auth,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # an access token is not a refresh token
    r = api.post(
        "/oidc/token",
        data={"grant_type": "refresh_token", "refresh_token": second["access_token"]},
        auth=auth,
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_revocation(api: TestClient, lake: Lake, service_client: tuple[str, str]) -> None:
    cid, secret = service_client
    token = _cc(api, cid, secret).json()["access_token"]
    headers = {"X-Rucio-Auth-Token": token}
    assert api.get("/accounts/whoami", headers=headers).status_code == 200  # now cached
    r = api.post("/oidc/introspect", data={"token": token}, auth=(cid, secret))
    assert r.json()["active"] is True and r.json()["username"] == "robot"
    r = api.post("/oidc/revoke", data={"token": token}, auth=(cid, secret))
    assert r.status_code == 200
    r = api.get("/accounts/whoami", headers=headers)
    assert r.status_code == 401 and "revoked" in r.text
    r = api.post("/oidc/introspect", data={"token": token}, auth=(cid, secret))
    assert r.json() == {"active": False}
    with lake.db.read() as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "token.revoke")).all()
    assert [(e.actor, e.target) for e in entries] == [(cid, "robot")]
    assert token not in (entries[0].details or "")
    # garbage is accepted silently (RFC 7009 2.2)
    assert api.post("/oidc/revoke", data={"token": "x.y.z"}, auth=(cid, secret)).status_code == 200


def test_device_code_flow(api: TestClient, lake: Lake) -> None:
    from tests.helpers import ROOT_PASSWORD

    assert ensure_cli_client(lake) is True
    assert ensure_cli_client(lake) is False
    r = api.post(
        "/oidc/device_authorization",
        data={"client_id": CLI_CLIENT, "scope": "openid offline_access"},
    )
    assert r.status_code == 200, r.text
    dev = r.json()
    assert re.fullmatch(r"[A-Z]{4}-[A-Z]{4}", dev["user_code"])
    assert dev["verification_uri_complete"].endswith(dev["user_code"])
    poll = {
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": dev["device_code"],
        "client_id": CLI_CLIENT,
    }
    r = api.post("/oidc/token", data=poll)
    assert r.status_code == 400 and r.json()["error"] == "authorization_pending"
    r = api.post("/oidc/token", data=poll)
    assert r.json()["error"] == "slow_down"
    page = api.get("/oidc/device", params={"user_code": dev["user_code"].lower()})
    assert page.status_code == 200 and dev["user_code"] in page.text
    r = api.post(
        "/oidc/device",
        data={
            "user_code": dev["user_code"],
            "username": "root",
            "password": "wrong",
            "action": "approve",
        },
    )
    assert r.status_code == 401
    r = api.post(
        "/oidc/device",
        data={
            "user_code": dev["user_code"],
            "username": "root",
            "password": ROOT_PASSWORD,
            "action": "approve",
        },
    )
    assert r.status_code == 200 and "logged in" in r.text
    r = api.post("/oidc/token", data=poll)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert _claims(tokens["access_token"])["fedlake.account"] == "root"
    assert "refresh_token" in tokens
    r = api.post("/oidc/token", data=poll)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    info = api.get("/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.json()["preferred_username"] == "root"
    # a denied request
    dev2 = api.post("/oidc/device_authorization", data={"client_id": CLI_CLIENT}).json()
    r = api.post(
        "/oidc/device",
        data={
            "user_code": dev2["user_code"],
            "username": "root",
            "password": ROOT_PASSWORD,
            "action": "deny",
        },
    )
    assert r.status_code == 200
    r = api.post("/oidc/token", data={**poll, "device_code": dev2["device_code"]})
    assert r.json()["error"] == "access_denied"


def test_token_exchange_narrows(api: TestClient, service_client: tuple[str, str]) -> None:
    cid, secret = service_client
    subject = _cc(api, cid, secret, "openid storage.read:/data").json()["access_token"]
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": subject,
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }
    r = api.post(
        "/oidc/token", data={**form, "scope": "storage.read:/data/run1"}, auth=(cid, secret)
    )
    assert r.status_code == 200, r.text
    narrowed = r.json()
    assert narrowed["scope"] == "storage.read:/data/run1"
    assert _claims(narrowed["access_token"])["fedlake.account"] == "robot"
    r = api.post("/oidc/token", data={**form, "scope": "storage.read:/"}, auth=(cid, secret))
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_authorization_code_with_pkce(api: TestClient, lake: Lake) -> None:
    from tests.helpers import ROOT_PASSWORD

    out = _add_client(
        api,
        client_id="notebook",
        public=True,
        grant_types=["authorization_code", "refresh_token"],
        scope=["openid", "offline_access"],
        redirect_uris=["http://localhost:9999/cb"],
    )
    assert "client_secret" not in out
    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode()
    params = {
        "client_id": "notebook",
        "redirect_uri": "http://localhost:9999/cb",
        "response_type": "code",
        "scope": "openid offline_access",
        "state": "s1",
        "code_challenge": challenge.rstrip("="),
        "code_challenge_method": "S256",
        "nonce": "n-1",
    }
    page = api.get("/oidc/authorize", params=params)
    assert page.status_code == 200 and 'name="password"' in page.text
    bad = api.get("/oidc/authorize", params={**params, "redirect_uri": "https://evil.example/"})
    assert bad.status_code == 400
    r = api.post(
        "/oidc/authorize",
        data={**params, "username": "root", "password": ROOT_PASSWORD},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    query = parse_qs(urlparse(r.headers["location"]).query)
    assert query["state"] == ["s1"]
    code = query["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": "notebook",
        "redirect_uri": "http://localhost:9999/cb",
    }
    r = api.post("/oidc/token", data={**form, "code_verifier": "w" * 50})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # the failed attempt used the code up; a fresh code with the right verifier works
    r = api.post(
        "/oidc/authorize",
        data={**params, "username": "root", "password": ROOT_PASSWORD},
        follow_redirects=False,
    )
    code = parse_qs(urlparse(r.headers["location"]).query)["code"][0]
    r = api.post("/oidc/token", data={**form, "code": code, "code_verifier": verifier})
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    assert lake.tokens.validate(access).account == "root"
    id_token = r.json()["id_token"]
    id_claims = _claims(id_token)
    assert id_claims["aud"] == "notebook" and id_claims["nonce"] == "n-1"
    assert id_claims["preferred_username"] == "root"
    r = api.get("/accounts/whoami", headers={"X-Rucio-Auth-Token": id_token})
    assert r.status_code == 401 and "not an access token" in r.text
    # replay: refused, and what was issued is revoked
    r = api.post("/oidc/token", data={**form, "code": code, "code_verifier": verifier})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    with pytest.raises(Exception, match="revoked"):
        lake.tokens.validate(access)


def test_admin_minting(api: TestClient, lake: Lake) -> None:
    acc_svc.add_account(lake, ROOT, "alice", "USER", None)
    r = api.post(
        "/iam/tokens", json={"account": "alice", "scope": "storage.read:/x", "lifetime": 600}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    claims = _claims(body["access_token"])
    assert claims["fedlake.account"] == "alice" and claims["exp"] - claims["iat"] == 600
    assert claims["scope"] == "storage.read:/x"
    r = api.post("/iam/tokens", json={"account": "alice", "groups": ["/nope"]})
    assert r.status_code == 400
    r = api.post(
        "/iam/tokens",
        json={"account": "alice"},
        headers={"X-Rucio-Auth-Token": body["access_token"]},
    )
    assert r.status_code == 401


def test_client_credentials_of_a_suspended_account(
    api: TestClient, lake: Lake, service_client: tuple[str, str]
) -> None:
    from fedlake.catalog.models import Account

    cid, secret = service_client
    object.__setattr__(lake.settings, "auth_cache_seconds", 0)  # no remembered client row
    with lake.db.write() as s:
        row = s.get(Account, "robot")
        assert row is not None
        row.status = "SUSPENDED"
    r = _cc(api, cid, secret)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert "suspended" in r.json()["error_description"]
