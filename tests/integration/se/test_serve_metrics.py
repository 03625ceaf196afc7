"""``fedlake se serve --metrics-port``: every worker's request counters on a port of their own.

Real servers with two workers, on uvicorn and on granian (which sends a whole file bigger
than 256 KiB itself: its bytes are counted as announced). Each test reads ``/metrics``
before and after its own requests and checks the difference exactly, summed over the
workers (which write their counts within 0.25 s: the scrape is repeated until they show);
the counter files show that both workers counted.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import free_port, wait_until
from tests.servers.fedlake_se import SEServer, running_se

SERVERS = ["uvicorn", "granian"]
Sample = tuple[str, tuple[tuple[str, str], ...]]  # name, sorted labels


class MeteredSE:
    def __init__(self, se: SEServer, metrics_port: int) -> None:
        self.se = se
        self.metrics_port = metrics_port

    def scrape(self) -> dict[Sample, float]:
        response = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }

    def settled(self) -> dict[Sample, float]:
        """``/metrics`` once every count of earlier requests is written (two scrapes 0.3 s
        apart agree)."""
        last = self.scrape()
        for _ in range(50):
            time.sleep(0.3)
            now, last = last, self.scrape()
            if now == last:
                return last
        raise AssertionError(f"/metrics keeps changing: {last}")

    def scrape_when(self, check: Callable[[dict[Sample, float]], bool]) -> dict[Sample, float]:
        """``/metrics`` once ``check`` holds on it (or after 10 s: the caller's asserts say
        what differs)."""
        last: dict[Sample, float] = {}

        def holds() -> bool:
            nonlocal last
            last = self.scrape()
            return check(last)

        with contextlib.suppress(TimeoutError):
            wait_until(holds, "the counts", 10)
        return last

    def counter_dir(self) -> Path:
        found = re.search(r"counters in (\S+)\)", self.se.process.tail())
        assert found is not None, self.se.process.tail()
        return Path(found.group(1))


@pytest.fixture(scope="module", params=SERVERS)
def metered(request: pytest.FixtureRequest) -> Iterator[MeteredSE]:
    port = free_port()
    with running_se(anonymous=True, workers=2, server=request.param, metrics_port=port) as se:
        yield MeteredSE(se, port)


def requests_made(responses: list[httpx.Response]) -> Counter[Sample]:
    """The change each response should make to the counters."""
    out: Counter[Sample] = Counter()
    for r in responses:
        method = r.request.method
        out["fedlake_se_requests_total", (("code", str(r.status_code)), ("method", method))] += 1
        out["fedlake_se_request_duration_seconds_count", (("method", method),)] += 1
        out["fedlake_se_sent_bytes_total", ()] += len(r.content)
        out["fedlake_se_received_bytes_total", ()] += len(r.request.content)
    return out


def changes(before: dict[Sample, float], after: dict[Sample, float]) -> Counter[Sample]:
    """What changed, but the sums of durations and the buckets."""
    out: Counter[Sample] = Counter()
    for key, value in after.items():
        if key[0].endswith(("_sum", "_bucket", "_created")):
            continue
        if value != before.get(key, 0.0):
            out[key] = int(value - before.get(key, 0.0))
    return out


def one_request(method: str, url: str, body: bytes | None = None) -> httpx.Response:
    """On a connection of its own: the workers take turns accepting."""
    return httpx.request(method, url, content=body, timeout=30)


def test_counts_add_up_over_the_workers(metered: MeteredSE) -> None:
    se = metered.se
    files = {f"/counted/{i}.bin": os.urandom(size) for i, size in enumerate([0, 1, 4096, 70_000])}
    files["/counted/big.bin"] = os.urandom(600_000)  # sent by granian itself
    before = metered.settled()
    responses = [one_request("MKCOL", se.url("/counted"))]
    with ThreadPoolExecutor(8) as pool:
        responses += pool.map(lambda p: one_request("PUT", se.url(p), files[p]), files)
        reads = [(m, p) for p in [*files, "/counted/missing"] for m in ["GET", "GET", "HEAD"]]
        reads += [("OPTIONS", "/"), ("DELETE", "/counted/missing"), ("PROPFIND", "/counted")]
        responses += pool.map(lambda mp: one_request(mp[0], se.url(mp[1])), reads * 3)
    statuses = Counter((r.request.method, r.status_code) for r in responses)
    assert statuses[("GET", 200)] == 30
    assert statuses[("GET", 404)] == 6
    assert statuses[("PUT", 201)] == 5
    expected = requests_made(responses)
    after = metered.scrape_when(lambda now: changes(before, now) == expected)

    assert changes(before, after) == expected
    assert after["fedlake_se_received_bytes_total", ()] - before.get(
        ("fedlake_se_received_bytes_total", ()), 0
    ) == sum(len(data) for data in files.values())
    assert after["fedlake_se_requests_in_flight", ()] == 0
    histograms = {p.name for p in metered.counter_dir().glob("histogram_*.db")}
    assert len(histograms) >= 2, f"one worker answered every request: {histograms}"


def test_a_file_named_metrics_is_served_on_the_data_port(metered: MeteredSE) -> None:
    se = metered.se
    assert httpx.put(se.url("/metrics"), content=b"my own file").status_code == 201
    assert httpx.get(se.url("/metrics")).content == b"my own file"
    scrapes = f"http://127.0.0.1:{metered.metrics_port}"
    assert "fedlake_se_requests_total" in httpx.get(f"{scrapes}/metrics").text
    assert httpx.get(f"{scrapes}/counted/1.bin").status_code == 404
    refused = httpx.post(f"{scrapes}/metrics")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"


def test_a_request_being_answered_is_in_flight(metered: MeteredSE) -> None:
    go_on = threading.Event()

    def body() -> Iterator[bytes]:
        yield b"x" * 1000
        go_on.wait(30)
        yield b"y" * 1000

    def in_flight() -> float:
        return metered.scrape()["fedlake_se_requests_in_flight", ()]

    before = metered.settled()
    with ThreadPoolExecutor(1) as pool:
        upload = pool.submit(httpx.put, metered.se.url("/slow.bin"), content=body(), timeout=30)
        try:
            wait_until(lambda: in_flight() == 1, "the upload counted in flight", 10)
        finally:
            go_on.set()
        assert upload.result().status_code == 201
    after = metered.scrape_when(lambda now: now["fedlake_se_requests_in_flight", ()] == 0)
    assert after["fedlake_se_requests_in_flight", ()] == 0
    received = after["fedlake_se_received_bytes_total", ()]
    assert received - before.get(("fedlake_se_received_bytes_total", ()), 0) == 2000


def test_a_client_that_goes_away_counts_as_499(metered: MeteredSE) -> None:
    key = ("fedlake_se_requests_total", (("code", "499"), ("method", "PUT")))
    before = metered.settled().get(key, 0)

    def body() -> Iterator[bytes]:
        yield b"x" * 1000
        time.sleep(0.3)
        raise RuntimeError("the client gives up")

    with pytest.raises(RuntimeError):
        httpx.put(metered.se.url("/abandoned.bin"), content=body(), timeout=30)
    after = metered.scrape_when(lambda now: now.get(key, 0) == before + 1)
    assert after.get(key, 0) == before + 1
    assert after["fedlake_se_requests_in_flight", ()] == 0
    assert not (metered.se.root / "abandoned.bin").exists()


def test_a_worker_started_again_adds_to_the_same_totals(metered: MeteredSE) -> None:
    def workers() -> set[int]:  # the processes that count: a counter file each
        return {int(p.stem.rpartition("_")[2]) for p in metered.counter_dir().glob("counter_*")}

    before = metered.settled()
    killed = min(workers())
    os.kill(killed, 9)
    wait_until(lambda: len(workers() - {killed}) == 2, "the worker started again")
    assert metered.settled() == before  # nothing lost, nothing in flight
    responses = [one_request("GET", metered.se.url("/counted/1.bin")) for _ in range(4)]
    expected = requests_made(responses)
    after = metered.scrape_when(lambda now: changes(before, now) == expected)
    assert changes(before, after) == expected


def listening_ports(group: int) -> set[int]:
    """The TCP ports the processes of process group ``group`` listen on (from /proc)."""
    inodes: set[str] = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) != group:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:  # gone meanwhile
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                ports.add(int(cols[1].rpartition(":")[2], 16))
    return ports


def test_the_metrics_port_is_the_only_port_added(metered: MeteredSE) -> None:
    group = metered.se.process.proc.pid
    assert listening_ports(group) == {metered.se.port, metered.metrics_port}
    with running_se(anonymous=True, workers=2) as plain:
        assert listening_ports(plain.process.proc.pid) == {plain.port}
        assert "metrics" not in plain.process.tail()


def test_tape_mode_counts_its_requests_too() -> None:
    """And with one worker (the server process itself), which removes its counter files."""
    port = free_port()
    with running_se(anonymous=True, config="[tape]\n", metrics_port=port) as se:
        metered = MeteredSE(se, port)
        counters = metered.counter_dir()
        before = metered.settled()
        responses = [
            httpx.get(se.url("/.well-known/wlcg-tape-rest-api")),
            httpx.put(se.url("/on-tape.bin"), content=b"z" * 5000),
            httpx.post(se.url("/api/v1/archiveinfo"), json={"paths": ["/on-tape.bin"]}),
        ]
        assert [r.status_code for r in responses] == [200, 201, 200]
        expected = requests_made(responses)
        after = metered.scrape_when(lambda now: changes(before, now) == expected)
        assert changes(before, after) == expected
    assert not counters.exists()


def serve_fails(root: Path, *args: str) -> str:
    argv = [sys.executable, "-m", "fedlake.cli", "se", "serve", "--root", str(root)]
    argv += ["--allow-anonymous", *args]
    wide = {**os.environ, "COLUMNS": "400"}  # the error in one line
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=wide)
    assert done.returncode == 2, done.stdout + done.stderr
    return " ".join(done.stderr.split())


def test_the_metrics_port_must_not_be_the_data_port(tmp_path: Path) -> None:
    port = str(free_port())
    error = serve_fails(tmp_path, "--port", port, "--metrics-port", port)
    assert "--metrics-port" in error
    assert "give the metrics a port of their own" in error


def test_a_metrics_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        error = serve_fails(tmp_path, "--port", str(free_port()), "--metrics-port", str(port))
    assert f"cannot listen for metrics on 127.0.0.1:{port}" in error
