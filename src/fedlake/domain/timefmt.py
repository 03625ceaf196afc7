"""Date formats used on the wire (Rucio renders RFC 1123 with a literal ' UTC')."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["parse_datetime", "rfc1123", "utcnow"]

_RFC1123 = "%a, %d %b %Y %H:%M:%S UTC"


def utcnow() -> datetime:
    """Naive UTC now: the catalogue stores naive UTC timestamps on every backend."""
    return datetime.now(UTC).replace(tzinfo=None)


def rfc1123(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime(_RFC1123)


def parse_datetime(text: str) -> datetime:
    """Parse RFC 1123 (``Sun, 22 Nov 2026 03:23:19 UTC``) or ISO 8601 into naive UTC."""
    text = text.strip()
    for fmt in (_RFC1123, "%a, %d %b %Y %H:%M:%S GMT"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            pass
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value
