"""A short memory of tokens already checked: token -> the ``Caller`` it resolved to.

Checking a token costs an ES256 signature verification and a catalogue read (is the
account still active, is it an admin?) on every request. This cache keeps the answer for
a short time. The rules that keep a cached answer correct:

- Tokens of the lake are self-contained JWTs; an entry never outlives its token: it is
  dropped at the token's ``exp`` (without the validation leeway).
- Tokens can be revoked (``fedlake.catalog.revocations``: one token, or every token of an
  account). The process that revokes calls ``forget_token`` / ``forget_account`` so the
  revocation applies there at once; other server processes see it within ``ttl`` seconds
  (their cached entry expires and the token is validated again, revocation included).
- What can change under a valid token is the account: deleted, suspended, its
  ``admin`` attribute set or removed, or its group memberships (they decide who reads
  embargoed data, ``fedlake.catalog.embargo``). Every process reads that again from the catalogue at
  least every ``ttl`` seconds (``FEDLAKE_AUTH_CACHE_SECONDS``; 0 turns the cache off). The
  process that changes an account through the services calls ``forget_account`` so the
  change applies there at once; any code that later adds account suspension or deletion
  must do the same.
- Entries are keyed by the whole token string; the ``X-Rucio-Account`` header is checked
  against the cached account on every request. Failed validations are not cached.
- At most ``size`` entries; the least recently used goes first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from fedlake.auth.policy import Caller

__all__ = ["CallerCache"]


@dataclass(frozen=True, slots=True)
class _Entry:
    caller: Caller
    token_exp: float  # wall clock, epoch seconds: the token's exp claim
    until: float  # monotonic clock: when the account must be read again


class CallerCache:
    """Thread-safe, bounded LRU of token -> Caller with per-entry expiry."""

    def __init__(self, size: int = 4096) -> None:
        if size < 1:
            raise ValueError("the cache needs room for at least one token")
        self.size = size
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> Caller | None:
        """The cached Caller of ``token``, or None if unknown or expired."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            if entry.until <= time.monotonic() or entry.token_exp <= time.time():
                del self._entries[token]
                return None
            self._entries.move_to_end(token)
            return entry.caller

    def put(self, token: str, caller: Caller, token_exp: float, ttl: float) -> None:
        """Remember ``caller`` for at most ``ttl`` seconds and never past ``token_exp``."""
        if ttl <= 0 or token_exp <= time.time():
            return
        entry = _Entry(caller, float(token_exp), time.monotonic() + ttl)
        with self._lock:
            self._entries[token] = entry
            self._entries.move_to_end(token)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def forget_token(self, token: str) -> None:
        """Drop the entry of ``token`` (it was revoked)."""
        with self._lock:
            self._entries.pop(token, None)

    def forget_account(self, account: str) -> None:
        """Drop every entry of ``account`` (its status or rights changed)."""
        with self._lock:
            stale = [t for t, e in self._entries.items() if e.caller.account == account]
            for token in stale:
                del self._entries[token]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
