"""Choosing RSEs for a rule's copies: distinct RSEs, and distinct values of an RSE
attribute when the rule asks for it (``distinct_by``, e.g. ``site``: CTAO keeps its two
copies at sites hundreds of kilometres apart). An RSE without the attribute counts as a
place of its own.

A rule's ``weight`` names an RSE attribute with numeric values: RSEs are then tried in a
random order where an RSE of weight 2 comes first twice as often as one of weight 1, and
RSEs without a positive weight are not used (Rucio's meaning). ``freespace`` without such
an attribute weighs RSEs by the free bytes their storage last reported (``rse_usage``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedlake.catalog.models import RSEAttribute, RSEUsage

__all__ = [
    "FREESPACE",
    "Places",
    "choose",
    "distinct_by",
    "enough",
    "places_of",
    "weighted",
    "weighted_order",
    "weights_of",
]

#: the weight that falls back to the free space the storage reported
FREESPACE = "freespace"

#: RSE id -> the place it stands for (the attribute's value); None: every RSE is its own
Places = Mapping[str, str] | None


def distinct_by(meta: str | None) -> str | None:
    """The attribute a rule's copies must differ in, from its ``meta`` JSON."""
    if not meta:
        return None
    try:
        value = json.loads(meta)
    except ValueError:
        return None
    key = value.get("distinct_by") if isinstance(value, dict) else None
    return key if isinstance(key, str) and key else None


def places_of(session: Session, key: str | None, rse_ids: Sequence[str]) -> Places:
    if key is None:
        return None
    rows = session.execute(
        select(RSEAttribute.rse_id, RSEAttribute.value).where(
            RSEAttribute.key == key, RSEAttribute.rse_id.in_(list(rse_ids))
        )
    )
    found = {rid: f"{key}={json.loads(v)}" for rid, v in rows}
    return {rid: found.get(rid, f"rse:{rid}") for rid in rse_ids}


def choose(
    candidates: Sequence[str], copies: int, places: Places, taken: Sequence[str] = ()
) -> list[str]:
    """The first ``copies`` candidates (in order) on distinct places, also distinct from
    the places of ``taken`` (RSEs already holding copies, not returned)."""
    if places is None:
        return [c for c in candidates if c not in taken][:copies]
    used = {places.get(t, t) for t in taken}
    out: list[str] = []
    for c in candidates:
        place = places.get(c, c)
        if place in used or c in taken:
            continue
        used.add(place)
        out.append(c)
        if len(out) == copies:
            break
    return out


def enough(rse_ids: Sequence[str], copies: int, places: Places) -> bool:
    distinct = len(set(rse_ids)) if places is None else len({places[r] for r in rse_ids})
    return distinct >= copies


def _weights(session: Session, attribute: str, rse_ids: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    rows = session.execute(
        select(RSEAttribute.rse_id, RSEAttribute.value).where(
            RSEAttribute.key == attribute, RSEAttribute.rse_id.in_(list(rse_ids))
        )
    )
    for rid, text in rows:
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            try:
                out[rid] = float(value)
            except ValueError:
                continue
    if attribute == FREESPACE:
        missing = [r for r in rse_ids if r not in out]
        usage = session.execute(
            select(RSEUsage.rse_id, RSEUsage.source, RSEUsage.free).where(
                RSEUsage.rse_id.in_(missing), RSEUsage.free.is_not(None)
            )
        )
        for rid, _source, free in sorted(usage, key=lambda u: u[1] != "storage"):
            out.setdefault(rid, float(free or 0))  # the storage's own report first
    return out


def weights_of(session: Session, attribute: str, rse_ids: Sequence[str]) -> dict[str, float]:
    """RSE id -> its positive ``attribute`` weight (RSEs without one are left out)."""
    return {r: w for r, w in _weights(session, attribute, rse_ids).items() if w > 0}


def weighted_order(
    rse_ids: Sequence[str], weights: Mapping[str, float], rng: random.Random | None = None
) -> list[str]:
    """The weighted ``rse_ids`` in a weighted random order (Efraimidis-Spirakis: each
    draws u**(1/w), the largest first)."""
    draw = (rng or random).random
    keyed = [(draw() ** (1.0 / weights[r]), r) for r in rse_ids if r in weights]
    return [r for _, r in sorted(keyed, reverse=True)]


def weighted(session: Session, rse_ids: Sequence[str], attribute: str) -> list[str]:
    """``rse_ids`` with a positive ``attribute`` weight, in a weighted random order."""
    return weighted_order(rse_ids, weights_of(session, attribute, rse_ids))
