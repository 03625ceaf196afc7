"""User verbs: ping, whoami, ls, stat, meta, attach, detach, did add, upload, download."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from fedlake.cli.output import console, emit

#: parallel files: copies are CPU/memory bound, so about two per core
JOBS = min(8, 2 * (os.cpu_count() or 2))

__all__ = ["register"]

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
meta_app = typer.Typer(help="DID metadata", no_args_is_help=True)
did_app = typer.Typer(help="datasets and containers", no_args_is_help=True)


def _client() -> Any:
    from fedlake.client import Client

    return Client()


def _did(text: str, default_scope: str | None = None) -> tuple[str, str]:
    from fedlake.domain.names import split_did

    return split_did(text, default_scope)


def ping(as_json: JsonOpt = False) -> None:
    """Check that the lake answers."""
    with _client() as c:
        emit(c.ping(), as_json=as_json)


def whoami(as_json: JsonOpt = False) -> None:
    """Show the account you act as."""
    with _client() as c:
        emit(c.whoami(), as_json=as_json)


def ls(
    target: Annotated[str, typer.Argument(help="SCOPE, SCOPE:PATTERN or SCOPE:DATASET")],
    filters: Annotated[
        str | None, typer.Option("--filter", "-f", help="e.g. 'run_number>100,datatype=raw'")
    ] = None,
    did_type: Annotated[
        str, typer.Option("--type", help="all|collection|dataset|container|file")
    ] = "all",
    as_json: JsonOpt = False,
) -> None:
    """List DIDs of a scope (with a metadata filter), or the content of a collection."""
    with _client() as c:
        if ":" in target and "*" not in target:
            scope, name = _did(target)
            did = c.get_did(scope, name)
            if did["type"] != "FILE":
                rows = list(c.list_content(scope, name))
                emit(rows, ["scope", "name", "type", "bytes", "adler32"], as_json=as_json)
                return
            emit([did], ["scope", "name", "type", "bytes", "adler32"], as_json=as_json)
            return
        scope, _, pattern = target.partition(":")
        parts = [f"name={pattern or '*'}"] + ([filters] if filters else [])
        flt = (
            ",".join(parts)
            if ";" not in (filters or "")
            else ";".join(f"name={pattern or '*'},{g}" for g in (filters or "").split(";"))
        )
        rows = list(c.search(scope, flt, did_type))
        emit(rows, ["scope", "name", "did_type", "bytes", "length"], as_json=as_json)


def stat(did: Annotated[str, typer.Argument(help="SCOPE:NAME")], as_json: JsonOpt = False) -> None:
    """Show a DID with its size, checksums and replicas."""
    scope, name = _did(did)
    with _client() as c:
        info = c.get_did(scope, name)
        if info["type"] == "FILE":
            rep = next(iter(c.list_replicas([(scope, name)], all_states=True)), None)
            if rep:
                info["replicas"] = ", ".join(f"{r}({s})" for r, s in rep["states"].items())
        emit(info, as_json=as_json)


@meta_app.command("get")
def meta_get(
    did: Annotated[str, typer.Argument(help="SCOPE:NAME")],
    plugin: Annotated[str, typer.Option(help="JSON, DID_COLUMN or ALL")] = "JSON",
    as_json: JsonOpt = False,
) -> None:
    """Show metadata of a DID."""
    with _client() as c:
        emit(c.get_meta(*_did(did), plugin=plugin.upper()), as_json=as_json)


@meta_app.command("set")
def meta_set(
    did: Annotated[str, typer.Argument(help="SCOPE:NAME")],
    pairs: Annotated[
        list[str], typer.Argument(help="KEY=VALUE (VALUE parsed as JSON if it can be)")
    ],
) -> None:
    """Set metadata keys of a DID."""
    meta: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE")
        try:
            meta[key] = json.loads(value)
        except ValueError:
            meta[key] = value
    with _client() as c:
        c.set_meta(*_did(did), meta)
    console.print(f"set {', '.join(meta)} on {did}")


@meta_app.command("delete")
def meta_delete(did: str, key: str) -> None:
    """Delete one metadata key."""
    with _client() as c:
        c.delete_meta(*_did(did), key)


def attach(
    collection: Annotated[str, typer.Argument(help="SCOPE:NAME of the dataset/container")],
    dids: Annotated[list[str], typer.Argument(help="SCOPE:NAME ... to attach")],
) -> None:
    """Attach DIDs to a dataset or container."""
    scope, name = _did(collection)
    keys = [_did(d, scope) for d in dids]
    with _client() as c:
        c.attach(scope, name, keys)
    console.print(f"attached {len(keys)} DID(s) to {scope}:{name}")


def detach(collection: str, dids: list[str]) -> None:
    """Detach DIDs from a dataset or container."""
    scope, name = _did(collection)
    keys = [_did(d, scope) for d in dids]
    with _client() as c:
        c.detach(scope, name, keys)
    console.print(f"detached {len(keys)} DID(s) from {scope}:{name}")


@did_app.command("add")
def did_add(
    did: Annotated[str, typer.Argument(help="SCOPE:NAME")],
    did_type: Annotated[str, typer.Option("--type", help="dataset or container")] = "dataset",
    lifetime: Annotated[int | None, typer.Option(help="seconds until it expires")] = None,
) -> None:
    """Create a dataset or container."""
    with _client() as c:
        c.add_did(*_did(did), did_type=did_type, lifetime=lifetime)
    console.print(f"added {did_type} {did}")


@did_app.command("close")
def did_close(did: str) -> None:
    """Close a collection (no more attachments)."""
    with _client() as c:
        c.set_status(*_did(did), False)


def upload(
    paths: Annotated[list[Path], typer.Argument(help="files and directories")],
    rse: Annotated[str, typer.Option(help="RSE to write to")],
    scope: Annotated[str | None, typer.Option(help="scope (default user.<account>)")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="SCOPE:NAME dataset to add the files to")
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="parallel files")] = JOBS,
    lifetime: Annotated[int | None, typer.Option(help="rule lifetime in seconds")] = None,
) -> None:
    """Upload files (directories recursively), verified, resuming where a run stopped."""
    from fedlake.cli.files import upload as run

    with _client() as c:
        run(c, paths, rse=rse, scope=scope, dataset=dataset, jobs=jobs, lifetime=lifetime)


def download(
    dids: Annotated[list[str], typer.Argument(help="SCOPE:NAME of files or collections")],
    dest: Annotated[Path, typer.Option("--dir", help="destination directory")] = Path("."),
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="parallel files")] = JOBS,
) -> None:
    """Download files, verified by checksum; already-present verified files are skipped."""
    from fedlake.cli.files import download as run

    with _client() as c:
        run(c, [_did(d) for d in dids], dest=dest, jobs=jobs)


def register(app: typer.Typer) -> None:
    for fn in (ping, whoami, ls, stat, attach, detach, upload, download):
        app.command()(fn)
    app.add_typer(meta_app, name="meta")
    app.add_typer(did_app, name="did")
