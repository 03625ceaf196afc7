"""``fedlake subscription``: rules made automatically for new DIDs that match a filter."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from fedlake.cli.output import console, emit

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
AccountOpt = Annotated[
    str | None, typer.Option("--account", "-a", help="owner (default: the account you use)")
]
FilterOpt = Annotated[
    str | None,
    typer.Option(
        "--filter",
        help='JSON object, e.g. \'{"scope": ["data18"], "pattern": "raw_", '
        '"did_type": ["DATASET"], "datatype": "RAW"}\'',
    ),
]
RuleOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--rule",
        help='a rule template as JSON, e.g. \'{"copies": 2, "rse_expression": "QOS=SAFE"}\' '
        "(repeat for several, or give one JSON list)",
    ),
]
CommentOpt = Annotated[str | None, typer.Option("--comments", help="free text")]
LifetimeOpt = Annotated[
    float | None, typer.Option(help="days until the subscription ends (0: no end)")
]
PriorityOpt = Annotated[int | None, typer.Option(help="order among subscriptions (lower first)")]

sub_app = typer.Typer(
    help="subscriptions: rules made automatically for new DIDs that match a filter",
    no_args_is_help=True,
)


def _client() -> Any:
    from fedlake.client import Client

    return Client()


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _account(c: Any, account: str | None) -> str:
    if account:
        return account
    return str(c.config.account or c.whoami()["account"])


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{what} is not valid JSON: {exc}") from None


def _rules(values: list[str] | None) -> list[Any] | None:
    if not values:
        return None
    out: list[Any] = []
    for text in values:
        value = _json_arg(text, "--rule")
        out.extend(value if isinstance(value, list) else [value])
    return out


def _ndjson(c: Any, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    r = c.request("GET", path, params=params)
    return [json.loads(line) for line in r.text.splitlines() if line.strip()]


def _brief(sub: dict[str, Any]) -> dict[str, Any]:
    return {
        "account": sub["account"],
        "name": sub["name"],
        "state": sub["state"],
        "priority": sub["policyid"],
        "filter": sub["filter"],
        "rules": sub["replication_rules"],
        "last processed": sub.get("last_processed"),
    }


@sub_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="subscription name (unique per account)")],
    filter_: FilterOpt = None,
    rule: RuleOpt = None,
    account: AccountOpt = None,
    comments: CommentOpt = None,
    lifetime: LifetimeOpt = None,
    priority: PriorityOpt = None,
    retroactive: Annotated[
        bool, typer.Option("--retroactive", help="also make the rules for existing DIDs")
    ] = False,
) -> None:
    """Add a subscription: its rules are made for every new DID that matches its filter."""
    options: dict[str, Any] = {
        "filter": {} if filter_ is None else _json_arg(filter_, "--filter"),
        "replication_rules": _rules(rule),
        "comments": comments,
        "lifetime": lifetime or None,
        "retroactive": retroactive,
        "priority": priority,
    }
    with _client() as c:
        owner = _account(c, account)
        r = c.request("POST", f"/subscriptions/{_q(owner)}/{_q(name)}", body={"options": options})
    console.print(f"added subscription {owner}/{name} (id {r.text})")


@sub_app.command("list")
def list_(
    account: AccountOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="every account's subscriptions")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List subscriptions (yours by default)."""
    with _client() as c:
        path = "/subscriptions/" if all_ else f"/subscriptions/{_q(_account(c, account))}"
        rows = _ndjson(c, path)
    if as_json:
        emit(rows, as_json=True)
        return
    emit(
        [_brief(r) for r in rows],
        ["account", "name", "state", "priority", "filter", "rules", "last processed"],
        as_json=False,
    )


@sub_app.command("show")
def show(
    name: str,
    account: AccountOpt = None,
    rules: Annotated[bool, typer.Option("--rules", help="also list the rules it made")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a subscription, how many of its rules are in each state (and the rules)."""
    with _client() as c:
        owner = _account(c, account)
        base = f"/subscriptions/{_q(owner)}/{_q(name)}"
        sub = _ndjson(c, base)[0]
        states = _ndjson(c, f"{base}/rules/states")
        made = _ndjson(c, f"{base}/rules") if rules else []
    if as_json:
        emit({**sub, "rule_states": {s: n for _, _, s, n in states}, "rules": made}, as_json=True)
        return
    emit(sub, as_json=False, title=f"subscription {owner}/{name}")
    table = Table("rule state", "rules", title="its rules")
    for _, _, state, count in states:
        table.add_row(state, str(count))
    console.print(table)
    if rules:
        emit(
            made,
            ["id", "scope", "name", "state", "rse_expression", "copies", "created_at"],
            as_json=False,
        )


@sub_app.command("update")
def update(
    name: str,
    filter_: FilterOpt = None,
    rule: RuleOpt = None,
    account: AccountOpt = None,
    comments: CommentOpt = None,
    lifetime: LifetimeOpt = None,
    priority: PriorityOpt = None,
    retroactive: Annotated[
        bool, typer.Option("--retroactive", help="walk the existing DIDs again (no rule twice)")
    ] = False,
    enable: Annotated[bool, typer.Option("--enable", help="make it active again")] = False,
) -> None:
    """Change a subscription; what is not given stays as it is."""
    options: dict[str, Any] = {
        "filter": None if filter_ is None else _json_arg(filter_, "--filter"),
        "replication_rules": _rules(rule),
        "comments": comments,
        "lifetime": None if lifetime is None else (lifetime or False),
        "priority": priority,
        "retroactive": retroactive or None,
        "state": "ACTIVE" if enable else None,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if not options:
        raise typer.BadParameter("nothing to change: give --filter, --rule, --comments ...")
    with _client() as c:
        owner = _account(c, account)
        c.request("PUT", f"/subscriptions/{_q(owner)}/{_q(name)}", body={"options": options})
    console.print(f"updated subscription {owner}/{name}")


@sub_app.command("disable")
def disable(name: str, account: AccountOpt = None) -> None:
    """Deactivate a subscription: no rules for new DIDs (its rules stay)."""
    with _client() as c:
        owner = _account(c, account)
        body = {"options": {"state": "INACTIVE"}}
        c.request("PUT", f"/subscriptions/{_q(owner)}/{_q(name)}", body=body)
    console.print(f"disabled subscription {owner}/{name}")


def register(app: typer.Typer) -> None:
    app.add_typer(sub_app, name="subscription")
