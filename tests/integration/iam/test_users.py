"""Users: listing, suspension and reinstatement, revocation of every token of a user and
of one token by jti, through the real API on both databases; another process sees a
suspension within FEDLAKE_AUTH_CACHE_SECONDS."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from fedlake.auth import cache
from fedlake.bootstrap import Lake, build_lake
from fedlake.catalog.models import Account
from fedlake.domain.errors import AuthenticationFailed
from fedlake.services.accounts import caller_from_token
from tests.integration.iam.conftest import enc

Login = Callable[[str], dict[str, str]]


def _jti(headers: dict[str, str]) -> str:
    payload = headers["X-Rucio-Auth-Token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["jti"])


def _whoami(api: TestClient, headers: dict[str, str]) -> int:
    return api.get("/accounts/whoami", headers=headers).status_code


@pytest.fixture
def alice(make_user: Callable[[str], None], login: Login) -> dict[str, str]:
    make_user("alice")
    return login("alice")


def test_users_are_listed_with_status_and_groups(
    api: TestClient, alice: dict[str, str], make_user: Callable[[str], None]
) -> None:
    make_user("bob")
    assert api.post("/iam/groups", json={"name": "/escape"}).status_code == 201
    r = api.post(f"/iam/groups/{enc('/escape')}/members", json={"account": "alice"})
    assert r.status_code == 201
    users = api.get("/iam/users").json()
    assert [(u["account"], u["status"], u["groups"]) for u in users] == [
        ("alice", "ACTIVE", ["/escape"]),
        ("bob", "ACTIVE", []),
    ]  # root is a SERVICE account, not a user
    assert api.get("/iam/users", headers=alice).status_code == 401
    assert api.post("/iam/users/bob/suspend").status_code == 204
    assert [u["account"] for u in api.get("/iam/users?status=SUSPENDED").json()] == ["bob"]
    assert api.get("/iam/users?status=NOPE").status_code == 400
    shown = api.get("/iam/users/alice", headers=alice).json()
    assert shown["identities"] == [{"type": "USERPASS", "identity": "alice"}]
    assert shown["memberships"] == [{"group": "/escape", "manager": False, "optional": False}]
    assert api.get("/iam/users/bob", headers=alice).status_code == 401
    assert api.get("/iam/users/ghost").status_code == 404


def test_a_suspended_users_token_is_refused_at_once_and_stays_dead(
    api: TestClient, lake: Lake, alice: dict[str, str], login: Login
) -> None:
    assert _whoami(api, alice) == 200  # now remembered by the caller cache
    assert api.post("/iam/users/alice/suspend", headers=alice).status_code == 401
    assert api.post("/iam/users/alice/suspend", json={"reason": "abuse"}).status_code == 204
    r = api.get("/accounts/whoami", headers=alice)
    assert r.status_code == 401 and r.json()["ExceptionClass"] == "CannotAuthenticate"
    with lake.db.read() as s:
        row = s.get(Account, "alice")
        assert row is not None and row.status == "SUSPENDED" and row.suspended_at is not None
    # no new token either
    r = api.get(
        "/auth/userpass",
        headers={"X-Rucio-Username": "alice", "X-Rucio-Password": "user-secret-password"},
    )
    assert r.status_code == 401
    assert api.post("/iam/users/alice/suspend").status_code == 409  # already
    assert api.post("/iam/users/alice/reinstate").status_code == 204
    assert api.post("/iam/users/alice/reinstate").status_code == 409  # not suspended
    # the old token was revoked with the suspension; a new login works
    assert _whoami(api, alice) == 401
    time.sleep(1.1)  # token iat has whole seconds: a token of the same second counts as revoked
    assert _whoami(api, login("alice")) == 200


def test_root_and_oneself_cannot_be_suspended(api: TestClient, alice: dict[str, str]) -> None:
    assert api.post("/iam/users/root/suspend").status_code == 401
    assert api.post("/accounts/alice/attr/admin", json={"value": True}).status_code == 201
    r = api.post("/iam/users/alice/suspend", headers=alice)
    assert r.status_code == 409 and "your own account" in r.json()["ExceptionMessage"]
    assert api.post("/iam/users/ghost/suspend").status_code == 404


def test_revoke_every_token_of_a_user(
    api: TestClient, alice: dict[str, str], make_user: Callable[[str], None], login: Login
) -> None:
    make_user("bob")
    bob = login("bob")
    other_alice = login("alice")
    assert _whoami(api, alice) == 200
    assert api.post("/iam/users/bob/revoke-tokens", headers=alice).status_code == 401
    assert api.post("/iam/users/alice/revoke-tokens").status_code == 204
    assert _whoami(api, alice) == 401
    assert _whoami(api, other_alice) == 401
    assert _whoami(api, bob) == 200
    # a user may log out everywhere by themselves
    assert api.post("/iam/users/bob/revoke-tokens", headers=bob).status_code == 204
    assert _whoami(api, bob) == 401


def test_revoke_one_token_by_jti(api: TestClient, alice: dict[str, str], login: Login) -> None:
    second = login("alice")
    assert _jti(alice) != _jti(second)
    assert _whoami(api, alice) == 200
    r = api.post("/iam/revoked-tokens", json={"jti": _jti(alice)}, headers=second)
    assert r.status_code == 401  # admins only
    assert api.post("/iam/revoked-tokens", json={"jti": _jti(alice)}).status_code == 204
    assert _whoami(api, alice) == 401
    assert _whoami(api, second) == 200
    assert api.post("/iam/revoked-tokens", json={"jti": ""}).status_code == 400
    assert api.post("/iam/revoked-tokens", json={"jti": "x", "expires_at": []}).status_code == 400


def test_another_process_refuses_a_suspended_user_within_the_cache_time(
    api: TestClient, lake: Lake, alice: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = alice["X-Rucio-Auth-Token"]
    other = build_lake(lake.settings, migrate=False)  # a second server process, same catalogue
    shift = [0.0]

    class Clock:
        @staticmethod
        def time() -> float:
            return time.time() + shift[0]

        @staticmethod
        def monotonic() -> float:
            return time.monotonic() + shift[0]

    monkeypatch.setattr(cache, "time", Clock)
    try:
        assert caller_from_token(other, token).account == "alice"
        assert api.post("/iam/users/alice/suspend").status_code == 204
        assert caller_from_token(other, token).account == "alice"  # remembered, as documented
        shift[0] = lake.settings.auth_cache_seconds
        with pytest.raises(AuthenticationFailed):
            caller_from_token(other, token)
    finally:
        other.close()
