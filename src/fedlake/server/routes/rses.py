"""RSEs (Rucio paths)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from fedlake.domain.errors import InvalidInput
from fedlake.server.http import (
    body_object,
    body_value,
    caller,
    json_response,
    lake,
    stream_response,
    threaded,
)
from fedlake.services import rses as svc

router = APIRouter(tags=["rses"])


@router.get("/rses/")
@router.get("/rses")
async def list_rses(request: Request) -> Response:
    await caller(request)
    expression = request.query_params.get("expression")
    return stream_response(await threaded(svc.list_rses, lake(request), expression))


@router.get("/rses/{rse}")
async def get_rse(request: Request, rse: str) -> Response:
    await caller(request)
    return json_response(await threaded(svc.get_rse, lake(request), rse))


@router.post("/rses/{rse}")
async def add_rse(request: Request, rse: str) -> Response:
    c = await caller(request)
    await threaded(svc.add_rse, lake(request), c, rse, await body_object(request, required=False))
    return Response("Created", status_code=201)


@router.put("/rses/{rse}")
async def update_rse(request: Request, rse: str) -> Response:
    c = await caller(request)
    await threaded(svc.update_rse, lake(request), c, rse, await body_object(request))
    return Response("Created", status_code=201)


@router.get("/rses/{rse}/attr/")
@router.get("/rses/{rse}/attr")
async def rse_attributes(request: Request, rse: str) -> Response:
    await caller(request)
    return json_response(await threaded(svc.attributes, lake(request), rse))


@router.post("/rses/{rse}/attr/{key}")
async def set_rse_attribute(request: Request, rse: str, key: str) -> Response:
    c = await caller(request)
    value = await body_value(request)
    await threaded(svc.set_attribute, lake(request), c, rse, key, value)
    return Response("Created", status_code=201)


@router.delete("/rses/{rse}/attr/{key}")
async def delete_rse_attribute(request: Request, rse: str, key: str) -> Response:
    c = await caller(request)
    await threaded(svc.delete_attribute, lake(request), c, rse, key)
    return Response(status_code=200)


@router.get("/rses/{rse}/protocols")
@router.get("/rses/{rse}/protocols/")
async def protocols(request: Request, rse: str) -> Response:
    await caller(request)
    return json_response(await threaded(svc.protocols, lake(request), rse))


@router.get("/rses/{rse}/protocols/{scheme}")
async def protocol_settings(request: Request, rse: str, scheme: str) -> Response:
    await caller(request)
    settings = await threaded(svc.get_rse, lake(request), rse)
    settings["protocols"] = [p for p in settings["protocols"] if p["scheme"] == scheme]
    return json_response(settings)


@router.post("/rses/{rse}/protocols/{scheme}")
async def add_protocol(request: Request, rse: str, scheme: str) -> Response:
    c = await caller(request)
    spec = await body_object(request)
    spec["scheme"] = scheme
    await threaded(svc.add_protocol, lake(request), c, rse, spec)
    return Response("Created", status_code=201)


@router.delete("/rses/{rse}/protocols/{scheme}")
async def delete_protocol(request: Request, rse: str, scheme: str) -> Response:
    c = await caller(request)
    await threaded(svc.delete_protocol, lake(request), c, rse, scheme)
    return Response(status_code=200)


@router.get("/rses/{rse}/lfns2pfns")
async def lfns2pfns(request: Request, rse: str) -> Response:
    c = await caller(request)
    q = request.query_params
    lfns = q.getlist("lfn")
    if not lfns:
        raise InvalidInput("give at least one lfn=scope:name")
    return json_response(
        await threaded(
            svc.lfns2pfns,
            lake(request),
            c,
            rse,
            lfns,
            q.get("scheme"),
            q.get("operation"),
            q.get("domain"),
        )
    )


@router.get("/rses/{rse}/usage")
async def usage(request: Request, rse: str) -> Response:
    c = await caller(request)
    return stream_response(await threaded(svc.usage, lake(request), c, rse))


@router.put("/rses/{rse}/usage")
async def set_usage(request: Request, rse: str) -> Response:
    c = await caller(request)
    await threaded(svc.set_usage, lake(request), c, rse, await body_object(request))
    return Response(status_code=200)


@router.get("/rses/{rse}/limits")
async def limits(request: Request, rse: str) -> Response:
    await caller(request)
    return json_response(await threaded(svc.limits, lake(request), rse))


@router.put("/rses/{rse}/limits")
async def set_limits(request: Request, rse: str) -> Response:
    c = await caller(request)
    body = await body_object(request)
    for name, value in body.items():
        await threaded(svc.set_limit, lake(request), c, rse, name, value)
    return Response(status_code=200)
