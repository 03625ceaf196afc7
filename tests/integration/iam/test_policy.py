"""Policy v2 (docs/policy.md): namespace rules for groups, roles that may do anything,
rule removal, ownership of scopes, replication rules and RSE settings, and the
``FEDLAKE_POLICY_READ=rules`` mode. Through the HTTP API with users' own tokens.

The world: root owns the scopes ``cms_prod``, ``atlas`` and ``esc_data``. alice is in
``/escape/cms``, bob in ``/escape`` only, carol holds the role ``/escape/data-manager``,
dave is in no group.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from fedlake.auth.policy import POLICY_VERSION, Caller
from fedlake.bootstrap import Lake
from fedlake.services import accounts, iam, iam_policies
from fedlake.services import dids as did_svc
from fedlake.services import rules as rule_svc
from tests.helpers import post

Headers = dict[str, str]
ROOT_SCOPES = ("cms_prod", "atlas", "esc_data")


@pytest.fixture
def world(
    lake: Lake, root: Caller, make_user: Callable[[str], None], login: Callable[[str], Headers]
) -> dict[str, Headers]:
    for scope in ROOT_SCOPES:
        accounts.add_scope(lake, root, scope, "root")
    for name in ("alice", "bob", "carol", "dave"):
        make_user(name)
    iam.add_group(lake, root, "/escape")
    iam.add_group(lake, root, "/escape/cms")
    iam.add_group(lake, root, "/escape/data-manager", optional=True)
    iam.add_member(lake, root, "/escape/cms", "alice")
    iam.add_member(lake, root, "/escape", "bob")
    iam.add_member(lake, root, "/escape/data-manager", "carol")
    return {name: login(name) for name in ("alice", "bob", "carol", "dave")}


def add_did(api: TestClient, who: Headers, scope: str, name: str) -> Any:
    return post(api, f"/dids/{scope}/{name}", {"type": "DATASET"}, headers=who)


def denied(r: Any) -> None:
    assert (r.status_code, r.headers.get("ExceptionClass")) == (401, "AccessDenied"), r.text


def grant(api: TestClient, group: str, action: str, scope: str, **extra: Any) -> int:
    r = post(api, "/iam/policies", {"group": group, "action": action, "scope": scope, **extra})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_the_policy_is_version_2() -> None:
    assert POLICY_VERSION == 2


def test_a_group_rule_grants_writing_in_matching_scopes_to_its_members_only(
    api: TestClient, world: dict[str, Headers]
) -> None:
    alice, bob, dave = world["alice"], world["bob"], world["dave"]
    denied(add_did(api, alice, "cms_prod", "before"))
    grant(api, "/escape/cms", "write", "cms_*")
    assert add_did(api, alice, "cms_prod", "ds1").status_code == 201
    r = post(api, "/dids/cms_prod/ds1/meta/color", {"value": "red"}, headers=alice)
    assert r.status_code == 201, r.text
    denied(add_did(api, alice, "atlas", "ds1"))  # the pattern does not match
    denied(add_did(api, bob, "cms_prod", "ds2"))  # a rule of /escape/cms: not for /escape
    denied(add_did(api, dave, "cms_prod", "ds3"))
    # write grants writing only: removing needs delete (or all)
    denied(api.delete("/dids/cms_prod/ds1/meta?key=color", headers=alice))
    r = add_did(api, bob, "cms_prod", "ds2")
    assert "namespace rule granting write" in r.json()["ExceptionMessage"]


def test_a_rule_of_a_parent_group_covers_the_members_of_its_subgroups(
    api: TestClient, world: dict[str, Headers]
) -> None:
    grant(api, "/escape", "write", "esc_*")
    assert add_did(api, world["alice"], "esc_data", "a").status_code == 201  # /escape/cms
    assert add_did(api, world["bob"], "esc_data", "b").status_code == 201  # /escape
    denied(add_did(api, world["dave"], "esc_data", "d"))


def test_a_name_prefix_limits_a_rule(api: TestClient, world: dict[str, Headers]) -> None:
    grant(api, "/escape/cms", "write", "cms_prod", name_prefix="raw_")
    assert add_did(api, world["alice"], "cms_prod", "raw_001").status_code == 201
    denied(add_did(api, world["alice"], "cms_prod", "reco_001"))


def test_the_data_manager_role_does_anything(api: TestClient, world: dict[str, Headers]) -> None:
    carol, alice = world["carol"], world["alice"]
    grant(api, "/escape/data-manager", "all", "*")
    for scope in ROOT_SCOPES:
        assert add_did(api, carol, scope, "dm").status_code == 201
    r = post(api, "/dids/atlas/box", {"type": "CONTAINER"})  # root's container
    assert r.status_code == 201, r.text
    r = post(api, "/dids/atlas/dm/meta/color", {"value": "blue"}, headers=carol)
    assert r.status_code == 201, r.text
    assert api.delete("/dids/atlas/dm/meta?key=color", headers=carol).status_code == 200
    content = json.dumps({"dids": [{"scope": "atlas", "name": "dm"}]})
    r = api.post("/dids/atlas/box/dids", content=content, headers=carol)
    assert r.status_code == 201, r.text
    denied(api.request("DELETE", "/dids/atlas/box/dids", content=content, headers=alice))
    r = api.request("DELETE", "/dids/atlas/box/dids", content=content, headers=carol)
    assert r.status_code == 200, r.text
    # a replication rule of root's on atlas:dm: carol's role may remove it, alice may not
    rule = json.dumps({"dids": [{"scope": "atlas", "name": "dm"}], "copies": 1,
                       "rse_expression": "LOCAL-DISK"})  # fmt: skip
    r = api.post("/rules/", content=rule)
    assert r.status_code == 201, r.text
    rule_id = r.json()[0]
    denied(api.request("DELETE", f"/rules/{rule_id}", content="{}", headers=alice))
    r = api.request("DELETE", f"/rules/{rule_id}", content="{}", headers=carol)
    assert r.status_code == 200, r.text


def test_removing_a_rule_applies_at_the_next_request(
    api: TestClient, lake: Lake, world: dict[str, Headers]
) -> None:
    assert lake.settings.auth_cache_seconds > 0  # alice's token stays cached throughout
    alice = world["alice"]
    rule_id = grant(api, "/escape/cms", "write", "cms_*")
    assert add_did(api, alice, "cms_prod", "one").status_code == 201
    assert api.delete(f"/iam/policies/{rule_id}").status_code == 200
    denied(add_did(api, alice, "cms_prod", "two"))
    assert api.get("/iam/policies").json() == []


def test_only_admins_manage_rules_and_changes_are_audited(
    api: TestClient, lake: Lake, root: Caller, world: dict[str, Headers]
) -> None:
    alice = world["alice"]
    denied(post(api, "/iam/policies", {"group": "/escape", "action": "all", "scope": "*"},
                headers=alice))  # fmt: skip
    denied(api.get("/iam/policies", headers=alice))
    rule_id = grant(api, "/escape", "read", "atlas")
    denied(api.delete(f"/iam/policies/{rule_id}", headers=alice))
    bad = post(api, "/iam/policies", {"group": "/escape", "action": "own", "scope": "*"})
    assert bad.status_code == 400 and "read, write, delete, all" in bad.text
    bad = post(api, "/iam/policies", {"group": "/escape", "action": "read", "scope": "a b"})
    assert bad.status_code == 400
    missing = post(api, "/iam/policies", {"group": "/nope", "action": "read", "scope": "*"})
    assert missing.headers["ExceptionClass"] == "GroupNotFound"
    gone = api.delete("/iam/policies/99999")
    assert (gone.status_code, gone.headers["ExceptionClass"]) == (404, "PolicyNotFound")
    [row] = api.get("/iam/policies", params={"group": "/escape"}).json()
    assert (row["id"], row["action"], row["scope"], row["created_by"]) == (
        rule_id,
        "read",
        "atlas",
        "root",
    )
    assert api.delete(f"/iam/policies/{rule_id}").status_code == 200
    actions = [e["action"] for e in iam.audit_entries(lake, root, target="/escape")]
    assert "policy.add" in actions and "policy.remove" in actions
    # removing the group removes its rules
    rule_id = grant(api, "/escape/cms", "write", "cms_*")
    iam.remove_group(lake, root, "/escape/cms")
    assert iam_policies.list_policies(lake, root) == []


def test_owners_keep_their_rules_and_scopes_and_rse_settings_stay_admin_business(
    api: TestClient, lake: Lake, root: Caller, world: dict[str, Headers]
) -> None:
    alice, bob = world["alice"], world["bob"]
    accounts.add_scope(lake, root, "user.alice", "alice")
    assert add_did(api, alice, "user.alice", "mine").status_code == 201
    denied(add_did(api, bob, "user.alice", "yours"))
    denied(post(api, "/dids/user.alice/mine/meta/k", {"value": "v"}, headers=bob))
    rule = json.dumps({"dids": [{"scope": "user.alice", "name": "mine"}], "copies": 1,
                       "rse_expression": "LOCAL-DISK"})  # fmt: skip
    r = api.post("/rules/", content=rule, headers=alice)
    assert r.status_code == 201, r.text
    rule_id = r.json()[0]
    denied(api.request("DELETE", f"/rules/{rule_id}", content="{}", headers=bob))
    update = json.dumps({"options": {"comment": "mine now"}})
    denied(api.put(f"/rules/{rule_id}", content=update, headers=bob))
    # a write rule on the scope does not let bob change alice's replication rules
    grant(api, "/escape", "write", "user.*")
    denied(api.request("DELETE", f"/rules/{rule_id}", content="{}", headers=bob))
    denied(api.put("/rses/LOCAL-DISK", content=json.dumps({"availability_write": False}),
                   headers=bob))  # fmt: skip
    denied(post(api, "/rses/LOCAL-DISK/attr/site", {"value": "X"}, headers=bob))
    # even a role that may do anything in the namespace may not
    grant(api, "/escape/data-manager", "all", "*")
    carol = world["carol"]
    denied(api.put("/rses/LOCAL-DISK", content=json.dumps({"availability_write": False}),
                   headers=carol))  # fmt: skip
    assert rule_svc.get_rule(lake, root, rule_id)["account"] == "alice"


def test_reads_follow_the_rules_when_the_lake_says_so(
    api: TestClient, lake: Lake, root: Caller, world: dict[str, Headers]
) -> None:
    alice, dave = world["alice"], world["dave"]
    assert add_did(api, api.headers, "atlas", "ds").status_code == 201
    assert api.get("/dids/atlas/ds", headers=dave).status_code == 200  # open by default
    lake.settings = lake.settings.replace(policy_read="rules")
    denied(api.get("/dids/atlas/ds", headers=dave))
    denied(api.get("/dids/atlas/dids/search?name=*", headers=alice))
    grant(api, "/escape", "read", "atlas")
    assert api.get("/dids/atlas/ds", headers=alice).json()["name"] == "ds"
    r = api.get("/dids/atlas/dids/search?name=*", headers=alice)
    assert r.status_code == 200 and "ds" in r.text
    denied(api.get("/dids/atlas/ds", headers=dave))
    assert api.get("/dids/atlas/ds").status_code == 200  # admins read everything
    # an owner reads its own scope without any rule
    accounts.add_scope(lake, root, "user.dave", "dave")
    did_svc.add_dids(lake, Caller("dave"), [{"scope": "user.dave", "name": "x"}])
    assert api.get("/dids/user.dave/x", headers=dave).status_code == 200
