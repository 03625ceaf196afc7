"""namespace rules: policy v2's group grants on scopes (see catalog.iam_models.NamespaceRule)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 05:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "namespace_rules",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("group", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("name_prefix", sa.String(length=255), nullable=True),
        sa.Column("created_by", sa.String(length=25), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["group"], ["iam_groups.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("namespace_rules_group_idx", "namespace_rules", ["group"], unique=False)


def downgrade() -> None:
    op.drop_index("namespace_rules_group_idx", table_name="namespace_rules")
    op.drop_table("namespace_rules")
