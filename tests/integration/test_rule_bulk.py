"""Rules on many DIDs in one request: the set-wise path (catalog/rule_bulk.py).

Every test runs on SQLite and PostgreSQL. Failing requests must leave every table as it
was; the bulk path must write the rows adding the rules one by one writes.
"""

from __future__ import annotations

import json
import random
import zlib
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from fedlake.bootstrap import Lake
from fedlake.catalog import rule_bulk
from fedlake.catalog import rules as rule_core
from fedlake.catalog.models import RSE, Event, Lock, Replica, Rule, RuleHistory
from fedlake.domain.types import RuleGrouping, RuleNotification
from fedlake.services.rules import targets_of
from tests.helpers import assert_error, post

SCOPE = "user.root"
TWIN = "user.twin"


def register(
    api: TestClient, rse: str, sizes: dict[str, int], state: str = "A", scope: str = SCOPE
) -> None:
    files = [
        {
            "scope": scope,
            "name": name,
            "bytes": n,
            "adler32": f"{zlib.adler32(name.encode()):08x}",
            "state": state,
        }
        for name, n in sizes.items()
    ]
    r = post(api, "/replicas", {"rse": rse, "files": files})
    assert r.status_code == 201, r.text


def add_rules(
    api: TestClient, names: list[str], rse_expression: str, **changes: Any
) -> httpx.Response:
    body = {
        "dids": [{"scope": SCOPE, "name": n} for n in names],
        "copies": 1,
        "rse_expression": rse_expression,
        "grouping": None,
        "lifetime": None,
        "account": None,
        "activity": None,
        "notify": None,
        "ask_approval": False,
        "asynchronous": False,
    } | changes
    return post(api, "/rules/", body)


def rule_ids(r: httpx.Response, n: int) -> list[str]:
    assert r.status_code == 201, r.text
    ids = r.json()
    assert isinstance(ids, list) and len(ids) == n and len(set(ids)) == n
    return [str(i) for i in ids]


def rse_ids(lake: Lake) -> dict[str, str]:
    with lake.db.read() as s:
        return {name: i for i, name in s.execute(select(RSE.id, RSE.rse))}


def snapshot(lake: Lake) -> dict[str, Any]:
    """Every row a rule request may write or change."""
    with lake.db.read() as s:
        out: dict[str, Any] = {
            m.__tablename__: s.scalar(select(func.count()).select_from(m))
            for m in (Rule, Lock, Replica, RuleHistory, Event)
        }
        out["replica_rows"] = sorted(
            tuple(row)
            for row in s.execute(
                select(
                    Replica.rse_id,
                    Replica.scope,
                    Replica.name,
                    Replica.state,
                    Replica.lock_cnt,
                    Replica.tombstone,
                )
            )
        )
        return out


def files(prefix: str, n: int, start: int = 1) -> dict[str, int]:
    return {f"{prefix}{i:04d}": start + i for i in range(n)}


def test_bulk_rule_on_many_files(api: TestClient, lake: Lake) -> None:
    sizes = files("m", 300)
    register(api, "LOCAL-DISK", sizes)
    disk = rse_ids(lake)["LOCAL-DISK"]
    names = list(sizes)
    random.Random(7).shuffle(names)
    with lake.db.write() as s:  # a replica marked for deletion is kept once it is locked
        s.execute(
            update(Replica).where(Replica.name == names[5]).values(tombstone=datetime(2020, 1, 1))
        )
    ids = rule_ids(add_rules(api, names, "LOCAL-DISK", lifetime=600), len(names))
    with lake.db.read() as s:
        rules = {r.id: r for r in s.scalars(select(Rule))}
        locks = {lk.rule_id: lk for lk in s.scalars(select(Lock))}
        replicas = {r.name: r for r in s.scalars(select(Replica))}
        history = {h.rule_id: h for h in s.scalars(select(RuleHistory))}
        added = [
            json.loads(e.payload) for e in s.scalars(select(Event)) if e.event_type == "rule-added"
        ]
    assert len(rules) == len(locks) == len(history) == len(added) == len(names)
    for rule_id, name in zip(ids, names, strict=True):  # ids in the order of the DIDs
        rule = rules[rule_id]
        assert (rule.scope, rule.name, rule.did_type, rule.account) == (SCOPE, name, "FILE", "root")
        assert (rule.state, rule.copies, rule.rse_expression) == ("OK", 1, "LOCAL-DISK")
        assert (rule.locks_ok_cnt, rule.locks_replicating_cnt, rule.locks_stuck_cnt) == (1, 0, 0)
        assert rule.grouping == "DATASET" and rule.activity == "User Subscriptions"
        assert rule.expires_at is not None and rule.priority == 3 and rule.locked is False
        lock = locks[rule_id]
        assert (lock.scope, lock.name, lock.rse_id) == (SCOPE, name, disk)
        assert (lock.state, lock.bytes, lock.account) == ("OK", sizes[name], "root")
        assert replicas[name].lock_cnt == 1 and replicas[name].tombstone is None
        h = history[rule_id]
        assert (h.name, h.state, h.locks_ok_cnt, h.locks_replicating_cnt) == (name, "OK", 1, 0)
    assert [(a["rule_id"], a["name"], a["state"]) for a in added] == [
        (i, n, "OK") for i, n in zip(ids, names, strict=True)
    ]
    shown = api.get(f"/rules/{ids[0]}").json()
    assert shown["name"] == names[0] and shown["state"] == "OK" and shown["locks_ok_cnt"] == 1
    # a second rule on the same files (another expression) locks the replicas again
    ids2 = rule_ids(add_rules(api, names[:10], "site=LOCAL"), 10)
    with lake.db.read() as s:
        cnt = {n: c for n, c in s.execute(select(Replica.name, Replica.lock_cnt))}
        assert {cnt[n] for n in names[:10]} == {2} and {cnt[n] for n in names[10:]} == {1}
        assert {r.state for r in s.scalars(select(Rule).where(Rule.id.in_(ids2)))} == {"OK"}


def test_files_with_and_without_replicas_on_the_target(api: TestClient, lake: Lake) -> None:
    only_disk = files("a", 6)
    on_safe = files("b", 5, 100)
    unavailable = files("c", 4, 200)
    only_safe = files("d", 3, 300)
    only_tape = files("e", 3, 400)
    register(api, "LOCAL-DISK", only_disk | on_safe)
    register(api, "LOCAL-SAFE", on_safe | only_safe)
    register(api, "LOCAL-SAFE", unavailable, state="U")
    register(api, "LOCAL-TAPE", only_tape)
    rse = rse_ids(lake)
    names = [*only_disk, *on_safe, *unavailable]
    ids = dict(zip(names, rule_ids(add_rules(api, names, "LOCAL-SAFE"), len(names)), strict=True))
    # 'country=XX' is LOCAL-DISK and LOCAL-SAFE: an RSE holding the file wins, else the first
    mixed = [*only_safe, *only_tape]
    ids |= dict(zip(mixed, rule_ids(add_rules(api, mixed, "country=XX"), len(mixed)), strict=True))
    want = (
        {n: ("LOCAL-SAFE", "REPLICATING", "COPYING") for n in only_disk}
        | {n: ("LOCAL-SAFE", "OK", "AVAILABLE") for n in on_safe}
        | {n: ("LOCAL-SAFE", "REPLICATING", "UNAVAILABLE") for n in unavailable}
        | {n: ("LOCAL-SAFE", "OK", "AVAILABLE") for n in only_safe}
        | {n: ("LOCAL-DISK", "REPLICATING", "COPYING") for n in only_tape}
    )
    sizes = only_disk | on_safe | unavailable | only_safe | only_tape
    with lake.db.read() as s:
        for name, (target, state, replica_state) in want.items():
            rule = s.get(Rule, ids[name])
            assert rule is not None and rule.state == state, name
            ok = int(state == "OK")
            assert (rule.locks_ok_cnt, rule.locks_replicating_cnt, rule.locks_stuck_cnt) == (
                ok,
                1 - ok,
                0,
            )
            [lock] = s.scalars(select(Lock).where(Lock.rule_id == rule.id))
            assert lock.rse_id == rse[target] and lock.state == ("OK" if ok else "REPLICATING")
            rep = s.get(Replica, (rse[target], SCOPE, name))
            assert rep is not None and rep.state == replica_state and rep.lock_cnt == 1
            assert rep.bytes == sizes[name] and rep.adler32 == f"{zlib.adler32(name.encode()):08x}"
        assert (
            s.scalar(select(func.count()).select_from(Replica)) == 11 + 8 + 4 + 3 + 6 + 3
        )  # registered + new
    # the new COPYING replicas turn AVAILABLE: their rules follow
    body = {
        "rse": "LOCAL-SAFE",
        "files": [{"scope": SCOPE, "name": n, "state": "A"} for n in only_disk],
    }
    assert api.put("/replicas", content=json.dumps(body)).status_code == 200
    for name in only_disk:
        rule = api.get(f"/rules/{ids[name]}").json()
        assert (rule["state"], rule["locks_ok_cnt"], rule["locks_replicating_cnt"]) == ("OK", 1, 0)


def test_two_copies_prefer_rses_with_the_file(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-DISK", {"t1": 5, "t2": 6, "t3": 7})
    register(api, "LOCAL-TAPE", {"t2": 6})
    register(api, "LOCAL-SAFE", {"t3": 7}, state="C")
    rse = rse_ids(lake)
    names = ["t1", "t2", "t3"]
    ids = rule_ids(add_rules(api, names, "site=LOCAL-2", copies=2), 3)
    with lake.db.read() as s:
        locks = {
            (lk.name, lk.rse_id): lk.state
            for lk in s.scalars(select(Lock).where(Lock.rule_id.in_(ids)))
        }
        rules = {r.name: r for r in s.scalars(select(Rule))}
    safe, tape = rse["LOCAL-SAFE"], rse["LOCAL-TAPE"]
    assert locks == {
        ("t1", safe): "REPLICATING",
        ("t1", tape): "REPLICATING",
        ("t2", safe): "REPLICATING",
        ("t2", tape): "OK",
        ("t3", safe): "REPLICATING",
        ("t3", tape): "REPLICATING",
    }
    assert (rules["t2"].locks_ok_cnt, rules["t2"].locks_replicating_cnt) == (1, 1)
    assert {r.state for r in rules.values()} == {"REPLICATING"}
    r = add_rules(api, names, "site=LOCAL-2", copies=3)
    assert_error(r, 409, "InsufficientTargetRSEs")


def test_duplicate_rule_in_the_batch_writes_nothing(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-DISK", files("f", 5))
    before = snapshot(lake)
    msg = assert_error(
        add_rules(api, ["f0000", "f0001", "f0002", "f0001"], "LOCAL-SAFE"), 409, "DuplicateRule"
    )
    assert "user.root:f0001" in msg and "more than once" in msg
    assert snapshot(lake) == before
    [existing] = rule_ids(add_rules(api, ["f0003"], "LOCAL-SAFE"), 1)
    before = snapshot(lake)
    msg = assert_error(
        add_rules(api, ["f0000", "f0001", "f0003", "f0004"], "LOCAL-SAFE"), 409, "DuplicateRule"
    )
    assert existing in msg and "user.root:f0003" in msg
    assert snapshot(lake) == before
    # another number of copies or another expression is another rule
    rule_ids(add_rules(api, ["f0003", "f0004"], "LOCAL-DISK"), 2)
    rule_ids(add_rules(api, ["f0003"], "country=XX", copies=2), 1)


def test_unknown_did_in_the_middle_writes_nothing(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-DISK", files("u", 4))
    assert post(api, f"/dids/{SCOPE}/uds", {"type": "DATASET"}).status_code == 201
    r = post(api, f"/dids/{SCOPE}/uds/dids", {"dids": [{"scope": SCOPE, "name": "u0000"}]})
    assert r.status_code == 201, r.text
    before = snapshot(lake)
    for names in (["u0000", "u0001", "ghost", "u0002"], ["uds", "u0001", "ghost"]):
        msg = assert_error(add_rules(api, names, "LOCAL-SAFE"), 404, "DataIdentifierNotFound")
        assert "user.root:ghost" in msg
        assert snapshot(lake) == before


def test_account_limit_for_the_whole_request(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-DISK", files("q", 20, 10))  # 10 + 11 + ... + 29 = 390 bytes
    register(api, "LOCAL-DISK", {"used": 50})
    r = post(api, "/accounts/root/limits/local/LOCAL-SAFE", {"bytes": 400})
    assert r.status_code == 201, r.text
    rule_ids(add_rules(api, ["used"], "LOCAL-SAFE"), 1)
    before = snapshot(lake)
    names = list(files("q", 20, 10))
    msg = assert_error(add_rules(api, names, "LOCAL-SAFE"), 409, "InsufficientAccountLimit")
    assert "LOCAL-SAFE" in msg and "440" in msg and "400" in msg and "50" in msg
    assert snapshot(lake) == before
    # other RSEs are not limited; the exact limit is allowed
    rule_ids(add_rules(api, names, "LOCAL-TAPE"), 20)
    r = post(api, "/accounts/root/limits/local/LOCAL-SAFE", {"bytes": 440})
    assert r.status_code == 201, r.text
    rule_ids(add_rules(api, names, "LOCAL-SAFE"), 20)
    usage = [
        json.loads(x) for x in api.get("/accounts/root/usage/local/LOCAL-SAFE").text.splitlines()
    ]
    assert usage[0]["bytes"] == 440 and usage[0]["files"] == 21


def test_files_and_collections_in_one_request(api: TestClient, lake: Lake) -> None:
    register(api, "LOCAL-DISK", files("x", 6))
    assert post(api, f"/dids/{SCOPE}/xds", {"type": "DATASET"}).status_code == 201
    assert post(api, f"/dids/{SCOPE}/xcont", {"type": "CONTAINER"}).status_code == 201
    for parent, children in (("xds", ["x0000", "x0001"]), ("xcont", ["xds"])):
        body = {"dids": [{"scope": SCOPE, "name": c} for c in children]}
        assert post(api, f"/dids/{SCOPE}/{parent}/dids", body).status_code == 201
    names = ["x0002", "xds", "x0000", "xcont", "x0003"]
    ids = rule_ids(add_rules(api, names, "LOCAL-SAFE"), len(names))
    shown = [api.get(f"/rules/{i}").json() for i in ids]
    assert [r["name"] for r in shown] == names
    assert [r["did_type"] for r in shown] == ["FILE", "DATASET", "FILE", "CONTAINER", "FILE"]
    assert [r["locks_replicating_cnt"] for r in shown] == [1, 2, 1, 2, 1]
    with lake.db.read() as s:
        safe = rse_ids(lake)["LOCAL-SAFE"]
        rows = s.execute(select(Replica.name, Replica.lock_cnt).where(Replica.rse_id == safe))
        cnt = {n: c for n, c in rows}
    # x0000 is locked by its own rule, the dataset's and the container's
    assert cnt == {"x0000": 3, "x0001": 2, "x0002": 1, "x0003": 1}


def test_rules_given_with_new_collections(api: TestClient, lake: Lake) -> None:
    """POST /dids with 'rules' goes through the same path (inside the DID transaction)."""
    register(api, "LOCAL-DISK", files("n", 2))
    rule = {"copies": 1, "rse_expression": "LOCAL-SAFE", "account": "root", "lifetime": 60}
    body = [
        {
            "scope": SCOPE,
            "name": "nds",
            "type": "DATASET",
            "dids": [{"scope": SCOPE, "name": n} for n in files("n", 2)],
            "rules": [rule],
        }
    ]
    r = post(api, "/dids", body)
    assert r.status_code == 201, r.text
    [shown] = [json.loads(x) for x in api.get(f"/dids/{SCOPE}/nds/rules").text.splitlines()]
    assert shown["did_type"] == "DATASET" and shown["state"] == "REPLICATING"
    assert shown["locks_replicating_cnt"] == 2 and shown["expires_at"] is not None
    before = snapshot(lake)
    body[0] |= {"name": "nds2", "rules": [rule, rule]}  # the same rule twice: nothing is added
    assert_error(post(api, "/dids", body), 409, "DuplicateRule")
    assert snapshot(lake) == before


# --- the bulk path writes what adding the rules one by one writes ----------------------


def _catalogue(lake: Lake, scope: str) -> dict[str, Any]:
    """The rows of ``scope`` without ids and timestamps (rules are named by what they ask)."""
    skip = {"id", "scope", "created_at", "updated_at", "expires_at"}
    cols = [c for c in Rule.__table__.columns if c.name not in skip]
    with lake.db.read() as s:
        rules = s.scalars(select(Rule).where(Rule.scope == scope)).all()
        key = {r.id: (r.name, r.rse_expression, r.copies) for r in rules}
        return {
            "rules": sorted(
                (*(getattr(r, c.key) for c in cols), r.expires_at is None) for r in rules
            ),
            "locks": sorted(
                (key[lk.rule_id], lk.name, lk.rse_id, lk.account, lk.bytes, lk.state)
                for lk in s.scalars(select(Lock).where(Lock.scope == scope))
            ),
            "replicas": sorted(
                (
                    r.rse_id,
                    r.name,
                    r.bytes,
                    r.adler32,
                    r.md5,
                    r.path,
                    r.state,
                    r.lock_cnt,
                    r.tombstone,
                )
                for r in s.scalars(select(Replica).where(Replica.scope == scope))
            ),
            "history": sorted(
                (key[h.rule_id], h.name, h.state, h.locks_ok_cnt, h.locks_replicating_cnt)
                for h in s.scalars(select(RuleHistory).where(RuleHistory.scope == scope))
            ),
            "events": [  # the payload text but for rule id and scope
                (
                    e.event_type,
                    key[p["rule_id"]],
                    e.payload.replace(p["rule_id"], "ID").replace(scope, "S"),
                )
                for e in s.scalars(select(Event).order_by(Event.id))
                for p in [json.loads(e.payload)]
                if p.get("scope") == scope
            ],
        }


def test_bulk_path_writes_the_rows_of_the_per_did_path(api: TestClient, lake: Lake) -> None:
    rng = random.Random(20240601)
    assert api.post(f"/accounts/root/scopes/{TWIN}").status_code == 201
    names = [f"r{i:03d}" for i in range(60)]
    layout: dict[tuple[str, str], dict[str, int]] = {}
    for name in names:
        size = rng.randrange(0, 1000)
        held = rng.sample(["LOCAL-DISK", "LOCAL-SAFE", "LOCAL-TAPE"], rng.randint(1, 3))
        for rse in held:
            layout.setdefault((rse, rng.choice("AAAUC")), {})[name] = size
    members = rng.sample(names, 8)
    for scope in (SCOPE, TWIN):  # the same files, replicas and dataset in both scopes
        for (rse, state), sizes in sorted(layout.items()):
            register(api, rse, sizes, state=state, scope=scope)
        assert post(api, f"/dids/{scope}/rds", {"type": "DATASET"}).status_code == 201
        body = {"dids": [{"scope": scope, "name": n} for n in members]}
        assert post(api, f"/dids/{scope}/rds/dids", body).status_code == 201
    for expression, copies in (
        ("LOCAL-SAFE", 1),
        ("country=XX", 1),
        ("site=LOCAL-2", 2),
        ("country=XX", 2),
    ):
        picked = rng.sample(names, 40)
        picked.insert(rng.randrange(len(picked)), "rds")
        with lake.db.write() as s:
            spec = rule_core.RuleSpec(
                account="root",
                copies=copies,
                rse_expression=expression,
                target_rse_ids=targets_of(s, expression, False),
                grouping=RuleGrouping.DATASET,
                lifetime=rng.choice([None, 3600]),
                activity="Analysis",
                notification=RuleNotification.YES,
                priority=2,
                comment="twin",
                meta='{"k": 1}',
            )
            one_by_one = [
                rule_core.add_rule(s, rule_core.NewRule.of(spec, SCOPE, n)) for n in picked
            ]
        with lake.db.write() as s:
            bulk = rule_bulk.add_rules(s, spec, [(TWIN, n) for n in picked])
        with lake.db.read() as s:
            for ids, scope in ((one_by_one, SCOPE), (bulk, TWIN)):
                got = [(r.scope, r.name) for r in (s.get(Rule, i) for i in ids) if r]
                assert got == [(scope, n) for n in picked]
    per_did, set_wise = _catalogue(lake, SCOPE), _catalogue(lake, TWIN)
    assert len(per_did["rules"]) == 4 * 41 and len(per_did["locks"]) > 4 * 41
    for table in ("rules", "locks", "replicas", "history", "events"):
        assert set_wise[table] == per_did[table], table
