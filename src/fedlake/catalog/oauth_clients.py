"""Registered OAuth clients (``oauth_clients``): add, get, list, remove.

Secrets arrive here already hashed (the service layer hashes them with
``fedlake.auth.passwords`` and shows the secret once); a public client has no secret.
``grant_types``, ``scope`` and ``redirect_uris`` are stored space-separated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedlake.catalog.iam_models import OAuthClient
from fedlake.domain.errors import ClientNotFound, Duplicate

__all__ = ["add_client", "client_dict", "get_client", "list_clients", "remove_client"]


def add_client(
    session: Session,
    client_id: str,
    *,
    name: str,
    owner: str,
    grant_types: Sequence[str],
    scope: Sequence[str],
    secret_hash: str | None,
    account: str | None = None,
    redirect_uris: Sequence[str] = (),
) -> OAuthClient:
    if session.get(OAuthClient, client_id) is not None:
        raise Duplicate(f"OAuth client {client_id!r} already exists; pick another client id")
    row = OAuthClient(
        client_id=client_id,
        name=name,
        owner=owner,
        account=account,
        secret_hash=secret_hash,
        grant_types=" ".join(grant_types),
        scope=" ".join(scope),
        redirect_uris=" ".join(redirect_uris),
        enabled=True,
    )
    session.add(row)
    session.flush()
    return row


def get_client(session: Session, client_id: str) -> OAuthClient:
    row = session.get(OAuthClient, client_id)
    if row is None:
        raise ClientNotFound(f"no OAuth client {client_id!r}; see `fedlake iam client list`")
    return row


def list_clients(session: Session) -> list[OAuthClient]:
    return list(session.scalars(select(OAuthClient).order_by(OAuthClient.client_id)).all())


def remove_client(session: Session, client_id: str) -> None:
    session.delete(get_client(session, client_id))
    session.flush()


def client_dict(row: OAuthClient) -> dict[str, Any]:
    """What the API shows of a client (never the secret hash)."""
    return {
        "client_id": row.client_id,
        "name": row.name,
        "owner": row.owner,
        "account": row.account,
        "public": row.secret_hash is None,
        "grant_types": row.grant_types.split(),
        "scope": row.scope.split(),
        "redirect_uris": row.redirect_uris.split(),
        "enabled": row.enabled,
        "created_at": row.created_at,
    }
