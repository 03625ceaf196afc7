"""The pure parts of tape mode: request bodies, ISO 8601 durations, stored stage requests
and their state transitions, the [tape] configuration, and staging under area policies."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from fedlake.domain.errors import InvalidInput
from fedlake.se.authz import ANONYMOUS_CALLER, Authorizer, Caller, Forbidden, Unauthenticated
from fedlake.se.config import TapeConfig, parse_config
from fedlake.se.tape_requests import (
    DEFAULT_PIN_SECONDS,
    MAX_FILES,
    BadRequest,
    StageRequest,
    StageStore,
    new_request,
    parse_duration,
    parse_paths,
    parse_stage,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("P1D", 86400), ("PT2H", 7200), ("PT1H30M", 5400), ("P1W", 604800), ("PT0.5S", 0.5),
     ("P1DT1S", 86401), ("pt10m", 600), (3600, 3600), (0, 0)],
)  # fmt: skip
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text, "diskLifetime") == seconds


@pytest.mark.parametrize(
    "bad", ["P", "PT", "P1DT", "1D", "P1Y", "P2M", "PT-1S", "", -1, True, None]
)
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(BadRequest, match="diskLifetime"):
        parse_duration(bad, "diskLifetime")


def test_stage_bodies() -> None:
    body = {
        "files": [
            {"path": "/cms//a.root", "diskLifetime": "PT1H", "targetedMetadata": {"x": 1}},
            {"path": "/cms/b.root", "somethingNew": True},  # unknown keys are ignored
        ]
    }
    a, b = parse_stage(json.dumps(body).encode())
    assert (a.path, a.pin_seconds, a.metadata) == ("/cms/a.root", 3600.0, {"x": 1})
    assert (b.path, b.pin_seconds, b.metadata) == ("/cms/b.root", DEFAULT_PIN_SECONDS, None)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b"{nope", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "JSON object"),
        (b"{}", "'files' must be a non-empty list"),
        (b'{"files": []}', "'files' must be a non-empty list"),
        (b'{"files": ["/a"]}', "files[0] must be an object"),
        (b'{"files": [{}]}', "files[0].path must be a non-empty string"),
        (b'{"files": [{"path": "relative"}]}', "not absolute"),
        (b'{"files": [{"path": "/a/../../etc/passwd"}]}', "climbs up"),
        (b'{"files": [{"path": "/a\\u0000b"}]}', "control character"),
        (b'{"files": [{"path": "/a"}, {"path": "//a"}]}', "listed twice"),
        (b'{"files": [{"path": "/a", "diskLifetime": "P1Y"}]}', "files[0].diskLifetime"),
        (b'{"files": [{"path": "/a", "targetedMetadata": [1]}]}', "targetedMetadata"),
    ],
)
def test_bad_stage_bodies_say_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_stage(body)
    assert says in str(caught.value)


def test_path_lists() -> None:
    assert parse_paths(b'{"paths": ["/b", "/a", "//b/"]}') == ["/b", "/a"]
    for body, says in [
        (b'{"paths": "/a"}', "'paths' must be a non-empty list"),
        (b'{"paths": [7]}', "paths[0] must be a non-empty string"),
        (b'{"paths": ["/x/../.."]}', "climbs up"),
        (b'{"files": [{"path": "/a"}]}', "'paths'"),
    ]:
        with pytest.raises(BadRequest) as caught:
            parse_paths(body)
        assert says in str(caught.value)
    too_many = json.dumps({"paths": [f"/f{i}" for i in range(MAX_FILES + 1)]}).encode()
    with pytest.raises(BadRequest, match="at most"):
        parse_paths(too_many)


def _files(*states: str) -> list[dict[str, Any]]:
    return [{"path": f"/f{i}", "state": s, "pin": 60.0} for i, s in enumerate(states)]


def test_states_only_leave_pending_ones() -> None:
    request = new_request(_files("STARTED", "STARTED", "FAILED"), "anonymous", 100)
    assert "completedAt" not in request.doc
    assert request.pending() == ["/f0", "/f1"]
    assert request.set_state("/f0", "COMPLETED", 105)
    assert not request.set_state("/f0", "CANCELLED", 106)  # final states stay
    assert not request.set_state("/f2", "COMPLETED", 106)
    assert "completedAt" not in request.doc
    assert request.set_state("/f1", "CANCELLED", 107)
    assert request.doc["completedAt"] == 107
    view = request.view({"/f0": True})
    assert view["id"] == request.id and view["createdAt"] == 100 and view["startedAt"] == 100
    assert view["completedAt"] == 107
    assert [(f["path"], f["state"], f["onDisk"]) for f in view["files"]] == [
        ("/f0", "COMPLETED", True),
        ("/f1", "CANCELLED", False),
        ("/f2", "FAILED", False),
    ]
    assert view["files"][0]["finishedAt"] == 105
    assert "pin" not in view["files"][0]  # the stored pin is ours, not the API's


def test_a_request_failed_at_once_is_complete() -> None:
    request = new_request(_files("FAILED"), "anonymous", 100)
    assert request.doc["completedAt"] == 100


def test_the_store(tmp_path: Path) -> None:
    store = StageStore(str(tmp_path / "requests"))
    request = new_request(_files("STARTED"), "alice", 1)
    store.add(request)
    got = store.get(request.id)
    assert got is not None and got.doc == request.doc
    assert store.get("../../etc/passwd") is None  # ids are UUIDs, nothing else is looked up
    assert store.get("00000000-0000-0000-0000-000000000000") is None
    assert store.update(request.id, lambda r: r.set_state("/f0", "COMPLETED", 2)) is not None
    stored = store.get(request.id)
    assert stored is not None and stored.files[0]["state"] == "COMPLETED"
    assert store.delete(request.id) is not None
    assert store.get(request.id) is None and store.delete(request.id) is None
    assert sorted(p.name for p in (tmp_path / "requests").iterdir()) == [".lock"]


def _complete(directory: str, request_id: str, index: int) -> None:
    StageStore(directory).update(
        request_id, lambda r: r.set_state(f"/f{index}", "COMPLETED", 10 + index)
    )


def test_updates_from_processes_do_not_lose_each_other(tmp_path: Path) -> None:
    directory = str(tmp_path / "requests")
    store = StageStore(directory)
    request = new_request(_files(*["STARTED"] * 8), "alice", 1)
    store.add(request)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_complete, args=(directory, request.id, i)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert all(p.exitcode == 0 for p in procs)
    got = store.get(request.id)
    assert got is not None
    assert [f["state"] for f in got.files] == ["COMPLETED"] * 8
    assert isinstance(got, StageRequest) and got.doc["completedAt"] >= 10


def test_tape_configuration() -> None:
    assert parse_config({}).tape is None
    assert parse_config({"tape": {}}).tape == TapeConfig()
    tape = parse_config(
        {"tape": {"recall_latency": 0, "recall_throughput": 1e6, "buffer_bytes": 4096,
                  "write_pin": 1, "sitename": "SITE", "description": "d"}}
    ).tape  # fmt: skip
    assert tape == TapeConfig(0.0, 1e6, 4096, 1.0, "SITE", "d")
    for bad, says in [
        ({"tape": 1}, "must be a table"),
        ({"tape": {"recall_latency": -1}}, "recall_latency"),
        ({"tape": {"recall_throughput": 0}}, "recall_throughput"),
        ({"tape": {"buffer_bytes": 1.5}}, "whole bytes"),
        ({"tape": {"write_pin": "1h"}}, "write_pin must be a number"),
        ({"tape": {"sitename": 3}}, "sitename must be a str"),
        ({"tape": {"latency": 1}}, "unknown key(s) latency"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            parse_config(bad)
        assert says in str(caught.value)


def test_staging_is_a_read_for_area_policies() -> None:
    config = parse_config(
        {"areas": [{"path": "/cms", "policies": [{"who": "/cms", "actions": ["read"]}]}]}
    )
    authorizer = Authorizer(config)
    member = Caller(True, "alice", "https://iam", groups=("/cms",))
    authorizer.check(member, "stage", "/cms/a.root")
    with pytest.raises(Forbidden, match="read"):
        authorizer.check(Caller(True, "bob", "https://iam", groups=("/atlas",)), "stage", "/cms/a")
    with pytest.raises(Unauthenticated):
        authorizer.check(ANONYMOUS_CALLER, "stage", "/cms/a.root")


def test_the_tape_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fedlake.cli import se_serve
    from fedlake.se import server

    seen: list[server.ServeOptions] = []
    monkeypatch.setattr(server, "serve", seen.append)
    se_serve.serve(root=tmp_path, allow_anonymous=True, tape=True)
    se_serve.serve(root=tmp_path, allow_anonymous=True)
    assert seen[0].config.tape == TapeConfig() and seen[1].config.tape is None
    config = tmp_path / "se.toml"
    config.write_text("[tape]\nrecall_latency = 0.5\n")
    se_serve.serve(root=tmp_path, allow_anonymous=True, config=config, tape=True)
    assert seen[2].config.tape == TapeConfig(recall_latency=0.5)  # the file's table wins
