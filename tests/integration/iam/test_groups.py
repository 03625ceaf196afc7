"""Groups and memberships through the API (and token_groups in the catalogue), on both
databases: hierarchy, name rules, roles, removal, managers' rights, the URL form."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from fedlake.bootstrap import Lake
from fedlake.catalog import iam_groups
from fedlake.domain.errors import InvalidName
from tests.integration.iam.conftest import enc

Login = Callable[[str], dict[str, str]]


def _group(api: TestClient, name: str, **extra: object) -> None:
    r = api.post("/iam/groups", json={"name": name, **extra})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    "bad",
    ["escape", "/escape/", "/", "//x", "/a/../b", "/a/./b", "/a b", "/é", "/a/%2e%2e", "", 7],
)
def test_group_names_are_checked(bad: object) -> None:
    with pytest.raises(InvalidName):
        iam_groups.validate_group(bad)


def test_good_group_names() -> None:
    for good in ("/escape", "/escape/cms", "/a.b/c-d/E_9", "/x/..y"):
        assert iam_groups.validate_group(good) == good


def test_hierarchy_needs_the_parent_and_names_are_unique(api: TestClient) -> None:
    r = api.post("/iam/groups", json={"name": "/escape/cms"})
    assert r.status_code == 404 and "create /escape first" in r.json()["ExceptionMessage"]
    _group(api, "/escape", description="the ESCAPE project")
    _group(api, "/escape/cms")
    assert api.post("/iam/groups", json={"name": "/escape"}).status_code == 409
    r = api.post("/iam/groups", json={"name": "/escape/../cms"})
    assert r.status_code == 400 and "'..'" in r.json()["ExceptionMessage"]
    names = [g["name"] for g in api.get("/iam/groups").json()]
    assert names == ["/escape", "/escape/cms"]
    shown = api.get(f"/iam/groups/{enc('/escape')}").json()
    assert shown["description"] == "the ESCAPE project"
    assert shown["subgroups"] == ["/escape/cms"]
    assert shown["members"] == []
    cms = api.get(f"/iam/groups/{enc('/escape/cms')}").json()
    assert cms["parent"] == "/escape" and cms["optional"] is False
    assert api.get(f"/iam/groups/{enc('/nope')}").json()["ExceptionClass"] == "GroupNotFound"


def test_unencoded_group_paths_get_a_404_that_says_how(api: TestClient) -> None:
    _group(api, "/escape")
    _group(api, "/escape/cms")
    r = api.get("/iam/groups/escape/cms")
    assert r.status_code == 404
    assert "%2F" in r.json()["ExceptionMessage"]
    # a group may even be called "members": the encoded segment keeps it unambiguous
    _group(api, "/escape/members")
    assert api.get(f"/iam/groups/{enc('/escape/members')}").json()["name"] == "/escape/members"
    assert api.get(f"/iam/groups/{enc('/escape')}/members").json() == []


def test_remove_refuses_subgroups_unless_recursive(
    api: TestClient, lake: Lake, make_user: Callable[[str], None]
) -> None:
    make_user("alice")
    _group(api, "/escape")
    _group(api, "/escape/cms")
    _group(api, "/escape/cms/t0")
    _group(api, "/escape_x")  # '_' is a LIKE wildcard: must not count as a subgroup
    assert api.post(f"/iam/groups/{enc('/escape/cms')}/members", json={"account": "alice"})
    r = api.delete(f"/iam/groups/{enc('/escape')}")
    assert r.status_code == 409 and "--recursive" in r.json()["ExceptionMessage"]
    r = api.delete(f"/iam/groups/{enc('/escape_x')}")
    assert r.status_code == 200 and r.json() == {"removed": ["/escape_x"]}
    r = api.delete(f"/iam/groups/{enc('/escape')}?recursive=true")
    assert r.json() == {"removed": ["/escape", "/escape/cms", "/escape/cms/t0"]}
    assert api.get("/iam/groups").json() == []
    with lake.db.read() as s:
        assert iam_groups.groups_of(s, "alice") == []


def test_members_managers_and_their_rights(
    api: TestClient, make_user: Callable[[str], None], login: Login
) -> None:
    for name in ("alice", "bob", "carol"):
        make_user(name)
    _group(api, "/escape")
    _group(api, "/escape/cms")
    members = f"/iam/groups/{enc('/escape')}/members"
    assert api.post(members, json={"account": "alice", "manager": True}).status_code == 201
    assert api.post(members, json={"account": "alice"}).status_code == 409
    assert api.post(members, json={"account": "ghost"}).status_code == 404
    alice, bob = login("alice"), login("bob")
    # a manager adds and removes members of the group, but makes no managers
    assert api.post(members, json={"account": "bob"}, headers=alice).status_code == 201
    r = api.post(members, json={"account": "carol", "manager": True}, headers=alice)
    assert r.status_code == 401
    # ... and has no say in other groups, not even the subgroups
    cms = f"/iam/groups/{enc('/escape/cms')}/members"
    r = api.post(cms, json={"account": "carol"}, headers=alice)
    assert r.status_code == 401 and "manager of the group" in r.json()["ExceptionMessage"]
    # a plain member neither lists nor adds members
    assert api.get(members, headers=bob).status_code == 401
    assert api.post(members, json={"account": "carol"}, headers=bob).status_code == 401
    listed = api.get(members, headers=alice).json()
    assert [(m["account"], m["manager"]) for m in listed] == [("alice", True), ("bob", False)]
    # managers see members in the group view; members do not
    assert "members" in api.get(f"/iam/groups/{enc('/escape')}", headers=alice).json()
    assert "members" not in api.get(f"/iam/groups/{enc('/escape')}", headers=bob).json()
    # the manager flag is admin business
    bob_url = f"{members}/bob"
    assert api.patch(bob_url, json={"manager": True}, headers=alice).status_code == 401
    assert api.patch(bob_url, json={"manager": True}).status_code == 204
    assert api.patch(bob_url, json={"manager": "yes"}).status_code == 400
    assert [m["manager"] for m in api.get(members).json()] == [True, True]
    # anybody may leave; a non-manager may not remove others
    assert api.delete(f"{members}/carol").status_code == 404  # not a member
    assert api.post(cms, json={"account": "carol"}).status_code == 201
    carol = login("carol")
    assert api.delete(f"{cms}/carol", headers=bob).status_code == 401
    assert api.delete(f"{cms}/carol", headers=carol).status_code == 204
    assert api.delete(bob_url, headers=alice).status_code == 204
    assert [m["account"] for m in api.get(members).json()] == ["alice"]
    # only admins create or remove groups
    assert api.post("/iam/groups", json={"name": "/x"}, headers=alice).status_code == 401
    assert api.delete(f"/iam/groups/{enc('/escape/cms')}", headers=alice).status_code == 401
    # everybody lists groups and sees their own
    assert [g["name"] for g in api.get("/iam/groups", headers=bob).json()] == [
        "/escape",
        "/escape/cms",
    ]
    me = api.get("/iam/me", headers=alice).json()
    assert me["groups"] == ["/escape"] and me["managed_groups"] == ["/escape"]


def test_token_groups_carry_roles_only_when_requested(
    api: TestClient, lake: Lake, make_user: Callable[[str], None]
) -> None:
    make_user("alice")
    _group(api, "/escape")
    _group(api, "/escape/cms")
    _group(api, "/escape/data-manager", optional=True)
    _group(api, "/other")
    for g in ("/escape", "/escape/cms", "/escape/data-manager"):
        r = api.post(f"/iam/groups/{enc(g)}/members", json={"account": "alice"})
        assert r.status_code == 201
    with lake.db.read() as s:
        assert iam_groups.groups_of(s, "alice") == [
            "/escape",
            "/escape/cms",
            "/escape/data-manager",
        ]
        assert iam_groups.token_groups(s, "alice", None) == ["/escape", "/escape/cms"]
        asked = ["/escape/data-manager", "/other", "/escape/cms", "/escape/data-manager"]
        assert iam_groups.token_groups(s, "alice", asked) == [
            "/escape/data-manager",
            "/escape/cms",
            "/escape",
        ]
        assert iam_groups.token_groups(s, "root", ["/escape"]) == []


def test_only_active_accounts_join_groups(
    api: TestClient, make_user: Callable[[str], None]
) -> None:
    make_user("alice")
    _group(api, "/escape")
    assert api.post("/iam/users/alice/suspend", json={"reason": "test"}).status_code == 204
    r = api.post(f"/iam/groups/{enc('/escape')}/members", json={"account": "alice"})
    assert r.status_code == 409 and "suspended" in r.json()["ExceptionMessage"]
    assert api.get(f"/iam/groups/{enc('/escape')}/members").json() == []


def test_bad_bodies_are_400(api: TestClient) -> None:
    _group(api, "/escape")
    assert api.post("/iam/groups", json={"name": "/a", "optional": "yes"}).status_code == 400
    assert api.post("/iam/groups", json=["/a"]).status_code == 400
    long_text = {"name": "/a", "description": "x" * 1001}
    assert api.post("/iam/groups", json=long_text).status_code == 400
    members = f"/iam/groups/{enc('/escape')}/members"
    assert api.post(members, json={"account": 3}).status_code == 400
    assert api.post(members, json={"account": "root", "manager": 1}).status_code == 400
    assert api.put(members, json={}).status_code == 405
    assert api.get("/iam/groups").json()[0]["name"] == "/escape"
