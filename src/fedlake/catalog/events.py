"""The event outbox: every state change writes a row in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from fedlake.catalog._util import dumps, insert_rows
from fedlake.catalog.models import Event
from fedlake.domain.timefmt import utcnow

__all__ = ["emit", "emit_many"]


def emit(session: Session, event_type: str, payload: dict[str, Any]) -> None:
    session.execute(
        insert(Event),
        [{"event_type": event_type, "payload": dumps(payload), "created_at": utcnow()}],
    )


def emit_many(session: Session, event_type: str, payloads: list[dict[str, Any]]) -> None:
    if payloads:
        now = utcnow()
        insert_rows(
            session,
            Event,
            [{"event_type": event_type, "payload": dumps(p), "created_at": now} for p in payloads],
        )
