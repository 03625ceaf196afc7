"""Attaching files to a dataset with a rule locks the new files for the rule, detaching
releases them; a delete of that rule in another transaction (a user, or the lifecycle
daemon removing an expired rule) must neither leave a lock without its rule nor make the
attach or detach fail (both databases; found by the lifecycle kill test on PostgreSQL:
ForeignKeyViolation on locks). A change of the rule raced by its delete is refused as a
rule that does not exist."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import dids as did_core
from fedlake.catalog import rules as rule_core
from fedlake.catalog.models import DIDContent, Lock, Rule
from fedlake.domain.errors import DIDNotFound, RuleNotFound
from fedlake.services import dids as did_svc
from fedlake.services import rules as rule_svc
from tests.helpers import race
from tests.integration.rules.conftest import SCOPE, put  # noqa: F401  (fixture)
from tests.integration.rules.invariants import violations

DATASET = "raced-ds"
NEW = (SCOPE, "raced-new")


def _dataset_with_rule(
    lake: Lake,
    root: Caller,
    put: Callable[..., object],  # noqa: F811
    expression: str = "LOCAL-DISK",
) -> str:
    """A dataset of one file with a rule on the RSE that holds it (OK at once)."""
    put("raced-old")
    put(NEW[1])
    did_svc.add_dids(lake, root, [{"scope": SCOPE, "name": DATASET, "type": "DATASET"}])
    did_svc.attach(lake, root, SCOPE, DATASET, [{"scope": SCOPE, "name": "raced-old"}])
    body = {
        "dids": [{"scope": SCOPE, "name": DATASET}],
        "copies": 1,
        "rse_expression": expression,
    }
    (rule_id,) = rule_svc.add_rules(lake, root, body)
    return rule_id


def _attach(s: Session) -> None:
    did_core.attach(s, SCOPE, DATASET, [NEW])
    did_svc.extend_rules(s, SCOPE, DATASET, [NEW])


def _deleter(rule_id: str) -> Callable[[Session], None]:
    def delete(s: Session) -> None:
        rule_core.delete_rule(s, rule_id)

    return delete


def _after(lake: Lake) -> tuple[list[str], list[tuple[str, str]], set[tuple[str, str]]]:
    with lake.db.read() as s:
        rules = list(s.scalars(select(Rule.id)))
        locks = [(lk.rule_id, lk.name) for lk in s.scalars(select(Lock))]
        content = {(c.name, c.child_name) for c in s.scalars(select(DIDContent))}
        assert violations(s) == []
    return rules, locks, content


def _in_order(first: str, rule_id: str, other: Callable[[Session], None]) -> tuple[Any, ...]:
    """``race``'s first and second transaction and what waits: the delete of the rule
    first (``first == "delete"``) or ``other`` first."""
    delete = _deleter(rule_id)
    return (delete, other, "attach or detach") if first == "delete" else (other, delete, "delete")


def _detach(s: Session) -> None:
    did_svc.detach_in(s, SCOPE, DATASET, [(SCOPE, "raced-old")])


# a delete first: without the rule held, PostgreSQL failed with ForeignKeyViolation on locks
@pytest.mark.parametrize("first", ["delete", "other"])
@pytest.mark.parametrize(
    ("other", "content_after"),
    [(_attach, {(DATASET, "raced-old"), (DATASET, NEW[1])}), (_detach, set())],
    ids=["attach", "detach"],
)
def test_an_attach_or_a_detach_and_a_delete_of_the_rule_in_either_order_leave_no_lock(
    lake: Lake,
    root: Caller,
    put: Callable[..., object],  # noqa: F811
    first: str,
    other: Callable[[Session], None],
    content_after: set[tuple[str, str]],
) -> None:
    rule_id = _dataset_with_rule(lake, root, put)
    errors = race(lake, *_in_order(first, rule_id, other))
    assert errors == []
    rules, locks, content = _after(lake)
    assert rules == [] and locks == []
    assert content == content_after


def test_without_a_race_the_attached_file_is_locked_for_the_rule(
    lake: Lake,
    root: Caller,
    put: Callable[..., object],  # noqa: F811
) -> None:
    rule_id = _dataset_with_rule(lake, root, put)
    with lake.db.write() as s:
        _attach(s)
    rules, locks, _ = _after(lake)
    assert rules == [rule_id]
    assert sorted(locks) == [(rule_id, "raced-new"), (rule_id, "raced-old")]


CHANGES: dict[str, Callable[[Lake, Caller, str], Any]] = {
    "comment": lambda lake, who, rid: rule_svc.update_rule(
        lake, who, rid, {"options": {"comment": "raced"}}
    ),
    "more copies": lambda lake, who, rid: rule_svc.update_rule(
        lake, who, rid, {"options": {"copies": 2}}
    ),
    "reduce": lambda lake, who, rid: rule_svc.reduce_rule(lake, who, rid, {"copies": 1}),
    "move": lambda lake, who, rid: rule_svc.move_rule(
        lake, who, rid, {"rse_expression": "LOCAL-BUFFER"}
    ),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_of_the_rule_waits_for_its_delete_and_is_then_refused(
    lake: Lake,
    root: Caller,
    put: Callable[..., object],  # noqa: F811
    change: str,
) -> None:
    rule_id = _dataset_with_rule(lake, root, put, "LOCAL-DISK|LOCAL-SAFE")
    if change == "reduce":
        CHANGES["more copies"](lake, root, rule_id)

    def in_its_own_transaction(_: Session) -> None:
        CHANGES[change](lake, root, rule_id)

    errors = race(lake, _deleter(rule_id), in_its_own_transaction, change)
    # without the rule held first, PostgreSQL: a lock without its rule, or an UPDATE
    # that matches no row (ForeignKeyViolation, StaleDataError)
    assert len(errors) == 1 and isinstance(errors[0], RuleNotFound), errors
    rules, locks, _ = _after(lake)
    assert rules == [] and locks == []


def test_a_new_rule_waits_for_the_removal_of_its_did_and_is_then_refused(
    lake: Lake,
    root: Caller,
    put: Callable[..., object],  # noqa: F811  (makes the scope)
) -> None:
    did_svc.add_dids(lake, root, [{"scope": SCOPE, "name": "going-ds", "type": "DATASET"}])

    def remove(s: Session) -> None:
        did_core.mark_deleted(s, [(SCOPE, "going-ds")])

    def add_rule(s: Session) -> None:
        body = {"copies": 1, "rse_expression": "LOCAL-DISK"}
        rule_svc.add_rules_in(s, root, {**body, "dids": [{"scope": SCOPE, "name": "going-ds"}]})

    errors = race(lake, remove, add_rule, "new rule")
    # without the DID held, PostgreSQL: ForeignKeyViolation (a rule without its DID)
    assert len(errors) == 1 and isinstance(errors[0], DIDNotFound), errors
    rules, _, _ = _after(lake)
    assert rules == []
