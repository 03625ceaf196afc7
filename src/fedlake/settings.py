"""All settings in one place: frozen dataclasses loaded once from ``FEDLAKE_*`` variables.

Only ``bootstrap`` reads them and passes them down. An unknown ``FEDLAKE_`` variable is
an error (a typo must not be silently ignored).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

__all__ = ["ENV_VARS", "Settings", "load_settings"]

#: every environment variable fedlake reads, with its help text
ENV_VARS: dict[str, str] = {
    "FEDLAKE_DATA_DIR": "directory for the catalogue and local RSE storage (default ~/.fedlake)",
    "FEDLAKE_DATABASE_URL": "SQLAlchemy URL of the catalogue (default SQLite in the data dir)",
    "FEDLAKE_HOST": "address the API listens on (default 127.0.0.1)",
    "FEDLAKE_PORT": "port the API listens on (default 8080)",
    "FEDLAKE_PUBLIC_URL": "URL clients use to reach the API; the token issuer name",
    "FEDLAKE_ROOT_PASSWORD": "password of the root account on first start (else generated)",
    "FEDLAKE_MAX_BODY_BYTES": "largest accepted request body in bytes (default 256 MiB)",
    "FEDLAKE_TOKEN_LIFETIME": "lifetime of issued access tokens in seconds (default 3600)",
    "FEDLAKE_TOKEN_ALGORITHM": "algorithm of new signing keys: ES256 (default) or RS256",
    "FEDLAKE_REFRESH_TOKEN_LIFETIME": (
        "lifetime of issued refresh tokens in seconds (default 2592000, 30 days)"
    ),
    "FEDLAKE_OIDC_PASSWORD_GRANT": (
        "true enables the OAuth password grant at /oidc/token (development only; default false)"
    ),
    "FEDLAKE_AUTH_CACHE_SECONDS": (
        "seconds a server process reuses a checked token and its account's state "
        "(default 5; 0 checks every request)"
    ),
    "FEDLAKE_POLICY_READ": (
        "who reads catalogue content: open (every authenticated account, default) or rules "
        "(scope owners and namespace rules with action read; docs/policy.md)"
    ),
    "FEDLAKE_JWKS_MIN_REFRESH": (
        "seconds between two fetches of a trusted issuer's keys caused by tokens with "
        "unknown key ids (default 30)"
    ),
    "FEDLAKE_TRANSFER_THREADS": (
        "transfers one worker process runs at once (default 128; `fedlake up` runs one worker)"
    ),
    "FEDLAKE_TRANSFER_COPY_PROCESSES": (
        "child processes a worker runs its copies in, its threads shared among them "
        "(default 1; 0: copies run in the worker's own threads, next to its claim and "
        "commit threads); more for hundreds of copies on high-latency links"
    ),
    "FEDLAKE_TRANSFER_MAX_ACTIVE": "lake-wide limit of running transfers (default: no limit)",
    "FEDLAKE_TRANSFER_LEASE_SECONDS": (
        "a worker's claim on a running transfer; a dead worker's transfers run again after "
        "it expires (default 60)"
    ),
    "FEDLAKE_RULE_REPAIR_DELAY": (
        "seconds before a STUCK rule's first repair round; doubles each round, at most 6 h "
        "(default 60)"
    ),
    "FEDLAKE_RULE_ASYNC_FILES": (
        "a rule on a dataset with more files than this is created asynchronously (state "
        "INJECT, placed by the rule-injector daemon); 0 never (default 200000)"
    ),
    "FEDLAKE_RULE_SUSPEND_AFTER": (
        "repair rounds after which a rule still STUCK is SUSPENDED (default 10)"
    ),
    "FEDLAKE_RULE_SUSPENDED_RETRY": (
        "seconds after which a SUSPENDED rule is tried again (default 86400)"
    ),
    "FEDLAKE_RULE_REPLICATING_TIMEOUT": (
        "seconds a rule's transfer may stay queued or running before its lock is STUCK "
        "and repaired (default 604800)"
    ),
    "FEDLAKE_DELETION_LEASE_SECONDS": (
        "a deletion daemon's claim on replicas it deletes; a killed daemon's deletions are "
        "done again after it expires (default 600)"
    ),
    "FEDLAKE_S3_ACCESS_KEY": "storage: S3 access key when an RSE protocol names none",
    "FEDLAKE_S3_SECRET_KEY": "storage: S3 secret key when an RSE protocol names none",
    "FEDLAKE_STORAGE_TOKEN": "storage: bearer token for WebDAV endpoints without their own",
    "FEDLAKE_URL": "client side: URL of the lake the CLI talks to",
    "FEDLAKE_ACCOUNT": "client side: account to act as",
    "FEDLAKE_USERNAME": "client side: username for userpass login",
    "FEDLAKE_PASSWORD": "client side: password for userpass login",
    "FEDLAKE_TOKEN": "client side: a bearer token to use instead of logging in",
    "FEDLAKE_TEST_DATABASE_URL": "tests: PostgreSQL URL to run the suite against",
}


YEAR = 365 * 86400

#: (field, lowest, highest, what the error says) of the settings with a range
_RANGES: tuple[tuple[str, int, int, str], ...] = (
    ("max_body_bytes", 1024, 2**62, "at least 1024"),
    ("token_lifetime", 60, 10 * YEAR, "at least 60 seconds"),
    ("refresh_token_lifetime", 60, 10 * YEAR, "at least 60 seconds"),
    ("auth_cache_seconds", 0, 300, "from 0 to 300 seconds"),
    ("jwks_min_refresh", 1, 3600, "from 1 to 3600 seconds"),
    ("transfer_threads", 1, 2000, "from 1 to 2000"),
    ("transfer_lease_seconds", 2, 86400, "from 2 to 86400"),
    ("transfer_copy_processes", 0, 64, "from 0 to 64"),
    ("rule_repair_delay", 1, 86400, "from 1 to 86400 seconds"),
    ("rule_async_files", 0, 2**62, "0 or more files"),
    ("rule_suspend_after", 1, 1000, "from 1 to 1000 rounds"),
    ("rule_suspended_retry", 1, YEAR, "from 1 s to 365 days"),
    ("rule_replicating_timeout", 60, YEAR, "from 60 s to 365 days"),
    ("deletion_lease_seconds", 2, 86400, "from 2 to 86400"),
)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path.home() / ".fedlake")
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    root_password: str | None = None
    max_body_bytes: int = 256 * 1024 * 1024
    token_lifetime: int = 3600
    token_algorithm: str = "ES256"  # noqa: S105 (an algorithm name, not a secret)
    refresh_token_lifetime: int = 30 * 86400
    oidc_password_grant: bool = False
    auth_cache_seconds: int = 5
    policy_read: str = "open"
    jwks_min_refresh: int = 30
    transfer_threads: int = 128
    transfer_max_active: int | None = None
    transfer_lease_seconds: int = 60
    transfer_copy_processes: int = 1
    rule_repair_delay: int = 60
    rule_async_files: int = 200_000
    rule_suspend_after: int = 10
    rule_suspended_retry: int = 86400
    rule_replicating_timeout: int = 7 * 86400
    deletion_lease_seconds: int = 600

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", self._default_database_url())
        if not self.public_url:
            object.__setattr__(self, "public_url", f"http://{self.host}:{self.port}")
        if self.port <= 0 or self.port > 65535:
            raise ValueError(f"FEDLAKE_PORT={self.port} is not a TCP port (1-65535)")
        if self.transfer_max_active is not None and self.transfer_max_active < 1:
            raise ValueError("FEDLAKE_TRANSFER_MAX_ACTIVE must be at least 1 (or unset)")
        if self.token_algorithm not in ("ES256", "RS256"):
            raise ValueError(
                f"FEDLAKE_TOKEN_ALGORITHM={self.token_algorithm!r}: use ES256 or RS256"
            )
        if self.policy_read not in ("open", "rules"):
            raise ValueError(f"FEDLAKE_POLICY_READ={self.policy_read!r}: use open or rules")
        for attr, low, high, text in _RANGES:
            if not low <= getattr(self, attr) <= high:
                raise ValueError(f"FEDLAKE_{attr.upper()} must be {text}")

    def _default_database_url(self) -> str:
        return f"sqlite:///{(self.data_dir / 'catalog.db').resolve()}"

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes``; values derived from a changed setting are derived again,
        values that were set explicitly are kept."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        derived_db = self.database_url == self._default_database_url()
        derived_url = self.public_url == f"http://{self.host}:{self.port}"
        if "data_dir" in changes and "database_url" not in changes and derived_db:
            values["database_url"] = ""
        if ("host" in changes or "port" in changes) and "public_url" not in changes and derived_url:
            values["public_url"] = ""
        values.update(changes)
        return Settings(**values)


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not an integer") from None


def _bool(env: Mapping[str, str], key: str) -> bool:
    raw = (env.get(key) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"{key}={raw!r} is not a boolean (true or false)")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read ``FEDLAKE_*`` variables; refuse unknown ones so typos are noticed."""
    env = os.environ if env is None else env
    unknown = sorted(k for k in env if k.startswith("FEDLAKE_") and k not in ENV_VARS)
    if unknown:
        raise ValueError(
            f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(ENV_VARS))}"
        )
    data_dir = Path(env.get("FEDLAKE_DATA_DIR") or Path.home() / ".fedlake").expanduser()
    return Settings(
        data_dir=data_dir,
        database_url=env.get("FEDLAKE_DATABASE_URL", ""),
        host=env.get("FEDLAKE_HOST", "127.0.0.1"),
        port=_int(env, "FEDLAKE_PORT", 8080),
        public_url=env.get("FEDLAKE_PUBLIC_URL", ""),
        root_password=env.get("FEDLAKE_ROOT_PASSWORD") or None,
        max_body_bytes=_int(env, "FEDLAKE_MAX_BODY_BYTES", 256 * 1024 * 1024),
        token_lifetime=_int(env, "FEDLAKE_TOKEN_LIFETIME", 3600),
        token_algorithm=env.get("FEDLAKE_TOKEN_ALGORITHM") or "ES256",
        refresh_token_lifetime=_int(env, "FEDLAKE_REFRESH_TOKEN_LIFETIME", 30 * 86400),
        oidc_password_grant=_bool(env, "FEDLAKE_OIDC_PASSWORD_GRANT"),
        auth_cache_seconds=_int(env, "FEDLAKE_AUTH_CACHE_SECONDS", 5),
        policy_read=env.get("FEDLAKE_POLICY_READ") or "open",
        jwks_min_refresh=_int(env, "FEDLAKE_JWKS_MIN_REFRESH", 30),
        transfer_threads=_int(env, "FEDLAKE_TRANSFER_THREADS", 128),
        transfer_max_active=(
            _int(env, "FEDLAKE_TRANSFER_MAX_ACTIVE", 0)
            if env.get("FEDLAKE_TRANSFER_MAX_ACTIVE")
            else None
        ),
        transfer_lease_seconds=_int(env, "FEDLAKE_TRANSFER_LEASE_SECONDS", 60),
        transfer_copy_processes=_int(env, "FEDLAKE_TRANSFER_COPY_PROCESSES", 1),
        rule_repair_delay=_int(env, "FEDLAKE_RULE_REPAIR_DELAY", 60),
        rule_async_files=_int(env, "FEDLAKE_RULE_ASYNC_FILES", 200_000),
        rule_suspend_after=_int(env, "FEDLAKE_RULE_SUSPEND_AFTER", 10),
        rule_suspended_retry=_int(env, "FEDLAKE_RULE_SUSPENDED_RETRY", 86400),
        rule_replicating_timeout=_int(env, "FEDLAKE_RULE_REPLICATING_TIMEOUT", 7 * 86400),
        deletion_lease_seconds=_int(env, "FEDLAKE_DELETION_LEASE_SECONDS", 600),
    )
