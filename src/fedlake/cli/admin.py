"""Admin verbs: rse, scope, account (noun-verb)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from fedlake.cli.output import console, emit

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
rse_app = typer.Typer(help="storage elements", no_args_is_help=True)
protocol_app = typer.Typer(help="RSE protocols", no_args_is_help=True)
scope_app = typer.Typer(help="scopes", no_args_is_help=True)
account_app = typer.Typer(help="accounts", no_args_is_help=True)


def _client() -> Any:
    from fedlake.client import Client

    return Client()


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@rse_app.command("list")
def rse_list(
    expression: Annotated[str | None, typer.Argument(help="RSE expression")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List RSEs (optionally those matching an expression)."""
    with _client() as c:
        rows = c.list_rses(expression)
        if expression is None:
            emit(
                rows,
                ["rse", "rse_type", "deterministic", "availability_write", "qos_class"],
                as_json=as_json,
            )
        else:
            emit(rows, ["rse"], as_json=as_json)


@rse_app.command("show")
def rse_show(rse: str, as_json: JsonOpt = False) -> None:
    """Show an RSE's settings and protocols."""
    with _client() as c:
        info = c.get_rse(rse)
        if not as_json:
            info["protocols"] = "; ".join(
                f"{p['scheme']}://{p['hostname']}:{p['port']}{p['prefix']}"
                for p in info["protocols"]
            )
        emit(info, as_json=as_json)


@rse_app.command("add")
def rse_add(
    rse: str,
    non_deterministic: Annotated[bool, typer.Option("--non-deterministic")] = False,
    tape: Annotated[bool, typer.Option("--tape")] = False,
) -> None:
    """Add an RSE."""
    with _client() as c:
        c.add_rse(rse, deterministic=not non_deterministic, rse_type="TAPE" if tape else "DISK")
    console.print(f"added RSE {rse}")


@rse_app.command("set")
def rse_set(rse: str, pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE")]) -> None:
    """Change settings (availability_write=false ...) or attributes (site=CERN ...)."""

    settable = {
        "deterministic",
        "volatile",
        "staging_area",
        "availability_read",
        "availability_write",
        "availability_delete",
        "verify_checksum",
        "lfn2pfn_algorithm",
        "qos_class",
        "rse_type",
        "city",
        "region_code",
        "country_name",
        "continent",
        "time_zone",
        "longitude",
        "latitude",
    }
    with _client() as c:
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise typer.BadParameter(f"{pair!r} is not KEY=VALUE")
            if key in settable:
                c.update_rse(rse, **{key: _value(value)})
            else:
                c.set_rse_attribute(rse, key, _value(value))
    console.print(f"updated {rse}")


@protocol_app.command("add")
def protocol_add(
    rse: str,
    scheme: str,
    hostname: Annotated[str, typer.Option()] = "localhost",
    port: Annotated[int, typer.Option()] = 0,
    prefix: Annotated[str, typer.Option()] = "/",
    impl: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Add a protocol (scheme, host, port, prefix) to an RSE."""
    impls = {
        "file": "rucio.rse.protocols.posix.Default",
        "https": "rucio.rse.protocols.webdav.Default",
        "davs": "rucio.rse.protocols.gfal.Default",
        "root": "rucio.rse.protocols.xrootd.Default",
        "s3": "rucio.rse.protocols.gfal.Default",
    }
    spec = {
        "scheme": scheme,
        "hostname": hostname,
        "port": port,
        "prefix": prefix,
        "impl": impl or impls.get(scheme, "rucio.rse.protocols.gfal.Default"),
    }
    with _client() as c:
        c.add_protocol(rse, spec)
    console.print(f"added {scheme} protocol to {rse}")


@scope_app.command("list")
def scope_list(as_json: JsonOpt = False) -> None:
    """List scopes and their owners."""
    with _client() as c:
        emit(c.list_scopes(), ["scope", "account"], as_json=as_json)


@scope_app.command("add")
def scope_add(scope: str, account: Annotated[str, typer.Option(help="owner")]) -> None:
    """Add a scope owned by an account."""
    with _client() as c:
        c.add_scope(account, scope)
    console.print(f"added scope {scope} for {account}")


@account_app.command("list")
def account_list(as_json: JsonOpt = False) -> None:
    """List accounts."""
    with _client() as c:
        emit(c.list_accounts(), ["account", "account_type", "status", "email"], as_json=as_json)


@account_app.command("add")
def account_add(
    account: str,
    account_type: Annotated[str, typer.Option("--type")] = "USER",
    email: Annotated[str | None, typer.Option()] = None,
    password: Annotated[str | None, typer.Option(help="also add a userpass identity")] = None,
) -> None:
    """Add an account (with a userpass identity of the same name if --password is given)."""
    with _client() as c:
        c.add_account(account, account_type, email)
        if password:
            c.add_identity(account, account, password)
        c.add_scope(account, f"user.{account}")
    console.print(f"added account {account} with scope user.{account}")


def register(app: typer.Typer) -> None:
    from fedlake.cli import account_limits

    rse_app.add_typer(protocol_app, name="protocol")
    account_limits.register(account_app)
    app.add_typer(rse_app, name="rse")
    app.add_typer(scope_app, name="scope")
    app.add_typer(account_app, name="account")
