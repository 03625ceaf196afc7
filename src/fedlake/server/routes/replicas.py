"""Replicas and redirects (Rucio paths)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import iterate_in_threadpool
from starlette.responses import RedirectResponse, Response, StreamingResponse

from fedlake.domain.errors import InvalidInput, NotFound
from fedlake.domain.names import validate_did_name, validate_scope
from fedlake.server.http import (
    body_json,
    caller,
    lake,
    path_segments,
    stream_response,
    threaded,
)
from fedlake.server.metalink import MEDIA_TYPE, metalink
from fedlake.services import replicas as svc

router = APIRouter(tags=["replicas"])


@router.post("/replicas")
@router.post("/replicas/")
async def add_replicas(request: Request) -> Response:
    c = await caller(request)
    await threaded(svc.add_replicas, lake(request), c, await body_json(request))
    return Response("Created", status_code=201)


@router.put("/replicas")
@router.put("/replicas/")
async def update_replicas(request: Request) -> Response:
    c = await caller(request)
    await threaded(svc.update_replicas, lake(request), c, await body_json(request))
    return Response(status_code=200)


@router.delete("/replicas")
@router.delete("/replicas/")
async def delete_replicas(request: Request) -> Response:
    c = await caller(request)
    await threaded(svc.delete_replicas, lake(request), c, await body_json(request))
    return Response(status_code=200)


@router.post("/replicas/tombstone")
async def tombstone(request: Request) -> Response:
    c = await caller(request)
    await threaded(svc.tombstone, lake(request), c, await body_json(request))
    return Response("Created", status_code=201)


def _wants_metalink(request: Request) -> bool:
    return MEDIA_TYPE in request.headers.get("accept", "")


def _metalink_response(records: object) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        async for chunk in iterate_in_threadpool(metalink(records)):  # type: ignore[arg-type]
            yield chunk.encode()

    return StreamingResponse(body(), media_type=MEDIA_TYPE)


@router.post("/replicas/list")
@router.post("/replicas/list/")
async def list_replicas(request: Request) -> Response:
    c = await caller(request)
    body = _with_client_ip(request, await body_json(request))
    records = await threaded(svc.list_replicas, lake(request), c, body)
    if _wants_metalink(request):
        return _metalink_response(records)
    return stream_response(records)


@router.post("/replicas/datasets_bulk")
async def datasets_bulk(request: Request) -> Response:
    c = await caller(request)
    body = await body_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("dids"), list):
        raise InvalidInput('the body must be {"dids": [{"scope", "name"}, ...]}')
    keys = [(str(d.get("scope")), str(d.get("name"))) for d in body["dids"] if isinstance(d, dict)]
    return stream_response(await threaded(svc.dataset_replicas, lake(request), c, keys))


@router.get("/replicas/rse/{rse}")
async def datasets_at_rse(request: Request, rse: str) -> Response:
    c = await caller(request)
    return stream_response(await threaded(svc.datasets_at_rse, lake(request), c, rse))


@router.get("/replicas/{rest:path}")
async def replicas_of_did(request: Request, rest: str) -> Response:
    c = await caller(request)
    segs = [s for s in path_segments(request, "/replicas/")]
    if len(segs) < 2:
        raise NotFound("give a DID as /replicas/<scope>/<name>")
    scope, name = validate_scope(segs[0]), validate_did_name(segs[1])
    suffix = "/".join(segs[2:]).rstrip("/")
    if suffix == "datasets":
        deep = request.query_params.get("deep", "").lower() in ("true", "1")
        return stream_response(
            await threaded(svc.dataset_replicas, lake(request), c, [(scope, name)], deep)
        )
    if suffix:
        raise NotFound(f"no replica operation {suffix!r}")
    records = await threaded(svc.replicas_of_did, lake(request), c, scope, name)
    if _wants_metalink(request):
        return _metalink_response(records)
    return stream_response(records)


def _with_client_ip(request: Request, body: Any) -> Any:
    """Rucio's ``client_location.ip`` defaults to the address the request came from (it
    picks the site's cache, ``fedlake.domain.site_caches``)."""
    if not isinstance(body, dict) or request.client is None:
        return body
    where = body.get("client_location")
    if where is None:
        return body | {"client_location": {"ip": request.client.host}}
    if isinstance(where, dict) and not where.get("ip"):
        return body | {"client_location": where | {"ip": request.client.host}}
    return body


@router.get("/redirect/{scope}/{name}")
async def redirect(request: Request, scope: str, name: str) -> Response:
    """303 to the best available replica of a file: the client's site cache when its RSE
    names one, else disk before tape. ``ip`` and ``site`` (query) say where the client is
    (the address the request came from by default)."""
    c = await caller(request)
    q = request.query_params
    schemes = q.getlist("schemes") or None
    where = {"ip": q.get("ip") or (request.client.host if request.client else None)}
    where["site"] = q.get("site")
    location = {k: v for k, v in where.items() if v}
    pfn = await threaded(svc.best_pfn, lake(request), c, scope, name, schemes, location or None)
    return RedirectResponse(pfn, status_code=303)
