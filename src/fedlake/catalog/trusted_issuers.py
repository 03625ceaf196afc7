"""Trusted external issuers and group -> account mappings (tables ``trusted_issuers`` and
``iam_group_mappings``), and the lookups that map a token's (iss, sub, groups) to accounts.

OIDC identities are stored the way Rucio stores them: identity type ``OIDC`` and the
identity text ``SUB=<sub>, ISS=<iss>``, so data added with
``rucio-admin identity add --type OIDC --id "SUB=..., ISS=..."`` maps here unchanged.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedlake.catalog.accounts import get_account
from fedlake.catalog.iam_models import GroupMapping, TrustedIssuer
from fedlake.catalog.models import Identity
from fedlake.domain.errors import Duplicate, NotFound
from fedlake.domain.types import IdentityType

__all__ = [
    "add_issuer",
    "add_mapping",
    "delete_issuer",
    "delete_mapping",
    "find_issuer",
    "get_issuer",
    "group_accounts",
    "identity_accounts",
    "issuer_dict",
    "list_issuers",
    "list_mappings",
    "mapping_dict",
    "oidc_identity",
    "update_issuer",
]


def oidc_identity(issuer: str, subject: str) -> str:
    """Rucio's text of an OIDC identity."""
    return f"SUB={subject}, ISS={issuer}"


def _words(value: str) -> list[str]:
    return value.split()


def issuer_dict(row: TrustedIssuer) -> dict[str, Any]:
    return {
        "issuer": row.issuer,
        "discovery_url": row.discovery_url,
        "audiences": _words(row.audiences),
        "algorithms": _words(row.algorithms),
        "auto_create_groups": _words(row.auto_create_groups),
        "wlcg_profile": row.wlcg_profile,
        "enabled": row.enabled,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def mapping_dict(row: GroupMapping) -> dict[str, Any]:
    return {
        "issuer": row.issuer,
        "group": row.group,
        "account": row.account,
        "priority": row.priority,
    }


# --- issuers ---------------------------------------------------------------------------


def add_issuer(
    session: Session,
    issuer: str,
    *,
    discovery_url: str | None,
    audiences: list[str],
    algorithms: list[str],
    auto_create_groups: list[str],
    enabled: bool = True,
) -> TrustedIssuer:
    if session.get(TrustedIssuer, issuer) is not None:
        raise Duplicate(f"issuer {issuer} is already trusted; change it with update instead")
    row = TrustedIssuer(
        issuer=issuer,
        discovery_url=discovery_url,
        audiences=" ".join(audiences),
        algorithms=" ".join(algorithms),
        auto_create_groups=" ".join(auto_create_groups),
        enabled=enabled,
    )
    session.add(row)
    session.flush()
    return row


def get_issuer(session: Session, issuer: str) -> TrustedIssuer:
    row = session.get(TrustedIssuer, issuer)
    if row is None:
        raise NotFound(f"issuer {issuer} is not a trusted issuer (see fedlake iam issuer list)")
    return row


def find_issuer(session: Session, issuer: str) -> TrustedIssuer | None:
    return session.get(TrustedIssuer, issuer)


def list_issuers(session: Session) -> list[TrustedIssuer]:
    return list(session.scalars(select(TrustedIssuer).order_by(TrustedIssuer.issuer)))


def update_issuer(session: Session, issuer: str, changes: dict[str, Any]) -> TrustedIssuer:
    """Apply ``changes`` (already validated; list values are stored space-separated)."""
    row = get_issuer(session, issuer)
    for key, value in changes.items():
        setattr(row, key, " ".join(value) if isinstance(value, list) else value)
    session.flush()
    return row


def delete_issuer(session: Session, issuer: str) -> None:
    """Remove the issuer and its group mappings (identities stay: they are account data)."""
    row = get_issuer(session, issuer)
    for mapping in session.scalars(select(GroupMapping).where(GroupMapping.issuer == issuer)):
        session.delete(mapping)
    session.delete(row)
    session.flush()


# --- group mappings ----------------------------------------------------------------------


def add_mapping(session: Session, issuer: str, group: str, account: str, priority: int) -> None:
    get_issuer(session, issuer)
    get_account(session, account)
    if session.get(GroupMapping, (issuer, group)) is not None:
        raise Duplicate(
            f"group {group} of issuer {issuer} is already mapped; remove the mapping first"
        )
    session.add(GroupMapping(issuer=issuer, group=group, account=account, priority=priority))
    session.flush()


def list_mappings(session: Session, issuer: str | None = None) -> list[GroupMapping]:
    query = select(GroupMapping).order_by(
        GroupMapping.issuer, GroupMapping.priority.desc(), GroupMapping.group
    )
    if issuer is not None:
        query = query.where(GroupMapping.issuer == issuer)
    return list(session.scalars(query))


def delete_mapping(session: Session, issuer: str, group: str) -> None:
    row = session.get(GroupMapping, (issuer, group))
    if row is None:
        raise NotFound(f"group {group} of issuer {issuer} is not mapped to an account")
    session.delete(row)
    session.flush()


# --- lookups -----------------------------------------------------------------------------


def identity_accounts(session: Session, issuer: str, subject: str) -> list[str]:
    """Accounts the OIDC identity (iss, sub) maps to: its default account first."""
    rows = session.scalars(
        select(Identity)
        .where(
            Identity.identity_type == IdentityType.OIDC.value,
            Identity.identity == oidc_identity(issuer, subject),
        )
        .order_by(Identity.is_default.desc(), Identity.account)
    )
    return [r.account for r in rows]


def group_accounts(session: Session, issuer: str, groups: tuple[str, ...]) -> list[str]:
    """Accounts that the token's ``groups`` map to: highest priority first."""
    if not groups:
        return []
    rows = session.scalars(
        select(GroupMapping)
        .where(GroupMapping.issuer == issuer, GroupMapping.group.in_(groups))
        .order_by(GroupMapping.priority.desc(), GroupMapping.group)
    )
    out: list[str] = []
    for row in rows:
        if row.account not in out:
            out.append(row.account)
    return out
