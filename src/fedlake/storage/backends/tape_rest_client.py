"""The davs/https/http plugin for tape endpoints: staging through the WLCG Tape REST API v1.

dCache, EOS-CTA, StoRM and ``fedlake se serve --tape`` serve tape over WebDAV: reading a
file that is on tape only fails (HTTP 503 on our SE) until the file has been brought
online through the `WLCG Tape REST API <https://github.com/wlcg-storage/wlcg-tape-rest-api>`_,
as FTS does. These classes are the WebDAV plugin plus :class:`~fedlake.storage.base.Stageable`
over that API; the registry builds them instead of the plain plugin when a protocol's
options say ``"tape_rest": true`` (the transfer engine stages a source whose plugin is
``Stageable``).

- Discovery: ``GET <scheme>://<host:port>/.well-known/wlcg-tape-rest-api`` names the API
  endpoints; the first ``v1`` one is used (its URI as advertised, which may be on another
  port or path), cached per host for an hour. A host without the document, or without a
  ``v1`` endpoint, raises ``ProtocolNotSupported``.
- ``stage``: ``POST {endpoint}/stage`` of the URL's path with ``diskLifetime`` (the pin),
  giving the request id; it is kept in memory per URL, and staging the URL again while the
  recall is pending (``GET {endpoint}/stage/{id}``) returns the same id instead of asking
  again. A recall the server reports ``FAILED`` raises (see below).
- ``is_online``: ``POST {endpoint}/archiveinfo`` of the path: ``DISK`` or ``DISK_AND_TAPE``
  is online, ``TAPE`` is not. It needs no request id, so it works for files staged by
  someone else or before a restart.
- ``release``: ``POST {endpoint}/release/{id}`` of the path, with the id kept by
  ``stage``; a URL this instance did not stage is left alone (the pin, if any, expires).
- ``read`` of a file that is not online (HTTP 503) raises
  :class:`~fedlake.storage.base.NotOnline` (a ``TransientStorageError``).

Requests carry the same credentials as the plugin's other calls (the token of
``fedlake.storage.credentials.bearer`` in force, else the ``token`` option). Errors map as
the plugin's others do (``fedlake.storage.backends._dav.status_error``; the detail of an
``application/problem+json`` answer is kept in the message); a path the tape system does
not know (``archiveinfo`` error, locality ``NONE`` or ``LOST``, a recall failed with "not
found") is ``FileNotFoundError``, a directory ``IsADirectoryError``; ``404``/``405``/``501``
from an API resource (not a tape REST endpoint after all) is ``ProtocolNotSupported``.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from typing import Any, NoReturn
from urllib.parse import urljoin

import httpx

from fedlake.domain.errors import ProtocolNotSupported
from fedlake.storage.backends._dav import http_url, path_of, raise_for_status, status_error
from fedlake.storage.backends.webdav import HttpsStorage, HttpStorage, WebDAVStorage
from fedlake.storage.base import NotOnline, Stageable, TransientStorageError

__all__ = ["DISCOVERY", "HttpTapeStorage", "HttpsTapeStorage", "WebDAVTapeStorage"]

log = logging.getLogger(__name__)

DISCOVERY = "/.well-known/wlcg-tape-rest-api"
VERSION = "v1"
DISCOVERY_TTL = 3600.0  # seconds a host's discovered endpoint is trusted
MAX_REQUESTS = 100_000  # request ids remembered for release (oldest forgotten first)
_ONLINE = frozenset({"DISK", "DISK_AND_TAPE"})
_PENDING = frozenset({"SUBMITTED", "STARTED"})
_JSON = {"Accept": "application/json"}


class WebDAVTapeStorage(WebDAVStorage, Stageable):
    """WebDAV/HTTP(S) tape endpoint, staged through the WLCG Tape REST API v1."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._tape_lock = threading.Lock()
        self._tape_endpoints: dict[str, tuple[str, float]] = {}  # host → (endpoint, until)
        self._stage_ids: OrderedDict[str, str] = OrderedDict()  # url → request id

    # --- discovery -------------------------------------------------------------------------

    def tape_endpoint(self, url: str) -> str:
        """The Tape REST API v1 endpoint (no trailing slash) of ``url``'s host."""
        host = _host(url)
        with self._tape_lock:
            found = self._tape_endpoints.get(host)
        if found is not None and found[1] > time.monotonic():
            return found[0]
        endpoint = self._discover(host)
        with self._tape_lock:
            self._tape_endpoints[host] = (endpoint, time.monotonic() + DISCOVERY_TTL)
        return endpoint

    def _discover(self, host: str) -> str:
        wire = host + DISCOVERY
        r = self.request("GET", wire, headers=_JSON)
        if r.status_code in (404, 405, 501):
            raise ProtocolNotSupported(
                f"{host} offers no WLCG Tape REST API (GET {wire}: HTTP {r.status_code}); "
                "is this a tape endpoint? Otherwise drop the protocol's tape_rest option"
            )
        raise_for_status(r, "GET", wire)
        try:
            doc = r.json()
        except ValueError:
            doc = None
        endpoints = doc.get("endpoints") if isinstance(doc, dict) else None
        if not isinstance(endpoints, list):
            raise ProtocolNotSupported(
                f"GET {wire}: not a WLCG Tape REST API discovery document (no endpoints list)"
            )
        versions = []
        for entry in endpoints:
            if not isinstance(entry, dict):
                continue
            versions.append(str(entry.get("version")))
            uri = entry.get("uri")
            if entry.get("version") == VERSION and isinstance(uri, str) and uri:
                endpoint = urljoin(wire, uri).rstrip("/")
                if endpoint.partition("://")[0] in ("http", "https"):
                    return endpoint
        raise ProtocolNotSupported(
            f"GET {wire}: no {VERSION} endpoint of the WLCG Tape REST API "
            f"(versions offered: {', '.join(versions) or 'none'})"
        )

    def _forget_endpoint(self, url: str) -> None:
        """Discover ``url``'s endpoint again next time (it answered as no API does)."""
        with self._tape_lock:
            self._tape_endpoints.pop(_host(url), None)

    # --- calls -----------------------------------------------------------------------------

    def _call(
        self, method: str, url: str, resource: str, body: object = None
    ) -> tuple[httpx.Response, str]:
        """One API request about ``url``'s host: (the response, read; the wire URL)."""
        endpoint = self.tape_endpoint(url)
        wire = f"{endpoint}/{resource}"
        headers = dict(_JSON)
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body).encode()
        return self.request(method, wire, headers=headers, content=content), wire

    def _api_error(self, r: httpx.Response, what: str, wire: str, url: str) -> NoReturn:
        msg = f"{what} {wire}: HTTP {r.status_code} {r.reason_phrase}".rstrip()
        if said := _detail(r):
            msg += f": {said}"
        if r.status_code in (404, 405, 501):  # the resource is not there: a wrong endpoint
            self._forget_endpoint(url)
            raise ProtocolNotSupported(f"{msg} (not a WLCG Tape REST API {VERSION} resource)")
        raise status_error(r.status_code, msg)

    @staticmethod
    def _json(r: httpx.Response, what: str, wire: str) -> Any:
        try:
            return r.json()
        except ValueError as exc:
            raise TransientStorageError(
                errno.EIO, f"{what} {wire}: the answer is not JSON ({exc})"
            ) from exc

    # --- Stageable -------------------------------------------------------------------------

    def stage(self, url: str, *, pin_seconds: float = 3600.0) -> str:
        if not math.isfinite(pin_seconds) or pin_seconds <= 0:
            raise ValueError(f"pin_seconds must be a positive number of seconds, not {pin_seconds}")
        path = tape_path(url)
        with self._tape_lock:
            known = self._stage_ids.get(url)
        if known is not None and self._standing(url, path, known):
            return known
        body = {"files": [{"path": path, "diskLifetime": f"PT{math.ceil(pin_seconds)}S"}]}
        r, wire = self._call("POST", url, "stage", body)
        if r.status_code not in (200, 201):
            self._api_error(r, "POST", wire, url)
        doc = self._json(r, "POST", wire)
        request_id = doc.get("requestId") if isinstance(doc, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise TransientStorageError(errno.EIO, f"POST {wire}: the answer has no requestId")
        with self._tape_lock:
            self._stage_ids[url] = request_id
            self._stage_ids.move_to_end(url)
            while len(self._stage_ids) > MAX_REQUESTS:
                self._stage_ids.popitem(last=False)
        return request_id

    def _standing(self, url: str, path: str, request_id: str) -> bool:
        """Whether request ``request_id`` still brings ``path`` online: its recall is
        running, or it completed and the file is online (it may have completed since the
        caller last looked: asking again would recall it twice). A FAILED recall raises
        (and is forgotten)."""
        r, wire = self._call("GET", url, f"stage/{request_id}")
        if r.status_code == 404:  # the server forgot the request: ask again
            return False
        if r.status_code != 200:
            self._api_error(r, "GET", wire, url)
        doc = self._json(r, "GET", wire)
        files = doc.get("files") if isinstance(doc, dict) else None
        entry = _entry(files, path)
        if entry is None:
            return False
        state = str(entry.get("state", "")).upper()
        if state == "FAILED":
            with self._tape_lock:
                self._stage_ids.pop(url, None)
            _file_error(url, f"the recall failed: {entry.get('error') or 'no reason given'}")
        if state == "COMPLETED":
            return self.is_online(url)  # else the disk copy went since: recall it again
        return state in _PENDING

    def is_online(self, url: str) -> bool:
        path = tape_path(url)
        r, wire = self._call("POST", url, "archiveinfo", {"paths": [path]})
        if r.status_code != 200:
            self._api_error(r, "POST", wire, url)
        entry = _entry(self._json(r, "POST", wire), path)
        if entry is None:
            raise TransientStorageError(errno.EIO, f"POST {wire}: the answer does not name {path}")
        if "error" in entry:
            _file_error(url, str(entry["error"]))
        locality = str(entry.get("locality", "")).upper()
        if locality in _ONLINE:
            return True
        if locality == "TAPE":
            return False
        if locality in ("NONE", "LOST"):
            raise FileNotFoundError(
                errno.ENOENT, f"{url}: the tape system reports locality {locality}"
            )
        if locality == "UNAVAILABLE":
            raise TransientStorageError(errno.EAGAIN, f"{url}: the tape system says UNAVAILABLE")
        raise TransientStorageError(errno.EIO, f"POST {wire}: unknown locality {locality!r}")

    def release(self, url: str) -> None:
        with self._tape_lock:
            request_id = self._stage_ids.pop(url, None)
        if request_id is None:
            log.debug("release %s: not staged by this plugin, nothing to release", url)
            return
        r, wire = self._call("POST", url, f"release/{request_id}", {"paths": [tape_path(url)]})
        if r.status_code == 404:  # the request is gone, and its pins with it
            log.debug("release %s: the server no longer knows request %s", url, request_id)
            return
        if r.status_code >= 300:
            self._api_error(r, "POST", wire, url)

    # --- reading ---------------------------------------------------------------------------

    def _fail(self, response: httpx.Response, what: str, wire: str) -> NoReturn:
        if what == "GET" and response.status_code == 503:  # on tape only (dCache, our SE)
            try:
                raise_for_status(response, what, wire)
            except TransientStorageError as exc:
                raise NotOnline(errno.EAGAIN, exc.strerror) from None
        super()._fail(response, what, wire)


class HttpsTapeStorage(WebDAVTapeStorage, HttpsStorage):
    scheme = "https"


class HttpTapeStorage(WebDAVTapeStorage, HttpStorage):
    scheme = "http"


# --- helpers ---------------------------------------------------------------------------


def _host(url: str) -> str:
    """``scheme://host:port`` of a davs/https/http URL, on the wire."""
    scheme, _, rest = http_url(url).partition("://")
    return f"{scheme}://{rest.partition('/')[0]}"


def tape_path(url: str) -> str:
    """The path the Tape REST API names a file by: the URL's literal path."""
    http_url(url)  # a davs/https/http URL with a host, or ValueError
    return re.sub("/+", "/", path_of(url))


def _entry(items: object, path: str) -> dict[str, Any] | None:
    """The item about ``path`` in a list of ``{"path": ...}`` items (the only one, when
    the server wrote the path differently)."""
    if not isinstance(items, list):
        return None
    found = [i for i in items if isinstance(i, dict)]
    for item in found:
        if item.get("path") == path:
            return item
    return found[0] if len(found) == 1 else None


def _file_error(url: str, error: str) -> NoReturn:
    """Raise what the tape system said about one file."""
    text = error.lower()
    if "not found" in text or "no such" in text or "does not exist" in text:
        raise FileNotFoundError(errno.ENOENT, f"{url}: unknown to the tape system ({error})")
    if "directory" in text:
        raise IsADirectoryError(errno.EISDIR, f"{url}: {error}")
    raise OSError(errno.EIO, f"{url}: {error}")


def _detail(r: httpx.Response) -> str:
    """The reason in an error answer: an RFC 7807 problem's detail (or title), else the
    body's first 300 characters on one line."""
    try:
        text = r.text
    except (httpx.HTTPError, httpx.StreamError):
        return ""
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and (doc.get("detail") or doc.get("title")):
        text = str(doc.get("detail") or doc.get("title"))
    return " ".join(text.split())[:300]
