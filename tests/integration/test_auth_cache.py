"""Checked tokens are remembered briefly; account changes still apply (fedlake.auth.cache).

- a remembered token costs no catalogue query;
- changes made through the services (admin attribute) apply at once in this process;
- changes made elsewhere (another server process, SQL) apply after the cache time, or at
  once with FEDLAKE_AUTH_CACHE_SECONDS=0;
- an entry never outlives its token; the X-Rucio-Account header is checked every time.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from starlette.testclient import TestClient

from fedlake.auth import cache
from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.catalog.models import Account
from fedlake.domain.errors import AccessDenied, AuthenticationFailed
from fedlake.services import accounts as svc
from fedlake.services.accounts import cached_caller, caller_from_token

ROOT = Caller("root", admin=True)


class ShiftedClock:
    """The real clocks, moved forward by hand (the cache module's view of time)."""

    def __init__(self) -> None:
        self.shift = 0.0

    def time(self) -> float:
        return time.time() + self.shift

    def monotonic(self) -> float:
        return time.monotonic() + self.shift


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ShiftedClock:
    fake = ShiftedClock()
    monkeypatch.setattr(cache, "time", fake)
    return fake


@pytest.fixture
def alice(lake: Lake) -> str:
    svc.add_account(lake, ROOT, "alice", "USER", "alice@example.org")
    return "alice"


@pytest.fixture
def statements(lake: Lake) -> Iterator[list[str]]:
    """SQL statements sent on the lake's read engine."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(lake.db.read_engine, "before_cursor_execute", record)
    yield seen
    event.remove(lake.db.read_engine, "before_cursor_execute", record)


def _suspend_elsewhere(lake: Lake, account: str) -> None:
    """What another process (or an operator with SQL) does: no service, no cache update."""
    with lake.db.write() as s:
        row = s.get(Account, account)
        assert row is not None
        row.status = "SUSPENDED"


def test_a_remembered_token_costs_no_query(lake: Lake, alice: str, statements: list[str]) -> None:
    token, _ = lake.tokens.issue(alice, alice)
    assert cached_caller(lake, token) is None
    assert caller_from_token(lake, token) == Caller("alice", admin=False)
    assert statements  # the first time, the account was read
    statements.clear()
    assert caller_from_token(lake, token) == Caller("alice", admin=False)
    assert cached_caller(lake, token) == Caller("alice", admin=False)
    assert statements == []


def test_admin_changes_through_the_services_apply_at_once(lake: Lake, alice: str) -> None:
    token, _ = lake.tokens.issue(alice, alice)
    assert caller_from_token(lake, token).admin is False
    svc.set_attribute(lake, ROOT, alice, "admin", True)
    assert caller_from_token(lake, token).admin is True
    svc.delete_attribute(lake, ROOT, alice, "admin")
    assert caller_from_token(lake, token).admin is False


def test_changes_made_elsewhere_apply_after_the_cache_time(
    lake: Lake, alice: str, clock: ShiftedClock
) -> None:
    assert lake.settings.auth_cache_seconds == 5
    token, _ = lake.tokens.issue(alice, alice)
    assert caller_from_token(lake, token).account == alice
    _suspend_elsewhere(lake, alice)
    clock.shift = 4.5
    assert caller_from_token(lake, token).account == alice  # remembered, as documented
    clock.shift = 5.0
    with pytest.raises(AuthenticationFailed, match="alice is suspended"):
        caller_from_token(lake, token)
    with pytest.raises(AuthenticationFailed, match="alice is suspended"):
        caller_from_token(lake, token)  # a refusal is not remembered as a success


def test_cache_time_zero_checks_every_request(lake: Lake, alice: str) -> None:
    lake.settings = dataclasses.replace(lake.settings, auth_cache_seconds=0)
    token, _ = lake.tokens.issue(alice, alice)
    assert caller_from_token(lake, token).account == alice
    assert cached_caller(lake, token) is None
    _suspend_elsewhere(lake, alice)
    with pytest.raises(AuthenticationFailed, match="suspended"):
        caller_from_token(lake, token)


def test_an_entry_never_outlives_its_token(lake: Lake, alice: str, clock: ShiftedClock) -> None:
    lake.settings = dataclasses.replace(lake.settings, auth_cache_seconds=300)
    token, exp = lake.tokens.issue(alice, alice, lifetime=120)
    assert caller_from_token(lake, token).account == alice
    _suspend_elsewhere(lake, alice)
    clock.shift = exp - time.time() - 1
    assert cached_caller(lake, token) is not None
    clock.shift = exp - time.time() + 0.01
    assert cached_caller(lake, token) is None
    # the token itself is still within its validation leeway: the account is read again
    with pytest.raises(AuthenticationFailed, match="suspended"):
        caller_from_token(lake, token)


def test_account_header_is_checked_on_cached_tokens(lake: Lake, alice: str) -> None:
    token, _ = lake.tokens.issue(alice, alice)
    assert caller_from_token(lake, token, "alice").account == alice
    with pytest.raises(AccessDenied, match="not root"):
        caller_from_token(lake, token, "root")
    with pytest.raises(AccessDenied, match="not root"):
        cached_caller(lake, token, "root")


def test_bad_tokens_are_never_remembered(lake: Lake) -> None:
    with pytest.raises(AuthenticationFailed):
        caller_from_token(lake, "a.b.c")
    with pytest.raises(AuthenticationFailed, match="no token"):
        caller_from_token(lake, None)
    assert cached_caller(lake, "a.b.c") is None
    assert len(lake.tokens.callers) == 0


def test_admin_rights_over_the_api_follow_the_attribute(api: TestClient, lake: Lake) -> None:
    r = api.post("/accounts/bob", content=json.dumps({"type": "USER", "email": "b@x.org"}))
    assert r.status_code == 201, r.text
    bob = TestClient(api.app, raise_server_exceptions=False)
    bob.headers["X-Rucio-Auth-Token"] = lake.tokens.issue("bob", "bob")[0]
    new_account = json.dumps({"type": "USER", "email": "c@x.org"})
    assert bob.post("/accounts/carol", content=new_account).status_code == 401
    r = api.post("/accounts/bob/attr/admin", content=json.dumps({"value": True}))
    assert r.status_code == 201, r.text
    assert bob.post("/accounts/carol", content=new_account).status_code == 201
    assert api.delete("/accounts/bob/attr/admin").status_code == 200
    r = bob.post("/accounts/dave", content=json.dumps({"type": "USER", "email": "d@x.org"}))
    assert r.status_code == 401
    assert r.headers["ExceptionClass"] == "AccessDenied"
