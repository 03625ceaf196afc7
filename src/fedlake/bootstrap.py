"""Wiring: build the database, token service and throttles from settings, once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from fedlake.auth.jwks_cache import JWKSCache
from fedlake.auth.tokens import TokenService
from fedlake.auth.trust import Trust
from fedlake.auth.userpass import Throttle
from fedlake.catalog.db import Database
from fedlake.catalog.migrate import upgrade
from fedlake.settings import Settings, load_settings
from fedlake.transfers import wakeup

__all__ = ["Lake", "build_lake", "ensure_root", "run_dir"]


@dataclass
class Lake:
    """Everything a request or a daemon needs; passed down explicitly."""

    settings: Settings
    db: Database
    tokens: TokenService
    throttle: Throttle = field(default_factory=Throttle)
    #: trusted external issuers and their keys
    trust: Trust = field(init=False, repr=False)

    def __post_init__(self) -> None:
        keys = JWKSCache(min_refresh=self.settings.jwks_min_refresh)
        self.trust = Trust(self.db, config_ttl=self.settings.auth_cache_seconds, keys=keys)

    def close(self) -> None:
        self.db.dispose()


def build_lake(settings: Settings | None = None, *, migrate: bool = True) -> Lake:
    settings = settings or load_settings()
    db = Database(settings.database_url)
    if migrate:
        upgrade(db)
    tokens = TokenService(
        db,
        settings.public_url,
        settings.token_lifetime,
        algorithm=settings.token_algorithm,
        refresh_lifetime=settings.refresh_token_lifetime,
    )
    wakeup.set_run_dir(run_dir(settings))
    return Lake(settings=settings, db=db, tokens=tokens)


def run_dir(settings: Settings) -> Path:
    """Sockets and other per-host runtime files of the lake."""
    return Path(settings.data_dir) / "run"


def ensure_root(lake: Lake) -> str | None:
    """Create the root account on first start; returns the password if one was generated."""
    from fedlake.services import accounts as svc

    password = lake.settings.root_password
    generated = None
    if password is None:
        secret_file = Path(lake.settings.data_dir) / "root-password"
        if secret_file.exists():
            password = secret_file.read_text().strip()
        else:
            password = generated = secrets.token_urlsafe(16)
    created = svc.bootstrap_root(lake, password)
    if created and generated is not None:
        secret_file = Path(lake.settings.data_dir) / "root-password"
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        secret_file.touch(mode=0o600)
        secret_file.write_text(generated)
        return generated
    return None
