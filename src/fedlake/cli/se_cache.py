"""``fedlake se cache``: a read-through cache in front of any storage URL, served as HTTP
(docs/se.md, "Read-through cache")."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from fedlake.cli.se_serve import (
    ServerChoice,
    check_tls,
    load_settings,
    server_choice,
    warn_closed,
)

__all__ = ["parse_size", "register"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def parse_size(text: str) -> int:
    """``1048576``, ``512M``, ``10G``, ``1.5TiB`` (binary units) → bytes."""
    got = _SIZE.match(text)
    if got is None:
        raise ValueError(f"{text!r} is not a size: give bytes, or a number with K, M, G or T")
    return int(float(got.group(1)) * _UNITS[got.group(2).upper()])


def _origin_options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--origin-option")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def cache(
    origin: Annotated[
        str,
        typer.Option(
            help="storage URL prefix the client's path is appended to "
            "(https://, davs://, s3://, root://, file://)"
        ),
    ],
    directory: Annotated[Path, typer.Option("--dir", help="the cache's directory")],
    size: Annotated[str, typer.Option(help="disk bound: bytes, or 500G, 2T ...")] = "10G",
    high: Annotated[float, typer.Option(help="evict when use passes this share of --size")] = 0.95,
    low: Annotated[float, typer.Option(help="evict down to this share of --size")] = 0.85,
    block_size: Annotated[
        str, typer.Option(help="bytes per cached block; 0: whole files (checked before served)")
    ] = "0",
    origin_option: Annotated[
        list[str] | None,
        typer.Option(help="KEY=VALUE option of the origin's storage plugin (JSON value)"),
    ] = None,
    lake: Annotated[
        str | None,
        typer.Option(help="the lake's API URL: check files against the catalogue's adler32"),
    ] = None,
    lake_token_file: Annotated[
        Path | None, typer.Option(help="file holding the token the cache asks the lake with")
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8444,
    allow_anonymous: Annotated[
        bool, typer.Option("--allow-anonymous", help="anyone may read through the cache")
    ] = False,
    config: Annotated[
        Path | None, typer.Option(help="TOML file as for 'se serve': issuers, storage areas")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="TLS certificate (PEM); with --tls-key: https")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="TLS private key (PEM)")] = None,
    workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1,
    fsync: Annotated[bool, typer.Option("--fsync", help="flush each block before keeping it")] = (
        False
    ),
    access_log: Annotated[bool, typer.Option("--access-log", help="log every request")] = False,
    server: ServerChoice = None,
) -> None:
    """Read-through cache: serve files of an origin (HTTP, S3, XRootD, POSIX) over HTTP,
    kept on a bounded disk with LRU eviction."""
    import os
    import shutil

    from fedlake.domain.errors import InvalidInput

    try:
        capacity, block = parse_size(size), parse_size(block_size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not 0 < low < high <= 1:
        raise typer.BadParameter("need 0 < --low < --high <= 1")
    settings = load_settings(config, allow_anonymous=allow_anonymous)
    chosen = server_choice(server)
    check_tls(tls_cert, tls_key)
    token = lake_token_file.read_text().strip() if lake_token_file is not None else None
    directory.mkdir(parents=True, exist_ok=True)
    # counters of all workers add up through files here (before prometheus_client loads)
    metrics_dir = directory / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    from fedlake.se.cache_app import CacheOptions, create_cache_app
    from fedlake.se.cache_fetch import Origin
    from fedlake.se.cache_store import CacheStore
    from fedlake.se.server import ServeOptions, serve

    options = CacheOptions(
        origin=origin,
        directory=directory,
        size=capacity,
        high=high,
        low=low,
        block_size=block,
        origin_options=_origin_options(origin_option or []),
        lake=lake,
        lake_token=token,
        config=settings,
        fsync=fsync,
    )
    try:
        Origin(origin, options.origin_options)
        store = CacheStore(directory, capacity, high=high, low=low, block_size=block)
    except (ValueError, TypeError, InvalidInput) as exc:
        raise typer.BadParameter(str(exc)) from None
    found = store.recover()  # once, before any worker fills
    typer.echo(
        f"fedlake se cache: {origin} cached in {directory} ({found.used} of {capacity} bytes "
        f"in use; {found.parts} unfinished fills and {found.orphans + found.lost_rows} "
        "unindexed blocks cleaned up)",
        err=True,
    )
    warn_closed(settings, "cache")
    serve(
        ServeOptions(
            root=directory,
            config=settings,
            host=host,
            port=port,
            workers=workers,
            tls_cert=tls_cert,
            tls_key=tls_key,
            access_log=access_log,
            app_factory=lambda: create_cache_app(options),
            server=chosen,
        )
    )


def register(se_app: typer.Typer) -> None:
    se_app.command("cache")(cache)
