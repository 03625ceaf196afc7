"""The migrations build exactly the tables the models describe, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from fedlake.bootstrap import Lake
from fedlake.catalog.models import Base

#: transfer_requests_queue_idx orders by an expression (priority DESC), which Alembic
#: cannot compare: it reports it as changed on every database
EXPRESSION_INDEXES = {"transfer_requests_queue_idx"}


def _index_name(diff: Any) -> str | None:
    op = diff[0] if isinstance(diff, list) else diff
    if isinstance(op, tuple) and op[0] in ("add_index", "remove_index"):
        return str(op[1].name)
    return None


def test_the_migrated_schema_matches_the_models(lake: Lake) -> None:
    with lake.db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    real = [d for d in diffs if _index_name(d) not in EXPRESSION_INDEXES]
    assert real == [], f"models and migrations differ: {real}"


def test_the_identity_tables_exist(lake: Lake) -> None:
    names = set(Base.metadata.tables)
    assert {"iam_groups", "oauth_clients", "oauth_refresh_tokens", "iam_audit"} <= names
    with lake.db.engine.connect() as conn:
        present = set(conn.dialect.get_table_names(conn))
    assert names <= present | {"alembic_version"}, names - present
