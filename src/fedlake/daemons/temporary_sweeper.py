"""Removes temporary files left on local RSEs by killed uploads (ours and rucio's)."""

from __future__ import annotations

from fedlake.daemons.runner import Daemon
from fedlake.services.storage_areas import local_rse_roots
from fedlake.storage.backends.posix import sweep_temporaries

__all__ = ["TemporarySweeper"]


class TemporarySweeper(Daemon):
    name = "temporary-sweeper"
    interval = 300.0
    max_age = 3600.0

    def run_once(self) -> int:
        removed = 0
        for root in local_rse_roots(self.lake):
            removed += sweep_temporaries(root, self.max_age)
        return removed
