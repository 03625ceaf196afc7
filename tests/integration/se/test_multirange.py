"""Multi-range GET against ``fedlake se serve`` (both HTTP servers): curl and httpx ask for
``Range: bytes=a-b,c-d,...`` and get ``206`` with a ``multipart/byteranges`` body (RFC
9110 §14.6, §15.3.7) whose every part is checked against the file; ranges that overlap
are merged, and a request for many ranges never gets more bytes than the file.
"""

from __future__ import annotations

import email.parser
import email.policy
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from fedlake.se.ranges import MAX_PARTS
from tests.servers import require_program
from tests.servers.fedlake_se import SEServer, running_se

BIG = os.urandom(5 * 1024 * 1024 + 11)  # parts bigger than a 2 MiB block, streamed
MID = os.urandom(300_000)
SMALL = b"0123456789" * 20  # 200 bytes: two parts' headers are longer than the file
FILES = {"big.bin": BIG, "mid.bin": MID, "small.bin": SMALL}
BOUNDARY = re.compile(r"multipart/byteranges; boundary=([0-9A-Za-z'()+_,./:=?-]{1,70})")
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@pytest.fixture(scope="module", params=["granian", "uvicorn"])
def se(request: pytest.FixtureRequest) -> Iterator[SEServer]:
    with running_se(anonymous=True, server=str(request.param)) as server:
        for name, data in FILES.items():
            (server.root / name).write_bytes(data)
        yield server


@dataclass
class Part:
    content_type: str
    content_range: tuple[int, int, int]  # first, last, size
    data: bytes


def parse_multipart(content_type: str, body: bytes) -> list[Part]:
    """The parts of a multipart/byteranges body, checked byte for byte against the
    framing (boundary lines, CRLFs, one closing boundary)."""
    got = BOUNDARY.fullmatch(content_type)
    assert got is not None, content_type
    dash = b"--" + got.group(1).encode()
    parts = []
    rest = body
    while True:
        assert rest.startswith(dash), rest[:100]
        rest = rest[len(dash) :]
        if rest == b"--\r\n":
            return parts
        head, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep and head.startswith(b"\r\n"), head
        fields = {}
        for line in head[2:].decode("ascii").split("\r\n"):
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        assert set(fields) == {"content-type", "content-range"}, fields
        matched = CONTENT_RANGE.fullmatch(fields["content-range"])
        assert matched is not None, fields
        first, last, size = (int(g) for g in matched.groups())
        n = last - first + 1
        parts.append(Part(fields["content-type"], (first, last, size), rest[:n]))
        assert rest[n : n + 2] == b"\r\n", rest[n : n + 100]
        rest = rest[n + 2 :]


def check_parts(parts: list[Part], data: bytes, want: list[tuple[int, int]]) -> None:
    assert [p.content_range for p in parts] == [(a, b, len(data)) for a, b in want]
    for part in parts:
        first, last, _ = part.content_range
        assert part.content_type == "application/octet-stream"
        assert part.data == data[first : last + 1]


def get(se: SEServer, name: str, spec: str) -> httpx.Response:
    r = httpx.get(se.url(name), headers={"Range": spec}, timeout=60)
    assert int(r.headers["content-length"]) == len(r.content)
    return r


def test_curl_ranges_with_a_suffix(se: SEServer) -> None:
    program = require_program("curl", "apt-get install curl")
    out = subprocess.run(
        [program, "-s", "-S", "-D", "-", "-o", "-", "-r", "0-9,20-29,-5", se.url("mid.bin")],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].split()[1] == "206"
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    assert int(headers["content-length"]) == len(body)
    assert "content-range" not in headers
    want = [(0, 9), (20, 29), (len(MID) - 5, len(MID) - 1)]
    check_parts(parse_multipart(headers["content-type"], body), MID, want)
    # the standard library reads it the same way
    raw = f"Content-Type: {headers['content-type']}\r\n\r\n".encode() + body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    assert [p.get_payload(decode=True) for p in message.iter_parts()] == [
        MID[:10],
        MID[20:30],
        MID[-5:],
    ]


def test_big_parts_are_streamed_in_the_order_asked(se: SEServer) -> None:
    r = get(se, "big.bin", "bytes=3000000-5000000, 100-2500000, -1000")
    assert r.status_code == 206
    want = [(3000000, 5000000), (100, 2500000), (len(BIG) - 1000, len(BIG) - 1)]
    check_parts(parse_multipart(r.headers["content-type"], r.content), BIG, want)


def test_open_and_clipped_ranges(se: SEServer) -> None:
    r = get(se, "mid.bin", f"bytes=299990-,5-9,299995-{10**12}")
    assert r.status_code == 206
    check_parts(
        parse_multipart(r.headers["content-type"], r.content), MID, [(299990, 299999), (5, 9)]
    )


def test_overlapping_and_touching_ranges_are_merged(se: SEServer) -> None:
    r = get(se, "mid.bin", "bytes=1000-1099,0-99,50-149,150-199")
    assert r.status_code == 206
    check_parts(
        parse_multipart(r.headers["content-type"], r.content), MID, [(1000, 1099), (0, 199)]
    )
    # merged into one: a plain 206, no multipart
    r = get(se, "mid.bin", "bytes=0-99,50-149,100-120")
    assert (r.status_code, r.content) == (206, MID[:150])
    assert r.headers["content-range"] == f"bytes 0-149/{len(MID)}"
    assert r.headers["content-type"] == "application/octet-stream"


def test_ranges_past_the_end_are_left_out(se: SEServer) -> None:
    r = get(se, "mid.bin", "bytes=0-9,300000-,400000-500000")
    assert (r.status_code, r.content) == (206, MID[:10])
    assert r.headers["content-range"] == f"bytes 0-9/{len(MID)}"
    r = get(se, "mid.bin", "bytes=300000-,400000-500000,-0")
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(MID)}"


@pytest.mark.parametrize("spec", ["bytes=0-9,x-1", "bytes=0-9,9-0", "bytes=0-9,,20-29"])
def test_a_malformed_range_in_a_list_is_400(se: SEServer, spec: str) -> None:
    r = httpx.get(se.url("mid.bin"), headers={"Range": spec})
    assert r.status_code == 400
    assert "Range" in r.text


def test_head_ignores_ranges(se: SEServer) -> None:
    """RFC 9110 §14.2: range handling is defined for GET only (also for one range)."""
    r = httpx.head(se.url("mid.bin"), headers={"Range": "bytes=0-9,20-29"})
    assert (r.status_code, r.content) == (200, b"")
    assert r.headers["content-length"] == str(len(MID))
    assert r.headers["content-type"] == "application/octet-stream"


def test_a_thousand_ranges_are_not_amplified(se: SEServer) -> None:
    # the same byte a thousand times: one byte
    r = get(se, "mid.bin", "bytes=" + ",".join(["7-7"] * 1000))
    assert (r.status_code, r.content) == (206, MID[7:8])
    # a thousand bytes apart, more parts than MAX_PARTS: the whole file
    spread = ",".join(f"{i * 299}-{i * 299}" for i in range(1000))
    r = get(se, "mid.bin", f"bytes={spread}")
    assert (r.status_code, r.content) == (200, MID)
    # a thousand overlapping ranges of most of the file: merged into one
    r = get(se, "big.bin", "bytes=" + ",".join(f"{i}-{len(BIG) - 1 - i}" for i in range(1000)))
    assert (r.status_code, r.content) == (206, BIG)
    assert r.headers["content-range"] == f"bytes 0-{len(BIG) - 1}/{len(BIG)}"


def test_as_many_parts_as_allowed(se: SEServer) -> None:
    spread = ",".join(f"{i * 1000}-{i * 1000 + 9}" for i in range(MAX_PARTS))
    r = get(se, "mid.bin", f"bytes={spread}")
    assert r.status_code == 206
    parts = parse_multipart(r.headers["content-type"], r.content)
    check_parts(parts, MID, [(i * 1000, i * 1000 + 9) for i in range(MAX_PARTS)])
    assert len(r.content) < len(MID)


def test_a_multipart_body_longer_than_the_file_is_the_file(se: SEServer) -> None:
    r = get(se, "small.bin", "bytes=0-9,20-29")
    assert (r.status_code, r.content) == (200, SMALL)


def test_if_range_serves_ranges_of_the_same_version_only(se: SEServer) -> None:
    """RFC 9110 §13.1.5: a Range with If-Range naming another version of the file (a
    strong entity tag or a date) gets the whole file (200), for one range and for many."""
    whole = httpx.get(se.url("mid.bin"), timeout=60)
    tag, date = whole.headers["etag"], whole.headers["last-modified"]
    for spec in ("bytes=0-9", "bytes=0-9,100-109"):
        for condition, status in (
            (tag, 206),
            (date, 206),
            ('"not-this-version"', 200),
            (f"W/{tag}", 200),  # a weak tag never matches
            ("Thu, 01 Jan 1970 00:00:00 GMT", 200),
        ):
            r = httpx.get(
                se.url("mid.bin"), headers={"Range": spec, "If-Range": condition}, timeout=60
            )
            assert r.status_code == status, (spec, condition, r.status_code)
            if status == 200:
                assert r.content == MID
            else:
                assert len(r.content) < len(MID)
