"""Daemon heartbeats: live instances, their shares of the key space, clean leaving and
dead instances dropping out (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from fedlake.bootstrap import Lake
from fedlake.catalog import heartbeats
from fedlake.catalog.models import DaemonHeartbeat
from fedlake.daemons.runner import Daemon
from fedlake.domain.errors import DatabaseBusy
from fedlake.domain.timefmt import utcnow


def test_partition_bounds_cover_the_key_space_without_overlap() -> None:
    assert heartbeats.Partition(0, 1).bounds() == (None, None)
    for n in (2, 3, 7):
        bounds = [heartbeats.Partition(i, n).bounds() for i in range(n)]
        assert bounds[0][0] is None and bounds[-1][1] is None
        for (_, hi), (lo, _) in itertools.pairwise(bounds):
            assert hi == lo and hi is not None and len(hi) == 8
        keys = ["00000000", "7fffffff", "80000000", "ffffffff", "a" * 32, "0" * 32]
        for key in keys:
            owners = [
                i
                for i, (lo, hi) in enumerate(bounds)
                if (lo is None or key >= lo) and (hi is None or key < hi)
            ]
            assert len(owners) == 1, (n, key, owners)


def test_beats_share_the_work_and_dead_instances_drop_out(lake: Lake) -> None:
    with lake.db.write() as s:
        a = heartbeats.beat(s, "judge", "host:1:a", hostname="host", pid=1, ttl=60)
    assert a == heartbeats.Partition(0, 1)
    with lake.db.write() as s:
        b = heartbeats.beat(s, "judge", "host:2:b", hostname="host", pid=2, ttl=60)
        heartbeats.beat(s, "other", "host:3:c", hostname="host", pid=3, ttl=60)
    assert b == heartbeats.Partition(1, 2)
    with lake.db.write() as s:  # a's process was killed long ago
        s.execute(
            update(DaemonHeartbeat)
            .where(DaemonHeartbeat.instance == "host:1:a")
            .values(beat_at=utcnow() - timedelta(minutes=5))
        )
        assert heartbeats.beat(s, "judge", "host:2:b", hostname="host", pid=2, ttl=60) == (
            heartbeats.Partition(0, 1)
        )
    with lake.db.write() as s:
        assert heartbeats.prune(s, older_than=120) == 1
        heartbeats.forget(s, "other", "host:3:c")
    with lake.db.read() as s:
        live = [(r.daemon, r.instance, r.rounds) for r in heartbeats.live(s, ttl=60)]
    assert live == [("judge", "host:2:b", 2)]


class _Counting(Daemon):
    name = "counting"
    interval = 0.05
    beat_every = 0.0

    def __init__(self, lake: Lake, fail_at: int, error: Exception | None = None) -> None:
        super().__init__(lake)
        self.calls = 0
        self.fail_at = fail_at
        self.error = error or RuntimeError("disk on fire")

    def run_once(self) -> int:
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error
        return 1 if self.calls < 3 else 0


def test_the_runner_beats_records_errors_and_leaves_on_stop(lake: Lake) -> None:
    d = _Counting(lake, fail_at=4)
    t = threading.Thread(target=d.run)
    t.start()
    deadline = time.monotonic() + 10
    seen_error = None
    while time.monotonic() < deadline and seen_error is None:
        with lake.db.read() as s:
            rows = heartbeats.live(s, ttl=60)
            seen_error = next((r.last_error for r in rows if r.last_error), None)
        time.sleep(0.02)
    assert seen_error == "RuntimeError: disk on fire"
    with lake.db.read() as s:
        [row] = heartbeats.live(s, ttl=60)
    assert row.daemon == "counting" and row.work_done >= 2 and row.rounds >= 3
    d.stop()
    t.join(5)
    assert not t.is_alive()
    with lake.db.read() as s:
        assert heartbeats.live(s, ttl=60) == []


def test_a_round_refused_as_busy_is_one_warning_line_and_the_next_round_runs(
    lake: Lake, caplog: pytest.LogCaptureFixture
) -> None:
    busy = DatabaseBusy("the change was refused because it deadlocked with another change")
    d = _Counting(lake, fail_at=2, error=busy)
    t = threading.Thread(target=d.run)
    with caplog.at_level(logging.WARNING, logger="fedlake"):
        t.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and d.calls < 4:
            time.sleep(0.02)
        d.stop()
        t.join(5)
    assert d.calls >= 4  # the rounds after the refused one ran
    [record] = [r for r in caplog.records if "deadlocked" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith("counting: the change was refused")
