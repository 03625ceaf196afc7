"""The catalogue's rule invariants, checked straight from the tables (shared by tests)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedlake.catalog.models import Lock, Replica, Rule, TransferRequest

ACTIVE = ("QUEUED", "SUBMITTED", "WAITING")


def violations(s: Session, *, requests: bool = True) -> list[str]:
    """Every broken invariant, as text (empty: all hold).

    1. a rule's counters equal its locks' states, and its state follows them (a rule not
       placed yet, WAITING_APPROVAL or INJECT, has no locks);
    2. every lock has its replica, and a replica's lock_cnt is the number of its locks;
    3. an OK lock's replica is AVAILABLE;
    4. (``requests``) a REPLICATING lock's copy has an active transfer request.
    """
    out: list[str] = []
    locks = list(s.execute(select(Lock.rule_id, Lock.rse_id, Lock.scope, Lock.name, Lock.state)))
    per_rule: dict[str, Counter[str]] = {}
    per_replica: Counter[tuple[str, str, str]] = Counter()
    for rule_id, rse_id, sc, nm, st in locks:
        per_rule.setdefault(rule_id, Counter())[st] += 1
        per_replica[(rse_id, sc, nm)] += 1
    for rule in s.scalars(select(Rule)):
        c = per_rule.get(rule.id, Counter())
        got = (rule.locks_ok_cnt, rule.locks_replicating_cnt, rule.locks_stuck_cnt)
        want = (c["OK"], c["REPLICATING"], c["STUCK"])
        if got != want:
            out.append(f"rule {rule.id}: counters {got} but locks {want}")
        if rule.state in ("WAITING_APPROVAL", "INJECT") and sum(c.values()):
            out.append(f"rule {rule.id}: {rule.state} (not placed yet) but it has locks")
        if rule.state in ("SUSPENDED", "WAITING_APPROVAL", "INJECT"):
            continue
        state = "STUCK" if c["STUCK"] else "REPLICATING" if c["REPLICATING"] else "OK"
        if rule.state != state:
            out.append(f"rule {rule.id}: state {rule.state} but locks say {state}")
    replicas = {(r.rse_id, r.scope, r.name): r for r in s.scalars(select(Replica))}
    for key, n in per_replica.items():
        rep = replicas.get(key)
        if rep is None:
            out.append(f"locks on {key} without a replica")
        elif rep.lock_cnt != n:
            out.append(f"replica {key}: lock_cnt {rep.lock_cnt} but {n} locks")
    for key, rep in replicas.items():
        if rep.lock_cnt and key not in per_replica:
            out.append(f"replica {key}: lock_cnt {rep.lock_cnt} but no locks")
    active = {
        (d, sc, nm)
        for d, sc, nm in s.execute(
            select(TransferRequest.dest_rse_id, TransferRequest.scope, TransferRequest.name).where(
                TransferRequest.state.in_(ACTIVE)
            )
        )
    }
    for _rule_id, rse_id, sc, nm, st in locks:
        rep = replicas.get((rse_id, sc, nm))
        if st == "OK" and rep is not None and rep.state != "AVAILABLE":
            out.append(f"OK lock on {(rse_id, sc, nm)} but the replica is {rep.state}")
        if requests and st == "REPLICATING" and (rse_id, sc, nm) not in active:
            out.append(f"REPLICATING lock on {(rse_id, sc, nm)} without an active request")
    return out
