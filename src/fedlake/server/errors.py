"""The one table that turns exceptions into HTTP responses (Rucio's wire format).

Rucio clients read ``ExceptionClass``/``ExceptionMessage`` headers and a JSON body;
both are always sent.
"""

from __future__ import annotations

import json
import logging
import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from fedlake.domain.errors import LakeError

__all__ = ["error_response", "handle_http_exception", "handle_lake_error", "handle_unexpected"]

log = logging.getLogger("fedlake.server")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HTTP_CLASSES = {404: "MethodNotAllowed", 405: "MethodNotAllowed", 413: "InvalidObject"}


def error_response(status: int, cls: str, message: str, own_class: str | None = None) -> Response:
    """``own_class``: fedlake's class name, for fedlake's client (several fedlake classes
    share one Rucio class)."""
    one_line = " ".join(message.split())
    header = one_line if len(one_line) <= 125 else one_line[:125] + "..."
    fields = {"ExceptionClass": cls, "ExceptionMessage": one_line}
    if own_class:
        fields["FedlakeClass"] = own_class
    body = json.dumps(fields)
    return Response(
        body,
        status_code=status,
        media_type="application/octet-stream",
        headers={
            "ExceptionClass": cls,
            "ExceptionMessage": header.encode("latin-1", "replace").decode("latin-1"),
        },
    )


async def handle_lake_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, LakeError)
    response = error_response(exc.status, exc.rucio_class, exc.message, type(exc).__name__)
    if exc.status == 503:  # nothing was changed: the same request may be sent again
        response.headers["Retry-After"] = "1"
    return response


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        path = str(request.scope.get("path", ""))
        if _CONTROL.search(path):  # route patterns never match a newline
            return error_response(
                400,
                "InvalidObject",
                f"the path {path!r} contains a control character "
                "(NUL, newline, tab...); names may not contain them",
            )
        return error_response(
            404, "RucioException", f"no such endpoint: {request.method} {request.url.path}"
        )
    cls = _HTTP_CLASSES.get(exc.status_code, "RucioException")
    return error_response(exc.status_code, cls, str(exc.detail))


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(
        500, "RucioException", f"internal error ({type(exc).__name__}); see the server log"
    )
