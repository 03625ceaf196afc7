"""What a GET with a list of ranges is answered with (RFC 9110 §14.2, §14.6, §15.3.7).

Ranges that overlap or touch are merged into one (§15.3.7.2 lets a server coalesce them),
so no byte is sent twice; the others keep the order they were asked in. One range left is
a plain ``206`` with ``Content-Range``; several are a ``multipart/byteranges`` body. When
more than :data:`MAX_PARTS` parts are left, or the multipart body would be longer than
the file, the answer is the whole file (``200``: a server may ignore ``Range``): a request
never makes the SE send more than the file.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from fedlake.se.headers import ByteRange

__all__ = ["CONTENT_TYPE", "MAX_PARTS", "Multipart", "Piece", "body_length", "choose", "coalesce"]

CONTENT_TYPE = "application/octet-stream"  # of every file, and of every part
MAX_PARTS = 200  # more parts than this (after merging): the whole file

Piece = bytes | tuple[int, int]  # bytes to send as they are, or (offset, length) of the file


def body_length(pieces: Sequence[Piece]) -> int:
    return sum(len(p) if isinstance(p, bytes) else p[1] for p in pieces)


def coalesce(ranges: Sequence[ByteRange]) -> list[ByteRange]:
    """``ranges`` with those that overlap or touch merged; each range stands where the
    first of the ranges merged into it was asked."""
    order = sorted(range(len(ranges)), key=lambda i: ranges[i].start)
    merged: list[tuple[int, int, int]] = []  # (place asked, start, end)
    for i in order:
        r = ranges[i]
        if merged and r.start <= merged[-1][2] + 1:
            place, start, end = merged[-1]
            merged[-1] = (min(place, i), start, max(end, r.end))
        else:
            merged.append((i, r.start, r.end))
    return [ByteRange(start, end, ranges[place].size) for place, start, end in sorted(merged)]


@dataclass(frozen=True, slots=True)
class Multipart:
    """A ``multipart/byteranges`` body: each part is a ``Content-Type`` and
    ``Content-Range`` header, a blank line and the bytes, parts separated by CRLF and the
    boundary, then the closing boundary."""

    parts: tuple[ByteRange, ...]
    boundary: str

    @property
    def content_type(self) -> str:
        return f"multipart/byteranges; boundary={self.boundary}"

    def pieces(self) -> list[Piece]:
        """The body, in the order it is sent."""
        out: list[Piece] = []
        for i, part in enumerate(self.parts):
            lead = "\r\n" if i else ""
            head = (
                f"{lead}--{self.boundary}\r\nContent-Type: {CONTENT_TYPE}\r\n"
                f"Content-Range: {part.content_range()}\r\n\r\n"
            )
            out += [head.encode("ascii"), (part.start, part.length)]
        out.append(f"\r\n--{self.boundary}--\r\n".encode("ascii"))
        return out

    @property
    def length(self) -> int:
        """The exact length of the body (its ``Content-Length``)."""
        return body_length(self.pieces())


def choose(ranges: Sequence[ByteRange]) -> ByteRange | Multipart | None:
    """What answers a request for ``ranges`` (satisfiable, at least one): one range, a
    multipart body, or None for the whole file (see the module's docstring)."""
    parts = coalesce(ranges)
    if len(parts) == 1:
        return parts[0]
    if len(parts) > MAX_PARTS:
        return None
    body = Multipart(tuple(parts), secrets.token_hex(16))
    return None if body.length > parts[0].size else body
