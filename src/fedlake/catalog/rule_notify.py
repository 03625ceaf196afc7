"""Notifications a rule asked for (its ``notify`` setting, Rucio's meaning), written to the
events outbox for whoever listens (webhooks, message brokers, the portal):

- ``YES`` (``Y``): ``rule-notify`` with ``kind`` RULE_OK when the rule becomes OK;
- ``CLOSE`` (``C``): the same, but only when the rule's DID is closed (a dataset that
  will not grow any more: "the observation is complete and safe");
- ``PROGRESS`` (``P``): ``rule-notify`` with ``kind`` RULE_PROGRESS and ``progress`` (per
  cent of OK locks) each time the rule passes a multiple of 10 %, then RULE_OK;
- ``NO`` (``N``, the default): nothing beyond the ``rule-ok`` event every rule has.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedlake.catalog import events
from fedlake.catalog.models import DID
from fedlake.domain.types import RuleNotification

__all__ = ["notify", "payload"]

_YES, _CLOSE, _PROGRESS = (
    RuleNotification.YES.value,
    RuleNotification.CLOSE.value,
    RuleNotification.PROGRESS.value,
)


def payload(
    kind: str, *, rule_id: str, scope: str, name: str, account: str, rse_expression: str
) -> dict[str, Any]:
    """The ``rule-notify`` event's payload."""
    return {
        "kind": kind,
        "rule_id": rule_id,
        "scope": scope,
        "name": name,
        "account": account,
        "rse_expression": rse_expression,
    }


def _payload(rule: Any, kind: str) -> dict[str, Any]:
    return payload(
        kind,
        rule_id=rule.id,
        scope=rule.scope,
        name=rule.name,
        account=rule.account,
        rse_expression=rule.rse_expression,
    )


def notify(session: Session, rule: Any, ok_before: int, total: int, became_ok: bool) -> None:
    """Emit what ``rule.notification`` asks for after its OK locks went from
    ``ok_before`` to ``rule.locks_ok_cnt`` (of ``total``); ``became_ok``: it is OK now."""
    setting = rule.notification
    if setting == _PROGRESS and total:
        before, now = ok_before * 10 // total, rule.locks_ok_cnt * 10 // total
        if now > before and now < 10:
            events.emit(
                session, "rule-notify", _payload(rule, "RULE_PROGRESS") | {"progress": now * 10}
            )
    if not became_ok or setting not in (_YES, _CLOSE, _PROGRESS):
        return
    if setting == _CLOSE:
        is_open = session.scalar(
            select(DID.is_open).where(DID.scope == rule.scope, DID.name == rule.name)
        )
        if is_open:
            return
    events.emit(session, "rule-notify", _payload(rule, "RULE_OK"))
