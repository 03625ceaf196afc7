"""``fedlake iam user|group|request|audit`` against a live ``fedlake up`` on both
databases: groups and roles, members and managers, a registration request decided by the
group's manager, suspension (the user's token stops working), revocation, the audit log,
and the errors people get."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fedlake.client import Client, ClientConfig
from fedlake.client.iam import IamClient
from fedlake.domain.errors import AuthenticationFailed
from tests.e2e import cli
from tests.helpers import LiveLake, pg_base_url

BACKENDS = ["sqlite"] + (["postgresql"] if pg_base_url() else [])


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveLake]:
    """One live lake per backend, with USER accounts alice and bob."""
    data_dir = tmp_path_factory.mktemp(f"iam-cli-{request.param}") / "data"
    with cli.lake_with_users(request.param, data_dir) as lake:
        yield lake


def fedlake(
    live: LiveLake, *args: str, code: int = 0, account: str = "root"
) -> subprocess.CompletedProcess[str]:
    """Run the real ``fedlake`` command as ``account``; assert its exit status."""
    return cli.fedlake(live, *args, account=account, password=cli.PASSWORDS[account], code=code)


def as_json(live: LiveLake, *args: str, account: str = "root") -> Any:
    return json.loads(fedlake(live, *args, "--json", account=account).stdout)


def test_groups_members_requests_and_audit(live: LiveLake) -> None:
    fedlake(live, "iam", "group", "add", "/escape", "--description", "ESCAPE")
    out = fedlake(live, "iam", "group", "add", "/escape/cms").stdout
    assert "added group /escape/cms" in out
    role = as_json(live, "iam", "group", "add", "/escape/data-manager", "--optional")
    assert role["optional"] is True and role["parent"] == "/escape"
    err = fedlake(live, "iam", "group", "add", "/atlas/x", code=1).stderr
    assert "create /atlas first" in err
    err = fedlake(live, "iam", "group", "add", "escape/", code=1).stderr
    assert "must start with '/'" in err
    table = fedlake(live, "iam", "group", "list").stdout
    assert "/escape/data-manager" in table and "ESCAPE" in table
    names = [g["name"] for g in as_json(live, "iam", "group", "list", "--under", "/escape/cms")]
    assert names == ["/escape/cms"]

    fedlake(live, "iam", "group", "add-member", "/escape", "alice", "--manager")
    # alice, a manager, adds bob to /escape but may not act on /escape/cms
    fedlake(live, "iam", "group", "add-member", "/escape", "bob", account="alice")
    err = fedlake(
        live, "iam", "group", "add-member", "/escape/cms", "bob", code=1, account="alice"
    ).stderr
    assert "AccessDenied" in err
    shown = as_json(live, "iam", "group", "show", "/escape", account="alice")
    assert [(m["account"], m["manager"]) for m in shown["members"]] == [
        ("alice", True),
        ("bob", False),
    ]
    assert shown["subgroups"] == ["/escape/cms", "/escape/data-manager"]
    assert "bob" in fedlake(live, "iam", "group", "show", "/escape").stdout
    fedlake(live, "iam", "group", "set-manager", "/escape", "bob")
    fedlake(live, "iam", "group", "set-manager", "/escape", "bob", "--off")
    fedlake(live, "iam", "group", "remove-member", "/escape", "bob", account="alice")

    # bob asks for the role; alice (manager of /escape, not of the role) cannot decide it
    rid = fedlake(live, "iam", "request", "submit", "/escape/data-manager", account="bob")
    request_id = rid.stdout.strip()
    assert len(request_id) == 32
    mine = as_json(live, "iam", "request", "list", "--mine", account="bob")
    assert [r["id"] for r in mine] == [request_id]
    assert as_json(live, "iam", "request", "list", account="alice") == []
    fedlake(live, "iam", "request", "approve", request_id, code=1, account="alice")
    assert request_id in fedlake(live, "iam", "request", "list").stdout
    out = fedlake(live, "iam", "request", "approve", request_id).stdout
    assert "bob joined /escape/data-manager" in out
    err = fedlake(live, "iam", "request", "reject", request_id, "--reason", "late", code=1).stderr
    assert "already approved" in err
    # bob asks to join /escape again: alice decides that one, and rejects it
    second = as_json(live, "iam", "request", "submit", "/escape", "--notes", "again", account="bob")
    rejected = as_json(
        live, "iam", "request", "reject", second["id"], "--reason", "not now", account="alice"
    )
    assert (rejected["state"], rejected["reason"]) == ("REJECTED", "not now")

    me = as_json(live, "iam", "user", "show", account="bob")
    assert me["groups"] == ["/escape/data-manager"]
    assert {r["state"] for r in me["requests"]} == {"APPROVED", "REJECTED"}
    assert "/escape/data-manager" in fedlake(live, "iam", "user", "show", account="bob").stdout

    err = fedlake(live, "iam", "group", "remove", "/escape", code=1).stderr
    assert "--recursive" in err
    fedlake(live, "iam", "group", "remove", "/escape/cms")

    log = as_json(live, "iam", "audit", "--target", "/escape*")
    actions = [e["action"] for e in reversed(log)]
    assert actions == [
        "group.add",
        "group.add",
        "group.add",
        "member.add",
        "member.add",
        "member.manager",
        "member.manager",
        "member.remove",
        "request.submit",
        "request.approve",
        "request.submit",
        "request.reject",
        "group.remove",
    ]
    assert [e["actor"] for e in as_json(live, "iam", "audit", "--actor", "alice")] == [
        "alice",
        "alice",
        "alice",
    ]
    table = fedlake(live, "iam", "audit", "--action", "request.reject").stdout
    assert "not now" in table and "alice" in table
    assert fedlake(live, "iam", "audit", code=1, account="bob").stderr.count("AccessDenied") == 1


def test_suspension_reinstatement_and_revocation(live: LiveLake) -> None:
    with cli.user_client(live, "alice") as c:
        iam = IamClient(c)
        assert iam.me()["account"] == "alice"
        users = as_json(live, "iam", "user", "list")
        assert {u["account"]: u["status"] for u in users} == {"alice": "ACTIVE", "bob": "ACTIVE"}
        out = fedlake(live, "iam", "user", "suspend", "alice", "--reason", "left").stdout
        assert "suspended alice" in out
        with pytest.raises(AuthenticationFailed):
            c.whoami()  # the token alice holds is refused (and so is a new login)
    assert "SUSPENDED" in fedlake(live, "iam", "user", "list", "--status", "SUSPENDED").stdout
    fedlake(live, "iam", "user", "whoami", code=2)  # no such command: typer's usage error
    fedlake(live, "iam", "user", "list", code=1, account="alice")
    fedlake(live, "iam", "user", "reinstate", "alice")
    with cli.user_client(live, "alice") as c:
        assert c.whoami()["account"] == "alice"
        out = fedlake(live, "iam", "user", "revoke-tokens", "alice", account="alice").stdout
        assert "revoked every token of alice" in out
        same_token = Client(ClientConfig(url=live.url, token=c._token))
        with same_token, pytest.raises(AuthenticationFailed):
            same_token.whoami()
    fedlake(live, "iam", "user", "revoke-tokens", code=2)  # neither ACCOUNT nor --jti
    got = as_json(live, "iam", "user", "revoke-tokens", "--jti", "0123abcd")
    assert got == {"jti": "0123abcd", "revoked": True}
    log = as_json(live, "iam", "audit", "--target", "alice")
    assert [e["action"] for e in log] == ["tokens.revoke", "account.reinstate", "account.suspend"]
    assert log[-1]["details"] == {"reason": "left"}


def test_a_limited_token_never_becomes_the_saved_admin_login(
    live: LiveLake, tmp_path: Path
) -> None:
    """On the lake's machine the saved login is root's, with the password `fedlake up`
    generated; a token given in FEDLAKE_TOKEN is the identity even when the lake refuses
    it something (the client used to log in as root then and try again)."""
    password_file = tmp_path / "root-password"
    password_file.write_text(cli.PASSWORDS["root"])
    saved = {"url": live.url, "account": "root", "username": "root"}
    (tmp_path / "client.json").write_text(json.dumps(saved | {"password_file": str(password_file)}))
    token = fedlake(
        live, "iam", "token", "issue", "alice", "--scope", "storage.read:/user.alice"
    ).stdout.strip()
    env = {k: v for k, v in cli.fedlake_env(live.url).items() if not k.startswith("FEDLAKE_")}
    env |= {"FEDLAKE_DATA_DIR": str(tmp_path), "COLUMNS": "250"}

    def run(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cli.fedlake_command(*args),
            env=env | more,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert json.loads(run("whoami", "--json").stdout)["account"] == "root"  # the saved login
    for args in (("stat", "user.root:raw.fits"), ("ls", "user.root")):  # one call, a stream
        proc = run(*args, "--json", FEDLAKE_TOKEN=token)
        assert proc.returncode == 1, proc.stdout
        assert "AccessDenied" in proc.stderr and "storage.read:/user.root" in proc.stderr
    proc = run("whoami", "--json", FEDLAKE_TOKEN=token)
    assert json.loads(proc.stdout)["account"] == "alice", proc.stderr
