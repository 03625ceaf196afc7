"""Daemon heartbeats: which instances of each daemon are alive, and their share of the work.

Every instance beats once per round (at most every few seconds). Instances whose last beat
is older than their time-to-live are dead: they drop out of the live list, and the others
take over their share at their next beat. A daemon that splits work by key range asks
:func:`beat` for its position among the live instances of its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from fedlake.catalog.models import DaemonHeartbeat
from fedlake.domain.timefmt import utcnow

__all__ = ["Partition", "beat", "forget", "live", "prune"]


@dataclass(frozen=True, slots=True)
class Partition:
    """This instance is number ``index`` (0-based) of ``count`` live instances."""

    index: int
    count: int

    def bounds(self, digits: int = 8) -> tuple[str | None, str | None]:
        """Lower (inclusive) and upper (exclusive) bound of this share of a hex key space
        (uuid4 hex ids): ``None`` means unbounded. One instance owns everything."""
        if self.count <= 1:
            return None, None
        space = 16**digits
        lo = None if self.index == 0 else format(self.index * space // self.count, f"0{digits}x")
        last = self.index == self.count - 1
        hi = None if last else format((self.index + 1) * space // self.count, f"0{digits}x")
        return lo, hi


def beat(
    session: Session,
    daemon: str,
    instance: str,
    *,
    hostname: str,
    pid: int,
    ttl: float,
    work_done: int = 0,
    error: str | None = None,
) -> Partition:
    """Record a round of ``instance`` and return its share among the live instances."""
    now = utcnow()
    row = session.get(DaemonHeartbeat, (daemon, instance))
    if row is None:
        session.add(
            DaemonHeartbeat(
                daemon=daemon,
                instance=instance,
                hostname=hostname[:255],
                pid=pid,
                started_at=now,
                beat_at=now,
                rounds=1,
                work_done=work_done,
                last_error=error,
            )
        )
        session.flush()
    else:
        session.execute(
            update(DaemonHeartbeat)
            .where(DaemonHeartbeat.daemon == daemon, DaemonHeartbeat.instance == instance)
            .values(
                beat_at=now,
                rounds=DaemonHeartbeat.rounds + 1,
                work_done=DaemonHeartbeat.work_done + work_done,
                last_error=error,
            )
        )
    names = live_instances(session, daemon, now - timedelta(seconds=ttl))
    if instance not in names:  # a clock step backwards; count ourselves anyway
        names = sorted([*names, instance])
    return Partition(names.index(instance), len(names))


def live_instances(session: Session, daemon: str, since: datetime) -> list[str]:
    return list(
        session.scalars(
            select(DaemonHeartbeat.instance)
            .where(DaemonHeartbeat.daemon == daemon, DaemonHeartbeat.beat_at >= since)
            .order_by(DaemonHeartbeat.instance)
        )
    )


def live(session: Session, ttl: float) -> list[DaemonHeartbeat]:
    """Every instance that beat within ``ttl`` seconds, by daemon then instance."""
    since = utcnow() - timedelta(seconds=ttl)
    return list(
        session.scalars(
            select(DaemonHeartbeat)
            .where(DaemonHeartbeat.beat_at >= since)
            .order_by(DaemonHeartbeat.daemon, DaemonHeartbeat.instance)
        )
    )


def forget(session: Session, daemon: str, instance: str) -> None:
    """A clean stop: the instance leaves at once instead of timing out."""
    session.execute(
        delete(DaemonHeartbeat).where(
            DaemonHeartbeat.daemon == daemon, DaemonHeartbeat.instance == instance
        )
    )


def prune(session: Session, older_than: float) -> int:
    """Remove rows of instances silent for ``older_than`` seconds (killed processes)."""
    cutoff = utcnow() - timedelta(seconds=older_than)
    result = session.execute(delete(DaemonHeartbeat).where(DaemonHeartbeat.beat_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
