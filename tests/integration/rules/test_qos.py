"""QoS policies: a rule that changes storage class on schedule (FAST for a while, then
SAFE), keeping the old copies until the new ones exist (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog.models import Event, Rule
from fedlake.domain.errors import InvalidInput
from fedlake.domain.timefmt import utcnow
from fedlake.services import rules as rule_svc
from fedlake.services.rule_lifecycle import qos_round
from tests.integration.rules.test_rule_changes import lock_places
from tests.integration.rules.test_rule_invariants import drain
from tests.integration.rules.test_rule_repair import add_rule, check_counters

_ADMIN = Caller("root", admin=True)  # sees embargoed data too

HOUR = 3600
FAST_THEN_SAFE = [{"qos": "FAST", "lifetime": HOUR}, {"qos": "SAFE"}]


def end_step(lake: Lake, rule_id: str) -> None:
    """The current step's time is up."""
    with lake.db.write() as s:
        s.execute(
            update(Rule).where(Rule.id == rule_id).values(eol_at=utcnow() - timedelta(seconds=1))
        )


def test_fast_for_a_while_then_safe(lake: Lake, root: Caller, put: Callable[..., Any]) -> None:
    names = [put(f"q-{i}")[0] for i in range(3)]
    rule_id = add_rule(lake, root, names, "", qos_policy=FAST_THEN_SAFE)
    rule = rule_svc.get_rule(lake, _ADMIN, rule_id)
    assert rule["rse_expression"] == "QOS=FAST" and rule["state"] == "OK"
    assert rule["eol_at"] is not None and rule["expires_at"] is None
    assert json.loads(rule["meta"])["qos_step"] == 0
    assert qos_round(lake) == 0  # not yet
    end_step(lake, rule_id)
    assert qos_round(lake) == 1
    child = rule_svc.get_rule(lake, _ADMIN, rule_id)["child_rule_id"]
    assert child and rule_svc.get_rule(lake, _ADMIN, child)["rse_expression"] == "QOS=SAFE"
    # the FAST copies stay until the SAFE ones exist
    assert lock_places(lake, rule_id) == {"LOCAL-DISK": {"OK"}}
    assert lock_places(lake, child) == {"LOCAL-SAFE": {"REPLICATING"}}
    drain(lake)
    assert lock_places(lake, child) == {"LOCAL-SAFE": {"OK"}}
    assert rule_svc.get_rule(lake, _ADMIN, child)["state"] == "OK"
    with pytest.raises(Exception, match="does not exist"):
        rule_svc.get_rule(lake, _ADMIN, rule_id)
    last = rule_svc.get_rule(lake, _ADMIN, child)
    assert json.loads(last["meta"])["qos_step"] == 1
    assert last["eol_at"] is None and last["expires_at"] is None  # SAFE for ever
    check_counters(lake, child)
    with lake.db.read() as s:
        kinds = list(s.scalars(select(Event.event_type)))
    assert "qos-transition" in kinds and "rule-moved" in kinds


def test_three_steps_and_a_last_step_with_a_lifetime(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    name, _ = put("three")
    policy = [
        {"qos": "FAST", "lifetime": HOUR},
        {"qos": "SAFE", "lifetime": HOUR},
        {"qos": "TAPE", "lifetime": 30 * 86400},
    ]
    rule_id = add_rule(lake, root, [name], "", qos_policy=policy)
    for expected in ("QOS=SAFE", "QOS=TAPE"):
        end_step(lake, rule_id)
        assert qos_round(lake) == 1
        rule_id = rule_svc.get_rule(lake, _ADMIN, rule_id)["child_rule_id"]
        drain(lake)
        assert rule_svc.get_rule(lake, _ADMIN, rule_id)["rse_expression"] == expected
    last = rule_svc.get_rule(lake, _ADMIN, rule_id)
    assert last["state"] == "OK" and last["eol_at"] is None
    assert last["expires_at"] is not None  # the last step's lifetime: the rule expires
    assert lock_places(lake, rule_id) == {"LOCAL-TAPE": {"OK"}}


def test_a_temporary_cheap_copy_is_a_one_step_policy(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    name, _ = put("cheap")
    rule_id = add_rule(
        lake, root, [name], "", qos_policy=[{"qos": "OPPORTUNISTIC", "lifetime": 86400}]
    )
    rule = rule_svc.get_rule(lake, _ADMIN, rule_id)
    assert rule["rse_expression"] == "QOS=OPPORTUNISTIC"
    assert rule["expires_at"] is not None and rule["eol_at"] is None


def test_bad_policies_are_refused_clearly(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    name, _ = put("bad-policy")
    cases = [
        ([], "non-empty list"),
        ([{"qos": "FAST"}, {"qos": "SAFE"}], "step 0 needs a lifetime"),
        ([{"qos": "FAST", "lifetime": -1}], "'lifetime' must be seconds"),
        ([{"qos": "FA ST", "lifetime": 5}], "must name a QoS class"),
        ([{"qos": "FAST", "lifetime": 5, "colour": "red"}], "step 0 must be an object"),
        ([{"qos": "FAST", "lifetime": 5}, {"qos": "NOWHERE"}], "step 1: 0 RSE(s) with QOS=NOWHERE"),
    ]
    for policy, message in cases:
        with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
            add_rule(lake, root, [name], "", qos_policy=policy)
    with pytest.raises(InvalidInput, match="leave it out"):
        add_rule(lake, root, [name], "LOCAL-SAFE", qos_policy=FAST_THEN_SAFE)


def test_a_step_whose_class_has_no_room_waits_and_keeps_the_copies(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    name, _ = put("waits")
    rule_id = add_rule(lake, root, [name], "", qos_policy=FAST_THEN_SAFE)
    from fedlake.catalog import rses as rse_core

    with lake.db.write() as s:
        rse_core.get_rse(s, "LOCAL-SAFE").availability_write = False
    end_step(lake, rule_id)
    assert qos_round(lake) == 0
    rule = rule_svc.get_rule(lake, _ADMIN, rule_id)
    assert rule["child_rule_id"] is None and "no RSE accepting writes" in rule["error"]
    assert rule["eol_at"] > utcnow()  # tried again later
    assert lock_places(lake, rule_id) == {"LOCAL-DISK": {"OK"}}
