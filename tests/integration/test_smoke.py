"""Smoke: the API answers on every backend."""

from __future__ import annotations

import json

from starlette.testclient import TestClient


def test_ping_and_whoami(api: TestClient) -> None:
    assert api.get("/ping").json()["version"]
    r = api.get("/accounts/whoami")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json()["account"] == "root"


def test_rses_listed_by_expression(api: TestClient) -> None:
    r = api.get("/rses/", params={"expression": "istape=true"})
    assert r.headers["content-type"] == "application/x-json-stream"
    assert [json.loads(line) for line in r.text.splitlines() if line] == [{"rse": "LOCAL-TAPE"}]


def test_closed_scope_refuses_new_dids(api: TestClient) -> None:
    assert api.post("/dids/user.root/before", content='{"type": "DATASET"}').status_code == 201
    r = api.put("/scopes/root/user.root", content='{"status": "CLOSED"}')
    assert r.status_code == 201
    r = api.post("/dids/user.root/after", content='{"type": "DATASET"}')
    assert r.status_code == 409
    assert r.headers["ExceptionClass"] == "UnsupportedOperation"
    assert "closed" in r.headers["ExceptionMessage"]
    assert api.get("/dids/user.root/after").status_code == 404
    assert api.put("/scopes/root/user.root", content='{"status": "OPEN"}').status_code == 201
    assert api.post("/dids/user.root/after", content='{"type": "DATASET"}').status_code == 201


def test_openapi_document(api: TestClient) -> None:
    doc = api.get("/openapi.json").json()
    assert doc["info"]["title"] == "fedlake"
    assert "/replicas/list" in doc["paths"]
    assert "/rules/" in doc["paths"]
