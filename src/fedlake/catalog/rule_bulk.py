"""One rule spec on many DIDs (what ``fedlake upload`` and ``rucio upload`` ask for).

Rules on files are added set-wise, with a number of statements that does not grow with
the number of files: the DIDs in one query, existing rules in one, the files' replicas on
the target RSEs in one; rules, locks, new COPYING replicas, history rows and events are
inserted with ``insert_rows``; replica lock counts are raised with one statement per RSE;
account limits are checked once. Datasets and containers go through ``rules.add_rule``
(their placement depends on their content) at their place in the request, so a mixed
request ends with the rows that adding its rules one by one would give.

Every DID is checked before anything is written, in request order and in the order of
``rules.add_rule`` (unknown DID, existing rule, too few target RSEs): a bad DID anywhere
leaves nothing behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fedlake.catalog import placement, rule_notify
from fedlake.catalog._util import chunks, insert_rows, pairs_in
from fedlake.catalog.dids import did_facts
from fedlake.catalog.models import Event, Lock, Replica, Rule, RuleHistory
from fedlake.catalog.replica_locks import replica_states
from fedlake.catalog.rules import (
    NewRule,
    RuleSpec,
    add_rule,
    check_account_limits,
    copying_replica,
    duplicate_rule,
    enough_targets,
    too_few_targets,
)
from fedlake.domain.errors import DIDNotFound, DuplicateRule, InvalidReplicationRule
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import DIDType, LockState, ReplicaState, RuleNotification, RuleState

__all__ = ["add_rules"]

Key = tuple[str, str]
Where = tuple[str, str, str]  # rse_id, scope, name

_AVAILABLE = ReplicaState.AVAILABLE.value
_LOCK_OK, _LOCK_REPLICATING = LockState.OK.value, LockState.REPLICATING.value
_RULE_OK, _RULE_REPLICATING = RuleState.OK.value, RuleState.REPLICATING.value
#: the event payload text, as ``events.emit`` writes it (``_util.dumps``), encoder made once
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


class _Target(NamedTuple):
    """The columns of a DID a rule needs."""

    scope: str
    name: str
    did_type: str
    bytes: int | None
    adler32: str | None
    md5: str | None


def add_rules(session: Session, spec: RuleSpec, keys: Sequence[Key]) -> list[str]:
    """Add one rule per DID of ``keys``; return the rule ids in the order of ``keys``."""
    if spec.weight:  # only RSEs with a positive weight; each file rule draws its order
        weights = placement.weights_of(session, spec.weight, spec.target_rse_ids)
        spec = replace(spec, target_rse_ids=[r for r in spec.target_rse_ids if r in weights])
    dids = _load_dids(session, keys)
    _check(session, spec, keys, dids)
    ids: list[str] = []
    files: list[_Target] = []
    for key in keys:
        did = dids[key]
        if did.did_type == DIDType.FILE.value and not (spec.ask_approval or spec.asynchronous):
            files.append(did)
            continue
        ids += _add_file_rules(session, spec, files)
        files = []
        ids.append(add_rule(session, NewRule.of(spec, *key)))
    ids += _add_file_rules(session, spec, files)
    return ids


def _load_dids(session: Session, keys: Sequence[Key]) -> dict[Key, _Target]:
    """The DIDs that exist, held against deletion until commit (a DID removed meanwhile,
    e.g. by the undertaker, is DIDNotFound here, not a rule without its DID)."""
    found = did_facts(session, list(dict.fromkeys(keys)), key_share=True)
    return {
        (s, n): _Target(s, n, f.did_type, f.bytes, f.adler32, f.md5) for (s, n), f in found.items()
    }


def _existing_rules(session: Session, spec: RuleSpec, keys: Sequence[Key]) -> dict[Key, str]:
    """Rules that already ask for the same thing: DID -> rule id.

    Only the DIDs are in the WHERE clause, so that the lookup goes through the rules' DID
    index (with the account in it, a planner may walk all the account's rules instead).
    """
    cols = (Rule.id, Rule.scope, Rule.name, Rule.account, Rule.rse_expression, Rule.copies)
    same = (spec.account, spec.rse_expression, spec.copies)
    out: dict[Key, str] = {}
    for batch in chunks(list(dict.fromkeys(keys))):
        for rule_id, scope, name, *what in session.execute(
            select(*cols).where(pairs_in(Rule.scope, Rule.name, batch))
        ):
            if tuple(what) == same:
                out.setdefault((scope, name), rule_id)
    return out


def _check(session: Session, spec: RuleSpec, keys: Sequence[Key], dids: dict[Key, _Target]) -> None:
    """Raise the error adding the rules one by one would raise first."""
    existing = _existing_rules(session, spec, keys)
    seen: set[Key] = set()
    for i, (scope, name) in enumerate(keys):
        if (scope, name) not in dids:
            raise DIDNotFound(f"data identifier {scope}:{name} does not exist")
        if spec.copies < 1:
            raise InvalidReplicationRule("copies must be at least 1")
        dup = existing.get((scope, name))
        if dup is not None:
            raise duplicate_rule(spec, scope, name, dup)
        if (scope, name) in seen:
            raise DuplicateRule(
                f"{scope}:{name} is listed more than once in 'dids': one rule asks for "
                f"{spec.copies} copies of it on {spec.rse_expression!r}; list it once"
            )
        seen.add((scope, name))
        if i == 0 and not enough_targets(session, spec):
            raise too_few_targets(spec)


def _add_file_rules(session: Session, spec: RuleSpec, files: Sequence[_Target]) -> list[str]:
    """Rules on distinct files that have no rule like it yet (checked by ``_check``)."""
    if not files:
        return []
    have = replica_states(session, [(f.scope, f.name) for f in files], spec.target_rse_ids)
    places = placement.places_of(session, placement.distinct_by(spec.meta), spec.target_rse_ids)
    rows = _Rows(spec, utcnow(), have, places)
    if spec.weight:
        rows.weights = placement.weights_of(session, spec.weight, spec.target_rse_ids)
    ids = _new_ids(len(files))
    for rule_id, f in zip(ids, files, strict=True):
        rows.add(rule_id, f)
    if rows.planned and not spec.ignore_account_limit:
        check_account_limits(session, spec.account, rows.planned)
    rows.write(session)
    return ids


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version and variant bits
_UUID_V4 = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


def _new_ids(n: int) -> list[str]:
    """``n`` rule ids: random version-4 UUIDs as 32 hex digits, like ``uuid4().hex``."""
    raw = os.urandom(16 * n)
    out = []
    for i in range(0, 16 * n, 16):
        v = int.from_bytes(raw[i : i + 16])
        out.append(f"{v & _UUID_CLEAR | _UUID_V4:032x}")
    return out


@dataclass
class _Rows:
    """The rows of a run of file rules, built in memory, then written in bulk."""

    spec: RuleSpec
    now: datetime
    have: dict[Where, str]  # the files' replicas on the target RSEs: their states
    places: placement.Places  # distinct_by: the target RSEs' places
    rules: list[dict[str, Any]] = field(default_factory=list)
    locks: list[dict[str, Any]] = field(default_factory=list)
    replicas: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    bumps: dict[str, list[Key]] = field(default_factory=dict)  # existing replicas locked
    planned: dict[str, int] = field(default_factory=dict)  # new lock bytes per RSE
    weights: dict[str, float] | None = None  # the rule's weight: each file draws an order
    base: dict[str, Any] = field(init=False)  # the columns all the rules share

    def __post_init__(self) -> None:
        self.base = _rule_columns(self.spec, self.now)

    def add(self, rule_id: str, f: _Target) -> None:
        spec, now, scope, name = self.spec, self.now, f.scope, f.name
        # RSEs that hold the file first, each part in the targets' order
        order = spec.target_rse_ids
        if self.weights is not None:
            order = placement.weighted_order(order, self.weights)
        held = [r for r in order if (r, scope, name) in self.have]
        ranked = held + [r for r in order if r not in held]
        chosen = placement.choose(ranked, spec.copies, self.places)
        ok = 0
        for rse_id in chosen:
            state = self.have.get((rse_id, scope, name))
            if state is None:
                self.replicas.append(copying_replica(f, rse_id, now, lock_cnt=1))
            else:
                self.bumps.setdefault(rse_id, []).append((scope, name))
            ok += state == _AVAILABLE
            self.locks.append(
                {
                    "rule_id": rule_id,
                    "scope": scope,
                    "name": name,
                    "rse_id": rse_id,
                    "account": spec.account,
                    "bytes": f.bytes,
                    "state": _LOCK_OK if state == _AVAILABLE else _LOCK_REPLICATING,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            self.planned[rse_id] = self.planned.get(rse_id, 0) + (f.bytes or 0)
        state = _RULE_REPLICATING if ok < len(chosen) else _RULE_OK
        counts = {
            "locks_ok_cnt": ok,
            "locks_replicating_cnt": len(chosen) - ok,
            "locks_stuck_cnt": 0,
        }
        self.rules.append(
            {
                **self.base,
                **counts,
                "id": rule_id,
                "scope": scope,
                "name": name,
                "did_type": f.did_type,
                "state": state,
            }
        )
        self.history.append(
            {
                **counts,
                "rule_id": rule_id,
                "account": spec.account,
                "scope": scope,
                "name": name,
                "rse_expression": spec.rse_expression,
                "state": state,
                "created_at": now,
                "updated_at": now,
            }
        )
        if state == _RULE_OK and spec.notification != RuleNotification.NO:
            # OK at once: what catalog.rule_notify sends when a rule becomes OK (a file is
            # never open, so CLOSE notifies too), before rule-added as on the per-DID path
            note = rule_notify.payload(
                "RULE_OK",
                rule_id=rule_id,
                scope=scope,
                name=name,
                account=spec.account,
                rse_expression=spec.rse_expression,
            )
            self.events.append(
                {"event_type": "rule-notify", "payload": _encode(note), "created_at": now}
            )
        payload = {"rule_id": rule_id, "scope": scope, "name": name, "state": state}
        self.events.append(
            {"event_type": "rule-added", "payload": _encode(payload), "created_at": now}
        )

    def write(self, session: Session) -> None:
        insert_rows(session, Rule, self.rules)
        insert_rows(session, Replica, self.replicas)
        insert_rows(session, Lock, self.locks)
        for rse_id, keys in self.bumps.items():
            for batch in chunks(keys, 50_000):
                session.execute(
                    update(Replica)
                    .where(Replica.rse_id == rse_id, pairs_in(Replica.scope, Replica.name, batch))
                    .values(lock_cnt=Replica.lock_cnt + 1, tombstone=None)
                )
        insert_rows(session, RuleHistory, self.history)
        insert_rows(session, Event, self.events)


def _rule_columns(spec: RuleSpec, now: datetime) -> dict[str, Any]:
    """Every column of a new rule row but its DID, id, state and lock counters.

    Columns that are NULL are left out (the database writes NULL): less to send.
    """
    columns = {
        "subscription_id": None,
        "account": spec.account,
        "error": None,
        "rse_expression": spec.rse_expression,
        "copies": spec.copies,
        "expires_at": now + timedelta(seconds=spec.lifetime) if spec.lifetime else None,
        "weight": spec.weight,
        "locked": spec.locked,
        "source_replica_expression": spec.source_replica_expression,
        "activity": spec.activity,
        "grouping": spec.grouping.value,
        "notification": spec.notification.value,
        "stuck_at": None,
        "purge_replicas": spec.purge_replicas,
        "ignore_availability": spec.ignore_availability,
        "ignore_account_limit": spec.ignore_account_limit,
        "priority": spec.priority,
        "comments": spec.comment,
        "child_rule_id": None,
        "eol_at": now + timedelta(seconds=spec.eol_after) if spec.eol_after else None,
        "split_container": False,
        "meta": spec.meta,
        "created_at": now,
        "updated_at": now,
    }
    return {k: v for k, v in columns.items() if v is not None}
