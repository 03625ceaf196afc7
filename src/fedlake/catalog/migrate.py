"""Apply the Alembic migrations (the only way the schema is created or changed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from fedlake.catalog.db import Database

__all__ = ["alembic_config", "downgrade", "upgrade"]

_HERE = Path(__file__).parent


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to call on every start."""
    _run(db, lambda cfg: command.upgrade(cfg, revision))


def downgrade(db: Database, revision: str) -> None:
    """Take the schema back to ``revision`` (for tests of the migrations)."""
    _run(db, lambda cfg: command.downgrade(cfg, revision))


def _run(db: Database, step: Callable[[Config], None]) -> None:
    """``step`` in one transaction. On SQLite, foreign keys are off while it runs (as
    SQLite's docs prescribe for rebuilding a table: a rebuilt table that others refer to
    must not cascade its drop to them), and checked in full before it commits."""
    cfg = alembic_config(db.url)
    with db.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        driver: Any = conn.connection.driver_connection
        if sqlite:  # outside any transaction, or SQLite ignores it
            driver.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                step(cfg)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(
                            f"the migration left rows without their parent: {broken[:5]}"
                        )
        finally:
            if sqlite:
                driver.execute("PRAGMA foreign_keys=ON")
