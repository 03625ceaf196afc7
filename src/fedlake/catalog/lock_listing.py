"""Listings of locks with their RSE names (what ``GET /rules/{id}/locks`` and
``GET /locks/{scope}/{name}`` answer)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from fedlake.catalog.models import RSE, DIDContent, Lock
from fedlake.catalog.rules import get_rule

__all__ = ["locks_of_dataset", "locks_of_rule"]


def locks_of_dataset(session: Session, scope: str, name: str) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Lock, RSE.rse)
        .join(
            DIDContent,
            and_(DIDContent.child_scope == Lock.scope, DIDContent.child_name == Lock.name),
        )
        .join(RSE, RSE.id == Lock.rse_id)
        .where(DIDContent.scope == scope, DIDContent.name == name)
    )
    return _lock_dicts(rows)


def locks_of_rule(session: Session, rule_id: str) -> list[dict[str, Any]]:
    """The locks of one rule (whatever the type of its DID), with their RSE names."""
    get_rule(session, rule_id)
    rows = session.execute(
        select(Lock, RSE.rse)
        .join(RSE, RSE.id == Lock.rse_id)
        .where(Lock.rule_id == rule_id)
        .order_by(Lock.scope, Lock.name, RSE.rse)
    )
    return _lock_dicts(rows)


def _lock_dicts(rows: Any) -> list[dict[str, Any]]:
    return [
        {
            "rule_id": lk.rule_id,
            "scope": lk.scope,
            "name": lk.name,
            "rse_id": lk.rse_id,
            "rse": rse,
            "state": lk.state,
            "account": lk.account,
        }
        for lk, rse in rows
    ]
