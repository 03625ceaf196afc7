"""`fedlake up` prints the catalogue URL, never a database password."""

from __future__ import annotations

from fedlake.cli.up import _without_password


def test_password_is_masked() -> None:
    shown = _without_password("postgresql+psycopg://lake:s3cret-pw@db.example:5432/fedlake")
    assert "s3cret-pw" not in shown
    assert shown == "postgresql+psycopg://lake:***@db.example:5432/fedlake"


def test_urls_without_password_are_unchanged() -> None:
    for url in ("sqlite:////srv/lake/catalog.db", "postgresql+psycopg://postgres@127.0.0.1/x"):
        assert _without_password(url) == url
