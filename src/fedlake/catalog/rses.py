"""RSEs: settings, attributes, protocols, limits and usage."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from fedlake.catalog._util import dumps, loads
from fedlake.catalog.models import RSE, Replica, RSEAttribute, RSELimit, RSEProtocol, RSEUsage
from fedlake.domain import site_caches
from fedlake.domain.errors import (
    Duplicate,
    InvalidInput,
    KeyNotFound,
    ProtocolNotSupported,
    RSENotFound,
)
from fedlake.domain.paths import ALGORITHMS
from fedlake.domain.timefmt import utcnow
from fedlake.domain.types import RSEType

__all__ = [
    "OPERATIONS",
    "RSEInfo",
    "add_protocol",
    "add_rse",
    "all_rses",
    "delete_attribute",
    "delete_protocol",
    "get_rse",
    "protocol_dict",
    "rse_info",
    "set_attribute",
    "set_limit",
    "update_rse",
    "usage",
]

OPERATIONS = ("read", "write", "delete")
_SETTABLE = {
    "deterministic": bool,
    "volatile": bool,
    "staging_area": bool,
    "availability_read": bool,
    "availability_write": bool,
    "availability_delete": bool,
    "verify_checksum": bool,
    "lfn2pfn_algorithm": str,
    "qos_class": str,
    "rse_type": str,
    "city": str,
    "region_code": str,
    "country_name": str,
    "continent": str,
    "time_zone": str,
    "longitude": float,
    "latitude": float,
}


@dataclass
class RSEInfo:
    """Everything about one RSE that PFN building and listings need (one query each)."""

    id: str
    rse: str
    rse_type: str
    deterministic: bool
    lfn2pfn_algorithm: str
    volatile: bool
    availability_read: bool
    availability_write: bool
    availability_delete: bool
    attributes: dict[str, Any] = field(default_factory=dict)
    protocols: list[RSEProtocol] = field(default_factory=list)


def get_rse(session: Session, rse: str) -> RSE:
    row = session.scalar(select(RSE).where(RSE.rse == rse, RSE.deleted_at.is_(None)))
    if row is None:
        raise RSENotFound(f"RSE {rse!r} does not exist; list them with `fedlake rse list`")
    return row


def all_rses(session: Session) -> list[RSE]:
    return list(session.scalars(select(RSE).where(RSE.deleted_at.is_(None)).order_by(RSE.rse)))


def _coerce(key: str, value: Any) -> Any:
    kind = _SETTABLE.get(key)
    if kind is None:
        raise InvalidInput(f"unknown RSE setting {key!r}; settable: {', '.join(sorted(_SETTABLE))}")
    if value is None:
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise InvalidInput(f"RSE setting {key} must be true or false, got {value!r}")
    if kind is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InvalidInput(f"RSE setting {key} must be a number, got {value!r}") from None
    return str(value)


def _check_settings(values: dict[str, Any]) -> dict[str, Any]:
    out = {k: _coerce(k, v) for k, v in values.items()}
    if "lfn2pfn_algorithm" in out and out["lfn2pfn_algorithm"] not in ALGORITHMS:
        raise InvalidInput(f"lfn2pfn_algorithm must be one of {sorted(ALGORITHMS)}")
    if "rse_type" in out:
        out["rse_type"] = RSEType.parse(out["rse_type"]).value
    return out


def add_rse(session: Session, rse: str, **settings: Any) -> RSE:
    if session.scalar(select(RSE.id).where(RSE.rse == rse)) is not None:
        raise Duplicate(f"RSE {rse!r} already exists")
    values = _check_settings(settings)
    row = RSE(id=uuid.uuid4().hex, rse=rse, **values)
    session.add(row)
    session.flush()
    # Rucio adds the RSE name as an attribute set to true; expressions rely on it
    set_attribute(session, row, rse, True)
    return row


def update_rse(session: Session, rse: str, settings: dict[str, Any]) -> RSE:
    row = get_rse(session, rse)
    for key, value in _check_settings(settings).items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    session.flush()
    return row


def attributes(session: Session, rse_id: str) -> dict[str, Any]:
    rows = session.execute(
        select(RSEAttribute.key, RSEAttribute.value).where(RSEAttribute.rse_id == rse_id)
    )
    return {k: loads(v) for k, v in rows}


def set_attribute(session: Session, row: RSE, key: str, value: Any) -> None:
    if not key or len(key) > 100:
        raise InvalidInput("an RSE attribute key must be 1-100 characters")
    if key == site_caches.ATTRIBUTE:
        site_caches.parse_caches(value)  # a bad value is refused here, never met in listings
    existing = session.get(RSEAttribute, (row.id, key))
    if existing is None:
        session.add(RSEAttribute(rse_id=row.id, key=key, value=dumps(value)))
    else:
        existing.value = dumps(value)
    session.flush()


def delete_attribute(session: Session, row: RSE, key: str) -> None:
    res = session.execute(
        delete(RSEAttribute).where(RSEAttribute.rse_id == row.id, RSEAttribute.key == key)
    )
    if res.rowcount == 0:  # type: ignore[attr-defined]
        raise KeyNotFound(f"RSE {row.rse!r} has no attribute {key!r}")


def protocols(session: Session, rse_id: str) -> list[RSEProtocol]:
    return list(
        session.scalars(
            select(RSEProtocol)
            .where(RSEProtocol.rse_id == rse_id)
            .order_by(RSEProtocol.hostname, RSEProtocol.scheme, RSEProtocol.port)
        )
    )


def add_protocol(session: Session, row: RSE, spec: dict[str, Any]) -> RSEProtocol:
    """Add a protocol from a Rucio-style dict (scheme, hostname, port, prefix, impl, domains)."""
    try:
        scheme = str(spec["scheme"])
        hostname = str(spec.get("hostname") or "localhost")
        port = int(spec.get("port") or 0)
        impl = str(spec["impl"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(
            f"a protocol needs scheme and impl (and an integer port): {exc}"
        ) from None
    if not scheme.isalnum():
        raise InvalidInput(f"protocol scheme {scheme!r} must be alphanumeric")
    if session.get(RSEProtocol, (row.id, scheme, hostname, port)) is not None:
        raise Duplicate(f"RSE {row.rse} already has protocol {scheme}://{hostname}:{port}")
    domains = spec.get("domains") or {
        "lan": {"read": 1, "write": 1, "delete": 1},
        "wan": {
            "read": 1,
            "write": 1,
            "delete": 1,
            "third_party_copy_read": 1,
            "third_party_copy_write": 1,
        },
    }
    lan, wan = domains.get("lan") or {}, domains.get("wan") or {}

    def prio(d: dict[str, Any], op: str) -> int | None:
        v = d.get(op)
        if v is None:
            return None
        if not isinstance(v, int) or isinstance(v, bool):
            raise InvalidInput(f"protocol priority {op}={v!r} must be an integer or null")
        return v

    proto = RSEProtocol(
        rse_id=row.id,
        scheme=scheme,
        hostname=hostname,
        port=port,
        prefix=str(spec.get("prefix") or ""),
        impl=impl,
        read_lan=prio(lan, "read"),
        write_lan=prio(lan, "write"),
        delete_lan=prio(lan, "delete"),
        read_wan=prio(wan, "read"),
        write_wan=prio(wan, "write"),
        delete_wan=prio(wan, "delete"),
        third_party_copy_read=prio(wan, "third_party_copy_read"),
        third_party_copy_write=prio(wan, "third_party_copy_write"),
        extended_attributes=dumps(spec.get("extended_attributes"))
        if spec.get("extended_attributes") is not None
        else None,
    )
    session.add(proto)
    session.flush()
    return proto


def delete_protocol(session: Session, row: RSE, scheme: str) -> None:
    res = session.execute(
        delete(RSEProtocol).where(RSEProtocol.rse_id == row.id, RSEProtocol.scheme == scheme)
    )
    if res.rowcount == 0:  # type: ignore[attr-defined]
        raise ProtocolNotSupported(f"RSE {row.rse!r} has no protocol {scheme!r}")


def protocol_dict(p: RSEProtocol) -> dict[str, Any]:
    return {
        "hostname": p.hostname,
        "scheme": p.scheme,
        "port": p.port,
        "prefix": p.prefix,
        "impl": p.impl,
        "domains": {
            "lan": {"read": p.read_lan, "write": p.write_lan, "delete": p.delete_lan},
            "wan": {
                "read": p.read_wan,
                "write": p.write_wan,
                "delete": p.delete_wan,
                "third_party_copy_read": p.third_party_copy_read,
                "third_party_copy_write": p.third_party_copy_write,
                "third_party_copy": p.third_party_copy_read,
            },
        },
        "extended_attributes": loads(p.extended_attributes),
    }


def rse_info(session: Session, row: RSE) -> RSEInfo:
    return RSEInfo(
        id=row.id,
        rse=row.rse,
        rse_type=row.rse_type,
        deterministic=row.deterministic,
        lfn2pfn_algorithm=row.lfn2pfn_algorithm,
        volatile=row.volatile,
        availability_read=row.availability_read,
        availability_write=row.availability_write,
        availability_delete=row.availability_delete,
        attributes=attributes(session, row.id),
        protocols=protocols(session, row.id),
    )


def set_limit(session: Session, row: RSE, name: str, value: int) -> None:
    existing = session.get(RSELimit, (row.id, name))
    if existing is None:
        session.add(RSELimit(rse_id=row.id, name=name, value=value))
    else:
        existing.value = value
    session.flush()


def limits(session: Session, row: RSE) -> dict[str, int]:
    rows = session.execute(select(RSELimit.name, RSELimit.value).where(RSELimit.rse_id == row.id))
    return {k: int(v) for k, v in rows}


def set_usage(
    session: Session,
    row: RSE,
    source: str,
    used: int | None,
    free: int | None,
    total: int | None,
    files: int | None,
) -> None:
    existing = session.get(RSEUsage, (row.id, source))
    if existing is None:
        session.add(
            RSEUsage(rse_id=row.id, source=source, used=used, free=free, total=total, files=files)
        )
    else:
        existing.used, existing.free, existing.total, existing.files = used, free, total, files
        existing.updated_at = utcnow()
    session.flush()


def usage(session: Session, row: RSE) -> list[dict[str, Any]]:
    """Usage per source; the ``rucio`` source is computed live from the replicas table."""
    used, files = session.execute(
        select(func.coalesce(func.sum(Replica.bytes), 0), func.count()).where(
            Replica.rse_id == row.id
        )
    ).one()
    out = [
        {
            "rse_id": row.id,
            "rse": row.rse,
            "source": "rucio",
            "used": int(used),
            "free": None,
            "total": None,
            "files": int(files),
            "updated_at": utcnow(),
        }
    ]
    for u in session.scalars(select(RSEUsage).where(RSEUsage.rse_id == row.id)):
        out.append(
            {
                "rse_id": row.id,
                "rse": row.rse,
                "source": u.source,
                "used": u.used,
                "free": u.free,
                "total": u.total,
                "files": u.files,
                "updated_at": u.updated_at,
            }
        )
    return out
