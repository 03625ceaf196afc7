"""``fedlake account limit set|delete`` and ``fedlake account usage``: how many bytes an
account's rules may lock per RSE or RSE expression, and how many they lock
(``rucio-admin account set-limits``/``get-limits``, ``rucio list-account-usage``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fedlake.cli.output import console, emit

__all__ = ["register"]

limit_app = typer.Typer(
    help="byte limits of an account's rules, per RSE or RSE expression", no_args_is_help=True
)

GlobalOpt = Annotated[
    bool,
    typer.Option(
        "--global",
        help="the target is an RSE expression (a limit over all its RSEs together); "
        "default: one RSE",
    ),
]


def _client() -> Any:
    from fedlake.client import Client

    return Client()


def _bytes(text: str) -> int:
    from fedlake.cli.se_cache import parse_size

    if text.strip().lower() in ("-1", "unlimited", "inf", "infinity"):
        return -1
    try:
        return parse_size(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{exc}, or 'unlimited'", param_hint="BYTES") from None


def _size(value: Any) -> str:
    if not isinstance(value, int | float) or value == float("inf") or value < 0:
        return "unlimited"
    for unit, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= factor:
            return f"{value / factor:.1f} {unit} ({int(value):,} B)"
    return f"{int(value):,} B"


@limit_app.command("set")
def limit_set(
    account: str,
    target: Annotated[str, typer.Argument(help="an RSE (or, with --global, an RSE expression)")],
    size: Annotated[
        str, typer.Argument(metavar="BYTES", help="bytes: 1000000, 500G, 2T; or 'unlimited'")
    ],
    is_global: GlobalOpt = False,
) -> None:
    """Limit the bytes the account's rules may lock (admins); rules beyond it are refused."""
    nbytes = _bytes(size)
    locality = "global" if is_global else "local"
    with _client() as c:
        c.set_limit(account, locality, target, nbytes)
    console.print(f"{account} may lock {_size(nbytes)} on {target}", highlight=False)


@limit_app.command("delete")
def limit_delete(account: str, target: str, is_global: GlobalOpt = False) -> None:
    """Remove a limit (admins): the account is then unlimited there."""
    with _client() as c:
        c.delete_limit(account, "global" if is_global else "local", target)
    console.print(f"removed the limit of {account} on {target}", highlight=False)


def usage(
    account: str,
    is_global: GlobalOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """What the account's rules lock, with its limits: per RSE, or per expression with
    a limit (--global)."""
    locality = "global" if is_global else "local"
    with _client() as c:
        rows = c.usage(account, locality)
    if as_json:
        emit(rows, as_json=True)
        return
    where = "rse_expression" if is_global else "rse"
    shown = [
        {
            where: r.get(where),
            "files": f"{r.get('files', 0):,}",
            "used": _size(r.get("bytes", 0)),
            "limit": _size(r.get("bytes_limit")),
            "left": _size(r.get("bytes_remaining")),
        }
        for r in rows
    ]
    emit(shown, [where, "files", "used", "limit", "left"], as_json=False)


def register(account_app: typer.Typer) -> None:
    account_app.add_typer(limit_app, name="limit")
    account_app.command("usage")(usage)
