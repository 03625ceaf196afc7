"""Doorbells: a poke after a commit wakes workers of other processes at once."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedlake.transfers import wakeup


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A run directory short enough for the sockets to live in it (pytest's tmp_path may
    not be: under pytest-xdist it is longer; the test below covers long ones)."""
    with tempfile.TemporaryDirectory(prefix="fl-", dir="/tmp") as tmp:
        d = Path(tmp) / "run"
        wakeup.set_run_dir(d)
        yield d
        wakeup.set_run_dir(None)


def test_a_poke_rings_the_doorbell(run_dir: Path) -> None:
    event = threading.Event()
    bell = wakeup.Doorbell(run_dir, event)
    bell.start()
    try:
        assert not event.is_set()
        wakeup.poke()
        assert event.wait(5), "the doorbell did not ring"
    finally:
        bell.stop()
    assert not bell.path.exists()


def test_a_poke_from_another_process_rings_it(run_dir: Path) -> None:
    event = threading.Event()
    bell = wakeup.Doorbell(run_dir, event)
    bell.start()
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from fedlake.transfers import wakeup
        wakeup.set_run_dir(Path({str(run_dir)!r}))
        wakeup.poke()
        """
    )
    try:
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert event.wait(5), "the doorbell did not ring"
    finally:
        bell.stop()


def test_a_dead_workers_bell_is_removed(run_dir: Path) -> None:
    run_dir.mkdir(parents=True)
    stale = run_dir / "transfers-999999-dead.sock"
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(stale))
    s.close()  # bound then closed: nobody listens, as after a kill -9
    wakeup.poke()
    assert not stale.exists()


def test_poke_without_a_run_dir_is_harmless() -> None:
    wakeup.set_run_dir(None)
    wakeup.poke()


def test_a_run_dir_too_deep_for_a_unix_socket_still_rings(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "run"
    assert len(str(deep / "transfers-1-1.sock")) > 107  # sun_path's limit
    short = wakeup.bell_dir(deep)
    assert short != deep and wakeup.bell_dir(deep) == short  # every process agrees
    wakeup.set_run_dir(deep)
    event = threading.Event()
    bell = wakeup.Doorbell(deep, event)
    try:
        bell.start()
        assert bell.path.parent == short
        wakeup.poke()
        assert event.wait(5), "the doorbell did not ring"
    finally:
        bell.stop()
        wakeup.set_run_dir(None)
    assert not bell.path.exists()
    assert wakeup.bell_dir(Path("/tmp/run")) == Path("/tmp/run")  # short enough: as before
