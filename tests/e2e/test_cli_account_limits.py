"""``fedlake account limit set|delete`` and ``fedlake account usage`` against a live lake:
a limit refuses a rule beyond it with the usage and the limit named, usage counts the
account's locks, only admins set limits, and bad sizes are refused before any request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import cli
from tests.helpers import LiveLake, pg_base_url

BACKENDS = ["sqlite"] + (["postgresql"] if pg_base_url() else [])


@pytest.fixture(scope="module", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveLake]:
    with cli.lake_with_users(
        request.param, tmp_path_factory.mktemp(f"limits-{request.param}") / "data"
    ) as lake:
        with cli.user_client(lake, "root") as c:
            c.add_scope("alice", "user.alice")
        yield lake


def alice(live: LiveLake, *args: str, code: int = 0) -> str:
    done = cli.fedlake(live, *args, account="alice", password=cli.PASSWORDS["alice"], code=code)
    return done.stdout + done.stderr


def usage(live: LiveLake, *extra: str) -> list[dict[str, object]]:
    rows = json.loads(cli.fedlake(live, "account", "usage", "alice", "--json", *extra).stdout)
    assert isinstance(rows, list)
    return rows


def test_limits_refuse_rules_beyond_them(live: LiveLake, tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / f"f{i}.dat").write_bytes(bytes([i]) * 6000)
    alice(live, "upload", "--rse", "LOCAL-DISK", "--dataset", "user.alice:ds", str(tmp_path))
    said = cli.fedlake(live, "account", "limit", "set", "alice", "LOCAL-SAFE", "10K").stdout
    assert "10,240 B" in said and "LOCAL-SAFE" in said
    out = alice(live, "rule", "add", "user.alice:ds", "LOCAL-SAFE", code=1)
    assert "InsufficientAccountLimit" in out
    assert "12000 bytes on LOCAL-SAFE" in out and "10240" in out
    by_rse = {r["rse"]: r for r in usage(live)}
    assert by_rse["LOCAL-DISK"]["bytes"] == 12000 and by_rse["LOCAL-DISK"]["files"] == 2
    assert by_rse["LOCAL-SAFE"]["bytes"] == 0 and by_rse["LOCAL-SAFE"]["bytes_limit"] == 10240
    table = cli.fedlake(live, "account", "usage", "alice").stdout
    assert "LOCAL-SAFE" in table and "10.0 KiB" in table and "unlimited" in table
    # a limit over an expression counts all its RSEs together
    cli.fedlake(live, "account", "limit", "set", "alice", "QOS=SAFE|QOS=FAST", "1G", "--global")
    (row,) = usage(live, "--global")
    assert row["rse_expression"] == "QOS=SAFE|QOS=FAST" and row["bytes_limit"] == 1 << 30
    # once the limit is gone the same rule is made
    cli.fedlake(live, "account", "limit", "delete", "alice", "LOCAL-SAFE")
    rule_id = alice(live, "rule", "add", "user.alice:ds", "LOCAL-SAFE").strip()
    assert len(rule_id) == 32
    assert {r["rse"] for r in usage(live)} >= {"LOCAL-DISK", "LOCAL-SAFE"}


def test_only_admins_set_limits(live: LiveLake) -> None:
    out = alice(live, "account", "limit", "set", "alice", "LOCAL-SAFE", "1T", code=1)
    assert "AccessDenied" in out and "admin" in out


@pytest.mark.parametrize("size", ["lots", "10X", ""])
def test_bad_sizes_are_refused(live: LiveLake, size: str) -> None:
    done = cli.fedlake(live, "account", "limit", "set", "alice", "LOCAL-SAFE", size, code=2)
    assert "is not a size" in done.stderr


def test_unknown_rse_or_account(live: LiveLake) -> None:
    done = cli.fedlake(live, "account", "limit", "set", "alice", "NO-SUCH-RSE", "1G", code=1)
    assert "NO-SUCH-RSE" in done.stderr
    done = cli.fedlake(live, "account", "usage", "nobody", code=1)
    assert "nobody" in done.stderr
