"""``fedlake iam embargo add|list|remove``: keep a scope, or a DID and everything below it,
readable only by one group until a date (docs/embargo.md).

Each command is one call of ``/iam/embargoes`` on the lake given by ``FEDLAKE_URL``;
tables for people, ``--json`` for scripts.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from fedlake.cli.output import console, emit

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
embargo_app = typer.Typer(
    help="embargoes: data only a group may read (or know of) until a date",
    no_args_is_help=True,
)
_COLUMNS = ["id", "scope", "name", "group", "until", "active", "reason", "created_by"]


def _call(method: str, path: str, **kw: Any) -> Any:
    from fedlake.client import Client

    return json.loads(Client().request(method, path, **kw).content or b"null")


@embargo_app.command("add")
def embargo_add(
    did: Annotated[str, typer.Argument(help="SCOPE (the whole scope) or SCOPE:NAME")],
    group: Annotated[str, typer.Option(help="the group whose members may read it")],
    until: Annotated[str, typer.Option(help="UTC date it becomes public: 2027-06-30[T00:00]")],
    reason: Annotated[str | None, typer.Option(help="why (shown in listings)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Embargo a scope or a DID for GROUP until a date (admins, or a manager of GROUP)."""
    scope, _, name = did.partition(":")
    body = {"scope": scope, "name": name or None, "group": group, "until": until}
    if reason is not None:
        body["reason"] = reason
    row = _call("POST", "/iam/embargoes", body=body)
    if as_json:
        print(json.dumps(row, default=str))
        return
    console.print(
        f"embargo {row['id']}: {did} readable only by {group} until {row['until']}",
        highlight=False,
        soft_wrap=True,
    )


@embargo_app.command("list")
def embargo_list(
    scope: Annotated[str | None, typer.Option(help="only this scope")] = None,
    active: Annotated[bool, typer.Option("--active", help="only those not yet over")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Embargoes: all of them for admins, those of your groups for others."""
    params = {k: v for k, v in {"scope": scope, "active": "true" if active else None}.items() if v}
    rows = _call("GET", "/iam/embargoes", params=params)
    emit(rows, _COLUMNS, as_json=as_json, title="embargoes")


@embargo_app.command("remove")
def embargo_remove(
    embargo_id: Annotated[int, typer.Argument(help="the id `fedlake iam embargo list` shows")],
    as_json: JsonOpt = False,
) -> None:
    """Lift an embargo now (admins, or a manager of its group): the data becomes public."""
    _call("DELETE", f"/iam/embargoes/{embargo_id}")
    if as_json:
        print(json.dumps({"id": embargo_id, "removed": True}))
    else:
        console.print(f"removed embargo {embargo_id}", highlight=False)


def register(iam_app: typer.Typer) -> None:
    iam_app.add_typer(embargo_app, name="embargo")
