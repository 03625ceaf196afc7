"""An XrdHttp server that stops answering during a test is diagnosed, restarted and the
test run once more (``tests/conftest.py``, ``tests/servers/xrdhttp.py``); a test that
fails against a server that still answers is not run again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CASE = Path(__file__).with_name("stopped_xrdhttp_case.py")
ROOT = Path(__file__).parents[3]


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEDLAKE_TEST_FIRST_TRY": str(tmp_path / "first-try")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_server_that_stopped_answering_is_restarted_and_the_test_rerun(
    tmp_path: Path,
) -> None:
    run = _pytest(tmp_path, f"{CASE}::test_a_request")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 rerun" in run.stdout
    assert "RERUN tests/integration/storage/stopped_xrdhttp_case.py::test_a_request" in run.stdout
    assert "XrdHttp server stopped answering" in run.stdout
    assert "xrootd pid" in run.stdout and "--- end of the log ---" in run.stdout
    assert "thread " in run.stdout  # the stopped threads' states


def test_a_failure_against_an_answering_server_is_not_rerun(tmp_path: Path) -> None:
    run = _pytest(tmp_path, f"{CASE}::test_a_plain_failure")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed" in run.stdout and "fails on purpose" in run.stdout
    assert "rerun" not in run.stdout.lower()
