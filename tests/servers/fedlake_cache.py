"""``fedlake se cache`` started as a real subprocess on loopback, in front of any origin URL."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import ServerProcess, free_port

__all__ = ["CacheServer", "running_cache"]

_SAMPLE = re.compile(r"^(fedlake_cache_\w+?)(?:_total)? ([0-9.e+]+)$", re.MULTILINE)


@dataclass
class CacheServer:
    port: int
    directory: Path
    process: ServerProcess

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as {name without _total: value}."""
        text = httpx.get(self.url("/metrics"), timeout=10).text
        return {m.group(1): float(m.group(2)) for m in _SAMPLE.finditer(text)}


@contextmanager
def running_cache(
    origin: str,
    directory: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> Iterator[CacheServer]:
    """One anonymous ``fedlake se cache`` process; ``args`` are more options."""
    port = free_port()
    argv = [sys.executable, "-m", "fedlake.cli", "se", "cache", "--origin", origin]
    argv += ["--dir", str(directory), "--port", str(port), "--allow-anonymous", *args]
    directory.mkdir(parents=True, exist_ok=True)
    process = ServerProcess(argv, directory.parent / f"{directory.name}.log", env=env)
    try:
        process.wait_for_port(port, timeout=30)
        yield CacheServer(port, directory, process)
    finally:
        process.stop()
