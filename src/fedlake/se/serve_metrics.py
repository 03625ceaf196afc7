"""The SE's request metrics (``fedlake se serve --metrics-port``; docs/se.md, "Request
metrics").

Each worker counts its requests in :class:`RequestMetrics`, which ``SEApp`` wraps around
every HTTP request: the ASGI ``receive`` and ``send`` are wrapped to count the body bytes
and see the status. The counts are kept in plain numbers and written every
``WRITE_EVERY`` seconds (and at shutdown) to prometheus-client's multiprocess files, in a
fresh directory per run (:func:`counter_dir`, under the temporary directory: the served
root may be read-only or on a network file system) named by ``PROMETHEUS_MULTIPROC_DIR``
before prometheus-client is first imported (it reads the variable once, at import). A
process of its own (:func:`answer_scrapes`, forked by ``se.server`` before the workers)
answers ``GET /metrics`` on the metrics port with the sum over all workers: the data port
serves files only, a file named ``metrics`` included.

prometheus-client is imported lazily here, so that importing this module never fixes its
mode. Without ``--metrics-port`` nothing of this runs.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fedlake.se.http import Message, Receive, Scope, Send

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

__all__ = ["METHODS", "RequestMetrics", "answer_scrapes", "counter_dir", "scrape", "worker_gone"]

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: methods counted under their own name; any other token a client sends is ``OTHER`` (a
#: label value per made-up method would grow the series without bound)
METHODS = frozenset(
    {"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PROPFIND", "MKCOL", "MOVE", "COPY"}
)
#: seconds: small-file requests in milliseconds, whole-file transfers in minutes
BUCKETS = (
    *(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, float("inf")),
)
#: seconds between writes of the counts to the counter files (a scrape is this late at most)
WRITE_EVERY = 0.25
#: the code of a request answered with no response (the client went away), as nginx's
CLIENT_GONE = 499


def counter_dir() -> Path:
    """A fresh directory for the workers' counter files, made this run's
    ``PROMETHEUS_MULTIPROC_DIR`` (before prometheus-client is imported anywhere)."""
    path = Path(tempfile.mkdtemp(prefix="fedlake-se-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def worker_gone(pid: int) -> None:
    """Drop the in-flight gauge of a worker that exited (its counters still add up)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def scrape() -> bytes:
    """The Prometheus text of every worker's counters."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


async def _metrics_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    from prometheus_client import CONTENT_TYPE_LATEST

    headers: list[tuple[bytes, bytes]] = []
    if scope["path"] != "/metrics":
        status, body, kind = 404, b"only /metrics is served on this port\n", "text/plain"
    elif scope["method"] not in ("GET", "HEAD"):
        status, body, kind = 405, b"GET /metrics\n", "text/plain"
        headers.append((b"allow", b"GET, HEAD"))
    else:
        status, body, kind = 200, scrape(), CONTENT_TYPE_LATEST
    headers += [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def answer_scrapes(sock: socket.socket) -> None:
    """Answer ``GET /metrics`` on the listening ``sock`` until SIGTERM (blocking: the
    metrics process)."""
    import uvicorn

    config = uvicorn.Config(
        _metrics_endpoint,
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


class _ByMethod:
    """The counts of one method label not yet written, and its children (made on first use
    and kept: no label lookup per request)."""

    __slots__ = ("_duration", "_requests", "buckets", "codes", "label", "pending", "seconds")

    def __init__(self, label: str, requests: Counter, duration: Histogram) -> None:
        self.label = label
        self._requests = requests
        self._duration = duration.labels(label)
        self.codes: dict[int, Counter] = {}
        self.pending: dict[int, int] = {}  # status code -> requests
        self.buckets = [0] * len(BUCKETS)  # durations, by bucket
        self.seconds = 0.0

    def add(self, code: int, seconds: float) -> None:
        self.pending[code] = self.pending.get(code, 0) + 1
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1  # the first bound >= seconds
        self.seconds += seconds

    def write(self) -> None:
        for code, n in self.pending.items():
            child = self.codes.get(code)
            if child is None:
                child = self.codes[code] = self._requests.labels(self.label, str(code))
            child.inc(n)
        self.pending.clear()
        # n observations at once: prometheus-client's Histogram has no public call for that;
        # in multiprocess mode each bucket holds its own (not cumulative) count
        for i, n in enumerate(self.buckets):
            if n:
                self._duration._buckets[i].inc(n)
                self.buckets[i] = 0
        if self.seconds:
            self._duration._sum.inc(self.seconds)
            self.seconds = 0.0


class _Meter:
    """One request's ASGI ``receive`` and ``send``, counting body bytes and the status."""

    __slots__ = ("_receive", "_send", "headers", "received", "sent", "status")

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.received = 0
        self.sent = 0
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []

    async def receive(self) -> Message:
        message = await self._receive()
        body = message.get("body")
        if body:
            self.received += len(body)
        return message

    def send(self, message: Message) -> Awaitable[None]:
        # counted as handed to the server, and not awaited here: one coroutine less a message
        kind = message["type"]
        if kind == "http.response.body":
            body = message.get("body")
            if body:
                self.sent += len(body)
        elif kind == "http.response.start":
            self.status = message["status"]
            self.headers = message["headers"]
        elif kind == "http.response.pathsend":  # the server sends the file: as announced
            for name, value in self.headers:
                if name.lower() == b"content-length":
                    self.sent += int(value)
        return self._send(message)


class RequestMetrics:
    """The request counters of one worker process, and the wrapper that counts.

    Requests are counted in plain numbers and written to the counter files at most
    ``WRITE_EVERY`` seconds later, and when the server shuts down (:meth:`write`): a write
    to those files costs about a microsecond per figure.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = CollectorRegistry()  # not the global one: several apps in one process
        self._requests = Counter(
            "fedlake_se_requests",
            "requests answered, by method and status code",
            ["method", "code"],
            registry=registry,
        )
        self._duration = Histogram(
            "fedlake_se_request_duration_seconds",
            "from the request's arrival to the last byte handed to the server, by method",
            ["method"],
            buckets=BUCKETS,
            registry=registry,
        )
        self._sent = Counter(
            "fedlake_se_sent_bytes", "bytes sent in response bodies", registry=registry
        )
        self._received = Counter(
            "fedlake_se_received_bytes", "bytes received in request bodies", registry=registry
        )
        self._in_flight = Gauge(
            "fedlake_se_requests_in_flight",
            "requests being answered",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self._methods: dict[str, _ByMethod] = {}
        self.in_flight = 0
        self.sent = 0  # bytes not yet written
        self.received = 0
        self._write_due = False

    def _by_method(self, method: str) -> _ByMethod:
        found = self._methods.get(method)
        if found is None:
            label = method if method in METHODS else "OTHER"
            found = self._methods.get(label) or _ByMethod(label, self._requests, self._duration)
            self._methods[label] = found  # only known names and OTHER: a bounded table
        return found

    def _write_soon(self) -> None:
        self._write_due = True
        asyncio.get_running_loop().call_later(WRITE_EVERY, self.write)

    def write(self) -> None:
        """Write what was counted since the last write to the counter files."""
        self._write_due = False
        for by_method in self._methods.values():
            by_method.write()
        if self.sent:
            self._sent.inc(self.sent)
            self.sent = 0
        if self.received:
            self._received.inc(self.received)
            self.received = 0
        self._in_flight.set(self.in_flight)

    async def count(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run ``app`` on one HTTP request, counting it."""
        by_method = self._by_method(scope["method"])
        meter = _Meter(receive, send)
        started = time.perf_counter()
        self.in_flight += 1
        if not self._write_due:
            self._write_soon()
        try:
            await app(scope, meter.receive, meter.send)
        except Exception:
            if not meter.status:  # the server answers 500 itself
                meter.status = 500
            raise
        finally:
            self.in_flight -= 1
            by_method.add(meter.status or CLIENT_GONE, time.perf_counter() - started)
            self.sent += meter.sent
            self.received += meter.received
            if not self._write_due:
                self._write_soon()
