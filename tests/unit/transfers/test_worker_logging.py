"""How the transfer worker logs a catalogue write it will try again."""

from __future__ import annotations

import logging

import pytest

from fedlake.domain.errors import DatabaseBusy
from fedlake.transfers.worker import log_retry


def test_a_write_refused_as_busy_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fedlake.transfers"):
        log_retry("committing 3 transfer results failed; retrying", DatabaseBusy("deadlocked"))
    [record] = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage() == "committing 3 transfer results failed; retrying: deadlocked"


def test_any_other_failure_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise ConnectionRefusedError("the database is away")
    except ConnectionRefusedError as exc:
        with caplog.at_level(logging.WARNING, logger="fedlake.transfers"):
            log_retry("claiming transfers failed; retrying", exc)
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[1] is not None
    assert "the database is away" in str(record.exc_info[1])
