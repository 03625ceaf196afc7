"""What the engine knows about RSEs: protocols, URLs, storage plugins, limits (cached).

PFNs are built by ``fedlake.domain.paths.build_pfn`` (the one place); this module picks
the protocol per operation as Rucio does (lowest non-null priority wins).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from fedlake.catalog import rses as rse_core
from fedlake.catalog import transfers as core
from fedlake.catalog.db import Database
from fedlake.catalog.models import RSE, RSELimit, RSEProtocol
from fedlake.catalog.replicas import replica_path
from fedlake.domain.errors import ProtocolNotSupported
from fedlake.domain.paths import build_pfn
from fedlake.expressions.rse_expression import evaluate
from fedlake.storage import Storage, get_storage
from fedlake.storage.registry import protocol_options

__all__ = ["Endpoint", "Endpoints", "Limits"]

INBOUND, OUTBOUND = "transfers_inbound", "transfers_outbound"


@dataclass(frozen=True)
class Endpoint:
    """One protocol of one RSE and the plugin that speaks it."""

    scheme: str
    hostname: str
    port: int
    prefix: str
    storage: Storage
    tpc_read: int | None
    tpc_write: int | None

    def url(self, path: str) -> str:
        return build_pfn(self.scheme, self.hostname, self.port, self.prefix, path)


@dataclass(frozen=True)
class Limits:
    """Concurrency limits in force: per link (optimizer or fixed), per RSE, global."""

    links: dict[tuple[str, str], int]
    inbound: dict[str, int]
    outbound: dict[str, int]
    global_max: int | None


class Endpoints:
    """A worker's cached view of RSEs; refreshed every ``ttl`` seconds."""

    def __init__(self, db: Database, *, ttl: float = 5.0, global_max: int | None = None) -> None:
        self.db = db
        self.ttl = ttl
        self.global_max = global_max
        self._lock = threading.Lock()
        self._loaded = 0.0
        self._infos: dict[str, rse_core.RSEInfo] = {}
        self._attrs: dict[str, dict[str, Any]] = {}
        self._names: dict[str, str] = {}
        self._distances: dict[tuple[str, str], int] = {}
        self._limits = Limits({}, {}, {}, global_max)
        self._expr_cache: dict[str, frozenset[str]] = {}
        self._endpoint_cache: dict[tuple[str, str], list[Endpoint]] = {}

    def refresh(self, force: bool = False) -> None:
        """Reload what is older than ``ttl`` (or everything, ``force``).

        Every lookup of every transfer thread calls this: a fresh view is answered without
        the lock, and while one thread reloads a stale view the others keep using it (only
        a forced reload, or the first load, waits). Hundreds of copy threads queueing on
        the lock held up the claims that keep them busy."""
        if not force and time.monotonic() - self._loaded < self.ttl:
            return
        if not self._lock.acquire(blocking=force or not self._loaded):
            return  # another thread is reloading; the current view serves meanwhile
        try:
            if not force and time.monotonic() - self._loaded < self.ttl:
                return
            with self.db.read() as s:
                rows = list(s.scalars(select(RSE).where(RSE.deleted_at.is_(None))))
                infos = {r.id: rse_core.rse_info(s, r) for r in rows}
                dist = core.distances(s)
                links: dict[tuple[str, str], int] = {}
                for link in core.links(s):
                    value = link.optimal_active if link.optimizer else link.max_active
                    if link.max_active is not None and value is not None:
                        value = min(value, link.max_active)
                    if value is not None:
                        links[(link.source_rse_id, link.dest_rse_id)] = max(1, value)
                inbound: dict[str, int] = {}
                outbound: dict[str, int] = {}
                for lim in s.scalars(
                    select(RSELimit).where(RSELimit.name.in_([INBOUND, OUTBOUND]))
                ):
                    (inbound if lim.name == INBOUND else outbound)[lim.rse_id] = int(lim.value)
            self._infos = infos
            self._names = {i.id: i.rse for i in infos.values()}
            self._attrs = {
                i.rse: {"rse_type": i.rse_type, "istape": i.rse_type == "TAPE", **i.attributes}
                for i in infos.values()
            }
            self._distances = dist
            self._limits = Limits(links, inbound, outbound, self.global_max)
            self._expr_cache = {}
            self._endpoint_cache = {}
            self._loaded = time.monotonic()
        finally:
            self._lock.release()

    # --- lookups ---------------------------------------------------------------------------

    def info(self, rse_id: str) -> rse_core.RSEInfo:
        self.refresh()
        try:
            return self._infos[rse_id]
        except KeyError:
            self.refresh(force=True)
            return self._infos[rse_id]

    def name(self, rse_id: str) -> str:
        self.refresh()
        return self._names.get(rse_id, rse_id)

    def limits(self) -> Limits:
        self.refresh()
        return self._limits

    def distance(self, source: str, dest: str) -> int:
        self.refresh()
        return self._distances.get((source, dest), 1_000_000)

    def is_tape(self, rse_id: str) -> bool:
        info = self.info(rse_id)
        return info.rse_type == "TAPE" or bool(info.attributes.get("istape"))

    def in_expression(self, rse_id: str, expression: str) -> bool:
        self.refresh()
        ids = self._expr_cache.get(expression)
        if ids is None:
            names = set(evaluate(expression, self._attrs, allow_empty=True))
            ids = frozenset(i for i, n in self._names.items() if n in names)
            self._expr_cache[expression] = ids
        return rse_id in ids

    # --- protocols -------------------------------------------------------------------------

    def _storage(self, p: RSEProtocol) -> Storage:
        return get_storage(p.scheme, **protocol_options(p.extended_attributes))

    def _endpoint(self, p: RSEProtocol) -> Endpoint:
        return Endpoint(
            p.scheme,
            p.hostname,
            p.port,
            p.prefix or "",
            self._storage(p),
            p.third_party_copy_read,
            p.third_party_copy_write,
        )

    def endpoints(self, rse_id: str, operation: str) -> list[Endpoint]:
        """Protocols for ``read``, ``write`` or ``delete`` in priority order (WAN)."""
        self.refresh()
        cached = self._endpoint_cache.get((rse_id, operation))
        if cached is not None:
            return cached
        found = self._endpoints(rse_id, operation)
        self._endpoint_cache[(rse_id, operation)] = found
        return found

    def _endpoints(self, rse_id: str, operation: str) -> list[Endpoint]:
        info = self.info(rse_id)
        attr = {"read": "read_wan", "delete": "delete_wan"}.get(operation, "write_wan")
        protos = sorted(
            (p for p in info.protocols if getattr(p, attr) is not None),
            key=lambda p: getattr(p, attr) or 0,
        )
        out = []
        for p in protos:
            try:
                out.append(self._endpoint(p))
            except ProtocolNotSupported:
                continue  # a plugin this worker lacks: try the next protocol
        if not out:
            raise ProtocolNotSupported(
                f"RSE {info.rse} offers no {operation} protocol this worker can speak"
            )
        return out

    def path(self, rse_id: str, scope: str, name: str, stored: str | None) -> str:
        info = self.info(rse_id)
        if not info.deterministic and stored is None:
            return f"{scope}/{name}"
        return replica_path(info, scope, name, stored)
