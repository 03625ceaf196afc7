"""Parsing of Range, Digest, Content-MD5, Want-Digest, Depth, Destination and Overwrite."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest

from fedlake.se.headers import (
    BadHeader,
    ByteRange,
    DepthInfinity,
    Unsatisfiable,
    format_digest,
    parse_content_md5,
    parse_depth,
    parse_destination,
    parse_digest,
    parse_overwrite,
    parse_range,
    parse_ranges,
    parse_want_digest,
)

MD5 = hashlib.md5(b"abc", usedforsecurity=False)
MD5_B64 = base64.b64encode(MD5.digest()).decode()


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("bytes=0-9", ByteRange(0, 9, 100)),
        ("bytes=90-", ByteRange(90, 99, 100)),
        ("bytes=90-500", ByteRange(90, 99, 100)),
        ("bytes=-10", ByteRange(90, 99, 100)),
        ("bytes=-500", ByteRange(0, 99, 100)),
        ("Bytes = 5-5", ByteRange(5, 5, 100)),
        ("bytes=0-1, 5-6", None),
    ],
)
def test_range(spec: str, want: ByteRange | None) -> None:
    assert parse_range(spec, 100) == want


def test_range_content_range() -> None:
    got = parse_range("bytes=10-19", 100)
    assert got is not None
    assert (got.length, got.content_range()) == (10, "bytes 10-19/100")


@pytest.mark.parametrize(
    ("parse", "spec", "size"),
    [(parse_range, s, 100) for s in ("bytes=100-", "bytes=200-300", "bytes=-0")]
    + [(parse_range, "bytes=-5", 0), (parse_ranges, "bytes=0-1,-5", 0)]
    + [(parse_ranges, s, 100) for s in ("bytes=100-", "bytes=100-,200-300,-0", "bytes=-0,-0")],
)
def test_unsatisfiable(parse: Callable[[str, int], object], spec: str, size: int) -> None:
    """Every range past the end (of a list: every one of them) is 416."""
    with pytest.raises(Unsatisfiable):
        parse(spec, size)


@pytest.mark.parametrize(
    ("parse", "spec"),
    [(parse_range, s) for s in ("bytes=9-0", "bytes=x-1", "lines=0-1", "bytes=-", "bytes=0-1,x")]
    + [(parse_ranges, s) for s in ("bytes=0-1,x", "bytes=0-1,9-0", "bytes=0-1,", "lines=0-1,2")],
)
def test_malformed_range(parse: Callable[[str, int], object], spec: str) -> None:
    """One bad range in a list makes the whole header 400, as a single bad range does."""
    with pytest.raises(BadHeader):
        parse(spec, 100)


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("bytes=0-9", [(0, 9)]),
        ("bytes=0-9,20-29,-5", [(0, 9), (20, 29), (95, 99)]),
        ("bytes = 90- , 0-0", [(90, 99), (0, 0)]),  # as asked: order and overlaps kept
        ("bytes=0-9,0-9", [(0, 9), (0, 9)]),
        ("bytes=95-500,-500", [(95, 99), (0, 99)]),  # clipped at the end
        ("bytes=100-,0-1,200-300,-0", [(0, 1)]),  # what lies past the end is left out
    ],
)
def test_ranges(spec: str, want: list[tuple[int, int]]) -> None:
    assert parse_ranges(spec, 100) == [ByteRange(a, b, 100) for a, b in want]


def test_digest() -> None:
    assert parse_digest(f"adler32=1A2b, MD5={MD5_B64}, sha-256=x") == {
        "adler32": "00001a2b",
        "md5": MD5.hexdigest(),
    }
    assert parse_digest(f"md5={MD5.hexdigest()}") == {"md5": MD5.hexdigest()}
    assert parse_digest("adler32=" + base64.b64encode(bytes.fromhex("01020304")).decode()) == {
        "adler32": "01020304"
    }
    for bad in ("adler32=xyz", "adler32", "md5=abc", "=x"):
        with pytest.raises(BadHeader):
            parse_digest(bad)


def test_content_md5() -> None:
    assert parse_content_md5(f" {MD5_B64} ") == MD5.hexdigest()
    with pytest.raises(BadHeader, match="Content-MD5"):
        parse_content_md5("not base64")


def test_want_digest() -> None:
    assert parse_want_digest("ADLER32") == ["adler32"]
    assert parse_want_digest("md5;q=0.3, adler32;q=1.0, sha-256") == ["adler32", "md5"]
    assert parse_want_digest("adler32;q=0, md5") == ["md5"]
    assert parse_want_digest("sha-512, UNIXcksum") == []
    with pytest.raises(BadHeader):
        parse_want_digest("adler32;q=2")


def test_format_digest() -> None:
    values = {"adler32": "00001a2b", "md5": MD5.hexdigest()}
    assert format_digest(values, ["md5", "adler32"]) == f"md5={MD5_B64}, adler32=00001a2b"


def test_depth() -> None:
    assert (parse_depth("0"), parse_depth(" 1 "), parse_depth(None)) == (0, 1, 1)
    with pytest.raises(DepthInfinity):
        parse_depth("Infinity")
    with pytest.raises(BadHeader):
        parse_depth("2")


def test_destination_and_overwrite() -> None:
    assert parse_destination("https://h:1/a%20b/c%3Bd?x") == "/a b/c;d"
    assert parse_destination("/a%2Fb") == "/a/b"
    for bad in (None, "", "ftp://h/x", "relative/x", "http:///x", "/%ff"):
        with pytest.raises(BadHeader):
            parse_destination(bad)
    assert (parse_overwrite(None), parse_overwrite("t"), parse_overwrite("F")) == (
        True,
        True,
        False,
    )
    with pytest.raises(BadHeader):
        parse_overwrite("yes")
