"""``fedlake daemon NAME``: run one daemon in the foreground (scale-out deployments)."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

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


def register(app: typer.Typer) -> None:
    app.add_typer(daemon_app, name="daemon")
