"""Revocation records (fedlake.catalog.revocations) on both databases."""

from __future__ import annotations

from datetime import timedelta

from fedlake.bootstrap import Lake
from fedlake.catalog import revocations as rev
from fedlake.catalog.iam_models import RefreshToken, RevokedToken
from fedlake.domain.timefmt import utcnow


def test_a_revoked_jti_is_refused_and_purged_after_expiry(lake: Lake) -> None:
    now = utcnow()
    with lake.db.write() as s:
        rev.revoke_token(s, "j1", now + timedelta(hours=1), "root")
        rev.revoke_token(s, "j1", now + timedelta(hours=1), "root")  # idempotent
        rev.revoke_token(s, "j2", now - timedelta(seconds=1), None)
    with lake.db.read() as s:
        assert rev.is_revoked(s, "j1", "root", now)
        assert not rev.is_revoked(s, "j3", "root", now)
    with lake.db.write() as s:
        assert rev.purge_expired(s, utcnow()) == 1
    with lake.db.read() as s:
        assert s.get(RevokedToken, "j2") is None
        assert rev.is_revoked(s, "j1", "root", now)


def test_revoking_an_account_refuses_older_tokens_and_its_refresh_tokens(lake: Lake) -> None:
    earlier = utcnow() - timedelta(minutes=5)
    with lake.db.write() as s:
        s.add(
            RefreshToken(
                jti="r1", account="root", subject="root", expires_at=utcnow() + timedelta(days=1)
            )
        )
    with lake.db.write() as s:
        rev.revoke_account_tokens(s, "root", "admin")
    later = utcnow() + timedelta(seconds=2)
    with lake.db.read() as s:
        assert rev.is_revoked(s, "any", "root", earlier)
        assert not rev.is_revoked(s, "any", "root", later)
        row = s.get(RefreshToken, "r1")
        assert row is not None and row.revoked_at is not None
    with lake.db.write() as s:
        rev.purge_expired(s, utcnow(), accounts_before=utcnow() + timedelta(seconds=1))
    with lake.db.read() as s:
        assert not rev.is_revoked(s, "any", "root", earlier)


def test_housekeeping_purges_expired_rows_at_most_every_few_minutes(lake: Lake) -> None:
    from fedlake.services.oidc import housekeeping

    with lake.db.write() as s:
        s.add(
            RefreshToken(
                jti="old", account="root", subject="root", expires_at=utcnow() - timedelta(days=1)
            )
        )
        rev.revoke_token(s, "gone", utcnow() - timedelta(minutes=1), None)
    assert housekeeping(lake, force=True) == 2
    with lake.db.write() as s:
        rev.revoke_token(s, "gone-2", utcnow() - timedelta(minutes=1), None)
    assert housekeeping(lake) == 0  # ran moments ago
    assert housekeeping(lake, force=True) == 1
