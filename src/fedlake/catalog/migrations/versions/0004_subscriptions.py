"""subscriptions: the subscriptions table and the queue of new DIDs they are matched against

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=25), nullable=False),
        sa.Column("filter", sa.Text(), nullable=False),
        sa.Column("replication_rules", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("policyid", sa.Integer(), nullable=False),
        sa.Column("lifetime", sa.DateTime(), nullable=True),
        sa.Column("expired_at", sa.DateTime(), nullable=True),
        sa.Column("comments", sa.String(length=4000), nullable=True),
        sa.Column("retroactive", sa.Boolean(), nullable=False),
        sa.Column("retro_done", sa.Boolean(), nullable=False),
        sa.Column("retro_scope", sa.String(length=25), nullable=True),
        sa.Column("retro_name", sa.String(length=255), nullable=True),
        sa.Column("matches_files", sa.Boolean(), nullable=False),
        sa.Column("last_processed", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account"], ["accounts.account"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account", "name", name="subscriptions_account_name_uq"),
    )
    op.create_index("subscriptions_state_idx", "subscriptions", ["state"], unique=False)
    op.create_table(
        "new_dids",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scope", sa.String(length=25), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("did_type", sa.String(length=9), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # the rules of one subscription: its rule listing and its per-state counts
    op.create_index("rules_subscription_idx", "rules", ["subscription_id"], unique=False)


def downgrade() -> None:
    op.drop_index("rules_subscription_idx", table_name="rules")
    op.drop_table("new_dids")
    op.drop_index("subscriptions_state_idx", table_name="subscriptions")
    op.drop_table("subscriptions")
