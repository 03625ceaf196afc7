"""Choosing RSEs for a rule's copies: distinct RSEs, and distinct values of an RSE
attribute when the rule asks for it (``distinct_by``, e.g. ``site``: CTAO keeps its two
copies at sites hundreds of kilometres apart). An RSE without the attribute counts as a
place of its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from fedlake.catalog.models import RSEAttribute

__all__ = ["Places", "choose", "distinct_by", "enough", "places_of"]

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
