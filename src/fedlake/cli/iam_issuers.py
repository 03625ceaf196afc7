"""``fedlake iam issuer|group-map``: trusted external token issuers and the mapping of
their groups to accounts (docs/trust.md).

Each command is one call of the ``/iam/issuers`` or ``/iam/group-mappings`` API on the
lake given by ``FEDLAKE_URL``, as an admin account.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer

from fedlake.cli.output import console, emit

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
ListOpt = list[str] | None

issuer_app = typer.Typer(
    help="trusted external token issuers: add, list, show, change, remove", no_args_is_help=True
)
map_app = typer.Typer(help="map an issuer's groups (wlcg.groups) to accounts", no_args_is_help=True)

_COLUMNS = ["issuer", "enabled", "audiences", "algorithms", "auto_create_groups", "wlcg_profile"]


def _client() -> Any:
    from fedlake.client import Client

    return Client()


def _ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _path(issuer: str) -> str:
    return "/iam/issuers/" + quote(issuer, safe="")


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    return {k: " ".join(v) if isinstance(v, list) else v for k, v in row.items()}


@issuer_app.command("add")
def add(
    issuer: Annotated[str, typer.Argument(help="the issuer URL (the iss claim of its tokens)")],
    audience: Annotated[
        ListOpt,
        typer.Option(help="accepted aud value (repeat; default: this lake's URL)"),
    ] = None,
    algorithm: Annotated[
        ListOpt, typer.Option(help="allowed signature algorithm (repeat; default RS256 ES256)")
    ] = None,
    auto_create_group: Annotated[
        ListOpt,
        typer.Option(help="members of this group get an account at first use (repeat)"),
    ] = None,
    discovery_url: Annotated[
        str | None, typer.Option(help="discovery document URL (default: under the issuer)")
    ] = None,
    no_wlcg: Annotated[
        bool, typer.Option("--no-wlcg", help="not a WLCG-profile issuer: wlcg.ver not required")
    ] = False,
    disabled: Annotated[bool, typer.Option("--disabled", help="add it switched off")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Trust the tokens of an external OIDC issuer."""
    body: dict[str, Any] = {"issuer": issuer, "wlcg_profile": not no_wlcg, "enabled": not disabled}
    if audience:
        body["audiences"] = audience
    if algorithm:
        body["algorithms"] = algorithm
    if auto_create_group:
        body["auto_create_groups"] = auto_create_group
    if discovery_url:
        body["discovery_url"] = discovery_url
    with _client() as c:
        row = c.request("POST", "/iam/issuers", body=body).json()
    if as_json:
        emit(row, as_json=True)
    else:
        console.print(f"trusting issuer {issuer}", highlight=False)


@issuer_app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List the trusted issuers."""
    with _client() as c:
        rows = _ndjson(c.request("GET", "/iam/issuers").text)
    emit(rows if as_json else [_flat(r) for r in rows], _COLUMNS, as_json=as_json)


@issuer_app.command("show")
def show(issuer: str, as_json: JsonOpt = False) -> None:
    """Show one trusted issuer."""
    with _client() as c:
        row = c.request("GET", _path(issuer)).json()
    emit(row if as_json else _flat(row), as_json=as_json, title=f"issuer {issuer}")


@issuer_app.command("update")
def update(
    issuer: str,
    audience: Annotated[ListOpt, typer.Option(help="replace the accepted audiences")] = None,
    algorithm: Annotated[ListOpt, typer.Option(help="replace the allowed algorithms")] = None,
    auto_create_group: Annotated[
        ListOpt, typer.Option(help="replace the auto-create groups")
    ] = None,
    enable: Annotated[bool | None, typer.Option("--enable/--disable")] = None,
) -> None:
    """Change a trusted issuer; what is not given stays as it is."""
    body: dict[str, Any] = {}
    if audience:
        body["audiences"] = audience
    if algorithm:
        body["algorithms"] = algorithm
    if auto_create_group:
        body["auto_create_groups"] = auto_create_group
    if enable is not None:
        body["enabled"] = enable
    with _client() as c:
        c.request("PATCH", _path(issuer), body=body)
    console.print(f"updated issuer {issuer}", highlight=False)


@issuer_app.command("remove")
def remove(issuer: str) -> None:
    """Stop trusting an issuer (its group mappings go too; OIDC identities stay)."""
    with _client() as c:
        c.request("DELETE", _path(issuer))
    console.print(f"removed issuer {issuer}", highlight=False)


@map_app.command("add")
def map_add(
    issuer: str,
    group: Annotated[str, typer.Argument(help="a group of the token's wlcg.groups")],
    account: str,
    priority: Annotated[int, typer.Option(help="higher wins when several groups map")] = 0,
) -> None:
    """Tokens of ISSUER whose wlcg.groups hold GROUP act as ACCOUNT."""
    body = {"issuer": issuer, "group": group, "account": account, "priority": priority}
    with _client() as c:
        c.request("POST", "/iam/group-mappings", body=body)
    console.print(f"group {group} of {issuer} maps to account {account}", highlight=False)


@map_app.command("list")
def map_list(
    issuer: Annotated[str | None, typer.Option(help="only this issuer's mappings")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List group mappings, highest priority first."""
    params = {"issuer": issuer} if issuer else None
    with _client() as c:
        rows = _ndjson(c.request("GET", "/iam/group-mappings", params=params).text)
    emit(rows, ["issuer", "group", "account", "priority"], as_json=as_json)


@map_app.command("remove")
def map_remove(issuer: str, group: str) -> None:
    """Remove the mapping of ISSUER's GROUP."""
    with _client() as c:
        c.request("DELETE", "/iam/group-mappings", params={"issuer": issuer, "group": group})
    console.print(f"group {group} of {issuer} no longer maps to an account", highlight=False)


def register(iam_app: typer.Typer) -> None:
    iam_app.add_typer(issuer_app, name="issuer")
    iam_app.add_typer(map_app, name="group-map")
