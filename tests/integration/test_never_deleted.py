"""Scopes, accounts and RSEs are never deleted, so dids, replicas and locks refer to them
without foreign keys (migration 0008); the database itself refuses such a delete, and
the migration keeps every row both ways (both databases)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog.migrate import downgrade, upgrade
from fedlake.catalog.models import DID, Account, DIDMeta, Lock, Replica, Rule, Scope
from fedlake.catalog.models import RSE as RSERow
from fedlake.domain.errors import ScopeNotFound
from fedlake.services import dids as did_svc
from fedlake.services import replicas as replica_svc
from fedlake.services import rules as rule_svc
from tests.integration.transfers.conftest import SCOPE, put  # noqa: F401  (fixture)

PARENTS = {"scopes": "scope = 'xfer'", "accounts": "account = 'root'", "rses": "rse = 'LOCAL-DISK'"}


@pytest.mark.parametrize("table", PARENTS)
def test_a_parent_row_is_never_deleted(
    lake: Lake,
    put: Callable[..., object],  # noqa: F811
    table: str,
) -> None:
    put("kept")
    refused = pytest.raises(DBAPIError, match=f"rows of {table} are never deleted")
    with refused, lake.db.engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {table} WHERE {PARENTS[table]}"))
    with lake.db.engine.connect() as conn:
        left = conn.execute(text(f"SELECT count(*) FROM {table} WHERE {PARENTS[table]}"))
        assert left.scalar() == 1


def test_a_did_in_an_unknown_scope_is_refused_without_the_key(lake: Lake, root: Caller) -> None:
    with pytest.raises(ScopeNotFound, match="'nowhere' does not exist"):
        replica_svc.add_replicas(
            lake,
            root,
            {
                "rse": "LOCAL-DISK",
                "files": [{"scope": "nowhere", "name": "f", "bytes": 1, "adler32": "00620062"}],
            },
        )
    with lake.db.read() as s:
        assert s.scalar(select(func.count()).select_from(DID)) == 0


def _counts(lake: Lake) -> dict[str, int]:
    with lake.db.read() as s:
        return {
            m.__tablename__: int(s.scalar(select(func.count()).select_from(m)) or 0)
            for m in (Scope, Account, RSERow, DID, DIDMeta, Replica, Rule, Lock)
        }


@pytest.fixture
def at_head(lake: Lake) -> Iterator[Lake]:
    """Whatever the test does to the schema, the shared database ends at the head."""
    yield lake
    upgrade(lake.db)


def test_the_migration_keeps_every_row_both_ways(
    at_head: Lake,
    root: Caller,
    put: Callable[..., object],  # noqa: F811
) -> None:
    lake = at_head
    for i in range(3):
        put(f"mig-{i}")
    did_svc.add_dids(lake, root, [{"scope": SCOPE, "name": "mig-ds", "type": "DATASET"}])
    did_svc.attach(
        lake, root, SCOPE, "mig-ds", [{"scope": SCOPE, "name": f"mig-{i}"} for i in (0, 1)]
    )
    did_svc.set_meta(lake, root, SCOPE, "mig-0", {"run": 7})
    rule_svc.add_rules(
        lake,
        root,
        {"dids": [{"scope": SCOPE, "name": "mig-ds"}], "copies": 1, "rse_expression": "LOCAL-DISK"},
    )
    before = _counts(lake)
    assert before["locks"] == 2 and before["did_meta"] >= 1 and before["replicas"] == 3
    lake.db.engine.dispose()  # no pooled connection holds the tables being rebuilt
    downgrade(lake.db, "0007")  # the keys come back: every row still has its parent
    assert _counts(lake) == before
    orphan = text(
        "INSERT INTO replicas (rse_id, scope, name, bytes, state, lock_cnt, created_at, "
        "updated_at) VALUES ('no-such-rse', 'xfer', 'mig-0', 1, 'AVAILABLE', 0, "
        "'2026-01-01', '2026-01-01')"
    )
    # and a key refuses a replica on no RSE again
    with pytest.raises(DBAPIError, match=r"(?i)foreign key"), lake.db.engine.begin() as conn:
        conn.execute(orphan)
    lake.db.engine.dispose()
    upgrade(lake.db)
    assert _counts(lake) == before
