"""rule lifecycle: daemon heartbeats, rule repair bookkeeping

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 22:50:40.730593
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daemon_heartbeats",
        sa.Column("daemon", sa.String(length=64), nullable=False),
        sa.Column("instance", sa.String(length=128), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("beat_at", sa.DateTime(), nullable=False),
        sa.Column("rounds", sa.BigInteger(), nullable=False),
        sa.Column("work_done", sa.BigInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("daemon", "instance"),
    )
    # plain ALTERs (no batch copy of the rules table: locks reference it)
    op.add_column(
        "rules", sa.Column("repair_count", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("rules", sa.Column("next_repair_at", sa.DateTime(), nullable=True))
    op.drop_index("rules_state_idx", table_name="rules")
    op.create_index("rules_state_idx", "rules", ["state", "next_repair_at"], unique=False)


def downgrade() -> None:
    op.drop_index("rules_state_idx", table_name="rules")
    op.create_index("rules_state_idx", "rules", ["state"], unique=False)
    with op.batch_alter_table("rules") as batch_op:
        batch_op.drop_column("next_repair_at")
        batch_op.drop_column("repair_count")
    op.drop_table("daemon_heartbeats")
