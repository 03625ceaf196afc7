"""State of the OAuth flows: device codes (RFC 8628), authorization codes (RFC 6749
4.1 + PKCE) and refresh tokens (with rotation).

Codes are stored by the SHA-256 of their value (``code_hash``), never in clear; the
service layer hashes them (``code_hash`` below) and compares in constant time where a
comparison is not an indexed lookup.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fedlake.catalog.iam_models import AuthorizationCode, DeviceCode, RefreshToken

__all__ = [
    "add_authorization_code",
    "add_device_code",
    "add_refresh_token",
    "code_hash",
    "device_by_user_code",
    "get_device_code",
    "get_refresh_token",
    "peek_authorization_code",
    "revoke_refresh_chain",
    "take_authorization_code",
]


def code_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- device codes -----------------------------------------------------------------------


def add_device_code(
    session: Session,
    device_code: str,
    user_code: str,
    client_id: str,
    scope: str,
    interval: int,
    expires_at: datetime,
) -> DeviceCode:
    row = DeviceCode(
        code_hash=code_hash(device_code),
        user_code=user_code,
        client_id=client_id,
        scope=scope,
        interval=interval,
        expires_at=expires_at,
        state="PENDING",
    )
    session.add(row)
    session.flush()
    return row


def get_device_code(session: Session, device_code: str, *, lock: bool = False) -> DeviceCode | None:
    stmt = select(DeviceCode).where(DeviceCode.code_hash == code_hash(device_code))
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def device_by_user_code(session: Session, user_code: str) -> DeviceCode | None:
    stmt = select(DeviceCode).where(DeviceCode.user_code == user_code).with_for_update()
    return session.scalars(stmt).first()


# --- authorization codes ----------------------------------------------------------------


def add_authorization_code(
    session: Session,
    code: str,
    *,
    client_id: str,
    account: str,
    redirect_uri: str,
    scope: str,
    code_challenge: str,
    nonce: str | None,
    expires_at: datetime,
) -> None:
    session.add(
        AuthorizationCode(
            code_hash=code_hash(code),
            client_id=client_id,
            account=account,
            redirect_uri=redirect_uri,
            scope=scope,
            code_challenge=code_challenge,
            code_challenge_method="S256",
            nonce=nonce,
            expires_at=expires_at,
        )
    )
    session.flush()


def peek_authorization_code(session: Session, code: str) -> tuple[AuthorizationCode | None, bool]:
    """(the code's row, whether it was used) without changing it."""
    stmt = select(AuthorizationCode).where(AuthorizationCode.code_hash == code_hash(code))
    row = session.scalars(stmt).first()
    return row, bool(row is not None and row.used)


def take_authorization_code(session: Session, code: str) -> tuple[AuthorizationCode | None, bool]:
    """(the code's row, whether it had been used before); marks it used."""
    stmt = (
        select(AuthorizationCode)
        .where(AuthorizationCode.code_hash == code_hash(code))
        .with_for_update()
    )
    row = session.scalars(stmt).first()
    if row is None:
        return None, False
    was_used = row.used
    row.used = True
    session.flush()
    return row, was_used


# --- refresh tokens ---------------------------------------------------------------------


def add_refresh_token(
    session: Session,
    jti: str,
    *,
    account: str,
    subject: str,
    client_id: str | None,
    scope: str,
    expires_at: datetime,
) -> None:
    session.add(
        RefreshToken(
            jti=jti,
            account=account,
            subject=subject,
            client_id=client_id,
            scope=scope,
            expires_at=expires_at,
        )
    )
    session.flush()


def get_refresh_token(session: Session, jti: str, *, lock: bool = False) -> RefreshToken | None:
    stmt = select(RefreshToken).where(RefreshToken.jti == jti)
    if lock:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def revoke_refresh_chain(session: Session, jti: str, now: datetime) -> int:
    """Revoke ``jti`` and every refresh token that replaced it, one after another (a
    replaced token was used again: the chain may be stolen). Return how many."""
    count = 0
    seen: set[str] = set()
    current: str | None = jti
    while current and current not in seen:
        seen.add(current)
        row = get_refresh_token(session, current)
        if row is None:
            break
        if row.revoked_at is None:
            row.revoked_at = now
            count += 1
        current = row.replaced_by
    session.execute(
        update(RefreshToken)
        .where(RefreshToken.jti.in_(seen), RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.flush()
    return count
