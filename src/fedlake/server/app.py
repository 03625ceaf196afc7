"""The ASGI application factory."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.exceptions import HTTPException

from fedlake import __version__
from fedlake.bootstrap import Lake
from fedlake.domain.errors import LakeError
from fedlake.server.errors import handle_http_exception, handle_lake_error, handle_unexpected
from fedlake.server.routes import (
    accounts,
    core,
    dids,
    embargo,
    files,
    iam,
    iam_policies,
    oidc,
    replicas,
    rses,
    rules,
    subscriptions,
    transfers,
    trust,
)

__all__ = ["create_app"]


def create_app(lake: Lake) -> FastAPI:
    app = FastAPI(
        title="fedlake",
        version=__version__,
        description="Federated data lake API (Rucio-compatible subset plus fedlake endpoints).",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.lake = lake
    app.router.redirect_slashes = False
    # no two routers match the same path (transfers adds /rses/{a}/distances/{b}, which no
    # RSE route matches), so their order only decides how many routes a request is matched
    # against: the hot ones (DIDs, replicas) come first
    modules = (dids, replicas, rules, files, core, accounts, rses, transfers, subscriptions, iam)
    for module in (*modules, embargo, iam_policies, trust, oidc):
        app.include_router(module.router)
    app.add_exception_handler(LakeError, handle_lake_error)
    app.add_exception_handler(HTTPException, handle_http_exception)
    app.add_exception_handler(Exception, handle_unexpected)
    return app
