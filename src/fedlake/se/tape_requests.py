"""The WLCG Tape REST API's request bodies and its stage requests, kept on disk.

Request bodies (``se.tape_rest`` reads them) are checked here: :func:`parse_stage` for
``POST stage`` (``{"files": [{"path": ..., "diskLifetime": "P1D", "targetedMetadata":
{...}}]}``) and :func:`parse_paths` for ``archiveinfo``, ``cancel`` and ``release``
(``{"paths": [...]}``). A malformed body is :class:`BadRequest` (HTTP 400) naming what
is wrong; a path that is not clean (``..``, control characters) is refused the same way.

Stage requests live in one JSON file each, ``<dir>/<id>.json``, written atomically
(a temporary, then a rename) under an ``flock`` of ``<dir>/.lock`` for every
read-modify-write: the SE's worker processes share them. A request records, per file,
its state (SUBMITTED, STARTED, CANCELLED, FAILED, COMPLETED), its error, when it started
and finished, and the pin asked for; :meth:`StageStore.update` applies the transitions the
tape emulation reports (only from a pending state, so a file's final state never changes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fedlake.se.paths import BadPath, clean_path

__all__ = [
    "DEFAULT_PIN_SECONDS",
    "FINAL",
    "MAX_FILES",
    "PENDING",
    "BadRequest",
    "StageFile",
    "StageRequest",
    "StageStore",
    "parse_duration",
    "parse_paths",
    "parse_stage",
]

#: how long a staged file stays pinned when the request gives no ``diskLifetime``
DEFAULT_PIN_SECONDS = 3600.0
#: the most files (or paths) one request may name
MAX_FILES = 10_000
PENDING = frozenset({"SUBMITTED", "STARTED"})
FINAL = frozenset({"CANCELLED", "FAILED", "COMPLETED"})
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DURATION = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class BadRequest(ValueError):
    """The request body is malformed (HTTP 400); the message says what is wrong."""


def parse_duration(value: object, where: str) -> float:
    """Seconds of an ISO 8601 duration (``P1D``, ``PT2H30M``, ``P1W``; no years or months,
    whose length varies) or of a number of seconds; BadRequest otherwise."""
    if isinstance(value, bool):
        raise BadRequest(f"{where} must be an ISO 8601 duration such as 'P1D', not {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise BadRequest(f"{where} must be at least 0 seconds, not {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be an ISO 8601 duration such as 'P1D', not {value!r}")
    match = _DURATION.match(value.strip().upper())
    if match is None or value.strip().upper() in ("P", "PT") or value.strip().endswith("T"):
        raise BadRequest(
            f"{where} {value[:100]!r} is not an ISO 8601 duration such as 'P1D' or 'PT2H' "
            "(years and months are not accepted)"
        )
    parts = {k: float(v) for k, v in match.groupdict(default="0").items()}
    return (
        parts["w"] * 604800 + parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    )


def _json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest("the request body is empty; send a JSON document")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None


def _path(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{where} must be a non-empty string (an absolute path), not {value!r}")
    try:
        return clean_path(value)
    except BadPath as exc:
        raise BadRequest(f"{where} {value[:200]!r} is refused: {exc}") from None


def _list(doc: object, key: str, example: str) -> list[Any]:
    if not isinstance(doc, dict):
        raise BadRequest(f"the request body must be a JSON object such as {example}")
    items = doc.get(key)
    if not isinstance(items, list) or not items:
        raise BadRequest(f"'{key}' must be a non-empty list, as in {example}")
    if len(items) > MAX_FILES:
        raise BadRequest(f"'{key}' lists {len(items)} entries; at most {MAX_FILES} per request")
    return items


@dataclass(frozen=True, slots=True)
class StageFile:
    """One file of a ``POST stage`` body."""

    path: str
    pin_seconds: float
    metadata: Mapping[str, Any] | None = None


def parse_stage(body: bytes) -> list[StageFile]:
    """The files of a ``POST stage`` body; BadRequest names what is wrong."""
    example = '{"files": [{"path": "/a/file", "diskLifetime": "P1D"}]}'
    items = _list(_json(body), "files", example)
    out: list[StageFile] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"files[{i}]"
        if not isinstance(item, dict):
            raise BadRequest(f"{where} must be an object such as {{'path': '/a/file'}}")
        path = _path(item.get("path"), f"{where}.path")
        if path in seen:
            raise BadRequest(f"{where}.path {path} is listed twice")
        seen.add(path)
        lifetime = item.get("diskLifetime")
        pin = (
            DEFAULT_PIN_SECONDS
            if lifetime is None
            else parse_duration(lifetime, f"{where}.diskLifetime")
        )
        metadata = item.get("targetedMetadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise BadRequest(f"{where}.targetedMetadata must be an object, not {metadata!r}")
        out.append(StageFile(path, pin, metadata))
    return out


def parse_paths(body: bytes) -> list[str]:
    """The clean paths of a ``{"paths": [...]}`` body (order kept, repeats dropped)."""
    items = _list(_json(body), "paths", '{"paths": ["/a/file"]}')
    out: dict[str, None] = {}
    for i, item in enumerate(items):
        out[_path(item, f"paths[{i}]")] = None
    return list(out)


# --- the stored requests -------------------------------------------------------------------


@dataclass
class StageRequest:
    """A stage request as stored (``doc`` is the JSON document)."""

    doc: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.doc["id"])

    @property
    def files(self) -> list[dict[str, Any]]:
        files: list[dict[str, Any]] = self.doc["files"]
        return files

    def paths(self) -> list[str]:
        return [str(f["path"]) for f in self.files]

    def pending(self) -> list[str]:
        return [str(f["path"]) for f in self.files if f["state"] in PENDING]

    def set_state(self, path: str, state: str, now: int, error: str | None = None) -> bool:
        """Move ``path`` from a pending state to ``state``; False if it was final already."""
        for f in self.files:
            if f["path"] == path and f["state"] in PENDING:
                f["state"] = state
                if state in FINAL:
                    f["finishedAt"] = now
                if error is not None:
                    f["error"] = error
                if all(g["state"] in FINAL for g in self.files):
                    self.doc["completedAt"] = now
                return True
        return False

    def view(self, on_disk: Mapping[str, bool]) -> dict[str, Any]:
        """The ``GET stage/{id}`` document (``on_disk``: which paths are online now)."""
        files = []
        for f in self.files:
            entry = {
                "path": f["path"],
                "state": f["state"],
                "onDisk": on_disk.get(f["path"], False),
            }
            for key in ("error", "startedAt", "finishedAt"):
                if f.get(key) is not None:
                    entry[key] = f[key]
            files.append(entry)
        out = {"id": self.id, "createdAt": self.doc["createdAt"]}
        for key in ("startedAt", "completedAt"):
            if self.doc.get(key) is not None:
                out[key] = self.doc[key]
        out["files"] = files
        return out


def new_request(files: list[dict[str, Any]], owner: str, now: int) -> StageRequest:
    """A request for ``files`` (each with path, state, pin and maybe error and startedAt)."""
    doc: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "createdAt": now,
        "startedAt": now,
        "owner": owner,
        "files": files,
    }
    request = StageRequest(doc)
    if all(f["state"] in FINAL for f in files):
        doc["completedAt"] = now
    return request


class StageStore:
    """Stage requests as JSON files under ``directory`` (shared by the SE's workers)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._made = False

    def _dir(self) -> str:
        if not self._made:
            os.makedirs(self.directory, exist_ok=True)
            self._made = True
        return self.directory

    def _file(self, request_id: str) -> str | None:
        if not _ID.match(request_id):
            return None
        return os.path.join(self._dir(), f"{request_id}.json")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(os.path.join(self._dir(), ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # drops the lock

    def _write(self, request: StageRequest) -> None:
        path = self._file(request.id)
        assert path is not None
        tmp = f"{path}.tmp-{secrets.token_hex(6)}"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(request.doc, fh, separators=(",", ":"))
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _read(self, request_id: str) -> StageRequest | None:
        path = self._file(request_id)
        if path is None:
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                return StageRequest(json.load(fh))
        except FileNotFoundError:
            return None

    def add(self, request: StageRequest) -> None:
        with self._locked():
            self._write(request)

    def get(self, request_id: str) -> StageRequest | None:
        """The request, or None when there is no such id (a rename is atomic: no lock)."""
        return self._read(request_id)

    def update(
        self, request_id: str, change: Callable[[StageRequest], bool]
    ) -> StageRequest | None:
        """Apply ``change`` (True: it changed something) under the lock, and store it."""
        with self._locked():
            request = self._read(request_id)
            if request is None:
                return None
            if change(request):
                self._write(request)
            return request

    def delete(self, request_id: str) -> StageRequest | None:
        with self._locked():
            request = self._read(request_id)
            path = self._file(request_id)
            if request is None or path is None:
                return None
            os.unlink(path)
            return request


def now_seconds() -> int:
    """The API's timestamps: whole seconds since the epoch."""
    return int(time.time())
