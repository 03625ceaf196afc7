"""CLI tables: ids people copy stay whole, short columns are not wrapped while they fit,
long ones fold in a narrow terminal."""

from __future__ import annotations

import pytest

from fedlake.cli import output

ROWS = [
    {
        "id": "2f227c184e02499caa796ceb0865fa90",
        "did": "user.root:a-rather-long-dataset-name-from-the-telescope",
        "state": "REPLICATING",
        "copies": "2",
    }
]


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    output.table(ROWS, ["id", "did", "state", "copies"], whole=("id",))
    return capsys.readouterr().out.splitlines()


def test_a_wide_terminal_shows_every_cell_on_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output.console, "width", 200)
    lines = _lines(capsys)
    body = [line for line in lines if "2f227c" in line]
    assert len(body) == 1 and ROWS[0]["did"] in body[0] and "REPLICATING" in body[0]


def test_a_narrow_terminal_folds_the_long_column_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output.console, "width", 80)
    text = "\n".join(_lines(capsys))
    assert ROWS[0]["id"] in text  # the id is never cut
    assert "REPLICATING" in text  # a short column stays whole
    assert ROWS[0]["did"] not in text  # the long DID is folded over several lines
    assert all(len(line) <= 80 for line in text.splitlines())
