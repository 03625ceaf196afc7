"""Rule repair and expiry: STUCK rules are retried, moved, suspended and recover; lost
copies of REPLICATING rules are queued again; expired rules go (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import rses as rse_core
from fedlake.catalog import rules as rule_core
from fedlake.catalog.models import Event, Lock, Replica, Rule, TransferRequest
from fedlake.catalog.rule_repair import RepairPolicy
from fedlake.domain.errors import RuleNotFound
from fedlake.domain.timefmt import utcnow
from fedlake.services import dids as did_svc
from fedlake.services import rules as rule_svc
from fedlake.services.rule_lifecycle import expire_round, repair_round
from fedlake.transfers.worker import TransferWorker
from tests.integration.rules.conftest import SCOPE

_ADMIN = Caller("root", admin=True)  # sees embargoed data too

#: every round due at once (tests move the clock by making rules due, not by sleeping)
FAST = RepairPolicy(base_delay=0.01, max_delay=0.01, move_after=2, suspend_after=4)


def add_rule(lake: Lake, root: Caller, names: list[str], expression: str, **kw: Any) -> str:
    """A rule on a new dataset holding ``names``."""
    dataset = f"ds-{uuid.uuid4().hex[:8]}"
    did_svc.add_dids(lake, root, [{"scope": SCOPE, "name": dataset, "type": "DATASET"}])
    did_svc.attach(lake, root, SCOPE, dataset, [{"scope": SCOPE, "name": n} for n in names])
    [rule_id] = rule_svc.add_rules(
        lake,
        root,
        {
            "dids": [{"scope": SCOPE, "name": dataset}],
            "copies": 1,
            "rse_expression": expression,
            "grouping": "ALL",
            **kw,
        },
    )
    return rule_id


def wait_state(lake: Lake, rule_id: str, states: set[str], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        rule = rule_svc.get_rule(lake, _ADMIN, rule_id)
        state = rule["state"]
        if state in states and not rule["locks_replicating_cnt"]:  # settled
            return str(state)
        if time.monotonic() > deadline:
            raise AssertionError(f"rule {rule_id} is {state}, expected one of {states}")
        time.sleep(0.05)


def lock_rses(lake: Lake, rule_id: str) -> dict[str, str]:
    """{(file name): RSE name} of the rule's locks."""
    with lake.db.read() as s:
        names = {r.id: r.rse for r in s.scalars(select(rse_core.RSE))}
        return {
            lk.name: f"{names[lk.rse_id]}:{lk.state}"
            for lk in s.scalars(select(Lock).where(Lock.rule_id == rule_id))
        }


def kinds(lake: Lake) -> list[str]:
    with lake.db.read() as s:
        return list(s.scalars(select(Event.event_type).order_by(Event.id)))


def check_counters(lake: Lake, rule_id: str) -> None:
    """The rule's counters equal its locks (the invariant every operation keeps)."""
    with lake.db.read() as s:
        rule = s.get(Rule, rule_id)
        assert rule is not None
        states = list(s.scalars(select(Lock.state).where(Lock.rule_id == rule_id)))
        assert rule.locks_ok_cnt == states.count("OK")
        assert rule.locks_replicating_cnt == states.count("REPLICATING")
        assert rule.locks_stuck_cnt == states.count("STUCK")


def test_a_stuck_rule_recovers_when_its_rse_is_repaired(
    lake: Lake,
    root: Caller,
    put: Callable[..., Any],
    worker: TransferWorker,
    broken_rse: Callable[..., Path],
) -> None:
    broken = broken_rse("FLAKY")
    names = [put(f"night-{i}")[0] for i in range(3)]
    rule_id = add_rule(lake, root, names, "FLAKY")
    assert wait_state(lake, rule_id, {"STUCK"}) == "STUCK"
    check_counters(lake, rule_id)
    # the rule says why (the newest transfer error of its stuck locks), as Rucio's does
    error = rule_svc.get_rule(lake, _ADMIN, rule_id)["error"]
    assert error.startswith("copies failed: ") and "NotADirectoryError" in error, error
    # the first round retries in place: still broken, so STUCK again
    assert repair_round(lake, FAST) == 1
    assert wait_state(lake, rule_id, {"STUCK"}) == "STUCK"
    rule = rule_svc.get_rule(lake, _ADMIN, rule_id)
    assert rule["locks_stuck_cnt"] == 3
    # the storage comes back: the next round's retry succeeds
    broken.unlink()
    broken.mkdir()
    time.sleep(0.02)
    assert repair_round(lake, FAST) == 1
    assert wait_state(lake, rule_id, {"OK"}) == "OK"
    check_counters(lake, rule_id)
    with lake.db.read() as s:
        row = s.get(Rule, rule_id)
        assert row is not None and row.repair_count == 0 and row.next_repair_at is None
        assert row.error is None  # OK again: nothing to explain
    assert "rule-repaired" in kinds(lake)


def test_stuck_copies_move_to_another_rse_of_the_expression(
    lake: Lake,
    root: Caller,
    put: Callable[..., Any],
    worker: TransferWorker,
    broken_rse: Callable[..., Path],
) -> None:
    broken_rse("FLAKY", tier="t2")
    with lake.db.write() as s:
        rse_core.set_attribute(s, rse_core.get_rse(s, "LOCAL-SAFE"), "tier", "t2")
    names = [put(f"move-{i}")[0] for i in range(4)]
    rule_id = add_rule(lake, root, names, "FLAKY")
    wait_state(lake, rule_id, {"STUCK"})
    # the expression now also allows LOCAL-SAFE (a rule update in real life: simulate it)
    with lake.db.write() as s:
        s.execute(update(Rule).where(Rule.id == rule_id).values(rse_expression="tier=t2"))
    for _ in range(FAST.move_after + 1):
        time.sleep(0.02)
        repair_round(lake, FAST)
        state = wait_state(lake, rule_id, {"STUCK", "OK"})
        if state == "OK":
            break
    assert state == "OK"
    assert set(lock_rses(lake, rule_id).values()) == {"LOCAL-SAFE:OK"}
    check_counters(lake, rule_id)
    with lake.db.read() as s:
        flaky = rse_core.get_rse(s, "FLAKY").id
        leftovers = list(s.scalars(select(Replica).where(Replica.rse_id == flaky)))
    # the copies that never completed are left OBSOLETE for the deletion daemon
    assert leftovers and all(r.lock_cnt == 0 and r.tombstone is not None for r in leftovers)
    assert all(r.tombstone is not None and r.tombstone.year == 1970 for r in leftovers)


def test_a_hopeless_rule_is_suspended_with_the_reason_and_retried_later(
    lake: Lake,
    root: Caller,
    put: Callable[..., Any],
    worker: TransferWorker,
    broken_rse: Callable[..., Path],
) -> None:
    broken = broken_rse("FLAKY")
    name, _ = put("hopeless")
    rule_id = add_rule(lake, root, [name], "FLAKY")
    wait_state(lake, rule_id, {"STUCK"})
    for _ in range(FAST.suspend_after + 1):
        time.sleep(0.02)
        repair_round(lake, FAST)
        if wait_state(lake, rule_id, {"STUCK", "SUSPENDED"}) == "SUSPENDED":
            break
    rule = rule_svc.get_rule(lake, _ADMIN, rule_id)
    assert rule["state"] == "SUSPENDED"
    assert "suspended after 4 repair rounds" in rule["error"]
    assert "NotADirectoryError" in rule["error"]
    assert "rule-suspended" in kinds(lake)
    check_counters(lake, rule_id)
    # not retried before its time
    assert repair_round(lake, FAST) == 0
    # the cause goes away, and the retry time comes: it recovers by itself
    broken.unlink()
    broken.mkdir()
    with lake.db.write() as s:
        s.execute(
            update(Rule)
            .where(Rule.id == rule_id)
            .values(next_repair_at=utcnow() - timedelta(seconds=1))
        )
    assert repair_round(lake, FAST) == 1
    assert wait_state(lake, rule_id, {"OK"}) == "OK"
    assert rule_svc.get_rule(lake, _ADMIN, rule_id)["error"] is None


def test_a_replicating_copy_without_a_request_is_queued_again(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    worker.stop(timeout=5)  # nothing runs until the test says so
    name, _ = put("lost-request")
    rule_id = add_rule(lake, root, [name], "LOCAL-SAFE")
    with lake.db.write() as s:  # the request disappears (an operator deleted it)
        s.execute(TransferRequest.__table__.delete())  # type: ignore[attr-defined]
        s.execute(
            update(Rule).where(Rule.id == rule_id).values(updated_at=utcnow() - timedelta(hours=2))
        )
    assert repair_round(lake, FAST) == 1
    with lake.db.read() as s:
        reqs = list(s.scalars(select(TransferRequest)))
    assert [(r.name, r.state, r.rule_id) for r in reqs] == [(name, "QUEUED", rule_id)]
    # checked again only after check_every
    assert repair_round(lake, FAST) == 0


def test_a_request_queued_too_long_times_out_and_is_repaired(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    worker.stop(timeout=5)
    name, _ = put("forever-queued")
    rule_id = add_rule(lake, root, [name], "LOCAL-SAFE")
    with lake.db.write() as s:
        old = utcnow() - timedelta(days=30)
        s.execute(update(TransferRequest).values(created_at=old))
        s.execute(update(Rule).where(Rule.id == rule_id).values(updated_at=old))
    assert repair_round(lake, FAST) == 1
    assert rule_svc.get_rule(lake, _ADMIN, rule_id)["state"] == "STUCK"
    with lake.db.read() as s:
        [req] = list(s.scalars(select(TransferRequest)))
    assert req.state == "CANCELLED" and "timed out" in (req.error or "")
    time.sleep(0.02)
    assert repair_round(lake, FAST) == 1  # the stuck lock is queued again
    assert rule_svc.get_rule(lake, _ADMIN, rule_id)["state"] == "REPLICATING"
    with lake.db.read() as s:
        states = sorted(r.state for r in s.scalars(select(TransferRequest)))
    assert states == ["CANCELLED", "QUEUED"]
    check_counters(lake, rule_id)


def test_expired_rules_are_removed_and_locked_ones_kept(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    names = [put(f"exp-{i}")[0] for i in range(3)]
    short = add_rule(lake, root, names, "LOCAL-SAFE", lifetime=3600)
    kept = add_rule(lake, root, names, "LOCAL-BUFFER", lifetime=3600, locked=True)
    wait_state(lake, short, {"OK"})
    wait_state(lake, kept, {"OK"})
    assert expire_round(lake) == 0  # not yet
    with lake.db.write() as s:
        s.execute(update(Rule).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert expire_round(lake) == 1
    remaining = {r["id"] for r in rule_svc.list_rules(lake, _ADMIN, {})}
    assert short not in remaining and kept in remaining
    with lake.db.read() as s:
        safe = rse_core.get_rse(s, "LOCAL-SAFE").id
        released = list(s.scalars(select(Replica).where(Replica.rse_id == safe)))
    assert len(released) == 3
    assert all(r.lock_cnt == 0 and r.tombstone is not None for r in released)
    assert "rule-expired" in kinds(lake)


def test_deleting_a_rule_cancels_its_unfinished_copies(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    worker.stop(timeout=5)
    name, _ = put("never-mind")
    rule_id = add_rule(lake, root, [name], "LOCAL-SAFE")
    rule_svc.delete_rule(lake, root, rule_id, {})
    with lake.db.read() as s:
        [req] = list(s.scalars(select(TransferRequest)))
        safe = rse_core.get_rse(s, "LOCAL-SAFE").id
        replica = s.get(Replica, (safe, SCOPE, name))
    assert req.state == "CANCELLED"
    assert replica is not None and replica.state == "COPYING" and replica.lock_cnt == 0
    assert replica.tombstone is not None and replica.tombstone.year == 1970


def test_a_rule_expired_while_a_user_deletes_it_is_not_found(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    """PostgreSQL: the user's transaction read the rule, the expiry daemon deleted it and
    committed; the user's delete then finds no rule (RuleNotFound, nothing half-done)
    instead of a DELETE that matches no row."""
    if lake.db.sqlite:
        pytest.skip("SQLite has one writer: the two deletes cannot interleave")
    name, _ = put("raced")
    rule_id = add_rule(lake, root, [name], "LOCAL-SAFE", lifetime=3600)
    wait_state(lake, rule_id, {"OK"})
    with lake.db.write() as user:
        held = rule_core.get_rule(user, rule_id)  # read and kept, as the rules service does
        with lake.db.write() as s:
            s.execute(update(Rule).values(expires_at=utcnow() - timedelta(seconds=1)))
        assert expire_round(lake) == 1
        with pytest.raises(RuleNotFound, match="deleted meanwhile"):
            rule_core.delete_rule(user, held.id)
    with lake.db.read() as s:
        assert s.get(Rule, rule_id) is None
        assert not list(s.scalars(select(Lock).where(Lock.rule_id == rule_id)))
