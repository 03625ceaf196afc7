"""Rule daemons: injection (asynchronous rules), repair (STUCK, SUSPENDED and long
REPLICATING rules), expiry and QoS transitions."""

from __future__ import annotations

from fedlake.daemons.runner import Daemon
from fedlake.services.rule_lifecycle import (
    expire_round,
    inject_round,
    qos_round,
    repair_round,
    seconds_to_next_expiry,
    seconds_to_next_injection,
    seconds_to_next_qos_step,
)

__all__ = ["QosTransitions", "RuleExpiry", "RuleInjector", "RuleRepairer"]


class RuleInjector(Daemon):
    """Places the rules created asynchronously (state INJECT): locks, replicas, transfers."""

    name = "rule-injector"
    interval = 2.0

    def run_once(self) -> int:
        return inject_round(self.lake, bounds=self.partition.bounds())

    def idle_seconds(self) -> float:
        return seconds_to_next_injection(self.lake, self.partition.bounds(), self.interval)


class RuleRepairer(Daemon):
    """Re-queues or moves the copies of STUCK rules, suspends hopeless ones, retries
    suspended ones later, and gives lost copies of REPLICATING rules a transfer again."""

    name = "rule-repairer"
    interval = 30.0

    def run_once(self) -> int:
        return repair_round(self.lake, bounds=self.partition.bounds())


class RuleExpiry(Daemon):
    """Removes rules whose lifetime is over (Rucio's judge-cleaner)."""

    name = "rule-expiry"
    interval = 5.0  # a cheap indexed min(expires_at); the wait ends at the next expiry

    def run_once(self) -> int:
        return expire_round(self.lake, bounds=self.partition.bounds())

    def idle_seconds(self) -> float:
        """Sleep until the next rule of this partition expires (at most ``interval``)."""
        return seconds_to_next_expiry(self.lake, self.partition.bounds(), self.interval)


class QosTransitions(Daemon):
    """Moves rules with a QoS policy to their next storage class when a step ends."""

    name = "qos-transitions"
    interval = 30.0

    def run_once(self) -> int:
        return qos_round(self.lake)

    def idle_seconds(self) -> float:
        return seconds_to_next_qos_step(self.lake, self.interval)
