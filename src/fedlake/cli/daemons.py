"""``fedlake daemon NAME``: run one daemon in the foreground (scale-out deployments)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Annotated, Any

import typer

from fedlake.cli.output import console

__all__ = ["register"]

daemon_app = typer.Typer(help="Run a lake daemon in the foreground (Ctrl-C or SIGTERM stops it).")


@daemon_app.command("transfers")
def transfers(
    threads: Annotated[
        int | None,
        typer.Option(help="transfers this process runs at once (default FEDLAKE_TRANSFER_THREADS)"),
    ] = None,
) -> None:
    """Move data: claim queued transfers, copy and verify them, record the outcome.

    Any number of these processes may share one PostgreSQL catalogue; each claims its own
    batches. A killed process's transfers run again once their leases expire.
    """
    from fedlake.bootstrap import build_lake
    from fedlake.daemons.transfers import TransferDaemon

    if threads is not None and not 1 <= threads <= 2000:
        raise typer.BadParameter("--threads must be from 1 to 2000")
    lake = build_lake()
    daemon = TransferDaemon(lake, threads)
    done = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        console.print(f"stopping (signal {signum}); running transfers may finish...")
        daemon.stop()
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    console.print(
        f"transfer worker {daemon.worker.owner} running "
        f"({daemon.worker.config.threads} threads) on {lake.db.engine.url.render_as_string()}"
    )
    thread = threading.Thread(target=daemon.run, name="transfers")
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    lake.close()
    console.print("transfer worker stopped.")


def _foreground(make: Callable[[Any], Any], what: str) -> None:
    """Run one daemon (built by ``make(lake)``) until SIGTERM/SIGINT."""
    from fedlake.bootstrap import build_lake

    lake = build_lake()
    daemon = make(lake)

    def _stop(signum: int, _frame: FrameType | None) -> None:
        console.print(f"stopping (signal {signum})...")
        daemon.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    console.print(f"{what} {daemon.instance} running on {lake.db.engine.url.render_as_string()}")
    thread = threading.Thread(target=daemon.run, name=daemon.name)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    lake.close()
    console.print(f"{what} stopped.")


@daemon_app.command("rule-injector")
def rule_injector() -> None:
    """Place rules created asynchronously (state INJECT): locks, replicas, transfers."""
    from fedlake.daemons.rules import RuleInjector

    _foreground(RuleInjector, "rule injector")


@daemon_app.command("rule-repairer")
def rule_repairer() -> None:
    """Repair rules: re-queue or move the copies of STUCK rules, suspend hopeless ones,
    retry suspended ones later, and re-queue lost copies of REPLICATING rules."""
    from fedlake.daemons.rules import RuleRepairer

    _foreground(RuleRepairer, "rule repairer")


@daemon_app.command("rule-expiry")
def rule_expiry() -> None:
    """Remove rules whose lifetime is over (locked rules are kept)."""
    from fedlake.daemons.rules import RuleExpiry

    _foreground(RuleExpiry, "rule expiry")


@daemon_app.command("qos-transitions")
def qos_transitions() -> None:
    """Move rules with a QoS policy to their next storage class when a step ends."""
    from fedlake.daemons.rules import QosTransitions

    _foreground(QosTransitions, "QoS transitions")


@daemon_app.command("deletion")
def deletion() -> None:
    """Delete replicas no rule needs (OBSOLETE ones always; least recently used ones on
    greedy RSEs or when free space is below the RSE's MinFreeSpace)."""
    from fedlake.daemons.deletion import DeletionDaemon

    _foreground(DeletionDaemon, "deletion")


@daemon_app.command("statistics")
def statistics() -> None:
    """Keep PostgreSQL's planner statistics fresh (ANALYZE tables that changed a lot)."""
    from fedlake.daemons.statistics import StatisticsDaemon

    _foreground(StatisticsDaemon, "statistics")


@daemon_app.command("subscriptions")
def subscriptions() -> None:
    """Make the rules of subscriptions for new DIDs that match their filters."""
    from fedlake.daemons.subscriptions import SubscriptionDaemon

    _foreground(SubscriptionDaemon, "subscriptions")


@daemon_app.command("temporary-sweeper")
def temporary_sweeper() -> None:
    """Remove temporary files left on local RSEs by killed uploads."""
    from fedlake.daemons.temporary_sweeper import TemporarySweeper

    _foreground(TemporarySweeper, "temporary sweeper")


@daemon_app.command("status")
def status() -> None:
    """List the live daemon instances of this lake's catalogue (from their heartbeats)."""
    from rich.table import Table

    from fedlake.bootstrap import build_lake
    from fedlake.catalog import heartbeats

    lake = build_lake()
    try:
        with lake.db.read() as s:
            rows = heartbeats.live(s, ttl=3600.0)
            table = Table("daemon", "instance", "started", "last beat", "rounds", "work", "error")
            for r in rows:
                table.add_row(
                    r.daemon,
                    r.instance,
                    r.started_at.isoformat(timespec="seconds"),
                    r.beat_at.isoformat(timespec="seconds"),
                    str(r.rounds),
                    str(r.work_done),
                    (r.last_error or "")[:60],
                )
    finally:
        lake.close()
    if not rows:
        console.print("no daemon has beaten in the last hour")
        return
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(daemon_app, name="daemon")
