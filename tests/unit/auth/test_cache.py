"""The token -> Caller cache: expiry (ttl and the token's exp), LRU bound, forgetting."""

from __future__ import annotations

import threading

import pytest

from fedlake.auth import cache
from fedlake.auth.cache import CallerCache
from fedlake.auth.policy import Caller

ALICE = Caller("alice")
ROOT = Caller("root", admin=True)


class FakeClock:
    """Wall clock and monotonic clock, moved by hand (they may drift apart)."""

    def __init__(self) -> None:
        self.wall = 1_700_000_000.0
        self.mono = 5_000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(cache, "time", fake)
    return fake


def test_hit_until_the_ttl_is_over(clock: FakeClock) -> None:
    c = CallerCache()
    c.put("t1", ALICE, token_exp=clock.wall + 3600, ttl=5)
    assert c.get("t1") == ALICE
    clock.advance(4.9)
    assert c.get("t1") == ALICE
    clock.advance(0.1)
    assert c.get("t1") is None
    assert len(c) == 0  # an expired entry is dropped, not kept around


def test_never_outlives_the_token(clock: FakeClock) -> None:
    c = CallerCache()
    c.put("t1", ALICE, token_exp=clock.wall + 2, ttl=5)
    clock.advance(1.9)
    assert c.get("t1") == ALICE
    clock.advance(0.1)  # exp reached: gone, although the ttl is not over
    assert c.get("t1") is None


def test_wall_clock_expiry_does_not_depend_on_the_monotonic_clock(clock: FakeClock) -> None:
    c = CallerCache()
    c.put("t1", ALICE, token_exp=clock.wall + 2, ttl=60)
    clock.wall += 3  # e.g. after a suspend: wall time moved, monotonic did not
    assert c.get("t1") is None


def test_expired_token_or_zero_ttl_is_not_stored(clock: FakeClock) -> None:
    c = CallerCache()
    c.put("old", ALICE, token_exp=clock.wall, ttl=5)
    c.put("off", ALICE, token_exp=clock.wall + 3600, ttl=0)
    assert c.get("old") is None
    assert c.get("off") is None
    assert len(c) == 0


def test_least_recently_used_goes_first(clock: FakeClock) -> None:
    c = CallerCache(size=2)
    exp = clock.wall + 3600
    c.put("a", ALICE, exp, 5)
    c.put("b", ROOT, exp, 5)
    assert c.get("a") == ALICE  # a is now the most recently used
    c.put("c", ALICE, exp, 5)
    assert len(c) == 2
    assert c.get("b") is None
    assert c.get("a") == ALICE
    assert c.get("c") == ALICE


def test_forget_account_drops_only_that_account(clock: FakeClock) -> None:
    c = CallerCache()
    exp = clock.wall + 3600
    c.put("a1", ALICE, exp, 5)
    c.put("a2", ALICE, exp, 5)
    c.put("r1", ROOT, exp, 5)
    c.forget_account("alice")
    assert c.get("a1") is None
    assert c.get("a2") is None
    assert c.get("r1") == ROOT
    c.clear()
    assert c.get("r1") is None


def test_put_replaces_the_entry(clock: FakeClock) -> None:
    c = CallerCache()
    c.put("t", ROOT, clock.wall + 3600, 5)
    c.put("t", Caller("root", admin=False), clock.wall + 3600, 5)
    assert c.get("t") == Caller("root", admin=False)
    assert len(c) == 1


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one"):
        CallerCache(size=0)


def test_concurrent_use_keeps_the_bound() -> None:
    c = CallerCache(size=50)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(2000):
                token = f"t{n}-{i % 80}"
                c.put(token, Caller(f"acc{n}"), token_exp=4e9, ttl=60)
                got = c.get(token)
                assert got is None or got.account == f"acc{n}"
                if i % 100 == 0:
                    c.forget_account(f"acc{(n + 1) % 8}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(c) <= 50
