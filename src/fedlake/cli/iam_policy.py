"""``fedlake iam policy add|list|remove``: namespace rules of policy v2 (docs/policy.md):
which group may read, write, delete or do everything in which scopes.

Each command is one call of ``/iam/policies`` on the lake given by ``FEDLAKE_URL``
(admins only); tables for people, ``--json`` for scripts.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from fedlake.cli.output import console, emit

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
policy_app = typer.Typer(
    help="namespace rules: which group may read/write/delete in which scopes",
    no_args_is_help=True,
)
_COLUMNS = ["id", "group", "action", "scope", "name_prefix", "created_by", "created_at"]


def _call(method: str, path: str, **kw: Any) -> Any:
    from fedlake.client import Client

    return json.loads(Client().request(method, path, **kw).content or b"null")


@policy_app.command("add")
def policy_add(
    group: Annotated[str, typer.Argument(help="the group, e.g. /escape/cms (covers subgroups)")],
    action: Annotated[str, typer.Argument(help="read, write, delete or all")],
    scope: Annotated[str, typer.Argument(help="scope name or fnmatch pattern: cms_*, *")],
    name_prefix: Annotated[
        str | None, typer.Option("--name-prefix", help="only DIDs whose name starts so")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Grant ACTION on the scopes matching SCOPE to the members of GROUP (admins)."""
    body: dict[str, Any] = {"group": group, "action": action, "scope": scope}
    if name_prefix is not None:
        body["name_prefix"] = name_prefix
    row = _call("POST", "/iam/policies", body=body)
    if as_json:
        print(json.dumps(row, default=str))
        return
    where = f"{scope} (names {name_prefix}*)" if name_prefix else scope
    console.print(
        f"namespace rule {row['id']}: {group} may {action} in {where}",
        highlight=False,
        soft_wrap=True,
    )


@policy_app.command("list")
def policy_list(
    group: Annotated[str | None, typer.Option(help="only the rules of this group")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every namespace rule (admins)."""
    rows = _call("GET", "/iam/policies", params={"group": group} if group else {})
    emit(rows, _COLUMNS, as_json=as_json, title="namespace rules")


@policy_app.command("remove")
def policy_remove(
    rule_id: Annotated[int, typer.Argument(help="the id `fedlake iam policy list` shows")],
    as_json: JsonOpt = False,
) -> None:
    """Remove a namespace rule (admins); it stops applying at the next request."""
    _call("DELETE", f"/iam/policies/{rule_id}")
    if as_json:
        print(json.dumps({"id": rule_id, "removed": True}))
    else:
        console.print(f"removed namespace rule {rule_id}", highlight=False)


def register(iam_app: typer.Typer) -> None:
    iam_app.add_typer(policy_app, name="policy")
