"""A rule's ``notify`` setting: RULE_OK (Y), RULE_OK only for a closed DID (C), progress
every 10 % then RULE_OK (P), nothing (N) — as rule-notify events (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog.models import DID, Event
from fedlake.services import dids as did_svc
from fedlake.services import rules as rule_svc
from fedlake.transfers.worker import TransferWorker
from tests.integration.rules.conftest import SCOPE
from tests.integration.rules.test_rule_invariants import drain
from tests.integration.rules.test_rule_repair import wait_state


def notes(lake: Lake, rule_id: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        rows = s.scalars(
            select(Event.payload).where(Event.event_type == "rule-notify").order_by(Event.id)
        )
        found = [json.loads(p) for p in rows]
    return [n for n in found if n["rule_id"] == rule_id]


def dataset_rule(
    lake: Lake, root: Caller, put: Callable[..., Any], n: int, notify: str, close: bool = False
) -> str:
    name = f"note-{uuid.uuid4().hex[:8]}"
    did_svc.add_dids(lake, root, [{"scope": SCOPE, "name": name, "type": "DATASET"}])
    files = [put(f"{name}-{i}")[0] for i in range(n)]
    did_svc.attach(lake, root, SCOPE, name, [{"scope": SCOPE, "name": f} for f in files])
    if close:
        with lake.db.write() as s:
            s.execute(update(DID).where(DID.scope == SCOPE, DID.name == name).values(is_open=False))
    body = {
        "dids": [{"scope": SCOPE, "name": name}],
        "copies": 1,
        "rse_expression": "LOCAL-SAFE",
        "notify": notify,
    }
    [rule_id] = rule_svc.add_rules(lake, root, body)
    return rule_id


def test_notify_yes_sends_rule_ok_once(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    rule_id = dataset_rule(lake, root, put, 3, "Y")
    assert wait_state(lake, rule_id, {"OK"}) == "OK"
    got = notes(lake, rule_id)
    assert [n["kind"] for n in got] == ["RULE_OK"]
    assert got[0]["scope"] == SCOPE and got[0]["account"] == "root"
    assert got[0]["rse_expression"] == "LOCAL-SAFE"


def test_notify_no_sends_nothing(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    rule_id = dataset_rule(lake, root, put, 3, "N")
    assert wait_state(lake, rule_id, {"OK"}) == "OK"
    assert notes(lake, rule_id) == []


def test_notify_close_waits_for_a_closed_dataset(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    still_open = dataset_rule(lake, root, put, 2, "C")
    closed = dataset_rule(lake, root, put, 2, "C", close=True)
    assert wait_state(lake, still_open, {"OK"}) == "OK"
    assert wait_state(lake, closed, {"OK"}) == "OK"
    assert notes(lake, still_open) == []
    assert [n["kind"] for n in notes(lake, closed)] == ["RULE_OK"]


def test_notify_progress_reports_tens_of_per_cent_then_ok(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    worker.stop(timeout=5)  # the copies run one by one below, so each step is seen
    rule_id = dataset_rule(lake, root, put, 10, "P")
    drain(lake)
    assert wait_state(lake, rule_id, {"OK"}) == "OK"
    got = notes(lake, rule_id)
    assert got[-1]["kind"] == "RULE_OK"
    progress = [n["progress"] for n in got[:-1]]
    assert all(n["kind"] == "RULE_PROGRESS" for n in got[:-1])
    assert progress, got  # at least one step before OK
    assert progress == sorted(set(progress)) and set(progress) <= set(range(10, 100, 10))


def test_a_file_rule_ok_at_once_notifies_at_once(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    name, _ = put("already-there")
    body = {
        "dids": [{"scope": SCOPE, "name": name}],
        "copies": 1,
        "rse_expression": "LOCAL-DISK",  # where the file is: the rule is OK when made
        "notify": "Y",
    }
    [rule_id] = rule_svc.add_rules(lake, root, body)
    assert [n["kind"] for n in notes(lake, rule_id)] == ["RULE_OK"]
