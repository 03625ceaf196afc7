"""dids, replicas and locks without foreign keys to rows that are never deleted

``dids.scope`` -> ``scopes``, ``dids.account`` -> ``accounts``, ``replicas.rse_id`` and
``locks.rse_id`` -> ``rses``: each foreign key ran a trigger per inserted row (an index
look-up and a share lock on the same parent row, over and over); on PostgreSQL the three
on dids and replicas were over 40 % of the database's time in a registration of 100,000
files. Scopes, accounts and RSEs are never deleted (no call removes one: a scope is
closed; Rucio keeps a deleted RSE's or account's row, marked deleted, and so will
fedlake when it has those calls), so none of these keys could ever fire; every writer
checks the parent exists first, with a clear error (``dids.check_new_names``, the RSE
and account look-ups). A trigger on each parent table now refuses a DELETE outright, so
nothing can leave a child without its parent. The keys that can fire stay (``replicas``
-> ``dids``, ``locks`` -> ``rules``). See docs/concepts.md, "Integrity".

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 20:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: (table, column, parent table, parent column); PostgreSQL named 0001's constraints
#: <table>_<column>_fkey; on SQLite they have no name (see _SQLITE_NAMES)
KEYS = [
    ("dids", "scope", "scopes", "scope"),
    ("dids", "account", "accounts", "account"),
    ("replicas", "rse_id", "rses", "id"),
    ("locks", "rse_id", "rses", "id"),
]
PARENTS = ["scopes", "accounts", "rses"]
_SQLITE_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s"}
MESSAGE = "rows of {} are never deleted: DIDs, replicas and locks may refer to them"


def _tables() -> list[str]:
    return list(dict.fromkeys(table for table, *_ in KEYS))


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, column, _, _ in KEYS:
            op.drop_constraint(f"{table}_{column}_fkey", table, type_="foreignkey")
        op.execute(
            "CREATE FUNCTION fedlake_never_deleted() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{MESSAGE.format('%')}', TG_TABLE_NAME; END $$"
        )
        for parent in PARENTS:
            op.execute(
                f"CREATE TRIGGER {parent}_never_deleted BEFORE DELETE ON {parent} "
                "FOR EACH ROW EXECUTE FUNCTION fedlake_never_deleted()"
            )
        return
    for table in _tables():
        with op.batch_alter_table(
            table, recreate="always", naming_convention=_SQLITE_NAMES
        ) as batch:
            for t, column, _, _ in KEYS:
                if t == table:
                    batch.drop_constraint(f"fk_{table}_{column}", type_="foreignkey")
    for parent in PARENTS:
        op.execute(
            f"CREATE TRIGGER {parent}_never_deleted BEFORE DELETE ON {parent} "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE.format(parent)}'); END"
        )


def downgrade() -> None:
    for parent in PARENTS:
        op.execute(
            f"DROP TRIGGER {parent}_never_deleted"
            + (f" ON {parent}" if op.get_bind().dialect.name == "postgresql" else "")
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION fedlake_never_deleted()")
        for table, column, parent, parent_column in KEYS:
            op.create_foreign_key(
                f"{table}_{column}_fkey", table, parent, [column], [parent_column]
            )
        return
    for table in _tables():
        with op.batch_alter_table(table, recreate="always") as batch:
            for t, column, parent, parent_column in KEYS:
                if t == table:
                    batch.create_foreign_key(
                        f"fk_{table}_{column}", parent, [column], [parent_column]
                    )
