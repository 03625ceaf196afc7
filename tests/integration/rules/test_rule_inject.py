"""Asynchronous rule creation: INJECT rules have no locks until the rule-injector places
them; big datasets go that way by themselves; a rule that cannot be placed yet waits and
gets through later; two injectors never place a rule twice (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import rses as rse_core
from fedlake.catalog.models import Event, Lock, Rule, TransferRequest
from fedlake.domain.errors import UnsupportedOperation
from fedlake.domain.timefmt import utcnow
from fedlake.services import dids as did_svc
from fedlake.services import rules as rule_svc
from fedlake.services.rule_lifecycle import inject_round, seconds_to_next_injection
from fedlake.transfers.worker import TransferWorker
from tests.integration.rules.conftest import SCOPE
from tests.integration.rules.test_rule_repair import check_counters, wait_state

_ADMIN = Caller("root", admin=True)  # sees embargoed data too


def dataset(lake: Lake, root: Caller, put: Callable[..., Any], n: int) -> str:
    name = f"inj-{uuid.uuid4().hex[:8]}"
    did_svc.add_dids(lake, root, [{"scope": SCOPE, "name": name, "type": "DATASET"}])
    files = [put(f"{name}-{i}")[0] for i in range(n)]
    did_svc.attach(lake, root, SCOPE, name, [{"scope": SCOPE, "name": f} for f in files])
    return name


def rule_body(name: str, expression: str = "LOCAL-SAFE") -> dict[str, Any]:
    return {"dids": [{"scope": SCOPE, "name": name}], "copies": 1, "rse_expression": expression}


def counts(lake: Lake, rule_id: str) -> tuple[int, int]:
    """(locks, transfer requests) of the rule."""
    with lake.db.read() as s:
        locks = s.scalar(select(func.count()).where(Lock.rule_id == rule_id))
        reqs = s.scalar(select(func.count()).where(TransferRequest.rule_id == rule_id))
    return int(locks or 0), int(reqs or 0)


def test_an_asynchronous_rule_is_placed_by_the_injector(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    name = dataset(lake, root, put, 4)
    [rule_id] = rule_svc.add_rules(lake, root, rule_body(name) | {"asynchronous": True})
    rule = rule_svc.get_rule(lake, _ADMIN, rule_id)
    assert rule["state"] == "INJECT"
    assert counts(lake, rule_id) == (0, 0)
    assert seconds_to_next_injection(lake, (None, None), 30.0) <= 0  # due now
    assert inject_round(lake) == 1
    assert counts(lake, rule_id) == (4, 4)
    assert wait_state(lake, rule_id, {"OK"}) == "OK"
    check_counters(lake, rule_id)
    assert inject_round(lake) == 0  # nothing left
    with lake.db.read() as s:
        kinds = list(s.scalars(select(Event.event_type).where(Event.event_type == "rule-injected")))
    assert kinds == ["rule-injected"]


def test_a_rule_on_a_dataset_above_the_threshold_is_injected(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    small, big = dataset(lake, root, put, 2), dataset(lake, root, put, 5)
    with lake.db.write() as s:
        [small_rule] = rule_svc.add_rules_in(s, root, rule_body(small), inject_above=3)
        [big_rule] = rule_svc.add_rules_in(s, root, rule_body(big), inject_above=3)
    assert rule_svc.get_rule(lake, _ADMIN, small_rule)["state"] in ("REPLICATING", "OK")
    assert counts(lake, small_rule)[0] == 2  # placed in the call
    assert rule_svc.get_rule(lake, _ADMIN, big_rule)["state"] == "INJECT"
    assert counts(lake, big_rule) == (0, 0)
    assert inject_round(lake) == 1
    assert counts(lake, big_rule)[0] == 5
    assert wait_state(lake, big_rule, {"OK"}) == "OK"


def test_files_attached_before_injection_are_placed_with_the_rest(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    name = dataset(lake, root, put, 2)
    body = rule_body(name, "LOCAL-SAFE|LOCAL-BUFFER") | {"asynchronous": True}
    [rule_id] = rule_svc.add_rules(lake, root, body)
    late = put(f"{name}-late")[0]
    did_svc.attach(lake, root, SCOPE, name, [{"scope": SCOPE, "name": late}])
    assert counts(lake, rule_id) == (0, 0)  # attach leaves INJECT rules to the injector
    with pytest.raises(UnsupportedOperation, match="INJECT"):
        rule_svc.move_rule(lake, root, rule_id, {"rse_expression": "LOCAL-BUFFER"})
    rule_svc.update_rule(lake, root, rule_id, {"options": {"copies": 2}})
    assert inject_round(lake) == 1
    assert counts(lake, rule_id)[0] == 3 * 2  # three files, two copies
    assert wait_state(lake, rule_id, {"OK"}) == "OK"
    check_counters(lake, rule_id)


def test_a_rule_that_cannot_be_placed_waits_and_gets_through_later(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    name = dataset(lake, root, put, 3)
    [rule_id] = rule_svc.add_rules(lake, root, rule_body(name) | {"asynchronous": True})
    with lake.db.write() as s:
        rse_core.get_rse(s, "LOCAL-SAFE").availability_write = False
    assert inject_round(lake) == 1  # tried: it waits
    with lake.db.read() as s:
        rule = s.get(Rule, rule_id)
        assert rule is not None
        assert rule.state == "INJECT"
        assert rule.error is not None and "not placed yet" in rule.error
        assert rule.next_repair_at is not None and rule.next_repair_at > utcnow()
    assert counts(lake, rule_id) == (0, 0)
    assert inject_round(lake) == 0  # backing off
    with lake.db.write() as s:
        rse_core.get_rse(s, "LOCAL-SAFE").availability_write = True
        s.execute(
            update(Rule)
            .where(Rule.id == rule_id)
            .values(next_repair_at=utcnow() - timedelta(seconds=1))
        )
    assert inject_round(lake) == 1
    assert counts(lake, rule_id)[0] == 3
    assert wait_state(lake, rule_id, {"OK"}) == "OK"
    assert rule_svc.get_rule(lake, _ADMIN, rule_id)["error"] is None


def test_two_injectors_place_each_rule_once(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    worker.stop(timeout=5)
    ids = []
    for _ in range(6):
        name = dataset(lake, root, put, 3)
        ids += rule_svc.add_rules(lake, root, rule_body(name) | {"asynchronous": True})
    placed: list[int] = []
    start = threading.Barrier(2)

    def injector() -> None:
        start.wait()
        placed.append(inject_round(lake))

    threads = [threading.Thread(target=injector) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    placed.append(inject_round(lake))  # whatever both skipped (held by the other)
    assert sum(placed) == len(ids)
    for rule_id in ids:
        assert counts(lake, rule_id) == (3, 3)
        check_counters(lake, rule_id)
