"""Crash safety: deletion daemons killed with SIGKILL in the middle of their work, again and
again; then one runs to completion.

Afterwards every candidate replica was deleted exactly once (one ``deletion-done`` event,
row gone, file gone), no locked or untombstoned replica was touched, and no replica is left
BEING_DELETED.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import deletion as core
from fedlake.catalog.models import Event, Replica
from fedlake.domain.timefmt import utcnow
from fedlake.services import accounts as account_svc
from fedlake.services import rules as rule_svc
from tests.integration.lifecycle.test_deletion import (
    DISK,
    SCOPE,
    deleted_names,
    events,
    local_files,
    put,
    replicas,
    set_attribute,
    set_replicas,
)

KILLS = 10
LEASE = 1.0
OBSOLETE, LRU, LOCKED, KEPT = 2000, 1000, 100, 100

SCRIPT = """
import sys, time
from pathlib import Path
from fedlake.bootstrap import build_lake
from fedlake.daemons.deletion import DeletionDaemon
from fedlake.settings import Settings

data_dir, url, mode, lease = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
lake = build_lake(Settings(data_dir=Path(data_dir), database_url=url), migrate=False)
reaper = DeletionDaemon(lake, batch=10 if mode == "forever" else 500, threads=2, lease=lease)
if mode == "to-the-end":
    time.sleep(lease + 0.2)  # every claim a killed reaper held is past its lease now
    while reaper.run_once():
        pass
    lake.close()
else:
    while True:
        if not reaper.run_once():
            time.sleep(0.05)
"""


def _start(lake: Lake, script: Path, mode: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLAKE_")}
    args = [str(lake.settings.data_dir), lake.settings.database_url, mode, str(LEASE)]
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, str(script), *args], env=env, stdout=fh, stderr=subprocess.STDOUT
        )


def _progress(lake: Lake, since: object) -> tuple[int, int]:
    """(replicas deleted so far, replicas claimed since ``since`` and not finished)."""
    with lake.db.read() as s:
        done = s.scalar(select(func.count()).where(Event.event_type == "deletion-done"))
        held = s.scalar(
            select(func.count()).where(
                Replica.state == "BEING_DELETED", Replica.updated_at >= since
            )
        )
    return int(done or 0), int(held or 0)


def test_reapers_killed_mid_work_converge(lake: Lake, root: Caller, tmp_path: Path) -> None:
    account_svc.add_scope(lake, root, SCOPE, "root")
    obsolete = [f"o{i:05d}" for i in range(OBSOLETE)]
    lru = [f"l{i:05d}" for i in range(LRU)]
    locked = [f"x{i:05d}" for i in range(LOCKED)]
    kept = [f"k{i:05d}" for i in range(KEPT)]
    put(lake, root, obsolete + lru + locked + kept, size=64)
    set_replicas(lake, DISK, obsolete, tombstone=core.OBSOLETE)
    set_replicas(lake, DISK, lru, tombstone=utcnow() - timedelta(minutes=1))
    rule_svc.add_rules(
        lake,
        root,
        {
            "dids": [{"scope": SCOPE, "name": n} for n in locked],
            "copies": 1,
            "rse_expression": DISK,
            "grouping": "NONE",
        },
    )
    # tombstones on locked replicas too: only their locks protect them
    set_replicas(lake, DISK, locked, tombstone=core.OBSOLETE)
    set_attribute(lake, root, DISK, "greedyDeletion", True)
    script = tmp_path / "reaper.py"
    script.write_text(SCRIPT)
    log = tmp_path / "reapers.log"
    rng = random.Random(11)

    killed_mid_work = 0
    for _ in range(3 * KILLS):
        if killed_mid_work >= KILLS:
            break
        started = utcnow()
        before, _ = _progress(lake, started)
        proc = _start(lake, script, "forever", log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            done, held = _progress(lake, started)
            if done > before or held:
                break  # it works now: kill it a moment later
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.04))
        _, held = _progress(lake, started)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_mid_work += held > 0
    assert killed_mid_work >= KILLS, (killed_mid_work, log.read_text()[-3000:])
    assert len(deleted_names(lake)) < OBSOLETE + LRU, "the kills should land mid-work"

    last = _start(lake, script, "to-the-end", log)
    assert last.wait(180) == 0, log.read_text()[-3000:]

    candidates = set(obsolete + lru)
    counts = Counter(deleted_names(lake))
    assert set(counts) == candidates
    assert set(counts.values()) == {1}, "a replica was recorded deleted twice"
    assert events(lake, "deletion-failed") == []
    left = replicas(lake, DISK)
    assert left == {**{n: ("AVAILABLE", 1) for n in locked}, **{n: ("AVAILABLE", 0) for n in kept}}
    with lake.db.read() as s:
        being_deleted = s.scalar(select(func.count()).where(Replica.state == "BEING_DELETED"))
    assert being_deleted == 0
    assert [p for p in local_files(lake, DISK, sorted(candidates)) if p.exists()] == []
    assert all(p.exists() for p in local_files(lake, DISK, locked + kept))
