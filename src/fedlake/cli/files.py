"""Rich progress bars around the client's upload and download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from fedlake.cli.output import console

__all__ = ["download", "upload"]


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def upload(
    client: Any,
    paths: list[Path],
    *,
    rse: str,
    scope: str | None,
    dataset: str | None,
    jobs: int,
    lifetime: int | None,
) -> None:
    from fedlake.client.files import expand
    from fedlake.client.files import upload as run
    from fedlake.domain.names import split_did

    files = expand(paths)
    total = sum(f.stat().st_size for f in files)
    ds = split_did(dataset) if dataset else None
    with _progress() as bar:
        bytes_task = bar.add_task("upload", total=total)
        res = run(
            client,
            files,  # already expanded: the directories are not walked twice
            rse=rse,
            scope=scope,
            dataset=ds,
            jobs=jobs,
            lifetime=lifetime,
            progress=lambda n: bar.advance(bytes_task, n),
        )
    console.print(
        f"uploaded {len(res.uploaded)} file(s), {res.total_bytes} bytes; "
        f"{len(res.skipped)} already there (verified)"
    )


def download(client: Any, dids: list[tuple[str, str]], *, dest: Path, jobs: int) -> None:
    from fedlake.client.files import download as run

    with _progress() as bar:
        task = bar.add_task("download", total=None)
        res = run(
            client,
            dids,
            dest=dest,
            jobs=jobs,
            progress=lambda n: bar.advance(task, n),
            on_total=lambda t: bar.update(task, total=t),
        )
    console.print(
        f"downloaded {len(res.downloaded)} file(s), {res.total_bytes} bytes to {dest}; "
        f"{len(res.skipped)} already present (verified)"
    )
