"""The docs stay current: every setting and every CLI command is documented."""

from __future__ import annotations

from pathlib import Path

from typer.main import get_command

from fedlake.cli.main import app
from fedlake.settings import ENV_VARS

DOCS = Path(__file__).resolve().parents[2] / "docs"
README = DOCS.parent / "README.md"


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [name for name in ENV_VARS if f"`{name}`" not in text]
    assert missing == []


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text()
    assert ".venv/bin/fedlake up" in text
    assert "./scripts/test" in text
    ci = (DOCS.parent / ".ci" / "run").read_text()
    assert "./scripts/test" in ci


def test_every_top_level_command_has_help() -> None:
    group = get_command(app)
    assert {
        "up",
        "server",
        "upload",
        "download",
        "ls",
        "stat",
        "meta",
        "attach",
        "detach",
        "rse",
        "scope",
        "account",
    } <= set(group.commands)  # type: ignore[attr-defined]
    for name, cmd in group.commands.items():  # type: ignore[attr-defined]
        assert cmd.help or cmd.callback.__doc__, f"`fedlake {name}` has no help text"
