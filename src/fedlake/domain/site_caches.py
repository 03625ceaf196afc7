"""Which read-through cache (``fedlake se cache``) a client should read an RSE's files from.

An RSE names its caches in the attribute ``caches``: entries separated by ``;``, each
``WHO=URL`` where WHO is a client network (``10.1.0.0/16``, ``2001:db8::/32``, a single
address) or ``site:NAME`` (the ``site`` a client reports in Rucio's ``client_location``),
and URL is the cache's base URL: the cache was started with ``--origin`` set to this
RSE's PFN head, so a file's cache URL is the base URL followed by the file's path below
the RSE's prefix. The first entry that matches the client wins::

    caches = 10.1.0.0/16=https://xcache.site-a.org:8443;site:SITE-B=https://cache.b.org

Parsing is strict (``InvalidInput`` names the bad entry): the value is checked when the
attribute is set, so a listing never meets a malformed one.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from fedlake.domain.errors import InvalidInput

__all__ = ["ATTRIBUTE", "CacheRoute", "cache_for", "parse_caches"]

ATTRIBUTE = "caches"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class CacheRoute:
    """Clients in ``network`` (or reporting ``site``) read through the cache at ``url``."""

    url: str
    network: Network | None = None
    site: str | None = None

    def matches(self, ip: str | None, site: str | None) -> bool:
        if self.site is not None:
            return site is not None and site == self.site
        if ip is None or self.network is None:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return address.version == self.network.version and address in self.network


def _route(entry: str) -> CacheRoute:
    who, sep, url = entry.partition("=")
    who, url = who.strip(), url.strip()
    if not sep or not who or not url:
        raise InvalidInput(f"cache entry {entry!r}: write NETWORK=URL or site:NAME=URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"cache entry {entry!r}: the cache URL must be http(s)://host[:port]")
    if parts.query or parts.fragment:
        raise InvalidInput(f"cache entry {entry!r}: the cache URL takes no query or fragment")
    url = url.rstrip("/") + "/"
    if who.startswith("site:"):
        site = who[5:].strip()
        if not site:
            raise InvalidInput(f"cache entry {entry!r}: site: needs a site name")
        return CacheRoute(url, site=site)
    try:
        network = ipaddress.ip_network(who, strict=False)
    except ValueError:
        raise InvalidInput(
            f"cache entry {entry!r}: {who!r} is neither a network (10.1.0.0/16) nor site:NAME"
        ) from None
    return CacheRoute(url, network=network)


def parse_caches(value: object) -> tuple[CacheRoute, ...]:
    """The routes of a ``caches`` attribute value (see the module docstring)."""
    if not isinstance(value, str):
        raise InvalidInput("the caches attribute must be a string: NETWORK=URL;site:NAME=URL")
    routes = tuple(_route(e) for e in value.split(";") if e.strip())
    if not routes:
        raise InvalidInput("the caches attribute names no cache: NETWORK=URL;site:NAME=URL")
    return routes


def cache_for(routes: tuple[CacheRoute, ...], ip: str | None, site: str | None) -> str | None:
    """The base URL of the first cache serving this client, if any."""
    for route in routes:
        if route.matches(ip, site):
            return route.url
    return None
