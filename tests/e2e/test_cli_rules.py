"""``fedlake rule`` against a live ``fedlake up`` (its worker copies for real): add with
every option, show, list, locks, history, update, approve, deny, move, reduce, delete and
watch, and the errors people get (unknown rule, bad duration, non-admin approval)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from fedlake.client import Client, ClientConfig
from tests.e2e import cli
from tests.helpers import (
    ROOT_PASSWORD,
    LiveLake,
    lake_on,
    pg_base_url,
)

BACKENDS = ["sqlite"] + (["postgresql"] if pg_base_url() else [])
BOB_PASSWORD = "bob-secret-password"
#: the transfer worker rereads RSE limits this often (WorkerConfig.refresh), plus a margin
LIMITS_SEEN_AFTER = 6.0


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveLake]:
    """One live lake per backend for the module, with a non-admin account bob."""
    with lake_on(
        request.param, tmp_path_factory.mktemp(f"rule-cli-{request.param}") / "data"
    ) as lake:
        with root_client(lake) as c:
            c.add_account("bob")
            c.add_identity("bob", "bob", BOB_PASSWORD)
        yield lake


def root_client(live: LiveLake) -> Client:
    return Client(ClientConfig(url=live.url, username="root", password=ROOT_PASSWORD))


def fedlake(
    live: LiveLake, *args: str, code: int = 0, account: str = "root"
) -> subprocess.CompletedProcess[str]:
    """Run the real ``fedlake`` command as root or bob; assert its exit status."""
    password = ROOT_PASSWORD if account == "root" else BOB_PASSWORD
    return cli.fedlake(live, *args, account=account, password=password, code=code)


def background(live: LiveLake, *args: str) -> subprocess.Popen[str]:
    return cli.spawn_fedlake(live.url, *args, data_dir=live.data_dir)


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def as_json(live: LiveLake, *args: str, account: str = "root") -> Any:
    return json.loads(fedlake(live, *args, "--json", account=account).stdout)


def upload(live: LiveLake, tmp_path: Path, dataset: str, files: int) -> list[str]:
    """Files on LOCAL-DISK in a new dataset user.root:<dataset>; their names."""
    src = tmp_path / dataset
    src.mkdir()
    names = [f"{dataset}-{i}.dat" for i in range(files)]
    for i, name in enumerate(names):
        (src / name).write_bytes(os.urandom(5_000 + i))
    fedlake(live, "upload", "--rse", "LOCAL-DISK", "--dataset", f"user.root:{dataset}", str(src))
    return names


def when(text: str) -> datetime:
    """A date as the API sends it (RFC 1123, UTC)."""
    return parsedate_to_datetime(text)


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_add_show_list_locks_history_update_delete(live: LiveLake, tmp_path: Path) -> None:
    files = upload(live, tmp_path, "rds", 2)

    [rid] = as_json(
        live,
        "rule",
        "add",
        "user.root:rds",
        "LOCAL-SAFE",
        "--lifetime",
        "7d",
        "--comment",
        "for the paper",
        "--activity",
        "Express",
        "--priority",
        "4",
        "--source",
        "LOCAL-DISK",
        "--grouping",
        "ALL",
        "--notify",
        "C",
        "--meta",
        '{"purpose": "paper"}',
        "--purge",
    )
    out = fedlake(live, "rule", "watch", rid, "--timeout", "60", "--interval", "0.2").stdout
    assert f"rule {rid} is OK: 2/2 locks OK" in out
    assert "2/2" in out and "locks OK" in out  # the final frame of the progress bar

    shown = as_json(live, "rule", "show", rid)
    in_a_week = datetime.now(UTC) + timedelta(days=7)
    assert abs((when(shown["expires_at"]) - in_a_week).total_seconds()) < 600
    assert {
        k: shown[k]
        for k in (
            "scope",
            "name",
            "account",
            "state",
            "copies",
            "comments",
            "activity",
            "priority",
            "source_replica_expression",
            "grouping",
            "notification",
            "purge_replicas",
            "locked",
            "locks_ok_cnt",
        )
    } == {
        "scope": "user.root",
        "name": "rds",
        "account": "root",
        "state": "OK",
        "copies": 1,
        "comments": "for the paper",
        "activity": "Express",
        "priority": 4,
        "source_replica_expression": "LOCAL-DISK",
        "grouping": "ALL",
        "notification": "CLOSE",
        "purge_replicas": True,
        "locked": False,
        "locks_ok_cnt": 2,
    }
    assert json.loads(shown["meta"]) == {"purpose": "paper"}
    table = one_line(fedlake(live, "rule", "show", rid).stdout)
    assert f"rule {rid}" in table and "for the paper" in table and "Express" in table

    # two file rules at once: one id per line; their locks (one each) and the dataset's
    out = fedlake(
        live, "rule", "add", f"user.root:{files[0]}", f"user.root:{files[1]}", "LOCAL-DISK"
    ).stdout
    file_rules = out.split()
    assert len(file_rules) == 2 and all(len(r) == 32 for r in file_rules)
    locks = as_json(live, "rule", "locks", file_rules[1])
    assert [(lk["name"], lk["rse"], lk["state"], lk["rule_id"]) for lk in locks] == [
        (files[1], "LOCAL-DISK", "OK", file_rules[1])
    ]
    locks = as_json(live, "rule", "locks", rid)
    assert sorted((lk["name"], lk["rse"], lk["state"]) for lk in locks) == [
        (files[0], "LOCAL-SAFE", "OK"),
        (files[1], "LOCAL-SAFE", "OK"),
    ]
    table = one_line(fedlake(live, "rule", "locks", rid).stdout)  # the title wraps
    assert f"locks of rule {rid}" in table and f"user.root:{files[0]}" in table

    # list: a DID's rules, an account's, a state; unknown DID and state are errors
    on_ds = as_json(live, "rule", "list", "user.root:rds")
    assert {r["rse_expression"] for r in on_ds} == {"LOCAL-DISK", "LOCAL-SAFE"}  # + upload's
    assert rid in {r["id"] for r in on_ds}
    mine = as_json(live, "rule", "list", "--account", "root", "--state", "OK")
    assert {rid, *file_rules} <= {r["id"] for r in mine}
    assert {r["state"] for r in mine} == {"OK"}
    assert as_json(live, "rule", "list", "--account", "bob") == []
    table = fedlake(live, "rule", "list", f"user.root:{files[0]}").stdout
    assert file_rules[0] in table and "1/0/0" in table and rid not in table
    err = fedlake(live, "rule", "list", "--state", "SLEEPY", code=1).stderr
    assert "'SLEEPY' is not a valid RuleState" in one_line(err)
    err = fedlake(live, "rule", "list", "user.root:no-such-ds", code=1).stderr
    assert "DIDNotFound" in err and "no-such-ds" in err

    # update: lifetime removed, locked, comment, priority, activity
    out = fedlake(
        live,
        "rule",
        "update",
        rid,
        "--lifetime",
        "never",
        "--locked",
        "--comment",
        "keep",
        "--priority",
        "2",
        "--activity",
        "Data rebalancing",
    ).stdout
    assert f"updated rule {rid} (state OK)" in out
    shown = as_json(live, "rule", "show", rid)
    assert (shown["expires_at"], shown["locked"], shown["comments"]) == (None, True, "keep")
    assert (shown["priority"], shown["activity"]) == (2, "Data rebalancing")
    fedlake(live, "rule", "update", rid, "--lifetime", "1d12h")
    expires = when(as_json(live, "rule", "show", rid)["expires_at"])
    assert abs((expires - datetime.now(UTC) - timedelta(hours=36)).total_seconds()) < 600

    # a locked rule is not deleted; unlocked, it is (its replicas purged)
    err = fedlake(live, "rule", "delete", rid, code=1).stderr
    assert "UnsupportedOperation" in err and "locked; unlock it first" in one_line(err)
    fedlake(live, "rule", "update", rid, "--unlocked")
    assert f"deleted rule {rid}" in fedlake(live, "rule", "delete", rid, "--purge").stdout
    err = fedlake(live, "rule", "show", rid, code=1).stderr
    assert "RuleNotFound" in err and rid in err
    assert rid not in {r["id"] for r in as_json(live, "rule", "list", "user.root:rds")}

    # history keeps the removed rule's states
    hist = as_json(live, "rule", "history", "user.root:rds")
    states = [h["state"] for h in hist if h["rule_id"] == rid]
    assert states[0] == "REPLICATING" and "OK" in states
    table = fedlake(live, "rule", "history", "user.root:rds").stdout
    assert rid in table and "LOCAL-SAFE" in table


def test_bad_input_is_a_clear_error(live: LiveLake) -> None:
    unknown = "f" * 32
    add = ("rule", "add", "user.root:x", "LOCAL-SAFE")
    cases: list[tuple[tuple[str, ...], int, list[str]]] = [
        ((*add, "--lifetime", "7x"), 2, ["--lifetime", "'7x' is not a duration"]),
        ((*add, "--lifetime", "12 h"), 2, ["'12 h' is not a duration", "30m, 12h, 7d"]),
        ((*add, "--lifetime", "-3"), 2, ["'-3' is not a duration"]),
        ((*add, "--lifetime", "0"), 2, ["'0': a lifetime is at least 1 second"]),
        (("rule", "update", unknown, "--lifetime", "soon"), 2, ["'soon' is not a duration"]),
        (("rule", "update", unknown), 2, ["nothing to change: give --lifetime"]),
        ((*add, "--meta", "[1]"), 2, ["--meta", "give a JSON object"]),
        ((*add, "--meta", "{oops"), 2, ["--meta", "not valid JSON"]),
        ((*add, "--grouping", "SOME"), 1, ["'SOME' is not a valid RuleGrouping"]),
        (("rule", "add", "no-colon", "LOCAL-SAFE"), 1, ["is not a DID: write it as scope:name"]),
        (("rule", "add", "user.root:nothing-here", "LOCAL-SAFE"), 1, ["DIDNotFound"]),
        (("rule", "add", "user.root:x", "NO-SUCH-RSE"), 1, ["InvalidRSEExpression", "empty set"]),
    ]
    for args in (
        ("show", unknown),
        ("locks", unknown),
        ("watch", unknown),
        ("delete", unknown),
        ("approve", unknown),
        ("deny", unknown),
        ("move", unknown, "LOCAL-SAFE"),
        ("reduce", unknown, "1"),
        ("update", unknown, "--comment", "x"),
    ):
        cases.append((("rule", *args), 1, ["RuleNotFound", f"rule '{unknown}' does not exist"]))
    with ThreadPoolExecutor(4) as pool:  # independent commands: four at a time
        runs = list(pool.map(lambda case: fedlake(live, *case[0], code=case[1]), cases))
    for (args, _, expected), proc in zip(cases, runs, strict=True):
        err = one_line(proc.stderr)
        assert all(text in err for text in expected), (args, err)
        assert "Traceback" not in err and proc.stdout == "", (args, proc.stdout)


def test_copies_reduce_move_and_watch_a_moving_rule(live: LiveLake, tmp_path: Path) -> None:
    with root_client(live) as c:  # nothing enters LOCAL-BUFFER until the limit is lifted
        c.request("PUT", "/rses/LOCAL-BUFFER/limits", body={"transfers_inbound": 0})
    limited_at = time.monotonic()
    files = upload(live, tmp_path, "mds", 2)

    [rid] = fedlake(live, "rule", "add", "user.root:mds", "LOCAL-DISK|LOCAL-SAFE").stdout.split()
    assert as_json(live, "rule", "show", rid)["locks_ok_cnt"] == 2  # the uploaded copies
    fedlake(live, "rule", "update", rid, "--copies", "2")
    fedlake(live, "rule", "watch", rid, "--timeout", "60", "--interval", "0.2")
    locks = as_json(live, "rule", "locks", rid)
    assert sorted((lk["rse"], lk["state"]) for lk in locks) == [
        ("LOCAL-DISK", "OK"),
        ("LOCAL-DISK", "OK"),
        ("LOCAL-SAFE", "OK"),
        ("LOCAL-SAFE", "OK"),
    ]

    out = fedlake(live, "rule", "reduce", rid, "1", "--exclude", "LOCAL-SAFE").stdout
    assert f"rule {rid} now keeps 1 copies" in out
    assert {lk["rse"] for lk in as_json(live, "rule", "locks", rid)} == {"LOCAL-DISK"}
    assert as_json(live, "rule", "show", rid)["copies"] == 1
    err = fedlake(live, "rule", "reduce", rid, "1", code=1).stderr
    assert "InvalidReplicationRule" in err and "asks for fewer, not 1" in one_line(err)

    # move to LOCAL-BUFFER (held by its limit) by changing the expression: the rule stays,
    # with its child, until the child is OK; watch follows it until it is gone
    time.sleep(max(0.0, LIMITS_SEEN_AFTER - (time.monotonic() - limited_at)))
    out = one_line(fedlake(live, "rule", "update", rid, "--rse-expression", "LOCAL-BUFFER").stdout)
    child = out.split(" as rule ")[1].split(";")[0]
    assert f"updated rule {rid} (state OK) moving to 'LOCAL-BUFFER' as rule {child};" in out
    assert as_json(live, "rule", "show", rid)["child_rule_id"] == child
    assert as_json(live, "rule", "show", child)["state"] == "REPLICATING"
    err = fedlake(live, "rule", "move", rid, "LOCAL-SAFE", code=1).stderr
    assert f"already moving (child rule {child})" in one_line(err)
    watcher = background(live, "rule", "watch", rid, "--timeout", "60", "--interval", "0.2")
    time.sleep(2.0)  # the watcher has seen the rule: it is OK, but moving, so it waits
    assert watcher.poll() is None
    code, _, err = finish(
        background(live, "rule", "watch", rid, "--timeout", "0.5", "--interval", "0.2")
    )
    assert code == 4 and f"the move to rule {child} is still REPLICATING" in one_line(err)
    with root_client(live) as c:
        c.request("PUT", "/rses/LOCAL-BUFFER/limits", body={"transfers_inbound": 100})
    code, out, err = finish(watcher)
    assert code == 0, (out, err)
    assert f"rule {rid} is gone: its data moved to rule {child}" in one_line(out)
    assert as_json(live, "rule", "show", child)["state"] == "OK"
    locks = as_json(live, "rule", "locks", child)
    assert sorted((lk["name"], lk["rse"]) for lk in locks) == [
        (name, "LOCAL-BUFFER") for name in sorted(files)
    ]

    # moves whose copies are there already end at once: the rule is removed at once
    out = one_line(fedlake(live, "rule", "move", child, "LOCAL-BUFFER|LOCAL-SAFE").stdout)
    grandchild = out.split(" as rule ")[1].split(";")[0]
    assert f"rule {child} moves to 'LOCAL-BUFFER|LOCAL-SAFE' as rule {grandchild};" in out
    assert as_json(live, "rule", "show", grandchild)["state"] == "OK"
    assert "RuleNotFound" in fedlake(live, "rule", "show", child, code=1).stderr
    out = one_line(
        fedlake(
            live, "rule", "update", grandchild, "--rse-expression", "LOCAL-BUFFER|LOCAL-DISK"
        ).stdout
    )
    moved = [
        r["id"]
        for r in as_json(live, "rule", "list", "user.root:mds")
        if r["rse_expression"] == "LOCAL-BUFFER|LOCAL-DISK"
    ]
    assert len(moved) == 1 and moved[0] != grandchild
    assert (
        f"rule {grandchild} moved to 'LOCAL-BUFFER|LOCAL-DISK' at once, as rule "
        f"{moved[0]}; it is removed" in out
    )
    assert "RuleNotFound" in fedlake(live, "rule", "show", grandchild, code=1).stderr


def test_approval_and_who_may_do_what(live: LiveLake, tmp_path: Path) -> None:
    upload(live, tmp_path, "ads", 1)

    # bob asks; bob may neither approve nor deny, nor act for root, nor touch root's rules
    [waiting] = as_json(
        live, "rule", "add", "user.root:ads", "LOCAL-SAFE", "--ask-approval", account="bob"
    )
    assert as_json(live, "rule", "show", waiting, account="bob")["state"] == "WAITING_APPROVAL"
    err = fedlake(live, "rule", "approve", waiting, code=1, account="bob").stderr
    assert "AccessDenied" in err and "only an admin may approve or deny rules" in one_line(err)
    err = fedlake(live, "rule", "deny", waiting, "--reason", "x", code=1, account="bob").stderr
    assert "AccessDenied" in err and "only an admin may approve or deny rules" in one_line(err)
    err = fedlake(
        live, "rule", "add", "user.root:ads", "LOCAL-SAFE", "--account", "root", code=1,
        account="bob",
    ).stderr  # fmt: skip
    assert "AccessDenied" in err and "may not add rules for account root" in one_line(err)
    [roots] = as_json(live, "rule", "list", "user.root:ads", "--account", "root")
    for args in (("update", roots["id"], "--comment", "mine"), ("delete", roots["id"])):
        err = fedlake(live, "rule", *args, code=1, account="bob").stderr
        assert "AccessDenied" in err and "of account root" in one_line(err)

    # a waiting rule: watch gives up after --timeout (exit 4); root approves; it completes
    err = fedlake(live, "rule", "watch", waiting, "--timeout", "0.5", code=4).stderr
    assert f"rule {waiting} is still WAITING_APPROVAL after 0.5 s" in one_line(err)
    out = fedlake(live, "rule", "approve", waiting).stdout
    assert f"approved rule {waiting} (state" in out
    fedlake(live, "rule", "watch", waiting, "--timeout", "60", "--interval", "0.2")
    assert as_json(live, "rule", "show", waiting, account="bob")["locks_ok_cnt"] == 1
    err = fedlake(live, "rule", "approve", waiting, code=1).stderr
    assert "UnsupportedOperation" in err
    assert "only rules WAITING_APPROVAL are approved or denied" in one_line(err)

    # root denies another: it is removed
    [denied] = as_json(
        live, "rule", "add", "user.root:ads", "LOCAL-TAPE", "--ask-approval", account="bob"
    )
    out = fedlake(live, "rule", "deny", denied, "--reason", "no tape for bob").stdout
    assert f"denied rule {denied}: removed" in out
    assert "RuleNotFound" in fedlake(live, "rule", "show", denied, code=1).stderr

    # a waiting rule that expires while watched: watch says it is gone (exit 1)
    [short] = as_json(
        live, "rule", "add", "user.root:ads", "LOCAL-BUFFER", "--ask-approval", "--lifetime",
        "6s", account="bob",
    )  # fmt: skip
    proc = fedlake(live, "rule", "watch", short, "--timeout", "60", "--interval", "0.2", code=1)
    assert f"rule {short} is gone (deleted, denied or expired)" in one_line(proc.stderr)
