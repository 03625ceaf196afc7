"""``fedlake se serve``: serve a POSIX directory (or an S3 bucket) over HTTP/WebDAV with
the lake's tokens (docs/se.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from fedlake.se.config import SEConfig

__all__ = ["ServerChoice", "check_tls", "load_settings", "register", "server_choice", "warn_closed"]

#: ``--server``: the HTTP server the SE runs on (``fedlake.se.server.SERVERS``)
ServerChoice = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="FEDLAKE_SE_SERVER",
        help="HTTP server: uvicorn (default) or granian (sends whole files itself)",
        show_default=False,
    ),
]


def server_choice(name: str | None) -> str:
    """The server to run (``--server``, else the default), checked."""
    import importlib.util

    from fedlake.se.server import DEFAULT_SERVER, SERVERS

    name = (name or DEFAULT_SERVER).strip().lower()
    if name not in SERVERS:
        raise typer.BadParameter(f"{name!r}: one of {', '.join(SERVERS)}", param_hint="--server")
    if importlib.util.find_spec(name) is None:
        raise typer.BadParameter(
            f"{name} is not installed: pip install 'fedlake[{name}]'", param_hint="--server"
        )
    return name


def load_settings(config: Path | None, *, allow_anonymous: bool) -> SEConfig:
    """The server's settings: ``--config``'s file (checked) and ``--allow-anonymous``."""
    import dataclasses

    from fedlake.domain.errors import InvalidInput
    from fedlake.se.config import SEConfig, load_config

    try:
        settings = load_config(config) if config is not None else SEConfig()
    except InvalidInput as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from None
    if allow_anonymous:
        settings = dataclasses.replace(settings, allow_anonymous=True)
    return settings


def check_tls(cert: Path | None, key: Path | None) -> None:
    """``--tls-cert`` and ``--tls-key``: both or neither, and files."""
    if (cert is None) != (key is None):
        raise typer.BadParameter("give both --tls-cert and --tls-key, or neither")
    for path in (cert, key):
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"{path} is not a file", param_hint="--tls-cert/--tls-key")


def warn_closed(settings: SEConfig, command: str) -> None:
    """Say so when nothing may pass: no issuer, no area, no anonymous access."""
    if not settings.allow_anonymous and not settings.issuers and not settings.areas:
        typer.echo(
            f"fedlake se {command}: no issuers and no storage areas configured: every request "
            "will be refused (give --config, or --allow-anonymous for development)",
            err=True,
        )


def serve(
    root: Annotated[
        Path | None,
        typer.Option(help="the directory to serve (default: root in the server table of --config)"),
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8443,
    allow_anonymous: Annotated[
        bool,
        typer.Option(
            "--allow-anonymous", help="anyone may read and write (development and tests only)"
        ),
    ] = False,
    tls_cert: Annotated[
        Path | None, typer.Option(help="TLS certificate (PEM); with --tls-key: https")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
    config: Annotated[
        Path | None,
        typer.Option(help="TOML file: trusted issuers, storage areas and their policies"),
    ] = None,
    fsync: Annotated[
        bool, typer.Option("--fsync", help="flush every PUT to disk before answering")
    ] = False,
    access_log: Annotated[bool, typer.Option("--access-log", help="log every request")] = False,
    s3: Annotated[
        str | None,
        typer.Option(
            "--s3",
            help="serve this S3 bucket (and key prefix) instead of a directory: "
            "s3://HOST:PORT/BUCKET\\[/PREFIX]; credentials from FEDLAKE_S3_ACCESS_KEY and "
            "FEDLAKE_S3_SECRET_KEY or the s3 table of --config",
            show_default=False,
        ),
    ] = None,
    tape: Annotated[
        bool,
        typer.Option(
            "--tape",
            help="tape mode: the root is a tape emulation, with the WLCG Tape REST API "
            "(settings: the tape table of --config)",
        ),
    ] = False,
    server: ServerChoice = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="answer GET /metrics (Prometheus text: requests, bytes, durations of all "
            "workers) on this port of --host, plain HTTP (default: nothing is counted)",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve a directory (or an S3 bucket) over HTTP/WebDAV (GET, HEAD, PUT, DELETE,
    MKCOL, MOVE, PROPFIND, COPY)."""
    import dataclasses

    from fedlake.se.config import TapeConfig
    from fedlake.se.server import MetricsPortError, ServeOptions
    from fedlake.se.server import serve as run

    settings = load_settings(config, allow_anonymous=allow_anonymous)
    if tape and settings.tape is None:
        settings = dataclasses.replace(settings, tape=TapeConfig())
    if s3 is not None or settings.s3 is not None:
        if root is not None or tape or settings.tape is not None:
            raise typer.BadParameter(
                "--s3 serves a bucket: give it without --root and --tape (or the tape table)",
                param_hint="--s3",
            )
        settings = s3_settings(settings, s3)
    else:
        root = root or settings.root
        if root is None:
            raise typer.BadParameter("give the directory to serve", param_hint="--root")
        if not root.is_dir():
            raise typer.BadParameter(f"{root} is not a directory", param_hint="--root")
    chosen = server_choice(server)
    check_tls(tls_cert, tls_key)
    if metrics_port == port:
        raise typer.BadParameter(
            f"{port} is --port: give the metrics a port of their own", param_hint="--metrics-port"
        )
    warn_closed(settings, "serve")
    try:
        run(
            ServeOptions(
                root=root,
                config=settings,
                host=host,
                port=port,
                workers=workers,
                tls_cert=tls_cert,
                tls_key=tls_key,
                fsync=fsync,
                access_log=access_log,
                server=chosen,
                metrics_port=metrics_port,
            )
        )
    except MetricsPortError as exc:
        raise typer.BadParameter(str(exc), param_hint="--metrics-port") from None


def s3_settings(settings: SEConfig, url: str | None) -> SEConfig:
    """The settings with the S3 backend's URL (``--s3`` wins over the s3 table), after
    checking once that the bucket exists and the credentials work (a clear error now,
    not at every request)."""
    import dataclasses

    from fedlake.domain.errors import InvalidInput
    from fedlake.se.config import S3Config, check_s3_url
    from fedlake.se.object_store import ObjectStore
    from fedlake.storage.backends.s3 import S3Storage

    backend = settings.s3 or S3Config()
    if url is not None:
        try:
            check_s3_url(url, "--s3")
        except InvalidInput as exc:
            raise typer.BadParameter(str(exc), param_hint="--s3") from None
        backend = dataclasses.replace(backend, url=url)
    if backend.url is None:
        raise typer.BadParameter(
            "give the bucket to serve (s3://HOST:PORT/BUCKET)", param_hint="--s3"
        )
    try:
        storage = S3Storage(**backend.options)
    except (TypeError, ValueError) as exc:
        raise typer.BadParameter(f"the s3 table: {exc}", param_hint="--config") from None
    try:
        ObjectStore(backend.url, storage).check()
    except OSError as exc:
        typer.echo(f"fedlake se serve: cannot serve {backend.url}: {exc}", err=True)
        raise typer.Exit(1) from None
    return dataclasses.replace(settings, s3=backend)


def register(se_app: typer.Typer) -> None:
    se_app.command("serve")(serve)
