"""RSEs: listing by expression, settings as the Rucio client reads them, administration."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fedlake.auth.policy import Caller, require_admin
from fedlake.bootstrap import Lake
from fedlake.catalog import embargo as embargo_core
from fedlake.catalog import rses as core
from fedlake.catalog.models import RSE
from fedlake.domain.errors import InvalidInput, ProtocolNotSupported
from fedlake.domain.names import split_did, validate_rse_name
from fedlake.domain.paths import build_pfn, lfn2path
from fedlake.expressions.rse_expression import evaluate
from fedlake.services import embargo

__all__ = [
    "add_protocol",
    "add_rse",
    "attribute_map",
    "get_rse",
    "list_rses",
    "resolve",
    "rse_row_dict",
    "update_rse",
]


def attribute_map(s: Session) -> dict[str, dict[str, Any]]:
    """{rse name: attributes} with the virtual ``rse_type`` and ``istape`` attributes."""
    out: dict[str, dict[str, Any]] = {}
    for r in core.all_rses(s):
        attrs = {"rse_type": r.rse_type, "istape": r.rse_type == "TAPE"}
        attrs.update(core.attributes(s, r.id))
        out[r.rse] = attrs
    return out


def resolve(s: Session, expression: str) -> list[str]:
    return evaluate(expression, attribute_map(s))


def rse_row_dict(r: RSE) -> dict[str, Any]:
    availability = (
        (4 if r.availability_read else 0)
        + (2 if r.availability_write else 0)
        + (1 if r.availability_delete else 0)
    )
    return {
        "id": r.id,
        "rse": r.rse,
        "vo": "def",
        "rse_type": r.rse_type,
        "deterministic": r.deterministic,
        "volatile": r.volatile,
        "staging_area": r.staging_area,
        "city": r.city,
        "region_code": r.region_code,
        "country_name": r.country_name,
        "continent": r.continent,
        "time_zone": r.time_zone,
        "ISP": None,
        "ASN": None,
        "longitude": r.longitude,
        "latitude": r.latitude,
        "availability": availability,
        "availability_read": r.availability_read,
        "availability_write": r.availability_write,
        "availability_delete": r.availability_delete,
        "qos_class": r.qos_class,
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "deleted": False,
        "deleted_at": None,
    }


def list_rses(lake: Lake, expression: str | None) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        if expression:
            return [{"rse": name} for name in resolve(s, expression)]
        return [rse_row_dict(r) for r in core.all_rses(s)]


def settings_dict(s: Session, r: RSE) -> dict[str, Any]:
    info = core.rse_info(s, r)
    out = rse_row_dict(r)
    out.update(
        lfn2pfn_algorithm=r.lfn2pfn_algorithm,
        verify_checksum=r.verify_checksum,
        sign_url=info.attributes.get("sign_url"),
        domain=["lan", "wan"],
        credentials=None,
        protocols=[core.protocol_dict(p) for p in info.protocols],
    )
    return out


def get_rse(lake: Lake, rse: str) -> dict[str, Any]:
    with lake.db.read() as s:
        return settings_dict(s, core.get_rse(s, validate_rse_name(rse)))


def add_rse(lake: Lake, caller: Caller, rse: str, settings: dict[str, Any]) -> None:
    require_admin(caller, "add RSEs")
    validate_rse_name(rse)
    with lake.db.write() as s:
        core.add_rse(s, rse, **settings)


def update_rse(lake: Lake, caller: Caller, rse: str, settings: dict[str, Any]) -> None:
    require_admin(caller, "change RSE settings")
    with lake.db.write() as s:
        core.update_rse(s, validate_rse_name(rse), settings)


def attributes(lake: Lake, rse: str) -> dict[str, Any]:
    with lake.db.read() as s:
        return core.attributes(s, core.get_rse(s, validate_rse_name(rse)).id)


def set_attribute(lake: Lake, caller: Caller, rse: str, key: str, value: Any) -> None:
    require_admin(caller, "set RSE attributes")
    with lake.db.write() as s:
        core.set_attribute(s, core.get_rse(s, validate_rse_name(rse)), key, value)


def delete_attribute(lake: Lake, caller: Caller, rse: str, key: str) -> None:
    require_admin(caller, "delete RSE attributes")
    with lake.db.write() as s:
        core.delete_attribute(s, core.get_rse(s, validate_rse_name(rse)), key)


def protocols(lake: Lake, rse: str) -> list[dict[str, Any]]:
    with lake.db.read() as s:
        row = core.get_rse(s, validate_rse_name(rse))
        out = [core.protocol_dict(p) for p in core.protocols(s, row.id)]
    if not out:
        raise ProtocolNotSupported(
            f"RSE {rse} has no protocols; add one with `fedlake rse protocol add`"
        )
    return out


def add_protocol(lake: Lake, caller: Caller, rse: str, spec: dict[str, Any]) -> None:
    require_admin(caller, "add RSE protocols")
    with lake.db.write() as s:
        core.add_protocol(s, core.get_rse(s, validate_rse_name(rse)), spec)


def delete_protocol(lake: Lake, caller: Caller, rse: str, scheme: str) -> None:
    require_admin(caller, "delete RSE protocols")
    with lake.db.write() as s:
        core.delete_protocol(s, core.get_rse(s, validate_rse_name(rse)), scheme)


def lfns2pfns(
    lake: Lake,
    caller: Caller,
    rse: str,
    lfns: list[str],
    scheme: str | None,
    operation: str | None,
    domain: str | None,
) -> dict[str, str]:
    from fedlake.catalog.models import Replica

    op = operation or "read"
    if op not in ("read", "write", "delete", "third_party_copy_read", "third_party_copy_write"):
        raise InvalidInput(f"unknown operation {op!r}")
    dom = domain if domain in ("lan", "wan") else "wan"
    with lake.db.read() as s:
        row = core.get_rse(s, validate_rse_name(rse))
        info = core.rse_info(s, row)
        candidates = []
        for p in info.protocols:
            attr = op if op.startswith("third") else f"{op}_{dom}"
            prio = getattr(p, attr, None)
            if prio is not None and (scheme is None or p.scheme == scheme):
                candidates.append((prio, p))
        if not candidates:
            raise ProtocolNotSupported(f"RSE {rse} offers no {scheme or 'protocol'} for {op}")
        proto = sorted(candidates, key=lambda c: c[0])[0][1]
        out = {}
        hidden: list[embargo.Hidden | None] | None = None
        for lfn in lfns:
            sc, nm = split_did(lfn)
            if info.deterministic:
                path = lfn2path(info.lfn2pfn_algorithm, sc, nm)
            else:  # a hidden file has no replica here, as a missing one (docs/embargo.md)
                rep = s.get(Replica, (row.id, sc, nm))
                if rep is None or rep.path is None:
                    continue
                if hidden is None:
                    hidden = [embargo.hidden(s, caller)]
                if hidden[0] is not None and hidden[0].hides(sc, nm):
                    continue
                path = rep.path
            out[lfn] = build_pfn(proto.scheme, proto.hostname, proto.port, proto.prefix, path)
        return out


def usage(lake: Lake, caller: Caller, rse: str) -> list[dict[str, Any]]:
    """Usage per source. For a caller from whom data is embargoed, every source but the
    ``static`` capacity reads as if the hidden replicas on the RSE did not exist: as after
    their deletion (``catalog.deletion``), used and files lower and free rises."""
    with lake.db.read() as s:
        row = core.get_rse(s, validate_rse_name(rse))
        out = core.usage(s, row)
        h = embargo.hidden(s, caller)
        if h is None:
            return out
        nbytes, files = embargo_core.hidden_replica_usage(s, h, row.id)
    for u in out:
        if u["source"] == "static" or not files:
            continue
        if u["used"] is not None:
            u["used"] = max(0, u["used"] - nbytes)
        if u["free"] is not None:
            u["free"] = u["free"] + nbytes
        if u["files"] is not None:
            u["files"] = max(0, u["files"] - files)
    return out


def set_usage(lake: Lake, caller: Caller, rse: str, body: dict[str, Any]) -> None:
    require_admin(caller, "set RSE usage")
    with lake.db.write() as s:
        core.set_usage(
            s,
            core.get_rse(s, validate_rse_name(rse)),
            str(body.get("source", "storage")),
            body.get("used"),
            body.get("free"),
            body.get("total"),
            body.get("files"),
        )


def limits(lake: Lake, rse: str) -> dict[str, int]:
    with lake.db.read() as s:
        return core.limits(s, core.get_rse(s, validate_rse_name(rse)))


def set_limit(lake: Lake, caller: Caller, rse: str, name: str, value: Any) -> None:
    require_admin(caller, "set RSE limits")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("an RSE limit value must be an integer")
    with lake.db.write() as s:
        core.set_limit(s, core.get_rse(s, validate_rse_name(rse)), name, value)
