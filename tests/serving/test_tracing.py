"""Request ids on every response and log line of a request; JSON access log lines."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from domainrag.errors import DomainRagError
from domainrag.serving.api import create_api
from domainrag.serving.tracing import RequestIdFilter, access_log_mode

pytestmark = pytest.mark.integration


def test_request_id_is_set_or_echoed_on_every_response(served_ws, monkeypatch: pytest.MonkeyPatch) -> None:
    api = create_api(served_ws, require_keys=False)
    with TestClient(api) as client:
        fresh = [client.get("/healthz").headers["x-request-id"] for _ in range(2)]
        assert all(len(rid) == 32 and int(rid, 16) >= 0 for rid in fresh) and fresh[0] != fresh[1]
        assert client.get("/healthz", headers={"X-Request-ID": "trace-42:a.b_c"}).headers["x-request-id"] == \
            "trace-42:a.b_c"
        for insane in ("two words", "x" * 129, "a\tb"):  # replaced, never echoed
            rid = client.get("/healthz", headers={"X-Request-ID": insane}).headers["x-request-id"]
            assert rid != insane and len(rid) == 32
        # errors carry it too: unknown route, validation, a body over the limit (answered by another middleware)
        assert client.get("/nope", headers={"X-Request-ID": "r1"}).headers["x-request-id"] == "r1"
        bad = client.post("/v1/apps/docs/completion", json={}, headers={"X-Request-ID": "r2"})
        assert bad.status_code == 400 and bad.headers["x-request-id"] == "r2"
        answered = client.post("/v1/apps/strict/completion", json={"query": "q"}, headers={"X-Request-ID": "r4"})
        assert answered.status_code == 200 and answered.headers["x-request-id"] == "r4"
        monkeypatch.setenv("DOMAINRAG_MAX_BODY_BYTES", "10")
        big = client.post("/v1/apps/docs/completion", json={"query": "x" * 50}, headers={"X-Request-ID": "r3"})
        assert big.status_code == 413 and big.headers["x-request-id"] == "r3"


def test_every_log_line_of_a_request_carries_its_id(served_ws, caplog: pytest.LogCaptureFixture) -> None:
    api = create_api(served_ws, require_keys=False)
    inner = logging.getLogger("domainrag.test_tracing")

    def boom() -> None:  # a sync route: runs in a worker thread
        inner.warning("about to fail")
        raise RuntimeError("boom")

    api.add_api_route("/boom", boom)
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO), TestClient(api, raise_server_exceptions=False) as client:
        inner.warning("outside any request")
        resp = client.get("/boom", headers={"X-Request-ID": "req-boom"})
    assert resp.status_code == 500 and resp.json()["error"]["code"] == "internal_error"
    assert resp.headers["x-request-id"] == "req-boom"  # answered by the outermost error handler
    ids = {r.getMessage(): r.request_id for r in caplog.records}  # type: ignore[attr-defined]
    assert ids["outside any request"] == "-"
    assert ids["about to fail"] == "req-boom"
    assert ids["unhandled error"] == "req-boom"


def test_json_access_log_line(served_ws, caplog: pytest.LogCaptureFixture) -> None:
    from domainrag.serving.keys import create_key

    token, record = create_key(served_ws, "*")
    try:
        api = create_api(served_ws, access_log="json")
        with caplog.at_level(logging.INFO, logger="domainrag.access"), TestClient(api) as client:
            resp = client.post("/v1/apps/docs/completion", json={"query": "CTL-400 warranty?"},
                               headers={"Authorization": f"Bearer {token}", "X-Request-ID": "acc-1"})
            assert resp.status_code == 200, resp.text
            client.get("/v1/apps")  # no key: 401
    finally:
        served_ws.catalog.delete("key", record["name"])
    lines = [r.getMessage() for r in caplog.records if r.name == "domainrag.access"]
    assert len(lines) == 2
    answered, refused = (json.loads(line) for line in lines)
    assert answered["request_id"] == "acc-1" and answered["method"] == "POST"
    assert answered["path"] == "/v1/apps/docs/completion" and answered["route"] == "/v1/apps/{app}/completion"
    assert answered["status"] == 200 and answered["duration_ms"] > 0 and answered["key_id"] == record["name"]
    assert answered["model"] == "smollm2-135m-instruct"
    assert answered["prompt_tokens"] > 0 and 1 <= answered["completion_tokens"] <= 12
    assert 0 < answered["ttft_ms"] <= answered["duration_ms"]
    assert token not in lines[0] and record["sha256"] not in lines[0]  # the key id only, never the key
    assert refused["status"] == 401 and refused["key_id"] is None and refused["prompt_tokens"] is None


def test_access_log_mode_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOMAINRAG_ACCESS_LOG", raising=False)
    assert access_log_mode() == "off"
    monkeypatch.setenv("DOMAINRAG_ACCESS_LOG", "JSON")
    assert access_log_mode() == "json" and access_log_mode("text") == "text"
    with pytest.raises(DomainRagError, match="off, text, json"):
        access_log_mode("xml")
