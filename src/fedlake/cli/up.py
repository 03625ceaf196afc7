"""``fedlake up`` (the embedded lake) and ``fedlake server`` (the API alone, scale-out)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from fedlake.cli.output import console

__all__ = ["register"]


def _settings(data_dir: Path | None, host: str | None, port: int | None):  # type: ignore[no-untyped-def]
    from fedlake.settings import load_settings

    settings = load_settings()
    changes: dict[str, object] = {}
    if data_dir is not None:
        changes["data_dir"] = data_dir.expanduser().resolve()
    if host is not None:
        changes["host"] = host
    if port is not None:
        changes["port"] = port
    return settings.replace(**changes) if changes else settings


def up(
    data_dir: Annotated[
        Path | None, typer.Option(help="where the catalogue and storage live")
    ] = None,
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
) -> None:
    """Start a complete lake: API, daemons and local RSEs, on SQLite. Ctrl-C stops it."""
    import uvicorn

    from fedlake.bootstrap import build_lake, ensure_root
    from fedlake.daemons.embedded import embedded_daemons
    from fedlake.daemons.runner import DaemonGroup
    from fedlake.server.app import create_app
    from fedlake.services.embedded import ensure_local_rses
    from fedlake.services.oidc_clients import ensure_cli_client

    settings = _settings(data_dir, host, port)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with console.status("starting the lake (migrating the catalogue)..."):
        lake = build_lake(settings)
        generated = ensure_root(lake)
        created = ensure_local_rses(lake)
        ensure_cli_client(lake)  # the public OAuth client of `fedlake login`
    pw_file = settings.data_dir / "root-password"
    if settings.root_password and not pw_file.exists():
        pw_file.touch(mode=0o600)
        pw_file.write_text(settings.root_password)
    client_cfg = {
        "url": settings.public_url,
        "account": "root",
        "username": "root",
        "password_file": str(pw_file),
    }
    cfg_path = settings.data_dir / "client.json"
    cfg_path.write_text(json.dumps(client_cfg, indent=2))
    os.chmod(cfg_path, 0o600)
    console.print(f"[bold green]fedlake is up[/] at [bold]{settings.public_url}[/]")
    console.print(f"  data directory : {settings.data_dir}")
    console.print(f"  catalogue      : {_without_password(settings.database_url)}")
    console.print("  account        : root (userpass identity 'root')")
    if generated:
        console.print(f"  password       : [bold]{generated}[/] (generated; kept in {pw_file})")
    elif settings.root_password:
        console.print("  password       : from FEDLAKE_ROOT_PASSWORD")
    else:
        console.print(f"  password       : in {pw_file}")
    if created:
        console.print(f"  new RSEs       : {', '.join(created)}")
    console.print(
        f"  transfers      : a worker process, {settings.transfer_threads} at once "
        f"(log: {settings.data_dir / 'transfers.log'})"
    )
    default_dir = (Path.home() / ".fedlake").resolve()
    if settings.data_dir.resolve() == default_dir:
        console.print("  other shells   : `fedlake ls user.root` works with no configuration")
    else:  # clients look for client.json in ~/.fedlake unless told otherwise
        console.print(
            f"  other shells   : export FEDLAKE_DATA_DIR={settings.data_dir}, then "
            "`fedlake ls user.root`"
        )
    console.print("Press Ctrl-C to stop.")
    daemons = DaemonGroup(embedded_daemons(lake))
    daemons.start()
    try:
        uvicorn.run(
            create_app(lake),
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
        )
    finally:
        daemons.stop()
        lake.close()
        console.print("fedlake stopped.")


def server(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Run the API server only (scale-out: point FEDLAKE_DATABASE_URL at PostgreSQL)."""
    import uvicorn

    from fedlake.bootstrap import build_lake

    settings = _settings(None, host, port)
    lake = build_lake(settings)
    lake.close()
    uvicorn.run(
        "fedlake.server.asgi:app",
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level="warning",
        factory=False,
    )


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(server)


def _without_password(url: str) -> str:
    """The database URL for the banner: a password in it is shown as ``***``."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
