"""``fedlake iam policy add|list|remove`` against a live ``fedlake up`` on both databases:
an admin grants a group writing in ``cms_*``, a member then writes there (and a
non-member does not), the rule is removed and the member is refused again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from fedlake.client.iam import IamClient
from fedlake.domain.errors import AccessDenied
from tests.e2e.cli import fedlake, lake_with_users, user_client
from tests.helpers import LiveLake, pg_base_url

BACKENDS = ["sqlite"] + (["postgresql"] if pg_base_url() else [])


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveLake]:
    data_dir = tmp_path_factory.mktemp(f"policy-cli-{request.param}") / "data"
    with lake_with_users(request.param, data_dir) as lake:
        with user_client(lake, "root") as c:
            c.add_scope("root", "cms_prod")
            iam = IamClient(c)
            iam.add_group("/escape")
            iam.add_group("/escape/cms")
            iam.add_member("/escape/cms", "alice")
        yield lake


def add_dataset(live: LiveLake, account: str, name: str) -> Any:
    with user_client(live, account) as c:
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
