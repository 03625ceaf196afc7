"""se.ranges: merging the ranges of a list, the limits, and the multipart/byteranges body."""

from __future__ import annotations

import email.parser
import email.policy
import re

import pytest

from fedlake.se.headers import ByteRange
from fedlake.se.ranges import MAX_PARTS, Multipart, Piece, choose, coalesce

SIZE = 100_000
DATA = bytes(i % 251 for i in range(SIZE))


def ranges(*pairs: tuple[int, int], size: int = SIZE) -> list[ByteRange]:
    return [ByteRange(a, b, size) for a, b in pairs]


def body(pieces: list[Piece]) -> bytes:
    return b"".join(p if isinstance(p, bytes) else DATA[p[0] : p[0] + p[1]] for p in pieces)


@pytest.mark.parametrize(
    ("asked", "want"),
    [
        ([(0, 9), (20, 29)], [(0, 9), (20, 29)]),
        ([(20, 29), (0, 9)], [(20, 29), (0, 9)]),  # apart: the order asked
        ([(0, 9), (5, 19)], [(0, 19)]),  # overlapping
        ([(0, 9), (10, 19)], [(0, 19)]),  # touching
        ([(0, 9), (11, 19)], [(0, 9), (11, 19)]),  # a byte apart
        ([(50, 59), (0, 99), (200, 209)], [(0, 99), (200, 209)]),  # one inside another
        ([(300, 309), (0, 9), (305, 400)], [(300, 400), (0, 9)]),  # where first asked
        ([(0, 0)] * 1000, [(0, 0)]),
    ],
)
def test_coalesce(asked: list[tuple[int, int]], want: list[tuple[int, int]]) -> None:
    assert coalesce(ranges(*asked)) == ranges(*want)


def test_one_range_left_is_a_plain_range() -> None:
    assert choose(ranges((0, 9))) == ByteRange(0, 9, SIZE)
    assert choose(ranges((0, 9), (5, 30), (31, 40))) == ByteRange(0, 40, SIZE)


def test_several_ranges_are_multipart() -> None:
    got = choose(ranges((0, 9), (20, 29), (SIZE - 5, SIZE - 1)))
    assert isinstance(got, Multipart)
    assert got.parts == tuple(ranges((0, 9), (20, 29), (SIZE - 5, SIZE - 1)))
    assert re.fullmatch(r"multipart/byteranges; boundary=[0-9a-f]{32}", got.content_type)


def test_too_many_parts_is_the_whole_file() -> None:
    apart = [(i * 100, i * 100) for i in range(MAX_PARTS)]
    assert isinstance(choose(ranges(*apart)), Multipart)
    assert choose(ranges(*apart, (SIZE - 1, SIZE - 1))) is None
    # many ranges that merge into few are served
    assert choose(ranges(*[(i, i + 1) for i in range(1000)])) == ByteRange(0, 1000, SIZE)


def test_a_multipart_body_longer_than_the_file_is_the_whole_file() -> None:
    small = ranges((0, 9), (20, 29), size=200)
    assert choose(small) is None  # two parts' headers are more than 200 bytes
    got = choose(ranges((0, 9), (20, 29), size=2000))
    assert isinstance(got, Multipart)
    assert got.length <= 2000


def test_multipart_body_framing() -> None:
    got = Multipart(tuple(ranges((0, 9), (SIZE - 3, SIZE - 1))), "b0undary")
    data = body(got.pieces())
    assert len(data) == got.length
    assert data == (
        b"--b0undary\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Range: bytes 0-9/100000\r\n\r\n" + DATA[:10] + b"\r\n"
        b"--b0undary\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Range: bytes 99997-99999/100000\r\n\r\n" + DATA[-3:] + b"\r\n--b0undary--\r\n"
    )


def test_the_body_reads_back_with_the_email_parser() -> None:
    got = choose(ranges((0, 999), (5000, 5999), (70_000, 99_999)))
    assert isinstance(got, Multipart)
    raw = f"Content-Type: {got.content_type}\r\n\r\n".encode() + body(got.pieces())
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts = list(message.iter_parts())
    assert [p["Content-Range"] for p in parts] == [r.content_range() for r in got.parts]
    for part, r in zip(parts, got.parts, strict=True):
        assert part.get_content_type() == "application/octet-stream"
        assert part.get_payload(decode=True) == DATA[r.start : r.end + 1]
