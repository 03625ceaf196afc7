"""Optimizer rounds over the catalogue (SQLite and PostgreSQL): attempts in the window
decide a link's concurrency; the scheduler then claims within the limits in force."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text, update

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import rses as rse_core
from fedlake.catalog import transfers as core
from fedlake.catalog._util import insert_rows
from fedlake.catalog.models import TransferAttempt, TransferLink, TransferRequest
from fedlake.domain.timefmt import utcnow
from fedlake.services import transfers as svc
from fedlake.transfers.endpoints import Endpoints
from fedlake.transfers.optimizer import START_ACTIVE, Optimizer
from fedlake.transfers.scheduler import Scheduler
from tests.integration.transfers.conftest import SCOPE

INTERVAL = 5.0
SIZE = 1000


def _rse_ids(lake: Lake) -> dict[str, str]:
    with lake.db.read() as s:
        return {n: rse_core.get_rse(s, n).id for n in ("LOCAL-DISK", "LOCAL-SAFE", "LOCAL-BUFFER")}


@pytest.fixture
def ids(lake: Lake) -> dict[str, str]:
    return _rse_ids(lake)


@pytest.fixture
def request_id(lake: Lake, root: Caller, put: Callable[..., Any]) -> int:
    """A queued request (attempt rows need one to point at)."""
    name, _ = put("opt-anchor")
    [rid] = svc.submit(lake, root, {"dids": [{"scope": SCOPE, "name": name}], "rse": "LOCAL-SAFE"})
    return rid


def _attempts(
    lake: Lake,
    request_id: int,
    source: str | None,
    dest: str,
    states: list[str],
    *,
    age: float = 1.0,
) -> None:
    """Attempt rows on a link that finished ``age`` seconds ago."""
    finished = utcnow() - timedelta(seconds=age)
    rows = [
        {
            "request_id": request_id,
            "attempt": i + 1,
            "source_rse_id": source,
            "dest_rse_id": dest,
            "worker": "elsewhere",
            "state": st,
            "error": None if st == "DONE" else "boom",
            "recoverable": None if st == "DONE" else True,
            "bytes": SIZE if st == "DONE" else 0,
            "seconds": 0.5,
            "tpc": False,
            "started_at": finished - timedelta(seconds=0.5),
            "finished_at": finished,
        }
        for i, st in enumerate(states)
    ]
    with lake.db.write() as s:
        insert_rows(s, TransferAttempt, rows)


def _link(lake: Lake, source: str, dest: str) -> TransferLink | None:
    with lake.db.read() as s:
        link = core.get_link(s, source, dest)
        if link is not None:
            s.expunge(link)
        return link


def _new_round(lake: Lake) -> None:
    """Pretend the last decision is a round old (instead of sleeping an interval)."""
    with lake.db.write() as s:
        s.execute(update(TransferLink).values(decided_at=utcnow() - timedelta(seconds=INTERVAL)))


def _running(lake: Lake, source: str, dest: str, n: int, root: Caller, put: Any) -> None:
    """``n`` requests running on a link, held by another (live) worker."""
    names = [put(f"run-{dest[:4]}-{i}")[0] for i in range(n)]
    rids = svc.submit(
        lake,
        root,
        {"dids": [{"scope": SCOPE, "name": x} for x in names], "rse": "LOCAL-SAFE"},
    )
    with lake.db.write() as s:
        s.execute(
            update(TransferRequest)
            .where(TransferRequest.id.in_(rids))
            .values(
                state="SUBMITTED",
                source_rse_id=source,
                lease_owner="another-worker",
                lease_expires=utcnow() + timedelta(minutes=10),
            )
        )


def test_a_low_success_rate_lowers_the_link(
    lake: Lake, root: Caller, ids: dict[str, str], request_id: int
) -> None:
    disk, safe = ids["LOCAL-DISK"], ids["LOCAL-SAFE"]
    svc.set_link(lake, root, "LOCAL-DISK", "LOCAL-SAFE", {"optimizer": True, "initial": 20})
    _attempts(lake, request_id, disk, safe, ["DONE"] * 8 + ["FAILED"] * 2)
    assert Optimizer(lake.db, interval=INTERVAL).run_once() == 1
    link = _link(lake, disk, safe)
    assert link is not None
    assert link.optimal_active == 14  # 20 * 0.7
    assert link.decision == "success rate 80.0% < 97%: lower"
    assert link.success_rate == pytest.approx(0.8)
    assert link.throughput == pytest.approx(8 * SIZE / INTERVAL)
    assert link.files_per_second == pytest.approx(8 / INTERVAL)
    assert link.decided_at is not None
    # the limit in force for the scheduler
    assert Endpoints(lake.db, ttl=0).limits().links[(disk, safe)] == 14


def test_a_link_with_the_optimizer_off_keeps_its_max_active(
    lake: Lake, root: Caller, ids: dict[str, str], request_id: int
) -> None:
    disk, safe = ids["LOCAL-DISK"], ids["LOCAL-SAFE"]
    svc.set_link(lake, root, "LOCAL-DISK", "LOCAL-SAFE", {"optimizer": False, "max_active": 7})
    _attempts(lake, request_id, disk, safe, ["FAILED"] * 10)
    assert Optimizer(lake.db, interval=INTERVAL).run_once() == 0
    link = _link(lake, disk, safe)
    assert link is not None
    assert (link.optimal_active, link.max_active) == (7, 7)
    assert link.decision == "optimizer off: fixed limit"
    assert link.success_rate == 0.0  # still measured
    assert Endpoints(lake.db, ttl=0).limits().links[(disk, safe)] == 7


def test_only_attempts_in_the_window_count(
    lake: Lake, root: Caller, ids: dict[str, str], request_id: int
) -> None:
    disk, safe = ids["LOCAL-DISK"], ids["LOCAL-SAFE"]
    svc.set_link(lake, root, "LOCAL-DISK", "LOCAL-SAFE", {"optimizer": True, "initial": 20})
    _attempts(lake, request_id, disk, safe, ["FAILED"] * 50, age=3 * INTERVAL)  # too old
    _attempts(lake, request_id, disk, safe, ["WAITING"] * 50)  # staging polls: not failures
    _attempts(lake, request_id, disk, safe, ["DONE"] * 2)
    Optimizer(lake.db, interval=INTERVAL).run_once()
    link = _link(lake, disk, safe)
    assert link is not None
    assert (link.optimal_active, link.decision) == (20, "steady: keep")
    assert link.success_rate == 1.0


def test_a_link_seen_for_the_first_time_gets_a_row(
    lake: Lake, ids: dict[str, str], request_id: int
) -> None:
    disk, buf = ids["LOCAL-DISK"], ids["LOCAL-BUFFER"]
    _attempts(lake, request_id, disk, buf, ["DONE"] * 5)
    _attempts(lake, request_id, None, buf, ["FAILED"] * 5)  # no source: not a link
    assert _link(lake, disk, buf) is None
    Optimizer(lake.db, interval=INTERVAL).run_once()
    link = _link(lake, disk, buf)
    assert link is not None
    assert link.optimizer is True and link.max_active is None
    assert link.optimal_active == START_ACTIVE
    assert link.success_rate == 1.0
    assert link.throughput == pytest.approx(5 * SIZE / INTERVAL)
    with lake.db.read() as s:
        assert [(lk.source_rse_id, lk.dest_rse_id) for lk in core.links(s)] == [(disk, buf)]


def test_one_decision_per_round(
    lake: Lake, root: Caller, ids: dict[str, str], request_id: int
) -> None:
    """A second worker's round right after the first sees a fresh decision and skips."""
    disk, safe = ids["LOCAL-DISK"], ids["LOCAL-SAFE"]
    svc.set_link(lake, root, "LOCAL-DISK", "LOCAL-SAFE", {"optimizer": True, "initial": 20})
    _attempts(lake, request_id, disk, safe, ["FAILED"] * 10)
    opt = Optimizer(lake.db, interval=INTERVAL)
    assert opt.run_once() == 1
    assert Optimizer(lake.db, interval=INTERVAL).run_once() == 0
    link = _link(lake, disk, safe)
    assert link is not None and link.optimal_active == 14
    _new_round(lake)
    assert opt.run_once() == 1  # the failures are still in the window
    link = _link(lake, disk, safe)
    assert link is not None and link.optimal_active == 9  # floor(14 * 0.7)


def test_a_busy_link_with_rising_throughput_goes_up_to_its_max_active(
    lake: Lake, root: Caller, put: Callable[..., Any], ids: dict[str, str], request_id: int
) -> None:
    disk, safe = ids["LOCAL-DISK"], ids["LOCAL-SAFE"]
    svc.set_link(
        lake, root, "LOCAL-DISK", "LOCAL-SAFE", {"optimizer": True, "initial": 10, "max_active": 12}
    )
    _running(lake, disk, safe, 10, root, put)  # busy: >= 80% of 10, and then of 12
    _attempts(lake, request_id, disk, safe, ["DONE"] * 5)
    opt = Optimizer(lake.db, interval=INTERVAL)
    assert opt.run_once() == 1
    link = _link(lake, disk, safe)
    assert link is not None
    assert (link.optimal_active, link.decision) == (12, "busy and throughput rising: raise")
    # next round: fewer bytes than before while still busy -> down by 10%
    _new_round(lake)
    with lake.db.write() as s:
        s.execute(update(TransferLink).values(throughput=1e9))
    opt.run_once()
    link = _link(lake, disk, safe)
    assert link is not None
    assert (link.optimal_active, link.decision) == (11, "throughput falling: lower")


def test_an_idle_link_keeps_its_concurrency(
    lake: Lake, root: Caller, ids: dict[str, str], request_id: int
) -> None:
    disk, safe = ids["LOCAL-DISK"], ids["LOCAL-SAFE"]
    svc.set_link(lake, root, "LOCAL-DISK", "LOCAL-SAFE", {"optimizer": True, "initial": 10})
    _attempts(lake, request_id, disk, safe, ["DONE"] * 20)  # fast, but nothing is queued
    Optimizer(lake.db, interval=INTERVAL).run_once()
    link = _link(lake, disk, safe)
    assert link is not None
    assert (link.optimal_active, link.decision) == (10, "steady: keep")


# --- the scheduler under the limits the optimizer sets --------------------------------


def test_claims_never_exceed_the_optimizer_limit(
    lake: Lake, root: Caller, put: Callable[..., Any], ids: dict[str, str], request_id: int
) -> None:
    disk, safe = ids["LOCAL-DISK"], ids["LOCAL-SAFE"]
    svc.set_link(lake, root, "LOCAL-DISK", "LOCAL-SAFE", {"optimizer": True, "initial": 5})
    _attempts(lake, request_id, disk, safe, ["FAILED"] * 10)
    Optimizer(lake.db, interval=INTERVAL).run_once()  # 5 -> 3
    names = [put(f"lim-{i}")[0] for i in range(10)]
    svc.submit(
        lake, root, {"dids": [{"scope": SCOPE, "name": n} for n in names], "rse": "LOCAL-SAFE"}
    )
    sched = Scheduler(lake.db, Endpoints(lake.db, ttl=0), "w1")
    try:
        assert len(sched.claim(50)) == 3
        assert sched.claim(50) == []
        assert sched.blocked > 0
    finally:
        with lake.db.write() as s:
            core.release(s, "w1")


def test_a_full_link_does_not_starve_other_links(
    lake: Lake, root: Caller, put: Callable[..., Any]
) -> None:
    names = [put(f"hol-{i}")[0] for i in range(30)]
    other, _ = put("hol-other")
    svc.set_link(lake, root, "LOCAL-DISK", "LOCAL-SAFE", {"optimizer": False, "max_active": 1})
    svc.submit(
        lake, root, {"dids": [{"scope": SCOPE, "name": n} for n in names], "rse": "LOCAL-SAFE"}
    )
    [other_id] = svc.submit(
        lake, root, {"dids": [{"scope": SCOPE, "name": other}], "rse": "LOCAL-BUFFER"}
    )
    sched = Scheduler(lake.db, Endpoints(lake.db, ttl=0), "w1")
    try:
        claimed = [c.id for _ in range(3) for c in sched.claim(4)]
        assert len(claimed) == 1 + 1  # one on the full link, the other link's request
        assert other_id in claimed
    finally:
        with lake.db.write() as s:
            core.release(s, "w1")


def _plans_of_claim(lake: Lake) -> dict[str, str]:
    """SQLite's plan for every SELECT on replicas or transfer_requests one claim runs."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cur: Any, stmt: str, params: Any, _ctx: Any, many: bool) -> None:
        if not many and ("FROM replicas" in stmt or "FROM transfer_requests" in stmt):
            seen.append((stmt, params))

    engines = {lake.db.engine, getattr(lake.db, "read_engine", lake.db.engine)}
    for eng in engines:
        event.listen(eng, "before_cursor_execute", record)
    try:
        Scheduler(lake.db, Endpoints(lake.db, ttl=0), "w1").claim(4)
    finally:
        for eng in engines:
            event.remove(eng, "before_cursor_execute", record)
        with lake.db.write() as s:
            core.release(s, "w1")
    assert seen, "the claim read nothing"
    plans = {}
    with lake.db.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE sqlite_schema")  # (re)load whatever statistics exist
        for stmt, params in seen:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {stmt}", params).all()
            plans[stmt[:200]] = " | ".join(str(r[-1]) for r in rows)
    return plans


def _full_reads(plans: dict[str, str]) -> list[str]:
    """Plans that read a whole table: a SCAN, or every AVAILABLE replica via the state index.

    A SCAN of the partial index on SUBMITTED rows reads only the running requests: fine.
    """
    return [
        f"{stmt} -> {plan}"
        for stmt, plan in plans.items()
        if (
            "SCAN transfer_requests" in plan
            and "USING INDEX transfer_requests_submitted_idx" not in plan
        )
        or "SCAN replicas" in plan
        or "replicas_state_idx" in plan
    ]


def _claimable(lake: Lake, root: Caller, put: Callable[..., Any], database_url: str) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("a check of SQLite's query plans (PostgreSQL plans from its statistics)")
    names = [put(f"plan-{i}")[0] for i in range(6)]  # > 4: the JSON pairs lookup
    dids = [{"scope": SCOPE, "name": n} for n in names]
    svc.submit(lake, root, {"dids": dids, "rse": "LOCAL-SAFE"})


def test_a_claim_reads_no_table_in_full(
    lake: Lake, root: Caller, put: Callable[..., Any], database_url: str
) -> None:
    _claimable(lake, root, put, database_url)
    assert _full_reads(_plans_of_claim(lake)) == []


#: what ANALYZE records for a lake with 1M replicas and 1M queued requests (one RSE, one
#: state: sqlite_stat1 keeps only average rows per key, so a rare SUBMITTED looks common)
_STATS_1M = [
    ("replicas", "replicas_tombstone_idx", "1000000 1000000 1000000"),
    ("replicas", "replicas_state_idx", "1000000 1000000 20000"),
    ("replicas", "replicas_did_idx", "1000000 1000000 1"),
    ("replicas", "sqlite_autoindex_replicas_1", "1000000 1000000 1000000 1"),
    ("transfer_requests", "transfer_requests_rule_idx", "1000000 1000000"),
    ("transfer_requests", "transfer_requests_queue_idx", "1000000 500000 500000 1"),
    ("transfer_requests", "transfer_requests_lease_idx", "1000000 500000"),
    ("transfer_requests", "transfer_requests_did_idx", "1000000 1000000 1"),
    ("transfer_requests", "transfer_requests_active_uq", "1000000 1000000 1 1"),
]


def test_a_claim_reads_no_table_in_full_with_statistics(
    lake: Lake, root: Caller, put: Callable[..., Any], database_url: str
) -> None:
    _claimable(lake, root, put, database_url)
    with lake.db.write() as s:
        s.execute(text("ANALYZE"))  # creates sqlite_stat1
        s.execute(text("DELETE FROM sqlite_stat1"))
        for tbl, idx, stat in _STATS_1M:
            s.execute(
                text("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (:t, :i, :s)"),
                {"t": tbl, "i": idx, "s": stat},
            )
    assert _full_reads(_plans_of_claim(lake)) == []
