"""identity: groups, memberships, OAuth clients and flows, revocation, registration
requests, trusted issuers, group mappings and the audit log (see catalog.iam_models)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 02:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "iam_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=25), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("iam_audit_at_idx", "iam_audit", ["at"], unique=False)
    op.create_index("iam_audit_target_idx", "iam_audit", ["target"], unique=False)
    op.create_table(
        "iam_groups",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("parent", sa.String(length=255), nullable=True),
        sa.Column("optional", sa.Boolean(), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["parent"], ["iam_groups.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("iam_groups_parent_idx", "iam_groups", ["parent"], unique=False)
    op.create_table(
        "oauth_revoked_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_by", sa.String(length=25), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("jti"),
    )
    op.create_index(
        "oauth_revoked_tokens_expires_idx", "oauth_revoked_tokens", ["expires_at"], unique=False
    )
    op.create_table(
        "trusted_issuers",
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("discovery_url", sa.Text(), nullable=True),
        sa.Column("audiences", sa.Text(), nullable=False),
        sa.Column("algorithms", sa.Text(), nullable=False),
        sa.Column("auto_create_groups", sa.Text(), nullable=False),
        sa.Column("wlcg_profile", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("issuer"),
    )
    op.create_table(
        "iam_group_mappings",
        sa.Column("issuer", sa.String(length=255), nullable=False),
        sa.Column("group", sa.String(length=255), nullable=False),
        sa.Column("account", sa.String(length=25), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["account"], ["accounts.account"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("issuer", "group"),
    )
    op.create_table(
        "iam_memberships",
        sa.Column("account", sa.String(length=25), nullable=False),
        sa.Column("group", sa.String(length=255), nullable=False),
        sa.Column("manager", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account"], ["accounts.account"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["group"], ["iam_groups.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account", "group"),
    )
    op.create_index("iam_memberships_group_idx", "iam_memberships", ["group"], unique=False)
    op.create_table(
        "iam_registrations",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("username", sa.String(length=25), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=True),
        sa.Column("group", sa.String(length=255), nullable=False),
        sa.Column("notes", sa.String(length=1000), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("decided_by", sa.String(length=25), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["group"], ["iam_groups.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "iam_registrations_state_idx", "iam_registrations", ["state", "group"], unique=False
    )
    op.create_table(
        "oauth_clients",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("secret_hash", sa.String(length=255), nullable=True),
        sa.Column("account", sa.String(length=25), nullable=True),
        sa.Column("owner", sa.String(length=25), nullable=False),
        sa.Column("grant_types", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("redirect_uris", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account"], ["accounts.account"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["owner"], ["accounts.account"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("client_id"),
    )
    op.create_table(
        "oauth_refresh_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=25), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("replaced_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account"], ["accounts.account"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("jti"),
    )
    op.create_index(
        "oauth_refresh_tokens_account_idx", "oauth_refresh_tokens", ["account"], unique=False
    )
    op.create_index(
        "oauth_refresh_tokens_expires_idx", "oauth_refresh_tokens", ["expires_at"], unique=False
    )
    op.create_table(
        "oauth_revoked_accounts",
        sa.Column("account", sa.String(length=25), nullable=False),
        sa.Column("before", sa.DateTime(), nullable=False),
        sa.Column("revoked_by", sa.String(length=25), nullable=True),
        sa.ForeignKeyConstraint(["account"], ["accounts.account"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account"),
    )
    op.create_table(
        "oauth_authorization_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("account", sa.String(length=25), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column("code_challenge_method", sa.String(length=8), nullable=False),
        sa.Column("nonce", sa.String(length=255), nullable=True),
        sa.Column("used", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["account"], ["accounts.account"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["client_id"], ["oauth_clients.client_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    op.create_table(
        "oauth_device_codes",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("user_code", sa.String(length=16), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("account", sa.String(length=25), nullable=True),
        sa.Column("interval", sa.Integer(), nullable=False),
        sa.Column("last_poll_at", sa.DateTime(), nullable=True),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["oauth_clients.client_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("code_hash"),
        sa.UniqueConstraint("user_code"),
    )
    op.create_index(
        "oauth_device_codes_expires_idx", "oauth_device_codes", ["expires_at"], unique=False
    )
    op.create_table(
        "embargoes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("scope", sa.String(length=25), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("group", sa.String(length=255), nullable=False),
        sa.Column("until", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.Column("created_by", sa.String(length=25), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["group"], ["iam_groups.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("embargoes_scope_name_idx", "embargoes", ["scope", "name"], unique=False)
    op.create_index("embargoes_until_idx", "embargoes", ["until"], unique=False)


def downgrade() -> None:
    op.drop_index("embargoes_until_idx", table_name="embargoes")
    op.drop_index("embargoes_scope_name_idx", table_name="embargoes")
    op.drop_table("embargoes")
    op.drop_index("oauth_device_codes_expires_idx", table_name="oauth_device_codes")
    op.drop_table("oauth_device_codes")
    op.drop_table("oauth_authorization_codes")
    op.drop_table("oauth_revoked_accounts")
    op.drop_index("oauth_refresh_tokens_expires_idx", table_name="oauth_refresh_tokens")
    op.drop_index("oauth_refresh_tokens_account_idx", table_name="oauth_refresh_tokens")
    op.drop_table("oauth_refresh_tokens")
    op.drop_table("oauth_clients")
    op.drop_index("iam_registrations_state_idx", table_name="iam_registrations")
    op.drop_table("iam_registrations")
    op.drop_index("iam_memberships_group_idx", table_name="iam_memberships")
    op.drop_table("iam_memberships")
    op.drop_table("iam_group_mappings")
    op.drop_table("trusted_issuers")
    op.drop_index("oauth_revoked_tokens_expires_idx", table_name="oauth_revoked_tokens")
    op.drop_table("oauth_revoked_tokens")
    op.drop_index("iam_groups_parent_idx", table_name="iam_groups")
    op.drop_table("iam_groups")
    op.drop_index("iam_audit_target_idx", table_name="iam_audit")
    op.drop_index("iam_audit_at_idx", table_name="iam_audit")
    op.drop_table("iam_audit")
