"""Trusted external token issuers and group -> account mappings (admin only).

An issuer is a URL: in paths it is one percent-encoded segment
(``/iam/issuers/https%3A%2F%2Fiam.example.org%2F``).
"""

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
from fedlake.services import trust as svc

router = APIRouter(tags=["iam"])


def _issuer(request: Request) -> str:
    parts = [p for p in path_segments(request, "/iam/issuers/") if p]
    if len(parts) != 1:
        raise InvalidInput("name the issuer as one percent-encoded path segment")
    return parts[0]


@router.get("/iam/issuers")
async def list_issuers(request: Request) -> Response:
    c = await caller(request)
    return stream_response(await threaded(svc.list_issuers, lake(request), c))


@router.post("/iam/issuers")
async def add_issuer(request: Request) -> Response:
    c = await caller(request)
    body = await body_object(request)
    return json_response(await threaded(svc.add_issuer, lake(request), c, body), 201)


@router.get("/iam/issuers/{issuer:path}")
async def get_issuer(request: Request, issuer: str) -> Response:
    c = await caller(request)
    return json_response(await threaded(svc.get_issuer, lake(request), c, _issuer(request)))


@router.patch("/iam/issuers/{issuer:path}")
async def update_issuer(request: Request, issuer: str) -> Response:
    c = await caller(request)
    body = await body_object(request)
    name = _issuer(request)
    return json_response(await threaded(svc.update_issuer, lake(request), c, name, body))


@router.delete("/iam/issuers/{issuer:path}")
async def remove_issuer(request: Request, issuer: str) -> Response:
    c = await caller(request)
    await threaded(svc.remove_issuer, lake(request), c, _issuer(request))
    return Response(status_code=200)


@router.get("/iam/group-mappings")
async def list_mappings(request: Request) -> Response:
    c = await caller(request)
    issuer = request.query_params.get("issuer")
    return stream_response(await threaded(svc.list_mappings, lake(request), c, issuer))


@router.post("/iam/group-mappings")
async def add_mapping(request: Request) -> Response:
    c = await caller(request)
    body = await body_object(request)
    await threaded(svc.add_mapping, lake(request), c, body)
    return Response("Created", status_code=201)


@router.delete("/iam/group-mappings")
async def remove_mapping(request: Request) -> Response:
    c = await caller(request)
    issuer, group = request.query_params.get("issuer"), request.query_params.get("group")
    if not issuer or not group:
        raise InvalidInput("name the mapping: ?issuer=URL&group=/a/b")
    await threaded(svc.remove_mapping, lake(request), c, issuer, group)
    return Response(status_code=200)
