"""Running the SE: uvicorn or granian, optional TLS, N worker processes.

``granian`` (a Rust HTTP server; extra ``fedlake[granian]``): its parent binds the socket
and forks the workers; each builds its own application (thread pools, key caches) from
the options in memory, through the loader given to granian instead of an import string.
It announces ``http.response.pathsend``, so whole files are sent by Rust (``se.read``,
``se.cache_app``). A worker that dies is started again, unless it dies again within
5.5 s (granian then stops the server).

``uvicorn`` (the default; httptools, uvloop): with more than one worker the parent binds the socket,
forks the workers and supervises them: a worker that dies is started again; SIGTERM or
SIGINT stops them all. uvicorn's own ``--workers`` needs the application as an import
string and re-imports it in spawned processes, which would have to carry the
configuration through the environment; forking keeps it in memory.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from fedlake.se.app import create_app
from fedlake.se.config import SEConfig

__all__ = ["DEFAULT_SERVER", "SERVERS", "ServeOptions", "serve"]

SERVERS = ("uvicorn", "granian")
DEFAULT_SERVER = "uvicorn"

log = logging.getLogger("fedlake.se")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    root: Path
    config: SEConfig
    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 1
    tls_cert: Path | None = None
    tls_key: Path | None = None
    fsync: bool = False
    access_log: bool = False
    log_level: str = "warning"
    #: builds another ASGI application in each worker (the read-through cache) instead of
    #: the SE serving ``root``
    app_factory: Callable[[], Any] | None = None
    #: the HTTP server: one of ``SERVERS``
    server: str = DEFAULT_SERVER


def _build_app(options: ServeOptions) -> Any:
    if options.app_factory is not None:
        return options.app_factory()
    return create_app(options.root, options.config, fsync=options.fsync)


def _serve_granian(options: ServeOptions) -> None:
    from granian.constants import HTTPModes, Interfaces, Loops, SSLProtocols
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import MPServer

    # the workers must be forked: the loader below is a closure over ``options``
    multiprocessing.set_start_method("fork", force=True)
    level = "info" if options.access_log else options.log_level
    server = MPServer(
        "fedlake.se.server",  # a name only: the loader builds the application
        address=options.host,
        port=options.port,
        interface=Interfaces.ASGI,  # with lifespan: the thread pool is shut down
        workers=options.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,  # as uvicorn: no HTTP/2 negotiated over TLS
        http1_settings=HTTP1Settings(header_read_timeout=30_000),
        websockets=False,
        backlog=2048,
        log_level=LogLevels(level),
        log_access=options.access_log,
        ssl_cert=options.tls_cert,
        ssl_key=options.tls_key,
        ssl_protocol_min=SSLProtocols.tls12,  # gfal2/davix and older clients
        respawn_failed_workers=True,
    )
    server.serve(target_loader=lambda: _build_app(options), wrap_loader=False)


def _uvicorn_config(options: ServeOptions) -> uvicorn.Config:
    return uvicorn.Config(
        _build_app(options),
        host=options.host,
        port=options.port,
        http="httptools",
        loop="uvloop",
        lifespan="on",
        access_log=options.access_log,
        # uvicorn writes access lines at level info: --access-log would print nothing
        log_level="info" if options.access_log else options.log_level,
        ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
        ssl_keyfile=str(options.tls_key) if options.tls_key else None,
        timeout_keep_alive=30,
        server_header=False,
        date_header=True,
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _run_worker(options: ServeOptions, sock: socket.socket) -> None:
    server = uvicorn.Server(_uvicorn_config(options))
    server.run(sockets=[sock])


def serve(options: ServeOptions) -> None:
    """Serve until SIGTERM/SIGINT (blocking)."""
    if options.server not in SERVERS:
        raise ValueError(f"unknown server {options.server!r} (one of {', '.join(SERVERS)})")
    if options.server == "granian":
        _serve_granian(options)
    else:
        _serve_uvicorn(options)


def _serve_uvicorn(options: ServeOptions) -> None:
    if options.workers <= 1:
        uvicorn.Server(_uvicorn_config(options)).run()
        return
    sock = _bind(options.host, options.port)
    children: dict[int, int] = {}  # pid -> worker number
    stopping = False

    def start(number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                _run_worker(options, sock)
            except BaseException:
                log.exception("SE worker %d failed", number)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = number

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for number in range(options.workers):
        start(number)
    print(
        f"fedlake se: {options.workers} workers serving {options.root} on "
        f"{'https' if options.tls_cert else 'http'}://{options.host}:{options.port}",
        file=sys.stderr,
        flush=True,
    )
    restarts: list[float] = []
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        number = children.pop(pid, -1)
        if number < 0 or stopping:
            continue
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 60] + [now]
        if len(restarts) > 10 * options.workers:
            log.error("SE workers keep dying; stopping")
            stop(signal.SIGTERM, None)
            continue
        log.warning("SE worker %d exited (status %d); starting it again", number, status)
        start(number)
    sock.close()
