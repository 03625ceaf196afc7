"""did_content without foreign keys: attach checks and locks the DIDs itself, set-based

Each foreign key of ``did_content`` ran a trigger per inserted row (an index look-up and a
share lock in ``dids``, parent and child); on PostgreSQL they were 55 % of an attach of
10,000 files. ``catalog.dids`` is the only writer of ``did_content``: it locks the parent
row for update and, in the same statement that inserts, reads and key-share locks every
child (as a foreign key would, so a concurrent delete waits), and ``mark_deleted``
removes a collection's content and refuses to remove a DID that is attached. See
docs/concepts.md, "Collections".

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 17:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

PARENT_FK = "did_content_scope_name_fkey"  # PostgreSQL's names for 0001's constraints
CHILD_FK = "did_content_child_scope_child_name_fkey"


def _content(*constraints: sa.Constraint) -> sa.Table:
    """did_content as 0001 made it, with ``constraints`` (SQLite rebuilds the table)."""
    return sa.Table(
        "did_content",
        sa.MetaData(),
        sa.Column("scope", sa.String(length=25), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("child_scope", sa.String(length=25), nullable=False),
        sa.Column("child_name", sa.String(length=255), nullable=False),
        sa.Column("did_type", sa.String(length=9), nullable=False),
        sa.Column("child_type", sa.String(length=9), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("adler32", sa.String(length=8), nullable=True),
        sa.Column("md5", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "name", "child_scope", "child_name"),
        sa.Index("did_content_child_idx", "child_scope", "child_name"),
        *constraints,
    )


def _foreign_keys() -> list[sa.Constraint]:
    return [
        sa.ForeignKeyConstraint(["scope", "name"], ["dids.scope", "dids.name"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["child_scope", "child_name"], ["dids.scope", "dids.name"]),
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(CHILD_FK, "did_content", type_="foreignkey")
        op.drop_constraint(PARENT_FK, "did_content", type_="foreignkey")
        return
    with op.batch_alter_table("did_content", recreate="always", copy_from=_content()):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(
            PARENT_FK,
            "did_content",
            "dids",
            ["scope", "name"],
            ["scope", "name"],
            ondelete="CASCADE",
        )
        op.create_foreign_key(
            CHILD_FK, "did_content", "dids", ["child_scope", "child_name"], ["scope", "name"]
        )
        return
    with op.batch_alter_table(
        "did_content", recreate="always", copy_from=_content(*_foreign_keys())
    ):
        pass
