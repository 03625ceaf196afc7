"""Username + password login, with a per-username throttle against brute force."""

from __future__ import annotations

import threading
import time

from sqlalchemy.orm import Session

from fedlake.auth.passwords import verify_password
from fedlake.catalog import accounts
from fedlake.domain.errors import AuthenticationFailed
from fedlake.domain.types import AccountStatus

__all__ = ["Throttle", "authenticate"]


class Throttle:
    """After ``free`` failures a username must wait 2^(n-free) s (max ``cap``) per attempt."""

    def __init__(self, free: int = 5, cap: float = 60.0) -> None:
        self.free = free
        self.cap = cap
        self._failures: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def check(self, username: str) -> None:
        with self._lock:
            count, last = self._failures.get(username, (0, 0.0))
        if count >= self.free:
            wait = min(self.cap, 2.0 ** (count - self.free))
            if time.monotonic() - last < wait:
                raise AuthenticationFailed(
                    f"too many failed logins for {username!r}; retry in {wait:.0f} s"
                )

    def failed(self, username: str) -> None:
        with self._lock:
            count, _ = self._failures.get(username, (0, 0.0))
            self._failures[username] = (count + 1, time.monotonic())

    def succeeded(self, username: str) -> None:
        with self._lock:
            self._failures.pop(username, None)


def authenticate(
    session: Session, username: str, password: str, account: str | None, throttle: Throttle
) -> str:
    """Return the account these credentials may act as, or raise AuthenticationFailed."""
    throttle.check(username)
    rows = accounts.userpass_identities(session, username)
    ok = [r for r in rows if r.password_hash and verify_password(password, r.password_hash)]
    if not ok:
        throttle.failed(username)
        raise AuthenticationFailed("wrong username or password")
    throttle.succeeded(username)
    if account:
        if account not in {r.account for r in ok}:
            raise AuthenticationFailed(f"user {username!r} may not act as account {account!r}")
        chosen = account
    else:
        defaults = [r for r in ok if r.is_default] or ok
        chosen = sorted(defaults, key=lambda r: r.account)[0].account
    acc = accounts.get_account(session, chosen)
    if acc.status != AccountStatus.ACTIVE:
        raise AuthenticationFailed(f"account {chosen!r} is {acc.status.lower()}")
    return chosen
