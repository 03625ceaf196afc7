"""``fedlake iam policy add|list|remove`` against a live ``fedlake up`` on both databases:
an admin grants a group writing in ``cms_*``, a member then writes there (and a
non-member does not), the rule is removed and the member is refused again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from fedlake.client import Client, ClientConfig
from fedlake.client.iam import IamClient
from fedlake.domain.errors import AccessDenied
from tests.helpers import ROOT_PASSWORD, LiveLake, lake_on, pg_base_url

BACKENDS = ["sqlite"] + (["postgresql"] if pg_base_url() else [])
PASSWORDS = {"root": ROOT_PASSWORD, "alice": "alice-secret-password", "bob": "bob-secret-pw1"}


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveLake]:
    with lake_on(
        request.param, tmp_path_factory.mktemp(f"policy-cli-{request.param}") / "data"
    ) as lake:
        with client(lake, "root") as c:
            for name in ("alice", "bob"):
                c.add_account(name, "USER", f"{name}@example.org")
                c.add_identity(name, name, PASSWORDS[name])
            c.add_scope("root", "cms_prod")
            iam = IamClient(c)
            iam.add_group("/escape")
            iam.add_group("/escape/cms")
            iam.add_member("/escape/cms", "alice")
        yield lake


def client(live: LiveLake, account: str) -> Client:
    return Client(ClientConfig(url=live.url, username=account, password=PASSWORDS[account]))


def fedlake(live: LiveLake, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLAKE_")}
    env.update(
        FEDLAKE_URL=live.url,
        FEDLAKE_USERNAME="root",
        FEDLAKE_PASSWORD=ROOT_PASSWORD,
        FEDLAKE_ACCOUNT="root",
        FEDLAKE_DATA_DIR=str(live.data_dir),
        COLUMNS="250",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "fedlake.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == code, f"fedlake {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def add_dataset(live: LiveLake, account: str, name: str) -> Any:
    with client(live, account) as c:
        return c.add_did("cms_prod", name, "DATASET")


def test_policy_add_list_remove_round_trip(live: LiveLake) -> None:
    with pytest.raises(AccessDenied):
        add_dataset(live, "alice", "before")
    out = fedlake(live, "iam", "policy", "add", "/escape/cms", "write", "cms_*").stdout
    assert "/escape/cms may write in cms_*" in out
    rule_id = int(out.split()[2].rstrip(":"))
    add_dataset(live, "alice", "granted")
    with pytest.raises(AccessDenied):
        add_dataset(live, "bob", "not-for-bob")
    rows = json.loads(fedlake(live, "iam", "policy", "list", "--json").stdout)
    assert [(r["id"], r["group"], r["action"], r["scope"]) for r in rows] == [
        (rule_id, "/escape/cms", "write", "cms_*")
    ]
    table = fedlake(live, "iam", "policy", "list").stdout
    assert "/escape/cms" in table and "cms_*" in table
    bad = fedlake(live, "iam", "policy", "add", "/escape", "own", "*", code=1)
    assert "read, write, delete, all" in bad.stdout + bad.stderr
    fedlake(live, "iam", "policy", "remove", str(rule_id))
    assert json.loads(fedlake(live, "iam", "policy", "list", "--json").stdout) == []
    with pytest.raises(AccessDenied):
        add_dataset(live, "alice", "after")
    gone = fedlake(live, "iam", "policy", "remove", str(rule_id), code=1)
    assert "PolicyNotFound" in gone.stdout + gone.stderr
