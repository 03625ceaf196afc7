"""WebDAV on the wire, for the davs/https/http plugin: URLs, the status → error mapping,
RFC 3230 digests, PROPFIND multistatus parsing, and the servers' quirks.

URLs given to the plugin are literal (``davs://host/dir/a b``); :func:`http_url` gives
the wire form (``https://host/dir/a%20b``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import re
import secrets
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import quote

import httpx

from fedlake.storage.backends.posix import TMP_MARK
from fedlake.storage.base import TransientStorageError

__all__ = [
    "Entry",
    "hrefs_are_raw",
    "http_url",
    "judge_range",
    "move_destination",
    "nonempty",
    "parent_url",
    "parse_digest",
    "parse_multistatus",
    "path_of",
    "raise_for_status",
    "slice_stream",
    "status_error",
    "temporary_for",
    "transport_errors",
]

_SCHEMES = {"davs": "https", "https": "https", "dav": "http", "http": "http"}
_DAV = "{DAV:}"
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(-?\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_UNRESERVED_URI = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*$")

# --- URLs ------------------------------------------------------------------------------


def http_url(url: str) -> str:
    """The wire URL of a literal ``davs|dav|https|http`` URL: http(s) scheme, encoded path."""
    scheme, sep, rest = url.partition("://")
    wire = _SCHEMES.get(scheme.lower())
    if not sep or wire is None:
        raise ValueError(f"{url!r} is not a davs://, https:// or http:// URL")
    netloc, _, path = rest.partition("/")
    if not netloc:
        raise ValueError(f"{url!r} has no host")
    return f"{wire}://{netloc}/{quote(path, safe='/')}"


def parent_url(wire: str) -> str:
    """The parent collection of a wire URL (no trailing slash), or '' at the root."""
    head, _, path = wire.partition("://")
    netloc, _, path = path.partition("/")
    path = path.rstrip("/")
    if "/" not in path:
        return "" if not path else f"{head}://{netloc}"
    return f"{head}://{netloc}/{path.rsplit('/', 1)[0]}"


def path_of(url: str) -> str:
    """The path of a URL (wire or literal), from its first slash after the host."""
    return "/" + url.partition("://")[2].partition("/")[2]


def temporary_for(wire: str) -> str:
    """``.<name>.fedlake-tmp-<12 hex>`` next to ``wire`` (what posix.is_temporary matches)."""
    parent, _, name = wire.rpartition("/")
    return f"{parent}/.{name}{TMP_MARK}{secrets.token_hex(6)}"


# --- errors ----------------------------------------------------------------------------


def _snippet(response: httpx.Response) -> str:
    """A short, single-line excerpt of an error body (read at most 2 KiB of it)."""
    try:
        if not response.is_stream_consumed:
            body = b""
            for block in response.iter_bytes():
                body += block
                if len(body) > 2048:
                    break
        else:
            body = response.content
    except (httpx.HTTPError, httpx.StreamError):
        body = b""
    text = body.decode("utf-8", "replace")
    text = re.sub(r"<[^>]+>", " ", text) if "<" in text else text  # an HTML error page
    text = " ".join(text.split())
    return text[:300]


def raise_for_status(response: httpx.Response, what: str, url: str) -> None:
    """Raise the base.py class for an HTTP error status; return on 1xx-3xx."""
    status = response.status_code
    if status < 400:
        return
    said = _snippet(response)
    msg = f"{what} {url}: HTTP {status} {response.reason_phrase}".rstrip()
    if said:
        msg += f": {said}"
    raise status_error(status, msg)


def status_error(status: int, msg: str) -> OSError:
    if status in (404, 410):
        return FileNotFoundError(errno.ENOENT, msg)
    if status in (401, 403):
        return PermissionError(errno.EACCES, msg)
    if status == 412:
        return FileExistsError(errno.EEXIST, msg)
    if status == 409:  # WebDAV: an intermediate collection is missing
        return FileNotFoundError(errno.ENOENT, msg)
    if status == 507:
        return OSError(errno.ENOSPC, msg)
    if status == 408:
        return TimeoutError(errno.ETIMEDOUT, msg)
    if status == 429 or status >= 500:
        return TransientStorageError(errno.EAGAIN, msg)
    if status in (405, 501):
        return OSError(errno.EOPNOTSUPP, msg)
    return OSError(errno.EIO, msg)


@contextlib.contextmanager
def transport_errors(what: str, url: str) -> Iterator[None]:
    """Turn httpx's transport exceptions into the recoverable/unrecoverable built-ins."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise TimeoutError(errno.ETIMEDOUT, f"{what} {url}: timed out ({exc})") from exc
    except httpx.RemoteProtocolError as exc:
        # the peer closed early: a body shorter than announced, a truncated chunked stream
        raise TransientStorageError(
            errno.EPIPE, f"{what} {url}: the server broke off the response ({exc})"
        ) from exc
    except httpx.ConnectError as exc:
        cause = exc.__context__ or exc.__cause__
        while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
            cause = cause.__context__ or cause.__cause__
        if cause is not None or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise PermissionError(
                errno.EACCES,
                f"{what} {url}: the server's TLS certificate is not trusted ({exc}); "
                "give the CA bundle as the `verify` option",
            ) from exc
        raise ConnectionError(errno.ECONNREFUSED, f"{what} {url}: cannot connect ({exc})") from exc
    except (httpx.NetworkError, httpx.ProxyError) as exc:
        raise ConnectionError(errno.ECONNRESET, f"{what} {url}: connection lost ({exc})") from exc
    except httpx.DecodingError as exc:
        raise TransientStorageError(errno.EIO, f"{what} {url}: bad response ({exc})") from exc
    except httpx.UnsupportedProtocol as exc:
        raise ValueError(f"{what} {url}: {exc}") from exc
    except httpx.TransportError as exc:
        raise ConnectionError(errno.EIO, f"{what} {url}: {exc}") from exc


# --- digests (RFC 3230) ----------------------------------------------------------------


def _b64(value: str, size: int) -> str | None:
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == size else None


def parse_digest(headers: Iterable[str]) -> dict[str, str]:
    """``Digest:`` header values → ``{"adler32": 8 hex, "md5": 32 hex}`` (what is there).

    RFC 3230 writes adler32 in hex and md5 in base64; servers also send hex md5 (32 hex
    digits) and some base64 adler32: both forms are accepted for both.
    """
    found: dict[str, str] = {}
    for header in headers:
        for part in header.split(","):
            name, sep, value = part.strip().partition("=")
            value = value.strip().strip('"')
            if not sep or not value:
                continue
            name = name.strip().lower()
            if name == "adler32":
                if re.fullmatch(r"[0-9a-fA-F]{1,8}", value):
                    found["adler32"] = value.lower().zfill(8)
                elif (b := _b64(value, 4)) is not None:
                    found["adler32"] = b
            elif name == "md5":
                if re.fullmatch(r"[0-9a-fA-F]{32}", value):
                    found["md5"] = value.lower()
                elif (b := _b64(value, 16)) is not None:
                    found["md5"] = b
    return found


# --- PROPFIND --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    href: str  # as the server wrote it (path part)
    size: int | None
    mtime: float
    is_dir: bool


def _entry(response: ET.Element) -> Entry | None:
    href = response.findtext(f"{_DAV}href")
    if href is None:
        return None
    size: int | None = None
    mtime = 0.0
    is_dir = False
    for propstat in response.iter(f"{_DAV}propstat"):
        status = propstat.findtext(f"{_DAV}status") or "HTTP/1.1 200 OK"
        if " 200" not in status:
            continue
        prop = propstat.find(f"{_DAV}prop")
        if prop is None:
            continue
        length = prop.findtext(f"{_DAV}getcontentlength")
        if length and length.strip().isdigit():
            size = int(length)
        modified = prop.findtext(f"{_DAV}getlastmodified")
        if modified:
            with contextlib.suppress(TypeError, ValueError):
                mtime = parsedate_to_datetime(modified.strip()).timestamp()
        rtype = prop.find(f"{_DAV}resourcetype")
        if rtype is not None and rtype.find(f"{_DAV}collection") is not None:
            is_dir = True
        if (prop.findtext(f"{_DAV}iscollection") or "").strip() == "1":  # LCGDM / XrdHttp
            is_dir = True
    href = href.strip("\r\n\t")  # not spaces: XrdHttp's raw hrefs may end in one
    if _ABSOLUTE.match(href):  # keep the path only (no URL parsing: raw hrefs may hold ?#;)
        href = path_of(href)
    return Entry(href or "/", size, mtime, is_dir)


def parse_multistatus(blocks: Iterable[bytes]) -> Iterator[Entry]:
    """Stream a 207 body: one entry per ``<response>``, memory bounded by one entry."""
    # the standard library's expat never fetches external entities and caps expansion
    parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("end",))
    for block in blocks:
        parser.feed(block)
        yield from _responses(parser)
    parser.close()
    yield from _responses(parser)


def _responses(parser: ET.XMLPullParser[ET.Element]) -> Iterator[Entry]:
    for event in parser.read_events():
        elem = event[-1]
        if isinstance(elem, ET.Element) and elem.tag == f"{_DAV}response":
            entry = _entry(elem)
            elem.clear()
            if entry is not None:
                yield entry


def hrefs_are_raw(server: str, entries: list[Entry]) -> bool:
    """True when the server writes hrefs without percent-encoding (XrdHttp does)."""
    if server.lower().startswith("xrootd"):
        return True
    return any(not _UNRESERVED_URI.match(e.href) for e in entries)


# --- reading and moving ---------------------------------------------------------------


def move_destination(wire: str, url: str, server: str) -> str:
    """The ``Destination`` header for a MOVE to ``wire``, around servers' parsing of it.

    XrdHttp (5.5) does not percent-decode it: it gets the literal path (UTF-8), and a
    ``?`` would start a query; it also trims trailing bytes it takes for blanks (spaces,
    and non-ASCII ones too), which an empty query after the name prevents. WsgiDAV (4.4)
    percent-decodes the header *before* splitting it as a URL, so a ``;`` in the last
    segment starts URL parameters and a ``?`` a query.
    A trailing slash keeps the ``;`` in the path (WsgiDAV then drops the slash); a ``?``
    cannot be carried.
    """
    name = url.rstrip("/").rsplit("/", 1)[-1]
    if server.lower().startswith("xrootd"):
        if "?" in name:
            raise OSError(errno.EINVAL, f"{url}: XrdHttp cannot MOVE to a name containing '?'")
        return wire.partition("://")[0] + "://" + url.partition("://")[2] + "?"  # literal
    if not server.lower().startswith("wsgidav"):
        return wire
    if "?" in name:
        raise OSError(
            errno.EINVAL,
            f"{url}: WsgiDAV cannot MOVE to a name containing '?' "
            "(it decodes the Destination header before parsing it)",
        )
    return wire + "/" if ";" in name else wire


def judge_range(header: str, start: int, end: int | None) -> tuple[str, int]:
    """Check a 206's ``Content-Range`` against the range asked for.

    ("ok", _), ("empty", _) when ``start`` is past the end, or ("wrong", last byte to ask
    for; -1 when the size is unknown).
    """
    got = _CONTENT_RANGE.match(header)
    total = int(got.group(3)) if got and got.group(3) != "*" else None
    if total is not None and start >= total:
        return "empty", -1
    if total is None:
        last = end if end is not None else -1
    else:
        last = total - 1 if end is None else min(end, total - 1)
    if got is None or int(got.group(1)) != start or (last >= 0 and int(got.group(2)) != last):
        return "wrong", last
    return "ok", last


def nonempty(blocks: Iterator[bytes]) -> Iterator[bytes]:
    for block in blocks:
        if block:
            yield block


def slice_stream(blocks: Iterator[bytes], skip: int, length: int | None) -> Iterator[bytes]:
    """The bytes ``[skip, skip+length)`` of a stream (for servers that ignore Range)."""
    left = length
    for block in blocks:
        if skip >= len(block):
            skip -= len(block)
            continue
        if skip:
            block, skip = block[skip:], 0
        if left is not None:
            block = block[:left]
            left -= len(block)
        if block:
            yield block
        if left == 0:
            return
