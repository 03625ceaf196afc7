"""Looking at transfer requests, and what an operator does to them (cancel, retry)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal_column, select, update
from sqlalchemy.orm import Session

from fedlake.catalog import events
from fedlake.catalog import rules as rule_core
from fedlake.catalog.embargo import Hidden, hides_row
from fedlake.catalog.models import Lock, TransferAttempt, TransferRequest
from fedlake.catalog.rules import stick_locks
from fedlake.catalog.transfer_queue import NewRequest, queue_requests
from fedlake.catalog.transfers import ACTIVE
from fedlake.domain.errors import InvalidInput, RequestNotFound
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import LockState, RequestState

__all__ = [
    "active_counts",
    "attempts_of",
    "cancel",
    "get_request",
    "list_requests",
    "request_dict",
    "retry",
    "state_counts",
]

_DONE = RequestState.DONE.value


def request_dict(r: TransferRequest, rse_names: dict[str, str]) -> dict[str, Any]:
    return {
        "id": r.id,
        "scope": r.scope,
        "name": r.name,
        "dest_rse": rse_names.get(r.dest_rse_id, r.dest_rse_id),
        "source_rse": rse_names.get(r.source_rse_id or "", r.source_rse_id),
        "rule_id": r.rule_id,
        "account": r.account,
        "activity": r.activity,
        "priority": r.priority,
        "state": r.state,
        "bytes": r.bytes,
        "adler32": r.adler32,
        "md5": r.md5,
        "attempt": r.attempt,
        "max_attempts": r.max_attempts,
        "error": r.error,
        "not_before": r.not_before,
        "lease_owner": r.lease_owner,
        "lease_expires": r.lease_expires,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "submitted_at": r.submitted_at,
        "finished_at": r.finished_at,
    }


def get_request(session: Session, request_id: int) -> TransferRequest:
    r = session.get(TransferRequest, request_id)
    if r is None:
        raise RequestNotFound(f"transfer request {request_id} does not exist")
    return r


def attempts_of(session: Session, request_id: int) -> list[TransferAttempt]:
    return list(
        session.scalars(
            select(TransferAttempt)
            .where(TransferAttempt.request_id == request_id)
            .order_by(TransferAttempt.id)
        )
    )


def list_requests(
    session: Session,
    *,
    states: Sequence[str] = (),
    scope: str | None = None,
    name: str | None = None,
    dest_rse_id: str | None = None,
    rule_id: str | None = None,
    limit: int = 1000,
) -> list[TransferRequest]:
    q = select(TransferRequest)
    if states:
        q = q.where(TransferRequest.state.in_(list(states)))
    if scope is not None:
        q = q.where(TransferRequest.scope == scope)
    if name is not None:
        q = q.where(TransferRequest.name == name)
    if dest_rse_id is not None:
        q = q.where(TransferRequest.dest_rse_id == dest_rse_id)
    if rule_id is not None:
        q = q.where(TransferRequest.rule_id == rule_id)
    return list(session.scalars(q.order_by(TransferRequest.id.desc()).limit(limit)))


def _visible(hidden: Hidden) -> ColumnElement[bool]:
    """Requests neither of a hidden DID nor of a rule on one (as ``GET /transfers``)."""
    r = TransferRequest
    return ~hides_row(hidden, r.scope, r.name, r.rule_id)


def state_counts(session: Session, hidden: Hidden | None = None) -> dict[str, int]:
    """Requests per state; without those ``hidden`` leaves out (docs/embargo.md)."""
    q = select(TransferRequest.state, func.count()).group_by(TransferRequest.state)
    if hidden is not None:
        q = q.where(_visible(hidden))
    return {st: int(n) for st, n in session.execute(q)}


def active_counts(session: Session, now: datetime, hidden: Hidden) -> dict[tuple[str, str], int]:
    """``catalog.transfers.active_counts`` (requests running now per link) without the
    requests ``hidden`` leaves out. The state is a literal, as there: the partial index on
    SUBMITTED rows serves it."""
    r = TransferRequest
    submitted = r.state == literal_column("'SUBMITTED'")
    rows = session.execute(
        select(r.source_rse_id, r.dest_rse_id, func.count())
        .where(submitted, r.lease_expires >= now, _visible(hidden))
        .group_by(r.source_rse_id, r.dest_rse_id)
    )
    return {(s or "", d): n for s, d, n in rows}


def cancel(session: Session, request_id: int) -> None:
    r = get_request(session, request_id)
    if r.state not in ACTIVE:
        raise InvalidInput(f"transfer request {request_id} is {r.state}; only active ones cancel")
    now = utcnow()
    r.state = RequestState.CANCELLED.value
    r.lease_owner = None
    r.lease_expires = None
    r.finished_at = now
    r.updated_at = now
    r.error = "cancelled by an operator"
    stick_locks(session, [(r.dest_rse_id, r.scope, r.name)])
    events.emit(session, "transfer-failed", {"request_id": r.id, "reason": "cancelled"})


def retry(session: Session, request_id: int) -> int:
    """Queue a finished (failed, cancelled, no-sources) request again as a new request."""
    r = get_request(session, request_id)
    if r.state in ACTIVE or r.state == _DONE:
        raise InvalidInput(
            f"transfer request {request_id} is {r.state}; only failed or cancelled ones retry"
        )
    locks = and_(Lock.rse_id == r.dest_rse_id, Lock.scope == r.scope, Lock.name == r.name)
    rule_ids = set(
        session.scalars(select(Lock.rule_id).where(locks, Lock.state == LockState.STUCK.value))
    )
    session.execute(
        update(Lock)
        .where(locks, Lock.state == LockState.STUCK.value)
        .values(state=LockState.REPLICATING.value, updated_at=utcnow())
    )
    rule_core.recount(session, rule_ids)
    [new_id] = queue_requests(
        session,
        [
            NewRequest(
                r.scope,
                r.name,
                r.dest_rse_id,
                r.account,
                r.activity,
                r.priority,
                r.rule_id,
                r.source_rse_expression,
                r.verify_source,
                r.max_attempts,
            )
        ],
    )
    return new_id
