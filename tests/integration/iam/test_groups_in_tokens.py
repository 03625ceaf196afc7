"""Groups as tokens carry them (``wlcg.groups`` of admin-minted tokens, POST /iam/tokens):
roles only when asked for, membership changes seen by the next token, and revocation of
a minted token by its jti. Both databases."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from tests.integration.iam.conftest import enc


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _mint(api: TestClient, **body: Any) -> dict[str, Any]:
    r = api.post("/iam/tokens", json={"account": "alice", "scope": "wlcg.groups", **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_roles_reach_tokens_only_when_requested(
    api: TestClient, make_user: Callable[[str], None]
) -> None:
    make_user("alice")
    for name, optional in (("/escape", False), ("/escape/cms", False), ("/escape/dm", True)):
        assert api.post("/iam/groups", json={"name": name, "optional": optional}).status_code == 201
    for group in ("/escape", "/escape/dm"):
        r = api.post(f"/iam/groups/{enc(group)}/members", json={"account": "alice"})
        assert r.status_code == 201
    plain = _claims(_mint(api)["access_token"])
    assert plain["wlcg.groups"] == ["/escape"]
    with_role = _claims(_mint(api, groups=["/escape/dm", "/escape"])["access_token"])
    assert with_role["wlcg.groups"] == ["/escape/dm", "/escape"]
    # a group alice is not in cannot be asked for
    r = api.post("/iam/tokens", json={"account": "alice", "groups": ["/escape/cms"]})
    assert r.status_code == 400
    # a request approved: the next token carries the new group
    alice_login = api.get(
        "/auth/userpass",
        headers={"X-Rucio-Username": "alice", "X-Rucio-Password": "user-secret-password"},
    )
    alice = {"X-Rucio-Auth-Token": alice_login.headers["X-Rucio-Auth-Token"]}
    req = api.post("/iam/requests", json={"group": "/escape/cms"}, headers=alice).json()
    assert api.post(f"/iam/requests/{req['id']}/approve").status_code == 200
    assert _claims(_mint(api)["access_token"])["wlcg.groups"] == ["/escape", "/escape/cms"]
    # leaving a group: the next token no longer has it
    r = api.delete(f"/iam/groups/{enc('/escape')}/members/alice", headers=alice)
    assert r.status_code == 204
    assert _claims(_mint(api)["access_token"])["wlcg.groups"] == ["/escape/cms"]


def test_a_minted_token_revoked_by_jti(api: TestClient, make_user: Callable[[str], None]) -> None:
    make_user("alice")
    token = _mint(api)["access_token"]
    headers = {"X-Rucio-Auth-Token": token}
    assert api.get("/accounts/whoami", headers=headers).json()["account"] == "alice"
    jti = _claims(token)["jti"]
    r = api.post("/iam/revoked-tokens", json={"jti": jti, "expires_at": _claims(token)["exp"]})
    assert r.status_code == 204
    assert api.get("/accounts/whoami", headers=headers).status_code == 401
    log = api.get("/iam/audit?action=token.revoke").json()
    assert [(e["target"], e["actor"]) for e in log] == [(jti, "root")]
    assert token not in json.dumps(api.get("/iam/audit").json())
