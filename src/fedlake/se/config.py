"""The storage element's configuration: one TOML file (``--config``), documented in docs/se.md.

The SE runs without the lake's database: the issuers it trusts and the storage areas with
their group policies are all in this file. Loading fails on unknown keys, wrong types and
bad values, naming the key and what to write instead.

    [server]
    root = "/data"              # the served directory (the CLI's --root wins)
    allow_anonymous = false     # anyone may read and write (development and tests only)
    put_md5 = false             # compute md5 on every PUT too (adler32 always is)
    create_parents = false      # a PUT creates missing parent collections (as MKCOL would)

    [[issuers]]
    issuer = "https://iam.example.org/"
    audiences = ["https://wlcg.cern.ch/jwt/v1/any"]
    algorithms = ["RS256", "ES256"]          # optional
    wlcg_profile = true                      # optional
    discovery_url = "https://..."            # optional

    [[areas]]
    path = "/cms"
    policies = [
      { who = "/cms/production", actions = ["read", "write"] },
      { who = "any-authenticated", actions = ["read"] },
      { who = "anonymous", actions = ["write"], deny = true },
    ]

    [tape]                      # tape mode (docs/se.md#tape-mode): the root is a tape emulation
    recall_latency = 2.0        # seconds before a recall completes, plus size / recall_throughput
    recall_throughput = 200e6   # bytes per second
    buffer_bytes = 10737418240  # disk buffer of online copies
    write_pin = 300.0           # seconds a file written through the tape emulation stays pinned
    sitename = "fedlake"        # the WLCG Tape REST API discovery document's sitename
    description = "..."

    [s3]                        # serve an S3 bucket instead of a directory (docs/se.md#s3-backend)
    url = "s3://s3.example.org:9000/bucket/prefix"   # the CLI's --s3 wins
    access_key = "..."          # else FEDLAKE_S3_ACCESS_KEY / FEDLAKE_S3_SECRET_KEY
    secret_key = "..."
    region = "us-east-1"        # also: addressing_style, secure, verify, part_size,
                                # max_concurrency, anonymous, connect_timeout, read_timeout
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedlake.auth.capabilities import normalise_path
from fedlake.auth.trust import ALLOWED_ALGORITHMS, DEFAULT_ALGORITHMS, WLCG_ANY_AUDIENCE
from fedlake.domain.errors import InvalidInput
from fedlake.se.tpc_config import TPCConfig, parse_tpc

__all__ = [
    "ACTIONS",
    "ANONYMOUS",
    "ANY_AUTHENTICATED",
    "S3_OPTIONS",
    "Area",
    "IssuerEntry",
    "Policy",
    "S3Config",
    "SEConfig",
    "TapeConfig",
    "check_s3_url",
    "load_config",
    "parse_config",
]

ANONYMOUS = "anonymous"
ANY_AUTHENTICATED = "any-authenticated"
ACTIONS = ("read", "write")


@dataclass(frozen=True, slots=True)
class IssuerEntry:
    issuer: str
    audiences: tuple[str, ...] = (WLCG_ANY_AUDIENCE,)
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    wlcg_profile: bool = True
    discovery_url: str | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """Who (a group such as ``/cms``, ``anonymous`` or ``any-authenticated``) may do which
    actions; ``deny`` turns it into a refusal. The first policy that matches decides."""

    who: str
    actions: frozenset[str]
    deny: bool = False


@dataclass(frozen=True, slots=True)
class Area:
    """A storage area: a path prefix with its ordered policies."""

    path: str
    policies: tuple[Policy, ...]


@dataclass(frozen=True, slots=True)
class TapeConfig:
    """Tape mode: the options of the tape emulation and of the WLCG Tape REST API."""

    recall_latency: float = 2.0
    recall_throughput: float = 200e6
    buffer_bytes: int = 10 * 1024**3
    write_pin: float = 300.0
    sitename: str = "fedlake"
    description: str = "fedlake storage element in tape mode (emulated tape)"


@dataclass(frozen=True, slots=True)
class S3Config:
    """The S3 backend: the bucket (and key prefix) served, and the S3 plugin's options
    (``fedlake.storage.backends.s3.S3Storage``); ``url`` None: given by ``--s3``."""

    url: str | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False)


#: the ``[s3]`` keys besides ``url``, with their types (the S3 plugin's options)
S3_OPTIONS: dict[str, tuple[type, ...]] = {
    "access_key": (str,),
    "secret_key": (str,),
    "region": (str,),
    "addressing_style": (str,),
    "secure": (bool,),
    "verify": (bool, str),
    "part_size": (int,),
    "max_concurrency": (int,),
    "anonymous": (bool,),
    "connect_timeout": (int, float),
    "read_timeout": (int, float),
}


@dataclass(frozen=True, slots=True)
class SEConfig:
    root: Path | None = None
    allow_anonymous: bool = False
    put_md5: bool = False
    create_parents: bool = False  # PUT makes missing parent collections (se.write)
    issuers: tuple[IssuerEntry, ...] = ()
    areas: tuple[Area, ...] = field(default=())
    tpc: TPCConfig = field(default_factory=TPCConfig)  # HTTP third-party copy (se.tpc)
    tape: TapeConfig | None = None  # tape mode when set
    s3: S3Config | None = None  # an S3 bucket is served instead of root when set


def _fail(where: str, msg: str) -> InvalidInput:
    return InvalidInput(f"SE configuration, {where}: {msg}")


def _only(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _fail(
            where, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )


def _typed(table: dict[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    value = table.get(key, default)
    if value is default:
        return value
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _fail(where, f"{key} must be a {kind.__name__}, not {value!r}")
    return value


def _strings(
    table: dict[str, Any], key: str, where: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    value = table.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _fail(where, f"{key} must be a non-empty list of strings, not {value!r}")
    return tuple(value)


def _issuer(raw: Any, where: str) -> IssuerEntry:
    if not isinstance(raw, dict):
        raise _fail(where, "must be a table")
    _only(raw, {"issuer", "audiences", "algorithms", "wlcg_profile", "discovery_url"}, where)
    issuer = _typed(raw, "issuer", str, where, None)
    if not issuer:
        raise _fail(where, "issuer (the token's iss, a URL) is required")
    algorithms = _strings(raw, "algorithms", where, DEFAULT_ALGORITHMS)
    bad = [a for a in algorithms if a not in ALLOWED_ALGORITHMS]
    if bad:
        raise _fail(where, f"algorithms {bad} not allowed; use {', '.join(ALLOWED_ALGORITHMS)}")
    return IssuerEntry(
        issuer=issuer,
        audiences=_strings(raw, "audiences", where, (WLCG_ANY_AUDIENCE,)),
        algorithms=algorithms,
        wlcg_profile=_typed(raw, "wlcg_profile", bool, where, True),
        discovery_url=_typed(raw, "discovery_url", str, where, None),
    )


def _policy(raw: Any, where: str) -> Policy:
    if not isinstance(raw, dict):
        raise _fail(where, 'must be a table such as { who = "/cms", actions = ["read"] }')
    _only(raw, {"who", "actions", "deny"}, where)
    who = _typed(raw, "who", str, where, None)
    if not who or not (who.startswith("/") or who in (ANONYMOUS, ANY_AUTHENTICATED)):
        raise _fail(
            where, f"who must be a group (/name), {ANONYMOUS} or {ANY_AUTHENTICATED}, not {who!r}"
        )
    actions = _strings(raw, "actions", where, ())
    if not actions or any(a not in ACTIONS for a in actions):
        raise _fail(where, f"actions must list some of {', '.join(ACTIONS)}, not {actions!r}")
    return Policy(who, frozenset(actions), _typed(raw, "deny", bool, where, False))


def _area(raw: Any, where: str) -> Area:
    if not isinstance(raw, dict):
        raise _fail(where, "must be a table")
    _only(raw, {"path", "policies"}, where)
    path = _typed(raw, "path", str, where, None)
    if not path:
        raise _fail(where, "path (the area's prefix, such as /cms) is required")
    try:
        clean = normalise_path(path)
    except ValueError as exc:
        raise _fail(where, f"path: {exc}") from None
    policies = raw.get("policies", [])
    if not isinstance(policies, list):
        raise _fail(where, "policies must be a list of tables")
    return Area(clean, tuple(_policy(p, f"{where}.policies[{i}]") for i, p in enumerate(policies)))


def _number(
    table: dict[str, Any], key: str, where: str, default: float, *, positive: bool
) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise _fail(where, f"{key} must be a number, not {value!r}")
    if value < 0 or (positive and value == 0) or value == float("inf"):
        raise _fail(
            where, f"{key} must be a finite number {'above' if positive else 'of at least'} 0"
        )
    return float(value)


def _tape(raw: Any, where: str) -> TapeConfig:
    if not isinstance(raw, dict):
        raise _fail(where, "must be a table")
    known = {f for f in TapeConfig.__dataclass_fields__}
    _only(raw, known, where)
    d = TapeConfig()
    buffer_bytes = _number(raw, "buffer_bytes", where, d.buffer_bytes, positive=True)
    if not buffer_bytes.is_integer():
        raise _fail(where, f"buffer_bytes must be whole bytes, not {buffer_bytes!r}")
    return TapeConfig(
        recall_latency=_number(raw, "recall_latency", where, d.recall_latency, positive=False),
        recall_throughput=_number(
            raw, "recall_throughput", where, d.recall_throughput, positive=True
        ),
        buffer_bytes=int(buffer_bytes),
        write_pin=_number(raw, "write_pin", where, d.write_pin, positive=False),
        sitename=_typed(raw, "sitename", str, where, d.sitename) or d.sitename,
        description=_typed(raw, "description", str, where, d.description),
    )


def _s3(raw: Any, where: str) -> S3Config:
    if not isinstance(raw, dict):
        raise _fail(where, "must be a table")
    _only(raw, {"url", *S3_OPTIONS}, where)
    url = _typed(raw, "url", str, where, None)
    if url is not None:
        check_s3_url(url, where)
    options: dict[str, Any] = {}
    for key, kinds in S3_OPTIONS.items():
        if key not in raw:
            continue
        value = raw[key]
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            names = " or ".join(k.__name__ for k in kinds)
            raise _fail(where, f"{key} must be a {names}, not {value!r}")
        options[key] = value
    return S3Config(url, options)


def check_s3_url(url: str, where: str) -> None:
    """InvalidInput unless ``url`` is ``s3://HOST[:PORT]/BUCKET[/PREFIX]``."""
    from fedlake.storage.backends.s3 import parse_url

    try:
        parse_url(url)
    except ValueError as exc:
        raise _fail(where, str(exc)) from None
    if any(part in (".", "..") for part in url[len("s3://") :].split("/")[1:]):
        raise _fail(where, f"{url!r}: the prefix may not hold '.' or '..' names")


def parse_config(data: dict[str, Any]) -> SEConfig:
    """An SEConfig from the parsed TOML document; InvalidInput names what is wrong."""
    _only(data, {"server", "issuers", "areas", "tape", "tpc", "s3"}, "top level")
    server = data.get("server", {})
    if not isinstance(server, dict):
        raise _fail("[server]", "must be a table")
    _only(server, {"root", "allow_anonymous", "put_md5", "create_parents"}, "[server]")
    root = _typed(server, "root", str, "[server]", None)
    issuers = data.get("issuers", [])
    areas = data.get("areas", [])
    if not isinstance(issuers, list) or not isinstance(areas, list):
        raise _fail("top level", "issuers and areas must be arrays of tables ([[issuers]])")
    parsed_areas = tuple(_area(a, f"areas[{i}]") for i, a in enumerate(areas))
    paths = [a.path for a in parsed_areas]
    if len(set(paths)) != len(paths):
        raise _fail("areas", "two areas have the same path")
    parsed_issuers = tuple(_issuer(x, f"issuers[{i}]") for i, x in enumerate(issuers))
    names = [x.issuer for x in parsed_issuers]
    if len(set(names)) != len(names):
        raise _fail("issuers", "an issuer is listed twice")
    return SEConfig(
        root=Path(root) if root else None,
        allow_anonymous=_typed(server, "allow_anonymous", bool, "[server]", False),
        put_md5=_typed(server, "put_md5", bool, "[server]", False),
        create_parents=_typed(server, "create_parents", bool, "[server]", False),
        issuers=parsed_issuers,
        areas=parsed_areas,
        tpc=parse_tpc(data["tpc"]) if "tpc" in data else TPCConfig(),
        tape=_tape(data["tape"], "[tape]") if "tape" in data else None,
        s3=_s3(data["s3"], "[s3]") if "s3" in data else None,
    )


def load_config(path: str | Path) -> SEConfig:
    """Read and check the TOML file at ``path``."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise InvalidInput(f"cannot read the SE configuration {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"the SE configuration {path} is not valid TOML: {exc}") from None
    return parse_config(data)
