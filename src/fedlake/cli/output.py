"""Output for people (rich tables) and scripts (``--json``)."""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["console", "emit", "err_console", "interruptible"]

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Ctrl-C (SIGINT) and SIGTERM raise KeyboardInterrupt inside the block, even when the
    command was started with SIGINT ignored (a background job of a script): commands that
    run until interrupted (``watch``) stop cleanly either way."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for sig in before:
        signal.signal(sig, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _default(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else str(v)


def emit(
    rows: Iterable[dict[str, Any]] | dict[str, Any],
    columns: Sequence[str] | None = None,
    *,
    as_json: bool,
    title: str | None = None,
) -> None:
    if isinstance(rows, dict):
        if as_json:
            print(json.dumps(rows, default=_default, indent=2))
            return
        table = Table(show_header=False, title=title)
        for k, v in rows.items():
            table.add_row(str(k), "" if v is None else str(v))
        console.print(table)
        return
    items = list(rows)
    if as_json:
        print(json.dumps(items, default=_default, indent=2))
        return
    cols = list(columns or (items[0].keys() if items else []))
    table = Table(*cols, title=title)
    for it in items:
        table.add_row(*("" if it.get(c) is None else str(it.get(c)) for c in cols))
    console.print(table)
