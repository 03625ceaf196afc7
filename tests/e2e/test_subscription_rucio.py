"""The stock rucio client's subscription calls (rucio-clients 41.5.1) against a live lake:
SubscriptionClient add/list/update/deactivate/rules/rule states, its exceptions, and the
``rucio subscription`` commands. The subscription daemon runs in this process against
the live lake's catalogue (``fedlake up`` does not start it yet).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from rucio.client import Client as RucioClient
from rucio.common import exception as rex
from rucio.common.config import clean_cached_config

from fedlake.bootstrap import Lake, build_lake
from fedlake.daemons.subscriptions import SubscriptionDaemon
from fedlake.settings import Settings
from tests.e2e.conftest import RucioLake, api_stream, unique
from tests.helpers import ROOT_PASSWORD

SCOPE = "user.root"
SAFE = [{"copies": 1, "rse_expression": "LOCAL-SAFE"}]


@pytest.fixture(scope="module")
def rclient(rucio_lake: RucioLake) -> Iterator[RucioClient]:
    token_dir = rucio_lake.workdir / "sub-tmp"
    token_dir.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUCIO_CONFIG", str(rucio_lake.config))
        for var in ("RUCIO_HOME", "RUCIO_ACCOUNT", "RUCIO_AUTH_TYPE", "RUCIO_VO"):
            mp.delenv(var, raising=False)
        mp.setattr(tempfile, "tempdir", str(token_dir))
        clean_cached_config()
        client = RucioClient(
            rucio_host=rucio_lake.url,
            auth_host=rucio_lake.url,
            auth_type="userpass",
            creds={"username": "root", "password": ROOT_PASSWORD},
            account="root",
        )
        try:
            yield client
        finally:
            client.session.close()
            clean_cached_config()


@pytest.fixture(scope="module")
def catalogue(rucio_lake: RucioLake) -> Iterator[Lake]:
    """The live lake's catalogue, for running the subscription daemon here."""
    settings = Settings(
        data_dir=rucio_lake.live.data_dir, database_url=rucio_lake.live.database_url
    )
    lake = build_lake(settings, migrate=False)
    try:
        yield lake
    finally:
        lake.close()


def run_daemon(lake: Lake) -> None:
    daemon = SubscriptionDaemon(lake, batch=100)
    while daemon.run_once():
        pass


def test_add_list_and_errors(rclient: RucioClient) -> None:
    name = unique("sub")
    sub_id = rclient.add_subscription(
        name=name,
        account="root",
        filter_={"scope": [SCOPE], "pattern": f"{name}-ds", "did_type": ["DATASET"]},
        replication_rules=SAFE,
        comments="from the rucio client",
        lifetime=30,
        retroactive=False,
        dry_run=False,
    )
    assert isinstance(sub_id, str) and len(sub_id) == 32
    [sub] = list(rclient.list_subscriptions(name=name, account="root"))
    assert (sub["id"], sub["name"], sub["account"], sub["state"]) == (
        sub_id,
        name,
        "root",
        "ACTIVE",
    )
    assert json.loads(sub["filter"])["pattern"] == f"{name}-ds"
    assert json.loads(sub["replication_rules"]) == SAFE
    assert (sub["policyid"], sub["comments"], sub["retroactive"]) == (
        3,
        "from the rucio client",
        False,
    )
    assert isinstance(sub["lifetime"], datetime)  # 30 days ahead, in Rucio's date format
    assert isinstance(sub["created_at"], datetime)
    assert sub_id in [s["id"] for s in rclient.list_subscriptions(account="root")]
    assert [s["id"] for s in rclient.list_subscriptions(name=name)] == [sub_id]
    assert list(rclient.list_subscriptions(name="no-such-sub", account="root")) == []

    with pytest.raises(rex.SubscriptionDuplicate):
        rclient.add_subscription(name, "root", {}, SAFE, "", False, False, False)
    with pytest.raises(rex.InvalidRSEExpression, match="NO-SUCH-RSE"):
        rclient.add_subscription(
            unique("bad"),
            "root",
            {},
            [{"copies": 1, "rse_expression": "NO-SUCH-RSE"}],
            "",
            False,
            False,
            False,
        )
    with pytest.raises(rex.DIDFilterSyntaxError, match="not a valid regular expression"):
        rclient.add_subscription(
            unique("bad"), "root", {"pattern": "("}, SAFE, "", False, False, False
        )
    with pytest.raises(rex.SubscriptionNotFound):
        rclient.update_subscription("no-such-sub", account="root", comments="x")
    with pytest.raises(rex.AccountNotFound):
        rclient.add_subscription(unique("bad"), "ghost", {}, SAFE, "", False, False, False)


def test_rules_states_update_and_deactivate(
    rclient: RucioClient, catalogue: Lake, lake_api: httpx.Client
) -> None:
    name = unique("sub")
    sub_id = rclient.add_subscription(
        name, "root", {"pattern": f"{name}-ds"}, SAFE, "c", False, False, False, priority=2
    )
    rclient.add_dataset(SCOPE, f"{name}-ds1")
    rclient.add_dataset(SCOPE, f"{name}-other")
    run_daemon(catalogue)
    rules = list(rclient.list_subscription_rules("root", name))
    assert [(r["scope"], r["name"], r["subscription_id"]) for r in rules] == [
        (SCOPE, f"{name}-ds1", sub_id)
    ]
    assert rules[0]["rse_expression"] == "LOCAL-SAFE" and rules[0]["account"] == "root"
    # the rule is an ordinary rule: the rules API shows it with its subscription
    assert rclient.get_replication_rule(rules[0]["id"])["subscription_id"] == sub_id
    assert list(rclient.list_subscription_rule_states("root", name)) == [["root", name, "OK", 1]]

    assert rclient.update_subscription(name, account="root", comments="changed", priority=1)
    [sub] = rclient.list_subscriptions(name=name, account="root")
    assert (sub["state"], sub["comments"], sub["policyid"]) == ("UPDATED", "changed", 1)

    assert rclient.deactivate_subscription(name, account="root")
    [sub] = rclient.list_subscriptions(name=name, account="root")
    assert sub["state"] == "INACTIVE"
    rclient.add_dataset(SCOPE, f"{name}-ds2")
    run_daemon(catalogue)
    assert [r["name"] for r in rclient.list_subscription_rules("root", name)] == [f"{name}-ds1"]
    api = api_stream(lake_api, "GET", f"/subscriptions/root/{name}/rules")
    assert [r["name"] for r in api] == [f"{name}-ds1"]


def test_rucio_subscription_commands(rucio_lake: RucioLake) -> None:
    name = unique("cli")
    filt = json.dumps({"scope": [SCOPE], "pattern": "cli-"})
    proc = rucio_lake.cli_ok(
        "subscription", "add", name, "--filter", filt, "--rule", json.dumps(SAFE), "--comment", "x"
    )
    assert "Subscription added" in proc.stdout
    listing = rucio_lake.cli_ok("subscription", "list", "--account", "root").stdout
    assert name in listing and "ACTIVE" in listing
    shown = rucio_lake.cli_ok("subscription", "show", name, "--account", "root", "--long").stdout
    assert "LOCAL-SAFE" in shown
    filt2 = json.dumps({"scope": [SCOPE], "pattern": "cli2-"})
    rucio_lake.cli_ok("subscription", "update", name, "--filter", filt2, "--rule", json.dumps(SAFE))
    shown = rucio_lake.cli_ok("subscription", "show", name, "--account", "root", "--long").stdout
    assert "cli2-" in shown and "UPDATED" in shown
