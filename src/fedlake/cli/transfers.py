"""``fedlake transfer``: submit, inspect, cancel and retry transfers; links; a live view."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Column, Table

from fedlake.cli.output import console, emit, interruptible
from fedlake.domain.types import RequestState

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
transfer_app = typer.Typer(help="the transfer queue and its links", no_args_is_help=True)
link_app = typer.Typer(help="transfer links (source -> destination)", no_args_is_help=True)
STATES = [s.value for s in RequestState]


def _client() -> Any:
    from fedlake.client import Client

    return Client()


def _text(value: Any, width: int | None = None) -> str:
    text = "" if value is None else str(value)
    if width is not None and len(text) > width:
        return text[: width - 3] + "..."
    return text


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


# --- tables ------------------------------------------------------------------------------


def requests_table(rows: Sequence[dict[str, Any]]) -> Table:
    table = Table(
        "id", "state", "did", "source", "dest", "attempt", "activity", "prio", "error", "updated"
    )
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["state"],
            f"{r['scope']}:{r['name']}",
            _text(r.get("source_rse")),
            _text(r.get("dest_rse")),
            f"{r['attempt']}/{r['max_attempts']}",
            _text(r.get("activity")),
            _text(r.get("priority")),
            _text(r.get("error"), 60),
            _text(r.get("updated_at")),
        )
    return table


def attempts_table(attempts: Sequence[dict[str, Any]]) -> Table:
    table = Table(
        "attempt",
        "source",
        "state",
        "bytes",
        "seconds",
        "tpc",
        "worker",
        "error",
        "finished",
        title="attempts",
    )
    for a in attempts:
        table.add_row(
            _text(a.get("attempt")),
            _text(a.get("source_rse")),
            _text(a.get("state")),
            _text(a.get("bytes")),
            "" if a.get("seconds") is None else f"{a['seconds']:.3f}",
            "yes" if a.get("tpc") else "no",
            _text(a.get("worker")),
            _text(a.get("error"), 80),
            _text(a.get("finished_at")),
        )
    return table


def states_table(states: dict[str, int]) -> Table:
    table = Table("state", Column("requests", justify="right"), title="transfer requests")
    for state in STATES:
        table.add_row(state, str(states.get(state, 0)))
    table.add_row("[bold]total[/]", f"[bold]{sum(states.values())}[/]")
    return table


def links_table(links: Sequence[dict[str, Any]]) -> Table:
    table = Table(
        "source",
        "dest",
        Column("active", justify="right"),
        Column("optimal/max", justify="right"),
        Column("MB/s", justify="right"),
        Column("files/s", justify="right"),
        Column("success", justify="right"),
        "decision",
        title="links",
    )
    for lk in links:
        optimal = lk.get("optimal_active")
        limit = lk.get("max_active")
        rate = lk.get("success_rate")
        configured = "optimizer" in lk  # a link only seen running has no settings yet
        table.add_row(
            _text(lk.get("source_rse")),
            _text(lk.get("dest_rse")),
            str(lk.get("active", 0)),
            f"{_text(optimal) or '-'}/{'no limit' if limit is None else limit}"
            if configured
            else "-",
            "" if lk.get("throughput") is None else f"{lk['throughput'] / 1e6:.2f}",
            "" if lk.get("files_per_second") is None else f"{lk['files_per_second']:.2f}",
            "" if rate is None else f"{rate:.1%}",
            _text(lk.get("decision")) + ("" if lk.get("optimizer", True) else " (optimizer off)"),
        )
    return table


def frame(summary: dict[str, Any]) -> Group:
    """One picture of the queue: counts per state and the links."""
    return Group(states_table(summary.get("states", {})), links_table(summary.get("links", [])))


# --- commands ----------------------------------------------------------------------------


@transfer_app.command("submit")
def submit(
    dids: Annotated[list[str], typer.Argument(help="SCOPE:NAME of files or collections")],
    rse: Annotated[str, typer.Option(help="destination RSE")],
    activity: Annotated[str | None, typer.Option(help="activity (shares)")] = None,
    priority: Annotated[int | None, typer.Option(help="1 (lowest) to 5 (highest)")] = None,
    source: Annotated[
        str | None, typer.Option("--source", help="RSE expression the sources must match")
    ] = None,
    max_attempts: Annotated[int | None, typer.Option(help="attempts before FAILED")] = None,
    verify_source: Annotated[
        bool, typer.Option("--verify-source", help="checksum the source before copying")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Copy files (every file of a dataset or container) to an RSE (admin)."""
    from fedlake.domain.names import split_did

    options: dict[str, Any] = {
        "activity": activity,
        "priority": priority,
        "source_rse_expression": source,
        "max_attempts": max_attempts,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if verify_source:
        options["verify_source"] = True
    with _client() as c:
        ids = c.submit_transfers([split_did(d) for d in dids], rse, **options)
    if as_json:
        _print_json({"request_ids": ids})
        return
    console.print(f"queued {len(ids)} transfer request(s) to {rse}")
    console.print("\n".join(str(i) for i in ids))


@transfer_app.command("list")
def list_(
    state: Annotated[
        list[str] | None,
        typer.Option("--state", help="QUEUED, FAILED... (repeat, or comma-separated)"),
    ] = None,
    rse: Annotated[str | None, typer.Option(help="destination RSE")] = None,
    did: Annotated[str | None, typer.Option("--did", help="SCOPE:NAME of one file")] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="rule id")] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List transfer requests, newest first."""
    filters: dict[str, Any] = {"rse": rse, "rule_id": rule, "limit": limit}
    if state:
        filters["state"] = ",".join(state)
    if did:
        from fedlake.domain.names import split_did

        filters["scope"], filters["name"] = split_did(did)
    with _client() as c:
        rows = list(c.list_transfers(**filters))
    if as_json:
        _print_json(rows)
        return
    console.print(requests_table(rows))


@transfer_app.command("show")
def show(request_id: int, as_json: JsonOpt = False) -> None:
    """Show one transfer request and its attempts."""
    with _client() as c:
        req = c.get_transfer(request_id)
    if as_json:
        _print_json(req)
        return
    attempts = req.pop("attempts", [])
    emit(req, as_json=False, title=f"transfer request {request_id}")
    console.print(attempts_table(attempts))


@transfer_app.command("cancel")
def cancel(request_id: int) -> None:
    """Cancel a queued or running transfer (admin); its locks become STUCK."""
    with _client() as c:
        c.cancel_transfer(request_id)
    console.print(f"cancelled transfer request {request_id}")


@transfer_app.command("retry")
def retry(request_id: int, as_json: JsonOpt = False) -> None:
    """Queue a failed or cancelled transfer again, as a new request (admin)."""
    with _client() as c:
        new_id = c.retry_transfer(request_id)
    if as_json:
        _print_json({"request_id": new_id})
        return
    console.print(f"transfer request {request_id} queued again as {new_id}")


@transfer_app.command("links")
def links(as_json: JsonOpt = False) -> None:
    """Links between RSEs: running transfers, limits, throughput and the optimizer."""
    with _client() as c:
        rows = c.transfer_links()
    if as_json:
        _print_json(rows)
        return
    console.print(links_table(rows))


@link_app.command("set")
def link_set(
    source: Annotated[str, typer.Argument(help="source RSE")],
    dest: Annotated[str, typer.Argument(help="destination RSE")],
    max_active: Annotated[
        int | None, typer.Option(help="most transfers at once on the link (default: no limit)")
    ] = None,
    optimizer: Annotated[
        bool, typer.Option("--optimizer/--no-optimizer", help="adapt concurrency to the link")
    ] = True,
    initial: Annotated[int | None, typer.Option(help="optimizer's starting point")] = None,
) -> None:
    """Configure a link (admin): a limit, and whether the optimizer tunes it."""
    with _client() as c:
        c.set_transfer_link(
            source, dest, max_active=max_active, optimizer=optimizer, initial=initial
        )
    limit = "no limit" if max_active is None else f"at most {max_active}"
    console.print(f"link {source} -> {dest}: {limit}, optimizer {'on' if optimizer else 'off'}")


@transfer_app.command("watch")
def watch(
    once: Annotated[bool, typer.Option("--once", help="print one frame and exit")] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 1.0,
) -> None:
    """Live view of the queue and the links, refreshed every second until Ctrl-C."""
    from rich.live import Live

    if interval < 0.1:
        raise typer.BadParameter("--interval must be at least 0.1 seconds")
    with _client() as c:
        if once:
            console.print(frame(c.transfer_summary()))
            return
        try:
            with (
                interruptible(),
                Live(frame(c.transfer_summary()), console=console, auto_refresh=False) as live,
            ):
                while True:
                    time.sleep(interval)
                    live.update(frame(c.transfer_summary()), refresh=True)
        except KeyboardInterrupt:
            pass


def register(app: typer.Typer) -> None:
    transfer_app.add_typer(link_app, name="link")
    app.add_typer(transfer_app, name="transfer")
