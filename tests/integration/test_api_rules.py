"""Replication rules over the Rucio REST API: add, show, states, history, locks, limits."""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

import httpx
from sqlalchemy import func, select
from starlette.testclient import TestClient

from fedlake.bootstrap import Lake
from fedlake.catalog.models import Lock, Rule
from tests.helpers import assert_error, ndjson, one, post

SCOPE = "user.root"
JSON = "application/json"
STREAM = "application/x-json-stream"
#: exactly what `rucio rule show` prints (a missing key crashes it)
RULE_SHOW_KEYS = {
    "id",
    "account",
    "scope",
    "name",
    "rse_expression",
    "copies",
    "state",
    "locks_ok_cnt",
    "locks_replicating_cnt",
    "locks_stuck_cnt",
    "grouping",
    "expires_at",
    "locked",
    "weight",
    "created_at",
    "updated_at",
    "error",
    "subscription_id",
    "source_replica_expression",
    "activity",
    "comments",
    "ignore_account_limit",
    "ignore_availability",
    "purge_replicas",
    "notification",
    "eol_at",
    "child_rule_id",
}
RULE_KEYS = RULE_SHOW_KEYS | {"did_type", "stuck_at", "priority", "split_container", "meta"}


def register(api: TestClient, rse: str, name: str, nbytes: int = 10, state: str = "A") -> None:
    data = b"r" * nbytes
    r = post(
        api,
        "/replicas",
        {
            "rse": rse,
            "files": [
                {
                    "scope": SCOPE,
                    "name": name,
                    "bytes": nbytes,
                    "adler32": f"{zlib.adler32(data):08x}",
                    "state": state,
                }
            ],
        },
    )
    assert r.status_code == 201, r.text


def rule_body(names: list[str], rse_expression: str, **changes: Any) -> dict[str, Any]:
    """The body the rucio client sends: every key, grouping null when not given."""
    body: dict[str, Any] = {
        "dids": [{"scope": SCOPE, "name": n} for n in names],
        "copies": 1,
        "rse_expression": rse_expression,
        "weight": None,
        "lifetime": None,
        "grouping": None,
        "account": None,
        "locked": False,
        "source_replica_expression": None,
        "activity": None,
        "notify": None,
        "purge_replicas": False,
        "ignore_availability": False,
        "comment": None,
        "ask_approval": False,
        "asynchronous": False,
        "delay_injection": None,
        "priority": 3,
        "meta": None,
    }
    body.update(changes)
    return body


def add_rule(api: TestClient, names: list[str], rse_expression: str, **changes: Any) -> str:
    r = api.post("/rules/", content=json.dumps(rule_body(names, rse_expression, **changes)))
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == JSON
    ids = r.json()
    assert isinstance(ids, list) and len(ids) == len(names)
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    return str(ids[0])


def test_rule_on_available_file_is_ok(api: TestClient) -> None:
    register(api, "LOCAL-DISK", "f1", 10)
    rid = add_rule(api, ["f1"], "LOCAL-DISK", comment="keep it")
    rule = one(api.get(f"/rules/{rid}"))
    assert set(rule) >= RULE_KEYS
    assert rule["id"] == rid and rule["account"] == "root"
    assert rule["scope"] == SCOPE and rule["name"] == "f1" and rule["did_type"] == "FILE"
    assert rule["state"] == "OK" and rule["grouping"] == "DATASET"
    assert rule["notification"] == "NO" and rule["copies"] == 1
    assert (rule["locks_ok_cnt"], rule["locks_replicating_cnt"], rule["locks_stuck_cnt"]) == (
        1,
        0,
        0,
    )
    assert rule["comments"] == "keep it" and rule["expires_at"] is None
    assert rule["locked"] is False and rule["priority"] == 3
    assert rule["created_at"].endswith(" UTC")
    # lists carry bytes
    listed = ndjson(api.get(f"/dids/{SCOPE}/f1/rules"))
    assert [r["id"] for r in listed] == [rid] and listed[0]["bytes"] == 10
    assert set(listed[0]) >= RULE_KEYS
    assert [r["id"] for r in ndjson(api.get("/accounts/root/rules"))] == [rid]
    assert [r["id"] for r in ndjson(api.get("/rules/", params={"state": "OK"}))] == [rid]
    assert ndjson(api.get("/rules/", params={"state": "REPLICATING"})) == []
    assert [r["id"] for r in ndjson(api.get(f"/dids/{SCOPE}/f1/associated_rules"))] == [rid]


def test_replicating_until_available(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-DISK", "f2", 8)
    rid = add_rule(api, ["f2"], "LOCAL-SAFE", lifetime=3600, grouping="NONE", notify="Y")
    rule = one(api.get(f"/rules/{rid}"))
    assert rule["state"] == "REPLICATING" and rule["locks_replicating_cnt"] == 1
    assert rule["grouping"] == "NONE" and rule["notification"] == "YES"
    assert rule["expires_at"].endswith(" UTC")
    rec = ndjson(
        api.post(
            "/replicas/list",
            content=json.dumps({"dids": [{"scope": SCOPE, "name": "f2"}], "all_states": True}),
        )
    )[0]
    assert rec["states"] == {"LOCAL-DISK": "AVAILABLE", "LOCAL-SAFE": "COPYING"}
    r = api.put(
        "/replicas",
        content=json.dumps(
            {
                "rse": "LOCAL-SAFE",
                "files": [{"scope": SCOPE, "name": "f2", "bytes": 8, "state": "A"}],
            }
        ),
    )
    assert r.status_code == 200, r.text
    rule = one(api.get(f"/rules/{rid}"))
    assert rule["state"] == "OK" and rule["locks_ok_cnt"] == 1
    assert rule["locks_replicating_cnt"] == 0
    # history: the rule was recorded when added and when it turned OK
    history = ndjson(api.get(f"/rules/{SCOPE}/f2/history"))
    assert [h["rule_id"] for h in history] == [rid, rid]
    assert [h["state"] for h in history] == ["REPLICATING", "OK"]
    for h in history:
        assert {"rule_id", "account", "rse_expression", "created_at", "updated_at"} <= set(h)


def test_duplicate_rule_and_errors(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-DISK", "f3")
    add_rule(api, ["f3"], "LOCAL-DISK")
    r = api.post("/rules/", content=json.dumps(rule_body(["f3"], "LOCAL-DISK")))
    assert_error(r, 409, "DuplicateRule")
    r = api.post("/rules", content=json.dumps(rule_body(["ghost"], "LOCAL-DISK")))
    assert_error(r, 404, "DataIdentifierNotFound")
    r = api.post("/rules/", content=json.dumps(rule_body(["f3"], "LOCAL-DISK|(")))
    assert_error(r, 400, "InvalidRSEExpression")
    r = api.post("/rules/", content=json.dumps(rule_body(["f3"], "LOCAL-DISK", copies=2)))
    assert_error(r, 409, "InsufficientTargetRSEs")
    r = api.post("/rules/", content=json.dumps(rule_body(["f3"], "LOCAL-SAFE", grouping="SOME")))
    assert_error(r, 400, "InvalidObject")
    assert_error(api.get("/rules/0123456789abcdef0123456789abcdef"), 404, "RuleNotFound")
    with lake.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Rule)) == 1


def test_update_and_delete(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-DISK", "f4")
    rid = add_rule(api, ["f4"], "LOCAL-DISK")
    r = api.put(
        f"/rules/{rid}",
        content=json.dumps({"options": {"lifetime": 7200, "comment": "changed", "locked": True}}),
    )
    assert r.status_code == 200, r.text
    rule = one(api.get(f"/rules/{rid}"))
    assert rule["locked"] is True and rule["comments"] == "changed"
    assert rule["expires_at"] is not None
    r = api.request("DELETE", f"/rules/{rid}", content=json.dumps({"purge_replicas": None}))
    assert_error(r, 409, "UnsupportedOperation")
    assert_error(
        api.put(f"/rules/{rid}", content=json.dumps({"options": {"colour": "red"}})),
        409,
        "UnsupportedOperation",
    )
    api.put(f"/rules/{rid}", content=json.dumps({"options": {"locked": False}}))
    r = api.request("DELETE", f"/rules/{rid}", content=json.dumps({"purge_replicas": None}))
    assert r.status_code == 200, r.text
    assert_error(api.get(f"/rules/{rid}"), 404, "RuleNotFound")
    assert ndjson(api.get(f"/dids/{SCOPE}/f4/rules")) == []
    history = ndjson(api.get(f"/rules/{SCOPE}/f4/history"))
    assert [h["rule_id"] for h in history] == [rid, rid]
    with lake.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Lock)) == 0
    assert_error(api.request("DELETE", f"/rules/{rid}"), 404, "RuleNotFound")


def test_dataset_and_container_rules_gain_locks(api: TestClient) -> None:
    register(api, "LOCAL-DISK", "g1", 5)
    register(api, "LOCAL-DISK", "g2", 6)
    register(api, "LOCAL-SAFE", "g3", 7)
    assert post(api, f"/dids/{SCOPE}/gds", {"type": "DATASET"}).status_code == 201
    post(api, f"/dids/{SCOPE}/gds/dids", {"dids": [{"scope": SCOPE, "name": "g1"}]})
    rid = add_rule(api, ["gds"], "LOCAL-DISK")
    rule = one(api.get(f"/rules/{rid}"))
    assert rule["did_type"] == "DATASET" and rule["locks_ok_cnt"] == 1
    r = post(
        api,
        f"/dids/{SCOPE}/gds/dids",
        {"dids": [{"scope": SCOPE, "name": "g2"}, {"scope": SCOPE, "name": "g3"}]},
    )
    assert r.status_code == 201, r.text
    rule = one(api.get(f"/rules/{rid}"))
    assert rule["locks_ok_cnt"] == 2 and rule["locks_replicating_cnt"] == 1
    assert rule["state"] == "REPLICATING"
    locks = ndjson(api.get(f"/locks/{SCOPE}/gds", params={"did_type": "dataset"}))
    assert sorted((lk["name"], lk["rse"], lk["state"]) for lk in locks) == [
        ("g1", "LOCAL-DISK", "OK"),
        ("g2", "LOCAL-DISK", "OK"),
        ("g3", "LOCAL-DISK", "REPLICATING"),
    ]
    assert all(lk["rule_id"] == rid for lk in locks)
    assert len(ndjson(api.get(f"/rules/{rid}/locks"))) == 3
    assert [r["id"] for r in ndjson(api.get(f"/dids/{SCOPE}/g3/associated_rules"))] == [rid]
    register(api, "LOCAL-DISK", "h1", 5)
    assert post(api, f"/dids/{SCOPE}/hcont", {"type": "CONTAINER"}).status_code == 201
    assert post(api, f"/dids/{SCOPE}/hds", {"type": "DATASET"}).status_code == 201
    post(api, f"/dids/{SCOPE}/hcont/dids", {"dids": [{"scope": SCOPE, "name": "hds"}]})
    rid = add_rule(api, ["hcont"], "LOCAL-DISK")
    assert one(api.get(f"/rules/{rid}"))["locks_ok_cnt"] == 0
    r = post(api, f"/dids/{SCOPE}/hds/dids", {"dids": [{"scope": SCOPE, "name": "h1"}]})
    assert r.status_code == 201, r.text
    assert one(api.get(f"/rules/{rid}"))["locks_ok_cnt"] == 1


def test_account_limit_exceeded(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-DISK", "big", 100)
    r = api.post("/accounts/root/limits/local/LOCAL-SAFE", content=json.dumps({"bytes": 50}))
    assert r.status_code == 201, r.text
    r = api.post("/rules/", content=json.dumps(rule_body(["big"], "LOCAL-SAFE")))
    msg = assert_error(r, 409, "InsufficientAccountLimit")
    assert "LOCAL-SAFE" in msg
    with lake.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Rule)) == 0
        assert s.scalar(select(func.count()).select_from(Lock)) == 0
    rec = ndjson(
        api.post(
            "/replicas/list",
            content=json.dumps({"dids": [{"scope": SCOPE, "name": "big"}], "all_states": True}),
        )
    )[0]
    assert list(rec["states"]) == ["LOCAL-DISK"]
    # within the limit it works and the usage shows the lock
    r = api.post("/accounts/root/limits/local/LOCAL-SAFE", content=json.dumps({"bytes": 100}))
    assert r.status_code == 201
    add_rule(api, ["big"], "LOCAL-SAFE")
    usage = ndjson(api.get("/accounts/root/usage/local/LOCAL-SAFE"))
    assert usage[0]["bytes"] == 100 and usage[0]["files"] == 1
    assert usage[0]["bytes_remaining"] == 0


def test_rules_for_several_dids(api: TestClient) -> None:
    register(api, "LOCAL-DISK", "m1")
    register(api, "LOCAL-DISK", "m2")
    r = api.post("/rules/", content=json.dumps(rule_body(["m1", "m2"], "site=LOCAL")))
    assert r.status_code == 201, r.text
    ids = r.json()
    assert len(ids) == 2 and len(set(ids)) == 2
    for rid in ids:
        rule = one(api.get(f"/rules/{rid}"))
        assert rule["state"] == "OK" and rule["rse_expression"] == "site=LOCAL"


def test_update_options_are_checked(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-DISK", "u1")
    rid = add_rule(api, ["u1"], "LOCAL-DISK")

    def put(options: dict[str, Any]) -> httpx.Response:
        return api.put(f"/rules/{rid}", content=json.dumps({"options": options}))

    # every rule has an activity: null is refused (it used to be stored as "None")
    msg = assert_error(put({"activity": None}), 400, "InvalidObject")
    assert "activity" in msg
    assert_error(put({"activity": "a" * 51}), 400, "InvalidObject")
    assert_error(put({"activity": 7}), 400, "InvalidObject")
    for lifetime in (0, -1, "-5", "0"):
        msg = assert_error(put({"lifetime": lifetime}), 400, "InvalidObject")
        assert "lifetime" in msg and "at least 1" in msg
    assert_error(put({"priority": None}), 400, "InvalidObject")
    assert_error(put({"locked": None}), 400, "InvalidObject")
    assert_error(put({"locked": "maybe"}), 400, "InvalidObject")
    assert_error(put({"comment": 12}), 400, "InvalidObject")
    assert_error(put({"comment": "c" * 256}), 400, "InvalidObject")
    assert_error(put({"source_replica_expression": "s" * 256}), 400, "InvalidObject")
    assert_error(put({"child_rule_id": "0" * 33}), 400, "InvalidObject")
    rule = one(api.get(f"/rules/{rid}"))
    assert rule["activity"] == "User Subscriptions" and rule["expires_at"] is None
    assert rule["locked"] is False and rule["priority"] == 3 and rule["comments"] is None
    r = put({"activity": "Express", "lifetime": 60, "locked": "true", "priority": 0})
    assert r.status_code == 200, r.text
    rule = one(api.get(f"/rules/{rid}"))
    assert rule["activity"] == "Express" and rule["expires_at"] is not None
    assert rule["locked"] is True and rule["priority"] == 0
    assert put({"lifetime": None, "locked": False, "comment": None}).status_code == 200
    rule = one(api.get(f"/rules/{rid}"))
    assert rule["expires_at"] is None and rule["locked"] is False
    with lake.db.read() as s:
        assert s.scalars(select(Rule.activity)).all() == ["Express"]


def test_add_refuses_bad_lifetime_and_long_text(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-DISK", "v1")
    for lifetime in (0, -1, -3600, "0"):
        r = api.post(
            "/rules/", content=json.dumps(rule_body(["v1"], "LOCAL-DISK", lifetime=lifetime))
        )
        msg = assert_error(r, 400, "InvalidObject")
        assert "lifetime" in msg and "at least 1" in msg
    too_long = {
        "activity": "a" * 51,
        "comment": "c" * 256,
        "weight": "w" * 256,
        "source_replica_expression": "s" * 256,
        "rse_expression": "LOCAL-DISK|" * 300,
    }
    for key, value in too_long.items():
        body = rule_body(["v1"], "LOCAL-DISK") | {key: value}
        msg = assert_error(api.post("/rules/", content=json.dumps(body)), 400, "InvalidObject")
        assert key in msg and "maximum" in msg
    with lake.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Rule)) == 0
    # the longest allowed values and priority 0 are kept as given
    body = rule_body(["v1"], "LOCAL-DISK", activity="a" * 50, comment="c" * 255, priority=0)
    rid = add_rule(api, ["v1"], "LOCAL-DISK", activity="a" * 50, comment="c" * 255, priority=0)
    rule = one(api.get(f"/rules/{rid}"))
    assert rule["activity"] == body["activity"] and rule["comments"] == body["comment"]
    assert rule["priority"] == 0 and rule["expires_at"] is None


def test_rule_for_unknown_account(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-DISK", "w1")
    r = api.post("/rules/", content=json.dumps(rule_body(["w1"], "LOCAL-DISK", account="ghost")))
    msg = assert_error(r, 404, "AccountNotFound")
    assert "ghost" in msg
    rid = add_rule(api, ["w1"], "LOCAL-DISK")
    r = api.put(f"/rules/{rid}", content=json.dumps({"options": {"account": "ghost"}}))
    assert_error(r, 404, "AccountNotFound")
    with lake.db.read() as s:
        assert s.scalars(select(Rule.account)).all() == ["root"]
