"""``fedlake se``: the storage-element server (``serve``: a token-aware HTTP/WebDAV endpoint
over a POSIX directory) and its read-through cache (``cache``).

Each part lives in its own module, which adds its commands to ``se_app`` through its
``register(se_app)``; ``register`` below attaches ``fedlake se`` to the root command.
"""

from __future__ import annotations

import typer

__all__ = ["register", "se_app"]

se_app = typer.Typer(
    help="storage element: serve a directory or S3 bucket over HTTP/WebDAV with the lake's tokens",
    no_args_is_help=True,
)

#: the modules that add commands to ``fedlake se`` (each has ``register(se_app)``)
_PARTS: tuple[str, ...] = ("se_serve", "se_cache")


def register(app: typer.Typer) -> None:
    import importlib

    for name in _PARTS:
        importlib.import_module(f"fedlake.cli.{name}").register(se_app)
    app.add_typer(se_app, name="se")
