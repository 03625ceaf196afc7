"""``delete_files``: what counts as deleted and what as a failure (real POSIX storage)."""

from __future__ import annotations

from pathlib import Path

from fedlake.catalog.deletion import Candidate
from fedlake.daemons.deletion import delete_files
from fedlake.storage.backends.posix import PosixStorage
from fedlake.transfers.endpoints import Endpoint
from fedlake.transfers.errors import classify


def test_deleted_missing_and_refused(tmp_path: Path) -> None:
    endpoint = Endpoint("file", "localhost", 0, str(tmp_path), PosixStorage(), None, None)
    (tmp_path / "here").write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    items = [(Candidate("s", n, 1, None), endpoint.url(n)) for n in ("here", "gone", "dir")]

    out = delete_files(endpoint, items)

    assert [(c.name, e) for c, e in out[:2]] == [("here", None), ("gone", None)]
    assert not (tmp_path / "here").exists()
    candidate, error = out[2]
    assert candidate.name == "dir"
    assert isinstance(error, IsADirectoryError)
    assert not classify(error).recoverable  # reported as a permanent failure
    assert (tmp_path / "dir").is_dir()
