"""Subscriptions end to end in one process: new DIDs (one by one, in bulk, with metadata)
get the rules of the subscriptions they match, exactly once; retroactive subscriptions
walk the older DIDs; failures are recorded and do not block the queue.

Every test runs on SQLite and, when configured, PostgreSQL (the ``lake`` fixture).
"""

from __future__ import annotations

import json
import threading
import zlib
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import dids as did_core
from fedlake.catalog import new_dids
from fedlake.catalog import subscriptions as sub_core
from fedlake.catalog.models import (
    Event,
    Lock,
    NewDIDEntry,
    Rule,
    Subscription,
    TransferRequest,
)
from fedlake.daemons.subscriptions import SubscriptionDaemon
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import DIDType
from fedlake.services import accounts as account_svc
from fedlake.services import dids as did_svc
from fedlake.services import replicas as replica_svc
from fedlake.services import rules as rule_svc
from fedlake.services import subscriptions as svc
from fedlake.services.subscription_rounds import process_new_dids, process_retroactive

SCOPE = "user.root"
SAFE = {"copies": 1, "rse_expression": "LOCAL-SAFE"}


def add_collections(
    lake: Lake, caller: Caller, names: list[str], kind: str = "DATASET", **meta: Any
) -> None:
    items = [{"scope": SCOPE, "name": n, "type": kind, "meta": dict(meta)} for n in names]
    did_svc.add_dids(lake, caller, items)


def add_files(
    lake: Lake,
    caller: Caller,
    names: list[str],
    *,
    scope: str = SCOPE,
    nbytes: int = 1000,
    meta: dict[str, dict[str, Any]] | None = None,
) -> None:
    files = [
        {
            "scope": scope,
            "name": n,
            "bytes": nbytes,
            "adler32": f"{zlib.adler32(n.encode()):08x}",
            "meta": (meta or {}).get(n, {}),
        }
        for n in names
    ]
    replica_svc.add_replicas(lake, caller, {"rse": "LOCAL-DISK", "files": files})


def subscribe(
    lake: Lake,
    caller: Caller,
    name: str,
    filter_: dict[str, Any],
    rules: list[dict[str, Any]] | None = None,
    **options: Any,
) -> str:
    body = {"options": {"filter": filter_, "replication_rules": rules or [SAFE], **options}}
    return svc.add_subscription(lake, caller, caller.account, name, body)


def drain(lake: Lake, batch: int = 50) -> None:
    """Run the daemon's rounds until nothing is left to do."""
    while process_new_dids(lake, batch) or process_retroactive(lake, batch):
        pass


def rules_by_did(lake: Lake, subscription_id: str) -> Counter[tuple[str, str, str]]:
    """(scope, name, rse_expression) -> how many rules the subscription made."""
    with lake.db.read() as s:
        rows = s.execute(
            select(Rule.scope, Rule.name, Rule.rse_expression).where(
                Rule.subscription_id == subscription_id
            )
        )
        return Counter((sc, n, e) for sc, n, e in rows)


def ruled_names(lake: Lake, subscription_id: str) -> set[str]:
    return {n for _, n, _ in rules_by_did(lake, subscription_id)}


def queued(lake: Lake) -> int:
    with lake.db.read() as s:
        return new_dids.pending(s)


def failures(lake: Lake) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        rows = s.scalars(
            select(Event.payload)
            .where(Event.event_type == "subscription-failed")
            .order_by(Event.id)
        )
        return [json.loads(p) for p in rows]


# --- new DIDs -----------------------------------------------------------------------------


def test_a_subscription_rules_matching_new_dids_and_no_others(lake: Lake, root: Caller) -> None:
    add_collections(lake, root, ["data_old"])  # before the subscription: not ruled
    sub = subscribe(lake, root, "raw", {"scope": [SCOPE], "pattern": r"data_\d+$"})
    add_collections(lake, root, ["data_1", "data_2", "calib_1", "data_x"])
    add_collections(lake, root, ["data_3"], kind="CONTAINER")
    add_files(lake, root, ["data_4"])  # a file: only filters that ask for FILE match files
    drain(lake)
    assert rules_by_did(lake, sub) == Counter(
        {(SCOPE, n, "LOCAL-SAFE"): 1 for n in ("data_1", "data_2", "data_3")}
    )
    with lake.db.read() as s:
        rule = s.scalars(select(Rule).where(Rule.name == "data_1")).one()
        assert (rule.account, rule.copies, rule.subscription_id) == ("root", 1, sub)
        row = s.get(Subscription, sub)
        assert row is not None and row.last_processed is not None
    assert queued(lake) == 0
    drain(lake)  # nothing queued any more: no second rule
    assert sum(rules_by_did(lake, sub).values()) == 3


def test_rules_lock_and_transfer_like_a_users_rule(lake: Lake, root: Caller) -> None:
    """A dataset with files on LOCAL-DISK: the subscription's rule on LOCAL-SAFE has the
    locks and transfer requests the same rule added by hand has."""
    add_files(lake, root, [f"f{i}" for i in range(6)])
    sub = subscribe(lake, root, "copy-to-safe", {"pattern": "sub_ds"})
    for ds, files in (("sub_ds", ["f0", "f1", "f2"]), ("hand_ds", ["f3", "f4", "f5"])):
        items = [{"scope": SCOPE, "name": ds, "dids": [{"scope": SCOPE, "name": f} for f in files]}]
        did_svc.add_dids(lake, root, items)
    rule_svc.add_rules(lake, root, {**SAFE, "dids": [{"scope": SCOPE, "name": "hand_ds"}]})
    drain(lake)
    with lake.db.read() as s:
        rules = {r.name: r for r in s.scalars(select(Rule))}
        assert set(rules) == {"sub_ds", "hand_ds"}
        assert rules["sub_ds"].subscription_id == sub
        assert rules["hand_ds"].subscription_id is None

        def shape(rule: Rule) -> tuple[Any, ...]:
            locks = s.execute(
                select(Lock.state, func.count()).where(Lock.rule_id == rule.id).group_by(Lock.state)
            ).all()
            requests = s.scalar(select(func.count()).where(TransferRequest.rule_id == rule.id))
            return (
                rule.state,
                rule.locks_replicating_cnt,
                rule.locks_ok_cnt,
                sorted(locks),
                requests,
            )

        assert (
            shape(rules["sub_ds"])
            == shape(rules["hand_ds"])
            == (
                "REPLICATING",
                3,
                0,
                [("REPLICATING", 3)],
                3,
            )
        )


def test_files_registered_in_bulk(lake: Lake, root: Caller) -> None:
    sub = subscribe(
        lake,
        root,
        "raw-files",
        {"did_type": "file", "pattern": "raw_", "excluded_pattern": r".*\.tmp$"},
        [{"copies": 1, "rse_expression": "LOCAL-SAFE", "lifetime": 3600}],
    )
    names = [f"raw_{i:04d}" for i in range(300)] + [f"raw_{i}.tmp" for i in range(20)]
    names += [f"other_{i}" for i in range(30)]
    add_files(lake, root, names)
    assert queued(lake) == len(names)
    drain(lake, batch=64)
    assert ruled_names(lake, sub) == {f"raw_{i:04d}" for i in range(300)}
    assert set(rules_by_did(lake, sub).values()) == {1}
    with lake.db.read() as s:
        expiring = s.scalar(
            select(func.count()).where(Rule.subscription_id == sub, Rule.expires_at.is_not(None))
        )
        assert expiring == 300
        locks = s.scalar(select(func.count()).select_from(Lock))
        requests = s.scalar(select(func.count()).select_from(TransferRequest))
        assert locks == requests == 300


def test_nothing_is_queued_while_no_subscription_wants_the_dids(lake: Lake, root: Caller) -> None:
    add_collections(lake, root, ["before_any"])
    add_files(lake, root, ["file_before_any"])
    assert queued(lake) == 0
    sub = subscribe(lake, root, "collections-only", {})
    add_files(lake, root, ["file_after"])  # no subscription matches files: not queued
    assert queued(lake) == 0
    add_collections(lake, root, ["ds_after"])
    assert queued(lake) == 1
    svc.update_subscription(lake, root, "root", "collections-only", {"options": {"state": "I"}})
    add_collections(lake, root, ["ds_while_inactive"])
    assert queued(lake) == 1
    drain(lake)
    assert ruled_names(lake, sub) == set()  # deactivated before the daemon ran


def test_metadata_filters(lake: Lake, root: Caller) -> None:
    raw = subscribe(lake, root, "raw", {"datatype": "RAW$", "run_number": [100, 101]})
    ranged = subscribe(
        lake,
        root,
        "ranged",
        {"meta_filter": "run_number>=101,project=calib*"},
        [{"copies": 1, "rse_expression": "LOCAL-TAPE"}],
    )
    add_collections(lake, root, ["m1"], datatype="RAW", run_number=100, project="data18")
    add_collections(lake, root, ["m2"], datatype="RAW", run_number=101, project="calib_a")
    add_collections(lake, root, ["m3"], datatype="RAW_X", run_number=100)
    add_collections(lake, root, ["m4"], datatype="AOD", run_number=102, project="calib_b")
    add_collections(lake, root, ["m5"], run_number=101, project="calib_c")
    add_collections(lake, root, ["m6"], datatype="RAW")  # no run number: no match
    add_collections(lake, root, ["m7"], datatype="RAW", run_number="100")  # text "100" is 100
    drain(lake)
    assert ruled_names(lake, raw) == {"m1", "m2", "m7"}
    assert ruled_names(lake, ranged) == {"m2", "m4", "m5"}
    assert failures(lake) == []


def test_several_templates_and_subscriptions_by_priority(lake: Lake, root: Caller) -> None:
    two = [SAFE, {"copies": 1, "rse_expression": "LOCAL-TAPE", "activity": "T0 Export"}]
    first = subscribe(lake, root, "two-rules", {"pattern": "multi"}, two, priority=1)
    second = subscribe(
        lake, root, "same-dids", {"pattern": "multi"}, [{"copies": 2, "rse_expression": "*"}]
    )
    add_collections(lake, root, ["multi_1"])
    drain(lake)
    assert rules_by_did(lake, first) == Counter(
        {(SCOPE, "multi_1", "LOCAL-SAFE"): 1, (SCOPE, "multi_1", "LOCAL-TAPE"): 1}
    )
    assert rules_by_did(lake, second) == Counter({(SCOPE, "multi_1", "*"): 1})
    with lake.db.read() as s:
        tape = s.scalars(select(Rule).where(Rule.rse_expression == "LOCAL-TAPE")).one()
        assert tape.activity == "T0 Export"


def test_a_dataset_queued_twice_gets_its_rule_once(lake: Lake, root: Caller) -> None:
    sub = subscribe(lake, root, "once", {"pattern": "twice"})
    add_collections(lake, root, ["twice"])
    drain(lake)
    with lake.db.write() as s:  # e.g. re-evaluation asked for by hand
        s.execute(
            insert(NewDIDEntry),
            [{"scope": SCOPE, "name": "twice", "did_type": "DATASET", "created_at": utcnow()}],
        )
    drain(lake)
    assert rules_by_did(lake, sub) == Counter({(SCOPE, "twice", "LOCAL-SAFE"): 1})
    assert queued(lake) == 0
    assert failures(lake) == []  # skipped as done, not refused as a duplicate rule


# --- retroactive ----------------------------------------------------------------------------


def test_retroactive_subscription_rules_existing_dids_once(lake: Lake, root: Caller) -> None:
    old = [f"old_{i:03d}" for i in range(120)]
    add_collections(lake, root, old)
    add_collections(lake, root, ["unrelated"])
    add_files(lake, root, ["old_file"])
    sub = subscribe(lake, root, "retro", {"pattern": "old_"}, retroactive=True)
    with lake.db.read() as s:
        row = s.get(Subscription, sub)
        assert row is not None and (row.state, row.retro_done) == ("NEW", False)
    add_collections(lake, root, ["old_new"])  # created after: queued AND in the walk
    drain(lake, batch=25)
    assert ruled_names(lake, sub) == {*old, "old_new"}
    assert set(rules_by_did(lake, sub).values()) == {1}
    with lake.db.read() as s:
        row = s.get(Subscription, sub)
        assert row is not None and (row.state, row.retro_done) == ("ACTIVE", True)
    assert process_retroactive(lake) == 0
    # asking again (e.g. after changing the filter) walks again; no rule is made twice
    body = {"options": {"retroactive": True, "filter": {"pattern": "(old_|unrelated)"}}}
    svc.update_subscription(lake, root, "root", "retro", body)
    drain(lake, batch=25)
    assert ruled_names(lake, sub) == {*old, "old_new", "unrelated"}
    assert set(rules_by_did(lake, sub).values()) == {1}


# --- failures, expiry, deactivation -------------------------------------------------------


def test_a_rule_that_cannot_be_made_is_recorded_and_the_queue_goes_on(
    lake: Lake, root: Caller
) -> None:
    account_svc.add_account(lake, root, "alice", "USER", None)
    account_svc.add_scope(lake, root, "user.alice", "alice")
    account_svc.set_limit(lake, root, "alice", "local", "LOCAL-SAFE", 5000)
    alice = Caller("alice")
    sub = subscribe(lake, alice, "alice-files", {"did_type": ["FILE"]})
    add_files(lake, alice, ["small_1", "small_2"], scope="user.alice", nbytes=2000)
    add_files(lake, alice, ["huge"], scope="user.alice", nbytes=10**9)
    add_files(lake, alice, ["small_3", "small_4"], scope="user.alice", nbytes=2000)
    drain(lake, batch=10)
    made = ruled_names(lake, sub)
    assert made == {"small_1", "small_2"}  # 4000 of 5000 bytes; then nothing fits
    failed = failures(lake)
    assert {f["name"] for f in failed} == {"huge", "small_3", "small_4"}
    assert all(f["reason"].startswith("InsufficientAccountLimit:") for f in failed)
    assert {f["subscription_id"] for f in failed} == {sub}
    assert queued(lake) == 0


def test_expired_and_disabled_subscriptions_make_no_rules(lake: Lake, root: Caller) -> None:
    expiring = subscribe(lake, root, "short", {"pattern": "late"}, lifetime=1)
    disabled = subscribe(
        lake, root, "off", {"pattern": "late"}, [{"copies": 1, "rse_expression": "LOCAL-TAPE"}]
    )
    svc.update_subscription(lake, root, "root", "off", {"options": {"state": "I"}})
    with lake.db.write() as s:
        s.execute(
            update(Subscription)
            .where(Subscription.id == expiring)
            .values(lifetime=utcnow() - timedelta(seconds=1))
        )
    add_collections(lake, root, ["late_1"])
    assert SubscriptionDaemon(lake, batch=10).run_once() >= 1
    with lake.db.read() as s:
        rows = {r.id: r for r in s.scalars(select(Subscription))}
    assert (rows[expiring].state, rows[disabled].state) == ("INACTIVE", "INACTIVE")
    assert rows[expiring].expired_at is not None
    assert ruled_names(lake, expiring) == ruled_names(lake, disabled) == set()
    svc.update_subscription(lake, root, "root", "off", {"options": {"state": "A"}})
    add_collections(lake, root, ["late_2"])
    drain(lake)
    assert ruled_names(lake, disabled) == {"late_2"}


@pytest.mark.parametrize("batch", [0, -1])
def test_the_daemon_refuses_a_batch_below_one(lake: Lake, batch: int) -> None:
    with pytest.raises(ValueError, match="batch must be at least 1"):
        SubscriptionDaemon(lake, batch=batch)


# --- the gate between DID creation and activation -------------------------------------------


def test_an_activation_waits_for_did_transactions_that_looked_before_it(
    lake: Lake, root: Caller
) -> None:
    """A DID transaction that found no live subscription commits before the subscription
    does: the DID is older than the subscription and rightly not queued."""
    errors: list[BaseException] = []

    def add() -> None:
        try:
            subscribe(lake, root, "late-comer", {})
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=add)
    with lake.db.write() as s:
        did_core.add_collections(s, [did_core.NewDID(SCOPE, "early", DIDType.DATASET, "root")])
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the subscription committed while a DID transaction ran"
        assert new_dids.pending(s) == 0
    thread.join(30)
    assert not thread.is_alive() and errors == []
    assert queued(lake) == 0


def test_did_transactions_wait_for_an_activation_and_then_queue(lake: Lake, root: Caller) -> None:
    errors: list[BaseException] = []

    def add() -> None:
        try:
            add_collections(lake, root, ["after_gate"])
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=add)
    new = sub_core.NewSubscription(
        name="gate", account="root", filter={}, rules=[SAFE], matches_files=False
    )
    with lake.db.write() as s:
        sub = sub_core.add_subscription(s, new, utcnow())  # ends holding the gate
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "a DID was created while the subscription was uncommitted"
    thread.join(30)
    assert not thread.is_alive() and errors == []
    assert queued(lake) == 1
    drain(lake)
    assert ruled_names(lake, sub) == {"after_gate"}
