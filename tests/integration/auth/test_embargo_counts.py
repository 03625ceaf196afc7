"""Embargoes and aggregate counts (docs/embargo.md, "Counts"): the transfer summary and
link figures, subscription rule states, RSE usage and account usage read, for a
non-member, as if the embargoed scope and DIDs did not exist; members and admins see the
full figures, and so does everybody once the embargo has ended.

The world is ``test_embargo.py``'s: the scope ``sekritscope`` is embargoed as a whole and
the dataset ``pub:sekrit-ds`` (files ``sekrit-f1``, ``sekrit-f2``) as a DID; ``pub:open-f1``
is visible but also in the hidden ``sekritscope:sekrit-lds``, whose rule copies it to
LOCAL-SAFE. Every file's size is the length of its name.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog import subscriptions as sub_core
from fedlake.catalog import transfer_admin
from fedlake.catalog.embargo import ACTIVE_CACHE_SECONDS, Hidden
from fedlake.catalog.iam_models import Embargo
from fedlake.catalog.models import RSE, TransferRequest
from fedlake.catalog.subscriptions import rule_states
from fedlake.domain.timefmt import utcnow
from fedlake.services import accounts, rses
from fedlake.services import subscriptions as sub_svc
from tests.helpers import ndjson, post
from tests.integration.auth import test_embargo as base
from tests.integration.auth.test_embargo import World, _ok, _send

world = base.world  # the fixture of test_embargo.py, for this module too

ROOT = Caller("root", admin=True)
SUB = "counts"
OPEN, F1, F2, L1 = (len(n) for n in (b"open-f1", b"sekrit-f1", b"sekrit-f2", b"sekrit-l1"))


@dataclass
class Scene:
    world: World
    lake: Lake

    def get(self, who: dict[str, str], path: str) -> Any:
        r = _send(self.world, who, "GET", path, None, {})
        assert r.status_code == 200, (path, r.text)
        return r.json() if r.headers["content-type"] == "application/json" else ndjson(r)

    @property
    def everybody(self) -> Iterator[tuple[str, dict[str, str]]]:
        """(who, headers): root, the member alice, the non-member bob."""
        yield from (
            ("root", dict(self.world.api.headers)),
            ("alice", self.world.alice),
            ("bob", self.world.bob),
        )

    def end_embargoes(self) -> None:
        """As if their date had passed (no job runs: each request compares the date)."""
        with self.lake.db.write() as s:
            s.execute(update(Embargo).values(until=utcnow() - timedelta(seconds=1)))
        time.sleep(ACTIVE_CACHE_SECONDS)  # the process's brief reuse of the embargo list


@pytest.fixture
def scene(lake: Lake, world: World) -> Scene:
    """The world, plus: two direct transfers to LOCAL-TAPE (the visible ``open-f1`` and the
    hidden ``sekrit-f2``) next to the four the rules on hidden data asked for; every
    request running from LOCAL-DISK but ``sekrit-l1``'s, which failed; a configured link
    LOCAL-DISK to LOCAL-SAFE; root's subscription holding the world's three rules; a
    storage report and a static capacity for LOCAL-DISK; and limits for root."""
    body = {"dids": [base._did("pub", "open-f1"), base._did("pub", "sekrit-f2")]}
    _ok(post(world.api, "/transfers", body | {"rse": "LOCAL-TAPE"}))
    now = utcnow()
    with lake.db.write() as s:
        disk = s.scalar(select(RSE.id).where(RSE.rse == "LOCAL-DISK"))
        s.execute(
            update(TransferRequest).values(
                state="SUBMITTED",
                source_rse_id=disk,
                lease_owner="test",
                lease_expires=now + timedelta(hours=1),
                submitted_at=now,
            )
        )
        s.execute(
            update(TransferRequest)
            .where(TransferRequest.name == "sekrit-l1")
            .values(state="FAILED", lease_owner=None, lease_expires=None)
        )
    _ok(world.api.put("/transfers/links/LOCAL-DISK/LOCAL-SAFE", json={"max_active": 10}))
    sub = {
        "filter": {"scope": ["pub"]},
        "replication_rules": [{"rse_expression": "LOCAL-SAFE", "copies": 1}],
    }
    sid = sub_svc.add_subscription(lake, ROOT, "root", SUB, {"options": sub})
    with lake.db.write() as s:
        sub_core.tag_rules(s, list(world.rules.values()), sid)
    rses.set_usage(
        lake, ROOT, "LOCAL-DISK", {"source": "storage", "used": 1000, "free": 500, "files": 10}
    )
    rses.set_usage(lake, ROOT, "LOCAL-DISK", {"source": "static", "total": 9000})
    accounts.set_limit(lake, ROOT, "root", "local", "LOCAL-SAFE", 100)
    accounts.set_limit(lake, ROOT, "root", "global", "LOCAL-DISK|LOCAL-SAFE", 1000)
    return Scene(world, lake)


def _links(summary: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(lk["source_rse"], lk["dest_rse"]): lk["active"] for lk in summary["links"]}


FULL_TRANSFERS = {
    "states": {"SUBMITTED": 5, "FAILED": 1},
    "links": {("LOCAL-DISK", "LOCAL-SAFE"): 3, ("LOCAL-DISK", "LOCAL-TAPE"): 2},
}
#: bob: only the direct copy of open-f1 is his to see; the configured link stays, idle
BOBS_TRANSFERS = {
    "states": {"SUBMITTED": 1},
    "links": {("LOCAL-DISK", "LOCAL-SAFE"): 0, ("LOCAL-DISK", "LOCAL-TAPE"): 1},
}


def test_transfer_summary_and_links(scene: Scene) -> None:
    for who, headers in scene.everybody:
        summary = scene.get(headers, "/transfers/summary")
        got = {"states": summary["states"], "links": _links(summary)}
        assert got == (BOBS_TRANSFERS if who == "bob" else FULL_TRANSFERS), who
        assert _links({"links": scene.get(headers, "/transfers/links")}) == got["links"]
    scene.end_embargoes()
    summary = scene.get(scene.world.bob, "/transfers/summary")
    assert {"states": summary["states"], "links": _links(summary)} == FULL_TRANSFERS


def test_subscription_rule_states(scene: Scene) -> None:
    full = [["root", SUB, "OK", 1], ["root", SUB, "REPLICATING", 2]]
    for path in ("/subscriptions/root/rules/states", f"/subscriptions/root/{SUB}/rules/states"):
        for who, headers in scene.everybody:
            want = [["root", SUB, "OK", 1]] if who == "bob" else full
            assert scene.get(headers, path) == want, (who, path)
    scene.end_embargoes()
    assert scene.get(scene.world.bob, "/subscriptions/root/rules/states") == full


def _usage(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {u["source"]: (u["used"], u["free"], u["total"], u["files"]) for u in rows}


#: RSE -> source -> (used, free, total, files) for root and alice
FULL_RSES = {
    "LOCAL-DISK": {
        "rucio": (OPEN + F1 + F2 + L1, None, None, 4),
        "storage": (1000, 500, None, 10),
        "static": (None, None, 9000, None),
    },
    "LOCAL-SAFE": {"rucio": (OPEN + F1 + F2 + L1, None, None, 4)},  # COPYING for the rules
    "LOCAL-BUFFER": {"rucio": (F1 + L1, None, None, 2)},
}
#: bob: as if sekrit-f1, -f2 and -l1 had never been registered (as after their deletion
#: for a storage report: used and files lower, free rises; a static capacity stays)
HIDDEN_DISK = F1 + F2 + L1
BOBS_RSES = {
    "LOCAL-DISK": {
        "rucio": (OPEN, None, None, 1),
        "storage": (1000 - HIDDEN_DISK, 500 + HIDDEN_DISK, None, 7),
        "static": (None, None, 9000, None),
    },
    "LOCAL-SAFE": {"rucio": (OPEN, None, None, 1)},  # open-f1's copy is a visible replica
    "LOCAL-BUFFER": {"rucio": (0, None, None, 0)},
}


def test_rse_usage(scene: Scene) -> None:
    for who, headers in scene.everybody:
        got = {rse: _usage(scene.get(headers, f"/rses/{rse}/usage")) for rse in FULL_RSES}
        assert got == (BOBS_RSES if who == "bob" else FULL_RSES), who
    scene.end_embargoes()
    got = {rse: _usage(scene.get(scene.world.bob, f"/rses/{rse}/usage")) for rse in FULL_RSES}
    assert got == FULL_RSES


def _local(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {u["rse"]: (u["bytes"], u["files"], u["bytes_remaining"]) for u in rows}


def _global(rows: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {u["rse_expression"]: (u["bytes"], u["files"], u["bytes_remaining"]) for u in rows}


SAFE = OPEN + F1 + F2 + L1
#: root's locks: the container's rule on LOCAL-DISK (open-f1, sekrit-f1, sekrit-f2), the
#: hidden datasets' rules on LOCAL-SAFE (sekrit-f1, -f2, -l1, and open-f1 for sekrit-lds)
FULL_LOCAL = {
    "LOCAL-DISK": (OPEN + F1 + F2, 3, None),
    "LOCAL-SAFE": (SAFE, 4, 100 - SAFE),
}
FULL_GLOBAL = {"LOCAL-DISK|LOCAL-SAFE": (OPEN + F1 + F2 + SAFE, 7, 1000 - OPEN - F1 - F2 - SAFE)}
#: bob: only the container's lock on open-f1 is left; LOCAL-SAFE shows for its limit only
BOBS_LOCAL = {"LOCAL-DISK": (OPEN, 1, None), "LOCAL-SAFE": (0, 0, 100)}
BOBS_GLOBAL = {"LOCAL-DISK|LOCAL-SAFE": (OPEN, 1, 1000 - OPEN)}


def _account_usage(scene: Scene, headers: dict[str, str]) -> tuple[Any, ...]:
    local = _local(scene.get(headers, "/accounts/root/usage/local"))
    disk = _local(scene.get(headers, "/accounts/root/usage/local/LOCAL-DISK"))
    assert disk == {"LOCAL-DISK": local["LOCAL-DISK"]}
    expression = "LOCAL-DISK%7CLOCAL-SAFE"
    one = _global(scene.get(headers, f"/accounts/root/usage/global/{expression}"))
    every = _global(scene.get(headers, "/accounts/root/usage/global"))
    assert one == every
    return local, every


def test_account_usage(scene: Scene) -> None:
    for who, headers in scene.everybody:
        want = (BOBS_LOCAL, BOBS_GLOBAL) if who == "bob" else (FULL_LOCAL, FULL_GLOBAL)
        assert _account_usage(scene, headers) == want, who
    scene.end_embargoes()
    assert _account_usage(scene, scene.world.bob) == (FULL_LOCAL, FULL_GLOBAL)


def test_many_embargoed_dids_travel_as_one_parameter(scene: Scene) -> None:
    """Past four (scope, name) pairs the filter sends them as one JSON parameter: the
    same answers, on both databases, with and without a hidden scope."""
    roots = frozenset({("pub", "sekrit-ds")} | {("pub", f"never-{i}") for i in range(8)})
    with scene.lake.db.read() as s:
        h = Hidden(frozenset(), roots, s)  # sekritscope visible: sekrit-lds's rule too
        assert len(h.below()) > 4
        assert transfer_admin.state_counts(s, h) == {"SUBMITTED": 2, "FAILED": 1}
        ok, replicating = ("root", SUB, "OK", 1), ("root", SUB, "REPLICATING", 1)
        assert rule_states(s, "root", SUB, h) == [ok, replicating]
        h = Hidden(frozenset({"sekritscope"}), roots, s)
        assert transfer_admin.state_counts(s, h) == {"SUBMITTED": 1}
        assert rule_states(s, "root", SUB, h) == [ok]
