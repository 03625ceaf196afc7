"""Two instances of a rule daemon at once (as on one PostgreSQL catalogue with several
hosts): every rule is repaired or expired once, no copy gets two transfer requests, and
the invariants hold (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog.models import Lock, Rule, TransferRequest
from fedlake.catalog.rule_repair import RepairPolicy
from fedlake.catalog.transfers import ACTIVE
from fedlake.domain.timefmt import utcnow
from fedlake.services.rule_lifecycle import expire_round, repair_round
from fedlake.transfers.worker import TransferWorker
from tests.integration.rules.invariants import violations
from tests.integration.rules.test_rule_repair import add_rule, wait_state

#: a rule due once: the next round would be a minute later
ONCE = RepairPolicy(base_delay=60.0, max_delay=60.0, move_after=5, suspend_after=10)


def together(n: int, work: Callable[[], int]) -> list[int]:
    """Run ``work`` in ``n`` threads released at the same moment; their results (an
    exception in any thread fails the caller)."""
    start = threading.Barrier(n)
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            results.append(work())
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def test_two_repairers_repair_each_stuck_rule_once(
    lake: Lake,
    root: Caller,
    put: Callable[..., Any],
    worker: TransferWorker,
    broken_rse: Callable[..., Path],
) -> None:
    broken_rse("FLAKY")
    ids = [
        add_rule(lake, root, [put(f"two-{i}-{j}")[0] for j in range(2)], "FLAKY") for i in range(8)
    ]
    for rule_id in ids:
        assert wait_state(lake, rule_id, {"STUCK"}) == "STUCK"
    worker.stop(timeout=5)  # the re-queued copies stay queued: their requests can be counted
    assert sum(together(2, lambda: repair_round(lake, ONCE))) == len(ids)
    with lake.db.read() as s:
        twice = s.execute(
            select(TransferRequest.dest_rse_id, TransferRequest.scope, TransferRequest.name)
            .where(TransferRequest.state.in_(ACTIVE))
            .group_by(TransferRequest.dest_rse_id, TransferRequest.scope, TransferRequest.name)
            .having(func.count() > 1)
        ).all()
        assert twice == []
        active = s.scalar(
            select(func.count())
            .select_from(TransferRequest)
            .where(TransferRequest.state.in_(ACTIVE))
        )
        assert active == 2 * len(ids)  # every stuck copy queued again, once
        assert violations(s) == []
        states = set(s.scalars(select(Lock.state).where(Lock.rule_id.in_(ids))))
        assert states == {"REPLICATING"}
    assert repair_round(lake, ONCE) == 0  # nothing was left for a third round


def test_two_expirers_remove_each_expired_rule_once(
    lake: Lake, root: Caller, put: Callable[..., Any], worker: TransferWorker
) -> None:
    names = [put(f"exp2-{i}")[0] for i in range(2)]
    expressions = ["LOCAL-SAFE", "LOCAL-BUFFER", "LOCAL-SAFE|LOCAL-BUFFER"]
    ids = [
        add_rule(lake, root, names, expr, lifetime=3600) for expr in expressions for _ in range(3)
    ]
    for rule_id in ids:
        wait_state(lake, rule_id, {"OK"})
    with lake.db.write() as s:
        s.execute(update(Rule).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert sum(together(2, lambda: expire_round(lake))) == len(ids)
    with lake.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Rule)) == 0
        assert s.scalar(select(func.count()).select_from(Lock)) == 0
        assert violations(s) == []
