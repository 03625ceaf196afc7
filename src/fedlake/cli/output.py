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


#: table columns whose every cell is at most this wide are never wrapped: a narrow
#: terminal folds the long ones (ids, DIDs, expressions) instead of squeezing them all
SHORT = 20
FOLDED = 6  # the width a folded column is counted with


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
        pairs = Table(show_header=False, title=title)
        for k, v in rows.items():
            pairs.add_row(str(k), "" if v is None else str(v))
        console.print(pairs)
        return
    items = list(rows)
    if as_json:
        print(json.dumps(items, default=_default, indent=2))
        return
    table(items, list(columns or (items[0].keys() if items else [])), title=title)


def table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    whole: Sequence[str] = (),
) -> None:
    """Print ``rows`` as a table. Columns named in ``whole`` (ids people copy) and columns
    whose cells are all short (states, counts, dates) are never wrapped; in a narrow
    terminal the long ones (DIDs, expressions, messages) fold instead."""
    cells = [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    pinned = {i for i, c in enumerate(columns) if c in whole}
    kept = pinned | {i for i in range(len(columns)) if widths[i] <= SHORT}

    def needed() -> int:  # kept columns at full width, the others at FOLDED, and borders
        return sum(widths[i] if i in kept else FOLDED for i in range(len(columns))) + (
            3 * len(columns) + 1
        )

    while needed() > console.width and kept - pinned:  # too wide: the widest short one folds
        kept.discard(max(kept - pinned, key=widths.__getitem__))
    out = Table(title=title)
    for i, name in enumerate(columns):
        if i in kept:
            out.add_column(name, no_wrap=True, min_width=widths[i])
        else:
            out.add_column(name, overflow="fold")
    for row in cells:
        out.add_row(*row)
    console.print(out)
