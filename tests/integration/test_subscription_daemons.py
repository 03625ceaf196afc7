"""The subscription daemon as real processes: killed with SIGKILL in the middle of its
batches again and again, and two instances at once while DIDs keep arriving.

Afterwards every DID that matches has exactly one rule per subscription and template, no
other DID has one, and no lock or transfer request exists twice. Runs on SQLite and,
when configured, PostgreSQL (where the two instances really run side by side).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

from sqlalchemy import func, select

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import new_dids
from fedlake.catalog.models import RSE, Event, Lock, Rule, Subscription, TransferRequest
from fedlake.services import dids as did_svc
from fedlake.services import replicas as replica_svc
from fedlake.services import subscriptions as svc
from fedlake.services.subscription_rounds import process_new_dids, process_retroactive

SCOPE = "user.root"
KILLS = 10

SCRIPT = r"""
import signal, sys
from pathlib import Path
from fedlake.bootstrap import build_lake
from fedlake.daemons import subscriptions as mod
from fedlake.settings import Settings

data_dir, url, batch, marks = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
lake = build_lake(Settings(data_dir=Path(data_dir), database_url=url), migrate=False)
out = open(marks, "a", buffering=1)
real_new, real_retro = mod.process_new_dids, mod.process_retroactive

def traced(kind, real):
    def run(lake, limit):
        out.write("B\n")  # a round starts: a kill from here on lands inside it
        n = real(lake, limit)
        out.write(f"{kind} {n}\n")
        return n
    return run

mod.process_new_dids = traced("N", real_new)
mod.process_retroactive = traced("R", real_retro)
daemon = mod.SubscriptionDaemon(lake, batch=batch)
daemon.interval = 0.1
signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
daemon.run()
lake.close()
"""


def start_daemon(lake: Lake, marks: Path, log: Path, batch: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLAKE_")}
    args = [str(lake.settings.data_dir), lake.settings.database_url, str(batch), str(marks)]
    with open(log, "ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-c", SCRIPT, *args], env=env, stdout=fh, stderr=subprocess.STDOUT
        )


def lines(marks: Path) -> list[str]:
    return marks.read_text().splitlines() if marks.exists() else []


def subscribe(
    lake: Lake, root: Caller, name: str, pattern: str, rses: list[str], **opts: object
) -> str:
    rules = [{"copies": 1, "rse_expression": r} for r in rses]
    body = {"options": {"filter": {"pattern": pattern}, "replication_rules": rules, **opts}}
    return svc.add_subscription(lake, root, "root", name, body)


def datasets(lake: Lake, root: Caller, names: list[str]) -> None:
    for i in range(0, len(names), 100):
        did_svc.add_dids(lake, root, [{"scope": SCOPE, "name": n} for n in names[i : i + 100]])


def rules_of(lake: Lake) -> Counter[tuple[str | None, str, str]]:
    """(subscription id, DID name, RSE expression) -> number of rules."""
    with lake.db.read() as s:
        rows = s.execute(select(Rule.subscription_id, Rule.name, Rule.rse_expression))
        return Counter((sub, n, e) for sub, n, e in rows)


def work_left(lake: Lake) -> bool:
    with lake.db.read() as s:
        pending = s.scalar(
            select(func.count()).where(Subscription.retroactive, Subscription.retro_done.is_(False))
        )
        return new_dids.pending(s) > 0 or bool(pending)


def failures(lake: Lake) -> int:
    with lake.db.read() as s:
        return int(
            s.scalar(select(func.count()).where(Event.event_type == "subscription-failed")) or 0
        )


def test_daemons_killed_mid_batch_miss_no_did_and_rule_none_twice(
    lake: Lake, root: Caller, tmp_path: Path
) -> None:
    rng = random.Random(11)
    old = [f"old_{i:04d}" for i in range(300)]
    datasets(lake, root, old)  # before any subscription
    live = subscribe(lake, root, "live", "(old|new)_", ["LOCAL-SAFE", "LOCAL-TAPE"])
    retro = subscribe(lake, root, "retro", "old_", ["LOCAL-DISK"], retroactive=True)
    new = [f"new_{i:04d}" for i in range(600)]
    datasets(lake, root, new + [f"skip_{i:04d}" for i in range(100)])
    marks, log = tmp_path / "marks.txt", tmp_path / "daemons.log"
    killed_mid_batch = 0
    for _ in range(3 * KILLS):
        if killed_mid_batch >= KILLS or not work_left(lake):
            break
        begun = lines(marks).count("B")
        proc = start_daemon(lake, marks, log, batch=20)
        deadline = time.monotonic() + 30
        while lines(marks).count("B") == begun and time.monotonic() < deadline:
            time.sleep(0.005)  # wait until it works, then kill it at a random moment
        time.sleep(rng.uniform(0.0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        killed_mid_batch += lines(marks)[-1:] == ["B"]
    assert killed_mid_batch >= KILLS, (killed_mid_batch, log.read_text()[-2000:])
    while process_new_dids(lake, 100) or process_retroactive(lake, 100):
        pass  # a last instance (in this process) finishes the work
    expected = Counter(
        {(live, n, rse): 1 for n in new for rse in ("LOCAL-SAFE", "LOCAL-TAPE")}
        | {(retro, n, "LOCAL-DISK"): 1 for n in old}
    )
    assert rules_of(lake) == expected
    with lake.db.read() as s:
        added = s.scalar(select(func.count()).where(Event.event_type == "rule-added"))
        assert added == sum(expected.values())  # no event of a rolled-back rule
    assert failures(lake) == 0


def test_two_instances_at_once_never_double_create(
    lake: Lake, root: Caller, tmp_path: Path
) -> None:
    """Two daemons run while datasets of files arrive and a retroactive subscription
    walks the older ones: each dataset gets one rule per subscription, each file one lock
    per RSE and one transfer request per destination."""
    count = 200
    files = [{"scope": SCOPE, "name": f"f_{i:04d}", "bytes": 100 + i} for i in range(2 * count)]
    for f in files:
        f["adler32"] = f"{zlib.adler32(f['name'].encode()):08x}"
    replica_svc.add_replicas(lake, root, {"rse": "LOCAL-DISK", "files": files})
    fan = subscribe(lake, root, "fan", "ds_", ["LOCAL-SAFE"])
    marks = [tmp_path / "a.txt", tmp_path / "b.txt"]
    log = tmp_path / "daemons.log"
    procs = [start_daemon(lake, m, log, batch=7) for m in marks]
    try:
        retro = None
        for i in range(count):
            content = [{"scope": SCOPE, "name": f"f_{2 * i + k:04d}"} for k in (0, 1)]
            did_svc.add_dids(lake, root, [{"scope": SCOPE, "name": f"ds_{i:04d}", "dids": content}])
            if i == count // 2:
                retro = subscribe(lake, root, "retro-fan", "ds_", ["LOCAL-TAPE"], retroactive=True)
        deadline = time.monotonic() + 180
        while work_left(lake) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not work_left(lake), log.read_text()[-3000:]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
    assert [p.returncode for p in procs] == [0, 0], log.read_text()[-3000:]
    # both instances ran rounds while the work came in (which of them wins a given batch is
    # timing: on a busy machine, or with SQLite's one writer, one may take every batch),
    # and between them they took all of it
    rounds = {m.name: [x for x in lines(m) if x[:2] in ("N ", "R ")] for m in marks}
    assert all(len(r) >= 2 for r in rounds.values()), rounds
    assert sum(int(x.split()[1]) for r in rounds.values() for x in r) > 0, rounds
    names = [f"ds_{i:04d}" for i in range(count)]
    assert rules_of(lake) == Counter(
        {(fan, n, "LOCAL-SAFE"): 1 for n in names} | {(retro, n, "LOCAL-TAPE"): 1 for n in names}
    )
    with lake.db.read() as s:
        rse = dict(s.execute(select(RSE.id, RSE.rse)).all())
        locks = Counter((n, rse[r]) for n, r in s.execute(select(Lock.name, Lock.rse_id)))
        requests = Counter(
            (n, rse[r])
            for n, r in s.execute(select(TransferRequest.name, TransferRequest.dest_rse_id))
        )
    want = {(f["name"], r): 1 for f in files for r in ("LOCAL-SAFE", "LOCAL-TAPE")}
    assert locks == Counter(want)
    assert requests == Counter(want)
    assert failures(lake) == 0
