"""The transfer engine (the FTS3 role): queue, scheduler with leases and limits, workers,
per-link optimizer, verification and retries. Depends on catalog, expressions, storage."""
