"""The subscription daemon (Rucio's transmogrifier): rules for new DIDs that match."""

from __future__ import annotations

from fedlake.bootstrap import Lake
from fedlake.daemons.runner import Daemon
from fedlake.services.subscription_rounds import (
    expire_round,
    process_new_dids,
    process_retroactive,
)

__all__ = ["SubscriptionDaemon"]


class SubscriptionDaemon(Daemon):
    """Each round: deactivate expired subscriptions, apply the live ones to one batch of
    new DIDs, and take one step of a retroactive subscription's walk over older DIDs.

    Any number of instances may run on one PostgreSQL catalogue: batches are claimed
    with ``FOR UPDATE SKIP LOCKED``, so no two instances see the same new DID, and a
    retroactive step locks its subscription, so it never races a batch that uses it.
    """

    name = "subscriptions"
    interval = 5.0

    def __init__(self, lake: Lake, batch: int = 500) -> None:
        super().__init__(lake)
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.batch = batch

    def run_once(self) -> int:
        done = expire_round(self.lake)
        done += process_new_dids(self.lake, self.batch)
        done += process_retroactive(self.lake, self.batch)
        return done
