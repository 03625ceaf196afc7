"""The subscription REST API (Rucio's paths and shapes) and every input it refuses.

A refused request leaves nothing behind: no subscription row, no event. Runs on SQLite
and, when configured, PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog.models import Event, Subscription
from fedlake.server.app import create_app
from fedlake.services import accounts as account_svc
from fedlake.services import dids as did_svc
from fedlake.services.subscription_rounds import process_new_dids
from tests.helpers import JSON, assert_error, log_in, ndjson, one, post

SAFE = {"copies": 1, "rse_expression": "LOCAL-SAFE"}
ALICE_PASSWORD = "alice-password-1"


def options(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "filter": {"scope": ["user.root"], "pattern": "raw_"},
        "replication_rules": [SAFE],
        "comments": "raw data to safe storage",
        "lifetime": False,
        "retroactive": False,
        "dry_run": False,
        "priority": 3,
    }
    return {"options": base | changes}


def put(api: TestClient, url: str, body: Any) -> httpx.Response:
    return api.put(url, content=json.dumps(body))


@pytest.fixture
def alice(lake: Lake, root: Caller) -> Iterator[TestClient]:
    """A client logged in as alice, an ordinary account owning scope user.alice."""
    account_svc.add_account(lake, root, "alice", "USER", None)
    account_svc.add_identity(lake, root, "alice", "alice", "USERPASS", ALICE_PASSWORD)
    account_svc.add_scope(lake, root, "user.alice", "alice")
    with TestClient(create_app(lake), raise_server_exceptions=False) as client:
        log_in(client, "alice", ALICE_PASSWORD)
        yield client


def nothing_written(lake: Lake) -> None:
    with lake.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Subscription)) == 0
        assert s.scalar(select(func.count()).where(Event.event_type.like("subscription-%"))) == 0


def test_create_read_update_deactivate(api: TestClient, lake: Lake, root: Caller) -> None:
    r = post(api, "/subscriptions/root/raw-to-safe", options())
    assert r.status_code == 201, r.text
    assert r.headers["content-type"].startswith("text/plain")
    sub_id = r.text
    assert len(sub_id) == 32 and int(sub_id, 16) >= 0

    [sub] = ndjson(api.get("/subscriptions/root/raw-to-safe"))
    assert sub["id"] == sub_id
    assert (sub["account"], sub["name"], sub["state"], sub["policyid"]) == (
        "root",
        "raw-to-safe",
        "ACTIVE",
        3,
    )
    assert json.loads(sub["filter"]) == {"scope": ["user.root"], "pattern": "raw_"}
    assert json.loads(sub["replication_rules"]) == [SAFE]
    assert (sub["lifetime"], sub["retroactive"], sub["comments"]) == (
        None,
        False,
        "raw data to safe storage",
    )
    assert one(api.get(f"/subscriptions/Id/{sub_id}"))["name"] == "raw-to-safe"
    assert one(api.get(f"/subscriptions/id/{sub_id}"))["name"] == "raw-to-safe"
    assert [s["id"] for s in ndjson(api.get("/subscriptions/root"))] == [sub_id]
    assert [s["id"] for s in ndjson(api.get("/subscriptions/"))] == [sub_id]
    assert [s["id"] for s in ndjson(api.get("/subscriptions/name/raw-to-safe"))] == [sub_id]
    assert [s["id"] for s in ndjson(api.get("/subscriptions/Name/raw-to-safe"))] == [sub_id]
    assert ndjson(api.get("/subscriptions/name/nothing-like-it")) == []

    r = put(api, "/subscriptions/root/raw-to-safe", {"options": {"comments": "new", "lifetime": 2}})
    assert (r.status_code, r.text) == (201, "Created")
    [sub] = ndjson(api.get("/subscriptions/root/raw-to-safe"))
    assert (sub["state"], sub["comments"]) == ("UPDATED", "new")
    assert sub["lifetime"] is not None and sub["lifetime"].endswith("UTC")
    assert json.loads(sub["replication_rules"]) == [SAFE]  # left out: unchanged

    r = put(api, "/subscriptions/root/raw-to-safe", {"options": {"state": "I"}})
    assert r.status_code == 201, r.text
    [sub] = ndjson(api.get("/subscriptions/root/raw-to-safe"))
    assert sub["state"] == "INACTIVE" and sub["expired_at"] is not None
    assert [s["name"] for s in ndjson(api.get("/subscriptions/?state=INACTIVE"))] == ["raw-to-safe"]
    assert ndjson(api.get("/subscriptions/?state=ACTIVE")) == []


def test_rules_and_rule_states(api: TestClient, lake: Lake, root: Caller) -> None:
    assert post(api, "/subscriptions/root/raw", options()).status_code == 201
    assert (
        post(api, "/subscriptions/root/other", options(filter={"pattern": "zzz"})).status_code
        == 201
    )
    did_svc.add_dids(lake, root, [{"scope": "user.root", "name": n} for n in ("raw_1", "raw_2")])
    assert process_new_dids(lake) == 2
    rules = ndjson(api.get("/subscriptions/root/raw/rules"))
    assert sorted(r["name"] for r in rules) == ["raw_1", "raw_2"]
    assert {r["subscription_id"] for r in rules} == {
        ndjson(api.get("/subscriptions/root/raw"))[0]["id"]
    }
    assert {r["state"] for r in rules} == {"OK"}  # empty datasets: nothing to copy
    assert len(ndjson(api.get("/subscriptions/root/raw/Rules?state=OK"))) == 2
    assert ndjson(api.get("/subscriptions/root/raw/rules?state=STUCK")) == []
    assert ndjson(api.get("/subscriptions/root/other/rules")) == []
    assert ndjson(api.get("/subscriptions/root/raw/rules/states")) == [["root", "raw", "OK", 2]]
    assert ndjson(api.get("/subscriptions/root/Rules/States")) == [["root", "raw", "OK", 2]]
    assert ndjson(api.get("/subscriptions/root/other/rules/states")) == []


def test_unknown_subscriptions_are_404(api: TestClient, lake: Lake) -> None:
    assert_error(api.get("/subscriptions/root/nope"), 404, "SubscriptionNotFound")
    assert_error(api.get("/subscriptions/id/" + "0" * 32), 404, "SubscriptionNotFound")
    assert_error(api.get("/subscriptions/Id/" + "x" * 40), 404, "SubscriptionNotFound")
    assert_error(api.get("/subscriptions/root/nope/rules"), 404, "SubscriptionNotFound")
    assert_error(api.get("/subscriptions/root/nope/rules/states"), 404, "SubscriptionNotFound")
    assert_error(put(api, "/subscriptions/root/nope", {"options": {}}), 404, "SubscriptionNotFound")
    assert_error(api.get("/subscriptions/a/b/c/d/e"), 404)
    assert_error(post(api, "/subscriptions/root", options()), 404)
    assert ndjson(api.get("/subscriptions/root")) == []
    nothing_written(lake)


def test_names_are_unique_per_account(api: TestClient, lake: Lake, root: Caller) -> None:
    account_svc.add_account(lake, root, "bob", "USER", None)
    assert post(api, "/subscriptions/root/same", options()).status_code == 201
    msg = assert_error(
        post(api, "/subscriptions/root/same", options()), 409, "SubscriptionDuplicate"
    )
    assert "already has a subscription named 'same'" in msg
    assert post(api, "/subscriptions/bob/same", options()).status_code == 201  # admin for bob
    with lake.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Subscription)) == 2


BAD_OPTIONS: list[tuple[dict[str, Any], int, str, str]] = [
    ({"filter": {"datatyp": "RAW"}}, 400, "DIDFilterSyntaxError", "unknown filter key 'datatyp'"),
    (
        {"filter": {"pattern": "raw_("}},
        400,
        "DIDFilterSyntaxError",
        "not a valid regular expression",
    ),
    ({"filter": {"did_type": "FOLDER"}}, 400, "DIDFilterSyntaxError", "'FOLDER' is not one of"),
    ({"filter": {"account": "ghost"}}, 404, "AccountNotFound", "ghost"),
    (
        {"filter": {"split_rule": True}},
        400,
        "DIDFilterSyntaxError",
        "'split_rule' is not supported",
    ),
    ({"filter": ["scope"]}, 400, "DIDFilterSyntaxError", "the filter must be a JSON object"),
    (
        {"replication_rules": [{"copies": 1, "rse_expression": "NO-SUCH-RSE"}]},
        400,
        "InvalidRSEExpression",
        "rule template 1: RSE expression 'NO-SUCH-RSE' resulted in an empty set",
    ),
    (
        {"replication_rules": [SAFE, {"copies": 1, "rse_expression": "LOCAL-DISK|"}]},
        400,
        "InvalidRSEExpression",
        "rule template 2:",
    ),
    (
        {"replication_rules": [{"copies": 0, "rse_expression": "LOCAL-SAFE"}]},
        400,
        "InvalidObject",
        "rule template 1: rule: 'copies' must be at least 1",
    ),
    (
        {"replication_rules": [{"copies": "two", "rse_expression": "LOCAL-SAFE"}]},
        400,
        "InvalidObject",
        "'copies' is required and must be an integer",
    ),
    (
        {"replication_rules": [{"copies": 3, "rse_expression": "LOCAL-SAFE|LOCAL-DISK"}]},
        409,
        "InsufficientTargetRSEs",
        "rule template 1: 'LOCAL-SAFE|LOCAL-DISK' matches 2 usable RSE(s) but 3 copies",
    ),
    (
        {"replication_rules": [{"copies": 1}]},
        400,
        "InvalidObject",
        "'rse_expression' is required",
    ),
    (
        {"replication_rules": [{**SAFE, "dids": [{"scope": "user.root", "name": "x"}]}]},
        400,
        "InvalidObject",
        "rule template 1: unknown key(s) dids",
    ),
    (
        {"replication_rules": [{**SAFE, "chained_idx": 1}]},
        400,
        "InvalidObject",
        "'chained_idx' is not supported (chained subscriptions are not supported)",
    ),
    (
        {"replication_rules": [{**SAFE, "grouping": "SOMETIMES"}]},
        400,
        "InvalidObject",
        "rule template 1:",
    ),
    (
        {"replication_rules": [{**SAFE, "lifetime": -5}]},
        400,
        "InvalidObject",
        "rule template 1: rule: 'lifetime' must be at least 1",
    ),
    ({"replication_rules": []}, 400, "InvalidObject", "replication_rules is empty"),
    ({"replication_rules": None}, 400, "InvalidObject", "replication_rules is required"),
    ({"replication_rules": SAFE}, 400, "InvalidObject", "replication_rules must be a JSON list"),
    ({"replication_rules": ["LOCAL-SAFE"]}, 400, "InvalidObject", "rule template 1 must be"),
    (
        {"replication_rules": [SAFE, {**SAFE, "copies": 1, "activity": "other"}]},
        409,
        "InvalidReplicationRule",
        "rule template 2 asks for RSE expression 'LOCAL-SAFE' for account root like template 1",
    ),
    ({"dry_run": True}, 400, "InvalidObject", "dry_run is not supported"),
    ({"lifetime": -1}, 400, "InvalidObject", "must be a positive number of days"),
    ({"lifetime": "soon"}, 400, "InvalidObject", "must be a positive number of days"),
    ({"lifetime": 10**9}, 400, "InvalidObject", "lifetime is at most"),
    ({"priority": -1}, 400, "InvalidObject", "'priority' must be at least 0"),
    ({"priority": "high"}, 400, "InvalidObject", "'priority' is required and must be an integer"),
    ({"comments": "x" * 4001}, 400, "InvalidObject", "comments must be a string of at most 4000"),
    ({"retroactive": "perhaps"}, 400, "InvalidObject", "'retroactive' must be true or false"),
    ({"colour": "blue"}, 400, "InvalidObject", "unknown subscription option(s) colour"),
]


@pytest.mark.parametrize(
    ("changes", "status", "cls", "message"),
    BAD_OPTIONS,
    ids=[m[:40] for _, _, _, m in BAD_OPTIONS],
)
def test_bad_subscriptions_are_refused_and_leave_nothing(
    api: TestClient, lake: Lake, changes: dict[str, Any], status: int, cls: str, message: str
) -> None:
    r = post(api, "/subscriptions/root/bad", options(**changes))
    assert message in assert_error(r, status, cls)
    nothing_written(lake)


def test_bad_bodies_names_and_accounts(api: TestClient, lake: Lake) -> None:
    assert "JSON body" in assert_error(post(api, "/subscriptions/root/x", None), 400)
    assert "malformed JSON" in assert_error(
        api.post("/subscriptions/root/x", content=b"{not json"), 400
    )
    assert "must be a JSON object" in assert_error(post(api, "/subscriptions/root/x", [1]), 400)
    assert "options must be a JSON object" in assert_error(
        post(api, "/subscriptions/root/x", {"options": "all"}), 400
    )
    msg = assert_error(
        post(api, f"/subscriptions/root/{'n' * 65}", options()), 400, "InvalidObject"
    )
    assert "invalid subscription name" in msg
    msg = assert_error(post(api, "/subscriptions/root/line%0A", options()), 400, "InvalidObject")
    assert "invalid subscription name 'line\\n'" in msg
    msg = assert_error(post(api, "/subscriptions/No%20Such/x", options()), 400, "InvalidObject")
    assert "invalid account 'No Such'" in msg
    assert_error(post(api, "/subscriptions/ghost/x", options()), 404, "AccountNotFound")
    nothing_written(lake)


def test_bad_updates_change_nothing(api: TestClient, lake: Lake) -> None:
    assert post(api, "/subscriptions/root/keep", options()).status_code == 201
    url = "/subscriptions/root/keep"
    bad = [
        ({"state": "X"}, 400, "subscription state 'X' is not one of"),
        ({"state": "BROKEN"}, 400, "can be set ACTIVE (A) or INACTIVE (I), not BROKEN"),
        ({"filter": {"pattern": "("}}, 400, "not a valid regular expression"),
        ({"replication_rules": [{"copies": 1, "rse_expression": "NOPE"}]}, 400, "empty set"),
        ({"dry_run": True}, 400, "dry_run is not supported"),
        ({"owner": "bob"}, 400, "unknown subscription option(s) owner"),
    ]
    for opts, status, message in bad:
        assert message in assert_error(put(api, url, {"options": opts}), status)
    [sub] = ndjson(api.get(url))
    assert (sub["state"], json.loads(sub["filter"])["pattern"]) == ("ACTIVE", "raw_")
    assert json.loads(sub["replication_rules"]) == [SAFE]


def test_only_the_owner_or_an_admin_manages_subscriptions(
    api: TestClient, alice: TestClient, lake: Lake
) -> None:
    mine = options(filter={"scope": ["user.alice"]})
    assert post(alice, "/subscriptions/alice/mine", mine).status_code == 201
    msg = assert_error(post(alice, "/subscriptions/root/theirs", options()), 401, "AccessDenied")
    assert "may not add subscriptions of account root" in msg
    assert post(api, "/subscriptions/root/theirs", options()).status_code == 201
    msg = assert_error(put(alice, "/subscriptions/root/theirs", {"options": {"state": "I"}}), 401)
    assert "may not change subscriptions of account root" in msg
    # a template may name another account only if the subscription's owner is an admin
    other = options(replication_rules=[{**SAFE, "account": "root"}])
    msg = assert_error(post(alice, "/subscriptions/alice/for-root", other), 401, "AccessDenied")
    assert "rule template 1: account alice may not add rules for account root" in msg
    assert (
        post(
            api,
            "/subscriptions/root/for-alice",
            options(replication_rules=[{**SAFE, "account": "alice"}]),
        ).status_code
        == 201
    )
    assert [s["name"] for s in ndjson(alice.get("/subscriptions/alice"))] == ["mine"]
    assert put(api, "/subscriptions/alice/mine", {"options": {"state": "I"}}).status_code == 201


def test_a_content_type_header_is_not_needed(api: TestClient) -> None:
    r = api.post(
        "/subscriptions/root/typed",
        content=json.dumps(options()),
        headers={"Content-Type": JSON},
    )
    assert r.status_code == 201, r.text
