"""docs/rse-expressions.md stays true: its example tables run against the `fedlake up` RSEs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fedlake.domain.errors import InvalidRSEExpression
from fedlake.expressions.rse_expression import evaluate
from fedlake.services.embedded import LOCAL_RSES

DOC = Path(__file__).resolve().parents[3] / "docs" / "rse-expressions.md"
README = DOC.parents[1] / "README.md"


def local_rses() -> dict[str, dict[str, Any]]:
    """The embedded RSEs as the services hand them to the evaluator (name, type, istape)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (settings, attrs, _) in LOCAL_RSES.items():
        rse_type = settings.get("rse_type", "DISK")
        out[name] = {"rse_type": rse_type, "istape": rse_type == "TAPE", name: True, **attrs}
    return out


def table_rows(heading: str) -> list[list[str]]:
    """Cells of the first table after ``heading`` (header rows dropped, `\\|` unescaped)."""
    text = DOC.read_text()
    start = text.index(heading)
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows.append(cells)
    return rows[2:]


def code(cell: str) -> str:
    found = re.fullmatch(r"`(.*)`", cell)
    return found.group(1) if found else ""


def names(cell: str) -> list[str]:
    return [n.strip() for n in cell.split(",")]


def test_the_doc_is_linked_from_the_readme() -> None:
    assert "(docs/rse-expressions.md)" in README.read_text()


@pytest.mark.parametrize("row", table_rows("<!-- examples:"), ids=lambda r: r[0])
def test_examples(row: list[str]) -> None:
    expression, selects = row
    assert evaluate(code(expression), local_rses()) == names(selects)


@pytest.mark.parametrize("row", table_rows("## Evaluation order"), ids=lambda r: r[0])
def test_evaluation_order_examples(row: list[str]) -> None:
    expression, read_as, selects = row
    assert evaluate(code(expression), local_rses()) == names(selects)
    if code(read_as):
        assert evaluate(code(read_as), local_rses()) == names(selects)


@pytest.mark.parametrize("row", table_rows("## Errors"), ids=lambda r: r[0])
def test_error_examples(row: list[str]) -> None:
    expression, message = row
    text = "" if expression == "(blank)" else code(expression)
    with pytest.raises(InvalidRSEExpression) as info:
        evaluate(text, local_rses())
    first, _, rest = message.partition(" … ")
    assert str(info.value).startswith(first)
    assert rest in str(info.value)


def test_the_tables_were_found() -> None:
    assert len(table_rows("<!-- examples:")) >= 15
    assert len(table_rows("## Evaluation order")) >= 4
    assert len(table_rows("## Errors")) >= 12
