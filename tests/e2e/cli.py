"""The real ``fedlake`` command in a subprocess, as the end-to-end tests run it: its
environment (nothing ``FEDLAKE_*`` from the caller's, a login, a wide terminal), a run
that checks the exit status, a run in the background; and a lake with the USER accounts
alice and bob, for the ``fedlake iam`` tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from fedlake.client import Client, ClientConfig
from tests.helpers import ROOT_PASSWORD, LiveLake, lake_on

#: the accounts of ``lake_with_users`` and their passwords
PASSWORDS = {"root": ROOT_PASSWORD, "alice": "alice-secret-password", "bob": "bob-secret-pw1"}


def fedlake_command(*args: str) -> list[str]:
    """``fedlake <args>`` with this interpreter."""
    return [sys.executable, "-m", "fedlake.cli", *args]


def fedlake_env(
    url: str,
    *,
    account: str = "root",
    password: str = ROOT_PASSWORD,
    data_dir: Path | None = None,
) -> dict[str, str]:
    """This process's environment without any ``FEDLAKE_*`` variable, plus the lake's URL,
    a login as ``account`` (username and account alike), 250 columns for rich and, when
    given, ``FEDLAKE_DATA_DIR``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLAKE_")}
    env.update(
        FEDLAKE_URL=url,
        FEDLAKE_USERNAME=account,
        FEDLAKE_PASSWORD=password,
        FEDLAKE_ACCOUNT=account,
        COLUMNS="250",
    )
    if data_dir is not None:
        env["FEDLAKE_DATA_DIR"] = str(data_dir)
    return env


def run_fedlake(
    url: str,
    *args: str,
    account: str = "root",
    password: str = ROOT_PASSWORD,
    data_dir: Path | None = None,
    code: int | None = 0,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``fedlake <args>`` against the lake at ``url`` (see ``fedlake_env``) and wait for
    it; unless ``code`` is None, assert that it exits with ``code``."""
    proc = subprocess.run(
        fedlake_command(*args),
        env=fedlake_env(url, account=account, password=password, data_dir=data_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if code is not None:
        assert proc.returncode == code, (
            f"fedlake {' '.join(args)} exited {proc.returncode}, not {code}:\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return proc


def fedlake(
    live: LiveLake,
    *args: str,
    account: str = "root",
    password: str = ROOT_PASSWORD,
    code: int | None = 0,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``run_fedlake`` against ``live``, with its data directory."""
    return run_fedlake(
        live.url,
        *args,
        account=account,
        password=password,
        data_dir=live.data_dir,
        code=code,
        timeout=timeout,
    )


def spawn_fedlake(
    url: str,
    *args: str,
    account: str = "root",
    password: str = ROOT_PASSWORD,
    data_dir: Path | None = None,
    preexec_fn: Callable[[], object] | None = None,
) -> subprocess.Popen[str]:
    """Start ``fedlake <args>`` (see ``fedlake_env``) without waiting for it; its stdout and
    stderr are pipes, read as text."""
    return subprocess.Popen(
        fedlake_command(*args),
        env=fedlake_env(url, account=account, password=password, data_dir=data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )


def user_client(live: LiveLake, account: str) -> Client:
    """A client of ``live`` that logs in as ``account``, one of ``PASSWORDS``."""
    return Client(ClientConfig(url=live.url, username=account, password=PASSWORDS[account]))


@contextlib.contextmanager
def lake_with_users(backend: str, data_dir: Path) -> Iterator[LiveLake]:
    """A live lake on ``backend`` (see ``lake_on``) with the USER accounts alice and bob,
    whose passwords are in ``PASSWORDS``."""
    with lake_on(backend, data_dir) as lake:
        with user_client(lake, "root") as c:
            for name in ("alice", "bob"):
                c.add_account(name, "USER", f"{name}@example.org")
                c.add_identity(name, name, PASSWORDS[name])
        yield lake
