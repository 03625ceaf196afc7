"""A new rule that locks a replica whose copy a worker is completing at that moment waits
for the completion and then sees the replica as it is (both databases). On PostgreSQL
the rule first takes the copy's transfer request, as the worker does: it took the
replica first before, then queued a request of its own, which waited on the worker's
while the worker waited for the replica (found by CI: DeadlockDetected in
test_two_instances)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import rses as rse_core
from fedlake.catalog import rules as rule_core
from fedlake.catalog.models import Lock, Replica, TransferRequest
from fedlake.services import dids as did_svc
from fedlake.services import rules as rule_svc
from tests.helpers import race
from tests.integration.rules.conftest import SCOPE, put  # noqa: F401  (fixture)
from tests.integration.rules.invariants import ACTIVE, violations


def test_a_rule_waits_for_a_completing_copy_and_then_locks_it_ok(
    lake: Lake,
    root: Caller,
    put: Callable[..., object],  # noqa: F811
) -> None:
    put("completing")
    body = {"copies": 1, "rse_expression": "LOCAL-SAFE"}
    (first_rule,) = rule_svc.add_rules(
        lake, root, {**body, "dids": [{"scope": SCOPE, "name": "completing"}]}
    )
    did_svc.add_dids(lake, root, [{"scope": SCOPE, "name": "holder", "type": "DATASET"}])
    did_svc.attach(lake, root, SCOPE, "holder", [{"scope": SCOPE, "name": "completing"}])
    with lake.db.read() as s:
        safe = rse_core.get_rse(s, "LOCAL-SAFE").id
        (request_id,) = s.scalars(
            select(TransferRequest.id).where(TransferRequest.rule_id == first_rule)
        )
    where = (Replica.rse_id == safe, Replica.scope == SCOPE, Replica.name == "completing")

    def complete(s: Session) -> None:
        """What a worker's completion does, in its order: the request, the replica, the
        locks, the rule."""
        tr = TransferRequest
        s.execute(select(tr.id).where(tr.id == request_id).with_for_update()).all()
        s.execute(update(tr).where(tr.id == request_id).values(state="DONE"))
        s.execute(update(Replica).where(*where).values(state="AVAILABLE"))
        s.execute(update(Lock).where(Lock.rule_id == first_rule).values(state="OK"))
        rule_core.recount(s, {first_rule})

    def add_rule(s: Session) -> None:
        rule_svc.add_rules_in(s, root, {**body, "dids": [{"scope": SCOPE, "name": "holder"}]})

    errors = race(lake, complete, add_rule, "new rule")
    assert errors == []
    with lake.db.read() as s:
        assert violations(s) == []
        states = set(s.scalars(select(Lock.state).where(Lock.name == "completing")))
        assert states == {"OK"}  # the new rule's lock saw the finished copy
        active = (
            select(func.count())
            .select_from(TransferRequest)
            .where(TransferRequest.state.in_(ACTIVE))
        )
        assert s.scalar(active) == 0  # and queued no second copy of it
        assert s.scalar(select(Replica.lock_cnt).where(*where)) == 2
