"""Per-link adaptive concurrency (as FTS's optimizer): more while it pays, less on failures.

Every round looks at the last window of attempts of each link, lake-wide (from the
catalogue, so every worker's transfers count):

- success rate below 97% (with enough samples): cut concurrency by 30%;
- the link was busy (running near its limit) and throughput rose: raise it by 50%;
- the link was busy and throughput fell by more than 10%: lower it by 10%;
- otherwise keep it.

A link with ``optimizer`` off keeps its fixed ``max_active``. One worker decides per round
(the others see a fresh decision and skip).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text

from fedlake.catalog import transfers as core
from fedlake.catalog.db import Database
from fedlake.catalog.models import TransferLink
from fedlake.domain.timefmt import utcnow

__all__ = ["Decision", "Optimizer", "decide"]

MIN_ACTIVE = 2
SUCCESS_GOAL = 0.97
MIN_SAMPLES = 5
START_ACTIVE = 16


@dataclass(frozen=True, slots=True)
class Decision:
    active: int
    reason: str


def decide(
    current: int,
    *,
    done: int,
    failed: int,
    throughput: float,
    previous_throughput: float,
    running: int,
    ceiling: int,
) -> Decision:
    """The next concurrency of a link (pure: the policy in one place, unit-tested)."""
    samples = done + failed
    rate = done / samples if samples else 1.0
    busy = running >= 0.8 * current
    if samples >= MIN_SAMPLES and rate < SUCCESS_GOAL:
        return Decision(
            min(current, max(MIN_ACTIVE, math.floor(current * 0.7))),
            f"success rate {rate:.1%} < {SUCCESS_GOAL:.0%}: lower",
        )
    if busy and throughput > previous_throughput * 1.02:
        up = min(ceiling, max(current + 1, math.ceil(current * 1.5)))
        return Decision(up, "busy and throughput rising: raise")
    if busy and previous_throughput and throughput < previous_throughput * 0.9:
        return Decision(
            max(MIN_ACTIVE, current - max(1, current // 10)), "throughput falling: lower"
        )
    return Decision(min(current, ceiling), "steady: keep")


class Optimizer:
    def __init__(self, db: Database, *, interval: float = 5.0, ceiling: int = 1000) -> None:
        self.db = db
        self.interval = interval
        self.ceiling = ceiling

    def run_once(self) -> int:
        now = utcnow()
        since = now - timedelta(seconds=self.interval)
        with self.db.write() as s:
            if s.get_bind().dialect.name == "postgresql" and not s.scalar(
                text("SELECT pg_try_advisory_xact_lock(7351002)")
            ):
                return 0
            links = {(lk.source_rse_id, lk.dest_rse_id): lk for lk in core.links(s)}
            fresh = since + timedelta(seconds=self.interval * 0.2)
            if any(lk.decided_at and lk.decided_at > fresh for lk in links.values()):
                return 0  # another worker decided this round
            window = core.link_window(s, since)
            running = core.active_counts(s, now)
            changed = 0
            for key in set(window) | set(links):
                source, dest = key
                if not source:
                    continue
                link = links.get(key)
                if link is None:
                    # a new link starts where it runs now (never below START_ACTIVE)
                    link = TransferLink(
                        source_rse_id=source,
                        dest_rse_id=dest,
                        optimizer=True,
                        optimal_active=min(self.ceiling, max(START_ACTIVE, running.get(key, 0))),
                        throughput=0.0,
                        files_per_second=0.0,
                        success_rate=1.0,
                    )
                    s.add(link)
                done, failed, nbytes, _secs = window.get(key, (0, 0, 0, 0.0))
                throughput = nbytes / self.interval
                ceiling = min(self.ceiling, link.max_active or self.ceiling)
                if link.optimizer:
                    d = decide(
                        link.optimal_active,
                        done=done,
                        failed=failed,
                        throughput=throughput,
                        previous_throughput=link.throughput,
                        running=running.get(key, 0),
                        ceiling=ceiling,
                    )
                    if d.active != link.optimal_active:
                        changed += 1
                    link.optimal_active, link.decision = d.active, d.reason
                else:
                    link.optimal_active = link.max_active or link.optimal_active
                    link.decision = "optimizer off: fixed limit"
                link.throughput = throughput
                link.files_per_second = done / self.interval
                link.success_rate = done / (done + failed) if done + failed else 1.0
                link.decided_at = now
            return changed
