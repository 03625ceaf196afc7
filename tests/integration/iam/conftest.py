"""Fixtures of the identity tests: USER accounts with passwords, and their tokens."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from fedlake.auth.policy import Caller
from fedlake.bootstrap import Lake
from fedlake.services import accounts

PASSWORD = "user-secret-password"


@pytest.fixture
def make_user(lake: Lake, root: Caller) -> Callable[[str], None]:
    """Create a USER account with a userpass identity of the same name."""

    def make(name: str) -> None:
        accounts.add_account(lake, root, name, "USER", f"{name}@example.org")
        accounts.add_identity(lake, root, name, name, "USERPASS", password=PASSWORD)

    return make


@pytest.fixture
def login(api: TestClient) -> Callable[[str], dict[str, str]]:
    """Log in as a user; return the headers that carry its token."""

    def log_in(name: str) -> dict[str, str]:
        r = api.get(
            "/auth/userpass", headers={"X-Rucio-Username": name, "X-Rucio-Password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        return {"X-Rucio-Auth-Token": r.headers["X-Rucio-Auth-Token"]}

    return log_in


def enc(group: str) -> str:
    """A group path as the one URL segment the API expects."""
    return group.replace("/", "%2F")
