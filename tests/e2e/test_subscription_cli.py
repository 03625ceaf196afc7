"""``fedlake subscription add|list|show|update|disable`` against a live lake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedlake.bootstrap import build_lake
from fedlake.client import Client, ClientConfig
from fedlake.daemons.subscriptions import SubscriptionDaemon
from fedlake.settings import Settings
from tests.e2e.cli import fedlake
from tests.helpers import (
    ROOT_PASSWORD,
    LiveLake,
    lake_on,
    pg_base_url,
)

BACKENDS = ["sqlite"] + (["postgresql"] if pg_base_url() else [])


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveLake]:
    with lake_on(request.param, tmp_path_factory.mktemp("sub-cli") / "data") as lake:
        yield lake


def run_daemon(live: LiveLake) -> None:
    lake = build_lake(
        Settings(data_dir=Path(live.data_dir), database_url=live.database_url), migrate=False
    )
    try:
        daemon = SubscriptionDaemon(lake)
        while daemon.run_once():
            pass
    finally:
        lake.close()


def test_add_list_show_update_disable(live: LiveLake) -> None:
    rule = json.dumps({"copies": 1, "rse_expression": "LOCAL-SAFE"})
    flt = json.dumps({"scope": ["user.root"], "pattern": "cli_"})
    out = fedlake(live, "subscription", "add", "to-safe", "--filter", flt, "--rule", rule).stdout
    assert "added subscription root/to-safe" in out

    rows = json.loads(fedlake(live, "subscription", "list", "--json").stdout)
    assert [(r["name"], r["state"]) for r in rows] == [("to-safe", "ACTIVE")]
    assert "to-safe" in fedlake(live, "subscription", "list", "--all").stdout

    with Client(ClientConfig(url=live.url, username="root", password=ROOT_PASSWORD)) as c:
        c.add_did("user.root", "cli_ds")
    run_daemon(live)
    shown = json.loads(fedlake(live, "subscription", "show", "to-safe", "--rules", "--json").stdout)
    assert shown["rule_states"] == {"OK": 1}
    assert [r["name"] for r in shown["rules"]] == ["cli_ds"]
    table = fedlake(live, "subscription", "show", "to-safe").stdout
    assert "its rules" in table and "OK" in table

    fedlake(
        live,
        "subscription",
        "update",
        "to-safe",
        "--comments",
        "now with comments",
        "--priority",
        "1",
    )
    shown = json.loads(fedlake(live, "subscription", "show", "to-safe", "--json").stdout)
    assert (shown["comments"], shown["policyid"], shown["state"]) == (
        "now with comments",
        1,
        "UPDATED",
    )
    assert (
        "disabled subscription root/to-safe"
        in fedlake(live, "subscription", "disable", "to-safe").stdout
    )
    shown = json.loads(fedlake(live, "subscription", "show", "to-safe", "--json").stdout)
    assert shown["state"] == "INACTIVE"
    fedlake(live, "subscription", "update", "to-safe", "--enable")
    shown = json.loads(fedlake(live, "subscription", "show", "to-safe", "--json").stdout)
    assert shown["state"] == "ACTIVE"


def test_errors_are_clear(live: LiveLake) -> None:
    bad = fedlake(
        live,
        "subscription",
        "add",
        "bad",
        "--filter",
        '{"pattern": "("}',
        "--rule",
        '{"copies": 1, "rse_expression": "LOCAL-SAFE"}',
        code=1,
    )
    assert "not a valid regular expression" in bad.stderr
    bad = fedlake(live, "subscription", "add", "bad", "--filter", "{nope", code=None)
    assert bad.returncode != 0 and "--filter is not valid JSON" in bad.stderr + bad.stdout
    bad = fedlake(live, "subscription", "add", "bad", code=None)
    assert "replication_rules is required" in bad.stderr
    bad = fedlake(live, "subscription", "show", "nothing-here", code=None)
    assert "SubscriptionNotFound" in bad.stderr
    bad = fedlake(live, "subscription", "update", "nothing-here", code=None)
    assert "nothing to change" in bad.stderr + bad.stdout
