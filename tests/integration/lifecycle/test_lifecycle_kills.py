"""Crash safety of the whole lifecycle: the daemons (transfers, rule repair, rule expiry,
deletion, subscriptions) run as real processes and are killed with SIGKILL at random, at
least 50 times, while rules are added, files attached, rules deleted and rules expire.

Afterwards, with the daemons left running, everything converges: every rule left is OK,
its counters match its locks, every lock has its replica and every locked replica's file is
on disk, nothing is left BEING_DELETED or queued, released replicas are deleted from disk and
catalogue, expired rules are gone (SQLite and PostgreSQL).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import rses as rse_core
from fedlake.catalog.models import Replica, Rule, TransferRequest
from fedlake.domain.errors import LakeError
from fedlake.domain.timefmt import utcnow
from fedlake.services import dids as did_svc
from fedlake.services import rules as rule_svc
from fedlake.storage.backends.posix import is_temporary
from tests.integration.rules.invariants import ACTIVE, violations
from tests.integration.transfers.conftest import SCOPE, put  # noqa: F401  (fixture)

_ADMIN = Caller("root", admin=True)  # sees embargoed data too

KILLS = 50
DAEMONS = [
    "transfers",
    "rule-injector",
    "rule-repairer",
    "rule-expiry",
    "deletion",
    "subscriptions",
]
TARGETS = ["LOCAL-SAFE", "LOCAL-BUFFER", "LOCAL-SAFE|LOCAL-BUFFER"]


class Daemons:
    """One process per daemon; ``kill`` SIGKILLs one and starts it again."""

    def __init__(self, lake: Lake, log: Path) -> None:
        self.lake, self.log = lake, log
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.kills = 0

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("FEDLAKE_") or k == "FEDLAKE_TEST_DATABASE_URL"
        }
        env.update(
            FEDLAKE_DATA_DIR=str(self.lake.settings.data_dir),
            FEDLAKE_DATABASE_URL=self.lake.settings.database_url,
            FEDLAKE_TRANSFER_LEASE_SECONDS="2",
            FEDLAKE_TRANSFER_THREADS="8",
            FEDLAKE_DELETION_LEASE_SECONDS="2",
            FEDLAKE_RULE_REPAIR_DELAY="1",
        )
        return env

    def start(self, name: str) -> None:
        with open(self.log, "ab") as fh:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "fedlake.cli", "daemon", name],
                env=self._env(),
                stdout=fh,
                stderr=subprocess.STDOUT,
            )

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            self.kills += 1
        proc.wait(10)
        self.start(name)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _state(lake: Lake) -> dict[str, Any]:
    now = utcnow()
    with lake.db.read() as s:
        return {
            "rules": sorted(set(s.scalars(select(Rule.state)))),
            "expired": s.scalar(
                select(func.count()).select_from(Rule).where(Rule.expires_at < now)
            ),
            "active": s.scalar(
                select(func.count())
                .select_from(TransferRequest)
                .where(TransferRequest.state.in_(ACTIVE))
            ),
            "being_deleted": s.scalar(
                select(func.count()).select_from(Replica).where(Replica.state == "BEING_DELETED")
            ),
            "released": s.scalar(
                select(func.count())
                .select_from(Replica)
                .where(Replica.lock_cnt == 0, Replica.tombstone.is_not(None))
            ),
        }


def test_daemons_killed_fifty_times_converge(
    lake: Lake,
    root: Caller,
    put: Callable[..., Any],  # noqa: F811
    tmp_path: Path,
) -> None:
    rng = random.Random(11)
    with lake.db.write() as s:  # released copies are deleted at once on these RSEs
        for name in ("LOCAL-SAFE", "LOCAL-BUFFER"):
            rse_core.set_attribute(s, rse_core.get_rse(s, name), "greedyDeletion", True)
    datasets = [f"life-ds{i}" for i in range(6)]
    did_svc.add_dids(lake, root, [{"scope": SCOPE, "name": d, "type": "DATASET"} for d in datasets])
    counter = iter(range(10**6))

    def attach(dataset: str, n: int) -> None:
        names = [put(f"life-{next(counter)}")[0] for _ in range(n)]
        did_svc.attach(lake, root, SCOPE, dataset, [{"scope": SCOPE, "name": x} for x in names])

    for d in datasets:
        attach(d, 5)

    daemons = Daemons(lake, tmp_path / "daemons.log")
    for name in DAEMONS:
        daemons.start(name)
    ops = 0
    try:
        started = time.monotonic()
        while daemons.kills < KILLS:
            late = time.monotonic() - started > 20  # no new short lifetimes near the end
            op = rng.random()
            try:
                if op < 0.4:
                    lifetime = None if late or rng.random() < 0.5 else rng.randint(1, 4)
                    rule_svc.add_rules(
                        lake,
                        root,
                        {
                            "dids": [{"scope": SCOPE, "name": rng.choice(datasets)}],
                            "copies": 1,
                            "rse_expression": rng.choice(TARGETS),
                            "lifetime": lifetime,
                            "asynchronous": rng.random() < 0.3,  # the injector places it
                        },
                    )
                elif op < 0.7:
                    attach(rng.choice(datasets), rng.randint(1, 4))
                else:
                    ids = list(rule_svc.list_rules(lake, _ADMIN, {"locked": "false"}))
                    if ids:
                        rule_id = rng.choice(ids)["id"]
                        rule_svc.delete_rule(
                            lake, root, rule_id, {"purge_replicas": rng.random() < 0.5}
                        )
                ops += 1
            except LakeError:
                pass  # e.g. the same rule twice: refused, nothing changes
            time.sleep(rng.uniform(0.05, 0.3))
            daemons.kill(rng.choice(DAEMONS))
        # the daemons stay up: everything converges
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            state = _state(lake)
            done = (
                state["rules"] in ([], ["OK"])
                and state["expired"] == 0
                and state["active"] == 0
                and state["being_deleted"] == 0
                and state["released"] == 0
            )
            if done:
                break
            time.sleep(0.5)
    finally:
        daemons.stop()
    log = daemons.log.read_text(errors="replace")[-4000:]
    assert daemons.kills >= KILLS and ops >= 30
    assert done, (state, log)
    with lake.db.read() as s:
        assert violations(s, requests=False) == []
        # every replica that is kept has its file; nothing else is left on the copies' RSEs
        for rse in ("LOCAL-SAFE", "LOCAL-BUFFER"):
            info = rse_core.rse_info(s, rse_core.get_rse(s, rse))
            rows = list(s.scalars(select(Replica).where(Replica.rse_id == info.id)))
            assert {r.state for r in rows} <= {"AVAILABLE"}, rse
            assert all(r.lock_cnt > 0 for r in rows), rse
            prefix = Path(info.protocols[0].prefix)
            on_disk = {
                p.name for p in prefix.rglob("*") if p.is_file() and not is_temporary(p.name)
            }
            assert on_disk == {r.name for r in rows}, (rse, log)
