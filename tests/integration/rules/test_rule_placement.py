"""Placement: copies on distinct RSEs, and on distinct sites when a rule asks for it
(``distinct_by``, as a body field or in ``meta``: what rucio clients can send)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.domain.errors import InsufficientTargetRSEs, InvalidInput
from fedlake.services import rules as rule_svc
from tests.helpers import assert_error
from tests.integration.rules.conftest import SCOPE
from tests.integration.rules.test_rule_changes import lock_places
from tests.integration.rules.test_rule_repair import add_rule

_ADMIN = Caller("root", admin=True)  # sees embargoed data too

THREE = "LOCAL-DISK|LOCAL-BUFFER|LOCAL-SAFE"  # sites: LOCAL, LOCAL, LOCAL-2


def test_without_distinct_by_copies_go_where_the_data_is(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    names = [put(f"p-{i}")[0] for i in range(3)]
    rule_id = add_rule(lake, root, names, THREE, copies=2)
    assert set(lock_places(lake, rule_id)) == {"LOCAL-DISK", "LOCAL-BUFFER"}


def test_distinct_sites_for_a_dataset_rule(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    names = [put(f"d-{i}")[0] for i in range(3)]
    rule_id = add_rule(lake, root, names, THREE, copies=2, distinct_by="site")
    assert set(lock_places(lake, rule_id)) == {"LOCAL-DISK", "LOCAL-SAFE"}
    assert json.loads(rule_svc.get_rule(lake, _ADMIN, rule_id)["meta"]) == {"distinct_by": "site"}
    with pytest.raises(InsufficientTargetRSEs, match="2 copies with distinct 'site'"):
        add_rule(lake, root, names, "LOCAL-DISK|LOCAL-BUFFER", copies=2, distinct_by="site")
    # more copies later keep the sites distinct, or are refused
    with pytest.raises(Exception, match="distinct 'site'"):
        rule_svc.update_rule(lake, root, rule_id, {"options": {"copies": 3}})
    assert set(lock_places(lake, rule_id)) == {"LOCAL-DISK", "LOCAL-SAFE"}


def test_distinct_sites_from_meta_for_file_rules(
    lake: Lake, root: Caller, api: TestClient, put: Callable[..., Any]
) -> None:
    names = [put(f"m-{i}")[0] for i in range(4)]
    body = {
        "dids": [{"scope": SCOPE, "name": n} for n in names],
        "copies": 2,
        "rse_expression": THREE,
        "meta": {"distinct_by": "site"},
    }
    r = api.post("/rules/", json=body)
    assert r.status_code == 201, r.text
    for rule_id in r.json():
        assert set(lock_places(lake, rule_id)) == {"LOCAL-DISK", "LOCAL-SAFE"}
    body["rse_expression"] = "LOCAL-DISK|LOCAL-BUFFER"
    body["dids"] = [{"scope": SCOPE, "name": put("m-x")[0]}]
    r = api.post("/rules/", json=body)
    assert "distinct 'site'" in assert_error(r, 409, "InsufficientTargetRSEs")


def test_bad_distinct_by(lake: Lake, root: Caller, put: Callable[..., Any]) -> None:
    name, _ = put("bad")
    with pytest.raises(InvalidInput, match="distinct_by"):
        add_rule(lake, root, [name], THREE, distinct_by="")
    with pytest.raises(InvalidInput, match="meta must be a JSON object"):
        add_rule(lake, root, [name], THREE, meta=[1, 2])


def _weigh(lake: Lake, key: str, **weights: Any) -> None:
    from fedlake.catalog import rses as rse_core

    with lake.db.write() as s:
        for rse, value in weights.items():
            rse_core.set_attribute(s, rse_core.get_rse(s, rse.replace("_", "-")), key, value)


def test_weight_leaves_out_rses_without_a_positive_weight(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    _weigh(lake, "prio", LOCAL_SAFE=5, LOCAL_BUFFER=0, LOCAL_DISK="lots")
    names = [put(f"w-{i}")[0] for i in range(3)]
    for _ in range(5):  # a random order, but only one RSE may be chosen
        rule_id = add_rule(lake, root, names, THREE, weight="prio")
        assert set(lock_places(lake, rule_id)) == {"LOCAL-SAFE"}
        rule_svc.delete_rule(lake, root, rule_id, {})
    body = {"dids": [{"scope": SCOPE, "name": n} for n in names], "copies": 1}
    [file_rule, *_] = rule_svc.add_rules(
        lake, root, body | {"rse_expression": THREE, "weight": "prio"}
    )
    assert set(lock_places(lake, file_rule)) == {"LOCAL-SAFE"}
    with pytest.raises(InsufficientTargetRSEs, match="positive 'nothing' weight"):
        add_rule(lake, root, names, THREE, weight="nothing")
    with pytest.raises(InsufficientTargetRSEs, match="positive 'prio' weight"):
        add_rule(lake, root, names, THREE, copies=2, weight="prio")


def test_weight_shares_copies_in_proportion(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    """Weights 3 and 1: about three quarters of the file rules go to the heavier RSE
    (expected 150 of 200, standard deviation 6: the bounds are 5 deviations away)."""
    _weigh(lake, "share", LOCAL_SAFE=3, LOCAL_BUFFER=1)
    names = [put(f"s-{i}")[0] for i in range(200)]
    body = {
        "dids": [{"scope": SCOPE, "name": n} for n in names],
        "copies": 1,
        "rse_expression": "LOCAL-SAFE|LOCAL-BUFFER",
        "weight": "share",
    }
    ids = rule_svc.add_rules(lake, root, body)
    places = [next(iter(lock_places(lake, rule_id))) for rule_id in ids]
    assert 120 <= places.count("LOCAL-SAFE") <= 180, places.count("LOCAL-SAFE")
    assert places.count("LOCAL-SAFE") + places.count("LOCAL-BUFFER") == 200


def test_freespace_weight_falls_back_to_the_reported_free_space(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    from fedlake.catalog import rses as rse_core
    from fedlake.catalog.models import RSEUsage

    with lake.db.write() as s:
        for rse, free in (("LOCAL-SAFE", 10**12), ("LOCAL-BUFFER", 0)):
            s.add(RSEUsage(rse_id=rse_core.get_rse(s, rse).id, source="storage", free=free))
    names = [put(f"f-{i}")[0] for i in range(2)]
    rule_id = add_rule(lake, root, names, "LOCAL-SAFE|LOCAL-BUFFER", weight="freespace")
    assert set(lock_places(lake, rule_id)) == {"LOCAL-SAFE"}  # the full one is left out
