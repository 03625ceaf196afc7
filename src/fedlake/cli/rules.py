"""``fedlake rule``: add, inspect, change, approve, move, reduce, delete and watch
replication rules (the REST calls of docs/rules.md)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from fedlake.cli.output import console, emit, err_console, interruptible, table

__all__ = ["parse_duration", "register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
rule_app = typer.Typer(help="replication rules", no_args_is_help=True)

#: seconds per duration unit (``--lifetime 7d``)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")
#: exit status of ``rule watch`` when --timeout passes first
WATCH_TIMEOUT_EXIT = 4


def _client() -> Any:
    from fedlake.client import Client

    return Client()


def _did(text: str) -> tuple[str, str]:
    from fedlake.domain.names import split_did

    return split_did(text)


def parse_duration(text: str, option: str = "--lifetime") -> int:
    """Seconds from ``86400``, ``30m``, ``12h``, ``7d``, ``2w`` or a sum like ``1d12h``."""
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    elif value and _PART.sub("", value) == "":
        seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(value))
    else:
        raise typer.BadParameter(
            f"{text!r} is not a duration: give seconds (86400) or numbers with units "
            "s, m, h, d, w (30m, 12h, 7d, 1d12h)",
            param_hint=option,
        )
    if seconds < 1:
        raise typer.BadParameter(f"{text!r}: a lifetime is at least 1 second", param_hint=option)
    return seconds


def _json_object(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None
    if not isinstance(value, dict):
        raise typer.BadParameter('give a JSON object, e.g. \'{"key": "value"}\'', param_hint=option)
    return value


def _say(text: str, *, error: bool = False) -> None:
    """One message line, never wrapped (ids stay whole when piped)."""
    (err_console if error else console).print(text, highlight=False, soft_wrap=True)


def _table(rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    """A table whose rule ids are never cut (people copy them)."""
    table(rows, columns, title=title, whole=("id", "rule_id"))


def _locks(rule: dict[str, Any]) -> str:
    return f"{rule['locks_ok_cnt']}/{rule['locks_replicating_cnt']}/{rule['locks_stuck_cnt']}"


def _when(value: Any) -> str | None:
    """An API date (RFC 1123, UTC) as ``2026-12-28 23:36`` (short enough for a table)."""
    from email.utils import parsedate_to_datetime

    if not value:
        return None
    try:
        return parsedate_to_datetime(str(value)).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(value)


BRIEF_COLUMNS = [
    "id",
    "did",
    "account",
    "expression",
    "copies",
    "state",
    "ok/repl/stuck",
    "expires (UTC)",
]


def _brief(rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": rule["id"],
        "did": f"{rule['scope']}:{rule['name']}",
        "account": rule["account"],
        "expression": rule["rse_expression"],
        "copies": rule["copies"],
        "state": rule["state"],
        "ok/repl/stuck": _locks(rule),
        "expires (UTC)": _when(rule.get("expires_at")),
    }


# --- add, show, list ---------------------------------------------------------------------


@rule_app.command("add")
def add(
    dids: Annotated[list[str], typer.Argument(help="SCOPE:NAME of files or collections")],
    rse_expression: Annotated[str, typer.Argument(help="RSE expression (e.g. QOS=SAFE)")],
    copies: Annotated[int, typer.Option(min=1, help="how many copies")] = 1,
    grouping: Annotated[
        str | None, typer.Option(help="ALL, DATASET (default) or NONE: which files stay together")
    ] = None,
    lifetime: Annotated[
        str | None, typer.Option(help="seconds, or 30m, 12h, 7d ... (default: for ever)")
    ] = None,
    locked: Annotated[bool, typer.Option("--locked", help="not deletable until unlocked")] = False,
    source: Annotated[
        str | None, typer.Option("--source", help="RSE expression to copy from")
    ] = None,
    activity: Annotated[str | None, typer.Option(help="transfer activity")] = None,
    priority: Annotated[int | None, typer.Option(help="transfer priority (default 3)")] = None,
    purge: Annotated[
        bool, typer.Option("--purge", help="delete the replicas as soon as the rule goes")
    ] = False,
    comment: Annotated[str | None, typer.Option(help="free text")] = None,
    ask_approval: Annotated[
        bool, typer.Option("--ask-approval", help="wait for an admin to approve it")
    ] = False,
    distinct_by: Annotated[
        str | None, typer.Option(help="RSE attribute the copies must differ in (e.g. site)")
    ] = None,
    account: Annotated[
        str | None, typer.Option(help="owner (default: you; others need an admin)")
    ] = None,
    notify: Annotated[
        str | None, typer.Option(help="events to send: YES, NO (default), CLOSE, PROGRESS")
    ] = None,
    weight: Annotated[
        str | None, typer.Option(help="RSE attribute weighting the choice of RSEs")
    ] = None,
    meta: Annotated[str | None, typer.Option(help="JSON object kept with the rule")] = None,
    ignore_availability: Annotated[
        bool, typer.Option("--ignore-availability", help="also use RSEs closed for writing")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Ask for COPIES copies of each DID on RSEs matching an expression; prints the rule ids."""
    options: dict[str, Any] = {
        "grouping": grouping,
        "lifetime": None if lifetime is None else parse_duration(lifetime),
        "locked": locked or None,
        "source_replica_expression": source,
        "activity": activity,
        "priority": priority,
        "purge_replicas": purge or None,
        "comment": comment,
        "ask_approval": ask_approval or None,
        "distinct_by": distinct_by,
        "account": account,
        "notify": notify,
        "weight": weight,
        "meta": None if meta is None else _json_object(meta, "--meta"),
        "ignore_availability": ignore_availability or None,
    }
    options = {k: v for k, v in options.items() if v is not None}
    keys = [_did(d) for d in dids]
    with _client() as c:
        ids = c.add_rule(keys, copies, rse_expression, **options)
    if as_json:
        print(json.dumps(ids))
    else:
        _say("\n".join(ids))


@rule_app.command("show")
def show(rule_id: str, as_json: JsonOpt = False) -> None:
    """Show every field of a rule."""
    with _client() as c:
        rule = c.get_rule(rule_id)
    emit(rule, as_json=as_json, title=f"rule {rule_id}")


@rule_app.command("list")
def list_(
    did: Annotated[str | None, typer.Argument(help="only rules on this SCOPE:NAME")] = None,
    account: Annotated[str | None, typer.Option(help="only this account's rules")] = None,
    state: Annotated[
        str | None,
        typer.Option(help="OK, REPLICATING, STUCK, SUSPENDED or WAITING_APPROVAL"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List rules: all of them, or those on a DID, of an account, in a state."""
    key = None if did is None else _did(did)
    filters: dict[str, Any] = {"account": account, "state": state}
    if key is not None:
        filters |= {"scope": key[0], "name": key[1]}
    with _client() as c:
        rows = c.list_rules(**filters)
        if key is not None and not rows:
            c.get_did(*key)  # an unknown DID is an error, not an empty list
    if as_json:
        emit(rows, as_json=True)
        return
    _table([_brief(r) for r in rows], BRIEF_COLUMNS)


@rule_app.command("history")
def history(
    did: Annotated[str, typer.Argument(help="SCOPE:NAME")], as_json: JsonOpt = False
) -> None:
    """Every state a DID's rules went through (also rules since removed)."""
    with _client() as c:
        rows = c.rule_history(*_did(did))
    if as_json:
        emit(rows, as_json=True)
        return
    _table(
        [
            {
                "rule_id": r["rule_id"],
                "account": r["account"],
                "expression": r["rse_expression"],
                "state": r["state"],
                "ok/repl/stuck": _locks(r),
                "at (UTC)": _when(r.get("updated_at")),
            }
            for r in rows
        ],
        ["rule_id", "account", "expression", "state", "ok/repl/stuck", "at (UTC)"],
    )


@rule_app.command("locks")
def locks(rule_id: str, as_json: JsonOpt = False) -> None:
    """The rule's locks: one per file and RSE, with its state."""
    with _client() as c:
        rows = c.rule_locks(rule_id)
    if as_json:
        emit(rows, as_json=True)
        return
    _table(
        [{"did": f"{r['scope']}:{r['name']}", "rse": r["rse"], "state": r["state"]} for r in rows],
        ["did", "rse", "state"],
        title=f"locks of rule {rule_id}",
    )


# --- changes ----------------------------------------------------------------------------


@rule_app.command("update")
def update(
    rule_id: str,
    lifetime: Annotated[
        str | None,
        typer.Option(help="from now: seconds, or 30m, 12h, 7d ...; 'never' removes the expiry"),
    ] = None,
    locked: Annotated[
        bool | None, typer.Option("--locked/--unlocked", help="lock or unlock the rule")
    ] = None,
    copies: Annotated[int | None, typer.Option(min=1, help="new number of copies")] = None,
    comment: Annotated[str | None, typer.Option(help="free text")] = None,
    priority: Annotated[int | None, typer.Option(help="transfer priority")] = None,
    activity: Annotated[str | None, typer.Option(help="transfer activity")] = None,
    rse_expression: Annotated[
        str | None,
        typer.Option(help="new RSE expression: moves the data (a child rule is made)"),
    ] = None,
) -> None:
    """Change a rule; what is not given stays as it is."""
    options: dict[str, Any] = {
        "locked": locked,
        "copies": copies,
        "comment": comment,
        "priority": priority,
        "activity": activity,
        "rse_expression": rse_expression,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if lifetime is not None:
        never = lifetime.strip().lower() == "never"
        options["lifetime"] = None if never else parse_duration(lifetime)
    if not options:
        raise typer.BadParameter(
            "nothing to change: give --lifetime, --locked/--unlocked, --copies, --comment, "
            "--priority, --activity or --rse-expression"
        )
    with _client() as c:
        before = c.get_rule(rule_id)
        c.update_rule(rule_id, options)
        after = _look(c, rule_id)
        if after.rule is None and rse_expression is not None:
            # moved at once (the copies were there already): the rule is gone
            made = c.list_rules(
                scope=before["scope"],
                name=before["name"],
                account=before["account"],
                rse_expression=rse_expression,
            )
            to = " or ".join(f"rule {r['id']}" for r in made) or "a new rule"
            _say(f"rule {rule_id} moved to {rse_expression!r} at once, as {to}; it is removed")
            return
    if after.rule is None:
        _say(f"updated rule {rule_id}; it is gone now (deleted or expired meanwhile)")
        return
    _say(f"updated rule {rule_id} (state {after.rule['state']})")
    if rse_expression is not None and after.child is not None:
        _say(
            f"moving to {rse_expression!r} as rule {after.child['id']}; "
            f"{rule_id} is removed once it is OK"
        )


@rule_app.command("approve")
def approve(rule_id: str) -> None:
    """Approve a rule waiting for approval (admins): its copies are made."""
    with _client() as c:
        c.approve_rule(rule_id)
        state = c.get_rule(rule_id)["state"]
    _say(f"approved rule {rule_id} (state {state})")


@rule_app.command("deny")
def deny(
    rule_id: str,
    reason: Annotated[str | None, typer.Option(help="why (kept in the event)")] = None,
) -> None:
    """Deny a rule waiting for approval (admins): it is removed."""
    with _client() as c:
        c.deny_rule(rule_id, reason)
    _say(f"denied rule {rule_id}: removed")


@rule_app.command("move")
def move(
    rule_id: str,
    rse_expression: Annotated[str, typer.Argument(help="where the data should go")],
) -> None:
    """Move a rule's data: a child rule is made; the rule goes once the child is OK."""
    with _client() as c:
        child = c.move_rule(rule_id, rse_expression)
    _say(
        f"rule {rule_id} moves to {rse_expression!r} as rule {child}; "
        f"{rule_id} is removed once {child} is OK"
    )


@rule_app.command("reduce")
def reduce(
    rule_id: str,
    copies: Annotated[int, typer.Argument(min=1, help="copies to keep (fewer than now)")],
    exclude: Annotated[
        str | None, typer.Option(help="RSE expression whose copies are released first")
    ] = None,
) -> None:
    """Keep fewer copies (those on --exclude released first)."""
    with _client() as c:
        c.reduce_rule(rule_id, copies, exclude)
    _say(f"rule {rule_id} now keeps {copies} copies")


@rule_app.command("delete")
def delete(
    rule_id: str,
    purge: Annotated[
        bool, typer.Option("--purge", help="delete replicas nobody else needs at once")
    ] = False,
) -> None:
    """Remove a rule: its locks are released (a locked rule must be unlocked first)."""
    with _client() as c:
        c.delete_rule(rule_id, purge_replicas=True if purge else None)
    _say(f"deleted rule {rule_id}")


# --- watch ------------------------------------------------------------------------------


@dataclass
class _Look:
    """One look at a watched rule and, while it moves, at its child rule."""

    rule: dict[str, Any] | None
    child: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        if self.rule is None:
            return True
        if self.child is not None:  # moving: over when the rule goes (or the child fails)
            return bool(self.child["state"] == "SUSPENDED")
        return self.rule["state"] in ("OK", "SUSPENDED")

    def progress(self) -> tuple[int, int, str]:
        """Locks OK, locks in all and a short status (of the child while moving)."""
        assert self.rule is not None
        shown = self.child or self.rule
        ok = shown["locks_ok_cnt"]
        copying, stuck = shown["locks_replicating_cnt"], shown["locks_stuck_cnt"]
        waiting = [f"{copying} copying"] if copying else []
        waiting += [f"{stuck} stuck"] if stuck else []
        status = shown["state"] + (f" ({', '.join(waiting)})" if waiting else "")
        if self.child is not None:
            status = f"moving to {self.child['id'][:8]}: {status}"
        return ok, ok + copying + stuck, status


def _look(c: Any, rule_id: str, *, first: bool = False) -> _Look:
    """The rule now (None once it is gone; on the first look an unknown rule is an error)."""
    from fedlake.domain.errors import RuleNotFound

    try:
        rule = c.get_rule(rule_id)
    except RuleNotFound:
        if first:
            raise
        return _Look(None)
    child_id = rule.get("child_rule_id")
    try:
        return _Look(rule, c.get_rule(child_id) if child_id else None)
    except RuleNotFound:  # the child was removed: the rule is watched on its own again
        return _Look(rule)


@rule_app.command("watch")
def watch(
    rule_id: str,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="give up after this many seconds (exit 4)")
    ] = None,
    interval: Annotated[float, typer.Option(min=0.1, help="seconds between looks")] = 1.0,
) -> None:
    """Follow one rule until it is OK (exit 0), SUSPENDED (exit 1) or gone; a rule being
    moved is followed until the move is over."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (
        TextColumn("rule {task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TextColumn("locks OK  {task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with _client() as c:
        look = seen = _look(c, rule_id, first=True)
        try:
            with interruptible(), Progress(*columns, console=console) as bar:
                ok, total, status = look.progress()
                task = bar.add_task(rule_id[:8], total=total, completed=ok, status=status)
                while not look.done:
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    time.sleep(interval)
                    look = _look(c, rule_id)
                    if look.rule is not None:
                        seen = look
                        ok, total, status = look.progress()
                        bar.update(task, completed=ok, total=total, status=status)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
    _outcome(rule_id, look, seen, timeout)


def _outcome(rule_id: str, look: _Look, seen: _Look, timeout: float | None) -> None:
    """Say how the watch ended; exit 0 (done), 1 (failed or gone) or 4 (timeout)."""
    if look.rule is None:
        if seen.child is not None:  # removed by its move's end
            _say(f"rule {rule_id} is gone: its data moved to rule {seen.child['id']}")
            return
        _say(f"rule {rule_id} is gone (deleted, denied or expired)", error=True)
        raise typer.Exit(1)
    ok, total, _ = look.progress()
    shown = look.child or look.rule
    if shown["state"] == "SUSPENDED":
        which = f"rule {rule_id}" if look.child is None else f"the move to rule {shown['id']}"
        _say(f"{which} is SUSPENDED ({ok}/{total} locks OK): {shown.get('error')}", error=True)
        raise typer.Exit(1)
    if look.done:
        _say(f"rule {rule_id} is OK: {ok}/{total} locks OK")
        return
    which = f"rule {rule_id}" if look.child is None else f"the move to rule {shown['id']}"
    _say(
        f"{which} is still {shown['state']} after {timeout or 0:g} s ({ok}/{total} locks OK)",
        error=True,
    )
    raise typer.Exit(WATCH_TIMEOUT_EXIT)


def register(app: typer.Typer) -> None:
    app.add_typer(rule_app, name="rule")
