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
    assert json.loads(rule_svc.get_rule(lake, rule_id)["meta"]) == {"distinct_by": "site"}
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
