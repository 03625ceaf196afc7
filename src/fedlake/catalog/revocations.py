"""Token revocation: single access tokens (by ``jti``) and every token of an account.

A revoked access token keeps a row in ``oauth_revoked_tokens`` until it would have
expired anyway; revoking an account writes ``oauth_revoked_accounts.before`` (every token
of the account issued before that instant is refused) and marks its live refresh tokens
``revoked_at``. All datetimes are naive UTC, as everywhere in the catalogue.

Token ``iat`` claims have whole-second precision while ``before`` does not: a token
issued in the same second as, but after, an account revocation is refused too (the safe
side).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from fedlake.catalog.iam_models import (
    AuthorizationCode,
    DeviceCode,
    RefreshToken,
    RevokedSubject,
    RevokedToken,
)
from fedlake.domain.timefmt import utcnow

__all__ = ["is_revoked", "purge_expired", "revoke_account_tokens", "revoke_token"]


def revoke_token(session: Session, jti: str, expires_at: datetime, by: str | None) -> None:
    """Refuse the token ``jti`` from now on (kept until ``expires_at``). Revoking a
    refresh token's jti also marks its ``oauth_refresh_tokens`` row. Idempotent."""
    if not jti:
        raise ValueError("a token without jti cannot be revoked")
    now = utcnow()
    if session.get(RevokedToken, jti) is None:
        session.add(RevokedToken(jti=jti, expires_at=expires_at, revoked_by=by, revoked_at=now))
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.jti == jti, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.flush()


def revoke_account_tokens(session: Session, account: str, by: str | None) -> None:
    """Every token of the account issued until now is revoked (access tokens via
    oauth_revoked_accounts.before = now; its refresh tokens get revoked_at)."""
    now = utcnow()
    row = session.get(RevokedSubject, account)
    if row is None:
        session.add(RevokedSubject(account=account, before=now, revoked_by=by))
    else:
        row.before = max(row.before, now)
        row.revoked_by = by
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.account == account, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.flush()


def is_revoked(session: Session, jti: str, account: str, issued_at: datetime) -> bool:
    """True when the token ``jti`` was revoked, or every token of ``account`` issued at
    or before its revocation instant was (``issued_at`` < ``before``)."""
    if jti and session.scalar(select(RevokedToken.jti).where(RevokedToken.jti == jti)):
        return True
    before = session.scalar(select(RevokedSubject.before).where(RevokedSubject.account == account))
    return before is not None and issued_at < before


def purge_expired(
    session: Session, now: datetime, *, accounts_before: datetime | None = None
) -> int:
    """Delete revocations of tokens that have expired anyway, expired refresh tokens,
    device codes and authorization codes; with ``accounts_before``, also account
    revocations older than it (the caller passes now - the longest token lifetime).
    Return the number of rows deleted."""
    count = 0
    for stmt in (
        delete(RevokedToken).where(RevokedToken.expires_at < now),
        delete(RefreshToken).where(RefreshToken.expires_at < now),
        delete(DeviceCode).where(DeviceCode.expires_at < now),
        delete(AuthorizationCode).where(AuthorizationCode.expires_at < now),
    ):
        count += session.execute(stmt).rowcount or 0  # type: ignore[attr-defined]
    if accounts_before is not None:
        stmt = delete(RevokedSubject).where(RevokedSubject.before < accounts_before)
        count += session.execute(stmt).rowcount or 0  # type: ignore[attr-defined]
    return count
