"""Keeps PostgreSQL's planner statistics fresh (ANALYZE of tables that changed a lot).

PostgreSQL's autovacuum normally does this, but it may be off or slow to react (it
waits for a fraction of the table to change and for its own schedule). A plan made on
missing statistics is ruinous here: bulk rule and transfer operations join thousands of
(scope, name) pairs against tables of millions of rows, and without statistics the
planner takes those tables for empty and scans them once per pair. Every round this
daemon asks ``pg_stat_user_tables`` which of the catalogue's tables changed by more than
``fraction`` of their rows (and at least ``minimum`` rows) since their last analysis, and
analyzes those. On SQLite it does nothing (SQLite plans from its indexes).
"""

from __future__ import annotations

import logging

from sqlalchemy import text

from fedlake.catalog.models import Base
from fedlake.daemons.runner import Daemon

__all__ = ["StatisticsDaemon"]

log = logging.getLogger("fedlake.daemons")

_STALE = text(
    "SELECT relname FROM pg_stat_user_tables "
    "WHERE n_mod_since_analyze > GREATEST(:minimum, :fraction * n_live_tup) "
    "ORDER BY n_mod_since_analyze DESC"
)


class StatisticsDaemon(Daemon):
    name = "statistics"
    interval = 10.0
    minimum = 5000
    fraction = 0.1

    def run_once(self) -> int:
        engine = self.lake.db.engine
        if engine.dialect.name != "postgresql":
            self.interval = 3600.0  # nothing to do on SQLite; beat rarely
            return 0
        ours = set(Base.metadata.tables)
        with engine.connect() as conn:
            stale = [
                name
                for (name,) in conn.execute(
                    _STALE, {"minimum": self.minimum, "fraction": self.fraction}
                )
                if name in ours
            ]
        for name in stale:
            with engine.connect() as conn:
                conn.execute(text(f'ANALYZE "{name}"'))
                conn.commit()
            log.info("statistics: analyzed %s", name)
        return 0  # rounds stay paced by the interval
