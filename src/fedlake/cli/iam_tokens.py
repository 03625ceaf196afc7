"""``fedlake iam client|keys|token``: OAuth clients, signing keys and admin-minted tokens
of the embedded issuer (docs/tokens.md). Each command is one call of the lake given by
``FEDLAKE_URL``, as an admin."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer

from fedlake.cli.output import console, emit

__all__ = ["parse_lifetime", "register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
client_app = typer.Typer(help="OAuth clients: add, list, remove", no_args_is_help=True)
keys_app = typer.Typer(help="token signing keys: list, rotate", no_args_is_help=True)
token_app = typer.Typer(help="tokens: issue one for a user (admins)", no_args_is_help=True)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_lifetime(text: str) -> int:
    """``3600``, ``90s``, ``15m``, ``1h``, ``7d`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not m:
        raise typer.BadParameter(f"{text!r}: use seconds or a number with s, m, h or d")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def _client() -> Any:
    from fedlake.client import Client

    return Client()


def _split(values: list[str] | None) -> list[str]:
    return [p for v in values or [] for p in re.split(r"[,\s]+", v) if p]


@client_app.command("add")
def client_add(
    client_id: Annotated[str, typer.Argument(help="the client id")],
    grant: Annotated[
        list[str],
        typer.Option(
            help="grant type (repeat): client_credentials, device_code, refresh_token, "
            "authorization_code, token_exchange, password"
        ),
    ],
    scope: Annotated[list[str] | None, typer.Option(help="allowed scope (repeat)")] = None,
    account: Annotated[
        str | None, typer.Option(help="account of client_credentials tokens")
    ] = None,
    public: Annotated[bool, typer.Option(help="a public client (no secret)")] = False,
    redirect_uri: Annotated[list[str] | None, typer.Option(help="redirect URI (repeat)")] = None,
    name: Annotated[str | None, typer.Option(help="display name")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an OAuth client; prints its secret ONCE."""
    body = {
        "client_id": client_id,
        "name": name,
        "grant_types": _split(grant),
        "scope": _split(scope),
        "account": account,
        "public": public,
        "redirect_uris": _split(redirect_uri),
    }
    out = _client()._json("POST", "/iam/clients", body=body)
    if as_json:
        print(json.dumps(out, default=str))
        return
    console.print(f"client {out['client_id']} added", highlight=False)
    if out.get("client_secret"):
        console.print("client secret (shown only now, keep it safe):", highlight=False)
        print(out["client_secret"])


@client_app.command("list")
def client_list(as_json: JsonOpt = False) -> None:
    """Registered OAuth clients (never their secrets)."""
    rows = _client()._json("GET", "/iam/clients")
    if not as_json:
        for r in rows:
            for key in ("grant_types", "scope"):
                r[key] = " ".join(r[key])
    emit(
        rows,
        ["client_id", "account", "public", "grant_types", "scope"],
        as_json=as_json,
        title="OAuth clients",
    )


@client_app.command("remove")
def client_remove(client_id: str) -> None:
    """Remove an OAuth client (its tokens stay valid until they expire or are revoked)."""
    _client().request("DELETE", f"/iam/clients/{client_id}")
    console.print(f"client {client_id} removed", highlight=False)


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False) -> None:
    """Signing keys: the current one, and retired ones until their tokens have expired."""
    rows = _client()._json("GET", "/iam/keys")
    emit(
        rows,
        ["kid", "algorithm", "current", "created_at", "retired_at", "drops_at"],
        as_json=as_json,
        title="signing keys",
    )


@keys_app.command("rotate")
def keys_rotate(
    algorithm: Annotated[str | None, typer.Option(help="ES256 or RS256")] = None,
) -> None:
    """Make a new current signing key; the old one keeps validating its tokens."""
    out = _client()._json("POST", "/iam/keys/rotate", body={"algorithm": algorithm})
    console.print(f"new signing key {out['kid']}", highlight=False)


@token_app.command("issue")
def token_issue(
    user: Annotated[str, typer.Argument(help="the account the token acts for")],
    groups: Annotated[str | None, typer.Option(help="groups, e.g. /a,/b")] = None,
    scope: Annotated[str | None, typer.Option(help='e.g. "storage.read:/x openid"')] = None,
    lifetime: Annotated[str | None, typer.Option(help="e.g. 3600, 15m, 1h, 7d")] = None,
) -> None:
    """Print an access token for USER (admins)."""
    body: dict[str, Any] = {"account": user, "groups": _split([groups] if groups else None)}
    if scope is not None:
        body["scope"] = scope
    if lifetime is not None:
        body["lifetime"] = parse_lifetime(lifetime)
    out = _client()._json("POST", "/iam/tokens", body=body)
    print(out["access_token"])


def register(iam_app: typer.Typer) -> None:
    iam_app.add_typer(client_app, name="client")
    iam_app.add_typer(keys_app, name="keys")
    iam_app.add_typer(token_app, name="token")
