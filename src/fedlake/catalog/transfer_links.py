"""Transfer links (limits and the optimizer's state), activity shares, RSE distances."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from fedlake.catalog.models import RSE, RSEDistance, TransferAttempt, TransferLink, TransferShare

__all__ = [
    "distances",
    "get_link",
    "link_window",
    "links",
    "rse_names",
    "set_distance",
    "set_link",
    "set_share",
    "shares",
]


def links(session: Session) -> list[TransferLink]:
    return list(session.scalars(select(TransferLink)))


def get_link(session: Session, source_rse_id: str, dest_rse_id: str) -> TransferLink | None:
    return session.get(TransferLink, (source_rse_id, dest_rse_id))


def set_link(
    session: Session,
    source_rse_id: str,
    dest_rse_id: str,
    *,
    max_active: int | None,
    optimizer: bool,
    initial: int | None = None,
) -> TransferLink:
    link = get_link(session, source_rse_id, dest_rse_id)
    if link is None:
        link = TransferLink(source_rse_id=source_rse_id, dest_rse_id=dest_rse_id)
        session.add(link)
    link.max_active = max_active
    link.optimizer = optimizer
    if initial is not None:
        link.optimal_active = initial
    elif not optimizer and max_active is not None:
        link.optimal_active = max_active
    elif link.optimal_active is None:
        link.optimal_active = 8
    session.flush()
    return link


def shares(session: Session) -> dict[str, float]:
    return {
        a: float(w)
        for a, w in session.execute(select(TransferShare.activity, TransferShare.weight))
    }


def set_share(session: Session, activity: str, weight: float | None) -> None:
    session.execute(delete(TransferShare).where(TransferShare.activity == activity))
    if weight is not None:
        session.add(TransferShare(activity=activity, weight=weight))


def distances(session: Session) -> dict[tuple[str, str], int]:
    return {
        (s, d): n
        for s, d, n in session.execute(
            select(RSEDistance.source_rse_id, RSEDistance.dest_rse_id, RSEDistance.distance)
        )
    }


def set_distance(
    session: Session, source_rse_id: str, dest_rse_id: str, distance: int | None
) -> None:
    session.execute(
        delete(RSEDistance).where(
            RSEDistance.source_rse_id == source_rse_id, RSEDistance.dest_rse_id == dest_rse_id
        )
    )
    if distance is not None:
        session.add(
            RSEDistance(source_rse_id=source_rse_id, dest_rse_id=dest_rse_id, distance=distance)
        )


def link_window(
    session: Session, since: datetime
) -> dict[tuple[str, str], tuple[int, int, int, float]]:
    """Per link since ``since``: (done, failed, bytes done, seconds spent)."""
    rows = session.execute(
        select(
            TransferAttempt.source_rse_id,
            TransferAttempt.dest_rse_id,
            TransferAttempt.state,
            func.count(),
            func.coalesce(func.sum(TransferAttempt.bytes), 0),
            func.coalesce(func.sum(TransferAttempt.seconds), 0.0),
        )
        .where(TransferAttempt.finished_at >= since, TransferAttempt.state != "WAITING")
        .group_by(TransferAttempt.source_rse_id, TransferAttempt.dest_rse_id, TransferAttempt.state)
    )
    out: dict[tuple[str, str], list[float]] = {}
    for s, d, st, n, b, secs in rows:
        acc = out.setdefault((s or "", d), [0, 0, 0, 0.0])
        if st == "DONE":
            acc[0] += n
            acc[2] += b
        else:
            acc[1] += n
        acc[3] += float(secs)
    return {k: (int(v[0]), int(v[1]), int(v[2]), float(v[3])) for k, v in out.items()}


def rse_names(session: Session) -> dict[str, str]:
    return {i: n for i, n in session.execute(select(RSE.id, RSE.rse))}
