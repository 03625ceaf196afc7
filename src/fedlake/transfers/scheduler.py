"""Claim runnable requests in batches: pick a source per request, honour every limit.

All workers' claims are serialized (an advisory lock on PostgreSQL, the write lock on
SQLite) and take rows with ``FOR UPDATE SKIP LOCKED``, so limits hold lake-wide and no
request is handed to two workers.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from fedlake.catalog import transfers as core
from fedlake.catalog.db import Database
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import RequestState
from fedlake.transfers.endpoints import Endpoints, Limits

__all__ = ["LEASES_LOST_LIMIT", "Scheduler"]

#: a request whose workers died this many times is failed (it may be what kills them)
LEASES_LOST_LIMIT = 30
#: extra pages of the queue one claim may read past requests blocked by full links (each
#: a bounded index range): a claim looks at most 3 x 500 requests beyond its own batch
MAX_PAGES = 3
PAGE = 500


@dataclass
class _Capacity:
    limits: Limits
    links: Counter[tuple[str, str]]
    inbound: Counter[str]
    outbound: Counter[str]
    total: int

    @classmethod
    def of(cls, limits: Limits, active: dict[tuple[str, str], int]) -> _Capacity:
        links: Counter[tuple[str, str]] = Counter(active)
        inbound: Counter[str] = Counter()
        outbound: Counter[str] = Counter()
        for (s, d), n in active.items():
            inbound[d] += n
            outbound[s] += n
        return cls(limits, links, inbound, outbound, sum(active.values()))

    def fits(self, source: str, dest: str) -> bool:
        lim = self.limits
        if lim.global_max is not None and self.total >= lim.global_max:
            return False
        link = lim.links.get((source, dest))
        if link is not None and self.links[(source, dest)] >= link:
            return False
        if dest in lim.inbound and self.inbound[dest] >= lim.inbound[dest]:
            return False
        return not (source in lim.outbound and self.outbound[source] >= lim.outbound[source])

    def take(self, source: str, dest: str) -> None:
        self.links[(source, dest)] += 1
        self.inbound[dest] += 1
        self.outbound[source] += 1
        self.total += 1

    def full(self) -> bool:
        lim = self.limits
        return lim.global_max is not None and self.total >= lim.global_max


class Scheduler:
    def __init__(
        self, db: Database, endpoints: Endpoints, owner: str, *, lease: float = 60.0
    ) -> None:
        self.db = db
        self.endpoints = endpoints
        self.owner = owner
        self.lease = lease
        self.blocked = 0  # requests left queued by limits in the last claim

    def claim(
        self, n: int, finished: Mapping[tuple[str, str], int] | None = None
    ) -> list[core.Claimed]:
        """Claim up to ``n`` runnable requests. ``finished``: per link, this worker's
        copies that are over but whose outcome is not committed yet; they still count as
        SUBMITTED in the catalogue but no longer run, so they do not use the link's limit.
        """
        if n <= 0:
            return []
        self.endpoints.refresh()
        with self.db.write() as s:
            core.serialize_claims(s)
            now = utcnow()
            active = core.active_counts(s, now)
            for link, done in (finished or {}).items():
                if link in active:
                    active[link] = max(0, active[link] - done)
            capacity = _Capacity.of(self.endpoints.limits(), active)
            if capacity.full():
                self.blocked = 1
                return []
            cands = self._candidates(s, n, now)
            chosen, no_sources, lost, blocked = self._choose(s, cands, capacity, n)
            # requests of full links at the head of the queue must not hide the others:
            # look again past them (a few pages at most per claim)
            pages = 0
            while blocked and len(chosen) < n and pages < MAX_PAGES:
                pages += 1
                queued = [c for c in cands if c.state == RequestState.QUEUED.value]
                if not queued:
                    break
                last = queued[-1]
                cands = core.candidates(s, now, PAGE, after=(last.priority, last.id))
                if not cands:
                    break
                more, no_more, lost_more, blocked = self._choose(
                    s, cands, capacity, n - len(chosen)
                )
                chosen += more
                no_sources += no_more
                lost += lost_more
            self.blocked = len(blocked)
            core.mark_submitted(s, self.owner, chosen, now, self.lease)
            core.mark_no_sources(s, no_sources, now)
            core.mark_no_sources(
                s,
                lost,
                now,
                state=RequestState.FAILED.value,
                reason=f"{LEASES_LOST_LIMIT} workers died or hung while running it",
            )
        return chosen

    def _candidates(self, s: Session, n: int, now: datetime) -> list[core.Claimed]:
        want = n * 2  # some may be blocked by limits
        out = core.expired(s, now, want)
        shares = core.shares(s)
        if not shares:
            return out + core.candidates(s, now, want - len(out))
        # activity shares: each activity with queued work gets slots by its weight
        acts = core.queued_activities(s, now)
        weights = {a: shares.get(a, shares.get("default", 1.0)) for a in acts}
        total = sum(weights.values()) or 1.0
        for a in sorted(acts, key=lambda a: -weights[a]):
            quota = max(1, round(want * weights[a] / total))
            out.extend(core.candidates(s, now, quota, activity=a))
        return out

    def _choose(
        self, s: Session, cands: Sequence[core.Claimed], capacity: _Capacity, n: int
    ) -> tuple[list[core.Claimed], list[core.Claimed], list[core.Claimed], list[core.Claimed]]:
        """(chosen, without sources, lost too often, blocked by a full limit)."""
        sources = core.sources_of(s, [(c.scope, c.name) for c in cands])
        chosen: list[core.Claimed] = []
        no_sources: list[core.Claimed] = []
        lost: list[core.Claimed] = []
        blocked: list[core.Claimed] = []
        ep = self.endpoints
        for c in cands:
            if len(chosen) >= n:
                break
            expired = c.state == RequestState.SUBMITTED.value
            if expired:
                # its worker died or hung: not the request's failure, unless it keeps happening
                c.leases_lost += 1
                if c.leases_lost > LEASES_LOST_LIMIT:
                    lost.append(c)
                    continue
            options = [
                (rse_id, path)
                for rse_id, path in sources.get((c.scope, c.name), [])
                if rse_id != c.dest_rse_id
                and rse_id not in c.excluded
                and ep.info(rse_id).availability_read
                and (
                    c.source_rse_expression is None
                    or ep.in_expression(rse_id, c.source_rse_expression)
                )
            ]
            if not options:
                no_sources.append(c)
                continue
            # disk before tape, nearest first, random among equals (spreads the load)
            options.sort(
                key=lambda o: (ep.is_tape(o[0]), ep.distance(o[0], c.dest_rse_id), random.random())
            )
            for rse_id, path in options:
                if capacity.fits(rse_id, c.dest_rse_id):
                    capacity.take(rse_id, c.dest_rse_id)
                    c.source_rse_id, c.source_path = rse_id, path
                    if not expired:
                        c.attempt += 1
                    chosen.append(c)
                    break
            else:
                blocked.append(c)
        return chosen, no_sources, lost, blocked
