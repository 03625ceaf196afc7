"""Parsing of the request headers the SE acts on; BadHeader (HTTP 400) names what is wrong.

- ``Range`` (RFC 9110): ``bytes=`` ranges, one (:func:`parse_range`) or a list
  (:func:`parse_ranges`; what is sent for a list is decided in ``se.ranges``).
- ``Digest`` (RFC 3230 instance digest, sent with a PUT) and ``Content-MD5`` (RFC 1864):
  adler32 as 8 hex digits, md5 as base64 (32 hex digits are accepted as well).
- ``Want-Digest`` (RFC 3230): the algorithms asked for, best first (``q`` values).
- ``Depth`` (RFC 4918) for PROPFIND: ``0`` or ``1``; ``infinity`` is refused.
- ``Destination`` and ``Overwrite`` for MOVE.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = [
    "DIGEST_ALGORITHMS",
    "BadHeader",
    "ByteRange",
    "DepthInfinity",
    "Unsatisfiable",
    "format_digest",
    "parse_content_md5",
    "parse_depth",
    "parse_destination",
    "parse_digest",
    "parse_overwrite",
    "parse_range",
    "parse_ranges",
    "parse_want_digest",
]

DIGEST_ALGORITHMS = ("adler32", "md5")
_RANGE = re.compile(r"^(\d*)-(\d*)$")
_HEX8 = re.compile(r"^[0-9a-fA-F]{1,8}$")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_QVALUE = re.compile(r"^q=(0(\.\d{0,3})?|1(\.0{0,3})?)$")


class BadHeader(ValueError):
    """A request header is malformed (HTTP 400)."""


class DepthInfinity(PermissionError):
    """``Depth: infinity`` on PROPFIND, which the SE refuses (HTTP 403)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive of a file of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


class Unsatisfiable(ValueError):
    """The range (every range of a list) lies past the end of the file (HTTP 416)."""


def parse_range(header: str, size: int) -> ByteRange | None:
    """The one range asked for in a file of ``size`` bytes; None for the whole file (a
    list of ranges).

    BadHeader when malformed, :class:`Unsatisfiable` when it starts past the end."""
    items = _range_items(header)
    if len(items) > 1:
        return None
    return _byte_range(items[0], size, header)


def parse_ranges(header: str, size: int) -> list[ByteRange]:
    """Every satisfiable range asked for in a file of ``size`` bytes, in the order asked
    (overlaps included: ``se.ranges`` merges them).

    BadHeader when any range is malformed; the ranges past the end are left out, and
    :class:`Unsatisfiable` when no range is left."""
    wanted = []
    for item in _range_items(header):
        try:
            wanted.append(_byte_range(item, size, header))
        except Unsatisfiable:
            continue
    if not wanted:
        raise Unsatisfiable(f"no range lies within the file's {size} bytes")
    return wanted


def _range_items(header: str) -> list[str]:
    """The ``first-last`` items of a ``bytes=`` Range, each well formed."""
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        raise BadHeader(f"Range {header[:100]!r}: only 'bytes=first-last' ranges are served")
    items = [s.strip() for s in spec.split(",")]
    for item in items:
        if not _RANGE.match(item) or item == "-":
            raise BadHeader(
                f"Range {header[:100]!r}: {item[:40]!r} is not first-last, first- or -suffix"
            )
    return items


def _byte_range(item: str, size: int, header: str) -> ByteRange:
    """One well-formed ``first-last``, ``first-`` or ``-suffix`` item, clipped to the file."""
    first, _, last = item.partition("-")
    if not first:  # a suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise Unsatisfiable("a range of the last 0 bytes is empty")
        if size == 0:
            raise Unsatisfiable("the file is empty")
        return ByteRange(max(0, size - n), size - 1, size)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        raise BadHeader(f"Range {header[:100]!r}: the last byte comes before the first")
    if start >= size:
        raise Unsatisfiable(f"the range starts at byte {start}; the file has {size} bytes")
    return ByteRange(start, min(end, size - 1), size)


def _b64_hex(value: str, size: int) -> str | None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == size else None


def _md5_value(value: str, what: str) -> str:
    if _HEX32.match(value):
        return value.lower()
    found = _b64_hex(value, 16)
    if found is None:
        raise BadHeader(f"{what}: {value[:60]!r} is not a base64 (or hex) md5")
    return found


def parse_digest(header: str) -> dict[str, str]:
    """``Digest: adler32=1a2b3c4d, md5=<base64>`` → ``{"adler32": hex8, "md5": hex32}``.

    Algorithms other than adler32 and md5 are ignored; a malformed adler32 or md5 value
    is BadHeader."""
    out: dict[str, str] = {}
    for part in header.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not sep or not name or not value:
            raise BadHeader(f"Digest {header[:100]!r}: expected algorithm=value pairs")
        if name == "adler32":
            if _HEX8.match(value):
                out["adler32"] = value.lower().zfill(8)
            elif (b := _b64_hex(value, 4)) is not None:
                out["adler32"] = b
            else:
                raise BadHeader(f"Digest: adler32 {value[:60]!r} is not 8 hexadecimal digits")
        elif name == "md5":
            out["md5"] = _md5_value(value, "Digest")
    return out


def parse_content_md5(header: str) -> str:
    """``Content-MD5`` (base64 of the 16 bytes) → 32 hex digits."""
    return _md5_value(header.strip(), "Content-MD5")


def parse_want_digest(header: str) -> list[str]:
    """The known algorithms of ``Want-Digest`` (case-insensitive), best first; q=0 drops."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        name, _, params = part.strip().partition(";")
        name = name.strip().lower()
        q = 1.0
        for param in params.split(";"):
            param = param.strip().replace(" ", "")
            if not param:
                continue
            if not _QVALUE.match(param.lower()):
                raise BadHeader(f"Want-Digest {header[:100]!r}: bad parameter {param!r}")
            q = float(param[2:])
        if name in DIGEST_ALGORITHMS and q > 0 and name not in [r[2] for r in ranked]:
            ranked.append((-q, i, name))
    return [name for _, _, name in sorted(ranked)]


def format_digest(values: dict[str, str], wanted: list[str]) -> str:
    """The ``Digest`` reply: adler32 as 8 hex digits, md5 as base64 (RFC 3230)."""
    parts = []
    for name in wanted:
        if name == "adler32":
            parts.append(f"adler32={values['adler32']}")
        elif name == "md5":
            parts.append("md5=" + base64.b64encode(bytes.fromhex(values["md5"])).decode())
    return ", ".join(parts)


def parse_depth(header: str | None) -> int:
    """PROPFIND ``Depth``: 0 or 1 (missing: 1); ``infinity`` is DepthInfinity."""
    if header is None:
        return 1
    value = header.strip().lower()
    if value in ("0", "1"):
        return int(value)
    if value == "infinity":
        raise DepthInfinity(
            "PROPFIND with Depth: infinity is refused (it would walk the whole tree); "
            "list one level at a time with Depth: 1"
        )
    raise BadHeader(f"Depth {header[:40]!r}: expected 0, 1 or infinity")


def parse_destination(header: str | None) -> str:
    """The percent-decoded path of a MOVE's ``Destination`` (an absolute URL or a path)."""
    if not header or not header.strip():
        raise BadHeader("MOVE needs a Destination header (the URL to move to)")
    value = header.strip()
    if value.startswith("/"):
        path = value.partition("?")[0]
    else:
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https", "dav", "davs") or not parts.netloc:
            raise BadHeader(f"Destination {value[:200]!r} is not an http(s) URL or a path")
        path = parts.path or "/"
    try:
        return unquote(path, errors="strict")
    except UnicodeDecodeError:
        raise BadHeader("Destination: the percent-encoded path is not UTF-8") from None


def parse_overwrite(header: str | None) -> bool:
    """``Overwrite``: T (the default) or F."""
    if header is None:
        return True
    value = header.strip().upper()
    if value not in ("T", "F"):
        raise BadHeader(f"Overwrite {header[:20]!r}: expected T or F")
    return value == "T"
