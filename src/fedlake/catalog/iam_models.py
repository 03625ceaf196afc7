"""Identity tables (the INDIGO IAM role): groups and memberships, OAuth clients, the
state of the OAuth flows (device codes, authorization codes, refresh tokens), token
revocation, registration requests, trusted external issuers and the audit log.

Users are the lake's accounts (``accounts``) with their identities (``identities``: a
username, or an issuer + subject). A group is a path (``/escape``, ``/escape/cms``); an
``optional`` group is a role that a token carries only when asked for explicitly.
Secrets (client secrets, device codes, authorization codes) are stored hashed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fedlake.catalog.models import ACCOUNT, Base, _now

__all__ = [
    "AuditEntry",
    "AuthorizationCode",
    "DeviceCode",
    "Embargo",
    "GroupMapping",
    "IamGroup",
    "Membership",
    "NamespaceRule",
    "OAuthClient",
    "RefreshToken",
    "Registration",
    "RevokedSubject",
    "RevokedToken",
    "TrustedIssuer",
]

GROUP = 255
CLIENT = 64


class IamGroup(Base):
    """A group path; ``parent`` is the path above it (None for a top-level group)."""

    __tablename__ = "iam_groups"
    name: Mapped[str] = mapped_column(String(GROUP), primary_key=True)
    parent: Mapped[str | None] = mapped_column(ForeignKey("iam_groups.name", ondelete="CASCADE"))
    optional: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)
    __table_args__ = (Index("iam_groups_parent_idx", "parent"),)


class Membership(Base):
    """An account in a group; ``manager``: may approve the group's registration requests."""

    __tablename__ = "iam_memberships"
    account: Mapped[str] = mapped_column(
        ForeignKey("accounts.account", ondelete="CASCADE"), primary_key=True
    )
    group: Mapped[str] = mapped_column(
        ForeignKey("iam_groups.name", ondelete="CASCADE"), primary_key=True
    )
    manager: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    __table_args__ = (Index("iam_memberships_group_idx", "group"),)


class Registration(Base):
    """A request to join a group (or the lake): PENDING until a manager decides."""

    __tablename__ = "iam_registrations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(ACCOUNT))
    email: Mapped[str | None] = mapped_column(String(255))
    group: Mapped[str] = mapped_column(ForeignKey("iam_groups.name", ondelete="CASCADE"))
    notes: Mapped[str | None] = mapped_column(String(1000))
    state: Mapped[str] = mapped_column(String(10), default="PENDING")
    decided_by: Mapped[str | None] = mapped_column(String(ACCOUNT))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    reason: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    __table_args__ = (Index("iam_registrations_state_idx", "state", "group"),)


class OAuthClient(Base):
    """A registered OAuth client. ``secret_hash`` is None for public clients (the CLI,
    notebooks: device code and PKCE). Tokens of the client-credentials grant act as
    ``account``. ``grant_types``, ``scope`` and ``redirect_uris`` are space-separated."""

    __tablename__ = "oauth_clients"
    client_id: Mapped[str] = mapped_column(String(CLIENT), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    secret_hash: Mapped[str | None] = mapped_column(String(255))
    account: Mapped[str | None] = mapped_column(ForeignKey("accounts.account", ondelete="CASCADE"))
    owner: Mapped[str] = mapped_column(ForeignKey("accounts.account", ondelete="CASCADE"))
    grant_types: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text, default="")
    redirect_uris: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class DeviceCode(Base):
    """A device-code login (RFC 8628): PENDING until the user approves the ``user_code``
    in a browser (APPROVED, with ``account``) or denies it; USED once tokens went out."""

    __tablename__ = "oauth_device_codes"
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_code: Mapped[str] = mapped_column(String(16), unique=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE")
    )
    scope: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(8), default="PENDING")
    account: Mapped[str | None] = mapped_column(String(ACCOUNT))
    interval: Mapped[int] = mapped_column(Integer, default=5)
    last_poll_at: Mapped[datetime | None] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    __table_args__ = (Index("oauth_device_codes_expires_idx", "expires_at"),)


class AuthorizationCode(Base):
    """An authorization code (RFC 6749 4.1) bound to its PKCE challenge (RFC 7636)."""

    __tablename__ = "oauth_authorization_codes"
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE")
    )
    account: Mapped[str] = mapped_column(ForeignKey("accounts.account", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text, default="")
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(8), default="S256")
    nonce: Mapped[str | None] = mapped_column(String(255))
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class RefreshToken(Base):
    """An issued refresh token, by ``jti``: usable once (rotation: ``replaced_by`` is the
    next one), until ``expires_at`` or ``revoked_at``."""

    __tablename__ = "oauth_refresh_tokens"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    account: Mapped[str] = mapped_column(ForeignKey("accounts.account", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str | None] = mapped_column(String(CLIENT))
    scope: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    replaced_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    __table_args__ = (
        Index("oauth_refresh_tokens_account_idx", "account"),
        Index("oauth_refresh_tokens_expires_idx", "expires_at"),
    )


class RevokedToken(Base):
    """A revoked access token (by ``jti``), kept until it would have expired anyway.
    Revoking every token of a user is a ``RevokedSubject`` row instead."""

    __tablename__ = "oauth_revoked_tokens"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(ACCOUNT))
    revoked_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    __table_args__ = (Index("oauth_revoked_tokens_expires_idx", "expires_at"),)


class RevokedSubject(Base):
    """Every token of ``account`` issued before ``before`` is revoked."""

    __tablename__ = "oauth_revoked_accounts"
    account: Mapped[str] = mapped_column(
        ForeignKey("accounts.account", ondelete="CASCADE"), primary_key=True
    )
    before: Mapped[datetime] = mapped_column(DateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(ACCOUNT))


class TrustedIssuer(Base):
    """An external OIDC issuer whose tokens the lake accepts. ``audiences`` and
    ``algorithms`` are space-separated allow-lists; ``auto_create_groups`` (space-separated
    group paths): a subject in one of them gets an account at first use."""

    __tablename__ = "trusted_issuers"
    issuer: Mapped[str] = mapped_column(String(255), primary_key=True)
    discovery_url: Mapped[str | None] = mapped_column(Text)
    audiences: Mapped[str] = mapped_column(Text, default="")
    algorithms: Mapped[str] = mapped_column(Text, default="RS256 ES256")
    auto_create_groups: Mapped[str] = mapped_column(Text, default="")
    #: WLCG JWT profile issuer: its tokens must carry ``wlcg.ver``
    wlcg_profile: Mapped[bool] = mapped_column(Boolean, default=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class GroupMapping(Base):
    """Tokens of ``issuer`` naming ``group`` in ``wlcg.groups`` act as ``account`` when
    their (iss, sub) has no identity of its own."""

    __tablename__ = "iam_group_mappings"
    issuer: Mapped[str] = mapped_column(String(255), primary_key=True)
    group: Mapped[str] = mapped_column(String(GROUP), primary_key=True)
    account: Mapped[str] = mapped_column(ForeignKey("accounts.account", ondelete="CASCADE"))
    priority: Mapped[int] = mapped_column(Integer, default=0)


class AuditEntry(Base):
    """What was done to identities, groups, clients and tokens, by whom, when."""

    __tablename__ = "iam_audit"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    actor: Mapped[str] = mapped_column(String(ACCOUNT))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    details: Mapped[str | None] = mapped_column(Text)  # JSON text; never a secret or token
    __table_args__ = (Index("iam_audit_at_idx", "at"), Index("iam_audit_target_idx", "target"))


class Embargo(Base):
    """Until ``until`` (naive UTC) only members of ``group`` (and admins) may read or even
    learn of ``scope`` (``name`` None) or of the DID ``scope:name`` and everything below it.
    See ``fedlake.catalog.embargo``."""

    __tablename__ = "embargoes"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(25))
    name: Mapped[str | None] = mapped_column(String(255))
    group: Mapped[str] = mapped_column(ForeignKey("iam_groups.name", ondelete="CASCADE"))
    until: Mapped[datetime] = mapped_column(DateTime)
    reason: Mapped[str | None] = mapped_column(String(1000))
    created_by: Mapped[str] = mapped_column(String(ACCOUNT))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    __table_args__ = (
        Index("embargoes_scope_name_idx", "scope", "name"),
        Index("embargoes_until_idx", "until"),
    )


class NamespaceRule(Base):
    """Policy v2 (``fedlake.auth.policy``): members of ``group`` (and of the groups below
    it) may ``action`` (read, write, delete or all) the DIDs of the scopes matching
    ``scope`` (an fnmatch pattern: ``cms_*``, ``*``) whose names start with
    ``name_prefix`` (None: every name)."""

    __tablename__ = "namespace_rules"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    group: Mapped[str] = mapped_column(ForeignKey("iam_groups.name", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(8))
    scope: Mapped[str] = mapped_column(String(64))
    name_prefix: Mapped[str | None] = mapped_column(String(255))
    created_by: Mapped[str] = mapped_column(String(ACCOUNT))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    __table_args__ = (Index("namespace_rules_group_idx", "group"),)
