"""Tape mode: the SE over the tape emulation, with the WLCG Tape REST API v1 (docs/se.md).

In tape mode the SE's root is a tape emulation root
(:class:`fedlake.storage.backends.tape.TapeStorage`): the WebDAV methods serve its
namespace (``<root>/tape``), and ``GET`` of a file without an online copy is refused with
503 until the file is staged. The API, on paths the SE's method table never sees:

- ``GET /.well-known/wlcg-tape-rest-api``: the discovery document (``sitename``,
  ``description``, ``endpoints: [{uri, version: "v1", metadata}]``).
- ``POST /api/v1/stage`` ``{"files": [{"path", "diskLifetime", "targetedMetadata"}]}``:
  asks the emulation to recall each file, pinned for ``diskLifetime`` (an ISO 8601
  duration); ``201 {"requestId"}`` with ``Location``.
- ``GET /api/v1/stage/{id}``: the request with each file's ``state`` (STARTED, then
  COMPLETED once online; FAILED with ``error``; CANCELLED), ``onDisk`` and timestamps.
  Polling drives the emulation: a recall whose time has come is copied in by the poll.
- ``POST /api/v1/stage/{id}/cancel`` ``{"paths"}``, ``DELETE /api/v1/stage/{id}``,
  ``POST /api/v1/release/{id}`` ``{"paths"}``: cancel pending recalls, drop pins.
- ``POST /api/v1/archiveinfo`` ``{"paths"}``: ``[{"path", "locality"}]`` (TAPE or
  DISK_AND_TAPE: migration is immediate), or ``{"path", "error"}``.

Errors are ``application/problem+json`` (``title``, ``status``, ``detail``). Staging,
cancelling and releasing need ``stage`` on every path (``storage.stage`` scope, or the
storage area's ``read``); reading a request and ``archiveinfo`` need ``read``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import http
import json
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fedlake.se import read
from fedlake.se.app import SEApp, create_app, error_response
from fedlake.se.config import SEConfig, TapeConfig
from fedlake.se.http import HTTPError, Request
from fedlake.se.paths import Resolver
from fedlake.se.tape_requests import (
    BadRequest,
    StageRequest,
    StageStore,
    new_request,
    now_seconds,
    parse_paths,
    parse_stage,
)
from fedlake.storage.backends.tape import NotOnline, TapeStorage

__all__ = ["API", "NAMESPACE", "REQUESTS", "WELL_KNOWN", "TapeREST", "tape_app"]

WELL_KNOWN = "/.well-known/wlcg-tape-rest-api"
API = "/api/v1"
#: below the tape emulation root: the served namespace, and the stored stage requests
NAMESPACE = "tape"
REQUESTS = "stage-requests"
BODY_LIMIT = 8 * 1024 * 1024
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$")
_NOT_FOUND = "file not found"


def tape_app(root: str | os.PathLike[str], config: SEConfig, *, fsync: bool = False) -> SEApp:
    """The SE in tape mode over the tape emulation rooted at ``root``."""
    assert config.tape is not None
    base = Path(root).resolve()
    namespace = base / NAMESPACE
    namespace.mkdir(exist_ok=True)
    options = config.tape
    tape = TapeStorage(
        root=str(base),
        recall_latency=options.recall_latency,
        recall_throughput=options.recall_throughput,
        buffer_bytes=options.buffer_bytes,
        write_pin=options.write_pin,
    )
    app = create_app(namespace, dataclasses.replace(config, tape=None), fsync=fsync)
    api = TapeREST(tape, StageStore(str(base / REQUESTS)), options, Resolver(namespace))
    app.add_route(WELL_KNOWN, api)
    app.add_route(API, api)
    app.add_method("GET", api.get)
    return app


class TapeREST:
    """The WLCG Tape REST API v1 over one tape emulation (a handler of ``SEApp``)."""

    def __init__(
        self, tape: TapeStorage, store: StageStore, options: TapeConfig, resolver: Resolver
    ) -> None:
        self.tape = tape
        self.store = store
        self.options = options
        self.resolver = resolver

    # --- dispatch ----------------------------------------------------------------------

    async def __call__(self, req: Request) -> None:
        try:
            await self._dispatch(req)
        except ConnectionAbortedError:
            raise
        except Exception as exc:
            answer = HTTPError(400, str(exc)) if isinstance(exc, BadRequest) else None
            answer = answer or error_response(exc)
            if answer is None or req.started:
                raise
            title = http.HTTPStatus(answer.status).phrase
            problem = {"type": "about:blank", "title": title, "status": answer.status}
            problem["detail"] = answer.message
            await self._json(req, answer.status, problem, answer.headers, problem=True)

    async def _dispatch(self, req: Request) -> None:
        path = req.path.rstrip("/") or "/"
        if path == WELL_KNOWN:
            self._allow(req, "GET", "HEAD")
            await self._json(req, 200, self.discovery(req))
            return
        parts = path[len(API) :].strip("/").split("/") if path.startswith(API) else []
        match parts:
            case ["stage"]:
                self._allow(req, "POST")
                await self.stage(req)
            case ["stage", request_id]:
                self._allow(req, "GET", "DELETE")
                if req.method == "DELETE":
                    await self.delete(req, request_id)
                else:
                    await self.status(req, request_id)
            case ["stage", request_id, "cancel"]:
                self._allow(req, "POST")
                await self.cancel(req, request_id)
            case ["release", request_id]:
                self._allow(req, "POST")
                await self.release(req, request_id)
            case ["archiveinfo"]:
                self._allow(req, "POST")
                await self.archiveinfo(req)
            case _:
                raise HTTPError(
                    404,
                    f"{req.path} is not a resource of the WLCG Tape REST API v1 here "
                    f"(see {WELL_KNOWN})",
                )

    @staticmethod
    def _allow(req: Request, *methods: str) -> None:
        if req.method not in methods:
            raise HTTPError(
                405, f"{req.method} is not allowed on {req.path}", [("allow", ", ".join(methods))]
            )

    @staticmethod
    async def _json(
        req: Request,
        status: int,
        doc: object,
        headers: Iterable[tuple[str, str]] = (),
        *,
        problem: bool = False,
    ) -> None:
        kind = "application/problem+json" if problem else "application/json"
        body = json.dumps(doc, separators=(",", ":")).encode()
        await req.respond(
            status, [*headers, ("cache-control", "no-store")], body, content_type=kind
        )

    @staticmethod
    def _base_url(req: Request) -> str:
        scheme = req.scope.get("scheme", "http")
        host = req.header("host")
        if host is None or not _HOST.match(host):
            server = req.scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{scheme}://{host}"

    def _url(self, path: str) -> str:
        return f"tape://se{path}"

    # --- discovery ---------------------------------------------------------------------

    def discovery(self, req: Request) -> dict[str, Any]:
        return {
            "sitename": self.options.sitename,
            "description": self.options.description,
            "endpoints": [
                {"uri": f"{self._base_url(req)}{API}", "version": "v1", "metadata": {}},
            ],
        }

    # --- helpers on files --------------------------------------------------------------

    def _kind(self, path: str) -> str | None:
        """None for a file of the namespace, else the error to report for ``path``
        (OutsideRoot, for a symbolic link out of the root, is raised: HTTP 403)."""
        try:
            target = self.resolver.resolve(path)
        except (FileNotFoundError, NotADirectoryError):
            return _NOT_FOUND
        if target.stat is None:
            return _NOT_FOUND
        if stat.S_ISDIR(target.stat.st_mode):
            return "is a directory, not a file"
        if not stat.S_ISREG(target.stat.st_mode):
            return "is not a regular file"
        return None

    def _online(self, paths: Iterable[str]) -> dict[str, bool | str]:
        """Per path: whether it is online now (completing due recalls), or its error."""
        out: dict[str, bool | str] = {}
        for path in paths:
            problem = self._kind(path)
            if problem is not None:
                out[path] = problem
                continue
            try:
                out[path] = self.tape.is_online(self._url(path))
            except (FileNotFoundError, IsADirectoryError):
                out[path] = _NOT_FOUND
        return out

    def _authorize(self, req: Request, operation: str, paths: Iterable[str]) -> None:
        for path in paths:
            req.ctx.authorizer.check(req.caller, operation, path)

    async def _body(self, req: Request) -> bytes:
        return await req.discard_body(BODY_LIMIT)

    def _request(self, request_id: str) -> StageRequest:
        request = self.store.get(request_id)
        if request is None:
            raise HTTPError(404, f"no stage request {request_id[:100]!r} here")
        return request

    @staticmethod
    def _only_known(request: StageRequest, paths: list[str]) -> None:
        unknown = sorted(set(paths) - set(request.paths()))
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise BadRequest(f"stage request {request.id} has no file {shown}")

    def _refresh(self, request: StageRequest) -> tuple[StageRequest, dict[str, bool | str]]:
        """Look at the request's files on the tape now; record pending files that are
        online (COMPLETED) or gone (FAILED). Returns the request and what was seen."""
        watched = [str(f["path"]) for f in request.files if f["state"] != "FAILED"]
        seen = self._online(watched)
        done = {p: v for p, v in seen.items() if p in set(request.pending()) and v is not False}
        if not done:
            return request, seen
        now = now_seconds()

        def change(stored: StageRequest) -> bool:
            changed = False
            for path, value in done.items():
                if value is True:
                    changed |= stored.set_state(path, "COMPLETED", now)
                else:
                    changed |= stored.set_state(path, "FAILED", now, str(value))
            return changed

        updated = self.store.update(request.id, change)
        return (updated or request), seen

    # --- the API -----------------------------------------------------------------------

    async def stage(self, req: Request) -> None:
        files = parse_stage(await self._body(req))
        self._authorize(req, "stage", (f.path for f in files))
        owner = str(req.caller)

        def submit() -> StageRequest:
            # every path first: a refusal (a link out of the root) leaves nothing staged
            problems = [self._kind(f.path) for f in files]
            now = now_seconds()
            entries: list[dict[str, Any]] = []
            for f, problem in zip(files, problems, strict=True):
                entry: dict[str, Any] = {"path": f.path, "pin": f.pin_seconds}
                if f.metadata is not None:
                    entry["targetedMetadata"] = f.metadata
                if problem is None:
                    try:
                        self.tape.stage(self._url(f.path), pin_seconds=f.pin_seconds)
                    except (FileNotFoundError, IsADirectoryError):
                        problem = _NOT_FOUND
                    except OSError as exc:  # ENOSPC: the file never fits the disk buffer
                        problem = exc.strerror or str(exc)
                if problem is None:
                    entry.update(state="STARTED", startedAt=now)
                else:
                    entry.update(state="FAILED", error=problem, finishedAt=now)
                entries.append(entry)
            request = new_request(entries, owner, now)
            self.store.add(request)
            return request

        request = await req.ctx.run(submit)
        location = f"{self._base_url(req)}{API}/stage/{request.id}"
        await self._json(req, 201, {"requestId": request.id}, [("location", location)])

    async def status(self, req: Request, request_id: str) -> None:
        request = self._request(request_id)
        self._authorize(req, "read", request.paths())
        request, seen = await req.ctx.run(self._refresh, request)
        on_disk = {p: v is True for p, v in seen.items()}
        await self._json(req, 200, request.view(on_disk))

    async def cancel(self, req: Request, request_id: str) -> None:
        paths = parse_paths(await self._body(req))
        request = self._request(request_id)
        self._only_known(request, paths)
        self._authorize(req, "stage", paths)
        await req.ctx.run(self._drop, request, paths, False)
        await req.respond(200)

    async def release(self, req: Request, request_id: str) -> None:
        paths = parse_paths(await self._body(req))
        request = self._request(request_id)
        self._only_known(request, paths)
        self._authorize(req, "stage", paths)
        await req.ctx.run(self._drop, request, paths, True)
        await req.respond(200)

    async def delete(self, req: Request, request_id: str) -> None:
        request = self._request(request_id)
        self._authorize(req, "stage", request.paths())
        await req.ctx.run(self._drop, request, request.paths(), True)
        self.store.delete(request.id)
        await req.respond(200)

    def _drop(self, request: StageRequest, paths: list[str], unpin: bool) -> None:
        """Cancel the pending recalls of ``paths`` (CANCELLED); with ``unpin`` also drop
        the pins of files already online (their copies become evictable)."""
        request, _ = self._refresh(request)  # a recall that is done is not cancelled
        pending = set(request.pending())
        targets = [p for p in paths if unpin or p in pending]
        for path in targets:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                self.tape.release(self._url(path))
        cancelled = [p for p in paths if p in pending]
        if cancelled:
            now = now_seconds()
            self.store.update(
                request.id,
                lambda stored: any([stored.set_state(p, "CANCELLED", now) for p in cancelled]),
            )

    async def archiveinfo(self, req: Request) -> None:
        paths = parse_paths(await self._body(req))
        self._authorize(req, "read", paths)
        seen = await req.ctx.run(self._online, paths)
        out: list[dict[str, str]] = []
        for path in paths:
            value = seen[path]
            if isinstance(value, str):
                out.append({"path": path, "error": value})
            else:
                out.append({"path": path, "locality": "DISK_AND_TAPE" if value else "TAPE"})
        await self._json(req, 200, out)

    # --- GET of files ------------------------------------------------------------------

    async def get(self, req: Request) -> None:
        """GET in tape mode: a file without an online copy is refused with 503."""
        target = req.resolve()
        req.authorize("read", target)
        if target.stat is not None and stat.S_ISREG(target.stat.st_mode):
            await req.ctx.run(self._require_online, target.url_path)
        await read.get(req)

    def _require_online(self, path: str) -> None:
        try:
            stream = self.tape.read(self._url(path))  # checks, and touches the LRU order
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # a generator not started yet: no file was opened
        except NotOnline as exc:
            raise HTTPError(
                503,
                f"{path}: file is not online ({exc.strerror}); stage it with POST {API}/stage "
                "of the WLCG Tape REST API",
            ) from None
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
