"""Changing rules: approval, copies up and down, reduce and move through the REST API
(the rucio client's calls), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import rses as rse_core
from fedlake.catalog.models import Event, Lock, Replica, Rule
from fedlake.domain.errors import AccessDenied
from fedlake.services import rules as rule_svc
from fedlake.transfers.worker import TransferWorker
from tests.helpers import assert_error
from tests.integration.rules.test_rule_repair import add_rule, check_counters, wait_state

_ADMIN = Caller("root", admin=True)  # sees embargoed data too


def lock_places(lake: Lake, rule_id: str) -> dict[str, set[str]]:
    """RSE name -> lock states of the rule there."""
    with lake.db.read() as s:
        names = {r.id: r.rse for r in s.scalars(select(rse_core.RSE))}
        out: dict[str, set[str]] = {}
        for lk in s.scalars(select(Lock).where(Lock.rule_id == rule_id)):
            out.setdefault(names[lk.rse_id], set()).add(lk.state)
        return out


def events_of(lake: Lake, kind: str) -> list[str]:
    with lake.db.read() as s:
        return list(s.scalars(select(Event.payload).where(Event.event_type == kind)))


def test_a_rule_asking_approval_waits_without_locks_until_approved(
    lake: Lake,
    root: Caller,
    api: TestClient,
    put: Callable[..., Any],
    worker: TransferWorker,
) -> None:
    names = [put(f"appr-{i}")[0] for i in range(3)]
    rule_id = add_rule(lake, root, names, "LOCAL-SAFE", ask_approval=True)
    rule = rule_svc.get_rule(lake, _ADMIN, rule_id)
    assert rule["state"] == "WAITING_APPROVAL"
    assert lock_places(lake, rule_id) == {}
    # a user may not approve
    with pytest.raises(AccessDenied, match="may not update a rule of account root"):
        rule_svc.update_rule(lake, Caller("alice"), rule_id, {"options": {"approve": True}})
    with pytest.raises(AccessDenied, match="only an admin may approve"):
        rule_svc.update_rule(lake, Caller("root"), rule_id, {"options": {"approve": True}})
    r = api.put(f"/rules/{rule_id}", json={"options": {"approve": True}})
    assert r.status_code == 200, r.text
    assert wait_state(lake, rule_id, {"OK"}) == "OK"
    assert lock_places(lake, rule_id) == {"LOCAL-SAFE": {"OK"}}
    check_counters(lake, rule_id)
    # approving twice is a clear error
    r = api.put(f"/rules/{rule_id}", json={"options": {"approve": True}})
    assert "only rules WAITING_APPROVAL" in assert_error(r, 409)


def test_a_denied_rule_is_removed_with_the_reason(
    lake: Lake, root: Caller, api: TestClient, put: Callable[..., Any]
) -> None:
    name, _ = put("deny-me")
    rule_id = add_rule(lake, root, [name], "LOCAL-SAFE", ask_approval=True)
    r = api.put(f"/rules/{rule_id}", json={"options": {"approve": False, "comment": "no space"}})
    assert r.status_code == 200, r.text
    assert api.get(f"/rules/{rule_id}").status_code == 404
    assert any("no space" in p for p in events_of(lake, "rule-denied"))
    with lake.db.read() as s:
        assert s.get(Rule, rule_id) is None


def test_more_and_fewer_copies(
    lake: Lake, root: Caller, api: TestClient, put: Callable[..., Any], worker: TransferWorker
) -> None:
    names = [put(f"copies-{i}")[0] for i in range(4)]
    rule_id = add_rule(lake, root, names, "LOCAL-SAFE|LOCAL-BUFFER|LOCAL-DISK")
    wait_state(lake, rule_id, {"OK"})
    assert list(lock_places(lake, rule_id)) == ["LOCAL-DISK"]  # where the files already are
    r = api.put(f"/rules/{rule_id}", json={"options": {"copies": 3}})
    assert r.status_code == 200, r.text
    assert wait_state(lake, rule_id, {"OK"}) == "OK"
    assert set(lock_places(lake, rule_id)) == {"LOCAL-DISK", "LOCAL-SAFE", "LOCAL-BUFFER"}
    check_counters(lake, rule_id)
    assert rule_svc.get_rule(lake, _ADMIN, rule_id)["locks_ok_cnt"] == 12
    # reduce to 1, dropping LOCAL-DISK first (the rucio client's reduce call)
    r = api.post(f"/rules/{rule_id}/reduce", json={"copies": 1, "exclude_expression": "LOCAL-DISK"})
    assert r.status_code == 200, r.text
    assert r.json() == [rule_id]
    places = lock_places(lake, rule_id)
    assert len(places) == 1 and "LOCAL-DISK" not in places
    check_counters(lake, rule_id)
    with lake.db.read() as s:
        disk = rse_core.get_rse(s, "LOCAL-DISK").id
        released = list(s.scalars(select(Replica).where(Replica.rse_id == disk)))
    assert released and all(r.lock_cnt == 0 and r.tombstone is not None for r in released)
    # bad input
    r = api.post(f"/rules/{rule_id}/reduce", json={"copies": 2})
    assert "fewer" in assert_error(r, 409, "InvalidReplicationRule")
    r = api.put(f"/rules/{rule_id}", json={"options": {"copies": 0}})
    assert_error(r, 400)
    r = api.put(f"/rules/{rule_id}", json={"options": {"copies": 9}})
    assert "9 copies need 9 RSEs" in assert_error(r, 409, "InvalidReplicationRule")


def test_moving_a_rule_keeps_the_old_copies_until_the_new_ones_exist(
    lake: Lake, root: Caller, api: TestClient, put: Callable[..., Any], worker: TransferWorker
) -> None:
    names = [put(f"move-{i}")[0] for i in range(3)]
    rule_id = add_rule(lake, root, names, "LOCAL-SAFE", lifetime=86400)
    wait_state(lake, rule_id, {"OK"})
    worker.stop(timeout=5)  # the new copies wait: the old rule must stay meanwhile
    r = api.post(f"/rules/{rule_id}/move", json={"rse_expression": "LOCAL-BUFFER"})
    assert r.status_code == 201, r.text
    child = r.json()
    assert isinstance(child, str) and child != rule_id
    assert rule_svc.get_rule(lake, _ADMIN, rule_id)["child_rule_id"] == child
    assert rule_svc.get_rule(lake, _ADMIN, child)["state"] == "REPLICATING"
    # the lifetime carries over
    assert rule_svc.get_rule(lake, _ADMIN, child)["expires_at"] is not None
    again = TransferWorker(lake.db, worker.config)
    again.start()
    try:
        wait_state(lake, child, {"OK"})
    finally:
        again.stop(timeout=5)
    deadline = time.monotonic() + 10
    while api.get(f"/rules/{rule_id}").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.get(f"/rules/{rule_id}").status_code == 404  # the parent went once the child was OK
    assert lock_places(lake, child) == {"LOCAL-BUFFER": {"OK"}}
    assert events_of(lake, "rule-moved")
    # moving to an expression with no RSE is a clear error, and nothing changes
    r = api.post(f"/rules/{child}/move", json={"rse_expression": "NOPE"})
    assert_error(r, 400, "InvalidRSEExpression")
    assert rule_svc.get_rule(lake, _ADMIN, child)["child_rule_id"] is None


def test_update_rse_expression_moves_the_data(
    lake: Lake, root: Caller, api: TestClient, put: Callable[..., Any], worker: TransferWorker
) -> None:
    name, _ = put("update-move")
    rule_id = add_rule(lake, root, [name], "LOCAL-SAFE")
    wait_state(lake, rule_id, {"OK"})
    dataset = rule_svc.get_rule(lake, _ADMIN, rule_id)["name"]
    r = api.put(f"/rules/{rule_id}", json={"options": {"rse_expression": "LOCAL-BUFFER"}})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 15
    while api.get(f"/rules/{rule_id}").status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.get(f"/rules/{rule_id}").status_code == 404
    [now] = rule_svc.list_rules(lake, _ADMIN, {"name": dataset})
    assert now["rse_expression"] == "LOCAL-BUFFER" and now["state"] == "OK"
    assert lock_places(lake, now["id"]) == {"LOCAL-BUFFER": {"OK"}}
