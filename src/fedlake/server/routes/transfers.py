"""Transfers (fedlake paths) and RSE distances (Rucio paths)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from fedlake.domain.errors import InvalidInput
from fedlake.server.http import (
    body_object,
    caller,
    json_response,
    lake,
    path_segments,
    stream_response,
    threaded,
)
from fedlake.services import transfers as svc

__all__ = ["router"]

router = APIRouter(tags=["transfers"])

MAX_ID = 2**63 - 1
#: query parameters that may be given once only (``state`` may repeat: the values add up)
_SINGLE = ("scope", "name", "rse", "rule_id", "limit")


def _request_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_ID:
        raise InvalidInput(f"a transfer request id is a positive integer, got {text!r}")
    return int(text)


def _filters(request: Request) -> dict[str, str]:
    q = request.query_params
    filters: dict[str, str] = {}
    for key in dict.fromkeys(q.keys()):
        values = q.getlist(key)
        if key == "state":
            filters[key] = ",".join(v.strip() for v in values)
        elif len(values) > 1:
            raise InvalidInput(f"give the filter {key!r} once (got {len(values)} values)")
        else:
            filters[key] = values[0]
    return filters


def _one_segment(request: Request, prefix: str, what: str) -> str:
    """The single path segment after ``prefix`` (percent-decoded; '%2F' stays inside)."""
    segs = path_segments(request, prefix)
    if len(segs) != 1 or not segs[0]:
        raise InvalidInput(f"give one {what} after {prefix} (encode a '/' in it as %2F)")
    return segs[0]


# --- the queue -------------------------------------------------------------------------


@router.post("/transfers/")
@router.post("/transfers")
async def submit(request: Request) -> Response:
    c = await caller(request)
    ids = await threaded(svc.submit, lake(request), c, await body_object(request))
    return json_response({"request_ids": ids}, status=201)


@router.get("/transfers/")
@router.get("/transfers")
async def list_requests(request: Request) -> Response:
    c = await caller(request)
    return stream_response(await threaded(svc.list_requests, lake(request), c, _filters(request)))


@router.get("/transfers/summary")
async def summary(request: Request) -> Response:
    c = await caller(request)
    return json_response(await threaded(svc.summary, lake(request), c))


# --- links and shares ------------------------------------------------------------------


@router.get("/transfers/links")
@router.get("/transfers/links/")
async def list_links(request: Request) -> Response:
    c = await caller(request)
    return json_response(await threaded(svc.list_links, lake(request), c))


@router.put("/transfers/links/{source}/{dest}")
async def set_link(request: Request, source: str, dest: str) -> Response:
    c = await caller(request)
    body = await body_object(request)
    await threaded(svc.set_link, lake(request), c, source, dest, body)
    return Response(status_code=200)


@router.get("/transfers/shares")
@router.get("/transfers/shares/")
async def list_shares(request: Request) -> Response:
    await caller(request)
    return json_response(await threaded(svc.list_shares, lake(request)))


@router.put("/transfers/shares/{rest:path}")
async def set_share(request: Request, rest: str) -> Response:
    c = await caller(request)
    activity = _one_segment(request, "/transfers/shares/", "activity")
    body = await body_object(request)
    unknown = sorted(set(body) - {"weight"})
    if unknown or "weight" not in body:
        raise InvalidInput('the body must be {"weight": <positive number, or null to remove>}')
    await threaded(svc.set_share, lake(request), c, activity, body["weight"])
    return Response(status_code=200)


# --- one request -----------------------------------------------------------------------


@router.get("/transfers/{request_id}")
async def get_request(request: Request, request_id: str) -> Response:
    c = await caller(request)
    rid = _request_id(request_id)
    return json_response(await threaded(svc.get_request, lake(request), c, rid))


@router.delete("/transfers/{request_id}")
async def cancel(request: Request, request_id: str) -> Response:
    c = await caller(request)
    rid = _request_id(request_id)
    await threaded(svc.cancel, lake(request), c, rid)
    return Response(status_code=200)


@router.post("/transfers/{request_id}/retry")
async def retry(request: Request, request_id: str) -> Response:
    c = await caller(request)
    rid = _request_id(request_id)
    new_id = await threaded(svc.retry, lake(request), c, rid)
    return json_response({"request_id": new_id}, status=201)


# --- distances (the rucio client's get/add/update/delete_distance) ----------------------


def _bool_param(request: Request, key: str) -> bool:
    value = request.query_params.get(key, "false").strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidInput(f"{key} must be true or false, got {value!r}")
    return value in ("true", "1")


@router.get("/rses/{source}/distances/{dest}")
async def get_distance(request: Request, source: str, dest: str) -> Response:
    await caller(request)
    return json_response(await threaded(svc.get_distances, lake(request), source, dest))


@router.post("/rses/{source}/distances/{dest}")
async def add_distance(request: Request, source: str, dest: str) -> Response:
    c = await caller(request)
    body = await body_object(request)
    await threaded(svc.add_distance, lake(request), c, source, dest, body)
    return Response("Created", status_code=201)


@router.put("/rses/{source}/distances/{dest}")
async def update_distance(request: Request, source: str, dest: str) -> Response:
    c = await caller(request)
    body = await body_object(request)
    await threaded(svc.update_distance, lake(request), c, source, dest, body)
    return Response(status_code=200)


@router.delete("/rses/{source}/distances/{dest}")
async def delete_distance(request: Request, source: str, dest: str) -> Response:
    c = await caller(request)
    both = _bool_param(request, "bidirectional")
    await threaded(svc.delete_distance, lake(request), c, source, dest, both)
    return Response(status_code=200)
