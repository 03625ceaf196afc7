"""The identity audit log (``iam_audit``): who changed which group, membership, account,
request, client or token, and when.

Entries are appended in the caller's transaction, so a change and its audit entry are
committed together or not at all. Details are a small JSON object; they never hold a
secret or a token: ``record`` refuses keys that name one (``token``, ``password``,
``client_secret``, ``device_code``...) so a careless caller fails in its tests rather than leaking.
A revoked token is named by its ``jti``, which is not a secret.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedlake.catalog._util import dumps, loads
from fedlake.catalog.iam_models import AuditEntry
from fedlake.domain.errors import InvalidInput

__all__ = ["entries", "record"]

#: detail keys that would hold a secret: these names, or names ending with one of them
_SECRET_KEYS = ("token", "password", "secret", "code", "assertion")
_MAX_LIMIT = 10_000


def _check_details(details: dict[str, Any]) -> None:
    for key in details:
        lowered = str(key).lower()
        if any(lowered == w or lowered.endswith(("_" + w, "-" + w)) for w in _SECRET_KEYS):
            raise ValueError(
                f"audit details may not hold {key!r}: the audit log never keeps secrets or "
                "tokens (name a token by its jti)"
            )


def record(
    session: Session,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Append to iam_audit in the caller's transaction (never a secret or token in details)."""
    if details:
        _check_details(details)
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            target=target[:255],
            details=dumps(details) if details else None,
        )
    )
    session.flush()


def entries(
    session: Session,
    *,
    target: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Audit entries matching every filter given, newest first, at most ``limit``.

    ``target`` matches exactly, or as a prefix when it ends with ``*`` (``/escape*``).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer from 1 to {_MAX_LIMIT}")
    stmt = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if target is not None:
        if target.endswith("*"):
            stmt = stmt.where(AuditEntry.target.startswith(target[:-1], autoescape=True))
        else:
            stmt = stmt.where(AuditEntry.target == target)
    if actor is not None:
        stmt = stmt.where(AuditEntry.actor == actor)
    if action is not None:
        stmt = stmt.where(AuditEntry.action == action)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    return [
        {
            "id": r.id,
            "at": r.at,
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "details": loads(r.details),
        }
        for r in session.scalars(stmt)
    ]
