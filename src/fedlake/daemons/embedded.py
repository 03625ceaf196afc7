"""The daemons ``fedlake up`` runs in its process (the transfer worker as a child)."""

from __future__ import annotations

from fedlake.bootstrap import Lake
from fedlake.daemons.deletion import DeletionDaemon
from fedlake.daemons.rules import QosTransitions, RuleExpiry, RuleInjector, RuleRepairer
from fedlake.daemons.runner import Daemon
from fedlake.daemons.statistics import StatisticsDaemon
from fedlake.daemons.subscriptions import SubscriptionDaemon
from fedlake.daemons.temporary_sweeper import TemporarySweeper
from fedlake.daemons.transfers import TransferProcess

__all__ = ["embedded_daemons"]


def embedded_daemons(lake: Lake) -> list[Daemon]:
    return [
        TemporarySweeper(lake),
        TransferProcess(lake),
        RuleInjector(lake),
        RuleRepairer(lake),
        RuleExpiry(lake),
        QosTransitions(lake),
        SubscriptionDaemon(lake),
        DeletionDaemon(lake),
        StatisticsDaemon(lake),
    ]
