"""Catalogue tables (SQLAlchemy 2 ``Mapped[]``). The schema is created only by Alembic.

Enum columns store the member names as short strings so rows stay readable in psql.
Timestamps are naive UTC. Hot paths use these tables through Core statements.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fedlake.domain.timefmt import utcnow

__all__ = [
    "DID",
    "RSE",
    "Account",
    "AccountAttribute",
    "AccountLimit",
    "Base",
    "DIDContent",
    "DIDContentHistory",
    "DIDMeta",
    "DaemonHeartbeat",
    "DeletedDID",
    "Event",
    "Identity",
    "Lock",
    "NewDIDEntry",
    "RSEAttribute",
    "RSEDistance",
    "RSELimit",
    "RSEProtocol",
    "RSEUsage",
    "Replica",
    "Rule",
    "RuleHistory",
    "Scope",
    "SigningKey",
    "Subscription",
    "TransferAttempt",
    "TransferLink",
    "TransferRequest",
    "TransferShare",
]

NAME = 255
SCOPE = 25
ACCOUNT = 25


class Base(DeclarativeBase):
    pass


def _now() -> datetime:
    return utcnow()


class _Stamped:
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class Account(_Stamped, Base):
    __tablename__ = "accounts"
    account: Mapped[str] = mapped_column(String(ACCOUNT), primary_key=True)
    account_type: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(10), default="ACTIVE")
    email: Mapped[str | None] = mapped_column(String(255))
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)


class Identity(_Stamped, Base):
    """Maps an identity (username, or token issuer+subject) to an account."""

    __tablename__ = "identities"
    identity_type: Mapped[str] = mapped_column(String(10), primary_key=True)
    identity: Mapped[str] = mapped_column(String(255), primary_key=True)
    account: Mapped[str] = mapped_column(
        ForeignKey("accounts.account", ondelete="CASCADE"), primary_key=True
    )
    password_hash: Mapped[str | None] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)


class AccountAttribute(_Stamped, Base):
    __tablename__ = "account_attributes"
    account: Mapped[str] = mapped_column(
        ForeignKey("accounts.account", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)  # JSON text


class Scope(_Stamped, Base):
    __tablename__ = "scopes"
    scope: Mapped[str] = mapped_column(String(SCOPE), primary_key=True)
    account: Mapped[str] = mapped_column(ForeignKey("accounts.account"))
    status: Mapped[str] = mapped_column(String(6), default="OPEN")
    __table_args__ = (Index("scopes_account_idx", "account"),)


class DID(_Stamped, Base):
    """A data identifier. ``scope`` and ``account`` name rows that are never deleted, so
    they have no foreign keys (migration 0008: writers check them first)."""

    __tablename__ = "dids"
    scope: Mapped[str] = mapped_column(String(SCOPE), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    did_type: Mapped[str] = mapped_column(String(9))
    account: Mapped[str] = mapped_column(String(ACCOUNT))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    length: Mapped[int | None] = mapped_column(BigInteger)
    adler32: Mapped[str | None] = mapped_column(String(8))
    md5: Mapped[str | None] = mapped_column(String(32))
    guid: Mapped[str | None] = mapped_column(String(36))
    events: Mapped[int | None] = mapped_column(BigInteger)
    is_open: Mapped[bool | None] = mapped_column(Boolean)
    monotonic: Mapped[bool] = mapped_column(Boolean, default=False)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    availability: Mapped[str] = mapped_column(String(12), default="AVAILABLE")
    expired_at: Mapped[datetime | None] = mapped_column(DateTime)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime)
    accessed_at: Mapped[datetime | None] = mapped_column(DateTime)
    __table_args__ = (
        Index("dids_type_scope_idx", "did_type", "scope"),
        Index("dids_expired_at_idx", "expired_at"),
        Index("dids_created_at_idx", "created_at"),
    )


class DeletedDID(Base):
    """Every DID that was ever removed: its name can never be used again."""

    __tablename__ = "deleted_dids"
    scope: Mapped[str] = mapped_column(String(SCOPE), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    did_type: Mapped[str] = mapped_column(String(9))
    account: Mapped[str | None] = mapped_column(String(ACCOUNT))
    deleted_at: Mapped[datetime] = mapped_column(DateTime, default=_now)


class DIDContent(Base):
    """A collection's member. No foreign keys (migration 0007): ``catalog.dids``, the
    only writer, checks and locks parent and children itself, set-based, where a foreign
    key ran a trigger per row."""

    __tablename__ = "did_content"
    scope: Mapped[str] = mapped_column(String(SCOPE), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    child_scope: Mapped[str] = mapped_column(String(SCOPE), primary_key=True)
    child_name: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    did_type: Mapped[str] = mapped_column(String(9))
    child_type: Mapped[str] = mapped_column(String(9))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    adler32: Mapped[str | None] = mapped_column(String(8))
    md5: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    __table_args__ = (Index("did_content_child_idx", "child_scope", "child_name"),)


class DIDContentHistory(Base):
    __tablename__ = "did_content_history"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(SCOPE))
    name: Mapped[str] = mapped_column(String(NAME))
    child_scope: Mapped[str] = mapped_column(String(SCOPE))
    child_name: Mapped[str] = mapped_column(String(NAME))
    did_type: Mapped[str] = mapped_column(String(9))
    child_type: Mapped[str] = mapped_column(String(9))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    adler32: Mapped[str | None] = mapped_column(String(8))
    md5: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    deleted_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    __table_args__ = (Index("did_content_history_idx", "scope", "name"),)


class DIDMeta(Base):
    """One typed metadata value of a DID. ``vtype``: s(tring) i(nt) f(loat) b(ool) d(ate).

    Numbers and booleans are also kept in ``num_val``, dates in ``date_val`` and strings in
    ``str_val`` so that each filter uses a ``(key, value)`` index.
    """

    __tablename__ = "did_meta"
    scope: Mapped[str] = mapped_column(String(SCOPE), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    vtype: Mapped[str] = mapped_column(String(1))
    value: Mapped[str] = mapped_column(Text)  # JSON text of the original value
    str_val: Mapped[str | None] = mapped_column(String(255))
    num_val: Mapped[float | None] = mapped_column(Double)
    date_val: Mapped[datetime | None] = mapped_column(DateTime)
    __table_args__ = (
        ForeignKeyConstraint(["scope", "name"], ["dids.scope", "dids.name"], ondelete="CASCADE"),
        Index("did_meta_str_idx", "key", "str_val"),
        Index("did_meta_num_idx", "key", "num_val"),
        Index("did_meta_date_idx", "key", "date_val"),
    )


class RSE(_Stamped, Base):
    __tablename__ = "rses"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    rse: Mapped[str] = mapped_column(String(64), unique=True)
    rse_type: Mapped[str] = mapped_column(String(4), default="DISK")
    deterministic: Mapped[bool] = mapped_column(Boolean, default=True)
    volatile: Mapped[bool] = mapped_column(Boolean, default=False)
    staging_area: Mapped[bool] = mapped_column(Boolean, default=False)
    lfn2pfn_algorithm: Mapped[str] = mapped_column(String(32), default="hash")
    availability_read: Mapped[bool] = mapped_column(Boolean, default=True)
    availability_write: Mapped[bool] = mapped_column(Boolean, default=True)
    availability_delete: Mapped[bool] = mapped_column(Boolean, default=True)
    verify_checksum: Mapped[bool] = mapped_column(Boolean, default=True)
    qos_class: Mapped[str | None] = mapped_column(String(64))
    city: Mapped[str | None] = mapped_column(String(255))
    region_code: Mapped[str | None] = mapped_column(String(2))
    country_name: Mapped[str | None] = mapped_column(String(255))
    continent: Mapped[str | None] = mapped_column(String(2))
    time_zone: Mapped[str | None] = mapped_column(String(255))
    longitude: Mapped[float | None] = mapped_column(Double)
    latitude: Mapped[float | None] = mapped_column(Double)
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime)


class RSEAttribute(_Stamped, Base):
    __tablename__ = "rse_attributes"
    rse_id: Mapped[str] = mapped_column(ForeignKey("rses.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)  # JSON text
    __table_args__ = (Index("rse_attributes_key_idx", "key"),)


class RSEProtocol(_Stamped, Base):
    __tablename__ = "rse_protocols"
    rse_id: Mapped[str] = mapped_column(ForeignKey("rses.id", ondelete="CASCADE"), primary_key=True)
    scheme: Mapped[str] = mapped_column(String(16), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(1024), default="")
    impl: Mapped[str] = mapped_column(String(255))
    read_lan: Mapped[int | None] = mapped_column(Integer)
    write_lan: Mapped[int | None] = mapped_column(Integer)
    delete_lan: Mapped[int | None] = mapped_column(Integer)
    read_wan: Mapped[int | None] = mapped_column(Integer)
    write_wan: Mapped[int | None] = mapped_column(Integer)
    delete_wan: Mapped[int | None] = mapped_column(Integer)
    third_party_copy_read: Mapped[int | None] = mapped_column(Integer)
    third_party_copy_write: Mapped[int | None] = mapped_column(Integer)
    extended_attributes: Mapped[str | None] = mapped_column(Text)  # JSON text


class RSELimit(_Stamped, Base):
    __tablename__ = "rse_limits"
    rse_id: Mapped[str] = mapped_column(ForeignKey("rses.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class RSEUsage(Base):
    """Space of an RSE as reported by a source (``storage``, ``rucio`` = catalogue ...)."""

    __tablename__ = "rse_usage"
    rse_id: Mapped[str] = mapped_column(ForeignKey("rses.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    used: Mapped[int | None] = mapped_column(BigInteger)
    free: Mapped[int | None] = mapped_column(BigInteger)
    total: Mapped[int | None] = mapped_column(BigInteger)
    files: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class Replica(_Stamped, Base):
    __tablename__ = "replicas"
    rse_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # never deleted: no key
    scope: Mapped[str] = mapped_column(String(SCOPE), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    adler32: Mapped[str | None] = mapped_column(String(8))
    md5: Mapped[str | None] = mapped_column(String(32))
    path: Mapped[str | None] = mapped_column(String(1024))
    state: Mapped[str] = mapped_column(String(21), default="AVAILABLE")
    lock_cnt: Mapped[int] = mapped_column(Integer, default=0)
    tombstone: Mapped[datetime | None] = mapped_column(DateTime)
    accessed_at: Mapped[datetime | None] = mapped_column(DateTime)
    __table_args__ = (
        ForeignKeyConstraint(["scope", "name"], ["dids.scope", "dids.name"]),
        Index("replicas_did_idx", "scope", "name"),
        Index("replicas_state_idx", "state", "updated_at"),
        Index("replicas_tombstone_idx", "rse_id", "tombstone"),
    )


class AccountLimit(_Stamped, Base):
    """Byte quota of an account on one RSE (``rse_expression`` null) or an RSE expression."""

    __tablename__ = "account_limits"
    account: Mapped[str] = mapped_column(
        ForeignKey("accounts.account", ondelete="CASCADE"), primary_key=True
    )
    locality: Mapped[str] = mapped_column(String(6), primary_key=True)  # local | global
    target: Mapped[str] = mapped_column(String(500), primary_key=True)  # rse name or expression
    bytes: Mapped[int] = mapped_column(BigInteger)  # -1 = unlimited


class Rule(_Stamped, Base):
    __tablename__ = "rules"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subscription_id: Mapped[str | None] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(ForeignKey("accounts.account"))
    scope: Mapped[str] = mapped_column(String(SCOPE))
    name: Mapped[str] = mapped_column(String(NAME))
    did_type: Mapped[str] = mapped_column(String(9))
    state: Mapped[str] = mapped_column(String(16), default="REPLICATING")
    error: Mapped[str | None] = mapped_column(String(255))
    rse_expression: Mapped[str] = mapped_column(String(3000))
    copies: Mapped[int] = mapped_column(Integer, default=1)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    weight: Mapped[str | None] = mapped_column(String(255))
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    locks_ok_cnt: Mapped[int] = mapped_column(BigInteger, default=0)
    locks_replicating_cnt: Mapped[int] = mapped_column(BigInteger, default=0)
    locks_stuck_cnt: Mapped[int] = mapped_column(BigInteger, default=0)
    source_replica_expression: Mapped[str | None] = mapped_column(String(255))
    activity: Mapped[str] = mapped_column(String(50), default="User Subscriptions")
    grouping: Mapped[str] = mapped_column(String(7), default="DATASET")
    notification: Mapped[str] = mapped_column(String(8), default="NO")
    stuck_at: Mapped[datetime | None] = mapped_column(DateTime)
    purge_replicas: Mapped[bool] = mapped_column(Boolean, default=False)
    ignore_availability: Mapped[bool] = mapped_column(Boolean, default=False)
    ignore_account_limit: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[int] = mapped_column(Integer, default=3)
    comments: Mapped[str | None] = mapped_column(String(255))
    child_rule_id: Mapped[str | None] = mapped_column(String(32))
    eol_at: Mapped[datetime | None] = mapped_column(DateTime)
    split_container: Mapped[bool] = mapped_column(Boolean, default=False)
    meta: Mapped[str | None] = mapped_column(Text)
    #: repair rounds since the rule was last OK; the repairer's back-off and give-up count
    repair_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_repair_at: Mapped[datetime | None] = mapped_column(DateTime)
    __table_args__ = (
        ForeignKeyConstraint(["scope", "name"], ["dids.scope", "dids.name"]),
        Index("rules_did_idx", "scope", "name"),
        Index("rules_account_idx", "account"),
        Index("rules_expires_idx", "expires_at"),
        Index("rules_state_idx", "state", "next_repair_at"),
        Index("rules_subscription_idx", "subscription_id"),
    )


class RuleHistory(Base):
    __tablename__ = "rule_history"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(ACCOUNT))
    scope: Mapped[str] = mapped_column(String(SCOPE))
    name: Mapped[str] = mapped_column(String(NAME))
    rse_expression: Mapped[str] = mapped_column(String(3000))
    state: Mapped[str] = mapped_column(String(16))
    locks_ok_cnt: Mapped[int] = mapped_column(BigInteger, default=0)
    locks_replicating_cnt: Mapped[int] = mapped_column(BigInteger, default=0)
    locks_stuck_cnt: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    __table_args__ = (Index("rule_history_did_idx", "scope", "name"),)


class Lock(_Stamped, Base):
    """A rule's claim on one file replica at one RSE."""

    __tablename__ = "locks"
    rule_id: Mapped[str] = mapped_column(
        ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True
    )
    scope: Mapped[str] = mapped_column(String(SCOPE), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    rse_id: Mapped[str] = mapped_column(String(32), primary_key=True)  # never deleted: no key
    account: Mapped[str] = mapped_column(String(ACCOUNT))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(11), default="REPLICATING")
    __table_args__ = (
        Index("locks_replica_idx", "scope", "name", "rse_id"),
        Index("locks_account_rse_idx", "account", "rse_id"),
    )


class DaemonHeartbeat(Base):
    """A live daemon instance: what it is, where it runs, when it last did a round."""

    __tablename__ = "daemon_heartbeats"
    daemon: Mapped[str] = mapped_column(String(64), primary_key=True)
    instance: Mapped[str] = mapped_column(String(128), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    beat_at: Mapped[datetime] = mapped_column(DateTime)
    rounds: Mapped[int] = mapped_column(BigInteger, default=0)
    work_done: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class Event(Base):
    """Outbox of state changes (consumed by monitoring, webhooks, the portal)."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)  # JSON text
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    __table_args__ = (Index("events_type_idx", "event_type", "id"),)


class SigningKey(Base):
    """Keys the embedded token issuer signs with; old keys stay until their tokens expire."""

    __tablename__ = "signing_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(10))
    private_jwk: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime)


_ID = BigInteger().with_variant(Integer, "sqlite")
ACTIVE_REQUEST = "state IN ('QUEUED', 'SUBMITTED', 'WAITING')"


class TransferRequest(Base):
    """Copy one file to one RSE. At most one active request per (file, destination).

    ``lease_owner``/``lease_expires``: the worker running it; an expired lease means the
    worker died and the request may be claimed again (fencing: completions check owner).
    """

    __tablename__ = "transfer_requests"
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    scope: Mapped[str] = mapped_column(String(SCOPE))
    name: Mapped[str] = mapped_column(String(NAME))
    dest_rse_id: Mapped[str] = mapped_column(ForeignKey("rses.id"))
    rule_id: Mapped[str | None] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(ACCOUNT))
    activity: Mapped[str] = mapped_column(String(50), default="default")
    priority: Mapped[int] = mapped_column(Integer, default=3)
    state: Mapped[str] = mapped_column(String(16), default="QUEUED")
    bytes: Mapped[int] = mapped_column(BigInteger)
    adler32: Mapped[str | None] = mapped_column(String(8))
    md5: Mapped[str | None] = mapped_column(String(32))
    source_rse_id: Mapped[str | None] = mapped_column(String(32))
    source_rse_expression: Mapped[str | None] = mapped_column(String(500))
    excluded_sources: Mapped[str | None] = mapped_column(Text)  # JSON list of RSE ids
    verify_source: Mapped[bool] = mapped_column(Boolean, default=False)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    leases_lost: Mapped[int] = mapped_column(Integer, default=0)  # workers died holding it
    not_before: Mapped[datetime] = mapped_column(DateTime, default=_now)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires: Mapped[datetime | None] = mapped_column(DateTime)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    __table_args__ = (
        ForeignKeyConstraint(["scope", "name"], ["dids.scope", "dids.name"]),
        # claims read "state = X ORDER BY priority DESC, id" straight off this index
        Index("transfer_requests_queue_idx", "state", text("priority DESC"), "id"),
        Index("transfer_requests_did_idx", "scope", "name"),
        Index("transfer_requests_rule_idx", "rule_id"),
        Index("transfer_requests_lease_idx", "lease_owner"),
        # running requests only: limits and expired leases read these few rows
        Index(
            "transfer_requests_submitted_idx",
            "source_rse_id",
            "dest_rse_id",
            "lease_expires",
            sqlite_where=text("state = 'SUBMITTED'"),
            postgresql_where=text("state = 'SUBMITTED'"),
        ),
        Index(
            "transfer_requests_active_uq",
            "scope",
            "name",
            "dest_rse_id",
            unique=True,
            sqlite_where=text(ACTIVE_REQUEST),
            postgresql_where=text(ACTIVE_REQUEST),
        ),
    )


class TransferAttempt(Base):
    """One try of a request: where from, by whom, how long, and how it ended."""

    __tablename__ = "transfer_attempts"
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("transfer_requests.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    source_rse_id: Mapped[str | None] = mapped_column(String(32))
    dest_rse_id: Mapped[str] = mapped_column(String(32))
    worker: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # DONE | FAILED | WAITING
    error: Mapped[str | None] = mapped_column(Text)
    recoverable: Mapped[bool | None] = mapped_column(Boolean)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    seconds: Mapped[float] = mapped_column(Double, default=0.0)
    tpc: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime] = mapped_column(DateTime)
    __table_args__ = (
        Index("transfer_attempts_request_idx", "request_id"),
        Index("transfer_attempts_link_idx", "source_rse_id", "dest_rse_id", "finished_at"),
    )


class TransferLink(Base):
    """A source→destination link: its configured limit and the optimizer's decision."""

    __tablename__ = "transfer_links"
    source_rse_id: Mapped[str] = mapped_column(
        ForeignKey("rses.id", ondelete="CASCADE"), primary_key=True
    )
    dest_rse_id: Mapped[str] = mapped_column(
        ForeignKey("rses.id", ondelete="CASCADE"), primary_key=True
    )
    max_active: Mapped[int | None] = mapped_column(Integer)  # None: no link limit
    optimizer: Mapped[bool] = mapped_column(Boolean, default=True)
    optimal_active: Mapped[int] = mapped_column(Integer, default=8)
    throughput: Mapped[float] = mapped_column(Double, default=0.0)  # bytes/s, last window
    files_per_second: Mapped[float] = mapped_column(Double, default=0.0)
    success_rate: Mapped[float] = mapped_column(Double, default=1.0)
    decision: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)


class TransferShare(Base):
    """Relative weight of an activity when the queue holds more work than free slots."""

    __tablename__ = "transfer_shares"
    activity: Mapped[str] = mapped_column(String(50), primary_key=True)
    weight: Mapped[float] = mapped_column(Double)


class RSEDistance(Base):
    """How far a destination is from a source (lower is nearer; Rucio's ``distances``)."""

    __tablename__ = "rse_distances"
    source_rse_id: Mapped[str] = mapped_column(
        ForeignKey("rses.id", ondelete="CASCADE"), primary_key=True
    )
    dest_rse_id: Mapped[str] = mapped_column(
        ForeignKey("rses.id", ondelete="CASCADE"), primary_key=True
    )
    distance: Mapped[int] = mapped_column(Integer)


class Subscription(Base):
    """An account's standing order: rules (``replication_rules``, a JSON list of rule
    templates) for every new DID that matches ``filter`` (JSON object).

    ``state``: ACTIVE, UPDATED and NEW ones are applied; INACTIVE and BROKEN ones are not.
    ``lifetime`` is the date the subscription ends (Rucio's column name). A retroactive
    subscription also walks the DIDs that existed before it, in key order from
    ``retro_scope``/``retro_name``, until ``retro_done``. ``matches_files``: the filter can
    match FILE DIDs, so new files are queued for matching (see ``catalog.new_dids``).
    """

    __tablename__ = "subscriptions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(ForeignKey("accounts.account"))
    filter: Mapped[str] = mapped_column(Text)  # JSON text
    replication_rules: Mapped[str] = mapped_column(Text)  # JSON text
    state: Mapped[str] = mapped_column(String(8), default="ACTIVE")
    policyid: Mapped[int] = mapped_column(Integer, default=3)
    lifetime: Mapped[datetime | None] = mapped_column(DateTime)
    expired_at: Mapped[datetime | None] = mapped_column(DateTime)
    comments: Mapped[str | None] = mapped_column(String(4000))
    retroactive: Mapped[bool] = mapped_column(Boolean, default=False)
    retro_done: Mapped[bool] = mapped_column(Boolean, default=False)
    retro_scope: Mapped[str | None] = mapped_column(String(SCOPE))
    retro_name: Mapped[str | None] = mapped_column(String(NAME))
    matches_files: Mapped[bool] = mapped_column(Boolean, default=False)
    last_processed: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=_now, onupdate=_now)
    __table_args__ = (
        UniqueConstraint("account", "name", name="subscriptions_account_name_uq"),
        Index("subscriptions_state_idx", "state"),
    )


class NewDIDEntry(Base):
    """A DID created while a subscription was applied: written in the DID's own
    transaction, removed in the transaction that matched it against the subscriptions."""

    __tablename__ = "new_dids"
    id: Mapped[int] = mapped_column(_ID, primary_key=True)
    scope: Mapped[str] = mapped_column(String(SCOPE))
    name: Mapped[str] = mapped_column(String(NAME))
    did_type: Mapped[str] = mapped_column(String(9))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=_now)
