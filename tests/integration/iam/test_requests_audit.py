"""Registration requests (submit, list, approve, reject, decided once) and the audit log
of every identity change, through the API on both databases."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from fedlake.bootstrap import Lake
from fedlake.catalog import audit, iam_groups
from fedlake.domain.errors import Conflict
from fedlake.domain.timefmt import utcnow
from tests.integration.iam.conftest import enc

Login = Callable[[str], dict[str, str]]


@pytest.fixture
def people(
    api: TestClient, make_user: Callable[[str], None], login: Login
) -> dict[str, dict[str, str]]:
    """alice manages /escape; bob and carol are plain users; /escape/data-manager is a role."""
    for name in ("alice", "bob", "carol"):
        make_user(name)
    for name, optional in (("/escape", False), ("/escape/data-manager", True), ("/other", False)):
        assert api.post("/iam/groups", json={"name": name, "optional": optional}).status_code == 201
    members = f"/iam/groups/{enc('/escape')}/members"
    assert api.post(members, json={"account": "alice", "manager": True}).status_code == 201
    return {n: login(n) for n in ("alice", "bob", "carol")}


def test_a_request_approved_by_the_groups_manager(
    api: TestClient, lake: Lake, people: dict[str, dict[str, str]]
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    r = api.post("/iam/requests", json={"group": "/escape", "notes": "PhD at CERN"}, headers=bob)
    assert r.status_code == 201, r.text
    req = r.json()
    assert (req["account"], req["group"], req["state"]) == ("bob", "/escape", "PENDING")
    assert req["email"] == "bob@example.org"
    # asking twice, or for a group one is in, is refused
    assert api.post("/iam/requests", json={"group": "/escape"}, headers=bob).status_code == 409
    assert api.post("/iam/requests", json={"group": "/escape"}, headers=alice).status_code == 409
    assert api.post("/iam/requests", json={"group": "/nope"}, headers=bob).status_code == 404
    other = api.post("/iam/requests", json={"group": "/other"}, headers=carol).json()
    # the manager of /escape sees /escape's requests, not /other's; admins see all
    assert [q["id"] for q in api.get("/iam/requests", headers=alice).json()] == [req["id"]]
    assert [q["id"] for q in api.get("/iam/requests").json()] == [req["id"], other["id"]]
    assert [q["id"] for q in api.get("/iam/requests", headers=carol).json()] == [other["id"]]
    assert api.get("/iam/requests?group=/other").json()[0]["id"] == other["id"]
    # neither the requester nor another user decides; the manager of another group neither
    assert api.post(f"/iam/requests/{req['id']}/approve", headers=bob).status_code == 401
    assert api.post(f"/iam/requests/{other['id']}/approve", headers=alice).status_code == 401
    assert api.get(f"/iam/requests/{other['id']}", headers=alice).status_code == 401
    assert api.get(f"/iam/requests/{other['id']}", headers=carol).json()["state"] == "PENDING"
    r = api.post(f"/iam/requests/{req['id']}/approve", headers=alice)
    assert r.status_code == 200 and r.json()["state"] == "APPROVED"
    assert r.json()["decided_by"] == "alice"
    with lake.db.read() as s:
        assert iam_groups.groups_of(s, "bob") == ["/escape"]
    # decided once
    for verb in ("approve", "reject"):
        r = api.post(f"/iam/requests/{req['id']}/{verb}", headers=alice)
        assert r.status_code == 409 and "already approved by alice" in r.json()["ExceptionMessage"]
    assert api.get("/iam/requests", headers=alice).json() == []
    assert api.get("/iam/requests?state=approved", headers=alice).json()[0]["id"] == req["id"]
    assert len(api.get("/iam/requests?state=all").json()) == 2
    assert api.get("/iam/requests?state=maybe").status_code == 400
    assert api.post("/iam/requests/nope/approve").json()["ExceptionClass"] == (
        "RegistrationNotFound"
    )


def test_a_rejected_role_request_and_a_new_one(
    api: TestClient, lake: Lake, people: dict[str, dict[str, str]]
) -> None:
    bob = people["bob"]
    role = "/escape/data-manager"
    req = api.post("/iam/requests", json={"group": role}, headers=bob).json()
    r = api.post(f"/iam/requests/{req['id']}/reject", json={"reason": "ask your PI first"})
    assert r.status_code == 200
    assert (r.json()["state"], r.json()["reason"]) == ("REJECTED", "ask your PI first")
    with lake.db.read() as s:
        assert iam_groups.groups_of(s, "bob") == []
    mine = api.get("/iam/requests?mine=true&state=all", headers=bob).json()
    assert [(q["state"], q["reason"]) for q in mine] == [("REJECTED", "ask your PI first")]
    again = api.post("/iam/requests", json={"group": role}, headers=bob).json()
    assert api.post(f"/iam/requests/{again['id']}/approve").status_code == 200
    with lake.db.read() as s:
        assert iam_groups.groups_of(s, "bob") == [role]
        assert iam_groups.token_groups(s, "bob", None) == []  # a role: only when asked for
        assert iam_groups.token_groups(s, "bob", [role]) == [role]


def test_approval_of_a_suspended_account_fails_and_leaves_the_request_pending(
    api: TestClient, people: dict[str, dict[str, str]]
) -> None:
    req = api.post("/iam/requests", json={"group": "/escape"}, headers=people["bob"]).json()
    assert api.post("/iam/users/bob/suspend").status_code == 204
    r = api.post(f"/iam/requests/{req['id']}/approve")
    assert r.status_code == 409 and "suspended" in r.json()["ExceptionMessage"]
    assert api.get(f"/iam/requests/{req['id']}").json()["state"] == "PENDING"


def test_two_concurrent_decisions_one_wins(
    lake: Lake, people: dict[str, dict[str, str]], api: TestClient
) -> None:
    req = api.post("/iam/requests", json={"group": "/escape"}, headers=people["bob"]).json()

    def decide(approve: bool) -> str:
        try:
            with lake.db.write() as s:
                iam_groups.decide_registration(s, req["id"], "root", approve=approve)
            return "ok"
        except Conflict:
            return "conflict"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(decide, [True, False]))
    assert outcomes == ["conflict", "ok"]
    state = api.get(f"/iam/requests/{req['id']}").json()["state"]
    with lake.db.read() as s:
        assert (state == "APPROVED") == (iam_groups.groups_of(s, "bob") == ["/escape"])


def test_every_change_is_audited_without_secrets(
    api: TestClient, people: dict[str, dict[str, str]]
) -> None:
    alice, bob = people["alice"], people["bob"]
    req = api.post("/iam/requests", json={"group": "/escape"}, headers=bob).json()
    assert api.post(f"/iam/requests/{req['id']}/approve", headers=alice).status_code == 200
    req2 = api.post("/iam/requests", json={"group": "/other"}, headers=bob).json()
    assert api.post(f"/iam/requests/{req2['id']}/reject", json={"reason": "no"}).status_code == 200
    members = f"/iam/groups/{enc('/escape')}/members"
    assert api.patch(f"{members}/bob", json={"manager": True}).status_code == 204
    assert api.delete(f"{members}/bob", headers=alice).status_code == 204
    assert api.post("/iam/users/carol/suspend", json={"reason": "left"}).status_code == 204
    assert api.post("/iam/users/carol/reinstate").status_code == 204
    assert api.post("/iam/users/bob/revoke-tokens").status_code == 204
    assert api.post("/iam/revoked-tokens", json={"jti": "abc123"}).status_code == 204
    assert api.delete(f"/iam/groups/{enc('/other')}").status_code == 200
    log = api.get("/iam/audit").json()
    got = [(e["actor"], e["action"], e["target"]) for e in reversed(log)]
    assert got == [
        ("root", "group.add", "/escape"),
        ("root", "group.add", "/escape/data-manager"),
        ("root", "group.add", "/other"),
        ("root", "member.add", "/escape"),
        ("bob", "request.submit", "/escape"),
        ("alice", "request.approve", "/escape"),
        ("bob", "request.submit", "/other"),
        ("root", "request.reject", "/other"),
        ("root", "member.manager", "/escape"),
        ("alice", "member.remove", "/escape"),
        ("root", "account.suspend", "carol"),
        ("root", "account.reinstate", "carol"),
        ("root", "tokens.revoke", "bob"),
        ("root", "token.revoke", "abc123"),
        ("root", "group.remove", "/other"),
    ]
    assert log[-6]["details"] == {"id": req["id"], "account": "bob", "reason": None}
    text = json.dumps(log)
    for token in (alice, bob):
        assert token["X-Rucio-Auth-Token"] not in text
    assert "user-secret-password" not in text
    # filters
    by_target = api.get("/iam/audit?target=carol").json()
    assert [e["action"] for e in by_target] == ["account.reinstate", "account.suspend"]
    assert len(api.get("/iam/audit?target=/escape*").json()) == 7
    assert [e["target"] for e in api.get("/iam/audit?actor=alice").json()] == ["/escape"] * 2
    assert len(api.get("/iam/audit?action=group.add&limit=2").json()) == 2
    since = (utcnow() + timedelta(minutes=1)).isoformat()
    assert api.get(f"/iam/audit?since={since}").json() == []
    assert api.get("/iam/audit?limit=0").status_code == 400
    assert api.get("/iam/audit", headers=alice).status_code == 401


def test_a_refused_change_leaves_no_audit_entry(api: TestClient, lake: Lake) -> None:
    assert api.post("/iam/groups", json={"name": "/a/b"}).status_code == 404
    assert api.post("/iam/users/ghost/suspend").status_code == 404
    assert api.get("/iam/audit").json() == []


def test_audit_refuses_secret_details(lake: Lake) -> None:
    with lake.db.write() as s:
        for key in ("token", "refresh_token", "client_secret", "password", "device_code"):
            with pytest.raises(ValueError, match="never keeps secrets"):
                audit.record(s, "root", "x", "y", {key: "v"})
        audit.record(s, "root", "client.add", "c1", {"client_id": "c1", "jti": "j"})
    with lake.db.read() as s:
        assert [e["details"] for e in audit.entries(s)] == [{"client_id": "c1", "jti": "j"}]
