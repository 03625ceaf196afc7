"""``fedlake iam``: the identity provider's administration (users, groups, registration
requests, OAuth clients, signing keys, trusted issuers, tokens).

Each part lives in its own module, which adds its commands to ``iam_app`` through its
``register(iam_app)``; ``register`` below attaches ``fedlake iam`` to the root command.
"""

from __future__ import annotations

import typer

__all__ = ["iam_app", "register"]

iam_app = typer.Typer(
    help="identity: users, groups, registration requests, clients, keys, issuers, tokens",
    no_args_is_help=True,
)

#: the modules that add commands to ``fedlake iam`` (each has ``register(iam_app)``)
_PARTS: tuple[str, ...] = ("iam_users", "iam_tokens", "iam_issuers", "iam_embargo", "iam_policy")


def register(app: typer.Typer) -> None:
    import importlib

    for name in _PARTS:
        importlib.import_module(f"fedlake.cli.{name}").register(iam_app)
    app.add_typer(iam_app, name="iam")
