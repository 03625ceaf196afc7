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

``--metrics-port`` (``ServeOptions.metrics_port``): the parent binds that port too, before
anything else (:class:`MetricsPortError` when it cannot), and forks a process that answers
``GET /metrics`` there with the sum of every worker's request counters
(``se.serve_metrics``); each worker's application counts its requests. With several
uvicorn workers the parent starts the metrics process again if it dies, and drops the
in-flight gauge of a worker that died.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
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

__all__ = ["DEFAULT_SERVER", "SERVERS", "MetricsPortError", "ServeOptions", "serve"]

SERVERS = ("uvicorn", "granian")
DEFAULT_SERVER = "uvicorn"

log = logging.getLogger("fedlake.se")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    root: Path | None  # None: the S3 bucket of ``config.s3`` is served
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
    #: answer ``GET /metrics`` (the SE's request counters, all workers) on this port of
    #: ``host``, plain HTTP; None: nothing is counted
    metrics_port: int | None = None


class MetricsPortError(OSError):
    """The metrics port cannot be listened on (taken, or not allowed)."""


def _served(options: ServeOptions) -> str:
    if options.root is None and options.config.s3 is not None:
        return str(options.config.s3.url)
    return str(options.root)


def _build_app(options: ServeOptions) -> Any:
    if options.app_factory is not None:
        return options.app_factory()
    metrics = options.metrics_port is not None
    return create_app(options.root, options.config, fsync=options.fsync, metrics=metrics)


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


class _UvicornServer(uvicorn.Server):
    """uvicorn's server, which drops idle keep-alive connections at once when it stops:
    over TLS, closing one waits for the client's close_notify for up to 30 s, and a client
    that keeps the connection idle in its pool never sends one (a restart took 30 s)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)  # the request being answered, if any
            transport = getattr(connection, "transport", None)
            if transport is not None and (cycle is None or cycle.response_complete):
                transport.abort()
        await super().shutdown(sockets)


def _run_worker(options: ServeOptions, sock: socket.socket) -> None:
    server = _UvicornServer(_uvicorn_config(options))
    server.run(sockets=[sock])


def _fork(run: Callable[[], None], what: str) -> int:
    """The pid of a child process running ``run`` with the default signal handlers."""
    pid = os.fork()
    if pid != 0:
        return pid
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        run()
    except BaseException:
        log.exception("%s failed", what)
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class _MetricsProcess:
    """The process answering ``GET /metrics`` on the metrics port, and the directory of
    the workers' counter files (made fresh here, removed by :meth:`stop`)."""

    def __init__(self, host: str, port: int) -> None:
        try:
            self.sock = _bind(host, port)
        except OSError as exc:
            raise MetricsPortError(
                exc.errno, f"cannot listen for metrics on {host}:{port}: {exc.strerror}"
            ) from None
        from fedlake.se import serve_metrics

        self.directory = serve_metrics.counter_dir()  # before any worker counts
        self.pid = 0
        self.start()
        print(
            f"fedlake se: metrics on http://{host}:{port}/metrics (counters in {self.directory})",
            file=sys.stderr,
            flush=True,
        )

    def start(self) -> None:
        from fedlake.se.serve_metrics import answer_scrapes

        self.pid = _fork(lambda: answer_scrapes(self.sock), "SE metrics process")

    def worker_gone(self, pid: int) -> None:
        from fedlake.se.serve_metrics import worker_gone

        worker_gone(pid)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(self.pid, signal.SIGKILL)
                    deadline = float("inf")
                time.sleep(0.05)
        self.sock.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def serve(options: ServeOptions) -> None:
    """Serve until SIGTERM/SIGINT (blocking); MetricsPortError when ``metrics_port`` cannot
    be listened on."""
    if options.server not in SERVERS:
        raise ValueError(f"unknown server {options.server!r} (one of {', '.join(SERVERS)})")
    if options.metrics_port is not None and options.app_factory is not None:
        raise ValueError("metrics_port counts the SE's own requests: not with app_factory")
    metrics = None
    if options.metrics_port is not None:
        metrics = _MetricsProcess(options.host, options.metrics_port)
    try:
        if options.server == "granian":
            _serve_granian(options)
        else:
            _serve_uvicorn(options, metrics)
    finally:
        if metrics is not None:
            metrics.stop()


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _serve_one(options: ServeOptions, metrics: _MetricsProcess | None) -> None:
    """One uvicorn worker: this process."""
    if metrics is not None:
        # uvicorn raises the SIGTERM that stopped it again once it is done: by default that
        # would end this process before the metrics process is stopped
        signal.signal(signal.SIGTERM, _exit_on_signal)
    _UvicornServer(_uvicorn_config(options)).run()


def _serve_uvicorn(options: ServeOptions, metrics: _MetricsProcess | None) -> None:
    if options.workers <= 1:
        _serve_one(options, metrics)
        return
    sock = _bind(options.host, options.port)
    children: dict[int, int] = {}  # pid -> worker number
    stopping = False

    def start(number: int) -> None:
        pid = _fork(lambda: _run_worker(options, sock), f"SE worker {number}")
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
        f"fedlake se: {options.workers} workers serving {_served(options)} on "
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
        if metrics is not None and pid == metrics.pid:
            if not stopping:
                log.warning("SE metrics process exited (status %d); starting it again", status)
                metrics.start()
            continue
        number = children.pop(pid, -1)
        if metrics is not None and number >= 0:
            metrics.worker_gone(pid)
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
