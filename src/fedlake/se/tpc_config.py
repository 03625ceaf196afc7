"""The ``[tpc]`` table of the SE configuration: which remote servers HTTP third-party copy
may talk to, how often it reports progress, and how it checks their certificates.

    [tpc]
    allow = ["127.0.0.1", "se.example.org:8443", "https://other.example.org/cms/"]
    marker_interval = 5.0      # seconds between two performance markers
    timeout = 60.0             # seconds to connect, and without a byte, before giving up
    verify_tls = true          # check the remote server's certificate
    ca_file = "/etc/pki/tls/certs/ca-bundle.crt"    # optional: CAs to trust (PEM bundle)
    ca_dir = "/etc/grid-security/certificates"      # optional: a hashed CA directory

An ``allow`` entry is a host (``name``, ``name:port``, ``[v6]:port``; any scheme) or a URL
prefix (``https://name[:port]/path/``: the scheme, host and port must match and the path
must be below that one). The default allows loopback only (``localhost``, ``127.0.0.1``,
``::1``); anything else is refused with 403 before a byte moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fedlake.domain.errors import InvalidInput

__all__ = ["LOOPBACK", "TPCConfig", "normalise_url", "parse_tpc"]

#: the default allow-list: this host only
LOOPBACK = ("localhost", "127.0.0.1", "::1")
_SCHEMES = {"http": "http", "https": "https", "dav": "http", "davs": "https"}
_PORTS = {"http": 80, "https": 443}


def normalise_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s)/dav(s) URL, davs as https (ValueError)."""
    parts = urlsplit(url.strip())
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ValueError(f"{url[:200]!r} is not an http, https, dav or davs URL")
    try:
        port = parts.port or _PORTS[scheme]
    except ValueError:
        raise ValueError(f"{url[:200]!r} has a bad port") from None
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url[:200]!r} holds a user name or password; send a token instead")
    return scheme, parts.hostname.lower(), port, parts.path or "/"


@dataclass(frozen=True, slots=True)
class _Rule:
    host: str
    port: int | None = None  # None: any port
    scheme: str | None = None  # set for URL prefixes
    path: str = "/"

    def matches(self, scheme: str, host: str, port: int, path: str) -> bool:
        if host != self.host or (self.port is not None and port != self.port):
            return False
        if self.scheme is not None and scheme != self.scheme:
            return False
        prefix = self.path.rstrip("/")
        return not prefix or path == prefix or path.startswith(prefix + "/")


def _rule(entry: str) -> _Rule:
    if "://" in entry:
        scheme, host, port, path = normalise_url(entry)
        return _Rule(host, port, scheme, path)
    text = entry.strip()
    if text.count(":") > 1 and not text.startswith("["):  # a bare IPv6 address
        text = f"[{text}]"
    parts = urlsplit(f"//{text}")
    if not parts.hostname or parts.path or parts.query or "@" in entry:
        raise ValueError(f"{entry!r} is not a host, host:port or URL prefix")
    try:
        any_port = parts.port
    except ValueError:
        raise ValueError(f"{entry!r} has a bad port") from None
    return _Rule(parts.hostname.lower(), any_port)


@dataclass(frozen=True, slots=True)
class TPCConfig:
    allow: tuple[str, ...] = LOOPBACK
    marker_interval: float = 5.0
    timeout: float = 60.0
    verify_tls: bool = True
    ca_file: str | None = None
    ca_dir: str | None = None

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be copied from or to (None: it may)."""
        scheme, host, port, path = normalise_url(url)
        for entry in self.allow:
            if _rule(entry).matches(scheme, host, port, path):
                return None
        return (
            f"third-party copy with {scheme}://{host}:{port} is not allowed by this storage "
            f"element's configuration (allowed: {', '.join(self.allow)}; see [tpc] allow)"
        )


def _fail(key: str, msg: str) -> InvalidInput:
    return InvalidInput(f"SE configuration, [tpc] {key}: {msg}")


def _seconds(raw: dict[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(key, f"must be a number of seconds, not {value!r}")
    if not 0 < value < float("inf"):
        raise _fail(key, f"must be above 0, not {value!r}")
    return float(value)


def parse_tpc(raw: Any) -> TPCConfig:
    """The ``[tpc]`` table; InvalidInput names the key that is wrong."""
    if not isinstance(raw, dict):
        raise InvalidInput("SE configuration, [tpc]: must be a table")
    known = set(TPCConfig.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(
            f"SE configuration, [tpc]: unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    allow = raw.get("allow", list(LOOPBACK))
    if not isinstance(allow, list) or not all(isinstance(a, str) and a for a in allow):
        raise _fail("allow", f"must be a list of hosts or URL prefixes, not {allow!r}")
    for entry in allow:
        try:
            _rule(entry)
        except ValueError as exc:
            raise _fail("allow", str(exc)) from None
    verify = raw.get("verify_tls", True)
    if not isinstance(verify, bool):
        raise _fail("verify_tls", f"must be true or false, not {verify!r}")
    paths: dict[str, str | None] = {}
    for key in ("ca_file", "ca_dir"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise _fail(key, f"must be a path, not {value!r}")
        paths[key] = value
    return TPCConfig(
        allow=tuple(allow),
        marker_interval=_seconds(raw, "marker_interval", 5.0),
        timeout=_seconds(raw, "timeout", 60.0),
        verify_tls=verify,
        ca_file=paths["ca_file"],
        ca_dir=paths["ca_dir"],
    )
