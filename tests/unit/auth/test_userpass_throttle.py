"""The per-username login throttle: free attempts, then exponential waits with a cap."""

from __future__ import annotations

import threading

import pytest

from fedlake.auth import userpass
from fedlake.auth.userpass import Throttle
from fedlake.domain.errors import AuthenticationFailed


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(userpass, "time", fake)
    return fake


def _blocked(throttle: Throttle, user: str) -> bool:
    try:
        throttle.check(user)
    except AuthenticationFailed:
        return True
    return False


def test_free_failures(clock: FakeClock) -> None:
    throttle = Throttle(free=3)
    for _ in range(3):
        throttle.check("alice")
        throttle.failed("alice")
    assert _blocked(throttle, "alice")


def test_waits_double_after_each_failure(clock: FakeClock) -> None:
    throttle = Throttle(free=2, cap=1000)
    throttle.failed("alice")
    throttle.failed("alice")
    for wait in (1, 2, 4, 8, 16):
        assert _blocked(throttle, "alice")
        clock.now += wait - 0.01
        assert _blocked(throttle, "alice")
        clock.now += 0.02
        assert not _blocked(throttle, "alice")
        throttle.failed("alice")


def test_wait_is_capped(clock: FakeClock) -> None:
    throttle = Throttle(free=0, cap=5.0)
    for _ in range(30):
        throttle.failed("alice")
    assert _blocked(throttle, "alice")
    clock.now += 5.01
    assert not _blocked(throttle, "alice")


def test_message_says_when_to_retry(clock: FakeClock) -> None:
    throttle = Throttle(free=1)
    throttle.failed("alice")
    throttle.failed("alice")
    with pytest.raises(
        AuthenticationFailed, match="too many failed logins for 'alice'; retry in 2 s"
    ):
        throttle.check("alice")


def test_success_resets(clock: FakeClock) -> None:
    throttle = Throttle(free=2)
    throttle.failed("alice")
    throttle.failed("alice")
    assert _blocked(throttle, "alice")
    throttle.succeeded("alice")
    assert not _blocked(throttle, "alice")
    throttle.failed("alice")
    assert not _blocked(throttle, "alice")  # the free failures count from zero again
    throttle.failed("alice")
    assert _blocked(throttle, "alice")


def test_usernames_are_independent(clock: FakeClock) -> None:
    throttle = Throttle(free=1)
    throttle.failed("alice")
    throttle.failed("alice")
    assert _blocked(throttle, "alice")
    assert not _blocked(throttle, "bob")
    throttle.succeeded("bob")  # unknown name: nothing to forget
    assert _blocked(throttle, "alice")


def test_defaults() -> None:
    throttle = Throttle()
    assert (throttle.free, throttle.cap) == (5, 60.0)
    for _ in range(5):
        throttle.failed("carol")
    assert _blocked(throttle, "carol")  # real clock: the 1 s wait has not passed


def test_concurrent_failures_are_all_counted(clock: FakeClock) -> None:
    throttle = Throttle(free=10_000, cap=1e9)

    def fail() -> None:
        for _ in range(500):
            throttle.failed("alice")

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not _blocked(throttle, "alice")  # 4000 failures < 10000 free
    for _ in range(6000):
        throttle.failed("alice")
    assert _blocked(throttle, "alice")
