"""The WebDAV ``207 Multi-Status`` body of PROPFIND (RFC 4918), as davix, gfal2 and our own
client (``fedlake.storage.backends._dav.parse_multistatus``) read it.

Every entry carries ``resourcetype`` (``collection`` for directories), ``getlastmodified``
(RFC 1123), ``creationdate`` (RFC 3339), ``getetag`` and, for files, ``getcontentlength``
and ``getcontenttype``. Hrefs are percent-encoded paths; collections end in ``/``.
Whatever properties the request body names, these are the ones answered (as ``allprop``).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from urllib.parse import quote

from fedlake.se.paths import STATE_DIR

__all__ = [
    "entry_xml",
    "etag",
    "href",
    "http_date",
    "listing",
    "listing_page",
    "multistatus",
    "multistatus_body",
]

_HEAD = b'<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">\n'
_TAIL = b"</D:multistatus>\n"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(seconds: float) -> str:
    """RFC 9110 date (``Sun, 06 Nov 1994 08:49:37 GMT``), locale-independent."""
    t = time.gmtime(seconds)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def etag(st: os.stat_result) -> str:
    return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'


def href(url_path: str, is_dir: bool) -> str:
    encoded = quote(url_path.encode("utf-8", "surrogateescape"), safe="/")
    if is_dir and not encoded.endswith("/"):
        encoded += "/"
    return encoded


def _response(url_path: str, st: os.stat_result) -> str:
    return entry_xml(
        url_path,
        stat.S_ISDIR(st.st_mode),
        st.st_size,
        st.st_mtime,
        etag(st),
        created=min(st.st_ctime, st.st_mtime),
    )


def entry_xml(
    url_path: str,
    is_dir: bool,
    size: int,
    mtime: float,
    tag: str,
    *,
    created: float | None = None,
) -> str:
    """One ``<D:response>`` of a multistatus body: a file of ``size`` bytes or a
    collection, modified at ``mtime`` (``created``: when made, default ``mtime``)."""
    made = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime if created is None else created))
    props = [
        "<D:resourcetype><D:collection/></D:resourcetype>" if is_dir else "<D:resourcetype/>",
        f"<D:getlastmodified>{http_date(mtime)}</D:getlastmodified>",
        f"<D:creationdate>{made}</D:creationdate>",
        f"<D:getetag>{_escape(tag)}</D:getetag>",
    ]
    if not is_dir:
        props.append(f"<D:getcontentlength>{size}</D:getcontentlength>")
        props.append("<D:getcontenttype>application/octet-stream</D:getcontenttype>")
    return (
        f"<D:response><D:href>{href(url_path, is_dir)}</D:href><D:propstat><D:prop>"
        + "".join(props)
        + "</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>\n"
    )


def multistatus_body(responses: list[str]) -> bytes:
    """The whole body around ``responses`` (from :func:`entry_xml`)."""
    return _HEAD + "".join(responses).encode("utf-8", "surrogateescape") + _TAIL


def multistatus(url_path: str, fs_path: str, depth: int, inside: Callable[[str], bool]) -> bytes:
    """The body for ``url_path`` (at ``fs_path``) and, with depth 1, its members (blocking).

    FileNotFoundError when ``fs_path`` does not exist; members that vanish while listed,
    entries that are neither files nor directories, and symbolic links that lead out of
    the root (``inside`` says) are left out."""
    st = os.stat(fs_path)
    parts = [_response(url_path, st)]
    if depth == 1 and stat.S_ISDIR(st.st_mode):
        base = url_path.rstrip("/")
        at_root = url_path == "/"
        with os.scandir(fs_path) as it:
            for entry in it:
                if at_root and entry.name == STATE_DIR:
                    continue
                if entry.is_symlink() and not inside(os.path.realpath(entry.path)):
                    continue
                try:
                    member = entry.stat()
                except OSError:
                    continue
                if stat.S_ISDIR(member.st_mode) or stat.S_ISREG(member.st_mode):
                    parts.append(_response(f"{base}/{entry.name}", member))
    return multistatus_body(parts)


def listing(url_path: str, fs_path: str) -> bytes:
    """A minimal HTML index of a directory, for browsers (blocking)."""
    names = []
    with os.scandir(fs_path) as it:
        for entry in it:
            if url_path == "/" and entry.name == STATE_DIR:
                continue
            names.append(entry.name + ("/" if entry.is_dir() else ""))
    return listing_page(url_path, names)


def listing_page(url_path: str, names: list[str]) -> bytes:
    """The HTML index of the collection ``url_path`` holding ``names`` (collections end
    in ``/``)."""
    base = url_path.rstrip("/")
    items = "".join(
        f'<li><a href="{href(base + "/" + n, False)}">{_escape(n)}</a></li>' for n in sorted(names)
    )
    title = _escape(url_path)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body><h1>{title}</h1><ul>{items}</ul></body></html>\n"
    ).encode("utf-8", "surrogateescape")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
