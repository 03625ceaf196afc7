"""Entry point of the ``fedlake`` command (noun-verb groups; heavy imports are lazy)."""

from __future__ import annotations

import sys

import typer

from fedlake.cli import (
    admin,
    daemons,
    data,
    iam,
    login,
    rules,
    se,
    subscriptions,
    transfers,
    up,
)
from fedlake.cli.output import err_console

__all__ = ["app", "main"]

app = typer.Typer(
    name="fedlake",
    help="fedlake: a federated, policy-driven data lake (Rucio-compatible).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
up.register(app)
data.register(app)
admin.register(app)
daemons.register(app)
transfers.register(app)
subscriptions.register(app)
rules.register(app)
iam.register(app)
login.register(app)
se.register(app)


def main() -> None:
    from fedlake.domain.errors import LakeError

    try:
        app()
    except LakeError as exc:
        err_console.print(f"[red]error[/] ({type(exc).__name__}): {exc}")
        sys.exit(1)
    except ValueError as exc:
        err_console.print(f"[red]error[/]: {exc}")
        sys.exit(2)
    except Exception as exc:
        import httpx

        if not isinstance(exc, httpx.TransportError):
            raise
        err_console.print(
            f"[red]error[/]: cannot reach the lake ({type(exc).__name__}: {exc}). "
            "Is `fedlake up` running? The URL comes from FEDLAKE_URL or the file "
            "`fedlake up` writes in its data directory."
        )
        sys.exit(3)
